"""Cache statistics shared across processes without a global file rewritten on every hit.

This module owns :class:`StatsCounter` and the ``v1/stats`` folder. Each process counts in
memory (hits, misses, remote checks, bytes downloaded and served from the cache, stale
serves, evictions, the hits the shared tier served; in total and per bundle URL; and per-item
accesses for LFU) and writes its cumulative figures to a file of its own,
``v1/stats/<pid>-<random>.json``, by atomic rename: from a background timer at most once per
``flush_interval`` while something changed, and on :meth:`StatsCounter.flush`,
:meth:`StatsCounter.close` and interpreter exit. A hit therefore costs a dict update under a
thread lock, never I/O.

Readers sum every file (plus their own unflushed counts), so a new process sees what earlier
ones did. :meth:`StatsCounter.compact` merges the files of processes that are gone into one
``merged-<random>.json`` so the folder stays small. Merging never double-counts or loses a
figure for a reader, whatever other processes do at the same time: each input is first claimed
by an atomic rename (only one compactor wins it), the merged file lists the claimed names it
subsumes, and readers skip subsumed files until they are deleted.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

import msgspec

from aiofolio.errors import CacheError
from aiofolio.store._util import atomic_write, host_name, owner_pid, pid_alive, unique_name
from aiofolio.store.layout import CacheLayout
from aiofolio.store.locks import cache_lock

__all__ = ["COUNTERS", "StatsCounter"]

log = logging.getLogger("aiofolio.store")

COUNTERS: Final = (
    "hits",
    "misses",
    "remote_checks",
    "bytes_downloaded",
    "bytes_from_cache",
    "stale_served",
    "evictions",
    "shared_hits",
)
"""The counter names :meth:`StatsCounter.incr` accepts."""

_COUNTER_SET: Final = frozenset(COUNTERS)
_FOREIGN_HOST_MAX_AGE: Final = 7 * 86400.0
_READ_ATTEMPTS: Final = 3
_ABANDONED_CLAIM_AGE: Final = 600.0

_Counts = dict[str, int]


class _StatsFile(msgspec.Struct, kw_only=True):
    format: int = 1
    pid: int = 0
    host: str = ""
    started: float = 0.0
    updated: float = 0.0
    totals: dict[str, int] = {}
    bundles: dict[str, dict[str, int]] = {}
    access: dict[str, dict[str, int]] = {}
    subsumes: list[str] = []


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(_StatsFile)

_LIVE: weakref.WeakSet[StatsCounter] = weakref.WeakSet()


def _add(into: _Counts, counts: Mapping[str, int]) -> None:
    for name, value in counts.items():
        into[name] = into.get(name, 0) + value


def _add_nested(into: dict[str, _Counts], nested: Mapping[str, Mapping[str, int]]) -> None:
    for key, counts in nested.items():
        _add(into.setdefault(key, {}), counts)


class StatsCounter:
    """Per-process cache counters, flushed to ``v1/stats`` and summed across processes.

    Thread-safe. After a ``fork`` the child starts from zero with a file of its own (the
    parent's figures stay the parent's).

    Args:
        layout: The cache layout.
        flush_interval: Seconds between background flushes while counts change; 0 flushes
            on every change (tests).
        compact_threshold: On its first flush, a counter compacts the folder when it holds
            more files than this.
    """

    def __init__(
        self,
        layout: CacheLayout,
        *,
        flush_interval: float = 2.0,
        compact_threshold: int = 32,
    ) -> None:
        self.layout = layout
        self.flush_interval = flush_interval
        self.compact_threshold = compact_threshold
        self._init_state()
        _LIVE.add(self)

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._path = self.layout.stats_dir / unique_name(".json")
        self._started = time.time()
        self._totals: _Counts = {}
        self._bundles: dict[str, _Counts] = {}
        self._access: dict[str, _Counts] = {}
        self._version = 0  # bumped by every change
        self._flushed_version = 0
        self._last_flush = time.monotonic()  # the first flush comes one interval after start
        self._timer: threading.Timer | None = None
        self._closed = False
        self._flushed_once = False

    @property
    def path(self) -> Path:
        """This process's counter file (it exists after the first flush)."""
        return self._path

    # ----------------------------------------------------------------------------------------
    # counting (the hot path: memory only)

    def incr(self, counter: str, n: int = 1, *, url: str | None = None) -> None:
        """Add ``n`` to ``counter`` (in total, and for ``url`` when given).

        Args:
            counter: One of :data:`COUNTERS`.
            n: The amount (bytes for the ``bytes_*`` counters).
            url: The bundle URL the event belongs to.

        Raises:
            ValueError: An unknown counter name.
        """
        if counter not in _COUNTER_SET:
            raise ValueError(f"unknown counter {counter!r}; known: {', '.join(COUNTERS)}")
        if not n:
            return
        with self._lock:
            self._totals[counter] = self._totals.get(counter, 0) + n
            if url is not None:
                counts = self._bundles.setdefault(url, {})
                counts[counter] = counts.get(counter, 0) + n
            self._version += 1
        self._schedule()

    def add(self, url: str | None = None, /, **counts: int) -> None:
        """Add several counters at once, e.g. ``add(url, hits=1, bytes_from_cache=n)``.

        Args:
            url: The bundle URL the events belong to (None: totals only).
            **counts: Counter names (from :data:`COUNTERS`) to amounts.

        Raises:
            ValueError: An unknown counter name (nothing is counted then).
        """
        unknown = counts.keys() - _COUNTER_SET
        if unknown:
            raise ValueError(
                f"unknown counter {sorted(unknown)[0]!r}; known: {', '.join(COUNTERS)}"
            )
        with self._lock:
            bundle = self._bundles.setdefault(url, {}) if url is not None else None
            for counter, n in counts.items():
                if not n:
                    continue
                self._totals[counter] = self._totals.get(counter, 0) + n
                if bundle is not None:
                    bundle[counter] = bundle.get(counter, 0) + n
            self._version += 1
        self._schedule()

    def record_access(self, url: str, name: str, n: int = 1) -> None:
        """Count an access to item ``name`` of bundle ``url`` (for LFU eviction)."""
        with self._lock:
            counts = self._access.setdefault(url, {})
            counts[name] = counts.get(name, 0) + n
            self._version += 1
        self._schedule()

    def _schedule(self) -> None:
        if self.flush_interval <= 0:
            if not self._closed:
                self.flush()
            return
        with self._lock:
            if self._timer is not None or self._closed:
                return
            delay = max(0.0, self._last_flush + self.flush_interval - time.monotonic())
            timer = threading.Timer(delay, self._timer_flush)
            timer.daemon = True
            timer.name = "aiofolio-stats-flush"
            self._timer = timer
        timer.start()

    def _timer_flush(self) -> None:
        with self._lock:
            self._timer = None
        self.flush()

    # ----------------------------------------------------------------------------------------
    # flushing

    def flush(self) -> bool:
        """Write this process's figures now if they changed; never raises.

        Returns:
            True when the file was written (False: nothing changed, or the write failed,
            which is logged and retried on the next flush).
        """
        with self._flush_lock:
            with self._lock:
                version = self._version
                if version == self._flushed_version:
                    return False
                snapshot = _StatsFile(
                    pid=os.getpid(),
                    host=host_name(),
                    started=self._started,
                    updated=time.time(),
                    totals=dict(self._totals),
                    bundles={url: dict(c) for url, c in self._bundles.items()},
                    access={url: dict(c) for url, c in self._access.items()},
                )
            try:
                atomic_write(self._path, _ENCODER.encode(snapshot))
            except CacheError as exc:
                log.debug("cannot write cache statistics: %s", exc)
                return False
            with self._lock:
                self._flushed_version = version
                self._last_flush = time.monotonic()
            first = not self._flushed_once
            self._flushed_once = True
        if first and self.compact_threshold >= 0:
            with contextlib.suppress(CacheError, OSError):
                if len(self._list()) > self.compact_threshold:
                    self.compact()
        return True

    def close(self) -> None:
        """Flush and stop the background flushes (later counts are written by :meth:`flush`)."""
        with self._lock:
            self._closed = True
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.flush()
        _LIVE.discard(self)

    def _after_fork_in_child(self) -> None:
        self._init_state()

    # ----------------------------------------------------------------------------------------
    # reading

    def totals(self, url: str | None = None) -> dict[str, int]:
        """The counters summed over every process's file plus this process's unflushed ones.

        Args:
            url: One bundle's counters; None for the totals over all bundles.

        Returns:
            Every name in :data:`COUNTERS` (0 when never counted), plus any other counter a
            newer aiofolio wrote.
        """
        result: _Counts = dict.fromkeys(COUNTERS, 0)
        for data in self._read_others():
            _add(result, data.totals if url is None else data.bundles.get(url, {}))
        with self._lock:
            _add(result, self._totals if url is None else self._bundles.get(url, {}))
        return result

    def access_counts(self, url: str) -> dict[str, int]:
        """Accesses per item name of bundle ``url``, over every process."""
        result: _Counts = {}
        for data in self._read_others():
            _add(result, data.access.get(url, {}))
        with self._lock:
            _add(result, self._access.get(url, {}))
        return result

    def _list(self) -> list[str]:
        try:
            with os.scandir(self.layout.stats_dir) as it:
                return [e.name for e in it if e.name.endswith(".json") and e.name[0] != "."]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def _read_all(self) -> dict[str, _StatsFile]:
        """Every stats file by name; retried when one vanishes mid-read (a compaction)."""
        folder = self.layout.stats_dir
        files: dict[str, _StatsFile] = {}
        for attempt in range(1, _READ_ATTEMPTS + 1):
            files = {}
            vanished = False
            for name in self._list():
                try:
                    raw = (folder / name).read_bytes()
                except FileNotFoundError:
                    vanished = True
                    continue
                except OSError as exc:
                    log.debug("cannot read %s: %s", folder / name, exc)
                    continue
                try:
                    files[name] = _DECODER.decode(raw)
                except msgspec.DecodeError as exc:
                    log.debug("ignoring undecodable statistics file %s: %s", folder / name, exc)
            if not vanished or attempt == _READ_ATTEMPTS:
                break
        return files

    def _read_others(self) -> list[_StatsFile]:
        files = self._read_all()
        subsumed = {name for data in files.values() for name in data.subsumes}
        own = self._path.name
        return [data for name, data in files.items() if name != own and name not in subsumed]

    # ----------------------------------------------------------------------------------------
    # compaction

    def compact(self) -> int:
        """Merge the files of processes that are gone into one file; return how many merged.

        Candidates: files of pids that no longer run on this host (files of other hosts only
        after a week without an update), earlier merged files, and claims that a compactor
        which died left behind. Safe to run from several processes at once (a best-effort
        lock avoids wasted work; claims by rename keep the counts exact without it).

        Raises:
            CacheError: The merged file cannot be written (the claimed inputs stay, and
                readers keep counting them).
        """
        with cache_lock(self.layout, "stats:compact", 1.0):
            return self._compact()

    def _compact(self) -> int:
        folder = self.layout.stats_dir
        files = self._read_all()
        subsumed = {name for data in files.values() for name in data.subsumes}
        for name in subsumed & files.keys():  # a compactor died before deleting its inputs
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
        now = time.time()
        candidates: list[str] = []
        own = self._path.name
        for name, data in files.items():
            if name in subsumed or name == own:
                continue
            if name.startswith("merged-"):
                gone = True
            elif name.startswith("claimed-"):
                gone = self._claim_abandoned(name, now)
            else:
                pid = owner_pid(name)
                if pid is None:
                    continue
                if data.host and data.host != host_name():  # its pid means nothing here
                    gone = now - data.updated > _FOREIGN_HOST_MAX_AGE
                else:
                    gone = not pid_alive(pid)
            if gone:
                candidates.append(name)
        if len(candidates) < 2 and not any(not c.startswith("merged-") for c in candidates):
            return 0
        claimed = self._claim(candidates)
        if not claimed:
            return 0
        merged = _StatsFile(pid=0, host=host_name(), started=now, updated=now, subsumes=claimed)
        for name in claimed:
            try:
                data = _DECODER.decode((folder / name).read_bytes())
            except (OSError, msgspec.DecodeError):
                continue
            _add(merged.totals, data.totals)
            _add_nested(merged.bundles, data.bundles)
            _add_nested(merged.access, data.access)
        atomic_write(folder / f"merged-{secrets.token_hex(8)}.json", _ENCODER.encode(merged))
        for name in claimed:
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
        return len(claimed)

    def _claim_abandoned(self, name: str, now: float) -> bool:
        # A claim is renamed (ctime) by a compactor that deletes it within milliseconds; one
        # that is old was left by a compactor that died (its pid may be another host's).
        try:
            changed = os.stat(self.layout.stats_dir / name).st_ctime
        except OSError:
            return False
        return now - changed > _ABANDONED_CLAIM_AGE

    def _claim(self, names: Iterable[str]) -> list[str]:
        folder = self.layout.stats_dir
        claimed: list[str] = []
        for name in names:
            target = f"claimed-{unique_name('.json')}"
            try:
                os.rename(folder / name, folder / target)
            except OSError:
                continue  # another compactor won it
            claimed.append(target)
        return claimed


def _flush_all() -> None:
    for counter in list(_LIVE):
        with contextlib.suppress(Exception):
            counter.close()


def _reset_in_child() -> None:
    for counter in list(_LIVE):
        counter._after_fork_in_child()


atexit.register(_flush_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_in_child)
