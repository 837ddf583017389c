"""``aiofolio demo``: aiofolio's main job, end to end, against an embedded loopback S3.

Owns: the demo script and its presentation, nothing else. It starts moto on 127.0.0.1 with a
shaping proxy in front (:class:`~aiofolio.testing.FaultServer`: latency before every response
and a bandwidth cap per connection), writes a bundle with a few tables and arrays (one of
``--size-mb``), then shows, through the library's public API only:

1. a cold ``get`` of the large array (parallel ranged GETs over the shaped link);
2. a warm hit (no request at all);
3. a remote change by a second writer, invisible within the TTL and detected after it (the
   TTL runs on an injected clock, moved forward instead of waiting);
4. a stale fallback with the link stopped (:class:`~aiofolio.StaleDataWarning` caught and
   shown), then, with the link back, ``warm_cache(background=True)`` into a fresh cache with its
   progress;
5. a table of timings, request counts at the proxy (the :class:`FaultServer` counters) and
   cache statistics.

Everything lives in one temporary directory (the caches included, never the user's), which is
removed on exit, also on Ctrl-C or SIGTERM; ``--keep`` leaves it for inspection. No network
access leaves 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

__all__ = ["DemoError", "DemoOptions", "demo", "run_demo"]

MiB = 1024 * 1024

#: The reader's TTL. The demo's clock is injected and moved past it, so nothing waits for it.
DEMO_TTL_S = 60.0
#: Retries per request in the demo (so the stale fallback shows up after about a second).
DEMO_RETRY: dict[str, Any] = {"retry_attempts": 2, "retry_max_time": 2.0}
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class DemoError(RuntimeError):
    """The demo saw something it should not (wrong bytes, a missing warning, a timeout)."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``aiofolio demo`` runs with.

    Attributes:
        size_mb: Size of the large array item, in MiB.
        latency_ms: Shaped link: delay before every response, in ms.
        bandwidth_mbps: Shaped link: bandwidth per connection, in MB/s (10^6 bytes/s).
        keep: Keep the temporary directory (bundle caches, logs) instead of removing it.
        warm_timeout_s: Upper bound for the background warm (it is cancelled after that).
    """

    size_mb: int = 256
    latency_ms: float = 20.0
    bandwidth_mbps: float = 50.0
    keep: bool = False
    warm_timeout_s: float = 300.0


@dataclass
class _Row:
    step: str
    what: str
    seconds: float | None
    requests: str
    link_bytes: int | None
    result: str


@dataclass
class _State:
    rows: list[_Row] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    tmp: Path | None = None


class _Clock:
    """Wall time plus an offset the demo moves forward (the folio's injected clock)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class _Link:
    """The shaped link: a :class:`FaultServer` proxy in front of moto, on its own thread.

    It can be stopped and started again on the same port; its request and byte counters add up
    across restarts.
    """

    def __init__(self, upstream: str, *, latency_s: float, bandwidth: float | None) -> None:
        from aiofolio.testing import free_port

        self.upstream = upstream
        self.latency_s = latency_s
        self.bandwidth = bandwidth
        self.port = free_port()
        self._threaded: Any = None
        self._retired: list[Any] = []  # RequestRecords of earlier runs

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._threaded is not None

    def start(self) -> None:
        from aiofolio.testing import Fault, FaultServer, ThreadedServer

        if self._threaded is not None:
            return
        server = FaultServer(upstream=self.upstream, port=self.port, writable=False)
        if self.latency_s > 0 or self.bandwidth:
            server.set_fault("*", Fault(latency=self.latency_s, bandwidth=self.bandwidth))
        threaded = ThreadedServer(server)
        last: Exception | None = None
        for _ in range(20):  # the old socket may linger for a moment after a stop
            try:
                threaded.start()
                break
            except RuntimeError as exc:
                last = exc
                time.sleep(0.1)
        else:
            raise DemoError(f"the shaping proxy could not start on port {self.port}") from last
        self._threaded = threaded

    def stop(self) -> None:
        threaded, self._threaded = self._threaded, None
        if threaded is not None:
            self._retired.extend(threaded.server.stats.records())
            threaded.stop()

    def records(self) -> list[Any]:
        live = self._threaded.server.stats.records() if self._threaded is not None else []
        return [*self._retired, *live]

    @contextlib.contextmanager
    def counting(self) -> Iterator[dict[str, Any]]:
        """``with link.counting() as c:`` ... then ``c["records"]``: requests made inside."""
        before = len(self.records())
        box: dict[str, Any] = {}
        try:
            yield box
        finally:
            box["records"] = self.records()[before:]


def _describe(records: list[Any]) -> str:
    if not records:
        return "0"
    by: dict[str, int] = {}
    ranged = 0
    for rec in records:
        by[rec.method] = by.get(rec.method, 0) + 1
        ranged += rec.method == "GET" and rec.range is not None
    parts = []
    for method, n in sorted(by.items()):
        extra = f", {ranged} ranged" if method == "GET" and ranged else ""
        parts.append(f"{n} {method}{extra}")
    return f"{len(records)} ({'; '.join(parts)})"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    if n >= MiB:
        return f"{n / MiB:.1f} MiB"
    if n >= 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n} B"


