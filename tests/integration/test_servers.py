"""Integration tests of the loopback servers themselves: moto, the GCS emulator, the HTTP server."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import aiohttp
import pytest
from botocore.exceptions import ClientError

from aiofolio.testing import (
    FaultServer,
    FileServer,
    GcsEmulator,
    ManagedServer,
    MotoServer,
    ServerStartError,
    ThreadedServer,
    parse_range,
)

pytestmark = pytest.mark.timeout(60)

DATA = bytes(range(256)) * 40  # 10240 bytes
DATA_ETAG = f'"{hashlib.md5(DATA).hexdigest()}"'
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _client_error_status(exc: ClientError) -> int:
    return int(exc.response["ResponseMetadata"]["HTTPStatusCode"])


# -- moto -----------------------------------------------------------------------------------


def test_moto_boto3_put_get_range_and_conditionals(moto_server: MotoServer, s3_bucket: str):
    s3 = moto_server.client
    etag = s3.put_object(Bucket=s3_bucket, Key="a/obj.bin", Body=DATA)["ETag"]
    assert etag == DATA_ETAG

    got = s3.get_object(Bucket=s3_bucket, Key="a/obj.bin")
    assert got["Body"].read() == DATA
    assert got["ETag"] == etag

    ranged = s3.get_object(Bucket=s3_bucket, Key="a/obj.bin", Range="bytes=100-199", IfMatch=etag)
    assert ranged["Body"].read() == DATA[100:200]
    assert ranged["ContentRange"] == f"bytes 100-199/{len(DATA)}"

    head = s3.head_object(Bucket=s3_bucket, Key="a/obj.bin")
    assert head["ContentLength"] == len(DATA)
    assert head["ETag"] == etag

    with pytest.raises(ClientError) as not_modified:
        s3.get_object(Bucket=s3_bucket, Key="a/obj.bin", IfNoneMatch=etag)
    assert _client_error_status(not_modified.value) == 304

    with pytest.raises(ClientError) as mismatch:
        s3.get_object(Bucket=s3_bucket, Key="a/obj.bin", Range="bytes=0-9", IfMatch='"0000"')
    assert _client_error_status(mismatch.value) == 412

    with pytest.raises(ClientError) as exists:
        s3.put_object(Bucket=s3_bucket, Key="a/obj.bin", Body=b"other", IfNoneMatch="*")
    assert _client_error_status(exists.value) == 412
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=s3_bucket, Key="a/obj.bin", Body=b"other", IfMatch='"0000"')
    assert _client_error_status(stale.value) == 412

    new_etag = s3.put_object(Bucket=s3_bucket, Key="a/obj.bin", Body=b"other", IfMatch=etag)["ETag"]
    assert new_etag == f'"{hashlib.md5(b"other").hexdigest()}"'
    assert s3.get_object(Bucket=s3_bucket, Key="a/obj.bin")["Body"].read() == b"other"


def test_moto_s3fs_put_get_range_info(moto_server: MotoServer, s3_bucket: str):
    fs = moto_server.s3fs()
    fs.pipe(f"{s3_bucket}/dir/x.bin", DATA)
    assert fs.cat(f"{s3_bucket}/dir/x.bin") == DATA
    assert fs.cat_file(f"{s3_bucket}/dir/x.bin", start=10, end=20) == DATA[10:20]
    info = fs.info(f"{s3_bucket}/dir/x.bin")
    assert info["size"] == len(DATA)
    assert info["ETag"] == DATA_ETAG
    assert fs.ls(f"{s3_bucket}/dir", detail=False) == [f"{s3_bucket}/dir/x.bin"]


def test_s3_bucket_fixture_is_fresh_and_unique(moto_server: MotoServer, s3_bucket: str):
    assert moto_server.client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0
    other = moto_server.create_bucket()
    assert other != s3_bucket
    names = {b["Name"] for b in moto_server.client.list_buckets()["Buckets"]}
    assert {s3_bucket, other} <= names
    assert moto_server.endpoint_url == f"http://127.0.0.1:{moto_server.port}"
    opts = moto_server.storage_options()
    assert opts["endpoint_url"] == moto_server.endpoint_url
    assert opts["key"] == "testing"


def test_moto_lifecycle_reset_and_stop_by_pid():
    server = MotoServer()
    with server:
        pid = server.pid
        assert pid is not None
        assert server.running
        bucket = server.create_bucket()
        server.put_object(bucket, "k", b"v")
        server.reset()
        names = [b["Name"] for b in server.client.list_buckets()["Buckets"]]
        assert names == []
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- ManagedServer failure paths ------------------------------------------------------------


def test_managed_server_exit_reports_log():
    server = ManagedServer(
        lambda port: [sys.executable, "-c", "print('boom-marker'); raise SystemExit(3)"],
        name="crasher",
        startup_timeout=10.0,
    )
    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3.*boom-marker"):
        server.start()
    assert not server.running


def test_managed_server_timeout_reports_log_and_kills():
    code = "import sys, time; print('still-starting', flush=True); time.sleep(30)"
    server = ManagedServer(
        lambda port: [sys.executable, "-c", code], name="sleeper", startup_timeout=0.5
    )
    with pytest.raises(ServerStartError, match=r"(?s)not ready.*still-starting"):
        server.start()
    assert not server.running
    assert server.pid is None


def test_servers_die_with_the_process_that_started_them():
    """No orphans: a SIGKILLed test process takes its servers with it."""
    code = (
        "import time; from aiofolio.testing import GcsEmulator; "
        "g = GcsEmulator().start(); print(g.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    server_pid = int(parent.stdout.readline())
    os.kill(server_pid, 0)  # running
    parent.kill()
    parent.wait()
    parent.stdout.close()
    for _ in range(200):  # bounded: 10 s; the watchdog polls every 0.5 s
        try:
            with open(f"/proc/{server_pid}/stat") as fh:
                if fh.read().split()[2] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(server_pid, signal.SIGKILL)
        pytest.fail("the emulator outlived its parent")


# -- GCS emulator ---------------------------------------------------------------------------


def test_gcs_gcsfs_put_get_range_generation(gcs_server: GcsEmulator, gcs_bucket: str):
    fs = gcs_server.gcsfs()
    assert type(fs).__module__ == "gcsfs.core"
    path = f"{gcs_bucket}/dir/x.bin"
    fs.pipe(path, DATA)
    assert fs.cat(path) == DATA
    assert fs.cat_file(path, start=10, end=20) == DATA[10:20]
    info = fs.info(path)
    assert int(info["size"]) == len(DATA)
    assert info["md5Hash"] == base64.b64encode(hashlib.md5(DATA).digest()).decode()
    generation = int(info["generation"])
    assert generation > 0

    fs.pipe(path, b"changed")
    fs.invalidate_cache()
    info2 = fs.info(path)
    assert int(info2["generation"]) != generation
    assert fs.cat(path) == b"changed"
    assert fs.ls(f"{gcs_bucket}/dir", detail=False) == [path]


async def test_gcs_emulator_known_limits(gcs_server: GcsEmulator, gcs_bucket: str):
    """What the emulator does NOT do (so code and tests do not rely on it)."""
    base = gcs_server.endpoint_url
    upload = f"{base}/upload/storage/v1/b/{gcs_bucket}/o?uploadType=media&name=obj"
    media = f"{base}/download/storage/v1/b/{gcs_bucket}/o/obj?alt=media"
    async with aiohttp.ClientSession() as session:
        async with session.post(upload, data=DATA) as r:
            assert r.status == 200
            meta = await r.json()
        assert int(meta["generation"]) > 0
        # Preconditions are ignored: ifGenerationMatch=0 ("must not exist") still overwrites.
        async with session.post(upload + "&ifGenerationMatch=0", data=b"again") as r:
            assert r.status == 200
        async with session.get(media, headers={"Range": "bytes=1-3"}) as r:
            assert r.status == 206
            assert await r.read() == b"gai"
        # Suffix ranges are ignored: the whole object comes back with 200.
        async with session.get(media, headers={"Range": "bytes=-2"}) as r:
            assert r.status == 200
            assert await r.read() == b"again"
        # No HEAD at all.
        async with session.head(media) as r:
            assert r.status == 501


def test_gcs_lifecycle_and_wipe():
    server = GcsEmulator()
    with server:
        pid = server.pid
        assert pid is not None
        bucket = server.create_bucket()
        fs = server.gcsfs()
        fs.pipe(f"{bucket}/k", b"v")
        server.reset()
        fs.invalidate_cache()
        assert fs.ls("", detail=False) == []
        opts = server.storage_options()
        assert opts == {
            "endpoint_url": server.endpoint_url,
            "token": "anon",
            "project": "test-project",
        }
    assert not server.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- HTTP file server -----------------------------------------------------------------------


async def test_http_get_head_headers_and_counts(http_server: FaultServer):
    etag = http_server.put("/d/obj.bin", DATA)
    assert etag == DATA_ETAG
    async with aiohttp.ClientSession() as session:
        async with session.get(http_server.url_for("/d/obj.bin")) as r:
            assert r.status == 200
            assert await r.read() == DATA
            assert r.headers["ETag"] == DATA_ETAG
            assert r.headers["Content-Length"] == str(len(DATA))
            assert r.headers["Accept-Ranges"] == "bytes"
            assert r.headers["Last-Modified"].endswith("GMT")
        async with session.head(http_server.url_for("/d/obj.bin")) as r:
            assert r.status == 200
            assert r.headers["Content-Length"] == str(len(DATA))
            assert r.headers["ETag"] == DATA_ETAG
            assert await r.read() == b""
        async with session.get(http_server.url_for("/missing")) as r:
            assert r.status == 404
    stats = http_server.stats
    assert stats.requests() == 3
    assert stats.requests("/d/obj.bin") == 2
    assert stats.requests("/d/obj.bin", "HEAD") == 1
    assert stats.requests(method="GET") == 2
    assert stats.bytes_served("/d/obj.bin") == len(DATA)
    assert stats.bytes_served("/d/obj.bin", "HEAD") == 0
    assert stats.statuses() == [200, 200, 404]
    assert stats.by_path()[("GET", "/d/obj.bin")] == (1, len(DATA))
    stats.reset()
    assert stats.requests() == 0


N = len(DATA)


@pytest.mark.parametrize(
    ("header", "status", "body_slice", "content_range"),
    [
        ("bytes=2-5", 206, slice(2, 6), f"bytes 2-5/{N}"),
        ("bytes=10000-", 206, slice(10000, N), f"bytes 10000-{N - 1}/{N}"),
        ("bytes=-3", 206, slice(N - 3, N), f"bytes {N - 3}-{N - 1}/{N}"),
        ("bytes=-100000", 206, slice(0, N), f"bytes 0-{N - 1}/{N}"),
        ("bytes=100-999999", 206, slice(100, N), f"bytes 100-{N - 1}/{N}"),
        (f"bytes={N}-", 416, None, f"bytes */{N}"),
        ("bytes=-0", 416, None, f"bytes */{N}"),
        ("bytes=5-2", 200, slice(0, N), None),
        ("bytes=0-1,4-5", 200, slice(0, N), None),
        ("items=0-1", 200, slice(0, N), None),
    ],
)
async def test_http_ranges(http_server, header, status, body_slice, content_range):
    http_server.put("/r", DATA)
    async with (
        aiohttp.ClientSession() as session,
        session.get(http_server.url_for("/r"), headers={"Range": header}) as r,
    ):
        body = await r.read()
        assert r.status == status
        assert r.headers.get("Content-Range") == content_range
    expected = DATA[body_slice] if body_slice is not None else None
    if expected is not None:
        assert body == expected
    assert http_server.stats.bytes_served("/r") == (len(expected) if expected else 0)


def test_parse_range_unit():
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-0", 10) == (0, 1)
    assert parse_range(" bytes = 3 - ", 10) is None  # malformed: ignored
    assert parse_range("bytes=-4", 3) == (0, 3)


async def test_http_conditional_get(http_server: FaultServer):
    etag = http_server.put("/c", DATA)
    url = http_server.url_for("/c")
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"If-None-Match": etag}) as r:
            assert r.status == 304
            assert r.headers["ETag"] == etag
            assert await r.read() == b""
        async with session.get(url, headers={"If-None-Match": f'"x", W/{etag}'}) as r:
            assert r.status == 304  # weak comparison for If-None-Match
        async with session.get(url, headers={"If-None-Match": '"other"'}) as r:
            assert r.status == 200
            assert await r.read() == DATA
        async with session.get(url, headers={"If-Match": '"other"'}) as r:
            assert r.status == 412
        pin = {"If-Match": etag, "Range": "bytes=0-9"}
        async with session.get(url, headers=pin) as r:
            assert r.status == 206
            assert await r.read() == DATA[:10]
        http_server.put("/c", b"new version")
        async with session.get(url, headers=pin) as r:
            assert r.status == 412  # the version pin catches the change
        async with session.head(url, headers={"If-Match": etag}) as r:
            assert r.status == 412
        lm = http_server.store.get("/c")
        assert lm is not None
        async with session.get(url, headers={"If-Modified-Since": lm.http_date}) as r:
            assert r.status == 304
    assert http_server.stats.statuses("/c") == [304, 304, 200, 412, 206, 412, 412, 304]
    assert http_server.stats.bytes_served("/c") == len(DATA) + 10


async def test_http_put_delete_conditional(http_server: FaultServer):
    url = http_server.url_for("/w/obj")
    async with aiohttp.ClientSession() as session:
        async with session.put(url, data=b"one") as r:
            assert r.status == 201
            etag1 = r.headers["ETag"]
        assert etag1 == f'"{hashlib.md5(b"one").hexdigest()}"'
        async with session.put(url, data=b"two", headers={"If-None-Match": "*"}) as r:
            assert r.status == 412
        async with session.put(url, data=b"two", headers={"If-Match": '"nope"'}) as r:
            assert r.status == 412
        async with session.put(url, data=b"two", headers={"If-Match": etag1}) as r:
            assert r.status == 200
            etag2 = r.headers["ETag"]
        assert http_server.get("/w/obj") == b"two"
        assert http_server.etag("/w/obj") == etag2
        async with session.put(url + "2", data=b"", headers={"If-Match": etag1}) as r:
            assert r.status == 412  # If-Match on a missing object
        async with session.delete(url, headers={"If-Match": etag1}) as r:
            assert r.status == 412
        async with session.delete(url) as r:
            assert r.status == 204
        async with session.get(url) as r:
            assert r.status == 404
        async with session.delete(url) as r:
            assert r.status == 404
    assert http_server.stats.requests("/w/obj", "PUT") == 4
    assert http_server.stats.requests("/w/obj", "DELETE") == 3


async def test_http_listing(http_server: FaultServer):
    http_server.put("a/1", b"x")
    http_server.put("a/2", b"yy")
    http_server.put("b/3", b"zzz")
    async with (
        aiohttp.ClientSession() as session,
        session.get(http_server.url + "/?prefix=a/") as r,
    ):
        assert r.status == 200
        listing = await r.json()
    assert [(o["path"], o["size"]) for o in listing["objects"]] == [("/a/1", 1), ("/a/2", 2)]


def test_http_server_from_sync_code(http_server: FaultServer):
    http_server.put("/sync", b"hello")
    with NO_PROXY.open(http_server.url_for("/sync"), timeout=5) as r:
        assert r.read() == b"hello"
    with pytest.raises(urllib.error.HTTPError) as missing:
        NO_PROXY.open(http_server.url_for("/nope"), timeout=5)
    assert missing.value.code == 404
    missing.value.close()
    assert http_server.stats.requests() == 2
    assert http_server.stats.bytes_served("/sync") == 5


async def test_file_server_inside_running_loop():
    async with FileServer({"/x": b"abc"}, writable=False) as server:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url_for("/x"), headers={"Range": "bytes=1-"}) as r:
                assert r.status == 206
                assert await r.read() == b"bc"
            async with session.put(server.url_for("/x"), data=b"new") as r:
                assert r.status == 405
        assert server.get("/x") == b"abc"
        assert server.stats.requests() == 2


def test_threaded_server_start_stop():
    threaded = ThreadedServer(FileServer({"/t": b"t"}))
    with threaded:
        url = threaded.url + "/t"
        with NO_PROXY.open(url, timeout=5) as r:
            assert r.read() == b"t"
        assert json.loads(NO_PROXY.open(threaded.url + "/", timeout=5).read())["objects"]
    with pytest.raises(urllib.error.URLError):
        NO_PROXY.open(url, timeout=2)
