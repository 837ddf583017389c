"""Cache size limits in practice: gathering entries, in-use blobs, reservations, eviction passes.

Owns everything of issue 7 that touches the disk or the loop; the decisions themselves come
from the pure planner :mod:`aiofolio.policy.eviction`.

* **Entries.** :func:`gather` turns the store (blobs, records, pins and priorities from
  :class:`~aiofolio.store.prefs.PrefsStore`, access counts from
  :class:`~aiofolio.store.stats.StatsCounter`) into planner entries. Last access is the blob's
  atime (:meth:`~aiofolio.store.blobs.BlobStore.touch` sets it on every hit); ``cached_at`` is
  the record's. A blob no record names (its item was invalidated, or another process has
  published it and not yet written its record) is an entry of the lowest priority; while it
  is younger than :data:`ORPHAN_GRACE_S` it counts as in use.
* **In use.** A blob being read in this process (:func:`read_cached` holds it around the
  deserialization, an in-memory registry) is never evicted by this process. A path handed
  out by ``get_path`` (or ``get`` of an artifact, which returns a path) is kept for every
  process while the folio's session lives (until the folio is garbage-collected, or the
  process ends): this process lists such digests in its marker file
  ``v1/inuse/<pid>-<random>.json``, written under the ``limits`` lock, which every pass reads
  under the same lock (files of dead processes are removed). Other processes do not see
  plain reads: a reader that loses a race with another process's eviction marks the blob
  the same way, fetches it again and reads it once more (:func:`read_cached`), never an
  error; the hit path itself takes no lock and writes no file.
* **Soft limit** (default): after a download is published, if the cache is over
  ``max_cache_size`` it is evicted down to ``eviction_threshold * max_cache_size``
  (:func:`settle`). To keep the download path cheap, each
  process keeps an estimate of the total: the last full scan plus what it published since.
  It scans again when that scan is older than :data:`RESCAN_S` seconds or the estimate is
  over the limit, so other processes' downloads can push the total over the limit for at
  most that long before a pass.
* **Hard limit** (``hard_limit=True``): before a download starts, space is reserved in a
  cross-process ledger (``v1/reservations/<pid>-<random>.json``, one file per download,
  written under the ``limits`` lock; files of dead processes are ignored and swept), evicting
  first to make room. If the item does not fit even after evicting everything evictable, the
  download is refused with :class:`~aiofolio.errors.CacheFullError` before any byte is
  written. Blobs plus live reservations never exceed the limit (as long as every process
  sharing the cache uses the hard limit and the lock works). An item whose size the manifest
  does not record is reserved once downloaded, before it is published.
* **A full disk** (ENOSPC while downloading): the download's temp file is gone (the fetch
  deletes it), the cache is evicted as if its limit were its current size minus the item,
  and the download is tried once more; a second ENOSPC raises ``CacheFullError``.
* **Eviction** removes the item entries of the records that point at a blob first (a later
  read is a clean miss), then the blob, and logs one INFO line per pass
  (``Evicted 3 items (2.1 GB) from cache``).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import anyio.to_thread

from aiofolio.config import Settings, human_size
from aiofolio.errors import AiofolioError, CacheFullError
from aiofolio.policy.eviction import Entry, Plan, plan_cleanup, plan_eviction
from aiofolio.store import BundleRecord, cache_lock
from aiofolio.store._util import atomic_write, owner_pid, pid_alive, unique_name
from aiofolio.store.prefs import PrefsStore

if TYPE_CHECKING:
    from aiofolio.bundle import Item
    from aiofolio.engine.cache import BundleCache, CacheStore

__all__ = [
    "ORPHAN_GRACE_S",
    "RESCAN_S",
    "EvictionResult",
    "cleanup",
    "enforce",
    "find_orphans",
    "gather",
    "guarded",
    "hand_out_checked",
    "human_size",
    "in_use",
    "info",
    "prefs_of",
    "read_cached",
    "remove_bundles",
    "settle",
    "using",
]

log = logging.getLogger("aiofolio.limits")
T = TypeVar("T")

ORPHAN_GRACE_S: Final = 30.0
"""A blob no record names is left alone this long after it was written (being published)."""
RESCAN_S: Final = 10.0
"""Seconds a process trusts its estimate of the cache total while far below the limit."""
ORPHAN_PRIORITY: Final = -(2**31)
"""The priority of a blob no record names: it goes first."""
LIMITS_LOCK: Final = "limits"
LOCK_TIMEOUT: Final = 30.0
_RESERVATION_MAX_AGE: Final = 24 * 3600.0
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


# -- the in-use registry ------------------------------------------------------------------------
_registry_lock = threading.Lock()
_reading: Counter[str] = Counter()
_handed_out: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def using(digest: str) -> Iterator[None]:
    """Mark the blob ``digest`` in use (mid-read) for the ``with`` block."""
    with _registry_lock:
        _reading[digest] += 1
    try:
        yield
    finally:
        with _registry_lock:
            _reading[digest] -= 1
            if _reading[digest] <= 0:
                del _reading[digest]


def in_use() -> set[str]:
    """The digests this process is reading or has handed out (to live owners)."""
    with _registry_lock:
        out = set(_reading)
        for digests in list(_handed_out.values()):
            out |= digests
    return out


# -- in use across processes: markers in v1/inuse -------------------------------------------------
_marks_lock = threading.Lock()
_marks: dict[str, tuple[Path, Counter[str], set[str]]] = {}
"""Per cache root: this process's marker file, its temporary marks and what the file says."""


