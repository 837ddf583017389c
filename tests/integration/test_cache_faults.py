"""The cache under faults: remote outages, corrupt downloads, local damage, sharing.

* The manifest's remote fails after the TTL: the cached copy is served with a
  :class:`~aiofolio.StaleDataWarning` while younger than ``max_stale_age``; older (or with
  ``fallback_to_stale=False``) the call raises aiofolio's :class:`~aiofolio.TransientError`.
* Corrupt downloads never reach the caller nor ``v1/blobs``; one bad download is retried.
* A damaged cache (flipped or truncated blob, missing or garbage ``record.json``) is repaired on
  the next read; ``strict_mode`` refuses a corrupt blob; an unusable cache folder falls back to
  the remote with a warning.
* Equal bytes in two bundles are one blob; two processes share one cache folder (the second
  downloads nothing, stats add up); concurrent reads of one item download it once.

Every server here is on 127.0.0.1; TTLs move with an injected clock, never with sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiofolio import (
    AiofolioError,
    CacheError,
    ChecksumMismatchError,
    DataFolio,
    StaleDataWarning,
    TransientError,
)
from aiofolio.bundle import payload_path
from aiofolio.errors import AiofolioWarning
from aiofolio.testing import Fault, FaultServer, MotoServer

ARRAY = np.arange(4096, dtype=np.int64).reshape(64, 64)
CONFIG = {"lr": 0.01, "tags": ["a", "b"]}
OTHER = np.linspace(0.0, 1.0, 500)
FAST_RETRY: dict[str, Any] = {"retry_attempts": 2, "retry_max_time": 2}


# -- helpers ----------------------------------------------------------------------------------


def _build(root: Path, items: dict[str, Any]) -> dict[str, bytes]:
    """Write a local bundle with ``items``; return its files by relative path."""
    folio = DataFolio(root)
    for name, value in items.items():
        folio.add(name, value)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _serve(
    server: FaultServer, tmp_path: Path, items: dict[str, Any], prefix: str = "bundle"
) -> str:
    for rel, data in _build(tmp_path / f"src-{prefix}", items).items():
        server.put(f"/{prefix}/{rel}", data)
    return f"{server.url}/{prefix}"


class Clock:
    """An injected clock: starts at the real time, moves only when told."""

    def __init__(self) -> None:
        self.now = [time.time()]

    def __call__(self) -> float:
        return self.now[0]

    def advance(self, seconds: float) -> None:
        self.now[0] += seconds


def _gets(server: FaultServer, path: str) -> int:
    return server.stats.requests(path, method="GET")


def _payload(folio: DataFolio, prefix: str, name: str) -> str:
    return f"/{prefix}/{payload_path(folio.get_item(name))}"


def _blobs(cache_dir: str | Path) -> list[Path]:
    return sorted(p for p in (Path(cache_dir) / "v1" / "blobs").rglob("*") if p.is_file())


def _temps(cache_dir: str | Path) -> list[Path]:
    return sorted(p for p in (Path(cache_dir) / "v1" / "tmp").rglob("*") if p.is_file())


def _record_file(cache_dir: str | Path) -> Path:
    found = list((Path(cache_dir) / "v1" / "bundles").glob("*/record.json"))
    assert len(found) == 1, found
    return found[0]


@pytest.fixture
def cache_dir() -> str:
    return os.environ["AIOFOLIO_CACHE_DIR"]


# -- the manifest's remote fails ----------------------------------------------------------------


def test_stale_copy_served_then_refused_past_max_stale_age(
    http_server: FaultServer, tmp_path: Path
) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY, "config": CONFIG})
    clock = Clock()
    folio = DataFolio(url, clock=clock, cache_ttl=60, max_stale_age=3600, **FAST_RETRY)
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    assert folio.get("config") == CONFIG
    payload = _payload(folio, "bundle", "arr")
    assert _gets(http_server, payload) == 1

    http_server.set_fault("/bundle/items.json", Fault(fail_n=10_000, fail_status=503))
    manifest_gets = _gets(http_server, "/bundle/items.json")
    clock.advance(120)  # TTL over, well within max_stale_age
    with pytest.warns(StaleDataWarning, match="serving the cached copy"):
        value = folio.get("arr")
    np.testing.assert_array_equal(value, ARRAY)
    assert _gets(http_server, "/bundle/items.json") - manifest_gets == 2  # both attempts failed
    assert _gets(http_server, payload) == 1  # and served the cached bytes
    assert folio.cache_stats()["stale_served"] >= 1

    clock.advance(7200)  # now older than max_stale_age
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleDataWarning)
        with pytest.raises(TransientError) as info:
            folio.get("arr")
    assert isinstance(info.value, AiofolioError)
    assert type(info.value).__module__.startswith("aiofolio")

    http_server.clear_faults()  # the remote is back: reads work again, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleDataWarning)
        np.testing.assert_array_equal(folio.get("arr"), ARRAY)


def test_no_stale_fallback_raises_after_retries(http_server: FaultServer, tmp_path: Path) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY})
    clock = Clock()
    folio = DataFolio(url, clock=clock, cache_ttl=60, fallback_to_stale=False, **FAST_RETRY)
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    http_server.set_fault("/bundle/items.json", Fault(fail_n=10_000, fail_status=503))
    before = _gets(http_server, "/bundle/items.json")
    clock.advance(61)
    started = time.monotonic()
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleDataWarning)
        with pytest.raises(TransientError):
            folio.get("arr")
    assert time.monotonic() - started < 10
    assert _gets(http_server, "/bundle/items.json") - before == 2  # retry_attempts=2, then raise


# -- corrupt downloads --------------------------------------------------------------------------


def test_corrupt_download_is_never_returned_nor_cached(
    http_server: FaultServer, tmp_path: Path, cache_dir: str
) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY})
    folio = DataFolio(url, **FAST_RETRY)
    payload = _payload(folio, "bundle", "arr")
    http_server.set_fault(payload, Fault(corrupt=True, methods={"GET"}))
    with pytest.raises(ChecksumMismatchError):
        folio.get("arr")
    assert _gets(http_server, payload) == 2
    assert _blobs(cache_dir) == []
    assert _temps(cache_dir) == []
    assert folio.cache_status("arr")["cached"] is False


def test_one_corrupt_download_is_retried(
    http_server: FaultServer, tmp_path: Path, cache_dir: str
) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY})
    folio = DataFolio(url, **FAST_RETRY)
    payload = _payload(folio, "bundle", "arr")
    http_server.set_fault(payload, Fault(corrupt=True, times=1, methods={"GET"}))
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    assert _gets(http_server, payload) == 2
    item = folio.get_item("arr")
    blobs = _blobs(cache_dir)
    assert [b.name for b in blobs] == [item.checksum]
    assert _temps(cache_dir) == []
    status = folio.cache_status("arr")
    assert status["cached"] is True
    assert status["checksum_valid"] is True


# -- local damage -------------------------------------------------------------------------------


def _cached_blob(folio: DataFolio, name: str) -> Path:
    status = folio.cache_status(name)
    assert status["cached"] is True
    return Path(status["cache_path"])


def _flip(path: Path, offset: int = -10) -> None:
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_flipped_blob_is_downloaded_again(
    http_server: FaultServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY})
    folio = DataFolio(url)
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    payload = _payload(folio, "bundle", "arr")
    blob = _cached_blob(folio, "arr")
    size = blob.stat().st_size
    _flip(blob)
    assert blob.stat().st_size == size
    assert folio.cache_status("arr")["checksum_valid"] is False

    with caplog.at_level(logging.WARNING, logger="aiofolio"):
        value = folio.get("arr")
    np.testing.assert_array_equal(value, ARRAY)
    assert any("corrupt" in r.getMessage() for r in caplog.records)
    assert _gets(http_server, payload) == 2
    assert folio.cache_status("arr")["checksum_valid"] is True
    assert blob.read_bytes() == http_server.get(payload)


def test_flipped_blob_in_strict_mode_raises(http_server: FaultServer, tmp_path: Path) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY})
    folio = DataFolio(url)
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    payload = _payload(folio, "bundle", "arr")
    _flip(_cached_blob(folio, "arr"))
    strict = DataFolio(url, strict_mode=True)
    with pytest.raises(ChecksumMismatchError):
        strict.get("arr")
    with pytest.raises(ChecksumMismatchError):  # not repaired behind the user's back
        strict.get("arr")
    assert _gets(http_server, payload) == 1
    strict.invalidate_cache("arr")  # what the error message tells the user to do
    np.testing.assert_array_equal(strict.get("arr"), ARRAY)
    assert _gets(http_server, payload) == 2
    assert strict.cache_status("arr")["checksum_valid"] is True


@pytest.mark.parametrize("damage", ["truncated", "emptied", "deleted"])
def test_truncated_or_missing_blob_is_downloaded_again(
    http_server: FaultServer, tmp_path: Path, damage: str
) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY})
    folio = DataFolio(url)
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    payload = _payload(folio, "bundle", "arr")
    blob = _cached_blob(folio, "arr")
    if damage == "deleted":
        blob.unlink()
    else:
        os.chmod(blob, 0o644)
        with open(blob, "r+b") as fh:
            fh.truncate(blob.stat().st_size // 2 if damage == "truncated" else 0)
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    assert _gets(http_server, payload) == 2
    assert folio.cache_status("arr")["checksum_valid"] is True


@pytest.mark.parametrize("damage", ["deleted", "garbage"])
def test_a_damaged_bundle_record_is_repaired_and_the_items_kept(
    http_server: FaultServer, tmp_path: Path, cache_dir: str, damage: str
) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY, "config": CONFIG})
    folio = DataFolio(url)
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    payload = _payload(folio, "bundle", "arr")
    record = _record_file(cache_dir)
    record.unlink()
    if damage == "garbage":
        record.write_bytes(b"{not json")
    manifests = http_server.stats.requests(path="/bundle/items.json")

    # A fresh folio: the bundle record is a miss (the manifest is fetched again) but the item
    # records live in their own logs, and the blob verifies: no payload download.
    fresh = DataFolio(url)
    np.testing.assert_array_equal(fresh.get("arr"), ARRAY)
    assert fresh.get("config") == CONFIG
    assert http_server.stats.requests(path="/bundle/items.json") == manifests + 1
    assert _gets(http_server, payload) == 1
    repaired = json.loads(_record_file(cache_dir).read_bytes())
    assert isinstance(repaired, dict)
    assert repaired["url"] == url
    assert fresh.cache_status("arr")["checksum_valid"] is True
    # The folio that was open when the record broke keeps reading right bytes.
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)
    assert _gets(http_server, payload) == 1


def test_unusable_cache_dir_reads_from_remote(
    http_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY, "config": CONFIG})
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"a regular file")
    cache = blocker / "cache"
    monkeypatch.setenv("AIOFOLIO_CACHE_DIR", str(cache))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folio = DataFolio(url)
        np.testing.assert_array_equal(folio.get("arr"), ARRAY)
        assert folio.get("config") == CONFIG
    messages = [str(w.message) for w in caught if issubclass(w.category, AiofolioWarning)]
    assert any(str(cache) in m for m in messages), messages
    with pytest.raises(CacheError, match=str(cache)):
        folio.cache_status("arr")
    assert blocker.read_bytes() == b"a regular file"
    np.testing.assert_array_equal(folio.get("arr"), ARRAY)  # each read goes to the remote
    assert _gets(http_server, _payload(folio, "bundle", "arr")) == 2


# -- sharing ------------------------------------------------------------------------------------


def test_equal_bytes_in_two_bundles_are_one_blob(
    http_server: FaultServer, tmp_path: Path, cache_dir: str
) -> None:
    first = DataFolio(_serve(http_server, tmp_path, {"arr": ARRAY, "x": CONFIG}, "b1"))
    second = DataFolio(_serve(http_server, tmp_path, {"same": ARRAY, "y": OTHER}, "b2"))
    assert first.get_item("arr").checksum == second.get_item("same").checksum
    np.testing.assert_array_equal(first.get("arr"), ARRAY)
    np.testing.assert_array_equal(second.get("same"), ARRAY)
    assert first.get("x") == CONFIG
    np.testing.assert_array_equal(second.get("y"), OTHER)
    digest = first.get_item("arr").checksum
    assert digest is not None
    names = [b.name for b in _blobs(cache_dir)]
    assert names.count(digest) == 1
    assert len(names) == 3  # arr == same, x, y
    assert _cached_blob(first, "arr") == _cached_blob(second, "same")


_PROCESS_SCRIPT = """
import json, sys
import numpy as np
from aiofolio import DataFolio
import pathlib, time
url, options = sys.argv[1], json.loads(sys.argv[2])
folio = DataFolio(url, storage_options=options, read_only=True)
if len(sys.argv) > 3:  # a barrier: wait (bounded) until every process opened the bundle
    gate, me, peers = pathlib.Path(sys.argv[3]), sys.argv[4], int(sys.argv[5])
    (gate / me).touch()
    for _ in range(400):
        if len(list(gate.iterdir())) >= peers:
            break
        time.sleep(0.05)
