"""Sharing a warm cache: export one bundle's cached records and blobs, import an archive.

Owns: :func:`export_bundle` (a ``.tar.gz`` in the layout of :mod:`aiofolio.store.archive`,
written to a temp name and renamed, every blob re-hashed on the way) and :func:`import_archive`.
An import is safe by construction:

1. every member header is checked (:func:`~aiofolio.store.archive.check_archive`) and the
   manifest's MD5 and item records are checked against the index, before anything is written;
2. with ``verify_checksums`` every new blob is hashed against its digest and the manifest's
   MD5 and size, still before anything is written;
3. the new bytes are reserved under the size limits in one step (:meth:`Quota.reserve`:
   ``CacheFullError`` before any byte), then each blob is copied to a temp file, hashed again
   and published by rename; any failure removes the blobs this import published;
4. the item records go in with one append; the bundle record is adopted when the cache has
   none for the bundle or an older one; the quota settles (:meth:`Quota.after_publish`).

Blobs already in the cache are skipped. All functions block (call them in a thread).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec

from aiofolio._version import __version__
from aiofolio.bundle import Manifest, parse_manifest, version_token
from aiofolio.config import Settings
from aiofolio.engine._runtime import Runtime
from aiofolio.engine.progress import report_bytes
from aiofolio.engine.quota import is_disk_full
from aiofolio.errors import (
    AiofolioError,
    ArchiveChecksumError,
    ArchiveFormatError,
    CacheError,
    CacheFullError,
    ChecksumMismatchError,
)
from aiofolio.store import FAST_ALGORITHM, Hashers, ItemRecord, fast_hash_file
from aiofolio.store.archive import (
    INDEX_NAME,
    CheckedArchive,
    ExportIndex,
    blob_member,
    check_archive,
    manifest_member,
    read_member,
)
from aiofolio.store.records import BundleRecord

__all__ = ["export_bundle", "import_archive"]

_BLOCK = 1 << 20


def _base_token(rec: ItemRecord) -> str:
    return rec.version_token.split("#", 1)[0]


def _current(manifest: Manifest, rec: ItemRecord) -> bool:
    item = manifest.get_current(rec.name)
    return item is not None and version_token(item) == _base_token(rec)


class _HashingReader:
    """A read-only file object that hashes what tarfile reads from it."""

    def __init__(self, fh: Any, hashers: Hashers) -> None:
        self._fh, self.hashers = fh, hashers

    def read(self, n: int = -1) -> bytes:
        data: bytes = self._fh.read(n)
        self.hashers.update(data)
        report_bytes(len(data))
        return data


def export_bundle(rt: Runtime, url: str, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Write this bundle's current cached items to the ``.tar.gz`` ``dest``.

    Only records of the cached manifest's current versions whose blob is present go in.
    ``dest`` appears complete or not at all.

    Raises:
        CacheError: nothing of the bundle is cached.
        ChecksumMismatchError: a blob does not match its record (invalidate it, export again).
    """
    loaded = rt.records.load(url)
    if loaded is None or loaded[1] is None:
        raise CacheError(f"nothing of {url} is cached (no manifest): nothing to export")
    record, manifest_bytes = loaded[0], loaded[1]
    manifest = parse_manifest(manifest_bytes, source=url)
    recs: list[ItemRecord] = []
    for rec in rt.records.items(url).values():
        if rec.digest and _current(manifest, rec) and rt.blobs.lookup(rec.digest, rec.size):
            recs.append(rec)
    index = ExportIndex(
        created_at=time.time(),
        aiofolio_version=__version__,
        url=url,
        manifest_token=record.manifest_token,
        last_check=record.last_check,
        manifest_md5=record.manifest_md5,
        manifest_size=len(manifest_bytes),
        items=recs,
    )
    final = Path(os.fspath(dest))
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.part")
    blobs_bytes = 0
    try:
        with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT) as tf:
            _add_bytes(tf, INDEX_NAME, msgspec.json.encode(index))
            _add_bytes(tf, manifest_member(url, record.manifest_md5), manifest_bytes)
            done: set[str] = set()
            for rec in recs:
                if rec.digest in done:
                    continue
                done.add(rec.digest)
                blobs_bytes += _add_blob(rt, tf, rec)
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return {
        "path": str(final),
        "bundle": url,
        "items": len(recs),
        "blobs": len({r.digest for r in recs}),
        "bytes": blobs_bytes,
        "archive_bytes": final.stat().st_size,
    }


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, int(time.time())
    tf.addfile(info, io.BytesIO(data))


