"""The verified blobs of one cached bundle: hits, downloads, publishes, references, status.

Owns: :class:`BlobCache`, which the bundle's session asks for the local, verified file of an
item (:meth:`BlobCache.blob_for`, :meth:`BlobCache.read`), and which publishes every blob of the
bundle: downloads (verified while they stream, :mod:`aiofolio.engine.fetch`) and write-through
copies of our own uploads (:meth:`BlobCache.adopt_file`). Every publish takes the quota's three
steps (:mod:`aiofolio.engine.quota`: reserve, publish, settle). Rules it keeps:

* A blob is published only after its MD5 and size verified; a blob found corrupt on a hit is
  dropped and fetched again (``strict_mode`` raises instead). Hits re-hash as
  :func:`~aiofolio.policy.rehash_on_hit` says.
* One download per blob: within a process readers share a future; across processes a
  best-effort lock, polled on the loop (so Ctrl-C interrupts the wait; a dead holder's lock is
  released by the kernel). Correctness never needs the lock: publishing is an atomic rename
  of verified, content-addressed bytes.
* A referenced (external, mutable) table's copy is revalidated by one ``stat`` after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, TypeVar

from aiofolio.backends import Backend, ObjectStat
from aiofolio.bundle import Item, payload_path, version_token
from aiofolio.config import Settings
from aiofolio.engine._runtime import BundleScope, in_thread
from aiofolio.engine.fetch import INLINE_MAX, Chunking, fetch_verified
from aiofolio.engine.quota import Ticket, is_disk_full
from aiofolio.errors import AiofolioError, CacheFullError, ChecksumMismatchError, NotCachedError
from aiofolio.policy import Decision, decide, rehash_on_hit
from aiofolio.store import (
    FAST_ALGORITHM,
    Hashers,
    ItemRecord,
    blob_lock,
    fast_hash_file,
    hash_file,
    is_available,
)
from aiofolio.store._util import iso_utc
from aiofolio.store.locks import lock_path

__all__ = ["BlobCache", "chunking_of", "reference_token"]

log = logging.getLogger("aiofolio.cache")
T = TypeVar("T")

LOCK_TIMEOUT: Final = 120.0
LOCK_POLL: Final = 0.05
"""Seconds between tries while another process holds the download lock of a blob."""


class _Abandoned(Exception):
    """Given to readers that joined a download whose owner was cancelled (they fetch anew)."""


def chunking_of(settings: Settings) -> Chunking:
    """The download split the settings ask for."""
    return Chunking(
        parallel_threshold=settings.parallel_threshold,
        chunk_size=settings.chunk_size,
        streams=settings.parallel_downloads,
    )


def reference_token(stat: ObjectStat) -> str:
    """The version of an external object a referenced table's cached copy is keyed by."""
    return str(stat.token or f"{stat.size}:{stat.last_modified}")


def _base_token(rec: ItemRecord) -> str:
    return rec.version_token.split("#", 1)[0]


