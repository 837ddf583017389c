"""Bundles written by the real ``datafolio`` package: a cold ``get`` of a 128 MiB array.

Group ``datafolio``. datafolio 2.3.0 writes a ``uint8`` array of 128 MiB (``numpy_array``,
``artifacts/arr--r2.npy``); its manifest has **no** ``size_bytes`` for arrays, so the reader
learns the size from the store. Two bundles, each read over the shaped link (20 ms before each
response, 50 MB/s per connection):

- **HTTP**: written by datafolio to a local folder (its manifest has the MD5 ``checksum``) and
  served by the shaped file server.
- **S3**: written by datafolio straight to moto (``s3://http://127.0.0.1:PORT/bucket/prefix``,
  its cloud-files path form; a cloud write leaves ``"checksum": null``), read through the
  shaping proxy. If datafolio cannot write to moto, it writes locally, the files are uploaded
  with boto3 and the array's checksum is set to null as datafolio does for cloud writes; the
  row's note says so.

Rows per store: the plain single stream of the payload object (baseline: ``aiohttp`` GET
streamed into a buffer for HTTP, ``s3fs`` ``cat_file`` with ``max_concurrency=1`` for S3) and
``aiofolio cold get`` (``DataFolio.get`` into a fresh cache each run, the folio opened
untimed: download, verification and ``np.load``). Goal: aiofolio >= 6x the single stream.
Every read is checked byte for byte outside the timed region. Only aiofolio's public API.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, MiB, Row, Samples, run_async
from ..servers import ShapingServer, describe_requests
from . import single_stream
from ._bundles import datafolio_available, datafolio_write
from .cache import _fresh_dir

GROUP = "datafolio"
SIZE = 128 * MiB
NAME = "arr"
#: (timed runs, warm-ups): the single stream takes ~2.7 s a read.
STREAM_RUNS = {"quick": (1, 0), "full": (3, 1)}
COLD_RUNS = {"quick": (2, 0), "full": (3, 1)}
GOAL = 6.0


def _stream_row(kind: str) -> str:
    return f"128 MiB datafolio array: 1 plain stream, {kind}"


def _cold_row(kind: str) -> str:
    return f"128 MiB datafolio array: aiofolio cold get, {kind}"


def _goal() -> Goal:
    return Goal.ratio_at_least(GOAL, ">= 6x the single stream")


def _series(ctx: Context, table: dict[str, tuple[int, int]]) -> dict[str, Any]:
    repeats, warmup = table.get(ctx.profile.name, table["quick"])
    return {"repeats": repeats, "warmup": warmup, "min_repeats": min(2, repeats)}


def _local_bundle(ctx: Context) -> tuple[Path, str, dict[str, Any]]:
    """The bundle datafolio wrote to a local folder: (folder, datafolio version, item)."""

    def make() -> tuple[Path, str, dict[str, Any]]:
        root = ctx.scratch("datafolio-local") / "bundle"
        shutil.rmtree(root, ignore_errors=True)
        version = datafolio_write(
            str(root), NAME, ctx.payload_file(SIZE), "uint8", ctx.scratch("datafolio-home")
        )
        return root, version, _item(json.loads((root / "items.json").read_bytes()))

    result: tuple[Path, str, dict[str, Any]] = ctx.once("datafolio-local-bundle", make)
    return result


def _item(manifest: dict[str, Any]) -> dict[str, Any]:
    items = [i for i in manifest["items"] if i["name"] == NAME]
    if len(items) != 1:
        raise RuntimeError(f"datafolio's manifest has {len(items)} items named {NAME!r}")
    item: dict[str, Any] = items[0]
    return item


def _manifest_note(item: dict[str, Any]) -> str:
    size = "no size_bytes" if "size_bytes" not in item else f"size_bytes {item['size_bytes']}"
    checksum = "checksum null" if item.get("checksum") is None else "MD5 checksum"
    return f"its manifest: {size}, {checksum}"


def _check_array(ctx: Context) -> Any:
    import numpy as np

    data = ctx.payload(SIZE)

    def check(got: Any) -> None:
        if not isinstance(got, np.ndarray) or got.nbytes != SIZE or got.tobytes() != data:
            raise RuntimeError("get returned a wrong array")

    return check


def _cold(
    ctx: Context,
    kind: str,
    url: str,
    options: dict[str, Any],
    proxy: ShapingServer,
    notes: list[str],
    file_size: int,
) -> Row:
    from aiofolio import DataFolio

    state: dict[str, Any] = {}

    def fresh() -> None:
        old = state.pop("dir", None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        state["dir"] = _fresh_dir(ctx, f"datafolio-{kind}")
        state["folio"] = DataFolio(  # loads items.json: untimed
            url, read_only=True, create=False, storage_options=options, cache_dir=str(state["dir"])
        )

    try:
        with proxy.counting() as c:
            samples = ctx.measure(
                lambda: state["folio"].get(NAME),
                setup=fresh,
                check=_check_array(ctx),
                **_series(ctx, COLD_RUNS),
            )
        settings = state["folio"].settings
    finally:
        if state.get("dir") is not None:
            shutil.rmtree(state["dir"], ignore_errors=True)
    return ctx.row(
        group=GROUP,
        name=_cold_row(kind),
        impl="DataFolio.get into a fresh cache",
        size_bytes=file_size,
        samples=samples,
        baseline=f"{GROUP}/{_stream_row(kind)}",
        notes=[
            *notes,
            f"defaults: chunks of {settings.chunk_size >> 20} MiB, "
            f"{settings.parallel_downloads} in flight; download + verify + np.load",
            describe_requests(c["stats"], samples.runs)
            + " (+1 GET of items.json per fresh folio, untimed)",
        ],
        goal=_goal(),
    )


# -- HTTP ---------------------------------------------------------------------------------------


def _http(ctx: Context) -> list[Row]:
    import aiohttp

    root, version, item = _local_bundle(ctx)
    server = ctx.servers.http_shaped("datafolio-http", trees={"/df": root})
    url = server.url_for("/df")
    payload_url = server.url_for(f"/df/artifacts/{item['filename']}")
    file_size = (root / "artifacts" / item["filename"]).stat().st_size
    header = file_size - SIZE
    data = ctx.payload(SIZE)
    notes = [
        f"written by datafolio {version} to a local folder",
        _manifest_note(item),
        f"HTTP file server, {single_stream.link_note(ctx)}",
    ]
    rows: list[Row] = []

    def stream_row() -> list[Row]:
        buf = bytearray(file_size)
        per_read = 4 * single_stream.link_model_s(ctx, file_size) + 30

        async def go() -> Samples:
            timeout = aiohttp.ClientTimeout(total=per_read)
            async with aiohttp.ClientSession(timeout=timeout) as session:

                async def stream() -> bytearray:
                    async with session.get(payload_url) as resp:
                        resp.raise_for_status()
                        n = 0
                        async for chunk in resp.content.iter_chunked(single_stream.STREAM_CHUNK):
                            buf[n : n + len(chunk)] = chunk
                            n += len(chunk)
                    if n != file_size:
                        raise RuntimeError(f"got {n} bytes of {file_size}")
                    return buf

                def check(got: bytearray) -> None:
                    if got[header:] != data:
                        raise RuntimeError("the stream read wrong bytes")

                return await ctx.measure_async(stream, check=check, **_series(ctx, STREAM_RUNS))

        with server.counting() as c:
            samples = run_async(go(), timeout_s=ctx.profile.series_budget_s + 3 * per_read)
        return [
            ctx.row(
                group=GROUP,
                name=_stream_row("HTTP"),
                impl="aiohttp GET, iter_chunked into a buffer",
                size_bytes=file_size,
                samples=samples,
                notes=[
                    *notes,
                    f"link model {single_stream.link_model_s(ctx, file_size):.2f} s",
                    describe_requests(c["stats"], samples.runs),
                ],
            )
        ]

    rows += ctx.attempt(
        stream_row, group=GROUP, name=_stream_row("HTTP"), impl="aiohttp", size_bytes=file_size
    )
    rows += ctx.attempt(
        lambda: [_cold(ctx, "HTTP", url, {}, server, notes, file_size)],
        group=GROUP,
        name=_cold_row("HTTP"),
        impl="aiofolio",
        size_bytes=file_size,
        baseline=f"{GROUP}/{_stream_row('HTTP')}",
        goal=_goal(),
    )
    return rows


# -- S3 -----------------------------------------------------------------------------------------


def _s3_bundle(ctx: Context) -> tuple[str, str, dict[str, Any], str, str]:
    """datafolio's bundle on moto: (bucket, prefix, item, how it got there, version)."""
    moto = ctx.servers.moto()
    bucket = ctx.servers.s3_bucket()
    prefix = "bench/datafolio-arrays"
    home = ctx.scratch("datafolio-home")
    try:
        version = datafolio_write(
            f"s3://{moto.endpoint_url}/{bucket}/{prefix}",
            NAME,
            ctx.payload_file(SIZE),
            "uint8",
            home,
        )
        how = f"written by datafolio {version} straight to moto"
    except Exception as exc:
        ctx.log(f"  datafolio could not write to moto ({exc}); uploading its local bundle")
        root, version, _ = _local_bundle(ctx)
        manifest = json.loads((root / "items.json").read_bytes())
        for entry in manifest["items"]:
            entry["checksum"] = None  # what datafolio writes for a cloud bundle
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(root).as_posix()
            body = json.dumps(manifest, indent=2).encode() if rel == "items.json" else None
            moto.client.put_object(
                Bucket=bucket, Key=f"{prefix}/{rel}", Body=body or path.read_bytes()
            )
        how = (
            f"FALLBACK: datafolio {version} could not write to moto ({type(exc).__name__}); "
            "written locally, uploaded with boto3, checksums set to null as for a cloud write"
        )
    raw = moto.client.get_object(Bucket=bucket, Key=f"{prefix}/items.json")["Body"].read()
    return bucket, prefix, _item(json.loads(raw)), how, version


