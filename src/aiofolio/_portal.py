"""The one process-wide background event-loop thread (``aiofolio-io``) behind the sync API.

Owns: starting that thread lazily (an anyio :class:`~anyio.from_thread.BlockingPortal` on an
asyncio loop), running coroutines on it from sync code (:func:`call`, interruptible by Ctrl-C,
which cancels the work) and from any other event loop (:func:`acall`, where cancelling the
caller cancels the work), refusing re-entry from the engine thread with a clear
:class:`~aiofolio.errors.UsageError`, and fork and exit hygiene: a forked child gets a fresh
thread, and at interpreter exit the shutdown callbacks (closing clients) run on the loop before
it stops. No business logic lives here.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from aiofolio.errors import UsageError

__all__ = [
    "THREAD_NAME",
    "acall",
    "add_shutdown_callback",
    "allow_blocking",
    "call",
    "in_engine_thread",
    "refuse_blocking_on",
    "shutdown",
]

THREAD_NAME = "aiofolio-io"
log = logging.getLogger("aiofolio.portal")
T = TypeVar("T")

_lock = threading.Lock()
_state: _Runner | None = None
_shutdown_callbacks: list[Callable[[], Awaitable[None]]] = []


class _Runner:
    """The thread, its loop and the portal into it."""

    def __init__(self) -> None:
        self.portal: BlockingPortal | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self.thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        if self.portal is None:
            raise RuntimeError("the aiofolio-io event loop did not start within 30 s")

    def _run(self) -> None:
        try:
            anyio.run(self._serve)
        except BaseException as exc:  # pragma: no cover - only if the loop cannot start
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with BlockingPortal() as portal:
            self.loop = asyncio.get_running_loop()
            self.portal = portal
            self._ready.set()
            await portal.sleep_until_stopped()

    def stop(self, timeout: float = 10.0) -> None:
        portal = self.portal
        if portal is None or not self.thread.is_alive():
            return
        try:
            portal.call(_run_shutdown_callbacks)
        except BaseException as exc:  # shutdown must go on
            log.debug("shutdown callbacks failed: %r", exc)
        try:
            portal.call(portal.stop, True)
        except BaseException as exc:
            log.debug("stopping the portal failed: %r", exc)
        self.thread.join(timeout)


async def _run_shutdown_callbacks() -> None:
    for callback in list(_shutdown_callbacks):
        try:
            await callback()
        except Exception as exc:  # one failure must not stop the rest
            log.warning("aiofolio shutdown callback %r failed: %s", callback, exc)


def _runner() -> _Runner:
    global _state
    state = _state
    if state is not None and state.thread.is_alive():
        return state
    with _lock:
        if _state is None or not _state.thread.is_alive():
            _state = _Runner()
        return _state


def in_engine_thread() -> bool:
    """Whether the caller runs on the ``aiofolio-io`` thread."""
    state = _state
    return state is not None and threading.current_thread() is state.thread


_refusing: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def refuse_blocking_on(loop: asyncio.AbstractEventLoop) -> None:
    """Make :func:`call` refuse to block ``loop``'s thread (a Dask worker's event loop)."""
    _refusing.add(loop)


_allowed = threading.local()


@contextlib.contextmanager
def allow_blocking() -> Iterator[None]:
    """Let :func:`call` block a refusing loop inside the block (unpickling a folio, which
    Dask does on the worker's event loop: the open is one manifest check, then memoized)."""
    before = getattr(_allowed, "on", False)
    _allowed.on = True
    try:
        yield
    finally:
        _allowed.on = before


def _check_loop() -> None:
    if getattr(_allowed, "on", False):
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return
    if loop in _refusing:
        raise UsageError(
            "a blocking aiofolio call was made on a Dask worker's event-loop thread, which "
            "must never block; call it from a task (client.submit / client.map run in the "
            "worker's task threads) or await the async method (await folio.aget(...))"
        )


def add_shutdown_callback(callback: Callable[[], Awaitable[None]]) -> None:
    """Run ``callback`` on the engine loop at shutdown (e.g. to close network clients)."""
    if callback not in _shutdown_callbacks:
        _shutdown_callbacks.append(callback)


def call(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Run ``fn(*args)`` on the engine loop and block until it finishes.

    Works from any thread, including one that runs its own event loop (Jupyter). Ctrl-C while
    blocked cancels the work (so it can clean up) and then re-raises ``KeyboardInterrupt``.

    Raises:
        UsageError: when called from the engine thread itself, where it would deadlock.
    """
    _check_loop()
    if in_engine_thread():
        raise UsageError(
            "a blocking aiofolio call was made from aiofolio's own event-loop thread (for "
            "example inside an on_cache_invalidation callback); use the async method "
            "(await folio.aget(...)) there instead"
        )
    runner = _runner()
    assert runner.portal is not None
    finished = threading.Event()

    async def tracked() -> T:
        try:
            return await fn(*args)
        finally:
            finished.set()

    future: concurrent.futures.Future[T] = runner.portal.start_task_soon(tracked)
    try:
        return future.result()
    except KeyboardInterrupt:
        # The future reads "cancelled" at once; the task's own cleanup (temp files) runs
        # after, on the engine loop. Wait for it, bounded, before handing Ctrl-C back.
        future.cancel()
        finished.wait(10)
        raise


async def acall(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Await ``fn(*args)`` run on the engine loop, from any event loop in any thread.

    Cancelling the caller cancels the work on the engine loop.
    """
    if in_engine_thread():
        return await fn(*args)
    runner = _runner()
    assert runner.portal is not None
    future: concurrent.futures.Future[T] = runner.portal.start_task_soon(fn, *args)
    try:
        asyncio.get_running_loop()
        on_asyncio = True
    except RuntimeError:  # trio, via anyio
        on_asyncio = False
    if on_asyncio:
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise
    try:
        return await anyio.to_thread.run_sync(future.result, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        future.cancel()
        raise


def shutdown(timeout: float = 10.0) -> None:
    """Run the shutdown callbacks and stop the engine thread (it restarts on next use)."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is not None:
        state.stop(timeout)


def _after_fork_in_child() -> None:
    # The parent's thread does not exist in the child; its loop and clients must not be used.
    global _state, _lock
    _state = None
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(shutdown)
