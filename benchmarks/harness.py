"""Timing, statistics, the result model and the writers (JSON, Markdown, optional PNG).

Nothing here knows about a particular scenario or server: scenarios (``benchmarks/scenarios``)
time things with :func:`measure` / :func:`measure_async` and turn the samples into
:class:`Row` objects with :meth:`Row.from_samples`; the runner (``benchmarks/__main__.py``)
resolves the ratios (:func:`resolve_ratios`) and writes the report.

Units: times are seconds in the data model (``*_s``); MB/s means 10**6 bytes per second (the
unit of the link shaping); object sizes are binary (KiB, MiB). ``ratio`` is "how fast is the row
compared to its baseline", >1 faster, <1 slower; see :func:`ratio_of` and README.md. A row may
carry a :class:`Goal` (a bound on its ratio, its median time or a value it measured); the
runner judges it after the ratios (:func:`judge_goals`): ``PASS`` or ``MISS``, shown beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import gc
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

KiB = 1024
MiB = 1024 * KiB
MB = 1_000_000  # the throughput unit: MB/s = 10**6 bytes/s

#: Hard ceilings that hold whatever a scenario asks for: every timing loop is bounded.
MAX_REPEATS = 100_000
MAX_WARMUP = 20

#: Packages whose versions go into the report.
REPORTED_PACKAGES = (
    "aiofolio",
    "fsspec",
    "s3fs",
    "gcsfs",
    "aiohttp",
    "aiobotocore",
    "botocore",
    "moto",
    "gcp-storage-emulator",
    "numpy",
    "matplotlib",
)

T = TypeVar("T")


# -- statistics -----------------------------------------------------------------------------


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-quantile (0..1) of already sorted values, linear interpolation (numpy default).

    With few samples this interpolates between neighbours, e.g. p10 of 3 samples lies between
    the fastest and the median one.
    """
    if not sorted_values:
        raise ValueError("no samples")
    if not 0.0 <= q <= 1.0:
        raise ValueError("q must be within [0, 1]")
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass(frozen=True)
class Stats:
    """Order statistics of timed samples, in seconds."""

    n: int
    median: float
    p10: float
    p90: float
    min: float
    max: float
    mean: float

    @classmethod
    def of(cls, times: Sequence[float]) -> Stats:
        s = sorted(times)
        return cls(
            n=len(s),
            median=percentile(s, 0.5),
            p10=percentile(s, 0.1),
            p90=percentile(s, 0.9),
            min=s[0],
            max=s[-1],
            mean=sum(s) / len(s),
        )


@dataclass
class Samples:
    """What one timing series produced.

    Attributes:
        times: Wall-clock seconds of each timed run (warm-up runs are not in here).
        warmup: How many untimed warm-up runs were done first (fewer than asked when the
            budget was spent).
        requested: How many timed runs were asked for.
        stopped_early: True when the time budget ended the series before ``requested`` runs.
    """

    times: list[float]
    warmup: int
    requested: int
    stopped_early: bool = False

    @property
    def stats(self) -> Stats:
        return Stats.of(self.times)

    @property
    def runs(self) -> int:
        """Every run made, warm-ups included (to turn server request counts into per-op)."""
        return self.warmup + len(self.times)

    @classmethod
    def single(cls, seconds: float) -> Samples:
        """One run that could only happen once (e.g. a cold first read)."""
        return cls([seconds], 0, 1)

    def note(self) -> str:
        """A short note for the row when the series was cut by its budget, else ''."""
        if self.stopped_early:
            return f"time budget hit: {len(self.times)}/{self.requested} runs"
        return ""


# -- timing ---------------------------------------------------------------------------------


