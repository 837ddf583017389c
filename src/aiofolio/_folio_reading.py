"""The read half of :class:`~aiofolio.DataFolio`: items, listings, ``data``, pinned reads.

Owns :class:`ReadingMethods` (a mixin): ``get``/``get_many``/``get_path``/``get_model``,
``item_path``/``item_info``/``list_contents`` and the ``tables``/``models``/``artifacts``
lists, ``validate``/``is_valid``/``refresh``, ``scan_table``, the ``data`` accessor
(:class:`DataAccessor`, :class:`ItemProxy`) and the two blocks datafolio 2.3.0 has:
``pinned()`` (every read inside sees one manifest revision; another writer's change is
invisible until the outermost block exits) and ``batch()`` (writes staged, one publish at
exit, nothing published on an exception). Reads run engine coroutines through
:mod:`aiofolio._portal`; inside a pinned block or a batch they resolve items against that
fixed manifest and read them with the session's ``read_item``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from aiofolio import _portal
from aiofolio._calls import kw as _kw
from aiofolio._folio_base import FolioBase
from aiofolio._progress import DownloadWatch
from aiofolio.bundle import REFERENCE_ITEM_TYPE, Item, Manifest, payload_path
from aiofolio.engine.session import MISS
from aiofolio.engine.tables import check_references
from aiofolio.errors import InvalidArgumentError, ItemNotFoundError, UsageError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["CONTENT_KEYS", "DataAccessor", "ItemProxy", "ReadingMethods"]

#: ``list_contents`` keys by item type, in datafolio's order.
CONTENT_KEYS = {
    "referenced_table": "referenced_tables",
    "included_table": "included_tables",
    "numpy_array": "numpy_arrays",
    "json_data": "json_data",
    "timestamp": "timestamps",
    "model": "models",
    "artifact": "artifacts",
}

_TABLE_TYPES = ("included_table", "referenced_table")


class ReadingMethods(FolioBase):
    """Reads of ``DataFolio`` (a mixin; see the module docstring)."""

    # -- the manifest of a read ----------------------------------------------------------------
    def _fixed(self) -> Manifest | None:
        """The manifest reads must use instead of revalidating: a pinned or a batch's one."""
        if self._pinned is not None:
            return self._pinned
        if self._session.staging:
            return self._session.working_manifest()
        return None

    def _check_eager(self, item: Item, opts: Mapping[str, Any]) -> None:
        limit = self._max_eager_bytes
        if limit is None or item.item_type not in _TABLE_TYPES or opts.get("columns"):
            return
        if opts.get("frame") == "polars" and item.is_reference:
            return
        size = item.size_bytes
        if size is not None and size > limit and not item.get("allow_full_load", False):
            raise InvalidArgumentError(
                f"table {item.name!r} is {size:,} bytes, above max_eager_bytes={limit:,}; "
                "read some columns with get(name, columns=[...]), scan it lazily with "
                "scan_table(name), or open the folio with max_eager_bytes=None"
            )

    # -- get -----------------------------------------------------------------------------------
    def get(self, name: str, *, force_cache: bool = False, **type_opts: Any) -> Any:
        """The item ``name`` as its natural object.

        Tables come back as pandas DataFrames (``columns=`` reads some columns,
        ``frame="polars"``/``"arrow"`` other frames), arrays as ndarrays (``mmap_mode=``
        for a memory map of a local payload), JSON as dicts/lists/scalars, timestamps as
        UTC datetimes, models as loaded objects, artifacts as a local file path.

        For a cached bundle the manifest is revalidated when the TTL has passed (one
        conditional request); ``use_stale=True`` serves the cached copy without asking.
        An uncached local bundle picks up another writer's newer revision first. Inside
        ``pinned()`` or ``batch()`` the block's manifest is used.

        With ``cache_large_files=False``, an item at or above ``large_file_threshold`` is
        downloaded (verified) to a private scratch file, read and deleted, never cached;
        ``force_cache=True`` caches it anyway.

        Raises:
            ItemNotFoundError: no such item (the message suggests close names).
            NotCachedError: offline, and the item is not cached.
        """
        self._follow()
        if self._fixed() is None:
            value = self._fast_hit(name, type_opts)
            if value is not MISS:
                return value
        return _portal.call(self._get_call(name, force_cache, type_opts))

    async def aget(self, name: str, *, force_cache: bool = False, **type_opts: Any) -> Any:
        """Async twin of :meth:`get`."""
        await self._afollow()
        if self._fixed() is None:
            value = self._fast_hit(name, type_opts)
            if value is not MISS:
                return value
        return await _portal.acall(self._get_call(name, force_cache, type_opts))

    def get_schema(self, name: str) -> Any:
        """A Parquet table's ``pyarrow.Schema``, from its footer only.

        For a remote table not cached whole, the footer is one ranged request (two for a
        long footer), then cached beside the table's cached column ranges: within the TTL a
        repeat makes no request. A table cached whole is read from its verified blob.
        """
        self._follow()
        return _portal.call(_kw(self._session.table_schema, name, snapshot=self._snapshot))

    async def aget_schema(self, name: str) -> Any:
        """Async twin of :meth:`get_schema`."""
        await self._afollow()
        return await _portal.acall(_kw(self._session.table_schema, name, snapshot=self._snapshot))

    def _get_call(
        self, name: str, force_cache: bool, opts: dict[str, Any]
    ) -> Callable[[], Awaitable[Any]]:
        if force_cache:
            opts["force_cache"] = True
        fixed = self._fixed()
        if fixed is not None:
            return _kw(self._read_fixed, fixed, name, opts)
        return _kw(
            self._session.read_one,
            name,
            opts,
            snapshot=self._snapshot,
            check=self._check_eager,
            watch=DownloadWatch(self.settings.progress),  # a bar for large downloads
        )

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

    async def _read_fixed(self, manifest: Manifest, name: str, opts: Mapping[str, Any]) -> Any:
        """``get`` against a fixed manifest (a pinned block, a batch): no revalidation."""
        rest = {k: v for k, v in opts.items() if k != "use_stale"}
        item = self._item_in(manifest, name)
        watch = DownloadWatch(self.settings.progress)
        with watch:
            watch.checking(self._check_eager)(item, rest)
            return await self._session.read_item(item, rest)

    def get_many(
        self, names: Iterable[str], *, threads: int = 20, **type_opts: Any
    ) -> dict[str, Any]:
        """Several items at once, at most ``threads`` read concurrently; a dict by name.

        Every name is resolved against one manifest before any byte is read (a bad name
        fails the call first).
        """
        self._follow()
        return _portal.call(
            _kw(self._get_many, list(names), threads, dict(type_opts), self._fixed())
        )

    async def aget_many(
        self, names: Iterable[str], *, threads: int = 20, **type_opts: Any
    ) -> dict[str, Any]:
        """Async twin of :meth:`get_many`."""
        await self._afollow()
        return await _portal.acall(
            _kw(self._get_many, list(names), threads, dict(type_opts), self._fixed())
        )

    async def _get_many(
        self, names: list[str], threads: int, opts: dict[str, Any], fixed: Manifest | None
    ) -> dict[str, Any]:
        if not isinstance(threads, int) or threads < 1:
            raise InvalidArgumentError(f"threads must be a positive integer, got {threads!r}")
        use_stale = bool(opts.pop("use_stale", False))
        manifest = fixed or await self._session.current_manifest(use_stale=use_stale)
        items = [self._item_in(manifest, n) for n in names]
        for item in items:
            self._check_eager(item, opts)
        limit = asyncio.Semaphore(threads)

        async def one(item: Item) -> Any:
            async with limit:
                return await self._session.read_item(item, opts)

        values = await asyncio.gather(*(one(i) for i in items))
        return dict(zip(names, values, strict=True))

    def get_path(self, name: str) -> str:
        """The local path of the item's payload, cached first if needed.

        For zero-copy readers: ``pyarrow.memory_map``, ``np.load(path, mmap_mode="r")``. The
        file is read-only; do not modify it. For local bundles it is the payload itself.
        """
        self._follow()
        fixed = self._fixed()
        path = self._fast_path(name) if fixed is None else None
        if path is not None:
            return path
        return _portal.call(
            _kw(self._session.get_path_named, name, snapshot=self._snapshot, manifest=fixed)
        )

    async def aget_path(self, name: str) -> str:
        """Async twin of :meth:`get_path`."""
        await self._afollow()
        fixed = self._fixed()
        path = self._fast_path(name) if fixed is None else None
        if path is not None:
            return path
        return await _portal.acall(
            _kw(self._session.get_path_named, name, snapshot=self._snapshot, manifest=fixed)
        )

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

    # -- listings --------------------------------------------------------------------------------
    def item_path(self, name: str) -> str:
        """The full location of an item's payload (the external path for a reference)."""
        item = self._item_in(self._view(), name)
        if item.item_type == REFERENCE_ITEM_TYPE:
            return str(item.path)
        relative = payload_path(item)
        if self._session.is_local:
            return os.path.join(self._session.url, *relative.split("/"))
        return self._session.object_url(relative)

    def item_info(self, name: str) -> dict[str, Any]:
        """A copy of the item's manifest entry."""
        return copy.deepcopy(self._item_in(self._view(), name).to_dict())

    def list_contents(self, include_archived: bool = False) -> dict[str, list[str]]:
        """Item names grouped by kind, as datafolio returns them (archived ones hidden)."""
        return self._contents(self._view(), include_archived)

    def _contents(self, manifest: Manifest, include_archived: bool) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {key: [] for key in CONTENT_KEYS.values()}
        for name in self._names(include_archived=include_archived, manifest=manifest):
            key = CONTENT_KEYS.get(self._item_in(manifest, name).item_type)
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

    def get_item(self, name: str) -> Item:
        """The manifest item (read-only view), for advanced use."""
        return self._item_in(self._view(), name)

    def item_names(self) -> list[str]:
        """Names of the current items."""
        return self._names(manifest=self._view())

    # -- refresh and validation ------------------------------------------------------------------
    def refresh(self) -> Self:
        """Reload the manifest from the store (a cached bundle revalidates now); also adopts a
        replaced or rolled-back manifest, which the automatic follow-up never does."""
        self._no_batch("refresh()")
        return _portal.call(self._refresh)

    async def arefresh(self) -> Self:
        """Async twin of :meth:`refresh`."""
        self._no_batch("refresh()")
        return await _portal.acall(self._refresh)

    def _no_batch(self, what: str) -> None:
        if self._session.staging:
            raise UsageError(
                f"{what} cannot run inside a batch() block: it would discard the batch's "
                "staged changes. Exit the batch first."
            )

    async def _refresh(self) -> Self:
        await self._reload()
        return self._self()

    def validate(self) -> dict[str, bool]:
        """Whether each item's payload matches its recorded checksum and size, and each
        referenced table's external object exists; by name."""
        return _portal.call(self._validate)

    async def avalidate(self) -> dict[str, bool]:
        """Async twin of :meth:`validate`."""
        return await _portal.acall(self._validate)

    async def _validate(self) -> dict[str, bool]:
        manifest = self._manifest  # a pinned block's or a batch's, else the loaded one
        owned = await self._session.validate(manifest)
        refs = await check_references(self._session, manifest)
        current = manifest.current_items()
        merged = {**owned, **refs}
        return {name: merged[name] for name in current if name in merged}

    def is_valid(self) -> bool:
        """Whether every item validates (referenced tables included)."""
        return _portal.call(self._is_valid)

    async def ais_valid(self) -> bool:
        """Async twin of :meth:`is_valid`."""
        return await _portal.acall(self._is_valid)

    async def _is_valid(self) -> bool:
        return all((await self._validate()).values())

    # -- lazy tables -----------------------------------------------------------------------------
    def scan_table(self, name: str, **kwargs: Any) -> Any:
        """A polars ``LazyFrame`` of a table (included or referenced).

        A local payload or local reference is scanned in place; a remote payload is
        scanned from its cached copy (downloaded verified once); a remote reference is
        scanned at its URL by polars (pass ``storage_options=`` for credentials).

        Raises:
            ItemNotFoundError: No such item (a ``KeyError``).
            InvalidArgumentError: The item is not a table (a ``ValueError``).
        """
        item = self._item_in(self._view(), name)
        target = self._scan_target(item)
        if target is None:
            target = self.get_path(name)
        return _scan(item, target, kwargs)

    async def ascan_table(self, name: str, **kwargs: Any) -> Any:
        """Async twin of :meth:`scan_table`."""
        item = self._item_in(await self._aview(), name)
        target = self._scan_target(item)
        if target is None:
            target = await self.aget_path(name)
        return _scan(item, target, kwargs)

    def _scan_target(self, item: Item) -> str | None:
        """Where to scan ``item`` without the cache, or None to scan its cached copy."""
        if item.item_type not in _TABLE_TYPES:
            raise InvalidArgumentError(
                f"Item {item.name!r} is not a table (type: {item.item_type})"
            )
        if item.is_reference:
            path = str(item.path or "")
            return path[len("file://") :] if path.startswith("file://") else path
        if self._session.is_local:
            return os.path.join(self._session.url, *payload_path(item).split("/"))
        return None

    # -- the data accessor -----------------------------------------------------------------------
    @property
    def data(self) -> DataAccessor:
        """Items by attribute or key: ``folio.data.results.content``, ``folio.data["a/b"]``."""
        return DataAccessor(self)

    # -- pinned reads and batches ------------------------------------------------------------------
    @contextlib.contextmanager
    def pinned(self) -> Iterator[Self]:
        """A block in which every read sees one manifest revision.

        The outermost block checks for a newer revision once, on entry; inside, no read
        revalidates, so another writer's change stays invisible until the block exits
        (this folio's own writes are visible). Blocks nest; an exception still unpins.
        """
        self._pin()
        try:
            yield self._self()
        finally:
            self._unpin()

    @contextlib.asynccontextmanager
    async def apinned(self) -> AsyncIterator[Self]:
        """Async twin of :meth:`pinned` (``async with folio.apinned():``)."""
        await self._apin()
        try:
            yield self._self()
        finally:
            self._unpin()

    @contextlib.contextmanager
    def batch(self, upload_threads: int | None = None) -> Iterator[None]:
        """A block whose writes publish ``items.json`` once, at its end.

        Each write inside uploads its payload (create-only) and stages its manifest change;
        reads inside see the staged items. At a normal exit the manifest is published once,
        conditionally on the revision the batch started from (another writer meanwhile:
        :class:`~aiofolio.ConcurrentWriteError`, nothing published, our payloads deleted).
        If an exception escapes the block nothing is published and the batch's payloads are
        deleted. Nested batches, ``refresh()``, ``create_snapshot()`` and
        ``delete_snapshot()`` inside one raise :class:`~aiofolio.UsageError`.

        ``upload_threads`` is accepted for datafolio compatibility (payloads upload as each
        write runs).
        """
        self._writable("start a batch")
        _portal.call(self._begin_batch)
        try:
            yield
        except BaseException:
            _portal.call(self._abort_batch)
            raise
        _portal.call(self._finish_batch)

    @contextlib.asynccontextmanager
    async def abatch(self, upload_threads: int | None = None) -> AsyncIterator[None]:
        """Async twin of :meth:`batch` (``async with folio.abatch():``)."""
        self._writable("start a batch")
        await _portal.acall(self._begin_batch)
        try:
            yield
        except BaseException:
            await _portal.acall(self._abort_batch)
            raise
        await _portal.acall(self._finish_batch)

    async def _begin_batch(self) -> None:
        self._session.begin_batch()

    async def _abort_batch(self) -> None:
        await self._session.abort_batch()
        self._after_write()

    async def _finish_batch(self) -> None:
        try:
            await self._session.finish_batch()
        finally:
            self._after_write()


