"""Large downloads resume across runs: after ``kill -9``, only the missing chunks are fetched.

A child process downloads a 16 MiB payload as 1 MiB ranged chunks over a bandwidth-shaped
loopback HTTP server and is killed half-way. Its partial data file and the resume sidecar
(``v1/tmp/resume-<hex>.json``) stay; the next ``get`` claims the partial, fetches only the
chunks the sidecar lists as missing (counted at the server) and returns bytes that verify.
A changed object discards the partial; a damaged partial is never returned (the MD5 check
fails and the download starts over); Ctrl-C leaves no temp files; ``sweep_temps`` keeps a
live partial and deletes orphans.

Every process is bounded by timeouts; every loop by a count or a deadline.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import aiofolio
from aiofolio import DataFolio, TransientError
from aiofolio.bundle import payload_path
from aiofolio.store import BlobStore, CacheLayout
from aiofolio.testing import Fault, FaultServer

MiB = 1024 * 1024
_SRC = str(Path(aiofolio.__file__).resolve().parents[1])
_PROC_TIMEOUT = 30.0
_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
SETTINGS: dict[str, Any] = {
    "parallel_threshold": "1MiB",
    "chunk_size": "1MiB",
    "parallel_downloads": 2,
}

CHILD = textwrap.dedent(
    """
    import hashlib, sys
    from aiofolio import DataFolio

    folio = DataFolio(
        sys.argv[1], parallel_threshold="1MiB", chunk_size="1MiB", parallel_downloads=2
    )
    folio.get_item("big")  # manifest loaded before the download starts
    print("ready", flush=True)
    try:
        arr = folio.get("big")
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    print("done", hashlib.md5(arr.tobytes()).hexdigest(), flush=True)
    """
)


# -- helpers ----------------------------------------------------------------------------------


def _payload(seed: int = 11) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=16 * MiB, dtype=np.uint8)


def _serve(server: FaultServer, tmp_path: Path, data: np.ndarray, tag: str = "a") -> str:
    """Write a local bundle holding ``data`` as "big" and serve its files under /bundle."""
    root = tmp_path / f"src-{tag}"
    DataFolio(root).add("big", data)
    for p in root.rglob("*"):
        if p.is_file():
            server.put(f"/bundle/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"{server.url}/bundle"


def _key(folio: DataFolio) -> str:
    return f"/bundle/{payload_path(folio.get_item('big'))}"


def _spawn(url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _tmp_dir(cache: str) -> Path:
    return CacheLayout(cache).tmp_dir


def _sidecar(cache: str) -> tuple[Path, dict[str, Any]] | None:
    for path in sorted(_tmp_dir(cache).glob("resume-*.json")):
        try:
            return path, json.loads(path.read_bytes())
        except (OSError, ValueError):  # replaced while we read it: try again later
            return None
    return None


def _full(meta: dict[str, Any]) -> list[list[int]]:
    """The whole chunks a sidecar lists (the others are the written prefixes of chunks)."""
    size = meta["size"]
    return [[s, e] for s, e in meta["done"] if e == min(size, s + meta["chunk_size"])]


def _wait_for_chunks(cache: str, proc: subprocess.Popen[str], n: int) -> None:
    """Poll (bounded) until the child's sidecar lists at least ``n`` finished chunks."""
    deadline = time.monotonic() + _PROC_TIMEOUT
    while time.monotonic() < deadline:
        found = _sidecar(cache)
        if found is not None and len(_full(found[1])) >= n:
            return
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.02)
    raise AssertionError(f"the child did not journal {n} chunks in {_PROC_TIMEOUT} s")


