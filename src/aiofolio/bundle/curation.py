"""Curation and lineage as manifest operations: plans and queries; no I/O.

Owns the edits of items that keep their payload (:func:`plan_item_edits`, behind ``archive``,
``unarchive`` and ``update_item``), the lineage queries (``get_inputs``, ``get_dependents``,
``get_lineage_graph``), name selection by list or glob (:func:`select_names`), the referenced
tables a snapshot cannot freeze (:func:`mutable_references`) and the manifest of a bundle
copied from another (:func:`copy_manifest`). Semantics follow datafolio 2.3.0: editing a
version some snapshot pins is copy-on-write (the snapshot keeps its descriptor, the working
item gets a new ``version_id`` naming the same payload); an unpinned version is edited in
place. Every plan bumps the revision once.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from aiofolio.bundle.manifest import (
    REFERENCE_ITEM_TYPE,
    Item,
    Manifest,
    isoformat_utc,
    new_manifest,
)
from aiofolio.bundle.writeplan import (
    WritePlan,
    _bumped_metadata,
    _demote,
    _legacy_files,
    _next_version_id,
)
from aiofolio.errors import ArgumentTypeError, ItemNotFoundError

__all__ = [
    "copy_manifest",
    "dependents_of",
    "follow_lineage",
    "inputs_of",
    "is_glob",
    "lineage_graph",
    "mutable_references",
    "plan_archive",
    "plan_item_edits",
    "plan_update_item",
    "select_names",
]

_GLOB_CHARS = frozenset("*?[")

#: An edit of one item: the fields to set and the fields to drop.
Edit = tuple[Mapping[str, Any], Sequence[str]]


def is_glob(pattern: str) -> bool:
    """Whether ``pattern`` uses fnmatch wildcards."""
    return any(ch in _GLOB_CHARS for ch in pattern)


def select_names(manifest: Manifest, name: str | Iterable[str]) -> list[str]:
    """The current item names ``name`` selects: a name, a list of names, or a glob.

    Raises:
        ItemNotFoundError: A plain (non-glob) name has no current item.
        ArgumentTypeError: ``name`` is not a string or a list of strings.
    """
    patterns = [name] if isinstance(name, str) else list(name)
    if not all(isinstance(p, str) for p in patterns):
        raise ArgumentTypeError("item names are strings (a name, a list of names or a glob)")
    chosen: list[str] = []
    for pattern in patterns:
        if is_glob(pattern):
            chosen.extend(n for n in manifest.names() if fnmatch.fnmatchcase(n, pattern))
        else:
            manifest.current(pattern)  # ItemNotFoundError, with close names
            chosen.append(pattern)
    return list(dict.fromkeys(chosen))


def plan_item_edits(
    manifest: Manifest, edits: Mapping[str, Edit], *, now: datetime | None = None
) -> WritePlan:
    """Plan changing the descriptors of current items (never their payloads).

    A pinned version is copy-on-write: the edited copy gets a new ``version_id`` and the old
    descriptor stays as a non-current version the snapshot still resolves.

    Raises:
        ItemNotFoundError: A name has no current item.
    """
    for name in edits:
        manifest.current(name)
    stamp = isoformat_utc(now)
    revision = manifest.revision + 1
    items: list[Item] = []
    kept: list[Item] = []
    reserved: list[str] = []
    current = manifest.current_items()
    for item in manifest.items:
        edit = edits.get(item.name) if "name" in item else None
        if edit is None or current.get(item.name) is not item:
            items.append(item)
            continue
        changes, remove = edit
        if manifest.pinned_by(item):
            backfill = None
            if not item.version_id:
                backfill = _next_version_id(manifest.items, item.name, revision, reserved=reserved)
                reserved.append(backfill)
            kept.append(_demote(item, backfill))
            new_vid = _next_version_id(manifest.items, item.name, revision, reserved=reserved)
            reserved.append(new_vid)
            items.append(item.evolve({**changes, "version_id": new_vid}, remove=remove))
        else:
            items.append(item.evolve(changes, remove=remove))
    new = manifest.evolve(
        revision=revision, metadata=_bumped_metadata(manifest, stamp), items=[*items, *kept]
    )
    return WritePlan(
        base_revision=manifest.revision, manifest=new, legacy_files=_legacy_files(manifest)
    )


def plan_archive(
    manifest: Manifest, names: Sequence[str], *, archived: bool, now: datetime | None = None
) -> WritePlan | None:
    """Plan (un)archiving ``names``; None when every one is already so."""
    edits: dict[str, Edit] = {}
    for name in names:
        item = manifest.current(name)
        if item.archived == archived:
            continue
        edits[name] = ({"archived": True}, ()) if archived else ({}, ("archived",))
    if not edits:
        return None
    return plan_item_edits(manifest, edits, now=now)


def plan_update_item(
    manifest: Manifest,
    name: str,
    *,
    description: str | None = None,
    inputs: Sequence[str] | None = None,
    now: datetime | None = None,
) -> WritePlan:
    """Plan ``update_item``: None leaves a field, ``""`` / ``[]`` removes it."""
    manifest.current(name)
    changes: dict[str, Any] = {}
    remove: list[str] = []
    if description is not None:
        if description == "":
            remove.append("description")
        else:
            changes["description"] = description
    if inputs is not None:
        if isinstance(inputs, str) or not all(isinstance(i, str) for i in inputs):
            raise ArgumentTypeError("inputs must be a list of item names (strings)")
        if inputs:
            changes["inputs"] = list(inputs)
        else:
            remove.append("inputs")
    return plan_item_edits(manifest, {name: (changes, remove)}, now=now)


# -- lineage -------------------------------------------------------------------------------------


def _require(items: Mapping[str, Item], name: str) -> Item:
    item = items.get(name)
    if item is None:
        raise ItemNotFoundError(f"Item {name!r} not found in DataFolio")
    return item


def inputs_of(items: Mapping[str, Item], name: str) -> list[str]:
    """The recorded inputs of item ``name`` among ``items`` (by name: the current items, or
    a snapshot's); ``ItemNotFoundError`` if there is none."""
    return list(_require(items, name).inputs)


def dependents_of(items: Mapping[str, Item], name: str) -> list[str]:
    """The items among ``items`` that list ``name`` among their inputs."""
    _require(items, name)
    return [n for n, item in items.items() if name in item.inputs]


def lineage_graph(items: Mapping[str, Item]) -> dict[str, list[str]]:
    """Every item's inputs, by name."""
    return {n: list(item.inputs) for n, item in items.items()}


def follow_lineage(manifest: Manifest, names: Iterable[str]) -> list[str]:
    """``names`` and, transitively, the current items they derive from (inputs first seen
    after the names that need them; inputs no longer in the bundle are skipped)."""
    out: list[str] = []
    todo = list(names)
    while todo:
        name = todo.pop(0)
        if name in out or name not in manifest:
            continue
        out.append(name)
        todo.extend(manifest.current(name).inputs)
    return out


def mutable_references(manifest: Manifest) -> list[str]:
    """Names of the current referenced tables (their bytes are not the bundle's)."""
    return [n for n, i in manifest.current_items().items() if i.item_type == REFERENCE_ITEM_TYPE]


# -- copies --------------------------------------------------------------------------------------


def copy_manifest(
    manifest: Manifest,
    names: Sequence[str],
    *,
    metadata_updates: Mapping[str, Any] | None = None,
    source: str = "",
    version: str | None = None,
    now: datetime | None = None,
    keep: Callable[[Item], bool] | None = None,
) -> Manifest:
    """The manifest of a new bundle holding the current versions of ``names``.

    Descriptors are kept as they are (same ``version_id`` and file names: the payloads are
    copied unchanged); no snapshots, no old versions. The metadata is the source's, as
    datafolio 2.3.0 copies it (its ``created_at`` and ``_datafolio`` kept), plus
    ``metadata_updates``; ``updated_at`` is the copy's time unless an update sets it.
    """
    items = [manifest.current(n) for n in names]
    if keep is not None:
        items = [i for i in items if keep(i)]
    user = {k: v for k, v in manifest.metadata.items() if k != "updated_at"}
    user.update(dict(metadata_updates or {}))
    fresh = new_manifest(user, now=now, version=version, source=source)
    return fresh.evolve(revision=1, items=items)


def require_items(manifest: Manifest, names: Iterable[str]) -> None:
    """Raise ``ItemNotFoundError`` for the first name without a current item."""
    for name in names:
        if name not in manifest:
            raise ItemNotFoundError(manifest._not_found(name))
