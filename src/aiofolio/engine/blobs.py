"""The verified blobs of one cached bundle: hits, downloads, publishes, references, status.

Owns: :class:`BlobCache`, which the bundle's session asks for the local, verified file of an
item (:meth:`BlobCache.blob_for`, :meth:`BlobCache.read`); misses are downloaded and published
by its :class:`~aiofolio.engine.publish.Publisher`. Rules it keeps:

* A blob is published only after its MD5 and size verified; a blob found corrupt on a hit is
  dropped and fetched again (``strict_mode`` raises instead). Hits re-hash as
  :func:`~aiofolio.policy.rehash_on_hit` says.
* One download per blob: within a process readers share a future; across processes (and
  hosts, with ``lock_mode="lease"``) a best-effort lock, polled on the loop (so Ctrl-C
  interrupts the wait; a dead holder's flock is released by the kernel, its lease taken over
  after the TTL); none with ``lock_mode="none"``. Correctness never needs the lock:
  publishing is an atomic rename of verified, content-addressed bytes.
* A referenced (external, mutable) table's copy is revalidated by one ``stat`` after the TTL.
* With ``shared_cache_dir``, the shared read-only tier (:mod:`aiofolio.engine.shared`) is asked
  after the local tier (or before it, ``shared_cache_priority="first"``), before any download.
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
from aiofolio.engine._runtime import BundleScope, in_thread
from aiofolio.engine.fetch import INLINE_MAX
from aiofolio.engine.publish import Publisher, chunking_of
from aiofolio.engine.shared import SharedTier
from aiofolio.errors import AiofolioError, ChecksumMismatchError, NotCachedError
from aiofolio.policy import Decision, decide, rehash_on_hit
from aiofolio.store import (
    ItemRecord,
    blob_lock,
    fast_hash_file,
    hash_file,
    is_available,
)
from aiofolio.store._util import iso_utc
from aiofolio.store.locks import lease_path, lock_mode, lock_path

__all__ = ["BlobCache", "chunking_of", "reference_token"]

log = logging.getLogger("aiofolio.cache")
T = TypeVar("T")

LOCK_TIMEOUT: Final = 120.0
LOCK_POLL: Final = 0.05
"""Seconds between tries while another process holds the download lock of a blob."""


class _Abandoned(Exception):
    """Given to readers that joined a download whose owner was cancelled (they fetch anew)."""


def reference_token(stat: ObjectStat) -> str:
    """The version of an external object a referenced table's cached copy is keyed by."""
    return str(stat.token or f"{stat.size}:{stat.last_modified}")


def _exists(path: str) -> bool:
    return os.path.exists(path)  # one stat: no thread hop


def _base_token(rec: ItemRecord) -> str:
    return rec.version_token.split("#", 1)[0]


class BlobCache:
    """The blobs of one bundle (lives on the engine loop; see the module docstring)."""

    def __init__(self, scope: BundleScope) -> None:
        self.scope = scope
        self.url = scope.url
        self.rt = scope.rt
        self.publisher = Publisher(scope)
        self.shared = (
            SharedTier(scope, self.verify, self.publisher)
            if scope.settings.shared_cache_dir is not None
            else None
        )

    # -- looking up ---------------------------------------------------------------------------
    def cached_item(self, item: Item) -> ItemRecord | None:
        """The record of ``item``'s current version, if one is cached (no verification)."""
        rec = self.rt.records.item(self.url, item.name)
        if rec is None or _base_token(rec) != version_token(item):
            return None
        return rec

    def in_shared(self, item: Item) -> bool:
        """Whether the shared tier has a blob of ``item`` (a few ``stat`` calls; unverified)."""
        return self.shared is not None and self.shared.find(item) is not None

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

    def try_small_hit(self, item: Item) -> Path | None:
        """``item``'s verified blob when it is cached and at most ``INLINE_MAX`` bytes, else None.

        The synchronous part of :meth:`blob_for` for small hits: one ``os.stat`` of the blob
        and a fast hash of at most 256 KiB. It never downloads, repairs or waits, so it is safe
        from any thread; None means "ask :meth:`blob_for`".
        """
        shared = self.shared
        if shared is not None and shared.first and (path := shared.hit_now(item)) is not None:
            return path
        rec = self.cached_item(item)
        if rec is None or rec.size > INLINE_MAX:
            return None if shared is None or shared.first else shared.hit_now(item)
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
        shared = self.shared  # the shared tier: before (``first``) or after the local one
        if shared is not None and shared.first and (path := await shared.hit(item)) is not None:
            return path
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
        if shared is not None and not shared.first and (path := await shared.hit(item)):
            return path
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
                    kept = owner is None or await self.hand_out(owner, str(blob))
                    if not kept and attempt == 1:
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
        if inuse.handed_out_to(owner, os.path.basename(path)) and _exists(path):
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
        if not self.scope.writes_cache or lock_mode(self.rt.layout) == "none":
            # Nothing will be published (read-only cache): no lock file in the cache folder.
            # lock_mode "none": processes may download the same blob at once (both publish
            # the same verified bytes by rename).
            return await self.publisher.fetch_and_publish(item, url)
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
                with contextlib.suppress(OSError):
                    os.unlink(lease_path(layout, probe))
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
            return await self.publisher.fetch_and_publish(item, url)
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
        return await self.publisher.fetch_and_publish(
            item, path_url, backend=target, remote_token=token
        )

    def confirm_reference(self, rec: ItemRecord, now: float) -> None:
        """The external object is unchanged: the copy's check time moves to ``now``."""
        import msgspec

        self.publisher.record(msgspec.structs.replace(rec, last_verified=now))

    # -- maintenance -----------------------------------------------------------------------------
    def invalidate(self, name: str | None = None) -> None:
        """Forget one item (or every item) of this bundle; blobs stay until evicted, the
        partials of column reads go."""
        if name is None:
            self.rt.records.clear_items(self.url)
            self.rt.partials.remove_bundle(self.url)
        else:
            self.rt.records.drop_items(self.url, {name: None})
            self.rt.partials.remove(self.url, name)

    def status(self, item: Item, last_check: float | None) -> dict[str, Any]:
        """The seed's ``cache_status`` keys for one item (verifies the blob's hash; blocking),
        and ``shared_cache_path`` with a shared tier.

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
        status: dict[str, Any] = {}
        shared = self.shared
        if shared is not None:  # the verified blob of the shared tier, when it has one
            found = shared.find(item)
            status["shared_cache_path"] = (
                str(found.path) if found is not None and shared.verify(found, True) else None
            )
        if rec is None:
            return status | {
                "cached": False,
                "cache_path": None,
                "size_bytes": None,
                "cached_at": None,
                "last_verified": None,
                "ttl_expires_in": expires,
                "checksum_valid": None,
                "verified_by": None,
                "access_count": access,
            }
        path = self.rt.blobs.path(rec.digest)
        return status | {
            "cached": path.exists(),
            "cache_path": str(path),
            "size_bytes": rec.size,
            "cached_at": iso_utc(rec.cached_at),
            "last_verified": iso_utc(last_check) if last_check else None,
            "ttl_expires_in": expires,
            "checksum_valid": self.verify(path, rec, True),
            "verified_by": rec.verified_by or None,
            "access_count": access,
        }
