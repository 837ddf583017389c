"""aiofolio's cache: hit latency, one revalidation of a large bundle, and the cold read.

The bundle lives in moto and is read through the shaped proxy (20 ms + 50 MB/s), like the
fsspec rows. It is written once per run, straight to moto (never through the link).

Hits (group ``fsspec-cache``, next to the fsspec rows; scenario ``aiofolio-hits``). The items
are ``numpy`` ``uint8`` arrays of 1 KiB and 64 MiB (``.npy`` payloads, 128 bytes of header on
top). For the 1 KiB item the baseline is measured here, in the same run on the same server:
``simplecache hit cat_file (same payload)``, fsspec ``simplecache`` over s3fs → the shaped
proxy → moto reading the aiofolio item's own ``.npy`` object, warmed first; ``get``,
``get_path`` and ``aget`` have the goal <= 1.0x its time (a ratio >= 1x). The 64 MiB rows
compare with the fsspec-cache scenario's simplecache hit of the same size:

- ``aiofolio hit get``: ``DataFolio.get``; includes the verification of the cached blob and
  the ``np.load`` of the array (simplecache's ``cat_file`` returns raw bytes).
- ``aiofolio hit aget``: ``await DataFolio.aget`` from a running asyncio loop.
- ``aiofolio hit get_path``: ``DataFolio.get_path``, the path of the verified cached blob.
- ``aiofolio hit get_path+open().readinto``: ``get_path`` then ``open`` + ``readinto`` a
  preallocated buffer + close; baseline simplecache ``open+readinto``.

Revalidation (group ``cache-revalidate``): a bundle of many JSON items (10,000; quick: 1,000),
whose ``items.json`` is built with the bundle layer and uploaded with boto3 directly:

- ``aiofolio revalidate (unchanged) + get``: the clock is moved past the TTL, then ``get`` of
  one cached item: one conditional request for ``items.json`` covers every item.
- ``aiofolio hit get (large bundle)``: a hit on one item of that bundle within the TTL.
- ``filecache check_files hit cat_file``: fsspec ``filecache(check_files=True)`` over the same
  items' payloads: each hit asks the remote (``HEAD``) whether the file changed.
- ``... every item once (extrapolated)``: per-item figures times the item count. Labelled.

Cold read (group ``cold-get``): the object of the single-stream rows' size as an aiofolio item,
read into a fresh cache each repeat (``get_path``: download + MD5/size check + publish) against
``s3fs.get_file`` of the same payload object to a local file (``max_concurrency=1`` and
s3fs defaults), and the same over the shaped HTTP link, where ranges cost the server nothing.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..context import Context, Scenario
from ..harness import Goal, MiB, Row, Samples, run_async
from ..servers import ShapingServer, describe_requests
from . import fsspec_cache, single_stream

HIT_GROUP = fsspec_cache.GROUP
REVAL_GROUP = "cache-revalidate"
COLD_GROUP = "cold-get"

SIMPLE_HIT = f"{fsspec_cache.GROUP}/simplecache hit cat_file"
SIMPLE_READINTO = f"{fsspec_cache.GROUP}/simplecache hit open+readinto"
#: The 1 KiB baseline: simplecache over the same server, on the aiofolio item's payload.
SAME_PAYLOAD = "simplecache hit cat_file (same payload)"
SIMPLE_SAME = f"{fsspec_cache.GROUP}/{SAME_PAYLOAD}"
#: Rows held to "at most the time of the same-payload simplecache hit" (1 KiB).
HIT_GOAL_ROWS = ("aiofolio hit get", "aiofolio hit aget", "aiofolio hit get_path")

#: Items of the revalidation bundle, and fsspec filecache hits actually made on them.
REVAL_ITEMS = {"quick": 1_000, "full": 10_000}
CHECKED_HITS = {"quick": 30, "full": 100}
REVAL_REPEATS = {"quick": 10, "full": 30}
TTL_S = 60.0

COLD_S3FS_1 = "s3fs get_file (max_concurrency=1)"
COLD_S3FS_DEFAULT = "s3fs get_file (defaults)"
COLD_AIOFOLIO = "aiofolio cold get_path"

FC_HIT = "filecache check_files hit cat_file"
FC_ALL = "filecache check_files, every item once (extrapolated)"
AF_REVAL = "aiofolio revalidate (unchanged) + get"
AF_HIT_LARGE = "aiofolio hit get (large bundle)"
AF_ALL = "aiofolio revalidate + every item once (extrapolated)"


class Clock:
    """An injectable clock for the TTL (seconds since the epoch), moved by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Bundle:
    """An aiofolio bundle on moto and how to read it through the shaped link."""

    url: str  # s3://bucket/prefix
    bucket: str
    prefix: str
    proxy: ShapingServer
    options: dict[str, Any]  # storage options through the link
    items: dict[str, str] = field(default_factory=dict)  # name -> payload key in the bucket

    def object_path(self, name: str) -> str:
        return f"{self.bucket}/{self.items[name]}"


