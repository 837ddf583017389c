"""The host key of this process and the guard of a Dask worker's event loop.

Owns :func:`host_key` (``AIOFOLIO_HOST_ID`` when set, a test-only simulated host, else the
host name) and :func:`guard_worker_loop` (a blocking aiofolio call on the worker's event-loop
thread raises :class:`~aiofolio.errors.UsageError` instead of stalling the worker).
"""

from __future__ import annotations

import os
import socket

from aiofolio import _portal

__all__ = ["HOST_ID_ENV", "guard_worker_loop", "host_key"]

HOST_ID_ENV = "AIOFOLIO_HOST_ID"


def host_key() -> str:
    """The host this process counts as (``$AIOFOLIO_HOST_ID``, else ``socket.gethostname()``)."""
    return os.environ.get(HOST_ID_ENV) or socket.gethostname()


def guard_worker_loop() -> None:
    """If this process is a Dask worker, refuse blocking calls on its event loop (never raises)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        _portal.refuse_blocking_on(worker.loop.asyncio_loop)  # type: ignore[attr-defined]
    except Exception:  # not a worker, or distributed changed: nothing to guard
        return
