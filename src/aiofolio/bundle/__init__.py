"""The sans-network bundle layer: the DataFolio format, compatible with ``datafolio`` 2.x.

This package owns the manifest structs and their parsing (schema 0, 1 and 2), the
v2 write protocol as pure plans, the item-type handlers (tables, arrays, JSON,
timestamps, models, artifacts, references) and the name rules. It receives bytes or
local paths and returns objects, plans and local files; it never does network I/O
(``folio.py`` wires it to the storage backends).

Modules:
    manifest: :class:`Manifest`, :class:`Item`, :func:`parse_manifest`,
        :func:`payload_path`, :func:`version_token`.
    names: the name grammar and the hostile-path guard.
    hashing: :class:`HashingWriter` (MD5 and size computed while writing).
    handlers: :func:`serialize`, :func:`deserialize`, :func:`detect_item_type`.
    writeplan: :func:`plan_add`, :func:`plan_delete`, :func:`plan_snapshot`,
        :func:`plan_metadata`, :func:`plan_create`.
    snapshots: deleting and restoring snapshots, orphaned versions, snapshot listings,
        diffs and exports (imported from the module itself).
    curation: archive, update_item, lineage, name selection, copies (from the module).
    context: what a snapshot records about where it was taken (git, environment).
    handlers.imports: table files imported as Parquet payloads (``import_table``).
"""

from __future__ import annotations

from aiofolio.bundle.handlers import (
    SUPPORTED_TYPES,
    deserialize,
    detect_item_type,
    read_reference,
    reference_fields,
    serialize,
)
from aiofolio.bundle.hashing import HashingWriter, md5_file, write_hashed
from aiofolio.bundle.manifest import (
    ITEM_TYPE_DIRS,
    ITEMS_FILE,
    METADATA_FILE,
    OWNED_ITEM_TYPES,
    REFERENCE_ITEM_TYPE,
    SCHEMA_VERSION,
    SNAPSHOTS_FILE,
    SUPPORTED_SCHEMA_VERSIONS,
    Item,
    ItemFields,
    Manifest,
    isoformat_utc,
    new_manifest,
    parse_manifest,
    payload_path,
    version_token,
)
from aiofolio.bundle.names import (
    check_manifest_name,
    safe_relative_path,
    validate_item_name,
    validate_snapshot_name,
)
from aiofolio.bundle.writeplan import (
    WritePlan,
    plan_add,
    plan_create,
    plan_delete,
    plan_metadata,
    plan_snapshot,
)

__all__ = [
    "ITEMS_FILE",
    "ITEM_TYPE_DIRS",
    "METADATA_FILE",
    "OWNED_ITEM_TYPES",
    "REFERENCE_ITEM_TYPE",
    "SCHEMA_VERSION",
    "SNAPSHOTS_FILE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "SUPPORTED_TYPES",
    "HashingWriter",
    "Item",
    "ItemFields",
    "Manifest",
    "WritePlan",
    "check_manifest_name",
    "deserialize",
    "detect_item_type",
    "isoformat_utc",
    "md5_file",
    "new_manifest",
    "parse_manifest",
    "payload_path",
    "plan_add",
    "plan_create",
    "plan_delete",
    "plan_metadata",
    "plan_snapshot",
    "read_reference",
    "reference_fields",
    "safe_relative_path",
    "serialize",
    "validate_item_name",
    "validate_snapshot_name",
    "version_token",
    "write_hashed",
]
