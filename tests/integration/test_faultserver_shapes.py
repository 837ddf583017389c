"""The fault server's misbehaving-server faults, at the HTTP level (raw aiohttp and boto3).

``ignore_if_match``, ``encoding``, ``ignore_range``, ``chunked`` and ``weak_etag``, locally and
(where they apply) through the proxy in front of moto; each request's headers are recorded.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib

import aiohttp
import pytest
from botocore.exceptions import ClientError

from aiofolio.testing import Fault, FaultServer, MotoServer

pytestmark = pytest.mark.timeout(60)

DATA = bytes(range(256)) * 64  # 16 KiB
NEW = DATA[::-1]
IDENTITY = {"Accept-Encoding": "identity"}


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data).hexdigest()}"'


async def test_ignore_if_match_serves_the_current_object(http_server: FaultServer) -> None:
    old = http_server.put("/o", DATA)
    http_server.put("/o", NEW)
    async with aiohttp.ClientSession() as session:
        async with session.get(http_server.url_for("/o"), headers={"If-Match": old}) as r:
            assert r.status == 412  # a well-behaved server refuses the stale pin
        http_server.set_fault("/o", Fault(ignore_if_match=True))
        headers = {"If-Match": old, "Range": "bytes=0-99"}
        async with session.get(http_server.url_for("/o"), headers=headers) as r:
            assert r.status == 206
            assert r.headers["ETag"] == _etag(NEW)
            assert await r.read() == NEW[:100]
        stale_put = {"If-Match": old}
        async with session.put(http_server.url_for("/o"), data=b"x", headers=stale_put) as r:
            assert r.status == 412  # writes still honour it
    records = http_server.stats.records("/o")
    assert records[1].fault == "ignore-if-match"
    assert records[1].headers["If-Match"] == old


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_encoding_whatever_the_client_accepts(http_server: FaultServer, coding: str) -> None:
    http_server.put("/e", DATA)
    http_server.set_fault("/e", Fault(encoding=coding))
    decode = gzip.decompress if coding == "gzip" else zlib.decompress
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(http_server.url_for("/e"), headers=IDENTITY) as r:
            assert r.status == 200
            assert r.headers["Content-Encoding"] == coding
            body = await r.read()
            assert int(r.headers["Content-Length"]) == len(body)
            assert decode(body) == DATA
        ranged = {**IDENTITY, "Range": "bytes=100-199"}
        async with session.get(http_server.url_for("/e"), headers=ranged) as r:
            assert r.status == 206
            assert r.headers["Content-Range"] == f"bytes 100-199/{len(DATA)}"
            assert decode(await r.read()) == DATA[100:200]
    assert http_server.stats.records("/e")[0].headers["Accept-Encoding"] == "identity"


async def test_ignore_range_and_chunked(http_server: FaultServer) -> None:
    http_server.put("/r", DATA)
    http_server.set_fault("/r", Fault(ignore_range=True, chunked=True))
    ranged = {"Range": "bytes=5-9"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(http_server.url_for("/r"), headers=ranged) as r,
    ):
        assert r.status == 200
        assert "Content-Range" not in r.headers
        assert "Content-Length" not in r.headers
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert await r.read() == DATA
    (record,) = http_server.stats.records("/r")
    assert record.fault == "ignore-range,chunked"
    assert record.bytes_sent == len(DATA)


async def test_weak_etag(http_server: FaultServer) -> None:
    http_server.put("/w", DATA)
    http_server.set_fault("/w", Fault(weak_etag=True))
    weak = f"W/{_etag(DATA)}"
    async with aiohttp.ClientSession() as session:
        async with session.head(http_server.url_for("/w")) as r:
            assert r.headers["ETag"] == weak
        async with session.get(http_server.url_for("/w"), headers={"If-None-Match": weak}) as r:
            assert r.status == 304  # weak comparison
        strong = {"If-None-Match": _etag(DATA)}
        async with session.get(http_server.url_for("/w"), headers=strong) as r:
            assert r.status == 304
        for pin in (weak, _etag(DATA)):
            async with session.get(http_server.url_for("/w"), headers={"If-Match": pin}) as r:
                assert r.status == 412  # strong comparison never matches a weak tag
        async with session.get(http_server.url_for("/w"), headers={"If-Match": "*"}) as r:
            assert r.status == 200


def test_proxy_shapes_in_front_of_moto(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    moto_server.put_object(s3_bucket, "k", DATA)
    stale = moto_server.put_object(s3_bucket, "stale", DATA)
    moto_server.put_object(s3_bucket, "stale", NEW)
    client = moto_server.boto3_client(endpoint_url=fault_proxy.url)
    try:
        with pytest.raises(ClientError):
            client.get_object(Bucket=s3_bucket, Key="stale", IfMatch=stale)
        fault_proxy.set_fault(f"/{s3_bucket}/stale", Fault(ignore_if_match=True))
        got = client.get_object(Bucket=s3_bucket, Key="stale", IfMatch=stale, Range="bytes=0-9")
        assert got["Body"].read() == NEW[:10]
        assert got["ETag"] == _etag(NEW)

        fault_proxy.set_fault(
            f"/{s3_bucket}/k", Fault(weak_etag=True, ignore_range=True, chunked=True)
        )
        got = client.get_object(Bucket=s3_bucket, Key="k", Range="bytes=0-9")
        assert got["ETag"] == f"W/{_etag(DATA)}"
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200  # the Range was dropped
        assert "content-length" not in got["ResponseMetadata"]["HTTPHeaders"]
        assert got["Body"].read() == DATA
    finally:
        client.close()
    with pytest.raises(ValueError, match="local mode"):
        fault_proxy.set_fault("*", Fault(encoding="gzip"))