def _kill_half_way(url: str, cache: str, server: FaultServer, key: str) -> dict[str, Any]:
    """Start a shaped download in a child, kill -9 it after half the chunks; the sidecar."""
    server.set_fault(key, Fault(bandwidth=4 * MiB, methods={"GET"}))
    proc = _spawn(url)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
        _wait_for_chunks(cache, proc, 8)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=_PROC_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=_PROC_TIMEOUT)
    server.clear_faults()
    found = _sidecar(cache)
    assert found is not None, "kill -9 must leave the resume sidecar"
    sidecar, meta = found
    assert (sidecar.parent / meta["data"]).is_file()
    assert 8 <= len(_full(meta)) < 17
    return meta


def _done_bytes(meta: dict[str, Any]) -> int:
    return sum(end - start for start, end in meta["done"])


def _get_bytes(server: FaultServer, key: str) -> int:
    return server.stats.bytes_served(key, "GET")


def _blob_verifies(folio: DataFolio) -> bool:
    with open(folio.get_path("big"), "rb") as fh:
        return bool(hashlib.md5(fh.read()).hexdigest() == folio.item_info("big")["checksum"])


# -- tests ------------------------------------------------------------------------------------


def test_kill_9_half_way_then_the_next_get_fetches_only_the_missing_chunks(
    http_server: FaultServer, tmp_path: Path
) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = _payload()
    url = _serve(http_server, tmp_path, data)
    folio = DataFolio(url, **SETTINGS)
    key = _key(folio)
    size = folio.item_info("big")["size_bytes"]
    meta = _kill_half_way(url, cache, http_server, key)
    assert meta["size"] == size
    assert meta["token"] == (http_server.etag(key) or "").strip('"')

    http_server.stats.reset()
    np.testing.assert_array_equal(folio.get("big"), data)
    # only the missing bytes: whole chunks, and the rest of chunks that were in flight
    assert _get_bytes(http_server, key) == size - _done_bytes(meta)
    assert http_server.stats.requests(key, "GET") == 17 - len(_full(meta))
    assert _blob_verifies(folio)
    assert list(_tmp_dir(cache).iterdir()) == []  # partial and sidecar are gone


def test_a_changed_object_discards_the_partial(http_server: FaultServer, tmp_path: Path) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = _payload()
    url = _serve(http_server, tmp_path, data)
    folio = DataFolio(url, cache_ttl=0, **SETTINGS)
    key = _key(folio)
    size = folio.item_info("big")["size_bytes"]
    meta = _kill_half_way(url, cache, http_server, key)

    # Rewritten in place between the runs: same path and size, new bytes, new ETag.
    other = 255 - data
    _serve(http_server, tmp_path, other, tag="b")
    assert _key(DataFolio(tmp_path / "src-b")).endswith(key.rsplit("/", 1)[1])
    assert (http_server.etag(key) or "").strip('"') != meta["token"]
    http_server.stats.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # RemoteUpdateWarning: the item changed remotely
        got = folio.get("big")
    np.testing.assert_array_equal(got, other)
    assert _get_bytes(http_server, key) == size  # a full download: nothing was reused
    assert _blob_verifies(folio)
    assert list(_tmp_dir(cache).iterdir()) == []


def test_a_damaged_partial_is_never_returned(http_server: FaultServer, tmp_path: Path) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = _payload()
    url = _serve(http_server, tmp_path, data)
    folio = DataFolio(url, **SETTINGS)
    key = _key(folio)
    size = folio.item_info("big")["size_bytes"]
    meta = _kill_half_way(url, cache, http_server, key)
    partial = _tmp_dir(cache) / meta["data"]
    start = meta["done"][0][0]
    with open(partial, "r+b") as fh:  # flip bytes inside a chunk the sidecar calls complete
        fh.seek(start + 1000)
        old = fh.read(16)
        fh.seek(start + 1000)
        fh.write(bytes(b ^ 0xFF for b in old))

    http_server.stats.reset()
    np.testing.assert_array_equal(folio.get("big"), data)
    # The resumed attempt fetched the missing chunks, failed the MD5 check, and a full
    # download from scratch followed.
    assert _get_bytes(http_server, key) == (size - _done_bytes(meta)) + size
    assert _blob_verifies(folio)
    assert list(_tmp_dir(cache).iterdir()) == []


