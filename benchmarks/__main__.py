"""The benchmark runner: ``python -m benchmarks [--quick] [--only NAME] [--out DIR]``.

Runs the registered scenarios in order, then writes ``results.json``, ``results.md`` and, if
matplotlib can be imported, ``results.png`` into ``--out`` (default ``benchmarks/out``), and
prints the Markdown. Rows with a goal are judged PASS / MISS after the ratios (a MISS is
reported, never an error). Servers are started on first use and stopped at the end, also on
errors, Ctrl-C and SIGTERM; an interrupted run still writes what it measured. Exit status: 0,
1 when a scenario raised, 130 when interrupted. Speeds are measured, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NoReturn

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent
DEFAULT_OUT = PACKAGE_DIR / "out"

_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


def _sanitize_env() -> None:
    """Loopback only: no proxies, fake AWS credentials, no cloud metadata, gcsfs plain class.

    Must run before s3fs / gcsfs / botocore are imported.
    """
    from aiofolio.testing import AWS_TEST_ENV, GCS_TEST_ENV

    for name in _PROXY_VARS:
        os.environ.pop(name, None)
    os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
    os.environ.update(AWS_TEST_ENV)  # never real credentials, whatever the shell has
    os.environ.update(GCS_TEST_ENV)
    os.environ["GCE_METADATA_HOST"] = "127.0.0.1:9"  # google-auth never probes the network
    os.environ["NO_GCE_CHECK"] = "true"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="aiofolio benchmarks: floors and peers on loopback servers (see README.md).",
    )
    p.add_argument("--quick", action="store_true", help="small sizes and repeats (under 2 minutes)")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only this scenario or group (repeatable, or comma-separated); see --list",
    )
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    p.add_argument("--tmp", type=Path, default=None, help="where scratch files go (default TMP)")
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p.parse_args(argv)


class _Log:
    def __init__(self, start: float) -> None:
        self.start = start

    def __call__(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.start:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _raise_interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    _sanitize_env()

    from .context import FULL, QUICK, Context
    from .harness import (
        Row,
        judge_goals,
        loadavg,
        machine_info,
        resolve_ratios,
        write_json,
        write_markdown,
        write_plot,
    )
    from .scenarios import SCENARIOS, select
    from .servers import ServerPool

    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:16} groups: {', '.join(s.groups):24} {s.description}")
        return 0
    names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    try:
        scenarios = select(names)
    except KeyError as exc:
        known = ", ".join(s.name for s in SCENARIOS)
        print(f"unknown scenario/group: {exc.args[0]} (known: {known})", file=sys.stderr)
        return 2

    profile = QUICK if args.quick else FULL
    start = time.monotonic()
    started_utc = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    log = _Log(start)
    # Both become KeyboardInterrupt, also where SIGINT was inherited as ignored (a background
    # job of a non-interactive shell), so the servers are stopped and partial results written.
    previous = {
        sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    rows: list[Row] = []
    errors: list[dict[str, str]] = []
    interrupted = False
    log(f"profile {profile.name}: {', '.join(s.name for s in scenarios)}")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="aiofolio-bench-", dir=args.tmp) as tmp,
            contextlib.ExitStack() as stack,
        ):
            machine = machine_info(Path(tmp), REPO_DIR)
            pool = ServerPool(stack, profile, log=log, max_lifetime_s=profile.total_budget_s + 600)
            ctx = Context(
                profile=profile,
                tmp=Path(tmp),
                servers=pool,
                deadline=start + profile.total_budget_s,
                log=log,
            )
            try:
                for scenario in scenarios:
                    if ctx.out_of_time():
                        msg = f"skipped: run time budget ({profile.total_budget_s:g} s) spent"
                        errors.append({"scenario": scenario.name, "error": msg})
                        log(f"{scenario.name}: {msg}")
                        continue
                    ctx.scenario = scenario.name
                    ctx.produced = []
                    log(f"{scenario.name}: {scenario.description}")
                    try:
                        rows += scenario.run(ctx)
                    except Exception as exc:
                        log(traceback.format_exc().rstrip())
                        errors.append(
                            {"scenario": scenario.name, "error": f"{type(exc).__name__}: {exc}"}
                        )
                        rows += ctx.produced  # what it measured before it failed
            except KeyboardInterrupt:
                rows += [r for r in ctx.produced if all(r is not x for x in rows)]
                interrupted = True
                log("interrupted: stopping the servers, writing partial results")
            log(f"stopping {len(pool.started)} server(s)")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    wall = time.monotonic() - start
    machine["loadavg_end"] = loadavg()
    resolve_ratios(rows)
    judge_goals(rows)
    report: dict[str, Any] = {
        "schema": 1,
        "run": {
            "profile": profile.name,
            "argv": list(sys.argv[1:] if argv is None else argv),
            "scenarios": [s.name for s in scenarios],
            "started_utc": started_utc,
            "wall_s": round(wall, 2),
            "interrupted": interrupted,
            "link": {
                "latency_ms": profile.link_latency_s * 1e3,
                "bandwidth_mb_s": profile.link_bandwidth / 1e6,
            },
            "settings": asdict(profile),
        },
        "machine": machine,
        "rows": [r.to_dict() for r in rows],
        "errors": errors,
        "plot": None,
    }
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if write_plot(out / "results.png", rows):
        report["plot"] = "results.png"
    write_json(out / "results.json", report)
    write_markdown(out / "results.md", report)
    print((out / "results.md").read_text(encoding="utf-8"))
    written = ", ".join(
        str(out / f) for f in ("results.json", "results.md", report["plot"] or "") if f
    )
    log(f"done in {wall:.1f} s; wrote {written}")
    if interrupted:
        return 130
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