def _array(ctx: Context, size: int) -> Any:
    import numpy as np

    return np.frombuffer(ctx.payload(size), dtype=np.uint8)


def _item_name(size: int) -> str:
    return f"arr_{size}"


def _array_bundle(ctx: Context, sizes: tuple[int, ...]) -> Bundle:
    """A bundle holding one uint8 array per size, written by aiofolio straight to moto."""

    def make() -> Bundle:
        from aiofolio import DataFolio

        moto = ctx.servers.moto()
        bucket = ctx.servers.s3_bucket()
        proxy = ctx.servers.s3_shaped()
        prefix = "bench/aiofolio-arrays"
        url = f"s3://{bucket}/{prefix}"
        writer = DataFolio(
            url,
            storage_options=moto.storage_options(),
            cache_dir=str(ctx.scratch("aiofolio-writer-cache")),
        )
        bundle = Bundle(url, bucket, prefix, proxy, moto.storage_options(endpoint_url=proxy.url))
        for size in sorted(set(sizes)):
            name = _item_name(size)
            writer.add(name, _array(ctx, size))
            key = writer.item_path(name).removeprefix(f"s3://{bucket}/")
            bundle.items[name] = key
        return bundle

    bundle: Bundle = ctx.once("aiofolio-array-bundle", make)
    missing = [s for s in sizes if _item_name(s) not in bundle.items]
    if missing:  # another scenario asked for other sizes first: add them
        from aiofolio import DataFolio

        writer = DataFolio(
            bundle.url,
            storage_options=ctx.servers.moto().storage_options(),
            cache_dir=str(ctx.scratch("aiofolio-writer-cache")),
        )
        for size in missing:
            name = _item_name(size)
            writer.add(name, _array(ctx, size))
            bundle.items[name] = writer.item_path(name).removeprefix(f"s3://{bundle.bucket}/")
    return bundle


def _reader(
    ctx: Context,
    bundle: Bundle,
    cache_dir: Path,
    clock: Clock | None = None,
    **settings: Any,
) -> Any:
    from aiofolio import DataFolio

    return DataFolio(
        bundle.url,
        read_only=True,
        create=False,
        storage_options=bundle.options,
        cache_dir=str(cache_dir),
        cache_ttl=TTL_S,
        clock=clock,
        **settings,
    )


def _fresh_dir(ctx: Context, name: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=ctx.scratch("aiofolio-cache")))


# -- hits ---------------------------------------------------------------------------------------


