"""The one retry policy of aiofolio, and the backend wrapper that applies it.

Owns: :class:`RetryPolicy` (jittered exponential backoff bounded in attempts and total time,
honouring ``Retry-After``; only :class:`~aiofolio.errors.TransientError` is retried) and
:class:`RetryingBackend`, which wraps any backend so every call is retried under the policy and a
stream that breaks at byte K resumes from K instead of starting over. A resumed stream is pinned
to the version and total size its first response stated, so it can never splice two versions.

Plain calls are driven by tenacity; streams use the same delay and stop rules through
:meth:`RetryPolicy.next_delay`, because a generator that has already yielded cannot be re-run
by a decorator. tenacity's ``RetryError`` never escapes: the last real error is re-raised.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState

from aiofolio.backends.base import (
    Backend,
    BaseBackend,
    FetchResult,
    NotModifiedType,
    ObjectStat,
    ProgressCallback,
    RangeReader,
    check_open_range,
    check_range,
    trim_range,
)
from aiofolio.errors import ThrottledError, TransientError

__all__ = ["RetryPolicy", "RetryingBackend"]

log = logging.getLogger("aiofolio.retry")
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Jittered exponential backoff with a bound on attempts and on total time.

    Attributes:
        attempts: the most calls made in all (1 = no retry).
        max_time: seconds after the first call past which no new attempt starts.
        base: the first backoff, in seconds; it doubles with each attempt.
        cap: the longest single backoff.
        sleep: the sleep coroutine (tests may inject a fake one).
    """

    attempts: int = 5
    max_time: float = 60.0
    base: float = 0.1
    cap: float = 10.0
    sleep: Callable[[float], Awaitable[None]] = field(default=anyio.sleep, compare=False)

    def next_delay(self, attempt: int, exc: BaseException, elapsed: float) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None`` to give up.

        Args:
            attempt: the number of attempts made so far (>= 1).
            exc: the error of the last attempt.
            elapsed: seconds since the first attempt started.
        """
        if not isinstance(exc, TransientError) or attempt >= self.attempts:
            return None
        remaining = self.max_time - elapsed
        if remaining <= 0:
            return None
        retry_after = exc.retry_after if isinstance(exc, ThrottledError) else None
        if retry_after is not None:
            delay = retry_after
        else:
            # "Full jitter": uniform in [0, min(cap, base * 2**(attempt-1))].
            delay = random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))
        if delay > remaining:
            return None
        return delay

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return 0.0
        delay = self.next_delay(state.attempt_number, exc, state.seconds_since_start or 0.0)
        return 0.0 if delay is None else delay

    def _stop(self, state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        if exc is None:
            return True
        return self.next_delay(state.attempt_number, exc, state.seconds_since_start or 0.0) is None

    async def call(self, fn: Callable[[], Awaitable[T]], *, what: str = "") -> T:
        """Run ``fn`` under the policy; re-raise the last error when retries run out."""
        retrying = AsyncRetrying(
            stop=self._stop,
            wait=self._wait,
            retry=_is_transient,
            reraise=True,
            sleep=self.sleep,
            before_sleep=lambda s: _log_retry(s, what),
        )

        async def attempt() -> T:
            # tenacity only awaits what is a coroutine function, not a lambda returning one.
            return await fn()

        result: T = await retrying(attempt)
        return result


def _is_transient(state: RetryCallState) -> bool:
    return bool(state.outcome and isinstance(state.outcome.exception(), TransientError))


def _log_retry(state: RetryCallState, what: str) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.info(
        "retrying %s after attempt %d (%s); waiting %.2fs",
        what or "call",
        state.attempt_number,
        exc,
        state.upcoming_sleep,
    )


class RetryingBackend:
    """A :class:`~aiofolio.backends.base.Backend` that retries every call of another one.

    Streams resume where they broke: if a read of ``[start, end)`` fails after K bytes, the next
    attempt asks only for ``[start + K, end)``. Attempts that make progress do not count against
    the attempt bound (the total-time bound still applies).
    """

    def __init__(self, inner: Backend, policy: RetryPolicy | None = None) -> None:
        self.inner = inner
        self.policy = policy or RetryPolicy()
        self.scheme = inner.scheme
        self.read_only = inner.read_only

    def __repr__(self) -> str:
        return f"RetryingBackend({self.inner!r}, {self.policy!r})"

    async def stat(self, url: str) -> ObjectStat:
        return await self.policy.call(lambda: self.inner.stat(url), what=f"stat {url}")

    async def exists(self, url: str) -> bool:
        return await self.policy.call(lambda: self.inner.exists(url), what=f"exists {url}")

    def open_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AbstractAsyncContextManager[RangeReader]:
        """The inner backend's :meth:`~aiofolio.backends.base.Backend.open_range`, retried.

        Opening is retried under the policy. If the body then breaks at byte K, the rest is
        asked for from K, pinned to the first response's token (or ``if_match``) and total
        size (or ``expected_size``); attempts that made progress do not count.
        """
        check_open_range(start, end)
        return self._open(url, start, end, if_match, expected_size)

    async def _open_inner(
        self,
        url: str,
        start: int,
        end: int | None,
        if_match: str | None,
        expected_size: int | None,
    ) -> tuple[AsyncExitStack, RangeReader]:
        stack = AsyncExitStack()
        reader = await stack.enter_async_context(
            self.inner.open_range(url, start, end, if_match=if_match, expected_size=expected_size)
        )
        return stack, reader

    @contextlib.asynccontextmanager
    async def _open(
        self,
        url: str,
        start: int,
        end: int | None,
        if_match: str | None,
        expected_size: int | None,
    ) -> AsyncIterator[RangeReader]:
        started = time.monotonic()
        stack, first = await self.policy.call(
            lambda: self._open_inner(url, start, end, if_match, expected_size),
            what=f"get {url}",
        )
        info = first.info
        pin = info.token if info.token is not None else if_match
        size = info.size if info.size is not None else expected_size
        stop = info.end  # where this body ends in the object (None: at EOF, or unknown)
        if stop is None and not info.is_whole:
            stop = end
        stacks = [stack]  # the exit stack of the response being read

        async def body() -> AsyncIterator[bytes]:
            pos = info.start
            attempt = 0
            reader: RangeReader | None = first
            while True:
                attempt += 1
                progressed = False
                try:
                    if reader is None:
                        # An encoded (decoded-on-the-fly) body cannot be resumed by a range of
                        # its decoded offsets: it is asked for whole again and skipped to pos.
                        again = 0 if info.content_encoding is not None else pos
                        stacks[0], reader = await self._open_inner(url, again, stop, pin, size)
                    chunks = reader if reader is first else trim_range(reader, pos, stop)
                    async for chunk in chunks:
                        if chunk:
                            pos += len(chunk)
                            progressed = True
                            yield chunk
                    if reader is not first and stop is not None and pos < stop:
                        raise TransientError(f"resumed body of {url} ended at {pos}", url=url)
                    return
                except TransientError as exc:
                    if progressed:
                        attempt = 0  # a resumed stream that moves forward is not a failure loop
                    delay = self.policy.next_delay(max(attempt, 1), exc, time.monotonic() - started)
                    if delay is None:
                        raise
                    log.info("resuming %s at byte %d after %s; waiting %.2fs", url, pos, exc, delay)
                    reader = None
                    old, stacks[0] = stacks[0], AsyncExitStack()
                    await old.aclose()
                    await self.policy.sleep(delay)

        async def release() -> None:
            await stacks[0].aclose()

        reader = RangeReader(info, body(), release)
        try:
            yield reader
        finally:
            await reader.aclose()

    async def read_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> bytes:
        chunks = self.iter_range(url, start, end, if_match=if_match, expected_size=expected_size)
        parts = [c async for c in chunks]
        return b"".join(parts)

    async def iter_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AsyncIterator[bytes]:
        check_range(start, end)
        if end is not None and end <= start:
            return
        if getattr(type(self.inner), "iter_range", None) is not BaseBackend.iter_range:
            # A backend with its own iter_range (a scripted test double) is resumed through it.
            async for chunk in self._resume_iter_range(url, start, end, if_match, expected_size):
                yield chunk
            return
        # Through open_range, a resumed stream is pinned to the first answer's token and size
        # even when the caller gave no pin, so it cannot splice two versions.
        async with self.open_range(
            url, start, end, if_match=if_match, expected_size=expected_size
        ) as reader:
            async for chunk in trim_range(reader, start, end):
                yield chunk

    async def _resume_iter_range(
        self,
        url: str,
        start: int,
        end: int | None,
        if_match: str | None,
        expected_size: int | None,
    ) -> AsyncIterator[bytes]:
        pos = start
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            progressed = False
            try:
                # (expected_size only when given: older doubles do not take it)
                extra = {} if expected_size is None else {"expected_size": expected_size}
                chunks = self.inner.iter_range(url, pos, end, if_match=if_match, **extra)
                async for chunk in chunks:
                    if chunk:
                        pos += len(chunk)
                        progressed = True
                        yield chunk
                return
            except TransientError as exc:
                if progressed:
                    attempt = 0  # a resumed stream that moves forward is not a failure loop
                delay = self.policy.next_delay(max(attempt, 1), exc, time.monotonic() - started)
                if delay is None:
                    raise
                log.info("resuming %s at byte %d after %s; waiting %.2fs", url, pos, exc, delay)
                await self.policy.sleep(delay)

    async def read_into(
        self,
        url: str,
        fileobj: BinaryIO,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> int:
        written = 0
        chunks = self.iter_range(url, start, end, if_match=if_match, expected_size=expected_size)
        async for chunk in chunks:
            fileobj.write(chunk)
            written += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return written

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        return await self.policy.call(
            lambda: self.inner.fetch_if_changed(url, token), what=f"conditional get {url}"
        )

    async def put(
        self,
        url: str,
        data: bytes | str,
        *,
        content_md5: str | None = None,
        cache_control: str | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectStat:
        return await self.policy.call(
            lambda: self.inner.put(
                url,
                data,
                content_md5=content_md5,
                cache_control=cache_control,
                content_type=content_type,
                if_match=if_match,
                if_none_match=if_none_match,
            ),
            what=f"put {url}",
        )

    async def list(self, url: str) -> list[ObjectStat]:
        return await self.policy.call(lambda: self.inner.list(url), what=f"list {url}")

    async def delete(self, url: str) -> None:
        await self.policy.call(lambda: self.inner.delete(url), what=f"delete {url}")

    async def aclose(self) -> None:
        await self.inner.aclose()
