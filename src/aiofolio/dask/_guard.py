"""The host key of this process and the guard of a Dask worker's event loop.

Owns :func:`host_key` (``AIOFOLIO_HOST_ID`` when set, a test-only simulated host, else the
host name) and :func:`guard_worker_loop` (a blocking aiofolio call on the worker's event-loop
thread raises :class:`~aiofolio.errors.UsageError` instead of stalling the worker).
"""

from __future__ import annotations

from aiofolio import _portal
from aiofolio.store._util import HOST_ID_ENV, host_name

__all__ = ["HOST_ID_ENV", "guard_worker_loop", "host_key"]


def host_key() -> str:
    """The host this process counts as: the cache's own host name (``$AIOFOLIO_HOST_ID``, a
    test-only simulated host, else ``socket.gethostname()``), so the Dask placement and the
    cache's per-host files agree."""
    return host_name()


def guard_worker_loop() -> None:
    """If this process is a Dask worker, refuse blocking calls on its event loop (never raises)."""
    try:
        from distributed import get_worker

        worker = get_worker()
        _portal.refuse_blocking_on(worker.loop.asyncio_loop)  # type: ignore[attr-defined]
    except Exception:  # not a worker, or distributed changed: nothing to guard
        return
