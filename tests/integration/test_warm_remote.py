"""Cache warming and concurrent revalidation against real loopback servers, by request counts.

HTTP bundles are written locally, then copied onto the loopback file server (which counts
every request per path); the S3 bundle is read through the fault proxy in front of moto.
Slow links are made with :class:`~aiofolio.testing.Fault` bandwidth caps, never with sleeps.

* ``warm_cache`` fetches every item (referenced tables included) exactly once; later reads
  are hits with no request at all.
* A background warm's handle: progress reaches the totals, ``await handle`` works, ``cancel``
  stops new downloads and leaves no temp file, and one failing item does not stop the rest.
* A foreground ``get`` of an item being warmed joins its download (one GET).
* ``refresh_all``: one conditional manifest request per folio, the changed one reported;
  ``refresh_references``: one ``stat`` per referenced table.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

import aiofolio
from aiofolio import (
    CacheError,
    DataFolio,
    ItemNotFoundError,
    RemoteError,
    RemoteNotFoundError,
    WarmHandle,
    WarmResult,
    _progress,
)
from aiofolio.bundle import parse_manifest, payload_path, plan_snapshot
from aiofolio.engine._runtime import engine as get_engine
from aiofolio.testing import Fault, FaultServer, MotoServer

TTL = 600.0
START = 1_700_000_000.0


def _array(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, size=n, dtype=np.uint8)


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


class HttpBundle:
    """A bundle written locally and served by the loopback HTTP server under ``prefix``."""

    def __init__(self, server: FaultServer, root: Path, prefix: str = "/bundle") -> None:
        self.server = server
        self.root = root
        self.prefix = prefix
        self.writer = DataFolio(root, cache_enabled=False)

    def add(self, name: str, value: Any) -> None:
        self.writer.add(name, value, overwrite=True)

    def sync(self) -> None:
        for p in self.root.rglob("*"):
            if p.is_file():
                relative = p.relative_to(self.root).as_posix()
                self.server.put(f"{self.prefix}/{relative}", p.read_bytes())

    @property
    def url(self) -> str:
        return f"{self.server.url}{self.prefix}"

    def folio(self, now: list[float] | None = None, **kwargs: Any) -> DataFolio:
        clock = now or [START]
        kwargs.setdefault("cache_ttl", TTL)
        return DataFolio(self.url, clock=lambda: clock[0], **kwargs)

    def path_of(self, name: str) -> str:
        return f"{self.prefix}/{payload_path(self.writer.get_item(name))}"

    def gets(self, name: str) -> int:
        return self.server.stats.requests(path=self.path_of(name), method="GET")

    def payload_gets(self) -> int:
        return sum(
            1
            for r in self.server.stats.records(method="GET")
            if r.path.startswith(self.prefix + "/") and not r.path.endswith("/items.json")
        )


def _bundle(
    server: FaultServer, tmp_path: Path, values: dict[str, Any], prefix: str = "/bundle"
) -> HttpBundle:
    bundle = HttpBundle(server, tmp_path / prefix.strip("/"), prefix)
    for name, value in values.items():
        bundle.add(name, value)
    bundle.sync()
    return bundle


ARRAYS = {f"arr{i}": _array(20_000 + 1000 * i, i) for i in range(6)}


@pytest.fixture
def cache_dir(_isolated_cache: str) -> str:
    return _isolated_cache


def _tmp_files(cache_dir: str) -> list[str]:
    tmp = Path(cache_dir) / "v1" / "tmp"
    return [p.name for p in tmp.rglob("*") if p.is_file()] if tmp.is_dir() else []


def _no_partial_downloads() -> None:
    scratch = get_engine().scratch_dir
    assert not [n for n in os.listdir(scratch) if n.endswith(".part")]


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


# -- warming --------------------------------------------------------------------------------------
def test_warm_fetches_each_item_once_then_reads_are_hits(
    http_server: FaultServer, tmp_path: Path
) -> None:
    bundle = _bundle(http_server, tmp_path, {**ARRAYS, "cfg": {"k": [1, 2]}})
    folio = bundle.folio()
    http_server.stats.reset()

    result = folio.warm_cache(concurrency=3)
    assert isinstance(result, WarmResult)
    assert result.ok
    assert set(result.cached) == {*ARRAYS, "cfg"}
    assert result.failed == {}
    for name in (*ARRAYS, "cfg"):
        assert bundle.gets(name) == 1, name
    assert http_server.stats.requests() == len(ARRAYS) + 1  # payloads only, manifest fresh

    http_server.stats.reset()
    for name, expected in ARRAYS.items():
        np.testing.assert_array_equal(folio.get(name), expected)
    assert folio.get("cfg") == {"k": [1, 2]}
    again = folio.warm_cache()  # all cached already: hits, nothing fetched
    assert set(again.cached) == {*ARRAYS, "cfg"}
    assert http_server.stats.requests() == 0
    assert all(folio.cache_status(n)["checksum_valid"] for n in ARRAYS)


def test_warm_some_items_and_unknown_names(http_server: FaultServer, tmp_path: Path) -> None:
    bundle = _bundle(http_server, tmp_path, ARRAYS)
    folio = bundle.folio()
    http_server.stats.reset()
    with pytest.raises(ItemNotFoundError):
        folio.warm_cache(["arr0", "nope"])
    with pytest.raises(ItemNotFoundError):
        folio.warm_cache("nope", background=True)
    assert http_server.stats.requests() == 0  # refused before anything started

    result = folio.warm_cache(["arr1", "arr2", "arr1"])
    assert result.cached == ("arr1", "arr2")
    assert bundle.payload_gets() == 2
    assert folio.cache_status("arr1")["cached"]
    assert not folio.cache_status("arr0")["cached"]


def test_warm_s3_bundle_with_referenced_table(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    table = pd.DataFrame({"x": [1, 2, 3]})
    key = "lake/raw.parquet"
    moto_server.put_object(s3_bucket, key, _parquet(table))
    url = f"s3://{s3_bucket}/warmed"
    writer = DataFolio(url, storage_options=moto_server.storage_options(), cache_enabled=False)
    for name in ("arr0", "arr1", "arr2"):
        writer.add(name, ARRAYS[name])
    writer.reference_table("raw", f"s3://{s3_bucket}/{key}")

    now = [START]
    folio = DataFolio(
        url,
        storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url),
        clock=lambda: now[0],
        cache_ttl=TTL,
    )
    fault_proxy.stats.reset()
    result = folio.warm_cache()
    assert set(result.cached) == {"arr0", "arr1", "arr2", "raw"}
    for name in ("arr0", "arr1", "arr2"):
        path = f"/{s3_bucket}/warmed/{payload_path(writer.get_item(name))}"
        assert fault_proxy.stats.requests(path, "GET") == 1
    assert fault_proxy.stats.requests(f"/{s3_bucket}/{key}", "GET") == 1

    fault_proxy.stats.reset()
    pdt.assert_frame_equal(folio.get("raw"), table)
    np.testing.assert_array_equal(folio.get("arr2"), ARRAYS["arr2"])
    assert fault_proxy.stats.requests() == 0


def test_snapshot_view_warms_the_pinned_versions(http_server: FaultServer, tmp_path: Path) -> None:
    bundle = _bundle(http_server, tmp_path, {"cfg": {"v": 1}, "arr0": ARRAYS["arr0"]})
    items = bundle.root / "items.json"  # no create_snapshot yet: the bundle layer's plan
    manifest = parse_manifest(items.read_bytes(), source=str(bundle.root))
    items.write_bytes(plan_snapshot(manifest, "v1").manifest_bytes())
    bundle.writer.refresh()
    old_cfg = bundle.path_of("cfg")
    bundle.add("cfg", {"v": 2})
    bundle.add("later", [1])
    bundle.sync()

    view = bundle.folio().get_snapshot("v1")
    http_server.stats.reset()
    result = view.warm_cache()
    assert sorted(result.cached) == ["arr0", "cfg"]
    assert http_server.stats.requests(old_cfg, "GET") == 1
    assert bundle.payload_gets() == 2
    http_server.stats.reset()
    assert view.get("cfg") == {"v": 1}
    np.testing.assert_array_equal(view.get("arr0"), ARRAYS["arr0"])
    assert http_server.stats.requests() == 0


def test_background_progress_reaches_the_totals(http_server: FaultServer, tmp_path: Path) -> None:
    bundle = _bundle(http_server, tmp_path, ARRAYS)
    folio = bundle.folio()
    handle = folio.warm_cache(background=True, concurrency=2)
    assert isinstance(handle, WarmHandle)
    result = handle.result(timeout=30)
    assert handle.done()
    assert set(result.cached) == set(ARRAYS)
    progress = handle.progress
    sizes = sum(folio.get_item(n).size_bytes or 0 for n in ARRAYS)
    assert progress.items_done == progress.items_total == len(ARRAYS)
    assert progress.bytes_done == progress.bytes_total == sizes
    assert progress.items_failed == 0
    assert progress.finished
    assert handle.result() is result  # asking again gives the same answer
    assert not handle.cancel()  # already done
    assert "done" in repr(handle)


async def test_background_handle_is_awaitable(http_server: FaultServer, tmp_path: Path) -> None:
    bundle = _bundle(http_server, tmp_path, ARRAYS)
    folio = await DataFolio.aopen(bundle.url, cache_ttl=TTL)
    handle = await folio.awarm_cache(background=True)
    result = await handle
    assert set(result.cached) == set(ARRAYS)
    assert (await handle.aresult()) is result
    assert set((await folio.awarm_cache(["arr0"])).cached) == {"arr0"}
    assert bundle.payload_gets() == len(ARRAYS)


def test_result_timeout_then_cancel_stops_new_downloads(
    http_server: FaultServer, tmp_path: Path, cache_dir: str
) -> None:
    bundle = _bundle(http_server, tmp_path, ARRAYS)
    folio = bundle.folio()
    # ~25 KB per payload at 10 KB/s: each download takes seconds, so the warm is mid-way.
    http_server.set_fault("/bundle/artifacts/*", Fault(bandwidth=10_000))
    http_server.stats.reset()
    handle = folio.warm_cache(background=True, concurrency=2)
    with pytest.raises(TimeoutError):
        handle.result(timeout=0.05)
    _wait_until(lambda: handle.progress.bytes_done > 0)
    assert handle.cancel(timeout=10)
    assert handle.done()
    result = handle.result(timeout=10)
    assert result.cached == ()
    assert len(result.cancelled) == len(ARRAYS)
    assert not result.ok
    started = bundle.payload_gets()
    assert 1 <= started <= 2  # only the two allowed to run ever started
    assert _tmp_files(cache_dir) == []  # the cancelled downloads cleaned up
    _no_partial_downloads()
    assert not any(folio.cache_status(n)["cached"] for n in ARRAYS)

    # Nothing was left half-done: a new warm on a fast link caches everything.
    http_server.clear_faults()
    assert set(folio.warm_cache().cached) == set(ARRAYS)
    assert bundle.payload_gets() == started + len(ARRAYS)


async def test_cancelling_an_awaited_warm_cleans_up(
    http_server: FaultServer, tmp_path: Path, cache_dir: str
) -> None:
    bundle = _bundle(http_server, tmp_path, ARRAYS)
    folio = await DataFolio.aopen(bundle.url, cache_ttl=TTL)
    http_server.set_fault("/bundle/artifacts/*", Fault(bandwidth=10_000))
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(folio.awarm_cache(concurrency=2), 0.3)
    for _ in range(500):  # bounded: the engine finishes the cancelled downloads' cleanup
        if not _tmp_files(cache_dir):
            break
        await asyncio.sleep(0.01)
    assert _tmp_files(cache_dir) == []
    started = bundle.payload_gets()
    assert 1 <= started <= 2
    await asyncio.sleep(0.1)
    assert bundle.payload_gets() == started  # nothing new started after the cancel

    handle = await folio.awarm_cache(background=True, concurrency=2)
    for _ in range(500):  # bounded: until bytes flow
        if handle.progress.bytes_done or handle.done():
            break
        await asyncio.sleep(0.01)
    assert await handle.acancel()
    assert len((await handle).cancelled) == len(ARRAYS)
    assert _tmp_files(cache_dir) == []


@pytest.mark.parametrize("how", ["deleted", "server-error"])
def test_a_failing_item_is_listed_and_the_rest_are_cached(
    http_server: FaultServer, tmp_path: Path, how: str
) -> None:
    bundle = _bundle(http_server, tmp_path, ARRAYS)
    folio = bundle.folio(retry_attempts=1)
    if how == "deleted":
        assert http_server.delete(bundle.path_of("arr3"))
    else:
        http_server.set_fault(bundle.path_of("arr3"), Fault(fail_n=100, fail_status=500))
    handle = folio.warm_cache(background=True)
    result = handle.result(timeout=30)
    assert set(result.cached) == set(ARRAYS) - {"arr3"}
    assert list(result.failed) == ["arr3"]
    error = result.failed["arr3"]
    assert isinstance(error, RemoteNotFoundError if how == "deleted" else RemoteError)
    assert handle.progress.items_failed == 1
    assert handle.progress.items_done == len(ARRAYS)
    assert handle.progress.bytes_done == handle.progress.bytes_total

    http_server.stats.reset()
    for name in set(ARRAYS) - {"arr3"}:
        np.testing.assert_array_equal(folio.get(name), ARRAYS[name])
    assert http_server.stats.requests() == 0
    assert not folio.cache_status("arr3")["cached"]


def test_foreground_get_joins_the_warm_download(http_server: FaultServer, tmp_path: Path) -> None:
    big = _array(200_000, 99)
    bundle = _bundle(http_server, tmp_path, {"big": big, **ARRAYS})
    folio = bundle.folio()
    http_server.set_fault(bundle.path_of("big"), Fault(bandwidth=500_000))  # ~0.4 s
    http_server.stats.reset()
    handle = folio.warm_cache(["big"], background=True)
    _wait_until(lambda: handle.progress.bytes_done > 0)
    assert not handle.done()
    np.testing.assert_array_equal(folio.get("big"), big)  # joins the running download
    assert handle.result(timeout=30).cached == ("big",)
    assert bundle.gets("big") == 1
    assert http_server.stats.requests() == 1


async def test_warm_survives_the_cancel_of_a_read_it_joined(
    http_server: FaultServer, tmp_path: Path
) -> None:
    big = _array(200_000, 11)
    bundle = _bundle(http_server, tmp_path, {"big": big})
    folio = await DataFolio.aopen(bundle.url, cache_ttl=TTL)
    http_server.set_fault(bundle.path_of("big"), Fault(bandwidth=400_000))  # ~0.5 s
    reader = asyncio.ensure_future(folio.aget("big"))  # starts the download
    for _ in range(500):  # bounded: until the server has the reader's GET
        if bundle.gets("big"):
            break
        await asyncio.sleep(0.01)
    handle = await folio.awarm_cache(["big"], background=True)  # joins that download
    await asyncio.sleep(0.1)
    reader.cancel()  # the download's owner goes away; the warm must not
    with pytest.raises(asyncio.CancelledError):
        await reader
    result = await asyncio.wait_for(handle.aresult(), 30)
    assert result.cached == ("big",)
    assert bundle.gets("big") == 2  # the warm fetched it again itself
    np.testing.assert_array_equal(await folio.aget("big"), big)


def test_a_read_that_joined_a_cancelled_warm_still_succeeds(
    http_server: FaultServer, tmp_path: Path
) -> None:
    big = _array(200_000, 12)
    bundle = _bundle(http_server, tmp_path, {"big": big})
    folio = bundle.folio()
    http_server.set_fault(bundle.path_of("big"), Fault(bandwidth=400_000))  # ~0.5 s
    handle = folio.warm_cache(["big"], background=True)
    _wait_until(lambda: handle.progress.bytes_done > 0)
    got: dict[str, Any] = {}

    def read() -> None:
        try:
            got["value"] = folio.get("big")
        except BaseException as exc:
            got["error"] = exc

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.1)  # the read joins the warm's download
    handle.cancel(timeout=10)
    reader.join(30)
    assert "error" not in got, repr(got.get("error"))
    np.testing.assert_array_equal(got["value"], big)


def test_large_items_kept_out_of_the_cache_are_skipped(
    http_server: FaultServer, tmp_path: Path
) -> None:
    big = _array(150_000, 7)
    bundle = _bundle(http_server, tmp_path, {"big": big, "arr0": ARRAYS["arr0"]})
    folio = bundle.folio(cache_large_files=False, large_file_threshold=100_000)
    http_server.stats.reset()
    result = folio.warm_cache()
    assert result.cached == ("arr0",)
    assert result.skipped == ("big",)
    assert result.ok
    assert bundle.gets("big") == 0
    assert bundle.payload_gets() == 1


def test_warm_refuses_uncached_and_read_only(http_server: FaultServer, tmp_path: Path) -> None:
    bundle = _bundle(http_server, tmp_path, {"arr0": ARRAYS["arr0"]})
    with pytest.raises(CacheError, match="caching is off"):
        bundle.folio(cache_mode="disabled").warm_cache()
    with pytest.raises(CacheError, match="read-only"):
        bundle.folio(cache_mode="read-only").warm_cache(background=True)


def test_warm_shows_no_progress_without_a_terminal(
    http_server: FaultServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = _bundle(http_server, tmp_path, ARRAYS)
    folio = bundle.folio()
    folio.warm_cache(["arr0"], progress=False)
    folio.warm_cache(["arr1"])  # default: only on a terminal, and capsys is not one
    folio.warm_cache(["arr2"], progress=True)  # asked for, but still never into a pipe
    monkeypatch.setenv("AIOFOLIO_PROGRESS", "0")
    bundle.folio().warm_cache(["arr3"], background=True).result(timeout=30)
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ""


def test_a_large_get_draws_a_bar_only_on_a_terminal(
    http_server: FaultServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_progress, "BAR_MIN_BYTES", 50_000)  # "large" without 64 MiB
    big = _array(120_000, 5)
    bundle = _bundle(http_server, tmp_path, {"big": big, "small": ARRAYS["arr0"]})
    folio = bundle.folio()
    np.testing.assert_array_equal(folio.get("big"), big)  # not a terminal: no bar
    assert capsys.readouterr() == ("", "")

    monkeypatch.setattr(_progress, "interactive", lambda stream=None: True)
    folio.get("small")  # a small download: no bar
    folio.invalidate_cache("big")
    bundle.folio(progress=False).get("big")  # turned off
    assert capsys.readouterr() == ("", "")
    folio.invalidate_cache("big")
    np.testing.assert_array_equal(folio.get("big"), big)
    out, err = capsys.readouterr()
    assert out == ""
    assert "downloading big" in err
    folio.get("big")  # a hit: no bar
    assert capsys.readouterr() == ("", "")
    assert bundle.gets("big") == 3


# -- concurrent revalidation ----------------------------------------------------------------------
def test_refresh_all_one_conditional_request_per_folio(
    http_server: FaultServer, tmp_path: Path
) -> None:
    bundles = [
        _bundle(http_server, tmp_path, {"arr0": ARRAYS["arr0"]}, prefix=f"/b{i}") for i in range(4)
    ]
    folios = [b.folio() for b in bundles]
    for folio in folios:
        folio.get("arr0")
    bundles[1].add("added", {"n": 1})
    bundles[1].sync()
    assert http_server.delete(f"{bundles[3].prefix}/items.json")  # this one now fails
    http_server.stats.reset()

    outcomes = aiofolio.refresh_all(folios, concurrency=2)
    assert [o.status for o in outcomes] == ["unchanged", "changed", "unchanged", "error"]
    assert [o.folio for o in outcomes] == folios
    assert outcomes[1].changed_items == ("added",)
    assert outcomes[1].changed
    assert not outcomes[0].changed
    assert isinstance(outcomes[3].error, RemoteNotFoundError)
    for bundle in bundles:
        assert http_server.stats.requests(f"{bundle.prefix}/items.json") == 1
    assert http_server.stats.requests() == len(bundles)  # nothing but the four checks
    assert http_server.stats.statuses(f"{bundles[0].prefix}/items.json") == [304]
    assert http_server.stats.statuses(f"{bundles[1].prefix}/items.json") == [200]
    assert "added" in folios[1]
    assert folios[1].get("added") == {"n": 1}
    http_server.stats.reset()
    assert folios[1].get("arr0") is not None
    assert http_server.stats.requests() == 0  # the unchanged item stayed cached


async def test_arefresh_all(http_server: FaultServer, tmp_path: Path) -> None:
    bundles = [_bundle(http_server, tmp_path, {"x": 1}, prefix=f"/a{i}") for i in range(3)]
    folios = [await DataFolio.aopen(b.url) for b in bundles]
    http_server.stats.reset()
    outcomes = await aiofolio.arefresh_all(folios)
    assert [o.status for o in outcomes] == ["unchanged"] * 3
    assert http_server.stats.requests() == 3


def test_refresh_references_one_stat_each(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    first, second = pd.DataFrame({"x": [1, 2]}), pd.DataFrame({"x": [5, 6, 7]})
    keys = [f"lake/t{i}.parquet" for i in range(3)]
    for key in keys:
        moto_server.put_object(s3_bucket, key, _parquet(first))
    url = f"s3://{s3_bucket}/refs"
    writer = DataFolio(url, storage_options=moto_server.storage_options(), cache_enabled=False)
    for i, key in enumerate(keys):
        writer.reference_table(f"t{i}", f"s3://{s3_bucket}/{key}")
    folio = DataFolio(
        url,
        storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url),
        cache_ttl=TTL,
        clock=lambda: START,
    )
    folio.warm_cache(["t0", "t1"])  # t2 stays uncached
    moto_server.put_object(s3_bucket, keys[1], _parquet(second))
    fault_proxy.stats.reset()

    outcomes = folio.refresh_references(concurrency=2)
    assert {n: o.status for n, o in outcomes.items()} == {
        "t0": "unchanged",
        "t1": "changed",
        "t2": "uncached",
    }
    assert fault_proxy.stats.requests() == 2  # one HEAD per cached table, no download
    assert fault_proxy.stats.requests(method="HEAD") == 2

    fault_proxy.stats.reset()
    pdt.assert_frame_equal(folio.get("t0"), first)  # still cached
    pdt.assert_frame_equal(folio.get("t1"), second)  # dropped, fetched again
    assert fault_proxy.stats.requests(f"/{s3_bucket}/{keys[0]}") == 0
    assert fault_proxy.stats.requests(f"/{s3_bucket}/{keys[1]}", "GET") == 1


# -- many small items: one record write for many downloads, and the warm's two limits ----------


def test_concurrent_downloads_record_items_without_rewriting_the_bundle_record(
    http_server: FaultServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiofolio.store.records import RecordStore

    values = {f"s{i:02d}": _array(2_000 + i, 100 + i) for i in range(40)}
    bundle = _bundle(http_server, tmp_path, values)
    http_server.set_fault(f"{bundle.prefix}/*", Fault(latency=0.05, methods={"GET"}))
    folio = bundle.folio()
    rewrites: list[int] = []
    puts: list[int] = []
    real_update, real_put = RecordStore.update, RecordStore.put_items

    def counting_update(self: RecordStore, url: str, fn: Any, **kw: Any) -> Any:
        rewrites.append(1)
        return real_update(self, url, fn, **kw)

    def counting_put(self: RecordStore, url: str, recs: Any) -> Any:
        puts.append(len(recs))
        return real_put(self, url, recs)

    monkeypatch.setattr(RecordStore, "update", counting_update)
    monkeypatch.setattr(RecordStore, "put_items", counting_put)
    result = folio.warm_cache(progress=False)
    assert sorted(result.cached) == sorted(values)
    assert bundle.payload_gets() == 40
    # one record append per item; the bundle record (token, last check) is not rewritten
    assert puts == [1] * 40
    assert rewrites == []
    for name in values:
        assert folio.cache_status(name)["cached"] is True
    before = bundle.payload_gets()
    for name, value in values.items():
        np.testing.assert_array_equal(folio.get(name), value)
    assert bundle.payload_gets() == before  # all hits


def test_a_failed_record_write_still_serves_verified_bytes(
    http_server: FaultServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from aiofolio.store.records import RecordStore

    values = {f"s{i:02d}": _array(2_000 + i, 200 + i) for i in range(6)}
    bundle = _bundle(http_server, tmp_path, values)
    folio = bundle.folio()
    folio.item_info("s00")  # the manifest is loaded and recorded before the fault
    real_put = RecordStore.put_items

    def failing_put(self: RecordStore, url: str, recs: Any) -> Any:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(RecordStore, "put_items", failing_put)
    with caplog.at_level(logging.WARNING, logger="aiofolio.cache"):
        result = folio.warm_cache(progress=False)
        np.testing.assert_array_equal(folio.get("s03"), values["s03"])  # right bytes
    assert sorted(result.cached) == sorted(values)
    assert any("cannot record" in r.getMessage() for r in caplog.records)
    assert folio.cache_status("s03")["cached"] is False  # unrecorded: not a hit
    assert bundle.payload_gets() == 7  # so the get downloaded again
    monkeypatch.setattr(RecordStore, "put_items", real_put)
    np.testing.assert_array_equal(folio.get("s03"), values["s03"])  # a clean miss afterwards
    assert folio.cache_status("s03")["cached"] is True


def test_the_warm_runs_many_small_items_but_few_large_ones_at_once() -> None:
    from aiofolio.engine.warm import WarmJob, default_concurrency, large_slots

    assert default_concurrency(8) == 32
    assert large_slots(32, 8) == 2
    assert large_slots(3, 8) == 1
    items = [{"name": f"small{i}", "size_bytes": 1_000} for i in range(40)]
    items += [{"name": f"big{i}", "size_bytes": 50_000_000} for i in range(6)]
    doc = {
        "schema_version": 2,
        "revision": 1,
        "items": [
            dict(
                it,
                item_type="json_data",
                filename=f"{it['name']}.json",
                checksum="0" * 32,
            )
            for it in items
        ],
    }
    manifest = parse_manifest(json.dumps(doc).encode(), source="test")
    running = {"small": 0, "big": 0}
    peak = {"small": 0, "big": 0, "all": 0}

    async def fetch(item: Any) -> str:
        kind = "big" if item.name.startswith("big") else "small"
        running[kind] += 1
        peak[kind] = max(peak[kind], running[kind])
        peak["all"] = max(peak["all"], running["small"] + running["big"])
        await asyncio.sleep(0.01)
        running[kind] -= 1
        return item.name

    async def load() -> Any:
        return manifest

    job = WarmJob(
        fetch=fetch,
        manifest=load,
        select=lambda m: list(m.current_items().values()),
        concurrency=8,
        large=2,
        large_size=16 * 1024 * 1024,
    )
    result = asyncio.run(job.run())
    assert len(result.cached) == 46
    assert peak["big"] == 2
    assert peak["all"] == 8
    assert peak["small"] >= 6  # small items were not held back by the large limit
