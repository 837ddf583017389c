"""One open bundle on the engine loop: its state, its cache, loading and opening it.

Owns: :class:`BundleSession`, the async core behind one :class:`~aiofolio.DataFolio`: the
bundle's backend and cache (made anew in a forked child), loading ``items.json`` (and the
schema 0/1 sidecars) through the cache's TTL driver, creating a bundle, and the cache
maintenance the facade asks for. Reading lives in :mod:`aiofolio.engine.reads`, writing (the
v2 commit protocol) in :mod:`aiofolio.engine.writes`; both are mixed into the session.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any, cast

import anyio

from aiofolio._version import __version__
from aiofolio.backends import NOT_MODIFIED, Backend, RetryPolicy, join_url, scheme_of
from aiofolio.backends.local import local_path
from aiofolio.bundle import (
    ITEMS_FILE,
    METADATA_FILE,
    SNAPSHOTS_FILE,
    Item,
    Manifest,
    WritePlan,
    parse_manifest,
    payload_path,
    plan_create,
)
from aiofolio.bundle.handlers.tables import deserialize_table
from aiofolio.config import Settings
from aiofolio.engine import partial
from aiofolio.engine._runtime import BundleScope, Runtime, engine, in_thread, runtime
from aiofolio.engine.blobs import BlobCache
from aiofolio.engine.manifests import InvalidationCallback, ManifestCache
from aiofolio.engine.partial import PartialRead
from aiofolio.engine.reads import MISS, ReadMixin, resolve
from aiofolio.engine.writes import WriteMixin
from aiofolio.errors import (
    AiofolioWarning,
    CacheError,
    ConcurrentWriteError,
    InvalidArgumentError,
    ReadOnlyError,
    RemoteNotFoundError,
    UncachedRangeError,
)

__all__ = ["MISS", "BundleSession", "normalize_bundle_url", "resolve"]

log = logging.getLogger("aiofolio.session")


def _wall_clock() -> float:
    return time.time()


def normalize_bundle_url(path: str | os.PathLike[str]) -> str:
    """A bundle location as the backends take it: absolute local paths, URLs without a
    trailing slash; ``gcs://`` is spelled ``gs://``."""
    text = os.fspath(path)
    scheme = scheme_of(text)
    if scheme == "file":
        return local_path(text)
    if text.startswith("gcs://"):
        text = "gs://" + text[len("gcs://") :]
    return text.rstrip("/")


class _Caches:
    """The cache of one bundle: its manifest and its blobs, on one runtime."""

    __slots__ = ("blobs", "manifests", "rt")

    def __init__(self, rt: Runtime, manifests: ManifestCache, blobs: BlobCache) -> None:
        self.rt, self.manifests, self.blobs = rt, manifests, blobs


