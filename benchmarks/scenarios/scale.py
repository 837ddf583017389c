"""Warm scale: does warming stay as fast per item for a bundle of 100,000 items as for 2,000,
and what does a cache of that many real entries cost to open and to evict from?

Group ``warm-scale``. Bundles of N JSON items of 4 KB each (``json_data``, written by hand in
datafolio 2.x format by :mod:`._bundles`, kept between runs under ``benchmarks/out/bundles/``
keyed by N) are served by the loopback file server in its own process **without** shaping (no
latency, no bandwidth cap): the rows measure aiofolio's per-item cost, not the link.

- ``warm_cache(), 2,000 x 4 KB JSON, per item`` (baseline) and ``..., N x 4 KB JSON, per
  item`` (N = 100,000; quick 20,000): ``warm_cache()`` of every item into a fresh cache, the
  folio opened (its ``items.json`` loaded) untimed; every run checked (none failed, all
  cached). One operation is one item: the times are the warm's wall time / items, so the
  ratio is items/s at N over items/s at 2,000. Goal >= 0.8x. So that a slow engine cannot
  stall the run, the N-item warm is cancelled after what a warm at the goal's rate needs
  (N / (0.8 x the 2,000-item rate), + 15 %), at most 60 s (quick) / 1200 s (full); the note
  then says ``CUT``. Cut at the goal's time, it was slower than the goal whatever came next:
  the row takes that time / N (a lower bound; the ratio an upper bound, a MISS). Cut earlier
  by the cap, the rest is **EXTRAPOLATED** at the rate of the warm's last third (progress
  polled every 0.25 s; a per-item cost that grows with the cache shows there), and the goal
  says it is judged on the extrapolated time.
- ``open the N-item folio + one hit``: with the N-item cache just warmed, a new
  ``DataFolio`` on the N-item bundle and one ``get`` (within the TTL). Goal <= 5 ms.
- ``eviction pass over the N-item warm's cache`` (its real entries, as many as the warm
  cached; the note counts them): ``DataFolio.enforce_cache_limit()`` on a folio whose
  ``max_cache_size`` is 1 % below what the cache holds (``eviction_threshold=1``), so each
  pass evicts about 1 % of the blobs; the folio is opened untimed. Goal <= 1 s.

Only aiofolio's public API is used. The caches live in the run's scratch folder.
"""

from __future__ import annotations

import functools
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, Row, Samples
from ..servers import ShapingServer, describe_requests
from ._bundles import json_payload, json_value, kept_bundle, write_json_bundle
from .cache import _fresh_dir

GROUP = "warm-scale"
ITEM = 4096
SMALL_N = 2_000
BIG_N = {"quick": 20_000, "full": 100_000}
SMALL_RUNS = {"quick": 2, "full": 3}
HIT_REPEATS = {"quick": 100, "full": 300}
HIT_BUDGET_S = {"quick": 5.0, "full": 20.0}
EVICT_RUNS = {"quick": 3, "full": 5}
TTL_S = 3600.0
PROBES = (0, 1, 999)  # items whose values are checked after every warm

#: The longest a warm may run before it is cancelled (see _warm_row for the actual budget).
WARM_CAP_S = {"quick": 60.0, "full": 1200.0}
POLL_S = 0.25


def _warm_name(n: int) -> str:
    return f"warm_cache(), {n:,} x 4 KB JSON, per item"


def _hit_name(n: int) -> str:
    return f"open the {n:,}-item folio + one hit (its cache warmed)"


def _evict_name(n: int) -> str:
    return f"eviction pass over the {n:,}-item warm's cache"


SMALL_ROW = _warm_name(SMALL_N)
BIG_GOAL = Goal.ratio_at_least(0.8, f">= 0.8x the items/s at {SMALL_N:,}")
HIT_GOAL = Goal.time_at_most(0.005, "<= 5 ms")
EVICT_GOAL = Goal.time_at_most(1.0, "<= 1 s")


def _big_n(ctx: Context) -> int:
    return BIG_N.get(ctx.profile.name, BIG_N["quick"])


def _name(i: int) -> str:
    return f"i{i:06d}"


