"""The cache size limits around every publish: reserve, publish, settle; and a full disk.

Owns: :class:`Quota`, one per cache root, with three explicit steps that **every** publish into
the blob store takes (a download, a write-through copy of an ``add``, an import):

* :meth:`Quota.reserve` before the bytes are written. Hard limit (``hard_limit=True``): the
  size is reserved in a cross-process ledger (``v1/reservations/<pid>-<random>.json``, written
  under the ``limits`` lock; files of dead processes are ignored and swept), evicting first to
  make room, or :class:`~aiofolio.errors.CacheFullError` is raised before any byte is written.
  An item of unknown size is reserved by :meth:`Quota.grow` once its size is known, before it
  is published. Soft limit: nothing to do.
* :meth:`Quota.after_publish` once the blob is in place: the reservation goes (the hard limit
  held the total all along), or the soft limit runs: when the cache is over
  ``max_cache_size`` it is evicted down to ``eviction_threshold`` of it. To keep publishes
  cheap, the process keeps an estimate of the total (the last scan plus what it published
  since) and scans again only as :func:`~aiofolio.policy.needs_scan` says.
* :meth:`Quota.release` when the publish did not happen.

:meth:`Quota.free_for` makes room after ENOSPC. All methods block (call them in a thread).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from aiofolio.config import Settings
from aiofolio.engine import evict
from aiofolio.engine._folder import Folder
from aiofolio.engine.inuse import LIMITS_LOCK, LOCK_TIMEOUT, InUse
from aiofolio.errors import CacheFullError
from aiofolio.policy import needs_scan, plan_eviction
from aiofolio.store import cache_lock
from aiofolio.store._util import atomic_write, owner_alive, unique_name

__all__ = ["Quota", "Ticket", "is_disk_full"]

log = logging.getLogger("aiofolio.limits")

_RESERVATION_MAX_AGE: Final = 24 * 3600.0
_FULL_ERRNOS: Final = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in _FULL_ERRNOS


@dataclass
class Ticket:
    """One publish in progress: its hard-limit reservation (if any) and what it is."""

    what: str
    size: int | None
    reservation: Path | None = None

    def _drop(self) -> None:
        path, self.reservation = self.reservation, None
        if path is not None:
            with contextlib.suppress(OSError):
                os.unlink(path)


class Quota:
    """The size limits of one cache root (see the module docstring)."""

    def __init__(self, folder: Folder, inuse: InUse) -> None:
        self._rt = folder
        self._inuse = inuse
        self._lock = threading.Lock()
        self._total = 0
        self._scanned = -1e18  # monotonic time of the last scan
        self._folder = folder.layout.version_dir / "reservations"

    # -- the estimate ---------------------------------------------------------------------------
    def note(self, delta: int) -> None:
        """Add ``delta`` bytes to the running estimate of the cache total."""
        with self._lock:
            self._total += delta

    def set_total(self, total: int) -> None:
        with self._lock:
            self._total, self._scanned = total, time.monotonic()

    # -- the three steps ------------------------------------------------------------------------
    def reserve(self, settings: Settings, size: int | None, what: str) -> Ticket:
        """Step 1: room for ``size`` bytes under the hard limit (a no-op for the soft one).

        Raises:
            CacheFullError: the item does not fit even after evicting everything evictable
                (nothing is evicted then).
        """
        ticket = Ticket(what, size)
        if size is not None and _hard(settings):
            ticket.reservation = self._reserve(settings, size, what)
        return ticket

    def grow(self, ticket: Ticket, settings: Settings, size: int) -> None:
        """The size became known after the download: reserve it now, before the publish."""
        if ticket.reservation is None and _hard(settings):
            ticket.reservation = self._reserve(settings, size, ticket.what)
        ticket.size = size

    def after_publish(self, ticket: Ticket, settings: Settings, digest: str, size: int) -> None:
        """Step 2: the blob is published; settle the limits. Never raises (logged)."""
        try:
            if ticket.reservation is not None:
                ticket._drop()
                self.note(size)
                return
            with self._lock:
                self._total += size
                estimate, scanned = self._total, self._scanned
            limit = settings.max_cache_size
            if not needs_scan(
                now=time.monotonic(), scanned_at=scanned, estimate=estimate, limit=limit
            ):
                return
            total = self._rt.total_size()
            self.set_total(total)
            if limit is not None and total > limit:
                self.set_total(
                    evict.enforce(self._rt, self._inuse, settings, protect=(digest,)).total_after
                )
        except Exception as exc:
            log.warning("enforcing the cache limit after %s failed: %s", ticket.what, exc)

    def release(self, ticket: Ticket) -> None:
        """Step 2 when nothing was published: give the reservation back."""
        ticket._drop()

    def free_for(self, settings: Settings, need: int) -> None:
        """After ENOSPC: evict as if the limit were the current total minus ``need``."""
        total = self._rt.total_size()
        limit = max(0, total - need)
        result = evict.enforce(self._rt, self._inuse, settings, limit=limit, target=limit)
        self.set_total(result.total_after)

    # -- the hard limit's ledger ----------------------------------------------------------------
    def _reserved_by_others(self) -> int:
        total = 0
        try:
            with os.scandir(self._folder) as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
                if not owner_alive(entry.name, st.st_mtime, _RESERVATION_MAX_AGE):
                    os.unlink(entry.path)  # a dead process's reservation
                    continue
                with open(entry.path, "rb") as fh:
                    total += int(fh.read() or b"0")
            except (OSError, ValueError):
                continue
        return total

    def _reserve(self, settings: Settings, size: int, what: str) -> Path:
        limit = settings.max_cache_size
        assert limit is not None
        rt = self._rt
        with cache_lock(rt.layout, LIMITS_LOCK, LOCK_TIMEOUT):
            others = self._reserved_by_others()
            entries = evict.gather(rt, self._inuse, counts=settings.eviction_policy == "lfu")
            plan = plan_eviction(
                entries,
                limit=limit,
                target=limit,
                policy=settings.eviction_policy,
                partial=False,
                extra=others + size,
            )
            if not plan.reached:
                raise CacheFullError(
                    f"{what} ({size} bytes) does not fit under the hard cache limit of {limit} "
                    f"bytes: {plan.total_before} bytes are cached ({plan.protected} of them "
                    f"pinned or in use) and {others} bytes are reserved by downloads in "
                    "progress; raise max_cache_size, unpin items, or turn hard_limit off"
                )
            evict.execute(rt, plan, log_evictions=settings.log_evictions)
            self._folder.mkdir(parents=True, exist_ok=True)
            path = self._folder / unique_name(".json", tagged=True)
            atomic_write(path, str(size).encode())
        return path


def _hard(settings: Settings) -> bool:
    return settings.hard_limit and settings.max_cache_size is not None
