"""An in-memory HTTP object server (aiohttp) and a runner that hosts it on its own thread.

This module owns the HTTP semantics of the loopback object server used by tests, benchmarks and
the demo: objects held in memory (path -> bytes), strong ETags (quoted MD5 hex), Last-Modified,
single byte ranges (``a-b``, ``a-``, suffix ``-n``; 416 when unsatisfiable), HEAD, conditional
requests (If-None-Match -> 304, If-Match -> 412, also on ranged GETs so a version pin works),
PUT (with If-Match / ``If-None-Match: *``), DELETE, a JSON listing at ``GET /?prefix=``, and
per-path, per-method counts of requests and body bytes (:class:`ServerStats`).

:class:`FileServer` is the fault server with no faults: :class:`~aiofolio.testing.FaultServer`
subclasses it and overrides the hooks ``_before`` (latency, hang, injected errors) and
``_write_body`` (shaping of the body bytes) and ``_dispatch`` (reverse proxy).

:class:`ThreadedServer` runs any of these in a background thread with its own event loop, so
sync tests and tests on other loops can use it. A server can also be started inside a running
loop with ``async with FileServer() as srv``. It binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from aiohttp import web

LOOPBACK = "127.0.0.1"
DEFAULT_CHUNK = 256 * 1024

__all__ = [
    "FileServer",
    "RequestRecord",
    "ResponseShape",
    "ServerStats",
    "StoredObject",
    "ThreadedServer",
    "parse_range",
]


# -- objects ------------------------------------------------------------------------------------


def normalize_path(path: str) -> str:
    """``"a/b"`` -> ``"/a/b"``; paths are matched as given by the URL (already unquoted)."""
    return path if path.startswith("/") else "/" + path


@dataclass(frozen=True)
class StoredObject:
    """One object: its bytes, strong ETag (quoted MD5 hex) and modification time (epoch s)."""

    data: bytes
    etag: str
    last_modified: float

    @classmethod
    def from_bytes(cls, data: bytes, last_modified: float | None = None) -> StoredObject:
        """Build with the ETag computed from ``data`` and ``last_modified`` defaulting to now."""
        blob = bytes(data)
        return cls(
            data=blob,
            etag=f'"{hashlib.md5(blob).hexdigest()}"',
            last_modified=float(int(time.time() if last_modified is None else last_modified)),
        )

    @property
    def http_date(self) -> str:
        """Last-Modified as an HTTP date."""
        return formatdate(self.last_modified, usegmt=True)


class PreconditionFailed(Exception):
    """A conditional write did not hold (becomes HTTP 412)."""


class ObjectStore:
    """A thread-safe ``path -> StoredObject`` map."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._objects: dict[str, StoredObject] = {}

    def get(self, path: str) -> StoredObject | None:
        with self._lock:
            return self._objects.get(normalize_path(path))

    def put(self, path: str, data: bytes) -> StoredObject:
        obj = StoredObject.from_bytes(data)
        with self._lock:
            self._objects[normalize_path(path)] = obj
        return obj

    def put_conditional(
        self, path: str, data: bytes, *, if_match: str | None, if_none_match: str | None
    ) -> tuple[StoredObject, bool]:
        """Atomically check the preconditions and store; returns (object, created)."""
        new = StoredObject.from_bytes(data)
        key = normalize_path(path)
        with self._lock:
            old = self._objects.get(key)
            _check_write_preconditions(old, if_match, if_none_match)
            self._objects[key] = new
        return new, old is None

    def delete(self, path: str, *, if_match: str | None = None) -> bool:
        key = normalize_path(path)
        with self._lock:
            old = self._objects.get(key)
            if if_match is not None:
                _check_write_preconditions(old, if_match, None)
            return self._objects.pop(key, None) is not None

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()

    def items(self, prefix: str = "") -> list[tuple[str, StoredObject]]:
        pre = normalize_path(prefix) if prefix else "/"
        with self._lock:
            return sorted((p, o) for p, o in self._objects.items() if p.startswith(pre))


# -- ETags, ranges --------------------------------------------------------------------------