def _hits(ctx: Context) -> list[Row]:
    import numpy as np

    p = ctx.profile
    sizes = (p.hit_small_size, p.hit_large_size)
    bundle = _array_bundle(ctx, sizes)
    folio = _reader(ctx, bundle, _fresh_dir(ctx, "hits"), Clock())
    rows: list[Row] = []

    def per_size(size: int) -> list[Row]:
        rows: list[Row] = []
        name = _item_name(size)
        data = ctx.payload(size)
        small = size < MiB
        series: dict[str, Any] = dict(
            repeats=p.small_repeats if small else p.large_repeats,
            warmup=20 if small else 1,
            budget_s=p.small_budget_s if small else None,
        )
        path = folio.get_path(name)  # the miss: download into the cache (not timed)
        file_size = os.path.getsize(path)
        header = file_size - size
        layout = f".npy {file_size:,} B ({header} B header)"

        def check_array(got: Any, data: bytes = data, size: int = size) -> None:
            if not isinstance(got, np.ndarray) or got.nbytes != size or got.tobytes() != data:
                raise RuntimeError("get returned a wrong array")

        def check_path(got: str, path: str = path) -> None:
            if got != path:
                raise RuntimeError(f"get_path returned {got!r}, expected {path!r}")

        buf = memoryview(bytearray(file_size))

        def path_readinto(name: str = name, buf: memoryview = buf) -> int:
            n = 0
            with open(folio.get_path(name), "rb", buffering=0) as fh:
                while n < len(buf):
                    k = fh.readinto(buf[n:])
                    if not k:
                        break
                    n += k
            return n

        def check_len(n: int, file_size: int = file_size) -> None:
            if n != file_size:
                raise RuntimeError(f"read {n} bytes of {file_size}")

        async def aget_series(name: str = name, check: Any = check_array) -> Samples:
            return await ctx.measure_async(lambda: folio.aget(name), check=check, **series)

        hit_baseline = SIMPLE_HIT
        if small:
            rows += ctx.attempt(
                lambda: [_same_payload_hit(ctx, bundle, name, size, series)],
                group=HIT_GROUP,
                name=SAME_PAYLOAD,
                impl="fsspec simplecache",
                size_bytes=size,
            )
            hit_baseline = SIMPLE_SAME

        verify = (
            "hits re-hash the blob (fast hash)"
            if file_size <= 64 * MiB
            else "blob above VERIFY_ON_HIT_MAX (64 MiB): hits check its mtime, no re-hash"
        )
        cases: list[tuple[str, str, str, Callable[[], Samples], list[str]]] = [
            (
                "aiofolio hit get",
                "DataFolio.get (sync)",
                hit_baseline,
                lambda name=name, check=check_array: ctx.measure(
                    functools.partial(folio.get, name), check=check, **series
                ),
                ["includes np.load of the array (cat_file returns raw bytes)", verify],
            ),
            (
                "aiofolio hit aget",
                "await DataFolio.aget (from asyncio)",
                hit_baseline,
                lambda aget_series=aget_series: run_async(
                    aget_series(), timeout_s=p.series_budget_s + 60
                ),
                ["includes np.load", "awaited from the caller's loop", verify],
            ),
            (
                "aiofolio hit get_path",
                "DataFolio.get_path",
                hit_baseline,
                lambda name=name, check=check_path: ctx.measure(
                    functools.partial(folio.get_path, name), check=check, **series
                ),
                ["returns the verified blob's path, reads no bytes", verify],
            ),
            (
                "aiofolio hit get_path+open().readinto",
                "DataFolio.get_path + open().readinto",
                SIMPLE_READINTO,
                lambda f=path_readinto, check=check_len: ctx.measure(f, check=check, **series),
                ["preallocated buffer", verify],
            ),
        ]
        for row_name, impl, baseline, timed, notes in cases:
            goal = (
                Goal.slowdown_at_most(1.0, "<= 1.0x the same-payload simplecache hit")
                if small and row_name in HIT_GOAL_ROWS
                else None
            )

            def one(
                row_name: str = row_name,
                impl: str = impl,
                baseline: str = baseline,
                timed: Callable[[], Samples] = timed,
                notes: list[str] = notes,
                goal: Goal | None = goal,
            ) -> list[Row]:
                with bundle.proxy.counting() as c:
                    samples = timed()
                return [
                    ctx.row(
                        group=HIT_GROUP,
                        name=row_name,
                        impl=impl,
                        size_bytes=size,
                        samples=samples,
                        baseline=baseline,
                        notes=[
                            layout,
                            *notes,
                            samples.note(),
                            describe_requests(c["stats"], samples.runs),
                        ],
                        goal=goal,
                    )
                ]

            rows += ctx.attempt(
                one, group=HIT_GROUP, name=row_name, impl="aiofolio", size_bytes=size, goal=goal
            )
        if bytes(buf[header:]) != data:
            raise RuntimeError("get_path+readinto read wrong bytes")
        return rows

    for size in sizes:
        rows += per_size(size)
    return rows


