"""``DataFolio``: the public object, with datafolio's sync methods and their async twins.

Owns: argument handling, the datafolio 2.x method surface and the 1.x aliases; the cache
methods (status, warming, limits, large files) come from the mixin in
:mod:`aiofolio._folio_cache`. Every sync method runs a coroutine of
:class:`~aiofolio.engine.session.BundleSession` on the engine thread through
:mod:`aiofolio._portal`; every async twin (``aget``, ``aadd``, ...) awaits the same coroutine
from the caller's loop (both through one private coroutine method, ``_add``, ``_delete``,
...). There is no second, sync implementation, and no I/O here.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from aiofolio import _portal
from aiofolio._calls import kw as _kw
from aiofolio._folio_cache import CacheMethods
from aiofolio._progress import DownloadWatch
from aiofolio.bundle import REFERENCE_ITEM_TYPE, Item, Manifest, payload_path
from aiofolio.config import UNSET, Settings, apply_logging, resolve_settings
from aiofolio.engine._runtime import aclose_engine
from aiofolio.engine.session import MISS, BundleSession, normalize_bundle_url
from aiofolio.errors import ArgumentTypeError, InvalidArgumentError, ReadOnlyError

__all__ = ["DataFolio", "MetadataDict"]

T = TypeVar("T")

_CONTENT_KEYS = {
    "referenced_table": "referenced_tables",
    "included_table": "included_tables",
    "numpy_array": "numpy_arrays",
    "json_data": "json_data",
    "timestamp": "timestamps",
    "model": "models",
    "artifact": "artifacts",
}


_portal.add_shutdown_callback(aclose_engine)  # network clients close with the loop


class MetadataDict(dict[str, Any]):
    """The bundle's metadata; every change is committed to the bundle at once.

    ``update`` commits once for all its keys. Commits go through the same conditional publish
    as every other write, so a concurrent writer raises
    :class:`~aiofolio.errors.ConcurrentWriteError` rather than being overwritten. Copies
    (``copy.copy``, ``copy.deepcopy``, pickling, ``.copy()``) are plain dicts.

    From async code, ``await meta.aupdate(...)``, ``apop``, ``apopitem`` and ``asetdefault``
    commit without blocking the event loop (``meta[k] = v`` is ``aupdate({k: v})``,
    ``del meta[k]`` is ``apop(k)``).
    """

    def __init__(self, folio: DataFolio, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self._folio = folio

    def _commit(self, changes: Mapping[str, Any], remove: Iterable[str] = ()) -> None:
        self._folio._commit_metadata(dict(changes), list(remove))

    async def _acommit(self, changes: Mapping[str, Any], remove: Iterable[str] = ()) -> None:
        await self._folio._acommit_metadata(dict(changes), list(remove))

    def __setitem__(self, key: str, value: Any) -> None:
        self._commit({key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._commit({}, [key])

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._commit(dict(*args, **kwargs))

    async def aupdate(self, *args: Any, **kwargs: Any) -> None:
        """Async twin of :meth:`update` (one commit for all the keys)."""
        await self._acommit(dict(*args, **kwargs))

    def __ior__(self, other: Any) -> MetadataDict:  # type: ignore[override,misc]
        """``meta |= {...}`` commits like :meth:`update` (dict's own would not commit)."""
        self._commit(dict(other))
        return self

    def _last(self) -> tuple[str, Any]:
        if not self:
            raise KeyError("popitem(): bundle metadata is empty")
        key = next(reversed(self))
        return key, self[key]

    def popitem(self) -> tuple[str, Any]:
        key, value = self._last()
        self._commit({}, [key])
        return key, value

    async def apopitem(self) -> tuple[str, Any]:
        """Async twin of :meth:`popitem`."""
        key, value = self._last()
        await self._acommit({}, [key])
        return key, value

    def _popped(self, key: str, default: tuple[Any, ...]) -> tuple[Any, list[str]]:
        """What ``pop`` returns, and the keys it removes."""
        if key not in self:
            if default:
                return default[0], []
            raise KeyError(key)
        return self[key], [key]

    def pop(self, key: str, *default: Any) -> Any:
        value, remove = self._popped(key, default)
        if remove:
            self._commit({}, remove)
        return value

    async def apop(self, key: str, *default: Any) -> Any:
        """Async twin of :meth:`pop`."""
        value, remove = self._popped(key, default)
        if remove:
            await self._acommit({}, remove)
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._commit({key: default})
        return self[key]

    async def asetdefault(self, key: str, default: Any = None) -> Any:
        """Async twin of :meth:`setdefault`."""
        if key not in self:
            await self._acommit({key: default})
        return self[key]

    def clear(self) -> None:
        raise ArgumentTypeError("clearing bundle metadata is not supported; delete keys one by one")

    # Copies and pickles are plain dicts: rebuilding a MetadataDict key by key would commit
    # every key to the bundle again (copy.copy) or try to copy the whole folio (deepcopy).
    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))

    def _refill(self, data: Mapping[str, Any]) -> None:
        super().clear()
        super().update(data)


