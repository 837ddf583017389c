"""The GCS backend: gcsfs supplies credentials and the HTTP session; calls use the JSON API.

Owns: mapping ``gs://`` and ``gcs://`` URLs to JSON API requests. Stats carry the
``generation``, ``md5Hash`` and ``crc32c`` (``md5_source="store"``), and so does the first
response of a read (``x-goog-generation``, ``x-goog-hash``). Reads are pinned with
``ifGenerationMatch``, and each response's ``x-goog-generation`` and ``Content-Range`` total
are checked too, in case a server ignores preconditions (the emulator does, and sends no such
header either, so there only the size is checked). Every request asks for
``Accept-Encoding: identity``; a whole answer encoded anyway is decoded, an encoded ranged one
refused. An object stored with ``contentEncoding: gzip`` is served decompressed (GCS's
decompressive transcoding): its stored hashes describe the compressed bytes, so they are not
reported for it.
Conditional fetches use ``ifGenerationNotMatch``: one request, plus a stat when the response
carries no generation (the emulator).
Puts are multipart (small) or resumable (large; bytes a 308 says were not stored are sent
again), with ``ifGenerationMatch`` (0 = must not exist). gcsfs's ``_call`` is not used, because
it retries on its own and our policy already does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import aiohttp

from aiofolio.backends._errors import error_for_status, translate
from aiofolio.backends._headers import content_codings, goog_hashes, header_values
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
    decode_whole,
    file_size,
    iter_file_blocks,
    md5_b64_to_hex,
    md5_hex_to_b64,
    read_file,
    response_info,
)
from aiofolio.errors import AiofolioError, RemoteError, TransientError

__all__ = ["GCSBackend", "split_gcs"]

RESUMABLE_THRESHOLD = 16 * 1024 * 1024
RESUMABLE_CHUNK = 8 * 1024 * 1024  # a multiple of 256 KiB, as the API requires


def split_gcs(url: str) -> tuple[str, str]:
    """``gs://bucket/a/b`` (or ``gcs://``) to ``("bucket", "a/b")``."""
    for prefix in ("gs://", "gcs://"):
        if url.startswith(prefix):
            bucket, _, key = url[len(prefix) :].partition("/")
            if not bucket:
                raise ValueError(f"GCS URL without a bucket: {url}")
            return bucket, key
    raise ValueError(f"not a gs:// URL: {url}")


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _stored_bytes(range_header: str | None) -> int:
    """How many bytes a resumable session holds, from a 308's ``Range: bytes=0-N``."""
    if not range_header:
        return 0
    _, _, last = range_header.strip().rpartition("-")
    return int(last) + 1


def _boundary(body: bytes) -> str:
    """A multipart boundary that does not occur in ``body``."""
    while True:
        boundary = f"aiofolio-{secrets.token_hex(16)}"
        if boundary.encode() not in body:
            return boundary


