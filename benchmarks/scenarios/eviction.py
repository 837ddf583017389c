"""Cache size limits: the cost of an eviction pass, and of a hit in a cache with many entries.

Group ``cache-eviction`` (no peers: nothing else plans evictions like this). Rows:

- ``plan_eviction, 100,000 entries``: the pure planner (:func:`aiofolio.policy.plan_eviction`)
  over 100,000 synthetic entries (10 % of them sharing a blob with another entry, 1 % pinned),
  LRU, with a limit that makes it evict about a third. Goal (issue 7): at most 1 s.
- ``eviction pass (gather + plan, dry run)``: what a pass does before deleting anything:
  list every blob, decode every bundle record, read pins and in-use markers, then plan; on a
  synthetic cache folder of N entries (1,000 entries per bundle record; full profile 100,000,
  quick 20,000, named in the row) with tiny blobs. Nothing is deleted, so repeats are equal.
- ``open folio + one hit (N entries cached)``: ``DataFolio(...)`` on a local bundle cached
  with ``cache_enabled=True`` in that same folder, then ``get`` of one small cached item; a
  new ``DataFolio`` object every repeat, the process's record memory warm (as in a notebook
  that opens the bundle again). Goal (issue 7): at most 5 ms with 100,000 entries.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import time
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, Row

GROUP = "cache-eviction"
PLAN_ENTRIES = 100_000
CACHE_ENTRIES = {"quick": 20_000, "full": 100_000}
PER_BUNDLE = 1_000
REPEATS = {"quick": 5, "full": 10}
HIT_REPEATS = {"quick": 200, "full": 1000}


def _entries(n: int) -> list[Any]:
    from aiofolio.policy import Entry

    rng = random.Random(7)
    now = time.time()
    out = []
    for i in range(n):
        shared = i % 10 == 9  # every tenth entry shares the blob of the entry before it
        digest = f"{(i - 1 if shared else i):032x}"
        out.append(
            Entry(
                digest,
                1000 + (i if not shared else i - 1) % 5000,
                last_access=now - rng.random() * 86400 * 30,
                access_count=rng.randrange(50),
                cached_at=now - rng.random() * 86400 * 60,
                priority=1 if i % 97 == 0 else 0,
                pinned=i % 100 == 0,
                refs=((f"s3://bench/b{i // PER_BUNDLE}", f"item{i}"),),
            )
        )
    return out


def _plan(ctx: Context) -> list[Row]:
    from aiofolio.policy import group_entries, plan_eviction

    entries = _entries(PLAN_ENTRIES)
    total = sum(g.size for g in group_entries(entries))
    limit = int(total * 0.75)

    def run() -> Any:
        return plan_eviction(entries, limit=limit, target=int(limit * 0.9), policy="lru")

    def check(plan: Any) -> None:
        if not plan.reached or not plan.evict:
            raise RuntimeError("the plan did not evict down to the target")

    samples = ctx.measure(run, repeats=REPEATS[ctx.profile.name], warmup=1, check=check)
    plan = run()
    return [
        ctx.row(
            group=GROUP,
            name=f"plan_eviction, {PLAN_ENTRIES:,} entries",
            impl="aiofolio.policy",
            size_bytes=0,
            samples=samples,
            notes=f"LRU; {len(plan.evict):,} of {len(group_entries(entries)):,} blobs evicted",
            goal=Goal.time_at_most(1.0, "<= 1 s"),
        )
    ]


def _synthetic_cache(ctx: Context, n: int) -> tuple[Path, Path]:
    """A cache folder with ``n`` tiny blobs named in records, plus a cached local bundle."""

    def make() -> tuple[Path, Path]:
        from aiofolio import DataFolio
        from aiofolio.store import BlobStore, BundleRecord, CacheLayout, ItemRecord, RecordStore

        root = ctx.scratch("eviction-cache") / f"n{n}"
        layout = CacheLayout(root)
        layout.ensure()
        blobs, records = BlobStore(layout), RecordStore(layout)
        started = time.monotonic()
        now = time.time()
        for b in range(0, n, PER_BUNDLE):
            items = {}
            for i in range(b, min(n, b + PER_BUNDLE)):
                data = i.to_bytes(8, "little") * 2
                digest = hashlib.md5(data, usedforsecurity=False).hexdigest()
                tmp = blobs.new_temp()
                tmp.write_bytes(data)
                blobs.publish(tmp, digest)
                items[f"item{i}"] = ItemRecord(
                    name=f"item{i}", digest=digest, size=len(data), cached_at=now
                )
            url = f"s3://bench/b{b // PER_BUNDLE}"
            records.save(BundleRecord(url=url))
            records.put_items(url, list(items.values()))
        bundle = ctx.scratch("eviction-bundle") / f"n{n}"
        folio = DataFolio(bundle, cache_enabled=True, cache_dir=str(root), cache_ttl=3600.0)
        folio.add("cfg", {"lr": 0.01, "layers": [64, 32]})
        folio.get("cfg")  # cached now
        ctx.log(f"  built a cache of {n:,} entries in {time.monotonic() - started:.1f} s")
        return root, bundle

    result: tuple[Path, Path] = ctx.once(f"eviction-cache-{n}", make)
    return result


def _pass(ctx: Context) -> list[Row]:
    from aiofolio.config import resolve_settings
    from aiofolio.engine import evict
    from aiofolio.engine._runtime import runtime
    from aiofolio.policy import plan_eviction

    n = CACHE_ENTRIES[ctx.profile.name]
    root, _ = _synthetic_cache(ctx, n)
    rt = runtime(str(root))
    settings = resolve_settings(constructor={"cache_dir": str(root)}).settings
    total = rt.blobs.total_size()

    def run() -> Any:
        rt.records.clear_memory()  # every pass reads the records from disk, as a new process
        entries = evict.gather(rt, rt.inuse, counts=settings.eviction_policy == "lfu")
        return plan_eviction(entries, limit=total // 2, target=total // 3, policy="lru")

    def check(plan: Any) -> None:
        if len(plan.keep) + len(plan.evict) < n:
            raise RuntimeError(f"gathered {len(plan.keep) + len(plan.evict)} of {n} blobs")

    samples = ctx.measure(run, repeats=REPEATS[ctx.profile.name], warmup=1, check=check)
    return [
        ctx.row(
            group=GROUP,
            name="eviction pass (gather + plan, dry run)",
            impl="aiofolio.engine.evict",
            size_bytes=0,
            samples=samples,
            notes=f"{n:,} entries in {n // PER_BUNDLE:,} records; {os.cpu_count()} cores",
        )
    ]


def _open_and_hit(ctx: Context) -> list[Row]:
    from aiofolio import DataFolio

    n = CACHE_ENTRIES[ctx.profile.name]
    root, bundle = _synthetic_cache(ctx, n)

    def run() -> Any:
        folio = DataFolio(bundle, cache_enabled=True, cache_dir=str(root), cache_ttl=3600.0)
        return folio.get("cfg")

    def check(value: Any) -> None:
        if value != {"lr": 0.01, "layers": [64, 32]}:
            raise RuntimeError(f"wrong value {value!r}")

    samples = ctx.measure(
        run, repeats=HIT_REPEATS[ctx.profile.name], warmup=5, budget_s=20.0, check=check
    )
    return [
        ctx.row(
            group=GROUP,
            name=f"open folio + one hit ({n:,} entries cached)",
            impl="DataFolio + get",
            size_bytes=0,
            samples=samples,
            notes="local bundle, cache_enabled=True; a new DataFolio per run",
            goal=Goal.time_at_most(0.005, "<= 5 ms"),
        )
    ]


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    try:
        for name, fn in (
            (f"plan_eviction, {PLAN_ENTRIES:,} entries", _plan),
            ("eviction pass (gather + plan, dry run)", _pass),
            ("open folio + one hit", _open_and_hit),
        ):
            rows += ctx.attempt(
                functools.partial(fn, ctx), group=GROUP, name=name, impl="aiofolio", size_bytes=0
            )
    finally:
        # Stop the stats flush timers of the synthetic caches: the scratch folder is removed
        # after the run, and a late flush must not write into it meanwhile.
        from aiofolio.engine._runtime import drop_runtimes, runtime

        for n in set(CACHE_ENTRIES.values()):
            root = ctx.tmp / "eviction-cache" / f"n{n}"
            if root.is_dir():
                runtime(str(root)).stats.close()
        drop_runtimes()
    return rows


SCENARIO = Scenario(
    name="eviction",
    run=run,
    groups=(GROUP,),
    description="eviction planner over 100k entries, a gather+plan pass, open + hit in a big cache",
)
