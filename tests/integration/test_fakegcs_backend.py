"""GCSBackend against FakeGCS: the precondition, range, upload and retry paths the emulator skips.

Owns the tests of :class:`aiofolio.backends.gcs.GCSBackend` that need a faithful GCS JSON API
(generation preconditions, suffix ranges, resumable sessions, pagination, injected failures),
and a few checks of :class:`aiofolio.testing.fakegcs.FakeGCS` itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from aiofolio.backends import gcs as gcs_module
from aiofolio.backends.base import NOT_MODIFIED, ObjectStat
from aiofolio.backends.gcs import GCSBackend
from aiofolio.backends.retry import RetryingBackend, RetryPolicy
from aiofolio.errors import (
    PreconditionFailedError,
    RemoteError,
    RemoteNotFoundError,
    TransientError,
)
from aiofolio.testing.fakegcs import FakeGCS, _crc32c_python, crc32c, gcs_etag

MIB = 1024 * 1024
DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGCS]:
    with FakeGCS() as server:
        yield server


@pytest.fixture
def bucket(fake: FakeGCS) -> str:
    """A fresh bucket; the fake's counts, faults and page size are reset."""
    fake.stats.reset()
    fake.clear_faults()
    fake.page_size = 1000
    fake.drop_headers = set()
    name = f"b-{uuid.uuid4().hex[:12]}"
    fake.create_bucket(name)
    return name


@pytest.fixture
async def backend(fake: FakeGCS) -> AsyncIterator[GCSBackend]:
    b = GCSBackend(fake.storage_options())
    try:
        yield b
    finally:
        await b.aclose()


async def _no_sleep(_: float) -> None:
    return None


def _retrying(backend: GCSBackend) -> RetryingBackend:
    return RetryingBackend(backend, RetryPolicy(attempts=5, base=0.0, sleep=_no_sleep))


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _crc_b64(data: bytes) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


# -- the fake itself --------------------------------------------------------------------------


def test_crc32c_and_etag_encoding_match_gcs() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert _crc32c_python(b"123456789") == 0xE3069283
    blob = os.urandom(4099)
    assert _crc32c_python(blob) == crc32c(blob)
    # Generation and etag of a real object, as GCS returned them.
    assert gcs_etag(1777369647609324, 1) == "COzr6/OhkJQDEAE="


async def test_fake_protocol_details(fake: FakeGCS, bucket: str) -> None:
    v1 = fake.put_object(bucket, "dir/obj", b"0123456789")
    v2 = fake.put_object(bucket, "dir/obj", b"abcdefghij")
    base = fake.endpoint_url
    meta_url = f"{base}/storage/v1/b/{bucket}/o/dir%2Fobj"
    media_url = f"{base}/download/storage/v1/b/{bucket}/o/dir%2Fobj"
    async with aiohttp.ClientSession() as s:
        async with s.get(media_url, params={"alt": "media"}, headers={"Range": "bytes=-3"}) as r:
            assert r.status == 206
            assert await r.read() == b"hij"
            assert r.headers["Content-Range"] == "bytes 7-9/10"
            assert r.headers["x-goog-generation"] == str(v2.generation)
            assert r.headers["x-goog-hash"] == f"crc32c={v2.crc32c_b64},md5={v2.md5_b64}"
        async with s.get(media_url, params={"alt": "media"}, headers={"Range": "bytes=10-"}) as r:
            assert r.status == 416
            assert r.headers["Content-Range"] == "bytes */10"
        old = {"alt": "media", "generation": str(v1.generation)}
        async with s.get(media_url, params=old) as r:
            assert (r.status, await r.read()) == (200, b"0123456789")
        async with s.get(media_url, params={"alt": "media", "generation": "1"}) as r:
            assert r.status == 404
        async with s.get(meta_url, params={"ifGenerationNotMatch": str(v2.generation)}) as r:
            assert r.status == 304
            assert r.headers["ETag"] == v2.etag
        async with s.get(meta_url, params={"ifGenerationMatch": str(v1.generation)}) as r:
            assert r.status == 412
            error = (await r.json())["error"]
            assert error["code"] == 412
            assert error["errors"][0]["reason"] == "conditionNotMet"
        async with s.get(f"{base}/storage/v1/b/{bucket}/o/missing") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == 404
        async with s.get(f"{base}/storage/v1/b/{bucket}/o/dir/obj") as r:  # unencoded "/"
            assert r.status == 200
        async with s.get(meta_url) as r:
            res = await r.json()
        assert res["size"] == "10"
        assert res["generation"] == str(v2.generation)
        assert res["etag"] == v2.etag
        assert res["md5Hash"] == v2.md5_b64
        assert res["updated"].endswith("Z")
    assert fake.stats.count("GET", "media") == 4
    assert fake.stats.count("GET", "metadata") == 5
    assert fake.stats.count(name="dir/obj") == 8  # all but the "missing" one


