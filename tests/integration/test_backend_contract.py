"""One contract for every storage backend, run against real loopback servers.

Owns the behaviour every :class:`~aiofolio.backends.base.Backend` must share, checked through
:func:`~aiofolio.backends.make_backend` (so through the retry wrapper, as callers see it) on:

- ``local``: a temporary folder;
- ``s3``: moto (counted through ``fault_proxy`` where a test needs server-side request counts);
- ``gcs``: gcp-storage-emulator (it ignores preconditions and sends no ``x-goog-generation``,
  so version pins and conditional writes on GCS are covered by ``test_fakegcs_backend.py``);
- ``http``: the aiohttp fault server, read-only (writes raise ReadOnlyError, list RemoteError);
- ``memory``: the in-memory test backend.

Failure injection (retries, resets, hangs) lives in ``test_backend_faults.py``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio.to_thread
import pytest

from aiofolio.backends import NOT_MODIFIED, RetryingBackend, RetryPolicy, make_backend
from aiofolio.backends import s3 as s3_module
from aiofolio.backends.base import STREAM_CHUNK, ObjectStat
from aiofolio.backends.memory import MemoryBackend
from aiofolio.errors import (
    AiofolioError,
    ChecksumMismatchError,
    PreconditionFailedError,
    ReadOnlyError,
    RemoteError,
    RemoteNotFoundError,
)
from aiofolio.testing import FaultServer, GcsEmulator, MotoServer
from aiofolio.testing.fakegcs import crc32c

MIB = 1024 * 1024
DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes
KINDS = ["local", "s3", "gcs", "http", "memory"]
FAKEGCS_PIN = (
    "gcp-storage-emulator ignores ifGenerationMatch and sends no x-goog-generation; the GCS "
    "version pin is covered by tests/integration/test_fakegcs_backend.py"
    "::test_if_match_pin_detects_replacement"
)
FAKEGCS_COND_PUT = (
    "gcp-storage-emulator ignores ifGenerationMatch on uploads; GCS conditional writes are "
    "covered by tests/integration/test_fakegcs_backend.py::test_put_if_none_match_on_existing_"
    "object and ::test_put_with_stale_if_match"
)


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _crc_b64(data: bytes) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


def assert_ours(exc: BaseException) -> None:
    """The error is an aiofolio class (no botocore/aiohttp/gcsfs/fsspec/tenacity error escapes)."""
    assert isinstance(exc, AiofolioError), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert type(exc).__module__ == "aiofolio.errors"


@dataclass
class Store:
    """One backend under test, its URL space and out-of-band access to its server."""

    kind: str
    backend: RetryingBackend
    base: str
    writable: bool
    #: Writes bytes at a key behind the backend's back (the server's own API where there is one).
    seed: Callable[[str, bytes], Awaitable[None]]
    #: The same backend, routed so that ``requests()`` counts what it sends (None: no counter).
    counted: RetryingBackend | None = None
    requests: Callable[[], int] | None = None
    #: Whether the server honours preconditions (pins, conditional writes).
    preconditions: bool = True

    def url(self, key: str) -> str:
        return self.base + key


def _policy() -> RetryPolicy:
    return RetryPolicy(attempts=3, base=0.01, max_time=10)


async def _local(tmp_path: Path) -> tuple[Store, list[RetryingBackend]]:
    root = tmp_path / "store"
    root.mkdir()
    backend = make_backend(str(root), retry=_policy())

    async def seed(key: str, data: bytes) -> None:
        # Like an outside writer: a new file, then an atomic rename.
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".seed-tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    return Store("local", backend, str(root) + "/", True, seed), [backend]


async def _s3(request: pytest.FixtureRequest) -> tuple[Store, list[RetryingBackend]]:
    moto: MotoServer = request.getfixturevalue("moto_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    proxy: FaultServer = request.getfixturevalue("fault_proxy")
    backend = make_backend("s3://" + bucket, moto.storage_options(), retry=_policy())
    counted = make_backend(
        "s3://" + bucket, moto.storage_options(endpoint_url=proxy.url), retry=_policy()
    )

    async def seed(key: str, data: bytes) -> None:
        await anyio.to_thread.run_sync(moto.put_object, bucket, key, data)

    store = Store(
        "s3",
        backend,
        f"s3://{bucket}/",
        True,
        seed,
        counted=counted,
        requests=lambda: proxy.stats.requests(),
    )
    return store, [backend, counted]


async def _gcs(request: pytest.FixtureRequest) -> tuple[Store, list[RetryingBackend]]:
    server: GcsEmulator = request.getfixturevalue("gcs_server")
    bucket: str = request.getfixturevalue("gcs_bucket")
    backend = make_backend("gs://" + bucket, server.storage_options(), retry=_policy())

    async def seed(key: str, data: bytes) -> None:
        await backend.put(f"gs://{bucket}/{key}", data)

    store = Store("gcs", backend, f"gs://{bucket}/", True, seed, preconditions=False)
    return store, [backend]


async def _http(request: pytest.FixtureRequest) -> tuple[Store, list[RetryingBackend]]:
    server: FaultServer = request.getfixturevalue("http_server")
    backend = make_backend(server.url, retry=_policy())

    async def seed(key: str, data: bytes) -> None:
        server.put("/objs/" + key, data)

    store = Store(
        "http",
        backend,
        server.url + "/objs/",
        False,
        seed,
        counted=backend,
        requests=lambda: server.stats.requests(),
    )
    return store, [backend]


async def _memory() -> tuple[Store, list[RetryingBackend]]:
    backend = make_backend("memory://", retry=_policy())
    inner = cast(MemoryBackend, backend.inner)

    async def seed(key: str, data: bytes) -> None:
        inner.set("memory://objs/" + key, data)

    store = Store(
        "memory",
        backend,
        "memory://objs/",
        True,
        seed,
        counted=backend,
        requests=lambda: sum(inner.calls.values()),
    )
    return store, [backend]


@pytest.fixture(params=KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    kind: str = request.param
    if kind == "local":
        made = await _local(tmp_path)
    elif kind == "s3":
        made = await _s3(request)
    elif kind == "gcs":
        made = await _gcs(request)
    elif kind == "http":
        made = await _http(request)
    else:
        made = await _memory()
    store, backends = made
    try:
        yield store
    finally:
        for backend in backends:
            await backend.aclose()


def _need_preconditions(store: Store, reason: str) -> None:
    if not store.preconditions:
        pytest.skip(reason)


# -- stat ---------------------------------------------------------------------------------------


async def test_stat_fields(store: Store) -> None:
    await store.seed("dir/obj.bin", DATA)
    url = store.url("dir/obj.bin")
    st = await store.backend.stat(url)
    assert st.url == url
    assert st.size == len(DATA)
    assert st.token is not None
    assert st.last_modified is not None
    assert await store.backend.exists(url) is True
    assert await store.backend.exists(store.url("dir/nope.bin")) is False
    if store.kind == "s3":
        # A single-part upload: the ETag is the MD5, and the token is the ETag.
        assert st.etag == st.md5 == st.token == _md5(DATA)
    elif store.kind == "gcs":
        assert st.md5 == _md5(DATA)
        assert st.crc32c == _crc_b64(DATA)
        assert st.version is not None
        assert st.version.isdigit()
        assert st.token == st.version  # the generation is the conditional token
    elif store.kind == "http":
        assert st.etag == st.token == _md5(DATA)  # the file server's ETag is the MD5
    elif store.kind == "local":
        assert st.etag == st.token
    elif store.kind == "memory":
        assert st.md5 == _md5(DATA)
        assert st.etag == st.token


async def test_stat_of_a_missing_object(store: Store) -> None:
    url = store.url("missing/none.bin")
    with pytest.raises(RemoteNotFoundError) as info:
        await store.backend.stat(url)
    assert isinstance(info.value, FileNotFoundError)
    assert url in str(info.value)
    assert_ours(info.value)
    assert await store.backend.exists(url) is False
    with pytest.raises(RemoteNotFoundError):
        await store.backend.read_range(url, 0, 10)
    with pytest.raises(RemoteNotFoundError):
        await store.backend.fetch_if_changed(url, None)


# -- reads --------------------------------------------------------------------------------------

RANGES: list[tuple[int, int | None, bytes]] = [
    (0, len(DATA), DATA),
    (0, None, DATA),
    (0, 1, DATA[:1]),
    (100, 300, DATA[100:300]),  # middle
    (1000, None, DATA[1000:]),  # start only
    (1020, 10**9, DATA[1020:]),  # an end past EOF is clamped
    (len(DATA) - 1, len(DATA) + 1, DATA[-1:]),
    (len(DATA), None, b""),  # start at EOF
    (len(DATA) + 50, None, b""),  # start past EOF
    (len(DATA) + 50, len(DATA) + 60, b""),
]


async def test_read_range(store: Store) -> None:
    await store.seed("r.bin", DATA)
    url = store.url("r.bin")
    for start, end, expected in RANGES:
        got = await store.backend.read_range(url, start, end)
        assert got == expected, f"{store.kind}: read_range({start}, {end})"


async def test_read_range_zero_length_sends_no_request(store: Store) -> None:
    await store.seed("r.bin", DATA)
    backend = store.counted or store.backend
    before = store.requests() if store.requests else 0
    assert await backend.read_range(store.url("r.bin"), 7, 7) == b""
    assert await backend.read_range(store.url("r.bin"), 9, 3) == b""  # inverted: empty
    assert await backend.read_range(store.url("missing.bin"), 0, 0) == b""
    if store.requests is not None:
        assert store.requests() == before


async def test_read_into_a_file_with_progress(store: Store, tmp_path: Path) -> None:
    big = os.urandom(2 * STREAM_CHUNK + 12345)  # several chunks
    await store.seed("big.bin", big)
    url = store.url("big.bin")
    seen: list[int] = []
    target = tmp_path / "out.bin"
    with target.open("wb") as fh:
        fh.write(b"HEAD")  # read_into writes at the current position
        written = await store.backend.read_into(url, fh, start=3, progress=seen.append)
    assert written == len(big) - 3
    assert sum(seen) == written
    assert all(n > 0 for n in seen)
    assert target.read_bytes() == b"HEAD" + big[3:]

    seen.clear()
    buf = io.BytesIO()
    written = await store.backend.read_into(
        url, buf, start=STREAM_CHUNK - 10, end=STREAM_CHUNK + 10, progress=seen.append
    )
    assert written == sum(seen) == 20
    assert buf.getvalue() == big[STREAM_CHUNK - 10 : STREAM_CHUNK + 10]

    buf = io.BytesIO()
    written = await store.backend.read_into(url, buf, start=len(big) - 5, end=len(big) + 100)
    assert (written, buf.getvalue()) == (5, big[-5:])


async def test_iter_range_streams_chunks(store: Store) -> None:
    big = os.urandom(STREAM_CHUNK + 100)
    await store.seed("it.bin", big)
    chunks = [c async for c in store.backend.iter_range(store.url("it.bin"), 50)]
    assert all(len(c) <= STREAM_CHUNK for c in chunks)
    assert b"".join(chunks) == big[50:]


# -- conditional fetch --------------------------------------------------------------------------


async def test_fetch_if_changed(store: Store) -> None:
    await store.seed("m.json", b'{"v": 1}')
    url = store.url("m.json")
    st = await store.backend.stat(url)

    first = await store.backend.fetch_if_changed(url, None)
    assert first is not NOT_MODIFIED
    data, fst = first
    assert data == b'{"v": 1}'
    assert (fst.url, fst.size, fst.token) == (url, len(data), st.token)

    assert await store.backend.fetch_if_changed(url, st.token) is NOT_MODIFIED

    await store.seed("m.json", b'{"v": 2, "more": true}')
    changed = await store.backend.fetch_if_changed(url, st.token)
    assert changed is not NOT_MODIFIED
    data2, st2 = changed
    assert data2 == b'{"v": 2, "more": true}'
    assert st2.size == len(data2)
    assert st2.token is not None
    assert st2.token != st.token
    assert st2.token == (await store.backend.stat(url)).token
    assert await store.backend.fetch_if_changed(url, st2.token) is NOT_MODIFIED


async def test_fetch_if_changed_not_modified_is_one_request(store: Store) -> None:
    if store.counted is None or store.requests is None:
        pytest.skip(f"no request counter for {store.kind}")
    await store.seed("m.json", b"{}")
    url = store.url("m.json")
    token = (await store.counted.stat(url)).token
    before = store.requests()
    assert await store.counted.fetch_if_changed(url, token) is NOT_MODIFIED
    assert store.requests() - before == 1


# -- version pin --------------------------------------------------------------------------------


async def test_version_pin_detects_a_replaced_object(store: Store) -> None:
    _need_preconditions(store, FAKEGCS_PIN)
    old = os.urandom(3000)
    await store.seed("p.bin", old)
    url = store.url("p.bin")
    token = (await store.backend.stat(url)).token
    assert token is not None
    assert await store.backend.read_range(url, 0, 1000, if_match=token) == old[:1000]

    await store.seed("p.bin", os.urandom(3000))  # replaced between two reads of one download
    with pytest.raises(PreconditionFailedError) as info:
        await store.backend.read_range(url, 1000, None, if_match=token)
    assert_ours(info.value)
    with pytest.raises(PreconditionFailedError):
        await store.backend.read_into(url, io.BytesIO(), start=1000, if_match=token)
    new_token = (await store.backend.stat(url)).token
    assert new_token != token
    assert len(await store.backend.read_range(url, 1000, None, if_match=new_token)) == 2000


# -- writes -------------------------------------------------------------------------------------


async def test_put_bytes_then_stat(store: Store) -> None:
    url = store.url("w/put.bin")
    if not store.writable:
        with pytest.raises(ReadOnlyError) as info:
            await store.backend.put(url, DATA)
        assert isinstance(info.value, PermissionError)
        assert store.requests is not None
        assert store.requests() == 0
        return
    put = await store.backend.put(url, DATA, cache_control="no-cache", content_type="x/y")
    st = await store.backend.stat(url)
    assert put.size == st.size == len(DATA)
    assert put.token == st.token is not None
    assert put.etag == st.etag
    assert await store.backend.read_range(url) == DATA
    if store.kind == "s3":
        assert st.etag == st.md5 == _md5(DATA)
    elif store.kind == "gcs":
        assert st.md5 == put.md5 == _md5(DATA)
        assert st.crc32c == _crc_b64(DATA)
        assert st.token == st.version
    elif store.kind == "memory":
        assert st.md5 == _md5(DATA)


async def test_rewrite_changes_the_token(store: Store) -> None:
    if not store.writable:
        pytest.skip("read-only store")
    url = store.url("w/rewrite.bin")
    first = await store.backend.put(url, b"A" * 100)
    second = await store.backend.put(url, b"B" * 100)  # same size, written at once
    assert first.token != second.token
    assert first.etag != second.etag
    assert (await store.backend.stat(url)).token == second.token
    assert await store.backend.read_range(url) == b"B" * 100


async def test_put_from_a_local_file(store: Store, tmp_path: Path) -> None:
    payload = os.urandom(STREAM_CHUNK + 321)
    src = tmp_path / "src.bin"
    src.write_bytes(payload)
    url = store.url("w/from-file.bin")
    if not store.writable:
        with pytest.raises(ReadOnlyError):
            await store.backend.put(url, str(src))
        return
    st = await store.backend.put(url, str(src), content_md5=_md5(payload))
    assert st.size == len(payload)
    assert await store.backend.read_range(url) == payload
    if st.md5 is not None:
        assert st.md5 == _md5(payload)


async def test_put_with_content_md5(store: Store) -> None:
    url = store.url("w/md5.bin")
    if not store.writable:
        with pytest.raises(ReadOnlyError):
            await store.backend.put(url, DATA, content_md5=_md5(DATA))
        return
    st = await store.backend.put(url, DATA, content_md5=_md5(DATA).upper())
    assert st.size == len(DATA)
    if st.md5 is not None:
        assert st.md5 == _md5(DATA)

    with pytest.raises(AiofolioError) as info:
        await store.backend.put(url, b"other bytes", content_md5=_md5(b"something else"))
    assert_ours(info.value)
    assert isinstance(info.value, ChecksumMismatchError | RemoteError)
    assert await store.backend.read_range(url) == DATA  # unchanged
    assert (await store.backend.stat(url)).token == st.token


async def test_put_if_none_match(store: Store) -> None:
    if not store.writable:
        pytest.skip("read-only store")
    url = store.url("w/once.bin")
    created = await store.backend.put(url, b"first", if_none_match=True)
    assert created.size == 5
    _need_preconditions(store, FAKEGCS_COND_PUT)
    with pytest.raises(PreconditionFailedError) as info:
        await store.backend.put(url, b"second", if_none_match=True)
    assert_ours(info.value)
    assert await store.backend.read_range(url) == b"first"
    assert (await store.backend.stat(url)).token == created.token


async def test_put_if_match(store: Store) -> None:
    if not store.writable:
        pytest.skip("read-only store")
    url = store.url("w/cas.bin")
    v1 = await store.backend.put(url, b"version 1")
    assert v1.token is not None
    v2 = await store.backend.put(url, b"version 2", if_match=v1.token)
    assert v2.token not in (None, v1.token)
    _need_preconditions(store, FAKEGCS_COND_PUT)
    with pytest.raises(PreconditionFailedError) as info:
        await store.backend.put(url, b"version 3", if_match=v1.token)  # stale
    assert_ours(info.value)
    assert await store.backend.read_range(url) == b"version 2"
    with pytest.raises(PreconditionFailedError):
        await store.backend.put(store.url("w/absent.bin"), b"x", if_match=v1.token)
    assert await store.backend.exists(store.url("w/absent.bin")) is False


# -- list and delete ----------------------------------------------------------------------------

LISTED = {"a/1.bin": b"1", "a/2.bin": b"22", "a/sub/3.bin": b"333"}
NOT_LISTED = {"a-sibling.bin": b"4444", "ab/5.bin": b"55555", "b/6.bin": b"666666"}


async def test_list_prefix(store: Store) -> None:
    for key, data in {**NOT_LISTED, **LISTED}.items():
        await store.seed(key, data)
    if not store.writable:
        with pytest.raises(RemoteError) as info:
            await store.backend.list(store.url("a/"))
        assert_ours(info.value)
        return
    listed = await store.backend.list(store.url("a/"))
    assert [s.url for s in listed] == [store.url(k) for k in sorted(LISTED)]
    assert [s.size for s in listed] == [len(LISTED[k]) for k in sorted(LISTED)]
    assert all(isinstance(s, ObjectStat) and s.token is not None for s in listed)
    for s in listed:
        assert s.token == (await store.backend.stat(s.url)).token
    everything = await store.backend.list(store.base)
    assert [s.url for s in everything] == sorted(store.url(k) for k in {**LISTED, **NOT_LISTED})
    assert await store.backend.list(store.url("nothing-here/")) == []


async def test_list_without_trailing_slash_is_a_key_prefix(store: Store) -> None:
    if not store.writable:
        pytest.skip("read-only store")
    for key, data in {**NOT_LISTED, **LISTED}.items():
        await store.seed(key, data)
    listed = await store.backend.list(store.url("a"))
    expected = sorted(["a/1.bin", "a/2.bin", "a/sub/3.bin", "a-sibling.bin", "ab/5.bin"])
    assert [s.url for s in listed] == [store.url(k) for k in expected]
    assert [s.url for s in await store.backend.list(store.url("a/s"))] == [store.url("a/sub/3.bin")]


async def test_local_list_keeps_the_url_form_and_skips_temp_files(tmp_path: Path) -> None:
    backend = make_backend("file://", retry=_policy())
    (tmp_path / "we ird").mkdir()
    (tmp_path / "we ird" / "x.bin").write_bytes(b"x")
    (tmp_path / "we ird" / ".x.bin.123-0123456789ab.tmp").write_bytes(b"a put in progress")
    uri = (tmp_path / "we ird").as_uri() + "/"
    (listed,) = await backend.list(uri)
    assert listed.url == uri + "x.bin"  # a file:// URL in, file:// URLs out
    assert (await backend.stat(listed.url)).token == listed.token
    (plain,) = await backend.list(str(tmp_path / "we ird") + "/")
    assert plain.url == str(tmp_path / "we ird" / "x.bin")
    assert await backend.list(str(tmp_path / "nothing") + "/") == []


async def test_delete(store: Store) -> None:
    await store.seed("d/gone.bin", DATA)
    url = store.url("d/gone.bin")
    if not store.writable:
        with pytest.raises(ReadOnlyError):
            await store.backend.delete(url)
        assert await store.backend.exists(url) is True
        return
    await store.backend.delete(url)
    assert await store.backend.exists(url) is False
    with pytest.raises(RemoteNotFoundError) as info:
        await store.backend.stat(url)
    assert isinstance(info.value, FileNotFoundError)
    await store.backend.delete(url)  # deleting a missing object is fine
    await store.backend.delete(store.url("d/never-was.bin"))
    assert await store.backend.list(store.url("d/")) == []


# -- S3 multipart -------------------------------------------------------------------------------


@pytest.fixture
async def s3(moto_server: MotoServer, s3_bucket: str) -> AsyncIterator[RetryingBackend]:
    backend = make_backend("s3://" + s3_bucket, moto_server.storage_options(), retry=_policy())
    try:
        yield backend
    finally:
        await backend.aclose()


def _open_uploads(moto: MotoServer, bucket: str) -> list[Any]:
    uploads: list[Any] = moto.client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return uploads


async def test_s3_large_put_is_multipart(
    s3: RetryingBackend,
    moto_server: MotoServer,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # S3 (and moto) require every part but the last to be >= 5 MiB.
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 1 * MIB)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * MIB)
    payload = os.urandom(11 * MIB + 7)
    src = tmp_path / "big.bin"
    src.write_bytes(payload)
    url = f"s3://{s3_bucket}/mp/big.bin"

    st = await s3.put(url, str(src), content_md5=_md5(payload), cache_control="no-cache")
    assert st.size == len(payload)
    assert st.etag is not None
    assert st.etag.endswith("-3")
    assert st.md5 is None  # a multipart ETag is not an MD5
    assert await s3.read_range(url) == payload
    head = moto_server.client.head_object(Bucket=s3_bucket, Key="mp/big.bin")
    assert head["CacheControl"] == "no-cache"

    # Bytes above the threshold still go in one request (only files are split).
    small = await s3.put(f"s3://{s3_bucket}/mp/bytes.bin", payload[: 2 * MIB])
    assert small.md5 == _md5(payload[: 2 * MIB])
    assert _open_uploads(moto_server, s3_bucket) == []


async def test_s3_multipart_conditions_and_md5(
    s3: RetryingBackend,
    moto_server: MotoServer,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 1 * MIB)
    monkeypatch.setattr(s3_module, "PART_SIZE", 5 * MIB)
    payload = os.urandom(6 * MIB)
    src = tmp_path / "big.bin"
    src.write_bytes(payload)
    url = f"s3://{s3_bucket}/mp/cond.bin"
    first = await s3.put(url, str(src), if_none_match=True)

    with pytest.raises(AiofolioError) as info:
        await s3.put(url, str(src), content_md5=_md5(b"not it"))
    assert_ours(info.value)
    with pytest.raises(PreconditionFailedError):
        await s3.put(url, str(src), if_none_match=True)
    # moto ignores If-Match on CompleteMultipartUpload (S3 honours it); the backend's check
    # before the upload is what fails here.
    with pytest.raises(PreconditionFailedError):
        await s3.put(url, str(src), if_match="0" * 32)
    with pytest.raises(PreconditionFailedError):
        await s3.put(f"s3://{s3_bucket}/mp/absent.bin", str(src), if_match=first.token)
    assert (await s3.stat(url)).token == first.token
    assert _open_uploads(moto_server, s3_bucket) == []  # failed uploads were aborted

    second = await s3.put(url, str(src), if_match=first.token)
    assert second.size == len(payload)


async def test_s3_multipart_failure_is_aborted_and_translated(
    s3: RetryingBackend,
    moto_server: MotoServer,
    s3_bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Parts below 5 MiB: moto refuses to complete (EntityTooSmall), as S3 does.
    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 256 * 1024)
    monkeypatch.setattr(s3_module, "PART_SIZE", 256 * 1024)
    src = tmp_path / "parts.bin"
    src.write_bytes(os.urandom(600 * 1024))
    url = f"s3://{s3_bucket}/mp/small-parts.bin"
    with pytest.raises(RemoteError) as info:
        await s3.put(url, str(src))
    assert_ours(info.value)
    assert await s3.exists(url) is False
    assert _open_uploads(moto_server, s3_bucket) == []


async def test_local_delete_refuses_a_directory_and_keeps_its_files(tmp_path: Path) -> None:
    from aiofolio.backends import make_backend
    from aiofolio.errors import RemoteError

    folder = tmp_path / "tables"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(b"keep me")
    backend = make_backend(str(tmp_path))
    with pytest.raises(RemoteError, match="directory"):
        await backend.delete(str(folder))
    assert (folder / "part-0.parquet").read_bytes() == b"keep me"
