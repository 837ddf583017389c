"""Retries, resumes and error translation of the backends, against injected network faults.

Owns the failure half of the backend contract, for two client stacks behind the same
:class:`~aiofolio.testing.FaultServer` rules:

- ``http``: :class:`~aiofolio.backends.http.HTTPBackend` (aiohttp) straight at ``http_server``;
- ``s3``: :class:`~aiofolio.backends.s3.S3Backend` (s3fs/aiobotocore) through ``fault_proxy``
  in front of moto.

Every backend comes from :func:`~aiofolio.backends.make_backend`, so the retry policy and the
stream resume of :class:`~aiofolio.backends.retry.RetryingBackend` are part of what is tested.
The server counts requests and body bytes; the tests assert on those counts. Also here: the
404 mapping of the GCS backend against gcp-storage-emulator.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import pytest
import tenacity

from aiofolio.backends import NOT_MODIFIED, RetryingBackend, RetryPolicy, make_backend
from aiofolio.errors import (
    AiofolioError,
    ChecksumMismatchError,
    PreconditionFailedError,
    RemoteError,
    RemoteNotFoundError,
    RemotePermissionError,
    RemoteTimeoutError,
    TransientError,
)
from aiofolio.testing import Fault, FaultServer, GcsEmulator, MotoServer

MIB = 1024 * 1024
SIZE = 4 * MIB + 12345
K = 1536 * 1024  # the body offset of resets and truncations: inside the second MiB


def assert_ours(exc: BaseException) -> None:
    """An aiofolio error class: no botocore/aiohttp/gcsfs/fsspec/tenacity exception escapes."""
    assert isinstance(exc, AiofolioError), f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
    assert type(exc).__module__ == "aiofolio.errors"
    assert not isinstance(exc, tenacity.RetryError)


def _fast(attempts: int = 5, max_time: float = 10.0) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, base=0.01, cap=0.05, max_time=max_time)


def _range_start(header: str | None) -> int:
    match = re.fullmatch(r"bytes=(\d+)-\d*", header or "")
    assert match is not None, f"not a from-offset range: {header!r}"
    return int(match.group(1))


@dataclass
class Target:
    """A backend kind behind a fault server: where objects live and how the server sees them."""

    kind: str
    server: FaultServer
    #: The object's URL for the backend.
    url: Callable[[str], str]
    #: The request path the fault server sees for a key (what faults and stats match).
    path: Callable[[str], str]
    #: Store bytes at a key, behind the backend's back.
    seed: Callable[[str, bytes], Awaitable[None]]
    make: Callable[..., RetryingBackend]

    def requests(self, key: str) -> int:
        return self.server.stats.requests(self.path(key))

    def fault(self, key: str, fault: Fault) -> None:
        self.server.set_fault(self.path(key), fault)


@pytest.fixture(params=["http", "s3"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    made: list[RetryingBackend] = []
    if request.param == "http":
        server: FaultServer = request.getfixturevalue("http_server")

        async def seed_http(key: str, data: bytes) -> None:
            server.put("/objs/" + key, data)

        def make_http(retry: RetryPolicy | None = None, **kwargs: Any) -> RetryingBackend:
            backend = make_backend(server.url, retry=retry or _fast(), **kwargs)
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

        def make_s3(retry: RetryPolicy | None = None, **kwargs: Any) -> RetryingBackend:
            options = moto.storage_options(endpoint_url=proxy.url)
            backend = make_backend("s3://" + bucket, options, retry=retry or _fast(), **kwargs)
            made.append(backend)
            return backend

        yield Target(
            "s3",
            proxy,
            lambda key: f"s3://{bucket}/{key}",
            lambda key: f"/{bucket}/{key}",  # path-style: the endpoint is an IP address
            seed_s3,
            make_s3,
        )
    for backend in made:
        await backend.aclose()


async def _op_stat(b: RetryingBackend, url: str) -> object:
    return (await b.stat(url)).size


async def _op_read(b: RetryingBackend, url: str) -> object:
    return await b.read_range(url, 2, 9)


async def _op_fetch(b: RetryingBackend, url: str) -> object:
    result = await b.fetch_if_changed(url, None)
    assert result is not NOT_MODIFIED
    return result[0]


OPS = {"stat": _op_stat, "read": _op_read, "fetch": _op_fetch}
SMALL = b"0123456789abcdef"
EXPECTED = {"stat": len(SMALL), "read": SMALL[2:9], "fetch": SMALL}


# -- retried statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(OPS))
async def test_two_503s_then_success(target: Target, op: str) -> None:
    await target.seed("o.bin", SMALL)
    target.fault("o.bin", Fault(fail_n=2, fail_status=503))
    backend = target.make()
    assert await OPS[op](backend, target.url("o.bin")) == EXPECTED[op]
    assert target.requests("o.bin") == 3
    assert target.server.stats.statuses(target.path("o.bin"))[:2] == [503, 503]


async def test_429_with_retry_after_waits(target: Target) -> None:
    await target.seed("o.bin", SMALL)
    target.fault("o.bin", Fault(fail_n=1, fail_status=429, retry_after=1))
    backend = target.make(_fast(max_time=10))
    started = time.monotonic()
    assert await backend.read_range(target.url("o.bin")) == SMALL
    assert time.monotonic() - started >= 1.0
    assert target.server.stats.statuses(target.path("o.bin")) == [429, 200]


async def test_exhausted_retries_raise_the_last_real_error(target: Target) -> None:
    await target.seed("o.bin", SMALL)
    target.fault("o.bin", Fault(fail_n=1000, fail_status=503))
    backend = target.make(_fast(attempts=3))
    url = target.url("o.bin")
    for op in (_op_stat, _op_read, _op_fetch):
        before = target.requests("o.bin")
        with pytest.raises(TransientError) as info:
            await op(backend, url)
        assert_ours(info.value)
        assert info.value.status == 503
        assert info.value.url == url
        assert target.requests("o.bin") - before == 3


# -- errors that are not retried ----------------------------------------------------------------


@pytest.mark.parametrize("op", sorted(OPS))
async def test_404_is_not_found_without_retry(target: Target, op: str) -> None:
    backend = target.make()
    url = target.url("missing.bin")
    with pytest.raises(RemoteNotFoundError) as info:
        await OPS[op](backend, url)
    assert_ours(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.status == 404
    assert url in str(info.value)
    assert target.requests("missing.bin") == 1
    assert await backend.exists(url) is False


@pytest.mark.parametrize("op", sorted(OPS))
async def test_403_is_permission_error_without_retry(target: Target, op: str) -> None:
    await target.seed("o.bin", SMALL)
    target.fault("o.bin", Fault(fail_n=1, fail_status=403))
    backend = target.make()
    with pytest.raises(RemotePermissionError) as info:
        await OPS[op](backend, target.url("o.bin"))
    assert_ours(info.value)
    assert isinstance(info.value, PermissionError)
    assert info.value.status == 403
    assert target.requests("o.bin") == 1


async def test_a_server_that_never_answers_times_out(target: Target) -> None:
    await target.seed("o.bin", SMALL)
    target.fault("o.bin", Fault(hang=True, max_hang=10))
    backend = target.make(RetryPolicy(attempts=2, max_time=5, base=0.01), read_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(RemoteTimeoutError) as info:
        await backend.read_range(target.url("o.bin"))
    elapsed = time.monotonic() - started
    assert_ours(info.value)
    assert isinstance(info.value, TimeoutError | TransientError)
    assert target.requests("o.bin") == 2  # bounded: attempts=2
    assert elapsed >= 0.55  # two reads that each waited out read_timeout=0.3


# -- broken streams -----------------------------------------------------------------------------


async def test_reset_mid_stream_resumes(target: Target) -> None:
    data = os.urandom(SIZE)
    await target.seed("big.bin", data)
    target.fault("big.bin", Fault(reset_after=K, times=1))
    backend = target.make()
    assert await backend.read_range(target.url("big.bin")) == data
    first, second = target.server.stats.records(target.path("big.bin"))
    assert first.fault == "reset"
    assert first.aborted
    assert first.range is None
    # The resume asks only for what was not received (Linux may drop unread bytes on a RST).
    assert 0 < _range_start(second.range) <= K
    assert second.bytes_sent == SIZE - _range_start(second.range)
    assert target.server.stats.bytes_served(target.path("big.bin")) < 1.5 * SIZE


async def test_truncated_body_resumes(target: Target) -> None:
    data = os.urandom(SIZE)
    await target.seed("big.bin", data)
    target.fault("big.bin", Fault(truncate_at=K, times=1))
    backend = target.make()
    start, end = 1000, SIZE - 1000
    assert await backend.read_range(target.url("big.bin"), start, end) == data[start:end]
    first, second = target.server.stats.records(target.path("big.bin"))
    assert first.fault == "truncate"
    assert first.bytes_sent == K
    assert first.range == f"bytes={start}-{end - 1}"
    resumed = _range_start(second.range)
    assert start < resumed <= start + K
    assert second.range == f"bytes={resumed}-{end - 1}"
    assert target.server.stats.bytes_served(target.path("big.bin")) < 1.5 * (end - start)


async def test_read_into_resumes_with_progress(target: Target) -> None:
    data = os.urandom(SIZE)
    await target.seed("big.bin", data)
    target.fault("big.bin", Fault(reset_after=K, times=1))
    backend = target.make()
    seen: list[int] = []
    buf = io.BytesIO()
    written = await backend.read_into(target.url("big.bin"), buf, progress=seen.append)
    assert written == sum(seen) == SIZE
    assert hashlib.md5(buf.getvalue()).digest() == hashlib.md5(data).digest()
    assert target.requests("big.bin") == 2


async def test_corrupt_bytes_are_returned_unverified(target: Target) -> None:
    # The backend layer does not verify content; the engine checks the manifest's MD5.
    data = os.urandom(64 * 1024)
    await target.seed("c.bin", data)
    target.fault("c.bin", Fault(corrupt=True, corrupt_bytes=3, times=1))
    backend = target.make()
    got = await backend.read_range(target.url("c.bin"))
    assert len(got) == len(data)
    assert got != data
    assert sum(a != b for a, b in zip(got, data, strict=True)) == 3
    assert await backend.read_range(target.url("c.bin")) == data  # the fault was used up


async def test_s3_checksum_validation_if_asked_raises_our_error(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    # Off by default (see test_corrupt_bytes_are_returned_unverified); a caller may turn
    # botocore's CRC check back on, and its failure is then translated, not leaked.
    data = os.urandom(64 * 1024)
    await anyio.to_thread.run_sync(moto_server.put_object, s3_bucket, "c.bin", data)
    fault_proxy.set_fault(f"/{s3_bucket}/c.bin", Fault(corrupt=True, times=1))
    options = moto_server.storage_options(endpoint_url=fault_proxy.url)
    options["config_kwargs"]["response_checksum_validation"] = "when_supported"
    backend = make_backend("s3://" + s3_bucket, options, retry=_fast())
    try:
        with pytest.raises(ChecksumMismatchError) as info:
            await backend.read_range(f"s3://{s3_bucket}/c.bin")
        assert_ours(info.value)
        assert await backend.read_range(f"s3://{s3_bucket}/c.bin") == data
    finally:
        await backend.aclose()


async def test_replaced_mid_download_with_a_pin_fails_instead_of_mixing(target: Target) -> None:
    old, new = os.urandom(SIZE), os.urandom(SIZE)
    await target.seed("v.bin", old)
    backend = target.make()
    token = (await backend.stat(target.url("v.bin"))).token
    assert token is not None
    # Replaced after K/2 bytes of the first GET, which is then reset at K: the resume must not
    # stitch the new object's tail onto the old head.
    target.fault(
        "v.bin",
        Fault(reset_after=K, replace_with=new, replace_after=K // 2, times=1, methods={"GET"}),
    )
    with pytest.raises(PreconditionFailedError) as info:
        await backend.read_range(target.url("v.bin"), if_match=token)
    assert_ours(info.value)
    records = target.server.stats.records(target.path("v.bin"), "GET")
    assert [r.fault for r in records] == ["replace,reset", None]
    assert records[1].status == 412
    assert _range_start(records[1].range) > 0  # it was the resumed request that failed
    assert await backend.read_range(target.url("v.bin")) == new


# -- GCS (emulator) -----------------------------------------------------------------------------


@pytest.fixture
async def gcs(gcs_server: GcsEmulator) -> AsyncIterator[RetryingBackend]:
    backend = make_backend("gs://x", gcs_server.storage_options(), retry=_fast())
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_gcs_emulator_404_mapping(gcs: RetryingBackend, gcs_bucket: str) -> None:
    url = f"gs://{gcs_bucket}/missing.bin"
    for call in (
        lambda: gcs.stat(url),
        lambda: gcs.read_range(url, 0, 10),
        lambda: gcs.read_range(url),
        lambda: gcs.fetch_if_changed(url, None),
        lambda: gcs.fetch_if_changed(url, "123"),
    ):
        with pytest.raises(RemoteNotFoundError) as info:
            await call()
        assert_ours(info.value)
        assert isinstance(info.value, FileNotFoundError)
        assert info.value.status == 404
        assert url in str(info.value)
    assert await gcs.exists(url) is False
    await gcs.delete(url)  # deleting a missing object is fine

    no_bucket = "gs://no-such-bucket-aiofolio/x.bin"
    with pytest.raises(RemoteNotFoundError):
        await gcs.stat(no_bucket)
    with pytest.raises(RemoteError) as err:
        await gcs.list("gs://no-such-bucket-aiofolio/")
    assert_ours(err.value)
