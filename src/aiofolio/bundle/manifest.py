"""The DataFolio manifest (``items.json``): its structs, reading schema 0/1/2, writing schema 2.

This module owns :class:`Manifest` and :class:`Item`, :func:`parse_manifest`, the
layout constants (payload folders by ``item_type``), :func:`payload_path` and
:func:`version_token`, and :class:`ItemFields` (what a handler hands the write
plan). It receives bytes and returns objects; it does no I/O.

Format facts (checked against ``datafolio`` 2.3.0):

* Schema 2: ``{"schema_version": 2, "revision", "metadata", "items": [...],
  "snapshots"}`` in one file. Schema 1: a dict with ``schema_version: 1``, ``revision``
  and ``items``; metadata and snapshots live in ``metadata.json`` and
  ``snapshots.json`` (``{"snapshots": {...}}``). Schema 0: a bare list of items, or a
  dict without ``schema_version``, with the same sidecars. A newer schema raises
  :class:`~aiofolio.errors.UnsupportedManifestVersionError`.
* Items keep every field, known or not, and round-trip unchanged, except the legacy
  ``in_snapshots`` marker, which datafolio drops on load, and ``is_current``, which
  is written out explicitly (an absent one means true).
* On writing, current items come first (in manifest order), then the non-current
  versions that snapshots pin, as datafolio writes them.

An :class:`Item` is a read-only view over the item's JSON object; typed properties
give the fields aiofolio uses, ``item.raw`` gives all of them.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

import msgspec

from aiofolio.bundle import _jsonfmt
from aiofolio.bundle.names import check_manifest_name, safe_relative_path
from aiofolio.errors import ItemNotFoundError, ManifestError, UnsupportedManifestVersionError

__all__ = [
    "ARTIFACTS_DIR",
    "ITEMS_FILE",
    "ITEM_TYPE_DIRS",
    "METADATA_FILE",
    "MODELS_DIR",
    "OWNED_ITEM_TYPES",
    "REFERENCE_ITEM_TYPE",
    "SCHEMA_VERSION",
    "SNAPSHOTS_FILE",
    "SUPPORTED_SCHEMA_VERSIONS",
    "TABLES_DIR",
    "Item",
    "ItemFields",
    "Manifest",
    "isoformat_utc",
    "new_manifest",
    "parse_manifest",
    "payload_path",
    "version_token",
]

#: The schema version aiofolio writes.
SCHEMA_VERSION = 2
#: The schema versions aiofolio reads.
SUPPORTED_SCHEMA_VERSIONS = frozenset({0, 1, 2})

ITEMS_FILE = "items.json"
METADATA_FILE = "metadata.json"
SNAPSHOTS_FILE = "snapshots.json"

TABLES_DIR = "tables"
MODELS_DIR = "models"
ARTIFACTS_DIR = "artifacts"

REFERENCE_ITEM_TYPE = "referenced_table"

#: Payload folder of each item type (``datafolio.storage.categories``).
ITEM_TYPE_DIRS: Mapping[str, str] = MappingProxyType(
    {
        "included_table": TABLES_DIR,
        "referenced_table": TABLES_DIR,
        "model": MODELS_DIR,
        "numpy_array": ARTIFACTS_DIR,
        "json_data": ARTIFACTS_DIR,
        "artifact": ARTIFACTS_DIR,
        "timestamp": ARTIFACTS_DIR,
    }
)

#: Item types whose bytes live inside the bundle.
OWNED_ITEM_TYPES = frozenset(t for t in ITEM_TYPE_DIRS if t != REFERENCE_ITEM_TYPE)

_KNOWN_TOP_LEVEL = ("schema_version", "revision", "metadata", "items", "snapshots")


def isoformat_utc(moment: datetime | None = None) -> str:
    """ISO 8601 text of ``moment`` (default: now) in UTC, as datafolio writes timestamps.

    Raises:
        ValueError: If ``moment`` is naive.
    """
    if moment is None:
        return datetime.now(timezone.utc).isoformat()
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a timezone-aware datetime is required")
    return moment.astimezone(timezone.utc).isoformat()


class Item:
    """One item version of a manifest: a read-only view over its JSON object.

    Unknown fields are kept (see :attr:`raw`). Build changed copies with
    :meth:`evolve`; never mutate what :attr:`raw` returns.
    """

    __slots__ = ("_data",)

    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = copy.deepcopy(dict(data))

    @classmethod
    def _adopt(cls, data: dict[str, Any]) -> Item:
        """Wrap ``data`` without copying (the caller gives up ownership)."""
        item = cls.__new__(cls)
        item._data = data
        return item

    # -- generic access -------------------------------------------------------------------

    @property
    def raw(self) -> Mapping[str, Any]:
        """Every field of the item, known and unknown (read-only view)."""
        return MappingProxyType(self._data)

    def get(self, key: str, default: Any = None) -> Any:
        """The field ``key``, or ``default``."""
        return self._data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the item's JSON object."""
        return copy.deepcopy(self._data)

    def evolve(
        self, changes: Mapping[str, Any] | None = None, *, remove: Iterable[str] = ()
    ) -> Item:
        """A copy with ``changes`` set and the ``remove`` keys dropped."""
        data = copy.deepcopy(self._data)
        for key in remove:
            data.pop(key, None)
        if changes:
            data.update(copy.deepcopy(dict(changes)))
        return Item._adopt(data)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Item):
            return NotImplemented
        return self._data == other._data

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Item(name={self.name!r}, item_type={self.item_type!r}, "
            f"version_id={self.version_id!r}, is_current={self.is_current!r})"
        )

    # -- typed fields ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The logical item name (may contain '/')."""
        return str(self._data["name"])

    @property
    def item_type(self) -> str:
        """``included_table``, ``numpy_array``, ``json_data``, ``model``, ... ."""
        return str(self._data.get("item_type", ""))

    @property
    def version_id(self) -> str | None:
        """The stable version id (``<name>--r<rev>``); absent in old bundles."""
        value = self._data.get("version_id")
        return str(value) if value else None

    @property
    def is_current(self) -> bool:
        """True for the working version; False for one kept only for a snapshot."""
        return bool(self._data.get("is_current", True))

    @property
    def created_at(self) -> str | None:
        """ISO 8601 creation time, if recorded."""
        value = self._data.get("created_at")
        return str(value) if value is not None else None

    @property
    def description(self) -> str | None:
        """The description, if any."""
        value = self._data.get("description")
        return str(value) if value is not None else None

    @property
    def inputs(self) -> tuple[str, ...]:
        """Lineage: names of the items this one was derived from."""
        value = self._data.get("inputs") or ()
        return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()

    @property
    def archived(self) -> bool:
        """True if the item is hidden from default listings."""
        return bool(self._data.get("archived", False))

    @property
    def is_reference(self) -> bool:
        """True for a ``referenced_table`` (its data lives outside the bundle)."""
        return self.item_type == REFERENCE_ITEM_TYPE

    @property
    def owns_payload(self) -> bool:
        """True if the item's bytes live inside the bundle."""
        return self.item_type != REFERENCE_ITEM_TYPE and "filename" in self._data

    @property
    def filename(self) -> str | None:
        """The payload name relative to the item type's folder (owned items only)."""
        value = self._data.get("filename")
        return str(value) if value is not None else None

    @property
    def checksum(self) -> str | None:
        """MD5 hex of the payload, when recorded (datafolio writes none for timestamps,
        nor for payloads it wrote to cloud storage)."""
        value = self._data.get("checksum")
        return str(value) if value else None

    @property
    def size_bytes(self) -> int | None:
        """Payload size in bytes, when recorded (``size_bytes``, else an artifact's
        ``file_size``)."""
        for key in ("size_bytes", "file_size"):
            value = self._data.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    @property
    def path(self) -> str | None:
        """A reference's external location (``file://``, ``s3://``, ...)."""
        value = self._data.get("path")
        return str(value) if value is not None else None

    @property
    def table_format(self) -> str:
        """``parquet`` (the default) or ``csv``."""
        return str(self._data.get("table_format") or "parquet")


