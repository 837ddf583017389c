"""The read-only HTTP(S) backend, on aiohttp.

Owns: one ``aiohttp.ClientSession`` per backend (created lazily on the loop that uses it),
ETag and Last-Modified stats (HEAD, with a ranged GET as fallback), ranged streaming reads
pinned with ``If-Match`` (and checked against the response's ETag, for servers that ignore the
header), and conditional fetches with ``If-None-Match``. Writes raise
:class:`~aiofolio.errors.ReadOnlyError`.
"""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp

from aiofolio.backends._errors import error_for_status, translate
from aiofolio.backends.base import (
    NOT_MODIFIED,
    STREAM_CHUNK,
    BaseBackend,
    FetchResult,
    NotModifiedType,
    ObjectStat,
    check_range,
)
from aiofolio.errors import (
    AiofolioError,
    PreconditionFailedError,
    ReadOnlyError,
    RemoteError,
    TransientError,
)

__all__ = ["HTTPBackend", "parse_etag"]


def parse_etag(value: str | None) -> str | None:
    """The opaque part of an ETag header: ``W/"abc"`` and ``"abc"`` both give ``abc``."""
    if not value:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"') or None


def _quote(etag: str) -> str:
    return f'"{etag}"'


def _last_modified(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Last-Modified")
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _content_md5(headers: Mapping[str, str]) -> str | None:
    value = headers.get("Content-MD5")
    if not value:
        return None
    import base64
    import binascii

    try:
        return base64.b64decode(value).hex()
    except (binascii.Error, ValueError):
        return None


class HTTPBackend(BaseBackend):
    """Objects served over HTTP(S): read-only.

    Args:
        headers: extra request headers (for example ``Authorization``).
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
        self.headers = dict(headers or {})
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

    def _stat_from(self, url: str, headers: Mapping[str, str], size: int) -> ObjectStat:
        etag = parse_etag(headers.get("ETag"))
        return ObjectStat(
            url=url,
            size=size,
            etag=etag,
            token=etag,
            version=headers.get("x-amz-version-id") or headers.get("x-goog-generation"),
            md5=_content_md5(headers),
            last_modified=_last_modified(headers),
        )

    async def stat(self, url: str) -> ObjectStat:
        session = await self._get_session()
        try:
            async with session.head(url, allow_redirects=True) as resp:
                if resp.status in (405, 501):
                    return await self._stat_by_get(url)
                if resp.status >= 400:
                    raise error_for_status(resp.status, url, headers=resp.headers)
                length = resp.headers.get("Content-Length")
                if length is None:
                    return await self._stat_by_get(url)
                return self._stat_from(url, resp.headers, int(length))
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

    async def _stat_by_get(self, url: str) -> ObjectStat:
        session = await self._get_session()
        async with session.get(url, headers={"Range": "bytes=0-0"}) as resp:
            if resp.status >= 400 and resp.status != 416:
                raise error_for_status(resp.status, url, headers=resp.headers)
            content_range = resp.headers.get("Content-Range", "")
            if "/" in content_range and content_range.rsplit("/", 1)[1].isdigit():
                size = int(content_range.rsplit("/", 1)[1])
            else:
                size = len(await resp.read())
            return self._stat_from(url, resp.headers, size)

    async def exists(self, url: str) -> bool:
        try:
            await self.stat(url)
        except RemoteError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def iter_range(
        self,
        url: str,
        start: int = 0,
        end: int | None = None,
        *,
        if_match: str | None = None,
    ) -> AsyncIterator[bytes]:
        check_range(start, end)
        if end is not None and end <= start:
            return
        headers: dict[str, str] = {}
        if start > 0 or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if if_match is not None:
            headers["If-Match"] = _quote(if_match)
        session = await self._get_session()
        try:
            async with session.get(url, headers=headers) as resp:
                if resp.status == 416:
                    return
                if resp.status >= 400:
                    detail = (await resp.read())[:300].decode("utf-8", "replace")
                    raise error_for_status(resp.status, url, detail=detail, headers=resp.headers)
                got = parse_etag(resp.headers.get("ETag"))
                if if_match is not None and got is not None and got != if_match:
                    raise PreconditionFailedError(
                        f"object changed (precondition failed): {url}", url=url, status=412
                    )
                skip = 0
                limit: int | None = None if end is None else end - start
                if resp.status == 200 and start > 0:
                    skip = start  # the server ignored Range: drop the bytes before start
                expected = resp.content_length
                received = 0
                async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
                    received += len(chunk)
                    if skip:
                        if len(chunk) <= skip:
                            skip -= len(chunk)
                            continue
                        chunk = chunk[skip:]
                        skip = 0
                    if limit is not None:
                        if limit <= 0:
                            break
                        chunk = chunk[:limit]
                        limit -= len(chunk)
                    yield chunk
                    if limit is not None and limit <= 0:
                        break
                else:
                    if expected is not None and received < expected:
                        raise TransientError(
                            f"truncated body: {url} ({received} of {expected} bytes)", url=url
                        )
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        headers = {"If-None-Match": _quote(token)} if token else {}
        session = await self._get_session()
        try:
            async with session.get(url, headers=headers) as resp:
                if resp.status == 304:
                    return NOT_MODIFIED
                if resp.status >= 400:
                    raise error_for_status(resp.status, url, headers=resp.headers)
                data = await resp.read()
                if resp.content_length is not None and len(data) != resp.content_length:
                    raise TransientError(
                        f"truncated body: {url} ({len(data)} of {resp.content_length} bytes)",
                        url=url,
                    )
                stat = self._stat_from(url, resp.headers, len(data))
                if token is not None and stat.etag == token:
                    return NOT_MODIFIED  # a server that ignores If-None-Match
                return data, stat
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

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
