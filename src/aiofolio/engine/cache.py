"""The cache of one bundle: TTL revalidation, verified blob reads, stale fallback, callbacks.

Owns: :class:`CacheStore` (one per cache folder per process: layout, blobs, records, counters)
and :class:`BundleCache`, which the :class:`~aiofolio.engine.session.BundleSession` of a cached
bundle asks for its manifest (:meth:`BundleCache.manifest`) and for the local, verified blob of
an item (:meth:`BundleCache.blob_for`). Decisions come from :mod:`aiofolio.policy`; bytes and
records from :mod:`aiofolio.store`; this module only sequences them.

Rules it keeps (DESIGN §3):

* Within the TTL: no remote request at all.
* TTL expired: one conditional request for ``items.json``, however many items. Unchanged: only
  the check time moves. Changed: the items whose version token changed are dropped (and
  downloaded again when next read), with a :class:`~aiofolio.errors.RemoteUpdateWarning` and
  the ``on_cache_invalidation`` callbacks.
* Remote unreachable: the cached copy is served with a
  :class:`~aiofolio.errors.StaleDataWarning` while younger than ``max_stale_age``.
* A blob is published only after its MD5 and size verified; a blob found corrupt on a hit is
  dropped and fetched again (or, in ``strict_mode``, raises).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import warnings
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from aiofolio.backends import NOT_MODIFIED, Backend, ObjectStat
from aiofolio.bundle import Item, Manifest, parse_manifest, payload_path, version_token
from aiofolio.config import Settings
from aiofolio.engine import limits
from aiofolio.engine.fetch import INLINE_MAX, Chunking, fetch_verified
from aiofolio.errors import (
    CacheError,
    ChecksumMismatchError,
    NotCachedError,
    RemoteError,
    RemoteNotFoundError,
    RemotePermissionError,
    RemoteUpdateWarning,
    StaleDataWarning,
)
from aiofolio.policy import Decision, decide, diff_items, may_serve_stale
from aiofolio.store import (
    FAST_ALGORITHM,
    BlobStore,
    BundleRecord,
    CacheLayout,
    Hashers,
    ItemRecord,
    RecordStore,
    StatsCounter,
    blob_lock,
    fast_hash_file,
    hash_file,
    is_available,
)
from aiofolio.store.locks import lock_path

__all__ = [
    "BundleCache",
    "CacheStore",
    "InvalidationCallback",
    "drop_stores",
    "get_store",
    "stats_summary",
]

log = logging.getLogger("aiofolio.cache")
T = TypeVar("T")

InvalidationCallback = Callable[[dict[str, Any] | None, dict[str, Any] | None], Any]
VERIFY_ON_HIT_MAX = 64 * 1024 * 1024
"""Blobs up to this size are re-hashed (fast hash) on every hit; larger ones are re-hashed when
their file changed after it was cached (mtime), and always by ``cache_status``/``verify``."""
LOCK_TIMEOUT = 120.0
LOCK_POLL = 0.05
"""Seconds between tries while another process holds the download lock of a blob."""


class _Abandoned(Exception):
    """Given to readers that joined a download whose owner was cancelled (they fetch anew)."""


class CacheStore:
    """Everything on disk under one cache folder, shared by all folios of this process."""

    def __init__(self, cache_dir: str) -> None:
        self.layout = CacheLayout(cache_dir)
        self.layout.ensure()
        self.blobs = BlobStore(self.layout)
        self.records = RecordStore(self.layout)
        self.stats = StatsCounter(self.layout)
        self.inflight: dict[str, asyncio.Future[Path]] = {}


_stores: dict[str, CacheStore] = {}


def get_store(cache_dir: str) -> CacheStore:
    """The process-wide store for ``cache_dir`` (created, with its folders, on first use).

    Raises:
        CacheError: the folder cannot be created or written (the message names it).
    """
    key = os.path.abspath(cache_dir)
    store = _stores.get(key)
    if store is None:
        store = CacheStore(key)
        _stores[key] = store
    return store


def chunking_of(settings: Settings) -> Chunking:
    """The download split the settings ask for."""
    return Chunking(
        parallel_threshold=settings.parallel_threshold,
        chunk_size=settings.chunk_size,
        streams=settings.parallel_downloads,
    )


def drop_stores() -> None:
    """Forget the open stores (after their folder was deleted, they are re-created on use)."""
    _stores.clear()


def _item_info(item: Item | None) -> dict[str, Any] | None:
    return None if item is None else item.to_dict()


class BundleCache:
    """The cached view of one bundle (lives on the engine loop)."""

    def __init__(
        self,
        *,
        url: str,
        backend: Backend,
        settings: Settings,
        store: CacheStore,
        manifest_url: str,
        reparse: Callable[[bytes], Awaitable[Manifest]],
        scratch_dir: str,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.url = url
        self.reparse = reparse
        self.backend = backend
        self.settings = settings
        self.store = store
        self.manifest_url = manifest_url
        self.clock = clock or time.time
        self.callbacks: list[InvalidationCallback] = []
        self.scratch_dir = scratch_dir
        self._adopted: tuple[str | None, Manifest] | None = None
        """The parsed manifest and the record token it belongs to (replaced as one value)."""
        self._memory_record: BundleRecord | None = None
        """A read-only cache keeps its checks here (never on disk), so the TTL still holds."""
        self._pending_records: list[tuple[ItemRecord, asyncio.Future[None]]] = []
        self._records_lock = asyncio.Lock()

    # -- helpers ---------------------------------------------------------------------------
    @property
    def offline(self) -> bool:
        return self.settings.cache_mode == "offline"

    @property
    def writes_cache(self) -> bool:
        return self.settings.cache_mode in ("read-write", "write-through", "offline")

    async def _thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    def _load_record(self) -> tuple[BundleRecord, bytes | None] | None:
        return self.store.records.load(self.url)

    def _manifest_record(self) -> tuple[BundleRecord, bytes | None] | None:
        """The record the TTL decision uses: on disk, or a newer in-memory one (read-only)."""
        loaded = self._load_record()
        memory = self._memory_record
        if memory is not None and (loaded is None or memory.last_check >= loaded[0].last_check):
            return memory, None
        return loaded

    def _adopt(self, record: BundleRecord, manifest_bytes: bytes | None) -> Manifest | None:
        """The parsed manifest of ``record`` (parsed once per record version)."""
        adopted = self._adopted  # one read: another thread may replace it meanwhile
        if adopted is not None and adopted[0] == record.manifest_token:
            return adopted[1]
        if manifest_bytes is None:
            return None
        try:
            manifest = parse_manifest(manifest_bytes, source=self.url)
        except Exception as exc:  # a damaged copy is a miss, never a crash
            log.warning("cached manifest of %s is unreadable (%s); reloading it", self.url, exc)
            return None
        self._adopted = (record.manifest_token, manifest)
        return manifest

    def _save(self, record: BundleRecord, manifest_bytes: bytes | None = None) -> None:
        if not self.writes_cache:
            self._memory_record = record
            return
        try:
            self.store.records.save(record, manifest_bytes)
        except OSError as exc:
            raise CacheError(f"cannot write the cache record of {self.url}: {exc}") from exc

    # -- the manifest ------------------------------------------------------------------------
    async def manifest(
        self,
        *,
        force: bool = False,
        use_stale: bool = False,
        loader: Callable[[], Awaitable[tuple[Manifest, bytes, str | None]]],
    ) -> tuple[Manifest, str | None]:
        """The bundle's manifest as the decision tree allows, and its remote token.

        Args:
            force: revalidate now, whatever the TTL.
            use_stale: serve the cached manifest without asking the remote.
            loader: a full, unconditional load from the remote (for a bundle not cached yet).
        """
        # One os.stat when the record is unchanged (the store keeps it decoded): inline.
        loaded = self._manifest_record()
        record, raw = loaded if loaded is not None else (None, None)
        manifest = self._adopt(record, raw) if record is not None else None
        now = self.clock()
        decision = decide(
            now=now,
            last_check=record.last_check if (record is not None and manifest) else None,
            ttl=self.settings.cache_ttl,
            offline=self.offline,
            use_stale=use_stale,
            force=force,
        )
        if decision in (Decision.FRESH, Decision.STALE_OK):
            assert record is not None
            assert manifest is not None
            return manifest, record.manifest_token
        if decision is Decision.MISSING:
            if self.offline:
                raise NotCachedError(
                    f"offline, and {self.url} is not in the cache (open it once online first)"
                )
            fresh, data, token = await loader()
            self.store.stats.add(self.url, remote_checks=1)
            self._remember(fresh, token)
            if not self.writes_cache:
                self._memory_record = BundleRecord(
                    url=self.url,
                    manifest_token=token,
                    last_check=now,
                    created_at=now,
                    manifest_size=len(data),
                )
                return fresh, token

            def first_load(current: BundleRecord) -> BundleRecord:
                # Merged with what is on disk now: another process may have cached items
                # while this one loaded the manifest; only versions it no longer lists go.
                current.manifest_token = token
                current.last_check = now
                current.created_at = current.created_at or now
                current.manifest_size = len(data)
                current.items = self._surviving(current, fresh)
                return current

            try:
                await self._thread(
                    lambda: self.store.records.update(self.url, first_load, manifest_bytes=data)
                )
            except OSError as exc:
                raise CacheError(f"cannot write the cache record of {self.url}: {exc}") from exc
            return fresh, token
        assert record is not None
        assert manifest is not None
        return await self._revalidate(record, manifest, now)

    def fresh_manifest(self) -> Manifest | None:
        """The cached manifest when it is within the TTL and already parsed, else None.

        Costs one ``os.stat`` and no parsing, lock or remote request; safe from any thread
        (the hit fast path of the sync facade). None means "ask :meth:`manifest`".
        """
        loaded = self._manifest_record()
        if loaded is None:
            return None
        record = loaded[0]
        adopted = self._adopted
        if adopted is None or adopted[0] != record.manifest_token:
            return None
        decision = decide(
            now=self.clock(),
            last_check=record.last_check,
            ttl=self.settings.cache_ttl,
            offline=self.offline,
            use_stale=False,
            force=False,
        )
        return adopted[1] if decision is Decision.FRESH else None

    def _remember(self, manifest: Manifest, token: str | None) -> None:
        self._adopted = (token, manifest)

    def _surviving(self, record: BundleRecord, manifest: Manifest) -> dict[str, ItemRecord]:
        current = manifest.current_items()
        return {
            name: rec
            for name, rec in record.items.items()
            if name in current
            and rec.version_token.split("#", 1)[0] == version_token(current[name])
        }

    async def _revalidate(
        self, record: BundleRecord, manifest: Manifest, now: float
    ) -> tuple[Manifest, str | None]:
        try:
            result = await self.backend.fetch_if_changed(self.manifest_url, record.manifest_token)
        except (RemoteNotFoundError, RemotePermissionError):
            raise
        except RemoteError as exc:
            if may_serve_stale(
                now=now,
                last_check=record.last_check,
                fallback_to_stale=self.settings.fallback_to_stale,
                max_stale_age=self.settings.max_stale_age,
            ):
                age = now - record.last_check
                warnings.warn(
                    StaleDataWarning(
                        f"could not revalidate {self.url} ({exc}); serving the cached copy "
                        f"last checked {age:.0f} s ago"
                    ),
                    stacklevel=2,
                )
                self.store.stats.add(self.url, stale_served=1)
                return manifest, record.manifest_token
            raise
        self.store.stats.add(self.url, remote_checks=1)
        if result is NOT_MODIFIED:
            record.last_check = now
            await self._thread(self._save, record)
            return manifest, record.manifest_token
        raw, stat = result
        fresh = await self.reparse(raw)
        await self._apply_change(record, manifest, fresh, fresh.to_json_bytes(), stat, now)
        return fresh, stat.token

    async def _apply_change(
        self,
        record: BundleRecord,
        old: Manifest,
        fresh: Manifest,
        data: bytes,
        stat: ObjectStat,
        now: float,
    ) -> None:
        old_tokens = {n: version_token(i) for n, i in old.current_items().items()}
        new_tokens = {n: version_token(i) for n, i in fresh.current_items().items()}
        changes = diff_items(old_tokens, new_tokens)
        items = self._surviving(record, fresh)
        who = fresh.metadata.get("updated_by") or fresh.metadata.get("author")
        when = fresh.metadata.get("updated_at")
        for change in changes:
            if change.kind == "added":
                continue
            by = f" by {who}" if who else ""
            at = f" at {when}" if when else ""
            warnings.warn(
                RemoteUpdateWarning(
                    f"item {change.name!r} of {self.url} was {change.kind} on the remote"
                    f"{by}{at}; the cached copy was dropped"
                ),
                stacklevel=3,
            )
            old_item = old.get_current(change.name)
            new_item = fresh.get_current(change.name)
            for callback in list(self.callbacks):
                try:
                    outcome = callback(_item_info(old_item), _item_info(new_item))
                    if asyncio.iscoroutine(outcome):
                        await outcome
                except Exception as exc:  # one bad callback must not break reads
                    log.warning("on_cache_invalidation callback %r failed: %s", callback, exc)
        self._remember(fresh, stat.token)
        new_record = BundleRecord(
            url=self.url,
            manifest_token=stat.token,
            last_check=now,
            created_at=record.created_at or now,
            manifest_size=len(data),
            items=items,
        )
        await self._thread(self._save, new_record, data)

    async def note_write(self, manifest: Manifest, data: bytes, token: str | None) -> None:
        """Our own commit published ``manifest``: the cached copy follows it (no warning)."""
        self._remember(manifest, token)
        if not self.writes_cache:
            return
        loaded = await self._thread(self._load_record)
        record = loaded[0] if loaded is not None else BundleRecord(url=self.url)
        record.manifest_token = token
        record.last_check = self.clock()
        record.manifest_size = len(data)
        record.created_at = record.created_at or record.last_check
        record.items = self._surviving(record, manifest)
        await self._thread(self._save, record, data)

    # -- items --------------------------------------------------------------------------------
    def _verify_hit(self, path: Path, rec: ItemRecord, full: bool) -> bool:
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if st.st_size != rec.size:
            return False
        tampered = st.st_mtime > rec.cached_at + 2.0
        if not (full or tampered or st.st_size <= VERIFY_ON_HIT_MAX) or not rec.fast_hash:
            return True
        if is_available(rec.fast_algorithm):
            return fast_hash_file(path, rec.fast_algorithm) == rec.fast_hash
        # Hashed by a process with another fast algorithm: check the content digest instead.
        return hash_file(path, (rec.algorithm,)).hexdigest(rec.algorithm) == rec.digest

    def cached_item(self, item: Item) -> ItemRecord | None:
        """The record of ``item``'s current version, if one is cached (no verification)."""
        loaded = self._load_record()
        if loaded is None:
            return None
        rec = loaded[0].items.get(item.name)
        if rec is None or rec.version_token.split("#", 1)[0] != version_token(item):
            return None
        return rec

    def _count_hit(self, item: Item, path: Path, size: int) -> None:
        self.store.blobs.touch(path)
        self.store.stats.add(self.url, hits=1, bytes_from_cache=size)
        self.store.stats.record_access(self.url, item.name)

    def try_small_hit(self, item: Item) -> Path | None:
        """``item``'s verified blob when it is cached and at most ``INLINE_MAX`` bytes, else None.

        The synchronous part of :meth:`blob_for` for small hits: one ``os.stat`` of the
        record, one of the blob and a fast hash of at most 256 KiB. It never downloads, repairs
        or waits, so it is safe from any thread; None means "ask :meth:`blob_for`".
        """
        rec = self.cached_item(item)
        if rec is None or rec.size > INLINE_MAX:
            return None
        path = self.store.blobs.path(rec.digest)
        if not self._verify_hit(path, rec, False):
            return None
        self._count_hit(item, path, rec.size)
        return path

    async def blob_for(self, item: Item) -> Path:
        """A local, verified file with ``item``'s payload: a hit, or a verified download.

        Raises:
            NotCachedError: offline and not cached.
            ChecksumMismatchError: the download did not verify twice, or (``strict_mode``) the
                cached blob is corrupt.
        """
        rec = self.cached_item(item)  # in memory after one os.stat: no thread hop
        if rec is not None:
            path = self.store.blobs.path(rec.digest)
            if rec.size <= INLINE_MAX:
                ok = self._verify_hit(path, rec, False)  # microseconds for a small blob
            else:
                ok = await self._thread(self._verify_hit, path, rec, False)
            if ok:
                self._count_hit(item, path, rec.size)
                return path
            if path.exists():
                log.warning(
                    "cached blob of %r in %s is corrupt; dropping it%s",
                    item.name,
                    self.url,
                    "" if self.settings.strict_mode else " and downloading it again",
                )
                if self.settings.strict_mode:
                    raise ChecksumMismatchError(
                        f"the cached copy of {item.name!r} ({path}) does not match the hash "
                        "recorded when it was cached (strict_mode is on, so it is not repaired "
                        "automatically; invalidate_cache() it)"
                    )
                await self._thread(self.store.blobs.remove, rec.digest)
        if self.offline:
            raise NotCachedError(
                f"offline, and item {item.name!r} of {self.url} is not in the cache"
            )
        key = f"{self.url}\n{payload_path(item)}\n{version_token(item)}"
        pending = self.store.inflight.get(key)
        if pending is not None:
            try:
                path = await asyncio.shield(pending)
            except _Abandoned:
                # The reader that owned the download was cancelled, not this one: fetch anew.
                return await self.blob_for(item)
            # A read that joined another's download is served from the cache: count it as a hit.
            self.store.stats.add(self.url, hits=1, bytes_from_cache=item.size_bytes or 0)
            return path
        future: asyncio.Future[Path] = asyncio.get_running_loop().create_future()
        self.store.inflight[key] = future
        try:
            path = await self._download(item, key)
            future.set_result(path)
            return path
        except BaseException as exc:
            # Joiners must not inherit the owner's cancellation: they get a marker and retry.
            cancelled = isinstance(exc, asyncio.CancelledError)
            future.set_exception(_Abandoned() if cancelled else exc)
            future.exception()  # mark retrieved: waiters get it, nobody else must
            raise
        finally:
            del self.store.inflight[key]

    async def _download(self, item: Item, key: str) -> Path:
        """Fetch and publish ``item`` under the best-effort cross-process lock of ``key``.

        The lock is polled (a non-blocking try, then a cancellable ``asyncio.sleep``), so Ctrl-C
        or a cancel interrupts the wait at once; the kernel drops the lock of a holder that
        died, so a waiter takes over within one poll. While waiting, a blob that another
        process published ends the wait. After ``LOCK_TIMEOUT`` seconds, or where the
        filesystem refuses locks, the download goes on without the lock: publishing is an
        atomic rename of verified, content-addressed bytes, so correctness never needs it.
        """
        relative = payload_path(item)
        url = f"{self.url.rstrip('/')}/{relative}"
        if not self.writes_cache:
            # Nothing will be published (read-only cache): no lock file in the cache folder.
            return await self._fetch_and_publish(item, url)
        layout = self.store.layout
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
            return await self._fetch_and_publish(item, url)
        finally:
            if acquired:
                lock_ctx.__exit__(None, None, None)  # no await: runs even when cancelled

    async def _published_meanwhile(self, item: Item) -> Path | None:
        """The verified blob of ``item`` if another process cached it meanwhile (a hit)."""
        rec = self.cached_item(item)  # one os.stat while the record is unchanged
        if rec is None:
            return None
        path = self.store.blobs.path(rec.digest)
        if not await self._thread(self._verify_hit, path, rec, False):
            return None
        self._count_hit(item, path, rec.size)
        return path

    async def _fetch_and_publish(
        self, item: Item, url: str, *, backend: Backend | None = None, remote_token: str = ""
    ) -> Path:
        algorithm = self.settings.checksum_algorithm

        def new_temp(attempt: int) -> Path:
            if self.writes_cache:
                return self.store.blobs.new_temp()
            return Path(self.scratch_dir) / f"dl-{os.getpid()}-{attempt}-{id(item):x}.part"

        tmp, hashers, size = await limits.guarded(self, item, fetch_verified)(
            backend or self.backend,
            url,
            new_temp,
            md5=item.checksum,
            size=item.size_bytes,
            algorithms=(algorithm, FAST_ALGORITHM),
            chunking=chunking_of(self.settings),
            # Resume across runs: only cache downloads, whose temp files live in v1/tmp.
            resume_dir=self.store.layout.tmp_dir if self.writes_cache else None,
        )
        try:
            digest = hashers.hexdigest(algorithm)
            if not self.writes_cache:
                # read-only cache: the bytes are served from a private copy, never cached.
                private = Path(self.scratch_dir) / f"{digest}-{os.getpid()}"
                await self._thread(os.replace, tmp, private)
                self.store.stats.add(self.url, misses=1, bytes_downloaded=size)
                return private
            if size <= INLINE_MAX:  # a rename and a chmod: cheaper than the thread hop
                path = self.store.blobs.publish(tmp, digest)
            else:
                path = await self._thread(self.store.blobs.publish, tmp, digest)
            rec = self._new_record(item, hashers, digest, size, remote_token)
            await self._record_item_grouped(rec)
            self.store.stats.add(self.url, misses=1, bytes_downloaded=size)
            self.store.stats.record_access(self.url, item.name)
            return path
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            await limits.settle(self, tmp)  # the size limits (engine/limits.py)

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
            algorithm=self.settings.checksum_algorithm,
            fast_hash=hashers.hexdigest(FAST_ALGORITHM),
            fast_algorithm=FAST_ALGORITHM,
            size=size,
            cached_at=time.time(),
            last_verified=self.clock(),
        )

    def _record_item(self, *recs: ItemRecord) -> None:
        if not self.writes_cache or not recs:
            return

        def add(record: BundleRecord) -> BundleRecord:
            record.url = self.url
            for rec in recs:
                record.items[rec.name] = rec
            return record

        self.store.records.update(self.url, add)

    async def _record_item_grouped(self, rec: ItemRecord) -> None:
        """Record ``rec`` in the bundle record; concurrent calls share one write (group commit).

        A warm of hundreds of small items would otherwise queue every record update behind
        the record's cross-process lock, one rewrite each. The first caller to get the
        in-process lock writes every pending record in one update; the others find theirs
        written. Returns once ``rec`` is on disk (or raises what the write raised).
        """
        if not self.writes_cache:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending_records.append((rec, done))
        async with self._records_lock:
            if not done.done():
                batch, self._pending_records = self._pending_records, []
                try:
                    await self._thread(self._record_item, *(r for r, _ in batch))
                except Exception as exc:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                            fut.exception()  # retrieved here; each owner re-raises it below
                except BaseException:  # cancelled: hand the batch to the next writer
                    self._pending_records[:0] = [b for b in batch if not b[1].done()]
                    raise
                else:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_result(None)
        await done

    async def blob_for_reference(self, item: Item, target: Backend) -> Path:
        """A cached copy of a referenced (external, mutable) table.

        Within the TTL the copy is used as is; after it, one ``stat`` of the external object
        decides (its ETag, generation, or size plus mtime). Unchanged: the check time moves.
        """
        path_url = str(item.path)
        rec = await self._thread(self.cached_item, item)
        now = self.clock()
        if rec is not None:
            blob = self.store.blobs.path(rec.digest)
            fresh = decide(
                now=now,
                last_check=rec.last_verified,
                ttl=self.settings.cache_ttl,
                offline=self.offline,
            )
            if fresh in (Decision.FRESH, Decision.STALE_OK) and await self._thread(
                self._verify_hit, blob, rec, False
            ):
                self.store.stats.add(self.url, hits=1, bytes_from_cache=rec.size)
                return blob
        if self.offline:
            if rec is not None:
                return self.store.blobs.path(rec.digest)
            raise NotCachedError(
                f"offline, and the referenced table {item.name!r} ({path_url}) is not cached"
            )
        stat = await target.stat(path_url)
        self.store.stats.add(self.url, remote_checks=1)
        token = stat.token or f"{stat.size}:{stat.last_modified}"
        if rec is not None and rec.remote_token == token:
            blob = self.store.blobs.path(rec.digest)
            if await self._thread(self._verify_hit, blob, rec, False):
                rec.last_verified = now
                await self._record_item_grouped(rec)
                self.store.stats.add(self.url, hits=1, bytes_from_cache=rec.size)
                return blob
        return await self._fetch_and_publish(item, path_url, backend=target, remote_token=token)

    def adopt_file(self, item: Item, path: str) -> None:
        """Put a payload we just uploaded into the cache (write-through, ``cache_on_add``)."""
        if not self.writes_cache:
            return
        algorithm = self.settings.checksum_algorithm
        fast = FAST_ALGORITHM
        hashers = Hashers(sorted({"md5", algorithm, fast}))
        tmp = self.store.blobs.new_temp()
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
            self.store.blobs.publish(tmp, digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._record_item(self._new_record(item, hashers, digest, size))

    # -- maintenance ------------------------------------------------------------------------
    def invalidate(self, name: str | None = None) -> None:
        """Forget one item (or every item) of this bundle; blobs stay until evicted."""

        def drop(record: BundleRecord) -> BundleRecord:
            if name is None:
                record.items = {}
            else:
                record.items.pop(name, None)
            return record

        if self.store.records.load(self.url) is not None:
            self.store.records.update(self.url, drop)

    def expire(self) -> None:
        """Make the next read revalidate the manifest."""

        def stale(record: BundleRecord) -> BundleRecord:
            record.last_check = 0.0
            return record

        if self.store.records.load(self.url) is not None:
            self.store.records.update(self.url, stale)

    def status(self, item: Item) -> dict[str, Any]:
        """The seed's ``cache_status`` keys for one item (verifies the blob's hash)."""
        rec = self.cached_item(item)
        loaded = self._load_record()
        last_check = loaded[0].last_check if loaded is not None else None
        ttl = self.settings.cache_ttl
        expires = (
            None if last_check is None or ttl is None else max(0.0, last_check + ttl - self.clock())
        )
        if rec is None:
            return {
                "cached": False,
                "cache_path": None,
                "size_bytes": None,
                "cached_at": None,
                "last_verified": None,
                "ttl_expires_in": expires,
                "checksum_valid": None,
                "access_count": self.store.stats.access_counts(self.url).get(item.name, 0),
            }
        path = self.store.blobs.path(rec.digest)
        return {
            "cached": path.exists(),
            "cache_path": str(path),
            "size_bytes": rec.size,
            "cached_at": _iso(rec.cached_at),
            "last_verified": _iso(last_check) if last_check else None,
            "ttl_expires_in": expires,
            "checksum_valid": self._verify_hit(path, rec, True),
            "access_count": self.store.stats.access_counts(self.url).get(item.name, 0),
        }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def stats_summary(totals: Mapping[str, int]) -> dict[str, Any]:
    """Counters plus the hit rate, as ``cache_stats()`` returns them."""
    hits, misses = totals.get("hits", 0), totals.get("misses", 0)
    out: dict[str, Any] = dict(totals)
    out["hit_rate"] = hits / (hits + misses) if hits + misses else 0.0
    return out