def _same_payload_hit(
    ctx: Context, bundle: Bundle, name: str, size: int, series: dict[str, Any]
) -> Row:
    """fsspec simplecache over s3fs → the bundle's shaped proxy → moto, on the aiofolio item's
    own payload object: warmed (the miss, untimed), then timed hits."""
    import fsspec

    opts = ctx.servers.moto().storage_options(endpoint_url=bundle.proxy.url)
    opts.update(max_concurrency=1, skip_instance_cache=True)
    fs = fsspec.filesystem(
        "simplecache",
        target_protocol="s3",
        target_options=opts,
        cache_storage=str(ctx.scratch("simplecache-same-payload")),
        skip_instance_cache=True,
    )
    path = bundle.object_path(name)
    expected = fs.cat_file(path)  # the miss: into the cache
    head = ctx.servers.moto().client.head_object(Bucket=bundle.bucket, Key=bundle.items[name])
    if len(expected) != int(head["ContentLength"]):
        raise RuntimeError(f"simplecache read {len(expected)} bytes of {head['ContentLength']}")

    def check(got: bytes) -> None:
        if got != expected:
            raise RuntimeError("simplecache hit returned other bytes")

    with bundle.proxy.counting() as c:
        samples = ctx.measure(functools.partial(fs.cat_file, path), check=check, **series)
    return ctx.row(
        group=HIT_GROUP,
        name=SAME_PAYLOAD,
        impl="fsspec simplecache",
        size_bytes=size,  # the array's bytes, as the aiofolio rows count them
        samples=samples,
        notes=[
            f"the aiofolio item's .npy object ({len(expected):,} B) over s3fs "
            f"(max_concurrency=1) → {single_stream.link_note(ctx)} → moto, same run and "
            "server as the aiofolio rows; cache warmed first",
            "returns raw bytes",
            samples.note(),
            describe_requests(c["stats"], samples.runs),
        ],
    )


# -- revalidation of a large bundle -------------------------------------------------------------


@dataclass
class BigBundle:
    bundle: Bundle
    count: int
    manifest_bytes: int
    build_s: float
    upload_s: float


def _big_bundle(ctx: Context, count: int) -> BigBundle:
    """``count`` JSON items: ``items.json`` built with the bundle layer, uploaded by boto3."""
    from aiofolio.bundle import ITEMS_FILE, parse_manifest, plan_add, plan_create, serialize

    moto = ctx.servers.moto()
    bucket = ctx.servers.s3_bucket()
    proxy = ctx.servers.s3_shaped()
    prefix = f"bench/aiofolio-{count}-items"
    t0 = time.perf_counter()
    base = plan_create({"bench": "revalidation"}).manifest
    scratch = ctx.scratch("big-bundle") / "item.json"
    items: list[dict[str, Any]] = []
    payloads: dict[str, bytes] = {}
    # plan_add on the growing manifest is O(n) per call; plan each item against the empty
    # base (same fields, same payload path rule) and assemble the manifest once.
    for i in range(count):
        name = f"item{i:05d}"
        fields = serialize({"i": i, "name": name}, scratch, name=name)
        plan = plan_add(base, name, fields)
        assert plan.item is not None
        assert plan.payload_path is not None
        items.append(plan.item.to_dict())
        payloads[plan.payload_path] = scratch.read_bytes()
    doc = base.to_dict()
    doc["items"] = items
    doc["revision"] = count + 1
    manifest = parse_manifest(json.dumps(doc).encode(), source="benchmark")
    raw = manifest.to_json_bytes()
    build_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    client = moto.client
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(client.put_object, Bucket=bucket, Key=f"{prefix}/{k}", Body=v)
            for k, v in payloads.items()
        ]
        for f in futures:
            f.result()
            if ctx.out_of_time():
                for g in futures:
                    g.cancel()
                raise TimeoutError("run time budget spent while uploading the bundle")
    client.put_object(Bucket=bucket, Key=f"{prefix}/{ITEMS_FILE}", Body=raw)
    upload_s = time.perf_counter() - t0
    bundle = Bundle(
        f"s3://{bucket}/{prefix}", bucket, prefix, proxy, moto.storage_options(proxy.url)
    )
    for item_doc, key in zip(items, payloads, strict=True):
        bundle.items[item_doc["name"]] = f"{prefix}/{key}"
    ctx.log(
        f"  {count} item bundle: built in {build_s:.1f} s ({len(raw) / 1e6:.1f} MB items.json), "
        f"uploaded in {upload_s:.1f} s"
    )
    return BigBundle(bundle, count, len(raw), build_s, upload_s)


