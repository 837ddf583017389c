"""Storage backends: one async interface over local files, S3, GCS, HTTP(S) and memory.

Owns: choosing the implementation for a URL (:func:`scheme_of`, :func:`make_backend`) and
:class:`BackendPool`, which keeps one client per (scheme, storage options) on the event loop
that uses it and closes them all on shutdown. Every backend it hands out is wrapped in
:class:`~aiofolio.backends.retry.RetryingBackend`, so callers get retries and resumed streams.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiofolio.backends.base import (
    NOT_MODIFIED,
    Backend,
    NotModifiedType,
    ObjectStat,
)
from aiofolio.backends.retry import RetryingBackend, RetryPolicy

__all__ = [
    "NOT_MODIFIED",
    "Backend",
    "BackendPool",
    "NotModifiedType",
    "ObjectStat",
    "RetryPolicy",
    "RetryingBackend",
    "join_url",
    "make_backend",
    "scheme_of",
]

_SCHEMES = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gs",
    "gcs": "gs",
    "http": "http",
    "https": "http",
    "file": "file",
    "memory": "memory",
}


def scheme_of(url: str) -> str:
    """The backend family of a URL: ``s3``, ``gs``, ``http``, ``file`` or ``memory``.

    Plain paths (no ``://``) are ``file``. Unknown schemes raise ``ValueError``.
    """
    if "://" not in url:
        return "file"
    scheme = url.split("://", 1)[0].lower()
    try:
        return _SCHEMES[scheme]
    except KeyError:
        supported = ", ".join(sorted({f"{s}://" for s in _SCHEMES}))
        raise ValueError(
            f"unsupported URL scheme {scheme!r} in {url!r}; supported: {supported} and plain paths"
        ) from None


def join_url(base: str, relative: str) -> str:
    """Join a bundle URL and a relative POSIX path (``s3://b/x`` + ``a/b`` → ``s3://b/x/a/b``)."""
    return base.rstrip("/") + "/" + relative.lstrip("/")


def make_backend(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    retry: RetryPolicy | None = None,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
) -> RetryingBackend:
    """A new backend for ``url``'s scheme, wrapped in the retry policy.

    ``storage_options`` are passed on as pandas and fsspec pass them: to ``s3fs``/``gcsfs`` for
    cloud URLs; for HTTP, ``headers`` and ``client_kwargs`` are used.
    """
    scheme = scheme_of(url)
    options = dict(storage_options or {})
    inner: Backend
    if scheme == "s3":
        from aiofolio.backends.s3 import S3Backend

        inner = S3Backend(options, connect_timeout=connect_timeout, read_timeout=read_timeout)
    elif scheme == "gs":
        from aiofolio.backends.gcs import GCSBackend

        inner = GCSBackend(options, connect_timeout=connect_timeout, read_timeout=read_timeout)
    elif scheme == "http":
        from aiofolio.backends.http import HTTPBackend

        inner = HTTPBackend(
            headers=options.pop("headers", None),
            client_kwargs=options.pop("client_kwargs", None),
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
    elif scheme == "memory":
        from aiofolio.backends.memory import MemoryBackend

        inner = MemoryBackend()
    else:
        from aiofolio.backends.local import LocalBackend

        inner = LocalBackend()
    return RetryingBackend(inner, retry)


def _options_key(options: Mapping[str, Any] | None) -> str:
    return json.dumps(dict(options or {}), sort_keys=True, default=repr)


class BackendPool:
    """One client per (scheme, storage options, timeouts), reused; each caller picks its retries.

    A pool belongs to one event loop: create it, use it and close it there.
    """

    def __init__(self) -> None:
        self._raw: dict[tuple[str, str, float, float], Backend] = {}

    def __len__(self) -> int:
        return len(self._raw)

    def get(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        retry: RetryPolicy | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> RetryingBackend:
        """The backend for ``url``: a pooled client wrapped in the caller's retry policy."""
        key = (scheme_of(url), _options_key(storage_options), connect_timeout, read_timeout)
        raw = self._raw.get(key)
        if raw is None:
            raw = make_backend(
                url,
                storage_options,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            ).inner
            self._raw[key] = raw
        return RetryingBackend(raw, retry)

    def add(
        self,
        url: str,
        backend: Backend,
        storage_options: Mapping[str, Any] | None = None,
        *,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> None:
        """Register a ready-made client (tests use it for a scripted memory backend)."""
        key = (scheme_of(url), _options_key(storage_options), connect_timeout, read_timeout)
        self._raw[key] = backend

    async def aclose(self) -> None:
        """Close every client; the pool can be used again afterwards (it reopens lazily)."""
        backends, self._raw = list(self._raw.values()), {}
        for backend in backends:
            await backend.aclose()
