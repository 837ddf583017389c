"""The ``json_data`` and ``timestamp`` handlers: ``.json`` payloads in ``artifacts/``.

This module owns how Python values become JSON payloads the way ``datafolio`` 2.3.0
stores them (two-space indent, no trailing newline; tuples, ranges and sets become
lists, sets sorted when possible; non-string keys become strings; numpy values their
Python equivalents; nested datetimes, UUIDs and enums their ISO/str/value forms;
``nan``/``inf`` become ``null``), and how timestamps are stored as
``{"iso_string": "<UTC ISO 8601>"}``. Sets and non-string keys change what reads
back, so they draw a :class:`UserWarning`, as in datafolio.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import os
import sys
import uuid
import warnings
from pathlib import Path
from typing import Any

from aiofolio.bundle import _jsonfmt
from aiofolio.bundle.hashing import write_hashed
from aiofolio.bundle.manifest import Item, ItemFields

__all__ = [
    "deserialize_json",
    "deserialize_timestamp",
    "serialize_json",
    "serialize_timestamp",
    "to_json_compatible",
]

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1


def _key(key: Any) -> str:
    """The string orjson (``OPT_NON_STR_KEYS``) writes for a non-str dict key."""
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, int | float):
        return _num(key)
    if isinstance(key, dt.datetime | dt.date | dt.time):
        return key.isoformat()
    if isinstance(key, uuid.UUID):
        return str(key)
    if isinstance(key, enum.Enum):
        return _key(key.value)
    raise TypeError(f"dict key {key!r} ({type(key).__name__}) cannot be stored as JSON")


def _num(value: int | float) -> str:
    return _jsonfmt.encode_indented(value).decode()


def to_json_compatible(obj: Any) -> tuple[Any, list[str]]:
    """Normalize ``obj`` into plain JSON values.

    Returns:
        ``(converted, notes)``; ``notes`` lists the lossy conversions made
        (``"set"``, ``"non-str dict keys"``).

    Raises:
        TypeError: For a value JSON cannot hold (bytes, arbitrary objects, an int
            outside the 64-bit range, ...).
        ValueError: If two dict keys collide once turned into strings.
    """
    notes: set[str] = set()
    np = sys.modules.get("numpy")

    def convert(value: Any) -> Any:
        if value is None or isinstance(value, str | bool):
            return value
        if isinstance(value, int):
            if not _INT_MIN <= value <= _INT_MAX:
                raise TypeError(f"integer {value} is outside the 64-bit range JSON stores")
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else None
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    notes.add("non-str dict keys")
                    key = _key(key)
                if key in out:
                    raise ValueError(
                        f"dict keys collide as JSON key {key!r}; rename one of them first"
                    )
                out[key] = convert(item)
            return out
        if isinstance(value, set | frozenset):
            notes.add("set")
            items = [convert(v) for v in value]
            try:
                return sorted(items)
            except TypeError:
                return items
        if isinstance(value, list | tuple | range):
            return [convert(v) for v in value]
        if np is not None:
            if isinstance(value, np.generic):
                return convert(value.item())
            if isinstance(value, np.ndarray):
                return convert(value.tolist())
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return convert(dataclasses.asdict(value))
        if isinstance(value, dt.datetime | dt.date | dt.time):
            return value.isoformat()
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, enum.Enum):
            return convert(value.value)
        raise TypeError(f"{type(value).__name__} is not JSON-serializable")

    return convert(obj), sorted(notes)


def serialize_json(
    obj: Any, dest_path: str | os.PathLike[str], *, data_type: str | None = None
) -> ItemFields:
    """Write ``obj`` as a JSON payload to ``dest_path``, hashing while writing.

    Args:
        obj: A dict, list, tuple, set, scalar (str/int/float/bool/None) or dataclass.
        dest_path: Local file to (over)write, mode 0644.
        data_type: The recorded ``data_type``; default the stored value's type name
            (a dataclass records its qualified class name).

    Returns:
        ``json_data`` fields: ``checksum``, ``data_type`` and ``size_bytes``.

    Raises:
        TypeError: If ``obj`` (or something inside it) is not JSON-serializable.
    """
    if data_type is None and dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        data_type = type(obj).__qualname__
    converted, notes = to_json_compatible(obj)
    if notes:
        effects = {
            "set": "sets are stored as lists (sorted when possible)",
            "non-str dict keys": "non-str dict keys are stored as strings",
        }
        warnings.warn(
            f"{'; '.join(effects[n] for n in notes)}. The item will load back in that form.",
            UserWarning,
            stacklevel=3,
        )
    payload = _jsonfmt.encode_indented(converted)
    checksum, size = write_hashed(dest_path, lambda w: w.write(payload))
    fields = {
        "checksum": checksum,
        "data_type": data_type or type(converted).__name__,
        "size_bytes": size,
    }
    return ItemFields("json_data", fields, ".json")


def _read_bytes(source: str | os.PathLike[str] | bytes) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def deserialize_json(source: str | os.PathLike[str] | bytes, item: Item | None = None) -> Any:
    """Load a JSON payload (dict, list or scalar)."""
    del item
    return _jsonfmt.decode(_read_bytes(source))


def serialize_timestamp(
    value: dt.datetime | int | float, dest_path: str | os.PathLike[str]
) -> ItemFields:
    """Write a timestamp payload ``{"iso_string": ...}`` (UTC) to ``dest_path``.

    Args:
        value: A timezone-aware datetime, or Unix seconds.

    Returns:
        ``timestamp`` fields: ``iso_string``, ``unix_timestamp``, and (which datafolio
        omits) ``checksum`` and ``size_bytes``.

    Raises:
        ValueError: For a naive datetime.
        TypeError: For anything else.
    """
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "Naive datetime objects are not allowed. Use a timezone-aware datetime, "
                "e.g. datetime.now(timezone.utc) or dt.replace(tzinfo=timezone.utc)"
            )
        to_py = getattr(value, "to_pydatetime", None)  # pandas.Timestamp
        moment: dt.datetime = to_py() if callable(to_py) else value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        moment = dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    else:
        raise TypeError(
            f"Expected datetime or Unix timestamp (int/float), got {type(value).__name__}"
        )
    utc = moment.astimezone(dt.timezone.utc)
    iso = utc.isoformat()
    payload = _jsonfmt.encode_indented({"iso_string": iso})
    checksum, size = write_hashed(dest_path, lambda w: w.write(payload))
    fields = {
        "iso_string": iso,
        "unix_timestamp": utc.timestamp(),
        "checksum": checksum,
        "size_bytes": size,
    }
    return ItemFields("timestamp", fields, ".json")


def deserialize_timestamp(
    source: str | os.PathLike[str] | bytes, item: Item | None = None, *, as_unix: bool = False
) -> dt.datetime | float:
    """Load a timestamp payload as a UTC-aware datetime (or Unix seconds)."""
    del item
    data = _jsonfmt.decode(_read_bytes(source))
    moment = dt.datetime.fromisoformat(data["iso_string"])
    return moment.timestamp() if as_unix else moment
