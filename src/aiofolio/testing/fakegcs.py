"""A small, faithful in-memory fake of the Google Cloud Storage JSON API, for tests.

This module owns the fake's HTTP semantics and the runner that hosts it on 127.0.0.1. It
implements the subset of the JSON API that :mod:`aiofolio.backends.gcs` (and gcsfs) speak,
following the objects-resource, media-download and upload documentation, including the parts the
gcp-storage-emulator ignores:

- ``GET /storage/v1/b/{bucket}/o/{object}``: the object resource (``generation``, ``size`` and
  ``metageneration`` as strings, base64 ``md5Hash`` and big-endian ``crc32c``, the GCS ``etag``
  (a base64 protobuf of generation and metageneration), RFC 3339 times, ``contentType``,
  ``cacheControl``). ``alt=media`` on this path downloads instead.
- ``GET /download/storage/v1/b/{bucket}/o/{object}?alt=media``: the bytes, with
  ``x-goog-generation``, ``x-goog-metageneration``, ``x-goog-hash: crc32c=...,md5=...``,
  ``x-goog-stored-content-length``, ``ETag`` and ``Last-Modified``; single ranges ``a-b``,
  ``a-`` and suffix ``-n`` (206 + ``Content-Range``; 416 when unsatisfiable).
- Preconditions on every object request: ``ifGenerationMatch`` (``0`` = must not exist),
  ``ifGenerationNotMatch``, ``ifMetagenerationMatch``, ``ifMetagenerationNotMatch``. A failed
  match is 412; a failed not-match is 304 on reads and 412 on writes and deletes.
  ``generation=N`` addresses one generation; replaced generations are kept while the bucket has
  versioning (the default here), so pinned reads of old generations work.
- Uploads on ``/upload/storage/v1/b/{bucket}/o``: ``uploadType=media``, ``multipart``
  (``multipart/related``: JSON metadata, then the media; ``md5Hash`` and ``crc32c`` are checked,
  400 on mismatch) and ``resumable`` (POST opens a session and answers with its URI in
  ``Location``; PUTs with ``Content-Range: bytes a-b/total`` answer 308 with ``Range`` until the
  last byte; ``bytes */total`` queries the status; a non-final chunk keeps only whole 256 KiB
  blocks, as GCS may; preconditions are evaluated when the upload completes; DELETE cancels
  with 499).
- ``GET /storage/v1/b/{bucket}/o`` (``prefix``, ``delimiter``, ``startOffset``, ``endOffset``,
  ``maxResults``, ``pageToken``; pages are capped by :attr:`FakeGCS.page_size`),
  ``DELETE /storage/v1/b/{bucket}/o/{object}`` (204; 404 if missing), and buckets
  (``POST /storage/v1/b?project=``, ``GET`` and ``DELETE /storage/v1/b/{bucket}``).
- Errors are GCS JSON error bodies: ``{"error": {"code", "message", "errors": [...]}}``.

Object names may be percent-encoded in paths (``a%2Fb``) or not (``a/b``). Every request is
counted per ``(method, kind)`` in :class:`FakeGCSStats`, and :meth:`FakeGCS.fail_next` injects
error responses for the next matching requests. :class:`FakeGCS` runs the server on a
background thread with its own event loop; its Python methods are thread-safe.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import gzip
import hashlib
import importlib
import json
import socket
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import formatdate
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = [
    "FakeGCS",
    "FakeGCSStats",
    "FakeObject",
    "FakeRequest",
    "crc32c",
    "gcs_etag",
]

LOOPBACK = "127.0.0.1"
MAX_PAGE_SIZE = 1000
"""The most items GCS returns in one page of a listing."""
UPLOAD_GRANULARITY = 256 * 1024
"""Non-final chunks of a resumable upload are kept in whole multiples of this."""

# Request kinds, as counted in FakeGCSStats.
KIND_BUCKET = "bucket"
KIND_METADATA = "metadata"
KIND_MEDIA = "media"
KIND_LIST = "list"
KIND_DELETE = "delete"
KIND_UPLOAD_MEDIA = "upload-media"
KIND_UPLOAD_MULTIPART = "upload-multipart"
KIND_UPLOAD_RESUMABLE = "upload-resumable"
KIND_UPLOAD_CHUNK = "upload-chunk"
KIND_UNKNOWN = "unknown"


# -- checksums and encodings -------------------------------------------------------------------


def _crc32c_table() -> tuple[int, ...]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C_TABLE = _crc32c_table()


def _crc32c_python(data: bytes, crc: int = 0) -> int:
    table = _CRC32C_TABLE
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _crc32c_accelerated() -> Callable[[bytes], int] | None:
    """``google_crc32c.value`` when its C extension is installed (it is not a dependency)."""
    try:
        module = importlib.import_module("google_crc32c")
    except ImportError:
        return None
    if getattr(module, "implementation", None) != "c":
        return None
    fn: Callable[[bytes], int] = module.value
    return fn


_CRC32C_FAST = _crc32c_accelerated()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli) of ``data``, as GCS computes it."""
    if _CRC32C_FAST is not None:
        return _CRC32C_FAST(bytes(data))
    return _crc32c_python(data)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def gcs_etag(generation: int, metageneration: int) -> str:
    """The JSON API etag: base64 of the protobuf ``{1: generation, 2: metageneration}``."""
    return _b64(b"\x08" + _varint(generation) + b"\x10" + _varint(metageneration))


