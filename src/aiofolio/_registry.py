"""The per-user folio registry datafolio keeps, shared file and all: aliases and recents.

Owns reading and editing ``registry.json`` in ``$DATAFOLIO_HOME`` (default ``~/.datafolio``),
the file datafolio 2.3.0 uses, in its format (``{"version": 1, "aliases": {name: {"path",
"created_at"}}, "recent": [{"path", "last_accessed"}]}``): every call reads it fresh; writes
hold datafolio's lock file (``registry.json.lock``, the same ``filelock``) and replace the
file atomically, so aiofolio and datafolio processes see each other's aliases. Like
datafolio's Python API, aiofolio never records recents; it reads them.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from aiofolio.backends import scheme_of
from aiofolio.bundle import validate_snapshot_name
from aiofolio.errors import CacheLockTimeout, InvalidArgumentError, ItemNotFoundError

__all__ = [
    "aliases",
    "check_alias",
    "get_alias",
    "normalize_folio_path",
    "recent",
    "registry_home",
    "remove_alias",
    "set_alias",
]

REGISTRY_FILE = "registry.json"
REGISTRY_VERSION = 1
LOCK_TIMEOUT = 10.0


def registry_home() -> Path:
    """``$DATAFOLIO_HOME``, else ``~/.datafolio``."""
    env = os.environ.get("DATAFOLIO_HOME")
    return Path(env).expanduser() if env else Path.home() / ".datafolio"


def is_cloud(path: str) -> bool:
    return scheme_of(path) != "file"


def normalize_folio_path(path: str | os.PathLike[str]) -> str:
    """Local paths absolute and resolved; URLs as given without a trailing slash."""
    text = os.fspath(path)
    if text.startswith("file://"):
        text = text[len("file://") :]
    if is_cloud(text):
        return text.rstrip("/")
    return str(Path(text).expanduser().resolve())


def validate_alias(alias: str) -> None:
    """Aliases follow the snapshot-name rules (letters, digits, ``.``, ``_``, ``-``)."""
    try:
        validate_snapshot_name(alias)
    except (ValueError, TypeError) as exc:
        raise InvalidArgumentError(str(exc).replace("Snapshot name", "Alias")) from None


def _read() -> dict[str, Any]:
    path = registry_home() / REGISTRY_FILE
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data.setdefault("version", REGISTRY_VERSION)
    if not isinstance(data.get("aliases"), dict):
        data["aliases"] = {}
    if not isinstance(data.get("recent"), list):
        data["recent"] = []
    return data


def _write(data: dict[str, Any]) -> None:
    home = registry_home()
    fd, tmp = tempfile.mkstemp(dir=home, prefix=".registry-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(json.dumps(data, indent=2).encode())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, home / REGISTRY_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _lock() -> FileLock:
    home = registry_home()
    home.mkdir(parents=True, exist_ok=True)
    return FileLock(str(home / f"{REGISTRY_FILE}.lock"), timeout=LOCK_TIMEOUT)


def _edit(change: Any) -> Any:
    try:
        with _lock():
            data = _read()
            result = change(data)
            _write(data)
            return result
    except Timeout as exc:
        raise CacheLockTimeout(f"the folio registry in {registry_home()} is locked") from exc


def set_alias(alias: str, path: str | os.PathLike[str], overwrite: bool = False) -> str:
    """Register ``alias`` for the folio at ``path``; returns the normalized path.

    Raises:
        InvalidArgumentError: A bad alias, or one bound elsewhere without ``overwrite``
            (a ``ValueError``, as datafolio's).
    """
    validate_alias(alias)
    target = normalize_folio_path(path)

    def change(data: dict[str, Any]) -> str:
        entry = data["aliases"].get(alias)
        if isinstance(entry, dict) and entry.get("path") != target and not overwrite:
            raise InvalidArgumentError(
                f"Alias {alias!r} already points to {entry.get('path')}. Pass overwrite=True "
                "to rebind it."
            )
        if not (isinstance(entry, dict) and entry.get("path") == target):
            data["aliases"][alias] = {
                "path": target,
                "created_at": datetime.now(timezone.utc).isoformat(),
            }
        return target

    result: str = _edit(change)
    return result


def check_alias(alias: str, path: str | os.PathLike[str]) -> None:
    """Raise :class:`InvalidArgumentError` if ``alias`` points to a folio other than ``path``."""
    current = aliases().get(alias)
    target = normalize_folio_path(path)
    if current is not None and current != target:
        raise InvalidArgumentError(
            f"Alias {alias!r} already points to {current}. Pass overwrite=True to rebind it."
        )


def get_alias(alias: str) -> str:
    """The path registered as ``alias`` (``ItemNotFoundError``, a ``KeyError``, if none)."""
    known = aliases()
    if alias not in known:
        names = ", ".join(sorted(known)) or "none"
        raise ItemNotFoundError(f"No folio registered as {alias!r}. Known aliases: {names}")
    return known[alias]


def remove_alias(alias: str) -> None:
    """Forget ``alias`` (``ItemNotFoundError``, a ``KeyError``, if it is not registered)."""

    def change(data: dict[str, Any]) -> None:
        if alias not in data["aliases"]:
            raise ItemNotFoundError(f"No folio registered as {alias!r}")
        del data["aliases"][alias]

    _edit(change)


def aliases() -> dict[str, str]:
    """Every alias and its path, sorted by alias."""
    raw = _read()["aliases"]
    return {
        name: str(entry["path"])
        for name, entry in sorted(raw.items())
        if isinstance(entry, dict) and "path" in entry
    }


def recent() -> list[dict[str, str]]:
    """Recently used folios (as datafolio's CLI records them), most recent first."""
    return [
        {"path": str(e["path"]), "last_accessed": str(e.get("last_accessed", ""))}
        for e in _read()["recent"]
        if isinstance(e, dict) and "path" in e
    ]
