"""Large payloads download as pinned parallel ranges, verified while they land."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from aiofolio import ChecksumMismatchError, DataFolio
from aiofolio.bundle import payload_path
from aiofolio.testing import Fault, FaultServer, MotoServer

MiB = 1024 * 1024


def _bundle(moto_server: MotoServer, s3_bucket: str) -> tuple[str, np.ndarray]:
    data = np.random.default_rng(7).integers(0, 255, size=5 * MiB + 12345, dtype=np.uint8)
    url = f"s3://{s3_bucket}/big"
    DataFolio(url, storage_options=moto_server.storage_options(), cache_enabled=False).add(
        "big", data
    )
    return url, data


def _reader(url: str, moto_server: MotoServer, proxy: FaultServer, streams: int = 4) -> DataFolio:
    return DataFolio(
        url,
        storage_options=moto_server.storage_options(endpoint_url=proxy.url),
        parallel_threshold="1MiB",
        chunk_size="1MiB",
        parallel_downloads=streams,
    )


def test_large_item_is_fetched_as_parallel_pinned_ranges(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    url, data = _bundle(moto_server, s3_bucket)
    folio = _reader(url, moto_server, fault_proxy)
    key = f"/{s3_bucket}/big/{payload_path(folio.get_item('big'))}"
    fault_proxy.stats.reset()
    np.testing.assert_array_equal(folio.get("big"), data)
    records = [r for r in fault_proxy.stats.records(path=key) if r.method == "GET"]
    assert len(records) == 6  # ceil((5 MiB + 12345 + npy header) / 1 MiB)
    assert all(r.range for r in records)
    # No HEAD: the first ranged GET states the size and the ETag the others are pinned to.
    assert fault_proxy.stats.requests(key, "HEAD") == 0
    assert fault_proxy.stats.bytes_served(key) == folio.cache_status("big")["size_bytes"]
    blob = folio.get_path("big")
    with open(blob, "rb") as fh:
        assert hashlib.md5(fh.read()).hexdigest() == folio.item_info("big")["checksum"]
    assert folio.item_info("big")["size_bytes"] == folio.cache_status("big")["size_bytes"]


def test_a_replaced_payload_never_yields_mixed_bytes(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    url, _ = _bundle(moto_server, s3_bucket)
    # Two streams: chunk 2 starts only after chunk 0 finished, i.e. after the replacement, so
    # its request (pinned to the old ETag) must be refused; both attempts then fail to verify.
    folio = _reader(url, moto_server, fault_proxy, streams=2)
    key = f"/{s3_bucket}/big/{payload_path(folio.get_item('big'))}"
    other = bytes(reversed(fault_proxy_bytes(moto_server, key)))
    # Half-way through the first ranged GET, the stored object is replaced by other bytes.
    # Every body is slowed to 4 MB/s (1 MiB: ~0.26 s), so the replacement (done ~0.13 s in,
    # while that GET waits) has landed before chunk 2 starts, however fast moto answers.
    slow = 4_000_000.0
    fault_proxy.set_fault(key, Fault(bandwidth=slow, methods={"GET"}))
    fault_proxy.set_fault(
        key,
        Fault(replace_with=other, replace_after=MiB // 2, bandwidth=slow, times=1, methods={"GET"}),
    )
    with pytest.raises(ChecksumMismatchError):
        folio.get("big")
    cache = folio.cache_status("big")
    assert cache["cached"] is False
    statuses = [r.status for r in fault_proxy.stats.records(path=key) if r.method == "GET"]
    assert 412 in statuses  # the pin refused the new version mid-download


def fault_proxy_bytes(moto_server: MotoServer, key: str) -> bytes:
    bucket, _, name = key.lstrip("/").partition("/")
    body = moto_server.boto3_client().get_object(Bucket=bucket, Key=name)["Body"]
    return bytes(body.read())