def _s3(ctx: Context) -> list[Row]:
    bucket, prefix, item, how, _ = ctx.once("datafolio-s3-bundle", lambda: _s3_bundle(ctx))
    moto = ctx.servers.moto()
    proxy = ctx.servers.s3_shaped()
    key = f"{prefix}/artifacts/{item['filename']}"
    file_size = int(moto.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    header = file_size - SIZE
    data = ctx.payload(SIZE)
    notes = [
        how,
        _manifest_note(item),
        f"moto behind the {single_stream.link_note(ctx)} proxy",
    ]
    rows: list[Row] = []

    def stream_row() -> list[Row]:
        fs = moto.s3fs(endpoint_url=proxy.url, max_concurrency=1)

        def check(got: bytes) -> None:
            if len(got) != file_size or got[header:] != data:
                raise RuntimeError("s3fs read wrong bytes")

        with proxy.counting() as c:
            samples = ctx.measure(
                lambda: fs.cat_file(f"{bucket}/{key}"), check=check, **_series(ctx, STREAM_RUNS)
            )
        return [
            ctx.row(
                group=GROUP,
                name=_stream_row("S3"),
                impl="s3fs cat_file, max_concurrency=1",
                size_bytes=file_size,
                samples=samples,
                notes=[*notes, describe_requests(c["stats"], samples.runs)],
            )
        ]

    rows += ctx.attempt(
        stream_row, group=GROUP, name=_stream_row("S3"), impl="s3fs", size_bytes=file_size
    )
    rows += ctx.attempt(
        lambda: [
            _cold(
                ctx,
                "S3",
                f"s3://{bucket}/{prefix}",
                moto.storage_options(endpoint_url=proxy.url),
                proxy,
                notes,
                file_size,
            )
        ],
        group=GROUP,
        name=_cold_row("S3"),
        impl="aiofolio",
        size_bytes=file_size,
        baseline=f"{GROUP}/{_stream_row('S3')}",
        goal=_goal(),
    )
    return rows


def run(ctx: Context) -> list[Row]:
    if datafolio_available() is None:
        return [
            ctx.failed(
                reason="the datafolio package is not installed",
                group=GROUP,
                name=_cold_row(kind),
                impl="aiofolio",
                size_bytes=SIZE,
                goal=_goal(),
            )
            for kind in ("HTTP", "S3")
        ]
    rows = ctx.attempt(
        lambda: _http(ctx), group=GROUP, name=_cold_row("HTTP"), impl="aiofolio", size_bytes=SIZE
    )
    rows += ctx.attempt(
        lambda: _s3(ctx), group=GROUP, name=_cold_row("S3"), impl="aiofolio", size_bytes=SIZE
    )
    return rows


SCENARIO = Scenario(
    name="datafolio-arrays",
    run=run,
    groups=(GROUP,),
    description="a 128 MiB array written by datafolio: cold get vs one stream, HTTP and S3",
)
