"""The warm rows of issue 6: ``warm_cache`` against a sequential ``get`` loop, and foreground
reads during a large background warm.

Group ``warm``, one run, ratios; moto behind the shaped link (20 ms before each response,
50 MB/s per connection):

- **500 items of 64 KB** (``.npy`` arrays of 64 KiB): a sequential cold ``get`` of every item
  (the baseline) against ``warm_cache()`` with its defaults, each into a fresh cache; once on
  S3 (moto behind the shaping proxy; aiobotocore costs ~2 ms of client CPU per request) and
  once on the shaped HTTP file server (aiohttp). Goal: ``warm_cache`` >= 20x the loop (judged
  PASS / MISS in the table). Every run is checked: all 500 items cached, none failed.
- **Foreground get during a large warm:** cold ``get`` of small items with the engine idle
  (baseline) and while ``warm_cache(background=True)`` fetches four 64 MiB items (chunked,
  ranged GETs). The ratio says how much a warm slows a foreground read (1.0x = not at all).

The bundle is assembled on disk with the bundle layer, then uploaded by boto3 straight to moto
(never through the link) or served by the file server.
"""

from __future__ import annotations

import concurrent.futures
import json
import shutil
import time
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, MiB, Row, Samples
from .cache import Bundle, Clock, _fresh_dir, _reader

GROUP = "warm"
COUNT = 500
ITEM = 64 * 1024
BIG = 64 * MiB
BIG_COUNT = 4
PROBES = 20

LOOP = f"{COUNT} x 64 KB: sequential get loop"
WARM = f"{COUNT} x 64 KB: warm_cache()"
IDLE = "foreground cold get of 64 KB, engine idle"
WARM_GOAL = Goal.ratio_at_least(20.0, ">= 20x the sequential loop")
BUSY = f"foreground cold get of 64 KB, during a warm of {BIG_COUNT} x 64 MiB"


def write_uint8_bundle(root: Path, tag: str, sizes: dict[str, int], seed: int) -> None:
    """Assemble in ``root`` a bundle of random ``uint8`` arrays (``name -> bytes``) with the
    bundle layer, against the empty base (O(1) each), and its ``items.json``."""
    import numpy as np

    from aiofolio.bundle import ITEMS_FILE, parse_manifest, plan_add, plan_create, serialize

    base = plan_create({"bench": tag}).manifest
    rng = np.random.default_rng(seed)
    items: list[dict[str, Any]] = []
    for name, size in sizes.items():
        tmp = root / "new.npy"
        fields = serialize(rng.integers(0, 255, size=size, dtype=np.uint8), tmp, name=name)
        plan = plan_add(base, name, fields)
        if plan.item is None or plan.payload_path is None:
            raise RuntimeError(f"no payload planned for {name}")
        items.append(plan.item.to_dict())
        dest = root / plan.payload_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(dest)
    doc = base.to_dict()
    doc["items"] = items
    doc["revision"] = len(items) + 1
    raw = parse_manifest(json.dumps(doc).encode(), source="benchmark").to_json_bytes()
    (root / ITEMS_FILE).write_bytes(raw)


def _files(ctx: Context) -> tuple[Path, list[str]]:
    """The bundle on local disk (``COUNT`` small arrays, ``PROBES`` probes, ``BIG_COUNT`` big
    ones): a folder with ``items.json`` and the payloads, and the item names in order."""

    def make() -> tuple[Path, list[str]]:
        root = ctx.scratch("warm-bundle")
        names = [f"s{i:04d}" for i in range(COUNT)] + [f"p{i:02d}" for i in range(PROBES)]
        sizes = [ITEM] * len(names) + [BIG] * BIG_COUNT
        names += [f"big{i}" for i in range(BIG_COUNT)]
        write_uint8_bundle(root, "warm", dict(zip(names, sizes, strict=True)), seed=6)
        return root, names

    files: tuple[Path, list[str]] = ctx.once("aiofolio-warm-files", make)
    return files