def _extrapolated(samples: Samples, factor: float, add: float = 0.0) -> Samples:
    return Samples([t * factor + add for t in samples.times], 0, len(samples.times))


def _revalidation(ctx: Context) -> list[Row]:
    import fsspec

    p = ctx.profile
    count = REVAL_ITEMS.get(p.name, REVAL_ITEMS["quick"])
    checked = min(count, CHECKED_HITS.get(p.name, CHECKED_HITS["quick"]))
    big = _big_bundle(ctx, count)
    bundle = big.bundle
    names = list(bundle.items)
    first = names[0]
    expected = {"i": 0, "name": first}
    rows: list[Row] = []
    scale = f"bundle of {count:,} items ({big.manifest_bytes / 1e6:.1f} MB items.json)"

    def check_json(got: Any) -> None:
        if got != expected:
            raise RuntimeError(f"get returned {got!r}")

    # aiofolio: one cached item, then revalidations of the unchanged bundle.
    clock = Clock()
    folio = _reader(ctx, bundle, _fresh_dir(ctx, "reval"), clock)
    check_json(folio.get(first))  # caches the manifest and the item
    with bundle.proxy.counting() as c:
        reval = ctx.measure(
            functools.partial(folio.get, first),
            repeats=REVAL_REPEATS.get(p.name, 10),
            warmup=1,
            setup=functools.partial(clock.advance, TTL_S + 1),
            check=check_json,
        )
    reval_requests = c["stats"]
    per_op = reval_requests.get("requests", 0) / max(1, reval.runs)
    rows.append(
        ctx.row(
            group=REVAL_GROUP,
            name=AF_REVAL,
            impl="DataFolio.get, clock moved past cache_ttl before each run",
            size_bytes=0,
            samples=reval,
            baseline=f"{REVAL_GROUP}/{FC_HIT}",
            notes=[
                scale,
                "one conditional GET of items.json covers every item",
                single_stream.link_note(ctx),
                describe_requests(reval_requests, reval.runs),
            ],
        )
    )
    with bundle.proxy.counting() as c:
        hit = ctx.measure(
            functools.partial(folio.get, first),
            repeats=p.small_repeats,
            warmup=20,
            budget_s=p.small_budget_s,
            check=check_json,
        )
    rows.append(
        ctx.row(
            group=REVAL_GROUP,
            name=AF_HIT_LARGE,
            impl="DataFolio.get within the TTL",
            size_bytes=0,
            samples=hit,
            baseline=None,
            notes=[
                scale,
                "JSON item (json.loads); compare with the 1 KiB aiofolio hit get",
                hit.note(),
                describe_requests(c["stats"], hit.runs),
            ],
        )
    )

    # fsspec filecache(check_files=True) over the same payload objects.
    opts = ctx.servers.moto().storage_options(endpoint_url=bundle.proxy.url)
    opts.update(max_concurrency=1, skip_instance_cache=True)
    fs = fsspec.filesystem(
        "filecache",
        target_protocol="s3",
        target_options=opts,
        cache_storage=str(ctx.scratch("filecache-check-files")),
        check_files=True,
        skip_instance_cache=True,
    )
    paths = [bundle.object_path(n) for n in names[:checked]]
    for path in paths:  # the misses: fill the cache (untimed)
        fs.cat_file(path)
    cycle = itertools.cycle(paths)

    def check_payload(got: bytes) -> None:
        if not got.startswith(b"{"):
            raise RuntimeError(f"filecache returned {got[:40]!r}")

    with bundle.proxy.counting() as c:
        fc = ctx.measure(
            lambda: fs.cat_file(next(cycle)),
            repeats=checked,
            warmup=min(5, checked),
            check=check_payload,
        )
    fc_stats = c["stats"]
    fc_per_hit = fc_stats.get("requests", 0) / max(1, fc.runs)
    rows.append(
        ctx.row(
            group=REVAL_GROUP,
            name=FC_HIT,
            impl="fsspec filecache(check_files=True) over s3fs",
            size_bytes=0,
            samples=fc,
            baseline=None,
            notes=[
                f"{checked} cached items of the {count:,}, each hit once or more",
                "s3fs max_concurrency=1",
                describe_requests(fc_stats, fc.runs),
            ],
        )
    )
    rows.append(
        ctx.row(
            group=REVAL_GROUP,
            name=FC_ALL,
            impl="fsspec filecache(check_files=True)",
            size_bytes=0,
            samples=_extrapolated(fc, count),
            baseline=None,
            notes=[
                f"EXTRAPOLATED: {count:,} x the per-hit times of the row above "
                f"({fc.runs} hits measured)",
                f"{fc_per_hit * count:,.0f} requests in all ({fc_per_hit:g}/hit measured)",
            ],
        )
    )
    hit_median = hit.stats.median
    rows.append(
        ctx.row(
            group=REVAL_GROUP,
            name=AF_ALL,
            impl="aiofolio",
            size_bytes=0,
            samples=_extrapolated(reval, 1.0, add=(count - 1) * hit_median),
            baseline=f"{REVAL_GROUP}/{FC_ALL}",
            notes=[
                f"EXTRAPOLATED: one revalidating get (times above) + {count - 1:,} x the "
                f"median hit ({hit_median * 1e6:.0f} µs), all items assumed cached",
                f"{per_op * 1:g} request(s) in all ({per_op:g}/revalidation measured)",
            ],
        )
    )
    return rows


