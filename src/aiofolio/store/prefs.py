"""Persistent eviction preferences of cached items: pins and priorities.

This module owns :class:`ItemPrefs`, :class:`BundlePrefs` and :class:`PrefsStore`, which keeps
them in ``<cache_dir>/v1/prefs/<bundle key>.json`` (one small file per bundle that has any).
They live apart from the bundle records on purpose: a record's item entry is replaced when the
item is downloaded again (a new version, a repaired blob) and dropped when it is evicted or
invalidated, while a pin or a priority is the user's wish about an item *name* and must survive
all of that, and process restarts. ``clear_cache()`` of one bundle leaves them; deleting the
whole cache (``clear_all_caches``) removes them with everything else.

Files are written with :func:`~aiofolio.store._util.atomic_write` under a best-effort
cross-process lock, and decoded leniently (unknown fields ignored; an undecodable file is no
preferences, with a warning).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final

import msgspec

from aiofolio.store._util import atomic_write
from aiofolio.store.layout import CacheLayout, bundle_key
from aiofolio.store.locks import cache_lock

__all__ = ["PREFS_DIR", "BundlePrefs", "ItemPrefs", "PrefsStore"]

log = logging.getLogger("aiofolio.store")

PREFS_DIR: Final = "prefs"
"""The folder under ``v1`` that holds the preference files."""


class ItemPrefs(msgspec.Struct, kw_only=True):
    """Eviction preferences of one item name.

    Attributes:
        pinned: Never evict.
        priority: Higher stays longer; 0 is the default.
    """

    pinned: bool = False
    priority: int = 0


class BundlePrefs(msgspec.Struct, kw_only=True):
    """The preferences of one bundle's items.

    Attributes:
        url: The bundle URL.
        items: Preferences by item name (names without any are absent).
    """

    format: int = 1
    url: str = ""
    items: dict[str, ItemPrefs] = {}


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(BundlePrefs)


class PrefsStore:
    """Pins and priorities in ``v1/prefs``; safe across threads and processes.

    Args:
        layout: The cache layout.
        lock_timeout: Seconds an update waits for the lock before going on without it.
    """

    def __init__(self, layout: CacheLayout, *, lock_timeout: float = 10.0) -> None:
        self.layout = layout
        self.lock_timeout = lock_timeout
        self.folder: Path = layout.version_dir / PREFS_DIR
        self._memo: dict[str, tuple[tuple[int, int, int], BundlePrefs]] = {}

    def path(self, url: str) -> Path:
        """The preference file of bundle ``url``."""
        return self.folder / f"{bundle_key(url)}.json"

    def _read(self, path: Path) -> BundlePrefs | None:
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            log.warning("cannot read the cache preferences %s: %s", path, exc.strerror or exc)
            return None
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        memo = self._memo.get(str(path))
        if memo is not None and memo[0] == stamp:
            return memo[1]
        try:
            prefs = _DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            log.warning("ignoring the cache preferences %s: %s", path, exc)
            return None
        self._memo[str(path)] = (stamp, prefs)
        return prefs

    def load(self, url: str) -> dict[str, ItemPrefs]:
        """The preferences of ``url``'s items by name (empty when it has none)."""
        prefs = self._read(self.path(url))
        return dict(prefs.items) if prefs is not None and prefs.url in ("", url) else {}

    def load_all(self) -> dict[str, dict[str, ItemPrefs]]:
        """Every bundle's preferences, by bundle URL."""
        out: dict[str, dict[str, ItemPrefs]] = {}
        try:
            with os.scandir(self.folder) as it:
                paths = [Path(e.path) for e in it if e.name.endswith(".json")]
        except (FileNotFoundError, NotADirectoryError):
            return out
        for path in paths:
            prefs = self._read(path)
            if prefs is not None and prefs.url and prefs.items:
                out[prefs.url] = dict(prefs.items)
        return out

    def update(self, url: str, name: str, fn: Callable[[ItemPrefs], ItemPrefs]) -> ItemPrefs:
        """Read-modify-write the preferences of item ``name`` of ``url``; returns the new ones.

        An item whose preferences are back to the defaults is removed from the file, and a
        file left empty is deleted.

        Raises:
            CacheError: The file cannot be written.
        """
        path = self.path(url)
        with cache_lock(self.layout, f"prefs:{bundle_key(url)}", self.lock_timeout) as locked:
            new = self._apply(path, url, name, fn)
            # Without the lock (lock_mode "none", or a timeout) another process may have
            # replaced the file with a view that lacks our change: look again, reapply.
            for _ in range(0 if locked else 3):
                current = self._read(path)
                seen = current.items.get(name) if current is not None else None
                wanted = new if (new.pinned or new.priority) else None
                if seen == wanted:
                    break
                self._apply(path, url, name, lambda _old: new)
            return new

    def _apply(
        self, path: Path, url: str, name: str, fn: Callable[[ItemPrefs], ItemPrefs]
    ) -> ItemPrefs:
        current = self._read(path)
        items = dict(current.items) if current is not None else {}
        old = items.get(name, ItemPrefs())
        new = fn(ItemPrefs(pinned=old.pinned, priority=old.priority))
        if new.pinned or new.priority:
            items[name] = new
        else:
            items.pop(name, None)
        if items:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(path, _ENCODER.encode(BundlePrefs(url=url, items=items)))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            self._memo.pop(str(path), None)
        return new