def _bounded(repeats: int, warmup: int) -> tuple[int, int]:
    return max(1, min(int(repeats), MAX_REPEATS)), max(0, min(int(warmup), MAX_WARMUP))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Collect once, then keep the cyclic GC off while timing (like ``timeit``)."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def measure(
    fn: Callable[[], T],
    *,
    repeats: int,
    warmup: int = 1,
    budget_s: float | None = None,
    deadline: float | None = None,
    min_repeats: int = 1,
    setup: Callable[[], object] | None = None,
    check: Callable[[T], object] | None = None,
) -> Samples:
    """Time ``fn()`` ``repeats`` times after ``warmup`` untimed runs.

    Args:
        fn: The operation; its result is handed to ``check`` outside the timed region.
        repeats: Timed runs wanted (capped at :data:`MAX_REPEATS`).
        warmup: Untimed runs first (capped at :data:`MAX_WARMUP`).
        budget_s: Stop after this many seconds (warm-ups included) once ``min_repeats``
            timed runs are in; the samples then say ``stopped_early``.
        deadline: An absolute ``time.monotonic()`` limit with the same effect.
        min_repeats: Timed runs done even when the budget is spent (at least 1).
        setup: Untimed call before every run (warm-ups included).
        check: Untimed call on every result, e.g. to verify the length; raise to fail.
    """
    repeats, warmup = _bounded(repeats, warmup)
    min_repeats = max(1, min(min_repeats, repeats))
    start = time.monotonic()
    limit = _limit(start, budget_s, deadline)
    times: list[float] = []
    warmed = 0
    clock = time.perf_counter
    with _gc_paused():
        for i in range(warmup + repeats):
            timed = i >= warmup
            if timed and len(times) >= min_repeats and time.monotonic() > limit:
                break
            if not timed and time.monotonic() > limit:
                continue  # skip what is left of the warm-up, still do min_repeats
            if setup is not None:
                setup()
            t0 = clock()
            result = fn()
            dt = clock() - t0
            if check is not None:
                check(result)
            del result
            if timed:
                times.append(dt)
            else:
                warmed += 1
    return Samples(times, warmed, repeats, stopped_early=len(times) < repeats)


async def measure_async(
    fn: Callable[[], Awaitable[T]],
    *,
    repeats: int,
    warmup: int = 1,
    budget_s: float | None = None,
    deadline: float | None = None,
    min_repeats: int = 1,
    setup: Callable[[], Awaitable[object]] | None = None,
    check: Callable[[T], object] | None = None,
) -> Samples:
    """:func:`measure` for coroutines: times ``await fn()`` on the running loop."""
    repeats, warmup = _bounded(repeats, warmup)
    min_repeats = max(1, min(min_repeats, repeats))
    start = time.monotonic()
    limit = _limit(start, budget_s, deadline)
    times: list[float] = []
    warmed = 0
    clock = time.perf_counter
    with _gc_paused():
        for i in range(warmup + repeats):
            timed = i >= warmup
            if timed and len(times) >= min_repeats and time.monotonic() > limit:
                break
            if not timed and time.monotonic() > limit:
                continue
            if setup is not None:
                await setup()
            t0 = clock()
            result = await fn()
            dt = clock() - t0
            if check is not None:
                check(result)
            del result
            if timed:
                times.append(dt)
            else:
                warmed += 1
    return Samples(times, warmed, repeats, stopped_early=len(times) < repeats)


def _limit(start: float, budget_s: float | None, deadline: float | None) -> float:
    limit = math.inf if budget_s is None else start + budget_s
    return limit if deadline is None else min(limit, deadline)


def run_async(coro: Awaitable[T], *, timeout_s: float) -> T:
    """``asyncio.run`` with an overall timeout (a scenario's async part is always bounded)."""

    async def _main() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(_main())


