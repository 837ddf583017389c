"""What users have: bundles written by the real ``datafolio`` 2.3.0, read through every path.

datafolio records no ``size_bytes`` for arrays, JSON and models, and ``"checksum": null`` for
everything it writes to the cloud. Here such bundles are read by aiofolio from the loopback
HTTP fault server (a local datafolio bundle's files) and from moto (written there by datafolio
itself), and every read path is checked at the server: cold, hit, revalidation, a change, pinned
parallel ranges learnt from the first answer (no HEAD), resume after ``kill -9`` (bytes sent in
all at most 1.3x the file), stale fallback, what verified each download, and the refusal of a
remote bundle's reference to a local path.
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
from aiofolio import DataFolio, LocalReferenceError, RemoteUpdateWarning, StaleDataWarning
from aiofolio.bundle import payload_path
from aiofolio.store import CacheLayout
from aiofolio.testing import Fault, FaultServer, MotoServer
from aiofolio.testing.dfbundles import DatafolioBundle, assert_same

pytestmark = pytest.mark.timeout(180)

MiB = 1024 * 1024
_SRC = str(Path(aiofolio.__file__).resolve().parents[1])
_PROC_TIMEOUT = 60.0
RANGED: dict[str, Any] = {"parallel_threshold": "1MiB", "chunk_size": "1MiB"}
NO_SIZE_TYPES = {"numpy_array", "json_data", "model"}


def _serve_tree(server: FaultServer, root: Path, prefix: str) -> str:
    for p in root.rglob("*"):
        if p.is_file():
            server.put(f"{prefix}/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"{server.url}{prefix}"


def _gets(server: FaultServer, prefix: str, folio: DataFolio, name: str) -> int:
    return server.stats.requests(f"{prefix}/{payload_path(folio.get_item(name))}", "GET")


@pytest.fixture
def http_df(
    datafolio_local_bundle: DatafolioBundle, http_server: FaultServer
) -> tuple[str, DatafolioBundle]:
    return _serve_tree(http_server, Path(datafolio_local_bundle.location), "/df"), (
        datafolio_local_bundle
    )


def test_datafolio_bundles_have_what_users_have(
    datafolio_local_bundle: DatafolioBundle,
) -> None:
    items = json.loads((Path(datafolio_local_bundle.location) / "items.json").read_text())
    no_size = [i for i in items["items"] if i["item_type"] in NO_SIZE_TYPES]
    assert no_size
    assert all("size_bytes" not in i for i in no_size)


def test_every_read_path_over_http(
    http_df: tuple[str, DatafolioBundle], http_server: FaultServer, tmp_path: Path
) -> None:
    url, bundle = http_df
    now = [time.time()]
    folio = DataFolio(url, clock=lambda: now[0], cache_ttl=60, allow_local_references=True)
    owned = [n for n in bundle.expected if not folio.get_item(n).is_reference]
    # cold: exact values, one payload GET each, verified by the manifest's MD5
    for name, value in bundle.expected.items():
        assert_same(folio.get(name), value)
    assert all(_gets(http_server, "/df", folio, n) == 1 for n in owned)
    assert folio.cache_status("ns/array")["verified_by"] == "md5 (manifest)"
    # hit: no request at all
    before = http_server.stats.requests()
    for name, value in bundle.expected.items():
        assert_same(folio.get(name), value)
    assert http_server.stats.requests() == before
    # revalidation after the TTL: exactly one conditional request, nothing downloaded
    now[0] += 120
    assert_same(folio.get("config"), bundle.expected["config"])
    assert http_server.stats.requests() == before + 1
    assert http_server.stats.requests("/df/items.json") == 2
    # a change by datafolio itself: only that item is downloaded again
    import datafolio

    writer = datafolio.DataFolio(bundle.location)
    writer.add("config", {"changed": True}, overwrite=True)
    _serve_tree(http_server, Path(bundle.location), "/df")
    now[0] += 120
    with pytest.warns(RemoteUpdateWarning, match="'config'"):
        assert folio.get("config") == {"changed": True}
    assert_same(folio.get("ns/array"), bundle.expected["ns/array"])
    assert _gets(http_server, "/df", folio, "ns/array") == 1
    # stale: the server down after the TTL serves the cached copy with a warning
    now[0] += 120
    http_server.set_fault("/df/*", Fault(fail_n=1000, fail_status=503))
    with pytest.warns(StaleDataWarning):
        assert_same(folio.get("ns/array"), bundle.expected["ns/array"])


def test_a_datafolio_array_comes_as_parallel_ranges_sized_by_the_first_answer(
    http_server: FaultServer, tmp_path: Path
) -> None:
    import datafolio

    root = tmp_path / "df-big"
    arr = np.random.default_rng(3).integers(0, 255, size=5 * MiB + 12_345, dtype=np.uint8)
    datafolio.DataFolio(str(root)).add("big", arr)
    item = json.loads((root / "items.json").read_text())["items"][0]
    assert "size_bytes" not in item  # datafolio does not size arrays
    url = _serve_tree(http_server, root, "/dfbig")
    folio = DataFolio(url, **RANGED)
    key = f"/dfbig/{payload_path(folio.get_item('big'))}"
    size = len(http_server.get(key))
    np.testing.assert_array_equal(folio.get("big"), arr)
    records = [r for r in http_server.stats.records(path=key) if r.method == "GET"]
    assert len(records) == -(-size // MiB)  # the first chunk's answer sized it: no HEAD
    assert all(r.range for r in records)
    assert http_server.stats.requests(key, "HEAD") == 0
    assert http_server.stats.bytes_served(key, "GET") == size
    assert folio.cache_status("big")["size_bytes"] == size


def test_a_cloud_written_bundle_verifies_by_the_store(
    datafolio_s3_bundle: tuple[DatafolioBundle, str], moto_server: MotoServer
) -> None:
    bundle, url = datafolio_s3_bundle
    folio = DataFolio(url, storage_options=moto_server.storage_options(), create=False)
    assert folio.get_item("ns/array").checksum is None  # what datafolio writes to the cloud
    for name, value in bundle.expected.items():
        if folio.get_item(name).is_reference:
            continue
        assert_same(folio.get(name), value)
        # S3's ETag of a single-part upload is the object's MD5: that verified the bytes.
        assert folio.cache_status(name)["verified_by"] == "md5 (etag)", name


def test_a_remote_bundle_may_not_reference_local_files(
    datafolio_s3_bundle: tuple[DatafolioBundle, str], moto_server: MotoServer
) -> None:
    bundle, url = datafolio_s3_bundle
    opts = moto_server.storage_options()
    folio = DataFolio(url, storage_options=opts, create=False)
    assert folio.get_item("ref").is_reference
    with pytest.raises(LocalReferenceError, match="allow_local_references=True"):
        folio.get("ref")
    with pytest.raises(PermissionError):  # also the matching builtin
        folio.get_path("ref")
    trusted = DataFolio(url, storage_options=opts, create=False, allow_local_references=True)
    assert_same(trusted.get("ref"), bundle.expected["ref"])


# -- kill -9 during a 128 MiB datafolio-written array --------------------------------------------
CHILD = textwrap.dedent(
    """
    import hashlib, sys
    from aiofolio import DataFolio

    folio = DataFolio(sys.argv[1])
    folio.get_item("big")
    print("ready", flush=True)
    arr = folio.get("big")
    print("done", hashlib.md5(arr.tobytes()).hexdigest(), flush=True)
    """
)


def _child(url: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def big_df(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    import datafolio

    root = tmp_path_factory.mktemp("df128") / "bundle"
    arr = np.random.default_rng(128).integers(0, 255, size=128 * MiB, dtype=np.uint8)
    datafolio.DataFolio(str(root)).add("big", arr)
    return root, arr


@pytest.mark.parametrize("fraction", [0.15, 0.50, 0.85])
def test_kill_9_during_a_128_mib_datafolio_array_then_resume(
    big_df: tuple[Path, np.ndarray], http_server: FaultServer, fraction: float
) -> None:
    root, arr = big_df
    url = _serve_tree(http_server, root, "/df128")
    cache = os.environ["AIOFOLIO_CACHE_DIR"]  # conftest's autouse _isolated_cache
    key = f"/df128/{payload_path(DataFolio(url).get_item('big'))}"
    size = len(http_server.get(key))
    # 8 streams at 6 MB/s each: the whole file takes about 3 s, so each point is reachable.
    http_server.set_fault(key, Fault(bandwidth=6 * MiB, methods={"GET"}))
    http_server.stats.reset()
    proc = _child(url)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
        deadline = time.monotonic() + _PROC_TIMEOUT
        while http_server.stats.bytes_served(key, "GET") < fraction * size:
            assert time.monotonic() < deadline, "the download did not progress"
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=_PROC_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=_PROC_TIMEOUT)
    http_server.clear_faults()
    sent_before = http_server.stats.bytes_served(key, "GET")
    resumed = _child(url)
    out, err = resumed.communicate(timeout=_PROC_TIMEOUT)
    assert resumed.returncode == 0, err
    assert out.split()[-2:] == ["done", hashlib.md5(arr.tobytes()).hexdigest()]
    total = http_server.stats.bytes_served(key, "GET")
    assert sent_before < size  # it was killed before the end
    print(f"kill -9 at {fraction:.0%}: {total / size:.3f}x the file's bytes sent in all")
    assert total <= 1.3 * size, (fraction, total / size)
    assert list(CacheLayout(cache).tmp_dir.iterdir()) == []  # no partial, no sidecar left
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(DataFolio(url).get("big"), arr)  # a hit now
    assert http_server.stats.bytes_served(key, "GET") == total


def test_a_killed_single_stream_download_leaves_no_temp_file(
    http_server: FaultServer, tmp_path: Path
) -> None:
    import datafolio

    root = tmp_path / "df-small"
    arr = np.random.default_rng(9).integers(0, 255, size=4 * MiB, dtype=np.uint8)
    datafolio.DataFolio(str(root)).add("big", arr)
    url = _serve_tree(http_server, root, "/dfsmall")
    cache = os.environ["AIOFOLIO_CACHE_DIR"]
    key = f"/dfsmall/{payload_path(DataFolio(url).get_item('big'))}"
    http_server.set_fault(key, Fault(bandwidth=1 * MiB, methods={"GET"}))
    proc = _child(url)  # below the 16 MiB parallel threshold: one stream, no journal
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate()[1]
        tmp = CacheLayout(cache).tmp_dir
        deadline = time.monotonic() + _PROC_TIMEOUT
        while not [p for p in tmp.glob("*.part") if p.stat().st_size > 0]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=_PROC_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=_PROC_TIMEOUT)
    assert list(tmp.glob("*.part"))  # the dead process's partial is still there
    http_server.clear_faults()
    np.testing.assert_array_equal(DataFolio(url).get("big"), arr)  # the next process
    assert list(tmp.iterdir()) == []  # swept at its open: the dead process's file is gone
