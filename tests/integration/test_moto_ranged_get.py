"""MotoServer's ranged-GET patch: a ranged GET reads only its bytes, and answers exactly as moto.

The launcher (``aiofolio.testing.MotoServer``, ``fast_ranges=True`` by default) patches moto in
its own process so a ranged GetObject no longer copies the whole object. These tests compare
the patched server (the session ``moto_server`` fixture) with moto as shipped
(``MotoServer(fast_ranges=False)``) over raw HTTP: status, body, and the headers a client reads
(Content-Range, Content-Length, ETag, checksums), for plain, open-ended, suffix, clamped,
unsatisfiable, multi-range and malformed ranges, ``partNumber``, conditionals and HEAD; and
they check the bytes against the object, also for 32 ranged GETs in flight at once and for an
older version of a versioned object.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import os
from collections.abc import Iterator
from urllib.parse import quote

import pytest

from aiofolio.testing import MotoServer

SIZE = 3 * 1024 * 1024 + 17
DATA = os.urandom(SIZE)
KEY = "dir/object.bin"

# Headers that may differ between two servers for the same object (time, request ids).
_VOLATILE = {
    "date",
    "last-modified",
    "x-amz-request-id",
    "x-amzn-requestid",
    "x-amz-id-2",
    "server",
}


@pytest.fixture(scope="module")
def plain_moto() -> Iterator[MotoServer]:
    """moto exactly as shipped (no patch), for comparison."""
    server = MotoServer(fast_ranges=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _request(
    server: MotoServer,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=server.endpoint_url + path, headers=headers or {})
    S3SigV4Auth(Credentials("testing", "testing"), "s3", server.region).add_auth(request)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(method, path, headers=dict(request.headers.items()))
        resp = conn.getresponse()
        body = resp.read()
        out = {k.lower(): v for k, v in resp.getheaders() if k.lower() not in _VOLATILE}
        return resp.status, out, body
    finally:
        conn.close()


@pytest.fixture
def two_buckets(moto_server: MotoServer, plain_moto: MotoServer) -> tuple[str, str]:
    """The same object in a bucket of the patched server and one of the plain server."""
    a = moto_server.create_bucket()
    b = plain_moto.create_bucket(a)
    etag_a = moto_server.put_object(a, KEY, DATA)
    etag_b = plain_moto.put_object(b, KEY, DATA)
    assert etag_a == etag_b
    return a, b


def test_the_patch_is_applied(moto_server: MotoServer, plain_moto: MotoServer) -> None:
    assert moto_server.fast_ranges
    assert moto_server.ranges_patched
    assert not plain_moto.fast_ranges
    assert not plain_moto.ranges_patched


RANGES = [
    "bytes=0-0",
    "bytes=0-99",
    "bytes=1000-200000",
    f"bytes={SIZE - 1}-{SIZE - 1}",
    "bytes=1048576-",  # open-ended
    "bytes=-100",  # suffix
    f"bytes=-{SIZE + 50}",  # suffix longer than the object
    f"bytes=5-{SIZE + 1000}",  # clamped to the end
    f"bytes={SIZE}-",  # unsatisfiable: 416
    "bytes=-0",  # unsatisfiable: 416
    "bytes=0-1,5-6",  # multi-range: moto answers 200 with the whole object
    "bytes=abc",  # malformed: 200 with the whole object
    "bytes=9-3",  # reversed: 200 with the whole object
    "",  # empty header: a plain GET
]


def _expected(range_header: str) -> bytes | None:
    spec = range_header.removeprefix("bytes=")
    if not range_header or "," in spec or spec in {"abc", "9-3"}:
        return DATA
    first, _, last = spec.partition("-")
    if not first:
        n = int(last)
        return DATA[max(0, SIZE - n) :] if n else None
    if int(first) >= SIZE:
        return None
    return DATA[int(first) : (int(last) + 1 if last else SIZE)]


@pytest.mark.parametrize("range_header", RANGES)
def test_ranged_get_matches_plain_moto(
    moto_server: MotoServer, plain_moto: MotoServer, two_buckets: tuple[str, str], range_header: str
) -> None:
    a, b = two_buckets
    headers = {"Range": range_header} if range_header else {}
    got = _request(moto_server, "GET", f"/{a}/{quote(KEY)}", headers)
    ref = _request(plain_moto, "GET", f"/{b}/{quote(KEY)}", headers)
    assert got[0] == ref[0]
    assert got[1] == ref[1]
    expected = _expected(range_header)
    if expected is None:
        assert got[0] == 416
        assert b"InvalidRange" in got[2]
        assert b"InvalidRange" in ref[2]
    else:
        assert got[2] == ref[2] == expected
        whole = not range_header or range_header in {"bytes=0-1,5-6", "bytes=abc", "bytes=9-3"}
        assert got[0] == (200 if whole else 206)
        assert got[1]["content-length"] == str(len(expected))
        assert got[1]["etag"] == ref[1]["etag"]


def test_full_get_head_and_part_number_match(
    moto_server: MotoServer, plain_moto: MotoServer, two_buckets: tuple[str, str]
) -> None:
    a, b = two_buckets
    for method, query, headers in [
        ("GET", "", {}),
        ("HEAD", "", {}),
        ("HEAD", "", {"Range": "bytes=10-19"}),
        ("GET", "?partNumber=1", {}),
        ("GET", "?partNumber=1", {"Range": "bytes=10-19"}),
    ]:
        got = _request(moto_server, method, f"/{a}/{quote(KEY)}{query}", headers)
        ref = _request(plain_moto, method, f"/{b}/{quote(KEY)}{query}", headers)
        assert got == ref, (method, query, headers)
        if method == "GET":
            assert got[2] == DATA


def test_conditional_ranged_gets_match(
    moto_server: MotoServer, plain_moto: MotoServer, two_buckets: tuple[str, str]
) -> None:
    a, b = two_buckets
    etag = moto_server.client.head_object(Bucket=a, Key=KEY)["ETag"]
    for headers in [
        {"Range": "bytes=100-199", "If-Match": etag},
        {"Range": "bytes=100-199", "If-Match": '"0000"'},
        {"Range": "bytes=100-199", "If-None-Match": etag},
        {"Range": "bytes=100-199", "If-None-Match": '"0000"'},
    ]:
        got = _request(moto_server, "GET", f"/{a}/{quote(KEY)}", headers)
        ref = _request(plain_moto, "GET", f"/{b}/{quote(KEY)}", headers)
        assert got[:2] == ref[:2], headers
        if got[0] == 206:
            assert got[2] == ref[2] == DATA[100:200]
    assert _request(moto_server, "GET", f"/{a}/{quote(KEY)}", {"If-Match": '"0"'})[0] == 412


def test_parallel_ranged_gets_return_their_bytes(moto_server: MotoServer, s3_bucket: str) -> None:
    moto_server.put_object(s3_bucket, KEY, DATA)
    chunk = 100_003
    starts = list(range(0, SIZE, chunk))
    assert len(starts) >= 32

    def one(start: int) -> tuple[int, int, bytes]:
        end = min(SIZE, start + chunk) - 1
        status, headers, body = _request(
            moto_server, "GET", f"/{s3_bucket}/{quote(KEY)}", {"Range": f"bytes={start}-{end}"}
        )
        assert headers["content-range"] == f"bytes {start}-{end}/{SIZE}"
        return status, start, body

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, starts, timeout=60))
    assert {status for status, _, _ in results} == {206}
    assert b"".join(body for _, _, body in sorted(results, key=lambda r: r[1])) == DATA


def test_ranged_get_of_an_older_version(moto_server: MotoServer) -> None:
    bucket = moto_server.create_bucket(versioned=True)
    client = moto_server.client
    first = client.put_object(Bucket=bucket, Key=KEY, Body=DATA)["VersionId"]
    newer = bytes(reversed(DATA))
    client.put_object(Bucket=bucket, Key=KEY, Body=newer)
    old = client.get_object(Bucket=bucket, Key=KEY, VersionId=first, Range="bytes=10-29")
    assert old["Body"].read() == DATA[10:30]
    assert old["ContentRange"] == f"bytes 10-29/{SIZE}"
    new = client.get_object(Bucket=bucket, Key=KEY, Range="bytes=10-29")
    assert new["Body"].read() == newer[10:30]
    assert old["ETag"] != new["ETag"]
