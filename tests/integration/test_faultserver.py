"""Integration tests of the fault-and-shaping server, locally and as a proxy in front of moto."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import aiohttp
import pytest
from aiohttp import web
from botocore.exceptions import ClientError

from aiofolio.testing import Fault, FaultServer, GcsEmulator, MotoServer, ThreadedServer

pytestmark = pytest.mark.timeout(60)

DATA = bytes(range(256)) * 4096  # 1 MiB
SMALL = b"0123456789" * 100  # 1000 bytes


async def _read_all(resp: aiohttp.ClientResponse) -> tuple[bytes, BaseException | None]:
    """Read a body chunk by chunk; return what arrived and the error that stopped it, if any."""
    got = bytearray()
    try:
        async for chunk in resp.content.iter_any():
            got += chunk
    except (aiohttp.ClientError, ConnectionError, asyncio.TimeoutError) as exc:
        return bytes(got), exc
    return bytes(got), None


# -- per-request latency and bandwidth ------------------------------------------------------


async def test_latency_applies_to_matching_paths_only(http_server: FaultServer):
    http_server.put("/slow", SMALL)
    http_server.put("/fast", SMALL)
    http_server.set_fault("/slow", Fault(latency=0.1))
    async with aiohttp.ClientSession() as session:
        t0 = time.monotonic()
        async with session.get(http_server.url_for("/slow")) as r:
            assert r.status == 200
            assert await r.read() == SMALL
        elapsed = time.monotonic() - t0
        async with session.get(http_server.url_for("/fast")) as r:
            assert await r.read() == SMALL
    assert elapsed >= 0.1
    slow, fast = http_server.stats.records()
    assert slow.fault == "latency"
    assert fast.fault is None
    assert http_server.stats.bytes_served() == 2 * len(SMALL)


@pytest.mark.parametrize(("size", "rate"), [(400_000, 2e6), (10_000_000, 50e6)])
async def test_bandwidth_cap(http_server: FaultServer, size: int, rate: float):
    body = DATA * (size // len(DATA)) + DATA[: size % len(DATA)]
    http_server.put("/big", body)
    http_server.set_fault("*", Fault(bandwidth=rate))
    async with aiohttp.ClientSession() as session:
        t0 = time.monotonic()
        async with session.get(http_server.url_for("/big")) as r:
            got = await r.read()
        elapsed = time.monotonic() - t0
    assert got == body
    assert elapsed >= 0.8 * size / rate  # loose lower bound (0.16 s and 0.16 s)
    assert http_server.stats.bytes_served("/big", "GET") == size
    assert http_server.stats.records()[0].fault == "bandwidth"


# -- injected errors ------------------------------------------------------------------------


async def test_fail_n_then_normal(http_server: FaultServer):
    http_server.put("/f", SMALL)
    http_server.set_fault("/f", Fault(fail_n=2, fail_status=503))
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(3):
            async with session.get(http_server.url_for("/f")) as r:
                statuses.append(r.status)
                body = await r.read()
    assert statuses == [503, 503, 200]
    assert body == SMALL
    assert http_server.stats.statuses("/f") == [503, 503, 200]
    assert http_server.stats.requests("/f") == 3
    assert http_server.stats.bytes_served("/f") == len(SMALL)  # error bodies are not counted


@pytest.mark.parametrize(("status", "retry_after"), [(429, 1), (500, None), (503, 0.5)])
async def test_fail_status_and_retry_after(http_server, status, retry_after):
    http_server.put("/e", SMALL)
    http_server.set_fault("/e", Fault(fail_n=1, fail_status=status, retry_after=retry_after))
    async with aiohttp.ClientSession() as session:
        async with session.get(http_server.url_for("/e")) as r:
            assert r.status == status
            assert r.headers.get("Retry-After") == (
                None if retry_after is None else f"{retry_after:g}"
            )
            assert b"<Error><Code>" in await r.read()
        async with session.get(http_server.url_for("/e")) as r:
            assert r.status == 200


async def test_methods_times_and_rule_order(http_server: FaultServer):
    http_server.put("/data/a.bin", SMALL)
    http_server.put("/other", SMALL)
    http_server.set_fault("/data/*.bin", Fault(fail_n=5, fail_status=500, methods={"get"}))
    http_server.set_fault("/data/a.bin", Fault(fail_n=1, fail_status=429, times=1))
    async with aiohttp.ClientSession() as session:
        statuses = []
        for method in ("GET", "GET", "HEAD"):
            async with session.request(method, http_server.url_for("/data/a.bin")) as r:
                statuses.append(r.status)
        async with session.get(http_server.url_for("/other")) as r:
            statuses.append(r.status)
    # newest rule first (429, used up after one), then the glob for GET only.
    assert statuses == [429, 500, 200, 200]
    assert [p for p, _ in http_server.faults] == ["/data/*.bin", "/data/a.bin"]
    http_server.clear_faults()
    assert http_server.faults == []


def test_fault_validation():
    with pytest.raises(ValueError):
        Fault(latency=-1)
    with pytest.raises(ValueError):
        Fault(latency=120)
    with pytest.raises(ValueError):
        Fault(fail_n=1, fail_status=200)
    with pytest.raises(ValueError):
        Fault(max_hang=1000)
    with pytest.raises(ValueError):
        Fault(bandwidth=0)
    with pytest.raises(ValueError):
        Fault(times=0)
    assert Fault(methods=["get"]).methods == frozenset({"GET"})
    with pytest.raises(ValueError, match="upstream"):
        FaultServer(upstream="http://example.com:80")


# -- broken bodies --------------------------------------------------------------------------


async def test_reset_after_k_bytes(http_server: FaultServer):
    http_server.put("/reset", DATA)
    k = 300_000
    http_server.set_fault("/reset", Fault(reset_after=k, times=1))
    async with aiohttp.ClientSession() as session:
        async with session.get(http_server.url_for("/reset")) as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == str(len(DATA))
            got, error = await _read_all(r)
        assert error is not None
        assert len(got) <= k
        assert got == DATA[: len(got)]
        async with session.get(http_server.url_for("/reset")) as r:  # times=1: now normal
            assert await r.read() == DATA
    first, second = http_server.stats.records("/reset")
    assert (first.bytes_sent, first.aborted, first.fault) == (k, True, "reset")
    assert (second.bytes_sent, second.aborted) == (len(DATA), False)
    assert http_server.stats.bytes_served("/reset") == k + len(DATA)


async def test_reset_before_any_byte(http_server: FaultServer):
    http_server.put("/r0", SMALL)
    http_server.set_fault("/r0", Fault(reset_after=0))
    async with aiohttp.ClientSession() as session, session.get(http_server.url_for("/r0")) as r:
        got, error = await _read_all(r)
    assert got == b""
    assert error is not None
    assert http_server.stats.bytes_served("/r0") == 0


async def test_truncated_body(http_server: FaultServer):
    http_server.put("/t", DATA)
    k = 123_457
    http_server.set_fault("/t", Fault(truncate_at=k))
    async with aiohttp.ClientSession() as session, session.get(http_server.url_for("/t")) as r:
        assert r.headers["Content-Length"] == str(len(DATA))
        got, error = await _read_all(r)
    assert isinstance(error, aiohttp.ClientPayloadError)
    assert got == DATA[:k]  # a clean close: every byte before the cut arrives
    record = http_server.stats.records("/t")[0]
    assert (record.status, record.bytes_sent, record.fault) == (200, k, "truncate")


async def test_corrupted_bytes_at_seeded_positions(http_server: FaultServer):
    http_server.put("/c", DATA)
    fault = Fault(corrupt=True, corrupt_bytes=3, seed=7)
    http_server.set_fault("/c", fault)
    async with aiohttp.ClientSession() as session:
        async with session.get(http_server.url_for("/c")) as r:
            got = await r.read()
        async with session.get(
            http_server.url_for("/c"), headers={"Range": "bytes=1000-1999"}
        ) as r:
            ranged = await r.read()
    assert len(got) == len(DATA)
    diffs = [i for i, (a, b) in enumerate(zip(got, DATA, strict=True)) if a != b]
    assert diffs == fault.corrupt_positions(len(DATA))
    assert len(diffs) == 3
    assert all(got[i] == DATA[i] ^ 0xFF for i in diffs)
    assert len(ranged) == 1000
    window = DATA[1000:2000]
    ranged_diffs = [i for i, (a, b) in enumerate(zip(ranged, window, strict=True)) if a != b]
    assert ranged_diffs == fault.corrupt_positions(1000)  # offsets within the response body
    assert http_server.stats.bytes_served("/c") == len(DATA) + 1000


async def test_object_replaced_mid_download(http_server: FaultServer):
    old_etag = http_server.put("/v", DATA)
    new = b"new bytes" * 1000
    http_server.set_fault("/v", Fault(replace_with=new, replace_after=200_000, methods={"GET"}))
    async with aiohttp.ClientSession() as session:
        async with session.get(http_server.url_for("/v")) as r:
            assert r.headers["ETag"] == old_etag
            first = await r.read()
        assert first == DATA  # the running download keeps the old bytes
        assert http_server.get("/v") == new
        new_etag = f'"{hashlib.md5(new).hexdigest()}"'
        assert http_server.etag("/v") == new_etag
        # a pinned ranged read of the old version now fails; an unpinned one sees the new bytes
        pin = {"If-Match": old_etag, "Range": "bytes=0-99"}
        async with session.get(http_server.url_for("/v"), headers=pin) as r:
            assert r.status == 412
        async with session.get(http_server.url_for("/v")) as r:
            assert r.headers["ETag"] == new_etag
            assert await r.read() == new  # replaced once only
    assert http_server.stats.records("/v")[0].fault == "replace"
    assert http_server.stats.statuses("/v") == [200, 412, 200]


# -- hangs ----------------------------------------------------------------------------------


async def _wait_done(server: FaultServer, path: str, bound: float = 3.0) -> bool:
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if all(r.done for r in server.stats.records(path)):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_hang_until_client_times_out(http_server: FaultServer):
    http_server.put("/h", SMALL)
    http_server.set_fault("/h", Fault(hang=True))
    async with aiohttp.ClientSession() as session:
        t0 = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            async with session.get(
                http_server.url_for("/h"), timeout=aiohttp.ClientTimeout(total=0.15)
            ) as r:
                await r.read()
        assert time.monotonic() - t0 >= 0.15
    assert await _wait_done(http_server, "/h")  # the server noticed the client leaving
    record = http_server.stats.records("/h")[0]
    assert (record.status, record.bytes_sent, record.fault) == (0, 0, "hang")


async def test_hang_is_bounded_by_max_hang(http_server: FaultServer):
    http_server.put("/hb", SMALL)
    http_server.set_fault("/hb", Fault(hang=True, max_hang=0.1))
    async with aiohttp.ClientSession() as session:
        t0 = time.monotonic()
        with pytest.raises(aiohttp.ServerDisconnectedError):
            async with session.get(http_server.url_for("/hb")) as r:
                await r.read()
        assert time.monotonic() - t0 >= 0.2
    # aiohttp retries an idempotent request once when the server disconnects before answering
    assert http_server.stats.requests("/hb") == 2
    assert [r.fault for r in http_server.stats.records("/hb")] == ["hang", "hang"]


async def test_clear_faults_releases_a_hang(http_server: FaultServer):
    http_server.put("/hc", SMALL)
    http_server.set_fault("/hc", Fault(hang=True))

    async def fetch() -> int:
        async with aiohttp.ClientSession() as session, session.get(http_server.url_for("/hc")) as r:
            return r.status

    task = asyncio.create_task(fetch())
    for _ in range(500):  # bounded: 5 s; wait until the request is inside the hang
        if [r.fault for r in http_server.stats.records("/hc")] == ["hang"]:
            break
        await asyncio.sleep(0.01)
    http_server.clear_faults()
    # The hang ends at once (far below the 30 s max_hang) by closing the connection; aiohttp
    # retries the GET once, and without the fault it is answered.
    assert await asyncio.wait_for(task, timeout=10) == 200
    hung, served = http_server.stats.records("/hc")
    assert (hung.fault, hung.aborted, served.status) == ("hang", True, 200)


async def test_hang_after_k_bytes(http_server: FaultServer):
    http_server.put("/ha", DATA)
    http_server.set_fault("/ha", Fault(hang_after=50_000))
    timeout = aiohttp.ClientTimeout(sock_read=0.15)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(http_server.url_for("/ha")) as r,
    ):
        got, error = await _read_all(r)
    assert isinstance(error, asyncio.TimeoutError)
    assert got == DATA[:50_000]
    assert await _wait_done(http_server, "/ha")
    assert http_server.stats.bytes_served("/ha") == 50_000


# -- reverse proxy --------------------------------------------------------------------------


async def test_proxy_forwards_requests_unchanged():
    """Method, raw path, query, Authorization and Host reach the upstream; bodies stream."""
    seen: list[dict[str, object]] = []

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        seen.append(
            {
                "method": request.method,
                "raw_path": request.raw_path,
                "host": request.headers.get("Host"),
                "auth": request.headers.get("Authorization"),
                "md5": hashlib.md5(body).hexdigest(),
            }
        )
        return web.Response(body=DATA, headers={"X-Upstream": "yes", "ETag": '"e"'})

    app = web.Application(client_max_size=1 << 24)
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    upstream = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with FaultServer(upstream=upstream) as proxy:
            headers = {"Authorization": "AWS4-HMAC-SHA256 Credential=x", "Host": "signed-host:9"}
            raw = "/b/some%2Fkey%20x?versionId=1&x-id=GetObject"
            async with aiohttp.ClientSession() as session:
                url = proxy.url + raw
                async with session.put(
                    aiohttp.client.URL(url, encoded=True), data=DATA, headers=headers
                ) as r:
                    assert r.status == 200
                    assert r.headers["X-Upstream"] == "yes"
                    assert await r.read() == DATA
            assert proxy.stats.requests("/b/some/key x", "PUT") == 1
            assert proxy.stats.bytes_served("/b/some/key x") == len(DATA)
            assert proxy.stats.records()[0].proxied
    finally:
        await runner.cleanup()
    assert seen == [
        {
            "method": "PUT",
            "raw_path": raw,
            "host": "signed-host:9",
            "auth": headers["Authorization"],
            "md5": hashlib.md5(DATA).hexdigest(),
        }
    ]


def test_proxy_in_front_of_moto_with_boto3(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
):
    s3 = moto_server.boto3_client(endpoint_url=fault_proxy.url, retries={"total_max_attempts": 1})
    etag = s3.put_object(Bucket=s3_bucket, Key="k/obj", Body=DATA)["ETag"]
    assert etag == f'"{hashlib.md5(DATA).hexdigest()}"'
    assert s3.get_object(Bucket=s3_bucket, Key="k/obj")["Body"].read() == DATA
    part = s3.get_object(Bucket=s3_bucket, Key="k/obj", Range="bytes=10-19", IfMatch=etag)
    assert part["Body"].read() == DATA[10:20]
    with pytest.raises(ClientError) as not_modified:
        s3.get_object(Bucket=s3_bucket, Key="k/obj", IfNoneMatch=etag)
    assert not_modified.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    assert s3.head_object(Bucket=s3_bucket, Key="k/obj")["ContentLength"] == len(DATA)

    path = f"/{s3_bucket}/k/obj"
    stats = fault_proxy.stats
    assert stats.requests(path, "PUT") == 1
    assert stats.requests(path, "GET") == 3
    assert stats.requests(path, "HEAD") == 1
    assert stats.bytes_served(path, "GET") == len(DATA) + 10
    assert stats.statuses(path) == [200, 200, 206, 304, 200]
    assert all(r.proxied for r in stats.records())

    # injected throttling reaches boto3 as an S3 error
    fault_proxy.set_fault(path, Fault(fail_n=1, fail_status=503, retry_after=1))
    with pytest.raises(ClientError) as throttled:
        s3.get_object(Bucket=s3_bucket, Key="k/obj")
    assert throttled.value.response["Error"]["Code"] == "SlowDown"
    assert throttled.value.response["ResponseMetadata"]["HTTPHeaders"]["retry-after"] == "1"
    s3.close()


def test_proxy_in_front_of_moto_with_s3fs(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
):
    fs = moto_server.s3fs(
        endpoint_url=fault_proxy.url,
        config_kwargs={"proxies": {}, "retries": {"total_max_attempts": 1}},
    )
    key = f"{s3_bucket}/data.bin"
    path = "/" + key
    fs.pipe(key, DATA)
    assert fs.cat(key) == DATA
    assert fs.info(key)["size"] == len(DATA)
    assert fault_proxy.stats.requests(path, "PUT") == 1
    assert fault_proxy.stats.bytes_served(path, "GET") == len(DATA)

    # two SlowDowns, then normal: s3fs's own retry loop gets through (0.1 s + 0.17 s backoff)
    fault_proxy.stats.reset()
    fault_proxy.set_fault(path, Fault(fail_n=2, fail_status=503, methods={"GET"}))
    assert fs.cat_file(key, start=0, end=1000) == DATA[:1000]
    assert fault_proxy.stats.statuses(path, "GET") == [503, 503, 206]

    # a reset mid-body is retried by s3fs and counted at the proxy
    fault_proxy.clear_faults()
    fault_proxy.stats.reset()
    fault_proxy.set_fault(path, Fault(reset_after=100_000, times=1, methods={"GET"}))
    assert fs.cat(key) == DATA
    gets = fault_proxy.stats.records(path, "GET")
    assert [r.fault for r in gets] == ["reset", None]
    assert gets[0].bytes_sent == 100_000


def test_proxy_replace_in_moto_mid_download(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
):
    s3 = moto_server.boto3_client(endpoint_url=fault_proxy.url, retries={"total_max_attempts": 1})
    old_etag = s3.put_object(Bucket=s3_bucket, Key="v", Body=DATA)["ETag"]
    new = b"replacement" * 100
    path = f"/{s3_bucket}/v"
    fault_proxy.set_fault(path, Fault(replace_with=new, replace_after=500_000, methods={"GET"}))
    first = s3.get_object(Bucket=s3_bucket, Key="v")
    assert first["ETag"] == old_etag
    assert first["Body"].read() == DATA
    # moto now holds the new object; a read pinned to the old ETag fails
    direct = moto_server.client.get_object(Bucket=s3_bucket, Key="v")
    assert direct["Body"].read() == new
    with pytest.raises(ClientError) as pinned:
        s3.get_object(Bucket=s3_bucket, Key="v", Range="bytes=0-9", IfMatch=old_etag)
    assert pinned.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    assert [r.fault for r in fault_proxy.stats.records(path, "GET")] == ["replace", None]
    s3.close()


def test_proxy_latency_and_counts_per_path(
    fault_proxy: FaultServer, moto_server: MotoServer, s3_bucket: str
):
    s3 = moto_server.boto3_client(endpoint_url=fault_proxy.url)
    fault_proxy.set_fault("*", Fault(latency=0.1))
    t0 = time.monotonic()
    assert s3.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
    assert time.monotonic() - t0 >= 0.1
    counts = fault_proxy.stats.by_path()
    assert counts == {("GET", f"/{s3_bucket}"): (1, counts[("GET", f"/{s3_bucket}")][1])}
    record = fault_proxy.stats.records()[0]
    assert (record.proxied, record.fault, record.status) == (True, "latency", 200)
    assert "list-type=2" in record.query
    assert record.bytes_sent > 0  # the XML listing streamed through
    assert json.loads(json.dumps({f"{m} {p}": v for (m, p), v in counts.items()}))
    s3.close()


def test_proxy_in_front_of_gcs_emulator(gcs_server: GcsEmulator, gcs_bucket: str):
    with ThreadedServer(FaultServer(upstream=gcs_server.endpoint_url)) as threaded:
        proxy = threaded.server
        fs = gcs_server.gcsfs(endpoint_url=proxy.url)
        fs.pipe(f"{gcs_bucket}/p/obj", SMALL)
        proxy.set_fault("*", Fault(latency=0.1, methods={"GET"}))
        t0 = time.monotonic()
        assert fs.cat_file(f"{gcs_bucket}/p/obj", start=5, end=15) == SMALL[5:15]
        assert time.monotonic() - t0 >= 0.1
        gets = proxy.stats.records(method="GET")
        assert gets
        assert all(r.proxied and r.fault == "latency" for r in gets)
        assert proxy.stats.requests(method="POST") == 1  # the upload
        assert sum(r.bytes_sent for r in gets if r.status == 206) == 10
