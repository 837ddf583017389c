"""Helpers of the CLI tests: a bundle served by the loopback HTTP server, a real cache folder
(conftest's ``_isolated_cache``), and the ``aiofolio`` command run in-process (click's runner)
or as a real subprocess (``python -m aiofolio.cli``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aiofolio import DataFolio
from aiofolio.bundle import payload_path
from aiofolio.store import CacheLayout
from aiofolio.testing import FaultServer

NAMES = ("alpha", "beta", "gamma")
N = 20_000


def value(name: str) -> np.ndarray:
    """The array stored under ``name``: N bytes of its first letter."""
    return np.full(N, ord(name[0]), dtype=np.uint8)


class Remote:
    """A bundle written locally and served by the HTTP file server."""

    def __init__(self, server: FaultServer, root: Path, prefix: str = "/bundle") -> None:
        self.server, self.root, self.prefix = server, root, prefix
        self.writer = DataFolio(root, cache_enabled=False)

    def add(self, name: str, data: np.ndarray) -> None:
        self.writer.add(name, data, overwrite=True)
        self.publish()

    def publish(self) -> None:
        for p in self.root.rglob("*"):
            if p.is_file():
                self.server.put(
                    f"{self.prefix}/{p.relative_to(self.root).as_posix()}", p.read_bytes()
                )

    @property
    def url(self) -> str:
        return f"{self.server.url}{self.prefix}"

    def payload(self, name: str) -> str:
        return f"{self.prefix}/{payload_path(self.writer.get_item(name))}"

    def gets(self, name: str) -> int:
        """GET requests the server saw for ``name``'s payload."""
        return self.server.stats.requests(path=self.payload(name), method="GET")


@dataclass
class Run:
    """One run of the command: exit code, stdout, stderr."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def cache_files(cache_dir: Path) -> dict[str, object]:
    """Every blob (size, mtime) and record file (bytes) of the cache folder.

    Blobs are not read: a read would move their atime (``relatime``), which is what the
    cache's LRU and ``cleanup --older-than`` look at.
    """
    out: dict[str, object] = {}
    for area in ("blobs", "bundles"):
        for p in sorted((cache_dir / "v1" / area).rglob("*")):
            if p.is_file():
                st = p.stat()
                key = str(p.relative_to(cache_dir))
                out[key] = (st.st_size, st.st_mtime_ns) if area == "blobs" else p.read_bytes()
    return out


def blob_of(folio: DataFolio, name: str) -> Path:
    """The blob holding ``name``'s cached bytes (found by listing, so no path is handed out)."""
    for bundle in DataFolio.list_cache():
        for item in bundle.items:
            if bundle.url == folio.path and item.name == name:
                assert item.present, item
                return (
                    CacheLayout(folio.settings.cache_dir).blobs_dir / item.digest[:2] / item.digest
                )
    raise AssertionError(f"{name} is not cached")
