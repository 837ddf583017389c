"""The freshness decision tree, with an injected clock (no loop, no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiofolio.policy import Decision, decide, diff_items, may_serve_stale


@pytest.mark.parametrize(
    ("now", "last", "ttl", "kw", "expected"),
    [
        (100.0, None, 1800.0, {}, Decision.MISSING),
        (100.0, None, 1800.0, {"offline": True}, Decision.MISSING),
        (100.0, 0.0, 1800.0, {}, Decision.FRESH),
        (1799.9, 0.0, 1800.0, {}, Decision.FRESH),
        (1800.0, 0.0, 1800.0, {}, Decision.REVALIDATE),
        (10**9, 0.0, None, {}, Decision.FRESH),
        (10.0, 0.0, 1800.0, {"force": True}, Decision.REVALIDATE),
        (10**9, 0.0, 1800.0, {"offline": True}, Decision.STALE_OK),
        (10**9, 0.0, 1800.0, {"use_stale": True}, Decision.STALE_OK),
        (10**9, 0.0, None, {"force": True}, Decision.REVALIDATE),
        (5.0, 10.0, 1800.0, {}, Decision.FRESH),  # clock went backwards
        (100.0, 0.0, 0.0, {}, Decision.REVALIDATE),  # ttl 0: always check
    ],
)
def test_decide(
    now: float, last: float | None, ttl: float | None, kw: dict[str, bool], expected: Decision
) -> None:
    assert decide(now=now, last_check=last, ttl=ttl, **kw) is expected


@given(
    now=st.floats(0, 1e10),
    last=st.floats(0, 1e10),
    ttl=st.one_of(st.none(), st.floats(0, 1e7)),
)
def test_decide_never_revalidates_within_ttl_and_always_after(
    now: float, last: float, ttl: float | None
) -> None:
    got = decide(now=now, last_check=last, ttl=ttl)
    if ttl is None or now - last < ttl:
        assert got is Decision.FRESH
    else:
        assert got is Decision.REVALIDATE


def test_may_serve_stale() -> None:
    kw = {"fallback_to_stale": True, "max_stale_age": 86400.0}
    assert may_serve_stale(now=1000.0, last_check=0.0, **kw)
    assert may_serve_stale(now=86400.0, last_check=0.0, **kw)
    assert not may_serve_stale(now=86400.5, last_check=0.0, **kw)
    assert not may_serve_stale(now=1.0, last_check=0.0, fallback_to_stale=False, max_stale_age=None)
    assert may_serve_stale(now=1e12, last_check=0.0, fallback_to_stale=True, max_stale_age=None)


def test_diff_items_kinds_and_order() -> None:
    old = {"a": "a|1", "b": "b|1", "c": "c|1"}
    new = {"a": "a|1", "b": "b|2", "d": "d|1"}
    changes = diff_items(old, new)
    assert [(c.name, c.kind) for c in changes] == [
        ("b", "changed"),
        ("c", "removed"),
        ("d", "added"),
    ]
    assert changes[0].old_token == "b|1"
    assert changes[0].new_token == "b|2"
    assert diff_items(old, dict(old)) == []
