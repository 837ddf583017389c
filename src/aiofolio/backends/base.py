"""The async storage interface every backend implements, and the types it speaks.

Owns: :class:`ObjectStat`, :class:`Backend` (the protocol), :data:`NOT_MODIFIED`, and the
small URL helpers shared by the implementations. Knows nothing of s3fs, gcsfs or aiohttp.

Every path argument is a full URL (``s3://bucket/key``, ``gs://bucket/key``,
``https://host/path``, ``file:///abs/path``) or an absolute local path, so that errors can
always name the object they are about.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO, Protocol, runtime_checkable

import msgspec

__all__ = [
    "NOT_MODIFIED",
    "STREAM_CHUNK",
    "Backend",
    "BaseBackend",
    "FetchResult",
    "NotModifiedType",
    "ObjectStat",
    "ProgressCallback",
    "check_range",
    "md5_b64_to_hex",
    "md5_hex_to_b64",
]


class ObjectStat(msgspec.Struct, frozen=True, kw_only=True):
    """What a backend knows about one stored object.

    Attributes:
        url: the object's full URL.
        size: length in bytes.
        etag: the server's entity tag, without quotes (``None`` if it gives none).
        version: S3 ``VersionId`` or GCS ``generation`` when the store has them.
        md5: hex MD5 of the content when the server states it (GCS md5Hash, or a
            single-part S3 ETag).
        crc32c: base64 CRC32C when the server states it (GCS).
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


class NotModifiedType(enum.Enum):
    """The type of :data:`NOT_MODIFIED`."""

    NOT_MODIFIED = "not-modified"


NOT_MODIFIED = NotModifiedType.NOT_MODIFIED
"""Returned by :meth:`Backend.fetch_if_changed` when the object matches the known token."""

FetchResult = tuple[bytes, ObjectStat]
ProgressCallback = Callable[[int], None]
"""Called with the number of bytes just written (an increment, not a total)."""


@runtime_checkable
class Backend(Protocol):
    """One async interface to a store. Implementations translate every third-party error."""

    scheme: str
    read_only: bool

    async def stat(self, url: str) -> ObjectStat:
        """Size, etag, version and checksums of one object."""
        ...

    async def exists(self, url: str) -> bool:
        """Whether the object exists."""
        ...

    async def read_range(
        self, url: str, start: int = 0, end: int | None = None, *, if_match: str | None = None
    ) -> bytes:
        """Bytes ``[start, end)`` (``end=None``: to EOF; an end past EOF is clamped).

        ``if_match`` pins the version (an :attr:`ObjectStat.token`). If the object no longer
        matches, raises :class:`~aiofolio.errors.PreconditionFailedError`.
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
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` as chunks (the primitive behind ``read_into``)."""
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


async def drain(chunks: AsyncIterator[bytes]) -> bytes:
    """Join every chunk of an iterator (for small reads)."""
    parts = [c async for c in chunks]
    return b"".join(parts)


class BaseBackend:
    """Shared plumbing: ``read_range`` and ``read_into`` built on ``iter_range``.

    Subclasses implement ``iter_range`` and the other primitives of :class:`Backend`.
    """

    scheme: str = ""
    read_only: bool = False

    def iter_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
    ) -> AsyncIterator[bytes]:
        raise NotImplementedError

    async def read_range(
        self, url: str, start: int = 0, end: int | None = None, *, if_match: str | None = None
    ) -> bytes:
        if end is not None and end <= start:
            return b""
        return await drain(self.iter_range(url, start, end, if_match=if_match))

    async def read_into(
        self,
        url: str,
        fileobj: BinaryIO,
        *,
        start: int = 0,
        end: int | None = None,
        if_match: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> int:
        written = 0
        async for chunk in self.iter_range(url, start, end, if_match=if_match):
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


STREAM_CHUNK = 1 << 20
"""Bytes per chunk yielded by streaming reads (memory per stream stays around this)."""


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
