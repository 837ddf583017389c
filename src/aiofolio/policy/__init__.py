"""Sans-IO policy: pure decisions with an injected clock (freshness now; eviction later).

Owns no I/O and no ``await``; the engine asks, the policy answers.
"""

from __future__ import annotations

from aiofolio.policy.freshness import Decision, ItemChange, decide, diff_items, may_serve_stale

__all__ = ["Decision", "ItemChange", "decide", "diff_items", "may_serve_stale"]
