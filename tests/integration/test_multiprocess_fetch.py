"""Several processes share one cache folder: one download per blob, and a dead holder is replaced.

Real Python processes (bounded in number and time) read one large item of a bundle served by
the loopback HTTP server. The server counts what they fetch: eight cold readers started
together cause exactly one download; a reader waiting for the download lock of a process that
is then killed with ``kill -9`` takes over, resuming its partial; Ctrl-C interrupts a reader
that waits for the lock at once, while the holder is still downloading.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

import aiofolio
from aiofolio import DataFolio
from aiofolio.bundle import payload_path
from aiofolio.store import CacheLayout
from aiofolio.testing import Fault, FaultServer

MiB = 1024 * 1024
_SRC = str(Path(aiofolio.__file__).resolve().parents[1])
_PROC_TIMEOUT = 30.0
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")

READER = textwrap.dedent(
    """
    import hashlib, os, sys, time
    from aiofolio import DataFolio

    folio = DataFolio(
        sys.argv[1], parallel_threshold="1MiB", chunk_size="1MiB", parallel_downloads=2
    )
    folio.get_item("big")  # the manifest is loaded (and recorded) before the race
    print("ready", flush=True)
    go, deadline = sys.argv[2], time.monotonic() + 30
    while go != "-" and not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)
    arr = folio.get("big")
    print("done", hashlib.md5(arr.tobytes()).hexdigest(), flush=True)
    """
)


def _serve(server: FaultServer, tmp_path: Path, data: np.ndarray) -> str:
    root = tmp_path / "src"
    DataFolio(root).add("big", data)
    for p in root.rglob("*"):
        if p.is_file():
            server.put(f"/bundle/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"{server.url}/bundle"


def _spawn(url: str, go: str = "-") -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-c", READER, url, go],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()  # bounded: the child prints or exits
    if line != "ready":
        proc.kill()
        raise AssertionError(proc.communicate(timeout=_PROC_TIMEOUT)[1])


def _finish(proc: subprocess.Popen[str]) -> str:
    try:
        out, err = proc.communicate(timeout=_PROC_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=_PROC_TIMEOUT)
    assert proc.returncode == 0, err
    return out


def test_eight_cold_processes_download_the_item_once(
    http_server: FaultServer, tmp_path: Path
) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = np.random.default_rng(3).integers(0, 255, size=4 * MiB, dtype=np.uint8)
    url = _serve(http_server, tmp_path, data)
    key = f"/bundle/{payload_path(DataFolio(url).get_item('big'))}"
    size = len(http_server.get(key) or b"")
    # ~0.5 s per chunk: every reader is waiting while the first one downloads.
    http_server.set_fault(key, Fault(bandwidth=2 * MiB, methods={"GET"}))
    go = tmp_path / "go"
    procs = [_spawn(url, str(go)) for _ in range(8)]
    try:
        for proc in procs:
            _ready(proc)
        http_server.stats.reset()
        go.write_text("go")
        outputs = [_finish(proc) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=_PROC_TIMEOUT)
    want = hashlib.md5(data.tobytes()).hexdigest()
    assert [out.split() for out in outputs] == [["done", want]] * 8
    n_chunks = -(-size // MiB)
    assert http_server.stats.requests(key, "HEAD") == 0  # the first ranged GET sizes it
    assert http_server.stats.requests(key, "GET") == n_chunks  # one set of chunks in all
    assert http_server.stats.bytes_served(key, "GET") == size
    assert list(CacheLayout(cache).tmp_dir.iterdir()) == []


def test_a_waiter_takes_over_when_the_lock_holder_is_killed(
    http_server: FaultServer, tmp_path: Path
) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = np.random.default_rng(5).integers(0, 255, size=8 * MiB, dtype=np.uint8)
    url = _serve(http_server, tmp_path, data)
    key = f"/bundle/{payload_path(DataFolio(url).get_item('big'))}"
    http_server.set_fault(key, Fault(bandwidth=1 * MiB, methods={"GET"}))
    tmp = CacheLayout(cache).tmp_dir
    holder = _spawn(url)
    waiter: subprocess.Popen[str] | None = None
    try:
        _ready(holder)
        deadline = time.monotonic() + _PROC_TIMEOUT
        while not list(tmp.glob("resume-*.json")) and time.monotonic() < deadline:
            time.sleep(0.02)  # the holder is downloading (so it holds the lock)
        assert list(tmp.glob("resume-*.json")), "the holder journaled no chunk"
        waiter = _spawn(url)
        _ready(waiter)
        time.sleep(0.2)  # the waiter is polling the lock by now
        gets = http_server.stats.requests(key, "GET")
        assert gets >= 1  # the holder's chunks
        time.sleep(0.2)
        assert http_server.stats.requests(key, "HEAD") == 0  # the waiter waits: no request
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=_PROC_TIMEOUT)
        http_server.clear_faults()
        out = _finish(waiter)  # bounded by _PROC_TIMEOUT, far below LOCK_TIMEOUT (120 s)
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=_PROC_TIMEOUT)
    assert out.split() == ["done", hashlib.md5(data.tobytes()).hexdigest()]
    # The waiter's own download found the dead holder's sidecar: one HEAD for the size and
    # token (no chunk that is on disk is fetched again), then the missing chunks only.
    assert http_server.stats.requests(key, "HEAD") == 1
    # The waiter claimed the dead holder's journaled partial (same object, so nothing was
    # discarded), finished it and removed it with the sidecar: v1/tmp is empty.
    assert list(tmp.iterdir()) == []


def test_ctrl_c_interrupts_a_process_waiting_for_the_lock(
    http_server: FaultServer, tmp_path: Path
) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = np.random.default_rng(6).integers(0, 255, size=4 * MiB, dtype=np.uint8)
    url = _serve(http_server, tmp_path, data)
    key = f"/bundle/{payload_path(DataFolio(url).get_item('big'))}"
    http_server.set_fault(key, Fault(bandwidth=128 * 1024, methods={"GET"}))  # ~16 s in all
    tmp = CacheLayout(cache).tmp_dir
    holder = _spawn(url)
    waiter: subprocess.Popen[str] | None = None
    try:
        _ready(holder)
        deadline = time.monotonic() + _PROC_TIMEOUT
        while not list(tmp.glob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.02)  # the holder is downloading (so it holds the lock)
        waiter = _spawn(url)
        _ready(waiter)
        time.sleep(0.2)  # the waiter is polling the lock by now
        waiter.send_signal(signal.SIGINT)
        _, err = waiter.communicate(timeout=_PROC_TIMEOUT)
        assert waiter.returncode == -signal.SIGINT, err
        assert "KeyboardInterrupt" in err
        assert holder.poll() is None  # interrupted while the lock was still held
        assert http_server.stats.requests(key, "HEAD") == 0  # the waiter never downloaded
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=_PROC_TIMEOUT)
