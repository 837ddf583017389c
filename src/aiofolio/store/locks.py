"""Best-effort cross-process locks of the cache (``v1/locks/<sha>.lock``).

This module owns :func:`blob_lock` / :func:`cache_lock`, which keep the number of processes
downloading one blob (or rewriting one record) at one, and :func:`sweep_locks`, which bounds
the number of lock files. A lock here is an optimization, never a correctness guarantee:

- the context manager yields True when the lock was taken and False when it was not within
  ``timeout`` (or could not be tried at all), and the caller goes on either way;
- publishing blobs is an idempotent atomic rename of content-addressed bytes and records are
  written by atomic rename, so two processes that both proceed waste work but corrupt nothing.

The locks are ``flock`` locks (via ``filelock``) on POSIX: the kernel releases a lock when its
holder exits or is killed, so a waiter takes over within one poll interval, and a stale lock
file on disk means nothing. On network and cluster filesystems (NFS, Lustre, some FUSE mounts)
``flock`` may be local to one client or silently do nothing, so processes on different hosts
may all "hold" the lock at once; where the filesystem refuses ``flock`` outright we yield False
instead of falling back to lock files that a crashed process would leave behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final

import filelock

from aiofolio.store.layout import CacheLayout

__all__ = ["POLL_INTERVAL", "blob_lock", "cache_lock", "lock_path", "sweep_locks"]

log = logging.getLogger("aiofolio.store")

POLL_INTERVAL: Final = 0.02
"""Seconds between attempts while waiting for a lock."""


def lock_path(layout: CacheLayout, key: str) -> Path:
    """The lock file of ``key``: ``v1/locks/<sha256(key)[:32]>.lock``."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return layout.locks_dir / f"{digest}.lock"


def _new_lock(path: Path) -> filelock.BaseFileLock:
    # thread_local=False: the engine may enter the context in one worker thread and leave it
    # in another; a thread-local lock would then never be released.
    try:  # filelock >= 4: never fall back to existence locks that outlive a crashed holder
        return filelock.FileLock(str(path), thread_local=False, fallback_to_soft=False)
    except TypeError:  # pragma: no cover - filelock 3.x raises NotImplementedError instead
        return filelock.FileLock(str(path), thread_local=False)


@contextlib.contextmanager
def cache_lock(layout: CacheLayout, key: str, timeout: float) -> Iterator[bool]:
    """Hold the best-effort lock of ``key`` for the ``with`` block.

    Args:
        layout: The cache layout (the lock file lives in ``layout.locks_dir``).
        key: Any string naming what is locked (a blob digest, ``"record:<key>"``, ...).
        timeout: Seconds to wait; 0 (or negative) tries once.

    Yields:
        True when this block holds the lock, False when it does not (timeout, or locking
        is unavailable here); the caller proceeds in both cases. The context may be entered
        and left in different threads (``__enter__``/``__exit__`` via worker threads).

    Raises:
        ValueError: ``timeout`` is NaN or infinite (a wait must be bounded).
    """
    if math.isnan(timeout) or math.isinf(timeout):
        raise ValueError(f"a cache lock timeout must be finite, not {timeout!r}")
    path = lock_path(layout, key)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
    lock = _new_lock(path)
    try:
        lock.acquire(timeout=max(0.0, timeout), poll_interval=POLL_INTERVAL)
    except filelock.Timeout:
        acquired = False
    except (OSError, NotImplementedError) as exc:
        log.debug("cannot lock %s (%s); going on without the lock", path, exc)
        acquired = False
    else:
        acquired = True
    try:
        yield acquired
    finally:
        if acquired:
            with contextlib.suppress(Exception):
                lock.release()


def blob_lock(layout: CacheLayout, key: str, timeout: float) -> AbstractContextManager[bool]:
    """The best-effort cross-process lock for fetching one blob; see :func:`cache_lock`.

    Example::

        with blob_lock(layout, digest, timeout=30) as locked:
            if blobs.lookup(digest, size) is None:   # another process may have finished
                download_and_publish()

    Args:
        layout: The cache layout.
        key: What is fetched (normally the blob digest).
        timeout: Seconds to wait before going on without the lock.

    Returns:
        A context manager yielding True (held) or False (not held; proceed anyway).
    """
    return cache_lock(layout, key, timeout)


def sweep_locks(layout: CacheLayout, max_age_s: float = 86400.0) -> int:
    """Delete lock files older than ``max_age_s`` that nobody holds right now.

    Each candidate is locked without waiting and unlinked while held. A process that opened
    the file just before the unlink may then lock the unlinked file while a newcomer locks a
    new one; both proceed, which the cache tolerates (the locks are best-effort). POSIX only;
    elsewhere this returns 0.

    Returns:
        The number of lock files deleted.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return 0
    now = time.time()
    removed = 0
    try:
        with os.scandir(layout.locks_dir) as it:
            entries = [e for e in it if e.name.endswith(".lock")]
    except OSError:
        return 0
    for entry in entries:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime < max_age_s:
                continue
            fd = os.open(entry.path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
        finally:
            os.close(fd)
    return removed