def _inuse_dir(store: CacheStore) -> Path:
    return store.layout.version_dir / "inuse"


def _sync_marks(store: CacheStore) -> None:
    """Rewrite this process's marker file: handed-out digests plus temporary marks."""
    with _marks_lock:
        path, temp, written = _marks_entry(store)
        with _registry_lock:
            wanted = set(temp)
            for digests in list(_handed_out.values()):
                wanted |= digests
        if wanted == written:
            return
        if wanted:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, json.dumps(sorted(wanted)).encode())
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        written.clear()
        written.update(wanted)


def _marked_by_others(store: CacheStore) -> set[str]:
    """Digests other live processes marked in use (files of dead processes are removed)."""
    own = _marks.get(str(store.layout.root))
    own_name = own[0].name if own is not None else ""
    out: set[str] = set()
    try:
        with os.scandir(_inuse_dir(store)) as it:
            entries = [e for e in it if e.name.endswith(".json") and e.name != own_name]
    except (FileNotFoundError, NotADirectoryError):
        return out
    for entry in entries:
        pid = owner_pid(entry.name)
        try:
            if pid is None or not pid_alive(pid):
                os.unlink(entry.path)
                continue
            with open(entry.path, "rb") as fh:
                out.update(str(d) for d in json.loads(fh.read() or b"[]"))
        except (OSError, ValueError):
            continue
    return out


