"""The fault-and-shaping HTTP server: the file server plus injected faults and a reverse proxy.

This kernel has no netem, so network trouble is made here, in user space, on 127.0.0.1. This
module owns :class:`Fault` (what to do to matching requests) and :class:`FaultServer`, which
serves in-memory objects exactly like :class:`~aiofolio.testing.FileServer` (it *is* one, with
no faults set) or, given ``upstream=``, forwards every request to another loopback server (for
example moto) unchanged: method, raw path and query, headers including Authorization and Host
(so SigV4 signatures still validate), streamed bodies both ways.

Faults, per path glob (``fnmatch``, ``*`` for all) and bounded:

- ``latency``: seconds before the response starts (time to first byte).
- ``bandwidth``: bytes/s cap per response (so per connection), paced like a token bucket.
- ``fail_n`` x ``fail_status`` (500, 503, 429 + ``retry_after`` ...), then normal.
- ``reset_after``: a TCP reset (RST) after K body bytes were handed to the kernel. The client
  sees ``ECONNRESET`` and may get fewer than K bytes: Linux drops unread data on a RST.
- ``truncate_at``: the body stops after K bytes and the connection closes cleanly, while
  Content-Length announced the full length.
- ``corrupt``: ``corrupt_bytes`` bytes flipped at seeded positions; same length.
- ``replace_with`` / ``replace_after``: after K bytes of a GET are sent, the stored object is
  swapped for new bytes (new ETag for later requests); the running response keeps the old ones.
- ``hang``: no answer at all until the client goes away, the faults are cleared, the server
  stops, or ``max_hang`` seconds (then the connection is closed). ``hang_after`` stalls after K
  body bytes instead.

Misbehaving servers (GET/HEAD answers; see :class:`~aiofolio.testing.fileserver.ResponseShape`):

- ``ignore_if_match``: If-Match is ignored on GET/HEAD: the current object is served whatever
  the pin (an S3-compatible store that does this mixes versions unless the client compares
  ETags). Through the proxy, the header is dropped before it reaches the upstream.
- ``encoding``: ``Content-Encoding: gzip`` (or ``deflate``) whatever the client asked for,
  ranged answers included (local mode only).
- ``ignore_range``: 200 with the whole object for a ranged GET (proxy: Range dropped).
- ``chunked``: no Content-Length (chunked transfer encoding).
- ``weak_etag``: ``ETag: W/"..."``; If-Match (strong comparison) then never matches.

Byte offsets K count bytes of the response body, not offsets in the object. Every request,
proxied or not, is counted in :attr:`FaultServer.stats`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import random
import socket
import struct
import threading
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .fileserver import DEFAULT_CHUNK, PLAIN, FileServer, ResponseShape, _Entry, normalize_path

__all__ = ["Fault", "FaultServer"]

MAX_LATENCY = 60.0
MAX_HANG = 300.0

# Not forwarded by the proxy (hop-by-hop, or handled by the proxy itself).
_HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)

_S3_ERROR_CODES = {
    429: "SlowDown",
    500: "InternalError",
    502: "BadGateway",
    503: "SlowDown",
    504: "GatewayTimeout",
}


@dataclass(frozen=True)
class Fault:
    """What to do to requests that match a path glob. All fields are optional and combine.

    Attributes:
        latency: Seconds to wait before answering (time to first byte), at most 60.
        bandwidth: Cap in bytes/s for each response body (hence each connection).
        fail_n: Answer the first ``fail_n`` matching requests with ``fail_status``.
        fail_status: The status of those failures (4xx or 5xx), with an S3-style XML body.
        retry_after: Seconds for a ``Retry-After`` header on the failures.
        reset_after: Reset the connection (RST) after this many body bytes.
        truncate_at: Close the connection cleanly after this many body bytes.
        corrupt: Flip ``corrupt_bytes`` bytes (XOR 0xFF) at positions drawn from ``seed``.
        corrupt_bytes: How many bytes to flip per response.
        replace_with: New bytes for the object, stored once ``replace_after`` bytes of a GET
            body were sent (once per fault).
        replace_after: See ``replace_with``.
        hang: Never answer (bounded by ``max_hang``).
        hang_after: Stall after this many body bytes (bounded by ``max_hang``).
        max_hang: Upper bound of a hang in seconds, at most 300.
        times: Apply to this many matching requests, then stop matching (None: no limit).
        methods: Only match these methods (e.g. ``{"GET"}``); None matches all.
        seed: Seed for the corrupted positions.
        ignore_if_match: Serve GET/HEAD whatever ``If-Match`` says (the current object).
        ignore_range: Answer a ranged GET with 200 and the whole object.
        encoding: ``"gzip"``/``"deflate"`` (or a label such as ``"br"``, gzip bytes): encode
            GET bodies so and say so, whatever the client accepts. Local mode only.
        chunked: Send GET bodies without Content-Length (chunked).
        weak_etag: Serve the ETag as weak (``W/"..."``); If-Match then never matches.
    """

    latency: float = 0.0
    bandwidth: float | None = None
    fail_n: int = 0
    fail_status: int = 503
    retry_after: float | None = None
    reset_after: int | None = None
    truncate_at: int | None = None
    corrupt: bool = False
    corrupt_bytes: int = 1
    replace_with: bytes | None = field(default=None, repr=False)
    replace_after: int = 0
    hang: bool = False
    hang_after: int | None = None
    max_hang: float = 30.0
    times: int | None = None
    methods: Collection[str] | None = None
    seed: int = 0
    ignore_if_match: bool = False
    ignore_range: bool = False
    encoding: str | None = None
    chunked: bool = False
    weak_etag: bool = False

    def __post_init__(self) -> None:
        if self.encoding is not None and not self.encoding.strip():
            raise ValueError("encoding must be a coding name such as 'gzip'")
        if not 0.0 <= self.latency <= MAX_LATENCY:
            raise ValueError(f"latency must be within [0, {MAX_LATENCY}] s")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive")
        if self.fail_n < 0 or not 400 <= self.fail_status <= 599:
            raise ValueError("fail_n must be >= 0 and fail_status a 4xx or 5xx")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")
        for name in ("reset_after", "truncate_at", "hang_after"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.replace_after < 0 or self.corrupt_bytes < 1:
            raise ValueError("replace_after must be >= 0 and corrupt_bytes >= 1")
        if not 0.0 < self.max_hang <= MAX_HANG:
            raise ValueError(f"max_hang must be within (0, {MAX_HANG}] s")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1 or None")
        if self.methods is not None:
            object.__setattr__(self, "methods", frozenset(m.upper() for m in self.methods))

    def corrupt_positions(self, length: int) -> list[int]:
        """The body offsets this fault flips in a response of ``length`` bytes (sorted)."""
        if not self.corrupt or length <= 0:
            return []
        rng = random.Random(self.seed)
        return sorted(rng.sample(range(length), min(self.corrupt_bytes, length)))

    @property
    def shape(self) -> ResponseShape:
        """How this fault misshapes GET/HEAD answers."""
        return ResponseShape(
            ignore_if_match=self.ignore_if_match,
            ignore_range=self.ignore_range,
            encoding=self.encoding,
            chunked=self.chunked,
            weak_etag=self.weak_etag,
        )

    @property
    def shapes_body(self) -> bool:
        """Whether the fault changes how a body is streamed."""
        return (
            self.bandwidth is not None
            or self.reset_after is not None
            or self.truncate_at is not None
            or self.corrupt
            or self.replace_with is not None
            or self.hang_after is not None
        )


@dataclass
class _Rule:
    pattern: str
    fault: Fault
    applied: int = 0
    failed: int = 0
    replaced: bool = False


@dataclass
class _Plan:
    rule: _Rule
    fail: bool


class _Pacer:
    """Paces writes to ``rate`` bytes/s: sleep until each byte's due time (token bucket)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        # ~100 writes/s at most: coarse enough to stay cheap at 50 MB/s, fine enough to be smooth.
        self.chunk = int(min(DEFAULT_CHUNK, max(4096, rate / 100)))
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()
        self._sent = 0

    async def pace(self, n: int) -> None:
        self._sent += n
        delay = self._start + self._sent / self.rate - self._loop.time()
        if delay > 0.001:
            await asyncio.sleep(delay)


