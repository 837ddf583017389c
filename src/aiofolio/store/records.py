"""Bundle records of the cache: what we know about each cached bundle, and their files.

This module owns :class:`BundleRecord` (msgspec, a default on every field, unknown fields
ignored so older and newer aiofolio versions share a cache) and :class:`RecordStore`, the one
API over a bundle's folder ``v1/bundles/<key>/``:

- ``record.json`` (format 2): the bundle-level :class:`BundleRecord` (manifest token, last
  check, which manifest), no item records;
- ``manifest-<md5>.json``: the raw remote manifest bytes, exactly as fetched, named by their
  MD5, which the record names in ``manifest_md5``;
- ``items/`` and ``items.snap``: the :class:`~aiofolio.store.itemlog.ItemRecord` of each
  cached item, as per-process append-only logs and a compaction snapshot
  (:mod:`~aiofolio.store.itemlog`): an item commit is one small append, whatever the number
  of items, and no process's write can undo another's.

A save writes the (immutable, content-named) manifest first and then renames a complete
record into place, so every record a reader can see comes with the very manifest it was saved
with, also when several processes save at once and no lock works (last writer wins for the
pair as a whole). Manifests that no record names any more are deleted after a grace period. A
record or manifest that does not decode or verify is a miss (logged as a warning), never an
exception: the engine fetches again and the next save repairs it.

Loads are served from memory while ``record.json``'s ``(mtime_ns, size, inode)`` stamp is
unchanged, so the hit path costs one ``os.stat``; a changed record that names the same
manifest reuses the manifest bytes already in memory. (Every save renames a new inode into
place; only on kernels without fine-grained timestamps could two saves of equal size within
one clock tick that also reuse an inode go unnoticed, until the next save.)
:meth:`RecordStore.load` returns a copy of the record (its ``items`` always empty).
Item lookups are served from an in-memory index refreshed from disk when a name is missing.

A format-1 ``record.json`` (items inside, as aiofolio wrote it before) keeps working: its items
are the base layer of the item view (entries as old as the file), and the first save of the
bundle record writes them into ``items.snap`` before it rewrites ``record.json`` without them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from aiofolio.store._util import atomic_write, os_error, owner_pid, pid_alive
from aiofolio.store.itemlog import (
    ITEMS_DIR,
    SNAPSHOT_FILE,
    BaseLayer,
    BundleItems,
    ItemRecord,
    Op,
    Stamp,
)
from aiofolio.store.layout import CacheLayout, bundle_key
from aiofolio.store.locks import cache_lock

__all__ = [
    "RECORD_FILE",
    "RECORD_FORMAT",
    "BundleRecord",
    "ItemRecord",
    "RecordStore",
]

log = logging.getLogger("aiofolio.store")

RECORD_FILE: Final = "record.json"
RECORD_FORMAT: Final = 2
_RELOAD_ATTEMPTS: Final = 3
_MANIFEST_GRACE_S: Final = 300.0
_MAX_OPEN_LOGS: Final = 64
_MD5_HEX: Final = re.compile(r"[0-9a-f]{32}")
_NO_ITEMS: Final[Mapping[str, ItemRecord]] = {}


class BundleRecord(msgspec.Struct, kw_only=True):
    """What the cache knows about one bundle.

    Attributes:
        format: Record format (2: no items inside); readers accept any and ignore unknown
            fields.
        url: The bundle URL the record belongs to.
        manifest_token: ETag/generation of the manifest when it was fetched.
        last_check: Epoch seconds of the last successful manifest check (the TTL base).
        created_at: When the record was first written.
        manifest_size: Size of the saved manifest (set by :meth:`RecordStore.save`).
        manifest_md5: MD5 hex of the saved manifest, which names its file (set by
            :meth:`RecordStore.save`). Empty: no manifest saved.
        items: Cached items by name: read from format-1 files and filled by
            :meth:`RecordStore.iter_records`; empty from :meth:`RecordStore.load` and ignored
            by :meth:`RecordStore.save` (item records have their own methods).
    """

    format: int = RECORD_FORMAT
    url: str = ""
    manifest_token: str | None = None
    last_check: float = 0.0
    created_at: float = 0.0
    manifest_size: int = 0
    manifest_md5: str = ""
    items: dict[str, ItemRecord] = {}


class _RecordFile(msgspec.Struct, kw_only=True):
    """What ``record.json`` holds (format 2): a :class:`BundleRecord` without items."""

    format: int = RECORD_FORMAT
    url: str = ""
    manifest_token: str | None = None
    last_check: float = 0.0
    created_at: float = 0.0
    manifest_size: int = 0
    manifest_md5: str = ""


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(BundleRecord)


class _Entry:
    __slots__ = ("base", "manifest", "record", "stamp")

    def __init__(
        self,
        stamp: Stamp,
        record: BundleRecord | None,
        manifest: bytes | None,
        base: Mapping[str, ItemRecord] = _NO_ITEMS,
    ) -> None:
        self.stamp = stamp
        self.record = record  # None: the file at this stamp is corrupt (warned once); no items
        self.manifest = manifest
        self.base = base  # the items of a format-1 file


class _Corrupt(Exception):
    """Internal: a record or manifest that does not decode or verify."""


_STORES: Final[weakref.WeakSet[RecordStore]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for store in list(_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RecordStore:
    """Bundle and item records in ``<cache_dir>/v1/bundles/<key>/``, with in-memory caches.

    Safe to use from several threads and processes (also forked ones: a child writes its own
    item log). Concurrent :meth:`save` calls never tear a record or pair it with another
    save's manifest (last writer wins); :meth:`update` serializes read-modify-write cycles of
    the bundle record with a best-effort file lock. Item writes (:meth:`put_items`,
    :meth:`drop_items`, :meth:`retain_items`, :meth:`clear_items`) are one append each to
    this process's own log and need no lock: none is ever lost to another process's write.

    Args:
        layout: The cache layout.
        fsync: Flush record, manifest and item-log writes to stable storage (slower; the
            cache recovers from a lost record by fetching again, so it is off by default).
        lock_timeout: Seconds :meth:`update` (and a compaction) waits for its lock before it
            goes on without it.

    Attributes:
        decodes: How many times a ``record.json`` was read and decoded (a diagnostic: the hot
            path should not move it).
    """

    def __init__(
        self, layout: CacheLayout, *, fsync: bool = False, lock_timeout: float = 10.0
    ) -> None:
        self.layout = layout
        self.fsync = fsync
        self.lock_timeout = lock_timeout
        self.decodes = 0
        self._cache: dict[str, _Entry] = {}
        self._folders_by_url: dict[str, tuple[Path, str]] = {}
        self._lock = threading.Lock()
        self._bundles: dict[str, BundleItems] = {}
        self._open_logs: OrderedDict[str, BundleItems] = OrderedDict()
        self._bases: dict[str, tuple[Stamp, Mapping[str, ItemRecord]]] = {}
        self._warned: set[str] = set()
        _STORES.add(self)

    def _after_fork(self) -> None:
        # Only the forking thread runs in the child: a lock another thread held stays held
        # forever, and the parent's logs are the parent's. Start afresh (the record cache is
        # immutable entries, safe to keep).
        self._lock = threading.Lock()
        for bundle in self._bundles.values():
            bundle.after_fork()
        self._open_logs = OrderedDict()

    def _folder(self, url: str) -> tuple[Path, str]:
        """The bundle folder of ``url`` and its record path (memoized: the hot path)."""
        found = self._folders_by_url.get(url)
        if found is None:
            folder = self.layout.bundle_dir(url)
            found = (folder, os.path.join(folder, RECORD_FILE))
            if len(self._folders_by_url) >= 4096:
                self._folders_by_url.clear()
            self._folders_by_url[url] = found
        return found

    # ----------------------------------------------------------------------------------------
    # the bundle record: reading

    def load(self, url: str) -> tuple[BundleRecord, bytes | None] | None:
        """The bundle record of ``url`` and its raw manifest bytes, or None when there is none.

        One ``os.stat`` when the file is unchanged since the last load in this process. A
        record that does not decode, names another URL, or whose manifest is missing or does
        not match its MD5 logs a warning (once per file version) and returns None: a miss the
        next save repairs. Never raises for the state of the files.

        Args:
            url: The bundle URL.

        Returns:
            ``(record, manifest_bytes)``; ``manifest_bytes`` is None when the record was saved
            without a manifest. The record is a copy whose ``items`` is always empty (item
            records: :meth:`item`, :meth:`items`).
        """
        folder, path = self._folder(url)
        for attempt in range(1, _RELOAD_ATTEMPTS + 1):
            try:
                st = os.stat(path)
            except OSError:
                self._forget(url)
                return None
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            entry = self._cache.get(url)
            if entry is not None and entry.stamp == stamp:
                return None if entry.record is None else (_copy(entry.record), entry.manifest)
            try:
                stamp, record = self._read_record(folder, url)
                manifest = self._manifest_for(folder, record, entry)
            except FileNotFoundError:
                self._forget(url)
                return None
            except _Corrupt as exc:
                if attempt < _RELOAD_ATTEMPTS and _changed(path, stamp):
                    continue  # replaced while we read it: read the new one
                log.warning("ignoring the cache record of %s: %s (it will be refetched)", url, exc)
                self._remember(url, _Entry(stamp, None, None))
                return None
            base = record.items
            record = _copy(record)
            self._remember(url, _Entry(stamp, record, manifest, base))
            return _copy(record), manifest
        return None  # pragma: no cover - the loop always returns

    def _read_record(self, folder: Path, url: str | None) -> tuple[Stamp, BundleRecord]:
        """Read and decode ``record.json``; the stamp is of the bytes read."""
        path = folder / RECORD_FILE
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise _Corrupt(f"cannot read {path}: {exc.strerror or exc}") from exc
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        self.decodes += 1
        try:
            record = _DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            raise _Corrupt(f"{path} does not decode: {exc}") from exc
        if url is not None and record.url and record.url != url:
            raise _Corrupt(f"{path} belongs to {record.url!r}")
        return stamp, record

    @staticmethod
    def _manifest_for(folder: Path, record: BundleRecord, previous: _Entry | None) -> bytes | None:
        if not record.manifest_md5:
            return None
        if (
            previous is not None
            and previous.record is not None
            and previous.record.manifest_md5 == record.manifest_md5
            and previous.manifest is not None
        ):
            return previous.manifest  # manifest files are immutable
        return _read_manifest(folder, record.manifest_md5)

    def _remember(self, url: str, entry: _Entry) -> None:
        with self._lock:
            self._cache[url] = entry

    def _forget(self, url: str) -> None:
        with self._lock:
            self._cache.pop(url, None)

    def _base_items(self, url: str) -> tuple[Stamp | None, Mapping[str, ItemRecord]]:
        """The items inside ``record.json`` (a format-1 file), decoded once per file version."""
        folder, path = self._folder(url)
        try:
            st = os.stat(path)
        except OSError:
            return None, _NO_ITEMS
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        entry = self._cache.get(url)
        if entry is not None and entry.stamp == stamp:
            return stamp, entry.base
        known = self._bases.get(url)
        if known is not None and known[0] == stamp:
            return known
        try:
            stamp, record = self._read_record(folder, url)
        except FileNotFoundError:
            return None, _NO_ITEMS
        except _Corrupt:
            return stamp, _NO_ITEMS
        found = (stamp, record.items or _NO_ITEMS)
        with self._lock:
            if len(self._bases) >= 4096:
                self._bases.clear()
            self._bases[url] = found
        return found

    # ----------------------------------------------------------------------------------------
    # item records

    def _bundle(self, url: str) -> BundleItems:
        bundle = self._bundles.get(url)
        if bundle is None:
            with self._lock:
                bundle = self._bundles.get(url)
                if bundle is None:
                    bundle = BundleItems(
                        self._folder(url)[0],
                        url,
                        lambda: self._base_items(url),
                        self,
                        self._warned,
                    )
                    self._bundles[url] = bundle
        return bundle

    def item(self, url: str, name: str) -> ItemRecord | None:
        """The current record of item ``name`` of ``url``, or None.

        Served from the in-memory index (a dict lookup); a name not there refreshes the index
        from disk first (a ``scandir`` of ``items/``, a ``stat`` per log and a read of their
        new bytes only; no lock). The record is shared: replace it, never edit it.
        """
        bundle = self._bundles.get(url)
        if bundle is not None:
            rec = bundle.index.view.get(name)
            if rec is not None:
                return rec
        bundle = self._bundle(url)
        with bundle.lock:
            bundle.refresh()
            return bundle.index.view.get(name)

    def items(self, url: str, *, refresh: bool = True) -> dict[str, ItemRecord]:
        """A copy of the current item records of ``url`` by name.

        Args:
            url: The bundle URL.
            refresh: Read what other processes wrote since the last refresh first (the first
                call in a process always reads the snapshot and logs).
        """
        bundle = self._bundle(url)
        with bundle.lock:
            if refresh or not bundle.loaded:
                bundle.refresh()
            return dict(bundle.index.view)

    def put_items(self, url: str, recs: Sequence[ItemRecord]) -> None:
        """Record item versions of ``url`` (each replaces the record of its name).

        One ``os.write`` to this process's own log of the bundle, whatever the number of
        records already there.

        Raises:
            ValueError: A record has no name.
            CacheError: The log cannot be written (``CacheFullError`` when the disk is full).
        """
        if not recs:
            return
        for rec in recs:
            if not rec.name:
                raise ValueError("an ItemRecord needs its name to be recorded")
        self._append(url, list(recs))

    def drop_items(self, url: str, names: Mapping[str, str | None]) -> list[str]:
        """Drop item records of ``url``: ``name -> digest``, or ``name -> None`` for any.

        A drop with a digest applies only while the record of that name has that digest, also
        against writes of other processes that race with it (it never drops a newer version).

        Returns:
            The names whose record was dropped (in this process's refreshed view).

        Raises:
            CacheError: The log cannot be written.
        """
        if not names:
            return []
        bundle = self._bundle(url)
        with bundle.lock:
            bundle.refresh()
            view = bundle.index.view
            ops: list[Op] = []
            for name, digest in names.items():
                rec = view.get(name)
                if rec is not None and (digest is None or rec.digest == digest):
                    ops.append((name, digest))
            if ops:
                self._append(url, ops)
        return [op[0] for op in ops if isinstance(op, tuple)]

    def retain_items(self, url: str, keep: Callable[[ItemRecord], bool]) -> list[str]:
        """Drop every current item record of ``url`` for which ``keep`` is False (one append).

        ``keep`` runs without any lock held, on a snapshot of the view; each drop names the
        digest it judged, so a version another process records meanwhile stays.

        Returns:
            The names dropped.
        """
        current = self.items(url)
        ops: list[Op] = [(name, rec.digest) for name, rec in current.items() if not keep(rec)]
        if ops:
            self._append(url, ops)
        return [op[0] for op in ops if isinstance(op, tuple)]

    def clear_items(self, url: str) -> None:
        """Drop every item record of ``url`` (one entry; older entries of any process lose)."""
        folder = self._folder(url)[0]
        if not folder.is_dir():
            bundle = self._bundles.get(url)
            if bundle is not None:
                with bundle.lock:
                    bundle.reset()
            return
        self._append(url, [None])

    def _append(self, url: str, ops: Sequence[Op]) -> None:
        bundle = self._bundle(url)
        with bundle.lock:
            bundle.append(ops)
        self._note_open_log(url, bundle)

    def _note_open_log(self, url: str, bundle: BundleItems) -> None:
        """Keep at most ``_MAX_OPEN_LOGS`` log descriptors open (least recently used close)."""
        with self._lock:
            self._open_logs[url] = bundle
            self._open_logs.move_to_end(url)
            if len(self._open_logs) <= _MAX_OPEN_LOGS:
                return
            victims = list(self._open_logs.items())[: len(self._open_logs) - _MAX_OPEN_LOGS]
        for victim_url, victim in victims:
            if victim is bundle or not victim.lock.acquire(blocking=False):
                continue
            try:
                victim.close_fd()
            finally:
                victim.lock.release()
            with self._lock:
                if self._open_logs.get(victim_url) is victim:
                    del self._open_logs[victim_url]

    def compact(self, url: str) -> bool:
        """Compact the item records of ``url`` now (see :meth:`BundleItems.compact`).

        Returns:
            True when a snapshot was written (False: nothing there to compact).

        Raises:
            CacheError: The snapshot cannot be written.
        """
        if not self._folder(url)[0].is_dir():
            return False
        bundle = self._bundle(url)
        with bundle.lock:
            return bundle.compact(force=True)

    def iter_records(self) -> Iterator[BundleRecord]:
        """Every decodable bundle record, ``items`` filled with its merged item view.

        No particular order; manifests are not read. Corrupt records are skipped with a
        warning. Bundles this store has in memory are refreshed; the others are read from
        disk and not kept (a listing for the CLI and eviction, not a hot path).
        """
        for folder in self._folders():
            try:
                stamp, record = self._read_record(folder, None)
            except FileNotFoundError:
                continue
            except _Corrupt as exc:
                log.warning("skipping the cache record %s: %s", folder / RECORD_FILE, exc)
                continue
            url = record.url
            bundle = self._bundles.get(url) if url else None
            if bundle is not None and bundle.folder == folder:
                with bundle.lock:
                    bundle.refresh()
                    items = dict(bundle.index.view)
            else:
                base = _fixed_base(stamp, record.items)
                transient = BundleItems(folder, url, base, self, self._warned)
                transient.refresh()
                items = transient.index.view
            yield msgspec.structs.replace(record, items=items)

    def _folders(self) -> list[Path]:
        try:
            with os.scandir(self.layout.bundles_dir) as it:
                return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise os_error("list", self.layout.bundles_dir, exc) from exc

    # ----------------------------------------------------------------------------------------
    # the bundle record: writing

    def save(self, record: BundleRecord, manifest_bytes: bytes | None = None) -> BundleRecord:
        """Write a bundle record (and, when given, its manifest) atomically.

        The manifest goes first (``manifest-<md5>.json``, immutable), then the record (the
        commit point): a unique temp file in the bundle folder renamed into place. Concurrent
        saves from any number of processes leave one complete record that comes with its own
        manifest (last writer wins). With a manifest, the saved record's ``manifest_size``
        and ``manifest_md5`` are set from it; without one, the record keeps naming the
        manifest it names (as a record derived from a loaded one does). ``record.items`` is
        ignored; item records written by anyone stay as they are. When ``record.json`` on disk
        is a format-1 file with items, they are written into ``items.snap`` first.

        Args:
            record: The record; its ``url`` picks the folder and must not be empty.
            manifest_bytes: The raw remote manifest, or None to keep the record's.

        Returns:
            The record as saved (format 2, ``items`` empty).

        Raises:
            ValueError: ``record.url`` is empty.
            CacheError: A file cannot be written (``CacheFullError`` when the disk is full).
        """
        if not record.url:
            raise ValueError("a BundleRecord needs its url to be saved")
        url = record.url
        folder = self._folder(url)[0]
        self._migrate_items(url)
        manifest: bytes | None = None
        changes: dict[str, object] = {"format": RECORD_FORMAT, "items": {}}
        if manifest_bytes is not None:
            manifest = bytes(manifest_bytes)
            md5 = hashlib.md5(manifest, usedforsecurity=False).hexdigest()
            changes.update(manifest_size=len(manifest), manifest_md5=md5)
            self._write_manifest(folder, md5, manifest)
        elif record.manifest_md5:
            previous = self._cache.get(url)
            if (
                previous is not None
                and previous.record is not None
                and previous.record.manifest_md5 == record.manifest_md5
            ):
                manifest = previous.manifest
            if manifest is not None:
                # Put it back if a concurrent save's clean-up removed it meanwhile.
                self._write_manifest(folder, record.manifest_md5, manifest)
        record = msgspec.structs.replace(record, **changes)
        data = _ENCODER.encode(_RecordFile(**{f: getattr(record, f) for f in _FILE_FIELDS}))
        stamp = atomic_write(folder / RECORD_FILE, data, fsync=self.fsync)
        if manifest is not None or not record.manifest_md5:
            self._remember(url, _Entry(stamp, _copy(record), manifest))
        else:
            self._forget(url)  # the next load reads (and checks) the manifest
        self._drop_old_manifests(folder, record.manifest_md5)
        return record

    def _migrate_items(self, url: str) -> None:
        """Before ``record.json`` loses the items of a format-1 file, snapshot them."""
        _, base = self._base_items(url)
        if not base:
            return
        bundle = self._bundle(url)
        with bundle.lock:
            bundle.refresh()
            bundle.compact(force=True)

    def _write_manifest(self, folder: Path, md5: str, data: bytes) -> None:
        path = folder / _manifest_name(md5)
        with contextlib.suppress(OSError):
            if os.stat(path).st_size == len(data):
                return  # content-named: already there
        atomic_write(path, data, fsync=self.fsync)

    @staticmethod
    def _drop_old_manifests(folder: Path, keep_md5: str) -> int:
        """Delete the manifests other than ``keep_md5`` that are past the grace period.

        A concurrent save may have written its manifest and not yet its record, so only old
        files go; a reader still holding an older record whose manifest went re-reads the
        record (it changed) and finds the new pair.
        """
        keep = _manifest_name(keep_md5) if keep_md5 else ""
        now = time.time()
        removed = 0
        try:
            with os.scandir(folder) as it:
                old = [e for e in it if _is_manifest_name(e.name) and e.name != keep]
        except OSError:
            return 0
        for entry in old:
            with contextlib.suppress(OSError):
                if now - entry.stat(follow_symlinks=False).st_mtime > _MANIFEST_GRACE_S:
                    os.unlink(entry.path)
                    removed += 1
        return removed

    def update(
        self,
        url: str,
        fn: Callable[[BundleRecord], BundleRecord],
        *,
        manifest_bytes: bytes | None = None,
    ) -> BundleRecord:
        """Read-modify-write the bundle record of ``url`` under a best-effort lock.

        Re-reads the record from disk (a missing or undecodable one becomes a new empty
        record with ``url`` and ``created_at`` set), applies ``fn`` and saves the result. The
        lock (``v1/locks``) makes concurrent updates from several processes all land; when it
        cannot be taken within ``lock_timeout`` (or the filesystem has no working flock), the
        update goes on without it and last writer wins. It never deadlocks. Item records are
        not part of it (``fn`` sees ``items`` empty; what it puts there is ignored).

        Args:
            url: The bundle URL.
            fn: Gets the current record (a private copy: it may mutate and return it) and
                returns the record to save; its ``url`` is forced to ``url``.
            manifest_bytes: Save this manifest with the record (see :meth:`save`).

        Returns:
            The record as saved.

        Raises:
            CacheError: A file cannot be written.
            Exception: Whatever ``fn`` raises (nothing is saved then).
        """
        folder = self._folder(url)[0]
        with cache_lock(self.layout, f"record:{bundle_key(url)}", self.lock_timeout) as locked:
            if not locked:
                log.debug("updating the record of %s without its lock", url)
            try:
                stamp, current = self._read_record(folder, url)
                with self._lock:
                    self._bases[url] = (stamp, current.items or _NO_ITEMS)
                current = _copy(current)
            except (FileNotFoundError, _Corrupt):
                current = BundleRecord(url=url, created_at=time.time())
            new = fn(current)
            if new.url != url:
                new = msgspec.structs.replace(new, url=url)
            return self.save(new, manifest_bytes)

    def delete(self, url: str) -> bool:
        """Delete the whole folder of ``url``; return whether a record was there.

        ``record.json`` goes first, so a concurrent reader sees a miss, never a record
        without its manifest. A save or item write racing with the delete may recreate the
        folder (last writer wins).

        Raises:
            CacheError: The record exists but cannot be deleted.
        """
        folder = self.layout.bundle_dir(url)
        self._forget(url)
        with self._lock:
            bundle = self._bundles.pop(url, None)
            self._open_logs.pop(url, None)
        if bundle is not None:
            with bundle.lock:
                bundle.close_writer(retire=False)
                bundle.reset()
        existed = False
        try:
            os.unlink(folder / RECORD_FILE)
            existed = True
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            raise os_error("delete", folder / RECORD_FILE, exc) from exc
        with contextlib.suppress(OSError):
            os.unlink(folder / SNAPSHOT_FILE)
        _remove_files(folder / ITEMS_DIR)
        _remove_files(folder)
        return existed

    def sweep_temps(self, max_age_s: float = 3600.0) -> int:
        """Delete save temp files of dead processes, and manifests no record names any more.

        Temp files are ``.<name>.<pid>-<random>.tmp`` (records, manifests and item
        snapshots); a manifest goes when its folder's record names another one and it is past
        the grace period (5 minutes).

        Args:
            max_age_s: Minimum age (by mtime) of a temp file to consider; any older than
                24 h goes whatever its pid.

        Returns:
            The number of files deleted.
        """
        now = time.time()
        removed = 0
        for folder in self._folders():
            try:
                with os.scandir(folder) as it:
                    temps = [e for e in it if e.name.startswith(".") and e.name.endswith(".tmp")]
            except OSError:
                continue
            for entry in temps:
                try:
                    age = now - entry.stat(follow_symlinks=False).st_mtime
                except OSError:
                    continue
                pid = owner_pid(entry.name[:-4].rpartition(".")[2])
                if age < max_age_s or (age < 86400 and pid is not None and pid_alive(pid)):
                    continue
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed += 1
            try:
                current = _DECODER.decode((folder / RECORD_FILE).read_bytes())
            except (OSError, msgspec.DecodeError):
                continue  # without a readable record, keep its manifests for a repair
            removed += self._drop_old_manifests(folder, current.manifest_md5)
        return removed

    def clear_memory(self) -> None:
        """Drop the in-memory caches (the next read of each record or item view reads files).

        This process's own item logs stay open (they are still only written by it).
        """
        with self._lock:
            self._cache.clear()
            self._bases.clear()
            bundles = list(self._bundles.values())
        for bundle in bundles:
            with bundle.lock:
                bundle.reset()


_FILE_FIELDS: Final = _RecordFile.__struct_fields__


def _fixed_base(stamp: Stamp, items: Mapping[str, ItemRecord]) -> BaseLayer:
    return lambda: (stamp, items)


def _remove_files(folder: Path) -> None:
    """Unlink the files of ``folder`` and remove it (not empty: a concurrent writer got in)."""
    try:
        with os.scandir(folder) as it:
            names = [entry.name for entry in it]
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):
            os.unlink(folder / name)
    with contextlib.suppress(OSError):
        os.rmdir(folder)


def _manifest_name(md5: str) -> str:
    return f"manifest-{md5}.json"


def _is_manifest_name(name: str) -> bool:
    return (
        name.startswith("manifest-")
        and name.endswith(".json")
        and _MD5_HEX.fullmatch(name[9:-5]) is not None
    )


def _read_manifest(folder: Path, md5: str) -> bytes:
    if _MD5_HEX.fullmatch(md5) is None:
        raise _Corrupt(f"the record names its manifest by a bad md5 {md5!r}")
    path = folder / _manifest_name(md5)
    try:
        with open(path, "rb") as fh:
            manifest = fh.read()
    except FileNotFoundError:
        raise _Corrupt(f"{path} is missing") from None
    except OSError as exc:
        raise _Corrupt(f"cannot read {path}: {exc.strerror or exc}") from exc
    got = hashlib.md5(manifest, usedforsecurity=False).hexdigest()
    if got != md5:
        raise _Corrupt(f"{path} does not match its name (md5 {got})")
    return manifest


def _copy(record: BundleRecord) -> BundleRecord:
    # What load hands out and what the memory cache keeps are never the same object, so a
    # caller that reassigns fields cannot change the cache behind its back; items are never
    # part of a loaded record (a fresh empty dict each time).
    return msgspec.structs.replace(record, items={})


def _changed(path: str, stamp: Stamp) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return True
    return (st.st_mtime_ns, st.st_size, st.st_ino) != stamp