def _mark(store: CacheStore, path: str | os.PathLike[str], *, owner: object | None) -> bool:
    """Mark a blob in use for every process (under the limits lock); True if it still exists.

    With ``owner``, the mark lasts while the owner lives (a handed-out path); without, it is
    a temporary mark that :func:`_unmark` lifts. Passes gather under the same lock, so once
    this returns True no other process evicts the blob until the mark goes. False: it was
    evicted before the mark (the caller fetches it again; the mark already protects it).
    """
    digest = os.path.basename(os.fspath(path))
    with _registry_lock:
        if owner is not None:
            _handed_out.setdefault(owner, set()).add(digest)
    with cache_lock(store.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        if owner is None:
            with _marks_lock:
                _marks_entry(store)[1][digest] += 1
        _sync_marks(store)
        return os.path.exists(path)


def _mark_temp(store: CacheStore, path: str | os.PathLike[str]) -> bool:
    return _mark(store, path, owner=None)


def _unmark(store: CacheStore, digest: str) -> None:
    with _marks_lock:
        temp = _marks_entry(store)[1]
        temp[digest] -= 1
        if temp[digest] <= 0:
            del temp[digest]
    with contextlib.suppress(OSError, AiofolioError):
        _sync_marks(store)


def _present(path: str) -> bool:
    return os.path.exists(path)


def _marks_entry(store: CacheStore) -> tuple[Path, Counter[str], set[str]]:
    key = str(store.layout.root)
    entry = _marks.get(key)
    if entry is None:
        entry = _marks[key] = (_inuse_dir(store) / unique_name(".json"), Counter(), set())
    return entry


async def hand_out_checked(owner: object, store: CacheStore, path: str) -> bool:
    """Keep ``path``'s blob in use for every process while ``owner`` lives.

    Returns:
        False when the blob was evicted (by another process) just before it was protected:
        fetch it again (it stays protected now), then the path is good.
    """
    digest = os.path.basename(path)
    with _registry_lock:
        known = digest in _handed_out.get(owner, ())
    if known and _present(path):
        return True
    return await _thread(lambda: _mark(store, path, owner=owner))


# -- preferences --------------------------------------------------------------------------------
_prefs: dict[str, PrefsStore] = {}


def prefs_of(store: CacheStore) -> PrefsStore:
    """The pins and priorities of ``store``'s cache folder (one object per folder)."""
    key = str(store.layout.root)
    prefs = _prefs.get(key)
    if prefs is None or prefs.layout != store.layout:
        prefs = _prefs[key] = PrefsStore(store.layout)
    return prefs


# -- gathering -----------------------------------------------------------------------------------
def gather(
    store: CacheStore,
    *,
    protect: Iterable[str] = (),
    now: float | None = None,
    counts: bool = True,
) -> list[Entry]:
    """Planner entries for every cached blob of ``store`` (one per referring item, at least one
    per blob). Blobs in :func:`in_use`, in ``protect`` or recently written orphans are in use.
    """
    now = time.time() if now is None else now
    if str(store.layout.root) in _marks:
        # Drop the marks of folios garbage-collected since: other processes may evict those.
        with contextlib.suppress(OSError, AiofolioError):
            _sync_marks(store)
    busy = in_use() | _marked_by_others(store) | set(protect)
    prefs = prefs_of(store).load_all()
    blobs = store.blobs.scan()
    referenced: set[str] = set()
    entries: list[Entry] = []
    for record in store.records.iter_records():
        if not record.items:
            continue
        access = store.stats.access_counts(record.url) if counts else {}
        wishes = prefs.get(record.url, {})
        for name, rec in record.items.items():
            blob = blobs.get(rec.digest)
            if blob is None:
                continue
            referenced.add(rec.digest)
            wish = wishes.get(name)
            entries.append(
                Entry(  # positional: 100,000 of these must take well under a second
                    rec.digest,
                    blob[0],
                    blob[1],
                    access.get(name, 0) if access else 0,
                    rec.cached_at or blob[2],
                    max(rec.priority, wish.priority) if wish else rec.priority,
                    rec.pinned or (wish.pinned if wish else False),
                    rec.digest in busy,
                    ((record.url, name),),
                )
            )
    for digest, blob in blobs.items():
        if digest in referenced:
            continue
        entries.append(
            Entry(
                digest,
                blob[0],
                last_access=blob[1],
                cached_at=blob[2],
                priority=ORPHAN_PRIORITY,
                in_use=digest in busy or now - blob[2] < ORPHAN_GRACE_S,
            )
        )
    return entries


# -- carrying a plan out ------------------------------------------------------------------------
@dataclass
class EvictionResult:
    """What one pass did.

    Attributes:
        evicted: Blobs removed.
        items: ``(bundle_url, item_name)`` entries dropped from records.
        bytes_freed: Bytes removed.
        total_before: The cache total before the pass.
        total_after: The total after it.
        limit: The limit the pass enforced (None: unlimited).
        reached: Whether the target was reached.
    """

    evicted: int = 0
    items: list[tuple[str, str]] = field(default_factory=list)
    bytes_freed: int = 0
    total_before: int = 0
    total_after: int = 0
    limit: int | None = None
    reached: bool = True

    def as_dict(self) -> dict[str, Any]:
        """The result as ``enforce_cache_limit``/``cleanup_cache`` return it."""
        return {
            "evicted": self.evicted,
            "items": [f"{url}::{name}" for url, name in self.items],
            "bytes_freed": self.bytes_freed,
            "total_before": self.total_before,
            "total_after": self.total_after,
            "limit": self.limit,
            "reached": self.reached,
        }


def _execute(store: CacheStore, plan: Plan, *, log_evictions: bool = True) -> EvictionResult:
    """Remove what ``plan`` evicts: record entries first, then the blobs."""
    result = EvictionResult(
        total_before=plan.total_before, total_after=plan.total_before, reached=plan.reached
    )
    if not plan.evict:
        return result
    by_url: dict[str, dict[str, str]] = {}
    for group in plan.evict:
        for url, name in group.refs:
            by_url.setdefault(url, {})[name] = group.digest
    for url, names in by_url.items():

        def drop(record: BundleRecord, names: dict[str, str] = names, url: str = url) -> Any:
            for name, digest in names.items():
                rec = record.items.get(name)
                if rec is not None and rec.digest == digest:
                    del record.items[name]
                    result.items.append((url, name))
            return record

        if store.records.load(url) is not None:
            try:
                store.records.update(url, drop)
            except AiofolioError as exc:
                log.warning("cannot drop evicted items from the record of %s: %s", url, exc)
    for group in plan.evict:
        try:
            freed = store.blobs.remove(group.digest)
        except (AiofolioError, ValueError) as exc:
            log.warning("cannot evict blob %s: %s", group.digest, exc)
            continue
        if freed or not store.blobs.path(group.digest).exists():
            result.evicted += 1
            result.bytes_freed += freed
    result.total_after = plan.total_before - result.bytes_freed
    if result.evicted:
        store.stats.add(None, evictions=result.evicted)
        if log_evictions:
            log.info(
                "Evicted %d items (%s) from cache", result.evicted, human_size(result.bytes_freed)
            )
    return result


def enforce(
    store: CacheStore,
    settings: Settings,
    *,
    protect: Iterable[str] = (),
    limit: int | None = None,
    target: int | None = None,
) -> EvictionResult:
    """One eviction pass (blocking): over ``limit``, evict down to ``target``.

    Defaults: ``max_cache_size`` and ``eviction_threshold * max_cache_size``. Unlimited: does
    nothing. Serialized across processes by the ``limits`` lock (best-effort).
    """
    limit = settings.max_cache_size if limit is None else limit
    if limit is None:
        total = store.blobs.total_size()
        return EvictionResult(total_before=total, total_after=total, limit=None)
    if target is None:
        target = int(limit * settings.eviction_threshold)
    with cache_lock(store.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        entries = gather(store, protect=protect, counts=settings.eviction_policy == "lfu")
        plan = plan_eviction(
            entries, limit=limit, target=target, policy=settings.eviction_policy, partial=True
        )
        result = _execute(store, plan, log_evictions=settings.log_evictions)
    result.limit = limit
    _usage_of(store).set(result.total_after)
    return result


def cleanup(store: CacheStore, settings: Settings, older_than: float) -> EvictionResult:
    """Evict every evictable blob not read for ``older_than`` seconds (blocking)."""
    with cache_lock(store.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        plan = plan_cleanup(gather(store, counts=False), older_than=older_than, now=time.time())
        result = _execute(store, plan, log_evictions=settings.log_evictions)
    result.limit = settings.max_cache_size
    _usage_of(store).set(result.total_after)
    return result


# -- the soft limit's cheap estimate ------------------------------------------------------------
class _Usage:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.total = 0
        self.scanned = -1e18  # monotonic time of the last scan

    def set(self, total: int) -> None:
        with self.lock:
            self.total, self.scanned = total, time.monotonic()

    def add(self, n: int) -> None:
        with self.lock:
            self.total += n


_usages: dict[str, _Usage] = {}


def _usage_of(store: CacheStore) -> _Usage:
    return _usages.setdefault(str(store.layout.root), _Usage())


def _soft_check(store: CacheStore, settings: Settings, digest: str, size: int) -> None:
    limit = settings.max_cache_size
    if limit is None:
        return
    usage = _usage_of(store)
    usage.add(size)
    fresh = time.monotonic() - usage.scanned < RESCAN_S
    if fresh and usage.total <= limit:
        return
    total = store.blobs.total_size()
    usage.set(total)
    if total > limit:
        enforce(store, settings, protect=(digest,))


# -- reservations for the hard limit ------------------------------------------------------------
class _Reservation:
    __slots__ = ("path", "size")

    def __init__(self, path: Path, size: int) -> None:
        self.path, self.size = path, size

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _reservations_dir(store: CacheStore) -> Path:
    return store.layout.version_dir / "reservations"


def _reserved_by_others(store: CacheStore) -> int:
    folder = _reservations_dir(store)
    total = 0
    now = time.time()
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    for entry in entries:
        pid = owner_pid(entry.name)
        try:
            st = entry.stat(follow_symlinks=False)
            alive = pid is not None and pid_alive(pid) and now - st.st_mtime < _RESERVATION_MAX_AGE
            if not alive:
                os.unlink(entry.path)  # a dead process's reservation
                continue
            with open(entry.path, "rb") as fh:
                total += int(fh.read() or b"0")
        except (OSError, ValueError):
            continue
    return total


def _reserve(store: CacheStore, settings: Settings, size: int, what: str) -> _Reservation:
    """Reserve ``size`` bytes under the hard limit, evicting first; or raise CacheFullError."""
    limit = settings.max_cache_size
    assert limit is not None
    with cache_lock(store.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        others = _reserved_by_others(store)
        entries = gather(store, counts=settings.eviction_policy == "lfu")
        plan = plan_eviction(
            entries,
            limit=limit,
            target=limit,
            policy=settings.eviction_policy,
            partial=False,
            extra=others + size,
        )
        if not plan.reached:
            raise CacheFullError(
                f"{what} ({size} bytes) does not fit under the hard cache limit of {limit} "
                f"bytes: {plan.total_before} bytes are cached ({plan.protected} of them pinned "
                f"or in use) and {others} bytes are reserved by downloads in progress; raise "
                "max_cache_size, unpin items, or turn hard_limit off"
            )
        _execute(store, plan, log_evictions=settings.log_evictions)
        folder = _reservations_dir(store)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / unique_name(".json")
        atomic_write(path, str(size).encode())
    return _Reservation(path, size)


# -- the download hooks ------------------------------------------------------------------------
class _Ticket:
    __slots__ = ("digest", "reservation", "size")

    def __init__(self, reservation: _Reservation | None, digest: str, size: int) -> None:
        self.reservation, self.digest, self.size = reservation, digest, size


_tickets: dict[str, _Ticket] = {}


def _is_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


def _free_for(store: CacheStore, settings: Settings, need: int) -> EvictionResult:
    total = store.blobs.total_size()
    limit = max(0, total - need)
    return enforce(store, settings, limit=limit, target=limit)


def guarded(
    cache: BundleCache, item: Item, fetch: Callable[..., Awaitable[tuple[str, Any, int]]]
) -> Callable[..., Awaitable[tuple[str, Any, int]]]:
    """Wrap the cache's download (``fetch_verified``) in the size limits and ENOSPC handling.

    Hard limit: reserve the item's size first (or raise ``CacheFullError``, nothing written).
    ENOSPC: evict room for the item and try once more, then ``CacheFullError``. The temp file
    the wrapped call returns is remembered; :func:`settle` releases its reservation and runs
    the soft limit after the publish.
    """

    @functools.wraps(fetch)
    async def run(*args: Any, **kwargs: Any) -> tuple[str, Any, int]:
        if not cache.writes_cache:
            return await fetch(*args, **kwargs)
        store, settings = cache.store, cache.settings
        hard = settings.hard_limit and settings.max_cache_size is not None
        what = f"item {item.name!r} of {cache.url}"
        reservation: _Reservation | None = None
        if hard and item.size_bytes is not None:
            reservation = await _thread(_reserve, store, settings, item.size_bytes, what)
        try:
            for attempt in (1, 2):
                try:
                    tmp, hashers, size = await fetch(*args, **kwargs)
                    break
                except OSError as exc:
                    if not _is_full(exc) or isinstance(exc, AiofolioError):
                        raise
                    if attempt == 2:
                        raise CacheFullError(
                            f"the disk of the cache ({store.layout.root}) is full: {what} "
                            f"({item.size_bytes or 'unknown'} bytes) did not fit even after "
                            "evicting; nothing was kept"
                        ) from exc
                    need = item.size_bytes or store.blobs.total_size() // 2  # unknown: free half
                    log.warning("disk full while downloading %s; evicting and retrying", what)
                    await _thread(_free_for, store, settings, need)
            if hard and reservation is None:
                # The manifest did not say how big it is: reserve now, before publishing.
                try:
                    reservation = await _thread(_reserve, store, settings, size, what)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
        except BaseException:
            if reservation is not None:
                reservation.release()
            raise
        digest = hashers.hexdigest(settings.checksum_algorithm)
        _tickets[os.fspath(tmp)] = _Ticket(reservation, digest, size)
        return tmp, hashers, size

    return run


async def settle(cache: BundleCache, tmp: str | os.PathLike[str]) -> None:
    """After a download's publish: release its reservation and enforce the soft limit.

    Never raises (a failed clean-up must not fail the read); a failure is logged.
    """
    ticket = _tickets.pop(os.fspath(tmp), None)
    if ticket is None:
        return
    try:
        if ticket.reservation is not None:
            ticket.reservation.release()
            return  # the hard limit held the total all along
        store = cache.store
        if store.blobs.lookup(ticket.digest) is not None:
            limit = cache.settings.max_cache_size
            usage = _usage_of(store)
            if limit is None or (
                time.monotonic() - usage.scanned < RESCAN_S and usage.total + ticket.size <= limit
            ):
                usage.add(ticket.size)  # well under the limit: no scan, no thread hop
                return
            await _thread(_soft_check, store, cache.settings, ticket.digest, ticket.size)
    except Exception as exc:
        log.warning("enforcing the cache limit after a download failed: %s", exc)


# -- maintenance ------------------------------------------------------------------------------
def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def info(store: CacheStore, settings: Settings) -> dict[str, Any]:
    """What ``cache_info()`` returns (blocking; scans the cache once)."""
    blobs = list(store.blobs.iter_blobs())
    total = sum(b.size for b in blobs)
    present = {b.digest for b in blobs}
    bundles = 0
    items = 0
    for record in store.records.iter_records():
        bundles += 1
        items += sum(1 for rec in record.items.values() if rec.digest in present)
    wishes = prefs_of(store).load_all()
    pinned = sum(1 for names in wishes.values() for p in names.values() if p.pinned)
    prioritized = sum(1 for names in wishes.values() for p in names.values() if p.priority)
    totals = store.stats.totals(None)
    hits, misses = totals.get("hits", 0), totals.get("misses", 0)
    limit = settings.max_cache_size
    return {
        "path": str(store.layout.root),
        "type": "local",
        "size_bytes": total,
        "size_mb": round(total / 1e6, 3),
        "limit_bytes": limit,
        "limit_mb": None if limit is None else round(limit / 1e6, 3),
        "usage_percent": None if not limit else round(100.0 * total / limit, 2),
        "is_soft_limit": not settings.hard_limit,
        "policy": settings.eviction_policy,
        "eviction_threshold": settings.eviction_threshold,
        "bundles": bundles,
        "items": items,
        "blobs": len(blobs),
        "pinned": pinned,
        "prioritized": prioritized,
        "in_use": len(in_use() & present),
        "hits": hits,
        "misses": misses,
        "evictions": totals.get("evictions", 0),
        "hit_rate": hits / (hits + misses) if hits + misses else 0.0,
        "oldest_access": _iso(min((b.atime for b in blobs), default=None)),
        "newest_access": _iso(max((b.atime for b in blobs), default=None)),
    }


def remove_bundles(store: CacheStore, urls: Iterable[str]) -> int:
    """Delete the records of ``urls`` and the blobs only they used; returns bytes freed."""
    urls = set(urls)
    dropped: set[str] = set()
    with cache_lock(store.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        for record in store.records.iter_records():
            if record.url in urls:
                dropped |= {rec.digest for rec in record.items.values()}
        for url in urls:
            store.records.delete(url)
        still = {
            rec.digest for record in store.records.iter_records() for rec in record.items.values()
        }
        busy = in_use() | _marked_by_others(store)
        freed = 0
        for digest in dropped - still - busy:
            with contextlib.suppress(AiofolioError, ValueError):
                freed += store.blobs.remove(digest)
    _usage_of(store).add(-freed)
    return freed


async def find_orphans(
    store: CacheStore,
    stat: Callable[[str], Awaitable[object]],
    *,
    concurrency: int = 8,
) -> list[str]:
    """The cached bundles whose remote manifest is gone (``stat`` raised RemoteNotFoundError).

    Args:
        stat: Stats one bundle's ``items.json`` given the bundle URL.
        concurrency: How many checks run at once.

    Other errors (unreachable, forbidden) keep the bundle: only a definite "not found" counts.
    """
    from aiofolio.errors import RemoteNotFoundError

    urls = await _thread(lambda: sorted({r.url for r in store.records.iter_records() if r.url}))
    limit = anyio.Semaphore(max(1, concurrency))
    gone: list[str] = []

    async def check(url: str) -> None:
        async with limit:
            try:
                await stat(url)
            except RemoteNotFoundError:
                gone.append(url)
            except Exception as exc:
                log.warning("cannot check whether %s still exists (%s); keeping it", url, exc)

    async with anyio.create_task_group() as tg:
        for url in urls:
            tg.start_soon(check, url)
    return sorted(gone)


# -- the read path -----------------------------------------------------------------------------
async def read_cached(
    cache: BundleCache,
    item: Item,
    use: Callable[[Path], Awaitable[T]],
    *,
    owner: object | None = None,
) -> T:
    """Get the item's blob and ``use`` it, holding it in use; retry once if it vanished.

    Another process may evict the blob between :meth:`BundleCache.blob_for` returning and the
    reader opening it. Then the blob is marked in use for every process (a marker file, under
    the limits lock), fetched again (a clean miss) and read once more: the retry cannot lose
    the race again. The first attempt costs nothing extra (no lock, no file).

    Args:
        owner: When given, the blob stays in use while ``owner`` lives, for every process
            (the result refers to the file, e.g. an artifact's path).
    """
    store = cache.store
    marked: str | None = None
    try:
        for attempt in (1, 2):
            try:
                blob = await cache.blob_for(item)
            except FileNotFoundError as exc:
                # Vanished while the hit was verified (NotCachedError/RemoteNotFoundError are
                # answers, not races).
                rec = cache.cached_item(item)
                if attempt == 2 or isinstance(exc, AiofolioError) or rec is None:
                    raise
                log.info("the cached blob of %r vanished; fetching it again", item.name)
                marked = rec.digest
                await _thread(_mark_temp, store, store.blobs.path(rec.digest))
                continue
            with using(blob.name):
                try:
                    result = await use(blob)
                except FileNotFoundError:
                    if attempt == 2 or blob.exists():
                        raise
                    log.info(
                        "the cached blob of %r vanished mid-read (evicted by another process); "
                        "fetching it again",
                        item.name,
                    )
                    marked = blob.name
                    await _thread(_mark_temp, store, blob)
                    continue
                if owner is not None:
                    kept = await hand_out_checked(owner, store, str(blob))
                    if not kept and attempt == 1:
                        continue  # evicted before the path was protected: fetch it again
                return result
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        if marked is not None:
            await _thread(_unmark, store, marked)


async def _thread(fn: Callable[..., T], *args: Any) -> T:
    return await anyio.to_thread.run_sync(lambda: fn(*args))


def _reset_after_fork() -> None:  # pragma: no cover - runs in forked children only
    global _registry_lock, _marks_lock
    _registry_lock = threading.Lock()
    _marks_lock = threading.Lock()
    _marks.clear()
    _reading.clear()
    _tickets.clear()
    _usages.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
