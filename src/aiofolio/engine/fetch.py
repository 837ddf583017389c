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

import contextlib
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiofolio.backends import Backend
from aiofolio.backends.base import RangeInfo
from aiofolio.engine.ranges import Fetched, fetch_ranges, land_rest, land_small, land_stream
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
    # CRC32C only when the manifest has no MD5 (a GCS object may state only a CRC32C).
    crc = ("crc32c",) if md5 is None and is_available("crc32c") else ()
    wanted = sorted({"md5", *algorithms, *crc})
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
        async with backend.open_range(url) as reader:
            if reader.info.size is not None and reader.info.size != size_hint:
                return Fetched.of(reader.info.size, reader.info)  # not the manifest's: fails
            if size_hint <= INLINE_MAX:
                return await land_small(reader, path, hashers)
            return await land_stream(reader, path, hashers)
    if journal is not None and journal.has_partial(url):
        # A partial to resume: the size and token come from a stat, so no byte of a chunk
        # that may already be on disk is fetched again.
        stat = await backend.stat(url)
        if size_hint is not None and stat.size != size_hint:
            return Fetched(stat.size, stat.token, stat.md5, stat.md5_source, stat.crc32c)
        if on_size is not None:
            await on_size(stat.size)
        if stat.size >= parallel_threshold and streams > 1:
            return await fetch_ranges(
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
    async with backend.open_range(url, 0, chunk_size) as first:
        total = first.info.size
        if total is not None and size_hint is not None and total != size_hint:
            # Not the size the manifest records: it cannot verify, so fetch none of the bulk.
            return Fetched.of(total, first.info)
        if first.is_whole or total is None or total <= chunk_size:
            if total is not None and on_size is not None:
                await on_size(total)
            # Small, a server that ignores Range, or no stated total: the first answer is it
            # (for a 206 without a total, the rest follows as one stream).
            if first.is_whole and total is not None and total <= INLINE_MAX:
                return await land_small(first, path, hashers)
            got = await land_stream(first, path, hashers)
            if first.is_whole or (total is not None and got.size >= total):
                return got
            return await land_rest(backend, url, path, hashers, got, first.info)
        if on_size is not None:
            await on_size(total)
        return await fetch_ranges(
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
