"""Progress bars (rich) for cache warms and long downloads, on a terminal or in a notebook.

Owns: the decision whether to draw (:func:`wants_progress`: an explicit ``progress=False``
argument or setting, or ``AIOFOLIO_PROGRESS=0``, turns it off; otherwise it draws only when
stderr is a terminal or the code runs in a Jupyter kernel, never into a pipe or a log file),
:class:`WarmBar`, a rich progress bar fed with :class:`~aiofolio.engine.warm.WarmProgress`
snapshots, and :class:`DownloadWatch`, which shows that bar for one ``get`` once its download
turns out to be large (at least :data:`BAR_MIN_BYTES`; hits and small downloads never draw).
Bars go to stderr through rich; nothing here prints. rich is imported only when a bar is drawn.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Mapping
from contextvars import Token
from types import TracebackType
from typing import TYPE_CHECKING, Any

from aiofolio.engine.progress import BYTES_SINK

if TYPE_CHECKING:
    from aiofolio.bundle import Item
    from aiofolio.engine.warm import WarmProgress

__all__ = ["BAR_MIN_BYTES", "DownloadWatch", "WarmBar", "interactive", "wants_progress"]

log = logging.getLogger("aiofolio.progress")

BAR_MIN_BYTES = 64 * 1024 * 1024
"""A single ``get`` draws a bar only when it downloads an item at least this big."""


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    try:
        ip = shell.get_ipython()
    except Exception:
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def interactive(stream: Any = None) -> bool:
    """Whether ``stream`` (default stderr) is a terminal, or we run in a notebook kernel."""
    stream = sys.stderr if stream is None else stream
    try:
        tty = bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        tty = False
    return tty or _in_notebook()


def wants_progress(argument: bool | None, setting: bool | None) -> bool:
    """Whether to draw a bar: the call's ``progress`` argument, else the ``progress`` setting
    (``None`` in both means "when interactive"); never when not interactive."""
    choice = argument if argument is not None else setting
    if choice is False:
        return False
    return interactive()


class WarmBar:
    """A rich bar for one warm: bytes (with speed and time left) and items.

    Args:
        description: The label (the bundle).
        console: A rich ``Console``; default: one on stderr.

    Its :meth:`update` may be called from any thread (rich locks); :meth:`close` stops it.
    """

    def __init__(self, description: str, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("{task.fields[items]}"),
            TimeRemainingColumn(),
            console=console if console is not None else Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(description, total=None, items="")
        self._lock = threading.Lock()
        self._closed = False
        self._progress.start()

    def update(self, progress: WarmProgress) -> None:
        """Show ``progress``; after the last item the bar stops."""
        with self._lock:
            if self._closed:
                return
            failed = f", {progress.items_failed} failed" if progress.items_failed else ""
            self._progress.update(
                self._task,
                completed=min(progress.bytes_done, progress.bytes_total),
                total=progress.bytes_total or None,
                items=f"{progress.items_done}/{progress.items_total} items{failed}",
            )

    def close(self) -> None:
        """Stop drawing (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._progress.stop()
        except Exception as exc:  # pragma: no cover - a display must not break the warm
            log.debug("stopping the progress bar failed: %r", exc)


class DownloadWatch:
    """A bar for one read, drawn only if the read downloads a large item (engine loop only).

    Use as a context manager around the read: it points the byte sink of
    :mod:`aiofolio.engine.progress` at itself, learns the item from :meth:`checking`, and
    starts a :class:`WarmBar` on the first landed bytes of an item of at least
    :data:`BAR_MIN_BYTES` when :func:`wants_progress` allows. Reads that download nothing
    (hits, or joins of a download another task started) never draw.

    Args:
        setting: The folio's ``progress`` setting.
    """

    def __init__(self, setting: bool | None) -> None:
        self._setting = setting
        self._item: Item | None = None
        self._bar: WarmBar | None = None
        self._decided = setting is False
        self._done = 0
        self._token: Token[Callable[[int], None] | None] | None = None

    def checking(
        self, check: Callable[[Item, Mapping[str, Any]], None]
    ) -> Callable[[Item, Mapping[str, Any]], None]:
        """Wrap the read's item ``check`` so the watch learns which item is read."""

        def watched(item: Item, opts: Mapping[str, Any]) -> None:
            self._item = item
            check(item, opts)

        return watched

    def _sink(self, n: int) -> None:
        self._done += n
        if not self._decided:
            self._decided = True
            item = self._item
            size = item.size_bytes if item is not None else None
            large = item is not None and size is not None and size >= BAR_MIN_BYTES
            if large and item is not None and wants_progress(None, self._setting):
                self._bar = WarmBar(f"downloading {item.name}")
        bar = self._bar
        if bar is not None and self._item is not None:
            from aiofolio.engine.warm import WarmProgress

            total = self._item.size_bytes or 0
            bar.update(WarmProgress(items_total=1, bytes_done=self._done, bytes_total=total))

    def __enter__(self) -> DownloadWatch:
        if not self._decided:
            self._token = BYTES_SINK.set(self._sink)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            BYTES_SINK.reset(self._token)
            self._token = None
        bar, self._bar = self._bar, None
        if bar is not None:
            if exc is None and self._item is not None:
                from aiofolio.engine.warm import WarmProgress

                total = self._item.size_bytes or self._done
                bar.update(
                    WarmProgress(items_done=1, items_total=1, bytes_done=total, bytes_total=total)
                )
            bar.close()
