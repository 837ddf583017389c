"""The one retry policy of aiofolio, and the backend wrapper that applies it.

Owns: :class:`RetryPolicy` (jittered exponential backoff bounded in attempts and total time,
honouring ``Retry-After``; only :class:`~aiofolio.errors.TransientError` is retried) and
:class:`RetryingBackend`, which wraps any backend so every call is retried under the policy and a
stream that breaks at byte K resumes from K instead of starting over.

Plain calls are driven by tenacity; streams use the same delay and stop rules through
:meth:`RetryPolicy.next_delay`, because a generator that has already yielded cannot be re-run
by a decorator. tenacity's ``RetryError`` never escapes: the last real error is re-raised.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TypeVar

import anyio
from tenacity import AsyncRetrying, RetryCallState

from aiofolio.backends.base import (
    Backend,
    FetchResult,
    NotModifiedType,
    ObjectStat,
    ProgressCallback,
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

    async def read_range(
        self, url: str, start: int = 0, end: int | None = None, *, if_match: str | None = None
    ) -> bytes:
        parts = [c async for c in self.iter_range(url, start, end, if_match=if_match)]
        return b"".join(parts)

    async def iter_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
    ) -> AsyncIterator[bytes]:
        pos = start
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            progressed = False
            try:
                async for chunk in self.inner.iter_range(url, pos, end, if_match=if_match):
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
        progress: ProgressCallback | None = None,
    ) -> int:
        written = 0
        async for chunk in self.iter_range(url, start, end, if_match=if_match):
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
