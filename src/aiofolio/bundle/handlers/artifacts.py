"""The ``artifact`` handler: any file, copied unchanged into ``artifacts/``.

This module owns copying a local file into a payload temp file while hashing it,
and the artifact fields ``datafolio`` 2.3.0 records: ``original_path`` (the path as
given), ``file_size`` and an optional ``category``. The payload keeps the source's
extension. Reading an artifact yields the path of its local copy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from aiofolio.bundle.hashing import write_hashed
from aiofolio.bundle.manifest import Item, ItemFields

__all__ = ["deserialize_artifact", "serialize_artifact"]

_CHUNK = 1 << 20


def serialize_artifact(
    src_path: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    *,
    category: str | None = None,
) -> ItemFields:
    """Copy the file ``src_path`` to ``dest_path``, hashing while copying.

    Returns:
        ``artifact`` fields: ``checksum``, ``original_path``, ``file_size``,
        ``category`` (if given) and ``size_bytes``; the extension is the source's.

    Raises:
        FileNotFoundError: If ``src_path`` does not exist.
        IsADirectoryError: If ``src_path`` is a directory.
    """
    source = Path(src_path)
    if not source.exists():
        raise FileNotFoundError(f"File not found: {src_path}")
    if source.is_dir():
        raise IsADirectoryError(f"Path is a directory, not a file: {src_path}")

    def copy(writer: Any) -> None:
        with open(source, "rb") as f:
            shutil.copyfileobj(f, writer, _CHUNK)

    checksum, size = write_hashed(dest_path, copy)
    fields: dict[str, Any] = {
        "checksum": checksum,
        "original_path": str(source),
        "file_size": size,
    }
    if category is not None:
        fields["category"] = category
    fields["size_bytes"] = size
    return ItemFields("artifact", fields, source.suffix)


def deserialize_artifact(source: str | os.PathLike[str], item: Item | None = None) -> str:
    """The local path of the artifact's payload (the item's "value" is its file)."""
    del item
    if isinstance(source, bytes):
        raise TypeError("an artifact is read as a local file path, not bytes")
    return os.fspath(source)
