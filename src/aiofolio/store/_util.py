"""Small helpers shared by the ``store`` modules: liveness of a pid, unique names, atomic writes.

Owns the naming rule of every per-process file in the cache (``<pid>-<random><suffix>``), the
name of this host (:func:`host_id`, :func:`host_tag`; ``AIOFOLIO_HOST_ID`` overrides it, for
tests and simulations of several hosts on one machine), the test of whether such a file's owner
still runs (:func:`owner_alive`: a pid means something only on its own host), and
:func:`atomic_write` (a unique temp file in the destination folder, then ``os.replace``), which
is how every mutable cache file is written so that readers never see a torn file, whatever
number of processes write at once.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
import socket
import time
from pathlib import Path

from aiofolio.errors import CacheError, CacheFullError

__all__ = [
    "HOST_ID_ENV",
    "atomic_write",
    "host_id",
    "host_name",
    "host_tag",
    "iso_utc",
    "os_error",
    "owner_alive",
    "owner_pid",
    "pid_alive",
    "unique_name",
]

HOST_ID_ENV = "AIOFOLIO_HOST_ID"
"""For tests and simulations only: the host name this process claims (read at each use), so
processes on one machine can act as processes of different hosts sharing a cache."""

_FULL_ERRNOS = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def unique_name(suffix: str = "", *, tagged: bool = False) -> str:
    """``<pid>-<16 random hex><suffix>``: unique across processes, threads and hosts.

    With ``tagged``, ``-<host_tag()>`` goes before the suffix, so that :func:`owner_alive`
    can tell a file of this host (whose pid means something here) from another host's.
    """
    tag = f"-{host_tag()}" if tagged else ""
    return f"{os.getpid()}-{secrets.token_hex(8)}{tag}{suffix}"


def host_name() -> str:
    """This host's name as the cache records it (``AIOFOLIO_HOST_ID``, else the hostname)."""
    return os.environ.get(HOST_ID_ENV) or socket.gethostname()


def host_id() -> str:
    """:func:`host_name` made safe for file names (``[A-Za-z0-9.]``, at most 64 characters)."""
    return re.sub(r"[^A-Za-z0-9.]+", "_", host_name())[:64] or "host"


def host_tag() -> str:
    """A short tag of this host for file names: ``h`` + 8 hex digits of its name's SHA-1."""
    digest = hashlib.sha1(host_name().encode(), usedforsecurity=False).hexdigest()
    return "h" + digest[:8]


def owner_alive(name: str, mtime: float, max_age_s: float) -> bool:
    """Whether the process that owns the per-process file ``name`` may still run.

    ``name`` is a :func:`unique_name`; when it carries a host tag (``-h<8 hex>`` right before
    the suffix, as :func:`unique_name` writes with ``tagged=True``) of another host, the pid
    means nothing here and the file counts as alive until it is ``max_age_s`` old. A file of
    this host (or without a tag) is alive while its pid runs and it is younger than that.
    """
    if time.time() - mtime >= max_age_s:
        return False
    pid = owner_pid(name)
    if pid is None:
        return False
    tag = _TAG.search(name)
    if tag is not None and tag[1] != host_tag():
        return True
    return pid_alive(pid)


_TAG = re.compile(r"-(h[0-9a-f]{8})(?:\.|$)")


def owner_pid(name: str) -> int | None:
    """The pid a :func:`unique_name` starts with, or None when the name has no pid prefix."""
    head, sep, _ = name.partition("-")
    if not sep or not head.isdigit() or not head.isascii():
        return None
    pid = int(head)
    return pid if pid > 0 else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0; no signal is sent).

    A pid of another user's process counts as alive. A recycled pid also looks alive, and a
    pid from another host or pid namespace means nothing here: callers pair this test with an
    age limit.
    """
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def os_error(what: str, path: str | os.PathLike[str], exc: OSError) -> CacheError:
    """A :class:`CacheError` (``CacheFullError`` for a full disk) naming the path and reason."""
    cls = CacheFullError if exc.errno in _FULL_ERRNOS else CacheError
    return cls(f"cannot {what} {os.fspath(path)}: {exc.strerror or exc}")


def atomic_write(
    path: Path, data: bytes, *, fsync: bool = False, mode: int = 0o644
) -> tuple[int, int, int]:
    """Write ``data`` to ``path`` atomically: a unique temp file beside it, then ``os.replace``.

    Concurrent writers each rename a complete file of their own; the last rename wins and no
    reader ever sees a mix. The destination folder is created when missing.

    Args:
        path: The destination.
        data: The whole content.
        fsync: Flush the file (and the folder, after the rename) to stable storage.
        mode: File mode bits (subject to the umask).

    Returns:
        The ``(st_mtime_ns, st_size, st_ino)`` stamp of the written file, taken from the
        temp file before the rename (a rename keeps all three), so it describes our bytes even
        when another writer replaces the file right after.

    Raises:
        CacheError: The file cannot be written (``CacheFullError`` when the disk is full).
    """
    tmp = path.with_name(f".{path.name}.{unique_name('.tmp')}")
    for attempt in (1, 2):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileNotFoundError as exc:
            if attempt == 2:
                raise os_error("write", path, exc) from exc
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as mkdir_exc:
                raise os_error("create the folder of", path, mkdir_exc) from mkdir_exc
            continue
        except OSError as exc:
            raise os_error("write", path, exc) from exc
        break
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise os_error("write", path, exc) from exc
    if fsync:
        _fsync_dir(path.parent)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or filesystem allows it
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def iso_utc(epoch: float | None) -> str | None:
    """Epoch seconds as ISO 8601 in UTC with a ``Z``, as cache reports show times."""
    if epoch is None:
        return None
    from datetime import datetime, timezone

    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat().replace("+00:00", "Z")
