"""Bundle records of the cache: what we know about each cached bundle, and their files.

This module owns the record structs (:class:`BundleRecord`, :class:`ItemRecord`; msgspec, a
default on every field, unknown fields ignored so older and newer aiofolio versions share a
cache) and :class:`RecordStore`, which keeps them in ``v1/bundles/<key>/``:

- ``record.json``: the :class:`BundleRecord` (manifest token, last check, item → blob);
- ``manifest-<md5>.json``: the raw remote manifest bytes, exactly as fetched, named by their
  MD5, which the record names in ``manifest_md5``.

``record.json`` is the only mutable file and the commit point: a save writes the (immutable,
content-named) manifest first and then renames a complete record into place, so every record a
reader can see comes with the very manifest it was saved with, also when several processes
save at once and no lock works (last writer wins for the pair as a whole). Manifests that no
record names any more are deleted after a grace period. A record or manifest that does not
decode or verify is a miss (logged as a warning), never an exception: the engine fetches again
and the next save repairs it.

Loads are served from memory while ``record.json``'s ``(mtime_ns, size, inode)`` stamp is
unchanged, so the hit path costs one ``os.stat``; a changed record that names the same
manifest reuses the manifest bytes already in memory. (Every save renames a new inode into
place; only on kernels without fine-grained timestamps could two saves of equal size within
one clock tick that also reuse an inode go unnoticed, until the next save.)
:meth:`RecordStore.load` returns a shallow copy (its own struct and ``items`` dict):
reassigning fields or adding and removing items is safe; the :class:`ItemRecord` objects are
shared with the memory cache, so replace them rather than editing them in place.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Final

import msgspec

from aiofolio.store._util import atomic_write, os_error, owner_pid, pid_alive
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
RECORD_FORMAT: Final = 1
_RELOAD_ATTEMPTS: Final = 3
_MANIFEST_GRACE_S: Final = 300.0
_MD5_HEX: Final = re.compile(r"[0-9a-f]{32}")
_Stamp = tuple[int, int, int]


class ItemRecord(msgspec.Struct, kw_only=True):
    """One cached item version of a bundle (the current version of an item name).

    Attributes:
        name: The item name.
        item_type: The manifest's ``item_type``.
        payload: The payload path relative to the bundle ("" for references).
        version_token: ``aiofolio.bundle.version_token(item)`` (plus the remote token for
            items without a checksum); compared after a manifest refresh.
        remote_token: ETag/generation of the payload (or of the external object of a
            reference), when known.
        digest: The blob digest (hex) of the cached bytes.
        algorithm: The algorithm of ``digest`` (``md5``).
        fast_hash: A fast hash of the bytes for hit verification.
        fast_algorithm: Its algorithm (``xxh3_128`` or ``blake2b_128``).
        size: Size in bytes.
        cached_at: When the bytes were cached (epoch seconds).
        last_verified: When the bytes were last verified (epoch seconds).
        pinned: Never evict.
        priority: Eviction priority (higher stays longer).
    """

    name: str = ""
    item_type: str = ""
    payload: str = ""
    version_token: str = ""
    remote_token: str | None = None
    digest: str = ""
    algorithm: str = "md5"
    fast_hash: str = ""
    fast_algorithm: str = ""
    size: int = 0
    cached_at: float = 0.0
    last_verified: float = 0.0
    pinned: bool = False
    priority: int = 0


class BundleRecord(msgspec.Struct, kw_only=True):
    """What the cache knows about one bundle.

    Attributes:
        format: Record format (1); readers accept any and ignore unknown fields.
        url: The bundle URL the record belongs to.
        manifest_token: ETag/generation of the manifest when it was fetched.
        last_check: Epoch seconds of the last successful manifest check (the TTL base).
        created_at: When the record was first written.
        manifest_size: Size of the saved manifest (set by :meth:`RecordStore.save`).
        manifest_md5: MD5 hex of the saved manifest, which names its file (set by
            :meth:`RecordStore.save`). Empty: no manifest saved.
        items: Cached items by name (current versions only).
    """

    format: int = RECORD_FORMAT
    url: str = ""
    manifest_token: str | None = None
    last_check: float = 0.0
    created_at: float = 0.0
    manifest_size: int = 0
    manifest_md5: str = ""
    items: dict[str, ItemRecord] = {}


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(BundleRecord)


class _Entry:
    __slots__ = ("manifest", "record", "stamp")

    def __init__(self, stamp: _Stamp, record: BundleRecord | None, manifest: bytes | None):
        self.stamp = stamp
        self.record = record  # None: the file at this stamp is corrupt (warned once)
        self.manifest = manifest


class _Corrupt(Exception):
    """Internal: a record or manifest that does not decode or verify."""


class RecordStore:
    """Bundle records in ``<cache_dir>/v1/bundles/<key>/``, with an in-memory cache.

    Safe to use from several threads and processes. Concurrent :meth:`save` calls never tear a
    record or pair it with another save's manifest (last writer wins); :meth:`update`
    serializes read-modify-write cycles with a best-effort file lock.

    Args:
        layout: The cache layout.
        fsync: Flush record and manifest files to stable storage on save (slower; the cache
            recovers from a lost record by fetching again, so it is off by default).
        lock_timeout: Seconds :meth:`update` waits for the record lock before it goes on
            without it.

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
    # reading

    def load(self, url: str) -> tuple[BundleRecord, bytes | None] | None:
        """The record of ``url`` and its raw manifest bytes, or None when there is none.

        One ``os.stat`` when the file is unchanged since the last load in this process. A
        record that does not decode, names another URL, or whose manifest is missing or does
        not match its MD5 logs a warning (once per file version) and returns None: a miss the
        next save repairs. Never raises for the state of the files.

        Args:
            url: The bundle URL.

        Returns:
            ``(record, manifest_bytes)``; ``manifest_bytes`` is None when the record was saved
            without a manifest. The record is a shallow copy (see the module docstring).
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
            self._remember(url, _Entry(stamp, record, manifest))
            return _copy(record), manifest
        return None  # pragma: no cover - the loop always returns

    def _read_record(self, folder: Path, url: str) -> tuple[_Stamp, BundleRecord]:
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
        if record.url and record.url != url:
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

    def iter_records(self) -> Iterator[BundleRecord]:
        """Every decodable bundle record (no particular order; manifests are not read).

        Corrupt records are skipped with a warning. Decodes from disk, bypassing the memory
        cache (a listing for the CLI and eviction, not a hot path).
        """
        for folder in self._folders():
            path = folder / RECORD_FILE
            try:
                raw = path.read_bytes()
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("skipping the cache record %s: %s", path, exc.strerror or exc)
                continue
            try:
                record = _DECODER.decode(raw)
            except msgspec.DecodeError as exc:
                log.warning("skipping the cache record %s: it does not decode: %s", path, exc)
                continue
            yield record

    def _folders(self) -> list[Path]:
        try:
            with os.scandir(self.layout.bundles_dir) as it:
                return [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise os_error("list", self.layout.bundles_dir, exc) from exc

    # ----------------------------------------------------------------------------------------
    # writing

    def save(self, record: BundleRecord, manifest_bytes: bytes | None = None) -> BundleRecord:
        """Write a record (and, when given, its manifest) atomically.

        The manifest goes first (``manifest-<md5>.json``, immutable), then the record (the
        commit point): a unique temp file in the bundle folder renamed into place. Concurrent
        saves from any number of processes leave one complete record that comes with its own
        manifest (last writer wins). With a manifest, the saved record's ``manifest_size``
        and ``manifest_md5`` are set from it; without one, the record keeps naming the
        manifest it names (as a record derived from a loaded one does).

        Args:
            record: The record; its ``url`` picks the folder and must not be empty.
            manifest_bytes: The raw remote manifest, or None to keep the record's.

        Returns:
            The record as saved (a copy when the manifest fields were filled in).

        Raises:
            ValueError: ``record.url`` is empty.
            CacheError: A file cannot be written (``CacheFullError`` when the disk is full).
        """
        if not record.url:
            raise ValueError("a BundleRecord needs its url to be saved")
        folder = self._folder(record.url)[0]
        manifest: bytes | None = None
        if manifest_bytes is not None:
            manifest = bytes(manifest_bytes)
            md5 = hashlib.md5(manifest, usedforsecurity=False).hexdigest()
            record = msgspec.structs.replace(record, manifest_size=len(manifest), manifest_md5=md5)
            self._write_manifest(folder, md5, manifest)
        elif record.manifest_md5:
            previous = self._cache.get(record.url)
            if (
                previous is not None
                and previous.record is not None
                and previous.record.manifest_md5 == record.manifest_md5
            ):
                manifest = previous.manifest
            if manifest is not None:
                # Put it back if a concurrent save's clean-up removed it meanwhile.
                self._write_manifest(folder, record.manifest_md5, manifest)
        stamp = atomic_write(folder / RECORD_FILE, _ENCODER.encode(record), fsync=self.fsync)
        if manifest is not None or not record.manifest_md5:
            self._remember(record.url, _Entry(stamp, _copy(record), manifest))
        else:
            self._forget(record.url)  # the next load reads (and checks) the manifest
        self._drop_old_manifests(folder, record.manifest_md5)
        return record

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
        """Read-modify-write the record of ``url`` under a best-effort cross-process lock.

        Re-reads the record from disk (a missing or undecodable one becomes a new empty
        record with ``url`` and ``created_at`` set), applies ``fn`` and saves the result. The
        lock (``v1/locks``) makes concurrent updates from several processes all land; when it
        cannot be taken within ``lock_timeout`` (or the filesystem has no working flock), the
        update goes on without it and last writer wins. It never deadlocks.

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
                _, current = self._read_record(folder, url)
            except (FileNotFoundError, _Corrupt):
                current = BundleRecord(url=url, created_at=time.time())
            new = fn(current)
            if new.url != url:
                new = msgspec.structs.replace(new, url=url)
            return self.save(new, manifest_bytes)

    def delete(self, url: str) -> bool:
        """Delete the record folder of ``url``; return whether a record was there.

        ``record.json`` goes first, so a concurrent reader sees a miss, never a record
        without its manifest. A save racing with the delete may recreate the folder (last
        writer wins).

        Raises:
            CacheError: The record exists but cannot be deleted.
        """
        folder = self.layout.bundle_dir(url)
        self._forget(url)
        existed = False
        try:
            os.unlink(folder / RECORD_FILE)
            existed = True
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as exc:
            raise os_error("delete", folder / RECORD_FILE, exc) from exc
        try:
            with os.scandir(folder) as it:
                names = [entry.name for entry in it]
        except (FileNotFoundError, NotADirectoryError):
            return existed
        for name in names:
            with contextlib.suppress(OSError):
                os.unlink(folder / name)
        with contextlib.suppress(OSError):  # not empty: a concurrent save got in
            os.rmdir(folder)
        return existed

    def sweep_temps(self, max_age_s: float = 3600.0) -> int:
        """Delete save temp files of dead processes, and manifests no record names any more.

        Temp files are ``.<name>.<pid>-<random>.tmp``; a manifest goes when its folder's
        record names another one and it is past the grace period (5 minutes).

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
        """Drop the in-memory cache (the next load of each record reads its file)."""
        with self._lock:
            self._cache.clear()

    # -- TEMPORARY item API over record.json (replaced by the item logs) -------------------------
    def item(self, url: str, name: str) -> ItemRecord | None:
        loaded = self._load_full(url)
        return None if loaded is None else loaded.items.get(name)

    def items(self, url: str, *, refresh: bool = True) -> dict[str, ItemRecord]:
        loaded = self._load_full(url)
        return {} if loaded is None else dict(loaded.items)

    def _load_full(self, url: str) -> BundleRecord | None:
        path = self._folder(url)[1]
        entry = self._cache.get(url)
        try:
            st = os.stat(path)
        except OSError:
            return None
        if entry is not None and entry.stamp == (st.st_mtime_ns, st.st_size, st.st_ino):
            return entry.record
        got = self.load(url)
        entry = self._cache.get(url)
        return entry.record if entry is not None else (got[0] if got else None)

    def put_items(self, url: str, recs: Sequence[ItemRecord]) -> None:
        def add(record: BundleRecord) -> BundleRecord:
            for rec in recs:
                record.items[rec.name] = rec
            return record

        self.update(url, add)

    def drop_items(self, url: str, names: Mapping[str, str | None]) -> list[str]:
        dropped: list[str] = []

        def drop(record: BundleRecord) -> BundleRecord:
            for name, digest in names.items():
                rec = record.items.get(name)
                if rec is not None and (digest is None or rec.digest == digest):
                    del record.items[name]
                    dropped.append(name)
            return record

        if self.load(url) is not None:
            self.update(url, drop)
        return dropped

    def retain_items(self, url: str, keep: Callable[[ItemRecord], bool]) -> list[str]:
        dropped: list[str] = []

        def drop(record: BundleRecord) -> BundleRecord:
            for name, rec in list(record.items.items()):
                if not keep(rec):
                    del record.items[name]
                    dropped.append(name)
            return record

        if self.load(url) is not None:
            self.update(url, drop)
        return dropped

    def clear_items(self, url: str) -> None:
        def clear(record: BundleRecord) -> BundleRecord:
            record.items = {}
            return record

        if self.load(url) is not None:
            self.update(url, clear)


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
    # caller that reassigns fields or adds/removes items cannot change the cache behind its
    # back (the ItemRecords themselves are shared: replace them, do not edit them).
    return msgspec.structs.replace(record, items=dict(record.items))


def _changed(path: str, stamp: _Stamp) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return True
    return (st.st_mtime_ns, st.st_size, st.st_ino) != stamp
