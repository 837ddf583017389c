"""The hit fast path: a small cached item within the TTL is read in the caller's thread.

Asserted on what the engine thread did (a counting wrapper around the portal's entry points),
on requests at the loopback HTTP server, and on the bytes:

* a hit within the TTL: no portal call, no request, right value, counted as a hit;
* TTL passed, a large item, an artifact, an unknown name, bad options, a corrupt blob,
  ``hit_fast_path=False`` (or ``AIOFOLIO_HIT_FAST_PATH=0``): the engine path runs and does
  what it always did;
* from the engine thread, a sync ``get`` is still a usage error (never a silent success).
"""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiofolio import DataFolio, ItemNotFoundError, UsageError, _portal
from aiofolio.testing import FaultServer

TTL = 60.0
START = 1_700_000_000.0
SMALL = np.arange(128, dtype=np.int64)  # 1 KiB
LARGE = np.arange(80_000, dtype=np.int64)  # 640 KiB: above the 256 KiB fast-path bound


@pytest.fixture
def bundle_url(http_server: FaultServer, tmp_path: Path) -> str:
    root = tmp_path / "bundle"
    writer = DataFolio(root, cache_enabled=False)
    writer.add("small", SMALL)
    writer.add("large", LARGE)
    writer.add("cfg", {"k": [1, 2]})
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"artifact bytes")
    writer.add_file(notes, "notes")
    for p in root.rglob("*"):
        if p.is_file():
            http_server.put(f"/bundle/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"{http_server.url}/bundle"


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the calls that went through the engine thread."""
    seen: list[str] = []
    real_call, real_acall = _portal.call, _portal.acall

    def call(fn: Any, *args: Any) -> Any:
        seen.append(getattr(fn, "__name__", "?"))
        return real_call(fn, *args)

    async def acall(fn: Any, *args: Any) -> Any:
        seen.append(getattr(fn, "__name__", "?"))
        return await real_acall(fn, *args)

    monkeypatch.setattr(_portal, "call", call)
    monkeypatch.setattr(_portal, "acall", acall)
    return seen


def _warm(url: str, now: list[float]) -> DataFolio:
    folio = DataFolio(url, cache_ttl=TTL, clock=lambda: now[0])
    for name in ("small", "large", "cfg"):
        folio.get(name)  # downloads: the next reads are hits
    return folio


def test_a_small_hit_within_the_ttl_skips_the_engine_and_the_network(
    bundle_url: str, http_server: FaultServer, hops: list[str]
) -> None:
    now = [START]
    folio = _warm(bundle_url, now)
    before_requests = http_server.stats.requests()
    before_hits = folio.cache_stats()["hits"]
    hops.clear()
    for _ in range(5):
        np.testing.assert_array_equal(folio.get("small"), SMALL)
    assert folio.get("cfg") == {"k": [1, 2]}
    assert hops == []
    assert http_server.stats.requests() == before_requests
    assert folio.cache_stats()["hits"] == before_hits + 6


def test_async_hits_take_the_fast_path_too(bundle_url: str, hops: list[str]) -> None:
    now = [START]
    folio = _warm(bundle_url, now)
    hops.clear()

    async def main() -> Any:
        return await folio.aget("small")

    np.testing.assert_array_equal(asyncio.run(main()), SMALL)
    assert hops == []


def test_an_expired_ttl_goes_through_the_engine_and_revalidates(
    bundle_url: str, http_server: FaultServer, hops: list[str]
) -> None:
    now = [START]
    folio = _warm(bundle_url, now)
    now[0] += TTL + 1
    before = http_server.stats.requests(path="/bundle/items.json")
    hops.clear()
    np.testing.assert_array_equal(folio.get("small"), SMALL)
    assert hops == ["read_one"]
    assert http_server.stats.requests(path="/bundle/items.json") == before + 1
    hops.clear()
    np.testing.assert_array_equal(folio.get("small"), SMALL)  # checked again: fast once more
    assert hops == []


@pytest.mark.parametrize("name", ["large", "notes"])
def test_large_items_and_artifacts_use_the_engine(
    bundle_url: str, hops: list[str], name: str
) -> None:
    now = [START]
    folio = _warm(bundle_url, now)
    folio.get(name)
    hops.clear()
    value = folio.get(name)
    assert hops == ["read_one"]
    if name == "large":
        np.testing.assert_array_equal(value, LARGE)
    else:
        assert Path(value).read_bytes() == b"artifact bytes"


def test_errors_come_from_the_engine_path(bundle_url: str, hops: list[str]) -> None:
    now = [START]
    folio = _warm(bundle_url, now)
    hops.clear()
    with pytest.raises(ItemNotFoundError):
        folio.get("smal")
    with pytest.raises(TypeError):
        folio.get("small", no_such_option=1)
    assert hops == ["read_one", "read_one"]


def test_a_corrupt_small_blob_is_never_served_by_the_fast_path(
    bundle_url: str, http_server: FaultServer, hops: list[str]
) -> None:
    now = [START]
    folio = _warm(bundle_url, now)
    blob = Path(folio.cache_status("small")["cache_path"])
    os.chmod(blob, 0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    payload_gets = http_server.stats.requests(method="GET")
    hops.clear()
    np.testing.assert_array_equal(folio.get("small"), SMALL)
    assert hops == ["read_one"]  # the engine repaired it by downloading again
    assert http_server.stats.requests(method="GET") == payload_gets + 1


@pytest.mark.parametrize("switch", ["env", "argument", "configure_cache"])
def test_the_hit_fast_path_setting_turns_the_fast_path_off(
    bundle_url: str,
    http_server: FaultServer,
    hops: list[str],
    monkeypatch: pytest.MonkeyPatch,
    switch: str,
) -> None:
    now = [START]
    settings: dict[str, Any] = {}
    if switch == "env":
        monkeypatch.setenv("AIOFOLIO_HIT_FAST_PATH", "0")
    elif switch == "argument":
        settings["hit_fast_path"] = False
    else:
        DataFolio.configure_cache(hit_fast_path=False)
    folio = DataFolio(bundle_url, cache_ttl=TTL, clock=lambda: now[0], **settings)
    assert folio.settings.hit_fast_path is False
    folio.get("small")  # the miss
    before_requests = http_server.stats.requests()
    before_hits = folio.cache_stats()["hits"]
    hops.clear()
    for _ in range(3):
        np.testing.assert_array_equal(folio.get("small"), SMALL)

    async def main() -> Any:
        return await folio.aget("small")

    np.testing.assert_array_equal(asyncio.run(main()), SMALL)
    assert hops == ["read_one"] * 4  # every hit went through the engine thread
    assert http_server.stats.requests() == before_requests  # still hits: no request
    assert folio.cache_stats()["hits"] == before_hits + 4


def test_hits_from_eight_threads_at_once_are_all_right(bundle_url: str) -> None:
    now = [START]
    folio = _warm(bundle_url, now)
    before = folio.cache_stats()["hits"]
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            for _ in range(50):
                np.testing.assert_array_equal(folio.get("small"), SMALL)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert folio.cache_stats()["hits"] == before + 400


def test_a_sync_get_from_the_engine_thread_is_still_a_usage_error(bundle_url: str) -> None:
    now = [START]
    folio = _warm(bundle_url, now)

    async def inside() -> None:
        folio.get("small")  # a hit, but on the engine thread: refuse, don't special-case

    with pytest.raises(UsageError):
        _portal.call(inside)
