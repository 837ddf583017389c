"""Downloads of payloads into local files, verified while they stream.

Owns: :func:`fetch_into` (the download strategy of the cache: one stream for small objects,
pinned parallel ranged GETs into a preallocated file for large ones, hashing as bytes land) and
:func:`fetch_verified`, the one verify-and-retry loop (used by the cache and by uncached reads
through :func:`download_verified`), which streams an object into a unique temp file, computes
MD5 and size on the way (no second pass), checks them against what the manifest records,
downloads once more on a mismatch, and only then moves the file into place with
``os.replace``. Bytes that fail verification are never published or returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio.to_thread

from aiofolio.backends import Backend
from aiofolio.backends.base import STREAM_CHUNK
from aiofolio.errors import ChecksumMismatchError, PreconditionFailedError, TransientError
from aiofolio.store import Hashers

__all__ = ["Chunking", "download_verified", "fetch_into", "fetch_verified"]

log = logging.getLogger("aiofolio.fetch")


@dataclass(frozen=True)
class Chunking:
    """How large downloads are split: see :func:`fetch_into`."""

    parallel_threshold: int = 16 * 1024 * 1024
    chunk_size: int = 8 * 1024 * 1024
    streams: int = 8


async def fetch_verified(
    backend: Backend,
    url: str,
    new_temp: Callable[[int], str | os.PathLike[str]],
    *,
    md5: str | None,
    size: int | None,
    algorithms: Iterable[str] = (),
    chunking: Chunking = Chunking(),
    attempts: int = 2,
) -> tuple[str, Hashers, int]:
    """Download ``url`` into a temp file and verify it; the caller then owns the file.

    The bytes are hashed with MD5 and ``algorithms`` while they land (:func:`fetch_into`).
    A download whose size or MD5 differs from the manifest's, or whose object was replaced
    mid-way, is deleted and tried again, up to ``attempts`` times.

    Args:
        new_temp: gives a fresh, unique temp path for attempt number N (1-based).

    Returns:
        The temp path, its hashers and its size. Move it into place or delete it.

    Raises:
        ChecksumMismatchError: the bytes did not verify ``attempts`` times.
        PreconditionFailedError: the object kept changing during the downloads.
    """
    for attempt in range(1, attempts + 1):
        tmp = os.fspath(new_temp(attempt))
        hashers = Hashers(sorted({"md5", *algorithms}))
        keep = False
        try:
            try:
                got = await fetch_into(
                    backend,
                    url,
                    tmp,
                    hashers,
                    size_hint=size,
                    parallel_threshold=chunking.parallel_threshold,
                    chunk_size=chunking.chunk_size,
                    streams=chunking.streams,
                )
            except PreconditionFailedError as exc:
                # Replaced mid-download: the pinned ranges refused to mix versions.
                log.warning("%s changed during the download (%s), attempt %d", url, exc, attempt)
                if attempt == attempts:
                    raise
                continue
            bad = []
            if size is not None and got != size:
                bad.append(f"size {got} != {size}")
            if md5 is not None and hashers.hexdigest("md5") != md5.lower():
                bad.append(f"md5 {hashers.hexdigest('md5')} != {md5}")
            if not bad:
                keep = True
                return tmp, hashers, got
            log.warning(
                "download of %s did not verify (%s), attempt %d of %d",
                url,
                ", ".join(bad),
                attempt,
                attempts,
            )
            if attempt == attempts:
                raise ChecksumMismatchError(
                    f"{url} did not verify after {attempts} downloads: {', '.join(bad)}; "
                    "nothing was kept"
                )
        finally:
            if not keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
    raise AssertionError("unreachable")  # pragma: no cover


async def download_verified(
    backend: Backend,
    url: str,
    dest: str,
    *,
    md5: str | None = None,
    size: int | None = None,
    chunking: Chunking = Chunking(),
) -> str:
    """Download ``url`` to the local path ``dest`` (its folder must exist), verified."""
    folder = os.path.dirname(dest) or "."
    base = os.path.basename(dest)
    tmp, _, _ = await fetch_verified(
        backend,
        url,
        lambda n: os.path.join(folder, f".{base}.{n}.{secrets.token_hex(6)}.part"),
        md5=md5,
        size=size,
        chunking=chunking,
    )
    os.replace(tmp, dest)
    return dest


async def fetch_into(
    backend: Backend,
    url: str,
    path: str | os.PathLike[str],
    hashers: Hashers,
    *,
    size_hint: int | None,
    parallel_threshold: int,
    chunk_size: int,
    streams: int,
) -> int:
    """Download ``url`` into the new local file ``path``, hashing it on the way; return its size.

    Below ``parallel_threshold`` (or with no size known): one streaming GET, no extra request.
    At or above it: one ``stat`` for the size and the version token, then ranged GETs of
    ``chunk_size`` with ``streams`` in flight, each pinned to that version (so an object
    replaced mid-download fails with :class:`~aiofolio.errors.PreconditionFailedError` instead
    of mixing bytes), written at their offsets into a preallocated file. The contiguous prefix
    is hashed as chunks land, so verification needs no second network pass; memory stays near
    ``chunk_size`` plus one streamed piece per connection.
    """
    if size_hint is None or size_hint < parallel_threshold or streams <= 1:
        return await _fetch_stream(backend, url, path, hashers)
    stat = await backend.stat(url)
    if stat.size < parallel_threshold:
        return await _fetch_stream(backend, url, path, hashers)
    return await _fetch_ranges(
        backend,
        url,
        path,
        hashers,
        size=stat.size,
        token=stat.token,
        chunk=chunk_size,
        streams=streams,
    )


async def _fetch_stream(
    backend: Backend, url: str, path: str | os.PathLike[str], hashers: Hashers
) -> int:
    fh = await anyio.to_thread.run_sync(open, path, "wb")
    size = 0

    def land(chunk: bytes) -> None:
        # hashlib releases the GIL on large buffers: hash and write off the loop.
        hashers.update(chunk)
        fh.write(chunk)

    try:
        async for chunk in backend.iter_range(url):
            size += len(chunk)
            await anyio.to_thread.run_sync(land, chunk)
    finally:
        await anyio.to_thread.run_sync(fh.close)
    return size


async def _fetch_ranges(
    backend: Backend,
    url: str,
    path: str | os.PathLike[str],
    hashers: Hashers,
    *,
    size: int,
    token: str | None,
    chunk: int,
    streams: int,
) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.ftruncate(fd, size)
        landed: dict[int, int] = {}  # start -> end of chunks written but not yet hashed
        hashed = 0
        hash_lock = anyio.Lock()
        limit = anyio.Semaphore(streams)

        def hash_region(start: int, end: int) -> None:
            pos = start
            while pos < end:
                data = os.pread(fd, min(STREAM_CHUNK, end - pos), pos)
                if not data:
                    raise TransientError(f"short local read at {pos} of {path}")
                hashers.update(data)
                pos += len(data)

        async def one(start: int, end: int) -> None:
            nonlocal hashed
            async with limit:
                pos = start
                async for piece in backend.iter_range(url, start, end, if_match=token):
                    await anyio.to_thread.run_sync(os.pwrite, fd, piece, pos)
                    pos += len(piece)
                if pos != end:
                    raise TransientError(f"range {start}-{end} of {url} ended at {pos}", url=url)
            async with hash_lock:
                landed[start] = end
                while hashed in landed:
                    stop = landed.pop(hashed)
                    await anyio.to_thread.run_sync(hash_region, hashed, stop)
                    hashed = stop

        # Not a task group: its ExceptionGroup would hide the error class callers act on
        # (PreconditionFailedError), and Python 3.10 has no except*.
        tasks = [
            asyncio.ensure_future(one(start, min(size, start + chunk)))
            for start in range(0, size, chunk)
        ]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if hashed != size:  # pragma: no cover - every chunk landed, so the prefix is whole
            raise TransientError(f"hashed {hashed} of {size} bytes of {url}", url=url)
        return size
    finally:
        os.close(fd)
