"""Downloads of payloads into local files, verified while they stream.

Owns: :func:`fetch_into` (the download strategy: one stream for small objects, pinned parallel
ranged GETs into a preallocated file for large ones, hashing as bytes land) and
:func:`fetch_verified`, the one verify-and-retry loop (used by the cache and by uncached reads
through :func:`download_verified`), which streams an object into a unique temp file, computes
MD5 and size on the way (no second pass), checks them against what the manifest records,
downloads once more on a mismatch, and only then hands the file over. Bytes that fail
verification are never published or returned. Large downloads into the cache's temp folder
are journaled for resume (:mod:`aiofolio.engine.resume`): the partial and sidecar are kept only
after a crash or a network failure (:class:`~aiofolio.errors.TransientError`); success,
verification failures, a changed object, cancellation and Ctrl-C delete both.
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
from aiofolio.engine.progress import report_bytes
from aiofolio.engine.resume import Journal, Registry
from aiofolio.errors import ChecksumMismatchError, PreconditionFailedError, TransientError
from aiofolio.store import Hashers

__all__ = ["INLINE_MAX", "Chunking", "download_verified", "fetch_into", "fetch_verified"]

log = logging.getLogger("aiofolio.fetch")

INLINE_MAX = 256 * 1024
"""Small-payload bound of the engine: such objects are downloaded, and their cache hits
verified and deserialized, without worker-thread hops (hashing them takes microseconds)."""


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
    resume_dir: str | os.PathLike[str] | None = None,
    resume_registry: Registry | None = None,
) -> tuple[str, Hashers, int]:
    """Download ``url`` into a temp file and verify it; the caller then owns the file.

    The bytes are hashed with MD5 and ``algorithms`` while they land (:func:`fetch_into`).
    A download whose size or MD5 differs from the manifest's, or whose object was replaced
    mid-way, is deleted and tried again, up to ``attempts`` times.

    With ``resume_dir`` (the folder ``new_temp`` writes in), a ranged download of an object
    with a version token and a known ``md5`` is journaled there and resumes a partial that an
    earlier download of ``url`` left (:mod:`aiofolio.engine.resume`; ``resume_registry``
    lists this process's journals). The partial is kept when the download fails with a
    :class:`~aiofolio.errors.TransientError` (or the process dies), and deleted otherwise.

    Args:
        new_temp: gives a fresh, unique temp path for attempt number N (1-based).
        resume_dir: the temp folder of the cache, to resume downloads across runs.

    Returns:
        The temp path, its hashers and its size. Move it into place or delete it.

    Raises:
        ChecksumMismatchError: the bytes did not verify ``attempts`` times.
        PreconditionFailedError: the object kept changing during the downloads.
    """
    for attempt in range(1, attempts + 1):
        tmp = os.fspath(new_temp(attempt))
        hashers = Hashers(sorted({"md5", *algorithms}))
        journal = (
            Journal(os.fspath(resume_dir), md5.lower(), resume_registry or Registry())
            if resume_dir is not None and md5 is not None  # the final MD5 covers resumed bytes
            else None
        )
        keep = False
        keep_partial = False
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
                    journal=journal,
                )
            except TransientError:
                # Network trouble: a journaled partial stays for the next call or run.
                keep_partial = journal is not None and journal.written
                raise
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
            if keep_partial:
                assert journal is not None
                journal.release()
                log.info("kept the partial download of %s for a later resume", url)
            else:
                if journal is not None:
                    journal.discard()
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
    journal: Journal | None = None,
) -> int:
    """Download ``url`` into the new local file ``path``, hashing it on the way; return its size.

    Below ``parallel_threshold`` (or with no size known): one streaming GET, no extra request.
    At or above it: one ``stat`` for the size and the version token, then ranged GETs of
    ``chunk_size`` with ``streams`` in flight, each pinned to that version (so an object
    replaced mid-download fails with :class:`~aiofolio.errors.PreconditionFailedError` instead
    of mixing bytes), written at their offsets into a preallocated file. The contiguous prefix
    is hashed as chunks land, so verification needs no second network pass; memory stays near
    ``chunk_size`` plus one streamed piece per connection. With a ``journal`` (given by
    :func:`fetch_verified`), the ranged path resumes a matching partial and journals its chunks.
    """
    if size_hint is not None and size_hint <= INLINE_MAX:
        return await _fetch_small(backend, url, path, hashers)
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
        journal=journal,
    )


async def _fetch_small(
    backend: Backend, url: str, path: str | os.PathLike[str], hashers: Hashers
) -> int:
    """A small object: streamed into memory, then hashed and written on the loop.

    For at most :data:`INLINE_MAX` bytes (a bound the body may exceed only if the store
    serves more than the manifest says; verification then fails), hashing and one write
    take microseconds: cheaper than the thread hops of :func:`_fetch_stream`, which is what
    a warm of thousands of small items pays per item.
    """
    pieces: list[bytes] = []
    size = 0
    async for chunk in backend.iter_range(url):
        pieces.append(chunk)
        size += len(chunk)
        report_bytes(len(chunk))
    data = b"".join(pieces)
    hashers.update(data)
    with open(path, "wb") as fh:  # noqa: ASYNC230 - at most 256 KiB: microseconds
        fh.write(data)
    return size


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
            report_bytes(len(chunk))
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
    journal: Journal | None = None,
) -> int:
    done: dict[int, int] = {}
    if journal is not None:
        done = await anyio.to_thread.run_sync(
            journal.start, url, token, size, chunk, os.fspath(path)
        )
    fd = os.open(path, os.O_RDWR | os.O_CREAT | (0 if done else os.O_TRUNC), 0o600)
    try:
        os.ftruncate(fd, size)
        landed: dict[int, int] = dict(done)  # start -> end of chunks on disk, not yet hashed
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

        async def one(start: int, end: int) -> None:
            async with limit:
                pos = start
                async for piece in backend.iter_range(url, start, end, if_match=token):
                    await anyio.to_thread.run_sync(os.pwrite, fd, piece, pos)
                    pos += len(piece)
                    report_bytes(len(piece))
                if pos != end:
                    raise TransientError(f"range {start}-{end} of {url} ended at {pos}", url=url)
            if journal is not None:
                await journal.mark(start, end)
            landed[start] = end
            await advance()

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
        tasks = [asyncio.ensure_future(advance())] + [
            asyncio.ensure_future(one(start, min(size, start + chunk)))
            for start in range(0, size, chunk)
            if start not in done
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
