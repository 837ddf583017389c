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
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

import anyio.to_thread

from aiofolio.backends import Backend
from aiofolio.backends.base import STREAM_CHUNK, RangeInfo, RangeReader, trim_range
from aiofolio.engine.progress import report_bytes
from aiofolio.engine.resume import Journal, Registry
from aiofolio.errors import ChecksumMismatchError, PreconditionFailedError, TransientError
from aiofolio.store import Hashers, is_available

__all__ = [
    "INLINE_MAX",
    "Chunking",
    "Fetched",
    "Verified",
    "download_verified",
    "fetch_into",
    "fetch_verified",
]

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


@dataclass(frozen=True)
class Verified:
    """A verified download: the temp file (the caller owns it), its hashes and how it verified.

    Attributes:
        verified_by: ``"md5 (manifest)"``, ``"md5 (<source>)"`` for a digest the store stated
            (``etag``, ``store``, ``content-md5``, ``digest``), ``"crc32c (store)"``, or
            ``"size and version only"`` when nothing states the bytes' digest.
    """

    path: str
    hashers: Hashers
    size: int
    verified_by: str
    fetched: Fetched


def _b64_to_hex(value: str) -> str | None:
    import base64
    import binascii

    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return None


def _check(
    got: Fetched, hashers: Hashers, md5: str | None, size: int | None
) -> tuple[list[str], str]:
    """What does not verify, and what the verification rested on."""
    bad: list[str] = []
    if size is not None and got.size != size:
        bad.append(f"size {got.size} != {size}")
    if md5 is not None:
        by = "md5 (manifest)"
        expected: str | None = md5.lower()
    elif got.md5 is not None:
        by, expected = f"md5 ({got.md5_source or 'store'})", got.md5.lower()
    else:
        by, expected = "size and version only", None
    if expected is not None and hashers.hexdigest("md5") != expected:
        bad.append(f"md5 {hashers.hexdigest('md5')} != {expected} ({by})")
    elif expected is None and got.crc32c is not None and "crc32c" in hashers.algorithms:
        by = "crc32c (store)"
        want = _b64_to_hex(got.crc32c)
        if want is not None and hashers.hexdigest("crc32c") != want:
            bad.append(f"crc32c {hashers.hexdigest('crc32c')} != {want} (store)")
    return bad, by


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
    on_size: Callable[[int], Awaitable[None]] | None = None,
) -> Verified:
    """Download ``url`` into a temp file and verify it; the caller then owns the file.

    The bytes are hashed with MD5 (and CRC32C where available) and ``algorithms`` while they
    land (:func:`fetch_into`). They are checked against the manifest's size and MD5; when the
    manifest records no MD5, against the digest the store stated for the object (S3's ETag of
    a single-part upload, GCS ``md5Hash`` or ``crc32c``, HTTP ``Content-MD5``/``Digest``);
    failing all of those, only the size and the object's version (every ranged response is
    pinned to it) vouch for the bytes. A download that does not verify, or whose object was
    replaced mid-way, is deleted and tried again, up to ``attempts`` times.

    With ``resume_dir`` (the folder ``new_temp`` writes in), a ranged download of an object
    with a version token is journaled there and resumes a partial that an earlier download of
    ``url`` left (:mod:`aiofolio.engine.resume`; ``resume_registry`` lists this process's
    journals), keyed by the token, the size and the MD5 that will verify it. The partial is
    kept when the download fails with a :class:`~aiofolio.errors.TransientError` (or the
    process dies), and deleted otherwise.

    Args:
        new_temp: gives a fresh, unique temp path for attempt number N (1-based).
        resume_dir: the temp folder of the cache, to resume downloads across runs.
        on_size: awaited with the object's size as soon as the first response states it,
            before the bulk of the bytes (the hard limit reserves there; it may raise).

    Raises:
        ChecksumMismatchError: the bytes did not verify ``attempts`` times.
        PreconditionFailedError: the object kept changing during the downloads.
    """
    wanted = sorted({"md5", *algorithms, *(("crc32c",) if is_available("crc32c") else ())})
    for attempt in range(1, attempts + 1):
        tmp = os.fspath(new_temp(attempt))
        hashers = Hashers(wanted)
        journal = (
            Journal(os.fspath(resume_dir), (md5 or "").lower(), resume_registry or Registry())
            if resume_dir is not None
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
                    on_size=on_size,
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
            bad, verified_by = _check(got, hashers, md5, size)
            if not bad:
                keep = True
                return Verified(tmp, hashers, got.size, verified_by, got)
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
    done = await fetch_verified(
        backend,
        url,
        lambda n: os.path.join(folder, f".{base}.{n}.{secrets.token_hex(6)}.part"),
        md5=md5,
        size=size,
        chunking=chunking,
    )
    os.replace(done.path, dest)
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
    on_size: Callable[[int], Awaitable[None]] | None = None,
) -> Fetched:
    """Download ``url`` into the new local file ``path``, hashing it on the way.

    A known size below ``parallel_threshold`` (or ``streams <= 1``): one streaming GET. A
    known size at or above it, or no size at all (datafolio records none for arrays, JSON and
    models): the first request is a ranged GET of the first ``chunk_size`` bytes, whose answer
    states the total size and the version token. An object no larger than that arrives whole
    in this one answer; a larger one gets the rest as ranged GETs of ``chunk_size`` with
    ``streams`` in flight, each pinned to that version (so an object replaced mid-download
    fails with :class:`~aiofolio.errors.PreconditionFailedError` instead of mixing bytes),
    written at their offsets into a preallocated file. The contiguous prefix is hashed as
    chunks land, so verification needs no second pass. With a ``journal`` (given by
    :func:`fetch_verified`), the ranged path resumes a matching partial and journals its chunks.
    """
    if size_hint is not None and (size_hint < parallel_threshold or streams <= 1):
        async with backend.open_range(url, expected_size=size_hint) as reader:
            if size_hint <= INLINE_MAX:
                return await _land_small(reader, path, hashers)
            return await _land_stream(reader, path, hashers)
    if journal is not None and journal.has_partial(url):
        # A partial to resume: the size and token come from a stat, so no byte of a chunk
        # that may already be on disk is fetched again.
        stat = await backend.stat(url)
        if size_hint is not None and stat.size != size_hint:
            raise PreconditionFailedError(
                f"{url} is {stat.size} bytes, the manifest says {size_hint}", url=url
            )
        if on_size is not None:
            await on_size(stat.size)
        if stat.size >= parallel_threshold and streams > 1:
            return await _fetch_ranges(
                backend,
                url,
                path,
                hashers,
                first=None,
                info=RangeInfo(
                    url=url,
                    status=200,
                    start=0,
                    length=None,
                    size=stat.size,
                    is_whole=False,
                    etag=stat.etag,
                    token=stat.token,
                    version=stat.version,
                    md5=stat.md5,
                    md5_source=stat.md5_source,
                    crc32c=stat.crc32c,
                ),
                chunk=chunk_size,
                streams=streams,
                journal=journal,
            )
    async with backend.open_range(url, 0, chunk_size, expected_size=size_hint) as first:
        total = first.info.size
        if first.is_whole or total is None or total <= chunk_size:
            if total is not None and on_size is not None:
                await on_size(total)
            # Small, a server that ignores Range, or no stated total: the first answer is it
            # (for a 206 without a total, the rest follows as one stream).
            if first.is_whole and total is not None and total <= INLINE_MAX:
                return await _land_small(first, path, hashers)
            got = await _land_stream(first, path, hashers)
            if first.is_whole or (total is not None and got.size >= total):
                return got
            return await _land_rest(backend, url, path, hashers, got, first.info)
        if on_size is not None:
            await on_size(total)
        return await _fetch_ranges(
            backend,
            url,
            path,
            hashers,
            first=first,
            info=first.info,
            chunk=chunk_size,
            streams=max(1, streams),
            journal=journal,
        )


async def _land_small(
    reader: RangeReader, path: str | os.PathLike[str], hashers: Hashers
) -> Fetched:
    """A small object: into memory, then hashed and written on the loop.

    For at most :data:`INLINE_MAX` bytes, hashing and one write take microseconds: cheaper
    than the thread hops of :func:`_land_stream`, which is what a warm of thousands of small
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


async def _land_stream(
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


async def _land_rest(
    backend: Backend,
    url: str,
    path: str | os.PathLike[str],
    hashers: Hashers,
    got: Fetched,
    info: RangeInfo,
) -> Fetched:
    """The rest of an object whose first ranged answer stated no total: one pinned stream."""
    rest = backend.iter_range(url, got.size, None, if_match=info.token)
    more = await _land_stream(rest, path, hashers, mode="ab")
    return Fetched(got.size + more.size, info.token, info.md5, info.md5_source, info.crc32c)


async def _fetch_ranges(
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