async def test_fake_resumable_session_and_status_query(fake: FakeGCS, bucket: str) -> None:
    base = fake.endpoint_url
    chunk = os.urandom(256 * 1024)
    async with aiohttp.ClientSession() as s:
        async with s.post(
            f"{base}/upload/storage/v1/b/{bucket}/o",
            params={"uploadType": "resumable", "name": "r.bin"},
            data=json.dumps({"contentType": "text/plain"}),
            headers={"Content-Type": "application/json"},
        ) as r:
            assert r.status == 200
            location = r.headers["Location"]
        async with s.put(location, headers={"Content-Range": "bytes */*"}) as r:
            assert r.status == 308
            assert "Range" not in r.headers
        # 256 KiB + 10 bytes in a non-final chunk: only the whole 256 KiB block is kept.
        async with s.put(
            location, data=chunk + b"x" * 10, headers={"Content-Range": "bytes 0-262153/*"}
        ) as r:
            assert r.status == 308
            assert r.headers["Range"] == "bytes=0-262143"
        async with s.put(location, data=b"y" * 20, headers={"Content-Range": "bytes 262154-*"}):
            pass  # malformed: 400, state unchanged
        async with s.put(
            location, data=b"end", headers={"Content-Range": "bytes 262144-262146/262147"}
        ) as r:
            assert r.status == 200
            res = await r.json()
        async with s.put(location, headers={"Content-Range": "bytes */262147"}) as r:
            assert r.status == 200  # a completed session answers with the object again
    assert res["size"] == str(len(chunk) + 3)
    assert res["contentType"] == "text/plain"
    assert fake.get_object(bucket, "r.bin").data == chunk + b"end"
    assert fake.open_uploads(bucket) == 0


# -- stat ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["plain.bin", "dir/sub/x.parquet", "we?rd #+&=%20 näme.txt"])
async def test_stat_fields(fake: FakeGCS, bucket: str, backend: GCSBackend, name: str) -> None:
    obj = fake.put_object(bucket, name, DATA, cache_control="no-store")
    st = await backend.stat(f"gs://{bucket}/{name}")
    assert st == ObjectStat(
        url=f"gs://{bucket}/{name}",
        size=len(DATA),
        etag=obj.etag,
        version=str(obj.generation),
        md5=_md5(DATA),
        md5_source="store",
        crc32c=_crc_b64(DATA),
        last_modified=st.last_modified,
        token=str(obj.generation),
    )
    assert st.last_modified is not None
    assert abs(st.last_modified - obj.created) < 0.002
    assert st.token == str(obj.generation)
    assert fake.stats.count("GET", "metadata", name=name) == 1


async def test_stat_missing_and_exists(bucket: str, backend: GCSBackend, fake: FakeGCS) -> None:
    with pytest.raises(RemoteNotFoundError) as info:
        await backend.stat(f"gs://{bucket}/nope")
    assert info.value.status == 404
    assert await backend.exists(f"gs://{bucket}/nope") is False
    fake.put_object(bucket, "yes", b"1")
    assert await backend.exists(f"gs://{bucket}/yes") is True