def _bundle_dir(ctx: Context, n: int) -> Path:
    def build(root: Path) -> None:
        t0 = time.monotonic()
        write_json_bundle(
            root,
            ((_name(i), json_payload(i, ITEM)) for i in range(n)),
            metadata={"bench": "warm-scale", "items": n},
        )
        ctx.log(f"  wrote {n:,} x {ITEM} B items in {time.monotonic() - t0:.1f} s")

    return kept_bundle(f"json-{ITEM}B-n{n}", build, ctx.log)


def _server(ctx: Context) -> tuple[ShapingServer, dict[int, str]]:
    def make() -> tuple[ShapingServer, dict[int, str]]:
        sizes = (SMALL_N, _big_n(ctx))
        trees = {f"/n{n}": _bundle_dir(ctx, n) for n in sizes}
        t0 = time.monotonic()
        server = ctx.servers.http_plain(f"warm-scale-{'-'.join(map(str, sizes))}", trees=trees)
        ctx.log(f"  file server up with {sum(sizes):,} items in {time.monotonic() - t0:.1f} s")
        return server, {n: server.url_for(f"/n{n}") for n in sizes}

    result: tuple[ShapingServer, dict[int, str]] = ctx.once("warm-scale-server", make)
    return result


def _open(url: str, cache_dir: Path, **settings: Any) -> Any:
    from aiofolio import DataFolio

    return DataFolio(
        url,
        read_only=True,
        create=False,
        cache_dir=str(cache_dir),
        cache_ttl=TTL_S,
        **settings,
    )


@dataclass
class _Warm:
    """One timed warm: wall seconds, items cached, and ``(seconds, items done)`` progress
    samples (every ``POLL_S``)."""

    seconds: float
    cached: int
    cut: bool
    trace: list[tuple[float, int]]

    def tail_rate(self) -> float | None:
        """Items/s over the last third of the warm's time (a per-item cost that grows with the
        cache shows there, not in the average); None without enough progress samples."""
        t_end, n_end = self.trace[-1]
        t0, n0 = next(((t, k) for t, k in self.trace if t >= t_end * 2 / 3), self.trace[0])
        if n_end <= n0 or t_end <= t0:
            return None
        return (n_end - n0) / (t_end - t0)


def _timed_warm(folio: Any, n: int, budget_s: float) -> _Warm:
    """``warm_cache()`` of every item, timed. A warm still running after ``budget_s`` is
    cancelled (the time is taken at the cancel, the count is what was cached by then). Raises
    if an item failed."""
    t0 = time.perf_counter()
    handle = folio.warm_cache(background=True, progress=False)
    trace: list[tuple[float, int]] = [(0.0, 0)]
    cut = False
    while not handle.done():
        now = time.perf_counter() - t0
        trace.append((now, handle.progress.items_done))
        if now > budget_s:
            cut = True
            break
        time.sleep(POLL_S)
    dt = time.perf_counter() - t0
    if cut:
        handle.cancel(timeout=60.0)
    result = handle.result(timeout=60.0)
    if result.failed:
        failed = list(result.failed.items())[:3]
        raise RuntimeError(f"warm: {len(result.failed)} of {n} failed, e.g. {failed}")
    if not result.cached or (not result.cancelled and len(result.cached) != n):
        raise RuntimeError(f"warm: {len(result.cached)} of {n} cached in {dt:.1f} s")
    if not cut:
        trace.append((dt, len(result.cached)))
    return _Warm(dt, len(result.cached), cut and bool(result.cancelled), trace)


def _check_values(folio: Any, n: int) -> None:
    for i in PROBES:
        if i < n and folio.get(_name(i)) != json_value(i, ITEM):
            raise RuntimeError(f"{_name(i)}: wrong value after the warm")


