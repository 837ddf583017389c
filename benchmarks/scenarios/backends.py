"""aiofolio's backends over the shaped link: one stream against 4, 8 and 16 ranged reads.

For each backend (HTTP on the shaped file server, S3 on moto behind the shaped proxy, GCS on the
emulator behind the shaped proxy) the same object is read:

- ``aiofolio <backend> 1 stream``: one streaming read (``Backend.iter_range``) into a
  preallocated buffer. Baseline: the raw aiohttp single stream.
- ``aiofolio <backend> N ranged``: the object split into N equal ranges, all N
  ``Backend.read_range`` calls in flight at once, each copied into the buffer at its offset.
  Baseline: the same backend's single stream, so the ratio is the speed-up from parallel
  connections (the link caps each connection at ~50 MB/s; the ideal is N times).

Caveats printed in the notes: moto copies the whole object for every ranged GET, and the GCS
emulator is a single-threaded HTTP/1.0 server, so their parallel rows partly measure the server,
not the client. The HTTP rows have neither limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiofolio.backends import RetryingBackend, make_backend

from ..context import Context, Scenario
from ..harness import Row, Samples, run_async
from ..servers import describe_requests
from . import single_stream
from ._objects import check_bytes, gcs_object, http_object, s3_object

GROUP = "backends"
STREAMS = (4, 8, 16)


async def _single(backend: RetryingBackend, url: str, buf: bytearray) -> bytearray:
    pos = 0
    async for chunk in backend.iter_range(url):
        buf[pos : pos + len(chunk)] = chunk
        pos += len(chunk)
    if pos != len(buf):
        raise RuntimeError(f"got {pos} bytes of {len(buf)}")
    return buf


async def _ranged(backend: RetryingBackend, url: str, buf: bytearray, n: int) -> bytearray:
    size = len(buf)
    step = -(-size // n)

    async def part(start: int) -> None:
        end = min(size, start + step)
        data = await backend.read_range(url, start, end)
        if len(data) != end - start:
            raise RuntimeError(f"range {start}-{end}: got {len(data)} bytes")
        buf[start:end] = data

    await asyncio.gather(*(part(s) for s in range(0, size, step)))
    return buf


def _rows_for(
    ctx: Context,
    *,
    label: str,
    url: str,
    storage_options: dict[str, object] | None,
    server: object,
    caveat: str,
) -> list[Row]:
    p = ctx.profile
    size = p.stream_size
    expected = ctx.payload(size)
    buf = bytearray(size)
    per_read = 4 * single_stream.link_model_s(ctx, size) + 30
    rows: list[Row] = []
    cases: list[tuple[str, int, Callable[[RetryingBackend], Awaitable[bytearray]]]] = [
        (f"aiofolio {label} 1 stream", 1, lambda b: _single(b, url, buf))
    ]
    for n in STREAMS:
        cases.append((f"aiofolio {label} {n} ranged", n, lambda b, n=n: _ranged(b, url, buf, n)))
    single_name = cases[0][0]
    for name, n, fn in cases:

        async def go(fn: Callable[[RetryingBackend], Awaitable[bytearray]] = fn) -> Samples:
            backend = make_backend(url, storage_options, read_timeout=per_read)
            try:
                return await ctx.measure_async(
                    lambda: fn(backend),
                    repeats=p.stream_repeats,
                    warmup=p.stream_warmup,
                    min_repeats=min(2, p.stream_repeats),
                    check=check_bytes(expected),
                )
            finally:
                await backend.aclose()

        def one(name: str = name, n: int = n, go: Callable[[], Awaitable[Samples]] = go) -> Row:
            with server.counting() as c:  # type: ignore[attr-defined]
                samples = run_async(go(), timeout_s=p.series_budget_s + 2 * per_read)
            baseline = single_stream.BASELINE if n == 1 else f"{GROUP}/{single_name}"
            notes = [single_stream.link_note(ctx), describe_requests(c["stats"], samples.runs)]
            if n > 1 and caveat:
                notes.append(caveat)
            return ctx.row(
                group=GROUP,
                name=name,
                impl="aiofolio backend" + ("" if n == 1 else f", {n} read_range in flight"),
                size_bytes=size,
                samples=samples,
                baseline=baseline,
                notes=notes,
            )

        rows += ctx.attempt(
            lambda one=one: [one()], group=GROUP, name=name, impl="aiofolio", size_bytes=size
        )
    return rows


def _http(ctx: Context) -> list[Row]:
    server, url = http_object(ctx, "/" + single_stream.KEY, ctx.profile.stream_size)
    return _rows_for(ctx, label="http", url=url, storage_options=None, server=server, caveat="")


def _s3(ctx: Context) -> list[Row]:
    path = s3_object(ctx, single_stream.KEY, ctx.profile.stream_size)
    proxy = ctx.servers.s3_shaped()
    options = ctx.servers.moto().storage_options(endpoint_url=proxy.url)
    return _rows_for(
        ctx,
        label="s3",
        url=f"s3://{path}",
        storage_options=options,
        server=proxy,
        caveat="moto copies the whole object per ranged GET (server CPU on 2 cores)",
    )


def _gcs(ctx: Context) -> list[Row]:
    path = gcs_object(ctx, single_stream.KEY, ctx.profile.stream_size)
    proxy = ctx.servers.gcs_shaped()
    options = {**ctx.servers.gcs().storage_options(), "endpoint_url": proxy.url}
    return _rows_for(
        ctx,
        label="gcs",
        url=f"gs://{path}",
        storage_options=options,
        server=proxy,
        caveat="the GCS emulator is single-threaded HTTP/1.0: parallel rows measure it",
    )


def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    for label, fn in (("http", _http), ("s3", _s3), ("gcs", _gcs)):
        rows += ctx.attempt(
            lambda fn=fn: fn(ctx),
            group=GROUP,
            name=f"aiofolio {label}",
            impl="aiofolio",
            size_bytes=ctx.profile.stream_size,
        )
    return rows


SCENARIO = Scenario(
    name="backends",
    run=run,
    groups=(GROUP,),
    description="aiofolio backends: single stream vs 4/8/16 parallel ranged reads, shaped link",
)
