"""The handle of a background warm (``warm_cache(background=True)``), usable from any thread.

Owns: :class:`WarmHandle` (``done``, ``result``, ``cancel``, ``progress``, awaitable) and
:func:`start`, which starts a warm job on the engine loop and keeps its task referenced while
it runs. The job itself is the engine's (:class:`aiofolio.engine.warm.WarmJob`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Generator
from typing import Any

from aiofolio import _portal
from aiofolio.engine.warm import WarmJob, WarmProgress, WarmResult, start_background
from aiofolio.errors import UsageError

__all__ = ["WarmHandle", "astart", "start"]

_RUNNING: set[asyncio.Task[Any]] = set()
"""Background warm tasks (asyncio keeps only weak references to tasks)."""


async def _start(job: WarmJob) -> concurrent.futures.Future[WarmResult]:
    return await start_background(job, _RUNNING)


def start(job: WarmJob) -> WarmHandle:
    """Start ``job`` in the background from sync code."""
    return WarmHandle(job, _portal.call(_start, job))


async def astart(job: WarmJob) -> WarmHandle:
    """Start ``job`` in the background from async code."""
    return WarmHandle(job, await _portal.acall(_start, job))


class WarmHandle:
    """A warm running in the background (returned by ``warm_cache(background=True)``).

    Usable from any thread, and awaitable from async code (``await handle`` or
    ``await handle.aresult()``; cancelling that await does not stop the warm: use
    :meth:`cancel`).
    """

    def __init__(self, job: WarmJob, future: concurrent.futures.Future[WarmResult]) -> None:
        self._job = job
        self._future = future

    def __repr__(self) -> str:
        p = self.progress
        state = "done" if self.done() else "running"
        return (
            f"<WarmHandle {state}: {p.items_done}/{p.items_total} items, "
            f"{p.bytes_done}/{p.bytes_total} bytes>"
        )

    @property
    def progress(self) -> WarmProgress:
        """Items and bytes done so far, out of the totals."""
        return self._job.progress

    def done(self) -> bool:
        """Whether the warm has finished (completed, or stopped by :meth:`cancel`)."""
        return self._future.done()

    def result(self, timeout: float | None = None) -> WarmResult:
        """Wait for the warm and return its :class:`WarmResult`.

        After :meth:`cancel` this is the partial result: what was cached before the cancel,
        with the rest listed in ``cancelled``.

        Raises:
            TimeoutError: not finished within ``timeout`` seconds (the warm goes on).
            UsageError: called on aiofolio's own event-loop thread before the warm finished
                (it would deadlock; ``await handle`` there instead).
        """
        if not self._future.done() and _portal.in_engine_thread():
            raise UsageError(
                "WarmHandle.result() would block aiofolio's own event loop; use "
                "'await handle' there instead"
            )
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the warm did not finish within {timeout} s") from None

    async def aresult(self) -> WarmResult:
        """Async twin of :meth:`result` (for any asyncio loop, aiofolio's own included)."""
        return await asyncio.shield(asyncio.wrap_future(self._future))

    def __await__(self) -> Generator[Any, None, WarmResult]:
        return self.aresult().__await__()

    async def acancel(self) -> bool:
        """Async twin of :meth:`cancel`: stop the warm and await its cleanup."""
        running = self.cancel(wait=False)
        with contextlib.suppress(Exception):
            await self.aresult()
        return running

    def cancel(self, *, wait: bool = True, timeout: float = 30.0) -> bool:
        """Stop the warm: no new downloads start, running ones are cancelled.

        Cancelled downloads delete their temp files before the warm counts as done. Items
        already cached stay cached.

        Args:
            wait: Block until the warm has stopped and cleaned up (at most ``timeout``
                seconds). From async code use :meth:`acancel` instead.
            timeout: The bound of that wait.

        Returns:
            True if the warm was still running when asked to stop.
        """
        if self._future.done():
            return False
        self._job.cancel_threadsafe()
        if wait and not _portal.in_engine_thread():
            concurrent.futures.wait([self._future], timeout=timeout)
        return True
