"""fsspec ``simplecache`` and ``filecache``: the first (miss) read and the cost of a hit.

The target is remote-like: moto behind the shaped proxy (``target_protocol="s3"``); if moto
cannot be used, local files (``"file"``) and the rows say so. For a small (1 KiB) and a large
(64 MiB) object and each cache kind:

- ``<kind> miss cat_file``: the first ``cat_file``, which downloads into the cache (one sample).
- ``<kind> hit cat_file``: repeated ``cat_file`` of the cached object (returns new bytes).
- ``<kind> hit open+readinto``: repeated ``open`` + ``readinto`` a preallocated buffer + close.

Hits are compared to the page-cache floor of the same size; the large miss to the raw single
stream (``aiohttp GET``). The notes count the requests that reached the proxy while timing
hits (0 means the hit never touched the remote).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any

from ..context import Context, Scenario
from ..harness import MiB, Row, Samples
from ..servers import ShapingServer, describe_requests
from . import floor, single_stream
from ._objects import check_bytes, s3_object

GROUP = "fsspec-cache"
KINDS = ("simplecache", "filecache")


@dataclass
class Target:
    protocol: str
    options: dict[str, Any]
    paths: dict[int, str] = field(default_factory=dict)
    proxy: ShapingServer | None = None
    note: str = ""


def _target(ctx: Context, sizes: tuple[int, ...]) -> Target:
    try:
        proxy = ctx.servers.s3_shaped()
        opts = ctx.servers.moto().storage_options(endpoint_url=proxy.url)
        opts.update(max_concurrency=1, skip_instance_cache=True)
        paths = {size: s3_object(ctx, f"bench/fsspec-{size}.bin", size) for size in sizes}
        note = f"s3fs (max_concurrency=1) → {single_stream.link_note(ctx)} → moto"
        return Target("s3", opts, paths, proxy, note=note)
    except Exception as exc:
        ctx.log(f"  moto unavailable for the fsspec target ({exc!r}); using local files")
        root = ctx.scratch("fsspec-remote")
        paths = {}
        for size in sizes:
            path = root / f"fsspec-{size}.bin"
            path.write_bytes(ctx.payload(size))
            paths[size] = str(path)
        return Target("file", {}, paths, None, note=f"target: local files ({type(exc).__name__})")


def _requests_note(target: Target, stats: dict[str, Any] | None, ops: int) -> str:
    if target.proxy is None or stats is None:
        return ""
    return describe_requests(stats, ops)


def _counting(target: Target) -> Any:
    if target.proxy is not None:
        return target.proxy.counting()
    import contextlib

    return contextlib.nullcontext({})


def _readinto(fs: Any, path: str, buf: memoryview) -> int:
    n, size = 0, len(buf)
    with fs.open(path, "rb") as fh:
        while n < size:
            k = fh.readinto(buf[n:])
            if not k:
                break
            n += k
    return n


def _kind(ctx: Context, target: Target, kind: str) -> list[Row]:
    import fsspec

    p = ctx.profile
    fs = fsspec.filesystem(
        kind,
        target_protocol=target.protocol,
        target_options=target.options,
        cache_storage=str(ctx.scratch(f"{kind}-cache")),
        skip_instance_cache=True,
    )
    impl = f"fsspec {kind}"
    if target.protocol == "s3":
        # Create the s3fs client and its connection now, so the miss below is the first read of
        # the object, not the set-up of a new client (a HEAD of an absent key; nothing cached).
        fs.fs.exists(f"{next(iter(target.paths.values())).split('/')[0]}/bench/absent")
    rows: list[Row] = []
    for size, path in target.paths.items():
        data = ctx.payload(size)
        small = size < MiB
        check = check_bytes(data)

        # The miss: the first read downloads into the cache. It can only happen once.
        with _counting(target) as c:
            t0 = time.perf_counter()
            got = fs.cat_file(path)
            dt = time.perf_counter() - t0
        check(got)
        del got
        rows.append(
            ctx.row(
                group=GROUP,
                name=f"{kind} miss cat_file",
                impl=impl,
                size_bytes=size,
                samples=Samples.single(dt),
                baseline=None if small else single_stream.BASELINE,
                notes=[
                    "first read (into the cache), one sample",
                    target.note,
                    _requests_note(target, c.get("stats"), 1),
                ],
            )
        )

        series: dict[str, Any] = dict(
            repeats=p.small_repeats if small else p.large_repeats,
            warmup=20 if small else 1,
            budget_s=p.small_budget_s if small else None,
        )
        with _counting(target) as c:
            samples = ctx.measure(functools.partial(fs.cat_file, path), check=check, **series)
        rows.append(
            ctx.row(
                group=GROUP,
                name=f"{kind} hit cat_file",
                impl=impl,
                size_bytes=size,
                samples=samples,
                baseline=floor.BASELINE,
                notes=[_requests_note(target, c.get("stats"), samples.runs)],
            )
        )

        buf = memoryview(bytearray(size))

        def check_len(n: int, size: int = size) -> None:
            if n != size:
                raise RuntimeError(f"read {n} bytes of {size}")

        with _counting(target) as c:
            samples = ctx.measure(
                functools.partial(_readinto, fs, path, buf), check=check_len, **series
            )
        if bytes(buf) != data:
            raise RuntimeError("open+readinto returned wrong bytes")
        rows.append(
            ctx.row(
                group=GROUP,
                name=f"{kind} hit open+readinto",
                impl=impl,
                size_bytes=size,
                samples=samples,
                baseline=floor.BASELINE,
                notes=[
                    "preallocated buffer",
                    _requests_note(target, c.get("stats"), samples.runs),
                ],
            )
        )
    return rows


def run(ctx: Context) -> list[Row]:
    p = ctx.profile
    sizes = (p.hit_small_size, p.hit_large_size)
    target = _target(ctx, sizes)
    rows: list[Row] = []
    for kind in KINDS:
        rows += ctx.attempt(
            functools.partial(_kind, ctx, target, kind),
            group=GROUP,
            name=f"{kind} hit cat_file",
            impl=f"fsspec {kind}",
            size_bytes=p.hit_small_size,
            baseline=floor.BASELINE,
        )
    return rows


SCENARIO = Scenario(
    name="fsspec-cache",
    run=run,
    groups=(GROUP,),
    description="fsspec simplecache / filecache over s3fs→moto: first read and hit latency",
)
