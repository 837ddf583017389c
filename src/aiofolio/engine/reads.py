"""Reading one bundle: items, paths, references, the hit fast paths, warm jobs, validation.

Owns: :class:`ReadMixin`, the read half of :class:`~aiofolio.engine.session.BundleSession`:
``read_one`` (``get``), ``get_path_named`` (a given manifest: ``pinned()``), the caller-thread hit
fast paths (``read_hit_now``, ``path_hit_now``), the large-file decision (``will_cache``: a
large item is streamed verified to a private scratch file, never cached), referenced tables,
warm jobs of the bundle and ``validate``. Payloads are deserialized in worker threads, except
small ones (at most 256 KiB), which are cheaper inline.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from aiofolio.backends import Backend, scheme_of
from aiofolio.backends.local import local_path
from aiofolio.bundle import Item, Manifest, deserialize, md5_file, payload_path, read_reference
from aiofolio.config import Settings
from aiofolio.engine._runtime import Runtime, engine, in_thread
from aiofolio.engine.blobs import BlobCache, chunking_of
from aiofolio.engine.fetch import INLINE_MAX, download_verified
from aiofolio.engine.warm import WarmJob, WarmListener
from aiofolio.errors import IntegrityError, LocalReferenceError
from aiofolio.policy.largefiles import human_size, should_cache

if TYPE_CHECKING:
    from aiofolio.engine.manifests import ManifestCache

__all__ = ["MISS", "ReadMixin", "ReadWatch", "resolve"]

log = logging.getLogger("aiofolio.session")

MISS: Any = object()
"""What :meth:`ReadMixin.read_hit_now` returns when the fast path does not apply."""


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


class _CachesLike(Protocol):
    rt: Runtime
    manifests: ManifestCache
    blobs: BlobCache


class ReadMixin:
    """The read half of a bundle session (see the module docstring)."""

    if TYPE_CHECKING:  # provided by BundleSession
        url: str
        settings: Settings
        storage_options: dict[str, Any]
        manifest: Manifest | None
        _pid: int
        _caches: Any

        @property
        def backend(self) -> Backend: ...

        @property
        def is_local(self) -> bool: ...

        @property
        def blobs(self) -> BlobCache | None: ...

        @property
        def runtime(self) -> Runtime: ...

        @property
        def _cache(self) -> _CachesLike | None: ...

        def require_cache(self) -> _CachesLike: ...

        def require_manifest(self) -> Manifest: ...

        def object_url(self, relative: str) -> str: ...

        async def current_manifest(self, *, use_stale: bool = False) -> Manifest: ...

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

    def warm_job(
        self,
        names: Sequence[str] | None,
        *,
        snapshot: str | None,
        concurrency: int,
        large: int,
        listener: WarmListener | None = None,
        on_finish: Callable[[], None] | None = None,
        manifest: Manifest | None = None,
    ) -> WarmJob:
        """A warm of ``names`` (default: every current, non-archived item; for a snapshot,
        its items) in ``manifest`` (default: the current one, revalidated by TTL); large
        items the policy keeps out of the cache are listed as skipped."""

        async def fixed() -> Manifest:
            return manifest if manifest is not None else await self.current_manifest()

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
            manifest=fixed,
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
        ``force_cache=True``, or in the shared tier) is served from it; an offline cache answers
        as usual (a hit, or ``NotCachedError``).
        """
        blobs = self.blobs
        if blobs is None:
            return False
        if should_cache(item.size_bytes, self.settings, force_cache) or blobs.scope.offline:
            return True
        return blobs.cached_item(item) is not None or blobs.in_shared(item)

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
            return self.local_reference(item)
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

    async def get_path_named(
        self, name: str, *, snapshot: str | None = None, manifest: Manifest | None = None
    ) -> str:
        """``get_path``: the local file of an item (in ``manifest``: default the current
        one, revalidated by TTL), cached first if needed."""
        manifest = manifest if manifest is not None else await self.current_manifest()
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

    def local_reference(self, item: Item) -> str:
        """The local path a referenced table points at, if this bundle may point there.

        Raises:
            LocalReferenceError: the bundle is remote and ``allow_local_references`` is off.
        """
        where = local_path(str(item.path or ""))
        if not self.is_local and not self.settings.allow_local_references:
            raise LocalReferenceError(
                f"the referenced table {item.name!r} of the remote bundle {self.url} points at "
                f"the local path {where}; a remote bundle may not make this machine read its "
                "own files. Open the folio with allow_local_references=True if you trust it."
            )
        return where

    async def _read_reference(
        self, item: Item, opts: Mapping[str, Any], *, force_cache: bool = False
    ) -> Any:
        target = item.path or ""
        if scheme_of(target) == "file":
            where = self.local_reference(item)
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

    async def validate(self, manifest: Manifest | None = None) -> dict[str, bool]:
        """Whether each current owned item's payload (of ``manifest``, default the loaded
        one) matches its recorded MD5 (and size)."""
        manifest = manifest if manifest is not None else self.require_manifest()
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