@contextlib.contextmanager
def _environment(tmp: Path) -> Iterator[None]:
    """Fake AWS credentials, no proxies, the cache in ``tmp``; restored afterwards."""
    from aiofolio.testing import AWS_TEST_ENV

    saved = dict(os.environ)
    try:
        for name in _PROXY_VARS:
            os.environ.pop(name, None)
        os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
        os.environ.update(AWS_TEST_ENV)
        os.environ["AIOFOLIO_CACHE_DIR"] = str(tmp / "cache")
        for name in ("DATAFOLIO_CACHE_DIR", "AIOFOLIO_OFFLINE", "AIOFOLIO_CACHE_MODE"):
            os.environ.pop(name, None)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt (so cleanup runs), in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _close_cache_stats(tmp: Path) -> None:
    """Write and close the statistics of the demo's caches now, not at interpreter exit.

    The cache flushes its per-process counters at exit; for caches inside ``tmp`` that would
    re-create folders after the demo removed it.
    """
    from aiofolio.engine._runtime import drop_runtimes, runtime

    if not tmp.is_dir():
        return
    for folder in sorted(p for p in tmp.iterdir() if p.is_dir() and (p / "v1").is_dir()):
        with contextlib.suppress(Exception):
            runtime(str(folder)).stats.close()
    drop_runtimes()


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def run_demo(opts: DemoOptions, console: Console | None = None) -> _State:
    """Run the demo and print its report on ``console``.

    Returns:
        The rows and cache statistics that were printed (for tests).

    Raises:
        DemoError: a check failed (wrong bytes, a warning that did not come, a timeout).
        aiofolio.testing.ServerStartError: moto did not start.
        KeyboardInterrupt: Ctrl-C or SIGTERM; servers and temp files are cleaned up first.
    """
    console = console or Console()
    if opts.size_mb < 1:
        raise click.BadParameter("must be at least 1", param_hint="--size-mb")
    state = _State()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_sigterm_as_interrupt())
        tmp = Path(tempfile.mkdtemp(prefix="aiofolio-demo-"))
        state.tmp = tmp
        if opts.keep:
            stack.callback(console.print, f"[dim]kept the demo directory: {tmp}[/dim]")
        else:
            stack.callback(shutil.rmtree, tmp, True)
        stack.callback(_close_cache_stats, tmp)  # runs first: no stats file written after
        stack.enter_context(_environment(tmp))
        _run(opts, console, stack, tmp, state)
    _report(console, state)
    return state


