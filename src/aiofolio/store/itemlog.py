"""Item records of the cache: per-process append-only logs per bundle, merged into one view.

This module owns :class:`ItemRecord` (one cached item version) and how a bundle keeps them in
``v1/bundles/<key>/`` (the bundle-level record is :mod:`~aiofolio.store.records`'):

- ``items/<host>-<pid>-<random>.log``: append-only logs with one writer each (a process opens
  its own per bundle, lazily). An append is one ``os.write`` of complete newline-terminated
  JSON entries: ``put`` (a whole :class:`ItemRecord`), ``drop`` (a name; with a digest, only
  if the current record has it) and ``clear`` (everything older). Each entry carries a key
  ``(ts, writer, seq)``; the merged view is the entries in key order, last wins, whatever order
  the logs are read in (:class:`ItemIndex` keeps that exact in any arrival order).
- ``items.snap``: a compaction snapshot (temp file + rename): the merged state and, per log,
  the bytes it has consumed. Readers load it, then read each log from that offset.

No lock is needed for correctness, also on network filesystems where ``flock`` does nothing:
no two processes write one file, every entry is a complete statement, readers take whole
lines only (a last line without its newline is a write in progress or a crash: it waits, or
is ignored), and racing compactions each rename a valid view. Logs go only when a snapshot
consumed them, their writer is gone and they were untouched for a grace period, so a slower
racing compaction cannot rename a snapshot that misses the tail of a deleted log.
:class:`BundleItems` is one process's state of one bundle: the merged index, how far each log
was read, and the process's own log.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, Protocol

import msgspec

from aiofolio.store import locks
from aiofolio.store._util import atomic_write, host_id, os_error, pid_alive
from aiofolio.store.layout import CacheLayout, bundle_key

__all__ = [
    "COMPACT_MIN_BYTES",
    "ITEMS_DIR",
    "LOG_GRACE_S",
    "MAX_LOGS",
    "SNAPSHOT_FILE",
    "BundleItems",
    "ItemIndex",
    "ItemRecord",
    "Key",
]

log = logging.getLogger("aiofolio.store")

ITEMS_DIR: Final = "items"
SNAPSHOT_FILE: Final = "items.snap"
SNAPSHOT_FORMAT: Final = 1
COMPACT_MIN_BYTES = 1 << 20
"""Compact when the logs hold more bytes than this (and than twice the snapshot) unconsumed."""
MAX_LOGS = 32
"""Compact (to delete logs of gone writers) when a bundle has more log files than this."""
ROTATE_BYTES = 1 << 20
"""A compaction retires this process's own log once it is this big (a new one starts)."""
LOG_GRACE_S = 60.0
"""A consumed log of a gone writer is deleted only once untouched this long."""
FOREIGN_LOG_AGE_S: Final = 86400.0
TOMBSTONE_AGE_S: Final = 86400.0
_COUNT_RECHECK_S: Final = 30.0
_FAILED_COMPACT_BACKOFF_S: Final = 30.0
_COMPACT_LOCK_WAIT_S: Final = 2.0
_RETRY_ERRNOS: Final = frozenset({errno.ESTALE, errno.ENOENT})

_LOG_NAME: Final = re.compile(r"([A-Za-z0-9._]+)-([0-9]+)-[0-9a-f]{16}\.log")

Stamp = tuple[int, int, int]
Key = tuple[float, str, int]
"""The order of log entries: ``(ts, writer, seq)``; the greater key wins."""
_NO_KEY: Final[Key] = (-1.0, "", -1)


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
        verified_by: What the download was verified against: ``md5 (manifest)``, a digest
            the store stated (``md5 (etag)``, ``crc32c (store)``, ...) or ``size and version
            only``; empty for records written before aiofolio recorded it.
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
    verified_by: str = ""


# --------------------------------------------------------------------------------------------
# log entries and the snapshot file