out = {}
for name in sorted(folio.item_names()):
    value = folio.get(name)
    out[name] = value.tolist() if isinstance(value, np.ndarray) else value
print(json.dumps(out))
"""


def test_two_processes_share_one_cache_dir(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer, tmp_path: Path
) -> None:
    url = f"s3://{s3_bucket}/lab/shared"
    items: dict[str, Any] = {"arr": ARRAY, "config": CONFIG, "other": OTHER}
    writer = DataFolio(url, storage_options=moto_server.storage_options())
    for name, value in items.items():
        writer.add(name, value)
    payloads = {f"/{s3_bucket}/lab/shared/{payload_path(writer.get_item(n))}" for n in items}

    shared = tmp_path / "shared-cache"
    env = dict(os.environ, AIOFOLIO_CACHE_DIR=str(shared))
    options = json.dumps(moto_server.storage_options(endpoint_url=fault_proxy.url))

    def run() -> dict[str, Any]:
        proc = subprocess.run(
            [sys.executable, "-c", _PROCESS_SCRIPT, url, options],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    def payload_gets() -> int:
        return sum(1 for r in fault_proxy.stats.records(method="GET") if r.path in payloads)

    first = run()
    assert payload_gets() == len(items)
    second = run()
    assert payload_gets() == len(items)  # the second process downloaded nothing
    for got in (first, second):
        np.testing.assert_array_equal(np.asarray(got["arr"]), ARRAY)
        np.testing.assert_array_equal(np.asarray(got["other"]), OTHER)
        assert got["config"] == CONFIG

    stats = DataFolio.cache_stats(cache_dir=str(shared))
    assert stats["misses"] == len(items)
    assert stats["hits"] == len(items)
    assert stats["hit_rate"] == pytest.approx(0.5)


def test_two_concurrent_processes_download_each_payload_once(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer, tmp_path: Path
) -> None:
    url = f"s3://{s3_bucket}/lab/racing"
    items: dict[str, Any] = {"arr": ARRAY, "config": CONFIG, "other": OTHER}
    writer = DataFolio(url, storage_options=moto_server.storage_options())
    for name, value in items.items():
        writer.add(name, value)
    payloads = {f"/{s3_bucket}/lab/racing/{payload_path(writer.get_item(n))}" for n in items}
    for path in payloads:  # slow downloads, so the second process finds the first one's lock
        fault_proxy.set_fault(path, Fault(latency=0.2, methods={"GET"}))

    shared = tmp_path / "shared-cache"
    gate = tmp_path / "gate"
    gate.mkdir()
    env = dict(os.environ, AIOFOLIO_CACHE_DIR=str(shared))
    options = json.dumps(moto_server.storage_options(endpoint_url=fault_proxy.url))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _PROCESS_SCRIPT, url, options, str(gate), str(i), "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        got = json.loads(out.strip().splitlines()[-1])
        np.testing.assert_array_equal(np.asarray(got["arr"]), ARRAY)
        assert got["config"] == CONFIG

    gets = [r.path for r in fault_proxy.stats.records(method="GET") if r.path in payloads]
    assert sorted(gets) == sorted(payloads)  # one download per payload, in both processes
    stats = DataFolio.cache_stats(cache_dir=str(shared))
    assert stats["misses"] == len(items)
    assert stats["hits"] == len(items)
    assert _temps(shared) == []


def test_concurrent_gets_download_once(http_server: FaultServer, tmp_path: Path) -> None:
    url = _serve(http_server, tmp_path, {"arr": ARRAY, "other": OTHER})
    folio = DataFolio(url)
    # Slow the payloads a little so the readers really overlap.
    http_server.set_fault("/bundle/*", Fault(latency=0.1, methods={"GET"}))

    results: list[Any] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8, timeout=10)

    def reader() -> None:
        try:
            barrier.wait()
            results.append(folio.get("arr"))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert len(results) == 8
    for value in results:
        np.testing.assert_array_equal(value, ARRAY)
    assert _gets(http_server, _payload(folio, "bundle", "arr")) == 1

    async def gather() -> list[Any]:
        return await asyncio.gather(*(folio.aget("other") for _ in range(8)))

    for value in asyncio.run(gather()):
        np.testing.assert_array_equal(value, OTHER)
    assert _gets(http_server, _payload(folio, "bundle", "other")) == 1
