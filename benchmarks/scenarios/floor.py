"""The floor: reading a file that sits in the page cache, with nothing in the way.

A file is written, then read back with ``open(path, "rb", buffering=0).readinto`` into a
preallocated buffer: no allocation of the result, no Python-level buffering, no cache layer.
Every local read (cache hits) is compared to this row of the same size. The 1 KiB row measures
open + read + close of a small file, the floor of a per-hit latency.
"""

from __future__ import annotations

import functools
from pathlib import Path

from ..context import Context, Scenario
from ..harness import MiB, Row

GROUP = "floor"
NAME = "page-cache read"
#: What other rows put in ``baseline`` to be compared to the floor of their size.
BASELINE = f"{GROUP}/{NAME}"


def read_into(path: Path, buf: memoryview) -> int:
    """Fill ``buf`` from the start of ``path``; returns the bytes read."""
    n, size = 0, len(buf)
    with open(path, "rb", buffering=0) as fh:
        while n < size:
            k = fh.readinto(buf[n:])
            if not k:
                break
            n += k
    return n


def _one(ctx: Context, size: int) -> list[Row]:
    p = ctx.profile
    path = ctx.scratch("floor") / f"floor-{size}.bin"
    path.write_bytes(ctx.payload(size))  # just written: it is in the page cache
    buf = memoryview(bytearray(size))
    small = size < MiB

    def check(n: int) -> None:
        if n != size:
            raise RuntimeError(f"read {n} bytes of {size}")

    samples = ctx.measure(
        lambda: read_into(path, buf),
        repeats=p.small_repeats if small else p.floor_repeats,
        warmup=20 if small else 1,
        budget_s=p.small_budget_s if small else None,
        check=check,
    )
    return [
        ctx.row(
            group=GROUP,
            name=NAME,
            impl="open().readinto",
            size_bytes=size,
            samples=samples,
            notes="file just written; buffering=0, preallocated buffer",
        )
    ]


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    for size in ctx.profile.floor_sizes:
        rows += ctx.attempt(
            functools.partial(_one, ctx, size),
            group=GROUP,
            name=NAME,
            impl="open().readinto",
            size_bytes=size,
        )
    return rows


SCENARIO = Scenario(
    name="floor",
    run=run,
    groups=(GROUP,),
    description="page-cache read of 1 KiB, 64 MiB, 256 MiB with open().readinto (the floor)",
)