def _scan(item: Item, target: str, kwargs: Mapping[str, Any]) -> Any:
    import polars as pl  # type: ignore[import-not-found,unused-ignore]

    if item.table_format == "csv":
        return pl.scan_csv(target, **dict(kwargs))
    return pl.scan_parquet(target, **dict(kwargs))


class ItemProxy:
    """One item of ``folio.data``: ``content``, ``path``, ``description``, ``type``, ... ."""

    __slots__ = ("_folio", "_name")

    def __init__(self, folio: ReadingMethods, name: str) -> None:
        self._folio = folio
        self._name = name

    def _entry(self) -> Item:
        try:
            return self._folio._item_in(self._folio._view(), self._name)
        except ItemNotFoundError:
            raise ItemNotFoundError(
                f"Item {self._name!r} not found in DataFolio (was it deleted?)"
            ) from None

    @property
    def content(self) -> Any:
        """The item's value, as ``folio.get(name)`` returns it."""
        return self._folio.get(self._name)

    @property
    def lazy(self) -> Any:
        """The table as a polars ``LazyFrame`` (``folio.scan_table(name)``)."""
        return self._folio.scan_table(self._name)

    @property
    def description(self) -> str | None:
        """The item's description, or None."""
        return self._entry().description

    @property
    def type(self) -> str:
        """The item type (``included_table``, ``numpy_array``, ...)."""
        return self._entry().item_type or "unknown"

    @property
    def path(self) -> str | None:
        """The payload's location (the external path of a reference)."""
        return self._folio.item_path(self._name)

    @property
    def inputs(self) -> list[str]:
        """The items this one derives from."""
        return list(self._entry().inputs)

    @property
    def dependents(self) -> list[str]:
        """The current items that list this one among their inputs."""
        entry = self._entry()
        current = self._folio._manifest.current_items()
        return [n for n, i in current.items() if entry.name in i.inputs]

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the item's manifest entry."""
        return self._entry().to_dict()

    def __repr__(self) -> str:
        try:
            entry = self._entry()
        except Exception:
            return f"ItemProxy({self._name!r}, missing)"
        text = f"ItemProxy({self._name!r}, type={entry.item_type or 'unknown'!r}"
        if entry.description:
            text += f": {entry.description}"
        return text + ")"


