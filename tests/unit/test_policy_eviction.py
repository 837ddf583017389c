"""Properties of the pure eviction planner (:mod:`aiofolio.policy.eviction`), with hypothesis.

* It never evicts pinned or in-use entries (nor a digest any of whose referrers is).
* What it evicts is a prefix of the priority-then-policy order (lower priority first; LRU by
  last access, LFU by access count then last access, FIFO by cached_at).
* Over the limit, it reaches the target whenever the evictable entries allow, and evicts no
  more than needed (the last group evicted was needed).
* A hard-limit plan (``partial=False``) that reports success leaves the total plus the extra
  within the limit; one that cannot succeed evicts nothing.
* A blob shared by several entries counts once.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiofolio.policy import Entry, eviction_order, group_entries, plan_cleanup, plan_eviction

DIGESTS = [f"{i:02x}" * 4 for i in range(12)]


@st.composite
def entries(draw: st.DrawFn) -> list[Entry]:
    n = draw(st.integers(0, 25))
    out = []
    sizes = {d: draw(st.integers(1, 1000)) for d in DIGESTS}
    for i in range(n):
        digest = draw(st.sampled_from(DIGESTS))
        out.append(
            Entry(
                digest,
                sizes[digest],
                last_access=draw(st.floats(0, 1e6, allow_nan=False)),
                access_count=draw(st.integers(0, 50)),
                cached_at=draw(st.floats(0, 1e6, allow_nan=False)),
                priority=draw(st.integers(-2, 2)),
                pinned=draw(st.booleans()) and draw(st.booleans()),
                in_use=draw(st.booleans()) and draw(st.booleans()),
                refs=((f"s3://b/{i % 3}", f"item{i}"),),
            )
        )
    return out


POLICY = st.sampled_from(["lru", "lfu", "fifo"])


def _key(policy: str, e: Entry) -> tuple[object, ...]:
    if policy == "lru":
        return (e.priority, e.last_access, e.digest)
    if policy == "lfu":
        return (e.priority, e.access_count, e.last_access, e.digest)
    return (e.priority, e.cached_at, e.digest)


@settings(max_examples=300, deadline=None)
@given(entries(), st.integers(0, 8000), st.floats(0.1, 1.0), POLICY)
def test_never_evicts_pinned_or_in_use(es: list[Entry], limit: int, frac: float, policy: str):
    plan = plan_eviction(es, limit=limit, target=int(limit * frac), policy=policy)
    protected = {e.digest for e in es if e.pinned or e.in_use}
    assert not protected & set(plan.digests)


@settings(max_examples=300, deadline=None)
@given(entries(), st.integers(0, 8000), st.floats(0.1, 1.0), POLICY)
def test_evicts_a_prefix_of_priority_then_policy_order(
    es: list[Entry], limit: int, frac: float, policy: str
):
    plan = plan_eviction(es, limit=limit, target=int(limit * frac), policy=policy)
    order = eviction_order(group_entries(es), policy)
    assert plan.digests == [g.digest for g in order[: len(plan.evict)]]
    keys = [_key(policy, g) for g in plan.evict]
    assert keys == sorted(keys)
    # Everything evicted comes before everything evictable that stays.
    kept = [g for g in order[len(plan.evict) :]]
    if plan.evict and kept:
        assert _key(policy, plan.evict[-1]) <= _key(policy, kept[0])


@settings(max_examples=300, deadline=None)
@given(entries(), st.integers(0, 8000), st.floats(0.1, 1.0), POLICY)
def test_reaches_the_target_when_the_evictable_entries_allow(
    es: list[Entry], limit: int, frac: float, policy: str
):
    target = int(limit * frac)
    plan = plan_eviction(es, limit=limit, target=target, policy=policy)
    groups = group_entries(es)
    total = sum(g.size for g in groups)
    protected = sum(g.size for g in groups if g.pinned or g.in_use)
    assert plan.total_before == total
    assert plan.total_after == total - sum(g.size for g in plan.evict)
    if total <= limit:
        assert not plan.evict
        assert plan.reached
    elif protected <= target:
        assert plan.reached
        assert plan.total_after <= target
        # Minimal: without the last group evicted, the target was not reached yet.
        assert plan.total_after + plan.evict[-1].size > target
    else:
        assert not plan.reached
        assert plan.total_after == protected  # best effort: everything evictable went


@settings(max_examples=300, deadline=None)
@given(entries(), st.integers(0, 8000), st.integers(0, 3000), POLICY)
def test_a_hard_limit_plan_never_exceeds_the_limit(
    es: list[Entry], limit: int, incoming: int, policy: str
):
    plan = plan_eviction(
        es, limit=limit, target=limit, policy=policy, partial=False, extra=incoming
    )
    if plan.reached:
        assert plan.total_after + incoming <= limit
    else:
        assert not plan.evict  # refusing never empties the cache first
        protected = sum(g.size for g in group_entries(es) if g.pinned or g.in_use)
        assert protected + incoming > limit


@settings(max_examples=200, deadline=None)
@given(entries())
def test_shared_blobs_count_once_and_group_flags(es: list[Entry]):
    groups = group_entries(es)
    assert len(groups) == len({e.digest for e in es})
    for g in groups:
        members = [e for e in es if e.digest == g.digest]
        assert g.pinned == any(e.pinned for e in members)
        assert g.in_use == any(e.in_use for e in members)
        assert g.priority == max(e.priority for e in members)
        assert g.access_count == sum(e.access_count for e in members)
        assert g.last_access == max(e.last_access for e in members)
        assert set(g.refs) == {r for e in members for r in e.refs}


@settings(max_examples=200, deadline=None)
@given(entries(), st.floats(0, 1e6), st.floats(0, 2e6))
def test_cleanup_takes_exactly_the_old_evictable_groups(es: list[Entry], age: float, now: float):
    plan = plan_cleanup(es, older_than=age, now=now)
    expected = {
        g.digest
        for g in group_entries(es)
        if not (g.pinned or g.in_use) and g.last_access < now - age
    }
    assert set(plan.digests) == expected


def test_policies_order_a_small_example() -> None:
    a = Entry("aaaaaaaa", 10, last_access=3, access_count=1, cached_at=1)
    b = Entry("bbbbbbbb", 10, last_access=1, access_count=5, cached_at=3)
    c = Entry("cccccccc", 10, last_access=2, access_count=1, cached_at=2)
    both = {"limit": 25, "target": 20}
    assert plan_eviction([a, b, c], policy="lru", **both).digests == ["bbbbbbbb"]
    assert plan_eviction([a, b, c], policy="lfu", **both).digests == ["cccccccc"]
    assert plan_eviction([a, b, c], policy="fifo", **both).digests == ["aaaaaaaa"]
    # A higher priority goes last whatever the policy says.
    b.priority = 1
    assert plan_eviction([a, b, c], policy="lru", **both).digests == ["cccccccc"]


def test_a_shared_blob_goes_only_when_no_referrer_needs_it() -> None:
    shared = [
        Entry("dddddddd", 100, last_access=1, refs=(("u1", "x"),)),
        Entry("dddddddd", 100, last_access=1, pinned=True, refs=(("u2", "y"),)),
    ]
    other = Entry("eeeeeeee", 50, last_access=5)
    plan = plan_eviction([*shared, other], limit=100, target=100, policy="lru")
    assert plan.digests == ["eeeeeeee"]
    assert plan.total_before == 150  # the shared blob counted once


def test_bad_policy_and_limit_are_refused() -> None:
    with pytest.raises(ValueError, match="policy"):
        plan_eviction([], limit=1, policy="random")
    with pytest.raises(ValueError, match="negative"):
        plan_eviction([], limit=-1)
