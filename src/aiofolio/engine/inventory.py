"""What is in one cache folder, item by item, and whether its blobs still hold their bytes.

Owns: the per-bundle and per-item listing of a cache folder (:func:`list_cached`: sizes, pins,
priorities, when cached, last access, fresh or stale), the re-hash of every cached blob
(:func:`verify_blobs`: corrupt, missing and wrong-size blobs) and the repair that drops the bad
ones (:func:`repair`: item records first, so the next read is a clean miss that downloads
again, then the blob). Blocking code over the store (run it in a thread); the facade's
``DataFolio.list_cache`` and ``DataFolio.verify_cache`` call it.

A blob's last access is its atime (every hit touches it); fresh means the bundle's manifest was
checked within the TTL (:func:`aiofolio.policy.freshness.decide`), so a read needs no request.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from aiofolio.engine._folder import Folder
from aiofolio.engine.inuse import LIMITS_LOCK, LOCK_TIMEOUT
from aiofolio.errors import AiofolioError
from aiofolio.policy.freshness import Decision, decide
from aiofolio.store import cache_lock, hash_file, is_available

__all__ = [
    "BlobProblem",
    "CachedBundle",
    "CachedItem",
    "VerifyReport",
    "list_cached",
    "repair",
    "verify_blobs",
]


def _algorithm_for(digest: str) -> str | None:
    """The algorithm a blob no record names is checked with, by digest length."""
    return {32: "md5", 40: "sha1", 64: "sha256"}.get(len(digest))


@dataclass(frozen=True)
class CachedItem:
    """One cached item of a bundle.

    Attributes:
        bundle: The bundle URL.
        name: The item name.
        size: Bytes of its cached copy (the record's size when the blob is missing).
        digest: The digest of the blob holding it.
        pinned: Never evicted (``pin_cache``).
        priority: Eviction priority (higher stays longer).
        cached_at: When it was cached (epoch seconds), None when unknown.
        last_access: Last read (the blob's atime), None when the blob is missing.
        fresh: Whether its bundle's manifest is within the TTL (a read needs no request).
        present: Whether the blob is on disk.
    """

    bundle: str
    name: str
    size: int
    digest: str
    pinned: bool
    priority: int
    cached_at: float | None
    last_access: float | None
    fresh: bool
    present: bool = True


@dataclass(frozen=True)
class CachedBundle:
    """One cached bundle.

    Attributes:
        url: The bundle URL.
        size: Bytes of its cached blobs (a blob two of its items share counts once).
        items: Its cached items, by name.
        last_access: The newest access of its blobs (None: no blob cached).
        last_check: When its manifest was last checked with the remote (None: never).
        fresh: Whether that check is within the TTL.
    """

    url: str
    size: int
    items: tuple[CachedItem, ...]
    last_access: float | None
    last_check: float | None
    fresh: bool


def list_cached(rt: Folder, ttl: float | None, *, now: float | None = None) -> list[CachedBundle]:
    """Every cached bundle of the folder with its items, sorted by URL (scans the store once).

    Args:
        ttl: The manifest TTL that decides fresh or stale (``cache_ttl``; None: never stale).
        now: The current time (epoch seconds); default ``time.time()``.
    """
    now = time.time() if now is None else now
    blobs = rt.blobs.scan()
    prefs = rt.prefs.load_all()
    out: list[CachedBundle] = []
    for record in rt.records.iter_records():
        if not record.url:
            continue
        last_check = record.last_check or None
        fresh = decide(now=now, last_check=last_check, ttl=ttl) is Decision.FRESH
        wishes = prefs.get(record.url, {})
        items: list[CachedItem] = []
        seen: dict[str, int] = {}
        for name in sorted(record.items):
            rec = record.items[name]
            blob = blobs.get(rec.digest)
            wish = wishes.get(name)
            items.append(
                CachedItem(
                    bundle=record.url,
                    name=name,
                    size=blob[0] if blob else rec.size,
                    digest=rec.digest,
                    pinned=rec.pinned or (wish.pinned if wish else False),
                    priority=max(rec.priority, wish.priority) if wish else rec.priority,
                    cached_at=rec.cached_at or (blob[2] if blob else None),
                    last_access=blob[1] if blob else None,
                    fresh=fresh,
                    present=blob is not None,
                )
            )
            if blob is not None:
                seen[rec.digest] = blob[0]
        accesses = [i.last_access for i in items if i.last_access is not None]
        out.append(
            CachedBundle(
                url=record.url,
                size=sum(seen.values()),
                items=tuple(items),
                last_access=max(accesses, default=None),
                last_check=last_check,
                fresh=fresh,
            )
        )
    return sorted(out, key=lambda b: b.url)


@dataclass(frozen=True)
class BlobProblem:
    """A cached blob that does not hold what its records say.

    Attributes:
        digest: The blob's digest (its file name).
        path: Its path.
        problem: ``"corrupt"`` (the bytes hash to something else), ``"size"`` (not the size
            the record states) or ``"missing"`` (a record names it, the file is gone).
        refs: The ``(bundle_url, item_name)`` records naming it (empty: no record does).
        expected_size: The size the records state (None when no record names it).
        actual_size: The file's size (None when missing).
    """

    digest: str
    path: str
    problem: Literal["corrupt", "size", "missing"]
    refs: tuple[tuple[str, str], ...] = ()
    expected_size: int | None = None
    actual_size: int | None = None


@dataclass
class VerifyReport:
    """What :func:`verify_blobs` found (and :func:`repair` did).

    Attributes:
        checked: Blobs re-hashed.
        bytes_checked: Their bytes.
        skipped: Blobs that could not be checked (no record and a digest of unknown
            algorithm, or an algorithm not available here).
        problems: The blobs that failed, by digest order.
        repaired: Whether the problems were dropped from the cache.
        bytes_freed: Bytes the repair removed.
    """

    checked: int = 0
    bytes_checked: int = 0
    skipped: int = 0
    problems: list[BlobProblem] = field(default_factory=list)
    repaired: bool = False
    bytes_freed: int = 0

    @property
    def ok(self) -> bool:
        """True when every checked blob verified and none is missing."""
        return not self.problems


ProgressCallback = Callable[[int, int], None]
"""``progress(bytes_done, bytes_total)``, called after each blob (from the worker thread)."""


def verify_blobs(
    rt: Folder, url: str | None = None, *, progress: ProgressCallback | None = None
) -> VerifyReport:
    """Re-hash every cached blob (or only those of the bundle ``url``) against its digest.

    A blob is hashed with the algorithm its records state (``md5``); one no record names is
    hashed with the algorithm its digest length implies (32 hex: MD5), else skipped. A record
    whose blob is gone is a ``"missing"`` problem; a blob whose size differs from its record's
    is a ``"size"`` problem (not hashed).
    """
    blobs = rt.blobs.scan()
    refs: dict[str, list[tuple[str, str]]] = {}
    algorithms: dict[str, str] = {}
    sizes: dict[str, int] = {}
    for record in rt.records.iter_records():
        if url is not None and record.url != url:
            continue
        for name, rec in record.items.items():
            if not rec.digest:
                continue
            refs.setdefault(rec.digest, []).append((record.url, name))
            algorithms.setdefault(rec.digest, rec.algorithm or "md5")
            if rec.size:
                sizes.setdefault(rec.digest, rec.size)
    digests = sorted(refs) if url is not None else sorted(set(refs) | set(blobs))
    report = VerifyReport()
    total = sum(blobs[d][0] for d in digests if d in blobs)
    done = 0
    for digest in digests:
        path = str(rt.blobs.path(digest))
        named = tuple(sorted(refs.get(digest, ())))
        expected = sizes.get(digest)
        blob = blobs.get(digest)
        if blob is None:
            report.problems.append(BlobProblem(digest, path, "missing", named, expected, None))
            continue
        size = blob[0]
        algorithm = algorithms.get(digest) or _algorithm_for(digest)
        if expected is not None and size != expected:
            report.problems.append(BlobProblem(digest, path, "size", named, expected, size))
        elif algorithm is None or not is_available(algorithm):
            report.skipped += 1
        else:
            try:
                actual = hash_file(path, [algorithm]).hexdigest(algorithm)
            except FileNotFoundError:
                actual = None  # evicted meanwhile: nothing to verify
            if actual is not None:
                report.checked += 1
                report.bytes_checked += size
                if actual != digest:
                    report.problems.append(
                        BlobProblem(digest, path, "corrupt", named, expected, size)
                    )
        done += size
        if progress is not None:
            progress(done, total)
    return report


def repair(rt: Folder, problems: Iterable[BlobProblem]) -> int:
    """Drop every problem from the cache: its item records, then its blob; bytes freed.

    A record is dropped only while it still names the bad digest (a newer download of the
    item is kept). The next read of such an item is a miss and downloads it again.
    """
    problems = list(problems)
    freed = 0
    with cache_lock(rt.layout, LIMITS_LOCK, LOCK_TIMEOUT):
        by_url: dict[str, dict[str, str | None]] = {}
        for problem in problems:
            for bundle, name in problem.refs:
                by_url.setdefault(bundle, {})[name] = problem.digest
        for bundle, names in by_url.items():
            rt.records.drop_items(bundle, names)
        for problem in problems:
            if problem.problem == "missing":
                continue
            try:
                freed += rt.blobs.remove(problem.digest)
            except (AiofolioError, ValueError, OSError):
                if os.path.exists(problem.path):
                    raise
    return freed
