"""The engine's one piece of process-wide state: the engine and a runtime per cache root.

Owns: :class:`Engine` (the backend pool, one client per store and options, and a private
scratch folder for downloads that never enter the cache) and :class:`Runtime` (everything one
process keeps about one cache folder: the store objects, the quota estimate and reservations,
the in-use registry, the in-flight downloads, the resume journals being written and the
background warms). :func:`engine` and :func:`runtime` hand them out; both live in the single
module-level registry :data:`_STATE`, which is reset in a forked child in one place
(:func:`_after_fork`), so a folio created before ``fork()`` gets fresh clients, stores and
futures in the child instead of sharing the parent's.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread

from aiofolio.backends import Backend, BackendPool
from aiofolio.bundle import Manifest
from aiofolio.config import Settings
from aiofolio.engine import evict
from aiofolio.engine._folder import Folder
from aiofolio.engine.inuse import InUse
from aiofolio.engine.quota import Quota
from aiofolio.engine.resume import Registry
from aiofolio.store import locks

_PARSED_MAX = 8

__all__ = [
    "BundleScope",
    "Engine",
    "Runtime",
    "aclose_engine",
    "drop_runtimes",
    "engine",
    "in_thread",
    "runtime",
]

T = TypeVar("T")
log = logging.getLogger("aiofolio.cache")


class Engine:
    """Shared network clients and scratch space of this process (lives on the engine loop)."""

    def __init__(self) -> None:
        self.pool = BackendPool()
        self._scratch: str | None = None

    @property
    def scratch_dir(self) -> str:
        """A private folder (mode 0700) for this process's downloads, removed at exit."""
        if self._scratch is None or not os.path.isdir(self._scratch):
            self._scratch = tempfile.mkdtemp(prefix=f"aiofolio-{os.getpid()}-")
            atexit.register(shutil.rmtree, self._scratch, True)
        return self._scratch

    async def aclose(self) -> None:
        """Close every network client."""
        await self.pool.aclose()


class Runtime(Folder):
    """What this process keeps about one cache folder (one object per folder).

    Attributes:
        layout, blobs, records, stats, prefs: the store (:class:`Folder`).
        inuse: blobs held by readers and handed-out paths (:mod:`aiofolio.engine.inuse`).
        quota: the size limits around publishes (:mod:`aiofolio.engine.quota`).
        inflight: downloads running in this process, by key (single flight).
        resume: the resume sidecars downloads of this process are journaling.
        warms: background warm tasks (asyncio keeps only weak references to tasks).
    """

    def __init__(self, cache_dir: str) -> None:
        super().__init__(cache_dir)
        self.inuse = InUse(self)
        self.quota = Quota(self, self.inuse)
        self.inflight: dict[str, asyncio.Future[Path]] = {}
        self.resume = Registry()
        self.warms: set[asyncio.Task[Any]] = set()
        self._swept = -1e18
        self._parsed_lock = threading.Lock()
        self.parsed: OrderedDict[tuple[str, str], Manifest] = OrderedDict()
        """Parsed manifests by (bundle url, manifest MD5), most recent last: a folio opened
        again in this process reuses the parse (a 100,000-item manifest takes about a second
        to parse). Manifests are immutable, so sharing one is safe."""

    def parsed_manifest(self, url: str, md5: str) -> Manifest | None:
        with self._parsed_lock:  # readers run on several threads
            found = self.parsed.get((url, md5))
            if found is not None:
                self.parsed.move_to_end((url, md5))
            return found

    def remember_manifest(self, url: str, md5: str, manifest: Manifest) -> None:
        if not md5:
            return
        with self._parsed_lock:
            self.parsed[(url, md5)] = manifest
            self.parsed.move_to_end((url, md5))
            while len(self.parsed) > _PARSED_MAX:
                self.parsed.popitem(last=False)

    def sweep_temps(self, *, min_interval: float = 5.0) -> None:
        """Delete temp files of dead processes of this host (blocking; at most every few
        seconds; never raises). Runs when a folio opens the cache and before downloads, so a
        ``kill -9`` leaves its partial file only until the next process uses the cache; the
        partial of a live resume journal is kept for its claimant."""
        now = time.monotonic()
        if now - self._swept < min_interval:
            return
        self._swept = now
        try:
            self.blobs.sweep_temps()
        except Exception as exc:  # a sweep must never fail a read
            log.debug("sweeping %s failed: %s", self.layout.tmp_dir, exc)

    # -- maintenance passes (blocking), keeping the quota's estimate true ------------------------
    def enforce(self, settings: Settings) -> evict.EvictionResult:
        """One eviction pass to the settings' limit (``enforce_cache_limit``)."""
        result = evict.enforce(self, self.inuse, settings)
        self.quota.set_total(result.total_after)
        return result

    def cleanup(
        self, settings: Settings, older_than: float, *, dry_run: bool = False
    ) -> evict.EvictionResult:
        """Evict what was not read for ``older_than`` seconds (``cleanup_cache``)."""
        result = evict.cleanup(self, self.inuse, settings, older_than, dry_run=dry_run)
        if not dry_run:
            self.quota.set_total(result.total_after)
        return result

    def info(self, settings: Settings) -> dict[str, Any]:
        """The folder at a glance (``cache_info``)."""
        return evict.info(self, self.inuse, settings)

    def remove_bundles(self, urls: list[str], *, dry_run: bool = False) -> int:
        """Delete whole bundles and the blobs only they used; bytes freed (``dry_run``: the
        bytes it would free, nothing deleted)."""
        freed = evict.remove_bundles(self, self.inuse, urls, dry_run=dry_run)
        if not dry_run:
            self.quota.note(-freed)
        return freed


