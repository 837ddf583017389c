"""JSON text in the layout datafolio writes: two-space indent, UTF-8, no trailing newline.

This module owns the one JSON encoder the bundle layer uses for manifests and JSON
payloads. datafolio writes with ``orjson.dumps(..., OPT_INDENT_2 | OPT_SERIALIZE_NUMPY)``;
msgspec's indented output is the same text except that a float exponent is spelled
``1e20`` instead of ``1e+20`` (the value parses identically). Non-finite floats
become ``null``, as with orjson. numpy scalars and arrays are encoded as their
Python equivalents (``OPT_SERIALIZE_NUMPY``).
"""

from __future__ import annotations

import sys
from typing import Any

import msgspec

__all__ = ["decode", "encode_indented"]


def _enc_hook(obj: Any) -> Any:
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    raise NotImplementedError(f"Objects of type {type(obj).__name__} are not JSON serializable")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_indented(obj: Any) -> bytes:
    """Encode ``obj`` as two-space-indented UTF-8 JSON with no trailing newline.

    Raises:
        TypeError: If ``obj`` holds a value JSON cannot represent.
    """
    try:
        raw = _ENCODER.encode(obj)
    except (msgspec.EncodeError, NotImplementedError) as exc:
        raise TypeError(f"not JSON-serializable: {exc}") from exc
    return msgspec.json.format(raw, indent=2)


def decode(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON text to Python objects (raises :class:`msgspec.DecodeError`)."""
    return msgspec.json.decode(data)
