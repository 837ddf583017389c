"""An in-memory backend for engine tests, scriptable with latency, failures and changes.

Owns: :class:`MemoryBackend` (objects in a dict keyed by URL, ``memory://`` URLs) and its
scripting hooks: a per-call latency, a queue of errors to raise on the next calls, objects
replaced after K bytes of a read, and per-method call counts that tests assert on.

Semantics follow S3: a stream opened before an object is replaced keeps serving the old bytes;
a later request pinned with ``if_match`` to the old etag fails with 412.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from aiofolio.backends.base import (
    NOT_MODIFIED,
    BaseBackend,
    FetchResult,
    NotModifiedType,
    ObjectStat,
    RangeInfo,
    RangeReader,
    check_open_range,
    check_pin,
    read_file,
)
from aiofolio.errors import (
    AiofolioError,
    ChecksumMismatchError,
    PreconditionFailedError,
    RemoteNotFoundError,
)

__all__ = ["MemoryBackend"]


@dataclass
class _Object:
    data: bytes
    generation: int
    mtime: float
    cache_control: str | None = None

    @property
    def etag(self) -> str:
        return hashlib.md5(self.data, usedforsecurity=False).hexdigest() + f"-g{self.generation}"


@dataclass
class _Script:
    latency: float = 0.0
    errors: list[tuple[str, AiofolioError]] = field(default_factory=list)
    replace_after: dict[str, tuple[int, bytes]] = field(default_factory=dict)


class MemoryBackend(BaseBackend):
    """Objects held in memory, for tests of everything above the backend layer.

    Args:
        chunk_size: bytes per streamed chunk (small values let tests interleave reads).
    """

    scheme = "memory"

    def __init__(self, *, chunk_size: int = 64 * 1024, read_only: bool = False) -> None:
        self.objects: dict[str, _Object] = {}
        self.calls: Counter[str] = Counter()
        self.bytes_served = 0
        self.chunk_size = chunk_size
        self.read_only = read_only
        self.script = _Script()
        self._generation = 0

    def __repr__(self) -> str:
        return f"MemoryBackend({len(self.objects)} objects)"

    # -- scripting -------------------------------------------------------------------------
    def set(self, url: str, data: bytes) -> ObjectStat:
        """Store ``data`` at ``url`` directly (no call is counted)."""
        self._generation += 1
        self.objects[url] = _Object(bytes(data), self._generation, time.time())
        return self._stat(url, self.objects[url])

    def fail_next(self, error: AiofolioError, *, times: int = 1, method: str = "*") -> None:
        """Raise ``error`` on the next ``times`` calls of ``method`` (a glob; ``*`` = any)."""
        self.script.errors.extend([(method, error)] * times)

    def replace_after(self, url: str, after_bytes: int, new_data: bytes) -> None:
        """Replace the object once a read of it has streamed ``after_bytes`` bytes."""
        self.script.replace_after[url] = (after_bytes, new_data)

    def set_latency(self, seconds: float) -> None:
        """Delay every call by ``seconds`` before it answers."""
        self.script.latency = seconds

    # -- internals ---------------------------------------------------------------------------
    async def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if self.script.latency:
            await anyio.sleep(self.script.latency)
        for i, (pattern, error) in enumerate(self.script.errors):
            if fnmatch.fnmatch(method, pattern):
                del self.script.errors[i]
                raise error

    def _get(self, url: str) -> _Object:
        try:
            return self.objects[url]
        except KeyError:
            raise RemoteNotFoundError(f"not found: {url} (HTTP 404)", url=url, status=404) from None

    def _stat(self, url: str, obj: _Object) -> ObjectStat:
        return ObjectStat(
            url=url,
            size=len(obj.data),
            etag=obj.etag,
            version=str(obj.generation),
            md5=hashlib.md5(obj.data, usedforsecurity=False).hexdigest(),
            md5_source="store",
            last_modified=obj.mtime,
            token=obj.etag,
        )

    def _check_pin(self, url: str, obj: _Object, if_match: str | None) -> None:
        if if_match is not None and if_match not in (obj.etag, str(obj.generation)):
            raise PreconditionFailedError(
                f"object changed (precondition failed): {url} (HTTP 412)", url=url, status=412
            )

    # -- Backend -----------------------------------------------------------------------------
    async def stat(self, url: str) -> ObjectStat:
        await self._enter("stat")
        return self._stat(url, self._get(url))

    async def exists(self, url: str) -> bool:
        await self._enter("exists")
        return url in self.objects

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
        await self._enter("read")
        obj = self._get(url)
        self._check_pin(url, obj, if_match)
        data = obj.data  # a stream keeps the bytes it started with
        size = len(data)
        stop = size if end is None else min(end, size)
        info = RangeInfo(
            url=url,
            status=416 if start >= size and size > 0 else 206,
            start=start,
            length=max(0, stop - start),
            size=size,
            is_whole=start == 0 and stop == size,
            etag=obj.etag,
            token=obj.etag,
            version=str(obj.generation),
            md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            md5_source="store",
            last_modified=obj.mtime,
        )
        pin = None if if_match is None else obj.etag  # matched by etag or generation above
        check_pin(info, start=start, if_match=pin, expected_size=expected_size)

        async def body() -> AsyncIterator[bytes]:
            pos = start
            sent = 0
            while pos < stop:
                chunk = data[pos : min(pos + self.chunk_size, stop)]
                pos += len(chunk)
                sent += len(chunk)
                self.bytes_served += len(chunk)
                trigger = self.script.replace_after.get(url)
                if trigger is not None and sent >= trigger[0]:
                    del self.script.replace_after[url]
                    self.set(url, trigger[1])
                yield chunk
                await anyio.lowlevel.checkpoint()

        async with RangeReader(info, body()) as reader:
            yield reader

    async def fetch_if_changed(self, url: str, token: str | None) -> FetchResult | NotModifiedType:
        await self._enter("fetch_if_changed")
        obj = self._get(url)
        if token is not None and token in (obj.etag, str(obj.generation)):
            return NOT_MODIFIED
        self.bytes_served += len(obj.data)
        return obj.data, self._stat(url, obj)

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
        await self._enter("put")
        payload = data if isinstance(data, bytes) else await read_file(data)
        if content_md5 is not None:
            actual = hashlib.md5(payload, usedforsecurity=False).hexdigest()
            if actual != content_md5.lower():
                raise ChecksumMismatchError(
                    f"content MD5 mismatch writing {url}: expected {content_md5}, got {actual}"
                )
        current = self.objects.get(url)
        if if_none_match and current is not None:
            raise PreconditionFailedError(
                f"object already exists (precondition failed): {url}", url=url, status=412
            )
        if if_match is not None:
            if current is None:
                raise PreconditionFailedError(
                    f"object missing (precondition failed): {url}", url=url, status=412
                )
            self._check_pin(url, current, if_match)
        stat = self.set(url, payload)
        self.objects[url].cache_control = cache_control
        return stat

    async def list(self, url: str) -> list[ObjectStat]:
        await self._enter("list")
        return [self._stat(u, o) for u, o in sorted(self.objects.items()) if u.startswith(url)]

    async def delete(self, url: str) -> None:
        await self._enter("delete")
        self.objects.pop(url, None)

    async def aclose(self) -> None:
        return None
