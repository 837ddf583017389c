"""Write plans: revisions, versioned payload names, overwrite/delete semantics, snapshots."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from aiofolio.bundle.manifest import ItemFields, Manifest, parse_manifest, payload_path
from aiofolio.bundle.writeplan import (
    plan_add,
    plan_create,
    plan_delete,
    plan_metadata,
    plan_snapshot,
)
from aiofolio.errors import ItemNotFoundError

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bundles"
T0 = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


def _at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def _json_fields(checksum: str = "c" * 32, size: int = 10) -> ItemFields:
    return ItemFields(
        "json_data", {"checksum": checksum, "data_type": "dict", "size_bytes": size}, ".json"
    )


def _table_fields(checksum: str = "t" * 32) -> ItemFields:
    return ItemFields(
        "included_table",
        {"table_format": "parquet", "is_directory": False, "checksum": checksum, "size_bytes": 99},
        ".parquet",
    )


def _fresh() -> Manifest:
    return plan_create({"owner": "me"}, now=T0, version="1.0").manifest


def _reparse(m: Manifest) -> Manifest:
    return parse_manifest(m.to_json_bytes(), source="reparsed")


def test_plan_create() -> None:
    plan = plan_create({"owner": "me"}, now=T0, version="1.0")
    assert plan.base_revision is None
    assert plan.revision == 1
    doc = json.loads(plan.manifest_bytes())
    assert doc == {
        "schema_version": 2,
        "revision": 1,
        "metadata": {
            "owner": "me",
            "created_at": "2025-01-01T00:00:00+00:00",
            "updated_at": "2025-01-01T00:00:00+00:00",
            "_datafolio": {"version": "1.0", "created_by": "aiofolio"},
        },
        "items": [],
        "snapshots": {},
    }


def test_plan_add_new_item() -> None:
    m = _fresh()
    plan = plan_add(m, "cfg", _json_fields(), description="config", inputs=["raw"], now=_at(1))
    assert plan.base_revision == 1
    assert plan.revision == 2
    assert plan.payload_path == "artifacts/cfg--r2.json"
    assert plan.obsolete_payloads == ()
    assert plan.legacy_files == ()
    item = plan.item
    assert item is not None
    assert item.to_dict() == {
        "name": "cfg",
        "item_type": "json_data",
        "filename": "cfg--r2.json",
        "checksum": "c" * 32,
        "data_type": "dict",
        "size_bytes": 10,
        "created_at": "2025-01-01T00:01:00+00:00",
        "description": "config",
        "inputs": ["raw"],
        "version_id": "cfg--r2",
        "is_current": True,
    }
    assert plan.manifest.metadata["updated_at"] == "2025-01-01T00:01:00+00:00"
    assert plan.manifest.metadata["created_at"] == "2025-01-01T00:00:00+00:00"
    assert _reparse(plan.manifest).current("cfg") == item
    assert m.get_current("cfg") is None  # the input manifest is untouched


def test_namespaced_names_become_subfolders() -> None:
    plan = plan_add(_fresh(), "exp/run1/weights", _table_fields(), now=_at(1))
    assert plan.payload_path == "tables/exp/run1/weights--r2.parquet"


def test_invalid_name_is_refused() -> None:
    with pytest.raises(ValueError, match="Invalid item name"):
        plan_add(_fresh(), "../x", _json_fields())
    with pytest.raises(ValueError, match="unknown item_type"):
        plan_add(_fresh(), "x", ItemFields("pytorch_model", {}, ".pt"))
    with pytest.raises(ValueError, match="must not set"):
        plan_add(_fresh(), "x", ItemFields("json_data", {"version_id": "v"}, ".json"))
    with pytest.raises(TypeError, match="inputs"):
        plan_add(_fresh(), "x", _json_fields(), inputs="raw")


def test_existing_name_needs_overwrite() -> None:
    m = plan_add(_fresh(), "cfg", _json_fields(), now=_at(1)).manifest
    with pytest.raises(ValueError) as info:
        plan_add(m, "cfg", _json_fields())
    assert str(info.value) == (
        "Item 'cfg' already exists in this DataFolio. Use overwrite=True to replace it."
    )


def test_overwrite_unpinned_drops_the_old_version_and_its_payload() -> None:
    m = plan_add(_fresh(), "a", _json_fields("1" * 32), now=_at(1)).manifest
    m = plan_add(m, "cfg", _json_fields("2" * 32), description="keep me", now=_at(2)).manifest
    m = plan_add(m, "z", _json_fields("3" * 32), now=_at(3)).manifest
    plan = plan_add(m, "cfg", _json_fields("4" * 32), overwrite=True, now=_at(4))
    assert plan.revision == 5
    assert plan.payload_path == "artifacts/cfg--r5.json"
    assert plan.obsolete_payloads == ("artifacts/cfg--r3.json",)
    new = plan.manifest
    assert [i.name for i in new.items] == ["a", "cfg", "z"]  # keeps its position
    assert new.versions("cfg") == [new.current("cfg")]
    assert new.current("cfg").description == "keep me"  # None keeps the description
    assert new.current("cfg").checksum == "4" * 32


def test_description_semantics_on_overwrite() -> None:
    m = plan_add(_fresh(), "cfg", _json_fields(), description="old", inputs=["x"]).manifest
    cleared = plan_add(m, "cfg", _json_fields(), overwrite=True, description="").manifest
    assert cleared.current("cfg").description is None
    assert cleared.current("cfg").inputs == ()  # inputs are not carried over
    replaced = plan_add(m, "cfg", _json_fields(), overwrite=True, description="new").manifest
    assert replaced.current("cfg").description == "new"


def test_overwrite_pinned_keeps_the_old_version() -> None:
    m = plan_add(_fresh(), "tbl", _table_fields("1" * 32), now=_at(1)).manifest
    m = plan_add(m, "cfg", _json_fields(), now=_at(2)).manifest
    m = plan_snapshot(m, "v1", now=_at(3)).manifest
    assert m.snapshot("v1")["item_versions"] == {"tbl": "tbl--r2", "cfg": "cfg--r3"}
    plan = plan_add(m, "tbl", _table_fields("2" * 32), overwrite=True, now=_at(5))
    assert plan.revision == 5
    assert plan.payload_path == "tables/tbl--r5.parquet"
    assert plan.obsolete_payloads == ()
    new = plan.manifest
    versions = new.versions("tbl")
    assert [(v.version_id, v.is_current) for v in versions] == [
        ("tbl--r5", True),
        ("tbl--r2", False),
    ]
    assert new.resolve_snapshot("v1", "tbl").checksum == "1" * 32
    assert new.current("tbl").checksum == "2" * 32
    out = json.loads(new.to_json_bytes())
    assert [(i["name"], i["is_current"]) for i in out["items"]] == [
        ("tbl", True),
        ("cfg", True),
        ("tbl", False),
    ]


def test_version_ids_skip_taken_ids_and_files() -> None:
    m = _fresh()
    plan = plan_add(m, "cfg", _json_fields(), taken={"artifacts/cfg--r2.json"})
    assert plan.payload_path == "artifacts/cfg--r2-1.json"
    assert plan.item is not None
    assert plan.item.version_id == "cfg--r2-1"
    plan = plan_add(
        m, "cfg", _json_fields(), taken={"artifacts/cfg--r2.json", "artifacts/cfg--r2-1.json"}
    )
    assert plan.payload_path == "artifacts/cfg--r2-2.json"
    # An id already in the manifest (e.g. copied from another bundle) is never reused.
    doc = json.loads(m.to_json_bytes())
    doc["items"].append(
        {
            "name": "other",
            "item_type": "json_data",
            "filename": "x.json",
            "version_id": "cfg--r2",
            "is_current": True,
        }
    )
    clashing = parse_manifest(json.dumps(doc).encode(), source="s")
    assert plan_add(clashing, "cfg", _json_fields()).payload_path == "artifacts/cfg--r2-1.json"


def test_plan_delete_unpinned_and_pinned() -> None:
    m = plan_add(_fresh(), "a", _json_fields("1" * 32), now=_at(1)).manifest
    m = plan_add(m, "b", _table_fields("2" * 32), now=_at(2)).manifest
    m = plan_snapshot(m, "s", now=_at(3)).manifest
    m = plan_add(m, "c", _json_fields("3" * 32), now=_at(4)).manifest
    plan = plan_delete(m, ["c", "b", "c"], now=_at(5))
    assert plan.revision == m.revision + 1
    assert plan.payload_path is None
    assert plan.item is None
    assert plan.obsolete_payloads == ("artifacts/c--r5.json",)
    new = plan.manifest
    assert new.names() == ["a"]
    assert [(v.version_id, v.is_current) for v in new.versions("b")] == [("b--r3", False)]
    assert new.resolve_snapshot("s", "b").version_id == "b--r3"
    assert new.metadata["updated_at"] == "2025-01-01T00:05:00+00:00"


def test_plan_delete_missing_name_plans_nothing() -> None:
    m = plan_add(_fresh(), "a", _json_fields()).manifest
    with pytest.raises(ItemNotFoundError, match="'zz'"):
        plan_delete(m, ["a", "zz"])
    with pytest.raises(KeyError):
        plan_delete(m, "zz")


def test_shared_payloads_are_never_obsolete() -> None:
    doc = {
        "schema_version": 2,
        "revision": 7,
        "items": [
            {
                "name": "t",
                "item_type": "included_table",
                "filename": "t--r6.parquet",
                "version_id": "t--r7",
                "is_current": True,
            },
            {
                "name": "t",
                "item_type": "included_table",
                "filename": "t--r6.parquet",
                "version_id": "t--r6",
                "is_current": False,
            },
        ],
        "snapshots": {"s": {"item_versions": {"t": "t--r6"}}},
    }
    m = parse_manifest(json.dumps(doc).encode(), source="s")
    assert plan_delete(m, "t").obsolete_payloads == ()
    assert plan_add(m, "t", _table_fields(), overwrite=True).obsolete_payloads == ()


def test_references_have_no_payload() -> None:
    fields = ItemFields(
        "referenced_table",
        {"path": "s3://b/t.parquet", "table_format": "parquet", "is_directory": False},
    )
    plan = plan_add(_fresh(), "ref", fields, now=_at(1))
    assert plan.payload_path is None
    assert plan.item is not None
    assert "filename" not in plan.item
    assert plan.item.version_id == "ref--r2"
    m = plan_snapshot(plan.manifest, "s").manifest
    replaced = plan_add(m, "ref", fields, overwrite=True)
    assert replaced.obsolete_payloads == ()
    assert len(replaced.manifest.versions("ref")) == 2
    assert plan_delete(plan.manifest, "ref").obsolete_payloads == ()


def test_plan_snapshot_record() -> None:
    m = plan_add(_fresh(), "a", _json_fields(), now=_at(1)).manifest
    before = dict(m.metadata)
    plan = plan_snapshot(
        m, "v1.0", description="base", tags=["x"], extra={"git": {"commit": "abc"}}, now=_at(2)
    )
    assert plan.revision == m.revision + 1
    record = plan.manifest.snapshot("v1.0")
    assert dict(record) == {
        "name": "v1.0",
        "timestamp": "2025-01-01T00:02:00+00:00",
        "item_versions": {"a": "a--r2"},
        "metadata_snapshot": before,
        "tags": ["x"],
        "description": "base",
        "git": {"commit": "abc"},
    }
    assert plan.manifest.metadata["updated_at"] == "2025-01-01T00:02:00+00:00"
    with pytest.raises(ValueError, match="already exists"):
        plan_snapshot(plan.manifest, "v1.0")
    with pytest.raises(ValueError, match="Snapshot name"):
        plan_snapshot(m, "bad name")


def _legacy(layout: str) -> Manifest:
    root = FIXTURES / layout

    def read(name: str) -> bytes | None:
        return (root / name).read_bytes() if (root / name).exists() else None

    data = read("items.json")
    assert data is not None
    return parse_manifest(
        data,
        source=layout,
        metadata_json=read("metadata.json"),
        snapshots_json=read("snapshots.json"),
    )


def test_snapshot_of_legacy_items_backfills_version_ids() -> None:
    m = _legacy("v0_dict")
    plan = plan_snapshot(m, "s", now=_at(1))
    tbl, cfg = plan.manifest.current("tbl"), plan.manifest.current("cfg")
    # Like datafolio: the checksum becomes the version id.
    assert tbl.version_id == tbl.checksum
    assert cfg.version_id == cfg.checksum
    assert plan.manifest.snapshot("s")["item_versions"] == {
        "tbl": tbl.checksum,
        "cfg": cfg.checksum,
    }
    assert plan.legacy_files == ("metadata.json", "snapshots.json")
    assert plan.revision == 4


def test_snapshot_backfills_fresh_ids_without_checksums() -> None:
    items = [
        {"name": "t1", "item_type": "timestamp", "filename": "t1.json"},
        {"name": "t2", "item_type": "timestamp", "filename": "t2.json"},
    ]
    m = parse_manifest(json.dumps(items).encode(), source="s")
    plan = plan_snapshot(m, "s")
    assert plan.manifest.snapshot("s")["item_versions"] == {"t1": "t1--r1", "t2": "t2--r1"}


def test_overwriting_a_legacy_pinned_item() -> None:
    m = _legacy("v1")
    cfg = m.current("cfg")
    assert cfg.version_id is None
    plan = plan_add(m, "cfg", _json_fields(), overwrite=True, now=_at(1))
    assert plan.revision == 6
    assert plan.payload_path == "artifacts/cfg--r6.json"
    assert plan.legacy_files == ("metadata.json", "snapshots.json")
    old = [v for v in plan.manifest.versions("cfg") if not v.is_current]
    assert len(old) == 1
    assert old[0].version_id == cfg.checksum  # backfilled from the checksum
    assert old[0].filename == "cfg.json"
    assert plan.manifest.resolve_snapshot("s1", "cfg") == old[0]
    assert plan.obsolete_payloads == ()
    assert plan.manifest.schema_version == 2


def test_overwriting_a_legacy_unpinned_item_obsoletes_its_payload() -> None:
    plan = plan_add(_legacy("v0_list"), "tbl", _table_fields(), overwrite=True, now=_at(1))
    assert plan.revision == 1
    assert plan.obsolete_payloads == ("tables/tbl.parquet",)
    assert plan.payload_path == "tables/tbl--r1.parquet"
    assert payload_path(plan.manifest.current("tbl")) == plan.payload_path


def test_plan_metadata() -> None:
    m = _fresh()
    plan = plan_metadata(m, {"owner": "you", "new": [1]}, remove=["missing"], now=_at(9))
    assert plan.revision == 2
    assert plan.manifest.metadata["owner"] == "you"
    assert plan.manifest.metadata["new"] == [1]
    assert plan.manifest.metadata["updated_at"] == "2025-01-01T00:09:00+00:00"
    gone = plan_metadata(plan.manifest, remove=["new"], now=_at(10)).manifest
    assert "new" not in gone.metadata


def test_plans_are_pure() -> None:
    m = plan_add(_fresh(), "a", _json_fields()).manifest
    m = plan_snapshot(m, "s").manifest
    before = m.to_json_bytes()
    plan_add(m, "a", _json_fields(), overwrite=True)
    plan_delete(m, "a")
    plan_snapshot(m, "t")
    plan_metadata(m, {"x": 1})
    assert m.to_json_bytes() == before