def _warm_row(ctx: Context, n: int, state: dict[str, Any]) -> list[Row]:
    server, urls = _server(ctx)
    small = n == SMALL_N
    p = ctx.profile.name
    runs = SMALL_RUNS.get(p, 2) if small else 1
    cap = WARM_CAP_S.get(p, WARM_CAP_S["quick"])
    base = state.get(f"rate-{SMALL_N}")
    # The time a warm at the goal's rate (0.8x the small one's) needs, with 15 % to spare: a
    # warm still running then is slower than the goal, whatever it would have done next.
    needed = 1.15 * n / (BIG_GOAL.target * base) if not small and base else None
    budget = min(cap, max(10.0, needed)) if needed else cap
    warms: list[_Warm] = []
    cache_dir: Path | None = None
    with server.counting() as c:
        for i in range(runs):
            if i and ctx.out_of_time():
                break
            if cache_dir is not None:
                shutil.rmtree(cache_dir, ignore_errors=True)
            cache_dir = _fresh_dir(ctx, f"warm-scale-{n}")
            folio = _open(urls[n], cache_dir)  # loads items.json: untimed
            warms.append(_timed_warm(folio, n, min(budget, max(30.0, ctx.time_left()))))
    assert cache_dir is not None
    _check_values(folio, min(w.cached for w in warms))
    if small:
        shutil.rmtree(cache_dir, ignore_errors=True)
    else:
        state["cache_dir"], state["url"] = cache_dir, urls[n]

    # One operation = one item warmed: per-item times, so the ratio is the items/s ratio.
    per_item: list[float] = []
    cut_notes: list[str] = []
    extrapolated = False
    for w in warms:
        if not w.cut:
            per_item.append(w.seconds / n)
            continue
        tail = w.tail_rate() or w.cached / w.seconds
        head = (
            f"CUT: cancelled after {w.seconds:.0f} s with {w.cached:,} of {n:,} items cached "
            f"({w.cached / w.seconds:,.0f} items/s over them, {tail:,.0f} items/s in the last "
            "third)"
        )
        if needed is not None and w.seconds >= needed:
            per_item.append(w.seconds / n)
            cut_notes.append(
                f"{head}; that is the time a warm at the goal's rate needs (+15 %): the time "
                f"shown is a LOWER BOUND ({w.seconds:.0f} s / {n:,}), the ratio an upper bound"
            )
        else:
            projected = w.seconds + (n - w.cached) / tail
            per_item.append(projected / n)
            extrapolated = True
            cut_notes.append(
                f"{head}, before the {needed or budget:.0f} s a warm at the goal's rate needs "
                f"(cap {cap:.0f} s): EXTRAPOLATED, the rest at the last third's rate: "
                f"{projected:.0f} s for all {n:,}"
            )
    samples = Samples(per_item, 0, runs, len(warms) < runs)
    rate = 1.0 / samples.stats.median
    state[f"rate-{n}"] = rate
    gets = c["stats"].get("by_method", {}).get("GET", {}).get("requests", 0)
    notes = [
        f"{rate:,.0f} items/s; time = the warm's wall time / items; warms of "
        + ", ".join(f"{w.cached:,} items in {w.seconds:.1f} s" for w in warms),
        *cut_notes,
        "loopback file server in its own process, no shaping",
        "warm_cache() of every item, defaults; fresh cache per run, folio opened untimed",
        f"GETs per run {gets / len(warms):,.0f} (incl. 1 items.json per open)",
    ]
    goal = None
    if not small:
        if base:
            notes.insert(1, f"{rate / base:.2f}x the items/s at {SMALL_N:,}")
        goal = (
            Goal.ratio_at_least(BIG_GOAL.target, f"{BIG_GOAL.text} (on the EXTRAPOLATED time)")
            if extrapolated
            else BIG_GOAL
        )
    return [
        ctx.row(
            group=GROUP,
            name=SMALL_ROW if small else _warm_name(n),
            impl="DataFolio.warm_cache() into a fresh cache",
            size_bytes=ITEM,
            samples=samples,
            baseline=None if small else f"{GROUP}/{SMALL_ROW}",
            notes=notes,
            goal=goal,
            extra={
                "items": n,
                "items_cached": [w.cached for w in warms],
                "wall_s": [round(w.seconds, 3) for w in warms],
                "cut": [w.cut for w in warms],
                "extrapolated": extrapolated,
                "items_per_s": rate,
            },
        )
    ]