# -- cold reads ---------------------------------------------------------------------------------


def _cold(ctx: Context) -> list[Row]:
    p = ctx.profile
    size = p.stream_size
    bundle = _array_bundle(ctx, (p.hit_small_size, p.hit_large_size, size))
    name = _item_name(size)
    path = bundle.object_path(name)
    data = ctx.payload(size)
    moto = ctx.servers.moto()
    proxy = bundle.proxy
    file_size = moto.client.head_object(Bucket=bundle.bucket, Key=bundle.items[name])[
        "ContentLength"
    ]
    header = file_size - size
    rows: list[Row] = []
    link = f"moto behind the {single_stream.link_note(ctx)} proxy"
    model = single_stream.link_model_s(ctx, file_size)
    series: dict[str, Any] = dict(
        repeats=p.stream_repeats,
        warmup=p.stream_warmup,
        min_repeats=min(2, p.stream_repeats),
    )
    out_dir = ctx.scratch("cold-get")
    target = out_dir / "object.npy"

    def check_file(got: Any) -> None:
        n = os.path.getsize(got if isinstance(got, (str, Path)) else target)
        if n != file_size:
            raise RuntimeError(f"got {n} bytes of {file_size}")

    def verify(local: Path | str) -> None:
        with open(local, "rb") as fh:
            fh.seek(header)
            if fh.read() != data:
                raise RuntimeError(f"{local}: wrong bytes")

    def clear_target() -> None:
        target.unlink(missing_ok=True)

    def s3fs_row(row_name: str, kwargs: dict[str, Any], baseline: str) -> list[Row]:
        fs = moto.s3fs(endpoint_url=proxy.url, **kwargs)
        with proxy.counting() as c:
            samples = ctx.measure(
                lambda: fs.get_file(path, str(target)),
                setup=clear_target,
                check=check_file,
                **series,
            )
        verify(target)
        return [
            ctx.row(
                group=COLD_GROUP,
                name=row_name,
                impl="s3fs.get_file (sync API) to a local file",
                size_bytes=file_size,
                samples=samples,
                baseline=baseline,
                notes=[
                    link,
                    f"max_concurrency={fs.max_concurrency}, block "
                    f"{fs.default_block_size >> 20} MiB",
                    f"link model {model:.2f} s",
                    describe_requests(c["stats"], samples.runs),
                ],
            )
        ]

    rows += ctx.attempt(
        lambda: s3fs_row(COLD_S3FS_1, {"max_concurrency": 1}, single_stream.BASELINE),
        group=COLD_GROUP,
        name=COLD_S3FS_1,
        impl="s3fs",
        size_bytes=file_size,
    )
    rows += ctx.attempt(
        lambda: s3fs_row(COLD_S3FS_DEFAULT, {}, f"{COLD_GROUP}/{COLD_S3FS_1}"),
        group=COLD_GROUP,
        name=COLD_S3FS_DEFAULT,
        impl="s3fs",
        size_bytes=file_size,
    )
    clear_target()

    state: dict[str, Any] = {}

    def fresh_folio() -> None:
        old = state.pop("dir", None)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        state["dir"] = _fresh_dir(ctx, "cold")
        # Opening loads items.json (one GET over the link): not in the timed get_path.
        state["folio"] = _reader(ctx, bundle, state["dir"], Clock())

    def aiofolio_row() -> list[Row]:
        with proxy.counting() as c:
            samples = ctx.measure(
                lambda: state["folio"].get_path(name), setup=fresh_folio, check=check_file, **series
            )
        verify(state["folio"].get_path(name))
        opens = samples.runs  # one manifest GET per fresh folio, made in the untimed setup
        stats = c["stats"]
        by = stats.get("by_method", {})
        get_total = by.get("GET", {}).get("requests", 0)
        notes = [
            link,
            "fresh cache_dir per run; times get_path = download + MD5/size check + publish",
            "default settings: chunks of 8 MiB, 8 in flight, pinned to one version (+1 HEAD)",
            f"link model {model:.2f} s",
            f"requests/op: {(get_total - opens) / max(1, opens):g} GET for the payload "
            f"(+1 GET of items.json per open, untimed)",
        ]
        return [
            ctx.row(
                group=COLD_GROUP,
                name=COLD_AIOFOLIO,
                impl="DataFolio.get_path into a fresh cache",
                size_bytes=file_size,
                samples=samples,
                baseline=f"{COLD_GROUP}/{COLD_S3FS_1}",
                notes=notes,
            )
        ]

    rows += ctx.attempt(
        aiofolio_row,
        group=COLD_GROUP,
        name=COLD_AIOFOLIO,
        impl="aiofolio",
        size_bytes=file_size,
        baseline=f"{COLD_GROUP}/{COLD_S3FS_1}",
    )
    if state.get("dir") is not None:
        shutil.rmtree(state["dir"], ignore_errors=True)
    # The ratio against s3fs defaults, in the aiofolio row's notes (the table has one baseline).
    by_name = {r.name: r for r in rows if r.ok}
    mine, dflt = by_name.get(COLD_AIOFOLIO), by_name.get(COLD_S3FS_DEFAULT)
    if mine is not None and dflt is not None and mine.median_s and dflt.median_s:
        extra = f"vs {COLD_S3FS_DEFAULT}: {dflt.median_s / mine.median_s:.2f}x"
        mine.notes = f"{mine.notes}; {extra}" if mine.notes else extra
    return rows


