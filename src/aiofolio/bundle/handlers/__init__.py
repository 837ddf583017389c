"""Item-type handlers: objects to local payload files and back, with type dispatch.

This package owns :func:`detect_item_type` (what ``add()`` stores an object as),
:func:`serialize` (write a payload to a LOCAL temp path, computing MD5 and size in
the same pass, and return the item's fields) and :func:`deserialize` (read a local
payload back into an object), plus :func:`read_reference` for external tables. It
never touches the network: the caller uploads what was written and downloads what
is read.

Dispatch of :func:`detect_item_type`, in order (as in ``datafolio`` 2.3.0):

* pandas/polars DataFrame or Series, polars LazyFrame → ``included_table``
* numpy ndarray, numeric or datetime pandas Index → ``numpy_array``
* scikit-learn estimator (only if sklearn is already imported) → ``model``
* ``datetime`` (timezone-aware) → ``timestamp``
* dict, list, tuple, range, set, frozenset, str, int, float, bool, None, numpy
  scalar, dataclass instance, other pandas Index → ``json_data``

Files (``item_type="artifact"``), arbitrary models (``item_type="model"``) and
references (:func:`reference_fields`) are explicit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sys
from collections.abc import Callable
from typing import Any

from aiofolio.bundle.handlers.arrays import deserialize_array, serialize_array
from aiofolio.bundle.handlers.artifacts import deserialize_artifact, serialize_artifact
from aiofolio.bundle.handlers.jsondata import (
    deserialize_json,
    deserialize_timestamp,
    serialize_json,
    serialize_timestamp,
    to_json_compatible,
)
from aiofolio.bundle.handlers.models import deserialize_model, serialize_model
from aiofolio.bundle.handlers.tables import (
    deserialize_reference,
    deserialize_table,
    is_table,
    reference_fields,
    serialize_table,
)
from aiofolio.bundle.manifest import REFERENCE_ITEM_TYPE, Item, ItemFields
from aiofolio.errors import ArgumentTypeError, ManifestError

__all__ = [
    "SUPPORTED_TYPES",
    "deserialize",
    "deserialize_array",
    "deserialize_artifact",
    "deserialize_json",
    "deserialize_model",
    "deserialize_reference",
    "deserialize_table",
    "deserialize_timestamp",
    "detect_item_type",
    "read_reference",
    "reference_fields",
    "serialize",
    "serialize_array",
    "serialize_artifact",
    "serialize_json",
    "serialize_model",
    "serialize_table",
    "serialize_timestamp",
    "to_json_compatible",
]

#: What ``add()`` accepts, for error messages.
SUPPORTED_TYPES = (
    "pandas or polars DataFrame/Series, polars LazyFrame, numpy ndarray, pandas Index, "
    "dict, list, tuple, set, str, int, float, bool, None, numpy scalar, dataclass "
    "instance, timezone-aware datetime, scikit-learn estimator"
)

_JSON_SCALARS = (str, int, float, bool, type(None))
_JSON_CONTAINERS = (dict, list, tuple, range, set, frozenset)

Source = str | os.PathLike[str] | bytes


def _is_sklearn_estimator(obj: object) -> bool:
    base = sys.modules.get("sklearn.base")
    estimator = getattr(base, "BaseEstimator", None)
    return isinstance(estimator, type) and isinstance(obj, estimator)


def _pandas_index_kind(obj: object) -> str | None:
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(obj, pd.Index):
        return str(obj.dtype.kind)
    return None


def detect_item_type(obj: object) -> str:
    """The item type ``add()`` stores ``obj`` as.

    Raises:
        TypeError: For an unsupported object; the message lists what is supported.
    """
    if is_table(obj):
        return "included_table"
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray):
        return "numpy_array"
    kind = _pandas_index_kind(obj)
    if kind is not None:
        return "numpy_array" if kind in "biufcmM" else "json_data"
    if _is_sklearn_estimator(obj):
        return "model"
    if isinstance(obj, dt.datetime):
        return "timestamp"
    if isinstance(obj, _JSON_SCALARS + _JSON_CONTAINERS):
        return "json_data"
    if np is not None and isinstance(obj, np.generic):
        return "json_data"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return "json_data"
    raise TypeError(
        f"Unsupported data type: {type(obj).__name__}. add() accepts {SUPPORTED_TYPES}. "
        f"Store other picklable objects as a model (item_type='model'), files as an "
        f"artifact (item_type='artifact'), and external tables as a reference."
    )


def _reject(item_type: str, opts: dict[str, Any]) -> None:
    if opts:
        raise TypeError(f"Unknown option(s) for item type {item_type!r}: {sorted(opts)}")


def serialize(
    obj: Any,
    dest_path: str | os.PathLike[str],
    *,
    item_type: str | None = None,
    name: str = "item",
    **opts: Any,
) -> ItemFields:
    """Write ``obj`` as a payload to the local file ``dest_path`` and return its fields.

    MD5 and size are computed while writing (one pass) and returned in the fields as
    ``checksum`` and ``size_bytes``.

    Args:
        obj: The object; for ``item_type="artifact"`` the path of the file to copy.
        dest_path: Local temp file to (over)write with mode 0644.
        item_type: Force a type (``"model"`` for any picklable object,
            ``"artifact"`` for a file); default :func:`detect_item_type`.
        name: The item name, for messages.
        **opts: Type options: tables ``preserve_index``; models ``custom``;
            artifacts ``category``; JSON ``data_type``.

    Raises:
        TypeError: Unsupported object or unknown option.
        ValueError: A value the type cannot store (naive datetime, masked array, ...).
    """
    kind = item_type or detect_item_type(obj)
    np = sys.modules.get("numpy")
    if kind == "included_table":
        pd = sys.modules.get("pandas")
        if "preserve_index" in opts and pd is not None and isinstance(obj, pd.Series):
            raise ArgumentTypeError(
                f"preserve_index cannot be passed for a pandas Series (item {name!r}): a "
                "Series keeps its index automatically"
            )
        preserve_index = bool(opts.pop("preserve_index", False))
        _reject(kind, opts)
        return serialize_table(obj, dest_path, preserve_index=preserve_index, name=name)
    if kind == "numpy_array":
        _reject(kind, opts)
        if _pandas_index_kind(obj) is not None:
            obj = obj.to_numpy()
        return serialize_array(obj, dest_path, name=name)
    if kind == "json_data":
        data_type = opts.pop("data_type", None)
        _reject(kind, opts)
        if np is not None and isinstance(obj, np.generic):
            obj = obj.item()
        if _pandas_index_kind(obj) is not None:
            obj = obj.tolist()
        return serialize_json(obj, dest_path, data_type=data_type)
    if kind == "timestamp":
        _reject(kind, opts)
        return serialize_timestamp(obj, dest_path)
    if kind == "model":
        custom = bool(opts.pop("custom", False))
        _reject(kind, opts)
        return serialize_model(obj, dest_path, custom=custom)
    if kind == "artifact":
        category = opts.pop("category", None)
        _reject(kind, opts)
        return serialize_artifact(obj, dest_path, category=category)
    if kind == REFERENCE_ITEM_TYPE:
        raise TypeError("a referenced_table has no payload; use reference_fields()")
    raise TypeError(f"No serializer for item type {kind!r}")


def deserialize(source: Source, item: Item, **opts: Any) -> Any:
    """Read the local payload ``source`` of ``item`` back into an object.

    Args:
        source: The local payload file (bytes also work, except for artifacts and
            memory-mapped arrays). For a ``referenced_table``: a local copy (or the
            bytes) of the external data (see :func:`read_reference`).
        item: The manifest item.
        **opts: Type options: tables ``columns``, ``frame``
            (``"pandas"``/``"polars"``/``"arrow"``); arrays ``mmap_mode``; timestamps
            ``as_unix``; models ``trusted``.

    Returns:
        A DataFrame (or Series), ndarray, JSON value, datetime, model, or for an
        artifact the local path.

    Raises:
        TypeError: An unknown option.
        ManifestError: An unknown item type.
    """
    kind = item.item_type
    if kind in ("included_table", REFERENCE_ITEM_TYPE):
        columns = opts.pop("columns", None)
        frame = opts.pop("frame", "pandas")
        _reject(kind, opts)
        reader = deserialize_table if kind == "included_table" else deserialize_reference
        return reader(source, item, columns=columns, frame=frame)
    if kind == "numpy_array":
        mmap_mode = opts.pop("mmap_mode", None)
        _reject(kind, opts)
        return deserialize_array(source, item, mmap_mode=mmap_mode)
    if kind == "json_data":
        _reject(kind, opts)
        return deserialize_json(source, item)
    if kind == "timestamp":
        as_unix = bool(opts.pop("as_unix", False))
        _reject(kind, opts)
        return deserialize_timestamp(source, item, as_unix=as_unix)
    if kind == "model":
        trusted = opts.pop("trusted", False)
        _reject(kind, opts)
        return deserialize_model(source, item, trusted=trusted)
    if kind == "artifact":
        _reject(kind, opts)
        if isinstance(source, bytes):
            raise TypeError("an artifact is read as a local file path, not bytes")
        return deserialize_artifact(source, item)
    raise ManifestError(f"Item {item.get('name')!r} has unknown item_type {kind!r}")


def read_reference(
    item: Item,
    fetch: Callable[[str], str | os.PathLike[str] | bytes],
    **opts: Any,
) -> Any:
    """Read a ``referenced_table`` through ``fetch``.

    Args:
        item: The reference item.
        fetch: Called with the stored ``item.path``; returns a local path or the
            bytes of the external table. (Old bundles may store a path relative to
            the bundle; ``fetch`` resolves it.)
        **opts: ``columns`` and ``frame``, as for :func:`deserialize`.

    Raises:
        ValueError: If ``item`` is not a reference or has no path.
    """
    if item.item_type != REFERENCE_ITEM_TYPE:
        raise ValueError(f"item {item.get('name')!r} is not a referenced_table")
    path = item.path
    if not path:
        raise ManifestError(f"referenced_table {item.get('name')!r} has no path")
    return deserialize(fetch(path), item, **opts)