@dataclass
class BundleScope:
    """One cached bundle as the engine's manifest and blob caches see it.

    Attributes:
        url: the bundle URL.
        backend: its store's client.
        settings: the folio's resolved settings.
        rt: the runtime of its cache folder.
        clock: epoch seconds for TTL decisions (injected by tests and simulations).
        scratch_dir: a private folder for copies that never enter the cache.
    """

    url: str
    backend: Backend
    settings: Settings
    rt: Runtime
    clock: Callable[[], float]
    scratch_dir: str

    @property
    def offline(self) -> bool:
        return self.settings.cache_mode == "offline"

    @property
    def writes_cache(self) -> bool:
        """Whether this bundle's reads may write the cache (not ``read-only``)."""
        return self.settings.cache_mode in ("read-write", "write-through", "offline")


class _State:
    def __init__(self, parent: _State | None = None) -> None:
        self.lock = threading.Lock()
        self.engine: Engine | None = None
        self.runtimes: dict[str, Runtime] = {}
        self.parent = parent
        """The state inherited from the parent process, kept alive and never touched: tearing
        down its clients would unregister their sockets from the parent's epoll set, which a
        forked child shares."""


_STATE = _State()
"""The engine module's only mutable registry (reset after fork)."""


def engine() -> Engine:
    """The engine of this process."""
    state = _STATE
    if state.engine is None:
        with state.lock:
            if state.engine is None:
                state.engine = Engine()
    return state.engine


def runtime(cache_dir: str, lock_mode: str = "auto") -> Runtime:
    """The runtime of ``cache_dir`` (created, with its folders, on first use).

    ``lock_mode`` (the setting) says how this process locks the folder from now on
    (:func:`aiofolio.store.locks.configure`; the last caller's setting wins).

    Raises:
        CacheError: the folder cannot be created or written (the message names it).
    """
    key = os.path.abspath(cache_dir)
    found = _STATE.runtimes.get(key)
    if found is None:
        with _STATE.lock:
            found = _STATE.runtimes.get(key)
            if found is None:
                found = _STATE.runtimes[key] = Runtime(key)
    locks.configure(found.layout, lock_mode)
    return found


def drop_runtimes() -> None:
    """Forget the open runtimes (after their folders were deleted; re-created on use)."""
    with _STATE.lock:
        _STATE.runtimes.clear()


async def aclose_engine() -> None:
    """Close the engine's clients (the facade runs this when its loop shuts down)."""
    state = _STATE
    current, state.engine = state.engine, None
    if current is not None:
        await current.aclose()


def _after_fork() -> None:  # pragma: no cover - runs in forked children only
    # The parent's clients, futures, locks and registries belong to the parent's threads
    # and loop: the child starts with none of them (its store objects are made anew on use).
    global _STATE
    _STATE = _State(parent=_STATE)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run the blocking ``fn(*args)`` in a worker thread (disk work) and return its result."""
    return await anyio.to_thread.run_sync(lambda: fn(*args))