COLD_HTTP_1 = "aiofolio cold get_path, HTTP, 1 stream"
COLD_HTTP_N = "aiofolio cold get_path, HTTP, defaults"


def _cold_http(ctx: Context) -> list[Row]:
    """Cold gets over the shaped HTTP link, where the server serves ranges without copying the
    object (moto copies the whole object per ranged GET, which caps the S3 rows)."""
    from aiofolio import DataFolio

    p = ctx.profile
    size = p.stream_size
    root = Path(tempfile.mkdtemp(prefix="cold-http-", dir=ctx.scratch("aiofolio-cache")))
    DataFolio(str(root / "bundle")).add("big", _array(ctx, size))
    files = {
        "/bundle/" + f.relative_to(root / "bundle").as_posix(): f
        for f in (root / "bundle").rglob("*")
        if f.is_file()
    }
    server = ctx.servers.http_shaped(f"cold-http:{size}", files)
    url = server.url_for("/bundle")
    series: dict[str, Any] = dict(
        repeats=p.stream_repeats, warmup=p.stream_warmup, min_repeats=min(2, p.stream_repeats)
    )
    rows: list[Row] = []
    for row_name, streams in ((COLD_HTTP_1, 1), (COLD_HTTP_N, None)):
        state: dict[str, Any] = {}

        def fresh(streams: int | None = streams, state: dict[str, Any] = state) -> None:
            extra = {} if streams is None else {"parallel_downloads": streams}
            state["folio"] = DataFolio(
                url,
                read_only=True,
                create=False,
                cache_dir=str(_fresh_dir(ctx, "cold-http")),
                **extra,
            )

        def one(row_name: str = row_name, state: dict[str, Any] = state) -> list[Row]:
            with server.counting() as c:
                samples = ctx.measure(lambda: state["folio"].get_path("big"), setup=fresh, **series)
            return [
                ctx.row(
                    group=COLD_GROUP,
                    name=row_name,
                    impl="DataFolio.get_path into a fresh cache (HTTP bundle)",
                    size_bytes=size,
                    samples=samples,
                    baseline=single_stream.BASELINE,
                    notes=[
                        single_stream.link_note(ctx),
                        "shaped file server: ranges served without copying the object",
                        describe_requests(c["stats"], samples.runs),
                    ],
                )
            ]

        rows += ctx.attempt(one, group=COLD_GROUP, name=row_name, impl="aiofolio", size_bytes=size)
    return rows