class _Put(msgspec.Struct, tag="put", tag_field="k"):
    ts: float
    w: str
    seq: int
    rec: ItemRecord


class _Drop(msgspec.Struct, tag="drop", tag_field="k", omit_defaults=True):
    ts: float
    w: str
    seq: int
    name: str
    digest: str | None = None


class _Clear(msgspec.Struct, tag="clear", tag_field="k"):
    ts: float
    w: str
    seq: int


_Entry = _Put | _Drop | _Clear

_Drops = list[tuple[Key, str]]


class _Snapshot(msgspec.Struct, kw_only=True):
    """``items.snap``: the state of an :class:`ItemIndex` and the log bytes it consumed."""

    format: int = SNAPSHOT_FORMAT
    url: str = ""
    written_at: float = 0.0
    max_ts: float = 0.0
    clear: tuple[float, str, int] | None = None
    offsets: dict[str, int] = {}
    keys: dict[str, tuple[float, str, int]] = {}
    live: dict[str, ItemRecord] = {}
    drops: dict[str, list[tuple[tuple[float, str, int], str]]] = {}


_ENCODER: Final = msgspec.json.Encoder()
_ENTRY_DECODER: Final = msgspec.json.Decoder(_Entry)
_SNAP_DECODER: Final = msgspec.json.Decoder(_Snapshot)


# --------------------------------------------------------------------------------------------
# the merge


def _newer(drops: _Drops, key: Key) -> _Drops | None:
    kept = [d for d in drops if d[0] > key]
    return kept or None


class ItemIndex:
    """The merged view of log entries: for each name, the result of its entries in key order.

    Sequentially, a put sets the record, an unconditional drop removes it, a drop with a
    digest removes it only when the current record has that digest, and a clear removes every
    record. Entries may arrive in any order (logs are read at different times) and more than
    once; per name the index keeps the key of the newest put or unconditional drop
    (:attr:`keys`) and the conditional drops newer than it (:attr:`drops`, rare), which is
    exactly what the sequential result depends on. Flat dicts, so that a snapshot decodes
    straight into them.

    Attributes:
        view: The current records by name (read it, never write it).
        keys: The key of the newest put or unconditional drop of each name.
        drops: Conditional drops ``(key, digest)`` newer than the name's key.
        clear_key: The key of the newest clear, or None.
    """

    __slots__ = ("clear_key", "drops", "keys", "view")

    def __init__(self) -> None:
        self.view: dict[str, ItemRecord] = {}
        self.keys: dict[str, Key] = {}
        self.drops: dict[str, _Drops] = {}
        self.clear_key: Key | None = None

    def put(self, key: Key, rec: ItemRecord) -> None:
        clear = self.clear_key
        if clear is not None and key <= clear:
            return
        name = rec.name
        old = self.keys.get(name)
        if old is not None and key <= old:
            return
        self.keys[name] = key
        if self.drops:
            drops = self.drops.get(name)
            if drops is not None:
                drops = _newer(drops, key)
                if drops is None:
                    del self.drops[name]
                else:
                    self.drops[name] = drops
                    if any(d[1] == rec.digest for d in drops):
                        self.view.pop(name, None)
                        return
        self.view[name] = rec

    def drop(self, key: Key, name: str, digest: str | None) -> None:
        clear = self.clear_key
        if clear is not None and key <= clear:
            return
        old = self.keys.get(name)
        if digest is None:
            if old is not None and key <= old:
                return
            self.keys[name] = key
            drops = self.drops.get(name)
            if drops is not None:
                drops = _newer(drops, key)
                if drops is None:
                    del self.drops[name]
                else:
                    self.drops[name] = drops
            self.view.pop(name, None)
            return
        if old is None:
            self.keys[name] = clear if clear is not None else _NO_KEY
        elif key <= old:
            return
        entry = (key, digest)
        drops = self.drops.setdefault(name, [])
        if entry in drops:
            return
        drops.append(entry)
        rec = self.view.get(name)
        if rec is not None and rec.digest == digest:
            del self.view[name]

    def clear(self, key: Key) -> None:
        if self.clear_key is not None and key <= self.clear_key:
            return
        self.clear_key = key
        for name, old in list(self.keys.items()):
            if old > key:
                continue
            drops = self.drops.get(name)
            drops = None if drops is None else _newer(drops, key)
            if drops is None:
                del self.keys[name]
                self.drops.pop(name, None)
            else:
                self.keys[name] = key
                self.drops[name] = drops
            self.view.pop(name, None)

    def to_snapshot(
        self,
        horizon: float,
        *,
        url: str,
        written_at: float,
        max_ts: float,
        offsets: dict[str, int],
    ) -> _Snapshot:
        """The state as a snapshot; dropped names older than ``horizon`` are left out."""
        view, drops = self.view, self.drops
        keys = self.keys
        if len(keys) != len(view):
            keys = {}
            for name, key in self.keys.items():
                if name not in view:
                    newer = drops.get(name)
                    newest = max(key[0], *(d[0][0] for d in newer)) if newer else key[0]
                    if newest < horizon:
                        continue  # an old tombstone: nothing that old can still arrive
                keys[name] = key
        return _Snapshot(
            url=url,
            written_at=written_at,
            max_ts=max_ts,
            clear=self.clear_key,
            offsets=offsets,
            keys=keys,
            live=view,
            drops={n: d for n, d in drops.items() if n in keys},
        )

    @classmethod
    def from_snapshot(cls, snap: _Snapshot) -> ItemIndex:
        """The index a snapshot holds (its dicts are taken over, not copied)."""
        index = cls()
        clear = snap.clear
        index.clear_key = None if clear is None else (clear[0], clear[1], clear[2])
        index.keys = snap.keys
        index.view = snap.live
        for name in snap.live.keys() - snap.keys.keys():  # not a snapshot we wrote
            del index.view[name]
        index.drops = {n: list(d) for n, d in snap.drops.items() if n in snap.keys}
        return index