def _run(
    opts: DemoOptions,
    console: Console,
    stack: contextlib.ExitStack,
    tmp: Path,
    state: _State,
) -> None:
    import numpy as np
    import pandas as pd

    from aiofolio import DataFolio, RemoteUpdateWarning, StaleDataWarning
    from aiofolio.testing import MotoServer, unique_bucket_name

    rows = state.rows
    latency_s = max(0.0, opts.latency_ms / 1e3)
    bandwidth = opts.bandwidth_mbps * 1e6 if opts.bandwidth_mbps > 0 else None
    say = console.print

    # 1. servers -------------------------------------------------------------------------------
    say("[bold]aiofolio demo[/bold]: a DataFolio bundle on a loopback S3 (moto)")
    moto = MotoServer()
    stack.callback(moto.stop)
    _, took = _timed(moto.start)
    bucket = moto.create_bucket(unique_bucket_name("demo"))
    link = _Link(moto.endpoint_url, latency_s=latency_s, bandwidth=bandwidth)
    stack.callback(link.stop)
    link.start()
    shape = f"{opts.latency_ms:g} ms latency, " + (
        f"{opts.bandwidth_mbps:g} MB/s per connection" if bandwidth else "no bandwidth cap"
    )
    say(f"  moto on {moto.endpoint_url} (started in {took:.1f} s)")
    say(f"  shaped link on {link.url}: {shape}")
    say(f"  temporary directory (caches included): {tmp}")
    url = f"s3://{bucket}/demo-bundle"
    direct = moto.storage_options()
    shaped = moto.storage_options(endpoint_url=link.url)

    # 2. write the bundle (straight to moto, not over the link) --------------------------------
    size = opts.size_mb * MiB
    rng = np.random.default_rng(6)
    big = np.frombuffer(rng.bytes(size), dtype=np.uint8)
    n_rows = 50_000
    table = pd.DataFrame(
        {
            "sample": np.arange(n_rows, dtype=np.int64),
            "value": rng.standard_normal(n_rows),
            "label": rng.integers(0, 10, n_rows, dtype=np.int64),
        }
    )
    labels = rng.integers(0, 10, 1_000_000, dtype=np.int8)
    embeddings = rng.standard_normal((2_000, 128)).astype(np.float32)
    config = {"experiment": "demo", "learning_rate": 0.001, "epochs": 10}
    say(f"[bold]write[/bold]: bundle {url} (written straight to moto)")
    writer = DataFolio(url, storage_options=direct, cache_dir=str(tmp / "writer-cache"))

    def write() -> None:
        writer.add("big_array", big, description=f"{opts.size_mb} MiB of uint8")
        writer.add("measurements", table, description="a table")
        writer.add("labels", labels)
        writer.add("embeddings", embeddings)
        writer.add("config", config)

    with link.counting() as c:
        _, took = _timed(write)
    total = sum(writer.item_info(n).get("size_bytes") or 0 for n in writer.item_names())
    rows.append(
        _Row(
            "write",
            f"5 items, {_fmt_bytes(total)} (direct to moto)",
            took,
            _describe(c["records"]),
            None,
            f"revision {writer.revision}",
        )
    )

    # the reader, over the shaped link, with an injected clock for the TTL
    clock = _Clock()
    reader = DataFolio(
        url,
        read_only=True,
        create=False,
        storage_options=shaped,
        cache_dir=str(tmp / "cache"),
        cache_ttl=DEMO_TTL_S,
        clock=clock,
        **DEMO_RETRY,
    )

    # 3a. cold get ----------------------------------------------------------------------------
    say(f"[bold]cold get[/bold]: big_array ({opts.size_mb} MiB) over the shaped link")
    with link.counting() as c:
        got, took = _timed(lambda: reader.get("big_array"))
    if not np.array_equal(got, big):
        raise DemoError("cold get returned wrong bytes")
    del got
    link_bytes = sum(r.bytes_sent for r in c["records"])
    rows.append(
        _Row(
            "cold",
            f"get('big_array'), {opts.size_mb} MiB",
            took,
            _describe(c["records"]),
            link_bytes,
            f"verified, {size / took / 1e6:.0f} MB/s"
            + (f" (one stream: ~{latency_s + size / bandwidth:.1f} s)" if bandwidth else ""),
        )
    )

    # 3b. warm hit ----------------------------------------------------------------------------
    with link.counting() as c:
        got, took = _timed(lambda: reader.get("big_array"))
    if not np.array_equal(got, big) or c["records"]:
        raise DemoError("the hit was wrong or went to the remote")
    del got
    rows.append(
        _Row("hit", "get('big_array') again", took, _describe(c["records"]), 0, "from the cache")
    )
    small, took = _timed(lambda: reader.get("config"))
    with link.counting() as c:
        small, took = _timed(lambda: reader.get("config"))
    if small != config or c["records"]:
        raise DemoError("the small hit was wrong or went to the remote")
    rows.append(_Row("hit", "get('config') (small JSON)", took, "0", 0, "from the cache"))

    # 3c. a remote change by a second writer, seen after the TTL -------------------------------
    old = reader.get("measurements")
    pd.testing.assert_frame_equal(old, table)
    say("[bold]change[/bold]: a second writer replaces 'measurements'")
    second = DataFolio(url, storage_options=direct, cache_dir=str(tmp / "writer2-cache"))
    new_table = table.assign(value=table["value"] * 2.0)
    second.add("measurements", new_table, overwrite=True)
    with link.counting() as c:
        within, took = _timed(lambda: reader.get("measurements"))
    pd.testing.assert_frame_equal(within, table)
    rows.append(
        _Row(
            "within TTL",
            "get('measurements') after the change",
            took,
            _describe(c["records"]),
            sum(r.bytes_sent for r in c["records"]),
            "cached copy (TTL not over)",
        )
    )
    clock.advance(DEMO_TTL_S + 1)
    say(f"  clock moved {DEMO_TTL_S + 1:g} s ahead (injected clock): the TTL is over")
    with warnings.catch_warnings(record=True) as caught, link.counting() as c:
        warnings.simplefilter("always")
        changed, took = _timed(lambda: reader.get("measurements"))
    pd.testing.assert_frame_equal(changed, new_table)
    updates = [w for w in caught if issubclass(w.category, RemoteUpdateWarning)]
    if not updates:
        raise DemoError("no RemoteUpdateWarning after the remote change")
    say(f"  [yellow]RemoteUpdateWarning[/yellow]: {updates[0].message}")
    rows.append(
        _Row(
            "changed",
            "get('measurements') after the TTL",
            took,
            _describe(c["records"]),
            sum(r.bytes_sent for r in c["records"]),
            "new version (RemoteUpdateWarning)",
        )
    )

    # 4a. stale fallback with the link down ----------------------------------------------------
    say("[bold]stale[/bold]: the link is stopped, the TTL is over again")
    link.stop()
    clock.advance(DEMO_TTL_S + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stale, took = _timed(lambda: reader.get("measurements"))
    pd.testing.assert_frame_equal(stale, new_table)
    stales = [w for w in caught if issubclass(w.category, StaleDataWarning)]
    if not stales:
        raise DemoError("no StaleDataWarning with the remote down")
    say(f"  [yellow]StaleDataWarning[/yellow]: {stales[0].message}")
    rows.append(
        _Row(
            "stale",
            "get('measurements'), remote unreachable",
            took,
            "0 (link down)",
            0,
            "cached copy (StaleDataWarning)",
        )
    )
    state.stats = dict(reader.cache_stats())

    # 4b. warm_cache(background=True) into a fresh cache, link back up --------------------------
    link.start()
    say("[bold]warm[/bold]: link back up; warm_cache(background=True) into a fresh cache")
    warmer = DataFolio(
        url,
        read_only=True,
        create=False,
        storage_options=shaped,
        cache_dir=str(tmp / "cache-warm"),
        cache_ttl=DEMO_TTL_S,
        **DEMO_RETRY,
    )
    if not hasattr(warmer, "warm_cache"):
        say("  warm_cache: not available")
        rows.append(_Row("warm", "warm_cache(background=True)", None, "-", None, "not available"))
    else:
        rows.append(_warm(opts, console, link, warmer))
        with link.counting() as c:
            got, took = _timed(lambda: warmer.get("big_array"))
        if not np.array_equal(got, big) or c["records"]:
            raise DemoError("after the warm, get was wrong or went to the remote")
        del got
        rows.append(
            _Row("hit", "get('big_array') after the warm", took, "0", 0, "from the warm cache")
        )


def _warm(opts: DemoOptions, console: Console, link: _Link, folio: Any) -> _Row:
    """Start a background warm and follow its progress until it finishes (bounded)."""
    seen: list[tuple[int, int]] = []
    with link.counting() as c:
        t0 = time.perf_counter()
        handle = folio.warm_cache(background=True, progress=False)
        deadline = time.monotonic() + opts.warm_timeout_s
        columns = (
            TextColumn("  warming {task.fields[items]}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("warm", total=None, items="")
            while True:
                p = handle.progress
                snap = (int(p.bytes_done), int(p.bytes_total))
                if not seen or seen[-1] != snap:
                    seen.append(snap)
                bar.update(
                    task,
                    completed=p.bytes_done,
                    total=p.bytes_total or None,
                    items=f"{p.items_done}/{p.items_total} items",
                )
                if handle.done():
                    break
                if time.monotonic() > deadline:
                    handle.cancel()
                    raise DemoError(f"the warm did not finish in {opts.warm_timeout_s:g} s")
                time.sleep(0.05)
        result = handle.result(timeout=30.0)
        took = time.perf_counter() - t0
    p = handle.progress
    failed = dict(getattr(result, "failed", {}) or {})
    if failed:
        raise DemoError(f"warm_cache failed for {sorted(failed)}: {next(iter(failed.values()))}")
    if p.bytes_done != p.bytes_total or p.items_done != p.items_total:
        raise DemoError(f"warm progress did not reach its total: {p}")
    console.print(
        f"  progress went through {len(seen)} distinct values up to "
        f"{p.items_done}/{p.items_total} items, {_fmt_bytes(p.bytes_done)}"
    )
    return _Row(
        "warm",
        "warm_cache(background=True), fresh cache",
        took,
        _describe(c["records"]),
        sum(r.bytes_sent for r in c["records"]),
        f"{len(result.cached)} items cached, progress {p.items_done}/{p.items_total}",
    )


def _report(console: Console, state: _State) -> None:
    table = Table(title="aiofolio demo: what happened")
    table.add_column("step", no_wrap=True)
    table.add_column("what")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("requests over the link")
    table.add_column("bytes", justify="right", no_wrap=True)
    table.add_column("result")
    for row in state.rows:
        table.add_row(
            row.step,
            row.what,
            _fmt_time(row.seconds),
            row.requests,
            _fmt_bytes(row.link_bytes),
            row.result,
        )
    console.print(table)
    if state.stats:
        stats = Table(title="cache stats of the reader (DataFolio.cache_stats())")
        stats.add_column("counter", no_wrap=True)
        stats.add_column("value", justify="right", no_wrap=True)
        for key, value in state.stats.items():
            if isinstance(value, float):
                shown = f"{value:.2f}"
            elif "bytes" in key and isinstance(value, int):
                shown = _fmt_bytes(value)
            else:
                shown = str(value)
            stats.add_row(key, shown)
        console.print(stats)


@click.command("demo")
@click.option("--size-mb", default=256, show_default=True, type=int, help="large array, MiB")
@click.option(
    "--latency-ms", default=20.0, show_default=True, type=float, help="link latency per response"
)
@click.option(
    "--bandwidth-mbps",
    default=50.0,
    show_default=True,
    type=float,
    help="link bandwidth per connection, MB/s (10^6 B/s); 0 for no cap",
)
@click.option("--keep", is_flag=True, help="keep the temporary directory (caches, bundle copy)")
def demo(size_mb: int, latency_ms: float, bandwidth_mbps: float, keep: bool) -> None:
    """Run aiofolio against a loopback S3 (moto) behind a shaped link, and report.

    Shows a cold get, a warm hit, a remote change detected after the TTL, a stale fallback
    with the remote down and a background warm_cache, with timings, request counts and cache
    stats. Everything stays on 127.0.0.1 and in a temporary directory.
    """
    opts = DemoOptions(
        size_mb=size_mb, latency_ms=latency_ms, bandwidth_mbps=bandwidth_mbps, keep=keep
    )
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=150)  # piped (e.g. under nox): room for the table
    missing = [m for m in ("moto", "boto3", "s3fs") if importlib.util.find_spec(m) is None]
    if missing:
        console.print(
            f"[red]aiofolio demo needs {', '.join(missing)}[/red]: "
            'pip install "aiofolio[demo]" (or run: nox -s demo)'
        )
        console.print(
            "the demo starts a loopback S3 (moto) on 127.0.0.1; nothing leaves this machine"
        )
        raise SystemExit(2)
    try:
        run_demo(opts, console)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]: servers stopped, temporary files removed")
        raise SystemExit(130) from None
    except DemoError as exc:
        console.print(f"[red]demo failed[/red]: {exc}")
        raise SystemExit(1) from None
