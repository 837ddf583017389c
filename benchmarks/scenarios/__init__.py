"""The registered scenarios, in the order they run and appear in the table.

To add rows, write a module with a ``run(ctx) -> list[Row]`` function and a ``SCENARIO``, and
append it to :data:`SCENARIOS`. Rows go into the table group named by their ``group`` field, so a
new scenario can add e.g. an "aiofolio cold get" row to the ``single-stream`` group next to the
peers, with ``baseline=single_stream.BASELINE``. See benchmarks/README.md.
"""

from __future__ import annotations

from ..context import Scenario
from . import (
    backends,
    cache,
    dask_warm,
    datafolio_arrays,
    engine,
    eviction,
    fanout,
    floor,
    fsspec_cache,
    multi_stream,
    partial,
    scale,
    single_stream,
    warm,
)

SCENARIOS: list[Scenario] = [
    floor.SCENARIO,
    single_stream.SCENARIO,
    multi_stream.SCENARIO,
    fsspec_cache.SCENARIO,
    backends.SCENARIO,
    cache.HITS_SCENARIO,
    cache.SCENARIO,
    fanout.SCENARIO,
    engine.SCENARIO,
    warm.SCENARIO,
    warm.FOREGROUND_SCENARIO,
    scale.SCENARIO,
    eviction.SCENARIO,
    dask_warm.SCENARIO,
    datafolio_arrays.SCENARIO,
    partial.SCENARIO,
]


def select(names: list[str]) -> list[Scenario]:
    """Scenarios whose name or one of whose groups is in ``names`` (all when empty).

    Raises:
        KeyError: A name matches nothing.
    """
    if not names:
        return list(SCENARIOS)
    unknown = [n for n in names if not any(n == s.name or n in s.groups for s in SCENARIOS)]
    if unknown:
        raise KeyError(", ".join(unknown))
    return [s for s in SCENARIOS if s.name in names or any(g in names for g in s.groups)]
