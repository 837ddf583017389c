"""Blobs in use: never evicted while a reader holds them or a handed-out path refers to them.

Owns: :class:`InUse`, one per cache root (on its runtime).

* A blob being read in this process (:meth:`InUse.reading`, held around a deserialization) is
  never evicted by this process: an in-memory counter, no file.
* A path handed out by ``get_path`` (or ``get`` of an artifact) is kept for every process while
  its owner (the folio's session) lives: this process lists such digests in its marker file
  ``v1/inuse/<pid>-<random>.json``, written under the ``limits`` lock, which every eviction
  pass reads under the same lock (files of dead processes are removed).
* A reader that loses a race with another process's eviction marks the blob the same way for
  the time of its retry (:meth:`InUse.mark_temp` / :meth:`InUse.unmark`).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from aiofolio.engine._folder import Folder
from aiofolio.errors import AiofolioError
from aiofolio.store import cache_lock
from aiofolio.store._util import atomic_write, owner_alive, unique_name

__all__ = ["LIMITS_LOCK", "LOCK_TIMEOUT", "InUse"]

LIMITS_LOCK: Final = "limits"
"""The cross-process lock of eviction passes, reservations and in-use markers."""
LOCK_TIMEOUT: Final = 30.0
_MARK_MAX_AGE: Final = 7 * 86400.0
"""A marker file of another host (whose pid means nothing here) counts this long."""


class InUse:
    """The in-use registry of one cache root (see the module docstring)."""

    def __init__(self, folder: Folder) -> None:
        self._folder = folder
        self._lock = threading.Lock()
        self._reading: Counter[str] = Counter()
        self._handed_out: weakref.WeakKeyDictionary[object, set[str]] = weakref.WeakKeyDictionary()
        self._temp: Counter[str] = Counter()
        self._written: set[str] = set()
        self._file = folder.layout.version_dir / "inuse" / unique_name(".json", tagged=True)
        self._touched = False

    # -- this process ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def reading(self, digest: str) -> Iterator[None]:
        """Mark the blob ``digest`` in use (mid-read) for the ``with`` block."""
        with self._lock:
            self._reading[digest] += 1
        try:
            yield
        finally:
            with self._lock:
                self._reading[digest] -= 1
                if self._reading[digest] <= 0:
                    del self._reading[digest]

    def local(self) -> set[str]:
        """The digests this process is reading or has handed out (to live owners)."""
        with self._lock:
            out = set(self._reading)
            for digests in list(self._handed_out.values()):
                out |= digests
        return out

    def handed_out_to(self, owner: object, digest: str) -> bool:
        with self._lock:
            return digest in self._handed_out.get(owner, ())

    # -- every process: marker files --------------------------------------------------------------
    def _sync(self) -> None:
        """Rewrite this process's marker file (caller holds the limits lock or accepts a race)."""
        with self._lock:
            wanted = set(self._temp)
            for digests in list(self._handed_out.values()):
                wanted |= digests
            if wanted == self._written:
                return
            if wanted:
                self._file.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(self._file, json.dumps(sorted(wanted)).encode())
                self._touched = True
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._file)
            self._written = wanted

    def refresh_marks(self) -> None:
        """Drop the marks of owners garbage-collected since (other processes may evict those)."""
        if self._touched:
            with contextlib.suppress(OSError, AiofolioError):
                self._sync()

    def marked_by_others(self) -> set[str]:
        """Digests other live processes marked in use (files of dead processes are removed;
        another host's count until a week old: its pid means nothing here)."""
        out: set[str] = set()
        try:
            with os.scandir(self._file.parent) as it:
                entries = [e for e in it if e.name.endswith(".json") and e.name != self._file.name]
        except (FileNotFoundError, NotADirectoryError):
            return out
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if not owner_alive(entry.name, st.st_mtime, _MARK_MAX_AGE):
                    os.unlink(entry.path)
                    continue
                with open(entry.path, "rb") as fh:
                    out.update(str(d) for d in json.loads(fh.read() or b"[]"))
            except (OSError, ValueError):
                continue
        return out

    def busy(self) -> set[str]:
        """Every digest some process holds (call under the limits lock for a stable answer)."""
        self.refresh_marks()
        return self.local() | self.marked_by_others()

    def mark(self, path: str | os.PathLike[str], owner: object | None) -> bool:
        """Mark a blob in use for every process (blocking); True if it still exists.

        With ``owner``, the mark lasts while the owner lives (a handed-out path); without, it
        is a temporary mark that :meth:`unmark` lifts. Passes gather under the same lock, so
        once this returns True no other process evicts the blob until the mark goes. False:
        it was evicted before the mark (the caller fetches it again; the mark protects it).
        """
        digest = os.path.basename(os.fspath(path))
        with self._lock:
            if owner is not None:
                self._handed_out.setdefault(owner, set()).add(digest)
            else:
                self._temp[digest] += 1
        with cache_lock(self._folder.layout, LIMITS_LOCK, LOCK_TIMEOUT):
            self._sync()
            return os.path.exists(path)

    def release(self, owner: object) -> None:
        """Drop every mark ``owner`` holds now (a closed file handle; never raises)."""
        with self._lock:
            self._handed_out.pop(owner, None)
        with contextlib.suppress(OSError, AiofolioError):
            self._sync()

    def unmark(self, digest: str) -> None:
        """Lift one temporary mark of ``digest`` (blocking; never raises)."""
        with self._lock:
            self._temp[digest] -= 1
            if self._temp[digest] <= 0:
                del self._temp[digest]
        with contextlib.suppress(OSError, AiofolioError):
            self._sync()

    @property
    def marker_file(self) -> Path:
        return self._file
