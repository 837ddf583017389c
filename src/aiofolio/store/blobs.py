"""The content-addressed blob area of the cache: immutable files named by their digest.

This module owns :class:`BlobStore`: the path of a blob (``v1/blobs/<first 2 hex>/<digest>``),
the hit-path lookup (one ``os.stat``, no hashing), unique temp files for downloads in progress,
publishing a verified temp file (chmod 0444, then an atomic ``os.replace``), removal, listing
for eviction, recording an access in the file's atime for LRU, and sweeping temp files that
crashed processes left behind (keeping resumable partial downloads named by a recent sidecar).
It also re-exports the hashing helpers of :mod:`aiofolio.store.hashing` (:class:`Hashers`,
:func:`fast_hash_file`).

Publishing is safe without any lock: content addressing means two processes that publish the
same digest rename equal bytes onto the same name, and a rename is atomic, so the final path
only ever holds a complete file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

from aiofolio.errors import CacheError
from aiofolio.store._util import host_tag, os_error, owner_pid, pid_alive, unique_name
from aiofolio.store.hashing import FAST_ALGORITHM, Hashers, fast_hash_file
from aiofolio.store.layout import CacheLayout

__all__ = [
    "BLOB_MODE",
    "FAST_ALGORITHM",
    "BlobInfo",
    "BlobStore",
    "Hashers",
    "fast_hash_file",
    "validate_digest",
]

BLOB_MODE: Final = 0o444
"""Mode bits of a published blob: read-only, so nothing edits cached content in place."""

_DIGEST: Final = re.compile(r"[0-9a-f]{8,128}")
_SUFFIX: Final = re.compile(r"[A-Za-z0-9._-]{0,32}")
_TEMP_HARD_MAX_AGE: Final = 24 * 3600.0
_RESUME_SIDECAR: Final = re.compile(r"resume-[0-9a-f]{32}\.json")
_PATH_CACHE_MAX: Final = 4096


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is lowercase hex of 8 to 128 characters.

    Raises:
        ValueError: Anything else (uppercase, separators, ``..``, empty, non-str), so a digest
            can never steer a path outside the blob area.
    """
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise ValueError(f"not a blob digest (lowercase hex, 8-128 chars): {digest!r}")
    return digest


class BlobInfo(NamedTuple):
    """One blob, as listed by :meth:`BlobStore.iter_blobs`.

    Attributes:
        digest: The content digest (the file name).
        path: The blob's path.
        size: Its size in bytes.
        atime: Last access (seconds since the epoch), as recorded by :meth:`BlobStore.touch`.
        mtime: When it was cached (publishing keeps the write time; touch keeps it too).
    """

    digest: str
    path: Path
    size: int
    atime: float
    mtime: float