@dataclass(frozen=True)
class ItemFields:
    """What a handler returns after writing a payload: the item's type-specific fields.

    Attributes:
        item_type: The manifest ``item_type``.
        fields: Type-specific fields (``checksum``, ``size_bytes``, ``shape``, ...),
            in the order they should appear; never ``name``, ``filename``,
            ``created_at``, ``version_id`` or ``is_current`` (the write plan adds those).
        extension: Payload file extension with its dot (``.parquet``); empty for an
            artifact without one and for references.
    """

    item_type: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    extension: str = ""

    @property
    def checksum(self) -> str | None:
        """MD5 hex of the written payload, if any."""
        value = self.fields.get("checksum")
        return str(value) if value else None

    @property
    def size_bytes(self) -> int | None:
        """Size of the written payload, if any."""
        value = self.fields.get("size_bytes")
        return int(value) if value is not None else None


def payload_path(item: Item) -> str:
    """The relative POSIX path of an owned item's payload inside the bundle.

    For example ``"tables/results--r3.parquet"`` or ``"artifacts/ns/arr--r2.npy"``.

    Raises:
        ValueError: If the item is a reference (it has no payload in the bundle).
        ManifestError: If the item has no usable ``filename``, an unknown item type,
            or a filename that would leave its folder.
    """
    item_type = item.item_type
    if item_type == REFERENCE_ITEM_TYPE:
        raise ValueError(
            f"item {item.get('name')!r} is a referenced_table: its data lives at "
            f"{item.path!r}, not in the bundle"
        )
    folder = ITEM_TYPE_DIRS.get(item_type)
    if folder is None:
        raise ManifestError(
            f"item {item.get('name')!r} has unknown item_type {item_type!r}; "
            f"known types: {sorted(ITEM_TYPE_DIRS)}"
        )
    filename = item.get("filename")
    if filename is None:
        raise ManifestError(f"item {item.get('name')!r} ({item_type}) has no filename")
    what = f"filename of item {item.get('name')!r}"
    return f"{folder}/{safe_relative_path(filename, what=what, source='manifest')}"


