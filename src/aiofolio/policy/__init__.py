"""Sans-IO policy: pure decisions with an injected clock (freshness, eviction plans, hit rules).

Owns no I/O and no ``await``; the engine asks, the policy answers.
"""

from __future__ import annotations

from aiofolio.policy.eviction import (
    POLICIES,
    Entry,
    Plan,
    Policy,
    eviction_order,
    group_entries,
    plan_cleanup,
    plan_eviction,
)
from aiofolio.policy.freshness import (
    Decision,
    ItemChange,
    changed_names,
    decide,
    diff_items,
    may_serve_stale,
)
from aiofolio.policy.hits import REHASH_MAX, RESCAN_S, hit_rate, needs_scan, rehash_on_hit

__all__ = [
    "POLICIES",
    "REHASH_MAX",
    "RESCAN_S",
    "Decision",
    "Entry",
    "ItemChange",
    "Plan",
    "Policy",
    "changed_names",
    "decide",
    "diff_items",
    "eviction_order",
    "group_entries",
    "hit_rate",
    "may_serve_stale",
    "needs_scan",
    "plan_cleanup",
    "plan_eviction",
    "rehash_on_hit",
]
