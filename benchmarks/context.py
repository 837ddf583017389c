"""What a scenario gets (:class:`Context`) and what it is (:class:`Scenario`), plus the profiles.

A scenario is a function ``run(ctx) -> list[Row]``. The context carries the sizes and repeat
counts of the chosen profile (:class:`Profile`, ``--quick`` or full), a scratch directory, the
lazily started servers (:class:`~benchmarks.servers.ServerPool`) and the run's deadline; its
helpers bound every timing series by the profile's budget and that deadline.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from .harness import KiB, MiB, Row, Samples, measure, measure_async

if TYPE_CHECKING:
    from .servers import ServerPool

T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """Sizes, repeat counts and time budgets of one kind of run.

    Attributes:
        name: ``"quick"`` or ``"full"``.
        floor_sizes: Files read from the page cache (the floor rows).
        floor_repeats: Timed reads per large floor file.
        small_repeats: Timed runs of per-operation rows on small objects (1 KiB), bounded by
            ``small_budget_s``.
        small_budget_s: Time budget of one small-object series.
        stream_size: Object size of the single-stream rows over the shaped link.
        stream_repeats: Timed reads per single-stream row (each ~size / 50 MB/s).
        stream_warmup: Untimed reads before them (connection set-up, server caches).
        hit_small_size: The small cached object (fsspec cache hits).
        hit_large_size: The large cached object.
        large_repeats: Timed runs of large local reads (cache hits).
        series_budget_s: Default budget of one timing series.
        total_budget_s: The whole run; scenarios not started by then are skipped.
        link_latency_s: Shaped link: delay before each response.
        link_bandwidth: Shaped link: bytes/s per response (so per connection).
    """

    name: str
    floor_sizes: tuple[int, ...]
    floor_repeats: int
    small_repeats: int
    small_budget_s: float
    stream_size: int
    stream_repeats: int
    stream_warmup: int
    hit_small_size: int
    hit_large_size: int
    large_repeats: int
    series_budget_s: float
    total_budget_s: float
    link_latency_s: float = 0.020
    link_bandwidth: float = 50e6


QUICK = Profile(
    name="quick",
    floor_sizes=(1 * KiB, 64 * MiB, 256 * MiB),
    floor_repeats=5,
    small_repeats=500,
    small_budget_s=2.0,
    stream_size=64 * MiB,
    stream_repeats=3,
    stream_warmup=1,
    hit_small_size=1 * KiB,
    hit_large_size=64 * MiB,
    large_repeats=5,
    series_budget_s=20.0,
    total_budget_s=420.0,
)

FULL = Profile(
    name="full",
    floor_sizes=(1 * KiB, 64 * MiB, 256 * MiB),
    floor_repeats=15,
    small_repeats=2000,
    small_budget_s=15.0,
    stream_size=256 * MiB,
    stream_repeats=3,
    stream_warmup=1,
    hit_small_size=1 * KiB,
    hit_large_size=64 * MiB,
    large_repeats=10,
    series_budget_s=90.0,
    total_budget_s=2400.0,
)


@dataclass
class Context:
    """Everything a scenario needs; one per run, shared by all scenarios.

    Attributes:
        profile: Sizes and repeats.
        tmp: A scratch directory removed after the run.
        servers: Lazily started loopback servers, stopped after the run.
        deadline: ``time.monotonic()`` after which no new work starts.
        log: Progress output (stderr).
        scenario: Name of the scenario running now (set by the runner).
    """

    profile: Profile
    tmp: Path
    servers: ServerPool
    deadline: float
    log: Callable[[str], None] = print
    scenario: str = ""
    #: Rows made by :meth:`row` / :meth:`failed` in the current scenario, kept by the runner if
    #: the scenario is interrupted or raises before returning them.
    produced: list[Row] = field(default_factory=list)
    _payloads: dict[tuple[int, int], bytes] = field(default_factory=dict, repr=False)
    _files: dict[tuple[int, int], Path] = field(default_factory=dict, repr=False)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    # -- time ---------------------------------------------------------------------------------

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def out_of_time(self) -> bool:
        return self.time_left() <= 0

    # -- data ---------------------------------------------------------------------------------

    def payload(self, size: int, seed: int = 0) -> bytes:
        """Deterministic incompressible bytes of ``size`` (cached per size and seed)."""
        key = (size, seed)
        data = self._payloads.get(key)
        if data is None:
            try:
                import numpy as np

                data = np.random.default_rng(seed + size).bytes(size)
            except ImportError:  # pragma: no cover - numpy is a dependency of aiofolio
                import os

                data = os.urandom(size)
            self._payloads[key] = data
        return data

    def payload_file(self, size: int, seed: int = 0) -> Path:
        """A file in ``tmp`` holding :meth:`payload` (written once)."""
        key = (size, seed)
        path = self._files.get(key)
        if path is None:
            path = self.scratch("payloads") / f"payload-{size}-{seed}.bin"
            path.write_bytes(self.payload(size, seed))
            self._files[key] = path
        return path

    def once(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` the first time ``key`` is asked for in this run, the cached value after
        (e.g. an object uploaded to a server that several scenarios read)."""
        if key not in self._memo:
            self._memo[key] = make()
        value: T = self._memo[key]
        return value

    def scratch(self, name: str) -> Path:
        """A subdirectory of ``tmp`` (created)."""
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- timing -------------------------------------------------------------------------------

    def measure(
        self,
        fn: Callable[[], T],
        *,
        repeats: int,
        warmup: int = 1,
        budget_s: float | None = None,
        **kwargs: Any,
    ) -> Samples:
        """:func:`~benchmarks.harness.measure` bounded by the profile's series budget (unless
        ``budget_s`` is given) and the run's deadline."""
        return measure(
            fn,
            repeats=repeats,
            warmup=warmup,
            budget_s=self.profile.series_budget_s if budget_s is None else budget_s,
            deadline=self.deadline,
            **kwargs,
        )

    async def measure_async(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        repeats: int,
        warmup: int = 1,
        budget_s: float | None = None,
        **kwargs: Any,
    ) -> Samples:
        """:func:`~benchmarks.harness.measure_async`, bounded like :meth:`measure`."""
        return await measure_async(
            fn,
            repeats=repeats,
            warmup=warmup,
            budget_s=self.profile.series_budget_s if budget_s is None else budget_s,
            deadline=self.deadline,
            **kwargs,
        )

    # -- rows ---------------------------------------------------------------------------------

    def row(self, **kwargs: Any) -> Row:
        """:meth:`Row.from_samples` with ``scenario`` filled in; logs the result."""
        row = Row.from_samples(scenario=self.scenario, **kwargs)
        self.produced.append(row)
        self._log_row(row)
        return row

    def failed(self, *, reason: str, **kwargs: Any) -> Row:
        """:meth:`Row.failed` with ``scenario`` filled in; logs it."""
        row = Row.failed(scenario=self.scenario, reason=reason, **kwargs)
        self.produced.append(row)
        self._log_row(row)
        return row

    def attempt(self, fn: Callable[[], list[Row]], **identity: Any) -> list[Row]:
        """Run ``fn``; on an exception log the traceback and return one failed row instead.

        ``identity`` holds the failed row's ``group``, ``name``, ``impl``, ``size_bytes`` and
        optionally ``baseline``. Ctrl-C is not caught.
        """
        if self.out_of_time():
            return [self.failed(reason="run time budget spent", **identity)]
        try:
            return fn()
        except Exception as exc:
            self.log(traceback.format_exc().rstrip())
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            return [self.failed(reason=reason, **identity)]

    def _log_row(self, row: Row) -> None:
        from .harness import fmt_rate, fmt_size, fmt_time

        if row.ok:
            rate = f", {fmt_rate(row.mb_per_s)} MB/s" if row.mb_per_s else ""
            self.log(
                f"  {row.group} | {row.name} | {fmt_size(row.size_bytes)}: median "
                f"{fmt_time(row.median_s)} (p10 {fmt_time(row.p10_s)}, p90 "
                f"{fmt_time(row.p90_s)}, n={row.n}){rate}"
            )
        else:
            self.log(f"  {row.group} | {row.name} | {fmt_size(row.size_bytes)}: {row.notes}")


@dataclass(frozen=True)
class Scenario:
    """A named group of measurements.

    Attributes:
        name: What ``--only`` selects (a group name selects every scenario adding to it).
        run: ``run(ctx) -> list[Row]``.
        groups: The table groups it adds rows to.
        description: One line for ``--list`` and the README.
    """

    name: str
    run: Callable[[Context], list[Row]]
    groups: tuple[str, ...]
    description: str = ""
