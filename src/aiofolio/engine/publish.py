"""Publishing blobs into the cache: verified downloads and write-through copies.

Owns: :class:`Publisher`, one per cached bundle. Every blob of the bundle enters the store here,
by one of two doors (:meth:`Publisher.fetch_and_publish`, a download verified while it streams;
:meth:`Publisher.adopt_file`, a copy of a payload we just uploaded), and both take the quota's
three steps (:mod:`aiofolio.engine.quota`: reserve before the bytes, settle after the
publish, release when nothing was published). A published blob is recorded with one append to
this process's item log of the bundle (constant cost, whatever the bundle's size).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

import msgspec

from aiofolio.backends import Backend
from aiofolio.bundle import Item, payload_path, version_token
from aiofolio.config import Settings
from aiofolio.engine._runtime import BundleScope, in_thread
from aiofolio.engine.fetch import INLINE_MAX, Chunking, fetch_verified
from aiofolio.engine.quota import Ticket, is_disk_full
from aiofolio.errors import AiofolioError, CacheFullError
from aiofolio.store import FAST_ALGORITHM, Hashers, ItemRecord

__all__ = ["Publisher", "chunking_of"]

log = logging.getLogger("aiofolio.cache")


def chunking_of(settings: Settings) -> Chunking:
    """The download split the settings ask for."""
    return Chunking(
        parallel_threshold=settings.parallel_threshold,
        chunk_size=settings.chunk_size,
        streams=settings.parallel_downloads,
    )


class Publisher:
    """The door of one bundle's blobs into the store (see the module docstring)."""

    def __init__(self, scope: BundleScope) -> None:
        self.scope = scope
        self.url = scope.url
        self.rt = scope.rt

    def count_miss(self, item: Item, size: int) -> None:
        self.rt.stats.add(self.url, misses=1, bytes_downloaded=size)
        self.rt.stats.record_access(self.url, item.name)
        if self.scope.settings.log_cache_misses:
            log.info("cache miss: %r of %s (%d bytes downloaded)", item.name, self.url, size)

    async def fetch_and_publish(
        self, item: Item, url: str, *, backend: Backend | None = None, remote_token: str = ""
    ) -> Path:
        """Download ``url`` verified and publish it as ``item``'s blob (or, with a read-only
        cache, into a private copy), under the size limits."""
        settings = self.scope.settings
        algorithm = settings.checksum_algorithm
        writes = self.scope.writes_cache
        what = f"item {item.name!r} of {self.url}"
        quota = self.rt.quota
        ticket = await in_thread(quota.reserve, settings, item.size_bytes, what) if writes else None
        if writes:
            self.rt.sweep_temps()  # rate-limited: a few syscalls at most every 5 s

        def new_temp(attempt: int) -> Path:
            if writes:
                return self.rt.blobs.new_temp()
            return Path(self.scope.scratch_dir) / f"dl-{os.getpid()}-{attempt}-{id(item):x}.part"

        async def on_size(total: int) -> None:
            # The first answer stated the size of an item the manifest did not size: the
            # hard limit reserves it now, before the bulk of the bytes (or refuses it).
            if ticket is not None and ticket.size is None:
                await in_thread(quota.grow, ticket, settings, total)

        published = False
        try:
            for attempt in (1, 2):
                try:
                    done = await fetch_verified(
                        backend or self.scope.backend,
                        url,
                        new_temp,
                        md5=item.checksum,
                        size=item.size_bytes,
                        algorithms=(algorithm, FAST_ALGORITHM),
                        chunking=chunking_of(settings),
                        # Resume across runs: only cache downloads, whose temps are in v1/tmp.
                        resume_dir=self.rt.layout.tmp_dir if writes else None,
                        resume_registry=self.rt.resume,
                        on_size=on_size,
                    )
                    break
                except OSError as exc:
                    if not writes or not is_disk_full(exc) or isinstance(exc, AiofolioError):
                        raise
                    if attempt == 2:
                        raise CacheFullError(
                            f"the disk of the cache ({self.rt.root}) is full: {what} "
                            f"({item.size_bytes or 'unknown'} bytes) did not fit even after "
                            "evicting; nothing was kept"
                        ) from exc
                    need = item.size_bytes or self.rt.total_size() // 2  # unknown: half
                    log.warning("disk full while downloading %s; evicting and retrying", what)
                    await in_thread(quota.free_for, settings, need)
            tmp, hashers, size = done.path, done.hashers, done.size
            try:
                digest = hashers.hexdigest(algorithm)
                if ticket is None:
                    # read-only cache: the bytes are served from a private copy, never cached.
                    private = Path(self.scope.scratch_dir) / f"{digest}-{os.getpid()}"
                    await in_thread(os.replace, tmp, private)
                    self.count_miss(item, size)
                    return private
                if ticket.size is None:
                    await in_thread(quota.grow, ticket, settings, size)  # before the publish
                path = await self._publish(tmp, digest, size)
                published = True
                try:
                    rec = self.new_record(item, hashers, digest, size, remote_token)
                    self.record(msgspec.structs.replace(rec, verified_by=done.verified_by))
                except (OSError, AiofolioError) as exc:
                    # The bytes are verified and in place: serve them. Unrecorded, the blob
                    # is an orphan the next read downloads again (and eviction may remove).
                    log.warning("cannot record the cached copy of %s: %s", what, exc)
                self.count_miss(item, size)
                await self._settle(ticket, digest, size)
                return path
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        finally:
            if ticket is not None and not published:
                quota.release(ticket)

    async def _publish(self, tmp: str | os.PathLike[str], digest: str, size: int) -> Path:
        if size <= INLINE_MAX:  # a rename and a chmod: cheaper than the thread hop
            return self.rt.blobs.publish(tmp, digest)
        return await in_thread(self.rt.blobs.publish, tmp, digest)

    async def _settle(self, ticket: Ticket, digest: str, size: int) -> None:
        quota, settings = self.rt.quota, self.scope.settings
        if ticket.reservation is None and settings.max_cache_size is not None:
            await in_thread(quota.after_publish, ticket, settings, digest, size)
        else:
            quota.after_publish(ticket, settings, digest, size)  # no scan: no thread hop

    def new_record(
        self, item: Item, hashers: Hashers, digest: str, size: int, remote_token: str = ""
    ) -> ItemRecord:
        """The record of a blob just published for ``item`` (hashed by ``hashers``)."""
        return ItemRecord(
            name=item.name,
            item_type=item.item_type,
            payload="" if item.is_reference else payload_path(item),
            version_token=version_token(item) + (f"#{remote_token}" if remote_token else ""),
            remote_token=remote_token or None,
            digest=digest,
            algorithm=self.scope.settings.checksum_algorithm,
            fast_hash=hashers.hexdigest(FAST_ALGORITHM),
            fast_algorithm=FAST_ALGORITHM,
            size=size,
            cached_at=time.time(),
            last_verified=self.scope.clock(),
        )

    def record(self, *recs: ItemRecord) -> None:
        """Record published blobs: one append to this process's item log (constant cost)."""
        if self.scope.writes_cache and recs:
            self.rt.records.put_items(self.url, recs)

    def adopt_file(self, item: Item, path: str) -> None:
        """Put a payload we just uploaded into the cache (write-through, ``cache_on_add``).

        Blocking. Takes the quota's steps like a download: under a hard limit an item that
        does not fit raises :class:`~aiofolio.errors.CacheFullError` (the upload itself has
        already succeeded).
        """
        if not self.scope.writes_cache:
            return
        settings = self.scope.settings
        quota = self.rt.quota
        what = f"write-through copy of {item.name!r} of {self.url}"
        ticket = quota.reserve(settings, item.size_bytes or os.path.getsize(path), what)
        published = False
        algorithm = settings.checksum_algorithm
        hashers = Hashers(sorted({"md5", algorithm, FAST_ALGORITHM}))
        tmp = self.rt.blobs.new_temp()
        size = 0
        try:
            with open(path, "rb") as src, open(tmp, "wb") as dst:
                while block := src.read(1 << 20):
                    hashers.update(block)
                    dst.write(block)
                    size += len(block)
            if item.checksum is not None and hashers.hexdigest("md5") != item.checksum:
                log.warning("write-through copy of %r does not match; not cached", item.name)
                return
            digest = hashers.hexdigest(algorithm)
            self.rt.blobs.publish(tmp, digest)
            published = True
            rec = self.new_record(item, hashers, digest, size)
            by = "md5 (manifest)" if item.checksum is not None else "md5 (our upload)"
            self.record(msgspec.structs.replace(rec, verified_by=by))
            quota.after_publish(ticket, settings, digest, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if not published:
                quota.release(ticket)
