"""Best-effort cross-process locks of the cache (``v1/locks/``), in the cache's ``lock_mode``.

This module owns :func:`blob_lock` / :func:`cache_lock`, which keep the number of processes
downloading one blob (or rewriting one record, or running one eviction pass) at one,
:func:`configure` / :func:`lock_mode`, which decide how a cache folder locks, and
:func:`sweep_locks`, which bounds the number of lock files. A lock here is an optimization,
never a correctness guarantee:

- the context manager yields True when the lock was taken and False when it was not within
  ``timeout`` (or locks are off), and the caller goes on either way;
- publishing blobs is an idempotent atomic rename of content-addressed bytes and records are
  written by atomic rename or appended to per-process logs, so two processes that both proceed
  waste work but corrupt nothing.

The modes (setting ``lock_mode``; ``"auto"`` resolves once per cache folder and process):

- ``"flock"``: ``flock`` on ``<sha>.lock``. The kernel releases a lock when its holder exits or
  is killed, so a waiter takes over within one poll interval. Where the filesystem refuses
  ``flock`` (ENOLCK, ENOSYS, EOPNOTSUPP) a cache configured ``"flock"`` raises
  :class:`~aiofolio.errors.LockUnavailableError` (use ``"lease"``); under ``"auto"`` the folder
  switches to ``"lease"`` with one warning.
- ``"lease"``: ``O_EXCL`` lease files ``<sha>.lease`` with a heartbeat
  (:mod:`aiofolio.store.lease`): they exclude processes of every host that sees the folder.
- ``"none"``: no locks; every lock yields False at once.
- ``"auto"``: ``"lease"`` when the folder is on a network filesystem
  (:func:`aiofolio.store.mounts.auto_lock_mode`), else ``"flock"``.

Every process sharing a cache folder must lock the same way: a ``"flock"`` process and a
``"lease"`` process do not exclude each other (the host that exports an NFS folder sees it as
a local filesystem: set ``lock_mode="lease"`` there explicitly).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Final, Literal, get_args

from aiofolio.errors import LockUnavailableError
from aiofolio.store import lease as _lease
from aiofolio.store.layout import CacheLayout
from aiofolio.store.mounts import auto_lock_mode

__all__ = [
    "POLL_INTERVAL",
    "LockMode",
    "blob_lock",
    "cache_lock",
    "configure",
    "lease_path",
    "lock_mode",
    "lock_path",
    "sweep_locks",
]

log = logging.getLogger("aiofolio.store")

LockMode = Literal["auto", "flock", "lease", "none"]

POLL_INTERVAL: Final = 0.02
"""Seconds between attempts while waiting for a flock."""
LEASE_POLL: Final = 0.05
"""Seconds between attempts while waiting for a lease (each try is a file create)."""

_UNSUPPORTED: Final = frozenset(
    {errno.ENOLCK, errno.ENOSYS, getattr(errno, "EOPNOTSUPP", errno.ENOSYS), errno.EINVAL}
)

_modes_lock = threading.Lock()
_modes: dict[Path, tuple[str, str]] = {}  # root -> (configured, in effect)


def configure(layout: CacheLayout, mode: str) -> str:
    """Set how the cache folder of ``layout`` locks in this process; returns the mode in effect.

    Raises:
        ValueError: ``mode`` is not one of :data:`LockMode`.
    """
    if mode not in get_args(LockMode):
        raise ValueError(f"lock_mode must be one of {get_args(LockMode)}, not {mode!r}")
    with _modes_lock:
        known = _modes.get(layout.root)
        if known is not None and known[0] == mode:
            return known[1]
    effective = auto_lock_mode(str(layout.root)) if mode == "auto" else mode
    with _modes_lock:
        _modes[layout.root] = (mode, effective)
    if mode == "auto" and effective == "lease":
        log.info("%s is on a network filesystem: using lease locks", layout.root)
    return effective


def lock_mode(layout: CacheLayout) -> str:
    """The lock mode in effect for ``layout`` (``"auto"`` resolved on first use)."""
    known = _modes.get(layout.root)
    return known[1] if known is not None else configure(layout, "auto")


def lock_path(layout: CacheLayout, key: str) -> Path:
    """The flock file of ``key``: ``v1/locks/<sha256(key)[:32]>.lock``."""
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return layout.locks_dir / f"{digest}.lock"


def lease_path(layout: CacheLayout, key: str) -> Path:
    """The lease file of ``key``: ``v1/locks/<sha256(key)[:32]>.lease``."""
    return lock_path(layout, key).with_suffix(".lease")


def _flock_unsupported(layout: CacheLayout, path: Path, exc: OSError) -> bool:
    """flock failed outright: raise (``"flock"`` configured) or switch to leases (``"auto"``)."""
    with _modes_lock:
        configured = _modes.get(layout.root, ("auto", "flock"))[0]
    if configured == "flock":
        raise LockUnavailableError(
            f"cannot lock {path}: flock is not supported on this filesystem "
            f"({exc.strerror or exc}); set lock_mode='lease' (AIOFOLIO_LOCK_MODE=lease) for a "
            "cache on a network filesystem, or 'none'"
        ) from exc
    log.warning(
        "flock is not supported under %s (%s); using lease locks there",
        layout.root,
        exc.strerror or exc,
    )
    with _modes_lock:
        _modes[layout.root] = (configured, "lease")
    return True


def _try_flock(path: Path) -> int | None:
    """A descriptor of ``path`` holding its flock, or None when another holds it."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    try:  # swept (unlinked) between our open and our lock: the lock guards nothing
        if os.fstat(fd).st_nlink == 0:
            os.close(fd)
            return None
    except OSError:
        os.close(fd)
        raise
    return fd


