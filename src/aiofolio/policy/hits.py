"""Sans-IO rules of the cache's hit path and of its size estimate.

Owns: :func:`rehash_on_hit` (whether a cached blob is re-hashed before it is served) and
:func:`needs_scan` (whether a process trusts its running estimate of the cache total or scans
the folder again). Pure functions: no I/O, no ``await``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["REHASH_MAX", "RESCAN_S", "TAMPER_SLACK_S", "hit_rate", "needs_scan", "rehash_on_hit"]

REHASH_MAX: Final = 64 * 1024 * 1024
"""Blobs up to this size are re-hashed (fast hash) on every hit; larger ones when their file
changed after it was cached, and always by ``cache_status`` and ``verify``."""
TAMPER_SLACK_S: Final = 2.0
"""A blob whose mtime is this much later than its record's ``cached_at`` was changed."""
RESCAN_S: Final = 10.0
"""Seconds a process trusts its estimate of the cache total while below the limit."""


def rehash_on_hit(
    *, size: int, mtime: float, cached_at: float, full: bool, has_fast_hash: bool
) -> bool:
    """Whether a hit must hash the blob (else its size check is enough)."""
    if not has_fast_hash:
        return False
    tampered = mtime > cached_at + TAMPER_SLACK_S
    return full or tampered or size <= REHASH_MAX


def needs_scan(
    *, now: float, scanned_at: float, estimate: int, limit: int | None, rescan_s: float = RESCAN_S
) -> bool:
    """Whether the soft limit must scan the cache folder after a publish.

    Args:
        now, scanned_at: monotonic seconds now and at the last full scan.
        estimate: the total after the last scan plus what this process published since.
        limit: ``max_cache_size`` (None: unlimited, never scan).
    """
    if limit is None:
        return False
    return now - scanned_at >= rescan_s or estimate > limit


def hit_rate(hits: int, misses: int) -> float:
    """Hits over reads (0.0 before any read)."""
    return hits / (hits + misses) if hits + misses else 0.0
