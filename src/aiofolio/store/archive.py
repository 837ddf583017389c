"""The cache export archive format, and checking an archive before anything is extracted.

Owns: :class:`ExportIndex` (the archive's first member, ``aiofolio-export.json``: the bundle
URL, its record fields and the item records exported) and :func:`check_archive`, which reads
every member *header* of a ``.tar.gz`` and refuses the archive (an
:class:`~aiofolio.errors.ArchiveError` subclass) unless every member is a regular file at a
path the index accounts for, with exactly the size the index states::

    aiofolio-export.json                          the index (at most 16 MiB)
    v1/bundles/<bundle_key(url)>/manifest-<md5>.json   the bundle's manifest
    v1/blobs/<digest[:2]>/<digest>                one per exported blob

Nothing is written here; the engine (:mod:`aiofolio.engine.sharing`) verifies and publishes.
"""

from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass
from typing import IO, Final

import msgspec

from aiofolio.errors import (
    ArchiveFormatError,
    ArchiveMemberTypeError,
    ArchivePathError,
    ArchiveSizeError,
    ArchiveUnexpectedMemberError,
)
from aiofolio.store.itemlog import ItemRecord
from aiofolio.store.layout import LAYOUT_VERSION, bundle_key

__all__ = [
    "EXPORT_KIND",
    "INDEX_NAME",
    "CheckedArchive",
    "ExportIndex",
    "blob_member",
    "check_archive",
    "manifest_member",
    "read_member",
]

INDEX_NAME: Final = "aiofolio-export.json"
EXPORT_KIND: Final = "aiofolio-cache-export"
INDEX_MAX: Final = 16 << 20
MANIFEST_MAX: Final = 256 << 20
MEMBERS_MAX: Final = 1_000_000
_MD5: Final = re.compile(r"[0-9a-f]{32}")
_DIGEST: Final = re.compile(r"[0-9a-f]{16,128}")


class ExportIndex(msgspec.Struct, kw_only=True):
    """What ``aiofolio-export.json`` holds (format 1)."""

    format: int = 1
    kind: str = EXPORT_KIND
    created_at: float = 0.0
    aiofolio_version: str = ""
    url: str = ""
    manifest_token: str | None = None
    last_check: float = 0.0
    manifest_md5: str = ""
    manifest_size: int = 0
    items: list[ItemRecord] = []


def blob_member(digest: str) -> str:
    """The archive path of the blob ``digest`` (the cache layout's)."""
    return f"{LAYOUT_VERSION}/blobs/{digest[:2]}/{digest}"


def manifest_member(url: str, md5: str) -> str:
    """The archive path of the bundle's manifest (the cache layout's)."""
    return f"{LAYOUT_VERSION}/bundles/{bundle_key(url)}/manifest-{md5}.json"


@dataclass
class CheckedArchive:
    """An archive whose every member passed :func:`check_archive`."""

    index: ExportIndex
    manifest: tarfile.TarInfo
    blobs: dict[str, tarfile.TarInfo]  # digest -> member


def _check_name(name: str, source: str) -> None:
    if not name or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise ArchivePathError(f"{source}: member {name!r} has an absolute path; refused")
    parts = name.split("/")
    if any(p in ("..", ".", "") for p in parts) or "\\" in name or "\x00" in name:
        raise ArchivePathError(f"{source}: member {name!r} is not a plain relative path; refused")


def _check_type(member: tarfile.TarInfo, source: str) -> None:
    if member.isreg():
        return
    if member.issym() or member.islnk():
        kind = "a symlink" if member.issym() else "a hardlink"
        raise ArchiveMemberTypeError(
            f"{source}: member {member.name!r} is {kind} (to {member.linkname!r}); refused"
        )
    if member.ischr() or member.isblk():
        kind = "a device"
    elif member.isfifo():
        kind = "a fifo"
    elif member.isdir():
        kind = "a folder"
    else:
        kind = "not a regular file"
    raise ArchiveMemberTypeError(f"{source}: member {member.name!r} is {kind}; refused")


