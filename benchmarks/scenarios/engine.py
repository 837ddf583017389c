"""The engine rows of issue 6: parallel cold reads, cross-process single-flight, memory, hits.

Group ``engine``, in one run, with ratios:

- **Cold 256 MiB** over the shaped link (20 ms + 50 MB/s per connection) in front of moto:
  ``s3fs get_file (max_concurrency=1)`` (the single stream, baseline), ``s3fs get_file
  (defaults)`` and ``aiofolio cold get_path`` (defaults: 8 MiB chunks, 8 in flight) into a fresh
  cache each run. Goal: aiofolio >= 6x the single stream. 256 MiB in both profiles (quick:
  fewer repeats). moto is launched with ``MotoServer``'s ranged-GET patch (a ranged GET reads
  only its bytes), so the server no longer caps parallel reads.
- **16 processes cold-getting one 256 MiB item** into one cache folder, released together:
  downloads counted at the proxy (GET bytes / object size; goal exactly 1) and the wall time
  (first start to last finish) against one process doing the same (goal <= 1.3x, i.e. a ratio
  >= 0.77x in the table).
- **Peak RSS growth during a download** of 1 GiB (quick: 256 MiB), ``get_path`` in a fresh
  subprocess: ``VmRSS`` sampled every 5 ms from ``/proc/self/status`` (and ``VmHWM``), minus
  the RSS just before the call. Goal: <= 64 MiB + ``chunk_size x parallel_downloads``.
- **The 1 KiB hit**, ``get`` and ``await aget``, with the hit fast path on and off
  (the ``hit_fast_path`` setting off and on, one reader each). If this checkout has no such switch,
  only the current path is measured and the note says so.

Objects are written once per run by aiofolio straight to moto (never through the link); every
cold read is checked byte for byte outside the timed region.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, MiB, Row, Samples, run_async
from ..servers import describe_requests
from . import single_stream
from .cache import Bundle, Clock, _array_bundle, _fresh_dir, _item_name, _reader

GROUP = "engine"

COLD_SIZE = 256 * MiB
GiB = 1024 * MiB
RSS_SIZE = {"quick": 256 * MiB, "full": 1 * GiB}
PROCS = 16
#: Releases per (profile, process count): the one-process baseline is cheap, so repeated.
PROC_RUNS = {("quick", 1): 3, ("quick", PROCS): 1, ("full", 1): 3, ("full", PROCS): 3}
COLD_REPEATS = {"quick": (2, 0), "full": (3, 1)}  # (timed runs, warm-ups)
SINGLE_REPEATS = {"quick": (1, 0), "full": (3, 1)}  # the slow single stream (~5.4 s a read)

S3FS_1 = "cold 256 MiB: s3fs get_file (max_concurrency=1)"
S3FS_DEFAULT = "cold 256 MiB: s3fs get_file (defaults)"
AIOFOLIO_COLD = "cold 256 MiB: aiofolio get_path (defaults)"
ONE_PROC = "1 process cold get_path (256 MiB)"
MANY_PROCS = f"{PROCS} processes cold get_path, one cache folder"
RSS_ROW = "peak RSS growth, get_path"
HIT_GET = "1 KiB hit get"
HIT_AGET = "1 KiB hit aget"


COLD_GOAL = Goal.ratio_at_least(6.0, ">= 6x the single stream")
PROCS_GOAL = Goal.slowdown_at_most(1.3, "wall <= 1.3x one process (ratio >= 0.77x)")

# A child process: open the folio (one manifest GET), say it is ready, wait for "go" on stdin,
# get_path the item while sampling its own RSS, print one JSON line. Bounded by its parent's
# timeouts (stdin EOF also releases it).
_CHILD = r"""
import json, os, sys, threading, time

cfg = json.loads(sys.argv[1])


def status(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


from aiofolio import DataFolio

folio = DataFolio(
    cfg["url"], read_only=True, create=False, storage_options=cfg["options"],
    cache_dir=cfg["cache_dir"], cache_ttl=3600,
)
folio.item_info(cfg["name"])
import hashlib, numpy  # noqa: F401  (imported before the baseline RSS)

with open(cfg["ready"], "w"):
    pass
if sys.stdin.readline().strip() != "go":
    sys.exit(3)
peak = [0]
stop = threading.Event()


def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], status("VmRSS"))
        stop.wait(0.005)


