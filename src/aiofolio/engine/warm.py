"""Cache warming: fetch many items of one bundle into the cache, concurrently and bounded.

Owns: :class:`WarmJob` (one warm on the engine loop: a warm-only semaphore bounds how many
items download at once, every item goes through the cache's normal verified path, so a
foreground ``get`` of an item being warmed joins the same download), the progress figures
(:class:`WarmProgress`, fed by :mod:`aiofolio.engine.progress`), the per-item outcome
(:class:`WarmResult`) and :func:`start_background` (a warm as a task on the engine loop, its
result in a thread-safe future; the facade's ``WarmHandle`` wraps it).

Foreground reads never take the warm's semaphores, so a large warm cannot queue them. The
default bound (:func:`default_concurrency`) lets many small items fly at once (their cost is
latency); large, chunked items take a second, narrower semaphore (:func:`large_slots`) so the
warm leaves connections free for foreground reads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio

from aiofolio.bundle import Item, Manifest
from aiofolio.engine.progress import bytes_sink
from aiofolio.errors import UsageError

__all__ = [
    "WarmJob",
    "WarmListener",
    "WarmProgress",
    "WarmResult",
    "default_concurrency",
    "large_slots",
    "start_background",
]

log = logging.getLogger("aiofolio.warm")

_LISTENER_INTERVAL = 0.1
"""Seconds between two progress-listener calls (the last call is never skipped)."""
_CLEANUP_WAIT = 30.0
"""Seconds a cancelled warm waits for its downloads to delete their temp files."""


def default_concurrency(parallel_downloads: int) -> int:
    """Items a warm downloads at once by default: ``4 * parallel_downloads`` (32).

    Small items are bound by latency, not bandwidth, so many in flight is what makes a warm of
    thousands of small items fast; large items are gated further (:func:`large_slots`), since
    each one already uses up to ``parallel_downloads`` ranged GETs.
    """
    return max(1, 4 * parallel_downloads)


def large_slots(concurrency: int, parallel_downloads: int) -> int:
    """Large items (chunked downloads) a warm runs at once: at most half the connections.

    With the defaults, 32 // 16 = 2 large items (16 ranged GETs) at a time, which leaves the
    client's connection pool (64 for S3) free for foreground reads.
    """
    return max(1, concurrency // (2 * max(1, parallel_downloads)))


@dataclass(frozen=True)
class WarmProgress:
    """How far a warm has come (a snapshot; ask the handle again for newer figures).

    Attributes:
        items_done: Items finished, cached or failed.
        items_total: Items the warm covers.
        bytes_done: Bytes of the items cached so far plus bytes landed of running downloads.
        bytes_total: Bytes of all items (recorded sizes; an item without one adds its size
            when it is cached). A failed item's bytes leave both figures, so a finished warm
            has ``bytes_done == bytes_total``. Items stopped by a cancel leave the totals.
        items_failed: Items that failed so far.
    """

    items_done: int = 0
    items_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    items_failed: int = 0

    @property
    def finished(self) -> bool:
        """Whether every item is done."""
        return self.items_done >= self.items_total


@dataclass(frozen=True)
class WarmResult:
    """What a warm did, item by item.

    Attributes:
        cached: Names now in the cache (verified), in bundle order.
        failed: Names that could not be cached, each with its exception. One failure never
            stops the other items.
        cancelled: Names not cached because :meth:`WarmHandle.cancel` stopped the warm first.
        skipped: Names the large-file policy keeps out of the cache
            (``cache_large_files=False``): not downloaded.
    """

    cached: tuple[str, ...] = ()
    failed: Mapping[str, BaseException] = field(default_factory=dict)
    cancelled: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing was cancelled (skipped items are fine)."""
        return not self.failed and not self.cancelled