# -- reads --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "expected", "status"),
    [
        (0, None, DATA, 200),
        (0, 10, DATA[:10], 206),
        (5, 17, DATA[5:17], 206),
        (1000, None, DATA[1000:], 206),
        (1020, 10**9, DATA[1020:], 206),  # an end past EOF is clamped
        (len(DATA) - 1, None, DATA[-1:], 206),
        (len(DATA), None, b"", 416),  # start at EOF
        (len(DATA) + 50, None, b"", 416),  # start past EOF
        (len(DATA) + 50, len(DATA) + 60, b"", 416),
    ],
)
async def test_read_range(
    fake: FakeGCS,
    bucket: str,
    backend: GCSBackend,
    start: int,
    end: int | None,
    expected: bytes,
    status: int,
) -> None:
    fake.put_object(bucket, "r.bin", DATA)
    assert await backend.read_range(f"gs://{bucket}/r.bin", start, end) == expected
    (req,) = fake.stats.requests
    assert (req.method, req.kind, req.status) == ("GET", "media", status)


async def test_read_range_zero_length_sends_nothing(
    fake: FakeGCS, bucket: str, backend: GCSBackend
) -> None:
    fake.put_object(bucket, "r.bin", DATA)
    assert await backend.read_range(f"gs://{bucket}/r.bin", 7, 7) == b""
    assert await backend.read_range(f"gs://{bucket}/r.bin", 9, 3) == b""
    assert fake.stats.total == 0


async def test_read_range_missing(bucket: str, backend: GCSBackend) -> None:
    with pytest.raises(RemoteNotFoundError):
        await backend.read_range(f"gs://{bucket}/missing", 0, 10)


async def test_if_match_pin_detects_replacement(
    fake: FakeGCS, bucket: str, backend: GCSBackend, tmp_path: Path
) -> None:
    url = f"gs://{bucket}/pinned.bin"
    fake.put_object(bucket, "pinned.bin", b"version one")
    pin = (await backend.stat(url)).version
    assert pin is not None
    assert await backend.read_range(url, 0, 7, if_match=pin) == b"version"

    fake.put_object(bucket, "pinned.bin", b"version two!")  # replaced between requests
    with pytest.raises(PreconditionFailedError) as info:
        await backend.read_range(url, 8, None, if_match=pin)
    assert info.value.status == 412
    with pytest.raises(PreconditionFailedError), (tmp_path / "out").open("wb") as fh:
        await backend.read_into(url, fh, if_match=pin)
    # Not retried: a 412 is not transient.
    fake.stats.reset()
    with pytest.raises(PreconditionFailedError):
        await _retrying(backend).read_range(url, 0, 3, if_match=pin)
    assert fake.stats.count() == 1

    new_pin = (await backend.stat(url)).version
    assert new_pin is not None
    assert new_pin != pin
    assert await backend.read_range(url, 8, None, if_match=new_pin) == b"two!"


# -- conditional fetch -------------------------------------------------------------------------


async def test_fetch_if_changed_not_modified_in_one_request(
    fake: FakeGCS, bucket: str, backend: GCSBackend
) -> None:
    obj = fake.put_object(bucket, "m.json", b'{"a": 1}')
    fake.stats.reset()
    assert await backend.fetch_if_changed(f"gs://{bucket}/m.json", str(obj.generation)) is (
        NOT_MODIFIED
    )
    assert fake.stats.count() == 1
    (req,) = fake.stats.requests
    assert (req.method, req.kind, req.status) == ("GET", "media", 304)
    assert req.query["ifGenerationNotMatch"] == str(obj.generation)


