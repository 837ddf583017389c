"""Downloads of payloads into local files, verified while they stream.

Owns: :func:`fetch_into` (the download strategy of the cache: one stream for small objects,
pinned parallel ranged GETs into a preallocated file for large ones, hashing as bytes land) and
:func:`download_verified`, which streams an object into a unique temp file, computes
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

import anyio.to_thread

from aiofolio.backends import Backend
from aiofolio.backends.base import STREAM_CHUNK
from aiofolio.bundle import HashingWriter
from aiofolio.errors import ChecksumMismatchError, TransientError
from aiofolio.store import Hashers

__all__ = ["download_verified", "fetch_into"]

log = logging.getLogger("aiofolio.fetch")


async def _download_once(backend: Backend, url: str, tmp: str) -> tuple[str, int]:
    writer = await anyio.to_thread.run_sync(lambda: HashingWriter(tmp, fsync=False))
    try:
        async for chunk in backend.iter_range(url):
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    await anyio.to_thread.run_sync(writer.close)
    return writer.md5_hex, writer.size


async def download_verified(
    backend: Backend,
    url: str,
    dest: str,
    *,
    md5: str | None = None,
    size: int | None = None,
    attempts: int = 2,
) -> str:
    """Download ``url`` to the local path ``dest``, verified; return ``dest``.

    Args:
        backend: where to read from.
        url: the object.
        dest: the final local path (its folder must exist).
        md5: the expected MD5 hex, if the manifest records one.
        size: the expected size, if the manifest records one.
        attempts: downloads tried before a mismatch raises.

    Raises:
        ChecksumMismatchError: the bytes did not verify ``attempts`` times.
    """
    folder = os.path.dirname(dest) or "."
    for attempt in range(1, attempts + 1):
        tmp = os.path.join(folder, f".{os.path.basename(dest)}.{secrets.token_hex(6)}.part")
        try:
            got_md5, got_size = await _download_once(backend, url, tmp)
            bad = []
            if size is not None and got_size != size:
                bad.append(f"size {got_size} != {size}")
            if md5 is not None and got_md5 != md5.lower():
                bad.append(f"md5 {got_md5} != {md5}")
            if not bad:
                os.replace(tmp, dest)
                return dest
            log.warning(
                "download of %s did not verify (%s), attempt %d of %d",
                url,
                ", ".join(bad),
                attempt,
                attempts,
            )
            if attempt == attempts:
                raise ChecksumMismatchError(
                    f"{url} did not verify after {attempts} downloads: {', '.join(bad)}"
                )
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    raise AssertionError("unreachable")  # pragma: no cover


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
