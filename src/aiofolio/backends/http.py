"""The read-only HTTP(S) backend, on aiohttp.

Owns: one ``aiohttp.ClientSession`` per backend (created lazily on the loop that uses it),
stats (HEAD, with a ranged GET as fallback) with the digests the server states
(``Content-MD5``, ``Digest``, ``Repr-Digest``, ``x-goog-hash``, ``x-amz-checksum-crc32c``),
ranged streaming reads, and conditional fetches with ``If-None-Match``. Writes raise
:class:`~aiofolio.errors.ReadOnlyError`.

Every request says ``Accept-Encoding: identity`` (aiohttp would offer gzip, deflate and br,
and a server such as nginx with ``gzip on`` would take it). A whole response encoded anyway
is decoded; an encoded ranged one is refused (:class:`~aiofolio.errors.ContentEncodingError`).

Version pins: a strong ETag pin is sent as ``If-Match`` and the response's ETag is compared
with it too (for servers that ignore ``If-Match``). A *weak* ETag (``W/"..."``, kept as the
token ``W/...``) is never sent as ``If-Match``: RFC 9110 compares If-Match strongly, so a
compliant server would answer every pinned read with 412. A weak pin is enforced by comparing
the response's ETag (weakly) and the total size instead. ``If-None-Match`` uses weak
comparison, so weak tokens are sent there as they came (``W/"..."``) and revalidate normally.
"""

from __future__ import annotations

import contextlib
import email.utils
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import aiohttp

from aiofolio.backends._errors import error_for_status, translate
from aiofolio.backends._headers import (
    crc32c_from_s3,
    goog_hashes,
    header_values,
    http_digests,
    is_weak,
    parse_content_range,
    parse_etag,
    quote_etag,
    same_entity,
)
from aiofolio.backends.base import (
    NOT_MODIFIED,
    STREAM_CHUNK,
    BaseBackend,
    FetchResult,
    NotModifiedType,
    ObjectStat,
    RangeInfo,
    RangeReader,
    check_open_range,
    check_pin,
    checked_body,
    response_info,
)
from aiofolio.errors import (
    AiofolioError,
    ContentEncodingError,
    ReadOnlyError,
    RemoteError,
)

__all__ = ["HTTPBackend", "parse_etag"]

IDENTITY = {"Accept-Encoding": "identity"}


