"""The ``numpy_array`` handler: ``.npy`` payloads in ``artifacts/``.

This module owns writing an ndarray with ``np.save`` (as ``datafolio`` 2.3.0 does;
the bytes are identical) while hashing it, and reading it back, memory-mapped on
request. Masked and object-dtype arrays are refused, as in datafolio.
"""

from __future__ import annotations

import io
import os
from typing import Any, Literal

import numpy as np

from aiofolio.bundle.hashing import write_hashed
from aiofolio.bundle.manifest import Item, ItemFields

__all__ = ["deserialize_array", "serialize_array"]

MmapMode = Literal["r+", "r", "w+", "c"]


def serialize_array(
    arr: Any, dest_path: str | os.PathLike[str], *, name: str = "array"
) -> ItemFields:
    """Write ``arr`` as ``.npy`` to ``dest_path``, hashing while writing.

    Returns:
        ``numpy_array`` fields: ``checksum``, ``shape``, ``dtype`` (``str(arr.dtype)``)
        and ``size_bytes``.

    Raises:
        TypeError: If ``arr`` is not an ndarray.
        ValueError: For a masked or object-dtype array (it could not be read back
            safely).
    """
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"Expected numpy array, got {type(arr).__name__}")
    if isinstance(arr, np.ma.MaskedArray):
        raise ValueError(
            f"Cannot store array {name!r}: masked arrays are not supported by the .npy "
            f"round trip (the mask would be lost). Store data and mask separately, or "
            f"use arr.filled(fill_value)."
        )
    if arr.dtype.hasobject:
        raise ValueError(
            f"Cannot store array {name!r}: object-dtype arrays are pickled by np.save and "
            f"cannot be read back safely. Convert to a concrete dtype first."
        )
    checksum, size = write_hashed(dest_path, lambda w: np.save(w, arr, allow_pickle=False))
    fields = {
        "checksum": checksum,
        "shape": list(arr.shape),
        "dtype": str(arr.dtype),
        "size_bytes": size,
    }
    return ItemFields("numpy_array", fields, ".npy")


def deserialize_array(
    source: str | os.PathLike[str] | bytes,
    item: Item | None = None,
    *,
    mmap_mode: MmapMode | None = None,
) -> Any:
    """Load a ``.npy`` payload (pickles are refused).

    Args:
        source: The local file (or its bytes; then ``mmap_mode`` must be None).
        item: The manifest item (unused; for a uniform signature).
        mmap_mode: Memory-map the file (``"r"``, ``"c"``, ...) instead of reading it.
    """
    del item
    if isinstance(source, bytes):
        if mmap_mode is not None:
            raise ValueError("mmap_mode needs a local file, not bytes")
        return np.load(io.BytesIO(source), allow_pickle=False)
    return np.load(source, mmap_mode=mmap_mode, allow_pickle=False)
