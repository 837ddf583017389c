"""``DataFolio``: the public object, with datafolio's sync methods and their async twins.

Owns: argument handling, the datafolio 2.x method surface and the 1.x aliases. Every sync
method runs a coroutine of :class:`~aiofolio.engine.session.BundleSession` on the engine thread
through :mod:`aiofolio._portal`; every async twin (``aget``, ``aadd``, ...) awaits the same
coroutine from the caller's loop. There is no second, sync implementation, and no I/O here.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from aiofolio import _portal
from aiofolio._progress import DownloadWatch, WarmBar, wants_progress
from aiofolio.bundle import REFERENCE_ITEM_TYPE, Item, Manifest, payload_path
from aiofolio.config import UNSET, Settings, configure, resolve_settings
from aiofolio.engine.cache import InvalidationCallback, drop_stores, get_store, stats_summary
from aiofolio.engine.revalidate import RefreshOutcome, revalidate_references, revalidate_sessions
from aiofolio.engine.session import MISS, BundleSession, normalize_bundle_url
from aiofolio.engine.warm import (
    WarmHandle,
    WarmJob,
    WarmResult,
    default_concurrency,
    large_slots,
    start_background,
)
from aiofolio.errors import ReadOnlyError

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


class MetadataDict(dict[str, Any]):
    """The bundle's metadata; every change is committed to the bundle at once.

    ``update`` commits once for all its keys. Commits go through the same conditional publish
    as every other write, so a concurrent writer raises
    :class:`~aiofolio.errors.ConcurrentWriteError` rather than being overwritten. Copies
    (``copy.copy``, ``copy.deepcopy``, pickling, ``.copy()``) are plain dicts.
    """

    def __init__(self, folio: DataFolio, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self._folio = folio

    def _commit(self, changes: Mapping[str, Any], remove: Iterable[str] = ()) -> None:
        self._folio._commit_metadata(dict(changes), list(remove))

    def __setitem__(self, key: str, value: Any) -> None:
        self._commit({key: value})

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self._commit({}, [key])

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._commit(dict(*args, **kwargs))

    def __ior__(self, other: Any) -> MetadataDict:  # type: ignore[override,misc]
        """``meta |= {...}`` commits like :meth:`update` (dict's own would not commit)."""
        self._commit(dict(other))
        return self

    def popitem(self) -> tuple[str, Any]:
        if not self:
            raise KeyError("popitem(): bundle metadata is empty")
        key = next(reversed(self))
        value = self[key]
        self._commit({}, [key])
        return key, value

    def pop(self, key: str, *default: Any) -> Any:
        if key not in self:
            if default:
                return default[0]
            raise KeyError(key)
        value = self[key]
        self._commit({}, [key])
        return value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self._commit({key: default})
        return self[key]

    def clear(self) -> None:
        raise TypeError("clearing bundle metadata is not supported; delete keys one by one")

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


def _threaded(fn: Callable[..., T], *args: Any) -> Callable[[], Awaitable[T]]:
    """A coroutine function running ``fn(*args)`` in a worker thread (disk work)."""

    async def run() -> T:
        import anyio.to_thread

        return await anyio.to_thread.run_sync(lambda: fn(*args))

    return run


class _hybrid:  # a decorator, named like one
    """A method that works on the class and on instances, getting whichever it was called on."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.__doc__ = fn.__doc__

    def __get__(self, obj: Any, owner: type | None = None) -> Callable[..., Any]:
        target = obj if obj is not None else owner
        return lambda *args, **kwargs: self.fn(target, *args, **kwargs)


def _kw(fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> Callable[[], Awaitable[T]]:
    """Bind keyword arguments (the portal passes positional ones only)."""

    async def bound() -> T:
        return await fn(*args, **kwargs)

    return bound


class DataFolio:
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
            ``get`` unless ``columns=`` is given; ``None`` disables the guard.
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
        self._created = _portal.call(_kw(self._session.open, create=create, metadata=metadata))
        self._metadata = MetadataDict(self, self._manifest.metadata)

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
        self._created = await _portal.acall(
            _kw(self._session.open, create=create, metadata=metadata)
        )
        self._metadata = MetadataDict(self, self._manifest.metadata)
        return self

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
        url = normalize_bundle_url(path)
        if random_suffix:
            url = f"{url}-{secrets.token_hex(3)}"
        self._resolved = resolve_settings(constructor=_settings_layer(settings))
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
            raise ValueError(f"{root} is a file, not a DataFolio bundle folder")
        if (
            root.is_dir()
            and not (root / "items.json").exists()
            and any(root.iterdir())
            and not allow_existing
        ):
            raise ValueError(
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
        self._writable("change metadata")
        _portal.call(self._session.set_metadata, changes, remove)
        self._after_write()

    def _check_eager(self, item: Item, opts: Mapping[str, Any]) -> None:
        limit = self._max_eager_bytes
        if limit is None or item.item_type != "included_table" or opts.get("columns"):
            return
        size = item.size_bytes
        if size is not None and size > limit and not item.get("allow_full_load", False):
            raise ValueError(
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
        return _portal.call(self._read_one, name, opts)

    async def aget(self, name: str, *, force_cache: bool = False, **opts: Any) -> Any:
        """Async twin of :meth:`get`."""
        value = self._fast_hit(name, opts)
        if value is not MISS:
            return value
        if force_cache:
            opts["force_cache"] = True
        return await _portal.acall(self._read_one, name, opts)

    def _fast_hit(self, name: str, opts: dict[str, Any]) -> Any:
        """A small cached item read in the caller's thread (no hop to the engine), or MISS.

        Saves the engine round trip on a hit within the TTL; see
        :meth:`~aiofolio.engine.session.BundleSession.read_hit_now` for when it applies.
        ``AIOFOLIO_HIT_FAST_PATH=0`` turns it off (read at each call, for benchmarks).
        """
        if os.environ.get("AIOFOLIO_HIT_FAST_PATH", "1") == "0" or _portal.in_engine_thread():
            return MISS
        return self._session.read_hit_now(
            name, opts, snapshot=self._snapshot, check=self._check_eager
        )

    async def _read_one(self, name: str, opts: dict[str, Any]) -> Any:
        with DownloadWatch(self.settings.progress) as watch:  # a bar for large downloads
            value = await self._session.get_named(
                name, dict(opts), snapshot=self._snapshot, check=watch.checking(self._check_eager)
            )
        return value

    def get_many(self, names: Iterable[str], **opts: Any) -> dict[str, Any]:
        """Several items at once, read concurrently; a dict by name."""
        return _portal.call(self._read_many, list(names), opts)

    async def aget_many(self, names: Iterable[str], **opts: Any) -> dict[str, Any]:
        """Async twin of :meth:`get_many`."""
        return await _portal.acall(self._read_many, list(names), opts)

    async def _read_many(self, names: Sequence[str], opts: Mapping[str, Any]) -> dict[str, Any]:
        import asyncio

        use_stale = bool(opts.get("use_stale", False))
        manifest = await self._session.current_manifest(use_stale=use_stale)
        items = [self._item_in(manifest, n) for n in names]  # fail fast on a bad name
        rest = {k: v for k, v in opts.items() if k != "use_stale"}
        for item in items:
            self._check_eager(item, rest)
        limit = asyncio.Semaphore(max(1, self.settings.parallel_downloads))

        async def one(item: Item) -> Any:
            async with limit:
                return await self._session.read_item(item, rest)

        values = await asyncio.gather(*(one(i) for i in items))
        return dict(zip(names, values, strict=True))

    def get_path(self, name: str) -> str:
        """The local path of the item's payload, cached first if needed.

        For zero-copy readers: ``pyarrow.memory_map``, ``np.load(path, mmap_mode="r")``. The
        file is read-only; do not modify it. For local bundles it is the payload itself.
        """
        return _portal.call(_kw(self._session.get_path_named, name, snapshot=self._snapshot))

    async def aget_path(self, name: str) -> str:
        """Async twin of :meth:`get_path`."""
        return await _portal.acall(_kw(self._session.get_path_named, name, snapshot=self._snapshot))

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
        _portal.call(_kw(self._session.load, force=True))
        self._after_write()
        return self

    async def arefresh(self) -> DataFolio:
        """Async twin of :meth:`refresh`."""
        await _portal.acall(_kw(self._session.load, force=True))
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
        return all(self.validate().values())

    # -- the cache ---------------------------------------------------------------------------
    def cache_status(self, name: str) -> dict[str, Any]:
        """Whether ``name`` is cached, where, how big, since when, and whether it verifies.

        Keys: ``cached``, ``cache_path``, ``size_bytes``, ``cached_at``, ``last_verified``,
        ``ttl_expires_in``, ``checksum_valid``, ``access_count``.
        """
        item = self._item(name)
        cache = self._session.require_cache()
        return _portal.call(_threaded(cache.status, item))

    @_hybrid
    def cache_stats(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """Cache counters: hits, misses, remote checks, bytes downloaded and served, hit rate.

        On a folio, the figures of its bundle; on the class (``DataFolio.cache_stats()``), of
        the whole cache. They add up across processes that share the cache folder.
        """
        if isinstance(self_or_cls, DataFolio):
            store = self_or_cls._session.require_cache().store
            return stats_summary(store.stats.totals(self_or_cls.path))
        store = get_store(cache_dir or resolve_settings().settings.cache_dir)
        return stats_summary(store.stats.totals(None))

    def refresh_item(self, name: str, force: bool = True) -> DataFolio:
        """Revalidate now (``force``) and fetch ``name`` again if it changed."""
        _portal.call(self._refresh_item, name, force)
        self._after_write()
        return self

    async def _refresh_item(self, name: str, force: bool) -> None:
        manifest = await self._session.load(force=force)
        item = self._item_in(manifest, name)
        if self._session.cache is not None and not item.is_reference:
            await self._session.blob_path(item)

    def refresh_cache(self) -> DataFolio:
        """Revalidate the whole bundle now (one conditional request)."""
        return self.refresh()

    def invalidate_cache(self, name: str | None = None) -> DataFolio:
        """Forget the cached copy of ``name`` (all items when None); the next read fetches it."""
        cache = self._session.require_cache()
        if name is not None:
            self._item(name)
        _portal.call(_threaded(cache.invalidate, name))
        return self

    def clear_cache(self) -> DataFolio:
        """Forget this bundle's cached manifest and items."""
        cache = self._session.require_cache()
        _portal.call(_threaded(cache.store.records.delete, self.path))
        return self

    @classmethod
    def clear_all_caches(cls, cache_dir: str | None = None) -> int:
        """Delete every cached bundle and blob in the cache folder; returns bytes freed."""
        import shutil

        root = Path(cache_dir or resolve_settings().settings.cache_dir) / "v1"
        freed = 0
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    freed += path.stat().st_size
            shutil.rmtree(root, ignore_errors=True)
        drop_stores()
        return freed

    @classmethod
    def configure_cache(cls, **settings: Any) -> None:
        """Process-wide cache settings, below constructor arguments and above the environment.

        Accepts any setting name (``cache_ttl="30m"``, ``max_cache_size="50GB"``, ...); a
        bad name or value raises :class:`~aiofolio.errors.ConfigError`. Folios opened after
        the call use them.
        """
        configure(**settings)

    def on_cache_invalidation(self, callback: InvalidationCallback) -> InvalidationCallback:
        """Call ``callback(old_info, new_info)`` when a remote change drops a cached item.

        It runs on aiofolio's event-loop thread: keep it short, and use async methods
        (``await folio.aget(...)``) inside it, not sync ones. Usable as a decorator.
        """
        cache = self._session.require_cache()
        cache.callbacks.append(callback)
        return callback

    # -- warm_cache and progress (issue 6: owned by the warm change) -------------------------
    def _warm_job(
        self,
        items: str | Iterable[str] | None,
        concurrency: int | None,
        progress: bool | None,
    ) -> WarmJob:
        """Check the request (before anything starts) and build the job."""
        from aiofolio.errors import CacheError

        names: list[str] | None = None
        if items is not None:
            names = list(dict.fromkeys([items] if isinstance(items, str) else items))
            for name in names:
                self._item(name)  # ItemNotFoundError now, not in the background
        session = self._session
        if not session.is_local:
            cache = session.require_cache()  # CacheError: caching is off
            if cache.settings.cache_mode == "read-only":
                raise CacheError(
                    f"the cache of {self.path} is read-only (cache_mode='read-only'): "
                    "warm_cache cannot fill it"
                )
        limit = default_concurrency(self.settings.parallel_downloads)
        if concurrency is not None:
            if concurrency < 1:
                raise ValueError(f"concurrency must be at least 1, got {concurrency}")
            limit = concurrency
        snapshot = self._snapshot

        def select(manifest: Manifest) -> list[Item]:
            if names is not None:
                return [self._item_in(manifest, n) for n in names]
            if snapshot is not None:
                return list(manifest.snapshot_items(snapshot).values())
            return [i for i in manifest.current_items().values() if not i.archived]

        def skip(item: Item) -> bool:  # large, and cache_large_files=False: not cached
            cache = session.cache
            return cache is not None and session._bypasses_cache(cache, item, False)

        bar = None
        if wants_progress(progress, self.settings.progress):
            bar = WarmBar(f"warming {self.path.rstrip('/').rsplit('/', 1)[-1]}")
        return WarmJob(
            fetch=session.blob_path,
            manifest=session.current_manifest,
            select=select,
            concurrency=limit,
            large=large_slots(limit, self.settings.parallel_downloads),
            large_size=self.settings.parallel_threshold,
            listener=bar.update if bar is not None else None,
            on_finish=bar.close if bar is not None else None,
            skip=skip,
        )

    @overload
    def warm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[False] = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult: ...

    @overload
    def warm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[True],
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmHandle: ...

    def warm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: bool = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult | WarmHandle:
        """Fetch items into the cache now, so later reads are hits.

        Every item is downloaded and verified exactly as ``get`` would (a ``get`` of an item
        being warmed joins its download), ``concurrency`` items at a time; referenced tables
        are cached too (one ``stat`` each when their TTL has passed). Foreground reads are not
        held back by the warm's limit.

        Args:
            items: A name or names (default: every current, non-archived item; for a
                snapshot view, the snapshot's items).
            background: Return a :class:`~aiofolio.WarmHandle` at once instead of waiting.
            concurrency: Items downloading at once; default ``4 * parallel_downloads`` (32).
                Large (chunked) items take at most half the connections: with the defaults,
                2 at a time, leaving the rest free for foreground reads.
            progress: Draw a rich progress bar (default: the ``progress`` setting, i.e. when
                stderr is a terminal or in a notebook; ``False`` never draws).

        Returns:
            A :class:`~aiofolio.WarmResult` (cached names, failed names with their
            exceptions; one failure does not stop the rest; large items that
            ``cache_large_files=False`` keeps out of the cache are ``skipped``), or the handle.

        Raises:
            ItemNotFoundError: an unknown name (before anything starts).
            CacheError: the bundle is remote and not cached, or the cache is read-only.
        """
        job = self._warm_job(items, concurrency, progress)
        if background:
            return WarmHandle(job, _portal.call(start_background, job))
        return _portal.call(job.run)

    @overload
    async def awarm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[False] = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult: ...

    @overload
    async def awarm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[True],
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmHandle: ...

    async def awarm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: bool = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult | WarmHandle:
        """Async twin of :meth:`warm_cache` (the handle is awaitable: ``await handle``)."""
        job = self._warm_job(items, concurrency, progress)
        if background:
            return WarmHandle(job, await _portal.acall(start_background, job))
        return await _portal.acall(job.run)

    def refresh_references(self, *, concurrency: int = 16) -> dict[str, RefreshOutcome]:
        """Revalidate every cached remote referenced table now, whatever the TTL.

        One ``stat`` of each external object, ``concurrency`` at a time. An unchanged table
        keeps its cached copy (its check time moves); a changed one's copy is dropped, so the
        next read fetches it. Tables never read yet report ``"uncached"``; failures report
        ``"error"`` with the exception, per table.

        Returns:
            A :class:`~aiofolio.RefreshOutcome` per referenced table, by item name.

        Raises:
            CacheError: the bundle is not cached.
        """
        return _portal.call(revalidate_references, self._session, concurrency)

    async def arefresh_references(self, *, concurrency: int = 16) -> dict[str, RefreshOutcome]:
        """Async twin of :meth:`refresh_references`."""
        return await _portal.acall(revalidate_references, self._session, concurrency)

    @classmethod
    def refresh_all(
        cls, folios: Iterable[DataFolio], *, concurrency: int = 16
    ) -> list[RefreshOutcome]:
        """Revalidate many folios at once: one conditional manifest request each.

        Also available as ``aiofolio.refresh_all``. A changed bundle drops only its changed
        items from the cache (with :class:`~aiofolio.RemoteUpdateWarning`), as a TTL expiry
        would. Failures are reported per folio, never raised.

        Returns:
            A :class:`~aiofolio.RefreshOutcome` per folio, in order: ``status`` is
            ``"changed"``, ``"unchanged"`` or ``"error"`` (with ``error``); ``folio`` is the
            folio, ``changed_items`` the names the new manifest changed.
        """
        chosen = list(folios)
        outcomes = _portal.call(revalidate_sessions, [f._session for f in chosen], concurrency)
        return cls._after_refresh_all(chosen, outcomes)

    @classmethod
    async def arefresh_all(
        cls, folios: Iterable[DataFolio], *, concurrency: int = 16
    ) -> list[RefreshOutcome]:
        """Async twin of :meth:`refresh_all` (also ``aiofolio.arefresh_all``)."""
        chosen = list(folios)
        outcomes = await _portal.acall(
            revalidate_sessions, [f._session for f in chosen], concurrency
        )
        return cls._after_refresh_all(chosen, outcomes)

    @staticmethod
    def _after_refresh_all(
        folios: Sequence[DataFolio], outcomes: Sequence[RefreshOutcome]
    ) -> list[RefreshOutcome]:
        import dataclasses

        for folio, outcome in zip(folios, outcomes, strict=True):
            if outcome.status != "error":
                folio._after_write()
        return [dataclasses.replace(o, folio=f) for f, o in zip(folios, outcomes, strict=True)]

    # (end of warm section)

    # -- cache limits, pins, priorities, maintenance (issue 7: owned by the eviction change) ---
    def _limits_target(self_or_cls: Any, cache_dir: str | None) -> tuple[Any, Settings]:
        """The store and settings a limits method works on (a folio's, or the resolved ones)."""
        if isinstance(self_or_cls, DataFolio) and cache_dir is None:
            return self_or_cls._session.require_cache().store, self_or_cls.settings
        settings = resolve_settings().settings
        return get_store(cache_dir or settings.cache_dir), settings

    def _set_prefs(self, name: str, **changes: Any) -> DataFolio:
        import msgspec

        from aiofolio.engine import limits

        self._item(name)  # a clear error for an unknown name
        store = self._session.require_cache().store
        prefs = limits.prefs_of(store)

        def change(old: Any) -> Any:
            return msgspec.structs.replace(old, **changes)

        _portal.call(_threaded(prefs.update, self.path, name, change))
        return self

    def set_cache_priority(self, name: str, priority: int) -> DataFolio:
        """Keep ``name`` longer (higher ``priority``) or shorter (lower) when evicting.

        Eviction takes lower priorities first and applies the policy (LRU, LFU, FIFO) within
        a priority. The default is 0. It is saved in the cache folder, for this bundle's item
        name (whatever version is cached), and lasts across processes until changed.
        """
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise TypeError(f"a cache priority is an int, not {priority!r}")
        return self._set_prefs(name, priority=priority)

    def pin_cache(self, name: str) -> DataFolio:
        """Never evict ``name`` from the cache (by any limit or ``cleanup_cache``).

        The pin is saved in the cache folder and survives restarts; it does not download the
        item (``get`` or ``warm_cache`` does). ``invalidate_cache``/``clear_cache`` still
        drop the copy; ``unpin_cache`` lifts the pin.
        """
        return self._set_prefs(name, pinned=True)

    def unpin_cache(self, name: str) -> DataFolio:
        """Let ``name`` be evicted again (see :meth:`pin_cache`)."""
        return self._set_prefs(name, pinned=False)

    @_hybrid
    def enforce_cache_limit(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """Evict now: if the cache is over ``max_cache_size``, down to the eviction threshold.

        On a folio, with its settings; on the class, with the resolved settings. Pinned and
        in-use items stay. Returns ``evicted`` (blobs), ``items`` (``"url::name"`` entries
        dropped), ``bytes_freed``, ``total_before``, ``total_after``, ``limit``, ``reached``.
        """
        from aiofolio.engine import limits

        store, settings = DataFolio._limits_target(self_or_cls, cache_dir)
        result = _portal.call(_threaded(limits.enforce, store, settings))
        return result.as_dict()

    @_hybrid
    def cleanup_cache(
        self_or_cls: Any, older_than: str | float = "7d", cache_dir: str | None = None
    ) -> dict[str, Any]:
        """Evict every item not read for ``older_than`` (``"7d"``, ``"12h"``, seconds).

        Works on the whole cache folder (also when called on a folio). Pinned and in-use
        items stay. Returns ``evicted`` (count), ``bytes_freed`` and the details of
        :meth:`enforce_cache_limit`.
        """
        from aiofolio.config import parse_duration
        from aiofolio.engine import limits

        seconds = parse_duration(older_than, source="older_than")
        if seconds is None:
            raise ValueError("cleanup_cache needs a finite older_than")
        store, settings = DataFolio._limits_target(self_or_cls, cache_dir)
        result = _portal.call(_threaded(limits.cleanup, store, settings, seconds))
        return result.as_dict()

    @_hybrid
    def cache_info(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """The cache folder at a glance (gaggle's ``cache_info`` keys, and more).

        Keys: ``path``, ``type``, ``size_bytes``, ``size_mb``, ``limit_bytes``, ``limit_mb``,
        ``usage_percent`` (None when unlimited), ``is_soft_limit``, ``policy``,
        ``eviction_threshold``, ``bundles``, ``items``, ``blobs`` (shared blobs count once),
        ``pinned``, ``prioritized``, ``in_use``, ``hits``, ``misses``, ``evictions``,
        ``hit_rate``, ``oldest_access``, ``newest_access`` (ISO 8601, UTC).
        """
        from aiofolio.engine import limits

        store, settings = DataFolio._limits_target(self_or_cls, cache_dir)
        info: dict[str, Any] = _portal.call(_threaded(limits.info, store, settings))
        return info

    @_hybrid
    def cleanup_orphaned_caches(
        self_or_cls: Any,
        cache_dir: str | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        concurrency: int = 8,
    ) -> dict[str, Any]:
        """Remove the cached bundles whose remote manifest (``items.json``) is gone.

        Every cached bundle is checked with one ``stat``, ``concurrency`` at a time; only a
        definite "not found" removes it (an unreachable remote keeps it). Blobs that only
        removed bundles used are deleted too. ``storage_options`` are used for every check
        (credentials, endpoint). Returns ``removed`` (bundle URLs), ``bundles`` (count),
        ``bytes_freed``.
        """
        return _portal.call(
            _kw(
                DataFolio._cleanup_orphans,
                self_or_cls,
                cache_dir,
                storage_options=storage_options,
                concurrency=concurrency,
            )
        )

    @_hybrid
    async def acleanup_orphaned_caches(
        self_or_cls: Any,
        cache_dir: str | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        concurrency: int = 8,
    ) -> dict[str, Any]:
        """Async twin of :meth:`cleanup_orphaned_caches`."""
        result: dict[str, Any] = await _portal.acall(
            _kw(
                DataFolio._cleanup_orphans,
                self_or_cls,
                cache_dir,
                storage_options=storage_options,
                concurrency=concurrency,
            )
        )
        return result

    @_hybrid
    async def aenforce_cache_limit(
        self_or_cls: Any, cache_dir: str | None = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`enforce_cache_limit`."""
        from aiofolio.engine import limits

        store, settings = DataFolio._limits_target(self_or_cls, cache_dir)
        result = await _portal.acall(_threaded(limits.enforce, store, settings))
        return result.as_dict()

    @_hybrid
    async def acleanup_cache(
        self_or_cls: Any, older_than: str | float = "7d", cache_dir: str | None = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`cleanup_cache`."""
        from aiofolio.config import parse_duration
        from aiofolio.engine import limits

        seconds = parse_duration(older_than, source="older_than")
        if seconds is None:
            raise ValueError("cleanup_cache needs a finite older_than")
        store, settings = DataFolio._limits_target(self_or_cls, cache_dir)
        result = await _portal.acall(_threaded(limits.cleanup, store, settings, seconds))
        return result.as_dict()

    @_hybrid
    async def acache_info(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`cache_info`."""
        from aiofolio.engine import limits

        store, settings = DataFolio._limits_target(self_or_cls, cache_dir)
        info: dict[str, Any] = await _portal.acall(_threaded(limits.info, store, settings))
        return info

    @staticmethod
    async def _cleanup_orphans(
        self_or_cls: Any,
        cache_dir: str | None,
        *,
        storage_options: Mapping[str, Any] | None,
        concurrency: int,
    ) -> dict[str, Any]:
        import anyio.to_thread

        from aiofolio.backends import join_url
        from aiofolio.engine import get_engine, limits

        store, settings = DataFolio._limits_target(self_or_cls, cache_dir)
        if storage_options is None and isinstance(self_or_cls, DataFolio):
            storage_options = self_or_cls._session.storage_options
        pool = get_engine().pool

        async def stat(url: str) -> object:
            backend = pool.get(
                url,
                storage_options,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            )
            return await backend.stat(join_url(url, "items.json"))

        gone = await limits.find_orphans(store, stat, concurrency=concurrency)
        freed = await anyio.to_thread.run_sync(lambda: limits.remove_bundles(store, gone))
        return {"removed": gone, "bundles": len(gone), "bytes_freed": freed}

    # (end of limits section)

    # -- large-file policy and references (issue 7: owned by the storage change) --------------
    def list_references(self) -> dict[str, dict[str, Any]]:
        """The referenced tables: name → ``path``, ``table_format``, ``size_bytes`` (None when
        not recorded) and ``is_directory``."""
        from aiofolio.engine.storage import list_references

        return list_references(self._manifest)

    def is_reference(self, name: str) -> bool:
        """Whether ``name`` is a referenced table (its data lives outside the bundle).

        Raises:
            ItemNotFoundError: no such item.
        """
        return self._item(name).is_reference

    def is_included(self, name: str) -> bool:
        """Whether ``name``'s data is stored inside the bundle (every item but a reference).

        Raises:
            ItemNotFoundError: no such item.
        """
        return self._item(name).owns_payload

    def convert_to_reference(self, name: str, path: str | None = None) -> dict[str, Any]:
        """Store the included table ``name`` as a ``referenced_table`` (a new revision).

        Without ``path`` the reference points at the table's existing payload in the bundle
        (``<bundle>/tables/<name>--r<N>.parquet``): nothing is copied and that file stays, but
        the bundle no longer owns it. With ``path`` (absolute, ``file://`` or a cloud URI) the
        verified payload is copied there first and the bundle's copy is deleted.

        Returns:
            ``{"name", "path", "bytes_saved"}``: the reference target, and the owned payload
            bytes the bundle no longer carries.

        Raises:
            ItemNotFoundError: no such item.
            UsageError: not a single-file included table (models, arrays, ... cannot be
                references), or ``path`` already holds other bytes.
            ValueError: a relative ``path``.
            ConcurrentWriteError: another writer published first; nothing was published.
        """
        self._writable(f"convert {name!r}")
        from aiofolio.engine.storage import convert_to_reference

        done = _portal.call(_kw(convert_to_reference, self._session, name, path))
        self._after_write()
        return done

    async def aconvert_to_reference(self, name: str, path: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`convert_to_reference`."""
        self._writable(f"convert {name!r}")
        from aiofolio.engine.storage import convert_to_reference

        done = await _portal.acall(_kw(convert_to_reference, self._session, name, path))
        self._after_write()
        return done

    def convert_to_included(self, name: str) -> dict[str, Any]:
        """Fetch the referenced table ``name`` and store it in the bundle (a new revision).

        A Parquet reference is copied byte for byte, a CSV one is read and written as Parquet.

        Returns:
            ``{"name", "path", "bytes_added"}``: the new payload's path inside the bundle and
            its size.

        Raises:
            ItemNotFoundError: no such item.
            UsageError: not a reference, or a directory dataset.
            ChecksumMismatchError: the data does not match a recorded checksum.
            ConcurrentWriteError: another writer published first; nothing was published.
        """
        self._writable(f"convert {name!r}")
        from aiofolio.engine.storage import convert_to_included

        done = _portal.call(_kw(convert_to_included, self._session, name))
        self._after_write()
        return done

    async def aconvert_to_included(self, name: str) -> dict[str, Any]:
        """Async twin of :meth:`convert_to_included`."""
        self._writable(f"convert {name!r}")
        from aiofolio.engine.storage import convert_to_included

        done = await _portal.acall(_kw(convert_to_included, self._session, name))
        self._after_write()
        return done

    def _storage_threshold(self, threshold: int | str | None) -> int:
        from aiofolio.config import parse_size

        if threshold is None:
            return self.settings.large_file_threshold
        size = parse_size(threshold, source="optimize_storage(threshold=...)")
        if size is None:
            raise ValueError("optimize_storage needs a finite threshold, not 'unlimited'")
        return size

    def optimize_storage(self, threshold: int | str | None = None) -> dict[str, Any]:
        """Convert every included table at or above ``threshold`` to a reference.

        Args:
            threshold: bytes or a size string (``"1GB"``); default ``large_file_threshold``.

        Returns:
            ``{"converted": [{"name", "path", "size_bytes"}, ...], "bytes_saved",
            "bundle_bytes_before", "bundle_bytes_after"}`` (owned payload bytes). Each
            conversion is its own commit, as :meth:`convert_to_reference` without a path.
        """
        self._writable("optimize storage")
        from aiofolio.engine.storage import optimize_storage

        limit = self._storage_threshold(threshold)
        done = _portal.call(_kw(optimize_storage, self._session, limit))
        self._after_write()
        return done

    async def aoptimize_storage(self, threshold: int | str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`optimize_storage`."""
        self._writable("optimize storage")
        from aiofolio.engine.storage import optimize_storage

        limit = self._storage_threshold(threshold)
        done = await _portal.acall(_kw(optimize_storage, self._session, limit))
        self._after_write()
        return done

    # (end of storage section)

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
    def _add(self, name: str, obj: Any, item_type: str | None, **kw: Any) -> DataFolio:
        self._writable(f"add {name!r}")
        _portal.call(_kw(self._session.add, name, obj, item_type=item_type, **kw))
        self._after_write()
        return self

    async def _aadd(self, name: str, obj: Any, item_type: str | None, **kw: Any) -> DataFolio:
        self._writable(f"add {name!r}")
        await _portal.acall(_kw(self._session.add, name, obj, item_type=item_type, **kw))
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
        return self._add(
            name,
            obj,
            None,
            description=description,
            inputs=inputs,
            overwrite=overwrite,
            opts=type_opts,
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
        return await self._aadd(
            name,
            obj,
            None,
            description=description,
            inputs=inputs,
            overwrite=overwrite,
            opts=type_opts,
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
        return self._add(
            name,
            model,
            "model",
            description=description,
            inputs=inputs,
            overwrite=overwrite,
            opts={"custom": custom},
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
        return await self._aadd(
            name,
            model,
            "model",
            description=description,
            inputs=inputs,
            overwrite=overwrite,
            opts={"custom": custom},
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
        item_name = name or Path(source).stem
        return self._add(
            item_name,
            source,
            "artifact",
            description=description,
            overwrite=overwrite,
            opts={"category": category},
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
        return await self._aadd(
            name or Path(source).stem,
            source,
            "artifact",
            description=description,
            overwrite=overwrite,
            opts={"category": category},
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
        self._writable(f"reference {name!r}")
        _portal.call(
            _kw(
                self._session.reference_table,
                name,
                path,
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=opts,
            )
        )
        self._after_write()
        return self

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
        self._writable(f"reference {name!r}")
        await _portal.acall(
            _kw(
                self._session.reference_table,
                name,
                path,
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=opts,
            )
        )
        self._after_write()
        return self

    def delete(self, name: str | list[str]) -> DataFolio:
        """Delete one item or several in one commit (snapshot-pinned versions are kept)."""
        self._writable("delete items")
        _portal.call(self._session.delete, name)
        self._after_write()
        return self

    async def adelete(self, name: str | list[str]) -> DataFolio:
        """Async twin of :meth:`delete`."""
        self._writable("delete items")
        await _portal.acall(self._session.delete, name)
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

    def get_item(self, name: str) -> Item:  # pragma: no cover - tiny accessor
        """The manifest item (read-only view), for advanced use."""
        return self._item(name)

    def item_names(self) -> list[str]:
        """Names of the current items."""
        return self._names()
