"""Manifest parsing (schema 0/1/2), lookups, snapshots, round trips and hostile manifests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aiofolio.bundle.manifest import (
    Item,
    Manifest,
    new_manifest,
    parse_manifest,
    payload_path,
    version_token,
)
from aiofolio.errors import (
    ItemNotFoundError,
    ManifestError,
    UnsupportedManifestVersionError,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bundles"


def _read(layout: str, name: str) -> bytes | None:
    path = FIXTURES / layout / name
    return path.read_bytes() if path.exists() else None


def load_fixture(layout: str) -> Manifest:
    data = _read(layout, "items.json")
    assert data is not None
    first = parse_manifest(data, source=f"fixture:{layout}")
    if not first.needs_sidecars:
        return first
    return parse_manifest(
        data,
        source=f"fixture:{layout}",
        metadata_json=_read(layout, "metadata.json"),
        snapshots_json=_read(layout, "snapshots.json"),
    )


def _manifest_bytes(obj: Any) -> bytes:
    return json.dumps(obj).encode()


# -- schema 2 (written by datafolio 2.3.0) --------------------------------------------------


def test_v2_fixture_parses() -> None:
    m = load_fixture("v2")
    assert m.schema_version == 2
    assert not m.needs_sidecars
    assert m.revision == 15
    assert m.metadata["project"] == "fixture"
    assert m.metadata["_datafolio"] == {"version": "2.3.0", "created_by": "datafolio"}
    assert {"created_at", "updated_at"} <= set(m.metadata)
    assert sorted(m.names()) == sorted(
        [
            "table",
            "ns/array",
            "config",
            "event_time",
            "model",
            "model_skops",
            "notes",
            "series",
            "ref",
        ]
    )
    assert "scalar" not in m
    assert len(m) == 9
    assert m.snapshot_names() == ["v1"]


def test_v2_round_trip_is_byte_identical() -> None:
    data = _read("v2", "items.json")
    assert data is not None
    m = parse_manifest(data, source="x")
    assert m.to_dict() == json.loads(data)
    assert m.to_json_bytes() == data  # datafolio's layout: 2-space indent, no trailing newline


def test_item_types_and_payload_paths() -> None:
    m = load_fixture("v2")
    expected = {
        "table": ("included_table", "tables/table--r13.parquet"),
        "ns/array": ("numpy_array", "artifacts/ns/array--r3.npy"),
        "config": ("json_data", "artifacts/config--r14.json"),
        "event_time": ("timestamp", "artifacts/event_time--r6.json"),
        "model": ("model", "models/model--r7.joblib"),
        "model_skops": ("model", "models/model_skops--r8.skops"),
        "notes": ("artifact", "artifacts/notes--r9.txt"),
        "series": ("included_table", "tables/series--r10.parquet"),
    }
    for name, (item_type, path) in expected.items():
        item = m.current(name)
        assert item.item_type == item_type
        assert item.owns_payload
        assert payload_path(item) == path
        assert (FIXTURES / "v2" / path).is_file()
    ref = m.current("ref")
    assert ref.is_reference
    assert not ref.owns_payload
    assert ref.path is not None
    assert ref.path.startswith("file:///")
    with pytest.raises(ValueError, match="referenced_table"):
        payload_path(ref)


def test_item_accessors() -> None:
    m = load_fixture("v2")
    table = m.current("table")
    assert table.name == "table"
    assert table.version_id == "table--r13"
    assert table.is_current
    assert table.description == "first table"  # kept from the overwritten version
    assert table.inputs == ()  # inputs are not carried over by an overwrite
    assert table.checksum is not None
    assert len(table.checksum) == 32
    assert table.size_bytes == (FIXTURES / "v2" / "tables/table--r13.parquet").stat().st_size
    assert table.table_format == "parquet"
    assert not table.archived
    assert table.created_at is not None
    notes = m.current("notes")
    assert notes.size_bytes == notes["file_size"]  # artifacts record file_size
    assert notes.raw["category"] == "docs"
    assert m.current("event_time").checksum is None  # datafolio writes none for timestamps
    assert m.current("model").get("sklearn_version")
    with pytest.raises(TypeError):
        m.current("table").raw["name"] = "x"  # type: ignore[index]


def test_versions_and_by_version_id() -> None:
    m = load_fixture("v2")
    versions = m.versions("table")
    assert [v.version_id for v in versions] == ["table--r13", "table--r2"]
    assert [v.is_current for v in versions] == [True, False]
    old = m.by_version_id("table--r2")
    assert old.inputs == ("ns/array",)
    assert not old.is_current
    with pytest.raises(ItemNotFoundError):
        m.by_version_id("nope--r1")
    # A deleted-but-pinned item is only a non-current version.
    assert m.get_current("scalar") is None
    assert [v.is_current for v in m.versions("scalar")] == [False]


def test_snapshot_resolution() -> None:
    m = load_fixture("v2")
    assert m.resolve_snapshot("v1", "table").version_id == "table--r2"
    assert m.resolve_snapshot("v1", "config").version_id == "config--r4"
    assert m.resolve_snapshot("v1", "scalar").version_id == "scalar--r5"
    assert m.resolve_snapshot("v1", "model") is m.current("model")
    items = m.snapshot_items("v1")
    assert set(items) == {
        "table",
        "ns/array",
        "config",
        "scalar",
        "event_time",
        "model",
        "model_skops",
        "notes",
        "series",
        "ref",
    }
    assert m.pinned_by(m.by_version_id("table--r2")) == ["v1"]
    assert m.pinned_by(m.current("table")) == []
    assert m.snapshot("v1")["description"] == "baseline"
    with pytest.raises(ItemNotFoundError, match="did you mean 'v1'"):
        m.snapshot("v11")
    with pytest.raises(ItemNotFoundError, match="not found in snapshot"):
        m.resolve_snapshot("v1", "missing")


def test_current_lookup_suggests_close_names() -> None:
    m = load_fixture("v2")
    with pytest.raises(ItemNotFoundError, match="did you mean 'table'") as info:
        m.current("tabel")
    assert isinstance(info.value, KeyError)
    assert "fixture:v2" in str(info.value)


def test_archived_items_are_filtered_on_request() -> None:
    items = [
        {"name": "a", "item_type": "json_data", "filename": "a.json"},
        {"name": "b", "item_type": "json_data", "filename": "b.json", "archived": True},
    ]
    m = parse_manifest(_manifest_bytes({"schema_version": 2, "items": items}), source="s")
    assert m.names() == ["a", "b"]
    assert m.names(include_archived=False) == ["a"]
    assert m.current("b").archived


# -- legacy schemas ------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "schema", "revision"), [("v0_list", 0, 0), ("v0_dict", 0, 3)])
def test_v0_fixtures(layout: str, schema: int, revision: int) -> None:
    data = _read(layout, "items.json")
    assert data is not None
    bare = parse_manifest(data, source=layout)
    assert bare.needs_sidecars
    assert bare.metadata == {}
    m = load_fixture(layout)
    assert m.schema_version == schema
    assert m.revision == revision
    assert m.metadata["project"] == "legacy"
    assert m.snapshots == {}
    assert m.names() == ["tbl", "cfg"]
    tbl = m.current("tbl")
    assert tbl.is_current
    assert tbl.version_id is None
    assert tbl.raw["legacy_extra"] == {"kept": True}
    assert payload_path(tbl) == "tables/tbl.parquet"
    assert payload_path(m.current("cfg")) == "artifacts/cfg.json"


def test_v1_fixture_with_sidecars() -> None:
    m = load_fixture("v1")
    assert m.schema_version == 1
    assert m.revision == 5
    assert m.metadata["_datafolio"]["version"] == "1.4.0"
    assert m.snapshot_names() == ["s1"]
    cfg = m.current("cfg")
    assert "in_snapshots" not in cfg  # legacy marker dropped, as datafolio does
    # The legacy snapshot pins by checksum.
    assert m.resolve_snapshot("s1", "cfg") is cfg
    assert m.pinned_by(cfg) == ["s1"]


def test_legacy_manifest_is_written_as_schema_2() -> None:
    m = load_fixture("v1")
    out = json.loads(m.to_json_bytes())
    assert out["schema_version"] == 2
    assert out["revision"] == 5
    assert out["metadata"]["project"] == "legacy"
    assert set(out["snapshots"]) == {"s1"}
    assert all(item["is_current"] is True for item in out["items"])
    assert out["items"][0]["legacy_extra"] == {"kept": True}
    again = parse_manifest(m.to_json_bytes(), source="again")
    assert again == m.evolve()


def test_v1_sidecars_are_ignored_for_schema_2() -> None:
    data = _manifest_bytes({"schema_version": 2, "metadata": {"a": 1}, "items": []})
    m = parse_manifest(data, source="s", metadata_json=b'{"b": 2}', snapshots_json=b"{}")
    assert m.metadata == {"a": 1}


# -- unknown fields ------------------------------------------------------------------------


def test_unknown_fields_survive_a_round_trip() -> None:
    doc = {
        "schema_version": 2,
        "revision": 4,
        "metadata": {"k": [1, 2], "deep": {"x": None}},
        "items": [
            {
                "name": "t",
                "item_type": "included_table",
                "filename": "t--r4.parquet",
                "future_field": {"nested": [1, "two", 3.5]},
                "is_current": True,
            },
            {"name": "f", "item_type": "future_type", "filename": "f.bin", "zzz": 1},
        ],
        "snapshots": {"s": {"item_versions": {"t": "t--r4"}, "extra": "kept"}},
        "future_top_level": {"a": 1},
    }
    m = parse_manifest(_manifest_bytes(doc), source="s")
    out = json.loads(m.to_json_bytes())
    doc["items"][1]["is_current"] = True  # written explicitly
    assert out == doc
    with pytest.raises(ManifestError, match="unknown item_type"):
        payload_path(m.current("f"))


def test_item_evolve_and_equality() -> None:
    item = Item({"name": "a", "item_type": "json_data", "filename": "a.json", "x": [1]})
    changed = item.evolve({"description": "d"}, remove=["x"])
    assert changed.description == "d"
    assert "x" not in changed
    assert "x" in item  # the original is untouched
    assert item == Item(item.to_dict())
    assert item != changed
    copy = item.to_dict()
    copy["x"].append(2)
    assert item["x"] == [1]


# -- version tokens ------------------------------------------------------------------------


def test_version_token() -> None:
    m = load_fixture("v2")
    table = m.current("table")
    assert version_token(table) == f"table--r13|{table.checksum}|{table.size_bytes}"
    event = m.current("event_time")  # no checksum (datafolio's): the write time joins in
    assert version_token(event) == f"event_time--r6||@{event.created_at}"
    # a same-URL rewrite repeats the version id and size: only created_at differs
    again = event.evolve({"created_at": "2027-01-01T00:00:00+00:00"})
    assert version_token(again) != version_token(event)
    assert "#" not in version_token(event.evolve({"created_at": "x#y"}))
    # an item with a checksum is identified by it: its created_at stays out
    assert version_token(table.evolve({"created_at": "x"})) == version_token(table)
    legacy = load_fixture("v0_list").current("tbl")
    token = version_token(legacy)
    assert token.startswith("legacy:included_table:tbl.parquet@2024-01-01T00:00:01+00:00|")
    rewritten = legacy.evolve({"created_at": "2025-01-01T00:00:00+00:00"})
    assert version_token(rewritten) != token
    assert version_token(table.evolve({"checksum": "0" * 32})) != version_token(table)


# -- errors --------------------------------------------------------------------------------


def test_newer_schema_is_refused() -> None:
    data = _manifest_bytes({"schema_version": 3, "revision": 1, "items": []})
    with pytest.raises(UnsupportedManifestVersionError, match="schema_version 3") as info:
        parse_manifest(data, source="s3://bucket/bundle/items.json")
    assert "s3://bucket/bundle/items.json" in str(info.value)
    assert isinstance(info.value, ManifestError)


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b"not json", b'{"items": [}', b"\xff\xfe", b"NaN"],
)
def test_corrupt_json_names_the_path(data: bytes) -> None:
    with pytest.raises(ManifestError, match=r"gs://b/x/items\.json") as info:
        parse_manifest(data, source="gs://b/x/items.json")
    assert "not valid JSON" in str(info.value)


def test_corrupt_sidecar_names_the_file() -> None:
    with pytest.raises(ManifestError, match=r"metadata\.json"):
        parse_manifest(b"[]", source="s", metadata_json=b"{oops")
    with pytest.raises(ManifestError, match=r"snapshots\.json"):
        parse_manifest(b"[]", source="s", snapshots_json=b"[1]")


@pytest.mark.parametrize(
    ("doc", "fragment"),
    [
        ("just a string", "must hold an object or a list"),
        ({"schema_version": "2"}, "schema_version must be an integer"),
        ({"schema_version": True}, "schema_version must be an integer"),
        ({"schema_version": -1}, "invalid schema_version"),
        ({"schema_version": 2, "revision": "7"}, "revision must be an integer"),
        ({"schema_version": 2, "revision": -2}, "invalid revision"),
        ({"schema_version": 2, "items": {}}, "items must be a list"),
        ({"schema_version": 2, "items": [3]}, "items[0] must be an object"),
        ({"schema_version": 2, "items": [{"item_type": "json_data"}]}, "has no name"),
        ({"schema_version": 2, "items": [{"name": "a"}]}, "no valid item_type"),
        ({"schema_version": 2, "metadata": [1]}, "metadata must be an object"),
        ({"schema_version": 2, "snapshots": [1]}, "snapshots must be an object"),
        ({"schema_version": 2, "snapshots": {"s": 1}}, "snapshot 's' must be an object"),
        (
            {"schema_version": 2, "snapshots": {"s": {"item_versions": [1]}}},
            "malformed item_versions",
        ),
    ],
)
def test_malformed_manifests(doc: Any, fragment: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(_manifest_bytes(doc), source="src")
    assert fragment in str(info.value)
    assert "src" in str(info.value)


@pytest.mark.parametrize(
    "filename",
    ["/etc/passwd", "../x", "../../secrets.json", "a/../../x", "..\\x", "a\\b.json", "C:/x.json"],
)
def test_hostile_filename_is_refused(filename: str) -> None:
    doc = {
        "schema_version": 2,
        "items": [{"name": "evil", "item_type": "json_data", "filename": filename}],
    }
    with pytest.raises(ManifestError, match="evil"):
        parse_manifest(_manifest_bytes(doc), source="src")


@pytest.mark.parametrize("name", ["/abs", "../up", "a/../../b", "a\\b", "", "D:x"])
def test_hostile_name_is_refused(name: str) -> None:
    doc = {"schema_version": 2, "items": [{"name": name, "item_type": "json_data"}]}
    with pytest.raises(ManifestError):
        parse_manifest(_manifest_bytes(doc), source="src")


def test_payload_path_rechecks_items_built_by_hand() -> None:
    item = Item({"name": "x", "item_type": "json_data", "filename": "../../x.json"})
    with pytest.raises(ManifestError, match="outside the bundle"):
        payload_path(item)
    with pytest.raises(ManifestError, match="no filename"):
        payload_path(Item({"name": "x", "item_type": "json_data"}))


def test_reference_filename_is_not_a_payload() -> None:
    doc = {
        "schema_version": 2,
        "items": [{"name": "r", "item_type": "referenced_table", "path": "s3://b/t.parquet"}],
    }
    m = parse_manifest(_manifest_bytes(doc), source="s")
    assert m.current("r").path == "s3://b/t.parquet"
    assert m.owned_items() == []


# -- new manifests -------------------------------------------------------------------------


def test_new_manifest_metadata() -> None:
    import datetime as dt

    now = dt.datetime(2025, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    m = new_manifest({"owner": "me"}, now=now, version="9.9")
    assert m.revision == 0
    assert dict(m.metadata) == {
        "owner": "me",
        "created_at": "2025-05-06T07:08:09+00:00",
        "updated_at": "2025-05-06T07:08:09+00:00",
        "_datafolio": {"version": "9.9", "created_by": "aiofolio"},
    }
    with pytest.raises(ValueError, match="timezone-aware"):
        new_manifest(now=dt.datetime(2025, 1, 1))


def test_duplicate_current_names_last_wins() -> None:
    items = [
        {"name": "a", "item_type": "json_data", "filename": "a1.json"},
        {"name": "a", "item_type": "json_data", "filename": "a2.json"},
    ]
    m = parse_manifest(_manifest_bytes(items), source="s")
    assert m.current("a").filename == "a2.json"
    assert len(m.items) == 2