_ACCESSOR_GROUPS = (
    ("Tables", ("referenced_tables", "included_tables")),
    ("Models", ("models",)),
    ("Numpy Arrays", ("numpy_arrays",)),
    ("JSON Data", ("json_data",)),
    ("Timestamps", ("timestamps",)),
    ("Artifacts", ("artifacts",)),
)


class DataAccessor:
    """``folio.data``: every current item as an :class:`ItemProxy`, by attribute or key."""

    __slots__ = ("_folio",)

    def __init__(self, folio: ReadingMethods) -> None:
        self._folio = folio

    def _current(self) -> list[str]:
        return self._folio._names(manifest=self._folio._view())

    def __getattr__(self, name: str) -> ItemProxy:
        if name.startswith("_"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        names = self._current()
        if name not in names:
            raise AttributeError(
                f"Item {name!r} not found in DataFolio. Available items: {', '.join(sorted(names))}"
            )
        return ItemProxy(self._folio, name)

    def __getitem__(self, name: str) -> ItemProxy:
        if name not in self._current():
            raise ItemNotFoundError(f"Item {name!r} not found in DataFolio")
        return ItemProxy(self._folio, name)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._current()

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __dir__(self) -> list[str]:
        attrs = {n for n in self._current() if n.isidentifier() and not n.startswith("_")}
        return sorted(set(object.__dir__(self)) | attrs)

    def _ipython_key_completions_(self) -> list[str]:
        return sorted(self._current())

    def __repr__(self) -> str:
        manifest = self._folio._view()
        if not self._folio._names(manifest=manifest):
            return "DataAccessor(no items)"
        contents = self._folio._contents(manifest, False)
        lines = ["DataAccessor:"]
        for label, keys in _ACCESSOR_GROUPS:
            names = sorted(n for k in keys for n in contents[k])
            if names:
                lines.append(f"  {label}: {', '.join(names)}")
        return "\n".join(lines)