base = status("VmRSS")
sampler = threading.Thread(target=sample, daemon=True)
if cfg.get("sample_rss"):
    sampler.start()
t0 = time.time()
p0 = time.perf_counter()
c0 = time.process_time()
path = folio.get_path(cfg["name"])
dt = time.perf_counter() - p0
cpu = time.process_time() - c0
t1 = time.time()
stop.set()
if cfg.get("sample_rss"):
    sampler.join(1.0)
print(json.dumps({
    "t0": t0, "t1": t1, "dt": dt, "cpu": cpu, "path": path, "size": os.path.getsize(path),
    "rss_base": base, "rss_peak": max(peak[0], status("VmRSS")), "hwm": status("VmHWM"),
}), flush=True)
"""


def _series(ctx: Context, table: dict[str, tuple[int, int]]) -> dict[str, Any]:
    repeats, warmup = table.get(ctx.profile.name, table["quick"])
    return {"repeats": repeats, "warmup": warmup, "min_repeats": min(2, repeats)}


def _payload_size(ctx: Context, bundle: Bundle, name: str) -> int:
    head = ctx.servers.moto().client.head_object(Bucket=bundle.bucket, Key=bundle.items[name])
    return int(head["ContentLength"])


def _check_file(ctx: Context, size: int, header: int) -> Any:
    data = ctx.payload(size)

    def check(path: Any) -> None:
        with open(path, "rb") as fh:
            fh.seek(header)
            if fh.read() != data:
                raise RuntimeError(f"{path}: wrong bytes")

    return check


# -- cold 256 MiB -------------------------------------------------------------------------------


def _cold(ctx: Context) -> list[Row]:
    size = COLD_SIZE
    bundle = _array_bundle(ctx, (size,))
    name = _item_name(size)
    file_size = _payload_size(ctx, bundle, name)
    header = file_size - size
    check = _check_file(ctx, size, header)
    moto = ctx.servers.moto()
    proxy = bundle.proxy
    link = f"moto (ranged-GET patch) behind the {single_stream.link_note(ctx)} proxy"
    target = ctx.scratch("engine-cold") / "object.npy"
    rows: list[Row] = []

    def clear() -> None:
        target.unlink(missing_ok=True)

    def s3fs_row(row: str, kwargs: dict[str, Any], baseline: str | None) -> list[Row]:
        fs = moto.s3fs(endpoint_url=proxy.url, **kwargs)
        table = SINGLE_REPEATS if kwargs.get("max_concurrency") == 1 else COLD_REPEATS
        with proxy.counting() as c:
            samples = ctx.measure(
                lambda: fs.get_file(bundle.object_path(name), str(target)) or target,
                setup=clear,
                **_series(ctx, table),
            )
        check(target)
        clear()
        return [
            ctx.row(
                group=GROUP,
                name=row,
                impl="s3fs.get_file to a local file",
                size_bytes=file_size,
                samples=samples,
                baseline=baseline,
                notes=[
                    link,
                    f"max_concurrency={fs.max_concurrency}, block "
                    f"{fs.default_block_size >> 20} MiB",
                    describe_requests(c["stats"], samples.runs),
                ],
            )
        ]

    rows += ctx.attempt(
        lambda: s3fs_row(S3FS_1, {"max_concurrency": 1}, None),
        group=GROUP,
        name=S3FS_1,
        impl="s3fs",
        size_bytes=file_size,
    )
    rows += ctx.attempt(
        lambda: s3fs_row(S3FS_DEFAULT, {}, f"{GROUP}/{S3FS_1}"),
        group=GROUP,
        name=S3FS_DEFAULT,
        impl="s3fs",
        size_bytes=file_size,
    )

    state: dict[str, Any] = {}

    def fresh() -> None:
        old = state.pop("dir", None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        state["dir"] = _fresh_dir(ctx, "engine-cold")
        state["folio"] = _reader(ctx, bundle, state["dir"], Clock())  # loads items.json

    def aiofolio_row() -> list[Row]:
        with proxy.counting() as c:
            samples = ctx.measure(
                lambda: state["folio"].get_path(name),
                setup=fresh,
                **_series(ctx, COLD_REPEATS),
            )
        check(state["folio"].get_path(name))
        by = c["stats"].get("by_method", {})
        gets = by.get("GET", {}).get("requests", 0) - samples.runs - samples.warmup
        ranged = by.get("GET", {}).get("ranged", 0)
        settings = state["folio"].settings
        return [
            ctx.row(
                group=GROUP,
                name=AIOFOLIO_COLD,
                impl="DataFolio.get_path into a fresh cache",
                size_bytes=file_size,
                samples=samples,
                baseline=f"{GROUP}/{S3FS_1}",
                notes=[
                    link,
                    f"chunks of {settings.chunk_size >> 20} MiB, "
                    f"{settings.parallel_downloads} in flight; download + MD5 + publish",
                    f"payload GETs/op {gets / max(1, samples.runs + samples.warmup):g} "
                    f"({ranged / max(1, samples.runs + samples.warmup):g} ranged), "
                    "+1 GET of items.json per fresh folio (untimed)",
                ],
                goal=COLD_GOAL,
            )
        ]

    rows += ctx.attempt(
        aiofolio_row,
        group=GROUP,
        name=AIOFOLIO_COLD,
        impl="aiofolio",
        size_bytes=file_size,
        baseline=f"{GROUP}/{S3FS_1}",
        goal=COLD_GOAL,
    )
    if state.get("dir") is not None:
        shutil.rmtree(state["dir"], ignore_errors=True)
    ok = {r.name: r for r in rows if r.ok}
    mine, dflt = ok.get(AIOFOLIO_COLD), ok.get(S3FS_DEFAULT)
    if mine is not None and dflt is not None and mine.median_s and dflt.median_s:
        extra = f"vs s3fs defaults: {dflt.median_s / mine.median_s:.2f}x"
        mine.notes = f"{mine.notes}; {extra}" if mine.notes else extra
    return rows


# -- child processes ----------------------------------------------------------------------------


@contextlib.contextmanager
def _children(
    ctx: Context, bundle: Bundle, name: str, cache_dir: Path, n: int, *, sample_rss: bool = False
) -> Iterator[tuple[list[subprocess.Popen[str]], Path]]:
    """Start ``n`` children opening the folio; yields once all are ready (bounded)."""
    run_dir = Path(os.path.join(ctx.scratch("engine-procs"), f"run-{time.monotonic_ns()}"))
    run_dir.mkdir(parents=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        for i in range(n):
            cfg = {
                "url": bundle.url,
                "options": bundle.options,
                "cache_dir": str(cache_dir),
                "name": name,
                "ready": str(run_dir / f"ready-{i}"),
                "sample_rss": sample_rss,
            }
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", _CHILD, json.dumps(cfg)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
            )
        deadline = time.monotonic() + min(180.0, max(30.0, ctx.time_left()))
        while sum(1 for _ in run_dir.glob("ready-*")) < n:
            dead = [p for p in procs if p.poll() is not None]
            if dead:
                err = dead[0].stderr.read() if dead[0].stderr else ""
                raise RuntimeError(f"a child exited early: {err.strip()[-500:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} children not ready in time")
            time.sleep(0.05)
        yield procs, run_dir
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5.0)
        shutil.rmtree(run_dir, ignore_errors=True)


def _release(procs: list[subprocess.Popen[str]], timeout_s: float) -> list[dict[str, Any]]:
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = []
    deadline = time.monotonic() + timeout_s
    for p in procs:
        out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
        if p.returncode != 0:
            raise RuntimeError(f"child failed ({p.returncode}): {err.strip()[-500:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _procs_once(
    ctx: Context, bundle: Bundle, name: str, n: int, file_size: int
) -> tuple[float, float, list[dict[str, Any]], dict[str, Any]]:
    """One release of ``n`` children on a fresh cache folder: (wall, downloads, results, stats)."""
    check = _check_file(ctx, COLD_SIZE, file_size - COLD_SIZE)
    cache_dir = _fresh_dir(ctx, f"engine-procs-{n}")
    try:
        with (
            _children(ctx, bundle, name, cache_dir, n) as (procs, _),
            bundle.proxy.counting() as c,
        ):
            results = _release(procs, timeout_s=max(60.0, min(300.0, ctx.time_left())))
        paths = {r["path"] for r in results}
        if len(paths) != 1 or any(r["size"] != file_size for r in results):
            raise RuntimeError(f"children disagree: {sorted(paths)}")
        check(results[0]["path"])
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    wall = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    get = c["stats"].get("by_method", {}).get("GET", {})
    return wall, get.get("bytes", 0) / file_size, results, c["stats"]


def _procs(ctx: Context) -> list[Row]:
    bundle = _array_bundle(ctx, (COLD_SIZE,))
    name = _item_name(COLD_SIZE)
    file_size = _payload_size(ctx, bundle, name)
    rows: list[Row] = []
    medians: dict[int, float] = {}
    for n, row_name in ((1, ONE_PROC), (PROCS, MANY_PROCS)):
        runs = PROC_RUNS[(ctx.profile.name if ctx.profile.name in PROC_RUNS else "quick", n)]
        walls: list[float] = []
        downloads: list[float] = []
        per_proc: list[float] = []
        cpu: list[float] = []
        stats: dict[str, Any] = {}
        for i in range(runs):
            if i and ctx.out_of_time():
                break
            wall, dl, results, stats = _procs_once(ctx, bundle, name, n, file_size)
            walls.append(wall)
            downloads.append(dl)
            per_proc += [r["dt"] for r in results]
            cpu += [r["cpu"] for r in results]
        samples = Samples(walls, 0, runs, stopped_early=len(walls) < runs)
        medians[n] = samples.stats.median
        get = stats.get("by_method", {}).get("GET", {})
        notes = [
            f"{n} process(es) released together on a fresh cache_dir, {len(walls)} time(s); "
            "wall = first start to last finish",
            "downloads at the proxy (GET bytes / object size): "
            + ", ".join(f"{d:.2f}" for d in downloads)
            + f"; goal exactly 1 (last run: {get.get('requests', 0)} GETs, "
            f"{get.get('ranged', 0)} ranged)",
            f"per-process get_path {min(per_proc):.2f}..{max(per_proc):.2f} s, CPU "
            f"{min(cpu):.2f}..{max(cpu):.2f} s (median {sorted(cpu)[len(cpu) // 2]:.2f} s)",
        ]
        if n > 1 and 1 in medians:
            notes.append(f"wall {medians[n] / medians[1]:.2f}x one process")
        rows.append(
            ctx.row(
                group=GROUP,
                name=row_name,
                impl="DataFolio.get_path in child processes",
                size_bytes=file_size,
                samples=samples,
                baseline=f"{GROUP}/{ONE_PROC}" if n > 1 else None,
                notes=notes,
                goal=PROCS_GOAL if n > 1 else None,
                extra={
                    "downloads": downloads,
                    "processes": n,
                    "get_path_s": [round(t, 3) for t in per_proc],
                    "cpu_s": [round(t, 3) for t in cpu],
                },
            )
        )
    return rows


def _rss(ctx: Context) -> list[Row]:
    size = RSS_SIZE.get(ctx.profile.name, RSS_SIZE["quick"])
    bundle = _array_bundle(ctx, (size,))
    name = _item_name(size)
    file_size = _payload_size(ctx, bundle, name)
    cache_dir = _fresh_dir(ctx, "engine-rss")
    try:
        with _children(ctx, bundle, name, cache_dir, 1, sample_rss=True) as (procs, _):
            result = _release(procs, timeout_s=max(60.0, min(600.0, ctx.time_left())))[0]
        if result["size"] != file_size:
            raise RuntimeError(f"get_path gave {result['size']} bytes of {file_size}")
        _check_file(ctx, size, file_size - size)(result["path"])
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    from aiofolio.config import resolve_settings

    s = resolve_settings().settings
    goal = 64 * MiB + s.chunk_size * s.parallel_downloads
    growth = result["rss_peak"] - result["rss_base"]
    hwm_growth = result["hwm"] - result["rss_base"]
    verdict = "within" if growth <= goal else "OVER"
    return [
        ctx.row(
            group=GROUP,
            name=f"{RSS_ROW} ({size // MiB} MiB)",
            impl="DataFolio.get_path in a fresh subprocess",
            size_bytes=file_size,
            samples=Samples.single(result["dt"]),
            notes=[
                f"peak RSS growth {growth / MiB:.1f} MiB (VmRSS sampled every 5 ms; VmHWM "
                f"says {hwm_growth / MiB:.1f} MiB) {verdict} the goal of {goal / MiB:.0f} MiB "
                f"(64 MiB + {s.chunk_size >> 20} MiB x {s.parallel_downloads})",
                f"RSS before {result['rss_base'] / MiB:.0f} MiB",
                "time = the download (one sample)",
            ],
            extra={"rss_growth_bytes": growth, "hwm_growth_bytes": hwm_growth, "goal": goal},
            goal=Goal(
                "value",
                "<=",
                goal,
                f"RSS growth <= {goal / MiB:.0f} MiB",
                value=float(growth),
                unit="MiB",
            ),
        )
    ]


# -- the 1 KiB hit ------------------------------------------------------------------------------


def _has_fast_path_switch() -> bool:
    from aiofolio.config import Settings

    return "hit_fast_path" in Settings.__struct_fields__


def _hits(ctx: Context) -> list[Row]:
    import numpy as np

    p = ctx.profile
    size = p.hit_small_size
    bundle = _array_bundle(ctx, (size,))
    name = _item_name(size)
    data = ctx.payload(size)
    cache_dir = _fresh_dir(ctx, "engine-hits")
    switch = _has_fast_path_switch()
    folios = {
        value: _reader(
            ctx, bundle, cache_dir, Clock(), **({"hit_fast_path": value == "1"} if switch else {})
        )
        for value in (("0", "1") if switch else (None,))
    }
    for reader in folios.values():
        reader.get(name)  # the miss (then a hit for the second reader), untimed

    def check(got: Any) -> None:
        if not isinstance(got, np.ndarray) or got.tobytes() != data:
            raise RuntimeError("hit returned a wrong array")

    series: dict[str, Any] = dict(repeats=p.small_repeats, warmup=20, budget_s=p.small_budget_s)
    modes: list[tuple[str, str | None]] = (
        [("fast path off", "0"), ("fast path on", "1")] if switch else [("current path", None)]
    )
    rows: list[Row] = []
    for call, row_base in (("get", HIT_GET), ("aget", HIT_AGET)):
        for label, value in modes:
            row_name = f"{row_base} ({label})"
            baseline = f"{GROUP}/{row_base} (fast path off)" if value == "1" else None

            def one(
                call: str = call,
                row_name: str = row_name,
                value: str | None = value,
                baseline: str | None = baseline,
                label: str = label,
            ) -> list[Row]:
                folio = folios[value]
                with bundle.proxy.counting() as c:
                    if call == "get":
                        samples = ctx.measure(lambda: folio.get(name), check=check, **series)
                    else:

                        async def series_async() -> Samples:
                            return await ctx.measure_async(
                                lambda: folio.aget(name), check=check, **series
                            )

                        samples = run_async(series_async(), timeout_s=p.small_budget_s + 60)
                notes = [
                    f"hit_fast_path={value == '1'}"
                    if value is not None
                    else "no hit_fast_path setting in this checkout: current path only",
                    "includes np.load of the .npy payload",
                    samples.note(),
                    describe_requests(c["stats"], samples.runs),
                ]
                return [
                    ctx.row(
                        group=GROUP,
                        name=row_name,
                        impl=f"DataFolio.{call}" + (" (from asyncio)" if call == "aget" else ""),
                        size_bytes=size,
                        samples=samples,
                        baseline=baseline,
                        notes=notes,
                    )
                ]

            rows += ctx.attempt(one, group=GROUP, name=row_name, impl="aiofolio", size_bytes=size)
    return rows


# -- the scenario -------------------------------------------------------------------------------


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    rows += ctx.attempt(
        lambda: _cold(ctx), group=GROUP, name=AIOFOLIO_COLD, impl="aiofolio", size_bytes=COLD_SIZE
    )
    rows += ctx.attempt(
        lambda: _procs(ctx), group=GROUP, name=MANY_PROCS, impl="aiofolio", size_bytes=COLD_SIZE
    )
    rss_size = RSS_SIZE.get(ctx.profile.name, RSS_SIZE["quick"])
    rows += ctx.attempt(
        lambda: _rss(ctx),
        group=GROUP,
        name=f"{RSS_ROW} ({rss_size // MiB} MiB)",
        impl="aiofolio",
        size_bytes=rss_size,
    )
    rows += ctx.attempt(
        lambda: _hits(ctx),
        group=GROUP,
        name=HIT_GET,
        impl="aiofolio",
        size_bytes=ctx.profile.hit_small_size,
    )
    return rows


SCENARIO = Scenario(
    name="engine",
    run=run,
    groups=(GROUP,),
    description="issue 6: cold 256 MiB vs s3fs, 16-process single-flight, peak RSS, 1 KiB hits",
)