def _hashes(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``x-goog-hash: crc32c=...,md5=...`` to (md5 hex, crc32c base64).

    The hashes may come in one header or in one ``x-goog-hash`` header each; all are read.
    """
    return goog_hashes(header_values(headers, "x-goog-hash"))


def _content_length(headers: Mapping[str, str]) -> int | None:
    value = headers.get("Content-Length")
    return int(value) if value is not None and value.strip().isdigit() else None


def gcs_response_info(url: str, status: int, headers: Mapping[str, str], start: int) -> RangeInfo:
    """The :class:`~aiofolio.backends.base.RangeInfo` of a media download response."""
    md5, crc = _hashes(headers)
    if content_codings(headers.get("x-goog-stored-content-encoding")):
        md5 = crc = None  # transcoded: the stored hashes are of the compressed bytes
    etag = headers.get("ETag")
    generation = headers.get("x-goog-generation")
    return response_info(
        url,
        status=status,
        start=start,
        content_range=headers.get("Content-Range"),
        content_length=_content_length(headers),
        content_encoding=headers.get("Content-Encoding"),
        etag=etag.strip('"') if etag else None,
        token=generation,
        version=generation,
        md5=md5,
        md5_source="store" if md5 else None,
        crc32c=crc,
    )


async def _chunks(resp: aiohttp.ClientResponse, url: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_chunked(STREAM_CHUNK):
            yield chunk
    except AiofolioError:
        raise
    except Exception as exc:
        raise translate(exc, url) from exc


class GCSBackend(BaseBackend):
    """Objects in Google Cloud Storage (or an emulator).

    Args:
        storage_options: passed to ``gcsfs.core.GCSFileSystem`` as fsspec and pandas pass them
            (``token``, ``project``, ``endpoint_url``, ...).
        connect_timeout: seconds to connect.
        read_timeout: seconds of silence on a read.
    """

    scheme = "gs"
    read_only = False

    def __init__(
        self,
        storage_options: Mapping[str, Any] | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        self._options = dict(storage_options or {})
        self._timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout,
            sock_connect=connect_timeout,
            sock_read=read_timeout,
        )
        self._fs: Any = None
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"GCSBackend(endpoint_url={self._options.get('endpoint_url')!r})"

    async def _ensure(self) -> tuple[Any, aiohttp.ClientSession]:
        if self._fs is None:
            # gcsfs.core.GCSFileSystem, not the "extended" class: the latter probes zonal
            # buckets over gRPC, which an emulator never answers.
            from gcsfs.core import GCSFileSystem

            self._fs = GCSFileSystem(asynchronous=True, skip_instance_cache=True, **self._options)
        if self._session is None or self._session.closed:
            # aiohttp would offer gzip/deflate/br; we verify and parse bytes, so ask for them as
            # they are (a whole answer encoded anyway is decoded, a ranged one refused).
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                auto_decompress=False,
                headers={"Accept-Encoding": "identity"},
            )
        return self._fs, self._session

    async def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        fs, _ = await self._ensure()
        headers: dict[str, str] = fs._get_headers(dict(extra or {}))
        headers["Accept-Encoding"] = "identity"
        return headers

    async def _base(self) -> str:
        fs, _ = await self._ensure()
        return str(fs._location).rstrip("/")

    async def _json(
        self,
        url: str,
        method: str,
        api_url: str,
        *,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any], Mapping[str, str]]:
        _, session = await self._ensure()
        try:
            async with session.request(
                method, api_url, params=params, data=data, headers=await self._headers(headers)
            ) as resp:
                body = decode_whole(await resp.read(), resp.headers.get("Content-Encoding"), url)
                if resp.status >= 400:
                    raise error_for_status(
                        resp.status,
                        url,
                        detail=body.decode("utf-8", "replace"),
                        headers=resp.headers,
                    )
                parsed = json.loads(body) if body.strip() else {}
                return resp.status, parsed, resp.headers
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

    @staticmethod
    def _stat_from_json(url: str, meta: Mapping[str, Any]) -> ObjectStat:
        md5_b64 = meta.get("md5Hash")
        md5 = md5_b64_to_hex(md5_b64) if md5_b64 else None
        crc = meta.get("crc32c")
        if content_codings(meta.get("contentEncoding")):
            md5 = crc = None  # served decompressed: the stored hashes do not describe it
        generation = str(meta["generation"]) if meta.get("generation") is not None else None
        return ObjectStat(
            url=url,
            size=int(meta.get("size", 0)),
            etag=meta.get("etag"),
            version=generation,
            token=generation,
            md5=md5,
            md5_source="store" if md5 else None,
            crc32c=crc,
            last_modified=_parse_time(meta.get("updated")),
        )

    async def stat(self, url: str) -> ObjectStat:
        bucket, key = split_gcs(url)
        base = await self._base()
        _, meta, _ = await self._json(url, "GET", f"{base}/storage/v1/b/{_q(bucket)}/o/{_q(key)}")
        return self._stat_from_json(url, meta)

    async def exists(self, url: str) -> bool:
        try:
            await self.stat(url)
        except FileNotFoundError:
            return False
        return True

    async def _media_url(self, url: str) -> str:
        bucket, key = split_gcs(url)
        base = await self._base()
        return f"{base}/download/storage/v1/b/{_q(bucket)}/o/{_q(key)}"

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

    async def _send_media(
        self, url: str, params: Mapping[str, str], extra: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        _, session = await self._ensure()
        media = await self._media_url(url)
        try:
            return await session.get(media, params=params, headers=await self._headers(extra))
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

    @contextlib.asynccontextmanager
    async def _open(
        self,
        url: str,
        start: int,
        end: int | None,
        if_match: str | None,
        expected_size: int | None,
    ) -> AsyncIterator[RangeReader]:
        params = {"alt": "media"}
        if if_match is not None:
            params["ifGenerationMatch"] = if_match
        extra: dict[str, str] = {}
        if start > 0 or end is not None:
            extra["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        resp = await self._send_media(url, params, extra)
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
        info = gcs_response_info(url, resp.status, resp.headers, start)
        check_pin(info, start=start, if_match=if_match, expected_size=expected_size)
        if resp.status == 416:
            return RangeReader(info, None)
        body = checked_body(
            info,
            _chunks(resp, url),
            wire_length=_content_length(resp.headers),
            expected_size=expected_size,
        )
        return RangeReader(info, body)

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        params = {"alt": "media"}
        if token and token.isdigit():
            # Only a generation is a valid ifGenerationNotMatch; anything else is a 400.
            params["ifGenerationNotMatch"] = token
        resp = await self._send_media(url, params, {})
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
        if token is not None and stat.version == token:
            return NOT_MODIFIED  # the emulator ignores ifGenerationNotMatch
        if stat.version is None:
            # No x-goog-generation (the emulator): the stat comes from a second request, so
            # compare the token again and make sure it describes these bytes, not a newer
            # generation written in between.
            stat = await self.stat(url)
            if token is not None and stat.version == token:
                return NOT_MODIFIED
            if stat.size != len(data) or (
                stat.md5 is not None and stat.md5 != hashlib.md5(data).hexdigest()
            ):
                raise TransientError(f"object changed during a conditional fetch: {url}", url=url)
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
        bucket, key = split_gcs(url)
        base = await self._base()
        meta: dict[str, Any] = {"name": key}
        if cache_control:
            meta["cacheControl"] = cache_control
        if content_md5:
            meta["md5Hash"] = md5_hex_to_b64(content_md5)
        ctype = content_type or "application/octet-stream"
        meta["contentType"] = ctype
        params: dict[str, str] = {}
        if if_none_match:
            params["ifGenerationMatch"] = "0"
        elif if_match is not None:
            params["ifGenerationMatch"] = if_match
        size = len(data) if isinstance(data, bytes) else await file_size(data)
        upload = f"{base}/upload/storage/v1/b/{_q(bucket)}/o"
        if isinstance(data, str) and size > RESUMABLE_THRESHOLD:
            result = await self._resumable(url, upload, meta, params, data, size, ctype)
        else:
            body = data if isinstance(data, bytes) else await read_file(data)
            boundary = _boundary(body)
            payload = (
                (
                    f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                    f"{json.dumps(meta)}\r\n--{boundary}\r\nContent-Type: {ctype}\r\n\r\n"
                ).encode()
                + body
                + f"\r\n--{boundary}--\r\n".encode()
            )
            _, result, _ = await self._json(
                url,
                "POST",
                upload,
                params={"uploadType": "multipart", **params},
                data=io.BytesIO(payload),  # aiohttp warns on raw bytes bodies over 1 MiB
                headers={"Content-Type": f'multipart/related; boundary="{boundary}"'},
            )
        return self._stat_from_json(url, result)

    async def _resumable(
        self,
        url: str,
        upload: str,
        meta: Mapping[str, Any],
        params: Mapping[str, str],
        path: str,
        size: int,
        ctype: str,
    ) -> dict[str, Any]:
        _, session = await self._ensure()
        try:
            async with session.post(
                upload,
                params={"uploadType": "resumable", **params},
                data=json.dumps(meta),
                headers=await self._headers(
                    {
                        "Content-Type": "application/json; charset=UTF-8",
                        "X-Upload-Content-Type": ctype,
                        "X-Upload-Content-Length": str(size),
                    }
                ),
            ) as resp:
                if resp.status >= 400:
                    detail = (await resp.read()).decode("utf-8", "replace")
                    raise error_for_status(resp.status, url, detail=detail, headers=resp.headers)
                location = resp.headers.get("Location")
            if not location:
                raise RemoteError(f"resumable upload started without a session URI: {url}", url=url)
            # The server may persist fewer bytes than a chunk carried (the 308's Range says how
            # many); the rest stays in ``pending`` and goes out again with the next chunk.
            result: dict[str, Any] | None = None
            offset = 0
            pending = b""
            async for block in iter_file_blocks(path, RESUMABLE_CHUNK):
                pending += block
                if offset + len(pending) > size:
                    raise RemoteError(
                        f"file grew during upload ({size} bytes expected): {url}", url=url
                    )
                result, offset, pending = await self._put_chunk(
                    session, url, location, offset, pending, size
                )
            while result is None and pending:
                before = offset
                result, offset, pending = await self._put_chunk(
                    session, url, location, offset, pending, size
                )
                if result is None and offset == before:
                    raise RemoteError(
                        f"resumable upload made no progress at byte {offset} of {size}: {url}",
                        url=url,
                    )
            if result is None:
                raise RemoteError(
                    f"resumable upload incomplete ({offset} of {size} bytes stored; "
                    f"did the file change?): {url}",
                    url=url,
                )
            return result
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

    async def _put_chunk(
        self,
        session: aiohttp.ClientSession,
        url: str,
        location: str,
        offset: int,
        chunk: bytes,
        size: int,
    ) -> tuple[dict[str, Any] | None, int, bytes]:
        """PUT ``chunk`` at ``offset``: (the object resource or None, bytes stored, the rest)."""
        last = offset + len(chunk) - 1
        async with session.put(
            location,
            data=io.BytesIO(chunk),
            headers=await self._headers({"Content-Range": f"bytes {offset}-{last}/{size}"}),
        ) as resp:
            body = await resp.read()
            if resp.status in (200, 201):
                parsed: dict[str, Any] = json.loads(body)
                return parsed, size, b""
            if resp.status != 308:
                raise error_for_status(
                    resp.status, url, detail=body.decode("utf-8", "replace"), headers=resp.headers
                )
            stored = _stored_bytes(resp.headers.get("Range"))
        if not offset <= stored <= last + 1:
            raise RemoteError(
                f"resumable upload: the server reports {stored} bytes stored after a chunk of "
                f"bytes {offset}-{last}: {url}",
                url=url,
            )
        return None, stored, chunk[stored - offset :]

    async def list(self, url: str) -> list[ObjectStat]:
        bucket, prefix = split_gcs(url)
        base = await self._base()
        scheme = url.split("://", 1)[0]
        out: list[ObjectStat] = []
        token: str | None = None
        while True:
            params = {"prefix": prefix}
            if token:
                params["pageToken"] = token
            _, page, _ = await self._json(
                url, "GET", f"{base}/storage/v1/b/{_q(bucket)}/o", params=params
            )
            for item in page.get("items", []) or []:
                out.append(self._stat_from_json(f"{scheme}://{bucket}/{item['name']}", item))
            token = page.get("nextPageToken")
            if not token:
                break
        return sorted(out, key=lambda s: s.url)

    async def delete(self, url: str) -> None:
        bucket, key = split_gcs(url)
        base = await self._base()
        with contextlib.suppress(FileNotFoundError):
            await self._json(url, "DELETE", f"{base}/storage/v1/b/{_q(bucket)}/o/{_q(key)}")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        fs, self._fs = self._fs, None
        if session is not None and not session.closed:
            await session.close()
        if fs is not None and getattr(fs, "_session", None) is not None:
            await fs._session.close()
