"""Lease locks: lock files that work across hosts where ``flock`` does not (``lock_mode="lease"``).

Owns :func:`try_acquire` / :func:`release` of one lease file and the heartbeat thread that keeps
this process's leases fresh. The protocol needs only what NFS, Lustre, GPFS and CIFS do
atomically: ``O_CREAT | O_EXCL`` and ``unlink``.

- **Take**: create the lease file with ``O_EXCL``; it holds one JSON line: ``host``, ``pid``, a
  random ``token`` and the ``beat`` (the holder's wall time of its last heartbeat).
- **Hold**: a daemon thread rewrites the line in place (same length, so readers never see it
  shorter) and touches the file's mtime every :data:`HEARTBEAT_S` seconds, through the open file
  descriptor: a heartbeat can only ever refresh the holder's own file, never a successor's.
- **Stale**: the newer of ``beat`` and the mtime is older than :data:`TTL_S` (clocks of the
  hosts may differ by a few seconds; the TTL is far larger), or the holder is a process of this
  host that no longer runs (taken over at once).
- **Take over**: under a guard file (``<lease>.takeover``, ``O_EXCL`` as well), look again and
  unlink the lease only if it is still stale; then try ``O_EXCL`` as usual. Two processes that
  both saw the stale lease cannot both remove it: the second finds the first's fresh lease when
  it looks again under the guard. A guard older than the TTL (its taker died) is removed.
- **Release**: unlink the file if it is still ours (same inode, same token).

A lease is an optimization like every cache lock (see :mod:`aiofolio.store.locks`): a holder
frozen for longer than the TTL loses it and two processes may then both proceed, which costs a
duplicate download, never wrong bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from aiofolio.store._util import host_id, pid_alive

__all__ = ["HEARTBEAT_S", "TTL_S", "Lease", "LeaseInfo", "read_lease", "release", "try_acquire"]

log = logging.getLogger("aiofolio.store")

TTL_S: float = 30.0
"""A lease whose heartbeat is older than this (seconds) is taken over. Module-level so tests
can shorten it; every process on a cache must use the same value."""
HEARTBEAT_S: float = 5.0
"""Seconds between heartbeats of a held lease (well below :data:`TTL_S`)."""


@dataclass
class Lease:
    """A lease this process holds: its file, token and open descriptor."""

    path: Path
    token: str
    fd: int
    ino: int


@dataclass(frozen=True)
class LeaseInfo:
    """What a lease file says (``beat`` is the newer of its line's time and its mtime)."""

    host: str
    pid: int
    token: str
    beat: float


_lock = threading.Lock()
_held: dict[str, Lease] = {}  # token -> lease
_mine: set[str] = set()  # tokens of leases held or being created by this process
_wake = threading.Event()
_thread: threading.Thread | None = None


def _line(token: str, beat: float) -> bytes:
    host = json.dumps(host_id())
    pid = os.getpid()
    return f'{{"host": {host}, "pid": {pid}, "token": "{token}", "beat": {beat:.6f}}}\n'.encode()


def read_lease(path: Path) -> LeaseInfo | None:
    """The lease at ``path``; None when there is none. An unreadable line (being written)
    gives an info with an empty token and the file's mtime as the beat."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read(4096)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        return LeaseInfo(
            str(data["host"]),
            int(data["pid"]),
            str(data["token"]),
            max(float(data["beat"]), st.st_mtime),
        )
    except (ValueError, KeyError, TypeError):
        return LeaseInfo("", 0, "", st.st_mtime)


def _stale(info: LeaseInfo, now: float) -> bool:
    with _lock:
        if info.token and info.token in _mine:
            return False  # ours (another thread of this process holds it)
    here = info.host == host_id() and info.pid > 0
    if here and (info.pid == os.getpid() or not pid_alive(info.pid)):
        return True  # a process of this host that is gone (or our own leftover)
    return now - info.beat > TTL_S


def _take_over(path: Path) -> None:
    guard = path.with_name(path.name + ".takeover")
    try:
        fd = os.open(guard, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with contextlib.suppress(OSError):
            if time.time() - guard.stat().st_mtime > TTL_S:
                os.unlink(guard)  # its taker died mid-takeover
        return
    try:
        info = read_lease(path)  # look again, now that no one else is taking it over
        if info is not None and _stale(info, time.time()):
            log.info(
                "taking over the stale lease %s (held by %s pid %d)", path, info.host, info.pid
            )
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(guard)


def try_acquire(path: Path) -> Lease | None:
    """Take the lease at ``path`` without waiting (taking a stale one over); None when held.

    Raises:
        OSError: the lease file cannot be created (other than "exists"), e.g. a read-only
            cache folder.
    """
    for attempt in (1, 2, 3):
        token = secrets.token_hex(8)
        with _lock:
            _mine.add(token)  # before the file exists: our other threads must not judge it
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except BaseException as exc:
            with _lock:
                _mine.discard(token)
            if isinstance(exc, FileNotFoundError):
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            if not isinstance(exc, FileExistsError):
                raise
            info = read_lease(path)
            if attempt < 3 and (info is None or _stale(info, time.time())):
                if info is not None:
                    _take_over(path)
                continue
            return None
        try:
            os.write(fd, _line(token, time.time()))
            lease = Lease(path, token, fd, os.fstat(fd).st_ino)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            with _lock:
                _mine.discard(token)
            raise
        with _lock:
            _held[token] = lease
        _ensure_heartbeat()
        return lease
    return None


def release(lease: Lease) -> None:
    """Give the lease up: unlink its file if it is still ours. Never raises."""
    with _lock:
        _held.pop(lease.token, None)
        _mine.discard(lease.token)
        try:
            info = read_lease(lease.path)
            ours = info is not None and info.token == lease.token
            if ours and os.stat(lease.path).st_ino == lease.ino:
                os.unlink(lease.path)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                os.close(lease.fd)


def _beat_all() -> None:
    with _lock:
        for lease in list(_held.values()):
            try:
                os.pwrite(lease.fd, _line(lease.token, time.time()), 0)
                os.utime(lease.fd)
            except OSError as exc:
                log.debug("cannot refresh the lease %s: %s", lease.path, exc)


def _heartbeat() -> None:
    while True:
        _wake.wait(HEARTBEAT_S)
        _wake.clear()
        _beat_all()


def _ensure_heartbeat() -> None:
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return
        _thread = threading.Thread(target=_heartbeat, name="aiofolio-lease", daemon=True)
        _thread.start()


def _after_fork() -> None:  # pragma: no cover - runs in forked children only
    # The parent's leases are the parent's: the child holds none and has no heartbeat thread.
    global _lock, _thread
    _lock = threading.Lock()
    _held.clear()
    _mine.clear()
    _thread = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
