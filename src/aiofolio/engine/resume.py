"""Resume journals of large downloads: finish an interrupted download in a later run.

Owns: :class:`Journal`. A ranged download into the cache's temp folder records, in a sidecar
``resume-<sha256(url)[:32]>.json`` next to its data file, the URL's SHA-256 (not the URL,
which may carry credentials), the object's version token, size, chunk size, expected MD5
(the manifest's, else the store's; empty when neither states one), the data file's name, the
writer's pid and host, and how far each chunk is on disk (whole chunks, and the written prefix
of chunks in flight; rewritten atomically after each chunk and every
:data:`PROGRESS_INTERVAL` seconds while bytes land). A later download of the same URL (in this
process or the next run, after a crash or ``kill -9``) claims the partial by renaming the data
file to its own unique name (if two processes race, one rename wins and the other starts
fresh), trusts only the listed bytes and only when token, size, chunk size and MD5 all match a
fresh answer of the store (otherwise the partial is deleted), and fetches only the rest. The
final verification covers every byte (by MD5 when one is known), so a damaged partial is never
published where a digest can tell.

A sidecar whose writer may still be downloading (its pid is alive on this host, or it was
written from another host, and it changed within the last hour) is left alone, and the new
download runs without a journal. The sidecars this process is journaling are listed in a
:class:`Registry` (one per cache root, on the runtime).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from aiofolio.store._util import host_name, pid_alive, unique_name

__all__ = [
    "PROGRESS_INTERVAL",
    "RESUME_OWNER_MAX_AGE",
    "RESUME_VERSION",
    "Journal",
    "Registry",
    "resume_sidecar",
]

PROGRESS_INTERVAL = 0.25
"""Seconds between two rewrites of a sidecar for the progress inside chunks."""

log = logging.getLogger("aiofolio.fetch")


class Registry:
    """The sidecars journaled by downloads running in this process (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active: set[str] = set()


RESUME_VERSION = 1
RESUME_OWNER_MAX_AGE = 3600.0
"""A sidecar untouched this long is claimable even if its writer's pid looks alive (a recycled
pid, or a process on another host sharing the cache that went away)."""
_DATA_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


def _url_hash(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def resume_sidecar(folder: str | os.PathLike[str], url: str) -> str:
    """The resume sidecar of ``url`` in the temp ``folder``: ``resume-<sha256(url)[:32]>.json``."""
    return os.path.join(os.fspath(folder), f"resume-{_url_hash(url)[:32]}.json")


@dataclass
class Journal:
    """The resume journal of one ranged download (see the module docstring).

    Created by :func:`fetch_verified` (which decides what happens to the partial when the
    download ends), started by :func:`_fetch_ranges` once the size and token are known.
    """

    folder: str
    md5: str
    registry: Registry = field(default_factory=Registry)
    sidecar: str = ""
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    done: dict[int, int] = field(default_factory=dict)
    active: bool = False
    written: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _last_write: float = -1e18

    def has_partial(self, url: str) -> bool:
        """Whether a sidecar for ``url`` is in the folder (one ``stat``; it may not match)."""
        return os.path.exists(resume_sidecar(self.folder, url))

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
        with self.registry.lock:
            if sidecar in self.registry.active:
                return {}
            self.registry.active.add(sidecar)
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
            "host": host_name(),
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
                and start < end <= min(size, start + chunk)
            ):
                done[start] = end  # a whole chunk, or the prefix of one that was on disk
        return done

    async def mark(self, start: int, end: int) -> None:
        """Record that chunk ``[start, end)`` is on disk (its ``pwrite`` returned)."""
        if self.active:
            await anyio.to_thread.run_sync(self._write_now, start, end)

    async def progress(self, start: int, pos: int) -> None:
        """Record that the chunk at ``start`` is on disk up to ``pos`` (rewritten at most every
        :data:`PROGRESS_INTERVAL` seconds), so a resume fetches only the rest of the chunk."""
        if not self.active:
            return
        with self._lock:
            self.done[start] = max(pos, self.done.get(start, start))
            due = time.monotonic() - self._last_write >= PROGRESS_INTERVAL
        if due:
            await anyio.to_thread.run_sync(self._write_now)

    def _write_now(self, start: int = -1, end: int = -1) -> None:
        """Add a chunk (if given) and rewrite the sidecar atomically (best-effort)."""
        with self._lock:
            if not self.active:
                return
            if start >= 0:
                self.done[start] = end
            self._last_write = time.monotonic()
            meta = dict(self.meta, done=sorted([s, e] for s, e in self.done.items() if e > s))
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
            with self.registry.lock:
                self.registry.active.discard(self.sidecar)
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
    if meta.get("host") != host_name():
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
