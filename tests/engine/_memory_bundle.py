"""Helpers for engine tests on a MemoryBackend: bundles written in memory, read with a fake clock.

Owns: :class:`Clock` (the injected TTL clock), :func:`cache_settings`, :func:`write_bundle`
(a caching-off writer that puts a bundle into the MemoryBackend), :func:`reader` (a cached
session opened on the same backend), :func:`calls` (the backend's call counts, then reset)
and :func:`listing` (what is under a folder, to prove nothing was written).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiofolio.backends.memory import MemoryBackend
from aiofolio.bundle import payload_path
from aiofolio.config import Settings, resolve_settings
from aiofolio.engine.session import BundleSession

URL = "memory://bucket/bundle"
ITEMS_URL = f"{URL}/items.json"
TTL = 60.0
START = 1_000_000.0


class Clock:
    """A clock that moves only when told (epoch seconds)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def cache_settings(cache_dir: str | os.PathLike[str], **overrides: Any) -> Settings:
    """Settings of a cached reader on ``cache_dir`` (TTL :data:`TTL` unless overridden)."""
    constructor: dict[str, Any] = {
        "cache_dir": str(cache_dir),
        "cache_enabled": True,
        "cache_ttl": TTL,
    }
    constructor.update(overrides)
    return resolve_settings(constructor=constructor).settings


async def write_bundle(
    mem: MemoryBackend,
    items: Mapping[str, Any],
    *,
    url: str = URL,
    overwrite: bool = False,
) -> BundleSession:
    """Open (creating if absent) the bundle at ``url`` with caching off and add ``items``.

    Also plays "another writer": on an existing bundle it loads the current manifest first, so
    ``overwrite=True`` replaces items as a second process would.
    """
    settings = resolve_settings(constructor={"cache_enabled": False}).settings
    writer = BundleSession(url, settings=settings, backend=mem)
    await writer.open(create=True, metadata=None)
    for name, obj in items.items():
        await writer.add(name, obj, overwrite=overwrite)
    return writer


async def reader(
    mem: MemoryBackend,
    cache_dir: str | os.PathLike[str],
    clock: Clock,
    *,
    url: str = URL,
    **overrides: Any,
) -> BundleSession:
    """A cached session of ``url`` on ``mem``, opened (the manifest loaded as the TTL says)."""
    session = BundleSession(
        url, settings=cache_settings(cache_dir, **overrides), backend=mem, clock=clock
    )
    await session.open(create=False, metadata=None)
    return session


def calls(mem: MemoryBackend) -> dict[str, int]:
    """The backend's non-zero call counts since the last call of this function (then reset)."""
    counts = {method: n for method, n in mem.calls.items() if n}
    mem.calls.clear()
    return counts


def payload_url(session: BundleSession, name: str) -> str:
    """The store URL of the current payload of item ``name``."""
    return session.object_url(payload_path(session.require_manifest().current(name)))


def blob_file(session: BundleSession, name: str) -> Path | None:
    """The cached blob of the current version of ``name``, or None when it is not cached."""
    blobs = session.blobs
    assert blobs is not None
    rec = blobs.cached_item(session.require_manifest().current(name))
    return None if rec is None else session.runtime.blobs.path(rec.digest)


def listing(root: str | os.PathLike[str]) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``root``: relative path -> (kind, size, mtime_ns).

    Access times are left out on purpose: a hit records its access in the blob's atime (LRU
    bookkeeping, no content written).
    """
    out: dict[str, tuple[str, int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            kind = "dir" if name in dirs else "file"
            size = 0 if kind == "dir" else st.st_size
            out[os.path.relpath(path, root)] = (kind, size, st.st_mtime_ns)
    return out
