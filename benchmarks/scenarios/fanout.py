"""Revalidation fan-out: many bundles whose TTL ran out, revalidated together vs one.

Group ``cache-revalidate``. 100 one-item bundles (datafolio 2.x format, written by
:mod:`._bundles`) on the shaped HTTP file server (20 ms before each response, 50 MB/s per
connection). Each is opened with the same injected clock and its item cached (untimed); before
every timed run the clock is moved past ``cache_ttl``.

- ``refresh_all, 1 bundle`` (baseline) and ``refresh_all, 100 bundles``:
  ``aiofolio.refresh_all(folios)`` with its defaults; every outcome checked ``"unchanged"``.
- ``first aget after the TTL, 1 bundle`` (baseline) and ``..., 100 bundles at once``: the
  first ``aget`` of each bundle's item, all 100 gathered on one asyncio loop.

Goal for the 100-bundle rows: at most 3x the time of one (a ratio >= 0.33x). The notes count
the requests that crossed the link (one conditional GET of ``items.json`` per bundle).
Only aiofolio's public API is used.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, Row, Samples, run_async
from ..servers import ShapingServer, describe_requests
from . import single_stream
from ._bundles import json_payload, json_value, write_json_bundle
from .cache import Clock, _fresh_dir

GROUP = "cache-revalidate"
BUNDLES = 100
ITEM = 1024
TTL_S = 60.0
REPEATS = {"quick": 8, "full": 30}
ITEM_NAME = "cfg"

REFRESH_ONE = "refresh_all, 1 bundle (TTL ran out)"
REFRESH_ALL = f"refresh_all, {BUNDLES} one-item bundles (TTL ran out)"
AGET_ONE = "first aget after the TTL, 1 bundle"
AGET_ALL = f"first aget after the TTL, {BUNDLES} bundles at once"
GOAL_FACTOR = 3.0


def _listed(make: Callable[[], Row]) -> list[Row]:
    return [make()]


def _goal(what: str) -> Goal:
    return Goal.slowdown_at_most(GOAL_FACTOR, f"<= 3x {what} (ratio >= 0.33x)")


def _bundles(ctx: Context) -> tuple[ShapingServer, list[str]]:
    def make() -> tuple[ShapingServer, list[str]]:
        root = ctx.scratch("fanout-bundles")
        for b in range(BUNDLES):
            write_json_bundle(
                root / f"b{b:03d}", [(ITEM_NAME, json_payload(b, ITEM))], metadata={"b": b}
            )
        server = ctx.servers.http_shaped("fanout", trees={"/fan": Path(root)})
        return server, [server.url_for(f"/fan/b{b:03d}") for b in range(BUNDLES)]

    result: tuple[ShapingServer, list[str]] = ctx.once("fanout-bundles", make)
    return result


def _folios(ctx: Context, urls: list[str], clock: Clock) -> list[Any]:
    """Open every bundle and cache its item (untimed)."""
    from aiofolio import DataFolio

    cache_dir = _fresh_dir(ctx, "fanout")
    folios = [
        DataFolio(
            url,
            read_only=True,
            create=False,
            cache_dir=str(cache_dir),
            cache_ttl=TTL_S,
            clock=clock,
        )
        for url in urls
    ]

    async def fill() -> None:
        values = await asyncio.gather(*(f.aget(ITEM_NAME) for f in folios))
        for b, value in enumerate(values):
            if value != json_value(b, ITEM):
                raise RuntimeError(f"bundle {b}: wrong value")

    run_async(fill(), timeout_s=120.0)
    return folios


def _refresh_rows(ctx: Context) -> list[Row]:
    import aiofolio

    server, urls = _bundles(ctx)
    clock = Clock()
    folios = _folios(ctx, urls, clock)
    rows: list[Row] = []
    repeats = REPEATS.get(ctx.profile.name, 8)

    def expire() -> None:
        clock.advance(TTL_S + 1)

    for row_name, chosen in ((REFRESH_ONE, folios[:1]), (REFRESH_ALL, folios)):

        def check(outcomes: Any, n: int = len(chosen)) -> None:
            statuses = [o.status for o in outcomes]
            if len(statuses) != n or any(s != "unchanged" for s in statuses):
                raise RuntimeError(f"refresh_all: {sorted(set(statuses))} ({len(statuses)})")

        def one(row_name: str = row_name, chosen: list[Any] = chosen, check: Any = check) -> Row:
            with server.counting() as c:
                samples = ctx.measure(
                    lambda: aiofolio.refresh_all(chosen),
                    setup=expire,
                    check=check,
                    repeats=repeats,
                    warmup=1,
                )
            many = len(chosen) > 1
            return ctx.row(
                group=GROUP,
                name=row_name,
                impl="aiofolio.refresh_all(folios), defaults",
                size_bytes=0,
                samples=samples,
                baseline=f"{GROUP}/{REFRESH_ONE}" if many else None,
                notes=[
                    f"{len(chosen)} bundle{'s' if many else ''} of one {ITEM} B JSON item, "
                    "clock moved past cache_ttl before each run",
                    f"HTTP file server, {single_stream.link_note(ctx)}",
                    describe_requests(c["stats"], samples.runs),
                ],
                goal=_goal("one bundle's refresh") if many else None,
            )

        rows += ctx.attempt(
            functools.partial(_listed, one),
            group=GROUP,
            name=row_name,
            impl="aiofolio",
            size_bytes=0,
        )

    for row_name, chosen in ((AGET_ONE, folios[:1]), (AGET_ALL, folios)):
        indexes = [folios.index(f) for f in chosen]

        async def first_gets(chosen: list[Any] = chosen) -> list[Any]:
            return list(await asyncio.gather(*(f.aget(ITEM_NAME) for f in chosen)))

        def check_values(values: list[Any], indexes: list[int] = indexes) -> None:
            if values != [json_value(b, ITEM) for b in indexes]:
                raise RuntimeError("aget after the TTL returned wrong values")

        async def series(first_gets: Any = first_gets, check: Any = check_values) -> Samples:
            async def expire_async() -> None:
                expire()

            return await ctx.measure_async(
                first_gets, setup=expire_async, check=check, repeats=repeats, warmup=1
            )

        def one_aget(
            row_name: str = row_name, chosen: list[Any] = chosen, series: Any = series
        ) -> Row:
            with server.counting() as c:
                samples = run_async(series(), timeout_s=ctx.profile.series_budget_s + 60)
            many = len(chosen) > 1
            return ctx.row(
                group=GROUP,
                name=row_name,
                impl="asyncio.gather(DataFolio.aget) after cache_ttl",
                size_bytes=0,
                samples=samples,
                baseline=f"{GROUP}/{AGET_ONE}" if many else None,
                notes=[
                    f"{len(chosen)} bundle{'s' if many else ''}; each first aget after the TTL "
                    "revalidates its bundle, then reads the cached item",
                    f"HTTP file server, {single_stream.link_note(ctx)}",
                    describe_requests(c["stats"], samples.runs),
                ],
                goal=_goal("one bundle's first get") if many else None,
            )

        rows += ctx.attempt(
            functools.partial(_listed, one_aget),
            group=GROUP,
            name=row_name,
            impl="aiofolio",
            size_bytes=0,
        )
    return rows


def run(ctx: Context) -> list[Row]:
    return ctx.attempt(
        lambda: _refresh_rows(ctx),
        group=GROUP,
        name=REFRESH_ALL,
        impl="aiofolio",
        size_bytes=0,
        goal=_goal("one bundle's refresh"),
    )


SCENARIO = Scenario(
    name="revalidate-fanout",
    run=run,
    groups=(GROUP,),
    description=f"{BUNDLES} bundles past their TTL: refresh_all / concurrent first aget vs one",
)