async def test_fetch_if_changed_returns_new_bytes_and_stat(
    fake: FakeGCS, bucket: str, backend: GCSBackend
) -> None:
    url = f"gs://{bucket}/m.json"
    old = fake.put_object(bucket, "m.json", b'{"a": 1}')
    new = fake.put_object(bucket, "m.json", b'{"a": 2, "b": 3}')
    fake.stats.reset()
    result = await backend.fetch_if_changed(url, str(old.generation))
    assert result is not NOT_MODIFIED
    data, st = result
    assert data == b'{"a": 2, "b": 3}'
    assert st.url == url
    assert st.size == len(data)
    assert st.version == str(new.generation)
    assert st.md5 == _md5(data)
    assert st.crc32c == _crc_b64(data)
    assert st.etag == new.etag
    assert fake.stats.count() == 1

    first = await backend.fetch_if_changed(url, None)  # no token: an unconditional fetch
    assert first is not NOT_MODIFIED
    assert first[0] == data
    assert "ifGenerationNotMatch" not in fake.stats.requests[-1].query


async def test_fetch_if_changed_with_a_token_that_is_not_a_generation(
    fake: FakeGCS, bucket: str, backend: GCSBackend
) -> None:
    # GCS answers 400 to a non-numeric ifGenerationNotMatch; the backend must not send one.
    fake.put_object(bucket, "m.json", b"{}")
    result = await backend.fetch_if_changed(f"gs://{bucket}/m.json", "2:1700000000.0")
    assert result is not NOT_MODIFIED
    assert result[0] == b"{}"


