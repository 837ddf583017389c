"""Partial Parquet reads: ``get(name, columns=[2 of 100])`` against a whole cold ``get``.

Group ``partial``. A 100-column float64 table (``--quick``: 32,768 rows, about 26 MB; full:
262,144 rows, about 210 MB) is added to moto once with aiofolio, then read over the shaped S3
proxy (20 ms before each response, 50 MB/s per connection) into a fresh cache each run:

- ``aiofolio cold get (whole)``: the baseline: download, verify, read every column;
- ``aiofolio cold get columns=2``: footer, two column chunks, read; the bytes that crossed the
  link are in the notes and in ``extra`` (``bytes_ratio`` = partial bytes / whole bytes), with
  a goal of at most 5 % of the whole;
- ``aiofolio get_schema (cold)``: the footer only.

Every result is checked against the table outside the timed region. Only the public API.
"""

from __future__ import annotations

import shutil
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, Row
from ..servers import describe_requests
from .cache import _fresh_dir

GROUP = "partial"
COLS = [f"c{i:03d}" for i in range(100)]
PICK = ["c007", "c063"]
ROWS = {"quick": 32_768, "full": 262_144}
RUNS = {"quick": (3, 0), "full": (3, 1)}
WHOLE = "aiofolio cold get (whole table)"


def _table(ctx: Context) -> tuple[str, Any, int]:
    import numpy as np
    import pandas as pd

    from aiofolio import DataFolio

    moto = ctx.servers.moto()
    bucket = ctx.servers.s3_bucket()
    rows = ROWS.get(ctx.profile.name, ROWS["quick"])
    frame = pd.DataFrame(np.random.default_rng(11).random((rows, len(COLS))), columns=COLS)
    url = f"s3://{bucket}/bench/partial"
    writer = DataFolio(url, storage_options=moto.storage_options(), cache_dir=str(ctx.scratch("w")))
    writer.add("big", frame)
    size = writer.get_item("big").size_bytes
    return url, frame, int(size or 0)


def _measure(ctx: Context, label: str, call: Any, check: Any) -> tuple[Any, dict[str, Any]]:
    from aiofolio import DataFolio

    url, _, _ = ctx.once("partial-table", lambda: _table(ctx))
    moto, proxy = ctx.servers.moto(), ctx.servers.s3_shaped()
    state: dict[str, Any] = {}

    def fresh() -> None:
        old = state.pop("dir", None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        state["dir"] = _fresh_dir(ctx, f"partial-{label}")
        state["folio"] = DataFolio(
            url,
            read_only=True,
            create=False,
            storage_options=moto.storage_options(endpoint_url=proxy.url),
            cache_dir=str(state["dir"]),
        )

    repeats, warmup = RUNS.get(ctx.profile.name, RUNS["quick"])
    try:
        with proxy.counting() as c:
            samples = ctx.measure(
                lambda: call(state["folio"]),
                setup=fresh,
                check=check,
                repeats=repeats,
                warmup=warmup,
                min_repeats=min(2, repeats),
            )
    finally:
        if state.get("dir") is not None:
            shutil.rmtree(state["dir"], ignore_errors=True)
    return samples, c["stats"]


def _rows(ctx: Context) -> list[Row]:
    import pandas as pd

    _, frame, size = ctx.once("partial-table", lambda: _table(ctx))

    def same(want: Any) -> Any:
        def check(got: Any) -> None:
            if isinstance(want, pd.DataFrame):
                pd.testing.assert_frame_equal(got, want)
            elif [n for n in got.names if not n.startswith("__")] != list(want):
                raise RuntimeError("wrong schema")

        return check

    note = f"100 float64 columns, {len(frame):,} rows, {size / 1e6:.1f} MB Parquet"
    whole_s, whole = _measure(ctx, "whole", lambda f: f.get("big"), same(frame))
    runs = max(1, whole_s.runs)
    whole_bytes = whole["bytes"] / runs
    rows = [
        ctx.row(
            group=GROUP,
            name=WHOLE,
            impl="DataFolio.get into a fresh cache",
            size_bytes=size,
            samples=whole_s,
            notes=[note, f"{whole_bytes / 1e6:.1f} MB/op fetched", describe_requests(whole, runs)],
            extra={"bytes_per_op": whole_bytes},
        )
    ]
    part_s, part = _measure(ctx, "cols", lambda f: f.get("big", columns=PICK), same(frame[PICK]))
    part_bytes = part["bytes"] / max(1, part_s.runs)
    ratio = part_bytes / whole_bytes if whole_bytes else None
    rows.append(
        ctx.row(
            group=GROUP,
            name="aiofolio cold get columns=2 of 100",
            impl="DataFolio.get(columns=...) into a fresh cache",
            size_bytes=size,
            samples=part_s,
            baseline=f"{GROUP}/{WHOLE}",
            notes=[
                f"{part_bytes / 1e6:.2f} MB/op fetched = {100 * (ratio or 0):.2f} % of the whole",
                describe_requests(part, part_s.runs),
            ],
            extra={"bytes_per_op": part_bytes, "bytes_ratio": ratio},
            goal=Goal("value", "<=", 0.05, "<= 5 % of the whole get's bytes", ratio, "x"),
        )
    )
    schema_s, schema = _measure(ctx, "schema", lambda f: f.get_schema("big"), same(COLS))
    schema_bytes = schema["bytes"] / max(1, schema_s.runs)
    rows.append(
        ctx.row(
            group=GROUP,
            name="aiofolio cold get_schema",
            impl="DataFolio.get_schema into a fresh cache",
            size_bytes=size,
            samples=schema_s,
            baseline=f"{GROUP}/{WHOLE}",
            notes=[
                f"{schema_bytes / 1e3:.1f} kB/op fetched",
                describe_requests(schema, schema_s.runs),
            ],
            extra={"bytes_per_op": schema_bytes, "bytes_ratio": schema_bytes / whole_bytes},
        )
    )
    return rows


def run(ctx: Context) -> list[Row]:
    return ctx.attempt(lambda: _rows(ctx), group=GROUP, name=WHOLE, impl="aiofolio", size_bytes=0)


SCENARIO = Scenario(
    name="partial",
    run=run,
    groups=(GROUP,),
    description="Parquet columns by byte range: 2 of 100 columns vs the whole table",
)