def _last_modified(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Last-Modified")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _digests(headers: Mapping[str, str], *, whole_body: bool) -> dict[str, Any]:
    """md5, md5_source and crc32c from whatever the server states."""
    md5, source = http_digests(headers, whole_body=whole_body)
    goog_md5, goog_crc = goog_hashes(header_values(headers, "x-goog-hash"))
    if md5 is None and goog_md5 is not None:
        md5, source = goog_md5, "store"
    crc = goog_crc or crc32c_from_s3(
        headers.get("x-amz-checksum-crc32c"), headers.get("x-amz-checksum-type")
    )
    return {"md5": md5, "md5_source": source, "crc32c": crc}


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Content-Length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


def http_response_info(url: str, status: int, headers: Mapping[str, str], start: int) -> RangeInfo:
    """The :class:`~aiofolio.backends.base.RangeInfo` of an HTTP GET response."""
    etag = parse_etag(headers.get("ETag"))
    content_range = headers.get("Content-Range")
    length = _content_length(headers)
    # Content-MD5 is the digest of the body sent: the object's only when the body is all of it.
    cr = parse_content_range(content_range)
    whole = status != 206 or (cr is not None and cr.start == 0 and cr.end == cr.total)
    return response_info(
        url,
        status=status,
        start=start,
        content_range=content_range,
        content_length=length,
        content_encoding=headers.get("Content-Encoding"),
        etag=etag,
        token=etag,
        version=headers.get("x-amz-version-id") or headers.get("x-goog-generation"),
        last_modified=_last_modified(headers),
        **_digests(headers, whole_body=whole),
    )


async def _chunks(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
            yield chunk
    except AiofolioError:
        raise
    except Exception as exc:
        raise translate(exc, url) from exc


class HTTPBackend(BaseBackend):
    """Objects served over HTTP(S): read-only.

    Args:
        headers: extra request headers (for example ``Authorization``). ``Accept-Encoding``
            is always ``identity``.
        connect_timeout: seconds to establish a connection.
        read_timeout: seconds of silence after which a read fails.
        client_kwargs: extra keyword arguments for ``aiohttp.ClientSession``.
    """

    scheme = "http"
    read_only = True

    def __init__(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        given = {k: v for k, v in (headers or {}).items() if k.lower() != "accept-encoding"}
        self.headers = {**given, **IDENTITY}
        self.timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self.client_kwargs = dict(client_kwargs or {})
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return "HTTPBackend()"

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                timeout=self.timeout,
                auto_decompress=False,
                **self.client_kwargs,
            )
        return self._session

    async def _get(self, url: str, headers: Mapping[str, str]) -> aiohttp.ClientResponse:
        session = await self._get_session()
        try:
            return await session.get(url, headers={**headers, **IDENTITY})
        except Exception as exc:
            raise translate(exc, url) from exc

    async def stat(self, url: str) -> ObjectStat:
        session = await self._get_session()
        try:
            async with session.head(url, allow_redirects=True, headers=IDENTITY) as resp:
                if resp.status in (405, 501):
                    return await self._stat_by_get(url)
                if resp.status >= 400:
                    raise error_for_status(resp.status, url, headers=resp.headers)
                length = _content_length(resp.headers)
                encoded = resp.headers.get("Content-Encoding", "identity").lower() != "identity"
                if length is None or encoded:
                    # The length of an encoded answer is not the object's size.
                    return await self._stat_by_get(url)
                etag = parse_etag(resp.headers.get("ETag"))
                return ObjectStat(
                    url=url,
                    size=length,
                    etag=etag,
                    token=etag,
                    version=resp.headers.get("x-amz-version-id")
                    or resp.headers.get("x-goog-generation"),
                    last_modified=_last_modified(resp.headers),
                    **_digests(resp.headers, whole_body=True),
                )
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

    async def _stat_by_get(self, url: str) -> ObjectStat:
        try:
            stat = await self._size_by_get(url, 0, 1)
        except ContentEncodingError:
            # A server that encodes even a one-byte range: the decoded length of a whole
            # answer is the only size there is (streamed, so memory stays bounded).
            stat = await self._size_by_get(url, 0, None)
        if stat is None:  # pragma: no cover - a whole body read to its end has a size
            raise RemoteError(f"could not tell the size of {url}", url=url)
        return stat

    async def _size_by_get(self, url: str, start: int, end: int | None) -> ObjectStat | None:
        async with self.open_range(url, start, end) as reader:
            if reader.size is None:
                # No size stated (a whole answer without Content-Length): count the body.
                async for _ in reader:
                    pass
            return reader.stat()

    async def exists(self, url: str) -> bool:
        try:
            await self.stat(url)
        except RemoteError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def open_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
        expected_size: int | None = None,
    ) -> AbstractAsyncContextManager[RangeReader]:
        check_open_range(start, end)
        return self._open(url, start, end, if_match, expected_size)

    @contextlib.asynccontextmanager
    async def _open(
        self,
        url: str,
        start: int,
        end: int | None,
        if_match: str | None,
        expected_size: int | None,
    ) -> AsyncIterator[RangeReader]:
        headers: dict[str, str] = {}
        if start > 0 or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if if_match is not None and not is_weak(if_match):
            headers["If-Match"] = quote_etag(if_match)
        resp = await self._get(url, headers)
        try:
            reader = await self._reader(resp, url, start, if_match, expected_size)
            async with reader:
                yield reader
        finally:
            resp.release()

    async def _reader(
        self,
        resp: aiohttp.ClientResponse,
        url: str,
        start: int,
        if_match: str | None,
        expected_size: int | None,
    ) -> RangeReader:
        if resp.status >= 400 and resp.status != 416:
            try:
                detail = (await resp.content.read(300)).decode("utf-8", "replace")
            except Exception:
                detail = ""
            raise error_for_status(resp.status, url, detail=detail, headers=resp.headers)
        info = http_response_info(url, resp.status, resp.headers, start)
        check_pin(info, start=start, if_match=if_match, expected_size=expected_size)
        if resp.status == 416:
            return RangeReader(info, None)
        wire = _content_length(resp.headers)
        body = checked_body(info, _chunks(resp, url), wire_length=wire, expected_size=expected_size)
        return RangeReader(info, body)

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        headers = {"If-None-Match": quote_etag(token)} if token else {}
        resp = await self._get(url, headers)
        try:
            if resp.status == 304:
                return NOT_MODIFIED
            async with await self._reader(resp, url, 0, None, None) as reader:
                data = await reader.read()
                stat = reader.stat()
        finally:
            resp.release()
        if stat is None:  # pragma: no cover - a whole body read to its end has a size
            raise RemoteError(f"could not tell the size of {url}", url=url)
        if token is not None and same_entity(stat.token, token):
            return NOT_MODIFIED  # a server that ignores If-None-Match
        return data, stat

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
        raise ReadOnlyError(f"HTTP bundles are read-only: cannot write {url}")

    async def list(self, url: str) -> list[ObjectStat]:
        raise RemoteError(f"HTTP has no listing: cannot list {url}", url=url)

    async def delete(self, url: str) -> None:
        raise ReadOnlyError(f"HTTP bundles are read-only: cannot delete {url}")

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