def _rfc3339(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# -- objects -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeObject:
    """One generation of one object, as the fake stores it.

    Attributes:
        bucket: the bucket name.
        name: the object name.
        data: the bytes.
        generation: the generation (microseconds since the epoch, strictly increasing).
        metageneration: always 1 (the fake has no metadata patch).
        content_type: the stored ``contentType``.
        cache_control: the stored ``cacheControl``, if any.
        metadata: custom metadata (``metadata`` in the resource), if any.
        md5_b64: base64 MD5 of ``data`` (``md5Hash``).
        crc32c_b64: base64 big-endian CRC32C of ``data`` (``crc32c``).
        created: seconds since the epoch when this generation was written.
        deleted: when this generation stopped being live (noncurrent versions only).
    """

    bucket: str
    name: str
    data: bytes
    generation: int
    metageneration: int
    content_type: str
    cache_control: str | None
    metadata: Mapping[str, str] | None
    md5_b64: str
    crc32c_b64: str
    created: float
    deleted: float | None = None

    @property
    def size(self) -> int:
        """Length in bytes."""
        return len(self.data)

    @property
    def etag(self) -> str:
        """The JSON API etag (unquoted)."""
        return gcs_etag(self.generation, self.metageneration)

    @property
    def md5_hex(self) -> str:
        """Hex MD5 of the data."""
        return base64.b64decode(self.md5_b64).hex()

    def resource(self, base_url: str) -> dict[str, Any]:
        """The JSON API object resource."""
        path = f"b/{_q(self.bucket)}/o/{_q(self.name)}"
        res: dict[str, Any] = {
            "kind": "storage#object",
            "id": f"{self.bucket}/{self.name}/{self.generation}",
            "selfLink": f"{base_url}/storage/v1/{path}",
            "mediaLink": (
                f"{base_url}/download/storage/v1/{path}?generation={self.generation}&alt=media"
            ),
            "name": self.name,
            "bucket": self.bucket,
            "generation": str(self.generation),
            "metageneration": str(self.metageneration),
            "contentType": self.content_type,
            "storageClass": "STANDARD",
            "size": str(self.size),
            "md5Hash": self.md5_b64,
            "crc32c": self.crc32c_b64,
            "etag": self.etag,
            "timeCreated": _rfc3339(self.created),
            "updated": _rfc3339(self.created),
            "timeStorageClassUpdated": _rfc3339(self.created),
        }
        if self.cache_control is not None:
            res["cacheControl"] = self.cache_control
        if self.metadata:
            res["metadata"] = dict(self.metadata)
        if self.deleted is not None:
            res["timeDeleted"] = _rfc3339(self.deleted)
        return res


@dataclass
class _Bucket:
    name: str
    versioning: bool
    created: float
    live: dict[str, FakeObject] = field(default_factory=dict)
    history: dict[str, list[FakeObject]] = field(default_factory=dict)

    def resource(self, base_url: str) -> dict[str, Any]:
        return {
            "kind": "storage#bucket",
            "selfLink": f"{base_url}/storage/v1/b/{_q(self.name)}",
            "id": self.name,
            "name": self.name,
            "projectNumber": "0",
            "metageneration": "1",
            "location": "US",
            "storageClass": "STANDARD",
            "etag": "CAE=",
            "timeCreated": _rfc3339(self.created),
            "updated": _rfc3339(self.created),
            "versioning": {"enabled": self.versioning},
        }


@dataclass
class _Upload:
    """One resumable upload session."""

    upload_id: str
    bucket: str
    name: str
    meta: dict[str, Any]
    content_type: str
    conditions: dict[str, str]
    declared_size: int | None
    buffer: bytearray = field(default_factory=bytearray)
    result: FakeObject | None = None


# -- stats and faults ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeRequest:
    """One request as the fake saw it.

    Attributes:
        method: the HTTP method.
        kind: what it addressed (``"metadata"``, ``"media"``, ``"list"``, ``"delete"``,
            ``"upload-media"``, ``"upload-multipart"``, ``"upload-resumable"``,
            ``"upload-chunk"``, ``"bucket"`` or ``"unknown"``).
        bucket: the bucket, if any.
        name: the object name, if any.
        query: the decoded query parameters.
        range: the ``Range`` (or, for upload chunks, ``Content-Range``) header, if any.
        status: the response status.
        injected: True when the response was an injected failure.
        accept_encoding: the request's ``Accept-Encoding`` header, if any.
    """

    method: str
    kind: str
    bucket: str | None
    name: str | None
    query: Mapping[str, str]
    range: str | None
    status: int
    injected: bool
    accept_encoding: str | None = None


class FakeGCSStats:
    """Thread-safe counts of the requests the fake served."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[FakeRequest] = []

    def record(self, request: FakeRequest) -> None:
        """Add one request."""
        with self._lock:
            self._requests.append(request)

    def reset(self) -> None:
        """Forget every request."""
        with self._lock:
            self._requests.clear()

    @property
    def requests(self) -> list[FakeRequest]:
        """A snapshot of every request, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def counts(self) -> Counter[tuple[str, str]]:
        """Requests per ``(method, kind)``."""
        return Counter((r.method, r.kind) for r in self.requests)

    @property
    def total(self) -> int:
        """How many requests in all."""
        with self._lock:
            return len(self._requests)

    def count(
        self,
        method: str | None = None,
        kind: str | None = None,
        *,
        name: str | None = None,
        status: int | None = None,
    ) -> int:
        """Requests matching every argument given (``None`` matches anything)."""
        return sum(
            1
            for r in self.requests
            if (method is None or r.method == method.upper())
            and (kind is None or r.kind == kind)
            and (name is None or r.name == name)
            and (status is None or r.status == status)
        )


@dataclass
class _Fault:
    remaining: int
    status: int
    method: str | None
    kind: str | None
    retry_after: float | None
    message: str


# -- errors and request parsing ------------------------------------------------------------------

_REASONS = {
    400: "invalid",
    401: "required",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    410: "gone",
    412: "conditionNotMet",
    416: "requestedRangeNotSatisfiable",
    429: "rateLimitExceeded",
    499: "clientClosedRequest",
    500: "backendError",
    502: "backendError",
    503: "backendError",
    504: "backendError",
}


class _GCSError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "unknown")
        self.headers = dict(headers or {})


