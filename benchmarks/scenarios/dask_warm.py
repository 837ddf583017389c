"""The issue-16 row: a cluster warm by 4 Dask workers against one process's ``warm_cache``.

Group ``dask-warm``, one run each, ratio. Items of 4 MiB (200 in the full profile, 40 in
``--quick``) served by the shaped HTTP file server (20 ms before each response, 50 MB/s per
connection, in its own process). Baseline: ``folio.warm_cache()`` in this process into a fresh
cache. Measured: ``aiofolio.dask.warm(mode="shared")`` on a ``LocalCluster`` of 4 worker
processes x 2 threads into one fresh shared cache dir (cluster start-up and the plugin are
outside the timed region). Every run is checked: all items cached, none failed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import MiB, Row
from .cache import Bundle, Clock, _fresh_dir, _reader
from .warm import write_uint8_bundle

GROUP = "dask-warm"
ITEM = 4 * MiB


def _files(ctx: Context, count: int) -> tuple[Path, list[str]]:
    root = ctx.scratch("dask-warm-bundle")
    names = [f"d{i:03d}" for i in range(count)]
    write_uint8_bundle(root, "dask-warm", dict.fromkeys(names, ITEM), seed=16)
    return root, names


def run(ctx: Context) -> list[Row]:
    import distributed

    from aiofolio.dask import AiofolioPlugin, warm

    count = 40 if ctx.profile.name == "quick" else 200
    root, _names = _files(ctx, count)
    files = {"/dw/" + p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    server = ctx.servers.http_shaped("dask-warm-http", files)
    bundle = Bundle(server.url_for("/dw"), "", "dw", server, {})
    size = count * ITEM
    base_name = f"{count} x 4 MiB: warm_cache() in one process"
    dask_name = f"{count} x 4 MiB: aiofolio.dask.warm, 4 workers x 2 threads, shared"
    link = "shaped 20 ms + 50 MB/s per connection file server (own process)"

    def one_process() -> list[Row]:
        cache = _fresh_dir(ctx, "dask-warm-one")
        folio = _reader(ctx, bundle, cache, Clock())
        try:
            samples = ctx.measure(
                lambda: folio.warm_cache(progress=False),
                repeats=1,
                warmup=0,
                check=lambda r: None if len(r.cached) == count else _fail(r),
            )
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        return [
            ctx.row(
                group=GROUP,
                name=base_name,
                impl="DataFolio.warm_cache(), defaults",
                size_bytes=size,
                samples=samples,
                notes=[link],
            )
        ]

    def cluster() -> list[Row]:
        cache = _fresh_dir(ctx, "dask-warm-shared")
        with (
            distributed.LocalCluster(
                n_workers=4, processes=True, threads_per_worker=2, dashboard_address=None
            ) as lc,
            distributed.Client(lc) as client,
        ):
            client.register_plugin(AiofolioPlugin(cache_dir=str(cache)))
            folio = _reader(ctx, bundle, _fresh_dir(ctx, "dask-warm-client"), Clock())
            try:
                samples = ctx.measure(
                    lambda: warm(folio, client, mode="shared", concurrency=8),
                    repeats=1,
                    warmup=0,
                    check=lambda r: None if r.ok and len(r.items) == count else _fail(r),
                )
            finally:
                shutil.rmtree(cache, ignore_errors=True)
        return [
            ctx.row(
                group=GROUP,
                name=dask_name,
                impl="aiofolio.dask.warm(mode='shared')",
                size_bytes=size,
                samples=samples,
                baseline=f"{GROUP}/{base_name}",
                notes=[link, "2 cores on this machine: 4 worker processes share them"],
            )
        ]

    rows = ctx.attempt(one_process, group=GROUP, name=base_name, impl="aiofolio", size_bytes=size)
    rows += ctx.attempt(
        cluster,
        group=GROUP,
        name=dask_name,
        impl="aiofolio",
        size_bytes=size,
        baseline=f"{GROUP}/{base_name}",
    )
    return rows


def _fail(result: Any) -> None:
    raise RuntimeError(f"warm incomplete: {result!r}"[:500])


SCENARIO = Scenario(
    name="dask-warm",
    run=run,
    groups=(GROUP,),
    description="issue 16: warm by 4 Dask workers vs one process, 4 MiB items, shaped HTTP",
)
