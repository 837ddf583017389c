"""The asyncio engine: the process-wide :class:`Engine` that lives on the ``aiofolio-io`` loop.

Owns: the backend pool (one client per store and options, closed at shutdown) and the
per-process scratch folder for downloads. Bundle operations live in
:mod:`aiofolio.engine.session`; downloads in :mod:`aiofolio.engine.fetch`.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from aiofolio import _portal
from aiofolio.backends import BackendPool

__all__ = ["Engine", "get_engine"]


class Engine:
    """Shared state of everything that runs on the engine loop."""

    def __init__(self) -> None:
        self.pool = BackendPool()
        self._scratch: str | None = None

    @property
    def scratch_dir(self) -> str:
        """A private folder (mode 0700) for this process's downloads, removed at exit."""
        if self._scratch is None or not os.path.isdir(self._scratch):
            self._scratch = tempfile.mkdtemp(prefix=f"aiofolio-{os.getpid()}-")
            atexit.register(shutil.rmtree, self._scratch, True)
        return self._scratch

    async def aclose(self) -> None:
        """Close every network client."""
        await self.pool.aclose()


_engine: Engine | None = None
_engine_pid: int | None = None


def get_engine() -> Engine:
    """The engine of this process (a forked child gets its own)."""
    global _engine, _engine_pid
    if _engine is None or _engine_pid != os.getpid():
        _engine = Engine()
        _engine_pid = os.getpid()
        _portal.add_shutdown_callback(_close_engine)
    return _engine


async def _close_engine() -> None:
    global _engine
    engine, _engine = _engine, None
    if engine is not None:
        await engine.aclose()