_PLAN_KEY = web.RequestKey("aiofolio.testing.plan", _Plan)


class FaultServer(FileServer):
    """A :class:`FileServer` with faults, optionally a reverse proxy in front of ``upstream``.

    Args:
        objects: Initial ``path -> bytes`` (local mode).
        upstream: ``http://127.0.0.1:PORT`` of a server to forward every request to.
        on_replace: ``(path, new_bytes)`` callback doing ``replace_with`` in proxy mode (e.g.
            :meth:`MotoServer.put_path`); it runs in a worker thread.
        port: 0 for a free port.
        writable: Accept PUT and DELETE (local mode).

    Fault rules are matched newest first; the first rule that matches the path and method and
    is not used up applies, alone. The fault API is thread-safe.
    """

    def __init__(
        self,
        objects: Mapping[str, bytes] | None = None,
        *,
        upstream: str | None = None,
        on_replace: Callable[[str, bytes], object] | None = None,
        port: int = 0,
        writable: bool = True,
    ) -> None:
        super().__init__(objects, port=port, writable=writable)
        if upstream is not None:
            host = URL(upstream).host
            if URL(upstream).scheme != "http" or host != "127.0.0.1":
                raise ValueError(f"upstream must be http://127.0.0.1:PORT, not {upstream!r}")
            upstream = upstream.rstrip("/")
        self.upstream = upstream
        self.on_replace = on_replace
        self._rules: list[_Rule] = []
        self._rules_lock = threading.Lock()
        self._generation = 0
        self._session: aiohttp.ClientSession | None = None

    # -- fault API ----------------------------------------------------------------------------

    def set_fault(self, path_glob: str, fault: Fault) -> None:
        """Apply ``fault`` to requests whose path matches ``path_glob`` (``"*"`` for all)."""
        if fault.replace_with is not None and self.upstream is not None and not self.on_replace:
            raise ValueError("replace_with through the proxy needs on_replace=")
        if fault.encoding is not None and self.upstream is not None:
            raise ValueError("encoding= is for local mode only, not through the proxy")
        pattern = path_glob if path_glob.startswith("*") else normalize_path(path_glob)
        with self._rules_lock:
            self._rules.append(_Rule(pattern, fault))

    def clear_faults(self) -> None:
        """Remove every fault and release requests that hang."""
        with self._rules_lock:
            self._rules.clear()
            self._generation += 1

    @property
    def faults(self) -> list[tuple[str, Fault]]:
        """The rules in the order they were set."""
        with self._rules_lock:
            return [(r.pattern, r.fault) for r in self._rules]

    def reset(self) -> None:
        """Clear faults, objects and stats."""
        self.clear_faults()
        super().reset()

    def _match(self, method: str, path: str) -> _Plan | None:
        with self._rules_lock:
            for rule in reversed(self._rules):
                f = rule.fault
                if f.methods is not None and method not in f.methods:
                    continue
                if f.times is not None and rule.applied >= f.times:
                    continue
                if not fnmatch.fnmatchcase(path, rule.pattern):
                    continue
                rule.applied += 1
                fail = rule.failed < f.fail_n
                if fail:
                    rule.failed += 1
                return _Plan(rule=rule, fail=fail)
        return None

    # -- lifecycle ----------------------------------------------------------------------------

    async def _on_start(self) -> None:
        if self.upstream is not None:
            self._session = aiohttp.ClientSession(
                auto_decompress=False,
                trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
                connector=aiohttp.TCPConnector(limit=64),
            )

    async def _on_stop(self) -> None:
        with self._rules_lock:
            self._generation += 1
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- hooks --------------------------------------------------------------------------------

    async def _before(self, request: web.Request, entry: _Entry) -> web.StreamResponse | None:
        plan = self._match(request.method, request.path)
        if plan is None:
            return None
        request[_PLAN_KEY] = plan
        fault = plan.rule.fault
        if fault.latency > 0:
            entry.faults.append("latency")
            await asyncio.sleep(fault.latency)
        if fault.hang:
            entry.faults.append("hang")
            await self._hang(request, fault.max_hang)
            entry.aborted = True
            _close(request)
            return web.Response(status=504)
        if plan.fail:
            entry.faults.append("fail")
            headers = {"Content-Type": "application/xml"}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            code = _S3_ERROR_CODES.get(fault.fail_status, f"Http{fault.fail_status}")
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n'
                f"<Error><Code>{code}</Code><Message>injected by FaultServer</Message>"
                f"<Resource>{request.path}</Resource></Error>"
            )
            return web.Response(status=fault.fail_status, text=body, headers=headers)
        return None

    def _shape(self, request: web.Request) -> ResponseShape:
        plan: _Plan | None = request.get(_PLAN_KEY)
        if plan is None or request.method not in ("GET", "HEAD"):
            return PLAIN
        return plan.rule.fault.shape

    async def _dispatch(self, request: web.Request, entry: _Entry) -> web.StreamResponse:
        shape = self._shape(request)
        entry.faults.extend(
            name
            for name, on in (
                ("ignore-if-match", shape.ignore_if_match),
                ("ignore-range", shape.ignore_range),
                ("encoding", shape.encoding is not None),
                ("chunked", shape.chunked),
                ("weak-etag", shape.weak_etag),
            )
            if on
        )
        if self.upstream is None:
            return await super()._dispatch(request, entry)
        entry.proxied = True
        return await self._proxy(request, entry, shape)

    async def _write_body(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        entry: _Entry,
        chunks: AsyncIterator[bytes | memoryview],
        length: int | None,
    ) -> None:
        plan = request.get(_PLAN_KEY)
        if plan is None or not plan.rule.fault.shapes_body:
            await super()._write_body(request, resp, entry, chunks, length)
            return
        try:
            await self._shaped_body(request, resp, entry, chunks, length, plan)
        except ConnectionError:
            entry.aborted = True

    # -- body shaping -------------------------------------------------------------------------

    async def _shaped_body(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        entry: _Entry,
        chunks: AsyncIterator[bytes | memoryview],
        length: int | None,
        plan: _Plan,
    ) -> None:
        fault = plan.rule.fault
        pacer = _Pacer(fault.bandwidth) if fault.bandwidth is not None else None
        if pacer is not None:
            entry.faults.append("bandwidth")
        flips = set(fault.corrupt_positions(length if length is not None else 1 << 16))
        if flips:
            entry.faults.append("corrupt")
        cuts = [
            k for k in (fault.reset_after, fault.truncate_at, fault.hang_after) if k is not None
        ]
        if fault.replace_with is not None:
            cuts.append(fault.replace_after)
        await resp.prepare(request)
        await resp.write(b"")  # headers out now, even if the body is cut at 0
        sent = 0
        if await self._at_offset(request, entry, plan, sent):
            return
        async for chunk in chunks:
            view = memoryview(chunk).cast("B")
            while view.nbytes:
                take = view.nbytes
                nxt = min((k for k in cuts if k > sent), default=None)
                if nxt is not None:
                    take = min(take, nxt - sent)
                if pacer is not None:
                    take = min(take, pacer.chunk)
                piece: bytes | memoryview = view[:take]
                view = view[take:]
                hits = [p - sent for p in flips if sent <= p < sent + take]
                if hits:
                    buf = bytearray(piece)
                    for i in hits:
                        buf[i] ^= 0xFF
                    piece = bytes(buf)
                entry.bytes_sent += take  # before: the client may see them first
                try:
                    await resp.write(piece)
                except ConnectionError:
                    entry.bytes_sent -= take
                    raise
                sent += take
                if pacer is not None:
                    await pacer.pace(take)
                if await self._at_offset(request, entry, plan, sent):
                    return

    async def _at_offset(self, request: web.Request, entry: _Entry, plan: _Plan, sent: int) -> bool:
        """Run the faults due at body offset ``sent``; True when the response is over."""
        fault = plan.rule.fault
        if fault.replace_with is not None and sent >= fault.replace_after:
            await self._replace(request, entry, plan)
        if fault.reset_after is not None and sent >= fault.reset_after:
            entry.faults.append("reset")
            entry.aborted = True
            await _flush(request)
            _abort_with_rst(request)
            return True
        if fault.truncate_at is not None and sent >= fault.truncate_at:
            entry.faults.append("truncate")
            entry.aborted = True
            await _flush(request)
            _close(request)
            return True
        if fault.hang_after is not None and sent >= fault.hang_after:
            entry.faults.append("hang")
            entry.aborted = True
            await _flush(request)
            await self._hang(request, fault.max_hang)
            _close(request)
            return True
        return False

    async def _replace(self, request: web.Request, entry: _Entry, plan: _Plan) -> None:
        new = plan.rule.fault.replace_with
        assert new is not None
        with self._rules_lock:
            if plan.rule.replaced:
                return
            plan.rule.replaced = True
        entry.faults.append("replace")
        if self.upstream is None:
            self.store.put(request.path, new)
        elif self.on_replace is not None:
            await asyncio.to_thread(self.on_replace, request.path, new)

    async def _hang(self, request: web.Request, max_hang: float) -> None:
        """Wait until the client leaves, faults are cleared, the server stops, or max_hang."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_hang
        generation = self._generation
        while loop.time() < deadline and not self._closing and generation == self._generation:
            transport = request.transport
            if transport is None or transport.is_closing():
                return
            await asyncio.sleep(0.02)

    # -- reverse proxy ------------------------------------------------------------------------

    async def _proxy(
        self, request: web.Request, entry: _Entry, shape: ResponseShape = PLAIN
    ) -> web.StreamResponse:
        assert self.upstream is not None
        session = self._session
        if session is None:
            return web.Response(status=503, text="proxy not started")
        url = URL(self.upstream + request.raw_path, encoded=True)
        dropped = set(_HOP_HEADERS)
        if shape.ignore_if_match:
            dropped.add("if-match")  # moto does not check signatures, so SigV4 survives this
        if shape.ignore_range:
            dropped.add("range")
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in dropped
        )
        data = _request_body(request) if request.body_exists else None
        try:
            async with session.request(
                request.method,
                url,
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
            ) as upstream:
                resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for key, value in upstream.headers.items():
                    if key.lower() not in _HOP_HEADERS and key.lower() != "content-length":
                        if key.lower() == "etag" and shape.weak_etag and value.startswith('"'):
                            value = f"W/{value}"
                        resp.headers.add(key, value)
                raw_length = upstream.headers.get("Content-Length")
                length = int(raw_length) if raw_length is not None else None
                if shape.chunked and request.method != "HEAD":
                    length = None
                    resp.enable_chunked_encoding()
                if length is not None:
                    resp.content_length = length
                entry.status = upstream.status
                if request.method == "HEAD" or upstream.status in (204, 304):
                    await resp.prepare(request)
                    return resp
                await self._write_body(
                    request, resp, entry, _upstream_body(upstream.content), length
                )
                return resp
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if entry.status:  # headers already went out; the body is cut
                entry.aborted = True
                _close(request)
                return web.Response(status=502)
            entry.status = 502
            return web.Response(status=502, text=f"upstream error: {exc!r}")


async def _request_body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(DEFAULT_CHUNK):
        yield chunk


async def _upstream_body(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    async for chunk in content.iter_chunked(DEFAULT_CHUNK):
        yield chunk


async def _flush(request: web.Request, timeout: float = 5.0) -> None:
    """Wait (bounded) until the transport's write buffer went to the kernel."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        transport = request.transport
        if transport is None or transport.is_closing() or not transport.get_write_buffer_size():
            return
        await asyncio.sleep(0.002)


def _close(request: web.Request) -> None:
    transport = request.transport
    if transport is not None and not transport.is_closing():
        transport.close()


def _abort_with_rst(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock: Any = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
