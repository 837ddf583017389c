"""The on-disk cache of aiofolio: blobs, bundle records, temp files, locks and statistics.

This package owns everything under ``<cache_dir>`` except ``config.json`` (DESIGN §5). It does
no network I/O and needs no event loop: every function is plain synchronous code that the
engine calls from worker threads, cheap on the hit path (a record load and a blob lookup are
one ``os.stat`` each).

- :mod:`~aiofolio.store.layout`: :class:`CacheLayout` (paths, creation, ``CACHEDIR.TAG``) and
  :func:`bundle_key`.
- :mod:`~aiofolio.store.blobs`: :class:`BlobStore`, content-addressed immutable blobs.
- :mod:`~aiofolio.store.hashing`: :class:`Hashers`, :func:`fast_hash_file` and the algorithm
  names.
- :mod:`~aiofolio.store.records`: :class:`BundleRecord` and :class:`RecordStore`, the API
  over a bundle's folder (bundle record, manifest, item records).
- :mod:`~aiofolio.store.itemlog`: :class:`ItemRecord` and the per-process append-only item
  logs of a bundle, their merge and compaction.
- :mod:`~aiofolio.store.stats`: :class:`StatsCounter`, cross-process counters.
- :mod:`~aiofolio.store.locks`: :func:`blob_lock`, best-effort cross-process locks,
  in the folder's ``lock_mode`` (flock, :mod:`~aiofolio.store.lease` files with a heartbeat,
  or none); :mod:`~aiofolio.store.mounts` detects network filesystems for ``auto``.
- :mod:`~aiofolio.store.prefs`: :class:`PrefsStore`, pins and eviction priorities.
"""

from __future__ import annotations

from aiofolio.store.blobs import BLOB_MODE, BlobInfo, BlobStore, validate_digest
from aiofolio.store.hashing import (
    FAST_ALGORITHM,
    Hashers,
    available_algorithms,
    fast_hash_file,
    hash_file,
    is_available,
    new_hasher,
)
from aiofolio.store.layout import (
    CACHEDIR_TAG_SIGNATURE,
    LAYOUT_VERSION,
    CacheLayout,
    bundle_key,
)
from aiofolio.store.locks import blob_lock, cache_lock, sweep_locks
from aiofolio.store.prefs import BundlePrefs, ItemPrefs, PrefsStore
from aiofolio.store.records import BundleRecord, ItemRecord, RecordStore
from aiofolio.store.stats import COUNTERS, StatsCounter

__all__ = [
    "BLOB_MODE",
    "CACHEDIR_TAG_SIGNATURE",
    "COUNTERS",
    "FAST_ALGORITHM",
    "LAYOUT_VERSION",
    "BlobInfo",
    "BlobStore",
    "BundlePrefs",
    "BundleRecord",
    "CacheLayout",
    "Hashers",
    "ItemPrefs",
    "ItemRecord",
    "PrefsStore",
    "RecordStore",
    "StatsCounter",
    "available_algorithms",
    "blob_lock",
    "bundle_key",
    "cache_lock",
    "fast_hash_file",
    "hash_file",
    "is_available",
    "new_hasher",
    "sweep_locks",
    "validate_digest",
]