def _read_index(tf: tarfile.TarFile, member: tarfile.TarInfo, source: str) -> ExportIndex:
    if member.size > INDEX_MAX:
        raise ArchiveSizeError(f"{source}: the index is {member.size} bytes (cap {INDEX_MAX})")
    fh = tf.extractfile(member)
    if fh is None:  # pragma: no cover - regular files always have a file object
        raise ArchiveFormatError(f"{source}: the index cannot be read")
    data = fh.read(INDEX_MAX + 1)
    try:
        index = msgspec.json.decode(data, type=ExportIndex)
    except msgspec.DecodeError as exc:
        raise ArchiveFormatError(f"{source}: the index does not decode: {exc}") from None
    if index.kind != EXPORT_KIND or index.format != 1 or not index.url:
        raise ArchiveFormatError(f"{source}: not an aiofolio cache export (format 1)")
    if _MD5.fullmatch(index.manifest_md5) is None or index.manifest_size > MANIFEST_MAX:
        raise ArchiveFormatError(f"{source}: the index names no usable manifest")
    for rec in index.items:
        if _DIGEST.fullmatch(rec.digest) is None or rec.size < 0:
            raise ArchiveFormatError(f"{source}: item {rec.name!r} has a bad digest or size")
    return index


def check_archive(tf: tarfile.TarFile, source: str, size_cap: int | None = None) -> CheckedArchive:
    """Check every member of ``tf`` (headers, and the index); raise before anything is written.

    Raises:
        ArchivePathError, ArchiveMemberTypeError, ArchiveUnexpectedMemberError,
        ArchiveSizeError, ArchiveFormatError: see :mod:`aiofolio.errors`.
    """
    members: list[tarfile.TarInfo] = []
    seen: set[str] = set()
    try:
        while (member := tf.next()) is not None:
            _check_name(member.name, source)
            _check_type(member, source)
            if member.name in seen:
                raise ArchivePathError(f"{source}: member {member.name!r} appears twice")
            seen.add(member.name)
            members.append(member)
            if len(members) > MEMBERS_MAX:
                raise ArchiveSizeError(f"{source}: more than {MEMBERS_MAX} members")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ArchiveFormatError(f"{source}: not a readable .tar.gz: {exc}") from None
    by_name = {m.name: m for m in members}
    head = by_name.get(INDEX_NAME)
    if head is None:
        raise ArchiveFormatError(f"{source}: no {INDEX_NAME}: not an aiofolio cache export")
    index = _read_index(tf, head, source)
    expected: dict[str, int] = {
        INDEX_NAME: head.size,
        manifest_member(index.url, index.manifest_md5): index.manifest_size,
    }
    for rec in index.items:
        name = blob_member(rec.digest)
        if expected.get(name, rec.size) != rec.size:
            raise ArchiveFormatError(f"{source}: two sizes for blob {rec.digest}")
        expected[name] = rec.size
    for member in members:
        want = expected.get(member.name)
        if want is None:
            raise ArchiveUnexpectedMemberError(
                f"{source}: member {member.name!r} is not part of the export; refused"
            )
        if member.size != want or (size_cap is not None and member.size > size_cap):
            raise ArchiveSizeError(
                f"{source}: member {member.name!r} is {member.size} bytes, its index entry "
                f"says {want}; refused"
            )
    missing = sorted(set(expected) - seen)
    if missing:
        raise ArchiveFormatError(f"{source}: members missing: {', '.join(missing[:5])}")
    blobs = {rec.digest: by_name[blob_member(rec.digest)] for rec in index.items}
    return CheckedArchive(index, by_name[manifest_member(index.url, index.manifest_md5)], blobs)


def read_member(tf: tarfile.TarFile, member: tarfile.TarInfo) -> IO[bytes]:
    """A file object over a checked member's bytes."""
    fh = tf.extractfile(member)
    if fh is None:  # pragma: no cover - checked members are regular files
        raise ArchiveFormatError(f"member {member.name!r} cannot be read")
    return fh