# --------------------------------------------------------------------------------------------
# one bundle in one process


BaseLayer = Callable[[], tuple[Stamp | None, Mapping[str, ItemRecord]]]
"""Gives ``(stamp, items)`` of a format-1 ``record.json`` (items of older aiofolio versions)."""


class Settings(Protocol):
    """What :class:`BundleItems` reads of its store on each call."""

    layout: CacheLayout
    fsync: bool
    lock_timeout: float


class _Writer:
    __slots__ = ("fd", "name", "path", "pid", "seq", "size")

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.name = path.name
        self.fd = fd  # -1: closed to bound open files; reopened for the next append
        self.pid = os.getpid()
        self.seq = 0
        self.size = 0  # bytes written: the whole file (we are its only writer)


Op = ItemRecord | tuple[str, str | None] | None
"""An append: a record (put), ``(name, digest)`` (drop) or None (clear)."""


class BundleItems:
    """The item records of one bundle as this process sees them, and its own log there.

    Not thread-safe by itself: callers hold :attr:`lock` (an ``RLock``) around every method
    except reading :attr:`index`'s ``view`` (dict reads are atomic).

    Args:
        folder: The bundle folder.
        url: The bundle URL (a snapshot of another URL is ignored).
        base: The items of a format-1 ``record.json`` (see :data:`BaseLayer`).
        settings: The store's settings (layout, fsync, lock timeout).
        warned: Shared set of files already warned about (one warning per file).
    """

    def __init__(
        self,
        folder: Path,
        url: str,
        base: BaseLayer,
        settings: Settings,
        warned: set[str] | None = None,
    ) -> None:
        self.folder = folder
        self.url = url
        self.items_dir = folder / ITEMS_DIR
        self.snap_path = folder / SNAPSHOT_FILE
        self.base = base
        self.settings = settings
        self.warned = warned if warned is not None else set()
        self.lock = threading.RLock()
        self.writer: _Writer | None = None
        self.retired: set[str] = set()  # our own former logs, deletable once consumed
        # The newest ts written or read here: our entries come after everything we have seen
        # (a Lamport clock over the wall clock), whatever the clocks of other hosts say.
        self.last_ts = 0.0
        self._last_count_check = 0.0
        self._no_compact_until = 0.0
        self.reset()

    def reset(self) -> None:
        """Forget everything read (the next refresh reads the snapshot and logs again)."""
        self.index = ItemIndex()
        self.loaded = False
        self.snap_stamp: Stamp | None = None
        self.snap_size = 0
        self.snap_offsets: dict[str, int] = {}
        self.offsets: dict[str, int] = {}  # bytes of each log applied to the index
        self.sizes: dict[str, int] = {}  # size of each log when last seen
        self.mtimes: dict[str, float] = {}
        self.pending = 0  # log bytes the snapshot has not consumed
        self.base_stamp: Stamp | None = None

    # ----------------------------------------------------------------------------------------
    # reading

    def refresh(self) -> None:
        """Bring the index up to date: new snapshot, new base layer, new bytes of each log.

        Costs a ``stat`` of the snapshot and of ``record.json``, a ``scandir`` of ``items/``
        with a ``stat`` per log, and a read of new bytes only. A changed snapshot (another
        process compacted), or a log gone that held entries the snapshot lacks (the bundle was
        deleted), makes it start over from the snapshot.
        """
        for attempt in (1, 2):
            stamp = _stamp(self.snap_path)
            if not self.loaded or stamp != self.snap_stamp:
                self.reset()
                if stamp is not None:
                    self._load_snapshot()
                self.loaded = True
            base_stamp, base = self.base()
            if base_stamp != self.base_stamp:
                if base and base_stamp is not None:
                    key = (base_stamp[0] / 1e9, "", 0)
                    self.last_ts = max(self.last_ts, key[0])
                    for rec in base.values():
                        self.index.put(key, rec)
                self.base_stamp = base_stamp
            logs = self._scan()
            if logs is None:
                return
            offsets, snap_offsets = self.offsets, self.snap_offsets
            gone = [name for name in offsets if name not in logs]
            if attempt == 1 and any(offsets[n] > snap_offsets.get(n, 0) for n in gone):
                self.loaded = False
                continue
            for name in gone:
                offsets.pop(name, None)
            sizes: dict[str, int] = {}
            self.mtimes = {}
            for name, (size, mtime) in logs.items():
                self.mtimes[name] = mtime
                offset = offsets.get(name, 0)
                sizes[name] = self._read_log(name, offset, mtime) if size > offset else size
            self.sizes = sizes
            self.pending = sum(max(0, s - snap_offsets.get(n, 0)) for n, s in sizes.items())
            return

    def _scan(self) -> dict[str, tuple[int, float]] | None:
        found: dict[str, tuple[int, float]] = {}
        try:
            with os.scandir(self.items_dir) as it:
                for entry in it:
                    if _LOG_NAME.fullmatch(entry.name) is None:
                        continue
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    found[entry.name] = (st.st_size, st.st_mtime)
        except (FileNotFoundError, NotADirectoryError):
            return found
        except OSError as exc:
            self._warn(str(self.items_dir), "cannot list %s: %s", self.items_dir, exc)
            return None
        return found

    def _load_snapshot(self) -> None:
        path = self.snap_path
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                raw = fh.read()
        except FileNotFoundError:
            return
        except OSError as exc:
            self._warn(str(path), "cannot read %s: %s", path, exc.strerror or exc)
            return
        self.snap_stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        self.snap_size = len(raw)
        try:
            snap = _SNAP_DECODER.decode(raw)
        except msgspec.DecodeError as exc:
            self._warn(f"{path}@{st.st_mtime_ns}", "ignoring %s: it does not decode: %s", path, exc)
            return
        if snap.url and snap.url != self.url:
            self._warn(f"{path}@{st.st_mtime_ns}", "ignoring %s of %r", path, snap.url)
            return
        self.index = ItemIndex.from_snapshot(snap)
        self.last_ts = max(self.last_ts, snap.max_ts)
        self.snap_offsets = dict(snap.offsets)
        self.offsets = dict(snap.offsets)

    def _read_log(self, name: str, offset: int, mtime: float) -> int:
        """Apply the complete new lines of one log; return the size seen."""
        path = self.items_dir / name
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            return offset
        except OSError as exc:
            self._warn(str(path), "cannot read %s: %s", path, exc.strerror or exc)
            return offset
        end = data.rfind(b"\n") + 1
        if end:
            self.offsets[name] = offset + self._apply_lines(name, data, end, mtime)
        return offset + len(data)

    def _apply_lines(self, name: str, data: bytes, end: int, mtime: float) -> int:
        """Apply the lines of ``data[:end]``; return how many bytes were consumed."""
        writer = name[:-4]
        chunk = data[:end] if end < len(data) else data
        if b"\0" not in chunk:
            try:
                entries = _ENTRY_DECODER.decode_lines(chunk)
            except msgspec.DecodeError:
                pass
            else:
                for entry in entries:
                    self._apply(entry, writer, name)
                return end
        # Slow path: a bad line among good ones, or NULs (on some network filesystems a
        # reader can see a file grown before the bytes of an earlier write arrive).
        pos = 0
        recent = time.time() - mtime < LOG_GRACE_S
        while pos < end:
            nl = chunk.index(b"\n", pos)
            line = chunk[pos:nl]
            if line.strip():
                if recent and b"\0" in line:
                    return pos  # not all there yet: read it again next time
                try:
                    entry = _ENTRY_DECODER.decode(line)
                except msgspec.DecodeError as exc:
                    self._warn(
                        str(self.items_dir / name),
                        "skipping a bad line of %s: %s",
                        self.items_dir / name,
                        exc,
                    )
                else:
                    self._apply(entry, writer, name)
            pos = nl + 1
        return end

    def _apply(self, entry: _Entry, writer: str, name: str) -> None:
        if entry.w != writer:  # one writer per file: an entry naming another is not ours
            self._warn(
                str(self.items_dir / name),
                "skipping an entry of %s written by %r",
                self.items_dir / name,
                entry.w,
            )
            return
        key = (entry.ts, entry.w, entry.seq)
        if entry.ts > self.last_ts:
            self.last_ts = entry.ts
        if isinstance(entry, _Put):
            self.index.put(key, entry.rec)
        elif isinstance(entry, _Drop):
            self.index.drop(key, entry.name, entry.digest)
        else:
            self.index.clear(key)

    def _warn(self, what: str, msg: str, *args: object) -> None:
        if what not in self.warned:
            if len(self.warned) > 10000:
                self.warned.clear()
            self.warned.add(what)
            log.warning(msg, *args)

    # ----------------------------------------------------------------------------------------
    # writing

    def append(self, ops: Sequence[Op]) -> None:
        """Append entries to our own log in one ``os.write`` and apply them to the index.

        Opens our log first if needed (a new file per process; a forked child never writes
        to its parent's). When the file turns out to have been deleted meanwhile (another
        process took us for gone), the entries go again to a new log. May compact afterwards.

        Raises:
            CacheError: The log cannot be written (``CacheFullError`` for a full disk).
        """
        for attempt in (1, 2):
            writer = self._own_writer()
            now = time.time()
            if now <= self.last_ts:  # the clock went back, or another writer is ahead
                now = math.nextafter(self.last_ts, math.inf)
            self.last_ts = now
            entries: list[_Entry] = []
            wid = writer.name[:-4]
            for op in ops:
                seq = writer.seq
                writer.seq = seq + 1
                if op is None:
                    entries.append(_Clear(now, wid, seq))
                elif isinstance(op, ItemRecord):
                    entries.append(_Put(now, wid, seq, op))
                else:
                    entries.append(_Drop(now, wid, seq, op[0], op[1]))
            data = _ENCODER.encode_lines(entries)
            try:
                _write_all(writer.fd, data)
                if self.settings.fsync:
                    os.fsync(writer.fd)
                unlinked = os.fstat(writer.fd).st_nlink == 0
            except OSError as exc:
                self.close_writer(retire=False)  # a torn line may end it: never append again
                if attempt == 1 and exc.errno in _RETRY_ERRNOS:
                    continue
                raise os_error("write", writer.path, exc) from exc
            if unlinked and attempt == 1:
                self.close_writer(retire=False)
                continue
            break
        start = writer.size
        writer.size += len(data)
        if self.offsets.get(writer.name, 0) == start:
            self.offsets[writer.name] = writer.size  # never read our own bytes back
        self.sizes[writer.name] = max(self.sizes.get(writer.name, 0), writer.size)
        self.pending += len(data)
        for entry in entries:
            self._apply(entry, wid, writer.name)
        if self._needs_compaction() and time.monotonic() >= self._no_compact_until:
            try:
                self.compact(force=False)
            except Exception as exc:  # the append landed; the compaction is only a saving
                self._no_compact_until = time.monotonic() + _FAILED_COMPACT_BACKOFF_S
                log.warning("cannot compact the item records of %s: %s", self.url, exc)

    def _own_writer(self) -> _Writer:
        writer = self.writer
        if writer is not None and writer.pid != os.getpid():
            self.drop_inherited()
            writer = None
        if writer is not None and writer.fd >= 0:
            return writer
        if writer is not None:  # closed to bound open files: reopen (never recreate) it
            try:
                writer.fd = os.open(writer.path, os.O_WRONLY | os.O_APPEND | _O_CLOEXEC)
                return writer
            except OSError:
                self.writer = None
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | _O_CLOEXEC
        path = self.items_dir / f"{host_id()}-{os.getpid()}-{secrets.token_hex(8)}.log"
        for attempt in (1, 2):
            try:
                fd = os.open(path, flags, 0o644)
            except FileNotFoundError as exc:
                if attempt == 2:
                    raise os_error("create", path, exc) from exc
                try:
                    self.items_dir.mkdir(parents=True, exist_ok=True)
                except OSError as mkdir_exc:
                    raise os_error("create", self.items_dir, mkdir_exc) from mkdir_exc
                continue
            except OSError as exc:
                raise os_error("create", path, exc) from exc
            break
        self.writer = _Writer(path, fd)
        self.sizes.setdefault(path.name, 0)
        return self.writer

    def close_writer(self, *, retire: bool) -> None:
        """Close our log; a retired one is deleted by a later compaction, once consumed."""
        writer = self.writer
        if writer is None:
            return
        self.writer = None
        if writer.fd >= 0 and writer.pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(writer.fd)
        if retire:
            self.retired.add(writer.name)

    def close_fd(self) -> None:
        """Close our log's file descriptor only (it is reopened by the next append)."""
        writer = self.writer
        if writer is not None and writer.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(writer.fd)
            writer.fd = -1

    def drop_inherited(self) -> None:
        """In a forked child: close the parent's log descriptor and forget its log."""
        writer = self.writer
        self.writer = None
        self.retired = set()
        if writer is not None and writer.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(writer.fd)

    def after_fork(self) -> None:
        """In a forked child (one thread): new lock, no inherited log, nothing read."""
        self.lock = threading.RLock()
        self.drop_inherited()
        self.reset()

    # ----------------------------------------------------------------------------------------
    # compaction

    def _needs_compaction(self, *, again: bool = False) -> bool:
        """Too many unconsumed log bytes, or too many logs some of which could go.

        The second test costs a ``kill(pid, 0)`` per log, so it runs at most every 30 s
        (``again``: the check under the compaction lock, right after a positive one).
        """
        if self.pending > max(COMPACT_MIN_BYTES, 2 * self.snap_size):
            return True
        if len(self.sizes) > MAX_LOGS:
            now = time.monotonic()
            if again or now - self._last_count_check >= _COUNT_RECHECK_S:
                self._last_count_check = now
                wall = time.time()
                return any(self._writer_gone(n, m, wall) for n, m in self.mtimes.items())
        return False

    def compact(self, *, force: bool) -> bool:
        """Write a snapshot of the merged view, then delete the logs it made useless.

        Holds the best-effort lock ``items:<key>`` when it can be had (without it, two
        compactions may race: each renames a complete, valid snapshot and the last wins).
        Unless ``force``, the need is checked again once the lock is held (another process
        may just have compacted). Logs deleted: consumed by the snapshot, untouched for
        :data:`LOG_GRACE_S`, and written by a process that is gone (same host, pid not
        running; another host: untouched for 24 h) or by us before a rotation.

        Returns:
            Whether a snapshot was written.

        Raises:
            CacheError: The snapshot cannot be written.
        """
        settings = self.settings
        wait = settings.lock_timeout if force else min(settings.lock_timeout, _COMPACT_LOCK_WAIT_S)
        key = f"items:{bundle_key(self.url)}"
        with locks.cache_lock(settings.layout, key, wait):
            self.refresh()
            if not force and not self._needs_compaction(again=True):
                return False
            index = self.index
            if not (self.sizes or self.snap_stamp or index.keys or index.clear_key):
                return False
            now = time.time()
            offsets = {n: o for n, o in self.offsets.items() if o > 0 and n in self.sizes}
            snap = index.to_snapshot(
                now - TOMBSTONE_AGE_S,
                url=self.url,
                written_at=now,
                max_ts=self.last_ts,
                offsets=offsets,
            )
            raw = _ENCODER.encode(snap)
            self.snap_stamp = atomic_write(self.snap_path, raw, fsync=settings.fsync)
            self.snap_size = len(raw)
            self.snap_offsets = offsets
            self.pending = sum(max(0, s - offsets.get(n, 0)) for n, s in self.sizes.items())
            self._delete_consumed(now)
            writer = self.writer
            if writer is not None and writer.size >= ROTATE_BYTES:
                self.close_writer(retire=True)
            return True

    def _writer_gone(self, name: str, mtime: float, now: float) -> bool:
        if name in self.retired:
            return True
        if self.writer is not None and name == self.writer.name:
            return False
        match = _LOG_NAME.fullmatch(name)
        if match is None:
            return False
        if match[1] != host_id():  # its pid means nothing here
            return now - mtime > FOREIGN_LOG_AGE_S
        pid = int(match[2])
        return pid != os.getpid() and not pid_alive(pid)

    def _delete_consumed(self, now: float) -> None:
        for name, size in list(self.sizes.items()):
            mtime = self.mtimes.get(name, now)
            if now - mtime < LOG_GRACE_S or not self._writer_gone(name, mtime, now):
                continue
            consumed = self.snap_offsets.get(name, 0)
            path = self.items_dir / name
            try:
                st = os.stat(path)
                if st.st_size != size or st.st_mtime != mtime:
                    continue  # changed since the snapshot read it
                if consumed < size and not _only_a_torn_tail(path, consumed):
                    continue
                os.unlink(path)
            except OSError:
                continue
            self.retired.discard(name)
            for table in (self.sizes, self.mtimes, self.offsets):
                table.pop(name, None)


_O_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _only_a_torn_tail(path: Path, offset: int) -> bool:
    """Whether the bytes of ``path`` from ``offset`` hold no complete line (a crash's tail)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        return b"\n" not in fh.read()


def _stamp(path: Path) -> Stamp | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