async def test_fetch_if_changed_without_generation_header(
    fake: FakeGCS, bucket: str, backend: GCSBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The emulator sends no x-goog-generation: the stat then comes from a second request, and
    # must describe the bytes returned, not a generation written in between.
    fake.drop_headers = {"x-goog-generation"}
    url = f"gs://{bucket}/m.json"
    old = fake.put_object(bucket, "m.json", b"one")
    new = fake.put_object(bucket, "m.json", b"two")
    result = await backend.fetch_if_changed(url, str(old.generation))
    assert result is not NOT_MODIFIED
    assert result[0] == b"two"
    assert result[1].version == result[1].token == str(new.generation)
    assert fake.stats.counts == {("GET", "media"): 1, ("GET", "metadata"): 1}

    real_stat = backend.stat
    replaced: list[int] = []

    async def stat_after_a_write(u: str) -> ObjectStat:
        if not replaced:  # another writer wins the race once
            replaced.append(fake.put_object(bucket, "m.json", b"three!").generation)
        return await real_stat(u)

    monkeypatch.setattr(backend, "stat", stat_after_a_write)
    with pytest.raises(TransientError):
        await backend.fetch_if_changed(url, str(old.generation))
    result = await _retrying(backend).fetch_if_changed(url, str(old.generation))
    assert result is not NOT_MODIFIED
    assert result[0] == b"three!"
    assert result[1].version == str(replaced[0])


async def test_fetch_if_changed_missing(bucket: str, backend: GCSBackend) -> None:
    with pytest.raises(RemoteNotFoundError):
        await backend.fetch_if_changed(f"gs://{bucket}/none.json", "123")


# -- puts ---------------------------------------------------------------------------------------


async def test_put_small_is_multipart(fake: FakeGCS, bucket: str, backend: GCSBackend) -> None:
    data = os.urandom(100_000)
    url = f"gs://{bucket}/dir/small.bin"
    st = await backend.put(
        url,
        data,
        content_md5=_md5(data),
        cache_control="public, max-age=60",
        content_type="application/x-test",
    )
    assert st.md5 == _md5(data)
    assert st.size == len(data)
    assert st.crc32c == _crc_b64(data)
    assert fake.stats.counts == {("POST", "upload-multipart"): 1}
    assert fake.stats.requests[0].name == "dir/small.bin"
    obj = fake.get_object(bucket, "dir/small.bin")
    assert obj.data == data
    assert obj.content_type == "application/x-test"
    assert obj.cache_control == "public, max-age=60"
    assert st.version == str(obj.generation)
    stat = await backend.stat(url)
    assert stat.md5 == _md5(data)
    assert stat == st


async def test_put_body_that_looks_like_multipart(
    fake: FakeGCS, bucket: str, backend: GCSBackend
) -> None:
    # A payload holding a captured multipart body (with the old fixed boundary) round-trips.
    data = b"x\r\n--aiofolio-boundary-7f3a9c--\r\ny\r\n--aiofolio-boundary-7f3a9c\r\n"
    st = await backend.put(f"gs://{bucket}/mp.bin", data)
    assert st.md5 == _md5(data)
    assert fake.get_object(bucket, "mp.bin").data == data


async def test_put_from_small_file(
    fake: FakeGCS, bucket: str, backend: GCSBackend, tmp_path: Path
) -> None:
    path = tmp_path / "small.bin"
    path.write_bytes(DATA)
    st = await backend.put(f"gs://{bucket}/f.bin", str(path))
    assert st.md5 == _md5(DATA)
    assert fake.stats.counts == {("POST", "upload-multipart"): 1}


async def test_put_large_file_is_resumable(
    fake: FakeGCS, bucket: str, backend: GCSBackend, tmp_path: Path
) -> None:
    data = os.urandom(17 * MIB)  # just over the 16 MiB threshold
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    url = f"gs://{bucket}/big/big.bin"
    st = await backend.put(url, str(path), content_md5=_md5(data))
    assert st.size == len(data)
    assert st.md5 == hashlib.md5(data).hexdigest()
    assert fake.stats.counts == {("POST", "upload-resumable"): 1, ("PUT", "upload-chunk"): 3}
    assert [r.range for r in fake.stats.requests if r.kind == "upload-chunk"] == [
        f"bytes 0-{8 * MIB - 1}/{17 * MIB}",
        f"bytes {8 * MIB}-{16 * MIB - 1}/{17 * MIB}",
        f"bytes {16 * MIB}-{17 * MIB - 1}/{17 * MIB}",
    ]
    assert (await backend.stat(url)).md5 == st.md5
    assert fake.get_object(bucket, "big/big.bin").data == data
    assert fake.open_uploads(bucket) == 0


@pytest.fixture
def small_resumable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resumable uploads from 64 KiB on, in chunks of 300 KiB (not a multiple of 256 KiB)."""
    monkeypatch.setattr(gcs_module, "RESUMABLE_THRESHOLD", 64 * 1024)
    monkeypatch.setattr(gcs_module, "RESUMABLE_CHUNK", 300 * 1024)


@pytest.mark.usefixtures("small_resumable")
async def test_put_resumable_resends_bytes_the_server_did_not_keep(
    fake: FakeGCS, bucket: str, backend: GCSBackend, tmp_path: Path
) -> None:
    data = os.urandom(MIB + 123)
    path = tmp_path / "odd.bin"
    path.write_bytes(data)
    st = await backend.put(f"gs://{bucket}/odd.bin", str(path))
    assert st.md5 == _md5(data)
    assert fake.get_object(bucket, "odd.bin").data == data
    chunks = [r for r in fake.stats.requests if r.kind == "upload-chunk"]
    assert all(r.status in (200, 308) for r in chunks)
    assert chunks[-1].status == 200


@pytest.mark.parametrize("chunk_kib", [256, 300])
async def test_put_resumable_file_shorter_than_its_size_fails(
    fake: FakeGCS,
    bucket: str,
    backend: GCSBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk_kib: int,
) -> None:
    # Every chunk is answered 308 and the session never completes: that must be an error,
    # not a stat made of an empty object resource.
    monkeypatch.setattr(gcs_module, "RESUMABLE_THRESHOLD", 64 * 1024)
    monkeypatch.setattr(gcs_module, "RESUMABLE_CHUNK", chunk_kib * 1024)
    path = tmp_path / "shrunk.bin"
    path.write_bytes(os.urandom(512 * 1024))

    async def stale_size(_: str) -> int:
        return 512 * 1024 + 1

    monkeypatch.setattr(gcs_module, "file_size", stale_size)
    with pytest.raises(RemoteError) as info:
        await backend.put(f"gs://{bucket}/shrunk.bin", str(path))
    assert not isinstance(info.value, TransientError)
    assert "upload" in str(info.value)
    assert fake.object_names(bucket) == []
    assert all(r.status == 308 for r in fake.stats.requests if r.kind == "upload-chunk")


@pytest.mark.parametrize("resumable", [False, True])
async def test_put_if_none_match_on_existing_object(
    fake: FakeGCS,
    bucket: str,
    backend: GCSBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resumable: bool,
) -> None:
    existing = fake.put_object(bucket, "once.bin", b"first")
    data = os.urandom(128 * 1024)
    payload: bytes | str = data
    if resumable:
        monkeypatch.setattr(gcs_module, "RESUMABLE_THRESHOLD", 64 * 1024)
        path = tmp_path / "p.bin"
        path.write_bytes(data)
        payload = str(path)
    with pytest.raises(PreconditionFailedError) as info:
        await backend.put(f"gs://{bucket}/once.bin", payload, if_none_match=True)
    assert info.value.status == 412
    assert fake.get_object(bucket, "once.bin") == existing
    assert fake.generations(bucket, "once.bin") == [existing.generation]
    assert fake.open_uploads(bucket) == 0
    # ... and it creates the object when there is none.
    st = await backend.put(f"gs://{bucket}/fresh.bin", payload, if_none_match=True)
    assert st.md5 == _md5(data)


async def test_put_with_stale_if_match(fake: FakeGCS, bucket: str, backend: GCSBackend) -> None:
    url = f"gs://{bucket}/cas.json"
    first = await backend.put(url, b"v1")
    second = await backend.put(url, b"v2", if_match=first.version)
    assert second.version != first.version
    with pytest.raises(PreconditionFailedError):
        await backend.put(url, b"v3", if_match=first.version)
    assert fake.get_object(bucket, "cas.json").data == b"v2"
    third = await backend.put(url, b"v3", if_match=second.version)
    assert fake.get_object(bucket, "cas.json").data == b"v3"
    assert third.version == str(fake.get_object(bucket, "cas.json").generation)
    with pytest.raises(PreconditionFailedError):
        await backend.put(f"gs://{bucket}/absent.json", b"x", if_match=third.version)


@pytest.mark.parametrize("resumable", [False, True])
async def test_put_with_wrong_content_md5(
    fake: FakeGCS,
    bucket: str,
    backend: GCSBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    resumable: bool,
) -> None:
    data = os.urandom(100 * 1024)
    payload: bytes | str = data
    if resumable:
        monkeypatch.setattr(gcs_module, "RESUMABLE_THRESHOLD", 64 * 1024)
        path = tmp_path / "p.bin"
        path.write_bytes(data)
        payload = str(path)
    with pytest.raises(RemoteError) as info:
        await backend.put(f"gs://{bucket}/bad.bin", payload, content_md5=_md5(b"other"))
    assert info.value.status == 400
    assert not isinstance(info.value, PreconditionFailedError | TransientError)
    assert "MD5" in str(info.value)
    assert fake.object_names(bucket) == []


# -- list and delete --------------------------------------------------------------------------


async def test_list_prefix_and_pagination(fake: FakeGCS, bucket: str, backend: GCSBackend) -> None:
    names = [f"p/{i:02d}.bin" for i in range(7)] + ["p/sub/deep.bin", "pz.bin", "q/x.bin"]
    for n in names:
        fake.put_object(bucket, n, n.encode())
    fake.page_size = 3
    listed = await backend.list(f"gs://{bucket}/p/")
    expected = sorted(n for n in names if n.startswith("p/"))
    assert [s.url for s in listed] == [f"gs://{bucket}/{n}" for n in expected]
    for st in listed:
        name = st.url.split("/", 3)[3]
        obj = fake.get_object(bucket, name)
        assert (st.size, st.version, st.md5) == (obj.size, str(obj.generation), obj.md5_hex)
    assert fake.stats.count("GET", "list") == 3  # 8 items, 3 per page
    tokens = [r.query.get("pageToken") for r in fake.stats.requests]
    assert tokens[0] is None
    assert all(tokens[1:])

    fake.stats.reset()
    everything = await backend.list(f"gs://{bucket}")
    assert len(everything) == len(names)
    assert fake.stats.count("GET", "list") == 4
    assert [s.url for s in await backend.list(f"gs://{bucket}/p")] == [
        f"gs://{bucket}/{n}" for n in sorted(n for n in names if n.startswith("p"))
    ]
    assert await backend.list(f"gs://{bucket}/nothing/") == []
    listed_gcs = await backend.list(f"gcs://{bucket}/q/")
    assert [s.url for s in listed_gcs] == [f"gcs://{bucket}/q/x.bin"]


async def test_list_missing_bucket(backend: GCSBackend, bucket: str) -> None:
    with pytest.raises(RemoteNotFoundError):
        await backend.list(f"gs://{bucket}-missing/x/")


async def test_delete(fake: FakeGCS, bucket: str, backend: GCSBackend) -> None:
    fake.put_object(bucket, "d/gone.bin", b"x")
    await backend.delete(f"gs://{bucket}/d/gone.bin")
    assert fake.object_names(bucket) == []
    assert await backend.exists(f"gs://{bucket}/d/gone.bin") is False
    await backend.delete(f"gs://{bucket}/d/gone.bin")  # missing is not an error
    statuses = [r.status for r in fake.stats.requests if r.kind == "delete"]
    assert statuses == [204, 404]


# -- retries ------------------------------------------------------------------------------------

Op = Callable[[RetryingBackend, str], Awaitable[Any]]


async def _op_stat(b: RetryingBackend, url: str) -> Any:
    return await b.stat(url)


async def _op_read(b: RetryingBackend, url: str) -> Any:
    return await b.read_range(url, 1, 4)


async def _op_fetch(b: RetryingBackend, url: str) -> Any:
    return await b.fetch_if_changed(url, "1")


async def _op_put(b: RetryingBackend, url: str) -> Any:
    return await b.put(url, b"new bytes")


async def _op_list(b: RetryingBackend, url: str) -> Any:
    return await b.list(url)


async def _op_delete(b: RetryingBackend, url: str) -> Any:
    return await b.delete(url)


@pytest.mark.parametrize(
    ("op", "method", "kind"),
    [
        (_op_stat, "GET", "metadata"),
        (_op_read, "GET", "media"),
        (_op_fetch, "GET", "media"),
        (_op_put, "POST", "upload-multipart"),
        (_op_list, "GET", "list"),
        (_op_delete, "DELETE", "delete"),
    ],
)
async def test_503_twice_then_success(
    fake: FakeGCS, bucket: str, backend: GCSBackend, op: Op, method: str, kind: str
) -> None:
    fake.put_object(bucket, "r.bin", DATA)
    fake.fail_next(2, 503)
    result = await op(_retrying(backend), f"gs://{bucket}/r.bin")
    assert result is not None or kind == "delete"
    assert fake.stats.total == 3
    assert fake.stats.count(method, kind) == 3
    assert [r.status for r in fake.stats.requests][:2] == [503, 503]
    assert [r.injected for r in fake.stats.requests] == [True, True, False]


async def test_503_without_retries_is_transient(
    fake: FakeGCS, bucket: str, backend: GCSBackend
) -> None:
    fake.put_object(bucket, "r.bin", DATA)
    fake.fail_next(1, 503, kind="metadata", retry_after=0)
    with pytest.raises(TransientError) as info:
        await backend.stat(f"gs://{bucket}/r.bin")
    assert info.value.status == 503
    assert (await backend.stat(f"gs://{bucket}/r.bin")).size == len(DATA)


def test_split_hash_headers_are_all_read() -> None:
    headers: CIMultiDict[str] = CIMultiDict()
    headers.add("x-goog-hash", "crc32c=AAAAAA==")
    headers.add("x-goog-hash", "md5=" + base64.b64encode(hashlib.md5(b"").digest()).decode())
    assert gcs_module._hashes(headers) == (_md5(b""), "AAAAAA==")
    assert gcs_module._hashes({"x-goog-hash": "crc32c=AAAAAA==, md5=1B2M2Y8AsgTpgAmY7PhCfg=="}) == (
        _md5(b""),
        "AAAAAA==",
    )
