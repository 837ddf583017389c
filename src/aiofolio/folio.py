"""``DataFolio``: the public object, with datafolio's sync methods and their async twins.

Owns: construction (datafolio 2.3.0's parameters: aliases, ``use_https``, half-created
folders), the bundle ``metadata`` (:class:`MetadataDict`) and the writes of items (``add``,
``add_model``, ``add_file``, ``reference_table``, ``delete``). The rest of the surface comes
from mixins over :class:`~aiofolio._folio_base.FolioBase`: reads, ``data``, ``pinned`` and
``batch`` (:mod:`aiofolio._folio_reading`), snapshots (:mod:`aiofolio._folio_snapshots`),
curation and lineage (:mod:`aiofolio._folio_curation`), the 1.x names
(:mod:`aiofolio._folio_compat`) and the cache methods (:mod:`aiofolio._folio_cache`).
Every sync method runs a coroutine of
:class:`~aiofolio.engine.session.BundleSession` on the engine thread through
:mod:`aiofolio._portal`; every async twin (``aget``, ``aadd``, ...) awaits the same coroutine
from the caller's loop (both through one private coroutine method, ``_add``, ``_delete``,
...). There is no second, sync implementation, and no I/O here.
"""

from __future__ import annotations

import copy
import os
import secrets
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiofolio import _portal, _registry
from aiofolio._calls import kw as _kw
from aiofolio._folio_admin import AdminMethods
from aiofolio._folio_base import FolioBase
from aiofolio._folio_cache import CacheMethods
from aiofolio._folio_compat import CompatMethods
from aiofolio._folio_curation import CurationMethods
from aiofolio._folio_display import DisplayMethods
from aiofolio._folio_reading import ReadingMethods
from aiofolio._folio_sharing import SharingMethods
from aiofolio._folio_snapshots import SnapshotMethods
from aiofolio._seed_compat import large_file_policy
from aiofolio.backends import scheme_of
from aiofolio.bundle import Item, detect_item_type
from aiofolio.bundle.curation import dependents_of
from aiofolio.config import UNSET, apply_logging, resolve_settings
from aiofolio.engine._runtime import aclose_engine
from aiofolio.engine.session import BundleSession, normalize_bundle_url
from aiofolio.engine.storage import convert_to_reference
from aiofolio.errors import ArgumentTypeError, InvalidArgumentError, LargeFileWarning, UsageError
from aiofolio.policy.largefiles import human_size, is_large

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["DataFolio", "MetadataDict"]

_STANDARD_DIRS = frozenset({"tables", "models", "artifacts"})
_DERIVED_FILES = frozenset({"README.md", "CONTENTS.md", "items.json.lock"})


_portal.add_shutdown_callback(aclose_engine)  # network clients close with the loop


def is_half_created(root: Path) -> bool:
    """A folder a crashed creation left: only empty ``tables/``, ``models/``, ``artifacts/``
    (and derived files), no manifest. Opening it initialises the bundle."""
    try:
        for child in root.iterdir():
            if child.name in _STANDARD_DIRS and child.is_dir():
                if any(child.iterdir()):
                    return False
            elif child.name not in _DERIVED_FILES:
                return False
    except OSError:
        return False
    return True


def https_url(url: str, storage_options: Mapping[str, Any] | None) -> str:
    """The plain HTTPS URL of an ``s3://`` or ``gs://`` bundle (``use_https=True``).

    An ``endpoint_url`` in ``storage_options`` gives a path-style URL on that endpoint.
    """
    scheme = scheme_of(url)
    if scheme not in ("s3", "gs"):
        return url
    parts = urlsplit(url)
    bucket, prefix = parts.netloc, parts.path.lstrip("/")
    endpoint = (storage_options or {}).get("endpoint_url")
    if endpoint is None:
        client = (storage_options or {}).get("client_kwargs") or {}
        endpoint = client.get("endpoint_url") if isinstance(client, Mapping) else None
    if endpoint:
        return f"{str(endpoint).rstrip('/')}/{bucket}/{prefix}".rstrip("/")
    if scheme == "gs":
        return f"https://storage.googleapis.com/{bucket}/{prefix}".rstrip("/")
    return f"https://{bucket}.s3.amazonaws.com/{prefix}".rstrip("/")


def _reference_opts(
    num_rows: int | None,
    version: int | None,
    allow_full_load: bool,
    polars_only: bool | None,
    is_directory: bool | None,
) -> dict[str, Any]:
    opts: dict[str, Any] = {"allow_full_load": allow_full_load}
    if num_rows is not None:
        opts["num_rows"] = num_rows
    if version is not None:
        opts["version"] = version
    if polars_only is not None:
        opts["polars_only"] = polars_only
    if is_directory is not None:
        opts["is_directory"] = is_directory
    return opts


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