def version_token(item: Item) -> str:
    """A string that changes whenever the item's content may have changed.

    It joins ``version_id``, the MD5 ``checksum`` and the size
    (``"<version_id>|<md5>|<size>"``, empty parts for absent fields). An old item
    without a ``version_id`` uses its payload location and ``created_at`` instead, so
    an in-place rewrite by an old writer still changes the token. An item without a
    checksum (what datafolio writes to the cloud) also carries its ``created_at``
    (``"...|<size>@<created_at>"``): datafolio's version ids count the bundle's writes,
    so a bundle deleted and written again at the same URL, or copied over it, repeats
    them (and often the sizes) for other bytes; only the write time tells them apart.
    The cache stores the token and compares it after a manifest refresh.
    """
    ident = item.version_id
    stamp = ""
    if ident is None:
        location = item.filename if item.filename is not None else (item.path or "")
        ident = f"legacy:{item.item_type}:{location}@{item.created_at or ''}"
    elif not item.checksum and item.created_at:
        stamp = "@" + item.created_at.replace("#", "%23")  # "#" ends the token in a record
    size = item.size_bytes
    return f"{ident}|{item.checksum or ''}|{'' if size is None else size}{stamp}"


class Manifest:
    """A parsed bundle manifest; immutable (the write plan builds new ones).

    Attributes:
        schema_version: The schema the manifest was read as (0, 1 or 2); written
            manifests are always schema 2.
        revision: The commit counter (0 for a bare-list manifest or a new bundle).
        metadata: Bundle metadata: the user's keys plus ``created_at``, ``updated_at``
            and ``_datafolio``.
        items: Every item version in manifest order, current and snapshot-pinned.
        snapshots: ``{snapshot name: {"item_versions": {...}, ...}}``.
        extra: Unknown top-level keys, kept on rewrite.
        source: Where the manifest was read from (for messages).
    """

    __slots__ = (
        "_by_version",
        "_current",
        "extra",
        "items",
        "metadata",
        "revision",
        "schema_version",
        "snapshots",
        "source",
    )

    schema_version: int
    revision: int
    metadata: Mapping[str, Any]
    items: tuple[Item, ...]
    snapshots: Mapping[str, Mapping[str, Any]]
    extra: Mapping[str, Any]
    source: str
    _current: dict[str, Item]
    _by_version: dict[str, Item]

    def __init__(
        self,
        *,
        revision: int,
        metadata: Mapping[str, Any],
        items: Iterable[Item],
        snapshots: Mapping[str, Mapping[str, Any]],
        schema_version: int = SCHEMA_VERSION,
        extra: Mapping[str, Any] | None = None,
        source: str = "",
    ) -> None:
        self.schema_version = schema_version
        self.revision = revision
        self.metadata = MappingProxyType(dict(metadata))
        self.items = tuple(items)
        self.snapshots = MappingProxyType(dict(snapshots))
        self.extra = MappingProxyType(dict(extra or {}))
        self.source = source
        current: dict[str, Item] = {}
        by_version: dict[str, Item] = {}
        for item in self.items:
            if item.is_current:
                current[item.name] = item  # last wins, as in datafolio
            vid = item.version_id
            if vid is not None:
                by_version.setdefault(vid, item)
        self._current = current
        self._by_version = by_version

    def __repr__(self) -> str:
        return (
            f"Manifest(source={self.source!r}, schema_version={self.schema_version}, "
            f"revision={self.revision}, items={len(self.items)}, "
            f"snapshots={list(self.snapshots)!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Manifest):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    @property
    def needs_sidecars(self) -> bool:
        """True for a schema 0/1 manifest, whose metadata and snapshots live in
        ``metadata.json`` and ``snapshots.json`` (pass them to :func:`parse_manifest`)."""
        return self.schema_version < 2

    # -- lookups --------------------------------------------------------------------------

    def current_items(self) -> Mapping[str, Item]:
        """The current version of every item, by name, in manifest order."""
        return MappingProxyType(self._current)

    def names(self, *, include_archived: bool = True) -> list[str]:
        """Names of the current items."""
        return [n for n, it in self._current.items() if include_archived or not it.archived]

    def __contains__(self, name: object) -> bool:
        return name in self._current

    def __iter__(self) -> Iterator[str]:
        return iter(self._current)

    def __len__(self) -> int:
        return len(self._current)

    def get_current(self, name: str) -> Item | None:
        """The current version of ``name``, or None."""
        return self._current.get(name)

    def current(self, name: str) -> Item:
        """The current version of ``name``.

        Raises:
            ItemNotFoundError: If there is none (the message suggests close names).
        """
        item = self._current.get(name)
        if item is None:
            raise ItemNotFoundError(self._not_found(name))
        return item

    def _not_found(self, name: str) -> str:
        message = f"Item {name!r} not found in {self.source or 'the bundle'}"
        close = difflib.get_close_matches(name, list(self._current), n=3)
        if close:
            message += f"; did you mean {', '.join(repr(c) for c in close)}?"
        return message

    def versions(self, name: str) -> list[Item]:
        """Every recorded version of ``name`` (current and snapshot-pinned), in order."""
        return [item for item in self.items if item.get("name") == name]

    def by_version_id(self, version_id: str) -> Item:
        """The item version whose ``version_id`` is ``version_id``.

        Raises:
            ItemNotFoundError: If no item version has it.
        """
        item = self._by_version.get(version_id)
        if item is None:
            raise ItemNotFoundError(f"No item version {version_id!r} in {self.source or 'bundle'}")
        return item

    def owned_items(self) -> list[Item]:
        """Current items whose payload lives in the bundle."""
        return [item for item in self._current.values() if item.owns_payload]

    # -- snapshots ------------------------------------------------------------------------

    def snapshot_names(self) -> list[str]:
        """Names of the snapshots, in manifest order."""
        return list(self.snapshots)

    def snapshot(self, snapshot: str) -> Mapping[str, Any]:
        """The record of one snapshot.

        Raises:
            ItemNotFoundError: If there is no snapshot of that name.
        """
        record = self.snapshots.get(snapshot)
        if record is None:
            message = f"Snapshot {snapshot!r} not found in {self.source or 'the bundle'}"
            close = difflib.get_close_matches(snapshot, list(self.snapshots), n=3)
            if close:
                message += f"; did you mean {', '.join(repr(c) for c in close)}?"
            raise ItemNotFoundError(message)
        return record

    def resolve_snapshot(self, snapshot: str, name: str) -> Item:
        """The exact version of ``name`` that ``snapshot`` pinned.

        The snapshot's ``item_versions`` token is matched against ``version_id`` or,
        for old snapshots, ``checksum``; the current version is preferred, as in
        datafolio.

        Raises:
            ItemNotFoundError: If the snapshot, the name in it, or the pinned
                version is missing (never a different version in its place).
        """
        versions = _item_versions(self.snapshot(snapshot))
        token = versions.get(name)
        if token is None:
            raise ItemNotFoundError(f"Item {name!r} not found in snapshot {snapshot!r}")
        found = self._find_version(name, str(token))
        if found is None:
            raise ItemNotFoundError(
                f"Snapshot {snapshot!r} pins version {token!r} of item {name!r}, but that "
                f"version is no longer in the manifest"
            )
        return found

    def snapshot_items(self, snapshot: str) -> dict[str, Item]:
        """Every item version ``snapshot`` pinned, by name (missing versions skipped)."""
        out: dict[str, Item] = {}
        for name, token in _item_versions(self.snapshot(snapshot)).items():
            found = self._find_version(name, str(token))
            if found is not None:
                out[name] = found
        return out

    def _find_version(self, name: str, token: str) -> Item | None:
        def matches(item: Item) -> bool:
            return token in (item.get("version_id"), item.get("checksum"))

        current = self._current.get(name)
        if current is not None and matches(current):
            return current
        for item in self.items:
            if not item.is_current and item.get("name") == name and matches(item):
                return item
        return None

    def pinned_by(self, item: Item) -> list[str]:
        """Names of the snapshots that pin this exact item version."""
        name = item.get("name")
        tokens = {item.get("version_id"), item.get("checksum")} - {None, ""}
        if not name or not tokens:
            return []
        return [
            snap
            for snap, record in self.snapshots.items()
            if _item_versions(record).get(name) in tokens
        ]

    # -- writing --------------------------------------------------------------------------

    def evolve(
        self,
        *,
        revision: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        items: Iterable[Item] | None = None,
        snapshots: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Manifest:
        """A schema 2 copy with the given parts replaced."""
        return Manifest(
            revision=self.revision if revision is None else revision,
            metadata=self.metadata if metadata is None else metadata,
            items=self.items if items is None else items,
            snapshots=self.snapshots if snapshots is None else snapshots,
            schema_version=SCHEMA_VERSION,
            extra=self.extra,
            source=self.source,
        )

    def to_dict(self) -> dict[str, Any]:
        """The schema 2 JSON object: current items first, then pinned old versions."""
        ordered = [i for i in self.items if i.is_current] + [
            i for i in self.items if not i.is_current
        ]
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "revision": self.revision,
            "metadata": copy.deepcopy(dict(self.metadata)),
            "items": [item.to_dict() for item in ordered],
            "snapshots": copy.deepcopy({k: dict(v) for k, v in self.snapshots.items()}),
        }
        for key, value in self.extra.items():
            out.setdefault(key, copy.deepcopy(value))
        return out

    def to_json_bytes(self) -> bytes:
        """The manifest as ``items.json`` bytes (schema 2, datafolio's layout)."""
        return _jsonfmt.encode_indented(self.to_dict())


def _item_versions(record: Mapping[str, Any]) -> Mapping[str, Any]:
    versions = record.get("item_versions")
    return versions if isinstance(versions, Mapping) else {}


# -- parsing ------------------------------------------------------------------------------


def _decode(data: bytes | bytearray | memoryview | str, what: str) -> Any:
    try:
        return _jsonfmt.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{what} is not valid JSON ({exc})") from exc


def _as_int(value: Any, *, field_name: str, source: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ManifestError(
            f"{source}: {field_name} must be an integer, got {value!r}; the manifest is malformed"
        )
    return value


def _parse_item(raw: Any, index: int, source: str) -> Item:
    if not isinstance(raw, dict):
        raise ManifestError(f"{source}: items[{index}] must be an object, got {type(raw).__name__}")
    if "name" not in raw:
        raise ManifestError(f"{source}: items[{index}] has no name")
    name = check_manifest_name(raw["name"], source=f"{source}: items[{index}]")
    item_type = raw.get("item_type")
    if not isinstance(item_type, str):
        raise ManifestError(f"{source}: item {name!r} has no valid item_type ({item_type!r})")
    filename = raw.get("filename")
    if filename is not None and item_type != REFERENCE_ITEM_TYPE:
        safe_relative_path(filename, what=f"filename of item {name!r}", source=source)
    raw.pop("in_snapshots", None)  # legacy denormalized marker; datafolio drops it
    raw.setdefault("is_current", True)
    return Item._adopt(raw)


def _parse_snapshots(value: Any, source: str) -> dict[str, Mapping[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ManifestError(f"{source}: snapshots must be an object, got {type(value).__name__}")
    for snap, record in value.items():
        if not isinstance(record, dict):
            raise ManifestError(f"{source}: snapshot {snap!r} must be an object")
        versions = record.get("item_versions")
        if versions is not None and not isinstance(versions, dict):
            raise ManifestError(f"{source}: snapshot {snap!r} has malformed item_versions")
    return value


def parse_manifest(
    data: bytes | bytearray | memoryview | str,
    *,
    source: str,
    metadata_json: bytes | bytearray | memoryview | str | None = None,
    snapshots_json: bytes | bytearray | memoryview | str | None = None,
) -> Manifest:
    """Parse ``items.json`` of schema 0, 1 or 2.

    For a schema 0/1 manifest (see :attr:`Manifest.needs_sidecars`) pass the bytes of
    ``metadata.json`` and ``snapshots.json`` when they exist; they are ignored for
    schema 2.

    Args:
        data: The bytes of ``items.json``.
        source: Where it came from (a URI), named in every error.
        metadata_json: The bytes of ``metadata.json`` (schema 0/1), or None if absent.
        snapshots_json: The bytes of ``snapshots.json`` (schema 0/1), or None if absent.

    Raises:
        UnsupportedManifestVersionError: If ``schema_version`` is newer than 2.
        ManifestError: If the JSON is corrupt or malformed, or an item's name or
            filename could point outside the bundle.
    """
    top = _decode(data, f"{source}: items.json")
    extra: dict[str, Any] = {}
    raw_items: Any
    if isinstance(top, list):
        schema_version, revision, raw_items = 0, 0, top
        metadata: Any = None
        snapshots: Any = None
    elif isinstance(top, dict):
        schema_version = _as_int(
            top.get("schema_version"), field_name="schema_version", source=source
        )
        if schema_version > SCHEMA_VERSION:
            raise UnsupportedManifestVersionError(
                f"{source}: items.json declares schema_version {schema_version}, but this "
                f"aiofolio reads schema versions up to {SCHEMA_VERSION}; upgrade aiofolio "
                f"to open this bundle"
            )
        if schema_version < 0:
            raise ManifestError(f"{source}: invalid schema_version {schema_version}")
        revision = _as_int(top.get("revision"), field_name="revision", source=source)
        if revision < 0:
            raise ManifestError(f"{source}: invalid revision {revision}")
        raw_items = top.get("items")
        if raw_items is None:
            raw_items = []
        metadata = top.get("metadata") if schema_version >= 2 else None
        snapshots = top.get("snapshots") if schema_version >= 2 else None
        extra = {k: v for k, v in top.items() if k not in _KNOWN_TOP_LEVEL}
    else:
        raise ManifestError(
            f"{source}: items.json must hold an object or a list, got {type(top).__name__}"
        )
    if not isinstance(raw_items, list):
        raise ManifestError(f"{source}: items must be a list, got {type(raw_items).__name__}")

    if schema_version < 2:
        if metadata_json is not None:
            metadata = _decode(metadata_json, f"{source}: {METADATA_FILE}")
        if snapshots_json is not None:
            sidecar = _decode(snapshots_json, f"{source}: {SNAPSHOTS_FILE}")
            if not isinstance(sidecar, dict):
                raise ManifestError(f"{source}: {SNAPSHOTS_FILE} must hold an object")
            snapshots = sidecar.get("snapshots")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ManifestError(f"{source}: metadata must be an object, got {type(metadata).__name__}")

    items = [_parse_item(raw, index, source) for index, raw in enumerate(raw_items)]
    return Manifest(
        schema_version=schema_version,
        revision=revision,
        metadata=metadata,
        items=items,
        snapshots=_parse_snapshots(snapshots, source),
        extra=extra,
        source=source,
    )


def new_manifest(
    metadata: Mapping[str, Any] | None = None,
    *,
    now: datetime | None = None,
    created_by: str = "aiofolio",
    version: str | None = None,
    source: str = "",
) -> Manifest:
    """The manifest of a bundle not yet published (revision 0, no items).

    Like datafolio, ``created_at``, ``updated_at`` and ``_datafolio`` are added to the
    metadata unless the caller set them. Publish it with
    :func:`aiofolio.bundle.writeplan.plan_create`.
    """
    meta: dict[str, Any] = copy.deepcopy(dict(metadata or {}))
    stamp = isoformat_utc(now)
    meta.setdefault("created_at", stamp)
    meta.setdefault("updated_at", stamp)
    if "_datafolio" not in meta:
        meta["_datafolio"] = {"version": version or _own_version(), "created_by": created_by}
    return Manifest(revision=0, metadata=meta, items=(), snapshots={}, source=source)


def _own_version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("aiofolio")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"
