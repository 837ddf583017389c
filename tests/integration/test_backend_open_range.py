"""``Backend.open_range``: the first answer's metadata before the body, on every backend.

Against real loopback servers (moto, gcp-storage-emulator, FakeGCS, the aiohttp fault server)
and the local and memory backends, through ``make_backend`` (the retry wrapper included):

* a small object asked for with ``open_range(url, 0, chunk)`` arrives whole in that one answer
  (``is_whole``), with its size, token and digests; a large one gives its total size and token
  for the remaining pinned ranges, and only the chunk's bytes;
* a start past the end is an empty 416 reader; an empty object is whole with size 0;
* the pin and the expected size are checked before the body (PreconditionFailedError);
* a server that ignores Range answers 200: the reader says so and starts at byte 0, and
  ``iter_range`` still yields exactly the bytes asked for;
* leaving the block early releases the connection, and the next request reuses the backend;
* a body cut mid-way resumes pinned to the first answer's token.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import anyio.to_thread
import pytest

from aiofolio.backends import RetryingBackend, RetryPolicy, make_backend
from aiofolio.backends.base import RangeReader
from aiofolio.backends.memory import MemoryBackend
from aiofolio.errors import PreconditionFailedError
from aiofolio.testing import Fault, FaultServer, GcsEmulator, MotoServer
from aiofolio.testing.fakegcs import FakeGCS

pytestmark = pytest.mark.timeout(90)

KIB = 1024
CHUNK = 64 * KIB
SMALL = os.urandom(10 * KIB + 3)
LARGE = os.urandom(5 * CHUNK + 1234)
KINDS = ["local", "s3", "gcs", "fakegcs", "http", "memory"]


def _policy() -> RetryPolicy:
    return RetryPolicy(attempts=3, base=0.01, cap=0.05, max_time=10.0)


@dataclass
class Store:
    kind: str
    backend: RetryingBackend
    base: str
    seed: Callable[[str, bytes], Awaitable[None]]
    #: whether the store states the content MD5 on a read
    md5_on_read: bool = True
    #: whether answers carry a version token
    tokens: bool = True

    def url(self, key: str) -> str:
        return self.base + key


@pytest.fixture(scope="module")
def fakegcs() -> AsyncIterator[FakeGCS]:
    with FakeGCS() as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind: str = request.param
    if kind == "local":
        root = tmp_path / "store"
        root.mkdir()
        backend = make_backend(str(root), retry=_policy())

        async def seed_local(key: str, data: bytes) -> None:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)

        made = Store(kind, backend, str(root) + "/", seed_local, md5_on_read=False)
    elif kind == "s3":
        moto: MotoServer = request.getfixturevalue("moto_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        backend = make_backend("s3://" + bucket, moto.storage_options(), retry=_policy())

        async def seed_s3(key: str, data: bytes) -> None:
            await anyio.to_thread.run_sync(moto.put_object, bucket, key, data)

        made = Store(kind, backend, f"s3://{bucket}/", seed_s3)
    elif kind == "gcs":
        emulator: GcsEmulator = request.getfixturevalue("gcs_server")
        bucket = request.getfixturevalue("gcs_bucket")
        backend = make_backend("gs://" + bucket, emulator.storage_options(), retry=_policy())

        async def seed_gcs(key: str, data: bytes) -> None:
            await backend.put(f"gs://{bucket}/{key}", data)

        # The emulator sends neither x-goog-generation nor x-goog-hash on media answers.
        made = Store(kind, backend, f"gs://{bucket}/", seed_gcs, md5_on_read=False, tokens=False)
    elif kind == "fakegcs":
        fake: FakeGCS = request.getfixturevalue("fakegcs")
        bucket = f"b-{os.urandom(4).hex()}"
        fake.create_bucket(bucket)
        backend = make_backend("gs://" + bucket, fake.storage_options(), retry=_policy())

        async def seed_fake(key: str, data: bytes) -> None:
            fake.put_object(bucket, key, data)

        made = Store(kind, backend, f"gs://{bucket}/", seed_fake)
    elif kind == "http":
        server: FaultServer = request.getfixturevalue("http_server")
        backend = make_backend(server.url, retry=_policy())

        async def seed_http(key: str, data: bytes) -> None:
            server.put("/objs/" + key, data)

        # The file server states no digest; the checksum tests cover HTTP digest headers.
        made = Store(kind, backend, server.url + "/objs/", seed_http, md5_on_read=False)
    else:
        backend = make_backend("memory://", retry=_policy())
        inner = cast(MemoryBackend, backend.inner)

        async def seed_mem(key: str, data: bytes) -> None:
            inner.set("memory://objs/" + key, data)

        made = Store(kind, backend, "memory://objs/", seed_mem)
    try:
        yield made
    finally:
        await made.backend.aclose()


async def test_a_small_object_arrives_whole_in_the_first_answer(store: Store) -> None:
    await store.seed("small.bin", SMALL)
    url = store.url("small.bin")
    stat = await store.backend.stat(url)
    async with store.backend.open_range(url, 0, CHUNK) as reader:
        info = reader.info
        assert isinstance(reader, RangeReader)
        assert info.is_whole
        assert info.start == 0
        assert info.size == len(SMALL)  # before any byte of the body was read
        assert reader.received == 0
        if store.tokens:
            assert info.token is not None
            assert info.token == stat.token
        if store.md5_on_read:
            import hashlib

            assert info.md5 == hashlib.md5(SMALL).hexdigest()
            assert info.md5_source in ("etag", "store")
        assert await reader.read() == SMALL
        assert reader.done
        assert reader.size == len(SMALL)
        got = reader.stat()
        assert got is not None
        assert got.size == len(SMALL)


async def test_a_large_object_gives_its_total_and_token(store: Store) -> None:
    await store.seed("large.bin", LARGE)
    url = store.url("large.bin")
    async with store.backend.open_range(url, 0, CHUNK) as reader:
        info = reader.info
        assert not info.is_whole
        assert info.size == len(LARGE)
        assert info.length == CHUNK
        assert info.end == CHUNK
        first = await reader.read()
    assert first == LARGE[:CHUNK]
    # The rest, pinned to what the first answer said.
    rest = bytearray()
    for start in range(CHUNK, len(LARGE), CHUNK):
        end = min(len(LARGE), start + CHUNK)
        rest += await store.backend.read_range(
            url, start, end, if_match=info.token, expected_size=info.size
        )
    assert first + bytes(rest) == LARGE


async def test_past_the_end_and_empty_objects(store: Store) -> None:
    await store.seed("small.bin", SMALL)
    await store.seed("empty.bin", b"")
    async with store.backend.open_range(store.url("small.bin"), len(SMALL) + 10) as reader:
        assert await reader.read() == b""
        assert not reader.is_whole
    async with store.backend.open_range(store.url("empty.bin"), 0, CHUNK) as reader:
        assert await reader.read() == b""
        assert reader.size == 0
        assert reader.is_whole
    assert await store.backend.read_range(store.url("empty.bin")) == b""
    with pytest.raises(ValueError, match="non-empty"):
        store.backend.open_range(store.url("small.bin"), 5, 5)


async def test_pin_and_size_are_checked_before_the_body(store: Store) -> None:
    await store.seed("small.bin", SMALL)
    url = store.url("small.bin")
    with pytest.raises(PreconditionFailedError):
        async with store.backend.open_range(url, 0, CHUNK, expected_size=len(SMALL) + 1):
            pytest.fail("the body of a wrong-size answer was offered")
    with pytest.raises(PreconditionFailedError):
        await store.backend.read_range(url, 100, 200, expected_size=len(SMALL) - 1)
    if not store.tokens:
        return  # gcp-storage-emulator: no generation on reads (FakeGCS covers GCS pins)
    stat = await store.backend.stat(url)
    await store.seed("small.bin", SMALL[::-1])
    with pytest.raises(PreconditionFailedError):
        async with store.backend.open_range(url, 0, CHUNK, if_match=stat.token):
            pytest.fail("the body of another version was offered")


async def test_leaving_early_releases_the_connection(http_server: FaultServer) -> None:
    big = os.urandom(8 * 1024 * KIB)
    http_server.put("/big.bin", big)
    backend = make_backend(http_server.url, retry=_policy())
    try:
        async with backend.open_range(http_server.url_for("/big.bin")) as reader:
            chunk = await reader.__anext__()
            assert big.startswith(chunk)
        # the server sees the response abandoned, well before the 8 MiB were sent
        for _ in range(200):
            (record,) = http_server.stats.records("/big.bin")
            if record.done:
                break
            await asyncio.sleep(0.01)
        assert record.done
        assert record.bytes_sent < len(big)
        # and the backend goes on working (a fresh or reused connection)
        assert await backend.read_range(http_server.url_for("/big.bin"), 0, 10) == big[:10]
        session = getattr(backend.inner, "_session", None)
        assert session is not None
        assert not session.connector._acquired  # nothing left checked out
    finally:
        await backend.aclose()


async def test_a_server_that_ignores_range(http_server: FaultServer) -> None:
    http_server.put("/r/obj.bin", LARGE)
    http_server.set_fault("/r/*", Fault(ignore_range=True))
    backend = make_backend(http_server.url, retry=_policy())
    url = http_server.url_for("/r/obj.bin")
    try:
        async with backend.open_range(url, CHUNK, 2 * CHUNK) as reader:
            assert reader.info.status == 200
            assert reader.is_whole
            assert reader.info.start == 0  # the body is the whole object, from byte 0
            assert reader.info.size == len(LARGE)
            assert await reader.read() == LARGE
        assert await backend.read_range(url, CHUNK, 2 * CHUNK) == LARGE[CHUNK : 2 * CHUNK]
        assert await backend.read_range(url, len(LARGE) - 5) == LARGE[-5:]
    finally:
        await backend.aclose()
    assert all(r.status == 200 for r in http_server.stats.records("/r/obj.bin"))


@pytest.mark.parametrize("kind", ["http", "s3"])
async def test_a_cut_body_resumes_pinned(kind: str, request: pytest.FixtureRequest) -> None:
    if kind == "http":
        server: FaultServer = request.getfixturevalue("http_server")
        server.put("/objs/large.bin", LARGE)
        backend = make_backend(server.url, retry=_policy())
        url, path = server.url_for("/objs/large.bin"), "/objs/large.bin"
    else:
        moto: MotoServer = request.getfixturevalue("moto_server")
        bucket: str = request.getfixturevalue("s3_bucket")
        server = request.getfixturevalue("fault_proxy")
        moto.put_object(bucket, "large.bin", LARGE)
        options = moto.storage_options(endpoint_url=server.url)
        backend = make_backend("s3://" + bucket, options, retry=_policy())
        url, path = f"s3://{bucket}/large.bin", f"/{bucket}/large.bin"
    server.set_fault(path, Fault(reset_after=100 * KIB, times=1, methods={"GET"}))
    try:
        async with backend.open_range(url) as reader:
            token = reader.info.token
            assert await reader.read() == LARGE
        gets = [r for r in server.stats.records(path) if r.method == "GET"]
        assert len(gets) == 2
        resumed = gets[1]
        assert resumed.range is not None
        first, _, last = resumed.range.removeprefix("bytes=").partition("-")
        assert 0 < int(first) <= 100 * KIB
        assert int(last) == len(LARGE) - 1  # the rest of the first answer's body
        assert resumed.headers.get("If-Match", "").strip('"') == token
    finally:
        await backend.aclose()
