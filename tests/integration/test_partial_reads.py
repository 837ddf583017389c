"""Partial Parquet reads against moto behind the fault proxy (bytes and requests counted there).

A 100-column table of about 200 MB is written once per module; each test has its own cache.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from aiofolio import DataFolio, NotCachedError, PreconditionFailedError, UncachedRangeError
from aiofolio.bundle import payload_path
from aiofolio.engine.partial import FOOTER_READ, CachedRangesFile, coalesce
from aiofolio.testing import FaultServer, MotoServer

ROWS = 262_144  # x 100 float64 columns: about 210 MB
COLS = [f"c{i:03d}" for i in range(100)]
PICK = ["c007", "c063"]


@dataclass
class Big:
    url: str
    bucket: str
    prefix: str
    frame: pd.DataFrame
    size: int
    key: str  # the payload's object key


@pytest.fixture(scope="module")
def big(moto_server: MotoServer) -> Big:
    bucket = moto_server.create_bucket()
    url = f"s3://{bucket}/partial/big"
    rng = np.random.default_rng(7)
    frame = pd.DataFrame(rng.random((ROWS, len(COLS))), columns=COLS)
    writer = DataFolio(url, storage_options=moto_server.storage_options())
    writer.add("big", frame)
    item = writer.get_item("big")
    size = item.size_bytes
    assert size is not None
    assert size > 150e6
    return Big(url, bucket, "partial/big", frame, size, f"partial/big/{payload_path(item)}")


def _reader(big: Big, moto_server: MotoServer, proxy: FaultServer, **kw: Any) -> DataFolio:
    return DataFolio(
        big.url, storage_options=moto_server.storage_options(endpoint_url=proxy.url), **kw
    )


def _path(big: Big) -> str:
    return f"/{big.bucket}/{big.key}"


def _partial_files() -> list[Path]:
    root = Path(os.environ["AIOFOLIO_CACHE_DIR"]) / "v1" / "partial"
    return sorted(p for p in root.rglob("*.bin")) if root.is_dir() else []


def test_two_columns_fetch_under_5_percent_and_repeat_is_free(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy)
    got = folio.get("big", columns=PICK)
    pd.testing.assert_frame_equal(got, big.frame[PICK])
    served = fault_proxy.stats.bytes_served(_path(big))
    assert 0 < served <= 0.05 * big.size
    assert not folio.cache_status("big")["cached"]  # a partial is never the cached item
    assert not list((Path(os.environ["AIOFOLIO_CACHE_DIR"]) / "v1" / "blobs").rglob("*/*"))
    requests = fault_proxy.stats.requests()
    again = folio.get("big", columns=list(reversed(PICK)))
    pd.testing.assert_frame_equal(again, big.frame[list(reversed(PICK))])
    assert fault_proxy.stats.requests() == requests  # no request at all (manifest within TTL)
    # the cached ranges count in the cache's size
    on_disk = sum(p.stat().st_size for p in _partial_files())
    assert on_disk >= served - 1
    assert DataFolio.cache_info()["size_bytes"] >= on_disk


async def test_aget_columns_and_arrow_frame(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy)
    table = await folio.aget("big", columns=["c099"], frame="arrow")
    assert isinstance(table, pa.Table)
    np.testing.assert_array_equal(table.column("c099").to_numpy(), big.frame["c099"].to_numpy())
    assert fault_proxy.stats.bytes_served(_path(big)) <= 0.03 * big.size


def test_get_schema_reads_the_footer_only_and_caches_it(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy)
    schema = folio.get_schema("big")
    assert isinstance(schema, pa.Schema)
    assert [n for n in schema.names if not n.startswith("__")] == COLS
    assert schema.field("c001").type == pa.float64()
    served = fault_proxy.stats.bytes_served(_path(big))
    assert served == FOOTER_READ <= 0.01 * big.size
    assert fault_proxy.stats.requests(_path(big)) == 1
    requests = fault_proxy.stats.requests()
    assert folio.get_schema("big") == schema
    assert fault_proxy.stats.requests() == requests
    # the columns read afterwards reuse the cached footer: only the column chunks
    folio.get("big", columns=PICK)
    assert fault_proxy.stats.requests(_path(big)) == 1 + len(PICK)


async def test_aget_schema(big: Big, moto_server: MotoServer, fault_proxy: FaultServer) -> None:
    schema = await _reader(big, moto_server, fault_proxy).aget_schema("big")
    assert "c050" in schema.names


def test_whole_get_after_partial_downloads_and_verifies(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy)
    folio.get("big", columns=PICK)
    assert _partial_files()
    whole = folio.get("big")
    pd.testing.assert_frame_equal(whole, big.frame)
    status = folio.cache_status("big")
    assert status["cached"]
    assert status["checksum_valid"]
    assert status["verified_by"] == "md5 (manifest)"
    assert not _partial_files()  # the partial went once the whole was verified
    requests = fault_proxy.stats.requests(_path(big))
    pd.testing.assert_frame_equal(folio.get("big", columns=PICK), big.frame[PICK])
    assert fault_proxy.stats.requests(_path(big)) == requests  # served from the whole blob


def test_a_corrupt_cached_range_is_fetched_again(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy)
    folio.get("big", columns=PICK)
    pieces = [p for p in _partial_files() if not p.name.endswith(f"-{big.size}.bin")]
    assert pieces
    victim = pieces[0]
    victim.chmod(stat.S_IWUSR | stat.S_IRUSR)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    before = fault_proxy.stats.requests(_path(big))
    got = folio.get("big", columns=PICK)
    pd.testing.assert_frame_equal(got, big.frame[PICK])
    assert fault_proxy.stats.requests(_path(big)) > before  # refetched, never served


def test_a_version_change_between_footer_and_ranges_never_mixes(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy)
    folio.get_schema("big")  # footer cached, pinned to the current version
    original = moto_server.boto3_client().get_object(Bucket=big.bucket, Key=big.key)["Body"].read()
    other = big.frame * -1.0
    buf = pa.BufferOutputStream()
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(other, preserve_index=False), buf)
    replacement = buf.getvalue().to_pybytes()
    moto_server.put_object(big.bucket, big.key, replacement)
    try:
        if len(replacement) == big.size:
            got = folio.get("big", columns=PICK)  # pin fails; read again, all of the new version
            pd.testing.assert_frame_equal(got, other[PICK])
        else:
            with pytest.raises(PreconditionFailedError):
                folio.get("big", columns=PICK)
        gets = fault_proxy.stats.records(_path(big), method="GET")
        assert any(r.status == 412 for r in gets)  # the pin caught the change
        footer = f"bytes={big.size - FOOTER_READ}-"
        chunks = [r for r in gets if r.range and not r.range.startswith(footer)]
        assert chunks
        assert all(r.headers.get("If-Match") for r in chunks)  # every column range pinned
    finally:
        moto_server.put_object(big.bucket, big.key, original)


def test_eviction_and_invalidation_remove_the_ranges(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy, max_cache_size=1_000_000)
    folio.get("big", columns=PICK)
    pieces = _partial_files()
    assert pieces  # the one just written is protected by its own publish
    on_disk = sum(p.stat().st_size for p in pieces)
    result = folio.enforce_cache_limit()
    assert result["evicted"] == 1
    assert result["bytes_freed"] >= on_disk
    assert result["total_before"] > 1_000_000 >= result["total_after"]
    assert _partial_files() == []
    folio.get("big", columns=PICK)
    assert _partial_files()
    folio.invalidate_cache("big")
    assert _partial_files() == []


def test_cached_ranges_file_never_zero_fills() -> None:
    f = CachedRangesFile(100, {0: b"a" * 10, 10: b"b" * 10, 50: b"c" * 50})
    assert f.read(20) == b"a" * 10 + b"b" * 10
    f.seek(45)
    with pytest.raises(UncachedRangeError):
        f.read(10)
    f.seek(-5, os.SEEK_END)
    assert f.read() == b"c" * 5
    assert coalesce([(500, 600), (0, 10), (20, 30)], gap=15) == [(0, 30), (500, 600)]


def test_datafolio_written_bundle_table(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    import datafolio

    from aiofolio.testing.dfbundles import datafolio_s3_location

    frame = pd.DataFrame(np.random.default_rng(3).random((40_000, 20)), columns=COLS[:20])
    location = datafolio_s3_location(moto_server.endpoint_url, s3_bucket, "df-partial")
    datafolio.DataFolio(location).add("table", frame)
    url = f"s3://{s3_bucket}/df-partial"
    folio = DataFolio(
        url, storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url)
    )
    item = folio.get_item("table")
    assert item.checksum is None  # datafolio writes "checksum": null to the cloud
    path = f"/{s3_bucket}/df-partial/{payload_path(item)}"
    got = folio.get("table", columns=["c002", "c011"])
    pd.testing.assert_frame_equal(got, frame[["c002", "c011"]])
    size = fault_proxy.stats.bytes_served(path)
    assert 0 < size < 0.2 * 40_000 * 20 * 8
    assert "c019" in folio.get_schema("table").names
    pd.testing.assert_frame_equal(folio.get("table"), frame)


def test_a_footer_longer_than_the_first_read_is_read_again(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    names = [f"wide_column_{i:04d}" for i in range(1500)]
    frame = pd.DataFrame(np.random.default_rng(5).random((1_000, len(names))), columns=names)
    url = f"s3://{s3_bucket}/wide"
    DataFolio(url, storage_options=moto_server.storage_options()).add("wide", frame)
    options = moto_server.storage_options(endpoint_url=fault_proxy.url)
    folio = DataFolio(url, storage_options=options)
    item = folio.get_item("wide")
    path = f"/{s3_bucket}/wide/{payload_path(item)}"
    assert folio.get_schema("wide").names[:3] == names[:3]
    gets = fault_proxy.stats.records(path, method="GET")
    assert len(gets) == 2  # the 64 KiB tail, then the rest of the footer
    assert fault_proxy.stats.bytes_served(path) > FOOTER_READ
    assert all(r.headers.get("If-Match") for r in gets[1:])
    pick = [names[3], names[1400]]
    pd.testing.assert_frame_equal(folio.get("wide", columns=pick), frame[pick])
    assert item.size_bytes is not None
    assert fault_proxy.stats.bytes_served(path) < 0.2 * item.size_bytes


def test_read_only_cache_mode_writes_nothing(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    folio = _reader(big, moto_server, fault_proxy, cache_mode="read-only")
    pd.testing.assert_frame_equal(folio.get("big", columns=PICK), big.frame[PICK])
    assert fault_proxy.stats.bytes_served(_path(big)) <= 0.05 * big.size
    assert _partial_files() == []


def test_offline_serves_cached_columns_and_refuses_the_rest(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    _reader(big, moto_server, fault_proxy).get("big", columns=PICK)
    requests = fault_proxy.stats.requests()
    offline = _reader(big, moto_server, fault_proxy, cache_mode="offline")
    pd.testing.assert_frame_equal(offline.get("big", columns=PICK), big.frame[PICK])
    assert "c001" in offline.get_schema("big").names
    with pytest.raises(NotCachedError):
        offline.get("big", columns=["c001"])
    assert fault_proxy.stats.requests() == requests


async def test_concurrent_column_reads_fetch_once(
    big: Big, moto_server: MotoServer, fault_proxy: FaultServer
) -> None:
    import asyncio

    folio = _reader(big, moto_server, fault_proxy)
    got = await asyncio.gather(*(folio.aget("big", columns=PICK) for _ in range(4)))
    for frame in got:
        pd.testing.assert_frame_equal(frame, big.frame[PICK])
    assert fault_proxy.stats.requests(_path(big)) == 1 + len(PICK)  # footer + two chunks


def test_a_new_revision_drops_the_old_partial(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    rng = np.random.default_rng(9)
    first = pd.DataFrame(rng.random((20_000, 10)), columns=COLS[:10])
    second = first * 2.0
    url = f"s3://{s3_bucket}/revisions"
    writer = DataFolio(url, storage_options=moto_server.storage_options())
    writer.add("t", first)
    options = moto_server.storage_options(endpoint_url=fault_proxy.url)
    folio = DataFolio(url, storage_options=options, cache_ttl=0)
    pd.testing.assert_frame_equal(folio.get("t", columns=["c001"]), first[["c001"]])
    old = {p.name: p.read_bytes() for p in _partial_files()}
    writer.add("t", second, overwrite=True)
    pd.testing.assert_frame_equal(folio.get("t", columns=["c001"]), second[["c001"]])
    new = {p.name: p.read_bytes() for p in _partial_files()}
    assert old
    assert new
    assert all(old.get(name) != data for name, data in new.items())  # no old piece kept
