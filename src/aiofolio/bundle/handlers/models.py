"""The ``model`` handler: joblib (``.joblib``) or skops (``.skops``) payloads in ``models/``.

This module owns how model objects are stored and loaded as ``datafolio`` 2.3.0 does:
``joblib.dump`` by default, ``skops.io.dumps`` with ``custom=True``. Loading a
joblib file runs pickle, so only load models from bundles you trust; skops refuses
types outside its trusted set unless ``trusted=True`` (or a list of type names) is
given. joblib and skops are optional here (datafolio depends on both): a missing
one raises :class:`ImportError` naming the package to install.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

from aiofolio.bundle.hashing import write_hashed
from aiofolio.bundle.manifest import Item, ItemFields
from aiofolio.errors import ManifestError

__all__ = ["deserialize_model", "serialize_model"]


def _joblib() -> Any:
    try:
        import joblib  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "joblib is required to store or load models in the joblib format: pip install joblib"
        ) from exc
    return joblib


def _skops_io() -> Any:
    try:
        import skops.io as sio  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "skops is required for models stored with custom=True (the .skops format): "
            "pip install skops"
        ) from exc
    return sio


def _sklearn_version() -> str | None:
    try:
        return dist_version("scikit-learn")
    except PackageNotFoundError:
        return None


def serialize_model(
    model: Any, dest_path: str | os.PathLike[str], *, custom: bool = False
) -> ItemFields:
    """Write ``model`` to ``dest_path`` with joblib (or skops if ``custom``), hashing it.

    Returns:
        ``model`` fields: ``checksum``, ``model_type``, ``serialization_format``,
        ``sklearn_version`` (when scikit-learn is installed) and ``size_bytes``; the
        extension is ``.joblib`` or ``.skops``.

    Raises:
        ImportError: If joblib (or skops) is not installed.
    """
    if custom:
        sio = _skops_io()
        data: bytes = sio.dumps(model)
        checksum, size = write_hashed(dest_path, lambda w: w.write(data))
    else:
        joblib = _joblib()
        checksum, size = write_hashed(dest_path, lambda w: joblib.dump(model, w))
    fields: dict[str, Any] = {
        "checksum": checksum,
        "model_type": type(model).__name__,
        "serialization_format": "skops" if custom else "joblib",
    }
    sklearn_version = _sklearn_version()
    if sklearn_version:
        fields["sklearn_version"] = sklearn_version
    fields["size_bytes"] = size
    return ItemFields("model", fields, ".skops" if custom else ".joblib")


def deserialize_model(
    source: str | os.PathLike[str] | bytes,
    item: Item,
    *,
    trusted: bool | Sequence[str] = False,
) -> Any:
    """Load a model payload.

    Args:
        source: The local file (or its bytes).
        item: The manifest item (its ``serialization_format``, or for old items the
            file extension, picks the format).
        trusted: skops only: True trusts every type in the file, a list trusts those
            type names, False (default) refuses non-standard types.

    Raises:
        ValueError: A skops file holds untrusted types and ``trusted`` is False.
        ManifestError: The item records an unknown ``serialization_format``.
        ImportError: joblib or skops is missing.
    """
    fmt = item.get("serialization_format")
    if fmt is None:
        fmt = "skops" if str(item.get("filename", "")).endswith(".skops") else "joblib"
    if fmt == "joblib":
        joblib = _joblib()
        if isinstance(source, bytes):
            import io

            return joblib.load(io.BytesIO(source))
        return joblib.load(os.fspath(source))
    if fmt == "skops":
        sio = _skops_io()
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        untrusted: list[str] = sio.get_untrusted_types(data=data)
        if not untrusted:
            return sio.loads(data, trusted=[])
        if trusted is True:
            return sio.loads(data, trusted=untrusted)
        if trusted is not False and not isinstance(trusted, str | bytes):
            return sio.loads(data, trusted=list(trusted))
        raise ValueError(
            f"The skops file of model {item.get('name')!r} contains non-standard types "
            f"that are not trusted by default: {untrusted}. If you trust the bundle's "
            f"author, load with trusted=True."
        )
    raise ManifestError(
        f"Model {item.get('name')!r} records unknown serialization_format {fmt!r} "
        f"(expected 'joblib' or 'skops')"
    )