def _wait(deadline: float, interval: float) -> bool:
    left = deadline - time.monotonic()
    if left <= 0:
        return False
    time.sleep(min(interval, left))
    return True


@contextlib.contextmanager
def cache_lock(layout: CacheLayout, key: str, timeout: float) -> Iterator[bool]:
    """Hold the best-effort lock of ``key`` for the ``with`` block.

    Args:
        layout: The cache layout (the lock file lives in ``layout.locks_dir``).
        key: Any string naming what is locked (a blob digest, ``"record:<key>"``, ...).
        timeout: Seconds to wait; 0 (or negative) tries once.

    Yields:
        True when this block holds the lock, False when it does not (timeout, locks off, or
        the lock file cannot be made); the caller proceeds in both cases. The context may be
        entered and left in different threads.

    Raises:
        ValueError: ``timeout`` is NaN or infinite (a wait must be bounded).
        LockUnavailableError: ``lock_mode="flock"`` and the filesystem refuses ``flock``.
    """
    if math.isnan(timeout) or math.isinf(timeout):
        raise ValueError(f"a cache lock timeout must be finite, not {timeout!r}")
    mode = lock_mode(layout)
    if mode == "none":
        yield False
        return
    deadline = time.monotonic() + max(0.0, timeout)
    fd: int | None = None
    held: _lease.Lease | None = None
    if mode == "flock":
        path = lock_path(layout, key)
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            while (fd := _try_flock(path)) is None and _wait(deadline, POLL_INTERVAL):
                pass
        except ImportError:  # pragma: no cover - no fcntl (Windows): leases instead
            mode = "lease"
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                log.debug("cannot lock %s (%s); going on without the lock", path, exc)
            elif _flock_unsupported(layout, path, exc):
                mode = "lease"
    if mode == "lease":
        path = lease_path(layout, key)
        try:
            while (held := _lease.try_acquire(path)) is None and _wait(deadline, LEASE_POLL):
                pass
        except OSError as exc:
            log.debug("cannot take the lease %s (%s); going on without it", path, exc)
    try:
        yield fd is not None or held is not None
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the last descriptor drops the flock
        if held is not None:
            _lease.release(held)


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
