"""Partly cached Parquet payloads: the footer and the byte ranges fetched for column reads.

Owns: :class:`PartialStore`, the area ``v1/partial/<bundle_key>/<item_key>/`` of one cache
folder. Each item folder holds ``meta.json`` (which item entry and which remote version the
pieces belong to: the manifest entry's fingerprint, the payload's size and version token, and
every piece with its fast hash) and one immutable file per piece, ``<start>-<end>.bin``, the
bytes ``[start, end)`` of the payload. Pieces are written to a temp file beside them and
renamed; ``meta.json`` is replaced atomically after its pieces are in place, so a reader sees
only complete pieces. A partial is never a blob: it never enters ``blobs/`` and never counts as
the cached item. No network.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from aiofolio.store._util import atomic_write, unique_name
from aiofolio.store.hashing import FAST_ALGORITHM, new_hasher
from aiofolio.store.layout import CacheLayout, bundle_key

__all__ = ["PARTIAL_PREFIX", "PartialEntry", "PartialMeta", "PartialStore", "piece_hash"]

PARTIAL_PREFIX: Final = "partial:"
"""The prefix of a partial's key in eviction plans (blob digests never contain a colon)."""

_META: Final = "meta.json"


class PartialMeta(msgspec.Struct, kw_only=True):
    """What one item folder holds: ``pieces`` are ``[start, end, fast_hash]``, sorted."""

    url: str
    name: str
    fingerprint: str
    size: int
    token: str
    pieces: list[tuple[int, int, str]] = msgspec.field(default_factory=list)
    algorithm: str = FAST_ALGORITHM


@dataclass(frozen=True)
class PartialEntry:
    """One item folder as eviction sees it."""

    key: str
    url: str
    name: str
    size: int
    last_access: float
    cached_at: float


def piece_hash(data: bytes | memoryview, algorithm: str = FAST_ALGORITHM) -> str:
    hasher = new_hasher(algorithm)
    hasher.update(data)
    return hasher.hexdigest()


def _item_key(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]


class PartialStore:
    """The partial area of one cache folder (see the module docstring). Blocking calls."""

    def __init__(self, layout: CacheLayout) -> None:
        self.root = layout.version_dir / "partial"

    def item_dir(self, url: str, name: str) -> Path:
        return self.root / bundle_key(url) / _item_key(name)

    def key_dir(self, key: str) -> Path:
        return self.root / key.removeprefix(PARTIAL_PREFIX)

    def load(self, url: str, name: str) -> PartialMeta | None:
        """The item's meta, or None (absent, unreadable, or another item's)."""
        try:
            data = (self.item_dir(url, name) / _META).read_bytes()
            meta = msgspec.json.decode(data, type=PartialMeta)
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None
        return meta if meta.url == url and meta.name == name else None

    def save(self, meta: PartialMeta) -> None:
        meta.pieces.sort()
        atomic_write(self.item_dir(meta.url, meta.name) / _META, msgspec.json.encode(meta))

    def piece_path(self, url: str, name: str, start: int, end: int) -> Path:
        return self.item_dir(url, name) / f"{start}-{end}.bin"

    def temp_path(self, url: str, name: str) -> Path:
        folder = self.item_dir(url, name)
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f".{unique_name('.part')}"

    def read_piece(self, url: str, name: str, start: int, end: int) -> bytes:
        """A piece's bytes (OSError if it is gone); the atime moves (LRU of the item)."""
        path = self.piece_path(url, name, start, end)
        data = path.read_bytes()
        with contextlib.suppress(OSError):
            now = time.time()
            os.utime(path.parent / _META, (now, os.stat(path.parent / _META).st_mtime))
        return data

    def remove(self, url: str, name: str) -> int:
        """Delete one item's partial; returns the bytes freed."""
        return self._rmtree(self.item_dir(url, name))

    def remove_key(self, key: str) -> int:
        return self._rmtree(self.key_dir(key))

    def remove_bundle(self, url: str) -> int:
        return self._rmtree(self.root / bundle_key(url))

    def _rmtree(self, folder: Path) -> int:
        freed = _du(folder)
        shutil.rmtree(folder, ignore_errors=True)
        if folder.parent != self.root:
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # the bundle's folder, once its last item went
        return freed

    def scan(self) -> Iterator[PartialEntry]:
        """Every item folder with a readable meta (size: all its files)."""
        if not self.root.is_dir():
            return
        for bundle in os.scandir(self.root):
            if not bundle.is_dir(follow_symlinks=False):
                continue
            for item in os.scandir(bundle.path):
                folder = Path(item.path)
                try:
                    meta = msgspec.json.decode((folder / _META).read_bytes(), type=PartialMeta)
                    st = os.stat(folder / _META)
                except (OSError, msgspec.DecodeError, msgspec.ValidationError):
                    meta = None
                    st = None
                key = f"{PARTIAL_PREFIX}{bundle.name}/{item.name}"
                size = _du(folder)
                if meta is None or st is None:  # a crashed writer's leftovers: free to go
                    yield PartialEntry(key, "", "", size, 0.0, 0.0)
                    continue
                yield PartialEntry(key, meta.url, meta.name, size, st.st_atime, st.st_mtime)

    def total_size(self) -> int:
        return sum(e.size for e in self.scan())


def _du(folder: Path) -> int:
    total = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            with contextlib.suppress(OSError):
                total += entry.stat(follow_symlinks=False).st_size
    return total
