"""One open bundle on the engine loop: manifest loading, item reads, and the v2 write protocol.

Owns: :class:`BundleSession`, the async core behind one :class:`~aiofolio.DataFolio`. It loads
``items.json`` (and the schema 0/1 sidecars), reads payloads (straight from disk for local
bundles, through verified downloads for remote ones) and deserializes them in worker threads,
and commits writes: serialize to a temp file with MD5 computed on the way, upload the payload
create-only under a fresh name, then publish ``items.json`` conditionally on the token of the
manifest we loaded. A lost race raises :class:`~aiofolio.errors.ConcurrentWriteError` and
removes our orphan payload; nothing half-published is ever visible.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, TypeVar

import anyio

from aiofolio.backends import NOT_MODIFIED, Backend, RetryPolicy, join_url, scheme_of
from aiofolio.backends.local import local_path
from aiofolio.bundle import (
    ITEMS_FILE,
    METADATA_FILE,
    SNAPSHOTS_FILE,
    Item,
    ItemFields,
    Manifest,
    WritePlan,
    deserialize,
    md5_file,
    parse_manifest,
    payload_path,
    plan_add,
    plan_create,
    plan_delete,
    plan_metadata,
    read_reference,
    reference_fields,
    serialize,
)
from aiofolio.config import Settings
from aiofolio.engine._runtime import BundleScope, Runtime, engine, in_thread, runtime
from aiofolio.engine.blobs import BlobCache, chunking_of
from aiofolio.engine.fetch import INLINE_MAX, download_verified
from aiofolio.engine.manifests import InvalidationCallback, ManifestCache
from aiofolio.engine.warm import WarmJob, WarmListener
from aiofolio.errors import (
    AiofolioWarning,
    CacheError,
    CacheFullError,
    ConcurrentWriteError,
    IntegrityError,
    LargeFileWarning,
    PreconditionFailedError,
    ReadOnlyError,
    RemoteNotFoundError,
)
from aiofolio.policy.largefiles import (
    growth_warning,
    human_size,
    owned_payload_bytes,
    should_cache,
)

__all__ = ["MISS", "BundleSession", "normalize_bundle_url"]

MISS: Any = object()
"""What :meth:`BundleSession.read_hit_now` returns when the fast path does not apply."""

log = logging.getLogger("aiofolio.session")
T = TypeVar("T")
_MANIFEST_CACHE_CONTROL = "no-cache"
_MAX_NAME_CLASHES = 5


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


def resolve(manifest: Manifest, name: str, snapshot: str | None) -> Item:
    """The item ``name`` of the current version, or as ``snapshot`` pinned it."""
    return manifest.resolve_snapshot(snapshot, name) if snapshot else manifest.current(name)


class ReadWatch(Protocol):
    """What the facade may wrap a read in (its progress bar for large downloads)."""

    def __enter__(self) -> Any: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> Any: ...

    def checking(
        self, check: Callable[[Item, Mapping[str, Any]], None]
    ) -> Callable[[Item, Mapping[str, Any]], None]: ...


class _Caches:
    """The cache of one bundle: its manifest and its blobs, on one runtime."""

    __slots__ = ("blobs", "manifests", "rt")

    def __init__(self, rt: Runtime, manifests: ManifestCache, blobs: BlobCache) -> None:
        self.rt, self.manifests, self.blobs = rt, manifests, blobs


class BundleSession:
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
                rt = runtime(self.settings.cache_dir)
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
        await in_thread(self.require_cache().rt.records.delete, self.url)

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
        from aiofolio import __version__

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

    # -- reading ---------------------------------------------------------------------------------
    async def local_payload(self, item: Item) -> tuple[str, bool]:
        """A local file holding ``item``'s verified payload, and whether it is a temp copy."""
        relative = payload_path(item)
        if self.is_local:
            return os.path.join(self.url, *relative.split("/")), False
        return await self._scratch_copy(item, self.backend, self.object_url(relative)), True

    async def _scratch_copy(self, item: Item, backend: Backend, url: str) -> str:
        """Download ``item``'s bytes from ``url``, verified, to a private scratch file."""
        relative = (item.path or "") if item.is_reference else payload_path(item)
        ext = os.path.splitext(relative)[1]
        dest = os.path.join(engine().scratch_dir, f"{secrets.token_hex(8)}{ext}")
        await download_verified(
            backend,
            url,
            dest,
            md5=item.checksum,
            size=item.size_bytes,
            chunking=chunking_of(self.settings),
        )
        return dest

    async def read_item(self, item: Item, opts: Mapping[str, Any]) -> Any:
        """Deserialize one item (a reference reads its external table).

        ``opts["force_cache"]`` (popped here) overrides the large-file policy: see
        :meth:`will_cache`.
        """
        opts = dict(opts)
        force_cache = bool(opts.pop("force_cache", False))
        if item.is_reference:
            return await self._read_reference(item, opts, force_cache=force_cache)
        blobs = self.blobs
        if blobs is None:
            path, temporary = await self.local_payload(item)
        elif not self.will_cache(item, force_cache):
            # Large: a verified private copy (for a local bundle too), read and deleted.
            url = self.object_url(payload_path(item))
            path, temporary = await self._large_scratch_copy(item, self.backend, url), True
        else:

            async def use(blob: Path) -> Any:
                if item.item_type == "artifact":
                    return await in_thread(self._named_copy, item, blob)
                size = item.size_bytes
                if size is not None and size <= INLINE_MAX and item.item_type != "model":
                    return deserialize(str(blob), item, **dict(opts))  # small: no thread hop
                return await in_thread(lambda: deserialize(str(blob), item, **dict(opts)))

            # The blob is in use while read (an artifact's path: while this session lives);
            # one evicted by another process before it was opened is fetched again.
            owner = self if item.item_type == "artifact" else None
            return await blobs.read(item, use, owner=owner)
        keep = item.item_type == "artifact"  # get() of an artifact returns its path
        try:
            return await in_thread(lambda: deserialize(path, item, **dict(opts)))
        finally:
            if temporary and not keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    async def read_one(
        self,
        name: str,
        opts: Mapping[str, Any],
        *,
        snapshot: str | None = None,
        check: Callable[[Item, Mapping[str, Any]], None] | None = None,
        watch: ReadWatch | None = None,
    ) -> Any:
        """``get``: resolve ``name`` against a fresh-enough manifest, then read it.

        ``opts["use_stale"]`` serves the cached manifest without asking the remote;
        ``check`` sees the item before any byte is read (the facade's size guard); ``watch``
        wraps the read (the facade's progress bar for large downloads).
        """
        opts = dict(opts)
        with watch if watch is not None else contextlib.nullcontext():
            if watch is not None and check is not None:
                check = watch.checking(check)
            use_stale = bool(opts.pop("use_stale", False))
            manifest = await self.current_manifest(use_stale=use_stale)
            item = resolve(manifest, name, snapshot)
            if check is not None:
                check(item, opts)
            return await self.read_item(item, opts)

    async def read_many(
        self,
        names: Sequence[str],
        opts: Mapping[str, Any],
        *,
        snapshot: str | None = None,
        check: Callable[[Item, Mapping[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """``get_many``: several items read concurrently (``parallel_downloads`` at a time)."""
        use_stale = bool(opts.get("use_stale", False))
        manifest = await self.current_manifest(use_stale=use_stale)
        items = [resolve(manifest, n, snapshot) for n in names]  # fail fast on a bad name
        rest = {k: v for k, v in opts.items() if k != "use_stale"}
        if check is not None:
            for item in items:
                check(item, rest)
        limit = asyncio.Semaphore(max(1, self.settings.parallel_downloads))

        async def one(item: Item) -> Any:
            async with limit:
                return await self.read_item(item, rest)

        values = await asyncio.gather(*(one(i) for i in items))
        return dict(zip(names, values, strict=True))

    def warm_job(
        self,
        names: Sequence[str] | None,
        *,
        snapshot: str | None,
        concurrency: int,
        large: int,
        listener: WarmListener | None = None,
        on_finish: Callable[[], None] | None = None,
    ) -> WarmJob:
        """A warm of ``names`` (default: every current, non-archived item; for a snapshot,
        its items); large items the policy keeps out of the cache are listed as skipped."""

        def select(manifest: Manifest) -> list[Item]:
            if names is not None:
                return [resolve(manifest, n, snapshot) for n in names]
            if snapshot is not None:
                return list(manifest.snapshot_items(snapshot).values())
            return [i for i in manifest.current_items().values() if not i.archived]

        def skip(item: Item) -> bool:  # large, and cache_large_files=False: not cached
            return self.blobs is not None and not self.will_cache(item)

        return WarmJob(
            fetch=self.blob_path,
            manifest=self.current_manifest,
            select=select,
            concurrency=concurrency,
            large=large,
            large_size=self.settings.parallel_threshold,
            listener=listener,
            on_finish=on_finish,
            skip=skip,
        )

    # -- large-file policy: large items streamed past the cache ---------------------------------
    def will_cache(self, item: Item, force_cache: bool = False) -> bool:
        """Whether a read of ``item`` goes through the cache (:func:`should_cache` decides).

        False without a cache. A large item already in the cache (an earlier
        ``force_cache=True``) is still served from it, and an offline cache answers as usual
        (a hit, or ``NotCachedError``).
        """
        blobs = self.blobs
        if blobs is None:
            return False
        if should_cache(item.size_bytes, self.settings, force_cache) or blobs.scope.offline:
            return True
        return blobs.cached_item(item) is not None

    def _log_streaming(self, item: Item) -> None:
        size = item.size_bytes
        log.info(
            "streaming large item %r of %s (%s, at or above large_file_threshold %s) without "
            "caching it; get(name, force_cache=True) caches it",
            item.name,
            self.url,
            "size unknown" if size is None else human_size(size),
            human_size(self.settings.large_file_threshold),
        )

    async def _large_scratch_copy(self, item: Item, backend: Backend, url: str) -> str:
        """Download ``item``'s bytes, verified, to a private scratch file (never the cache)."""
        self._log_streaming(item)
        return await self._scratch_copy(item, backend, url)

    def _named_copy(self, item: Item, blob: Path) -> str:
        """A path with the artifact's own file name that points at its cached blob."""
        folder = self.runtime.layout.bundle_dir(self.url) / "files"
        target = folder.joinpath(*payload_path(item).split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            if os.path.realpath(target) == os.path.realpath(blob):
                return str(target)
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        try:
            os.symlink(blob, tmp)
        except OSError:  # no symlinks here: a copy
            shutil.copyfile(blob, tmp)
        os.replace(tmp, target)
        return str(target)

    async def blob_path(self, item: Item) -> str:
        """The local path of the cached payload, for zero-copy readers (``get_path``)."""
        if item.is_reference and scheme_of(item.path or "") == "file":
            return local_path(str(item.path))
        if self.is_local and not item.is_reference:
            return os.path.join(self.url, *payload_path(item).split("/"))
        blobs = self.require_cache().blobs
        if item.is_reference:
            target = engine().pool.get(str(item.path), self.storage_options)
            if not self.will_cache(item):
                return await self._large_scratch_copy(item, target, str(item.path))
            return str(await blobs.blob_for_reference(item, target))
        if not self.will_cache(item):
            # Large, and cache_large_files=False: a private verified copy, not the cache.
            return await self._large_scratch_copy(
                item, self.backend, self.object_url(payload_path(item))
            )
        return str(await blobs.blob_for(item))

    def _fast_item(self, name: str, snapshot: str | None) -> tuple[BlobCache, Item] | None:
        """The item of a hit fast path: the manifest is within its TTL and already parsed."""
        caches = self._caches
        manifest = self.manifest
        if (
            caches is None
            or manifest is None
            or self._pid != os.getpid()
            or caches.manifests.fresh_manifest() is not manifest
        ):
            return None
        try:
            return caches.blobs, resolve(manifest, name, snapshot)
        except Exception:
            return None

    def read_hit_now(
        self,
        name: str,
        opts: Mapping[str, Any],
        *,
        snapshot: str | None = None,
        check: Callable[[Item, Mapping[str, Any]], None] | None = None,
    ) -> Any:
        """The hit fast path of ``get``/``aget``: read a small cached item in the caller's thread.

        Applies only when the manifest is within its TTL and already parsed (the same object
        the engine last loaded), and the item is a small (at most 256 KiB) verified blob that
        deserializes from its path (not a reference, artifact or model). Anything else, and
        any error, returns :data:`MISS` so the caller takes the normal path through the engine
        thread, which makes the same decisions and raises the proper errors.
        """
        found = self._fast_item(name, snapshot)
        if found is None:
            return MISS
        blobs, item = found
        rest = {k: v for k, v in opts.items() if k != "use_stale"}
        try:
            if item.is_reference or item.item_type in ("artifact", "model"):
                return MISS
            if check is not None:
                check(item, rest)
            path = blobs.try_small_hit(item)
            if path is None:
                return MISS
            return deserialize(str(path), item, **rest)
        except Exception:  # the engine path repeats the work and raises what is right
            return MISS

    def path_hit_now(self, name: str, *, snapshot: str | None = None) -> str | None:
        """The hit fast path of ``get_path``: the path of a cached blob already handed out.

        Applies within the TTL to an item whose small verified blob this session has already
        handed out (so it is protected from eviction for every process); None otherwise (the
        engine path hands it out, which takes the limits lock once).
        """
        found = self._fast_item(name, snapshot)
        if found is None:
            return None
        blobs, item = found
        if item.is_reference or (self.is_local and not item.is_reference):
            return None
        try:
            if not self.will_cache(item):
                return None
            rec = blobs.cached_item(item)
            if rec is None or not self.runtime.inuse.handed_out_to(self, rec.digest):
                return None
            path = blobs.try_small_hit(item)
        except Exception:
            return None
        return None if path is None else str(path)

    async def get_path_named(self, name: str, *, snapshot: str | None = None) -> str:
        """``get_path``: the local file of an item, cached first if needed."""
        manifest = await self.current_manifest()
        item = resolve(manifest, name, snapshot)
        path = await self.blob_path(item)
        caches = self._cache
        in_blobs = caches is not None and (
            os.path.dirname(os.path.dirname(path)) == str(caches.rt.layout.blobs_dir)
        )
        if caches is None or not in_blobs:
            return path  # not a cached blob (a local payload, a scratch copy): nothing to keep
        if not await caches.blobs.hand_out(self, path):
            path = await self.blob_path(item)  # evicted before it was protected: fetch again
        return path  # kept (not evicted by any process) while this session lives

    async def _read_reference(
        self, item: Item, opts: Mapping[str, Any], *, force_cache: bool = False
    ) -> Any:
        target = item.path or ""
        if scheme_of(target) == "file":
            where = local_path(target)
            return await in_thread(lambda: read_reference(item, lambda _p: where, **dict(opts)))
        backend = engine().pool.get(target, self.storage_options)
        blobs = self.blobs
        if blobs is not None and not self.will_cache(item, force_cache):
            scratch = await self._large_scratch_copy(item, backend, target)
            try:
                return await in_thread(
                    lambda: read_reference(item, lambda _p: scratch, **dict(opts))
                )
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(scratch)
        if blobs is not None:
            blob = str(await blobs.blob_for_reference(item, backend))
            return await in_thread(lambda: read_reference(item, lambda _p: blob, **dict(opts)))
        data = await backend.read_range(target)
        return await in_thread(lambda: read_reference(item, lambda _p: data, **dict(opts)))

    async def validate(self) -> dict[str, bool]:
        """Whether each current owned item's payload matches its recorded MD5 (and size)."""
        manifest = self.require_manifest()
        out: dict[str, bool] = {}
        for name, item in manifest.current_items().items():
            if item.is_reference:
                continue
            try:
                if self.is_local:
                    path = os.path.join(self.url, *payload_path(item).split("/"))
                    md5, size = await in_thread(md5_file, path)
                    out[name] = (item.checksum in (None, md5)) and (item.size_bytes in (None, size))
                else:
                    path, _ = await self.local_payload(item)
                    os.unlink(path)
                    out[name] = True
            except (OSError, ValueError, IntegrityError) as exc:
                log.warning("item %r did not validate: %s", name, exc)
                out[name] = False
        return out

    # -- writing ---------------------------------------------------------------------------------
    async def _publish(self, plan: WritePlan, *, created: bool = False) -> None:
        """Publish ``plan``'s manifest only over the manifest we loaded (or none)."""
        url = self.object_url(ITEMS_FILE)
        body = plan.manifest_bytes()
        try:
            stat = await self.backend.put(
                url,
                body,
                cache_control=_MANIFEST_CACHE_CONTROL,
                content_type="application/json",
                if_match=None if created else self.manifest_token,
                if_none_match=created,
            )
        except PreconditionFailedError:
            # A retried PUT whose first try landed also fails its condition: check for that.
            try:
                remote = await self.backend.read_range(url)
            except RemoteNotFoundError:
                remote = b""
            if remote != body:
                raise ConcurrentWriteError(
                    f"{self.url} changed since it was loaded (we had revision "
                    f"{plan.base_revision}); another writer published first. Nothing of this "
                    "change was published: refresh() and try again."
                ) from None
            stat = await self.backend.stat(url)
        if (
            stat.md5 is not None
            and stat.md5 != hashlib.md5(body, usedforsecurity=False).hexdigest()
        ):
            # The stat describes a newer manifest: another writer published over ours before
            # the store answered. Its token is not ours; load what is there now (it was built
            # on our commit) rather than pair our manifest with their token and lose theirs.
            log.info("%s changed right after our publish; reloading", url)
            await self.load(force=True)
            return
        self.manifest = plan.manifest
        self.manifest_token = stat.token
        manifests = self.manifests
        if manifests is not None:
            await manifests.note_write(plan.manifest, body, stat.token)

    async def _cleanup(self, relatives: Iterable[str]) -> None:
        for relative in relatives:
            try:
                await self.backend.delete(self.object_url(relative))
            except Exception as exc:  # an orphan payload is harmless
                log.info("could not delete %s: %s", relative, exc)

    async def commit(
        self, make_plan: Callable[[Manifest, Sequence[str]], WritePlan], upload: str | None
    ) -> WritePlan:
        """Upload the payload (create-only, replanning on a name clash), then publish."""
        taken: list[str] = []
        manifest = self.require_manifest()
        for _ in range(_MAX_NAME_CLASHES):
            plan = make_plan(manifest, taken)
            if upload is None or plan.payload_path is None:
                break
            fields_md5 = plan.item.checksum if plan.item is not None else None
            try:
                await self.backend.put(
                    self.object_url(plan.payload_path),
                    upload,
                    content_md5=fields_md5,
                    if_none_match=True,
                )
                break
            except PreconditionFailedError:
                taken.append(plan.payload_path)
        else:
            raise ConcurrentWriteError(
                f"could not find a free payload name in {self.url} after "
                f"{_MAX_NAME_CLASHES} tries; another writer is busy"
            )
        try:
            await self._publish(plan)
        except ConcurrentWriteError:
            # Only a lost race is known not to have published: our payload is an orphan. After
            # any other failure (a timeout, a cancellation) the manifest may have landed and
            # name the payload, so it must stay (an orphan is harmless, a dangling item is not).
            if upload is not None and plan.payload_path is not None:
                await self._cleanup([plan.payload_path])
            raise
        await self._cleanup((*plan.obsolete_payloads, *plan.legacy_files))
        return plan

    async def add(
        self,
        name: str,
        obj: Any,
        *,
        item_type: str | None = None,
        description: str | None = None,
        inputs: Sequence[str] | None = None,
        overwrite: bool = False,
        opts: Mapping[str, Any] | None = None,
    ) -> Item:
        """Serialize ``obj`` and commit it as item ``name``."""
        self.require_writable(f"add {name!r}")
        manifest = self.require_manifest()
        if name in manifest and not overwrite:
            # Fail before serializing a large object (the plan would refuse too).
            plan_add(manifest, name, ItemFields("json_data"), overwrite=False)
        scratch = engine().scratch_dir
        tmp = os.path.join(scratch, f"upload-{secrets.token_hex(8)}")
        try:
            fields = await in_thread(
                lambda: serialize(obj, tmp, item_type=item_type, name=name, **dict(opts or {}))
            )
            async with self.write_lock:
                owned_before = owned_payload_bytes(self.require_manifest().items)
                plan = await self.commit(
                    lambda m, taken: plan_add(
                        m,
                        name,
                        fields,
                        overwrite=overwrite,
                        description=description,
                        inputs=inputs,
                        taken=taken,
                    ),
                    tmp,
                )
            self._warn_if_large(plan, owned_before)
            blobs = self.blobs
            write_through = self.settings.cache_on_add or (
                self.settings.cache_mode == "write-through"
            )
            if (
                blobs is not None
                and write_through
                and plan.item is not None
                and should_cache(plan.item.size_bytes, self.settings)
            ):
                # Under the size limits like a download. The upload has landed: a copy that
                # the hard limit refuses is skipped, not an error of the add.
                try:
                    await in_thread(blobs.adopt_file, plan.item, tmp)
                except CacheFullError as exc:
                    log.warning("not caching the write-through copy of %r: %s", name, exc)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        assert plan.item is not None
        return plan.item

    def _warn_if_large(self, plan: WritePlan, owned_before: int) -> None:
        """``LargeFileWarning`` for a large item or a bundle that just grew past the threshold."""
        item = plan.item
        if item is None:
            return
        message = growth_warning(
            name=item.name,
            item_size=item.size_bytes,
            before=owned_before,
            after=owned_payload_bytes(plan.manifest.items),
            items=len(plan.manifest.current_items()),
            threshold=self.settings.large_file_threshold,
            is_table=item.item_type == "included_table",
        )
        if message is not None:
            warnings.warn(LargeFileWarning(message), stacklevel=2)

    async def reference_table(
        self,
        name: str,
        path: str,
        *,
        table_format: str = "parquet",
        description: str | None = None,
        inputs: Sequence[str] | None = None,
        overwrite: bool = False,
        opts: Mapping[str, Any] | None = None,
    ) -> Item:
        self.require_writable(f"reference {name!r}")
        fields = reference_fields(path, table_format=table_format, **dict(opts or {}))
        async with self.write_lock:
            plan = await self.commit(
                lambda m, taken: plan_add(
                    m,
                    name,
                    fields,
                    overwrite=overwrite,
                    description=description,
                    inputs=inputs,
                    taken=taken,
                ),
                None,
            )
        assert plan.item is not None
        return plan.item

    async def delete(self, names: str | Sequence[str]) -> None:
        self.require_writable("delete items")
        async with self.write_lock:
            await self.commit(lambda m, _taken: plan_delete(m, names), None)

    async def set_metadata(
        self, changes: Mapping[str, Any] | None = None, remove: Iterable[str] = ()
    ) -> None:
        self.require_writable("change metadata")
        async with self.write_lock:
            await self.commit(lambda m, _t: plan_metadata(m, changes, remove=remove), None)
