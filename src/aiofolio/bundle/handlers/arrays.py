"""The ``numpy_array`` handler: ``.npy`` payloads in ``artifacts/``.

This module owns writing an ndarray with ``np.save`` (as ``datafolio`` 2.3.0 does;
the bytes are identical) while hashing it, and reading it back, memory-mapped on
request. Masked and object-dtype arrays are refused, as in datafolio.
"""

from __future__ import annotations

import functools
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
        return _small_npy(source)
    if mmap_mode is None:
        try:
            small = os.path.getsize(source) <= _SMALL_NPY
        except OSError:
            small = False
        if small:
            with open(source, "rb") as fh:
                return _small_npy(fh.read())
    return np.load(source, mmap_mode=mmap_mode, allow_pickle=False)


_SMALL_NPY = 256 * 1024
"""A ``.npy`` up to this size is read whole and parsed from memory (hits of small arrays)."""


def _small_npy(data: bytes) -> Any:
    """An array from ``.npy`` bytes, its header parsed once per distinct header.

    ``np.load`` parses the header with ``ast.literal_eval`` on every call: most of the cost of
    reading a 1 KiB array. Equal header bytes give equal (dtype, shape, order), so the parse is
    cached by them; anything unusual falls back to ``np.load``.
    """
    if len(data) >= 10 and data[:6] == b"\x93NUMPY" and data[6] in (1, 2, 3):
        width = 2 if data[6] == 1 else 4
        start = 8 + width
        length = int.from_bytes(data[8:start], "little")
        header = data[start : start + length]
        parsed = _npy_header(header)
        if parsed is not None:
            dtype, shape, fortran = parsed
            count = 1
            for dim in shape:
                count *= dim
            offset = start + length
            if len(data) - offset == count * dtype.itemsize:
                flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
                order: Literal["F", "C"] = "F" if fortran else "C"
                return flat.reshape(shape, order=order).copy(order=order)
    return np.load(io.BytesIO(data), allow_pickle=False)


@functools.lru_cache(maxsize=256)
def _npy_header(header: bytes) -> tuple[np.dtype[Any], tuple[int, ...], bool] | None:
    import ast

    try:
        meta = ast.literal_eval(header.decode("latin1"))
        dtype = np.dtype(meta["descr"])
        shape = tuple(int(d) for d in meta["shape"])
        fortran = bool(meta["fortran_order"])
    except (ValueError, SyntaxError, KeyError, TypeError):
        return None
    if dtype.hasobject:
        return None  # pickled objects: refused by np.load(allow_pickle=False)
    return dtype, shape, fortran
