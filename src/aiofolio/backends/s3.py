"""The S3 backend: s3fs builds the session and credentials; calls go to its aiobotocore client.

Owns: mapping ``s3://bucket/key`` URLs to client calls; stats from HEAD (ETag, VersionId, the
MD5 a single-part, non-KMS, non-SSE-C ETag is, and a full-object CRC32C when the store has
one); ranged streaming GETs (:meth:`S3Backend.open_range`) pinned with ``IfMatch`` and checked
against the response's ETag and ``Content-Range`` total, for stores that ignore ``If-Match``;
conditional GETs whose 304 is turned into :data:`~aiofolio.backends.base.NOT_MODIFIED` (s3fs
would hide it as a plain ``OSError``); puts with Content-MD5 (also checked here, before anything
is stored, as not every S3-compatible store checks it and none can for a multipart upload),
Cache-Control and ``IfMatch``/``IfNoneMatch`` (a missing key under ``IfMatch`` is a failed
precondition, not a 404), multipart above :data:`MULTIPART_THRESHOLD`. botocore's own retries
are switched off (our policy retries), and so is its response checksum validation (the engine
verifies content).

Encoding: aiobotocore sends ``Accept-Encoding: identity`` on every request and never
decompresses. S3 does not transcode: a ``Content-Encoding`` on an S3 object is metadata stored
with it, and the bytes served are the bytes stored (those a manifest's MD5 covers), so they are
handed out as they are.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiofolio.backends._errors import translate
from aiofolio.backends._headers import crc32c_from_s3, md5_from_s3_etag
from aiofolio.backends.base import (
    NOT_MODIFIED,
    STREAM_CHUNK,
    BaseBackend,
    FetchResult,
    NotModifiedType,
    ObjectStat,
    RangeReader,
    check_open_range,
    check_pin,
    checked_body,
    file_size,
    iter_file_blocks,
    md5_hex_to_b64,
    read_file,
    response_info,
)
from aiofolio.errors import (
    AiofolioError,
    ChecksumMismatchError,
    PreconditionFailedError,
    RemoteNotFoundError,
    TransientError,
)

__all__ = ["MULTIPART_THRESHOLD", "S3Backend", "split_s3"]

MULTIPART_THRESHOLD = 64 * 1024 * 1024
PART_SIZE = 16 * 1024 * 1024


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` to ``("bucket", "a/b")``."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url}")
    bucket, _, key = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"S3 URL without a bucket: {url}")
    return bucket, key


def _etag(value: str | None) -> str | None:
    return value.strip('"') if value else None


def _version(resp: Mapping[str, Any]) -> str | None:
    version = resp.get("VersionId")
    return str(version) if version not in (None, "null") else None


def _modified(resp: Mapping[str, Any]) -> float | None:
    modified = resp.get("LastModified")
    return modified.timestamp() if modified is not None else None


def _digests(resp: Mapping[str, Any], *, whole: bool = True) -> dict[str, Any]:
    """md5 (from the ETag), md5_source and crc32c of a HeadObject/GetObject response.

    The ETag is the object's whatever the range; a checksum is used only on a whole answer.
    """
    md5 = md5_from_s3_etag(
        resp.get("ETag"),
        server_side_encryption=resp.get("ServerSideEncryption"),
        sse_customer_algorithm=resp.get("SSECustomerAlgorithm"),
    )
    crc = crc32c_from_s3(resp.get("ChecksumCRC32C"), resp.get("ChecksumType")) if whole else None
    return {"md5": md5, "md5_source": "etag" if md5 else None, "crc32c": crc}


def _stat_of(url: str, resp: Mapping[str, Any], size: int) -> ObjectStat:
    etag = _etag(resp.get("ETag"))
    return ObjectStat(
        url=url,
        size=size,
        etag=etag,
        token=etag,
        version=_version(resp),
        last_modified=_modified(resp),
        **_digests(resp),
    )


def _response_headers(exc: BaseException | None) -> Mapping[str, str]:
    response = getattr(exc, "response", None) or {}
    meta = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
    headers = meta.get("HTTPHeaders") if isinstance(meta, dict) else None
    return headers if isinstance(headers, dict) else {}


async def _body_chunks(body: Any, url: str) -> AsyncIterator[bytes]:
    while True:
        try:
            chunk = await body.read(STREAM_CHUNK)
        except Exception as exc:
            raise translate(exc, url) from exc
        if not chunk:
            return
        yield chunk


def _error_code(exc: BaseException | None) -> str:
    response = getattr(exc, "response", None) or {}
    err = response.get("Error", {}) if isinstance(response, dict) else {}
    return str(err.get("Code", "")) if isinstance(err, dict) else ""


def _check_md5(url: str, expected_hex: str, digest: Any) -> None:
    actual = str(digest.hexdigest())
    if actual != expected_hex.lower():
        raise ChecksumMismatchError(
            f"content MD5 mismatch writing {url}: expected {expected_hex}, got {actual}"
        )


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    meta = response.get("ResponseMetadata", {}) if isinstance(response, dict) else {}
    try:
        return int(meta.get("HTTPStatusCode") or 0)
    except (TypeError, ValueError):
        return 0


class S3Backend(BaseBackend):
    """Objects in S3 or an S3-compatible store.

    Args:
        storage_options: passed to ``s3fs.S3FileSystem`` exactly as pandas and fsspec pass
            them (``key``, ``secret``, ``token``, ``anon``, ``client_kwargs``,
            ``config_kwargs``, ``endpoint_url``, ...).
        connect_timeout: seconds to connect, unless ``config_kwargs`` sets it.
        read_timeout: seconds of silence on a read, unless ``config_kwargs`` sets it.
    """

    scheme = "s3"
    read_only = False

    def __init__(
        self,
        storage_options: Mapping[str, Any] | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        options = dict(storage_options or {})
        config = dict(options.pop("config_kwargs", None) or {})
        config.setdefault("connect_timeout", connect_timeout)
        config.setdefault("read_timeout", read_timeout)
        config.setdefault("retries", {"total_max_attempts": 1, "mode": "standard"})
        # botocore's default pool (10) would make parallel chunks of a warm queue behind each
        # other and starve foreground reads; connections are cheap next to a stalled read.
        config.setdefault("max_pool_connections", 64)
        # Content is verified above this layer (the manifest's MD5). botocore would check a
        # stored CRC only on whole-object GETs, and only after the last chunk was handed out,
        # too late for a stream that resumes; so the backend streams bytes as they come.
        config.setdefault("response_checksum_validation", "when_required")
        self._options = options
        self._config = config
        self._fs: Any = None
        self._client: Any = None

    def __repr__(self) -> str:
        endpoint = self._options.get("endpoint_url") or (
            self._options.get("client_kwargs") or {}
        ).get("endpoint_url")
        return f"S3Backend(endpoint_url={endpoint!r})"

    async def _get_client(self) -> Any:
        if self._client is None:
            import s3fs

            self._fs = s3fs.S3FileSystem(
                asynchronous=True,
                skip_instance_cache=True,
                config_kwargs=self._config,
                **self._options,
            )
            self._client = await self._fs.set_session()
        return self._client

    async def _call(self, url: str, method: str, **kwargs: Any) -> Any:
        client = await self._get_client()
        try:
            return await getattr(client, method)(**kwargs)
        except AiofolioError:
            raise
        except Exception as exc:
            raise translate(exc, url) from exc

    async def stat(self, url: str) -> ObjectStat:
        bucket, key = split_s3(url)
        # ChecksumMode asks for the stored checksum headers (x-amz-checksum-crc32c ...).
        head = await self._call(url, "head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        return _stat_of(url, head, int(head["ContentLength"]))

    async def exists(self, url: str) -> bool:
        try:
            await self.stat(url)
        except FileNotFoundError:
            return False
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
        bucket, key = split_s3(url)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start > 0 or end is not None:
            kwargs["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        try:
            resp = await self._call(url, "get_object", **kwargs)
        except AiofolioError as exc:
            if getattr(exc, "status", None) != 416:
                raise
            headers = _response_headers(exc.__cause__)
            info = response_info(
                url,
                status=416,
                start=start,
                content_range=headers.get("content-range"),
                content_length=None,
            )
            check_pin(info, start=start, if_match=if_match, expected_size=expected_size)
            async with RangeReader(info, None) as empty:
                yield empty
            return
        body = resp["Body"]
        try:
            meta = resp.get("ResponseMetadata") or {}
            status = int(meta.get("HTTPStatusCode") or (206 if resp.get("ContentRange") else 200))
            length = resp.get("ContentLength")
            etag = _etag(resp.get("ETag"))
            digests = _digests(resp, whole=status == 200)
            info = response_info(
                url,
                status=status,
                start=start,
                content_range=resp.get("ContentRange"),
                content_length=int(length) if length is not None else None,
                etag=etag,
                token=etag,
                version=_version(resp),
                last_modified=_modified(resp),
                **digests,
            )
            check_pin(info, start=start, if_match=if_match, expected_size=expected_size)
            chunks = checked_body(
                info,
                _body_chunks(body, url),
                wire_length=info.length,
                expected_size=expected_size,
            )
            async with RangeReader(info, chunks) as reader:
                yield reader
        finally:
            body.close()

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        bucket, key = split_s3(url)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if token:
            kwargs["IfNoneMatch"] = f'"{token}"'
        client = await self._get_client()
        try:
            resp = await client.get_object(**kwargs)
            async with resp["Body"] as body:
                data = await body.read()
        except Exception as exc:
            if _status(exc) == 304:
                return NOT_MODIFIED
            raise translate(exc, url) from exc
        if len(data) != int(resp.get("ContentLength", len(data))):
            raise TransientError(f"truncated body: {url}", url=url)
        stat = _stat_of(url, resp, len(data))
        if token is not None and stat.token == token:
            return NOT_MODIFIED  # a store that ignores If-None-Match
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
        bucket, key = split_s3(url)
        extra: dict[str, Any] = {}
        if cache_control:
            extra["CacheControl"] = cache_control
        if content_type:
            extra["ContentType"] = content_type
        cond: dict[str, Any] = {}
        if if_match is not None:
            cond["IfMatch"] = f'"{if_match}"'
        if if_none_match:
            cond["IfNoneMatch"] = "*"
        size = len(data) if isinstance(data, bytes) else await file_size(data)
        try:
            if size > MULTIPART_THRESHOLD and isinstance(data, str):
                if cond:
                    # Fail before uploading every part. CompleteMultipartUpload carries the
                    # condition too, and that is the race-free check.
                    await self._check_condition(url, if_match, if_none_match)
                resp = await self._multipart(url, bucket, key, data, extra, cond, content_md5)
            else:
                body = data if isinstance(data, bytes) else await read_file(data)
                if content_md5:
                    # Checked here too: not every S3-compatible store checks Content-MD5.
                    _check_md5(url, content_md5, hashlib.md5(body, usedforsecurity=False))
                    extra["ContentMD5"] = md5_hex_to_b64(content_md5)
                resp = await self._call(
                    url, "put_object", Bucket=bucket, Key=key, Body=body, **extra, **cond
                )
        except RemoteNotFoundError as exc:
            # S3 answers a conditional write on a missing key with 404 NoSuchKey, not 412.
            if if_match is not None and _error_code(exc.__cause__) == "NoSuchKey":
                raise PreconditionFailedError(
                    f"object missing (precondition failed): {url}", url=url, status=412
                ) from exc
            raise
        # The stat comes from the PUT's own answer: a HEAD afterwards could describe another
        # writer's object, and a conditional writer would then build on the wrong token.
        etag = _etag(resp.get("ETag"))
        if etag is None:
            return await self.stat(url)
        return ObjectStat(
            url=url,
            size=size,
            etag=etag,
            token=etag,
            version=_version(resp),
            **_digests(resp),
        )

    async def _check_condition(self, url: str, if_match: str | None, if_none_match: bool) -> None:
        try:
            current: str | None = (await self.stat(url)).token
        except FileNotFoundError:
            current = None
        if if_none_match and current is not None:
            raise PreconditionFailedError(
                f"object already exists (precondition failed): {url}", url=url, status=412
            )
        if if_match is not None and current != if_match:
            raise PreconditionFailedError(
                f"object changed (precondition failed): {url}", url=url, status=412
            )

    async def _multipart(
        self,
        url: str,
        bucket: str,
        key: str,
        path: str,
        extra: dict[str, Any],
        cond: dict[str, Any],
        content_md5: str | None = None,
    ) -> dict[str, Any]:
        created = await self._call(url, "create_multipart_upload", Bucket=bucket, Key=key, **extra)
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        whole = hashlib.md5(usedforsecurity=False)
        try:
            number = 1
            async for block in iter_file_blocks(path, PART_SIZE):
                whole.update(block)
                md5 = base64.b64encode(hashlib.md5(block, usedforsecurity=False).digest()).decode()
                resp = await self._call(
                    url,
                    "upload_part",
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=block,
                    ContentMD5=md5,
                )
                parts.append({"ETag": resp["ETag"], "PartNumber": number})
                number += 1
            if content_md5:
                # No server checks a whole-object MD5 of a multipart upload: check it here,
                # before completing, so a mismatch leaves the object unchanged.
                _check_md5(url, content_md5, whole)
            done: dict[str, Any] = await self._call(
                url,
                "complete_multipart_upload",
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **cond,
            )
        except BaseException:
            with contextlib.suppress(AiofolioError):
                await self._call(
                    url, "abort_multipart_upload", Bucket=bucket, Key=key, UploadId=upload_id
                )
            raise
        return done

    async def list(self, url: str) -> list[ObjectStat]:
        bucket, prefix = split_s3(url)
        out: list[ObjectStat] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            resp = await self._call(url, "list_objects_v2", **kwargs)
            for obj in resp.get("Contents", []) or []:
                # A listing states no encryption: the ETag is taken as the MD5 when it looks
                # like one (a stat tells for sure).
                etag = _etag(obj.get("ETag"))
                md5 = md5_from_s3_etag(etag)
                out.append(
                    ObjectStat(
                        url=f"s3://{bucket}/{obj['Key']}",
                        size=int(obj["Size"]),
                        etag=etag,
                        token=etag,
                        md5=md5,
                        md5_source="etag" if md5 else None,
                        last_modified=_modified(obj),
                    )
                )
            if not resp.get("IsTruncated"):
                break
            token = resp.get("NextContinuationToken")
        return sorted(out, key=lambda s: s.url)

    async def delete(self, url: str) -> None:
        bucket, key = split_s3(url)
        await self._call(url, "delete_object", Bucket=bucket, Key=key)

    async def aclose(self) -> None:
        fs, self._fs, self._client = self._fs, None, None
        if fs is None:
            return
        creator = getattr(fs, "_s3creator", None)
        if creator is None:
            return
        if hasattr(creator, "clear"):
            await creator.clear()
        else:
            await creator.__aexit__(None, None, None)
