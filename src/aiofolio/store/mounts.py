"""Which filesystem a cache folder lives on, from the mount table; no other I/O.

Owns the decision behind ``lock_mode="auto"``: :func:`filesystem_type` finds the mount whose
mount point is the longest prefix of a path in a mount table (the text of
``/proc/self/mounts``), :func:`is_network_filesystem` says whether ``flock`` is unreliable on
that type (NFS, Lustre, GPFS, CIFS/SMB, Ceph, GlusterFS, BeeGFS, 9p, sshfs and other network
FUSE mounts), and :func:`auto_lock_mode` puts them together. Where there is no mount table
(macOS, Windows) the answer is "not a network filesystem".
"""

from __future__ import annotations

import os
from typing import Final, Literal

__all__ = [
    "MOUNTS_FILE",
    "NETWORK_FS_TYPES",
    "auto_lock_mode",
    "filesystem_type",
    "is_network_filesystem",
    "parse_mounts",
]

MOUNTS_FILE: Final = "/proc/self/mounts"

NETWORK_FS_TYPES: Final = frozenset(
    {
        "nfs",
        "nfs4",
        "lustre",
        "gpfs",
        "cifs",
        "smb3",
        "smbfs",
        "ceph",
        "glusterfs",
        "beegfs",
        "9p",
        "afs",
        "ocfs2",
        "gfs2",
        "panfs",
        "wekafs",
        "fuse.sshfs",
        "fuse.glusterfs",
        "fuse.ceph",
        "fuse.cephfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "fuse.juicefs",
        "fuse.lizardfs",
        "fuse.moosefs",
    }
)
"""Filesystem types (as the mount table names them) where ``flock`` may not lock across
hosts: it may be local to one client, do nothing, or fail with ENOLCK/ENOSYS."""


def _unescape(field: str) -> str:
    # The kernel writes space, tab, newline and backslash in paths as \040, \011, \012, \134.
    if "\\" not in field:
        return field
    out: list[str] = []
    i = 0
    while i < len(field):
        chunk = field[i : i + 4]
        if len(chunk) == 4 and chunk[0] == "\\" and chunk[1:].isdigit():
            out.append(chr(int(chunk[1:], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """``(mount point, filesystem type)`` of each line of a mount table, in order."""
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            mounts.append((_unescape(fields[1]), fields[2]))
    return mounts


def _within(path: str, mount_point: str) -> bool:
    if mount_point == "/":
        return path.startswith("/")
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")


def filesystem_type(path: str, mounts_text: str) -> str | None:
    """The type of the filesystem holding the absolute ``path`` per ``mounts_text``.

    The mount whose mount point is the longest prefix of ``path`` wins; of equal mount points
    the later line wins (it is mounted over the earlier one). None: no mount matches.
    """
    best: tuple[int, str] | None = None
    for mount_point, fs_type in parse_mounts(mounts_text):
        if _within(path, mount_point) and (best is None or len(mount_point) >= best[0]):
            best = (len(mount_point), fs_type)
    return None if best is None else best[1]


def is_network_filesystem(fs_type: str | None) -> bool:
    """Whether ``flock`` on ``fs_type`` may not exclude processes of other hosts."""
    if fs_type is None:
        return False
    fs_type = fs_type.lower()
    return fs_type in NETWORK_FS_TYPES or fs_type.split(".", 1)[0] in NETWORK_FS_TYPES


def _existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return os.path.realpath(path)


def auto_lock_mode(path: str, mounts_text: str | None = None) -> Literal["flock", "lease"]:
    """What ``lock_mode="auto"`` means for a cache at ``path``: ``"lease"`` on a network
    filesystem, else ``"flock"``.

    Args:
        path: The cache folder (need not exist yet: its nearest existing parent is looked at,
            symlinks resolved).
        mounts_text: A mount table to decide by, taken as is: ``path`` is then only made
            absolute, never looked up on disk (a pure function). None reads
            :data:`MOUNTS_FILE` and resolves ``path`` on disk (no table: ``"flock"``).
    """
    if mounts_text is None:
        try:
            with open(MOUNTS_FILE, encoding="utf-8", errors="surrogateescape") as fh:
                mounts_text = fh.read()
        except OSError:
            return "flock"
        path = _existing(path)
    else:
        path = os.path.abspath(path)
    return "lease" if is_network_filesystem(filesystem_type(path, mounts_text)) else "flock"