def _etag_list(header: str) -> list[str]:
    tags = []
    for raw in header.split(","):
        tag = raw.strip()
        if not tag:
            continue
        if tag != "*" and not tag.startswith(('"', "W/")):
            tag = f'"{tag}"'  # be lenient with unquoted tags, like S3
        tags.append(tag)
    return tags


def etag_matches(header: str, etag: str, *, weak: bool) -> bool:
    """Whether an If-Match / If-None-Match header matches ``etag`` (``*`` matches any)."""
    for tag in _etag_list(header):
        if tag == "*":
            return True
        if weak:
            if tag.removeprefix("W/") == etag.removeprefix("W/"):
                return True
        elif not tag.startswith("W/") and tag == etag:
            return True
    return False


def _check_write_preconditions(
    old: StoredObject | None, if_match: str | None, if_none_match: str | None
) -> None:
    if if_match is not None and (old is None or not etag_matches(if_match, old.etag, weak=False)):
        raise PreconditionFailed("If-Match")
    if (
        if_none_match is not None
        and old is not None
        and etag_matches(if_none_match, old.etag, weak=True)
    ):
        raise PreconditionFailed("If-None-Match")


class RangeNotSatisfiable(Exception):
    """The Range header cannot be satisfied for this size (becomes HTTP 416)."""


_RANGE_RE = re.compile(r"(\d*)-(\d*)")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single byte range into ``(start, end_exclusive)``.

    Returns None when there is no usable Range (absent, not ``bytes=``, malformed, or several
    ranges): the whole object is then served with 200, as RFC 9110 allows. Raises
    :class:`RangeNotSatisfiable` for ranges that start at or past the end, or ``bytes=-0``.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    m = _RANGE_RE.fullmatch(spec.strip())
    if m is None:
        return None
    first, last = m.groups()
    if not first:
        if not last:
            return None
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(header)
        return max(0, size - n), size
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(header)
    end = size if not last else min(int(last) + 1, size)
    return start, end


# -- response shapes ------------------------------------------------------------------------


@dataclass(frozen=True)
class ResponseShape:
    """How a GET/HEAD answer departs from a well-behaved server (all off by default).

    Attributes:
        ignore_if_match: Serve the current object whatever ``If-Match`` says.
        ignore_range: Ignore ``Range``: 200 with the whole object.
        encoding: ``"gzip"`` or ``"deflate"``: encode the body so, and say so in
            ``Content-Encoding``, whatever the client's ``Accept-Encoding`` (for a range, the
            range's bytes are encoded, and the answer is still a 206). Any other name (``"br"``)
            labels the body as that coding and sends gzip bytes.
        chunked: No ``Content-Length``: chunked transfer encoding.
        weak_etag: The ETag is weak (``W/"..."``). ``If-None-Match`` still matches it (weak
            comparison); ``If-Match`` never does (strong comparison, RFC 9110), so any pinned
            GET gets 412, as from a compliant server.
    """

    ignore_if_match: bool = False
    ignore_range: bool = False
    encoding: str | None = None
    chunked: bool = False
    weak_etag: bool = False


PLAIN = ResponseShape()


def encode_body(data: bytes, encoding: str) -> bytes:
    """``data`` gzip- or deflate-encoded (any other coding name: gzip bytes)."""
    if encoding == "deflate":
        return zlib.compress(data)
    return gzip.compress(data, mtime=0)


# -- stats ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestRecord:
    """A snapshot of one request as the server saw it.

    Attributes:
        method: HTTP method.
        path: URL path (no query).
        query: The raw query string.
        status: Response status (0 if none was sent: hang, reset before headers).
        bytes_sent: Body bytes written to the socket (after shaping and faults).
        range: The Range header, if any.
        proxied: True when forwarded to an upstream server.
        fault: Which fault was applied ("fail", "reset", "truncate", ...), if any.
        done: False while the request is still being served.
        aborted: True if the response was cut (fault or client gone).
        headers: The request's headers (``Accept-Encoding``, ``If-Match``, ...), as sent.
    """

    method: str
    path: str
    query: str
    status: int
    bytes_sent: int
    range: str | None
    proxied: bool
    fault: str | None
    done: bool
    aborted: bool
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Entry:
    method: str
    path: str
    query: str
    range: str | None
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0
    bytes_sent: int = 0
    proxied: bool = False
    faults: list[str] = field(default_factory=list)
    done: bool = False
    aborted: bool = False

    def snapshot(self) -> RequestRecord:
        return RequestRecord(
            method=self.method,
            path=self.path,
            query=self.query,
            status=self.status,
            bytes_sent=self.bytes_sent,
            range=self.range,
            proxied=self.proxied,
            fault=",".join(self.faults) or None,
            done=self.done,
            aborted=self.aborted,
            headers=dict(self.headers),
        )


