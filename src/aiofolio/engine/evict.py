"""Eviction and maintenance passes over one cache root (blocking; run them in a thread).

Owns: turning the store into planner entries (:func:`gather`), carrying a plan out
(:func:`execute`: record entries first, so a later read is a clean miss, then the blobs; one
INFO line per pass, ``Evicted 3 items (2.1 GB) from cache``), the passes built on them
(:func:`enforce`, :func:`cleanup`), the folder summary (:func:`info`), removing whole bundles
(:func:`remove_bundles`) and finding bundles whose remote is gone (:func:`find_orphans`). The
decisions come from the pure planner :mod:`aiofolio.policy.eviction`.

Last access is the blob's atime (every hit touches it); ``cached_at`` is the record's. A blob
no record names (invalidated, or published by another process that has not yet written its
record) gets the lowest priority, and counts as in use while younger than
:data:`ORPHAN_GRACE_S`. Passes, reservations and in-use markers share the ``limits`` lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio
import anyio.to_thread

from aiofolio.config import Settings, human_size
from aiofolio.engine._folder import Folder
from aiofolio.engine.inuse import LIMITS_LOCK, LOCK_TIMEOUT, InUse
from aiofolio.errors import AiofolioError, RemoteNotFoundError
from aiofolio.policy import Entry, Plan, hit_rate, plan_cleanup, plan_eviction
from aiofolio.store import cache_lock
from aiofolio.store._util import iso_utc
from aiofolio.store.partials import PARTIAL_PREFIX

__all__ = [
    "ORPHAN_GRACE_S",
    "EvictionResult",
    "cleanup",
    "enforce",
    "execute",
    "find_orphans",
    "gather",
    "info",
    "planned",
    "remove_bundles",
]

log = logging.getLogger("aiofolio.limits")

ORPHAN_GRACE_S: Final = 30.0
"""A blob no record names is left alone this long after it was written (being published)."""
ORPHAN_PRIORITY: Final = -(2**31)
"""The priority of a blob no record names: it goes first."""


def gather(
    rt: Folder,
    inuse: InUse,
    *,
    protect: Iterable[str] = (),
    now: float | None = None,
    counts: bool = True,
) -> list[Entry]:
    """Planner entries for every cached blob (one per referring item, at least one per blob).

    Blobs some process holds (:meth:`~aiofolio.engine.inuse.InUse.busy`), those in
    ``protect`` and recently written orphans are in use.
    """
    now = time.time() if now is None else now
    busy = inuse.busy() | set(protect)
    prefs = rt.prefs.load_all()
    blobs = rt.blobs.scan()
    referenced: set[str] = set()
    entries: list[Entry] = []
    for record in rt.records.iter_records():
        if not record.items:
            continue
        access = rt.stats.access_counts(record.url) if counts else {}
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
    for part in rt.partials.scan():  # column reads: evicted like an item, never a blob
        entries.append(
            Entry(
                part.key,
                part.size,
                part.last_access,
                cached_at=part.cached_at,
                in_use=part.key in busy,
            )
        )
    return entries


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


def execute(rt: Folder, plan: Plan, *, log_evictions: bool = True) -> EvictionResult:
    """Remove what ``plan`` evicts: record entries first, then the blobs."""
    result = EvictionResult(
        total_before=plan.total_before, total_after=plan.total_before, reached=plan.reached
    )
    if not plan.evict:
        return result
    by_url: dict[str, dict[str, str | None]] = {}
    for group in plan.evict:
        for url, name in group.refs:
            by_url.setdefault(url, {})[name] = group.digest
    for url, names in by_url.items():
        try:
            dropped = rt.records.drop_items(url, names)
        except AiofolioError as exc:
            log.warning("cannot drop evicted items from the record of %s: %s", url, exc)
            continue
        result.items.extend((url, name) for name in dropped)
    for group in plan.evict:
        if group.digest.startswith(PARTIAL_PREFIX):
            result.evicted += 1
            result.bytes_freed += rt.partials.remove_key(group.digest)
            continue
        try:
            freed = rt.blobs.remove(group.digest)
        except (AiofolioError, ValueError) as exc:
            log.warning("cannot evict blob %s: %s", group.digest, exc)
            continue
        if freed or not rt.blobs.path(group.digest).exists():
            result.evicted += 1
            result.bytes_freed += freed
    result.total_after = plan.total_before - result.bytes_freed
    if result.evicted:
        rt.stats.add(None, evictions=result.evicted)
        if log_evictions:
            log.info(
                "Evicted %d items (%s) from cache", result.evicted, human_size(result.bytes_freed)
            )
    return result


def enforce(
    rt: Folder,
    inuse: InUse,
    settings: Settings,
    *,
    protect: Iterable[str] = (),
    limit: int | None = None,
    target: int | None = None,
) -> EvictionResult:
    """One eviction pass: over ``limit``, evict down to ``target``.

    Defaults: ``max_cache_size`` and ``eviction_threshold * max_cache_size``. Unlimited: does
    nothing. Serialized across processes by the ``limits`` lock (best-effort).
    """
    limit = settings.max_cache_size if limit is None else limit
    if limit is None:
        total = rt.total_size()
        return EvictionResult(total_before=total, total_after=total, limit=None)
    if target is None:
        target = int(limit * settings.eviction_threshold)
    with cache_lock(rt.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        entries = gather(rt, inuse, protect=protect, counts=settings.eviction_policy == "lfu")
        plan = plan_eviction(
            entries, limit=limit, target=target, policy=settings.eviction_policy, partial=True
        )
        result = execute(rt, plan, log_evictions=settings.log_evictions)
    result.limit = limit
    return result


def cleanup(
    rt: Folder, inuse: InUse, settings: Settings, older_than: float, *, dry_run: bool = False
) -> EvictionResult:
    """Evict every evictable blob not read for ``older_than`` seconds (``dry_run``: plan only,
    the result says what would go)."""
    with cache_lock(rt.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        plan = plan_cleanup(gather(rt, inuse, counts=False), older_than=older_than, now=time.time())
        if dry_run:
            result = planned(plan)
        else:
            result = execute(rt, plan, log_evictions=settings.log_evictions)
    result.limit = settings.max_cache_size
    return result


def planned(plan: Plan) -> EvictionResult:
    """What carrying ``plan`` out would do, without doing it (a dry run)."""
    return EvictionResult(
        evicted=len(plan.evict),
        items=[ref for group in plan.evict for ref in group.refs],
        bytes_freed=plan.freed,
        total_before=plan.total_before,
        total_after=plan.total_after,
        reached=plan.reached,
    )


def info(rt: Folder, inuse: InUse, settings: Settings) -> dict[str, Any]:
    """What ``cache_info()`` returns (scans the cache once)."""
    blobs = list(rt.blobs.iter_blobs())
    total = sum(b.size for b in blobs) + rt.partials.total_size()
    present = {b.digest for b in blobs}
    bundles = 0
    items = 0
    for record in rt.records.iter_records():
        bundles += 1
        items += sum(1 for rec in record.items.values() if rec.digest in present)
    wishes = rt.prefs.load_all()
    pinned = sum(1 for names in wishes.values() for p in names.values() if p.pinned)
    prioritized = sum(1 for names in wishes.values() for p in names.values() if p.priority)
    totals = rt.stats.totals(None)
    hits, misses = totals.get("hits", 0), totals.get("misses", 0)
    limit = settings.max_cache_size
    return {
        "path": rt.root,
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
        "in_use": len(inuse.local() & present),
        "hits": hits,
        "misses": misses,
        "evictions": totals.get("evictions", 0),
        "hit_rate": hit_rate(hits, misses),
        "oldest_access": iso_utc(min((b.atime for b in blobs), default=None)),
        "newest_access": iso_utc(max((b.atime for b in blobs), default=None)),
    }


def remove_bundles(rt: Folder, inuse: InUse, urls: Iterable[str], *, dry_run: bool = False) -> int:
    """Delete the records of ``urls`` and the blobs only they used; returns bytes freed.

    ``dry_run``: delete nothing; return the bytes the removal would free.
    """
    urls = set(urls)
    dropped: set[str] = set()
    with cache_lock(rt.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        records = list(rt.records.iter_records())
        for record in records:
            if record.url in urls:
                dropped |= {rec.digest for rec in record.items.values()}
        if dry_run:
            still = {
                rec.digest
                for record in records
                if record.url not in urls
                for rec in record.items.values()
            }
            blobs = rt.blobs.scan()
            planned = sum(e.size for e in rt.partials.scan() if e.url in urls)
            return planned + sum(blobs[d][0] for d in dropped - still - inuse.busy() if d in blobs)
        freed = 0
        for url in urls:
            rt.records.delete(url)
            freed += rt.partials.remove_bundle(url)
        still = {
            rec.digest for record in rt.records.iter_records() for rec in record.items.values()
        }
        busy = inuse.busy()
        for digest in dropped - still - busy:
            try:
                freed += rt.blobs.remove(digest)
            except (AiofolioError, ValueError):
                continue
    return freed


async def find_orphans(
    rt: Folder, stat: Callable[[str], Awaitable[object]], *, concurrency: int = 8
) -> list[str]:
    """The cached bundles whose remote manifest is gone (``stat`` raised RemoteNotFoundError).

    Args:
        stat: Stats one bundle's ``items.json`` given the bundle URL.
        concurrency: How many checks run at once.

    Other errors (unreachable, forbidden) keep the bundle: only a definite "not found" counts.
    """

    def urls() -> list[str]:
        return sorted({r.url for r in rt.records.iter_records() if r.url})

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
        for url in await anyio.to_thread.run_sync(urls):
            tg.start_soon(check, url)
    return sorted(gone)
