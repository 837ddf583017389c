"""Put benchmark objects on the servers once per run (shared by the scenarios).

Uploads go straight to moto / the emulator, never through the shaped link, and each object is
uploaded once per run (:meth:`Context.once`). The bytes are ``ctx.payload(size)``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable

from aiofolio.testing import http_call

from ..context import Context
from ..servers import ShapingServer


def check_bytes(expected: bytes) -> Callable[[object], None]:
    """A ``check=`` for :func:`measure`: the result must equal ``expected`` (untimed)."""

    def check(got: object) -> None:
        if got != expected:
            n = len(got) if isinstance(got, (bytes, bytearray, memoryview)) else "?"
            raise RuntimeError(f"wrong bytes: got {n} bytes, expected {len(expected)}")

    return check


def s3_object(ctx: Context, key: str, size: int) -> str:
    """``bucket/key`` of an object of ``size`` bytes in moto."""

    def make() -> str:
        moto = ctx.servers.moto()
        bucket = ctx.servers.s3_bucket()
        moto.put_object(bucket, key, ctx.payload(size))
        return f"{bucket}/{key}"

    return ctx.once(f"s3:{key}:{size}", make)


def gcs_object(ctx: Context, key: str, size: int) -> str:
    """``bucket/key`` of an object of ``size`` bytes in the GCS emulator (JSON media upload)."""

    def make() -> str:
        emu = ctx.servers.gcs()
        bucket = ctx.servers.gcs_bucket()
        query = urllib.parse.urlencode({"uploadType": "media", "name": key})
        status, body = http_call(
            "POST",
            f"{emu.endpoint_url}/upload/storage/v1/b/{bucket}/o?{query}",
            data=ctx.payload(size),
            headers={"Content-Type": "application/octet-stream"},
            timeout=120.0,
        )
        if status != 200:
            raise RuntimeError(f"GCS upload of {key!r}: HTTP {status}: {body[:200]!r}")
        return f"{bucket}/{key}"

    return ctx.once(f"gcs:{key}:{size}", make)


def http_object(ctx: Context, path: str, size: int) -> tuple[ShapingServer, str]:
    """A shaped file server holding ``path`` (``size`` bytes) and the object's URL."""
    server = ctx.servers.http_shaped(f"{path}:{size}", {path: ctx.payload_file(size)})
    return server, server.url_for(path)
