"""Snapshots as manifest operations: plans, listings and comparisons; no I/O.

Owns the snapshot side of the DataFolio format beyond taking one (``plan_snapshot`` in
:mod:`aiofolio.bundle.writeplan`): deleting a snapshot (optionally with the versions only it
kept), restoring one as the working state, dropping orphaned versions, and the read-only
views datafolio 2.3.0 returns (``list_snapshots``, ``get_snapshot_info``,
``diff_from_snapshot``, ``compare_snapshots``) and the manifest of a snapshot exported to a
new bundle. Semantics follow datafolio: a version is kept while it is current or a snapshot
pins it; a payload another descriptor still names is never deleted.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
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
    _obsolete,
)
from aiofolio.errors import InvalidArgumentError

__all__ = [
    "INTERNAL_METADATA_KEYS",
    "MUTABLE_REFERENCE_WARNING",
    "compare_snapshots",
    "diff_from_snapshot",
    "export_manifest",
    "latest_snapshot",
    "list_snapshots",
    "orphaned_versions",
    "plan_cleanup_orphans",
    "plan_delete_snapshot",
    "plan_restore_snapshot",
    "snapshot_info",
]

#: Metadata keys a diff against the working state ignores (datafolio's bookkeeping).
INTERNAL_METADATA_KEYS = frozenset({"created_at", "updated_at", "_datafolio"})

MUTABLE_REFERENCE_WARNING = (
    "This snapshot references external tables whose content is not owned by the bundle and "
    "may have changed since the snapshot was taken. Snapshots preserve the reference link, "
    "not the bytes."
)


def _require(manifest: Manifest, snapshot: str) -> Mapping[str, Any]:
    """The snapshot's record (``ItemNotFoundError``, a ``KeyError``, for an unknown name)."""
    return manifest.snapshot(snapshot)


def _versions(record: Mapping[str, Any]) -> dict[str, str]:
    raw = record.get("item_versions") or {}
    return {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}


# -- read-only views ---------------------------------------------------------------------------


def list_snapshots(manifest: Manifest) -> list[dict[str, Any]]:
    """Every snapshot as ``name``, ``timestamp``, ``description``, ``tags``, ``num_items``;
    newest first."""
    out = []
    for name, record in manifest.snapshots.items():
        out.append(
            {
                "name": name,
                "timestamp": record.get("timestamp", ""),
                "description": record.get("description"),
                "tags": list(record.get("tags") or []),
                "num_items": len(_versions(record)),
            }
        )
    out.sort(key=lambda row: str(row["timestamp"]), reverse=True)
    return out


def latest_snapshot(manifest: Manifest) -> str:
    """The name of the newest snapshot.

    Raises:
        InvalidArgumentError: There is none (a ``ValueError``, as datafolio's).
    """
    rows = list_snapshots(manifest)
    if not rows:
        raise InvalidArgumentError("No snapshots exist. Create a snapshot first.")
    return str(rows[0]["name"])


def snapshot_info(manifest: Manifest, snapshot: str) -> dict[str, Any]:
    """A deep copy of the snapshot's record, flagging the referenced tables it contains."""
    info = copy.deepcopy(dict(_require(manifest, snapshot)))
    types = {item.name: item.item_type for item in manifest.items if "name" in item}
    mutable = [name for name in _versions(info) if types.get(name) == REFERENCE_ITEM_TYPE]
    if mutable:
        info["mutable_references"] = mutable
        info["mutable_reference_warning"] = MUTABLE_REFERENCE_WARNING
    return info


def _matches(token: str, item: Item) -> bool:
    return token in (item.get("version_id"), item.get("checksum"))


def diff_from_snapshot(manifest: Manifest, snapshot: str | None = None) -> dict[str, Any]:
    """What changed in the working state since ``snapshot`` (default: the newest one).

    Items are compared by version token; metadata key by key, bookkeeping keys ignored.
    """
    name = latest_snapshot(manifest) if snapshot is None else snapshot
    record = _require(manifest, name)
    pinned = _versions(record)
    current = manifest.current_items()
    shared = set(pinned) & set(current)
    unchanged = sorted(n for n in shared if _matches(pinned[n], current[n]))
    then = record.get("metadata_snapshot") or {}
    now = dict(manifest.metadata)
    changes = {
        key: (then.get(key), now.get(key))
        for key in set(then) | set(now)
        if key not in INTERNAL_METADATA_KEYS and then.get(key) != now.get(key)
    }
    return {
        "snapshot_name": name,
        "added_items": sorted(set(current) - set(pinned)),
        "removed_items": sorted(set(pinned) - set(current)),
        "modified_items": sorted(shared - set(unchanged)),
        "unchanged_items": unchanged,
        "metadata_changes": changes,
    }


def compare_snapshots(manifest: Manifest, snapshot1: str, snapshot2: str) -> dict[str, Any]:
    """The differences from ``snapshot1`` to ``snapshot2`` (items and every metadata key)."""
    first, second = _require(manifest, snapshot1), _require(manifest, snapshot2)
    v1, v2 = _versions(first), _versions(second)
    shared = set(v1) & set(v2)
    m1 = first.get("metadata_snapshot") or {}
    m2 = second.get("metadata_snapshot") or {}
    return {
        "added_items": sorted(set(v2) - set(v1)),
        "removed_items": sorted(set(v1) - set(v2)),
        "modified_items": sorted(n for n in shared if v1[n] != v2[n]),
        "shared_items": sorted(n for n in shared if v1[n] == v2[n]),
        "metadata_changes": {
            key: (m1.get(key), m2.get(key))
            for key in set(m1) | set(m2)
            if m1.get(key) != m2.get(key)
        },
    }