def test_ctrl_c_mid_download_leaves_no_temp_files_and_the_next_get_works(
    http_server: FaultServer, tmp_path: Path
) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = _payload()
    url = _serve(http_server, tmp_path, data)
    folio = DataFolio(url, **SETTINGS)
    key = _key(folio)
    http_server.set_fault(key, Fault(bandwidth=4 * MiB, methods={"GET"}))
    proc = _spawn(url)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
        _wait_for_chunks(cache, proc, 2)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=_PROC_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=_PROC_TIMEOUT)
    assert proc.returncode == 3, err
    assert out.splitlines() == ["interrupted"]
    assert list(_tmp_dir(cache).iterdir()) == []  # cancel deletes partial + sidecar
    http_server.clear_faults()
    np.testing.assert_array_equal(folio.get("big"), data)
    assert _blob_verifies(folio)


def test_a_network_failure_keeps_the_partial_and_the_next_get_resumes_it(
    http_server: FaultServer, tmp_path: Path
) -> None:
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    data = _payload()
    url = _serve(http_server, tmp_path, data)
    folio = DataFolio(url, retry_attempts=2, retry_max_time=2, **SETTINGS)
    key = _key(folio)
    size = folio.item_info("big")["size_bytes"]
    # The first 4 ranged GETs go through, every later one fails: the download gives up.
    http_server.set_fault(key, Fault(fail_n=10**6, fail_status=500, methods={"GET"}))
    http_server.set_fault(key, Fault(times=4, methods={"GET"}))
    with pytest.raises(TransientError):
        folio.get("big")
    found = _sidecar(cache)
    assert found is not None, "a network failure keeps the journaled partial"
    sidecar, meta = found
    assert (sidecar.parent / meta["data"]).is_file()
    assert len(meta["done"]) == 4

    http_server.clear_faults()
    http_server.stats.reset()
    np.testing.assert_array_equal(folio.get("big"), data)
    assert _get_bytes(http_server, key) == size - _done_bytes(meta)
    assert _blob_verifies(folio)
    assert list(_tmp_dir(cache).iterdir()) == []


def _aged(path: Path, seconds: float, data: bytes = b"partial") -> Path:
    path.write_bytes(data)
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait(timeout=_PROC_TIMEOUT)
    return proc.pid


def test_sweep_keeps_a_resumable_partial_and_deletes_orphans(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    store = BlobStore(layout)
    tmp = layout.tmp_dir
    dead = _dead_pid()
    hexes = [hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(4)]

    def sidecar(i: int, data: str, age: float) -> Path:
        body = json.dumps({"v": 1, "data": data, "done": [[0, 1]]}).encode()
        return _aged(tmp / f"resume-{hexes[i]}.json", age, body)

    kept_data = _aged(tmp / f"{dead}-aaaa.part", 7200)
    kept_sidecar = sidecar(0, kept_data.name, 7200)
    orphan = _aged(tmp / f"{dead}-bbbb.part", 7200)  # no sidecar names it
    stale_data = _aged(tmp / f"{dead}-cccc.part", 25 * 3600)
    stale_sidecar = sidecar(1, stale_data.name, 25 * 3600)  # past 24 h
    lonely_sidecar = sidecar(2, f"{dead}-dddd.part", 7200)  # its data file is gone
    garbage_sidecar = _aged(tmp / f"resume-{hexes[3]}.json", 7200, b"{not json")
    young_orphan = _aged(tmp / f"{dead}-eeee.part", 10)
    assert store.sweep_temps() == 5
    assert kept_data.exists()
    assert kept_sidecar.exists()
    assert young_orphan.exists()
    for gone in (orphan, stale_data, stale_sidecar, lonely_sidecar, garbage_sidecar):
        assert not gone.exists(), gone
