"""The v2 write protocol as pure functions: what to upload, what to publish, what to delete.

This module owns the planning of every manifest change: adding or overwriting an
item (:func:`plan_add`), deleting items (:func:`plan_delete`), taking a snapshot
(:func:`plan_snapshot`), editing metadata (:func:`plan_metadata`) and publishing a
new bundle (:func:`plan_create`). Each returns a :class:`WritePlan`; none does I/O.
The caller (``folio.py``) then:

1. uploads the payload it serialized to ``plan.payload_path`` (never overwriting an
   existing object: on a name clash, add the path to ``taken`` and plan again);
2. publishes ``plan.manifest.to_json_bytes()`` as ``items.json`` only if the remote
   revision still equals ``plan.base_revision`` (else
   :class:`~aiofolio.errors.ConcurrentWriteError`);
3. after a successful publish, deletes ``plan.obsolete_payloads`` and
   ``plan.legacy_files`` best-effort (an orphan is harmless).

Semantics mirror ``datafolio`` 2.3.0 (``DataFolio._commit_owned_item``,
``_delete_one``, ``create_snapshot``):

* Every commit bumps ``revision`` by one and sets ``metadata.updated_at``.
* A new version gets ``version_id = "<name>--r<new revision>"`` (``-1``, ``-2`` ...
  appended if that id or file is taken) and its payload is stored at
  ``<folder>/<version_id><ext>``.
* Overwriting needs ``overwrite=True`` (else :class:`ValueError`, datafolio's
  message). The replaced version is kept, marked ``is_current: false``, when a
  snapshot pins it; otherwise it leaves the manifest and its payload becomes
  obsolete. ``description=None`` keeps the old description, ``""`` clears it;
  ``inputs`` are not carried over.
* Deleting a pinned item keeps its descriptor as a non-current version and its
  payload; deleting an unpinned one drops both. A payload another descriptor still
  names is never deleted.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aiofolio.bundle.manifest import (
    ITEM_TYPE_DIRS,
    METADATA_FILE,
    REFERENCE_ITEM_TYPE,
    SNAPSHOTS_FILE,
    Item,
    ItemFields,
    Manifest,
    isoformat_utc,
    new_manifest,
    payload_path,
)
from aiofolio.bundle.names import validate_item_name, validate_snapshot_name

__all__ = [
    "WritePlan",
    "plan_add",
    "plan_create",
    "plan_delete",
    "plan_metadata",
    "plan_snapshot",
]

# Fields the plan sets itself; a handler's fields must not carry them.
_RESERVED_FIELDS = frozenset(
    {
        "name",
        "item_type",
        "filename",
        "created_at",
        "version_id",
        "is_current",
        "description",
        "inputs",
    }
)


@dataclass(frozen=True)
class WritePlan:
    """One planned commit.

    Attributes:
        base_revision: The revision the plan was made against; publish only if the
            remote manifest still has it. None for :func:`plan_create` (publish only
            if no ``items.json`` exists yet).
        manifest: The manifest to publish (``revision = base_revision + 1``).
        item: The item version this commit adds, if any.
        payload_path: Where to upload the new payload (relative POSIX path), or None.
        obsolete_payloads: Relative paths no descriptor names any more; delete them
            after publishing.
        legacy_files: ``metadata.json``/``snapshots.json`` of a schema 0/1 bundle, now
            embedded; delete them after publishing.
    """

    base_revision: int | None
    manifest: Manifest
    item: Item | None = None
    payload_path: str | None = None
    obsolete_payloads: tuple[str, ...] = ()
    legacy_files: tuple[str, ...] = ()

    @property
    def revision(self) -> int:
        """The revision this commit creates."""
        return self.manifest.revision

    def manifest_bytes(self) -> bytes:
        """The ``items.json`` bytes to publish."""
        return self.manifest.to_json_bytes()


def _legacy_files(manifest: Manifest) -> tuple[str, ...]:
    return (METADATA_FILE, SNAPSHOTS_FILE) if manifest.schema_version < 2 else ()


def _bumped_metadata(manifest: Manifest, stamp: str) -> dict[str, Any]:
    metadata = copy.deepcopy(dict(manifest.metadata))
    metadata["updated_at"] = stamp
    return metadata


def _next_version_id(
    existing: Iterable[Item],
    name: str,
    revision: int,
    *,
    folder: str | None = None,
    extension: str = "",
    taken: Collection[str] = (),
    reserved: Collection[str] = (),
) -> str:
    """``<name>--r<revision>``, with ``-N`` appended while the id or its file is taken."""
    used = {item.version_id for item in existing} | set(reserved)
    base = f"{name}--r{revision}"
    candidate, counter = base, 1
    while candidate in used or (folder is not None and f"{folder}/{candidate}{extension}" in taken):
        candidate = f"{base}-{counter}"
        counter += 1
    return candidate


def _demote(item: Item, version_id: str | None = None) -> Item:
    """The non-current copy of a pinned version (backfilling a ``version_id``)."""
    changes: dict[str, Any] = {"is_current": False}
    if not item.version_id:
        changes["version_id"] = item.checksum or version_id
    return item.evolve(changes)


def _is_shared(item: Item, items: Sequence[Item]) -> bool:
    """True if another descriptor in ``items`` names the same payload."""
    filename = item.get("filename")
    return any(
        other.get("filename") == filename and other.item_type == item.item_type
        for other in items
        if other is not item
    )


def _obsolete(removed: Iterable[Item], remaining: Sequence[Item]) -> tuple[str, ...]:
    paths: list[str] = []
    for item in removed:
        if not item.owns_payload or item.item_type not in ITEM_TYPE_DIRS:
            continue
        if _is_shared(item, remaining):
            continue
        path = payload_path(item)
        if path not in paths:
            paths.append(path)
    return tuple(paths)


def plan_add(
    manifest: Manifest,
    name: str,
    fields: ItemFields,
    *,
    overwrite: bool = False,
    description: str | None = None,
    inputs: Sequence[str] | None = None,
    now: datetime | None = None,
    taken: Collection[str] = (),
) -> WritePlan:
    """Plan adding (or with ``overwrite=True`` replacing) the item ``name``.

    Args:
        manifest: The manifest as last loaded.
        name: The item name (checked against the name grammar).
        fields: What the handler returned after writing the payload to a temp file
            (for a ``referenced_table``, the reference fields; nothing is uploaded).
        overwrite: Replace an existing item of that name.
        description: The description; on overwrite None keeps the old one and ``""``
            clears it.
        inputs: Lineage: names of the items this one derives from.
        now: The commit time (default: now, UTC).
        taken: Relative payload paths known to exist already (e.g. an upload that
            lost a race); the plan picks another name.

    Returns:
        The plan; ``plan.payload_path`` is None for a reference.

    Raises:
        ValueError: If the name is invalid, or exists and ``overwrite`` is False.
        TypeError: If the name is not a string.
    """
    validate_item_name(name)
    item_type = fields.item_type
    folder = ITEM_TYPE_DIRS.get(item_type)
    if folder is None:
        raise ValueError(f"unknown item_type {item_type!r}; known: {sorted(ITEM_TYPE_DIRS)}")
    clash = _RESERVED_FIELDS & set(fields.fields)
    if clash:
        raise ValueError(f"handler fields must not set {sorted(clash)}")
    if inputs is not None and (
        isinstance(inputs, str) or not all(isinstance(i, str) for i in inputs)
    ):
        raise TypeError("inputs must be a sequence of item names (strings)")

    prior = manifest.get_current(name)
    if prior is not None and not overwrite:
        raise ValueError(
            f"Item '{name}' already exists in this DataFolio. Use overwrite=True to replace it."
        )

    stamp = isoformat_utc(now)
    revision = manifest.revision + 1
    owned = item_type != REFERENCE_ITEM_TYPE
    version_id = _next_version_id(
        manifest.items,
        name,
        revision,
        folder=folder if owned else None,
        extension=fields.extension,
        taken=taken,
    )

    data: dict[str, Any] = {"name": name, "item_type": item_type}
    if owned:
        data["filename"] = f"{version_id}{fields.extension}"
    data.update(copy.deepcopy(dict(fields.fields)))
    data["created_at"] = stamp
    if description is None:
        if prior is not None and prior.description is not None:
            data["description"] = prior.description
    elif description != "":
        data["description"] = description
    if inputs:
        data["inputs"] = list(inputs)
    data["version_id"] = version_id
    data["is_current"] = True
    new_item = Item(data)

    items: list[Item] = []
    demoted: list[Item] = []
    removed: list[Item] = []
    for item in manifest.items:
        if item is prior:
            items.append(new_item)
            if manifest.pinned_by(item):
                backfill = _next_version_id(manifest.items, name, revision, reserved=(version_id,))
                demoted.append(_demote(item, backfill))
            else:
                removed.append(item)
        else:
            items.append(item)
    if prior is None:
        items.append(new_item)
    items.extend(demoted)

    new = manifest.evolve(
        revision=revision, metadata=_bumped_metadata(manifest, stamp), items=items
    )
    return WritePlan(
        base_revision=manifest.revision,
        manifest=new,
        item=new_item,
        payload_path=payload_path(new_item) if owned else None,
        obsolete_payloads=_obsolete(removed, new.items),
        legacy_files=_legacy_files(manifest),
    )


def plan_delete(
    manifest: Manifest, names: str | Iterable[str], *, now: datetime | None = None
) -> WritePlan:
    """Plan deleting one or more items.

    A version some snapshot pins stays in the manifest as ``is_current: false`` and
    keeps its payload; otherwise the descriptor goes and its payload is listed in
    ``obsolete_payloads``.

    Raises:
        ItemNotFoundError: If any name has no current item (nothing is planned).
    """
    wanted = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    targets = {name: manifest.current(name) for name in wanted}
    doomed = {id(item) for item in targets.values()}
    revision = manifest.revision + 1

    items: list[Item] = []
    demoted: list[Item] = []
    removed: list[Item] = []
    reserved: list[str] = []
    for item in manifest.items:
        if id(item) not in doomed:
            items.append(item)
            continue
        if manifest.pinned_by(item):
            backfill = _next_version_id(manifest.items, item.name, revision, reserved=reserved)
            reserved.append(backfill)
            demoted.append(_demote(item, backfill))
        else:
            removed.append(item)
    items.extend(demoted)

    new = manifest.evolve(
        revision=revision,
        metadata=_bumped_metadata(manifest, isoformat_utc(now)),
        items=items,
    )
    return WritePlan(
        base_revision=manifest.revision,
        manifest=new,
        obsolete_payloads=_obsolete(removed, new.items),
        legacy_files=_legacy_files(manifest),
    )


def plan_snapshot(
    manifest: Manifest,
    snapshot: str,
    *,
    description: str | None = None,
    tags: Sequence[str] | None = None,
    extra: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> WritePlan:
    """Plan taking the snapshot ``snapshot`` of the current items.

    The record holds ``name``, ``timestamp``, ``item_versions`` (name → version_id,
    backfilled for old items from their checksum or a fresh id),
    ``metadata_snapshot`` (the metadata before this commit), ``tags``, an optional
    ``description``, then ``extra`` (e.g. ``git``), as datafolio writes it.

    Raises:
        ValueError: If the name is invalid or the snapshot exists.
    """
    validate_snapshot_name(snapshot)
    if snapshot in manifest.snapshots:
        raise ValueError(f"Snapshot '{snapshot}' already exists")
    stamp = isoformat_utc(now)
    revision = manifest.revision + 1

    items: list[Item] = []
    item_versions: dict[str, str] = {}
    reserved: list[str] = []
    current = manifest.current_items()
    for item in manifest.items:
        if item.is_current and current.get(item.name) is item and not item.version_id:
            vid = item.checksum or _next_version_id(
                manifest.items, item.name, revision, reserved=reserved
            )
            reserved.append(vid)
            item = item.evolve({"version_id": vid})
        items.append(item)
        if item.is_current:
            item_versions[item.name] = str(item.version_id)

    record: dict[str, Any] = {
        "name": snapshot,
        "timestamp": stamp,
        "item_versions": item_versions,
        "metadata_snapshot": copy.deepcopy(dict(manifest.metadata)),
        "tags": list(tags) if tags else [],
    }
    if description:
        record["description"] = description
    if extra:
        record.update(copy.deepcopy(dict(extra)))
    snapshots = {k: dict(v) for k, v in manifest.snapshots.items()}
    snapshots[snapshot] = record

    new = manifest.evolve(
        revision=revision,
        metadata=_bumped_metadata(manifest, stamp),
        items=items,
        snapshots=snapshots,
    )
    return WritePlan(
        base_revision=manifest.revision, manifest=new, legacy_files=_legacy_files(manifest)
    )


def plan_metadata(
    manifest: Manifest,
    changes: Mapping[str, Any] | None = None,
    *,
    remove: Iterable[str] = (),
    now: datetime | None = None,
) -> WritePlan:
    """Plan setting (``changes``) and dropping (``remove``) bundle metadata keys.

    ``updated_at`` is always set to the commit time.
    """
    stamp = isoformat_utc(now)
    metadata = copy.deepcopy(dict(manifest.metadata))
    for key in remove:
        metadata.pop(key, None)
    metadata.update(copy.deepcopy(dict(changes or {})))
    metadata["updated_at"] = stamp
    new = manifest.evolve(revision=manifest.revision + 1, metadata=metadata)
    return WritePlan(
        base_revision=manifest.revision, manifest=new, legacy_files=_legacy_files(manifest)
    )


def plan_create(
    metadata: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
    created_by: str = "aiofolio",
    version: str | None = None,
    source: str = "",
) -> WritePlan:
    """Plan publishing a new, empty bundle: revision 1, as datafolio creates one.

    Publish only if no ``items.json`` exists (``base_revision`` is None). The
    ``tables/``, ``models/`` and ``artifacts/`` folders need not exist on object
    stores; datafolio creates them locally.
    """
    fresh = new_manifest(metadata, now=now, created_by=created_by, version=version, source=source)
    return WritePlan(base_revision=None, manifest=fresh.evolve(revision=1))