def _add_blob(rt: Runtime, tf: tarfile.TarFile, rec: ItemRecord) -> int:
    path = rt.blobs.path(rec.digest)
    info = tarfile.TarInfo(blob_member(rec.digest))
    info.size, info.mode, info.mtime = rec.size, 0o444, int(time.time())
    with rt.inuse.reading(rec.digest), open(path, "rb") as fh:
        reader = _HashingReader(fh, Hashers([rec.algorithm]))
        tf.addfile(info, reader)
    if reader.hashers.size != rec.size or reader.hashers.hexdigest(rec.algorithm) != rec.digest:
        raise ChecksumMismatchError(
            f"the cached blob of {rec.name!r} ({path}) does not match its record; "
            "invalidate_cache() it and export again"
        )
    return rec.size


# -- import --------------------------------------------------------------------------------------
def _open(path: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:gz")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveFormatError(f"{path}: not a readable .tar.gz: {exc}") from None


def _hash_member(
    tf: tarfile.TarFile, member: tarfile.TarInfo, algorithms: list[str], out: Any = None
) -> Hashers:
    hashers = Hashers(algorithms)
    with read_member(tf, member) as fh:
        while block := fh.read(_BLOCK):
            hashers.update(block)
            if out is not None:
                out.write(block)
                report_bytes(len(block))
    return hashers


def _check_blob(
    source: str, rec: ItemRecord, manifest: Manifest, hashers: Hashers, verify: bool
) -> None:
    if hashers.size != rec.size or hashers.hexdigest(rec.algorithm) != rec.digest:
        raise ArchiveChecksumError(
            f"{source}: the bytes of {rec.name!r} do not match their digest {rec.digest}; refused"
        )
    item = manifest.current(rec.name)
    if verify and item.checksum is not None and hashers.hexdigest("md5") != item.checksum:
        raise ArchiveChecksumError(
            f"{source}: the bytes of {rec.name!r} do not match the manifest's MD5; refused"
        )
    if item.size_bytes is not None and item.size_bytes != hashers.size:
        raise ArchiveChecksumError(f"{source}: {rec.name!r} is not the manifest's size; refused")


def _checked_manifest(tf: tarfile.TarFile, checked: CheckedArchive, source: str) -> bytes:
    import hashlib

    with read_member(tf, checked.manifest) as fh:
        data = fh.read()
    if hashlib.md5(data).hexdigest() != checked.index.manifest_md5:
        raise ArchiveChecksumError(f"{source}: the manifest does not match its MD5; refused")
    return data


@contextlib.contextmanager
def _holding(rt: Runtime, digests: list[str]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for digest in digests:
            stack.enter_context(rt.inuse.reading(digest))
        yield


def import_archive(
    rt: Runtime, settings: Settings, path: str, *, verify_checksums: bool = True
) -> dict[str, Any]:
    """Add the records and blobs of the export ``path`` to the cache ``rt`` (see the module).

    Raises:
        ArchiveError: a refused archive (nothing written).
        CacheFullError: the new bytes do not fit under the hard limit, or the disk is full
            (nothing left behind).
    """
    source = os.fspath(path)
    with _open(source) as tf:
        checked = check_archive(tf, source)
        index = checked.index
        manifest_bytes = _checked_manifest(tf, checked, source)
        try:
            manifest = parse_manifest(manifest_bytes, source=index.url)
        except AiofolioError as exc:
            raise ArchiveFormatError(f"{source}: the manifest does not parse: {exc}") from None
        for rec in index.items:
            if not _current(manifest, rec):
                raise ArchiveFormatError(
                    f"{source}: the record of {rec.name!r} is not the manifest's version"
                )
        wanted: dict[str, ItemRecord] = {}
        for rec in index.items:
            wanted.setdefault(rec.digest, rec)
        new = {d: r for d, r in wanted.items() if rt.blobs.lookup(d, r.size) is None}
        algorithms = {d: sorted({"md5", r.algorithm, FAST_ALGORITHM}) for d, r in new.items()}
        if verify_checksums:  # step 2: before any write
            for digest, rec in new.items():
                hashers = _hash_member(tf, checked.blobs[digest], algorithms[digest])
                _check_blob(source, rec, manifest, hashers, True)
        need = sum(r.size for r in new.values())
        rt.layout.ensure()
        quota = rt.quota
        ticket = quota.reserve(settings, need, f"import of {source}")
        published: list[str] = []
        fast: dict[str, str] = {}
        try:
            for digest, rec in new.items():
                tmp = rt.blobs.new_temp()
                try:
                    with open(tmp, "wb") as out:
                        hashers = _hash_member(tf, checked.blobs[digest], algorithms[digest], out)
                    _check_blob(source, rec, manifest, hashers, verify_checksums)
                    rt.blobs.publish(tmp, digest)
                    published.append(digest)
                    fast[digest] = hashers.hexdigest(FAST_ALGORITHM)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
            for digest in wanted:
                if digest not in fast:
                    fast[digest] = fast_hash_file(rt.blobs.path(digest), FAST_ALGORITHM)
            _adopt(rt, index, manifest_bytes, manifest, fast)
        except BaseException as exc:
            for digest in published:
                with contextlib.suppress(OSError, AiofolioError):
                    rt.blobs.remove(digest)
            quota.release(ticket)
            if is_disk_full(exc) and not isinstance(exc, AiofolioError):
                raise CacheFullError(
                    f"the disk of the cache ({rt.root}) is full: the import of {source} "
                    "did not fit; nothing was kept"
                ) from exc
            raise
        with _holding(rt, published):
            quota.after_publish(ticket, settings, published[0] if published else "", need)
    return {
        "bundle": index.url,
        "items": len(index.items),
        "blobs_imported": len(new),
        "blobs_skipped": len(wanted) - len(new),
        "bytes_imported": need,
        "bytes_skipped": sum(r.size for d, r in wanted.items() if d not in new),
    }


def _adopt(
    rt: Runtime,
    index: ExportIndex,
    manifest_bytes: bytes,
    manifest: Manifest,
    fast: dict[str, str],
) -> None:
    """Record the imported items; adopt the bundle record unless the cache's is newer."""
    url = index.url
    local = rt.records.load(url)
    effective = manifest
    if local is None or local[1] is None or local[0].last_check <= index.last_check:
        rt.records.save(
            BundleRecord(
                url=url,
                manifest_token=index.manifest_token,
                last_check=index.last_check,
                created_at=time.time(),
            ),
            manifest_bytes,
        )
    else:
        effective = parse_manifest(local[1], source=url)
    now = time.time()
    present = rt.records.items(url)
    recs: list[ItemRecord] = []
    for rec in index.items:
        old = present.get(rec.name)
        if not _current(effective, rec) or (old is not None and old.digest == rec.digest):
            continue
        recs.append(
            msgspec.structs.replace(
                rec,
                cached_at=now,
                last_verified=now,
                fast_hash=fast[rec.digest],
                fast_algorithm=FAST_ALGORITHM,
                pinned=False,
                priority=0,
                verified_by=f"{rec.verified_by or rec.algorithm} (imported)",
            )
        )
    if recs:
        rt.records.put_items(url, recs)