def _bundle(ctx: Context) -> Bundle:
    """The warm bundle on moto (uploaded by boto3, never through the link)."""

    def make() -> Bundle:
        root, names = _files(ctx)
        moto = ctx.servers.moto()
        bucket = ctx.servers.s3_bucket()
        proxy = ctx.servers.s3_shaped()
        prefix = "bench/aiofolio-warm"
        client = moto.client
        paths = [p for p in root.rglob("*") if p.is_file()]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = [
                pool.submit(
                    client.put_object,
                    Bucket=bucket,
                    Key=f"{prefix}/{p.relative_to(root).as_posix()}",
                    Body=p.read_bytes(),
                )
                for p in paths
            ]
            for f in futures:
                f.result()
        bundle = Bundle(
            f"s3://{bucket}/{prefix}", bucket, prefix, proxy, moto.storage_options(proxy.url)
        )
        bundle.items.update({n: n for n in names})
        return bundle

    bundle: Bundle = ctx.once("aiofolio-warm-bundle", make)
    return bundle


def _http_bundle(ctx: Context) -> Bundle:
    """The same bundle served by the shaped HTTP file server (aiohttp, no SDK on the client)."""
    root, names = _files(ctx)
    files = {"/warm/" + p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    server = ctx.servers.http_shaped("warm-http", files)
    bundle = Bundle(server.url_for("/warm"), "", "warm", server, {})
    bundle.items.update({n: n for n in names})
    return bundle


def _small(bundle: Bundle) -> list[str]:
    return [n for n in bundle.items if n.startswith("s")]


def _loop_and_warm(ctx: Context, kind: str) -> list[Row]:
    bundle = _bundle(ctx) if kind == "S3" else _http_bundle(ctx)
    names = _small(bundle)
    loop_name, warm_name = f"{LOOP}, {kind}", f"{WARM}, {kind}"
    link = (
        "moto behind the shaped 20 ms + 50 MB/s proxy (aiobotocore client)"
        if kind == "S3"
        else "shaped 20 ms + 50 MB/s file server (aiohttp client)"
    )
    state: dict[str, Any] = {}

    def fresh() -> None:
        old = state.pop("dir", None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        state["dir"] = _fresh_dir(ctx, "warm")
        state["folio"] = _reader(ctx, bundle, state["dir"], Clock())  # opening: untimed

    def loop() -> int:
        folio = state["folio"]
        for name in names:
            folio.get(name)
        return len(names)

    def check_loop(n: int) -> None:
        if n != COUNT:
            raise RuntimeError(f"read {n} items, not {COUNT}")

    rows: list[Row] = []
    p = ctx.profile
    runs = (1, 0) if p.name == "quick" else (2, 0)

    def loop_row() -> list[Row]:
        with bundle.proxy.counting() as c:
            samples = ctx.measure(loop, setup=fresh, check=check_loop, repeats=runs[0], warmup=0)
        gets = c["stats"].get("by_method", {}).get("GET", {}).get("requests", 0)
        return [
            ctx.row(
                group=GROUP,
                name=loop_name,
                impl="DataFolio.get in a loop, fresh cache",
                size_bytes=COUNT * ITEM,
                samples=samples,
                notes=[
                    link,
                    f"GETs per run {gets / samples.runs:.0f} (incl. 1 items.json per open)",
                ],
            )
        ]

    def warm_row() -> list[Row]:
        # The warm covers every item of the bundle: skip the big ones for this row.
        def warm_small() -> Any:
            folio = state["folio"]
            result = folio.warm_cache(names, progress=False)
            return result

        def check_small(result: Any) -> None:
            if result.failed or len(result.cached) != COUNT:
                raise RuntimeError(f"warm: {len(result.cached)} cached, failed {result.failed}")

        with bundle.proxy.counting() as c:
            samples = ctx.measure(warm_small, setup=fresh, check=check_small, repeats=3, warmup=0)
        gets = c["stats"].get("by_method", {}).get("GET", {}).get("requests", 0)
        return [
            ctx.row(
                group=GROUP,
                name=warm_name,
                impl="DataFolio.warm_cache(names), defaults (32 at once), fresh cache",
                size_bytes=COUNT * ITEM,
                samples=samples,
                baseline=f"{GROUP}/{loop_name}",
                notes=[
                    f"GETs per run {gets / samples.runs:.0f} (incl. 1 items.json per open)",
                    link,
                ],
                goal=WARM_GOAL,
            )
        ]

    rows += ctx.attempt(
        loop_row, group=GROUP, name=loop_name, impl="aiofolio", size_bytes=COUNT * ITEM
    )
    rows += ctx.attempt(
        warm_row,
        group=GROUP,
        name=warm_name,
        impl="aiofolio",
        size_bytes=COUNT * ITEM,
        baseline=f"{GROUP}/{loop_name}",
        goal=WARM_GOAL,
    )
    if state.get("dir") is not None:
        shutil.rmtree(state["dir"], ignore_errors=True)
    return rows


def _foreground(ctx: Context) -> list[Row]:
    bundle = _bundle(ctx)
    probes = [n for n in bundle.items if n.startswith("p")]
    bigs = [n for n in bundle.items if n.startswith("big")]

    def probe_series(folio: Any, stop: Any = None) -> Samples:
        times: list[float] = []
        for name in probes:
            if stop is not None and stop():
                break
            t0 = time.perf_counter()
            folio.get(name)
            times.append(time.perf_counter() - t0)
        return Samples(times, 0, len(probes), stopped_early=len(times) < len(probes))

    def idle_row() -> list[Row]:
        cache_dir = _fresh_dir(ctx, "warm-idle")
        try:
            samples = probe_series(_reader(ctx, bundle, cache_dir, Clock()))
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        return [
            ctx.row(
                group=GROUP,
                name=IDLE,
                impl="DataFolio.get, fresh cache, nothing else running",
                size_bytes=ITEM,
                samples=samples,
                notes=[f"{len(probes)} different items, one cold get each"],
            )
        ]

    def busy_row() -> list[Row]:
        cache_dir = _fresh_dir(ctx, "warm-busy")
        try:
            folio = _reader(ctx, bundle, cache_dir, Clock())
            handle = folio.warm_cache(bigs, background=True, progress=False)
            deadline = time.monotonic() + 0.5
            while handle.progress.bytes_done == 0 and time.monotonic() < deadline:
                time.sleep(0.01)  # let the warm's ranged GETs get going first
            samples = probe_series(folio, stop=handle.done)
            during = samples.runs
            result = handle.result(timeout=max(60.0, min(300.0, ctx.time_left())))
            if result.failed or len(result.cached) != BIG_COUNT:
                raise RuntimeError(f"warm: {result.cached} cached, failed {result.failed}")
        finally:
            shutil.rmtree(cache_dir, ignore_errors=True)
        return [
            ctx.row(
                group=GROUP,
                name=BUSY,
                impl="DataFolio.get while warm_cache(background=True) runs",
                size_bytes=ITEM,
                samples=samples,
                baseline=f"{GROUP}/{IDLE}",
                notes=[
                    f"{during} of {len(probes)} probes ran while the warm was still going",
                    f"the warm: {BIG_COUNT} x 64 MiB, default limits (2 large items at once, "
                    "8 ranged GETs each)",
                    "ratio < 1x = the warm slows foreground reads by that factor",
                ],
            )
        ]

    rows = ctx.attempt(idle_row, group=GROUP, name=IDLE, impl="aiofolio", size_bytes=ITEM)
    rows += ctx.attempt(
        busy_row,
        group=GROUP,
        name=BUSY,
        impl="aiofolio",
        size_bytes=ITEM,
        baseline=f"{GROUP}/{IDLE}",
    )
    return rows


def run(ctx: Context) -> list[Row]:
    return _loop_and_warm(ctx, "HTTP") + _loop_and_warm(ctx, "S3")


SCENARIO = Scenario(
    name="warm",
    run=run,
    groups=(GROUP,),
    description="issue 6: warm_cache of 500 x 64 KB vs a sequential get loop, HTTP and S3",
)

FOREGROUND_SCENARIO = Scenario(
    name="warm-foreground",
    run=_foreground,
    groups=(GROUP,),
    description="issue 6: foreground cold gets while a warm of 4 x 64 MiB runs",
)
