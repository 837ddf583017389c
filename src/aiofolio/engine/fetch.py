"""Downloads of payloads into local files, verified while they stream.

Owns: :func:`fetch_into` (the download strategy of the cache: one stream for small objects,
pinned parallel ranged GETs into a preallocated file for large ones, hashing as bytes land) and
:func:`fetch_verified`, the one verify-and-retry loop (used by the cache and by uncached reads
through :func:`download_verified`), which streams an object into a unique temp file, computes
MD5 and size on the way (no second pass), checks them against what the manifest records,
downloads once more on a mismatch, and only then moves the file into place with
``os.replace``. Bytes that fail verification are never published or returned.

It also owns the resume journal of large downloads (:class:`_Journal`): a ranged download into
the cache's temp folder records, in a sidecar ``resume-<sha256(url)[:32]>.json`` next to its
data file, the URL's SHA-256 (not the URL, which may carry credentials), the object's version
token, size, chunk size, expected MD5, the data file's name, the writer's pid and host, and
the chunks whose ``pwrite`` returned (rewritten atomically after each chunk). A later download
of the same URL (in this process or the next run, after a crash or ``kill -9``) claims the
partial by renaming the data file to its own unique name (if two processes race, one rename
wins and the other starts fresh), trusts only the listed chunks and only when token, size,
chunk size and MD5 all match a fresh ``stat`` (otherwise the partial is deleted), hashes them
from disk in order, and fetches only the missing chunks. The final MD5 check covers every byte,
so a damaged partial is never published: it fails verification and the next attempt starts
from scratch. Only downloads with a known MD5 and a version token are resumable. The partial
and sidecar are kept only after a crash, or after a network failure
(:class:`~aiofolio.errors.TransientError`); success, verification failures, a changed object,
cancellation and Ctrl-C delete both. A sidecar whose writer may still be downloading (its pid
is alive on this host, or it was written from another host, and it changed within the last
hour) is left alone, and the new download runs without a journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from aiofolio.backends import Backend
from aiofolio.backends.base import STREAM_CHUNK
from aiofolio.engine.progress import report_bytes
from aiofolio.errors import ChecksumMismatchError, PreconditionFailedError, TransientError
from aiofolio.store import Hashers
from aiofolio.store._util import pid_alive, unique_name

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


RESUME_VERSION = 1
RESUME_OWNER_MAX_AGE = 3600.0
"""A sidecar untouched this long is claimable even if its writer's pid looks alive (a recycled
pid, or a process on another host sharing the cache that went away)."""
_DATA_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
_active: set[str] = set()  # sidecars journaled by a download running in this process
_active_lock = threading.Lock()


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def resume_sidecar(folder: str | os.PathLike[str], url: str) -> str:
    """The resume sidecar of ``url`` in the temp ``folder``: ``resume-<sha256(url)[:32]>.json``."""
    return os.path.join(os.fspath(folder), f"resume-{_url_hash(url)[:32]}.json")


@dataclass
class _Journal:
    """The resume journal of one ranged download (see the module docstring).

    Created by :func:`fetch_verified` (which decides what happens to the partial when the
    download ends), started by :func:`_fetch_ranges` once the size and token are known.
    """

    folder: str
    md5: str
    sidecar: str = ""
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    done: dict[int, int] = field(default_factory=dict)
    active: bool = False
    written: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(
        self, url: str, token: str | None, size: int, chunk: int, path: str
    ) -> dict[int, int]:
        """Claim a matching partial of ``url`` into ``path``; return its trusted chunks.

        Runs in a worker thread. Returns ``{start: end}`` of the chunks already in ``path``
        (empty: start fresh). Leaves the journal inactive (no sidecar will be written) when the
        object has no token, ``path`` is not in the journal's folder, or another live download
        journals this URL.
        """
        folder = os.path.abspath(self.folder)
        if not token or os.path.dirname(os.path.abspath(path)) != folder:
            return {}
        sidecar = resume_sidecar(folder, url)
        with _active_lock:
            if sidecar in _active:
                return {}
            _active.add(sidecar)
        self.sidecar, self.path, self.active = sidecar, path, True
        self.meta = {
            "v": RESUME_VERSION,
            "url": _url_hash(url),  # not the URL itself: it may carry credentials
            "token": token,
            "size": size,
            "chunk_size": chunk,
            "md5": self.md5,
            "data": os.path.basename(path),
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }
        try:
            done = self._claim(folder, url, token, size, chunk, path)
        except BaseException:
            self.release()
            raise
        if done is None:
            self.release()
            return {}
        if done:
            self.done = dict(done)
            self._write_now()  # the sidecar names our file from now on
            log.info(
                "resuming %s: %d of %d bytes already downloaded",
                url,
                sum(e - s for s, e in done.items()),
                size,
            )
        return done

    def _claim(
        self, folder: str, url: str, token: str, size: int, chunk: int, path: str
    ) -> dict[int, int] | None:
        """Trusted chunks of a claimed partial; None when a live download owns the sidecar."""
        try:
            with open(self.sidecar, "rb") as fh:
                raw = fh.read(1 << 20)
                mtime = os.fstat(fh.fileno()).st_mtime
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.debug("cannot read %s (%s); not resuming", self.sidecar, exc)
            return {}
        meta = _parse_sidecar(raw)
        if meta is not None and _owner_alive(meta, mtime):
            log.debug("%s is being downloaded by process %s; not resuming", url, meta.get("pid"))
            return None
        data = meta.get("data") if meta is not None else None
        old = os.path.join(folder, data) if isinstance(data, str) else None
        if (
            meta is None
            or old is None
            or not (
                meta.get("v") == RESUME_VERSION
                and meta.get("url") == _url_hash(url)
                and meta.get("token") == token
                and meta.get("size") == size
                and meta.get("chunk_size") == chunk
                and meta.get("md5") == self.md5
            )
        ):
            # Another version of the object (or an unreadable sidecar): discard the partial.
            if old is not None and old != path:
                with contextlib.suppress(OSError):
                    os.unlink(old)
            _unlink_if_unchanged(self.sidecar, raw)
            if meta is not None:
                log.info("discarding the partial download of %s: the object changed", url)
            return {}
        try:
            os.rename(old, path)  # atomic: of two racing claimers only one gets the file
        except OSError:
            return {}  # gone, or claimed by another process: start fresh
        try:
            if os.stat(path).st_size != size:
                return {}
        except OSError:
            return {}
        done: dict[int, int] = {}
        for pair in meta.get("done", ()):
            if not (isinstance(pair, list) and len(pair) == 2):
                continue
            start, end = pair
            if (
                isinstance(start, int)
                and isinstance(end, int)
                and 0 <= start < size
                and start % chunk == 0
                and end == min(size, start + chunk)
            ):
                done[start] = end
        return done

    async def mark(self, start: int, end: int) -> None:
        """Record that chunk ``[start, end)`` is on disk (its ``pwrite`` returned)."""
        if self.active:
            await anyio.to_thread.run_sync(self._write_now, start, end)

    def _write_now(self, start: int = -1, end: int = -1) -> None:
        """Add a chunk (if given) and rewrite the sidecar atomically (best-effort)."""
        with self._lock:
            if not self.active:
                return
            if start >= 0:
                self.done[start] = end
            meta = dict(self.meta, done=sorted([s, e] for s, e in self.done.items()))
            tmp = os.path.join(os.path.dirname(self.sidecar), unique_name(".resume.tmp"))
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with open(fd, "wb") as fh:
                    fh.write(json.dumps(meta, separators=(",", ":")).encode())
                os.replace(tmp, self.sidecar)
            except OSError as exc:
                log.debug("cannot write %s (%s); this download will not resume", tmp, exc)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                return
            self.written = True

    def release(self) -> None:
        """Stop journaling; keep the files (a later download may resume them)."""
        if self.sidecar:
            with _active_lock:
                _active.discard(self.sidecar)
        self.active = False

    def discard(self) -> None:
        """Stop journaling and delete our sidecar (the caller deletes or keeps the data)."""
        was_active = self.active
        self.release()
        if not was_active:
            return
        with self._lock:
            try:
                with open(self.sidecar, "rb") as fh:
                    raw = fh.read(1 << 20)
            except OSError:
                return
            meta = _parse_sidecar(raw)
            if meta is not None and meta.get("data") == os.path.basename(self.path):
                _unlink_if_unchanged(self.sidecar, raw)


def _parse_sidecar(raw: bytes) -> dict[str, Any] | None:
    try:
        meta = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(meta, dict):
        return None
    data = meta.get("data")
    if not isinstance(data, str) or _DATA_NAME.fullmatch(data) is None:
        return None
    if data.startswith("resume-"):
        return None
    return meta


def _owner_alive(meta: dict[str, Any], mtime: float) -> bool:
    """Whether the process that wrote a sidecar may still be downloading into its partial."""
    if time.time() - mtime >= RESUME_OWNER_MAX_AGE:
        return False
    if meta.get("host") != socket.gethostname():
        return True  # a process on another host: its pid means nothing here
    pid = meta.get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return False  # ours: not in _active, so that download is over
    if not pid_alive(pid):
        return False
    try:  # Linux: a killed process that its parent has not reaped yet is a zombie
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _unlink_if_unchanged(path: str, raw: bytes) -> None:
    """Delete ``path`` if it still holds ``raw`` (a newer sidecar of another download stays)."""
    try:
        with open(path, "rb") as fh:
            if fh.read(1 << 20) != raw:
                return
        os.unlink(path)
    except OSError:
        pass


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
) -> tuple[str, Hashers, int]:
    """Download ``url`` into a temp file and verify it; the caller then owns the file.

    The bytes are hashed with MD5 and ``algorithms`` while they land (:func:`fetch_into`).
    A download whose size or MD5 differs from the manifest's, or whose object was replaced
    mid-way, is deleted and tried again, up to ``attempts`` times.

    With ``resume_dir`` (the folder ``new_temp`` writes in) and a known ``md5``, a ranged
    download is journaled there and resumes a partial that an earlier download of ``url`` left
    (module docstring). The partial is kept when the download fails with a
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
            _Journal(os.fspath(resume_dir), md5.lower())
            if resume_dir is not None and md5 is not None
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
    journal: _Journal | None = None,
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
    journal: _Journal | None = None,
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