class BlobCache:
    """The blobs of one bundle (lives on the engine loop; see the module docstring)."""

    def __init__(self, scope: BundleScope) -> None:
        self.scope = scope
        self.url = scope.url
        self.rt = scope.rt

    # -- looking up ---------------------------------------------------------------------------
    def cached_item(self, item: Item) -> ItemRecord | None:
        """The record of ``item``'s current version, if one is cached (no verification)."""
        rec = self.rt.records.item(self.url, item.name)
        if rec is None or _base_token(rec) != version_token(item):
            return None
        return rec

    def verify(self, path: Path, rec: ItemRecord, full: bool) -> bool:
        """Whether the blob at ``path`` still holds ``rec``'s bytes (blocking for big blobs)."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if st.st_size != rec.size:
            return False
        if not rehash_on_hit(
            size=st.st_size,
            mtime=st.st_mtime,
            cached_at=rec.cached_at,
            full=full,
            has_fast_hash=bool(rec.fast_hash),
        ):
            return True
        if is_available(rec.fast_algorithm):
            return fast_hash_file(path, rec.fast_algorithm) == rec.fast_hash
        # Hashed by a process with another fast algorithm: check the content digest instead.
        return hash_file(path, (rec.algorithm,)).hexdigest(rec.algorithm) == rec.digest

    def _count_hit(self, item: Item, path: Path | None, size: int) -> None:
        if path is not None:
            self.rt.blobs.touch(path)
        self.rt.stats.add(self.url, hits=1, bytes_from_cache=size)
        self.rt.stats.record_access(self.url, item.name)
        if self.scope.settings.log_cache_hits:
            log.info("cache hit: %r of %s (%d bytes)", item.name, self.url, size)

    def _count_miss(self, item: Item, size: int) -> None:
        self.rt.stats.add(self.url, misses=1, bytes_downloaded=size)
        self.rt.stats.record_access(self.url, item.name)
        if self.scope.settings.log_cache_misses:
            log.info("cache miss: %r of %s (%d bytes downloaded)", item.name, self.url, size)

    def try_small_hit(self, item: Item) -> Path | None:
        """``item``'s verified blob when it is cached and at most ``INLINE_MAX`` bytes, else None.

        The synchronous part of :meth:`blob_for` for small hits: one ``os.stat`` of the blob
        and a fast hash of at most 256 KiB. It never downloads, repairs or waits, so it is safe
        from any thread; None means "ask :meth:`blob_for`".
        """
        rec = self.cached_item(item)
        if rec is None or rec.size > INLINE_MAX:
            return None
        path = self.rt.blobs.path(rec.digest)
        if not self.verify(path, rec, False):
            return None
        self._count_hit(item, path, rec.size)
        return path

    # -- the read path -------------------------------------------------------------------------
    async def blob_for(self, item: Item) -> Path:
        """A local, verified file with ``item``'s payload: a hit, or a verified download.

        Raises:
            NotCachedError: offline and not cached.
            ChecksumMismatchError: the download did not verify twice, or (``strict_mode``) the
                cached blob is corrupt.
        """
        rec = self.cached_item(item)  # in memory: no thread hop
        if rec is not None:
            path = self.rt.blobs.path(rec.digest)
            if rec.size <= INLINE_MAX:
                ok = self.verify(path, rec, False)  # microseconds for a small blob
            else:
                ok = await in_thread(self.verify, path, rec, False)
            if ok:
                self._count_hit(item, path, rec.size)
                return path
            if path.exists():
                await self._drop_corrupt(item, rec, path)
        if self.scope.offline:
            raise NotCachedError(
                f"offline, and item {item.name!r} of {self.url} is not in the cache"
            )
        key = f"{self.url}\n{payload_path(item)}\n{version_token(item)}"
        return await self._single_flight(key, item, lambda: self._download(item, key))

    async def _drop_corrupt(self, item: Item, rec: ItemRecord, path: Path) -> None:
        strict = self.scope.settings.strict_mode
        log.warning(
            "cached blob of %r in %s is corrupt; dropping it%s",
            item.name,
            self.url,
            "" if strict else " and downloading it again",
        )
        if strict:
            raise ChecksumMismatchError(
                f"the cached copy of {item.name!r} ({path}) does not match the hash "
                "recorded when it was cached (strict_mode is on, so it is not repaired "
                "automatically; invalidate_cache() it)"
            )
        await in_thread(self.rt.blobs.remove, rec.digest)

    async def _single_flight(
        self, key: str, item: Item, start: Callable[[], Awaitable[Path]]
    ) -> Path:
        inflight = self.rt.inflight
        pending = inflight.get(key)
        if pending is not None:
            try:
                path = await asyncio.shield(pending)
            except _Abandoned:
                # The reader that owned the download was cancelled, not this one: fetch anew.
                return await self._single_flight(key, item, start)
            # A read that joined another's download is served from the cache: a hit.
            self._count_hit(item, None, item.size_bytes or 0)
            return path
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        inflight[key] = future
        try:
            path = await start()
            future.set_result(path)
            return path
        except BaseException as exc:
            # Joiners must not inherit the owner's cancellation: they get a marker and retry.
            cancelled = isinstance(exc, asyncio.CancelledError)
            future.set_exception(_Abandoned() if cancelled else exc)
            future.exception()  # mark retrieved: waiters get it, nobody else must
            raise
        finally:
            del inflight[key]

    async def read(
        self, item: Item, use: Callable[[Path], Awaitable[T]], *, owner: object | None = None
    ) -> T:
        """Get the item's blob and ``use`` it, holding it in use; retry once if it vanished.

        Another process may evict the blob between :meth:`blob_for` returning and the reader
        opening it. Then the blob is marked in use for every process, fetched again (a clean
        miss) and read once more: the retry cannot lose the race again. The first attempt
        costs nothing extra (no lock, no file).

        Args:
            owner: When given, the blob stays in use while ``owner`` lives, for every process
                (the result refers to the file, e.g. an artifact's path).
        """
        inuse = self.rt.inuse
        marked: str | None = None
        try:
            for attempt in (1, 2):
                try:
                    blob = await self.blob_for(item)
                except FileNotFoundError as exc:
                    # Vanished while the hit was verified (NotCachedError and
                    # RemoteNotFoundError are answers, not races).
                    rec = self.cached_item(item)
                    if attempt == 2 or isinstance(exc, AiofolioError) or rec is None:
                        raise
                    log.info("the cached blob of %r vanished; fetching it again", item.name)
                    marked = rec.digest
                    await in_thread(inuse.mark, self.rt.blobs.path(rec.digest), None)
                    continue
                with inuse.reading(blob.name):
                    try:
                        result = await use(blob)
                    except FileNotFoundError:
                        if attempt == 2 or blob.exists():
                            raise
                        log.info(
                            "the cached blob of %r vanished mid-read (evicted by another "
                            "process); fetching it again",
                            item.name,
                        )
                        marked = blob.name
                        await in_thread(inuse.mark, blob, None)
                        continue
                    if owner is not None and not await self.hand_out(owner, str(blob)):
                        if attempt == 1:
                            continue  # evicted before the path was protected: fetch again
                    return result
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if marked is not None:
                await in_thread(inuse.unmark, marked)

    async def hand_out(self, owner: object, path: str) -> bool:
        """Keep ``path``'s blob in use for every process while ``owner`` lives.

        Returns:
            False when the blob was evicted (by another process) just before it was
            protected: fetch it again (it stays protected now), then the path is good.
        """
        inuse = self.rt.inuse
        if inuse.handed_out_to(owner, os.path.basename(path)) and os.path.exists(path):
            return True
        return await in_thread(inuse.mark, path, owner)

    # -- downloading ----------------------------------------------------------------------------
    async def _download(self, item: Item, key: str) -> Path:
        """Fetch and publish ``item`` under the best-effort cross-process lock of ``key``.

        While waiting, a blob that another process published ends the wait. After
        ``LOCK_TIMEOUT`` seconds, or where the filesystem refuses locks, the download goes on
        without the lock.
        """
        url = f"{self.url.rstrip('/')}/{payload_path(item)}"
        if not self.scope.writes_cache:
            # Nothing will be published (read-only cache): no lock file in the cache folder.
            return await self.fetch_and_publish(item, url)
        layout = self.rt.layout
        deadline = time.monotonic() + LOCK_TIMEOUT
        probed = False
        while True:
            # A non-blocking try on the loop (a few syscalls): no thread hop that a cancel
            # could leave holding the lock.
            lock_ctx = blob_lock(layout, key, 0.0)
            acquired = lock_ctx.__enter__()
            if acquired:
                break
            lock_ctx.__exit__(None, None, None)
            if not probed:
                probed = True
                # Busy, or does this filesystem refuse locks? A private key tells them apart.
                probe = f"probe:{os.getpid()}"
                with blob_lock(layout, probe, 0.0) as works:
                    pass
                with contextlib.suppress(OSError):
                    os.unlink(lock_path(layout, probe))
                if not works:
                    break  # no locks here: go on without
            path = await self._published_meanwhile(item)
            if path is not None:
                return path
            if time.monotonic() >= deadline:
                log.warning(
                    "%s: another process held the download lock for %.0f s; downloading anyway",
                    url,
                    LOCK_TIMEOUT,
                )
                break
            await asyncio.sleep(LOCK_POLL)
        try:
            if acquired:
                # Another process may have fetched it while we waited for the lock.
                path = await self._published_meanwhile(item)
                if path is not None:
                    return path
            return await self.fetch_and_publish(item, url)
        finally:
            if acquired:
                lock_ctx.__exit__(None, None, None)  # no await: runs even when cancelled

    async def _published_meanwhile(self, item: Item) -> Path | None:
        """The verified blob of ``item`` if another process cached it meanwhile (a hit)."""
        rec = self.cached_item(item)
        if rec is None:
            return None
        path = self.rt.blobs.path(rec.digest)
        if not await in_thread(self.verify, path, rec, False):
            return None
        self._count_hit(item, path, rec.size)
        return path

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

        def new_temp(attempt: int) -> Path:
            if writes:
                return self.rt.blobs.new_temp()
            return Path(self.scope.scratch_dir) / f"dl-{os.getpid()}-{attempt}-{id(item):x}.part"

        published = False
        try:
            for attempt in (1, 2):
                try:
                    tmp, hashers, size = await fetch_verified(
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
                    need = item.size_bytes or self.rt.blobs.total_size() // 2  # unknown: half
                    log.warning("disk full while downloading %s; evicting and retrying", what)
                    await in_thread(quota.free_for, settings, need)
            try:
                digest = hashers.hexdigest(algorithm)
                if ticket is None:
                    # read-only cache: the bytes are served from a private copy, never cached.
                    private = Path(self.scope.scratch_dir) / f"{digest}-{os.getpid()}"
                    await in_thread(os.replace, tmp, private)
                    self._count_miss(item, size)
                    return private
                if ticket.size is None:
                    await in_thread(quota.grow, ticket, settings, size)  # before the publish
                path = await self._publish(tmp, digest, size)
                published = True
                self._record(self._new_record(item, hashers, digest, size, remote_token))
                self._count_miss(item, size)
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

    def _new_record(
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

    def _record(self, *recs: ItemRecord) -> None:
        """Record published blobs: one append to this process's item log (constant cost)."""
        if self.scope.writes_cache and recs:
            self.rt.records.put_items(self.url, recs)

    # -- references ------------------------------------------------------------------------------
    async def blob_for_reference(self, item: Item, target: Backend) -> Path:
        """A cached copy of a referenced (external, mutable) table.

        Within the TTL the copy is used as is; after it, one ``stat`` of the external object
        decides (:func:`reference_token`). Unchanged: the check time moves.
        """
        scope = self.scope
        path_url = str(item.path)
        rec = self.cached_item(item)
        now = scope.clock()
        if rec is not None:
            blob = self.rt.blobs.path(rec.digest)
            fresh = decide(
                now=now,
                last_check=rec.last_verified,
                ttl=scope.settings.cache_ttl,
                offline=scope.offline,
            )
            if fresh in (Decision.FRESH, Decision.STALE_OK) and await in_thread(
                self.verify, blob, rec, False
            ):
                self._count_hit(item, blob, rec.size)
                return blob
        if scope.offline:
            if rec is not None:
                return self.rt.blobs.path(rec.digest)
            raise NotCachedError(
                f"offline, and the referenced table {item.name!r} ({path_url}) is not cached"
            )
        stat = await target.stat(path_url)
        self.rt.stats.add(self.url, remote_checks=1)
        token = reference_token(stat)
        if rec is not None and rec.remote_token == token:
            blob = self.rt.blobs.path(rec.digest)
            if await in_thread(self.verify, blob, rec, False):
                self.confirm_reference(rec, now)
                self._count_hit(item, blob, rec.size)
                return blob
        return await self.fetch_and_publish(item, path_url, backend=target, remote_token=token)

    def confirm_reference(self, rec: ItemRecord, now: float) -> None:
        """The external object is unchanged: the copy's check time moves to ``now``."""
        import msgspec

        self._record(msgspec.structs.replace(rec, last_verified=now))

    # -- write-through ---------------------------------------------------------------------------
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
            self._record(self._new_record(item, hashers, digest, size))
            quota.after_publish(ticket, settings, digest, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            if not published:
                quota.release(ticket)

    # -- maintenance -----------------------------------------------------------------------------
    def invalidate(self, name: str | None = None) -> None:
        """Forget one item (or every item) of this bundle; blobs stay until evicted."""
        if name is None:
            self.rt.records.clear_items(self.url)
        else:
            self.rt.records.drop_items(self.url, {name: None})

    def status(self, item: Item, last_check: float | None) -> dict[str, Any]:
        """The seed's ``cache_status`` keys for one item (verifies the blob's hash; blocking).

        Args:
            last_check: when the bundle's manifest was last checked (None: never).
        """
        rec = self.cached_item(item)
        ttl = self.scope.settings.cache_ttl
        expires = (
            None
            if last_check is None or ttl is None
            else max(0.0, last_check + ttl - self.scope.clock())
        )
        access = self.rt.stats.access_counts(self.url).get(item.name, 0)
        if rec is None:
            return {
                "cached": False,
                "cache_path": None,
                "size_bytes": None,
                "cached_at": None,
                "last_verified": None,
                "ttl_expires_in": expires,
                "checksum_valid": None,
                "access_count": access,
            }
        path = self.rt.blobs.path(rec.digest)
        return {
            "cached": path.exists(),
            "cache_path": str(path),
            "size_bytes": rec.size,
            "cached_at": iso_utc(rec.cached_at),
            "last_verified": iso_utc(last_check) if last_check else None,
            "ttl_expires_in": expires,
            "checksum_valid": self.verify(path, rec, True),
            "access_count": access,
        }