def _settings_layer(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not UNSET}


class DataFolio(CacheMethods):
    """A DataFolio bundle on S3, GCS, HTTP(S) or local disk.

    Method names and parameters follow the ``datafolio`` package (2.x, plus the 1.x names).
    Every I/O method has an async twin with an ``a`` prefix (``get``/``aget``, ...).

    Args:
        path: the bundle: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``https://...``
            (read-only), ``file://...`` or a local path.
        metadata: metadata for a NEW bundle (ignored when opening an existing one; edit
            ``folio.metadata`` instead).
        random_suffix: append a random suffix to the bundle name when creating it.
        read_only: refuse every write.
        allow_existing: allow creating a bundle in an existing, non-empty local folder.
        max_eager_bytes: tables bigger than this (by recorded ``size_bytes``) refuse a full
            ``get`` unless ``columns=`` is given (:class:`~aiofolio.InvalidArgumentError`); ``None``
            disables the guard.
        create: create the bundle if it does not exist (else raise).
        storage_options: passed to s3fs/gcsfs (or aiohttp for HTTP) as pandas and fsspec pass
            them.
        clock: seconds since the epoch for TTL decisions (default ``time.time``; tests and
            simulations inject their own).
        **settings: any setting of :class:`aiofolio.config.Settings` (``cache_ttl``,
            ``retry_attempts``, ...); they win over environment variables and config files.

    Raises:
        RemoteNotFoundError: no bundle at ``path`` and ``create`` is false (or read-only).
        ReadOnlyError: on writes, for read-only folios and HTTP bundles.
        ArgumentTypeError: ``path`` is not a str or path (also a ``TypeError``).
        InvalidArgumentError: ``path`` is a file, or a non-empty folder that is not a bundle
            and ``allow_existing`` is false (also a ``ValueError``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        metadata: Mapping[str, Any] | None = None,
        random_suffix: bool = False,
        read_only: bool = False,
        allow_existing: bool = False,
        max_eager_bytes: int | None = 500 * 1024 * 1024,
        create: bool = True,
        *,
        storage_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
        **settings: Any,
    ) -> None:
        self._init_state(
            path,
            read_only=read_only,
            random_suffix=random_suffix,
            max_eager_bytes=max_eager_bytes,
            storage_options=storage_options,
            settings=settings,
            clock=clock,
        )
        self._check_local_folder(allow_existing=allow_existing, create=create)
        _portal.call(self._open, create, metadata)

    @classmethod
    async def aopen(
        cls,
        path: str | os.PathLike[str],
        metadata: Mapping[str, Any] | None = None,
        random_suffix: bool = False,
        read_only: bool = False,
        allow_existing: bool = False,
        max_eager_bytes: int | None = 500 * 1024 * 1024,
        create: bool = True,
        *,
        storage_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
        **settings: Any,
    ) -> DataFolio:
        """Open (or create) a bundle without blocking the caller's event loop."""
        self = cls.__new__(cls)
        self._init_state(
            path,
            read_only=read_only,
            random_suffix=random_suffix,
            max_eager_bytes=max_eager_bytes,
            storage_options=storage_options,
            settings=settings,
            clock=clock,
        )
        self._check_local_folder(allow_existing=allow_existing, create=create)
        await _portal.acall(self._open, create, metadata)
        return self

    async def _open(self, create: bool, metadata: Mapping[str, Any] | None) -> None:
        self._created = await self._session.open(create=create, metadata=metadata)
        self._metadata = MetadataDict(self, self._manifest.metadata)

    def _init_state(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool,
        random_suffix: bool,
        max_eager_bytes: int | None,
        storage_options: Mapping[str, Any] | None,
        settings: Mapping[str, Any],
        session: BundleSession | None = None,
        snapshot: str | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise ArgumentTypeError(
                f"a bundle path is a str or os.PathLike, not {type(path).__name__}"
            )
        url = normalize_bundle_url(path)
        if random_suffix:
            url = f"{url}-{secrets.token_hex(3)}"
        self._resolved = resolve_settings(constructor=_settings_layer(settings))
        apply_logging(self._resolved)  # log_level, when it is set anywhere but the default
        self._max_eager_bytes = max_eager_bytes
        self._snapshot = snapshot
        self._session = session or BundleSession(
            url,
            settings=self._resolved.settings,
            storage_options=storage_options,
            read_only=read_only,
            clock=clock,
        )

    def _check_local_folder(self, *, allow_existing: bool, create: bool) -> None:
        if not self._session.is_local or not create:
            return
        root = Path(self._session.url)
        if root.is_file():
            raise InvalidArgumentError(f"{root} is a file, not a DataFolio bundle folder")
        if (
            root.is_dir()
            and not (root / "items.json").exists()
            and any(root.iterdir())
            and not allow_existing
        ):
            raise InvalidArgumentError(
                f"{root} exists, is not empty and is not a DataFolio bundle; pass "
                "allow_existing=True to create a bundle inside it (its files are left alone)"
            )

    # -- basic properties ------------------------------------------------------------------
    @property
    def _manifest(self) -> Manifest:
        return self._session.require_manifest()

    @property
    def path(self) -> str:
        """The bundle's location (an absolute path for local bundles)."""
        return self._session.url

    @property
    def read_only(self) -> bool:
        """Whether writes are refused (read-only folios, snapshot views, HTTP bundles)."""
        return self._session.read_only or self._snapshot is not None

    @property
    def settings(self) -> Settings:
        """The resolved settings of this folio."""
        return self._resolved.settings

    @property
    def revision(self) -> int:
        """The manifest revision as last loaded."""
        return self._manifest.revision

    @property
    def metadata(self) -> MetadataDict:
        """The bundle metadata; setting a key commits it."""
        return self._metadata

    @metadata.setter
    def metadata(self, value: Mapping[str, Any]) -> None:
        if value is self._metadata:  # ``folio.metadata |= {...}`` already committed
            return
        current = set(self._manifest.metadata)
        self._commit_metadata(dict(value), [k for k in current if k not in value])

    def __repr__(self) -> str:
        view = f", snapshot={self._snapshot!r}" if self._snapshot else ""
        return f"DataFolio({self.path!r}, items={len(self._names())}{view})"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._names()

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    # -- plumbing --------------------------------------------------------------------------
    def _names(self, include_archived: bool = True) -> list[str]:
        if self._snapshot is not None:
            return list(self._manifest.snapshot_items(self._snapshot))
        return self._manifest.names(include_archived=include_archived)

    def _item(self, name: str) -> Item:
        return self._item_in(self._manifest, name)

    def _item_in(self, manifest: Manifest, name: str) -> Item:
        if self._snapshot is not None:
            return manifest.resolve_snapshot(self._snapshot, name)
        return manifest.current(name)

    def _writable(self, what: str) -> None:
        if self._snapshot is not None:
            raise ReadOnlyError(
                f"snapshot view {self._snapshot!r} of {self.path} is read-only: cannot {what}"
            )

    def _after_write(self) -> None:
        self._metadata._refill(self._manifest.metadata)

    def _commit_metadata(self, changes: dict[str, Any], remove: list[str]) -> None:
        _portal.call(self._set_metadata, changes, remove)

    async def _acommit_metadata(self, changes: dict[str, Any], remove: list[str]) -> None:
        await _portal.acall(self._set_metadata, changes, remove)

    async def _set_metadata(self, changes: dict[str, Any], remove: list[str]) -> None:
        self._writable("change metadata")
        await self._session.set_metadata(changes, remove)
        self._after_write()

    def _check_eager(self, item: Item, opts: Mapping[str, Any]) -> None:
        limit = self._max_eager_bytes
        if limit is None or item.item_type != "included_table" or opts.get("columns"):
            return
        size = item.size_bytes
        if size is not None and size > limit and not item.get("allow_full_load", False):
            raise InvalidArgumentError(
                f"table {item.name!r} is {size:,} bytes, above max_eager_bytes={limit:,}; "
                "read some columns with get(name, columns=[...]) or open the folio with "
                "max_eager_bytes=None"
            )

    # -- reading ---------------------------------------------------------------------------
    def get(self, name: str, *, force_cache: bool = False, **opts: Any) -> Any:
        """The item ``name`` as its natural object.

        Tables come back as pandas DataFrames (``columns=`` reads some columns,
        ``frame="polars"``/``"arrow"`` other frames), arrays as ndarrays (``mmap_mode=``
        for a memory map of a local payload), JSON as dicts/lists/scalars, timestamps as
        UTC datetimes, models as loaded objects, artifacts as a local file path.

        For a cached bundle the manifest is revalidated when the TTL has passed (one
        conditional request); ``use_stale=True`` serves the cached copy without asking.

        With ``cache_large_files=False``, an item at or above ``large_file_threshold`` is
        downloaded (verified) to a private scratch file, read and deleted, never cached;
        ``force_cache=True`` caches it anyway.

        Raises:
            ItemNotFoundError: no such item (the message suggests close names).
            NotCachedError: offline, and the item is not cached.
        """
        value = self._fast_hit(name, opts)
        if value is not MISS:
            return value
        if force_cache:
            opts["force_cache"] = True
        return _portal.call(self._read_one(name, opts))

    async def aget(self, name: str, *, force_cache: bool = False, **opts: Any) -> Any:
        """Async twin of :meth:`get`."""
        value = self._fast_hit(name, opts)
        if value is not MISS:
            return value
        if force_cache:
            opts["force_cache"] = True
        return await _portal.acall(self._read_one(name, opts))

    def _fast_hit(self, name: str, opts: dict[str, Any]) -> Any:
        """A small cached item read in the caller's thread (no hop to the engine), or MISS.

        Saves the engine round trip on a hit within the TTL; see
        :meth:`~aiofolio.engine.session.BundleSession.read_hit_now` for when it applies.
        The ``hit_fast_path`` setting (``False``) turns it off.
        """
        if not self.settings.hit_fast_path or _portal.in_engine_thread():
            return MISS
        return self._session.read_hit_now(
            name, opts, snapshot=self._snapshot, check=self._check_eager
        )

    def _read_one(self, name: str, opts: dict[str, Any]) -> Callable[[], Awaitable[Any]]:
        """The engine coroutine of ``get`` (the session reads; the facade draws the bar)."""
        return _kw(
            self._session.read_one,
            name,
            opts,
            snapshot=self._snapshot,
            check=self._check_eager,
            watch=DownloadWatch(self.settings.progress),  # a bar for large downloads
        )

    def get_many(self, names: Iterable[str], **opts: Any) -> dict[str, Any]:
        """Several items at once, read concurrently; a dict by name."""
        return _portal.call(self._read_many(list(names), opts))

    async def aget_many(self, names: Iterable[str], **opts: Any) -> dict[str, Any]:
        """Async twin of :meth:`get_many`."""
        return await _portal.acall(self._read_many(list(names), opts))

    def _read_many(
        self, names: Sequence[str], opts: Mapping[str, Any]
    ) -> Callable[[], Awaitable[dict[str, Any]]]:
        return _kw(
            self._session.read_many,
            list(names),
            dict(opts),
            snapshot=self._snapshot,
            check=self._check_eager,
        )

    def get_path(self, name: str) -> str:
        """The local path of the item's payload, cached first if needed.

        For zero-copy readers: ``pyarrow.memory_map``, ``np.load(path, mmap_mode="r")``. The
        file is read-only; do not modify it. For local bundles it is the payload itself.
        """
        path = self._fast_path(name)
        if path is not None:
            return path
        return _portal.call(_kw(self._session.get_path_named, name, snapshot=self._snapshot))

    async def aget_path(self, name: str) -> str:
        """Async twin of :meth:`get_path`."""
        path = self._fast_path(name)
        if path is not None:
            return path
        return await _portal.acall(_kw(self._session.get_path_named, name, snapshot=self._snapshot))

    def _fast_path(self, name: str) -> str | None:
        """``get_path``'s hit in the caller's thread (a path this folio already handed out)."""
        if not self.settings.hit_fast_path or _portal.in_engine_thread():
            return None
        return self._session.path_hit_now(name, snapshot=self._snapshot)

    def get_model(self, name: str, trusted: bool = False) -> Any:
        """A model item, loaded (``trusted=True`` lets skops load unknown types)."""
        return self.get(name, trusted=trusted)

    async def aget_model(self, name: str, trusted: bool = False) -> Any:
        """Async twin of :meth:`get_model`."""
        return await self.aget(name, trusted=trusted)

    def item_path(self, name: str) -> str:
        """The full location of an item's payload (the external path for a reference)."""
        item = self._item(name)
        if item.item_type == REFERENCE_ITEM_TYPE:
            return str(item.path)
        relative = payload_path(item)
        if self._session.is_local:
            return os.path.join(self.path, *relative.split("/"))
        return self._session.object_url(relative)

    def item_info(self, name: str) -> dict[str, Any]:
        """A copy of the item's manifest entry."""
        return copy.deepcopy(self._item(name).to_dict())

    def list_contents(self, include_archived: bool = False) -> dict[str, list[str]]:
        """Item names grouped by kind, as datafolio returns them."""
        out: dict[str, list[str]] = {key: [] for key in _CONTENT_KEYS.values()}
        for name in self._names(include_archived=include_archived):
            item = self._item(name)
            if not include_archived and item.archived:
                continue
            key = _CONTENT_KEYS.get(item.item_type)
            if key is not None:
                out[key].append(name)
        return out

    @property
    def tables(self) -> list[str]:
        """Names of all tables, included and referenced."""
        c = self.list_contents()
        return c["referenced_tables"] + c["included_tables"]

    @property
    def models(self) -> list[str]:
        """Names of all models."""
        return self.list_contents()["models"]

    @property
    def artifacts(self) -> list[str]:
        """Names of all artifacts."""
        return self.list_contents()["artifacts"]

    def describe(
        self,
        pattern: str | None = None,
        return_string: bool = False,
        include_archived: bool = False,
        show_paths: bool = False,
    ) -> str | None:
        """A readable summary of the bundle; printed unless ``return_string``."""
        lines = [f"DataFolio {self.path} (revision {self.revision})"]
        meta = {k: v for k, v in self._manifest.metadata.items() if not k.startswith("_")}
        for key, value in list(meta.items())[:10]:
            lines.append(f"  {key}: {value}")
        for kind, names in self.list_contents(include_archived=include_archived).items():
            chosen = [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]
            if not chosen:
                continue
            lines.append(f"{kind.replace('_', ' ').title()} ({len(chosen)}):")
            for name in chosen:
                item = self._item(name)
                parts = [f"  - {name}"]
                if item.description:
                    parts.append(f": {item.description}")
                if item.inputs:
                    parts.append(f" (inputs: {', '.join(item.inputs)})")
                if show_paths:
                    parts.append(f" [{self.item_path(name)}]")
                lines.append("".join(parts))
        text = "\n".join(lines)
        if return_string:
            return text
        print(text)
        return None

    def refresh(self) -> DataFolio:
        """Reload the manifest from the store (a cached bundle revalidates now)."""
        return _portal.call(self._refresh)

    async def arefresh(self) -> DataFolio:
        """Async twin of :meth:`refresh`."""
        return await _portal.acall(self._refresh)

    async def _refresh(self) -> DataFolio:
        await self._session.load(force=True)
        self._after_write()
        return self

    def validate(self) -> dict[str, bool]:
        """Whether each owned item's payload matches its recorded checksum and size."""
        return _portal.call(self._session.validate)

    async def avalidate(self) -> dict[str, bool]:
        """Async twin of :meth:`validate`."""
        return await _portal.acall(self._session.validate)

    def is_valid(self) -> bool:
        """Whether every owned item validates."""
        return _portal.call(self._is_valid)

    async def ais_valid(self) -> bool:
        """Async twin of :meth:`is_valid`."""
        return await _portal.acall(self._is_valid)

    async def _is_valid(self) -> bool:
        return all((await self._session.validate()).values())

    # -- snapshots (read-only) -----------------------------------------------------------------
    def list_snapshots(self) -> list[dict[str, Any]]:
        """Snapshots with name, timestamp, description, tags and item count; newest first."""
        result = []
        for name in self._manifest.snapshot_names():
            meta = self._manifest.snapshot(name)
            result.append(
                {
                    "name": name,
                    "timestamp": meta.get("timestamp", ""),
                    "description": meta.get("description"),
                    "tags": list(meta.get("tags", []) or []),
                    "num_items": len(meta.get("item_versions", {}) or {}),
                }
            )
        result.sort(key=lambda x: str(x["timestamp"]), reverse=True)
        return result

    def get_snapshot(self, snapshot: str) -> DataFolio:
        """A read-only view of the bundle as the snapshot pinned it."""
        self._manifest.snapshot(snapshot)  # raises ItemNotFoundError for an unknown name
        view = DataFolio.__new__(DataFolio)
        view._init_state(
            self.path,
            read_only=True,
            random_suffix=False,
            max_eager_bytes=self._max_eager_bytes,
            storage_options=None,
            settings={},
            session=self._session,
            snapshot=snapshot,
        )
        view._resolved = self._resolved
        view._created = False
        view._metadata = MetadataDict(view, self._manifest.metadata)
        return view

    # -- writing ---------------------------------------------------------------------------------
    async def _add(self, name: str, obj: Any, item_type: str | None, **kw: Any) -> DataFolio:
        self._writable(f"add {name!r}")
        await self._session.add(name, obj, item_type=item_type, **kw)
        self._after_write()
        return self

    def add(
        self,
        name: str,
        obj: Any,
        *,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        **type_opts: Any,
    ) -> DataFolio:
        """Store ``obj`` as item ``name``; its type picks the format.

        DataFrame/Series → Parquet table; ndarray → ``.npy``; dict, list or scalar → JSON;
        timezone-aware datetime → timestamp; scikit-learn estimator → model.

        Raises:
            TypeError: an unsupported type (the message lists the supported ones).
            ValueError: a bad name, or an existing name without ``overwrite=True``.
            ConcurrentWriteError: another writer published first; nothing was published.
        """
        return _portal.call(
            _kw(
                self._add,
                name,
                obj,
                None,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=type_opts,
            )
        )

    async def aadd(
        self,
        name: str,
        obj: Any,
        *,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        **type_opts: Any,
    ) -> DataFolio:
        """Async twin of :meth:`add`."""
        return await _portal.acall(
            _kw(
                self._add,
                name,
                obj,
                None,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=type_opts,
            )
        )

    def add_model(
        self,
        name: str,
        model: Any,
        *,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        custom: bool = False,
    ) -> DataFolio:
        """Store any picklable object as a model (joblib; skops with ``custom=True``)."""
        return _portal.call(
            _kw(
                self._add,
                name,
                model,
                "model",
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts={"custom": custom},
            )
        )

    async def aadd_model(
        self,
        name: str,
        model: Any,
        *,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        custom: bool = False,
    ) -> DataFolio:
        """Async twin of :meth:`add_model`."""
        return await _portal.acall(
            _kw(
                self._add,
                name,
                model,
                "model",
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts={"custom": custom},
            )
        )

    def add_file(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        category: str | None = None,
        description: str | None = None,
        overwrite: bool = False,
    ) -> DataFolio:
        """Copy a local file into the bundle (default name: the file name without extension)."""
        source = os.fspath(path)  # a missing file raises FileNotFoundError when serialized
        return _portal.call(
            _kw(
                self._add,
                name or Path(source).stem,
                source,
                "artifact",
                description=description,
                overwrite=overwrite,
                opts={"category": category},
            )
        )

    async def aadd_file(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        category: str | None = None,
        description: str | None = None,
        overwrite: bool = False,
    ) -> DataFolio:
        """Async twin of :meth:`add_file`."""
        source = os.fspath(path)
        return await _portal.acall(
            _kw(
                self._add,
                name or Path(source).stem,
                source,
                "artifact",
                description=description,
                overwrite=overwrite,
                opts={"category": category},
            )
        )

    def reference_table(
        self,
        name: str,
        path: str,
        table_format: str = "parquet",
        *,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        **opts: Any,
    ) -> DataFolio:
        """Record an external table (parquet or csv) by its path; nothing is copied."""
        return _portal.call(
            _kw(
                self._reference_table,
                name,
                path,
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=opts,
            )
        )

    async def areference_table(
        self,
        name: str,
        path: str,
        table_format: str = "parquet",
        *,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        **opts: Any,
    ) -> DataFolio:
        """Async twin of :meth:`reference_table`."""
        return await _portal.acall(
            _kw(
                self._reference_table,
                name,
                path,
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=opts,
            )
        )

    async def _reference_table(self, name: str, path: str, **kw: Any) -> DataFolio:
        self._writable(f"reference {name!r}")
        await self._session.reference_table(name, path, **kw)
        self._after_write()
        return self

    def delete(self, name: str | list[str]) -> DataFolio:
        """Delete one item or several in one commit (snapshot-pinned versions are kept)."""
        return _portal.call(self._delete, name)

    async def adelete(self, name: str | list[str]) -> DataFolio:
        """Async twin of :meth:`delete`."""
        return await _portal.acall(self._delete, name)

    async def _delete(self, name: str | list[str]) -> DataFolio:
        self._writable("delete items")
        await self._session.delete(name)
        self._after_write()
        return self

    # -- datafolio 1.x names ---------------------------------------------------------------------
    def add_table(self, name: str, df: Any, **kw: Any) -> DataFolio:
        """1.x name of :meth:`add` for tables."""
        return self.add(name, df, **kw)

    def add_numpy(self, name: str, array: Any, **kw: Any) -> DataFolio:
        """1.x name of :meth:`add` for arrays."""
        return self.add(name, array, **kw)

    def add_json(self, name: str, data: Any, **kw: Any) -> DataFolio:
        """1.x name of :meth:`add` for JSON data."""
        return self.add(name, data, **kw)

    def add_timestamp(self, name: str, timestamp: Any, **kw: Any) -> DataFolio:
        """1.x name of :meth:`add` for timestamps."""
        return self.add(name, timestamp, **kw)

    def add_data(self, name: str, data: Any, **kw: Any) -> DataFolio:
        """1.x name of :meth:`add`."""
        return self.add(name, data, **kw)

    def add_artifact(self, name: str, path: str | os.PathLike[str], **kw: Any) -> DataFolio:
        """1.x name of :meth:`add_file` (name first)."""
        return self.add_file(path, name, **kw)

    def get_table(self, name: str, **opts: Any) -> Any:
        """1.x name of :meth:`get` for tables."""
        return self.get(name, **opts)

    def get_numpy(self, name: str, **opts: Any) -> Any:
        """1.x name of :meth:`get` for arrays."""
        return self.get(name, **opts)

    def get_json(self, name: str) -> Any:
        """1.x name of :meth:`get` for JSON data."""
        return self.get(name)

    def get_timestamp(self, name: str, as_unix: bool = False) -> Any:
        """1.x name of :meth:`get` for timestamps."""
        return self.get(name, as_unix=as_unix)

    def get_data(self, name: str, **opts: Any) -> Any:
        """1.x name of :meth:`get`."""
        return self.get(name, **opts)

    def get_table_path(self, name: str) -> str:
        """1.x name of :meth:`item_path` for tables."""
        return self.item_path(name)

    def get_artifact_path(self, name: str) -> str:
        """1.x: the local path of an artifact (downloaded for remote bundles)."""
        return str(self.get(name))

    # Async twins of the 1.x names.
    async def aadd_table(self, name: str, df: Any, **kw: Any) -> DataFolio:
        """Async twin of :meth:`add_table`."""
        return await self.aadd(name, df, **kw)

    async def aadd_numpy(self, name: str, array: Any, **kw: Any) -> DataFolio:
        """Async twin of :meth:`add_numpy`."""
        return await self.aadd(name, array, **kw)

    async def aadd_json(self, name: str, data: Any, **kw: Any) -> DataFolio:
        """Async twin of :meth:`add_json`."""
        return await self.aadd(name, data, **kw)

    async def aadd_timestamp(self, name: str, timestamp: Any, **kw: Any) -> DataFolio:
        """Async twin of :meth:`add_timestamp`."""
        return await self.aadd(name, timestamp, **kw)

    async def aadd_data(self, name: str, data: Any, **kw: Any) -> DataFolio:
        """Async twin of :meth:`add_data`."""
        return await self.aadd(name, data, **kw)

    async def aadd_artifact(self, name: str, path: str | os.PathLike[str], **kw: Any) -> DataFolio:
        """Async twin of :meth:`add_artifact`."""
        return await self.aadd_file(path, name, **kw)

    async def aget_table(self, name: str, **opts: Any) -> Any:
        """Async twin of :meth:`get_table`."""
        return await self.aget(name, **opts)

    async def aget_numpy(self, name: str, **opts: Any) -> Any:
        """Async twin of :meth:`get_numpy`."""
        return await self.aget(name, **opts)

    async def aget_json(self, name: str) -> Any:
        """Async twin of :meth:`get_json`."""
        return await self.aget(name)

    async def aget_timestamp(self, name: str, as_unix: bool = False) -> Any:
        """Async twin of :meth:`get_timestamp`."""
        return await self.aget(name, as_unix=as_unix)

    async def aget_data(self, name: str, **opts: Any) -> Any:
        """Async twin of :meth:`get_data`."""
        return await self.aget(name, **opts)

    async def aget_artifact_path(self, name: str) -> str:
        """Async twin of :meth:`get_artifact_path`."""
        return str(await self.aget(name))

    def get_item(self, name: str) -> Item:  # pragma: no cover - tiny accessor
        """The manifest item (read-only view), for advanced use."""
        return self._item(name)

    def item_names(self) -> list[str]:
        """Names of the current items."""
        return self._names()
