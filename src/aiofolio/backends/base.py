"""The async storage interface every backend implements, and the types it speaks.

Owns: :class:`ObjectStat`, :class:`Backend` (the protocol), :data:`NOT_MODIFIED`, the reader
of one response (:class:`RangeInfo` and its pin checks, :class:`RangeReader`, the
streaming gzip/deflate decoder) and the small helpers shared by the implementations. Knows
nothing of s3fs, gcsfs or aiohttp.

Every path argument is a full URL (``s3://bucket/key``, ``gs://bucket/key``,
``https://host/path``, ``file:///abs/path``) or an absolute local path, so that errors can
always name the object they are about.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, BinaryIO, Protocol, runtime_checkable

import msgspec

from aiofolio.errors import (
    ContentEncodingError,
    PreconditionFailedError,
    RemoteError,
    TransientError,
)

__all__ = [
    "NOT_MODIFIED",
    "STREAM_CHUNK",
    "Backend",
    "BaseBackend",
    "FetchResult",
    "NotModifiedType",
    "ObjectStat",
    "ProgressCallback",
    "RangeInfo",
    "RangeReader",
    "check_open_range",
    "check_pin",
    "check_range",
    "checked_body",
    "decode_whole",
    "md5_b64_to_hex",
    "md5_hex_to_b64",
    "response_info",
    "trim_range",
]


class ObjectStat(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend knows about one stored object.

    Attributes:
        url: the object's full URL.
        size: length in bytes.
        etag: the server's entity tag, without quotes (``None`` if it gives none). A weak
            HTTP tag keeps its marker: ``W/abc``.
        version: S3 ``VersionId`` or GCS ``generation`` when the store has them.
        md5: hex MD5 of the content when the store states it (see ``md5_source``).
        md5_source: where ``md5`` came from: ``"etag"`` (a single-part, not SSE-KMS/SSE-C S3
            ETag), ``"store"`` (GCS ``md5Hash`` / ``x-goog-hash``, the memory backend),
            ``"content-md5"`` (HTTP ``Content-MD5``) or ``"digest"`` (HTTP ``Digest: md5=``
            or ``Repr-Digest: md5=:...:``); ``None`` when there is no ``md5``.
        crc32c: base64 CRC32C (big-endian, as GCS and S3 state it) when the store states it
            (GCS; S3 ``x-amz-checksum-crc32c`` for a full-object checksum).
        last_modified: seconds since the epoch.
        token: the value this store's conditional requests take (``if_match`` and
            ``fetch_if_changed``): the ETag for S3, HTTP and local files, the generation for
            GCS. It changes whenever the content may have changed.
    """

    url: str
    size: int
    etag: str | None = None
    version: str | None = None
    md5: str | None = None
    crc32c: str | None = None
    last_modified: float | None = None
    token: str | None = None
    md5_source: str | None = None


class RangeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What the first response of a read says, known before any body byte is read.

    Attributes:
        url: the object's URL.
        status: the HTTP status (200, 206; 416 for a start at or past the end, with an empty
            body); local and memory backends report 206 or 200 the same way.
        start: the object offset of the body's first byte: the requested start, or 0 when
            the server ignored the Range and sent the whole object.
        length: body bytes to come, when known before reading (``None``: no Content-Length,
            or an encoded body that is decoded on the fly).
        size: the object's total size: from ``Content-Range``, else a whole response's
            ``Content-Length``, else ``None`` (learn it from a whole body's length).
        is_whole: the body is the entire object from byte 0 (a 200, or a 206 that covers every
            byte, or an empty object).
        etag, token, version, md5, md5_source, crc32c, last_modified: as in
            :class:`ObjectStat`; digests are the whole object's, never a part's.
        content_encoding: the coding the server applied although we asked for identity
            (``gzip``/``deflate``), undone by the reader; ``None`` for identity.
    """

    url: str
    status: int
    start: int
    length: int | None
    size: int | None
    is_whole: bool
    etag: str | None = None
    token: str | None = None
    version: str | None = None
    md5: str | None = None
    md5_source: str | None = None
    crc32c: str | None = None
    last_modified: float | None = None
    content_encoding: str | None = None

    @property
    def end(self) -> int | None:
        """The object offset just past the body's last byte, when known."""
        if self.length is not None:
            return self.start + self.length
        if self.is_whole:
            return self.size
        return None

    def to_stat(self, size: int | None = None) -> ObjectStat | None:
        """An :class:`ObjectStat` (``size`` given, or known from the headers), else None."""
        total = self.size if size is None else size
        if total is None:
            return None
        return ObjectStat(
            url=self.url,
            size=total,
            etag=self.etag,
            version=self.version,
            md5=self.md5,
            md5_source=self.md5_source if self.md5 is not None else None,
            crc32c=self.crc32c,
            last_modified=self.last_modified,
            token=self.token,
        )


class NotModifiedType(enum.Enum):
    """The type of :data:`NOT_MODIFIED`."""

    NOT_MODIFIED = "not-modified"


NOT_MODIFIED = NotModifiedType.NOT_MODIFIED
"""Returned by :meth:`Backend.fetch_if_changed` when the object matches the known token."""

FetchResult = tuple[bytes, ObjectStat]
ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just written (an increment, not a total)."""

STREAM_CHUNK = 1 << 20
"""Bytes per chunk yielded by streaming reads (memory per stream stays around this)."""


@runtime_checkable
class Backend(Protocol):
    """One async interface to a store. Implementations translate every third-party error.

    Reads and versions: every read may be pinned with ``if_match`` (an
    :attr:`ObjectStat.token`) and ``expected_size`` (the object's total size as the caller
    knows it). A backend checks each response against both, whether or not the store honours
    the precondition itself: a response whose ETag (GCS: generation) differs from the pin, or
    whose total size (``Content-Range``, or a whole body's length) differs from
    ``expected_size``, raises :class:`~aiofolio.errors.PreconditionFailedError` before any of
    its bytes are handed out (for a whole body of unknown length, as soon as it exceeds the
    size, or at its end). A response that carries no token at all cannot be compared: it is
    accepted, and the size check and the caller's content hash remain.

    Encoding: every request asks for ``Accept-Encoding: identity``. A full-object response
    encoded anyway with gzip or deflate is decoded (streaming, bounded memory); an encoded
    ranged response, or any other coding, raises :class:`~aiofolio.errors.ContentEncodingError`.
    Encoded bytes are never handed out as the object.
    """

    scheme: str
    read_only: bool

    async def stat(self, url: str) -> ObjectStat:
        """Size, etag, version and checksums of one object."""
        ...

    async def exists(self, url: str) -> bool:
        """Whether the object exists."""
        ...

    def open_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AbstractAsyncContextManager[RangeReader]:
        """One GET of bytes ``[start, end)``, its metadata known before its body is read.

        Use as ``async with backend.open_range(url, 0, chunk) as reader:``. On entry the
        request has been answered: :attr:`RangeReader.info` holds the object's total size (when
        the server states it), its token, version and digests; then ``async for chunk in
        reader`` streams the body. Leaving the block early releases the connection.

        The body is what the server sent, from :attr:`RangeInfo.start`: when a server ignores
        the Range and answers 200 with the whole object, ``reader.is_whole`` is true and the
        body starts at byte 0 (:func:`trim_range` cuts out ``[start, end)``). A start at or past
        the end gives an empty body (status 416). ``end`` must be None or greater than
        ``start`` (ValueError otherwise). Pins and size checks: see the class docstring.
        """
        ...

    async def read_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> bytes:
        """Bytes ``[start, end)`` (``end=None``: to EOF; an end past EOF is clamped).

        ``if_match`` pins the version (an :attr:`ObjectStat.token`), ``expected_size`` the
        total size; a response that does not match raises
        :class:`~aiofolio.errors.PreconditionFailedError`. An empty range sends no request.
        """
        ...

    async def read_into(
        self,
        url: str,
        fileobj: BinaryIO,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Stream bytes ``[start, end)`` into ``fileobj`` at its current position.

        Memory stays bounded (chunks of at most a few MiB). Returns the bytes written.
        """
        ...

    def iter_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream exactly bytes ``[start, end)`` (clamped at EOF) as chunks.

        Built on :meth:`open_range` and checked the same way: with ``if_match``, a response of
        another version raises :class:`~aiofolio.errors.PreconditionFailedError`; with
        ``expected_size``, so does a response whose ``Content-Range`` total (or whole length)
        differs. An empty range sends no request; a start past EOF yields nothing.
        """
        ...

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        """A conditional fetch of a small object.

        ``token`` is the :attr:`ObjectStat.token` we hold. Returns
        :data:`NOT_MODIFIED` when it still matches, otherwise the new bytes and stat.
        """
        ...

    async def put(
        self,
        url: str,
        data: bytes | str,
        *,
        content_md5: str | None = None,
        cache_control: str | None = None,
        content_type: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> ObjectStat:
        """Store ``data`` (bytes, or the path of a local file) atomically; return the new stat.

        ``content_md5`` (hex) is checked by the server where it can be. ``if_match`` (an
        :attr:`ObjectStat.token`) writes only over that version; ``if_none_match`` only if
        nothing exists. A failed condition raises :class:`~aiofolio.errors.PreconditionFailedError`.
        """
        ...

    async def list(self, url: str) -> list[ObjectStat]:
        """Every object under the prefix ``url`` (recursive), sorted by URL."""
        ...

    async def delete(self, url: str) -> None:
        """Delete one object; deleting a missing object is not an error."""
        ...

    async def aclose(self) -> None:
        """Close clients and sessions; the backend is unusable afterwards."""
        ...


# -- the reader of one response ---------------------------------------------------------------


class RangeReader:
    """The answer to one :meth:`Backend.open_range`: :attr:`info` now, the body as it comes.

    Iterate it (``async for chunk in reader``) once, or :meth:`read` it whole. The body's own
    checks run as it streams: a body shorter than announced raises
    :class:`~aiofolio.errors.TransientError`; a whole body (``is_whole``) longer or shorter than
    the ``expected_size`` it was opened with raises
    :class:`~aiofolio.errors.PreconditionFailedError`. :meth:`aclose` (also on leaving the
    ``open_range`` block) stops reading and releases the connection.

    Args:
        info: the response's metadata.
        body: the body's chunks (already decoded and checked; see :func:`checked_body`).
        release: called once when the reader closes (returns the connection), may be None.
    """

    def __init__(
        self,
        info: RangeInfo,
        body: AsyncIterator[bytes] | None,
        release: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.info = info
        self.received = 0
        """Body bytes handed out so far."""
        self.done = body is None
        """Whether the body was read to its end (and passed its end checks)."""
        self._body = body
        self._release = release
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"RangeReader({self.info.url!r}, status={self.info.status}, start={self.info.start}, "
            f"size={self.info.size}, whole={self.info.is_whole}, received={self.received})"
        )

    @property
    def is_whole(self) -> bool:
        """The body is the whole object from byte 0 (see :attr:`RangeInfo.is_whole`)."""
        return self.info.is_whole

    @property
    def size(self) -> int | None:
        """The object's total size: from the headers, or a whole body's length once read."""
        if self.info.size is not None:
            return self.info.size
        if self.done and self.info.is_whole:
            return self.info.start + self.received
        return None

    @property
    def token(self) -> str | None:
        """The version token of the response (ETag, or GCS generation)."""
        return self.info.token

    def stat(self) -> ObjectStat | None:
        """An :class:`ObjectStat` once the size is known (see :attr:`size`), else None."""
        return self.info.to_stat(self.size)

    def __aiter__(self) -> RangeReader:
        return self

    async def __anext__(self) -> bytes:
        if self._body is None or self._closed:
            raise StopAsyncIteration
        try:
            chunk = await self._body.__anext__()
        except StopAsyncIteration:
            self.done = True
            raise
        self.received += len(chunk)
        return chunk

    async def read(self) -> bytes:
        """The rest of the body, joined (for small objects)."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        """Stop reading and release the connection (idempotent)."""
        if self._closed:
            return
        self._closed = True
        body, self._body = self._body, None
        try:
            aclose = getattr(body, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                await release()

    async def __aenter__(self) -> RangeReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def check_open_range(start: int, end: int | None) -> None:
    """The argument checks of :meth:`Backend.open_range` (ValueError)."""
    check_range(start, end)
    if end is not None and end <= start:
        raise ValueError(f"open_range needs a non-empty range: start={start}, end={end}")


def precondition_failed(url: str, why: str) -> PreconditionFailedError:
    """The error for a response that is not the pinned version of the object."""
    return PreconditionFailedError(
        f"object changed (precondition failed): {url} ({why})", url=url, status=412
    )


def response_info(
    url: str,
    *,
    status: int,
    start: int,
    content_range: str | None,
    content_length: int | None,
    content_encoding: str | None = None,
    etag: str | None = None,
    token: str | None = None,
    version: str | None = None,
    md5: str | None = None,
    md5_source: str | None = None,
    crc32c: str | None = None,
    last_modified: float | None = None,
) -> RangeInfo:
    """The :class:`RangeInfo` of an HTTP answer to a GET of ``[start, ...)``.

    Raises :class:`~aiofolio.errors.ContentEncodingError` for an encoded 206 or an unknown
    coding, and :class:`~aiofolio.errors.RemoteError` for a 206 whose ``Content-Range`` is
    missing or does not start where asked. Digests of an encoded response are dropped (they
    describe the encoded bytes); so is a ``content_length`` that is the encoded length.
    """
    from aiofolio.backends._headers import (
        ContentRange,
        content_codings,
        content_range_total,
        parse_content_range,
    )

    codings = content_codings(content_encoding) if status != 416 else []
    coding: str | None = None
    if codings:
        if status == 206:
            raise ContentEncodingError(
                f"refusing a ranged response with Content-Encoding {content_encoding!r}: {url} "
                "(its byte offsets would be those of the encoded form; identity was asked for)",
                url=url,
                status=status,
            )
        if len(codings) != 1 or codings[0] not in _DECODABLE:
            raise ContentEncodingError(
                f"cannot decode Content-Encoding {content_encoding!r}: {url} (identity was "
                "asked for; gzip and deflate are decoded)",
                url=url,
                status=status,
            )
        coding = codings[0]
        md5 = md5_source = crc32c = None
    cr = parse_content_range(content_range)
    if status == 206 and cr is None and content_length == 0:
        # An empty 206 with an inverted range (gcp-storage-emulator: ``bytes 1078-1027/1028``
        # for a start past the end) says what a 416 says.
        status, cr = 416, ContentRange(None, None, content_range_total(content_range))
    length: int | None
    total: int | None
    if status == 416:
        total = cr.total if cr is not None else None
        if total is None and start == 0:
            total = 0  # bytes=0-... is unsatisfiable only for an empty object
        body_start, length, whole = start, 0, total == 0
    elif status == 206:
        if cr is None or cr.start is None or cr.end is None:
            raise RemoteError(
                f"206 without a usable Content-Range ({content_range!r}): {url}",
                url=url,
                status=status,
            )
        if cr.start != start:
            raise RemoteError(
                f"asked for bytes from {start}, got {content_range!r}: {url}",
                url=url,
                status=status,
            )
        length = cr.end - cr.start
        if content_length is not None and content_length != length:
            raise RemoteError(
                f"Content-Length {content_length} does not match {content_range!r}: {url}",
                url=url,
                status=status,
            )
        total = cr.total
        body_start = cr.start
        whole = cr.start == 0 and total is not None and cr.end == total
    else:  # 200 and other successes: the whole object
        body_start = 0
        length = None if coding is not None else content_length
        total = length
        whole = True
    return RangeInfo(
        url=url,
        status=status,
        start=body_start,
        length=length,
        size=total,
        is_whole=whole,
        etag=etag,
        token=token,
        version=version,
        md5=md5,
        md5_source=md5_source if md5 is not None else None,
        crc32c=crc32c,
        last_modified=last_modified,
        content_encoding=coding,
    )


def check_pin(
    info: RangeInfo, *, start: int, if_match: str | None, expected_size: int | None
) -> None:
    """Refuse a response that is not the pinned version (before its body is read).

    The token is compared as entity tags are (weakly: ``W/abc`` equals ``abc``); a response
    with no token is accepted. A total size different from ``expected_size`` is refused, and
    so is a 416 for a start that ``expected_size`` says is inside the object.
    """
    from aiofolio.backends._headers import same_entity

    url = info.url
    if if_match is not None and info.token is not None and not same_entity(info.token, if_match):
        raise precondition_failed(url, f"version {info.token}, pinned {if_match}")
    if expected_size is None:
        return
    if info.size is not None and info.size != expected_size:
        raise precondition_failed(url, f"size {info.size}, expected {expected_size}")
    if info.status == 416 and start < expected_size:
        raise precondition_failed(url, f"no byte at {start}, expected {expected_size} bytes")


_DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})


class _Decoder:
    """Undo a gzip (multi-member too) or deflate (zlib-wrapped or raw) coding, bounded."""

    def __init__(self, coding: str, url: str) -> None:
        self.url = url
        self.gzip = coding in ("gzip", "x-gzip")
        self._obj: Any = zlib.decompressobj(16 + zlib.MAX_WBITS) if self.gzip else None
        self._seen = False

    def _new(self, first: bytes) -> Any:
        if self.gzip:
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        # "deflate" is meant to be zlib-wrapped (RFC 9110); some servers send raw deflate.
        zlib_header = (
            len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        )
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        try:
            if self._obj is None:
                self._obj = self._new(data)
            buf = data
            while buf:
                self._seen = True
                piece = self._obj.decompress(buf, STREAM_CHUNK)
                if piece:
                    out.append(piece)
                if self._obj.eof:
                    rest = self._obj.unused_data
                    if not rest:
                        break
                    if not self.gzip:
                        raise ContentEncodingError(
                            f"bytes after the end of a deflate stream: {self.url}", url=self.url
                        )
                    self._obj = self._new(rest)  # another gzip member
                    buf = rest
                    continue
                buf = self._obj.unconsumed_tail
        except zlib.error as exc:
            raise ContentEncodingError(
                f"undecodable {'gzip' if self.gzip else 'deflate'} body: {self.url}: {exc}",
                url=self.url,
            ) from exc
        return out

    def finish(self) -> bytes:
        if self._obj is None or not self._seen:
            return b""  # an empty body decodes to nothing
        try:
            tail: bytes = self._obj.flush()
        except zlib.error as exc:
            raise ContentEncodingError(
                f"undecodable body: {self.url}: {exc}", url=self.url
            ) from exc
        if not self._obj.eof:
            raise TransientError(f"truncated encoded body: {self.url}", url=self.url)
        return tail


def decode_whole(data: bytes, content_encoding: str | None, url: str) -> bytes:
    """A complete response body with its content coding undone (gzip or deflate).

    For small whole answers read at once (JSON API responses). Raises
    :class:`~aiofolio.errors.ContentEncodingError` for another coding or a corrupt body, and
    :class:`~aiofolio.errors.TransientError` for a truncated one.
    """
    from aiofolio.backends._headers import content_codings

    codings = content_codings(content_encoding)
    if not codings:
        return data
    if len(codings) != 1 or codings[0] not in _DECODABLE:
        raise ContentEncodingError(
            f"cannot decode Content-Encoding {content_encoding!r}: {url}", url=url
        )
    decoder = _Decoder(codings[0], url)
    return b"".join([*decoder.feed(data), decoder.finish()])


async def checked_body(
    info: RangeInfo,
    raw: AsyncIterator[bytes],
    *,
    wire_length: int | None,
    expected_size: int | None = None,
) -> AsyncIterator[bytes]:
    """The body of a response: decoded when ``info.content_encoding`` says so, and checked.

    Args:
        info: the response's metadata.
        raw: the bytes as they come off the connection.
        wire_length: the announced length of the raw bytes (``Content-Length``), if any: a body
            that ends before it raises :class:`~aiofolio.errors.TransientError`.
        expected_size: for a whole body, the object size it must have
            (:class:`~aiofolio.errors.PreconditionFailedError` otherwise).
    """
    url = info.url
    decoder = _Decoder(info.content_encoding, url) if info.content_encoding else None
    limit = expected_size if info.is_whole else None
    if limit is None and info.is_whole and info.size is not None:
        limit = info.size
    got = 0
    wire = 0

    def over(n: int) -> None:
        if limit is not None and n > limit:
            if expected_size is not None:
                raise precondition_failed(url, f"body longer than the expected {expected_size}")
            raise RemoteError(f"body longer than its stated size {limit}: {url}", url=url)

    async for chunk in raw:
        if not chunk:
            continue
        wire += len(chunk)
        pieces = decoder.feed(chunk) if decoder is not None else [chunk]
        for piece in pieces:
            got += len(piece)
            over(got)
            yield piece
    if wire_length is not None and wire < wire_length:
        raise TransientError(f"truncated body: {url} ({wire} of {wire_length} bytes)", url=url)
    if decoder is not None:
        tail = decoder.finish()
        if tail:
            got += len(tail)
            over(got)
            yield tail
    if info.is_whole:
        if info.size is not None and got < info.size:
            raise TransientError(f"truncated body: {url} ({got} of {info.size} bytes)", url=url)
        if expected_size is not None and got != expected_size:
            raise precondition_failed(url, f"{got} bytes, expected {expected_size}")


async def trim_range(reader: RangeReader, start: int, end: int | None) -> AsyncIterator[bytes]:
    """Exactly the bytes ``[start, end)`` of a reader's body (clamped at its end).

    Skips what a server sent before ``start`` (a 200 to a ranged request) and stops at ``end``.
    """
    skip = start - reader.info.start
    if skip < 0:
        raise RemoteError(
            f"body starts at {reader.info.start}, after the requested {start}: {reader.info.url}",
            url=reader.info.url,
        )
    limit = None if end is None else end - start
    async for chunk in reader:
        if skip:
            if len(chunk) <= skip:
                skip -= len(chunk)
                continue
            chunk, skip = chunk[skip:], 0
        if limit is not None:
            chunk = chunk[:limit]
            limit -= len(chunk)
        if chunk:
            yield chunk
        if limit is not None and limit <= 0:
            return


async def drain(chunks: AsyncIterator[bytes]) -> bytes:
    """Join every chunk of an iterator (for small reads)."""
    parts = [c async for c in chunks]
    return b"".join(parts)


class BaseBackend:
    """Shared plumbing: ``iter_range``, ``read_range`` and ``read_into`` on ``open_range``.

    Subclasses implement ``open_range`` and the other primitives of :class:`Backend`.
    """

    scheme: str = ""
    read_only: bool = False

    def open_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AbstractAsyncContextManager[RangeReader]:
        raise NotImplementedError

    async def iter_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AsyncIterator[bytes]:
        check_range(start, end)
        if end is not None and end <= start:
            return
        async with self.open_range(
            url, start, end, if_match=if_match, expected_size=expected_size
        ) as reader:
            async for chunk in trim_range(reader, start, end):
                yield chunk

    async def read_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> bytes:
        if end is not None and end <= start:
            return b""
        return await drain(
            self.iter_range(url, start, end, if_match=if_match, expected_size=expected_size)
        )

    async def read_into(
        self,
        url: str,
        fileobj: BinaryIO,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        expected_size: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> int:
        written = 0
        chunks = self.iter_range(url, start, end, if_match=if_match, expected_size=expected_size)
        async for chunk in chunks:
            fileobj.write(chunk)
            written += len(chunk)
            if progress is not None:
                progress(len(chunk))
        return written


def check_range(start: int, end: int | None) -> None:
    """Reject negative or inverted ranges with a ValueError."""
    if start < 0 or (end is not None and end < 0):
        raise ValueError(f"byte range must not be negative: start={start}, end={end}")


def md5_hex_to_b64(md5_hex: str) -> str:
    """Hex MD5 (as in manifests) to base64 (as in Content-MD5 and GCS md5Hash)."""
    import base64

    return base64.b64encode(bytes.fromhex(md5_hex)).decode("ascii")


def md5_b64_to_hex(md5_b64: str) -> str:
    """Base64 MD5 (GCS md5Hash, x-goog-hash) to hex."""
    import base64

    return base64.b64decode(md5_b64).hex()


async def file_size(path: str) -> int:
    """The size of a local file, asked from a worker thread."""
    import os

    import anyio.to_thread

    return await anyio.to_thread.run_sync(os.path.getsize, path)


async def read_file(path: str) -> bytes:
    """A whole local file, read in a worker thread."""
    import anyio.to_thread

    def _read() -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    return await anyio.to_thread.run_sync(_read)


async def iter_file_blocks(path: str, block: int) -> AsyncIterator[bytes]:
    """A local file in blocks of ``block`` bytes, each read in a worker thread."""
    import anyio.to_thread

    fh = await anyio.to_thread.run_sync(open, path, "rb")
    try:
        while data := await anyio.to_thread.run_sync(fh.read, block):
            yield data
    finally:
        fh.close()
