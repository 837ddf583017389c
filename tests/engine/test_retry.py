"""The retry policy and RetryingBackend, driven through the scriptable memory backend."""

from __future__ import annotations

import hashlib
import io

import pytest

from aiofolio.backends import RetryingBackend, RetryPolicy
from aiofolio.backends.memory import MemoryBackend
from aiofolio.errors import (
    PreconditionFailedError,
    RemoteNotFoundError,
    RemoteTimeoutError,
    ThrottledError,
    TransientError,
)

URL = "memory://bucket/obj.bin"


class FakeSleep:
    """Records requested sleeps instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def _retrying(mem: MemoryBackend, **kw: float) -> tuple[RetryingBackend, FakeSleep]:
    sleep = FakeSleep()
    policy = RetryPolicy(
        attempts=int(kw.get("attempts", 5)),
        max_time=kw.get("max_time", 60.0),
        base=0.1,
        cap=2.0,
        sleep=sleep,
    )
    return RetryingBackend(mem, policy), sleep


def test_next_delay_is_bounded_jittered_and_gives_up() -> None:
    policy = RetryPolicy(attempts=4, max_time=10.0, base=0.5, cap=1.0)
    transient = TransientError("x")
    for attempt in (1, 2, 3):
        for _ in range(50):
            delay = policy.next_delay(attempt, transient, 0.0)
            assert delay is not None
            assert 0.0 <= delay <= min(1.0, 0.5 * 2 ** (attempt - 1))
    assert policy.next_delay(4, transient, 0.0) is None  # attempt bound
    assert policy.next_delay(1, transient, 10.5) is None  # time bound
    assert policy.next_delay(1, RemoteNotFoundError("404"), 0.0) is None  # not transient
    assert policy.next_delay(1, ValueError("x"), 0.0) is None


def test_retry_after_is_honoured_and_bounded_by_total_time() -> None:
    policy = RetryPolicy(attempts=5, max_time=10.0)
    throttled = ThrottledError("429")
    throttled.retry_after = 3.0
    assert policy.next_delay(1, throttled, 0.0) == 3.0
    assert policy.next_delay(1, throttled, 8.0) is None  # would run past max_time


async def test_two_transient_failures_then_success() -> None:
    mem = MemoryBackend()
    mem.set(URL, b"payload")
    mem.fail_next(TransientError("503"), times=2, method="stat")
    backend, sleep = _retrying(mem)
    stat = await backend.stat(URL)
    assert stat.size == 7
    assert mem.calls["stat"] == 3
    assert len(sleep.calls) == 2


async def test_not_found_is_not_retried() -> None:
    mem = MemoryBackend()
    backend, sleep = _retrying(mem)
    with pytest.raises(RemoteNotFoundError):
        await backend.stat(URL)
    assert mem.calls["stat"] == 1
    assert sleep.calls == []


async def test_exhausted_retries_reraise_the_last_real_error() -> None:
    mem = MemoryBackend()
    mem.set(URL, b"x")
    mem.fail_next(RemoteTimeoutError("timed out"), times=10, method="stat")
    backend, _ = _retrying(mem, attempts=3)
    with pytest.raises(RemoteTimeoutError, match="timed out"):
        await backend.stat(URL)
    assert mem.calls["stat"] == 3


class BreakingBackend(MemoryBackend):
    """Breaks the first stream after ``break_at`` bytes, once."""

    def __init__(self, break_at: int) -> None:
        super().__init__(chunk_size=1000)
        self.break_at = break_at
        self.requested: list[tuple[int, int | None]] = []

    async def iter_range(self, url, start=0, end=None, *, if_match=None):  # type: ignore[no-untyped-def,override]
        self.requested.append((start, end))
        sent = 0
        async for chunk in super().iter_range(url, start, end, if_match=if_match):
            if len(self.requested) == 1 and sent + len(chunk) > self.break_at:
                yield chunk[: self.break_at - sent]
                raise TransientError("connection reset")
            sent += len(chunk)
            yield chunk


async def test_a_broken_stream_resumes_where_it_stopped() -> None:
    data = bytes(range(256)) * 40  # 10,240 bytes
    mem = BreakingBackend(break_at=4500)
    mem.set(URL, data)
    backend, sleep = _retrying(mem)
    out = io.BytesIO()
    progress: list[int] = []
    written = await backend.read_into(URL, out, progress=progress.append)
    assert out.getvalue() == data
    assert written == len(data) == sum(progress)
    assert mem.requested == [(0, None), (4500, None)]
    assert mem.bytes_served < len(data) + 1000  # not twice the object
    assert len(sleep.calls) == 1


async def test_resume_keeps_the_version_pin() -> None:
    data = b"a" * 5000
    mem = BreakingBackend(break_at=2000)
    stat = mem.set(URL, data)
    backend, _ = _retrying(mem)
    # Replace the object while the first stream is running: the resumed request is pinned.
    mem.replace_after(URL, 1000, b"b" * 5000)
    with pytest.raises(PreconditionFailedError):
        await backend.read_range(URL, if_match=stat.etag)
    assert hashlib.md5(b"b" * 5000).hexdigest() == (await backend.stat(URL)).md5
