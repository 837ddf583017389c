"""The store objects of one cache folder, opened together (no state beyond them).

Owns: :class:`Folder`, the layout, blobs, records, stats, prefs and partials (column reads)
of one ``cache_dir`` (:mod:`aiofolio.store`). The engine's
:class:`~aiofolio.engine._runtime.Runtime` extends it with what a process keeps in memory;
the modules below the runtime (in-use, quota, eviction) take a plain :class:`Folder`, so none
of them imports the runtime.
"""

from __future__ import annotations

from aiofolio.store import BlobStore, CacheLayout, PrefsStore, RecordStore, StatsCounter
from aiofolio.store.partials import PartialStore

__all__ = ["Folder"]


class Folder:
    """The store of one cache folder (created, with its folders, on construction).

    Raises:
        CacheError: the folder cannot be created or written (the message names it).
    """

    def __init__(self, cache_dir: str) -> None:
        self.layout = CacheLayout(cache_dir)
        self.layout.ensure()
        self.blobs = BlobStore(self.layout)
        self.records = RecordStore(self.layout)
        self.stats = StatsCounter(self.layout)
        self.prefs = PrefsStore(self.layout)
        self.partials = PartialStore(self.layout)

    def total_size(self) -> int:
        """Bytes the size limits count: every blob and every partial (column reads)."""
        return self.blobs.total_size() + self.partials.total_size()

    @property
    def root(self) -> str:
        return str(self.layout.root)
