"""Name rules of DataFolio bundles, and the guard against hostile manifest paths.

This module owns two checks:

* **Write side** (:func:`validate_item_name`, :func:`validate_snapshot_name`): the
  grammar ``datafolio`` 2.3.0 enforces (``datafolio.utils.validate_item_name``) —
  '/'-separated segments matching ``[A-Za-z0-9][A-Za-z0-9._-]*``, each at most 200
  characters, no ``.``/``..``/empty segment, no ``@``, at most 255 characters in
  all. A bad name raises :class:`ValueError` (a non-string :class:`TypeError`),
  as datafolio does. Unlike datafolio (``re.match`` with ``$``), a trailing
  newline is rejected too.
* **Read side** (:func:`check_manifest_name`, :func:`safe_relative_path`): a
  manifest is untrusted input. A ``name`` or ``filename`` that could leave its
  folder (absolute path, ``..``, ``.``, empty segment, backslash, drive letter or
  other ``:``, control character) raises :class:`~aiofolio.errors.ManifestError`.
  Reading is lenient about the grammar (older bundles may predate it) but never
  yields a path outside the bundle.
"""

from __future__ import annotations

import re

from aiofolio.errors import ManifestError

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_SEGMENT_LENGTH",
    "check_manifest_name",
    "safe_relative_path",
    "validate_item_name",
    "validate_snapshot_name",
]

#: Longest item name datafolio accepts.
MAX_NAME_LENGTH = 255
#: Longest '/'-separated segment (payload names append ``--r<rev><ext>``).
MAX_SEGMENT_LENGTH = 200
#: Longest snapshot name datafolio accepts.
MAX_SNAPSHOT_NAME_LENGTH = 100

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SNAPSHOT = re.compile(r"[A-Za-z0-9._-]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_item_name(name: object) -> None:
    """Check a new item name against datafolio's grammar.

    Args:
        name: The proposed item name; may be namespaced with '/' (``"a/b"``),
            which becomes a subfolder of the payload directory.

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If the name breaks the grammar; the message says which rule.
    """
    if not isinstance(name, str):
        raise TypeError(f"Item name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("Item name cannot be empty")
    if "@" in name:
        raise ValueError(f"Item name {name!r} cannot contain '@' (reserved for snapshots)")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"Item name {name!r} is too long (max {MAX_NAME_LENGTH} characters)")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(
                f"Invalid item name {name!r}: empty, '.', or '..' path segments are not allowed"
            )
        if len(segment) > MAX_SEGMENT_LENGTH:
            raise ValueError(
                f"Invalid item name {name!r}: segment {segment[:32]!r}... is longer than "
                f"{MAX_SEGMENT_LENGTH} characters (payload names append a version suffix "
                f"and an extension)"
            )
        if not _SEGMENT.fullmatch(segment):
            raise ValueError(
                f"Invalid item name {name!r}: segment {segment!r} must start with a letter "
                f"or digit and contain only letters, digits, '.', '_', and '-'"
            )


def validate_snapshot_name(name: object) -> None:
    """Check a new snapshot name (datafolio: ``[A-Za-z0-9._-]+``, at most 100 characters).

    Raises:
        TypeError: If ``name`` is not a string.
        ValueError: If the name is empty, too long or has other characters.
    """
    if not isinstance(name, str):
        raise TypeError(f"Snapshot name must be a string, got {type(name).__name__}")
    if not name:
        raise ValueError("Snapshot name cannot be empty")
    if not _SNAPSHOT.fullmatch(name):
        raise ValueError(
            f"Snapshot name {name!r} can only contain letters, digits, dots, underscores, "
            f"and hyphens"
        )
    if len(name) > MAX_SNAPSHOT_NAME_LENGTH:
        raise ValueError(
            f"Snapshot name {name!r} is too long (max {MAX_SNAPSHOT_NAME_LENGTH} characters)"
        )


def _path_problem(path: str) -> str | None:
    """Why ``path`` is not a safe relative POSIX path, or None if it is."""
    if not path:
        return "it is empty"
    if "\\" in path:
        return "it contains a backslash"
    if _CONTROL.search(path):
        return "it contains a control character"
    if path.startswith("/"):
        return "it is absolute"
    if ":" in path:
        return "it contains ':' (a drive letter or a URL scheme)"
    for segment in path.split("/"):
        if segment == "":
            return "it has an empty path segment"
        if segment in (".", ".."):
            return f"it has a {segment!r} path segment"
    return None


def safe_relative_path(path: object, *, what: str, source: str) -> str:
    """Return ``path`` if it is a relative POSIX path that stays inside its folder.

    Args:
        path: The value read from a manifest (e.g. an item's ``filename``).
        what: What the value is, for the message (``"filename of item 'x'"``).
        source: Where the manifest came from, for the message.

    Raises:
        ManifestError: If ``path`` is not a string or could escape its folder.
    """
    if not isinstance(path, str):
        raise ManifestError(
            f"{source}: {what} must be a string, got {type(path).__name__}; "
            f"the manifest is malformed"
        )
    problem = _path_problem(path)
    if problem is not None:
        raise ManifestError(
            f"{source}: refusing {what} {path!r}: {problem}, so it could point outside the bundle"
        )
    return path


def check_manifest_name(name: object, *, source: str) -> str:
    """Return an item ``name`` read from a manifest if it is safe to build paths from.

    The datafolio grammar is not enforced here (older bundles may predate it); only
    what could escape the bundle is refused.

    Raises:
        ManifestError: If the name is not a string or could escape its folder.
    """
    return safe_relative_path(name, what="item name", source=source)