class BlobStore:
    """Content-addressed, immutable blob files under ``<cache_dir>/v1/blobs``.

    Every method is a plain synchronous function, safe to call from several threads and
    processes at once. Digests are lowercase hex (:func:`validate_digest`); the store does not
    care which algorithm produced them (the record says). Digests of different algorithms
    share one namespace, which is safe (a cross-algorithm collision is as unlikely as any
    other), but equal bytes addressed by two algorithms are stored twice.

    Args:
        layout: The cache layout; :meth:`CacheLayout.ensure` should have run before writes
            (missing folders are created on demand anyway).
    """

    __slots__ = ("_blobs", "_paths", "layout")

    def __init__(self, layout: CacheLayout) -> None:
        self.layout = layout
        self._blobs = str(layout.blobs_dir)
        self._paths: dict[str, Path] = {}  # digest -> Path (pathlib objects are slow to build)

    def _str_path(self, digest: str) -> str:
        validate_digest(digest)
        return f"{self._blobs}{os.sep}{digest[:2]}{os.sep}{digest}"

    def path(self, digest: str) -> Path:
        """The blob path of ``digest``: ``v1/blobs/<digest[:2]>/<digest>`` (may not exist).

        Raises:
            ValueError: ``digest`` is not lowercase hex.
        """
        path = self._paths.get(digest)
        if path is None:
            path = Path(self._str_path(digest))
            if len(self._paths) >= _PATH_CACHE_MAX:
                self._paths.clear()
            self._paths[digest] = path
        return path

    def lookup(self, digest: str, size: int | None = None) -> Path | None:
        """The blob's path if it is cached (and has ``size`` bytes, when given); else None.

        The hit path: one ``os.stat`` and no hashing. A size mismatch is a miss (the caller
        downloads again, and publishing replaces the bad file).

        Raises:
            ValueError: ``digest`` is not lowercase hex.
            CacheError: The stat failed for a reason other than absence (e.g. permissions).
        """
        try:
            st = os.stat(self._str_path(digest))
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise os_error("stat the blob", self._str_path(digest), exc) from exc
        if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
            return None
        return self.path(digest)

    def new_temp(self, suffix: str = ".part") -> Path:
        """A unique path ``v1/tmp/<pid>-<random><suffix>`` for a download; not created.

        The tmp folder is created if missing. The caller creates, writes and then either
        :meth:`publish` es or deletes the file; a file a crashed process leaves behind is
        removed by :meth:`sweep_temps`.

        Raises:
            ValueError: ``suffix`` has characters other than ``[A-Za-z0-9._-]`` (max 32).
            CacheError: The tmp folder cannot be created.
        """
        if _SUFFIX.fullmatch(suffix) is None:
            raise ValueError(f"bad temp suffix {suffix!r}")
        tmp_dir = self.layout.tmp_dir
        try:
            tmp_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error("create the temp folder", tmp_dir, exc) from exc
        return tmp_dir / unique_name(suffix, tagged=True)

    def publish(self, tmp: str | os.PathLike[str], digest: str, *, fsync: bool = False) -> Path:
        """Move a verified temp file into the store as the blob ``digest``; return its path.

        The file is made read-only (0444) and then renamed over the final path with
        ``os.replace``, creating the fan-out folder when needed. The final path never holds a
        partial file. Publishing a digest that is already there is fine (equal bytes replace
        equal bytes, which also repairs a damaged copy), also when several processes do it at
        once. The caller must have verified the bytes: the store does not hash them.

        Args:
            tmp: The complete temp file (normally from :meth:`new_temp`; it must be on the
                cache's filesystem).
            digest: Its content digest.
            fsync: Flush the file and the folder to stable storage.

        Raises:
            ValueError: ``digest`` is not lowercase hex.
            CacheError: The temp file is missing or cannot be moved (``CacheFullError`` when
                the disk is full).
        """
        final = self.path(digest)
        try:
            if fsync:
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            os.chmod(tmp, BLOB_MODE)
        except OSError as exc:
            raise os_error("publish the temp file", tmp, exc) from exc
        try:
            os.replace(tmp, final)
        except FileNotFoundError:
            # The fan-out folder is new (or was swept); a missing temp file fails again below.
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
            except OSError as exc:
                raise os_error(f"publish {os.fspath(tmp)} as", final, exc) from exc
        except PermissionError as exc:
            # Platforms where a rename cannot replace an open file (Windows): an existing blob
            # of this digest holds the same bytes, so keep it and drop ours.
            if not final.is_file():
                raise os_error(f"publish {os.fspath(tmp)} as", final, exc) from exc
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        except OSError as exc:
            raise os_error(f"publish {os.fspath(tmp)} as", final, exc) from exc
        if fsync:
            with contextlib.suppress(OSError):
                fd = os.open(final.parent, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return final

    def remove(self, digest: str) -> int:
        """Delete the blob ``digest``; return the bytes freed (0 when it was not there).

        Raises:
            ValueError: ``digest`` is not lowercase hex.
            CacheError: It exists but cannot be deleted.
        """
        path = self.path(digest)
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError):
            return 0
        except OSError as exc:
            raise os_error("remove the blob", path, exc) from exc
        return size

    def scan(self) -> dict[str, tuple[int, float, float]]:
        """Every blob as ``digest -> (size, atime, mtime)``; files that vanish are skipped.

        Names that are not digests (stray files) are ignored. Builds no ``Path`` per blob:
        eviction passes list 100,000 blobs, where that would cost more than the ``stat``.
        """
        out: dict[str, tuple[int, float, float]] = {}
        for fan in _scandir(self.layout.blobs_dir):
            if len(fan.name) != 2 or not fan.is_dir(follow_symlinks=False):
                continue
            for entry in _scandir(Path(fan.path)):
                name = entry.name
                if not name.startswith(fan.name) or _DIGEST.fullmatch(name) is None:
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    out[name] = (st.st_size, st.st_atime_ns / 1e9, st.st_mtime_ns / 1e9)
        return out

    def iter_blobs(self) -> Iterator[BlobInfo]:
        """Every blob in the store (no particular order), as :meth:`scan` lists them."""
        for digest, (size, atime, mtime) in self.scan().items():
            yield BlobInfo(digest, self.path(digest), size, atime, mtime)

    def total_size(self) -> int:
        """The total size in bytes of every blob (apparent sizes)."""
        return sum(size for size, _, _ in self.scan().values())

    def touch(self, path: str | os.PathLike[str], *, min_interval_s: float = 0.0) -> bool:
        """Record an access to a blob for LRU: set its atime to now, keep its mtime.

        ``os.utime`` with explicit times needs ownership, not write permission, so it works on
        our 0444 blobs; the atime is set explicitly because ``relatime``/``noatime`` mounts do
        not keep it. Best-effort: a missing file, or one we do not own (a shared read-only
        tier), returns False instead of raising. A blob with more than one link (a hit of the
        shared tier linked into this one) is never touched: its atime is the tier's.

        Args:
            path: The blob (from :meth:`lookup`).
            min_interval_s: Skip the write when the recorded access is younger than this
                (saves a metadata write per hit on hot items; LRU does not need sub-minute
                precision). 0 writes every time.

        Returns:
            True when the atime was written.
        """
        try:
            st = os.stat(path)
            if st.st_nlink > 1:
                return False  # hard-linked from a shared tier: its inode is not ours to touch
            now_ns = time.time_ns()
            if min_interval_s > 0 and now_ns - st.st_atime_ns < min_interval_s * 1e9:
                return False
            os.utime(path, ns=(now_ns, st.st_mtime_ns))
        except OSError:
            return False
        return True

    def sweep_temps(self, max_age_s: float = 3600.0) -> int:
        """Delete temp files that crashed or vanished processes left in ``v1/tmp``.

        A temp file of this host (its name carries its `host_tag()`) whose process is gone is
        deleted whatever its age. Any other file is deleted when it was not modified for
        ``max_age_s`` and the pid in its name is not a live process on this host (or the name
        has no pid), and in any case after 24 h (a recycled pid, or a file of another host
        sharing the cache). A download in progress writes continuously, so its mtime stays
        young.

        Resumable partial downloads are the exception (see :mod:`aiofolio.engine.fetch`): a
        sidecar ``resume-<hex>.json`` younger than 24 h keeps itself and the data file it
        names, whatever the owner's pid says, so the next run can resume it. A sidecar whose
        data file is gone, or that cannot be read, is deleted once older than ``max_age_s``;
        any sidecar is deleted after 24 h. A partial that no sidecar names is an orphan and
        follows the rule above.

        Args:
            max_age_s: Minimum age (by mtime) of a file to consider.

        Returns:
            The number of files deleted.
        """
        removed = 0
        for path, _ in self.abandoned_temps(max_age_s):
            try:
                os.unlink(path)
            except OSError:
                continue
            removed += 1
        return removed

    def abandoned_temps(
        self, max_age_s: float = 3600.0, *, keep_resumable: bool = True
    ) -> list[tuple[str, int]]:
        """The temp files :meth:`sweep_temps` deletes, as ``(path, size)``; nothing is deleted.

        Args:
            max_age_s: As in :meth:`sweep_temps`.
            keep_resumable: Keep resumable partial downloads and their sidecars (the rule
                of :meth:`sweep_temps`); False lists them too, unless the download is live
                (a temp file of a live process of this host).
        """
        now = time.time()
        hard_max = max(_TEMP_HARD_MAX_AGE, max_age_s)
        entries: list[tuple[os.DirEntry[str], os.stat_result]] = []
        for entry in _scandir(self.layout.tmp_dir):
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                entries.append((entry, st))
        names = {entry.name for entry, _ in entries}
        resumable: set[str] = set()
        for entry, st in entries if keep_resumable else ():
            if _RESUME_SIDECAR.fullmatch(entry.name) is None:
                continue
            age = now - st.st_mtime
            data = _sidecar_data(entry.path)
            if age < hard_max and data in names:
                resumable.add(entry.name)
                resumable.add(data)
        ours = f"-{host_tag()}."
        found: list[tuple[str, int]] = []
        for entry, st in entries:
            if entry.name in resumable:
                continue
            age = now - st.st_mtime
            pid = owner_pid(entry.name)
            if ours in entry.name and pid is not None:
                if pid_alive(pid) and age < hard_max:
                    continue  # a live download of this host
            elif age < max_age_s or (age < hard_max and pid is not None and pid_alive(pid)):
                continue
            found.append((entry.path, st.st_size))
        if not keep_resumable:  # a live download's journal stays with its data file
            listed = {os.path.basename(path) for path, _ in found}
            kept = names - listed
            found = [
                (path, size)
                for path, size in found
                if _RESUME_SIDECAR.fullmatch(os.path.basename(path)) is None
                or _sidecar_data(path) not in kept
            ]
        return found


def _sidecar_data(path: str) -> str | None:
    """The data file name a resume sidecar names, or None (unreadable, not one)."""
    try:
        with open(path, "rb") as fh:
            meta = json.loads(fh.read(1 << 20))
    except (OSError, ValueError):
        return None
    data = meta.get("data") if isinstance(meta, dict) else None
    if not isinstance(data, str) or os.sep in data or data.startswith((".", "resume-")):
        return None
    return data


def _scandir(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except OSError as exc:
        raise CacheError(f"cannot list {folder}: {exc.strerror or exc}") from exc
