"""Byte-level progress reporting from downloads, without threading a callback everywhere.

Owns: the context variable :data:`BYTES_SINK`. A caller that wants to watch bytes land (the
warm handle, a progress bar) sets it around its awaits; :func:`report_bytes` (called by
:mod:`aiofolio.engine.fetch` for every piece written) forwards the count to it. A download
shared by several readers (single-flight) reports into the context of the task that started it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar

__all__ = ["BYTES_SINK", "bytes_sink", "report_bytes"]

BYTES_SINK: ContextVar[Callable[[int], None] | None] = ContextVar(
    "aiofolio_bytes_sink", default=None
)


def report_bytes(n: int) -> None:
    """Tell the current sink (if any) that ``n`` more bytes landed; never raises."""
    sink = BYTES_SINK.get()
    if sink is not None:
        with suppress(Exception):  # a progress display must never break a download
            sink(n)


@contextmanager
def bytes_sink(sink: Callable[[int], None] | None) -> Iterator[None]:
    """Send the byte counts of downloads started inside the block to ``sink``."""
    token = BYTES_SINK.set(sink)
    try:
        yield
    finally:
        BYTES_SINK.reset(token)