class BundleSession(ReadMixin, WriteMixin):
    """The async state and operations of one open bundle (lives on the engine loop)."""

    def __init__(
        self,
        url: str,
        *,
        settings: Settings,
        storage_options: Mapping[str, Any] | None = None,
        read_only: bool = False,
        backend: Backend | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = normalize_bundle_url(url)
        self.clock = clock
        self.scheme = scheme_of(self.url)
        self.settings = settings
        self.storage_options = dict(storage_options or {})
        self._given_backend = backend
        self.read_only = read_only or (backend.read_only if backend is not None else False)
        if self.scheme == "http":
            self.read_only = True
        self.manifest: Manifest | None = None
        self.manifest_token: str | None = None
        self.cache_wanted = settings.cache_enabled_for(self.url)
        self.cache_problem: CacheError | None = None
        self._callbacks: list[InvalidationCallback] = []
        self._pid = 0
        self._backend: Backend | None = None
        self._caches: _Caches | None = None
        self._inherited: tuple[Backend | None, _Caches | None] | None = None
        self._reset()

    def _reset(self) -> None:
        """Per-process state: made anew in a forked child (it must not share the parent's).

        The parent's objects are kept referenced, never closed or collected here: their
        sockets are registered in the parent's epoll set, which the child shares.
        """
        if self._pid:
            self._inherited = (self._backend, self._caches)
        self._pid = os.getpid()
        self._backend = self._given_backend
        self._caches = None
        self.write_lock = anyio.Lock()
        self.partial_locks: dict[str, anyio.Lock] = {}  # one column read of an item at a time

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            self._reset()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        self._check_fork()
        if self._backend is None:
            s = self.settings
            self._backend = engine().pool.get(
                self.url,
                self.storage_options,
                retry=RetryPolicy(attempts=s.retry_attempts, max_time=s.retry_max_time),
                connect_timeout=s.connect_timeout,
                read_timeout=s.read_timeout,
            )
        return self._backend

    def object_url(self, relative: str) -> str:
        """The URL of a file inside the bundle."""
        return join_url(self.url, relative)

    @property
    def is_local(self) -> bool:
        return self.scheme == "file"

    @property
    def _cache(self) -> _Caches | None:
        """The bundle's cache, or None when caching is off (or the cache dir is unusable)."""
        self._check_fork()
        if self._caches is None and self.cache_wanted:
            try:
                rt = runtime(self.settings.cache_dir, self.settings.lock_mode)
            except CacheError as exc:
                # Reads keep working straight from the remote; cache-only calls re-raise this.
                self.cache_wanted = False
                self.cache_problem = exc
                warnings.warn(
                    AiofolioWarning(f"{exc}; reading {self.url} without the cache"),
                    stacklevel=3,
                )
                return None
            scope = BundleScope(
                url=self.url,
                backend=self.backend,
                settings=self.settings,
                rt=rt,
                clock=self.clock or _wall_clock,
                scratch_dir=engine().scratch_dir,
            )
            rt.sweep_temps(min_interval=0.0)  # partial files of this host's dead processes
            manifests = ManifestCache(scope, self._parse)
            manifests.callbacks = self._callbacks  # shared: callbacks survive a fork reset
            self._caches = _Caches(rt, manifests, BlobCache(scope))
        return self._caches

    @property
    def cached(self) -> bool:
        """Whether this bundle is read through the cache."""
        return self._cache is not None

    @property
    def blobs(self) -> BlobCache | None:
        caches = self._cache
        return caches.blobs if caches is not None else None

    @property
    def manifests(self) -> ManifestCache | None:
        caches = self._cache
        return caches.manifests if caches is not None else None

    def require_cache(self) -> _Caches:
        """The cache, or a clear error saying why there is none."""
        caches = self._cache
        if caches is None:
            if self.cache_problem is not None:
                raise self.cache_problem
            raise CacheError(
                f"caching is off for {self.url} (cache_mode={self.settings.cache_mode!r}, "
                f"cache_enabled={self.settings.cache_enabled!r}; local bundles are not cached "
                "unless cache_enabled=True)"
            )
        return caches

    @property
    def runtime(self) -> Runtime:
        """The runtime of this bundle's cache folder (raises CacheError without a cache)."""
        return self.require_cache().rt

    def add_invalidation_callback(self, callback: InvalidationCallback) -> None:
        self.require_cache()
        self._callbacks.append(callback)

    # -- partial Parquet reads (engine.partial) -------------------------------------------------
    def _partial(self, item: Item) -> PartialRead | None:
        caches = self._cache
        if caches is None or self.is_local or item.item_type != "included_table":
            return None
        return PartialRead(caches.blobs.scope, self.object_url(payload_path(item)), item)

    async def read_item(self, item: Item, opts: Mapping[str, Any]) -> Any:
        """:meth:`ReadMixin.read_item`; ``columns=`` of a remote table not cached whole is
        read from cached byte ranges (:mod:`aiofolio.engine.partial`), a whole read drops them."""
        part = self._partial(item)
        blobs = self.blobs
        if part is None or blobs is None:
            return await super().read_item(item, opts)
        if partial.wants(item, dict(opts)) and blobs.cached_item(item) is None:
            columns = list(opts["columns"])
            try:
                async with self.partial_locks.setdefault(item.name, anyio.Lock()):
                    size, pieces = await part.pieces(columns)
                file = partial.CachedRangesFile(size, pieces)
                frame = str(opts.get("frame", "pandas"))
                return await in_thread(
                    lambda: deserialize_table(cast(Any, file), item, columns=columns, frame=frame)
                )
            except (partial.NoPartial, UncachedRangeError) as exc:
                log.info("reading %s whole: %s", item.name, exc)
        value = await super().read_item(item, opts)
        # The whole payload is verified and cached: its partial goes (one stat when none).
        if part.item_dir.is_dir() and blobs.cached_item(item) is not None:
            await part.drop()
        return value

    async def table_schema(self, name: str, *, snapshot: str | None = None) -> Any:
        """``get_schema``: a Parquet table's ``pyarrow.Schema`` (its footer only, when remote)."""
        import pyarrow.parquet as pq

        item = resolve(await self.current_manifest(), name, snapshot)
        if item.item_type != "included_table" or item.table_format != "parquet":
            raise InvalidArgumentError(f"{name!r} is not an included Parquet table")
        part, blobs = self._partial(item), self.blobs
        if part is not None and blobs is not None and blobs.cached_item(item) is None:
            try:
                async with self.partial_locks.setdefault(item.name, anyio.Lock()):
                    return await part.schema()
            except partial.NoPartial as exc:
                log.info("reading the schema of %s from the whole payload: %s", name, exc)
        if blobs is not None and self.will_cache(item):
            return await blobs.read(item, lambda blob: in_thread(pq.read_schema, str(blob)))
        path, temporary = await self.local_payload(item)
        try:
            return await in_thread(pq.read_schema, path)
        finally:
            if temporary:
                os.unlink(path)

    # -- cache maintenance of this bundle (the facade's cache methods) --------------------------
    async def cache_status(self, item: Item) -> dict[str, Any]:
        """``cache_status(name)``: whether ``item`` is cached, where, and whether it verifies."""
        caches = self.require_cache()
        return await in_thread(caches.blobs.status, item, caches.manifests.last_check())

    async def invalidate(self, name: str | None) -> None:
        """Forget the cached copy of ``name`` (every item when None)."""
        await in_thread(self.require_cache().blobs.invalidate, name)

    async def clear(self) -> None:
        """Forget this bundle's cached manifest and items (blobs stay until evicted)."""
        rt = self.require_cache().rt
        await in_thread(rt.records.delete, self.url)
        await in_thread(rt.partials.remove_bundle, self.url)

    def stats(self) -> dict[str, int]:
        """This bundle's counters, summed across processes."""
        return self.require_cache().rt.stats.totals(self.url)

    async def set_prefs(self, name: str, **changes: Any) -> None:
        """Change the pin or priority of item ``name`` (saved in the cache folder)."""
        import msgspec

        prefs = self.require_cache().rt.prefs

        def change(old: Any) -> Any:
            return msgspec.structs.replace(old, **changes)

        await in_thread(prefs.update, self.url, name, change)

    def require_manifest(self) -> Manifest:
        if self.manifest is None:
            raise RuntimeError("the bundle is not open")  # pragma: no cover - internal misuse
        return self.manifest

    def require_writable(self, what: str) -> None:
        if self.scheme == "http":
            raise ReadOnlyError(f"HTTP(S) bundles are read-only: cannot {what} at {self.url}")
        if self.read_only:
            raise ReadOnlyError(
                f"this DataFolio is read-only: cannot {what} at {self.url} "
                "(open it with read_only=False)"
            )

    # -- opening and refreshing ----------------------------------------------------------------
    async def _read_optional(self, name: str) -> bytes | None:
        try:
            return await self.backend.read_range(self.object_url(name))
        except RemoteNotFoundError:
            return None

    async def _parse(self, data: bytes) -> Manifest:
        """Parse ``items.json`` bytes, fetching the sidecars a schema 0/1 bundle needs."""
        manifest = parse_manifest(data, source=self.url)
        if manifest.needs_sidecars:
            meta, snaps = await asyncio.gather(
                self._read_optional(METADATA_FILE), self._read_optional(SNAPSHOTS_FILE)
            )
            manifest = parse_manifest(
                data, source=self.url, metadata_json=meta, snapshots_json=snaps
            )
        return manifest

    async def _remote_load(self) -> tuple[Manifest, bytes, str | None]:
        """An unconditional load from the store: the manifest, its normalized bytes, token."""
        result = await self.backend.fetch_if_changed(self.object_url(ITEMS_FILE), None)
        if result is NOT_MODIFIED:  # pragma: no cover - cannot happen without a token
            raise RuntimeError("unconditional fetch answered 'not modified'")
        data, stat = result
        manifest = await self._parse(data)
        return manifest, manifest.to_json_bytes(), stat.token

    async def load(self, *, force: bool = False, use_stale: bool = False) -> Manifest:
        """The manifest: from the cache as the TTL allows, else from the store.

        Without a cache every call reads the store. ``force`` revalidates now; ``use_stale``
        serves the cached copy without asking the store.
        """
        manifests = self.manifests
        if manifests is None:
            manifest, _, token = await self._remote_load()
        else:
            manifest, token = await manifests.manifest(
                force=force, use_stale=use_stale, loader=self._remote_load
            )
        self.manifest = manifest
        self.manifest_token = token
        return manifest

    async def current_manifest(self, *, use_stale: bool = False) -> Manifest:
        """The manifest a read should use: revalidated by TTL when cached, as loaded if not."""
        if not self.cached:
            return self.require_manifest()
        return await self.load(use_stale=use_stale)

    def _creation_plan(self, metadata: Mapping[str, Any] | None) -> WritePlan:
        return plan_create(metadata, version=__version__, source=self.url)

    async def open(self, *, create: bool, metadata: Mapping[str, Any] | None) -> bool:
        """Load the bundle, creating it if allowed and absent. Returns True if created."""
        try:
            await self.load()
            return False
        except RemoteNotFoundError:
            if not create or self.read_only or self.scheme == "http":
                raise RemoteNotFoundError(
                    f"no DataFolio bundle at {self.url} (no {ITEMS_FILE})",
                    url=self.object_url(ITEMS_FILE),
                    status=404,
                ) from None
        plan = self._creation_plan(metadata)
        async with self.write_lock:
            try:
                await self._publish(plan, created=True)
            except ConcurrentWriteError:
                # Another writer created the bundle between our load and our publish: open
                # theirs (create means "create if absent"), as if it had been there already.
                await self.load()
                return False
        if self.is_local:
            for folder in ("tables", "models", "artifacts"):
                os.makedirs(os.path.join(self.url, folder), exist_ok=True)
        return True
