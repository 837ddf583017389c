"""Sans-IO eviction planning: which cached blobs go when the cache is over its size limit.

Owns: :class:`Entry` (one cached item version as the planner sees it), :class:`Plan` (what a
pass evicts and where it leaves the total), :func:`plan_eviction` (the size-limit planner for
the soft limit, the hard limit and ``enforce_cache_limit``) and :func:`plan_cleanup` (the
``cleanup_cache(older_than=...)`` planner). Pure functions with an injected clock: no I/O, no
``await``; :mod:`aiofolio.engine.limits` gathers the entries and carries the plan out.

Rules (DESIGN §5, issue 7):

* A blob shared by several bundles (dedup) counts once: entries are grouped by digest. The
  group is pinned or in use when any referrer is, its priority is the highest of its
  referrers', its last access the latest, its access count the sum, and its ``cached_at`` the
  earliest (when the bytes entered the cache).
* Pinned and in-use groups are never evicted.
* Order: lower priority first; within a priority, the policy's order (``lru``: oldest last
  access; ``lfu``: fewest accesses, ties by oldest access; ``fifo``: oldest ``cached_at``);
  ties by digest, so a plan is deterministic. What a plan evicts is always a prefix of that
  order.
* Nothing happens while the total is within ``limit``. Over it, groups go until the total is
  at most ``target``. With ``partial=False`` (the hard limit) a plan that cannot reach the
  target evicts nothing and reports ``reached=False``: refusing a download must not empty the
  cache first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "POLICIES",
    "Entry",
    "Plan",
    "Policy",
    "eviction_order",
    "group_entries",
    "plan_cleanup",
    "plan_eviction",
]

Policy = Literal["lru", "lfu", "fifo"]
POLICIES: tuple[Policy, ...] = ("lru", "lfu", "fifo")


@dataclass(slots=True)
class Entry:
    """One cached item version (or, after grouping, one blob with all its referrers).

    Attributes:
        digest: The blob digest (the grouping key).
        size: Bytes on disk.
        last_access: Epoch seconds of the last read (LRU).
        access_count: Reads counted so far (LFU).
        cached_at: Epoch seconds when the bytes were cached (FIFO).
        priority: Higher stays longer (``set_cache_priority``); 0 by default.
        pinned: Never evicted (``pin_cache``).
        in_use: Mid-read, or handed out by ``get_path`` in this process: never evicted.
        refs: Who refers to the blob, as ``(bundle_url, item_name)`` pairs (empty for a blob
            no record names).
    """

    digest: str
    size: int
    last_access: float = 0.0
    access_count: int = 0
    cached_at: float = 0.0
    priority: int = 0
    pinned: bool = False
    in_use: bool = False
    refs: tuple[tuple[str, str], ...] = ()

    @property
    def evictable(self) -> bool:
        """Neither pinned nor in use."""
        return not (self.pinned or self.in_use)


@dataclass(frozen=True)
class Plan:
    """The outcome of planning one pass.

    Attributes:
        evict: The groups to evict, in eviction order (one per digest).
        total_before: Bytes in the cache before the pass (each blob once).
        total_after: Bytes left after evicting ``evict``.
        limit: The limit the pass checked against.
        target: The total the pass evicts down to when over ``limit``.
        protected: Bytes of pinned or in-use groups (never evicted).
        reached: Whether ``total_after <= target`` (or no eviction was needed).
    """

    evict: tuple[Entry, ...] = ()
    total_before: int = 0
    total_after: int = 0
    limit: int = 0
    target: int = 0
    protected: int = 0
    reached: bool = True
    keep: tuple[Entry, ...] = field(default=(), repr=False)

    @property
    def freed(self) -> int:
        """Bytes the plan frees."""
        return self.total_before - self.total_after

    @property
    def digests(self) -> list[str]:
        """The digests to evict, in order."""
        return [e.digest for e in self.evict]


def group_entries(entries: Iterable[Entry]) -> list[Entry]:
    """Merge entries of the same digest into one group (see the module docstring).

    A digest with a single entry is returned as that very entry (not a copy); merged groups
    are new objects. The inputs are never modified.
    """
    groups: dict[str, Entry] = {}
    merged: set[str] = set()
    for e in entries:
        g = groups.get(e.digest)
        if g is None:
            groups[e.digest] = e
            continue
        if e.digest not in merged:
            g = groups[e.digest] = Entry(
                g.digest,
                g.size,
                g.last_access,
                g.access_count,
                g.cached_at,
                g.priority,
                g.pinned,
                g.in_use,
                tuple(g.refs),
            )
            merged.add(e.digest)
        g.size = max(g.size, e.size)
        g.last_access = max(g.last_access, e.last_access)
        g.access_count += e.access_count
        g.cached_at = min(g.cached_at, e.cached_at)
        g.priority = max(g.priority, e.priority)
        g.pinned = g.pinned or e.pinned
        g.in_use = g.in_use or e.in_use
        if e.refs:
            g.refs = g.refs + tuple(r for r in e.refs if r not in g.refs)
    return list(groups.values())


def _order_key(policy: str) -> Callable[[Entry], tuple[object, ...]]:
    if policy == "lru":
        return lambda e: (e.priority, e.last_access, e.digest)
    if policy == "lfu":
        return lambda e: (e.priority, e.access_count, e.last_access, e.digest)
    if policy == "fifo":
        return lambda e: (e.priority, e.cached_at, e.digest)
    raise ValueError(f"unknown eviction policy {policy!r}; use one of {', '.join(POLICIES)}")


def eviction_order(groups: Sequence[Entry], policy: str) -> list[Entry]:
    """The evictable groups in the order a pass evicts them.

    Raises:
        ValueError: an unknown policy.
    """
    return sorted((g for g in groups if g.evictable), key=_order_key(policy))


def plan_eviction(
    entries: Iterable[Entry],
    *,
    limit: int,
    target: int | None = None,
    policy: str = "lru",
    partial: bool = True,
    extra: int = 0,
) -> Plan:
    """Plan one eviction pass.

    Args:
        entries: Every cached item version (several per digest are fine; they are grouped).
        limit: Evict only when the total (plus ``extra``) is above this.
        target: Evict down to this total (plus ``extra``); defaults to ``limit``. Clamped to
            ``limit``.
        policy: ``lru``, ``lfu`` or ``fifo``.
        partial: When the target cannot be reached, evict what is evictable anyway (the soft
            limit) instead of nothing (``False``: the hard limit).
        extra: Bytes that count against the limit but are not entries (space reserved for
            downloads in progress, the incoming item).

    Returns:
        The plan; ``plan.reached`` says whether the total plus ``extra`` ends within
        ``target``.

    Raises:
        ValueError: an unknown policy or a negative limit.
    """
    if limit < 0:
        raise ValueError(f"a cache limit cannot be negative: {limit}")
    target = limit if target is None else min(max(0, target), limit)
    order_key = _order_key(policy)  # validates the policy even when nothing is evicted
    groups = group_entries(entries)
    total = sum(g.size for g in groups)
    protected = sum(g.size for g in groups if not g.evictable)
    if total + extra <= limit:
        return Plan((), total, total, limit, target, protected, True, tuple(groups))
    candidates = sorted((g for g in groups if g.evictable), key=order_key)
    if not partial and protected + extra > target:
        return Plan((), total, total, limit, target, protected, False, tuple(groups))
    left = total
    chosen: list[Entry] = []
    for g in candidates:
        if left + extra <= target:
            break
        chosen.append(g)
        left -= g.size
    gone = {g.digest for g in chosen}
    keep = tuple(g for g in groups if g.digest not in gone)
    return Plan(tuple(chosen), total, left, limit, target, protected, left + extra <= target, keep)


def plan_cleanup(entries: Iterable[Entry], *, older_than: float, now: float) -> Plan:
    """Plan ``cleanup_cache``: every evictable group not read for ``older_than`` seconds.

    A group's last access is its latest referrer's.
    """
    groups = group_entries(entries)
    total = sum(g.size for g in groups)
    protected = sum(g.size for g in groups if not g.evictable)
    cutoff = now - older_than
    chosen = sorted(
        (g for g in groups if g.evictable and g.last_access < cutoff),
        key=_order_key("lru"),
    )
    gone = {g.digest for g in chosen}
    left = total - sum(g.size for g in chosen)
    keep = tuple(g for g in groups if g.digest not in gone)
    return Plan(tuple(chosen), total, left, total, left, protected, True, keep)
