"""The package-level registry helpers datafolio 2.3.0 exports: ``find`` and ``list_folios``.

Owns :func:`find` (items, or metadata keys, matching a glob or regex across the registered
folios: only each folio's manifest is read, folios in parallel, one that cannot be opened is
skipped with a ``UserWarning``) and :func:`list_folios` (aliases, then recents, as a pandas
DataFrame). The registry itself is :mod:`aiofolio._registry`; the alias helpers are
re-exported from it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiofolio import _registry
from aiofolio.errors import InvalidArgumentError

__all__ = ["find", "list_folios", "remove_alias", "set_alias"]

set_alias = _registry.set_alias
remove_alias = _registry.remove_alias

_ITEM_COLUMNS = ["alias", "folio_path", "name", "item_type", "description", "created_at"]
_META_COLUMNS = ["alias", "folio_path", "key", "value"]
_KINDS = {
    "table": ("included_table", "referenced_table"),
    "model": ("model",),
    "artifact": ("artifact",),
    "array": ("numpy_array",),
    "json": ("json_data",),
    "timestamp": ("timestamp",),
}
_TYPES = frozenset(t for kinds in _KINDS.values() for t in kinds)


def list_folios() -> Any:
    """Registered aliases, then recently used folios, as a pandas DataFrame with columns
    ``alias``, ``path``, ``last_accessed``, ``exists`` (None for cloud paths)."""
    import pandas as pd

    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for alias, path in _registry.aliases().items():
        rows.append({"alias": alias, "path": path, "last_accessed": None, "exists": _exists(path)})
        seen.add(path)
    for entry in _registry.recent():
        if entry["path"] in seen:
            continue
        seen.add(entry["path"])
        rows.append(
            {
                "alias": None,
                "path": entry["path"],
                "last_accessed": entry["last_accessed"] or None,
                "exists": _exists(entry["path"]),
            }
        )
    return pd.DataFrame(rows, columns=["alias", "path", "last_accessed", "exists"])


def _exists(path: str) -> bool | None:
    return None if _registry.is_cloud(path) else Path(path).exists()


def _types(item_type: str | list[str] | None) -> set[str] | None:
    if item_type is None:
        return None
    out: set[str] = set()
    for kind in [item_type] if isinstance(item_type, str) else item_type:
        if kind in _KINDS:
            out.update(_KINDS[kind])
        elif kind in _TYPES:
            out.add(kind)
        else:
            raise InvalidArgumentError(
                f"Unknown item_type {kind!r}; use one of {sorted(_KINDS)} or an exact item type"
            )
    return out


def _matcher(pattern: str, *, regex: bool, case_sensitive: bool) -> Callable[[str], bool]:
    if regex:
        try:
            compiled = re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)
        except re.error as exc:
            raise InvalidArgumentError(f"Invalid regex {pattern!r}: {exc}") from None
        return lambda text: compiled.search(text) is not None
    if case_sensitive:
        return lambda text: fnmatch.fnmatchcase(text, pattern)
    lowered = pattern.lower()
    return lambda text: fnmatch.fnmatchcase(text.lower(), lowered)


def _targets(
    folios: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None,
    aliases_only: bool,
    local_only: bool,
) -> list[tuple[str | None, str]]:
    known = _registry.aliases()
    by_path = {path: alias for alias, path in reversed(list(known.items()))}
    if folios is not None:
        wanted = [folios] if isinstance(folios, (str, os.PathLike)) else list(folios)
        targets: list[tuple[str | None, str]] = []
        for one in wanted:
            text = os.fspath(one)
            if text in known:
                targets.append((text, known[text]))
            else:
                path = _registry.normalize_folio_path(text)
                targets.append((by_path.get(path), path))
    else:
        targets = [(alias, path) for alias, path in known.items()]
        if not aliases_only:
            seen = {path for _, path in targets}
            targets += [(None, e["path"]) for e in _registry.recent() if e["path"] not in seen]
    if local_only:
        targets = [(a, p) for a, p in targets if not _registry.is_cloud(p)]
    return targets


def find(
    pattern: str = "*",
    *,
    regex: bool = False,
    item_type: str | list[str] | None = None,
    metadata: bool = False,
    folios: str | os.PathLike[str] | list[str | os.PathLike[str]] | None = None,
    aliases_only: bool = False,
    local_only: bool = False,
    include_archived: bool = False,
    case_sensitive: bool = False,
    descriptions: bool = False,
    max_workers: int = 16,
) -> Any:
    """Items (or metadata keys) matching ``pattern`` across the registered folios.

    Searches every aliased and recent folio unless ``folios`` (aliases or paths) narrows it;
    reads only manifests, ``max_workers`` folios at a time; a folio that cannot be opened is
    skipped with a ``UserWarning``. ``pattern`` is a glob over the whole name (``regex``:
    ``re.search``); with ``metadata`` it matches keys, and ``key=value`` also the value's
    text. ``item_type``: ``table``, ``model``, ``artifact``, ``array``, ``json``,
    ``timestamp``, an exact type, or a list. ``descriptions`` also matches descriptions
    containing the pattern.

    Returns:
        A pandas DataFrame: ``alias``, ``folio_path``, ``name``, ``item_type``,
        ``description``, ``created_at`` (items) or ``alias``, ``folio_path``, ``key``,
        ``value`` (metadata); empty, with those columns, when nothing matches.

    Raises:
        InvalidArgumentError: an unknown ``item_type`` or an invalid regex (a ``ValueError``).
    """
    import pandas as pd

    from aiofolio.folio import DataFolio

    types = None if metadata else _types(item_type)
    key_pattern, value_pattern = pattern, None
    if metadata and "=" in pattern:
        key_pattern, value_pattern = pattern.split("=", 1)
    match = _matcher(key_pattern, regex=regex, case_sensitive=case_sensitive)
    match_value = (
        _matcher(value_pattern, regex=regex, case_sensitive=case_sensitive)
        if value_pattern is not None
        else None
    )
    inner = pattern if regex else f"*{pattern.strip('*')}*"
    match_desc = _matcher(inner, regex=regex, case_sensitive=case_sensitive)
    targets = _targets(folios, aliases_only, local_only)

    def search(target: tuple[str | None, str]) -> list[dict[str, Any]]:
        alias, path = target
        try:
            folio = DataFolio(path, read_only=True, create=False)
        except Exception as exc:
            warnings.warn(f"Skipping folio {alias or path}: {exc}", UserWarning, stacklevel=2)
            return []
        manifest = folio._view()
        rows: list[dict[str, Any]] = []
        if metadata:
            for key, value in manifest.metadata.items():
                if match(key) and (match_value is None or match_value(str(value))):
                    rows.append({"alias": alias, "folio_path": path, "key": key, "value": value})
            return rows
        for name in manifest.names(include_archived=include_archived):
            item = manifest.current(name)
            if types is not None and item.item_type not in types:
                continue
            desc = item.description or ""
            if match(name) or (descriptions and desc and match_desc(desc)):
                rows.append(
                    {
                        "alias": alias,
                        "folio_path": path,
                        "name": name,
                        "item_type": item.item_type,
                        "description": item.description,
                        "created_at": item.created_at,
                    }
                )
        return rows

    with ThreadPoolExecutor(max_workers=max(1, max_workers)) as pool:
        found = [row for rows in pool.map(search, targets) for row in rows]
    return pd.DataFrame(found, columns=_META_COLUMNS if metadata else _ITEM_COLUMNS)
