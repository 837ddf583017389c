"""Single-stream reads of one large object over the shaped link (20 ms, ~50 MB/s/connection).

- ``aiohttp GET``: one plain GET against the shaped file server holding the object, its body
  streamed (``iter_chunked``, 1 MiB) into a preallocated buffer: the raw "single stream" every
  other remote read is compared to. Its own baseline is the page-cache floor of the same size.
- ``aiohttp GET read()``: the same GET read with ``ClientResponse.read()`` (how most code reads
  a body; it collects chunks and joins them at the end).
- ``s3fs cat_file``: moto behind the shaped reverse proxy, ``max_concurrency=1`` (s3fs >= 2025
  splits large ``cat_file`` into parallel ranged GETs by default; see the multi-stream group).
- ``gcsfs cat_file``: the GCS emulator behind the shaped proxy (plain ``GCSFileSystem``,
  sequential by default). If the proxy cannot front the emulator it is read unshaped and the
  row says so.

Each read is checked byte for byte outside the timed region. Connections are reused across
runs (one client per row); the warm-up run opens them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import aiohttp

from ..context import Context, Scenario
from ..harness import Row, Samples, run_async
from ..servers import ShapingServer, describe_requests
from . import floor
from ._objects import check_bytes, gcs_object, http_object, s3_object

GROUP = "single-stream"
AIOHTTP = "aiohttp GET"
AIOHTTP_READ = "aiohttp GET read()"
S3FS = "s3fs cat_file"
GCSFS = "gcsfs cat_file"
#: The raw single stream: what remote reads are compared to.
BASELINE = f"{GROUP}/{AIOHTTP}"
KEY = "bench/stream.bin"


def link_note(ctx: Context) -> str:
    p = ctx.profile
    return f"shaped {p.link_latency_s * 1e3:g} ms + {p.link_bandwidth / 1e6:g} MB/s"


def link_model_s(ctx: Context, size: int, requests: int = 1) -> float:
    """What an ideal client would take on the shaped link: latency per request + size / rate."""
    p = ctx.profile
    return requests * p.link_latency_s + size / p.link_bandwidth


def _stream_measure(
    ctx: Context, fn: Callable[[], bytes], expected: bytes, warmup: int | None = None
) -> Samples:
    p = ctx.profile
    return ctx.measure(
        fn,
        repeats=p.stream_repeats,
        warmup=p.stream_warmup if warmup is None else warmup,
        min_repeats=min(2, p.stream_repeats),
        check=check_bytes(expected),
    )


#: Chunk size of the streaming read of the baseline.
STREAM_CHUNK = 1 << 20


def _aiohttp_rows(ctx: Context, *, into_buffer: bool) -> list[Row]:
    """One aiohttp row: streamed into a preallocated buffer (the baseline), or ``read()``."""
    p = ctx.profile
    size = p.stream_size
    data = ctx.payload(size)
    server, url = http_object(ctx, "/" + KEY, size)
    per_read = 4 * link_model_s(ctx, size) + 30
    buf = bytearray(size)

    async def go() -> Samples:
        timeout = aiohttp.ClientTimeout(total=per_read)
        async with aiohttp.ClientSession(timeout=timeout) as session:

            async def stream() -> bytearray:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    n = 0
                    async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
                        buf[n : n + len(chunk)] = chunk
                        n += len(chunk)
                    if n != size:
                        raise RuntimeError(f"got {n} bytes of {size}")
                    return buf

            async def read() -> bytes:
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    return await resp.read()

            return await ctx.measure_async(
                stream if into_buffer else read,
                repeats=p.stream_repeats,
                warmup=p.stream_warmup,
                min_repeats=min(2, p.stream_repeats),
                check=check_bytes(data),
            )

    with server.counting() as c:
        samples = run_async(go(), timeout_s=p.series_budget_s + 2 * per_read)
    if into_buffer:
        name, impl, baseline = AIOHTTP, "aiohttp iter_chunked into a buffer", floor.BASELINE
        notes = [f"{link_note(ctx)}; link model {link_model_s(ctx, size):.2f} s"]
    else:
        name, impl, baseline = AIOHTTP_READ, "aiohttp ClientResponse.read()", BASELINE
        notes = [link_note(ctx)]
    notes.append(describe_requests(c["stats"], samples.runs))
    return [
        ctx.row(
            group=GROUP,
            name=name,
            impl=impl,
            size_bytes=size,
            samples=samples,
            baseline=baseline,
            notes=notes,
        )
    ]


def _s3fs(ctx: Context) -> list[Row]:
    p = ctx.profile
    size = p.stream_size
    path = s3_object(ctx, KEY, size)
    proxy = ctx.servers.s3_shaped()
    fs = ctx.servers.moto().s3fs(endpoint_url=proxy.url, max_concurrency=1)
    with proxy.counting() as c:
        samples = _stream_measure(ctx, lambda: fs.cat_file(path), ctx.payload(size))
    return [
        ctx.row(
            group=GROUP,
            name=S3FS,
            impl="s3fs (sync API)",
            size_bytes=size,
            samples=samples,
            baseline=BASELINE,
            notes=[
                f"moto behind the {link_note(ctx)} proxy",
                "max_concurrency=1",
                describe_requests(c["stats"], samples.runs),
            ],
        )
    ]


def _gcsfs(ctx: Context) -> list[Row]:
    size = ctx.profile.stream_size
    path = gcs_object(ctx, KEY, size)
    emu = ctx.servers.gcs()
    expected = ctx.payload(size)
    proxy: ShapingServer | None = None
    fallback = ""
    try:
        proxy = ctx.servers.gcs_shaped()
        fs = emu.gcsfs(endpoint_url=proxy.url)
        # Can the proxy front the emulator? This read also serves as the warm-up.
        check_bytes(expected)(fs.cat_file(path))
    except Exception as exc:
        ctx.log(f"  gcsfs through the shaped proxy failed ({exc!r}); reading unshaped")
        fallback = f"UNSHAPED (proxy failed: {type(exc).__name__})"
        proxy = None
        fs = emu.gcsfs()
    if proxy is not None:
        with proxy.counting() as c:
            samples = _stream_measure(ctx, lambda: fs.cat_file(path), expected, warmup=0)
        samples.warmup = 1  # the probe above
        notes = [
            f"gcp-storage-emulator behind the {link_note(ctx)} proxy",
            describe_requests(c["stats"], len(samples.times)),
        ]
    else:
        samples = _stream_measure(ctx, lambda: fs.cat_file(path), expected)
        notes = [fallback, "gcp-storage-emulator direct"]
    return [
        ctx.row(
            group=GROUP,
            name=GCSFS,
            impl="gcsfs.core.GCSFileSystem (sync API)",
            size_bytes=size,
            samples=samples,
            baseline=BASELINE,
            notes=notes,
        )
    ]


def run(ctx: Context) -> list[Row]:
    size = ctx.profile.stream_size
    rows: list[Row] = []
    cases: list[tuple[str, str, Callable[[Context], list[Row]], str]] = [
        (AIOHTTP, "aiohttp", functools.partial(_aiohttp_rows, into_buffer=True), floor.BASELINE),
        (AIOHTTP_READ, "aiohttp", functools.partial(_aiohttp_rows, into_buffer=False), BASELINE),
        (S3FS, "s3fs", _s3fs, BASELINE),
        (GCSFS, "gcsfs", _gcsfs, BASELINE),
    ]
    for name, impl, fn, baseline in cases:
        rows += ctx.attempt(
            functools.partial(fn, ctx),
            group=GROUP,
            name=name,
            impl=impl,
            size_bytes=size,
            baseline=baseline,
        )
    return rows


SCENARIO = Scenario(
    name="single-stream",
    run=run,
    groups=(GROUP,),
    description="one large object over the shaped link: aiohttp GET, s3fs, gcsfs",
)