class ServerStats:
    """Counts of requests and body bytes, per path and method; safe to read from any thread.

    Counts are live: a request is counted when it arrives and its bytes as they are written.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[_Entry] = []

    def _begin(
        self,
        method: str,
        path: str,
        query: str,
        range_: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> _Entry:
        entry = _Entry(
            method=method, path=path, query=query, range=range_, headers=dict(headers or {})
        )
        with self._lock:
            self._entries.append(entry)
        return entry

    def _select(self, path: str | None, method: str | None) -> list[_Entry]:
        p = normalize_path(path) if path is not None else None
        m = method.upper() if method is not None else None
        with self._lock:
            return [
                e
                for e in self._entries
                if (p is None or e.path == p) and (m is None or e.method == m)
            ]

    def requests(self, path: str | None = None, method: str | None = None) -> int:
        """Number of requests, optionally for one path and/or method."""
        return len(self._select(path, method))

    def bytes_served(self, path: str | None = None, method: str | None = None) -> int:
        """Body bytes written, optionally for one path and/or method."""
        return sum(e.bytes_sent for e in self._select(path, method))

    def records(self, path: str | None = None, method: str | None = None) -> list[RequestRecord]:
        """Snapshots of the requests, in arrival order."""
        return [e.snapshot() for e in self._select(path, method)]

    def statuses(self, path: str | None = None, method: str | None = None) -> list[int]:
        """Response statuses in arrival order (0 where none was sent)."""
        return [e.status for e in self._select(path, method)]

    def by_path(self) -> dict[tuple[str, str], tuple[int, int]]:
        """``{(method, path): (requests, bytes)}`` for every path seen."""
        out: dict[tuple[str, str], tuple[int, int]] = {}
        with self._lock:
            for e in self._entries:
                n, b = out.get((e.method, e.path), (0, 0))
                out[(e.method, e.path)] = (n + 1, b + e.bytes_sent)
        return out

    def reset(self) -> None:
        """Forget every request."""
        with self._lock:
            self._entries.clear()


# -- the server -----------------------------------------------------------------------------

_FS = TypeVar("_FS", bound="FileServer")


class FileServer:
    """An aiohttp server for objects held in memory, on 127.0.0.1.

    Args:
        objects: Initial ``path -> bytes``.
        port: 0 (default) for a free port.
        writable: Accept PUT and DELETE.
        chunk_size: Size of the body writes.

    The object API (:meth:`put`, :meth:`get`, :meth:`delete`, :meth:`reset`, :attr:`stats`) is
    thread-safe, so a test can drive a server that runs on another thread's loop.
    """

    def __init__(
        self,
        objects: Mapping[str, bytes] | None = None,
        *,
        port: int = 0,
        writable: bool = True,
        chunk_size: int = DEFAULT_CHUNK,
    ) -> None:
        self.store = ObjectStore()
        self.stats = ServerStats()
        self.writable = writable
        self.chunk_size = chunk_size
        self._want_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._closing = False
        for path, data in (objects or {}).items():
            self.put(path, data)

    # -- object API ---------------------------------------------------------------------------

    def put(self, path: str, data: bytes) -> str:
        """Store ``data`` at ``path``; returns the new ETag."""
        return self.store.put(path, data).etag

    def get(self, path: str) -> bytes | None:
        """The bytes at ``path``, or None."""
        obj = self.store.get(path)
        return obj.data if obj is not None else None

    def etag(self, path: str) -> str | None:
        """The current ETag at ``path``, or None."""
        obj = self.store.get(path)
        return obj.etag if obj is not None else None

    def delete(self, path: str) -> bool:
        """Delete ``path``; returns whether it existed."""
        return self.store.delete(path)

    def reset(self) -> None:
        """Drop every object and forget the stats."""
        self.store.clear()
        self.stats.reset()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def endpoint_url(self) -> str:
        """Same as :attr:`url`."""
        return self.url

    def url_for(self, path: str) -> str:
        """The full URL of ``path``."""
        return self.url + normalize_path(path)

    async def start(self: _FS) -> _FS:
        """Bind and serve on the running loop."""
        if self._runner is not None:
            return self
        self._closing = False
        app = web.Application(client_max_size=1 << 31)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, self._want_port, backlog=128, reuse_address=True)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner
        await self._on_start()
        return self

    async def _on_start(self) -> None:
        """Hook: runs on the server loop after binding."""

    async def _on_stop(self) -> None:
        """Hook: runs on the server loop after unbinding."""

    async def stop(self) -> None:
        """Stop serving; in-flight requests get up to 2 s, hanging ones are released."""
        self._closing = True
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
            await self._on_stop()
        self._port = None

    async def __aenter__(self: _FS) -> _FS:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- request handling ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        entry = self.stats._begin(
            request.method,
            request.path,
            request.query_string,
            request.headers.get("Range"),
            request.headers,
        )
        try:
            early = await self._before(request, entry)
            if early is not None:
                if not entry.aborted:
                    entry.status = early.status
                return early
            resp = await self._dispatch(request, entry)
            entry.status = entry.status or resp.status
            return resp
        finally:
            entry.done = True

    async def _before(self, request: web.Request, entry: _Entry) -> web.StreamResponse | None:
        """Hook before dispatch: return a response to short-circuit (errors), else None."""
        return None

    async def _dispatch(self, request: web.Request, entry: _Entry) -> web.StreamResponse:
        method = request.method
        if method in ("GET", "HEAD"):
            if request.path == "/" and self.store.get("/") is None and method == "GET":
                return self._listing(request)
            return await self._serve_get(request, entry)
        if method == "PUT" and self.writable:
            return await self._serve_put(request)
        if method == "DELETE" and self.writable:
            return self._serve_delete(request)
        allow = "GET, HEAD, PUT, DELETE" if self.writable else "GET, HEAD"
        return web.Response(status=405, headers={"Allow": allow})

    def _listing(self, request: web.Request) -> web.StreamResponse:
        prefix = request.query.get("prefix", "")
        items = [
            {"path": p, "size": len(o.data), "etag": o.etag, "last_modified": o.last_modified}
            for p, o in self.store.items(prefix)
        ]
        return web.json_response({"objects": items})

    def _shape(self, request: web.Request) -> ResponseShape:
        """Hook: how to (mis)shape this GET/HEAD answer; the plain server is well-behaved."""
        return PLAIN

    async def _serve_get(self, request: web.Request, entry: _Entry) -> web.StreamResponse:
        shape = self._shape(request)
        obj = self.store.get(request.path)
        if_match = None if shape.ignore_if_match else request.headers.get("If-Match")
        if_none_match = request.headers.get("If-None-Match")
        if obj is None:
            return web.Response(status=412 if if_match else 404)
        etag = f"W/{obj.etag}" if shape.weak_etag else obj.etag
        validators = {"ETag": etag, "Last-Modified": obj.http_date}
        if if_match is not None and not etag_matches(if_match, etag, weak=False):
            return web.Response(status=412, headers=validators)
        if if_none_match is not None:
            if etag_matches(if_none_match, etag, weak=True):
                return web.Response(status=304, headers=validators)
        elif _not_modified_since(request.headers.get("If-Modified-Since"), obj):
            return web.Response(status=304, headers=validators)
        size = len(obj.data)
        try:
            rng = None if shape.ignore_range else parse_range(request.headers.get("Range"), size)
        except RangeNotSatisfiable:
            return web.Response(
                status=416, headers={**validators, "Content-Range": f"bytes */{size}"}
            )
        start, end = rng if rng is not None else (0, size)
        resp = web.StreamResponse(status=206 if rng is not None else 200)
        resp.headers.update(validators)
        resp.headers["Accept-Ranges"] = "bytes"
        resp.headers["Content-Type"] = "application/octet-stream"
        if rng is not None:
            resp.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        body: bytes | memoryview = memoryview(obj.data)[start:end]
        if shape.encoding is not None:
            body = encode_body(bytes(body), shape.encoding)
            resp.headers["Content-Encoding"] = shape.encoding
        if shape.chunked and request.method != "HEAD":
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(body)
        entry.status = resp.status
        if request.method == "HEAD":
            await resp.prepare(request)
            return resp
        length = None if shape.chunked else len(body)
        await self._write_body(
            request, resp, entry, _chunks(memoryview(body), self.chunk_size), length
        )
        return resp

    async def _serve_put(self, request: web.Request) -> web.StreamResponse:
        data = await request.read()
        try:
            obj, created = self.store.put_conditional(
                request.path,
                data,
                if_match=request.headers.get("If-Match"),
                if_none_match=request.headers.get("If-None-Match"),
            )
        except PreconditionFailed:
            return web.Response(status=412)
        return web.Response(
            status=201 if created else 200,
            headers={"ETag": obj.etag, "Last-Modified": obj.http_date},
        )

    def _serve_delete(self, request: web.Request) -> web.StreamResponse:
        try:
            existed = self.store.delete(request.path, if_match=request.headers.get("If-Match"))
        except PreconditionFailed:
            return web.Response(status=412)
        return web.Response(status=204 if existed else 404)

    async def _write_body(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        entry: _Entry,
        chunks: AsyncIterator[bytes | memoryview],
        length: int | None,
    ) -> None:
        """Send the headers and the body; count bytes. Subclasses shape this."""
        await resp.prepare(request)
        async for chunk in chunks:
            # Count before writing: the client may see the bytes before write() returns.
            entry.bytes_sent += len(chunk)
            try:
                await resp.write(chunk)
            except ConnectionError:
                entry.bytes_sent -= len(chunk)
                entry.aborted = True
                return


async def _chunks(body: memoryview, size: int) -> AsyncIterator[bytes | memoryview]:
    for i in range(0, len(body), size):
        yield body[i : i + size]


def _not_modified_since(header: str | None, obj: StoredObject) -> bool:
    if not header:
        return False
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError):
        return False
    return obj.last_modified <= since


# -- threaded runner ------------------------------------------------------------------------


class AsyncServer(Protocol):
    """What :class:`ThreadedServer` can host."""

    async def start(self) -> object: ...

    async def stop(self) -> None: ...


S = TypeVar("S", bound=AsyncServer)


class ThreadedServer(Generic[S]):
    """Run an async server (a :class:`FileServer` or ``FaultServer``) on its own thread and loop.

    Example::

        with ThreadedServer(FileServer({"/a": b"x"})) as ts:
            urllib.request.urlopen(ts.server.url_for("/a"))
    """

    def __init__(self, server: S, *, start_timeout: float = 10.0, stop_timeout: float = 10.0):
        self.server = server
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop (only while running)."""
        if self._loop is None:
            raise RuntimeError("not running")
        return self._loop

    @property
    def url(self) -> str:
        """The hosted server's URL."""
        url: str = getattr(self.server, "url")  # noqa: B009 - Protocol keeps start/stop only
        return url

    def start(self) -> ThreadedServer[S]:
        """Start the thread and the server; raises if it does not start in time."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, name=f"aiofolio-{type(self.server).__name__}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._start_timeout):
            raise RuntimeError(f"{type(self.server).__name__} did not start in time")
        error = self._start_error()
        if error is not None:
            self._thread.join(self._stop_timeout)
            self._thread = None
            raise RuntimeError("server failed to start") from error
        return self

    def _start_error(self) -> BaseException | None:
        return self._error  # set by the server thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            try:
                loop.run_until_complete(self.server.start())
            except BaseException as exc:
                self._error = exc
                return
            self._loop = loop
            self._ready.set()
            loop.run_forever()
        finally:
            self._loop = None
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
        """Stop the server, then the loop, then join the thread (all bounded)."""
        thread, loop = self._thread, self._loop
        if thread is None:
            return
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self.server.stop(), loop)
            try:
                fut.result(self._stop_timeout)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        thread.join(self._stop_timeout)
        self._thread = None

    def __enter__(self) -> ThreadedServer[S]:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
