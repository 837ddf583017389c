"""Translation of third-party and HTTP failures into the aiofolio error tree.

Owns: :func:`error_for_status` (an HTTP status to an error class) and :func:`translate`
(any exception raised by aiohttp, botocore/aiobotocore, gcsfs, fsspec or the OS into an
:class:`~aiofolio.errors.AiofolioError`). Backends call ``raise translate(exc, url) from exc``.
Third-party modules are imported lazily so that this module costs nothing at import.
"""

from __future__ import annotations

import asyncio
import email.utils
import errno
import time
from collections.abc import Mapping
from typing import Any

from aiofolio.errors import (
    AiofolioError,
    ChecksumMismatchError,
    PreconditionFailedError,
    RemoteError,
    RemoteNotFoundError,
    RemotePermissionError,
    RemoteTimeoutError,
    ThrottledError,
    TransientError,
)

__all__ = ["error_for_status", "parse_retry_after", "translate"]

_TRANSIENT_STATUSES = frozenset({408, 425, 500, 502, 503, 504})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NotFound", "404", "NoSuchVersion"})
_DENIED_CODES = frozenset(
    {"AccessDenied", "Forbidden", "403", "401", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)
_THROTTLE_CODES = frozenset(
    {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "429"}
)
_TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500", "502", "504"}
)
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_status(
    status: int,
    url: str,
    *,
    detail: str = "",
    headers: Mapping[str, str] | None = None,
) -> RemoteError:
    """The error for a failed HTTP status, with a message that names the URL and status."""
    suffix = f": {detail.strip()[:300]}" if detail and detail.strip() else ""
    if status == 404:
        return RemoteNotFoundError(f"not found: {url} (HTTP 404){suffix}", url=url, status=status)
    if status in (401, 403):
        return RemotePermissionError(
            f"access denied: {url} (HTTP {status}){suffix}", url=url, status=status
        )
    if status == 412:
        return PreconditionFailedError(
            f"object changed (precondition failed): {url} (HTTP 412){suffix}",
            url=url,
            status=status,
        )
    if status == 429:
        err = ThrottledError(f"throttled: {url} (HTTP 429){suffix}", url=url, status=status)
        err.retry_after = parse_retry_after((headers or {}).get("Retry-After"))
        return err
    if status in _TRANSIENT_STATUSES or 500 <= status < 600:
        err2 = TransientError(
            f"server error: {url} (HTTP {status}){suffix}", url=url, status=status
        )
        if headers is not None and headers.get("Retry-After"):
            # 503 may carry Retry-After too; ThrottledError is where we keep it.
            throttled = ThrottledError(str(err2), url=url, status=status)
            throttled.retry_after = parse_retry_after(headers.get("Retry-After"))
            return throttled
        return err2
    return RemoteError(f"request failed: {url} (HTTP {status}){suffix}", url=url, status=status)


def _from_botocore_client_error(exc: Any, url: str) -> AiofolioError:
    response = getattr(exc, "response", {}) or {}
    err = response.get("Error", {}) or {}
    code = str(err.get("Code", ""))
    meta = response.get("ResponseMetadata", {}) or {}
    status = int(meta.get("HTTPStatusCode") or 0)
    headers = meta.get("HTTPHeaders") or {}
    message = str(err.get("Message") or code or exc)
    if code in _NOT_FOUND_CODES or status == 404:
        return error_for_status(404, url, detail=message)
    if code in _DENIED_CODES or status in (401, 403):
        return error_for_status(status or 403, url, detail=message)
    if code in _PRECONDITION_CODES or status == 412:
        return error_for_status(412, url, detail=message)
    if code in _THROTTLE_CODES or status == 429:
        throttled = ThrottledError(
            f"throttled: {url} (HTTP {status or 503}, {code})", url=url, status=status or 503
        )
        throttled.retry_after = parse_retry_after(
            headers.get("retry-after") or headers.get("Retry-After")
        )
        return throttled
    if code in _TRANSIENT_CODES or status in _TRANSIENT_STATUSES or status >= 500:
        return error_for_status(status or 503, url, detail=message, headers=headers)
    return RemoteError(
        f"request failed: {url} (HTTP {status or '?'}, {code}): {message}", url=url, status=status
    )


def translate(exc: BaseException, url: str) -> AiofolioError:
    """Map any exception from a storage client to an aiofolio error naming ``url``.

    Errors that already belong to aiofolio are returned unchanged.
    """
    if isinstance(exc, AiofolioError):
        return exc
    name = type(exc).__name__
    module = type(exc).__module__ or ""

    # botocore / aiobotocore
    if module.startswith(("botocore", "aiobotocore")):
        # ClientError and its modeled subclasses carry a response dict. Timeouts also have a
        # ``response`` attribute (None, from requests' exception base), so test for the dict.
        if name == "ClientError" or isinstance(getattr(exc, "response", None), dict):
            return _from_botocore_client_error(exc, url)
        if "Timeout" in name:
            return RemoteTimeoutError(f"timed out: {url} ({name})", url=url)
        if name == "FlexibleChecksumError":
            return ChecksumMismatchError(f"checksum mismatch reading {url}: {exc}")
        if name in {
            "EndpointConnectionError",
            "ConnectionClosedError",
            "ResponseStreamingError",
            "IncompleteReadError",
            "ProxyConnectionError",
            "HTTPClientError",
            "ConnectionError",
        }:
            return TransientError(f"connection failed: {url} ({name}: {exc})", url=url)
        if "Credential" in name:
            return RemotePermissionError(f"no usable credentials for {url}: {exc}", url=url)
        return RemoteError(f"storage client error for {url}: {name}: {exc}", url=url)

    # aiohttp
    if module.startswith("aiohttp"):
        status = getattr(exc, "status", None)
        if isinstance(status, int) and status >= 400:
            headers = getattr(exc, "headers", None)
            return error_for_status(
                status, url, detail=str(getattr(exc, "message", "")), headers=headers
            )
        if "Timeout" in name:
            return RemoteTimeoutError(f"timed out: {url} ({name})", url=url)
        # ClientConnectionError, ServerDisconnectedError, ClientPayloadError, ...
        return TransientError(f"connection failed: {url} ({name}: {exc})", url=url)

    # gcsfs
    if name == "HttpError" and module.startswith("gcsfs"):
        code = getattr(exc, "code", None)
        status = int(code) if isinstance(code, int | str) and str(code).isdigit() else 0
        return error_for_status(status or 500, url, detail=str(getattr(exc, "message", "")))

    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return RemoteTimeoutError(f"timed out: {url}", url=url)
    if isinstance(exc, FileNotFoundError):
        return RemoteNotFoundError(f"not found: {url}", url=url, status=404)
    if isinstance(exc, PermissionError):
        return RemotePermissionError(f"access denied: {url}: {exc}", url=url, status=403)
    if isinstance(exc, ConnectionError | EOFError):
        return TransientError(f"connection failed: {url} ({name}: {exc})", url=url)
    if isinstance(exc, OSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT, errno.ECONNREFUSED):
            return TransientError(f"connection failed: {url} ({name}: {exc})", url=url)
        return RemoteError(f"I/O error for {url}: {exc}", url=url)
    return RemoteError(f"unexpected error for {url}: {name}: {exc}", url=url)