# -- the scenario -------------------------------------------------------------------------------


def run_hits(ctx: Context) -> list[Row]:
    return ctx.attempt(
        lambda: _hits(ctx),
        group=HIT_GROUP,
        name="aiofolio hit get",
        impl="aiofolio",
        size_bytes=ctx.profile.hit_small_size,
        baseline=SIMPLE_SAME,
    )


def run(ctx: Context) -> list[Row]:
    p = ctx.profile
    rows: list[Row] = []
    rows += ctx.attempt(
        lambda: _revalidation(ctx),
        group=REVAL_GROUP,
        name=AF_REVAL,
        impl="aiofolio",
        size_bytes=0,
    )
    rows += ctx.attempt(
        lambda: _cold(ctx),
        group=COLD_GROUP,
        name=COLD_AIOFOLIO,
        impl="aiofolio",
        size_bytes=p.stream_size,
    )
    rows += _cold_http(ctx)
    return rows


HITS_SCENARIO = Scenario(
    name="aiofolio-hits",
    run=run_hits,
    groups=(HIT_GROUP,),
    description="aiofolio hits (1 KiB, 64 MiB) vs simplecache; 1 KiB vs simplecache on the "
    "same payload and server",
)

SCENARIO = Scenario(
    name="aiofolio-cache",
    run=run,
    groups=(REVAL_GROUP, COLD_GROUP),
    description="aiofolio cache: one revalidation vs filecache check_files, cold get_path vs "
    "s3fs get_file",
)
