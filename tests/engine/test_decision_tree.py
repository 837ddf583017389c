"""The cache decision tree at the engine level: BundleSession on a MemoryBackend, a fake clock.

No network, no sleeping for the TTL: every case moves an injected clock and asserts the exact
requests the backend saw (``MemoryBackend.calls``: ``fetch_if_changed`` is the manifest,
``read`` a payload stream or range, ``stat`` a HEAD), the values, the warnings and what is on
disk. The loopback end-to-end versions are tests/integration/test_cache_decisions.py and
test_cache_faults.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import stat
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _memory_bundle import (
    ITEMS_URL,
    TTL,
    URL,
    Clock,
    blob_file,
    cache_settings,
    calls,
    listing,
    payload_url,
    reader,
    write_bundle,
)

from aiofolio.backends.memory import MemoryBackend
from aiofolio.bundle import version_token
from aiofolio.engine.session import BundleSession
from aiofolio.errors import (
    CacheFullError,
    ChecksumMismatchError,
    NotCachedError,
    RemoteUpdateWarning,
    StaleDataWarning,
    TransientError,
)
from aiofolio.store import FAST_ALGORITHM, BlobStore, CacheLayout, Hashers, ItemRecord, RecordStore

THREE = {"a": {"v": "a1"}, "b": {"v": "b1"}, "c": {"v": "c1"}}


@pytest.fixture
def mem() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def _no_warnings(record: list[warnings.WarningMessage], *classes: type[Warning]) -> None:
    found = [w for w in record if issubclass(w.category, classes)]
    assert not found, [str(w.message) for w in found]


# -- 1. first open, first read, a read within the TTL ----------------------------------------------
async def test_first_open_one_manifest_fetch_then_one_read_then_nothing(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    calls(mem)
    served = mem.bytes_served
    s = await reader(mem, cache_dir, clock)
    assert calls(mem) == {"fetch_if_changed": 1}
    # Unconditional: the whole manifest came back (a conditional 304 serves no bytes).
    assert mem.bytes_served - served == len(mem.objects[ITEMS_URL].data)

    served = mem.bytes_served
    assert await s.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {"read": 1}
    assert mem.bytes_served - served == s.require_manifest().current("a").size_bytes
    blob = blob_file(s, "a")
    assert blob is not None
    assert hashlib.md5(blob.read_bytes()).hexdigest() == s.require_manifest().current("a").checksum

    clock.advance(TTL - 1)
    assert await s.read_one("a", {}) == {"v": "a1"}
    assert await s.load() is s.require_manifest()
    assert calls(mem) == {}


# -- 2. TTL expired, manifest unchanged ------------------------------------------------------------
async def test_ttl_expired_unchanged_one_conditional_fetch_and_the_check_moves(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock)
    assert await s.read_one("a", {}) == {"v": "a1"}
    rt = s.runtime
    loaded = rt.records.load(URL)
    assert loaded is not None
    first_check = loaded[0].last_check
    assert first_check == clock.now
    rec_before = rt.records.item(URL, "a")
    calls(mem)

    served = mem.bytes_served
    later = clock.advance(TTL + 1)
    assert await s.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {"fetch_if_changed": 1}
    assert mem.bytes_served == served  # answered "not modified": no manifest bytes, no payload
    loaded = rt.records.load(URL)
    assert loaded is not None
    assert loaded[0].last_check == later > first_check
    assert loaded[0].manifest_token == mem.objects[ITEMS_URL].etag
    assert rt.records.item(URL, "a") == rec_before  # item records untouched

    clock.advance(TTL - 1)  # the TTL counts from the new check
    assert await s.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {}


# -- 3. one of three items changed by another writer -----------------------------------------------
async def test_one_changed_item_is_dropped_warned_and_read_again_alone(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    calls(mem)
    s = await reader(mem, cache_dir, clock)
    for name in THREE:
        assert await s.read_one(name, {}) == THREE[name]
    assert calls(mem) == {"fetch_if_changed": 1, "read": 3}
    seen: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    s.add_invalidation_callback(lambda old, new: seen.append((old, new)))
    old_b = s.require_manifest().current("b").to_dict()

    await write_bundle(mem, {"b": {"v": "b2"}}, overwrite=True)  # another writer
    calls(mem)
    clock.advance(TTL + 1)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        await s.load()
    assert calls(mem) == {"fetch_if_changed": 1}
    updates = [str(w.message) for w in record if issubclass(w.category, RemoteUpdateWarning)]
    assert len(updates) == 1
    assert "'b'" in updates[0]
    assert "'a'" not in updates[0]
    assert "'c'" not in updates[0]
    _no_warnings(record, StaleDataWarning)
    rt = s.runtime
    assert rt.records.item(URL, "b") is None  # dropped with the new manifest
    assert rt.records.item(URL, "a") is not None
    assert rt.records.item(URL, "c") is not None

    assert len(seen) == 1
    old, new = seen[0]
    assert old == old_b
    assert new == s.require_manifest().current("b").to_dict()
    assert old is not None
    assert new is not None
    assert old["name"] == new["name"] == "b"
    assert old["checksum"] != new["checksum"]

    assert await s.read_one("b", {}) == {"v": "b2"}
    assert calls(mem) == {"read": 1}
    assert await s.read_one("a", {}) == {"v": "a1"}
    assert await s.read_one("c", {}) == {"v": "c1"}
    assert calls(mem) == {}


# -- 4. remote failing after the TTL: stale while young enough, else the error ---------------------
async def test_remote_down_serves_stale_until_max_stale_age(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock, max_stale_age=600.0)
    assert await s.read_one("a", {}) == {"v": "a1"}
    checked = clock.now
    calls(mem)

    clock.advance(TTL + 1)
    mem.fail_next(TransientError("store down (HTTP 503)"), times=1, method="fetch_if_changed")
    with pytest.warns(StaleDataWarning, match="could not revalidate"):
        assert await s.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {"fetch_if_changed": 1}
    loaded = s.runtime.records.load(URL)
    assert loaded is not None
    assert loaded[0].last_check == checked  # a stale serve is not a check

    clock.now = checked + 600.0 + 1  # older than max_stale_age now
    mem.fail_next(TransientError("store down (HTTP 503)"), times=1, method="fetch_if_changed")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(TransientError, match="store down"):
            await s.read_one("a", {})
    _no_warnings(record, StaleDataWarning)
    assert calls(mem) == {"fetch_if_changed": 1}

    # Back up: one revalidation (not modified) and the cached copy is served again.
    assert await s.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {"fetch_if_changed": 1}


async def test_remote_down_without_fallback_raises_at_once(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock, fallback_to_stale=False)
    assert await s.read_one("a", {}) == {"v": "a1"}
    calls(mem)
    clock.advance(TTL + 1)  # far younger than max_stale_age (a day)
    mem.fail_next(TransientError("store down (HTTP 503)"), times=1, method="fetch_if_changed")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        with pytest.raises(TransientError, match="store down"):
            await s.read_one("a", {})
    _no_warnings(record, StaleDataWarning)
    assert calls(mem) == {"fetch_if_changed": 1}


# -- 5. use_stale ----------------------------------------------------------------------------------
async def test_use_stale_asks_nothing_even_past_the_ttl(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock)
    assert await s.read_one("a", {}) == {"v": "a1"}
    checked = clock.now
    await write_bundle(mem, {"a": {"v": "a2"}}, overwrite=True)  # the remote moved on
    calls(mem)

    clock.advance(10 * 86400.0)  # past the TTL and past max_stale_age
    assert await s.read_one("a", {"use_stale": True}) == {"v": "a1"}
    assert calls(mem) == {}
    loaded = s.runtime.records.load(URL)
    assert loaded is not None
    assert loaded[0].last_check == checked

    # Without it, the same read revalidates and sees the new version.
    with pytest.warns(RemoteUpdateWarning, match="'a'"):
        assert await s.read_one("a", {}) == {"v": "a2"}
    assert calls(mem) == {"fetch_if_changed": 1, "read": 1}


# -- 6. offline ------------------------------------------------------------------------------------
async def test_offline_serves_the_cache_and_refuses_the_rest_without_a_request(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    online = await reader(mem, cache_dir, clock)
    assert await online.read_one("a", {}) == {"v": "a1"}
    other = "memory://bucket/other"
    await write_bundle(mem, {"x": 1}, url=other)  # exists remotely, never cached
    calls(mem)

    clock.advance(10 * 86400.0)
    off = await reader(mem, cache_dir, clock, cache_mode="offline")
    assert await off.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {}
    with pytest.raises(NotCachedError, match="'b'"):
        await off.read_one("b", {})
    assert calls(mem) == {}
    with pytest.raises(NotCachedError, match="not in the cache"):
        await reader(mem, cache_dir, clock, url=other, cache_mode="offline")
    assert calls(mem) == {}


# -- 7. a corrupt cached blob ----------------------------------------------------------------------
def _corrupt(path: Path) -> None:
    data = path.read_bytes()
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    path.write_bytes(bytes(b ^ 0x20 for b in data))  # same size: only the hash can tell


async def test_corrupt_blob_is_downloaded_again(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock)
    assert await s.read_one("a", {}) == {"v": "a1"}
    blob = blob_file(s, "a")
    assert blob is not None
    _corrupt(blob)
    calls(mem)

    assert await s.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {"read": 1}
    blob = blob_file(s, "a")
    assert blob is not None
    assert blob.read_bytes() == mem.objects[payload_url(s, "a")].data


async def test_corrupt_blob_in_strict_mode_raises_without_a_read(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock, strict_mode=True)
    assert await s.read_one("a", {}) == {"v": "a1"}
    blob = blob_file(s, "a")
    assert blob is not None
    _corrupt(blob)
    calls(mem)

    with pytest.raises(ChecksumMismatchError, match="strict_mode"):
        await s.read_one("a", {})
    assert calls(mem) == {}


# -- 8. no lost update -----------------------------------------------------------------------------
async def test_another_process_item_record_survives_our_revalidations(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock)  # our load: nothing of the items cached yet
    rt = s.runtime

    # Another "process" (its own store objects, its own item log) caches item a meanwhile.
    item = s.require_manifest().current("a")
    data = mem.objects[payload_url(s, "a")].data
    hashers = Hashers(sorted({"md5", FAST_ALGORITHM}))
    hashers.update(data)
    digest = hashers.hexdigest("md5")
    layout = CacheLayout(str(cache_dir))
    theirs = BlobStore(layout)
    tmp = theirs.new_temp()
    tmp.write_bytes(data)
    theirs.publish(tmp, digest)
    their_rec = ItemRecord(
        name="a",
        item_type=item.item_type,
        payload=item.filename or "",
        version_token=version_token(item),
        digest=digest,
        algorithm="md5",
        fast_hash=hashers.hexdigest(FAST_ALGORITHM),
        fast_algorithm=FAST_ALGORITHM,
        size=len(data),
        cached_at=time.time(),
        last_verified=clock.now,
    )
    RecordStore(layout).put_items(URL, [their_rec])
    calls(mem)

    clock.advance(TTL + 1)
    await s.load()  # not modified
    assert calls(mem) == {"fetch_if_changed": 1}
    rec = rt.records.item(URL, "a")
    assert rec is not None
    assert rec.digest == digest

    await write_bundle(mem, {"b": {"v": "b2"}}, overwrite=True)
    calls(mem)
    clock.advance(TTL + 1)
    with pytest.warns(RemoteUpdateWarning, match="'b'"):
        await s.load()  # changed (another item)
    assert calls(mem) == {"fetch_if_changed": 1}
    rec = rt.records.item(URL, "a")
    assert rec is not None
    assert rec.digest == digest
    assert RecordStore(layout).item(URL, "a") is not None  # as any process sees it

    assert await s.read_one("a", {}) == {"v": "a1"}  # their blob, no download
    assert calls(mem) == {}


# -- 9. read-only ----------------------------------------------------------------------------------
async def test_read_only_reads_write_nothing_and_keep_the_ttl(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    rw = await reader(mem, cache_dir, clock)
    assert await rw.read_one("a", {}) == {"v": "a1"}
    rw.runtime.stats.flush()
    calls(mem)
    before = listing(cache_dir)

    ro = await reader(mem, cache_dir, clock, cache_mode="read-only")
    assert calls(mem) == {}  # the cached manifest is within the TTL
    assert await ro.read_one("a", {}) == {"v": "a1"}  # a hit
    assert calls(mem) == {}
    assert await ro.read_one("b", {}) == {"v": "b1"}  # served, never cached
    assert calls(mem) == {"read": 1}
    assert blob_file(ro, "b") is None

    clock.advance(TTL + 1)
    assert await ro.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {"fetch_if_changed": 1}
    clock.advance(TTL - 1)  # the check is kept in memory: the TTL holds
    assert await ro.read_one("a", {}) == {"v": "a1"}
    assert calls(mem) == {}

    # Nothing was created, removed or changed, except this process's counter file: hits and
    # misses are counted in read-only mode too (cache_stats), which rewrites v1/stats/<pid>.
    ro.runtime.stats.flush()
    after = listing(cache_dir)
    assert after.keys() == before.keys()
    counters = str(ro.runtime.stats.path.relative_to(cache_dir))
    changed = {p for p in after if after[p] != before[p]}
    assert changed <= {counters, os.path.dirname(counters)}
    assert blob_file(ro, "b") is None


# -- 10. single flight -----------------------------------------------------------------------------
async def test_concurrent_reads_of_one_item_make_one_request(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    await write_bundle(mem, THREE)
    s = await reader(mem, cache_dir, clock)
    calls(mem)
    mem.set_latency(0.05)  # every reader is waiting while the one download is in flight
    values = await asyncio.gather(*(s.read_one("a", {}) for _ in range(10)))
    assert values == [{"v": "a1"}] * 10
    assert calls(mem) == {"read": 1}


# -- 11. large items: pinned ranges, never two versions --------------------------------------------
LARGE = 320 * 1024  # above the engine's 256 KiB small-object bound (fetch.INLINE_MAX)
RANGED = {"parallel_threshold": 64 * 1024, "chunk_size": 16 * 1024}


def _array(seed: int) -> np.ndarray[Any, np.dtype[np.uint8]]:
    return np.random.default_rng(seed).integers(0, 256, LARGE, dtype=np.uint8)


async def test_large_item_is_fetched_as_pinned_ranges(
    mem: MemoryBackend, clock: Clock, cache_dir: Path
) -> None:
    arr = _array(1)
    await write_bundle(mem, {"big": arr, "mid": {"s": "x" * 200 * 1024}})
    s = await reader(mem, cache_dir, clock, **RANGED)
    size = s.require_manifest().current("big").size_bytes
    assert size is not None
    calls(mem)

    got = await s.read_one("big", {})
    assert np.array_equal(got, arr)
    # No stat: the first ranged GET (the first chunk) states the size and the version token
    # the other ranges are pinned to. 327,808 bytes (320 KiB + the .npy header) in 16 KiB
    # chunks is 21 GETs, the last one short.
    assert math.ceil(size / (16 * 1024)) == 21
    assert calls(mem) == {"read": 21}

    # An item of ~200 KiB is above parallel_threshold: ranged too (the settings decide, also
    # below the engine's 256 KiB small-object bound).
    mid = s.require_manifest().current("mid").size_bytes
    assert mid is not None
    assert 64 * 1024 < mid <= 256 * 1024
    assert await s.read_one("mid", {}) == {"s": "x" * 200 * 1024}
    assert calls(mem) == {"read": math.ceil(mid / (16 * 1024))}


def _tmp_leftovers(cache_dir: Path) -> list[str]:
    return sorted(os.listdir(cache_dir / "v1" / "tmp"))


async def test_large_item_replaced_mid_download_never_mixes_versions(
    mem: MemoryBackend,
    clock: Clock,
    cache_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    arr = _array(2)
    await write_bundle(mem, {"big": arr})
    s = await reader(mem, cache_dir, clock, **RANGED)
    url = payload_url(s, "big")
    original = mem.objects[url].data
    other = _array(3).tobytes()
    replacement = original[: len(original) - len(other)] + other  # same size, other bytes
    assert len(replacement) == len(original)
    calls(mem)

    # Replaced in place once the first range has streamed: the ranges that start after it are
    # pinned to the old version and fail (412); the retry sees only the new version, which
    # does not match the manifest. Nothing is served, nothing is cached.
    mem.replace_after(url, 1, replacement)
    with (
        caplog.at_level(logging.WARNING, logger="aiofolio.fetch"),
        pytest.raises(ChecksumMismatchError, match="did not verify"),
    ):
        await s.read_one("big", {})
    assert "changed during the download" in caplog.text
    seen = calls(mem)
    assert "stat" not in seen  # each attempt's first ranged GET states the size and token
    assert seen["read"] >= 2  # at least the first chunk of each attempt
    assert blob_file(s, "big") is None
    assert [p for p in (cache_dir / "v1" / "blobs").rglob("*") if p.is_file()] == []
    assert _tmp_leftovers(cache_dir) == []

    # Re-uploaded with the manifest's bytes mid-download (a new generation, same content):
    # the first attempt stops at the pin, the second downloads one version whole.
    mem.set(url, replacement)
    mem.replace_after(url, 1, original)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="aiofolio.fetch"):
        got = await s.read_one("big", {})
    assert np.array_equal(got, arr)
    assert "changed during the download" in caplog.text
    seen = calls(mem)
    assert "stat" not in seen
    assert seen["read"] >= 21
    blob = blob_file(s, "big")
    assert blob is not None
    assert blob.read_bytes() == original
    assert _tmp_leftovers(cache_dir) == []


# -- 12. write-through under a hard limit ----------------------------------------------------------
async def test_write_through_under_a_hard_limit_never_passes_it(
    mem: MemoryBackend, clock: Clock, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    limit = 8 * 1024
    w = BundleSession(
        URL,
        settings=cache_settings(
            cache_dir, cache_on_add=True, hard_limit=True, max_cache_size=limit
        ),
        backend=mem,
        clock=clock,
    )
    await w.open(create=True, metadata=None)
    rt = w.runtime

    def total() -> int:
        return rt.blobs.total_size()

    await w.add("a", "a" * 2000)
    assert blob_file(w, "a") is not None
    assert 0 < total() <= limit
    await w.add("b", "b" * 3000)
    assert blob_file(w, "b") is not None
    assert total() <= limit
    cached = total()

    with caplog.at_level(logging.WARNING, logger="aiofolio.session"):
        await w.add("huge", "h" * (2 * limit))  # can never fit: the upload stands, no copy
    assert "not caching the write-through copy of 'huge'" in caplog.text
    assert blob_file(w, "huge") is None
    assert mem.objects[payload_url(w, "huge")].data  # uploaded
    assert total() == cached  # nothing evicted for an item that cannot fit
    assert blob_file(w, "a") is not None

    await w.add("d", "d" * 5000)  # fits once the oldest copy goes
    assert blob_file(w, "d") is not None
    assert total() <= limit
    calls(mem)

    assert await w.read_one("d", {}) == "d" * 5000  # the write-through copy: no download
    assert calls(mem) == {}
    with pytest.raises(CacheFullError):  # a read refuses too, before any byte
        await w.read_one("huge", {})
    assert calls(mem) == {}
    assert total() <= limit
