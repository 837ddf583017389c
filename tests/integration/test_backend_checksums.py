"""Checksums the stores offer, parsed into ``ObjectStat`` (``md5``, ``md5_source``, ``crc32c``).

* The header parsers, on header strings as servers send them: S3 ETags (single-part, multipart,
  SSE-KMS, SSE-C, SSE-S3) and ``x-amz-checksum-crc32c`` (full-object vs composite), GCS
  ``x-goog-hash``, HTTP ``Content-MD5`` (RFC 1864's own example), ``Digest`` (RFC 3230) and
  ``Repr-Digest`` (RFC 9530), weak and strong ETags, ``Content-Range``.
* moto: a single-part object's ETag is its MD5 (``"etag"``); a multipart or SSE-KMS one states
  none; a CRC32C-checksummed upload's CRC32C is reported by ``stat``.
* FakeGCS and gcp-storage-emulator: ``md5Hash``/``crc32c`` (``"store"``), also on the first
  answer of a read (FakeGCS's ``x-goog-hash``).
* an aiohttp server that sets each HTTP header: ``stat`` and ``open_range`` report the MD5 and
  where it came from, and never take a part's Content-MD5 for the object's.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator

import anyio.to_thread
import pytest
from aiohttp import web

from aiofolio.backends import RetryPolicy, make_backend
from aiofolio.backends._headers import (
    content_codings,
    crc32c_from_s3,
    goog_hashes,
    http_digests,
    md5_from_s3_etag,
    parse_content_range,
    parse_etag,
    quote_etag,
    same_entity,
)
from aiofolio.testing import GcsEmulator, MotoServer
from aiofolio.testing.fakegcs import FakeGCS, crc32c

pytestmark = pytest.mark.timeout(90)

HELLO = b"hello world"
HELLO_MD5 = "5eb63bbbe01eeed093cb22bb8f5acdc3"
HELLO_MD5_B64 = "XrY7u+Ae7tCTyyK7j1rNww=="
HELLO_CRC = "yZRlqg=="
SHA = "X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE="


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _crc(data: bytes) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


def _policy() -> RetryPolicy:
    return RetryPolicy(attempts=2, base=0.01, cap=0.05, max_time=10.0)


# -- parsers ------------------------------------------------------------------------------------


def test_s3_etag_is_an_md5_only_when_single_part_and_not_kms_or_sse_c() -> None:
    assert md5_from_s3_etag('"5eb63bbbe01eeed093cb22bb8f5acdc3"') == HELLO_MD5
    assert md5_from_s3_etag("5EB63BBBE01EEED093CB22BB8F5ACDC3") == HELLO_MD5
    assert md5_from_s3_etag('"5eb63bbbe01eeed093cb22bb8f5acdc3-2"') is None  # multipart
    assert md5_from_s3_etag('"d41d8cd98f00b204e9800998ecf8427e-12"') is None
    assert md5_from_s3_etag('"not-an-md5"') is None
    assert md5_from_s3_etag(None) is None
    sse = '"5eb63bbbe01eeed093cb22bb8f5acdc3"'
    assert md5_from_s3_etag(sse, server_side_encryption="AES256") == HELLO_MD5  # SSE-S3 keeps it
    assert md5_from_s3_etag(sse, server_side_encryption="aws:kms") is None
    assert md5_from_s3_etag(sse, server_side_encryption="aws:kms:dsse") is None
    assert md5_from_s3_etag(sse, sse_customer_algorithm="AES256") is None  # SSE-C


def test_s3_crc32c_only_for_a_full_object_checksum() -> None:
    assert crc32c_from_s3(HELLO_CRC) == HELLO_CRC
    assert crc32c_from_s3(HELLO_CRC, "FULL_OBJECT") == HELLO_CRC
    assert crc32c_from_s3(HELLO_CRC, "COMPOSITE") is None
    assert crc32c_from_s3("yZRlqg==-3") is None  # a checksum of part checksums
    assert crc32c_from_s3("not base64!") is None
    assert crc32c_from_s3("AAAAAAAA") is None  # 6 bytes: not a CRC32C
    assert crc32c_from_s3(None) is None


def test_goog_hash_in_one_header_or_several() -> None:
    both = f"crc32c={HELLO_CRC},md5={HELLO_MD5_B64}"
    assert goog_hashes([both]) == (HELLO_MD5, HELLO_CRC)
    assert goog_hashes([f"crc32c={HELLO_CRC}", f"md5={HELLO_MD5_B64}"]) == (HELLO_MD5, HELLO_CRC)
    assert goog_hashes([f"crc32c={HELLO_CRC}"]) == (None, HELLO_CRC)  # composite objects
    assert goog_hashes(["md5=garbage"]) == (None, None)


def test_http_digest_headers() -> None:
    # RFC 1864's example: "Check Integrity!"
    assert http_digests({"Content-MD5": "Q2hlY2sgSW50ZWdyaXR5IQ=="}, whole_body=True) == (
        "436865636b20496e7465677269747921",
        "content-md5",
    )
    # Content-MD5 is the digest of the body sent: a part's, not the object's.
    assert http_digests({"Content-MD5": HELLO_MD5_B64}, whole_body=False) == (None, None)
    digest = {"Digest": f"SHA-256={SHA}, MD5={HELLO_MD5_B64}"}
    assert http_digests(digest, whole_body=False) == (HELLO_MD5, "digest")
    assert http_digests({"Digest": f"md5={HELLO_MD5_B64}"}, whole_body=True) == (
        HELLO_MD5,
        "digest",
    )
    assert http_digests({"Digest": f"SHA-256={SHA}"}, whole_body=True) == (None, None)
    repr_digest = {"Repr-Digest": f"sha-256=:{SHA}:, md5=:{HELLO_MD5_B64}:"}
    assert http_digests(repr_digest, whole_body=False) == (HELLO_MD5, "digest")
    assert http_digests({"Repr-Digest": f"md5={HELLO_MD5_B64}"}, whole_body=True) == (None, None)
    assert http_digests({"Content-MD5": "bad"}, whole_body=True) == (None, None)


def test_etags_ranges_and_codings() -> None:
    assert parse_etag('"abc"') == "abc"
    assert parse_etag('W/"abc"') == "W/abc"
    assert parse_etag('"6b0fbce6-17"') == "6b0fbce6-17"  # nginx
    assert parse_etag("") is None
    assert quote_etag("abc") == '"abc"'
    assert quote_etag("W/abc") == 'W/"abc"'
    assert same_entity("W/abc", "abc")
    assert not same_entity("abc", "abd")
    assert parse_content_range("bytes 0-9/100") == (0, 10, 100)
    assert parse_content_range("bytes 90-99/*") == (90, 100, None)
    assert parse_content_range("bytes */100") == (None, None, 100)
    assert parse_content_range("bytes 10-10/100") == (10, 11, 100)
    assert parse_content_range("bytes 100-99/100") == (100, 100, 100)  # the emulator's "empty"
    assert parse_content_range("bytes 5-2/100") is None
    assert parse_content_range("bytes 0-200/100") is None
    assert parse_content_range("items 0-9/100") is None
    assert content_codings("gzip") == ["gzip"]
    assert content_codings("identity") == []
    assert content_codings("gzip, br") == ["gzip", "br"]
    assert content_codings(None) == []


# -- moto ---------------------------------------------------------------------------------------


async def test_moto_md5_and_crc32c(moto_server: MotoServer, s3_bucket: str) -> None:
    client = moto_server.client
    data = os.urandom(70_000)
    await anyio.to_thread.run_sync(moto_server.put_object, s3_bucket, "single.bin", data)
    await anyio.to_thread.run_sync(
        lambda: client.put_object(
            # botocore computes CRC32C only with awscrt: the value is given (moto checks it)
            Bucket=s3_bucket,
            Key="crc.bin",
            Body=data,
            ChecksumAlgorithm="CRC32C",
            ChecksumCRC32C=_crc(data),
        )
    )
    await anyio.to_thread.run_sync(
        lambda: client.put_object(
            Bucket=s3_bucket, Key="kms.bin", Body=data, ServerSideEncryption="aws:kms"
        )
    )
    part = os.urandom(5 * 1024 * 1024)

    def multipart() -> None:
        up = client.create_multipart_upload(Bucket=s3_bucket, Key="multi.bin")
        parts = []
        for number, body in ((1, part), (2, b"tail")):
            r = client.upload_part(
                Bucket=s3_bucket,
                Key="multi.bin",
                UploadId=up["UploadId"],
                PartNumber=number,
                Body=body,
            )
            parts.append({"ETag": r["ETag"], "PartNumber": number})
        client.complete_multipart_upload(
            Bucket=s3_bucket,
            Key="multi.bin",
            UploadId=up["UploadId"],
            MultipartUpload={"Parts": parts},
        )

    await anyio.to_thread.run_sync(multipart)
    backend = make_backend("s3://" + s3_bucket, moto_server.storage_options(), retry=_policy())
    base = f"s3://{s3_bucket}/"
    try:
        single = await backend.stat(base + "single.bin")
        assert single.md5 == _md5(data)
        assert single.md5_source == "etag"
        crc = await backend.stat(base + "crc.bin")
        assert crc.crc32c == _crc(data)
        assert crc.md5 == _md5(data)
        kms = await backend.stat(base + "kms.bin")
        assert kms.md5 is None  # an SSE-KMS ETag is not the MD5, whatever it looks like
        assert kms.md5_source is None
        multi = await backend.stat(base + "multi.bin")
        assert multi.md5 is None
        assert multi.etag is not None
        assert multi.etag.endswith("-2")
        async with backend.open_range(base + "single.bin", 0, 100) as reader:
            assert reader.info.md5 == _md5(data)  # the ETag describes the object, not the range
            assert reader.info.md5_source == "etag"
        async with backend.open_range(base + "kms.bin", 0, 100) as reader:
            assert reader.info.md5 is None
        listed = {s.url: s for s in await backend.list(base)}
        assert listed[base + "single.bin"].md5 == _md5(data)
        assert listed[base + "multi.bin"].md5 is None
    finally:
        await backend.aclose()


# -- GCS ----------------------------------------------------------------------------------------


async def test_fakegcs_and_emulator_hashes(gcs_server: GcsEmulator, gcs_bucket: str) -> None:
    data = os.urandom(40_000)
    with FakeGCS() as fake:
        fake.create_bucket("h")
        fake.put_object("h", "o.bin", data)
        backend = make_backend("gs://h", fake.storage_options(), retry=_policy())
        try:
            st = await backend.stat("gs://h/o.bin")
            assert (st.md5, st.md5_source, st.crc32c) == (_md5(data), "store", _crc(data))
            async with backend.open_range("gs://h/o.bin", 100, 200) as reader:
                info = reader.info  # x-goog-hash: the whole object's, on a range too
                assert (info.md5, info.md5_source, info.crc32c) == (_md5(data), "store", _crc(data))
                assert info.token == st.token
        finally:
            await backend.aclose()
    emulated = make_backend("gs://" + gcs_bucket, gcs_server.storage_options(), retry=_policy())
    url = f"gs://{gcs_bucket}/o.bin"
    try:
        await emulated.put(url, data)
        st = await emulated.stat(url)
        assert (st.md5, st.md5_source, st.crc32c) == (_md5(data), "store", _crc(data))
    finally:
        await emulated.aclose()


# -- HTTP headers -------------------------------------------------------------------------------


@pytest.fixture
async def digest_server() -> AsyncIterator[str]:
    """An aiohttp server: ``/<header>/obj`` serves HELLO with that digest header set."""
    headers = {
        "content-md5": {"Content-MD5": HELLO_MD5_B64},
        "digest": {"Digest": f"SHA-256={SHA}, MD5={HELLO_MD5_B64}"},
        "repr-digest": {"Repr-Digest": f"sha-256=:{SHA}:, md5=:{HELLO_MD5_B64}:"},
        "goog": {"x-goog-hash": f"crc32c={HELLO_CRC},md5={HELLO_MD5_B64}"},
        "none": {},
    }

    async def handle(request: web.Request) -> web.StreamResponse:
        extra = dict(headers[request.match_info["kind"]])
        extra["ETag"] = '"v1"'
        rng = request.headers.get("Range")
        if rng:
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start, end = int(first), min(len(HELLO), int(last) + 1 if last else len(HELLO))
            if "Content-MD5" in extra:  # the digest of the part, as RFC 1864 says
                part = hashlib.md5(HELLO[start:end]).digest()
                extra["Content-MD5"] = base64.b64encode(part).decode()
            extra["Content-Range"] = f"bytes {start}-{end - 1}/{len(HELLO)}"
            return web.Response(status=206, body=HELLO[start:end], headers=extra)
        return web.Response(body=HELLO, headers=extra)

    app = web.Application()
    app.router.add_route("*", "/{kind}/obj", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("kind", "source", "on_ranges"),
    [
        ("content-md5", "content-md5", False),
        ("digest", "digest", True),
        ("repr-digest", "digest", True),
        ("goog", "store", True),
        ("none", None, False),
    ],
)
async def test_http_stat_and_reader_report_stated_digests(
    digest_server: str, kind: str, source: str | None, on_ranges: bool
) -> None:
    backend = make_backend(digest_server, retry=_policy())
    url = f"{digest_server}/{kind}/obj"
    expected = HELLO_MD5 if source is not None else None
    try:
        st = await backend.stat(url)
        assert (st.md5, st.md5_source) == (expected, source)
        assert st.token == "v1"
        if kind == "goog":
            assert st.crc32c == HELLO_CRC
        async with backend.open_range(url) as reader:
            assert (reader.info.md5, reader.info.md5_source) == (expected, source)
            assert await reader.read() == HELLO
        async with backend.open_range(url, 2, 5) as reader:
            ranged = HELLO_MD5 if on_ranges else None
            assert reader.info.md5 == ranged  # never the part's Content-MD5
            assert await reader.read() == HELLO[2:5]
        result = await backend.fetch_if_changed(url, None)
        assert not isinstance(result, type(None))
        data, fetched = result  # type: ignore[misc]
        assert data == HELLO
        assert (fetched.md5, fetched.md5_source) == (expected, source)
    finally:
        await backend.aclose()