class DataFolio(
    SnapshotMethods,
    CurationMethods,
    DisplayMethods,
    ReadingMethods,
    CompatMethods,
    CacheMethods,
    AdminMethods,
    SharingMethods,
    FolioBase,
):
    """A DataFolio bundle on S3, GCS, HTTP(S) or local disk.

    Method names and parameters follow the ``datafolio`` package (2.3.0, plus the 1.x names).
    Every I/O method has an async twin with an ``a`` prefix (``get``/``aget``, ...).

    Args:
        path: the bundle: ``s3://bucket/prefix``, ``gs://bucket/prefix``, ``https://...``
            (read-only), ``file://...`` or a local path. May be omitted when ``alias`` names a
            registered folio.
        metadata: metadata for a NEW bundle (ignored when opening an existing one; edit
            ``folio.metadata`` instead).
        random_suffix: append a random suffix to the bundle name when creating it.
        read_only: refuse every write.
        allow_existing: allow creating a bundle in an existing, non-empty local folder.
        use_https: read an ``s3://`` or ``gs://`` bundle over plain HTTPS (public buckets;
            read-only). With ``storage_options={"endpoint_url": ...}`` the URL is path-style
            on that endpoint.
        max_eager_bytes: tables bigger than this (by recorded ``size_bytes``) refuse a full
            ``get`` unless ``columns=`` is given (:class:`~aiofolio.InvalidArgumentError`); ``None``
            disables the guard.
        alias: a name in the per-user folio registry datafolio keeps (``~/.datafolio``,
            ``$DATAFOLIO_HOME``). Without ``path``, opens the folio registered under it; with
            ``path``, registers the folio under it after opening.
        overwrite_alias: with ``path`` and ``alias``, rebind an alias that points elsewhere.
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
            and ``allow_existing`` is false, or neither ``path`` nor ``alias`` is given, or the
            alias points elsewhere (also a ``ValueError``).
        ItemNotFoundError: ``alias`` without ``path`` is not registered (a ``KeyError``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        random_suffix: bool = False,
        read_only: bool = False,
        allow_existing: bool = False,
        use_https: bool = False,
        max_eager_bytes: int | None = 500 * 1024 * 1024,
        alias: str | None = None,
        overwrite_alias: bool = False,
        create: bool = True,
        *,
        storage_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
        **settings: Any,
    ) -> None:
        target = self._target(path, alias, overwrite_alias)
        self._init_state(
            target,
            read_only=read_only,
            random_suffix=random_suffix,
            use_https=use_https,
            max_eager_bytes=max_eager_bytes,
            storage_options=storage_options,
            settings=settings,
            clock=clock,
        )
        self._check_local_folder(allow_existing=allow_existing, create=create)
        _portal.call(self._open, create, metadata)
        self._register(path, alias, overwrite_alias)

    @classmethod
    async def aopen(
        cls,
        path: str | os.PathLike[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        random_suffix: bool = False,
        read_only: bool = False,
        allow_existing: bool = False,
        use_https: bool = False,
        max_eager_bytes: int | None = 500 * 1024 * 1024,
        alias: str | None = None,
        overwrite_alias: bool = False,
        create: bool = True,
        *,
        storage_options: Mapping[str, Any] | None = None,
        clock: Callable[[], float] | None = None,
        **settings: Any,
    ) -> DataFolio:
        """Open (or create) a bundle without blocking the caller's event loop."""
        self = cls.__new__(cls)
        target = self._target(path, alias, overwrite_alias)
        self._init_state(
            target,
            read_only=read_only,
            random_suffix=random_suffix,
            use_https=use_https,
            max_eager_bytes=max_eager_bytes,
            storage_options=storage_options,
            settings=settings,
            clock=clock,
        )
        self._check_local_folder(allow_existing=allow_existing, create=create)
        await _portal.acall(self._open, create, metadata)
        self._register(path, alias, overwrite_alias)
        return self

    @staticmethod
    def _target(
        path: str | os.PathLike[str] | None, alias: str | None, overwrite_alias: bool
    ) -> str | os.PathLike[str]:
        """The bundle to open: ``path``, or the folio registered as ``alias``."""
        if path is None:
            if alias is None:
                raise InvalidArgumentError("DataFolio requires a path or an alias.")
            return _registry.get_alias(alias)
        if alias is not None:  # a bad or taken alias fails before anything is created
            _registry.validate_alias(alias)
            if not overwrite_alias:
                _registry.check_alias(alias, path)
        return path

    def _register(
        self, path: str | os.PathLike[str] | None, alias: str | None, overwrite_alias: bool
    ) -> None:
        if path is not None and alias is not None:
            _registry.set_alias(alias, self.path, overwrite=overwrite_alias)

    async def _open(self, create: bool, metadata: Mapping[str, Any] | None) -> None:
        self._created = await self._session.open(create=create, metadata=metadata)
        self._metadata = MetadataDict(self, self._metadata_source())
        if self._created:
            await self._session.write_docs(readme=True)

    def _init_state(
        self,
        path: str | os.PathLike[str],
        *,
        read_only: bool,
        random_suffix: bool,
        max_eager_bytes: int | None,
        storage_options: Mapping[str, Any] | None,
        settings: Mapping[str, Any],
        use_https: bool = False,
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
        if use_https:
            url = https_url(url, storage_options)
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
            and not allow_existing
            and not is_half_created(root)
        ):
            raise InvalidArgumentError(
                f"{root} exists, is not empty and is not a DataFolio bundle; pass "
                "allow_existing=True to create a bundle inside it (its files are left alone)"
            )

    # -- basic properties ------------------------------------------------------------------
    @property
    def path(self) -> str:
        """The bundle's location (an absolute path for local bundles)."""
        return self._session.url

    @property
    def read_only(self) -> bool:
        """Whether writes are refused (read-only folios, snapshot views, HTTP bundles)."""
        return self._session.read_only or self._snapshot is not None

    @property
    def revision(self) -> int:
        """The manifest revision as last loaded."""
        return self._view().revision

    @property
    def metadata(self) -> MetadataDict:
        """The bundle metadata (a snapshot view's: the snapshot's); setting a key commits it."""
        self._follow()
        return self._metadata

    @metadata.setter
    def metadata(self, value: Mapping[str, Any]) -> None:
        if value is self._metadata:  # ``folio.metadata |= {...}`` already committed
            return
        self._writable("change metadata")
        current = set(self._manifest.metadata)
        self._commit_metadata(dict(value), [k for k in current if k not in value])

    def __repr__(self) -> str:
        manifest = self._manifest
        text = (
            f"DataFolio(bundle_dir={self.path!r}, items={len(self._names(manifest=manifest))}, "
            f"snapshots={len(manifest.snapshots)})"
        )
        if self.read_only:
            text += " [READ-ONLY]"
        if self._snapshot is not None:
            text += f" [snapshot: {self._snapshot}]"
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle what rebuilds the folio elsewhere (:mod:`aiofolio._travel`): the URL, the
        storage options (secrets only with ``pickle_credentials=True``), the constructor
        settings but ``cache_dir``, and inside ``pinned()`` the pinned manifest. Unpickling
        opens a fresh folio in the receiving process (its own engine thread and cache)."""
        from aiofolio import _travel

        return (_travel.rebuild, (_travel.state_of(self),))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._names(manifest=self._view())

    def __len__(self) -> int:
        return len(self._names(manifest=self._view()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._names(manifest=self._view()))

    # -- plumbing --------------------------------------------------------------------------
    def _commit_metadata(self, changes: dict[str, Any], remove: list[str]) -> None:
        _portal.call(self._set_metadata, changes, remove)

    async def _acommit_metadata(self, changes: dict[str, Any], remove: list[str]) -> None:
        await _portal.acall(self._set_metadata, changes, remove)

    async def _set_metadata(self, changes: dict[str, Any], remove: list[str]) -> None:
        self._writable("change metadata")
        await self._session.set_metadata(changes, remove)
        self._after_write()

    # -- writing ---------------------------------------------------------------------------------
    async def _add(
        self,
        name: str,
        obj: Any,
        item_type: str | None,
        *,
        force_include: bool = False,
        as_reference: bool = False,
        **kw: Any,
    ) -> Self:
        self._writable(f"add {name!r}")
        if force_include and as_reference:
            raise InvalidArgumentError("pass force_include=True or as_reference=True, not both")
        if as_reference:
            kind = item_type or detect_item_type(obj)
            if kind != "included_table":
                raise ArgumentTypeError(f"as_reference=True needs a table; {name!r} is {kind}")
            if self._session.staging:
                raise UsageError("as_reference=True cannot run inside a batch() block")
        policy = large_file_policy()
        by_policy = policy.default_action == "reference" and not (force_include or as_reference)
        quiet = as_reference or by_policy or not policy.warn_on_include  # the engine's warning
        item = await self._session.add(name, obj, item_type=item_type, warn_large=not quiet, **kw)
        if by_policy and self._large_table(item) and not self._session.staging:
            as_reference = True
            warnings.warn(
                LargeFileWarning(
                    f"{name!r} is {human_size(item.size_bytes or 0)}, above the large-file "
                    f"threshold ({human_size(self.settings.large_file_threshold)}): stored as "
                    f"a REFERENCE to its payload. To include it, use add({name!r}, ..., "
                    "force_include=True)"
                ),
                stacklevel=4,
            )
        if as_reference:  # the seed's: the payload stays where it is, the bundle links it
            await convert_to_reference(self._session, name, None)
        self._after_write()
        return self

    def _large_table(self, item: Item) -> bool:
        return item.item_type == "included_table" and is_large(
            item.size_bytes, self.settings.large_file_threshold
        )

    def add(
        self,
        name: str,
        obj: Any,
        *,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        force_include: bool = False,
        as_reference: bool = False,
        **type_opts: Any,
    ) -> Self:
        """Store ``obj`` as item ``name``; its type picks the format.

        DataFrame/Series → Parquet table; ndarray → ``.npy``; dict, list or scalar → JSON;
        timezone-aware datetime → timestamp; scikit-learn estimator → model.

        The caching seed's options: ``as_reference=True`` stores a table as a reference to
        its payload; ``force_include=True`` keeps a large table included when
        ``configure_large_file_policy(default_action="reference")`` would reference it.

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
                force_include=force_include,
                as_reference=as_reference,
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
        force_include: bool = False,
        as_reference: bool = False,
        **type_opts: Any,
    ) -> Self:
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
                force_include=force_include,
                as_reference=as_reference,
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
    ) -> Self:
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
    ) -> Self:
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
    ) -> Self:
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
    ) -> Self:
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
        path: str | os.PathLike[str],
        table_format: str = "parquet",
        num_rows: int | None = None,
        version: int | None = None,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        allow_full_load: bool = False,
        polars_only: bool | None = None,
        *,
        is_directory: bool | None = None,
    ) -> Self:
        """Record an external table (parquet or csv) by its path; nothing is read or copied.

        ``num_rows`` and ``version`` are recorded as given; ``allow_full_load`` exempts the
        table from ``max_eager_bytes``; ``polars_only`` (default: inferred from the layout)
        marks a dataset that pandas cannot load whole. Use :meth:`inspect_table` to record
        its schema and size.

        Raises:
            ValueError: a bad name or format, or an existing name without ``overwrite``.
        """
        return _portal.call(
            _kw(
                self._reference_table,
                name,
                os.fspath(path),
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=_reference_opts(num_rows, version, allow_full_load, polars_only, is_directory),
            )
        )

    async def areference_table(
        self,
        name: str,
        path: str | os.PathLike[str],
        table_format: str = "parquet",
        num_rows: int | None = None,
        version: int | None = None,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        allow_full_load: bool = False,
        polars_only: bool | None = None,
        *,
        is_directory: bool | None = None,
    ) -> Self:
        """Async twin of :meth:`reference_table`."""
        return await _portal.acall(
            _kw(
                self._reference_table,
                name,
                os.fspath(path),
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                opts=_reference_opts(num_rows, version, allow_full_load, polars_only, is_directory),
            )
        )

    async def _reference_table(self, name: str, path: str, **kw: Any) -> Self:
        self._writable(f"reference {name!r}")
        await self._session.reference_table(name, path, **kw)
        self._after_write()
        return self

    def delete(self, name: str | list[str], warn_dependents: bool = True) -> Self:
        """Delete one item or several in one commit (snapshot-pinned versions are kept).

        With ``warn_dependents`` a :class:`UserWarning` names the items whose inputs include
        a deleted one (their lineage breaks).

        Raises:
            ItemNotFoundError: a name has no item (a ``KeyError``); nothing is deleted.
        """
        self._warn_dependents(name, warn_dependents)
        return _portal.call(self._delete, name)

    async def adelete(self, name: str | list[str], warn_dependents: bool = True) -> Self:
        """Async twin of :meth:`delete`."""
        self._warn_dependents(name, warn_dependents)
        return await _portal.acall(self._delete, name)

    def _warn_dependents(self, name: str | list[str], warn: bool) -> None:
        if not warn:
            return
        manifest = self._manifest  # a write never follows other writers (it fails instead)
        for one in [name] if isinstance(name, str) else list(name):
            if one not in manifest:
                continue
            users = [n for n in dependents_of(manifest.current_items(), one) if n != one]
            if users:
                warnings.warn(
                    f"Deleting {one!r} which is used by: {', '.join(users)}. Those items may "
                    "have broken lineage.",
                    UserWarning,
                    stacklevel=3,
                )

    async def _delete(self, name: str | list[str]) -> Self:
        self._writable("delete items")
        await self._session.delete(name)
        self._after_write()
        return self._self()