# -- result model ---------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the results table.

    The first eleven fields are the stable schema other code relies on; the rest are extras.

    Attributes:
        group: Table section, e.g. ``"floor"``, ``"single-stream"``, ``"fsspec-cache"``.
        name: What was measured, unique within the group, e.g. ``"aiohttp GET"``. Rows that
            differ only by size share a name.
        impl: Who did it (library / API), e.g. ``"s3fs"`` or ``"open().readinto"``.
        size_bytes: Bytes moved per operation (0 when that means nothing).
        median_s, p10_s, p90_s: Seconds per operation (None when the row failed).
        mb_per_s: ``size_bytes / median_s / 1e6``.
        baseline: ``"group/name"`` of the row this one is compared to, or None.
        ratio: Baseline's per-byte median time over this row's (see :func:`ratio_of`); >1 means
            faster than the baseline. None when there is no baseline or it was not measured.
        notes: Free text: conditions, caveats, request counts.
        min_s: Fastest run.
        n: Timed runs behind the statistics.
        warmup: Untimed warm-up runs before them.
        scenario: The scenario module that produced the row.
        extra: Anything else worth keeping in the JSON (not shown in the table).
        goal: The row's :class:`Goal` as a dict (:meth:`Goal.to_dict`), or None.
        verdict: ``"PASS"`` / ``"MISS"`` once judged (:func:`judge_goals`); None when the row
            has no goal or it could not be judged.
    """

    group: str
    name: str
    impl: str
    size_bytes: int
    median_s: float | None
    p10_s: float | None
    p90_s: float | None
    mb_per_s: float | None
    baseline: str | None
    ratio: float | None
    notes: str
    min_s: float | None = None
    n: int = 0
    warmup: int = 0
    scenario: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    goal: dict[str, Any] | None = None
    verdict: str | None = None

    @property
    def key(self) -> str:
        """``group/name``: what a ``baseline`` refers to."""
        return f"{self.group}/{self.name}"

    @property
    def ok(self) -> bool:
        return self.median_s is not None

    @classmethod
    def from_samples(
        cls,
        *,
        group: str,
        name: str,
        impl: str,
        size_bytes: int,
        samples: Samples,
        baseline: str | None = None,
        notes: str | Iterable[str] = "",
        scenario: str = "",
        extra: dict[str, Any] | None = None,
        goal: Goal | None = None,
    ) -> Row:
        """Build a row from a timing series; ``ratio`` (and the goal's verdict) are filled in
        later by the runner."""
        st = samples.stats
        parts = [notes] if isinstance(notes, str) else list(notes)
        parts.append(samples.note())
        return cls(
            group=group,
            name=name,
            impl=impl,
            size_bytes=int(size_bytes),
            median_s=st.median,
            p10_s=st.p10,
            p90_s=st.p90,
            mb_per_s=throughput(size_bytes, st.median),
            baseline=baseline,
            ratio=None,
            notes="; ".join(p for p in parts if p),
            min_s=st.min,
            n=st.n,
            warmup=samples.warmup,
            scenario=scenario,
            extra=dict(extra or {}),
            goal=goal.to_dict() if goal is not None else None,
        )

    @classmethod
    def failed(
        cls,
        *,
        group: str,
        name: str,
        impl: str,
        size_bytes: int,
        reason: str,
        baseline: str | None = None,
        scenario: str = "",
        goal: Goal | None = None,
    ) -> Row:
        """A row that could not be measured; it stays in the table with the reason (and its
        goal, not judged)."""
        return cls(
            group=group,
            name=name,
            impl=impl,
            size_bytes=int(size_bytes),
            median_s=None,
            p10_s=None,
            p90_s=None,
            mb_per_s=None,
            baseline=baseline,
            ratio=None,
            notes=f"NOT MEASURED: {reason}",
            scenario=scenario,
            goal=goal.to_dict() if goal is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def throughput(size_bytes: int, seconds: float | None) -> float | None:
    """MB/s (10**6 bytes/s), or None for a failed row or an empty payload."""
    if seconds is None or seconds <= 0 or size_bytes <= 0:
        return None
    return size_bytes / seconds / MB


def ratio_of(row: Row, base: Row) -> float | None:
    """How many times faster ``row`` is than ``base`` (>1 faster, <1 slower).

    Same size: ``base.median_s / row.median_s``. Different sizes (e.g. a 256 MiB floor against a
    64 MiB stream in --quick): per-byte times are compared instead, which is the same as
    ``row.mb_per_s / base.mb_per_s``.
    """
    if row.median_s is None or base.median_s is None or row.median_s <= 0:
        return None
    if row.size_bytes == base.size_bytes or row.size_bytes <= 0 or base.size_bytes <= 0:
        return base.median_s / row.median_s
    return (base.median_s / base.size_bytes) / (row.median_s / row.size_bytes)


def resolve_ratios(rows: list[Row]) -> None:
    """Fill ``ratio`` (and a note when the match is not exact) for every row with a baseline.

    A baseline ``"group/name"`` (or just ``"name"`` for the row's own group) is matched to the
    measured row(s) with that key: the one of the same size if any, else the nearest size.
    """
    by_key: dict[str, list[Row]] = {}
    for r in rows:
        if r.ok:
            by_key.setdefault(r.key, []).append(r)
    for r in rows:
        if not r.baseline:
            continue
        key = r.baseline if "/" in r.baseline else f"{r.group}/{r.baseline}"
        r.baseline = key
        candidates = by_key.get(key, [])
        if not candidates:
            if r.ok:
                r.notes = _join(r.notes, f"baseline {key!r} not measured in this run")
            continue
        base = min(
            candidates,
            key=lambda c: (abs(math.log2(max(c.size_bytes, 1) / max(r.size_bytes, 1))), c.n),
        )
        r.ratio = ratio_of(r, base)
        r.extra["baseline_size_bytes"] = base.size_bytes
        if base.size_bytes != r.size_bytes and r.ok:
            r.notes = _join(r.notes, f"ratio per byte vs the {fmt_size(base.size_bytes)} baseline")


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


# -- goals ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goal:
    """A target a row is held to, judged after the ratios are known (:func:`judge_goals`).

    Attributes:
        metric: What is bounded: ``"ratio"`` (the row's ratio to its baseline, >1 = faster),
            ``"median_s"`` (its median time) or ``"value"`` (a number the scenario measured,
            given in ``value``, e.g. bytes of RSS growth).
        op: ``">="`` or ``"<="``.
        target: The bound.
        text: The goal as people say it, e.g. ``"<= 3x one revalidation"`` (shown in the
            table; when it is phrased in other terms than the metric, say both).
        value: The measured number for ``metric="value"``.
        unit: How to show a ``"value"`` (``"MiB"`` divides by 2**20); ``"x"``, ``"s"``.
        slowdown: A ratio goal phrased as "at most F times the baseline's time": the measured
            ratio is also shown as that factor (``1 / ratio``).
    """

    metric: Literal["ratio", "median_s", "value"]
    op: Literal[">=", "<="]
    target: float
    text: str = ""
    value: float | None = None
    unit: str = ""
    slowdown: bool = False

    @classmethod
    def ratio_at_least(cls, target: float, text: str = "") -> Goal:
        """The row must be at least ``target`` times as fast as its baseline."""
        return cls("ratio", ">=", target, text or f">= {target:g}x the baseline")

    @classmethod
    def slowdown_at_most(cls, factor: float, text: str = "") -> Goal:
        """The row may take at most ``factor`` times its baseline's time (ratio >= 1/factor)."""
        return cls(
            "ratio",
            ">=",
            1.0 / factor,
            text or f"<= {factor:g}x the baseline's time (ratio >= {1 / factor:.3g}x)",
            slowdown=True,
        )

    @classmethod
    def time_at_most(cls, seconds: float, text: str = "") -> Goal:
        """The row's median must be at most ``seconds``."""
        return cls("median_s", "<=", seconds, text or f"<= {fmt_time(seconds)}")

    def measured(self, row: Row) -> float | None:
        if self.metric == "ratio":
            return row.ratio
        if self.metric == "median_s":
            return row.median_s
        return self.value

    def judge(self, row: Row) -> str | None:
        """``"PASS"``, ``"MISS"``, or None when there is nothing to judge (row or baseline
        not measured)."""
        got = self.measured(row) if row.ok else None
        if got is None:
            return None
        ok = got >= self.target if self.op == ">=" else got <= self.target
        return "PASS" if ok else "MISS"

    def show(self, number: float | None) -> str:
        """A measured number (or the target) in the goal's terms."""
        if number is None:
            return "-"
        if self.metric == "ratio":
            if self.slowdown and number > 0:
                return f"{fmt_ratio(number)}, i.e. {1 / number:.3g}x the time"
            return fmt_ratio(number)
        if self.metric == "median_s":
            return fmt_time(number)
        if self.unit == "MiB":
            return f"{number / MiB:.1f} MiB"
        return f"{number:.3g}{self.unit}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Goal:
        return cls(**data)


def judge_goals(rows: Iterable[Row]) -> None:
    """Fill ``verdict`` (and ``extra["goal_measured"]``) of every row with a goal; run after
    :func:`resolve_ratios`."""
    for r in rows:
        if not r.goal:
            continue
        goal = Goal.from_dict(r.goal)
        r.verdict = goal.judge(r)
        r.extra["goal_measured"] = goal.measured(r) if r.ok else None


def fmt_goal(row: Row) -> str:
    """``">= 20x: MISS (12.3x)"``-style cell for the table, '' without a goal."""
    if not row.goal:
        return ""
    goal = Goal.from_dict(row.goal)
    text = goal.text or f"{goal.op} {goal.show(goal.target)}"
    if row.verdict is None:
        return f"{text}: not judged"
    got = goal.measured(row)
    return f"{text}: **{row.verdict}** ({goal.show(got)})"


# -- formatting -----------------------------------------------------------------------------


def fmt_size(n: int) -> str:
    """``1024`` -> ``"1 KiB"``, ``67108864`` -> ``"64 MiB"``; ``0`` -> ``"-"``."""
    if n <= 0:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", MiB), ("KiB", KiB)):
        if n >= scale:
            v = n / scale
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def time_unit(seconds: float) -> tuple[str, float]:
    """The display unit for a time: µs below 1 ms, ms below 10 s, else s."""
    if seconds < 1e-3:
        return "µs", 1e6
    if seconds < 10:
        return "ms", 1e3
    return "s", 1.0


def fmt_time(seconds: float | None, unit: tuple[str, float] | None = None) -> str:
    if seconds is None:
        return "-"
    name, scale = unit or time_unit(seconds)
    v = seconds * scale
    digits = 0 if v >= 100 else 1 if v >= 10 else 2
    return f"{v:.{digits}f} {name}"


def fmt_rate(mb_per_s: float | None) -> str:
    if mb_per_s is None:
        return "-"
    if mb_per_s >= 100:
        return f"{mb_per_s:,.0f}"
    return f"{mb_per_s:.1f}" if mb_per_s >= 10 else f"{mb_per_s:.2f}"


def fmt_ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    return f"{ratio:.3g}x"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


#: Rows smaller than this get no MB/s in the Markdown (per-hit latency is what matters there).
MIN_SIZE_FOR_RATE = 1 * MiB


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown report: header, machine info, one table, errors."""
    rows = [Row.from_dict(r) for r in report["rows"]]
    m = report["machine"]
    run = report["run"]
    lines = [
        "# aiofolio benchmarks",
        "",
        f"Run: **{run['profile']}** profile, {run['started_utc']} UTC, "
        f"{run['wall_s']:.1f} s wall time"
        + (" (**interrupted**, partial results)" if run.get("interrupted") else "")
        + ".",
        "",
        f"Machine: {m['cpu_count']} cores ({m.get('cpu_model') or 'unknown CPU'}), "
        f"{m.get('mem_total_gib', '?')} GiB RAM, load average {_fmt_load(m.get('loadavg_start'))}"
        f" at start, {_fmt_load(m.get('loadavg_end'))} at end; Python {m['python']} "
        f"({m['implementation']}) on {m['platform']}; tmp on {m.get('tmp_fs', '?')}.",
        "",
        "Packages: "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v is not None)
        + ".",
        "",
    ]
    if m.get("git"):
        lines += [f"Code: {m['git']}.", ""]
    link = run.get("link")
    if link:
        lines += [
            f"Shaped link: {link['latency_ms']:g} ms before each response, "
            f"{link['bandwidth_mb_s']:g} MB/s per connection (user-space FaultServer "
            "in its own process).",
            "",
        ]
    lines += [
        "Times are per operation: median, p10 and p90 of the timed runs (n), warm-up runs "
        "excluded. MB/s = 10^6 bytes/s at the median. **ratio** = how many times faster than "
        "the baseline row (baseline median / row median, per byte when the sizes differ): "
        "<1x means slower. **goal**: the row's target, PASS or MISS, and the measured number "
        "it was judged on. Absolute numbers depend on a shared 2-core machine; compare ratios.",
        "",
    ]
    judged = [r for r in rows if r.goal]
    if judged:
        passed = sum(r.verdict == "PASS" for r in judged)
        missed = sum(r.verdict == "MISS" for r in judged)
        lines += [
            f"Goals: {len(judged)} rows with a goal: {passed} PASS, {missed} MISS, "
            f"{len(judged) - passed - missed} not judged.",
            "",
        ]
    lines += [
        "| group | row | impl | size | n | median | p10 | p90 | MB/s | baseline | ratio | goal "
        "| notes |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |",
    ]
    for r in rows:
        unit = time_unit(r.median_s) if r.median_s is not None else None
        rate = fmt_rate(r.mb_per_s) if r.size_bytes >= MIN_SIZE_FOR_RATE else "-"
        lines.append(
            "| "
            + " | ".join(
                _md_escape(c)
                for c in (
                    r.group,
                    r.name,
                    r.impl,
                    fmt_size(r.size_bytes),
                    str(r.n) if r.ok else "-",
                    fmt_time(r.median_s, unit),
                    fmt_time(r.p10_s, unit),
                    fmt_time(r.p90_s, unit),
                    rate,
                    r.baseline or "-",
                    fmt_ratio(r.ratio),
                    fmt_goal(r),
                    r.notes or "",
                )
            )
            + " |"
        )
    lines.append("")
    if report.get("errors"):
        lines += ["## Errors", ""]
        lines += [f"- `{e['scenario']}`: {_md_escape(e['error'])}" for e in report["errors"]]
        lines.append("")
    if report.get("plot"):
        lines += [f"![results]({report['plot']})", ""]
    return "\n".join(lines)


def _fmt_load(load: Sequence[float] | None) -> str:
    if not load:
        return "?"
    return "/".join(f"{x:.2f}" for x in load)


# -- machine info ---------------------------------------------------------------------------


def package_versions(names: Iterable[str] = REPORTED_PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / (1 << 20), 1)
    except (OSError, ValueError):
        pass
    return None


def _fs_type(path: Path) -> str | None:
    """The filesystem type of the mount holding ``path`` (Linux /proc/mounts), else None."""
    try:
        target = path.resolve()
        best: tuple[int, str] | None = None
        with open("/proc/mounts", encoding="utf-8") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1]
                inside = target == Path(mnt) or Path(mnt) in target.parents
                if inside and (best is None or len(mnt) > best[0]):
                    best = (len(mnt), parts[2])
        return best[1] if best else None
    except OSError:
        return None


def _git_describe(repo: Path) -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"git {head}" + (" with uncommitted changes" if dirty else "")


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info(tmp_dir: Path, repo: Path | None = None) -> dict[str, Any]:
    """Cores, load, memory, Python, platform, package versions, date, filesystem of tmp."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "cpu_model": _cpu_model(),
        "mem_total_gib": _mem_total_gib(),
        "loadavg_start": loadavg(),
        "loadavg_end": None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(terse=True),
        "packages": package_versions(),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "tmp_dir": str(tmp_dir),
        "tmp_fs": _fs_type(tmp_dir),
        "git": _git_describe(repo) if repo is not None else None,
    }


# -- writers --------------------------------------------------------------------------------


def write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(render_markdown(report), encoding="utf-8")
    tmp.replace(path)


def write_plot(path: Path, rows: Sequence[Row]) -> bool:
    """A PNG with two panels, if matplotlib can be imported; returns whether it was written.

    Left: throughput (MB/s, log scale) of rows of at least 1 MiB. Right: time per operation
    (µs, log scale) of smaller rows. Bars are medians, whiskers p10..p90.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # ImportError, or a broken backend
        return False
    big = [r for r in rows if r.ok and r.size_bytes >= MIN_SIZE_FOR_RATE]
    small = [r for r in rows if r.ok and 0 < r.size_bytes < MIN_SIZE_FOR_RATE]
    if not big and not small:
        return False
    height = max(3.0, 0.32 * max(len(big), len(small)) + 1.5)
    fig, axes = plt.subplots(1, 2, figsize=(15, height), squeeze=False)
    ax_big, ax_small = axes[0]
    _barh(
        ax_big,
        big,
        value=lambda r: r.mb_per_s or 0.0,
        lo=lambda r: throughput(r.size_bytes, r.p90_s) or 0.0,
        hi=lambda r: throughput(r.size_bytes, r.p10_s) or 0.0,
        xlabel="MB/s (median; whiskers p90..p10 time)",
        title="Throughput, objects >= 1 MiB",
    )
    _barh(
        ax_small,
        small,
        value=lambda r: (r.median_s or 0.0) * 1e6,
        lo=lambda r: (r.p10_s or 0.0) * 1e6,
        hi=lambda r: (r.p90_s or 0.0) * 1e6,
        xlabel="µs per operation (median; whiskers p10..p90)",
        title="Latency, small objects",
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _barh(
    ax: Any,
    rows: Sequence[Row],
    *,
    value: Callable[[Row], float],
    lo: Callable[[Row], float],
    hi: Callable[[Row], float],
    xlabel: str,
    title: str,
) -> None:
    ax.set_title(title)
    if not rows:
        ax.text(0.5, 0.5, "no rows", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    labels = [f"{r.group}: {r.name} ({fmt_size(r.size_bytes)})" for r in rows]
    vals = [value(r) for r in rows]
    err = [
        [max(0.0, v - lo(r)) for v, r in zip(vals, rows, strict=True)],
        [max(0.0, hi(r) - v) for v, r in zip(vals, rows, strict=True)],
    ]
    ys = list(range(len(rows)))
    palette = ("#4878a8", "#e0883a", "#5a9e57", "#c4514e", "#8a6bb0", "#8c6d5b", "#d47fbd")
    groups = list(dict.fromkeys(r.group for r in rows))
    colors = [palette[groups.index(r.group) % len(palette)] for r in rows]
    ax.barh(ys, vals, xerr=err, color=colors, ecolor="#333333", capsize=3)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", which="major", alpha=0.4)