# -- plans ---------------------------------------------------------------------------------------


def orphaned_versions(manifest: Manifest) -> list[Item]:
    """Non-current versions no snapshot pins any more."""
    return [item for item in manifest.items if not item.is_current and not manifest.pinned_by(item)]


def _without(
    manifest: Manifest, drop: list[Item], **changes: Any
) -> tuple[Manifest, tuple[str, ...]]:
    doomed = {id(item) for item in drop}
    items = [item for item in manifest.items if id(item) not in doomed]
    new = manifest.evolve(items=items, **changes)
    return new, _obsolete(drop, new.items)


def plan_cleanup_orphans(manifest: Manifest, *, now: datetime | None = None) -> WritePlan | None:
    """Plan dropping the orphaned versions (their payloads become obsolete); None if none."""
    orphans = orphaned_versions(manifest)
    if not orphans:
        return None
    new, obsolete = _without(
        manifest,
        orphans,
        revision=manifest.revision + 1,
        metadata=_bumped_metadata(manifest, isoformat_utc(now)),
    )
    return WritePlan(
        base_revision=manifest.revision,
        manifest=new,
        obsolete_payloads=obsolete,
        legacy_files=_legacy_files(manifest),
    )


def plan_delete_snapshot(
    manifest: Manifest, snapshot: str, *, cleanup_orphans: bool = False, now: datetime | None = None
) -> WritePlan:
    """Plan removing ``snapshot``; with ``cleanup_orphans`` also the versions only it kept.

    Raises:
        ItemNotFoundError: No snapshot of that name (a ``KeyError``).
    """
    _require(manifest, snapshot)
    snapshots = {k: dict(v) for k, v in manifest.snapshots.items() if k != snapshot}
    stamp = isoformat_utc(now)
    unpinned = manifest.evolve(snapshots=snapshots)
    drop = orphaned_versions(unpinned) if cleanup_orphans else []
    new, obsolete = _without(
        unpinned, drop, revision=manifest.revision + 1, metadata=_bumped_metadata(manifest, stamp)
    )
    return WritePlan(
        base_revision=manifest.revision,
        manifest=new,
        obsolete_payloads=obsolete,
        legacy_files=_legacy_files(manifest),
    )


def plan_restore_snapshot(
    manifest: Manifest, snapshot: str, *, now: datetime | None = None
) -> WritePlan:
    """Plan making ``snapshot``'s versions and metadata the working state again.

    Items added since go; items deleted since come back; each replaced working version is kept
    (non-current) while a snapshot pins it, else dropped with its payload. The snapshot stays.

    Raises:
        ItemNotFoundError: No snapshot of that name, or a version it pins is gone.
    """
    record = _require(manifest, snapshot)
    targets: dict[str, Item] = {}
    for name in _versions(record):
        targets[name] = manifest.resolve_snapshot(snapshot, name)  # raises for a lost version
    keep = {id(item) for item in targets.values()}
    stamp = isoformat_utc(now)
    revision = manifest.revision + 1

    restored = [
        item if item.is_current else item.evolve({"is_current": True}) for item in targets.values()
    ]
    rest: list[Item] = []
    removed: list[Item] = []
    reserved: list[str] = []
    for item in manifest.items:
        if id(item) in keep:
            continue
        if not item.is_current:
            rest.append(item)
        elif manifest.pinned_by(item):
            backfill = _next_version_id(manifest.items, item.name, revision, reserved=reserved)
            reserved.append(backfill)
            rest.append(_demote(item, backfill))
        else:
            removed.append(item)
    metadata = copy.deepcopy(dict(record.get("metadata_snapshot") or {}))
    metadata["updated_at"] = stamp
    new = manifest.evolve(revision=revision, metadata=metadata, items=[*restored, *rest])
    return WritePlan(
        base_revision=manifest.revision,
        manifest=new,
        obsolete_payloads=_obsolete(removed, new.items),
        legacy_files=_legacy_files(manifest),
    )


def export_manifest(
    manifest: Manifest,
    snapshot: str,
    *,
    source: str,
    include_snapshot_metadata: bool = True,
    version: str | None = None,
    now: datetime | None = None,
) -> Manifest:
    """The manifest of a new, history-free bundle holding ``snapshot``'s items and metadata.

    Items keep their ``version_id`` and file names (the payloads are copied unchanged) and
    become current; no snapshots. With ``include_snapshot_metadata`` the metadata gains
    ``_source_snapshot`` (name, source bundle, timestamp, description, tags).
    """
    record = _require(manifest, snapshot)
    items = []
    for name in _versions(record):
        item = manifest.resolve_snapshot(snapshot, name)
        items.append(item if item.is_current else item.evolve({"is_current": True}))
    then = {
        k: copy.deepcopy(v)
        for k, v in (record.get("metadata_snapshot") or {}).items()
        if k not in INTERNAL_METADATA_KEYS
    }
    if include_snapshot_metadata:
        then["_source_snapshot"] = {
            "name": snapshot,
            "source_bundle": source,
            "timestamp": record.get("timestamp"),
            "description": record.get("description"),
            "tags": list(record.get("tags") or []),
        }
    fresh = new_manifest(then, now=now, version=version, source=source)
    return fresh.evolve(revision=1, items=items)
