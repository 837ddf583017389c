"""``aiofolio demo`` end to end, as a subprocess: a small run succeeds and cleans up, and Ctrl-C
in the middle stops its servers and removes its temporary directory.

The demo starts its own moto and shaping proxy on 127.0.0.1; here with a 20 MiB array and a
fast link, so the whole file stays well under 40 s. Its temporary directory is created under
``TMPDIR``, pointed at the test's ``tmp_path`` so the cleanup can be checked on disk.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aiofolio.testing import loopback_env

pytestmark = pytest.mark.timeout(120)

_MAIN = "import sys; from aiofolio.cli import main; sys.exit(main())"
_ARGS = ["demo", "--size-mb", "20", "--latency-ms", "2", "--bandwidth-mbps", "200"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = loopback_env({"TMPDIR": str(tmp_path), "COLUMNS": "200", "PYTHONFAULTHANDLER": "1"})
    env.pop("AIOFOLIO_CACHE_DIR", None)  # the demo must pick its own temporary cache
    return env


def _ports(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)", text)]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_demo_runs_and_cleans_up(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _MAIN, *_ARGS],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    out, err = proc.stdout, proc.stderr
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err
    # the summary table has one row per step, the step name in the first column
    for step in ("write", "cold", "hit", "within TTL", "changed", "stale", "warm"):
        assert re.search(rf"^\s*│\s*{re.escape(step)}\s*│", out, re.MULTILINE), step
    assert "RemoteUpdateWarning" in out
    assert "StaleDataWarning" in out
    assert "verified" in out
    assert "warm_cache: not available" in out or "items cached" in out
    assert "hit_rate" in out  # the cache stats table
    # the cold get crossed the link with ranged GETs; the hit made no request
    cold = next(line for line in out.splitlines() if re.match(r"^\s*│\s*cold\s*│", line))
    assert "ranged" in cold
    hit = next(line for line in out.splitlines() if re.match(r"^\s*│\s*hit\s*│", line))
    assert re.search(r"│\s*0\s*│", hit)
    # the temporary directory (caches included) is gone, and so are the servers
    assert not list(tmp_path.glob("aiofolio-demo-*"))
    ports = _ports(out)
    assert len(ports) >= 2
    assert not any(_listening(p) for p in ports)


def test_ctrl_c_stops_servers_and_removes_temp_files(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _MAIN, *_ARGS],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:  # bounded: the process ends, or we kill it below
            lines.append(line)
            if line.lstrip().startswith("cold get"):
                break
            assert time.monotonic() < deadline, "".join(lines)
        assert list(tmp_path.glob("aiofolio-demo-*")), "the demo made no temporary directory"
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "interrupted" in out, out
    assert "Traceback" not in out, out
    assert not list(tmp_path.glob("aiofolio-demo-*")), out
    ports = _ports(out)
    assert len(ports) >= 2, out
    assert not any(_listening(p) for p in ports), out
