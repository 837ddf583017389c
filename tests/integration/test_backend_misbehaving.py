"""The backends against servers that do not behave: the fault server's misshaped answers.

For ``http`` (HTTPBackend straight at the fault server) and ``s3`` (S3Backend through the fault
proxy in front of moto), and for GCS against FakeGCS with ``force_encoding``:

* **If-Match ignored on GET**: an object replaced between two pinned ranges comes back as the
  new version; the backend compares the response's ETag with the pin and raises
  PreconditionFailedError, so versions are never mixed (also for a resumed stream, which
  pins itself to the first answer's ETag even when the caller gave no pin).
* **gzip/deflate although identity was asked**: a whole answer is decoded to the object's
  bytes; a ranged one is refused with ContentEncodingError (not retried); an unknown coding
  is refused; a DataFolio over such a server reads its manifest and payloads.
* **no Content-Length** (chunked): streamed fully, the size learned from the body and checked
  against ``expected_size``; a cut chunked body is a TransientError and resumes.
* **weak ETag**: never sent as If-Match (it could not match, RFC 9110), still compared with
  the pin; sent as If-None-Match for revalidation (304).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from aiofolio import DataFolio
from aiofolio.backends import NOT_MODIFIED, RetryingBackend, RetryPolicy, make_backend
from aiofolio.backends.gcs import GCSBackend
from aiofolio.errors import (
    ContentEncodingError,
    PreconditionFailedError,
    TransientError,
)
from aiofolio.testing import Fault, FaultServer, MotoServer
from aiofolio.testing.fakegcs import FakeGCS

pytestmark = pytest.mark.timeout(90)

KIB = 1024
DATA = os.urandom(300 * KIB + 17)
NEW = os.urandom(300 * KIB + 17)  # same size: only the ETag tells the versions apart
JSONISH = b'{"name": "a", "values": [1, 2, 3]}' * 200


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _policy(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base=0.01, cap=0.05, max_time=10.0)


@dataclass
class Target:
    """A backend kind behind a fault server."""

    kind: str
    server: FaultServer
    url: Callable[[str], str]
    path: Callable[[str], str]
    seed: Callable[[str, bytes], Awaitable[None]]
    make: Callable[..., RetryingBackend]

    def fault(self, key: str, fault: Fault) -> None:
        self.server.set_fault(self.path(key), fault)

    def records(self, key: str) -> list[Any]:
        return self.server.stats.records(self.path(key))


@pytest.fixture(params=["http", "s3"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    made: list[RetryingBackend] = []
    if request.param == "http":
        server: FaultServer = request.getfixturevalue("http_server")

        async def seed_http(key: str, data: bytes) -> None:
            server.put("/objs/" + key, data)

        def make_http(retry: RetryPolicy | None = None) -> RetryingBackend:
            backend = make_backend(server.url, retry=retry or _policy())
            made.append(backend)
            return backend

        yield Target(
            "http",
            server,
            lambda key: f"{server.url}/objs/{key}",
            lambda key: "/objs/" + key,
            seed_http,
            make_http,
        )
    else:
        moto: MotoServer = request.getfixturevalue("moto_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        proxy: FaultServer = request.getfixturevalue("fault_proxy")

        async def seed_s3(key: str, data: bytes) -> None:
            await anyio.to_thread.run_sync(moto.put_object, bucket, key, data)

        def make_s3(retry: RetryPolicy | None = None) -> RetryingBackend:
            options = moto.storage_options(endpoint_url=proxy.url)
            backend = make_backend("s3://" + bucket, options, retry=retry or _policy())
            made.append(backend)
            return backend

        yield Target(
            "s3",
            proxy,
            lambda key: f"s3://{bucket}/{key}",
            lambda key: f"/{bucket}/{key}",
            seed_s3,
            make_s3,
        )
    for backend in made:
        await backend.aclose()


# -- every request asks for identity ------------------------------------------------------------


async def test_every_request_asks_for_identity(target: Target) -> None:
    await target.seed("obj.bin", DATA)
    backend = target.make()
    url = target.url("obj.bin")
    stat = await backend.stat(url)
    assert await backend.read_range(url, 0, 10, if_match=stat.token) == DATA[:10]
    assert await backend.read_range(url) == DATA
    assert await backend.fetch_if_changed(url, stat.token) is NOT_MODIFIED
    async with backend.open_range(url, 0, 100) as reader:
        assert await reader.read() == DATA[:100]
    sent = target.records("obj.bin")
    assert len(sent) == 5
    for record in sent:  # aiobotocore forces identity for S3; HTTPBackend asks for it
        assert record.headers.get("Accept-Encoding") == "identity", record


# -- If-Match ignored ---------------------------------------------------------------------------


async def test_ignored_if_match_cannot_mix_versions(target: Target) -> None:
    await target.seed("obj.bin", DATA)
    backend = target.make()
    url = target.url("obj.bin")
    stat = await backend.stat(url)
    half = len(DATA) // 2
    first = await backend.read_range(url, 0, half, if_match=stat.token, expected_size=stat.size)
    assert first == DATA[:half]

    target.fault("obj.bin", Fault(ignore_if_match=True))
    await target.seed("obj.bin", NEW)  # replaced between two ranges of one download
    with pytest.raises(PreconditionFailedError) as info:
        await backend.read_range(url, half, None, if_match=stat.token, expected_size=stat.size)
    assert info.value.status == 412
    last = target.records("obj.bin")[-1]
    assert last.fault == "ignore-if-match"
    assert last.status == 206  # the server did serve the new version: the client refused it


async def test_a_resumed_stream_is_pinned_to_its_first_answer(target: Target) -> None:
    await target.seed("obj.bin", DATA)
    backend = target.make()
    url = target.url("obj.bin")
    cut = 100 * KIB
    target.fault("obj.bin", Fault(ignore_if_match=True))  # for the resume
    target.fault(  # the first GET: the object is replaced at byte K, then the connection resets
        "obj.bin",
        Fault(
            ignore_if_match=True,
            reset_after=cut,
            replace_with=NEW,
            replace_after=cut,
            times=1,
            methods={"GET"},
        ),
    )
    got = bytearray()

    async def read_all() -> None:
        async for chunk in backend.iter_range(url):  # no pin from the caller
            got.extend(chunk)

    with pytest.raises(PreconditionFailedError):
        await read_all()
    assert bytes(got) == DATA[: len(got)]  # only old bytes were handed out
    gets = [r for r in target.records("obj.bin") if r.method == "GET"]
    assert len(gets) == 2
    resume = gets[1]
    assert (resume.range or "").startswith(f"bytes={len(got)}-")
    if target.kind == "http":
        assert resume.headers.get("If-Match") == f'"{_md5(DATA)}"'


# -- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
async def test_a_whole_encoded_answer_is_decoded(http_server: FaultServer, coding: str) -> None:
    http_server.put("/e/data.json", JSONISH)
    http_server.set_fault("/e/*", Fault(encoding=coding))
    backend = make_backend(http_server.url, retry=_policy())
    url = http_server.url_for("/e/data.json")
    try:
        assert await backend.read_range(url) == JSONISH
        result = await backend.fetch_if_changed(url, None)
        assert result is not NOT_MODIFIED
        data, stat = result
        assert data == JSONISH
        assert stat.size == len(JSONISH)
        assert stat.token == _md5(JSONISH)
        async with backend.open_range(url) as reader:
            assert reader.info.content_encoding == coding
            assert reader.info.size is None  # the Content-Length is the encoded length
            assert reader.is_whole
            assert await reader.read() == JSONISH
            assert reader.size == len(JSONISH)
        # The size of a whole decoded answer is checked against what the caller expects.
        with pytest.raises(PreconditionFailedError):
            await backend.read_range(url, expected_size=len(JSONISH) - 1)
        # stat: the HEAD's length is the encoded one, and so is a ranged answer's: refused,
        # the size comes from a whole decoded answer instead.
        assert (await backend.stat(url)).size == len(JSONISH)
    finally:
        await backend.aclose()
    sent = http_server.stats.records()
    assert sent
    assert all(r.headers.get("Accept-Encoding") == "identity" for r in sent)
    assert all(r.fault == "encoding" for r in sent)


async def test_a_cut_encoded_answer_is_read_again_whole(http_server: FaultServer) -> None:
    http_server.put("/e/data.bin", DATA)
    http_server.set_fault("/e/*", Fault(encoding="gzip"))
    http_server.set_fault("/e/*", Fault(encoding="gzip", truncate_at=100 * KIB, times=1))
    backend = make_backend(http_server.url, retry=_policy())
    try:
        assert await backend.read_range(http_server.url_for("/e/data.bin")) == DATA
    finally:
        await backend.aclose()
    first, second = http_server.stats.records("/e/data.bin")
    assert first.fault == "encoding,truncate"
    assert second.range is None  # not a range of decoded offsets: the whole answer again
    assert second.status == 200


async def test_an_encoded_ranged_answer_is_refused_and_not_retried(
    http_server: FaultServer,
) -> None:
    http_server.put("/e/data.bin", DATA)
    http_server.set_fault("/e/*", Fault(encoding="gzip"))
    backend = make_backend(http_server.url, retry=_policy(attempts=5))
    url = http_server.url_for("/e/data.bin")
    try:
        with pytest.raises(ContentEncodingError) as info:
            await backend.read_range(url, 10, 5000)
        assert not isinstance(info.value, TransientError)
        assert "ranged" in str(info.value)
        assert http_server.stats.requests("/e/data.bin") == 1
        with pytest.raises(ContentEncodingError):
            async with backend.open_range(url, 0, 1000):
                pass
    finally:
        await backend.aclose()


async def test_an_unknown_coding_is_refused(http_server: FaultServer) -> None:
    http_server.put("/e/data.bin", DATA)
    http_server.set_fault("/e/*", Fault(encoding="br"))  # labelled br, gzip bytes inside
    backend = make_backend(http_server.url, retry=_policy())
    try:
        with pytest.raises(ContentEncodingError, match="br"):
            await backend.read_range(http_server.url_for("/e/data.bin"))
        with pytest.raises(ContentEncodingError):
            await backend.fetch_if_changed(http_server.url_for("/e/data.bin"), None)
    finally:
        await backend.aclose()


async def test_a_corrupt_gzip_body_is_refused(http_server: FaultServer) -> None:
    http_server.put("/e/data.bin", DATA)
    http_server.set_fault("/e/*", Fault(encoding="gzip", corrupt=True, corrupt_bytes=40, seed=3))
    backend = make_backend(http_server.url, retry=_policy(attempts=1))
    try:
        with pytest.raises((ContentEncodingError, TransientError)):
            await backend.read_range(http_server.url_for("/e/data.bin"))
    finally:
        await backend.aclose()


def test_datafolio_over_a_server_that_gzips_everything(
    http_server: FaultServer, tmp_path: Path
) -> None:
    root = tmp_path / "bundle"
    writer = DataFolio(root)
    writer.add("config", {"lr": 0.5, "tags": ["x"] * 50})
    writer.add("listing", list(range(300)))
    for path in root.rglob("*"):
        if path.is_file():
            http_server.put(f"/b/{path.relative_to(root).as_posix()}", path.read_bytes())
    http_server.set_fault("/b/*", Fault(encoding="gzip"))
    folio = DataFolio(f"{http_server.url}/b")
    assert folio.get("config") == {"lr": 0.5, "tags": ["x"] * 50}
    assert folio.get("listing") == list(range(300))
    sent = http_server.stats.records()
    assert any(r.path == "/b/items.json" and r.fault == "encoding" for r in sent)
    assert all(r.headers.get("Accept-Encoding") == "identity" for r in sent)


async def test_gcs_asks_for_identity_and_decodes_or_refuses(tmp_path: Path) -> None:
    with FakeGCS() as fake:
        fake.create_bucket("enc")
        fake.put_object("enc", "data.json", JSONISH)
        backend = GCSBackend(fake.storage_options())
        url = "gs://enc/data.json"
        try:
            fake.force_encoding = "gzip"
            stat = await backend.stat(url)  # a gzipped JSON API answer, decoded
            assert stat.size == len(JSONISH)
            assert stat.md5 == _md5(JSONISH)
            assert await backend.read_range(url) == JSONISH
            result = await backend.fetch_if_changed(url, None)
            assert result is not NOT_MODIFIED
            assert result[0] == JSONISH
            with pytest.raises(ContentEncodingError):
                await backend.read_range(url, 5, 50)
            fake.force_encoding = None
            assert await backend.read_range(url, 5, 50) == JSONISH[5:50]
        finally:
            await backend.aclose()
        sent = fake.stats.requests
        assert sent
        assert all(r.accept_encoding == "identity" for r in sent), sent


def test_fault_server_gzip_is_real_gzip(http_server: FaultServer) -> None:
    """The fault is what a server would send: gzip of the object, Content-Encoding: gzip."""
    from aiofolio.testing import http_call

    http_server.put("/e/x", JSONISH)
    http_server.set_fault("/e/*", Fault(encoding="gzip"))
    status, body = http_call("GET", http_server.url_for("/e/x"))
    assert status == 200
    assert gzip.decompress(body) == JSONISH


# -- no Content-Length --------------------------------------------------------------------------


async def test_no_content_length_is_streamed_and_size_checked(target: Target) -> None:
    await target.seed("obj.bin", DATA)
    target.fault("obj.bin", Fault(chunked=True, methods={"GET"}))
    backend = target.make()
    url = target.url("obj.bin")
    assert await backend.read_range(url) == DATA
    async with backend.open_range(url) as reader:
        assert reader.info.size is None
        assert reader.info.length is None
        assert reader.is_whole
        assert await reader.read() == DATA
        assert reader.size == len(DATA)
        stat = reader.stat()
        assert stat is not None
        assert stat.size == len(DATA)
    with pytest.raises(PreconditionFailedError):
        await backend.read_range(url, expected_size=len(DATA) + 1)
    with pytest.raises(PreconditionFailedError):
        await backend.read_range(url, expected_size=len(DATA) - 1)
    assert await backend.read_range(url, expected_size=len(DATA)) == DATA
    # ranged answers still state their range and total: checked before the body
    assert await backend.read_range(url, 5, 105, expected_size=len(DATA)) == DATA[5:105]
    with pytest.raises(PreconditionFailedError):
        await backend.read_range(url, 5, 105, expected_size=len(DATA) + 1)


async def test_a_cut_chunked_body_is_transient_and_resumes(http_server: FaultServer) -> None:
    http_server.put("/c/obj.bin", DATA)
    http_server.set_fault("/c/*", Fault(chunked=True))
    http_server.set_fault("/c/*", Fault(chunked=True, truncate_at=50 * KIB, times=1))
    once = make_backend(http_server.url, retry=_policy(attempts=1))
    try:
        with pytest.raises(TransientError):
            await once.read_range(http_server.url_for("/c/obj.bin"))
    finally:
        await once.aclose()
    http_server.set_fault("/c/*", Fault(chunked=True, truncate_at=50 * KIB, times=1))
    retrying = make_backend(http_server.url, retry=_policy(attempts=3))
    try:
        assert await retrying.read_range(http_server.url_for("/c/obj.bin")) == DATA
    finally:
        await retrying.aclose()


# -- weak ETags ---------------------------------------------------------------------------------


async def test_weak_etag_pins_without_if_match_and_revalidates(http_server: FaultServer) -> None:
    http_server.put("/w/obj.bin", DATA)
    http_server.set_fault("/w/*", Fault(weak_etag=True))
    backend = make_backend(http_server.url, retry=_policy())
    url = http_server.url_for("/w/obj.bin")
    try:
        stat = await backend.stat(url)
        assert stat.token == f"W/{_md5(DATA)}"
        assert stat.etag == stat.token
        # A pinned read works: the weak tag is not sent as If-Match (a compliant server would
        # answer 412, as this one does), and the answer's ETag is compared instead.
        got = await backend.read_range(url, 10, 20000, if_match=stat.token, expected_size=len(DATA))
        assert got == DATA[10:20000]
        pinned = http_server.stats.records("/w/obj.bin", "GET")[-1]
        assert "If-Match" not in pinned.headers
        assert pinned.status == 206
        # Revalidation: If-None-Match carries the weak tag as is, and the server says 304.
        assert await backend.fetch_if_changed(url, stat.token) is NOT_MODIFIED
        conditional = http_server.stats.records("/w/obj.bin", "GET")[-1]
        assert conditional.headers.get("If-None-Match") == f'W/"{_md5(DATA)}"'
        assert conditional.status == 304
        # A replaced object under a weak tag is still refused for the old pin.
        http_server.put("/w/obj.bin", NEW)
        with pytest.raises(PreconditionFailedError):
            await backend.read_range(url, 0, 100, if_match=stat.token)
        result = await backend.fetch_if_changed(url, stat.token)
        assert result is not NOT_MODIFIED
        assert result[0] == NEW
    finally:
        await backend.aclose()


async def test_weak_etag_through_the_s3_proxy_is_still_compared(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    moto_server.put_object(s3_bucket, "w.bin", DATA)
    fault_proxy.set_fault(f"/{s3_bucket}/w.bin", Fault(weak_etag=True, ignore_if_match=True))
    options = moto_server.storage_options(endpoint_url=fault_proxy.url)
    backend = make_backend("s3://" + s3_bucket, options, retry=_policy())
    url = f"s3://{s3_bucket}/w.bin"
    try:
        stat = await backend.stat(url)
        assert await backend.read_range(url, 0, 100, if_match=stat.token) == DATA[:100]
        moto_server.put_object(s3_bucket, "w.bin", NEW)
        with pytest.raises(PreconditionFailedError):
            await backend.read_range(url, 0, 100, if_match=stat.token)
    finally:
        await backend.aclose()
