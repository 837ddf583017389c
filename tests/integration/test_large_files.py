"""The large-file policy and references, end to end on local folders and on S3 (moto).

* ``cache_large_files=False``: an item at or above ``large_file_threshold`` is downloaded,
  verified, read and never cached (nothing in ``v1/blobs``), with one INFO line per read;
  ``get(name, force_cache=True)`` caches it, and later reads are cache hits. ``get_path``
  of such an item is a private verified copy outside the cache.
* ``add`` warns with ``LargeFileWarning`` once when the bundle's owned payloads cross the
  threshold, and for every item at or above it.
* ``convert_to_reference`` / ``convert_to_included`` / ``optimize_storage``: round trips give
  equal frames, the manifest stays what ``datafolio`` 2.x reads and validates, the right
  payload files are kept or deleted, and bad input raises clear errors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio import (
    ChecksumMismatchError,
    ConcurrentWriteError,
    DataFolio,
    ItemNotFoundError,
    LargeFileWarning,
    UsageError,
)
from aiofolio.bundle import payload_path
from aiofolio.testing import FaultServer, MotoServer

THRESHOLD = 10_000
BIG = pd.DataFrame({"x": np.arange(4000, dtype=np.int64), "s": [f"r{i}" for i in range(4000)]})
MEDIUM = pd.DataFrame({"y": np.arange(2500, dtype=np.float64)})
SMALL = pd.DataFrame({"z": [1, 2, 3]})


@pytest.fixture
def cache_dir(_isolated_cache: str) -> Path:
    return Path(_isolated_cache)


def _blobs(cache_dir: Path) -> list[Path]:
    folder = cache_dir / "v1" / "blobs"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


def _md5(path: str | Path) -> str:
    return hashlib.md5(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def _streaming_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.INFO and "without caching" in r.getMessage()
    ]


def _add_quietly(folio: DataFolio, name: str, obj: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LargeFileWarning)
        folio.add(name, obj)


# -- caching policy -------------------------------------------------------------------------------


def test_large_item_is_streamed_verified_and_never_cached(
    tmp_path: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folio = DataFolio(
        tmp_path / "b",
        cache_enabled=True,
        cache_large_files=False,
        large_file_threshold=THRESHOLD,
    )
    _add_quietly(folio, "big", BIG)
    folio.add("small", SMALL)
    big = folio.get_item("big")
    assert big.size_bytes is not None
    assert big.size_bytes >= THRESHOLD

    with caplog.at_level(logging.INFO, logger="aiofolio"):
        pdt.assert_frame_equal(folio.get("big"), BIG)
        pdt.assert_frame_equal(folio.get("big", columns=["s"]), BIG[["s"]])
    assert len(_streaming_lines(caplog)) == 2  # one INFO line per streamed read
    assert "'big'" in _streaming_lines(caplog)[0]
    assert _blobs(cache_dir) == []  # the large item never reached the cache

    pdt.assert_frame_equal(folio.get("small"), SMALL)  # small items are cached as usual
    blobs = _blobs(cache_dir)
    assert len(blobs) == 1
    assert blobs[0].stat().st_size == folio.get_item("small").size_bytes
    assert folio.cache_status("big")["cached"] is False


def test_force_cache_caches_a_large_item(
    tmp_path: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folio = DataFolio(
        tmp_path / "b", cache_enabled=True, cache_large_files=False, large_file_threshold=THRESHOLD
    )
    _add_quietly(folio, "big", BIG)
    with caplog.at_level(logging.INFO, logger="aiofolio"):
        pdt.assert_frame_equal(folio.get("big", force_cache=True), BIG)
    assert _streaming_lines(caplog) == []
    blobs = _blobs(cache_dir)
    assert len(blobs) == 1
    assert _md5(blobs[0]) == folio.get_item("big").checksum
    assert folio.cache_status("big")["cached"] is True
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="aiofolio"):
        pdt.assert_frame_equal(folio.get("big"), BIG)  # already cached: served from the cache
    assert _streaming_lines(caplog) == []


async def test_aget_force_cache(tmp_path: Path, cache_dir: Path) -> None:
    folio = await DataFolio.aopen(
        tmp_path / "b", cache_enabled=True, cache_large_files=False, large_file_threshold=THRESHOLD
    )
    with pytest.warns(LargeFileWarning):
        await folio.aadd("big", BIG)
    pdt.assert_frame_equal(await folio.aget("big"), BIG)
    assert _blobs(cache_dir) == []
    pdt.assert_frame_equal(await folio.aget("big", force_cache=True), BIG)
    assert len(_blobs(cache_dir)) == 1


def test_cache_on_add_does_not_cache_a_large_item(tmp_path: Path, cache_dir: Path) -> None:
    folio = DataFolio(
        tmp_path / "b",
        cache_enabled=True,
        cache_on_add=True,
        cache_large_files=False,
        large_file_threshold=THRESHOLD,
    )
    _add_quietly(folio, "big", BIG)
    assert _blobs(cache_dir) == []
    folio.add("small", SMALL)
    assert len(_blobs(cache_dir)) == 1


def test_s3_large_item_streams_each_read_until_force_cache(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer, cache_dir: Path
) -> None:
    bundle = f"s3://{s3_bucket}/large"
    writer = DataFolio(bundle, storage_options=moto_server.storage_options(), cache_enabled=False)
    _add_quietly(writer, "big", BIG)
    folio = DataFolio(
        bundle,
        storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url),
        cache_large_files=False,
        large_file_threshold=THRESHOLD,
    )
    path = f"/{s3_bucket}/large/{payload_path(folio.get_item('big'))}"
    fault_proxy.stats.reset()
    for _ in range(2):
        pdt.assert_frame_equal(folio.get("big"), BIG)
    assert fault_proxy.stats.requests(path, "GET") == 2  # not cached: fetched per read
    assert _blobs(cache_dir) == []

    local = folio.get_path("big")  # a private verified copy, not the cache
    assert _md5(local) == folio.get_item("big").checksum
    assert not Path(local).is_relative_to(cache_dir)
    assert _blobs(cache_dir) == []

    pdt.assert_frame_equal(folio.get("big", force_cache=True), BIG)
    fault_proxy.stats.reset()
    pdt.assert_frame_equal(folio.get("big"), BIG)
    assert fault_proxy.stats.requests(path, "GET") == 0  # now a cache hit
    assert len(_blobs(cache_dir)) == 1


# -- warnings on add ------------------------------------------------------------------------------


def test_large_file_warning_once_per_crossing(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b", large_file_threshold=THRESHOLD)
    chunk = "x" * 2900  # a ~3 KB JSON payload each
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(6):
            folio.add(f"part{i}", {"payload": chunk})
    large = [w for w in caught if issubclass(w.category, LargeFileWarning)]
    assert len(large) == 1  # crossed once (on the 4th add), not on every later add
    assert "past large_file_threshold" in str(large[0].message)

    folio.delete([f"part{i}" for i in range(4)])  # back below the threshold
    with pytest.warns(LargeFileWarning, match="past large_file_threshold"):
        folio.add("again", {"payload": chunk * 2})  # a second crossing warns again


def test_large_file_warning_for_each_large_item(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b", large_file_threshold=THRESHOLD)
    with pytest.warns(LargeFileWarning, match="item 'big' is .* at or above") as first:
        folio.add("big", BIG)
    assert len([w for w in first if issubclass(w.category, LargeFileWarning)]) == 1
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\0" * (THRESHOLD + 1))
    with pytest.warns(LargeFileWarning, match="item 'blob'"):
        folio.add_file(blob)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LargeFileWarning)
        folio.add("small", SMALL)  # small, and the bundle was already past: no warning


# -- references -----------------------------------------------------------------------------------


def _manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "items.json").read_text())
    return data


def _entry(root: Path, name: str) -> dict[str, Any]:
    found = [i for i in _manifest(root)["items"] if i["name"] == name and i.get("is_current", 1)]
    assert len(found) == 1
    return found[0]


def _datafolio_reads(root: Path, expected: dict[str, pd.DataFrame]) -> None:
    """The real datafolio 2.x opens the bundle, validates it and reads the tables equal."""
    datafolio = pytest.importorskip("datafolio")
    theirs = datafolio.DataFolio(str(root), read_only=True)
    assert all(theirs.validate().values()), theirs.validate()
    for name, frame in expected.items():
        pdt.assert_frame_equal(theirs.get(name), frame)


def test_included_to_reference_to_included_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("table", MEDIUM, description="kept")
    before = folio.get_item("table")
    payload = root / payload_path(before)
    assert folio.is_included("table")
    assert not folio.is_reference("table")
    assert folio.list_references() == {}

    done = folio.convert_to_reference("table")
    assert done == {"name": "table", "path": f"file://{payload}", "bytes_saved": before.size_bytes}
    assert folio.is_reference("table")
    assert not folio.is_included("table")
    entry = _entry(root, "table")
    assert entry["item_type"] == "referenced_table"
    assert "filename" not in entry
    assert entry["path"] == f"file://{payload}"
    assert entry["description"] == "kept"
    assert payload.is_file()  # no byte copied or moved, and the file was kept
    assert folio.list_references() == {
        "table": {
            "path": f"file://{payload}",
            "table_format": "parquet",
            "size_bytes": before.size_bytes,
            "is_directory": False,
        }
    }
    pdt.assert_frame_equal(folio.get("table"), MEDIUM)
    _datafolio_reads(root, {"table": MEDIUM})

    back = folio.convert_to_included("table")
    assert folio.is_included("table")
    after = folio.get_item("table")
    assert back == {"name": "table", "path": payload_path(after), "bytes_added": after.size_bytes}
    assert after.checksum == before.checksum  # the same Parquet bytes, byte for byte
    assert not payload.exists()  # the old file is named by nothing now: deleted
    assert (root / payload_path(after)).is_file()
    pdt.assert_frame_equal(folio.get("table"), MEDIUM)
    assert folio.revision == 4  # created (1), added (2), two conversions (3, 4)
    assert folio.validate() == {"table": True}
    _datafolio_reads(root, {"table": MEDIUM})


def test_convert_to_reference_at_a_given_path_moves_the_bytes(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("table", MEDIUM)
    item = folio.get_item("table")
    target = tmp_path / "lake" / "table.parquet"
    done = folio.convert_to_reference("table", path=str(target))
    assert done["path"] == f"file://{target}"
    assert _md5(target) == item.checksum
    assert not (root / payload_path(item)).exists()  # the bundle's own copy is gone
    assert list((root / "tables").iterdir()) == []
    pdt.assert_frame_equal(folio.get("table"), MEDIUM)
    _datafolio_reads(root, {"table": MEDIUM})

    folio.add("other", SMALL)
    with pytest.raises(UsageError, match="already exists"):
        folio.convert_to_reference("other", path=str(target))  # holds other bytes
    assert folio.is_included("other")


def test_csv_reference_becomes_an_included_table(tmp_path: Path) -> None:
    csv = tmp_path / "ext.csv"
    SMALL.to_csv(csv, index=False)
    folio = DataFolio(tmp_path / "b")
    folio.reference_table("ext", str(csv), table_format="csv")
    folio.convert_to_included("ext")
    assert folio.get_item("ext").item_type == "included_table"
    pdt.assert_frame_equal(folio.get("ext"), SMALL)
    assert csv.is_file()  # external data is never deleted


def test_conversion_errors(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add("config", {"a": 1})
    folio.add("table", SMALL)
    revision = folio.revision
    with pytest.raises(ItemNotFoundError):
        folio.convert_to_reference("nope")
    with pytest.raises(ItemNotFoundError):
        folio.is_reference("nope")
    with pytest.raises(UsageError, match="json_data"):
        folio.convert_to_reference("config")
    with pytest.raises(UsageError, match="already included"):
        folio.convert_to_included("table")
    with pytest.raises(ValueError, match="relative"):
        folio.convert_to_reference("table", path="lake/t.parquet")
    folio.convert_to_reference("table")
    with pytest.raises(UsageError, match="already a reference"):
        folio.convert_to_reference("table")
    assert folio.revision == revision + 1  # only the one good conversion committed


def test_optimize_storage_converts_large_tables(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root, large_file_threshold=THRESHOLD)
    _add_quietly(folio, "big", BIG)
    folio.add("small", SMALL)
    _add_quietly(folio, "config", {"x": "y" * 20_000})  # large, but not a table: left alone
    sizes = {n: folio.get_item(n).size_bytes or 0 for n in ("big", "small", "config")}
    report = folio.optimize_storage()  # default threshold: large_file_threshold
    assert [c["name"] for c in report["converted"]] == ["big"]
    assert report["converted"][0]["size_bytes"] == sizes["big"]
    assert report["bytes_saved"] == sizes["big"]
    assert report["bundle_bytes_before"] == sum(sizes.values())
    assert report["bundle_bytes_after"] == sizes["small"] + sizes["config"]
    assert folio.is_reference("big")
    assert folio.is_included("small")
    assert folio.optimize_storage("2KB")["converted"] == []  # small is about 1.2 KB
    assert [c["name"] for c in folio.optimize_storage(1)["converted"]] == ["small"]
    pdt.assert_frame_equal(folio.get("big"), BIG)
    _datafolio_reads(root, {"big": BIG, "small": SMALL})


async def test_async_twins_round_trip(tmp_path: Path) -> None:
    folio = await DataFolio.aopen(tmp_path / "b")
    await folio.aadd("table", MEDIUM)
    await folio.aconvert_to_reference("table")
    assert folio.is_reference("table")
    await folio.aconvert_to_included("table")
    pdt.assert_frame_equal(await folio.aget("table"), MEDIUM)
    report = await folio.aoptimize_storage(1)
    assert [c["name"] for c in report["converted"]] == ["table"]


def test_s3_round_trip_and_payload_objects(
    moto_server: MotoServer, s3_bucket: str, cache_dir: Path
) -> None:
    bundle = f"s3://{s3_bucket}/conv"
    folio = DataFolio(bundle, storage_options=moto_server.storage_options())
    folio.add("table", MEDIUM, description="on s3")
    item = folio.get_item("table")
    key = f"conv/{payload_path(item)}"
    client = moto_server.boto3_client()

    def keys() -> set[str]:
        listing = client.list_objects_v2(Bucket=s3_bucket, Prefix="conv/")
        return {o["Key"] for o in listing.get("Contents", [])}

    done = folio.convert_to_reference("table")
    assert done["path"] == f"s3://{s3_bucket}/{key}"
    assert key in keys()
    assert folio.list_references()["table"]["size_bytes"] == item.size_bytes
    pdt.assert_frame_equal(folio.get("table"), MEDIUM)  # through the cache, verified

    reader = DataFolio(bundle, storage_options=moto_server.storage_options(), create=False)
    assert reader.is_reference("table")
    pdt.assert_frame_equal(reader.get("table"), MEDIUM)

    folio.convert_to_included("table")
    new = folio.get_item("table")
    assert new.item_type == "included_table"
    assert new.description == "on s3"
    assert key not in keys()
    assert f"conv/{payload_path(new)}" in keys()
    pdt.assert_frame_equal(folio.get("table"), MEDIUM)
    assert folio.validate() == {"table": True}

    external = f"s3://{s3_bucket}/lake/table.parquet"
    folio.convert_to_reference("table", path=external)
    assert f"conv/{payload_path(new)}" not in keys()
    assert client.head_object(Bucket=s3_bucket, Key="lake/table.parquet")["ContentLength"] == (
        new.size_bytes
    )
    pdt.assert_frame_equal(folio.get("table"), MEDIUM)


def test_streamed_bytes_are_verified(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(
        root, cache_enabled=True, cache_large_files=False, large_file_threshold=THRESHOLD
    )
    _add_quietly(folio, "big", BIG)
    payload = root / payload_path(folio.get_item("big"))
    data = bytearray(payload.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    payload.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError):
        folio.get("big")
    assert _blobs(cache_dir) == []
    assert list((cache_dir / "v1" / "tmp").glob("*")) == []


def test_conversion_losing_a_race_publishes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("table", MEDIUM)
    other = DataFolio(root, create=False)
    other.add("news", {"a": 1})  # another writer publishes first
    with pytest.raises(ConcurrentWriteError):
        folio.convert_to_reference("table")
    fresh = DataFolio(root, create=False)
    assert fresh.is_included("table")
    assert (root / payload_path(fresh.get_item("table"))).is_file()
    folio.refresh()
    folio.convert_to_reference("table")  # after a refresh it goes through
    assert DataFolio(root, create=False).is_reference("table")


def test_s3_large_reference_is_streamed_not_cached(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer, cache_dir: Path
) -> None:
    bundle = f"s3://{s3_bucket}/refs"
    writer = DataFolio(bundle, storage_options=moto_server.storage_options(), cache_enabled=False)
    _add_quietly(writer, "big", BIG)
    writer.convert_to_reference("big")  # records size_bytes and the checksum
    folio = DataFolio(
        bundle,
        storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url),
        cache_large_files=False,
        large_file_threshold=THRESHOLD,
    )
    assert folio.is_reference("big")
    pdt.assert_frame_equal(folio.get("big"), BIG)
    assert _blobs(cache_dir) == []
    pdt.assert_frame_equal(folio.get("big", force_cache=True), BIG)
    assert len(_blobs(cache_dir)) == 1
