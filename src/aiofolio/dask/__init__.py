"""aiofolio on a Dask cluster (the ``[dask]`` extra): worker cache settings and cluster warms.

Owns :class:`AiofolioPlugin` (a ``distributed.WorkerPlugin`` that sets each worker's cache
settings) and :func:`warm` with its :class:`WarmReport`. Dask schedules the work; aiofolio
only says which worker (``"shared"``) or which host (``"node"``) warms which items, in tasks
with deterministic keys. The folio reaches the workers pickled (:mod:`aiofolio._travel`).
"""

from __future__ import annotations

from aiofolio.dask._guard import HOST_ID_ENV, host_key
from aiofolio.dask._warm import AiofolioPlugin, ItemOutcome, WarmReport, warm

__all__ = ["HOST_ID_ENV", "AiofolioPlugin", "ItemOutcome", "WarmReport", "host_key", "warm"]