def _hit_row(ctx: Context, n: int, state: dict[str, Any]) -> list[Row]:
    server, _ = _server(ctx)
    cache_dir, url = state["cache_dir"], state["url"]
    name, expected = _name(1), json_value(1, ITEM)

    from aiofolio import DataFolio

    entries = DataFolio.cache_info(cache_dir=str(cache_dir)).get("items")

    def run() -> Any:
        return _open(url, cache_dir).get(name)

    def check(value: Any) -> None:
        if value != expected:
            raise RuntimeError(f"{name}: wrong value")

    p = ctx.profile
    with server.counting() as c:
        samples = ctx.measure(
            run,
            repeats=HIT_REPEATS.get(p.name, 100),
            warmup=3,
            budget_s=HIT_BUDGET_S.get(p.name, 5.0),
            check=check,
        )
    return [
        ctx.row(
            group=GROUP,
            name=_hit_name(n),
            impl="DataFolio(url) + get",
            size_bytes=0,
            samples=samples,
            notes=[
                f"the {n:,}-item bundle, its cache just warmed ({entries:,} items cached); "
                "a new DataFolio per run, within the TTL",
                describe_requests(c["stats"], samples.runs),
            ],
            goal=HIT_GOAL,
        )
    ]


def _evict_row(ctx: Context, n: int, state: dict[str, Any]) -> list[Row]:
    from aiofolio import DataFolio

    cache_dir, url = state["cache_dir"], state["url"]
    info = DataFolio.cache_info(cache_dir=str(cache_dir))
    cell: dict[str, Any] = {"total": int(info["size_bytes"]), "results": []}
    entries = int(info.get("blobs") or 0)

    def setup() -> None:
        limit = int(cell["total"] * 0.99)
        cell["folio"] = _open(url, cache_dir, max_cache_size=limit, eviction_threshold=1.0)

    def run() -> dict[str, Any]:
        result: dict[str, Any] = cell["folio"].enforce_cache_limit()
        return result

    def check(result: dict[str, Any]) -> None:
        cell["results"].append(result)
        cell["total"] = int(result["total_after"])
        if not result["evicted"]:
            raise RuntimeError(f"the pass evicted nothing: {result}")

    samples = ctx.measure(
        run, setup=setup, check=check, repeats=EVICT_RUNS.get(ctx.profile.name, 3), warmup=0
    )
    evicted = [int(r["evicted"]) for r in cell["results"]]
    shutil.rmtree(cache_dir, ignore_errors=True)
    return [
        ctx.row(
            group=GROUP,
            name=_evict_name(n),
            impl="DataFolio.enforce_cache_limit()",
            size_bytes=0,
            samples=samples,
            notes=[
                f"the warmed cache: {entries:,} blobs, {info['size_bytes'] / 1e6:.0f} MB",
                "max_cache_size 1 % below the cache's size, eviction_threshold=1; blobs "
                f"evicted per pass: {', '.join(map(str, evicted))}",
            ],
            goal=EVICT_GOAL,
            extra={"evicted": evicted},
        )
    ]


def run(ctx: Context) -> list[Row]:
    n = _big_n(ctx)
    state: dict[str, Any] = {}
    big_row = _warm_name(n)
    rows = ctx.attempt(
        lambda: _warm_row(ctx, SMALL_N, state),
        group=GROUP,
        name=SMALL_ROW,
        impl="aiofolio",
        size_bytes=ITEM,
    )
    rows += ctx.attempt(
        lambda: _warm_row(ctx, n, state),
        group=GROUP,
        name=big_row,
        impl="aiofolio",
        size_bytes=ITEM,
        baseline=f"{GROUP}/{SMALL_ROW}",
        goal=BIG_GOAL,
    )
    for row_name, fn, goal in (
        (_hit_name(n), _hit_row, HIT_GOAL),
        (_evict_name(n), _evict_row, EVICT_GOAL),
    ):
        if "cache_dir" not in state:
            rows.append(
                ctx.failed(
                    reason=f"no warmed {n:,}-item cache (its warm row failed)",
                    group=GROUP,
                    name=row_name,
                    impl="aiofolio",
                    size_bytes=0,
                    goal=goal,
                )
            )
            continue
        rows += ctx.attempt(
            functools.partial(fn, ctx, n, state),
            group=GROUP,
            name=row_name,
            impl="aiofolio",
            size_bytes=0,
            goal=goal,
        )
    if "cache_dir" in state:
        shutil.rmtree(state["cache_dir"], ignore_errors=True)
    return rows


SCENARIO = Scenario(
    name="warm-scale",
    run=run,
    groups=(GROUP,),
    description="warm_cache items/s at 100k (quick 20k) vs 2k items; open + hit and an "
    "eviction pass over that many real entries",
)