class WarmJob:
    """One warm of one bundle; runs on the engine loop.

    Args:
        fetch: Caches one item and returns its local path (``BundleSession.blob_path``).
        manifest: Gives the manifest to resolve against (``BundleSession.current_manifest``).
        select: Picks the items to warm from that manifest.
        concurrency: Items downloading at once (a semaphore only this warm takes).
        large: Of those, large items (at least ``large_size`` bytes) at once.
        large_size: The size from which an item counts as large (``parallel_threshold``).
        listener: Called on the engine loop with a :class:`WarmProgress` as figures change
            (at most every 0.1 s, and once at the end): the progress bar.
        on_finish: Called on the engine loop when the warm ends, however it ends (closes
            the bar).
        skip: Items for which it returns True are not fetched (listed as ``skipped``).
    """

    def __init__(
        self,
        *,
        fetch: Callable[[Item], Awaitable[Any]],
        manifest: Callable[[], Awaitable[Manifest]],
        select: Callable[[Manifest], Sequence[Item]],
        concurrency: int,
        large: int | None = None,
        large_size: int | None = None,
        listener: Callable[[WarmProgress], None] | None = None,
        on_finish: Callable[[], None] | None = None,
        skip: Callable[[Item], bool] | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._fetch = fetch
        self._manifest = manifest
        self._select = select
        self._concurrency = concurrency
        self._large = max(1, large or concurrency)
        self._large_size = large_size
        self._listener = listener
        self._on_finish = on_finish
        self._skip = skip
        self._lock = threading.Lock()  # figures are read from other threads
        self._progress = WarmProgress()
        self._last_report = 0.0
        self._cancelling = False
        self._tasks: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- figures ----------------------------------------------------------------------------
    @property
    def progress(self) -> WarmProgress:
        """The current figures (safe from any thread)."""
        with self._lock:
            return self._progress

    def _bump(self, **deltas: int) -> None:
        with self._lock:
            p = self._progress
            self._progress = WarmProgress(
                items_done=p.items_done + deltas.get("items_done", 0),
                items_total=p.items_total + deltas.get("items_total", 0),
                bytes_done=p.bytes_done + deltas.get("bytes_done", 0),
                bytes_total=p.bytes_total + deltas.get("bytes_total", 0),
                items_failed=p.items_failed + deltas.get("items_failed", 0),
            )
        self._report(final=False)

    def _report(self, *, final: bool) -> None:
        listener = self._listener
        if listener is None:
            return
        now = time.monotonic()
        if not final and now - self._last_report < _LISTENER_INTERVAL:
            return
        self._last_report = now
        try:
            listener(self.progress)
        except Exception as exc:  # a display must never break the warm
            log.debug("warm progress listener failed: %r", exc)

    # -- running ------------------------------------------------------------------------------
    async def run(self) -> WarmResult:
        """Warm every selected item; per-item failures are collected, never raised.

        ``concurrency`` workers take the items in order (no task per item: a warm of 100,000
        items holds ``concurrency`` tasks, not 100,000).
        """
        self._loop = asyncio.get_running_loop()
        outcomes: dict[str, BaseException | None] = {}
        try:
            manifest = await self._manifest()
            chosen = list(self._select(manifest))
            skip = self._skip
            skipped = [i.name for i in chosen if skip is not None and skip(i)]
            left_out = set(skipped)
            items = [i for i in chosen if i.name not in left_out]
            self._bump(
                items_total=len(items),
                bytes_total=sum(i.size_bytes or 0 for i in items),
            )
            large = asyncio.Semaphore(self._large)
            queue = iter(items)

            async def worker() -> None:
                for item in queue:  # one loop thread: the shared iterator needs no lock
                    try:
                        await self._one(item, large if self._is_large(item) else None)
                    except asyncio.CancelledError as exc:
                        outcomes[item.name] = exc
                        raise
                    except BaseException as exc:
                        outcomes[item.name] = exc
                    else:
                        outcomes[item.name] = None

            self._tasks = [
                asyncio.ensure_future(worker())
                for _ in range(min(self._concurrency, max(1, len(items))))
            ]
            if self._cancelling:  # cancel() came while the manifest loaded
                for task in self._tasks:
                    task.cancel()
            try:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            except asyncio.CancelledError:  # the caller went away (Ctrl-C on a sync warm)
                for task in self._tasks:
                    task.cancel()
                with anyio.CancelScope(shield=True):  # let their temp-file cleanup finish
                    await asyncio.wait(self._tasks, timeout=_CLEANUP_WAIT)
                raise
        finally:
            self._report(final=True)
            if self._on_finish is not None:
                try:
                    self._on_finish()
                except Exception as exc:  # pragma: no cover - display cleanup only
                    log.debug("warm on_finish failed: %r", exc)
        cached: list[str] = []
        failed: dict[str, BaseException] = {}
        cancelled: list[str] = []
        for item in items:
            outcome = outcomes.get(item.name, asyncio.CancelledError())  # never started
            if isinstance(outcome, asyncio.CancelledError):
                cancelled.append(item.name)
            elif outcome is not None:
                failed[item.name] = outcome
            else:
                cached.append(item.name)
        log.info(
            "warm: %d cached, %d failed, %d cancelled, %d skipped",
            len(cached),
            len(failed),
            len(cancelled),
            len(skipped),
        )
        return WarmResult(
            cached=tuple(cached),
            failed=failed,
            cancelled=tuple(cancelled),
            skipped=tuple(skipped),
        )

    def _is_large(self, item: Item) -> bool:
        size = item.size_bytes
        return self._large_size is not None and size is not None and size >= self._large_size

    async def _one(self, item: Item, large: asyncio.Semaphore | None) -> str:
        landed = 0

        def sink(n: int) -> None:
            nonlocal landed
            landed += n
            self._bump(bytes_done=n)

        try:
            async with large or contextlib.nullcontext():
                with bytes_sink(sink):
                    path = await self._fetch(item)
        except asyncio.CancelledError:  # stopped by cancel(): it leaves the totals
            self._bump(items_total=-1, bytes_done=-landed, bytes_total=-(item.size_bytes or 0))
            raise
        except BaseException:
            self._bump(
                items_done=1,
                items_failed=1,
                bytes_done=-landed,
                bytes_total=-(item.size_bytes or 0),
            )
            raise
        size = item.size_bytes
        extra_total = 0
        if size is None:  # unknown up front (a reference): count what landed on disk
            try:
                size = os.stat(path).st_size
            except OSError:
                size = landed
            extra_total = size
        # A hit or a joined download landed nothing here; a retried one landed more: settle.
        self._bump(items_done=1, bytes_done=size - landed, bytes_total=extra_total)
        return str(path)

    def cancel(self) -> None:
        """Stop the warm (engine loop only): queued items never start, running ones are
        cancelled and clean up their temp files; :meth:`run` then returns the partial result."""
        self._cancelling = True
        for task in self._tasks:
            task.cancel()

    def cancel_threadsafe(self) -> None:
        """:meth:`cancel` from any thread."""
        loop = self._loop
        if loop is None or _running_loop() is loop:
            self._cancelling = True  # seen by run() before it starts any item
            if loop is not None:
                self.cancel()
            return
        loop.call_soon_threadsafe(self.cancel)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


WarmListener = Callable[[WarmProgress], None]
"""Called on the engine loop with the figures as they change (a progress bar)."""


async def start_background(
    job: WarmJob, tasks: set[asyncio.Task[Any]]
) -> concurrent.futures.Future[WarmResult]:
    """Start ``job`` as a task on the engine loop; its result lands in the returned future.

    ``tasks`` keeps the task referenced while it runs (asyncio holds tasks only weakly).
    """
    outcome: concurrent.futures.Future[WarmResult] = concurrent.futures.Future()
    outcome.set_running_or_notify_cancel()
    job._loop = asyncio.get_running_loop()  # cancel() can reach it before run() starts
    task: asyncio.Task[WarmResult] = asyncio.ensure_future(job.run())
    tasks.add(task)

    def finished(t: asyncio.Task[WarmResult]) -> None:
        tasks.discard(t)
        if t.cancelled():  # the engine loop shut down under it
            outcome.set_exception(
                UsageError("the background warm was stopped because aiofolio shut down")
            )
            return
        exc = t.exception()
        if exc is not None:
            outcome.set_exception(exc)
        else:
            outcome.set_result(t.result())

    task.add_done_callback(finished)
    return outcome
