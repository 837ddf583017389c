"""What the engine rebuild fixed, on real servers and real processes.

* A folio created before ``fork()`` and used in the child (multiprocessing with the fork start
  method, DataLoader workers) gets the child's own clients, stores and futures.
* Write-through (``cache_on_add``) publishes under the size limits: the hard limit is never
  exceeded (a copy that does not fit is skipped with a warning; the upload itself stands) and
  the soft limit evicts.
* Revalidation merges: an item another process cached meanwhile survives a 304 and a change.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiofolio import DataFolio, RemoteUpdateWarning
from aiofolio.bundle import payload_path
from aiofolio.testing import FaultServer, MotoServer

ARRAYS = {f"a{i}": np.arange(2_000 * (i + 1), dtype=np.int64) for i in range(4)}


def _publish(http_server: FaultServer, root: Path, prefix: str = "/bundle") -> None:
    for p in root.rglob("*"):
        if p.is_file():
            http_server.put(f"{prefix}/{p.relative_to(root).as_posix()}", p.read_bytes())


@pytest.fixture
def http_bundle(http_server: FaultServer, tmp_path: Path) -> tuple[str, DataFolio]:
    root = tmp_path / "bundle"
    writer = DataFolio(root, cache_enabled=False)
    for name, value in ARRAYS.items():
        writer.add(name, value)
    _publish(http_server, root)
    return f"{http_server.url}/bundle", writer


def _gets(server: FaultServer, writer: DataFolio, name: str) -> int:
    path = f"/bundle/{payload_path(writer.get_item(name))}"
    return server.stats.requests(path=path, method="GET")


# -- fork safety -------------------------------------------------------------------------------
_PRE_FORK: list[DataFolio] = []  # the children inherit it through fork (nothing is pickled)


def _child_reads(names: list[str]) -> dict[str, bool]:
    folio = _PRE_FORK[0]
    return {n: bool(np.array_equal(folio.get(n), ARRAYS[n])) for n in names}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs the fork start method")
def test_a_folio_created_before_fork_works_in_the_child(
    http_bundle: tuple[str, DataFolio], http_server: FaultServer
) -> None:
    url, writer = http_bundle
    folio = DataFolio(url)
    np.testing.assert_array_equal(folio.get("a0"), ARRAYS["a0"])  # parent: client + store live
    parent_backend = folio._session.backend
    ctx = multiprocessing.get_context("fork")
    _PRE_FORK[:] = [folio]
    try:
        with ctx.Pool(2) as pool:  # two children share nothing of the parent's engine state
            results = pool.map(_child_reads, [["a0", "a1"], ["a2", "a0"]])
    finally:
        _PRE_FORK.clear()
    assert results == [{"a0": True, "a1": True}, {"a2": True, "a0": True}]
    # a0 was cached by the parent: the children hit the shared cache folder, no download.
    assert _gets(http_server, writer, "a0") == 1
    assert _gets(http_server, writer, "a1") == 1
    assert _gets(http_server, writer, "a2") == 1
    assert folio._session.backend is parent_backend  # the parent's own state is untouched
    np.testing.assert_array_equal(folio.get("a3"), ARRAYS["a3"])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_uses_a_pre_fork_s3_folio(moto_server: MotoServer, s3_bucket: str) -> None:
    opts = moto_server.storage_options()
    url = f"s3://{s3_bucket}/forked"
    folio = DataFolio(url, storage_options=opts)
    folio.add("x", ARRAYS["a1"])
    np.testing.assert_array_equal(folio.get("x"), ARRAYS["a1"])
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            folio.add("y", ARRAYS["a2"])  # a write and a read through the parent's folio
            ok = np.array_equal(folio.get("y"), ARRAYS["a2"]) and np.array_equal(
                folio.get("x"), ARRAYS["a1"]
            )
            os.write(write_fd, b"ok" if ok else b"bad")
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        got = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got == b"ok"
    fresh = DataFolio(url, storage_options=opts)
    np.testing.assert_array_equal(fresh.get("y"), ARRAYS["a2"])


# -- write-through under the limits --------------------------------------------------------------
def _blob_total(cache_dir: Path) -> int:
    return sum(p.stat().st_size for p in (cache_dir / "v1" / "blobs").rglob("*") if p.is_file())


def test_write_through_respects_the_hard_limit(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache_dir = tmp_path / "cache"
    small = np.arange(1_000, dtype=np.int64)  # about 8 KB
    big = np.arange(40_000, dtype=np.int64)  # about 320 KB: never fits
    folio = DataFolio(
        f"s3://{s3_bucket}/wt-hard",
        storage_options=moto_server.storage_options(),
        cache_dir=str(cache_dir),
        cache_on_add=True,
        hard_limit=True,
        max_cache_size=100_000,
    )
    folio.add("small", small)
    assert folio.cache_status("small")["cached"] is True
    with caplog.at_level(logging.WARNING, logger="aiofolio"):
        folio.add("big", big)  # the upload stands; only the cache copy is refused
    assert "big" in folio.list_contents()["numpy_arrays"] or "big" in folio
    assert folio.cache_status("big")["cached"] is False
    assert any("hard cache limit" in r.getMessage() for r in caplog.records)
    assert _blob_total(cache_dir) <= 100_000
    other = DataFolio(
        f"s3://{s3_bucket}/wt-hard",
        storage_options=moto_server.storage_options(),
        cache_enabled=False,
    )
    np.testing.assert_array_equal(other.get("big"), big)


def test_write_through_runs_the_soft_limit(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    folio = DataFolio(
        f"s3://{s3_bucket}/wt-soft",
        storage_options=moto_server.storage_options(),
        cache_dir=str(cache_dir),
        cache_on_add=True,
        max_cache_size=100_000,
        eviction_threshold=0.5,
    )
    for i in range(6):  # about 24 KB each: the limit is passed at the fifth
        folio.add(f"v{i}", np.full(3_000, i, dtype=np.int64))
        time.sleep(0.01)  # distinct access times for the LRU order
    assert _blob_total(cache_dir) <= 100_000
    cached = [n for n in (f"v{i}" for i in range(6)) if folio.cache_status(n)["cached"]]
    assert "v5" in cached  # the newest stays
    assert len(cached) < 6


# -- revalidation merges --------------------------------------------------------------------------
OTHER_PROCESS = textwrap.dedent(
    """
    import sys
    from aiofolio import DataFolio, RemoteUpdateWarning

    folio = DataFolio(sys.argv[1], cache_dir=sys.argv[2])
    folio.get(sys.argv[3])
    print("cached", flush=True)
    """
)


def _cache_in_another_process(url: str, cache_dir: Path, name: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, url, str(cache_dir), name],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "cached"


def test_an_item_cached_by_another_process_survives_revalidation(
    http_bundle: tuple[str, DataFolio], http_server: FaultServer, tmp_path: Path
) -> None:
    url, writer = http_bundle
    cache_dir = tmp_path / "shared-cache"
    now = [time.time()]  # the other process checks by the wall clock
    folio = DataFolio(url, cache_dir=str(cache_dir), clock=lambda: now[0], cache_ttl=60)
    folio.get("a0")
    _cache_in_another_process(url, cache_dir, "a1")  # recorded while our record is loaded
    now[0] += 120  # the TTL ran out: the next read revalidates (a 304)
    manifest_checks = http_server.stats.requests(path="/bundle/items.json")
    np.testing.assert_array_equal(folio.get("a0"), ARRAYS["a0"])
    assert http_server.stats.requests(path="/bundle/items.json") == manifest_checks + 1
    np.testing.assert_array_equal(folio.get("a1"), ARRAYS["a1"])
    assert _gets(http_server, writer, "a1") == 1  # the other process's download, kept

    # A change to another item: a1 and a0 survive, a2 (changed) is dropped.
    writer.add("a2", ARRAYS["a2"] + 1, overwrite=True)
    _publish(http_server, Path(writer.path))
    _cache_in_another_process(url, cache_dir, "a3")
    now[0] += 120
    with pytest.warns(RemoteUpdateWarning, match="'a2'"):
        folio.get("a0")
    assert folio.cache_status("a1")["cached"] is True
    assert folio.cache_status("a3")["cached"] is True
    before = _gets(http_server, writer, "a3")
    folio.get("a3")
    assert _gets(http_server, writer, "a3") == before


def test_write_through_counts_into_the_quota_estimate(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    cache_dir = tmp_path / "cache"
    folio = DataFolio(
        f"s3://{s3_bucket}/wt-info",
        storage_options=moto_server.storage_options(),
        cache_dir=str(cache_dir),
        cache_on_add=True,
    )
    folio.add("v", np.arange(500))
    info: dict[str, Any] = DataFolio.cache_info(str(cache_dir))
    assert info["items"] == 1
    assert info["size_bytes"] == _blob_total(cache_dir) > 0


# -- logging settings and the get_path fast path -------------------------------------------------
def test_log_cache_hits_and_misses_write_one_line_each(
    http_bundle: tuple[str, DataFolio], caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = http_bundle
    loud = DataFolio(url, log_cache_hits=True, log_cache_misses=True)
    with caplog.at_level(logging.INFO, logger="aiofolio.cache"):
        loud.get("a1")  # a miss
        loud.get("a1")  # a hit (the caller-thread fast path)
        loud.get_path("a1")  # a hit through the engine
    lines = [r.getMessage() for r in caplog.records if r.name == "aiofolio.cache"]
    assert [line.split(":")[0] for line in lines] == ["cache miss", "cache hit", "cache hit"]
    assert all("'a1'" in line for line in lines)
    caplog.clear()
    quiet = DataFolio(url, log_cache_hits=False, log_cache_misses=False)
    with caplog.at_level(logging.INFO, logger="aiofolio.cache"):
        quiet.get("a2")
        quiet.get("a2")
    assert [r for r in caplog.records if r.name == "aiofolio.cache"] == []


def test_a_repeated_get_path_hit_skips_the_engine(
    http_bundle: tuple[str, DataFolio], http_server: FaultServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiofolio import _portal

    url, writer = http_bundle
    folio = DataFolio(url)
    first = folio.get_path("a1")  # the miss, then handed out (kept from eviction)
    hops: list[str] = []
    real = _portal.call

    def counting(fn: Any, *args: Any) -> Any:
        hops.append(getattr(fn, "__name__", "?"))
        return real(fn, *args)

    monkeypatch.setattr(_portal, "call", counting)
    before = http_server.stats.requests()
    assert [folio.get_path("a1") for _ in range(5)] == [first] * 5
    assert hops == []  # served in the caller's thread
    assert http_server.stats.requests() == before
    np.testing.assert_array_equal(np.load(first), ARRAYS["a1"])
    off = DataFolio(url, hit_fast_path=False)
    hops.clear()  # opening it took the engine
    assert off.get_path("a1") == first
    assert hops == ["get_path_named"]  # the switch sends it through the engine
    assert _gets(http_server, writer, "a1") == 1
