"""Landing downloaded bytes in local files: one stream, or pinned parallel ranges.

Owns: :class:`Fetched` (what a download learnt of the object: size, version, the store's
digests) and the landing strategies :mod:`aiofolio.engine.fetch` picks from: a small object
into memory then one write (:func:`land_small`), one stream hashed and written off the loop
(:func:`land_stream`, :func:`land_rest`), and ranged GETs of ``chunk`` bytes with ``streams``
in flight, each pinned to the object's version, written at their offsets into a preallocated
file while the contiguous prefix is hashed (:func:`fetch_ranges`), journaled for resume.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
import anyio.to_thread

from aiofolio.backends import Backend
from aiofolio.backends.base import STREAM_CHUNK, RangeInfo, RangeReader, trim_range
from aiofolio.engine.progress import report_bytes
from aiofolio.engine.resume import Journal
from aiofolio.errors import TransientError
from aiofolio.store import Hashers

__all__ = ["Fetched", "fetch_ranges", "land_rest", "land_small", "land_stream"]


@dataclass(frozen=True)
class Fetched:
    """What one download learnt of the object: its size, version and the store's digests."""

    size: int
    token: str | None = None
    md5: str | None = None
    md5_source: str | None = None
    crc32c: str | None = None

    @classmethod
    def of(cls, size: int, info: RangeInfo | None) -> Fetched:
        if info is None:
            return cls(size)
        return cls(size, info.token, info.md5, info.md5_source, info.crc32c)


async def land_small(
    reader: RangeReader, path: str | os.PathLike[str], hashers: Hashers
) -> Fetched:
    """A small object: into memory, then hashed and written on the loop.

    For small objects (the engine's 256 KiB bound), hashing and one write take microseconds: cheaper
    than the thread hops of :func:`land_stream`, which is what a warm of thousands of small
    items pays per item.
    """
    pieces: list[bytes] = []
    size = 0
    async for chunk in reader:
        pieces.append(chunk)
        size += len(chunk)
        report_bytes(len(chunk))
    data = b"".join(pieces)
    hashers.update(data)
    with open(path, "wb") as fh:  # noqa: ASYNC230 - at most 256 KiB: microseconds
        fh.write(data)
    return Fetched.of(size, reader.info)


async def land_stream(
    chunks: AsyncIterator[bytes] | RangeReader,
    path: str | os.PathLike[str],
    hashers: Hashers,
    *,
    mode: str = "wb",
) -> Fetched:
    fh = await anyio.to_thread.run_sync(open, path, mode)
    size = 0

    def land(chunk: bytes) -> None:
        # hashlib releases the GIL on large buffers: hash and write off the loop.
        hashers.update(chunk)
        fh.write(chunk)

    try:
        async for chunk in chunks:
            size += len(chunk)
            await anyio.to_thread.run_sync(land, chunk)
            report_bytes(len(chunk))
    finally:
        await anyio.to_thread.run_sync(fh.close)
    info = chunks.info if isinstance(chunks, RangeReader) else None
    return Fetched.of(size, info)


async def land_rest(
    backend: Backend,
    url: str,
    path: str | os.PathLike[str],
    hashers: Hashers,
    got: Fetched,
    info: RangeInfo,
) -> Fetched:
    """The rest of an object whose first ranged answer stated no total: one pinned stream."""
    rest = backend.iter_range(url, got.size, None, if_match=info.token)
    more = await land_stream(rest, path, hashers, mode="ab")
    return Fetched(got.size + more.size, info.token, info.md5, info.md5_source, info.crc32c)


async def fetch_ranges(
    backend: Backend,
    url: str,
    path: str | os.PathLike[str],
    hashers: Hashers,
    *,
    first: RangeReader | None,
    info: RangeInfo,
    chunk: int,
    streams: int,
    journal: Journal | None = None,
) -> Fetched:
    """The ranged download of an object of ``info.size`` bytes pinned to ``info.token``.

    ``first`` is the open answer for the first chunk (None: every chunk is requested here).
    """
    size, token = info.size, info.token
    assert size is not None
    if journal is not None and info.md5 is not None and not journal.md5:
        journal.md5 = info.md5.lower()  # the store's digest verifies a resumed partial too
    done: dict[int, int] = {}
    if journal is not None:
        done = await anyio.to_thread.run_sync(
            journal.start, url, token, size, chunk, os.fspath(path)
        )
    if first is not None and 0 in done:
        await first.aclose()  # resumed: the first chunk is (partly) on disk already
        first = None
    full = {s: e for s, e in done.items() if e == min(size, s + chunk)}
    resume_at = {s: e for s, e in done.items() if s not in full}  # a chunk's written prefix
    fd = os.open(path, os.O_RDWR | os.O_CREAT | (0 if done else os.O_TRUNC), 0o600)
    try:
        os.ftruncate(fd, size)
        landed: dict[int, int] = dict(full)  # start -> end of chunks on disk, not yet hashed
        if done:
            report_bytes(sum(end - start for start, end in done.items()))
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

        async def land(start: int, end: int, pieces: AsyncIterator[bytes], pos: int) -> None:
            async for piece in pieces:
                await anyio.to_thread.run_sync(os.pwrite, fd, piece, pos)
                pos += len(piece)
                report_bytes(len(piece))
                if journal is not None and pos < end:
                    await journal.progress(start, pos)
            if pos != end:
                raise TransientError(f"range {start}-{end} of {url} ended at {pos}", url=url)
            if journal is not None:
                await journal.mark(start, end)
            landed[start] = end
            await advance()

        async def one(start: int, end: int) -> None:
            async with limit:
                at = resume_at.get(start, start)
                pieces = backend.iter_range(url, at, end, if_match=token, expected_size=size)
                await land(start, end, pieces, at)

        async def head(reader: RangeReader) -> None:
            async with limit:
                end = min(size, chunk)
                await land(0, end, trim_range(reader, 0, end), 0)

        async def advance() -> None:
            # Hash the contiguous prefix (resumed chunks are read back from disk here too).
            nonlocal hashed
            async with hash_lock:
                while hashed in landed:
                    stop = landed.pop(hashed)
                    await anyio.to_thread.run_sync(hash_region, hashed, stop)
                    hashed = stop

        # Not a task group: its ExceptionGroup would hide the error class callers act on
        # (PreconditionFailedError), and Python 3.10 has no except*.
        tasks = [asyncio.ensure_future(advance())]
        if first is not None:
            tasks.append(asyncio.ensure_future(head(first)))
        tasks += [
            asyncio.ensure_future(one(start, min(size, start + chunk)))
            for start in range(0 if first is None else chunk, size, chunk)
            if start not in full
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
        return Fetched(size, token, info.md5, info.md5_source, info.crc32c)
    finally:
        os.close(fd)
