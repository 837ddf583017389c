"""Sans-IO policy: pure decisions with an injected clock (freshness, eviction plans).

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
from aiofolio.policy.freshness import Decision, ItemChange, decide, diff_items, may_serve_stale

__all__ = [
    "POLICIES",
    "Decision",
    "Entry",
    "ItemChange",
    "Plan",
    "Policy",
    "decide",
    "diff_items",
    "eviction_order",
    "group_entries",
    "may_serve_stale",
    "plan_cleanup",
    "plan_eviction",
]