class _NotModified(Exception):
    """A failed not-match precondition on a read: 304 (with the object's validators)."""

    def __init__(self, obj: FakeObject) -> None:
        super().__init__(obj.name)
        self.obj = obj


def _error_response(err: _GCSError) -> web.Response:
    body = {
        "error": {
            "code": err.code,
            "message": err.message,
            "errors": [{"message": err.message, "domain": "global", "reason": err.reason}],
        }
    }
    return web.Response(
        status=err.code,
        body=json.dumps(body).encode(),
        content_type="application/json",
        charset="UTF-8",
        headers=err.headers,
    )


def _json_response(payload: Mapping[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload).encode(),
        content_type="application/json",
        charset="UTF-8",
    )


def _int_param(query: Mapping[str, str], key: str) -> int | None:
    raw = query.get(key)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise _GCSError(400, f"Invalid value for {key}: {raw!r}") from None


_PRECONDITION_FAILED = "At least one of the pre-conditions you specified did not hold."


def _check_conditions(query: Mapping[str, str], obj: FakeObject | None, *, write: bool) -> None:
    """Evaluate the JSON API preconditions against ``obj`` (None: the object does not exist)."""
    gen_match = _int_param(query, "ifGenerationMatch")
    gen_not = _int_param(query, "ifGenerationNotMatch")
    meta_match = _int_param(query, "ifMetagenerationMatch")
    meta_not = _int_param(query, "ifMetagenerationNotMatch")
    generation = obj.generation if obj is not None else 0
    if gen_match is not None and gen_match != generation:
        raise _GCSError(412, _PRECONDITION_FAILED)
    if meta_match is not None and (obj is None or obj.metageneration != meta_match):
        raise _GCSError(412, _PRECONDITION_FAILED)
    not_match = (gen_not is not None and obj is not None and gen_not == generation) or (
        meta_not is not None and obj is not None and meta_not == obj.metageneration
    )
    if not_match and obj is not None:
        if write:
            raise _GCSError(412, _PRECONDITION_FAILED)
        raise _NotModified(obj)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One byte range as ``(start, end_exclusive)``; None serves the whole object (200).

    Malformed or multiple ranges are ignored, as GCS does; a start at or past the end, or
    ``bytes=-0``, is unsatisfiable (416).
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or not first) or not (last.isdigit() or not last):
        return None
    if not first:
        if not last:
            return None
        n = int(last)
        if n == 0 or size == 0:
            raise _GCSError(416, "The requested range cannot be satisfied.")
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise _GCSError(
            416,
            "The requested range cannot be satisfied.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, size if not last else min(int(last) + 1, size)


def _parse_multipart(content_type: str, body: bytes) -> list[tuple[dict[str, str], bytes]]:
    """Split a ``multipart/related`` body into (headers, content) parts."""
    mime, _, params = content_type.partition(";")
    if mime.strip().lower() not in ("multipart/related", "multipart/mixed"):
        raise _GCSError(400, f"Invalid Content-Type for a multipart upload: {content_type!r}")
    boundary = ""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise _GCSError(400, "Missing boundary in the multipart Content-Type.")
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    chunks = (b"\r\n" + body).split(delimiter)
    parts: list[tuple[dict[str, str], bytes]] = []
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        if not chunk.startswith(b"\r\n"):
            raise _GCSError(400, "Malformed multipart body.")
        head, sep, content = chunk[2:].partition(b"\r\n\r\n")
        if not sep:
            if head.strip():
                raise _GCSError(400, "Malformed multipart part headers.")
            head, content = b"", chunk[2:].removeprefix(b"\r\n")
        headers: dict[str, str] = {}
        for line in head.decode("latin-1").split("\r\n"):
            if line.strip():
                key, _, value = line.partition(":")
                headers[key.strip().lower()] = value.strip()
        parts.append((headers, content))
    if not closed:
        raise _GCSError(400, "Multipart body is missing its closing delimiter.")
    return parts


def _split_path(raw_path: str) -> list[str]:
    path = raw_path.split("?", 1)[0]
    return path.strip("/").split("/") if path.strip("/") else []


@dataclass
class _Ctx:
    """Per-request state: the base URL the client used, and the object name once known."""

    base: str
    name: str | None = None


@dataclass(frozen=True)
class _Route:
    kind: str
    bucket: str | None = None
    name: str | None = None


def _route(method: str, raw_path: str, query: Mapping[str, str]) -> _Route:
    segs = _split_path(raw_path)
    unq = urllib.parse.unquote
    if segs[:3] == ["upload", "storage", "v1"] and len(segs) == 6 and segs[3] == "b":
        bucket = unq(segs[4])
        if segs[5] != "o":
            return _Route(KIND_UNKNOWN, bucket)
        if "upload_id" in query:
            return _Route(KIND_UPLOAD_CHUNK, bucket)
        upload_type = query.get("uploadType", "")
        kind = {
            "media": KIND_UPLOAD_MEDIA,
            "multipart": KIND_UPLOAD_MULTIPART,
            "resumable": KIND_UPLOAD_RESUMABLE,
        }.get(upload_type, KIND_UNKNOWN)
        return _Route(kind, bucket)
    download = segs[:1] == ["download"]
    if download:
        segs = segs[1:]
    if segs[:2] != ["storage", "v1"] or len(segs) < 3 or segs[2] != "b":
        return _Route(KIND_UNKNOWN)
    if len(segs) == 3:
        return _Route(KIND_BUCKET)
    bucket = unq(segs[3])
    if len(segs) == 4:
        return _Route(KIND_BUCKET, bucket)
    if segs[4] != "o":
        return _Route(KIND_UNKNOWN, bucket)
    if len(segs) == 5:
        return _Route(KIND_LIST if not download else KIND_UNKNOWN, bucket)
    name = unq("/".join(segs[5:]))
    if method == "DELETE":
        return _Route(KIND_DELETE, bucket, name)
    media = query.get("alt") == "media"
    return _Route(KIND_MEDIA if media else KIND_METADATA, bucket, name)


# -- the fake -----------------------------------------------------------------------------------


class FakeGCS:
    """An in-memory GCS JSON API on 127.0.0.1, served from a background thread.

    Example::

        with FakeGCS() as gcs:
            gcs.create_bucket("b")
            backend = GCSBackend(gcs.storage_options())

    Args:
        versioning: whether new buckets keep replaced generations (readable with
            ``generation=N``) unless created with an explicit setting.
        page_size: the most items per listing page (at most 1000; a smaller ``maxResults``
            in the request wins). Also an attribute, as is ``drop_headers`` (response headers
            to leave out, e.g. ``{"x-goog-generation"}`` to mimic the emulator).
        start_timeout: seconds to wait for the server to start or stop.
    """

    def __init__(
        self,
        *,
        versioning: bool = True,
        page_size: int = MAX_PAGE_SIZE,
        start_timeout: float = 10.0,
    ) -> None:
        self.versioning = versioning
        self.page_size = page_size
        self.drop_headers: set[str] = set()
        """Response headers (any case) to leave out, to mimic servers that do not send them."""
        self.force_encoding: str | None = None
        """``"gzip"``: gzip every successful response body (JSON and media, ranges too) and say
        so in ``Content-Encoding``, whatever the client accepts (a misbehaving server)."""
        self.stats = FakeGCSStats()
        self._timeout = start_timeout
        self._lock = threading.RLock()
        self._buckets: dict[str, _Bucket] = {}
        self._uploads: dict[str, _Upload] = {}
        self._faults: list[_Fault] = []
        self._last_generation = 0
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __repr__(self) -> str:
        where = self.endpoint_url if self._port is not None else "not running"
        return f"FakeGCS({where})"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:PORT`` (only while running)."""
        if self._port is None:
            raise RuntimeError("FakeGCS is not running")
        return f"http://{LOOPBACK}:{self._port}"

    def storage_options(self) -> dict[str, Any]:
        """Options for gcsfs / :class:`~aiofolio.backends.gcs.GCSBackend`."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "project": "test"}

    def make_app(self) -> web.Application:
        """The aiohttp application (it shares this object's state)."""
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def start(self) -> FakeGCS:
        """Bind a free port on 127.0.0.1 and serve from a new thread; returns ``self``."""
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, 0))
        self._port = int(sock.getsockname()[1])
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="aiofolio-FakeGCS", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._timeout) or self._error is not None:
            self.stop()
            raise RuntimeError("FakeGCS did not start") from self._error
        return self

    def _run(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=1.0)
                loop.run_until_complete(runner.setup())
                loop.run_until_complete(web.SockSite(runner, sock).start())
            except BaseException as exc:
                self._error = exc
                sock.close()
                return
            self._runner = runner
            self._loop = loop
            self._ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
        finally:
            self._loop = None
            self._runner = None
            self._ready.set()
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def stop(self) -> None:
        """Stop serving and join the thread (bounded). Stored objects are kept."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(self._timeout)
        self._thread = None
        self._port = None

    def __enter__(self) -> FakeGCS:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- state, from Python -------------------------------------------------------------------

    def create_bucket(self, name: str, *, versioning: bool | None = None) -> None:
        """Create a bucket (a no-op if it exists)."""
        with self._lock:
            if name not in self._buckets:
                keep = self.versioning if versioning is None else versioning
                self._buckets[name] = _Bucket(name=name, versioning=keep, created=time.time())

    def buckets(self) -> list[str]:
        """The bucket names, sorted."""
        with self._lock:
            return sorted(self._buckets)

    def put_object(
        self,
        bucket: str,
        name: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> FakeObject:
        """Write a new generation directly (creating the bucket if needed); no request counted."""
        self.create_bucket(bucket)
        with self._lock:
            return self._write(bucket, name, bytes(data), content_type, cache_control, metadata)

    def get_object(self, bucket: str, name: str, generation: int | None = None) -> FakeObject:
        """The live object (or one generation of it); raises KeyError if there is none."""
        with self._lock:
            obj = self._lookup(bucket, name, generation)
            if obj is None:
                raise KeyError(f"{bucket}/{name}")
            return obj

    def generations(self, bucket: str, name: str) -> list[int]:
        """Every stored generation of an object (noncurrent ones first, then the live one)."""
        with self._lock:
            b = self._buckets.get(bucket)
            if b is None:
                return []
            gens = [o.generation for o in b.history.get(name, [])]
            if name in b.live:
                gens.append(b.live[name].generation)
            return gens

    def object_names(self, bucket: str) -> list[str]:
        """The names of the live objects in a bucket, sorted."""
        with self._lock:
            b = self._buckets.get(bucket)
            return sorted(b.live) if b is not None else []

    def delete_object(self, bucket: str, name: str) -> bool:
        """Delete the live object; returns whether there was one. No request is counted."""
        with self._lock:
            b = self._buckets.get(bucket)
            if b is None or name not in b.live:
                return False
            self._retire(b, name)
            return True

    def open_uploads(self, bucket: str | None = None) -> int:
        """How many resumable sessions (into ``bucket``, or any) are open: not completed,
        failed or cancelled."""
        with self._lock:
            return sum(
                1
                for u in self._uploads.values()
                if u.result is None and (bucket is None or u.bucket == bucket)
            )

    def fail_next(
        self,
        count: int = 1,
        status: int = 503,
        *,
        method: str | None = None,
        kind: str | None = None,
        retry_after: float | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` and a GCS error body.

        ``method`` and ``kind`` (``None``: any) select the requests; ``retry_after`` adds a
        ``Retry-After`` header. Faults queue up in the order they were added.
        """
        with self._lock:
            self._faults.append(
                _Fault(
                    remaining=count,
                    status=status,
                    method=method.upper() if method else None,
                    kind=kind,
                    retry_after=retry_after,
                    message=message or f"Injected failure (HTTP {status}).",
                )
            )

    def clear_faults(self) -> None:
        """Drop every pending injected failure."""
        with self._lock:
            self._faults.clear()

    def reset(self) -> None:
        """Forget every bucket, object, upload session, fault and request count."""
        with self._lock:
            self._buckets.clear()
            self._uploads.clear()
            self._faults.clear()
        self.stats.reset()

    # -- internals (call with the lock held) ---------------------------------------------------

    def _next_generation(self) -> int:
        gen = max(time.time_ns() // 1000, self._last_generation + 1)
        self._last_generation = gen
        return gen

    def _bucket(self, name: str | None) -> _Bucket:
        b = self._buckets.get(name or "")
        if b is None:
            raise _GCSError(404, "The specified bucket does not exist.")
        return b

    def _lookup(self, bucket: str, name: str, generation: int | None) -> FakeObject | None:
        b = self._buckets.get(bucket)
        if b is None:
            return None
        live = b.live.get(name)
        if generation is None or (live is not None and live.generation == generation):
            return live
        for old in b.history.get(name, []):
            if old.generation == generation:
                return old
        return None

    def _retire(self, b: _Bucket, name: str) -> None:
        old = b.live.pop(name)
        if b.versioning:
            b.history.setdefault(name, []).append(replace(old, deleted=time.time()))

    def _write(
        self,
        bucket: str,
        name: str,
        data: bytes,
        content_type: str,
        cache_control: str | None,
        metadata: Mapping[str, str] | None,
    ) -> FakeObject:
        if not name:
            raise _GCSError(400, "Required object name.", reason="required")
        b = self._bucket(bucket)
        obj = FakeObject(
            bucket=bucket,
            name=name,
            data=data,
            generation=self._next_generation(),
            metageneration=1,
            content_type=content_type,
            cache_control=cache_control,
            metadata=dict(metadata) if metadata else None,
            md5_b64=_b64(hashlib.md5(data).digest()),
            crc32c_b64=_b64(crc32c(data).to_bytes(4, "big")),
            created=time.time(),
        )
        if name in b.live:
            self._retire(b, name)
        b.live[name] = obj
        return obj

    def _take_fault(self, method: str, kind: str) -> _Fault | None:
        for fault in self._faults:
            if (fault.method is None or fault.method == method) and (
                fault.kind is None or fault.kind == kind
            ):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- HTTP ---------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        query = {k: v for k, v in request.query.items()}
        route = _route(request.method, request.raw_path, query)
        body = await request.read()
        injected = False
        ctx = _Ctx(base=f"{request.scheme}://{request.host}", name=route.name)
        with self._lock:
            fault = self._take_fault(request.method, route.kind)
            if fault is not None:
                injected = True
                headers = {}
                if fault.retry_after is not None:
                    headers["Retry-After"] = f"{fault.retry_after:g}"
                resp: web.StreamResponse = _error_response(
                    _GCSError(fault.status, fault.message, headers=headers)
                )
            else:
                try:
                    resp = self._dispatch(request, route, query, body, ctx)
                except _GCSError as err:
                    resp = _error_response(err)
                except _NotModified as nm:
                    resp = web.Response(
                        status=304,
                        headers={
                            "ETag": nm.obj.etag,
                            "x-goog-generation": str(nm.obj.generation),
                            "x-goog-metageneration": str(nm.obj.metageneration),
                        },
                    )
        for dropped in self.drop_headers:
            resp.headers.popall(dropped, None)
        encoding = self.force_encoding
        if (
            encoding is not None
            and isinstance(resp, web.Response)
            and isinstance(resp.body, bytes)
            and resp.body
            and 200 <= resp.status < 300
        ):
            resp.body = gzip.compress(resp.body, mtime=0)
            resp.headers["Content-Encoding"] = encoding
        header = "Content-Range" if route.kind == KIND_UPLOAD_CHUNK else "Range"
        self.stats.record(
            FakeRequest(
                method=request.method,
                kind=route.kind,
                bucket=route.bucket,
                name=ctx.name,
                query=query,
                range=request.headers.get(header),
                status=resp.status,
                injected=injected,
                accept_encoding=request.headers.get("Accept-Encoding"),
            )
        )
        return resp

    def _dispatch(
        self,
        request: web.Request,
        route: _Route,
        query: Mapping[str, str],
        body: bytes,
        ctx: _Ctx,
    ) -> web.StreamResponse:
        method, kind = request.method, route.kind
        if kind == KIND_BUCKET:
            return self._do_bucket(method, route.bucket, query, body, ctx)
        if kind == KIND_LIST and method == "GET":
            return self._do_list(self._bucket(route.bucket), query, ctx)
        if kind == KIND_DELETE:
            return self._do_delete(route, query)
        if kind in (KIND_METADATA, KIND_MEDIA) and method == "GET":
            obj = self._read_target(route, query)
            if kind == KIND_METADATA:
                return _json_response(obj.resource(ctx.base))
            return self._do_media(obj, request.headers.get("Range"))
        if kind in (KIND_UPLOAD_MEDIA, KIND_UPLOAD_MULTIPART) and method == "POST":
            return self._do_simple_upload(request, route, query, body, ctx)
        if kind == KIND_UPLOAD_RESUMABLE and method == "POST":
            return self._do_resumable_start(request, route, query, body, ctx)
        if kind == KIND_UPLOAD_CHUNK and method in ("PUT", "POST"):
            return self._do_resumable_chunk(request, query, body, ctx)
        if kind == KIND_UPLOAD_CHUNK and method == "DELETE":
            upload = self._uploads.pop(query["upload_id"], None)
            ctx.name = upload.name if upload is not None else None
            if upload is None:
                raise _GCSError(404, "No such upload session.")
            raise _GCSError(499, "Upload cancelled.")
        if kind in (KIND_UPLOAD_MEDIA, KIND_UPLOAD_MULTIPART, KIND_UPLOAD_RESUMABLE):
            raise _GCSError(405, f"Method {method} is not allowed here.")
        if request.raw_path.split("?", 1)[0].startswith("/upload/"):
            raise _GCSError(400, f"Invalid uploadType: {query.get('uploadType')!r}")
        if kind == KIND_UNKNOWN:
            raise _GCSError(404, f"Not Found: {request.method} {request.path}")
        raise _GCSError(405, f"Method {method} is not allowed here.")

    # buckets

    def _do_bucket(
        self, method: str, bucket: str | None, query: Mapping[str, str], body: bytes, ctx: _Ctx
    ) -> web.StreamResponse:
        base = ctx.base
        if bucket is None:
            if method == "GET":
                items = [self._buckets[n].resource(base) for n in sorted(self._buckets)]
                payload: dict[str, Any] = {"kind": "storage#buckets"}
                if items:
                    payload["items"] = items
                return _json_response(payload)
            if method != "POST":
                raise _GCSError(405, f"Method {method} is not allowed here.")
            if not query.get("project"):
                raise _GCSError(400, "Required parameter: project", reason="required")
            meta = _load_json(body)
            name = meta.get("name")
            if not isinstance(name, str) or not name:
                raise _GCSError(400, "Required bucket name.", reason="required")
            if name in self._buckets:
                raise _GCSError(
                    409,
                    "Your previous request to create the named bucket succeeded and you "
                    "already own it.",
                )
            enabled = (meta.get("versioning") or {}).get("enabled")
            self.create_bucket(name, versioning=None if enabled is None else bool(enabled))
            return _json_response(self._buckets[name].resource(base))
        b = self._bucket(bucket)
        if method == "GET":
            return _json_response(b.resource(base))
        if method == "DELETE":
            if b.live:
                raise _GCSError(409, "The bucket you tried to delete is not empty.")
            del self._buckets[b.name]
            return web.Response(status=204)
        raise _GCSError(405, f"Method {method} is not allowed here.")

    # reads

    def _read_target(self, route: _Route, query: Mapping[str, str]) -> FakeObject:
        self._bucket(route.bucket)
        generation = _int_param(query, "generation")
        obj = self._lookup(route.bucket or "", route.name or "", generation)
        if obj is None:
            raise _GCSError(404, f"No such object: {route.bucket}/{route.name}")
        _check_conditions(query, obj, write=False)
        return obj

    def _do_media(self, obj: FakeObject, range_header: str | None) -> web.StreamResponse:
        span = _parse_range(range_header, obj.size)
        headers = {
            "ETag": obj.etag,
            "Last-Modified": formatdate(obj.created, usegmt=True),
            "Accept-Ranges": "bytes",
            "x-goog-generation": str(obj.generation),
            "x-goog-metageneration": str(obj.metageneration),
            "x-goog-hash": f"crc32c={obj.crc32c_b64},md5={obj.md5_b64}",
            "x-goog-stored-content-length": str(obj.size),
            "x-goog-stored-content-encoding": "identity",
            "x-goog-storage-class": "STANDARD",
            "Content-Type": obj.content_type,
        }
        if obj.cache_control is not None:
            headers["Cache-Control"] = obj.cache_control
        if span is None:
            return web.Response(status=200, body=obj.data, headers=headers)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{obj.size}"
        return web.Response(status=206, body=obj.data[start:end], headers=headers)

    def _do_list(self, b: _Bucket, query: Mapping[str, str], ctx: _Ctx) -> web.StreamResponse:
        prefix = query.get("prefix", "")
        delimiter = query.get("delimiter", "")
        start_offset = query.get("startOffset", "")
        end_offset = query.get("endOffset", "")
        limit = min(self.page_size, MAX_PAGE_SIZE)
        requested = _int_param(query, "maxResults")
        if requested is not None:
            if requested < 0:
                raise _GCSError(400, f"Invalid value for maxResults: {requested}")
            if requested > 0:
                limit = min(limit, requested)
        limit = max(limit, 1)
        after = ""
        if query.get("pageToken"):
            try:
                after = base64.urlsafe_b64decode(query["pageToken"].encode()).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise _GCSError(400, "Invalid pageToken.") from None
        entries: dict[str, FakeObject | None] = {}
        for name in sorted(b.live):
            if not name.startswith(prefix) or name < start_offset:
                continue
            if end_offset and name >= end_offset:
                continue
            if delimiter:
                cut = name.find(delimiter, len(prefix))
                if cut >= 0:
                    entries.setdefault(name[: cut + len(delimiter)], None)
                    continue
            entries[name] = b.live[name]
        keys = [k for k in sorted(entries) if k > after]
        page, rest = keys[:limit], keys[limit:]
        payload: dict[str, Any] = {"kind": "storage#objects"}
        base = ctx.base
        items = [obj.resource(base) for k in page if (obj := entries[k]) is not None]
        prefixes = [k for k in page if entries[k] is None]
        if items:
            payload["items"] = items
        if prefixes:
            payload["prefixes"] = prefixes
        if rest:
            payload["nextPageToken"] = base64.urlsafe_b64encode(page[-1].encode()).decode()
        return _json_response(payload)

    # deletes

    def _do_delete(self, route: _Route, query: Mapping[str, str]) -> web.StreamResponse:
        b = self._bucket(route.bucket)
        name = route.name or ""
        generation = _int_param(query, "generation")
        obj = self._lookup(b.name, name, generation)
        if obj is None:
            raise _GCSError(404, f"No such object: {b.name}/{name}")
        _check_conditions(query, obj, write=True)
        live = b.live.get(name)
        if live is not None and live.generation == obj.generation:
            self._retire(b, name)
        else:
            b.history[name] = [o for o in b.history[name] if o.generation != obj.generation]
        return web.Response(status=204)

    # uploads

    def _finish(
        self,
        bucket: str,
        name: str,
        data: bytes,
        meta: Mapping[str, Any],
        content_type: str,
        conditions: Mapping[str, str],
    ) -> FakeObject:
        """Check the name, preconditions and checksums, then write a new generation."""
        _check_name(name)
        self._bucket(bucket)
        _check_conditions(conditions, self._lookup(bucket, name, None), write=True)
        md5 = _b64(hashlib.md5(data).digest())
        given_md5 = meta.get("md5Hash")
        if given_md5 is not None and given_md5 != md5:
            raise _GCSError(
                400, f'Provided MD5 hash "{given_md5}" doesn\'t match calculated MD5 hash "{md5}".'
            )
        given_crc = meta.get("crc32c")
        if given_crc is not None:
            crc = _b64(crc32c(data).to_bytes(4, "big"))
            if given_crc != crc:
                raise _GCSError(
                    400, f'Provided CRC32C "{given_crc}" doesn\'t match calculated CRC32C "{crc}".'
                )
        custom = meta.get("metadata")
        return self._write(
            bucket,
            name,
            data,
            str(meta.get("contentType") or content_type or "application/octet-stream"),
            meta.get("cacheControl"),
            {str(k): str(v) for k, v in custom.items()} if isinstance(custom, dict) else None,
        )

    def _do_simple_upload(
        self,
        request: web.Request,
        route: _Route,
        query: Mapping[str, str],
        body: bytes,
        ctx: _Ctx,
    ) -> web.StreamResponse:
        self._bucket(route.bucket)
        if route.kind == KIND_UPLOAD_MEDIA:
            meta: dict[str, Any] = {}
            data = body
            ctype = request.headers.get("Content-Type", "application/octet-stream")
        else:
            parts = _parse_multipart(request.headers.get("Content-Type", ""), body)
            if len(parts) != 2:
                raise _GCSError(400, f"A multipart upload needs 2 parts, got {len(parts)}.")
            (_, meta_raw), (media_headers, data) = parts
            meta = _load_json(meta_raw)
            ctype = media_headers.get("content-type", "application/octet-stream")
            if media_headers.get("content-transfer-encoding", "").lower() == "base64":
                try:
                    data = base64.b64decode(data, validate=False)
                except binascii.Error:
                    raise _GCSError(400, "Invalid base64 media part.") from None
        ctx.name = str(query.get("name") or meta.get("name") or "")
        obj = self._finish(route.bucket or "", ctx.name, data, meta, ctype, query)
        return _json_response(obj.resource(ctx.base))

    def _do_resumable_start(
        self,
        request: web.Request,
        route: _Route,
        query: Mapping[str, str],
        body: bytes,
        ctx: _Ctx,
    ) -> web.StreamResponse:
        bucket = self._bucket(route.bucket).name
        meta = _load_json(body) if body.strip() else {}
        name = ctx.name = str(query.get("name") or meta.get("name") or "")
        if not name:
            raise _GCSError(400, "Required object name.", reason="required")
        declared = request.headers.get("X-Upload-Content-Length")
        try:
            declared_size = int(declared) if declared is not None else None
        except ValueError:
            raise _GCSError(400, f"Invalid X-Upload-Content-Length: {declared!r}") from None
        upload_id = uuid.uuid4().hex
        conditions = {k: v for k, v in query.items() if k.startswith("if")}
        for key in conditions:
            _int_param(conditions, key)  # malformed values fail now, mismatches at the end
        self._uploads[upload_id] = _Upload(
            upload_id=upload_id,
            bucket=bucket,
            name=name,
            meta=meta,
            content_type=request.headers.get("X-Upload-Content-Type", "application/octet-stream"),
            conditions=conditions,
            declared_size=declared_size,
        )
        location = (
            f"{ctx.base}/upload/storage/v1/b/{_q(bucket)}/o"
            f"?uploadType=resumable&name={_q(name)}&upload_id={upload_id}"
        )
        return web.Response(
            status=200, headers={"Location": location, "X-GUploader-UploadID": upload_id}
        )

    def _do_resumable_chunk(
        self, request: web.Request, query: Mapping[str, str], body: bytes, ctx: _Ctx
    ) -> web.StreamResponse:
        upload = self._uploads.get(query["upload_id"])
        if upload is None:
            raise _GCSError(404, "No such upload session.")
        ctx.name = upload.name
        if upload.result is not None:
            return _json_response(upload.result.resource(ctx.base))
        spec = request.headers.get("Content-Range")
        first: int | None
        last: int | None
        total: int | None
        if spec is None:
            first, last, total = (0, len(body) - 1, len(body)) if body else (None, None, 0)
        else:
            first, last, total = _parse_content_range(spec)
        if total is not None and upload.declared_size is not None and total != upload.declared_size:
            raise _GCSError(
                400,
                f"Upload size {total} does not match X-Upload-Content-Length "
                f"{upload.declared_size}.",
            )
        have = len(upload.buffer)
        if first is not None and last is not None:
            if last - first + 1 != len(body):
                raise _GCSError(
                    400, f"Content-Range {spec!r} does not match the body length {len(body)}."
                )
            if first > have:
                raise _GCSError(
                    400,
                    f"Invalid request. According to the Content-Range header, the upload offset "
                    f"is {first} byte(s), which exceeds already uploaded size of {have} byte(s).",
                )
            upload.buffer += body[have - first :]
        elif body:
            raise _GCSError(400, "A status query (bytes */N) must have an empty body.")
        size = len(upload.buffer)
        if total is not None and size > total:
            raise _GCSError(400, f"Received {size} bytes, more than the declared {total}.")
        if total is not None and size == total:
            try:
                upload.result = self._finish(
                    upload.bucket,
                    upload.name,
                    bytes(upload.buffer),
                    upload.meta,
                    upload.content_type,
                    upload.conditions,
                )
            except _GCSError:
                del self._uploads[upload.upload_id]
                raise
            upload.buffer = bytearray()
            return _json_response(upload.result.resource(ctx.base))
        if first is not None:
            # A non-final chunk: keep whole 256 KiB blocks only, as GCS may.
            del upload.buffer[size - size % UPLOAD_GRANULARITY :]
            size = len(upload.buffer)
        headers = {"Range": f"bytes=0-{size - 1}"} if size else {}
        return web.Response(status=308, headers=headers)


def _parse_content_range(spec: str) -> tuple[int | None, int | None, int | None]:
    """``bytes a-b/total``, ``bytes a-b/*``, ``bytes */total`` or ``bytes */*``."""
    unit, _, rest = spec.strip().partition(" ")
    span, slash, total_s = rest.strip().partition("/")
    try:
        if unit.lower() != "bytes" or not slash:
            raise ValueError(spec)
        total = None if total_s == "*" else int(total_s)
        if span == "*":
            return None, None, total
        first_s, dash, last_s = span.partition("-")
        if not dash:
            raise ValueError(spec)
        first, last = int(first_s), int(last_s)
        if first < 0 or last < first or (total is not None and last >= total):
            raise ValueError(spec)
    except ValueError:
        raise _GCSError(400, f"Invalid Content-Range: {spec!r}") from None
    return first, last, total


def _check_name(name: str) -> None:
    """GCS object naming rules: 1-1024 UTF-8 bytes, no CR or LF, not ``.`` or ``..``."""
    if not name:
        raise _GCSError(400, "Required object name.", reason="required")
    if len(name.encode("utf-8")) > 1024 or "\r" in name or "\n" in name or name in (".", ".."):
        raise _GCSError(400, f"The specified object name is not valid: {name[:100]!r}")


def _load_json(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise _GCSError(400, "Parse Error: the request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise _GCSError(400, "The request body must be a JSON object.")
    return value
