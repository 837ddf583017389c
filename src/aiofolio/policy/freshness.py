"""Sans-IO freshness decisions: is the cached manifest fresh, due for a check, or usable stale?

Owns: :func:`decide` (the decision tree of DESIGN §3 for one read, given the clock and the
record), :func:`may_serve_stale` (the fallback rule when the remote cannot be reached) and
:func:`diff_items` (which items a new manifest changed). Pure functions with an injected
clock: no I/O, no ``await``.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Decision", "ItemChange", "changed_names", "decide", "diff_items", "may_serve_stale"]


class Decision(enum.Enum):
    """What a read must do before it can use the cached manifest."""

    FRESH = "fresh"
    """Within the TTL (or TTL is None): use the cache, no remote request."""
    REVALIDATE = "revalidate"
    """TTL expired: one conditional manifest request decides."""
    STALE_OK = "stale-ok"
    """The caller asked for the cached copy as is (``use_stale=True``, offline mode)."""
    MISSING = "missing"
    """Nothing cached: load from the remote (or, offline, fail)."""


def decide(
    *,
    now: float,
    last_check: float | None,
    ttl: float | None,
    offline: bool = False,
    use_stale: bool = False,
    force: bool = False,
) -> Decision:
    """The freshness decision for one read.

    Args:
        now: the current time (seconds since the epoch, from the injected clock).
        last_check: when the manifest was last checked with the remote, or None if nothing is
            cached.
        ttl: seconds a check stays valid; None means never revalidate (static snapshots).
        offline: no network at all.
        use_stale: serve the cached copy without asking the remote.
        force: revalidate now, whatever the TTL says (``refresh_item(force=True)``).
    """
    if last_check is None:
        return Decision.MISSING
    if offline or use_stale:
        return Decision.STALE_OK
    if force:
        return Decision.REVALIDATE
    if ttl is None:
        return Decision.FRESH
    # A clock that went backwards (now < last_check) counts as fresh, not as a far future.
    return Decision.FRESH if now - last_check < ttl else Decision.REVALIDATE


def may_serve_stale(
    *, now: float, last_check: float, fallback_to_stale: bool, max_stale_age: float | None
) -> bool:
    """Whether a cached copy may be served when revalidation failed on the network.

    ``max_stale_age`` counts from the last successful check; None means no age limit.
    """
    if not fallback_to_stale:
        return False
    return max_stale_age is None or now - last_check <= max_stale_age


@dataclass(frozen=True)
class ItemChange:
    """One item whose version token differs between two manifests."""

    name: str
    old_token: str | None
    new_token: str | None

    @property
    def kind(self) -> str:
        """``added``, ``removed`` or ``changed``."""
        if self.old_token is None:
            return "added"
        if self.new_token is None:
            return "removed"
        return "changed"


def diff_items(old: Mapping[str, str], new: Mapping[str, str]) -> list[ItemChange]:
    """Items whose version token changed, appeared or disappeared, in a stable order.

    Args:
        old: item name → version token in the cached manifest.
        new: item name → version token in the fresh manifest.
    """
    changes = [
        ItemChange(name, token, new.get(name))
        for name, token in old.items()
        if new.get(name) != token
    ]
    changes += [ItemChange(name, None, token) for name, token in new.items() if name not in old]
    return changes


def changed_names(old: Mapping[str, str] | None, new: Mapping[str, str]) -> tuple[str, ...]:
    """The names :func:`diff_items` reports, sorted (nothing when there was no old manifest)."""
    if old is None:
        return ()
    return tuple(sorted(change.name for change in diff_items(old, new)))
