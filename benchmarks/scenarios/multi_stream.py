"""Peers with their default parallelism on the same shaped link (bandwidth is per connection).

- ``s3fs cat_file (defaults)``: s3fs >= 2025 reads a large object with parallel ranged GETs
  (``max_concurrency=10``, ``default_block_size`` 50 MiB), which is what a user gets without
  tuning. Compared to the single-stream s3fs row: the ratio is the speed-up from parallelism.

gcsfs has a ``concurrency=`` option too, but the GCS emulator is a single-threaded HTTP/1.0
server, so parallel reads through it would measure the emulator, not gcsfs; it is left out.
"""

from __future__ import annotations

from ..context import Context, Scenario
from ..harness import Row
from ..servers import describe_requests
from . import single_stream
from ._objects import check_bytes, s3_object

GROUP = "multi-stream"
S3FS_DEFAULT = "s3fs cat_file (defaults)"


def _s3fs_default(ctx: Context) -> list[Row]:
    p = ctx.profile
    size = p.stream_size
    path = s3_object(ctx, single_stream.KEY, size)
    proxy = ctx.servers.s3_shaped()
    fs = ctx.servers.moto().s3fs(endpoint_url=proxy.url)
    with proxy.counting() as c:
        samples = ctx.measure(
            lambda: fs.cat_file(path),
            repeats=p.stream_repeats,
            warmup=p.stream_warmup,
            min_repeats=min(2, p.stream_repeats),
            check=check_bytes(ctx.payload(size)),
        )
    return [
        ctx.row(
            group=GROUP,
            name=S3FS_DEFAULT,
            impl="s3fs (sync API)",
            size_bytes=size,
            samples=samples,
            baseline=f"{single_stream.GROUP}/{single_stream.S3FS}",
            notes=[
                f"moto behind the {single_stream.link_note(ctx)} proxy",
                f"max_concurrency={fs.max_concurrency}, block {fs.default_block_size >> 20} MiB",
                describe_requests(c["stats"], samples.runs),
            ],
        )
    ]


def run(ctx: Context) -> list[Row]:
    return ctx.attempt(
        lambda: _s3fs_default(ctx),
        group=GROUP,
        name=S3FS_DEFAULT,
        impl="s3fs",
        size_bytes=ctx.profile.stream_size,
        baseline=f"{single_stream.GROUP}/{single_stream.S3FS}",
    )


SCENARIO = Scenario(
    name="multi-stream",
    run=run,
    groups=(GROUP,),
    description="s3fs cat_file with its default parallel ranged GETs over the shaped link",
)
