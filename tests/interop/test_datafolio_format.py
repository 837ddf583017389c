"""Round trips with the real ``datafolio`` 2.3.0 package (installed by the nox sessions).

* Bundles datafolio writes (every item type, an overwrite, a delete, a snapshot) parse in
  aiofolio, and every item reads back equal through aiofolio's handlers.
* Bundles aiofolio writes (handlers + write plans + plain local file writes) open in
  datafolio, pass ``validate()``, read back equal, and stay writable by datafolio.
* datafolio and aiofolio agree on the legacy (schema 0/1) fixtures.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio.bundle import (
    Item,
    ItemFields,
    Manifest,
    WritePlan,
    deserialize,
    parse_manifest,
    payload_path,
    plan_add,
    plan_create,
    plan_delete,
    plan_snapshot,
    read_reference,
    reference_fields,
    serialize,
    version_token,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bundles"

TABLE = pd.DataFrame(
    {
        "i": [1, 2, 3],
        "f": [0.5, None, 1.5],
        "s": ["a", "b", None],
        "t": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
    }
)
TABLE_V2 = pd.DataFrame({"i": [9]})
INDEXED = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.Index(["r1", "r2"], name="row"))
SERIES = pd.Series([3, 1, 2], index=["x", "y", "z"], name="counts")
ARRAY = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
CONFIG = {"lr": 0.001, "layers": [128, 64], "opt": {"name": "adam", "betas": [0.9, 0.999]}}
CONFIG_V2 = {"lr": 0.002}
LISTING = [1, "two", None, True, 2.5]
SCALAR = 42
MOMENT = dt.datetime(2023, 7, 8, 9, 10, 11, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
MODEL = {"coef": [0.1, 0.2], "intercept": 1.0}
NOTES = b"artifact bytes \x00\x01\x02"
EXTERNAL = pd.DataFrame({"ext": [1, 2]})


def _load(root: Path) -> Manifest:
    def read(name: str) -> bytes | None:
        return (root / name).read_bytes() if (root / name).exists() else None

    data = read("items.json")
    assert data is not None
    return parse_manifest(
        data,
        source=str(root),
        metadata_json=read("metadata.json"),
        snapshots_json=read("snapshots.json"),
    )


def _read(root: Path, item: Item, **opts: Any) -> Any:
    if item.is_reference:
        return read_reference(item, lambda p: p.removeprefix("file://"), **opts)
    return deserialize(root / payload_path(item), item, **opts)


def _assert_same(actual: Any, expected: Any) -> None:
    if isinstance(expected, pd.DataFrame):
        pdt.assert_frame_equal(actual, expected)
    elif isinstance(expected, pd.Series):
        pdt.assert_series_equal(actual, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected)
        assert actual.dtype == expected.dtype
    else:
        assert actual == expected


# -- datafolio writes, aiofolio reads ------------------------------------------------------


def _datafolio_bundle(tmp_path: Path) -> tuple[Path, datafolio.DataFolio]:
    root = tmp_path / "df-bundle"
    notes = tmp_path / "notes.bin"
    notes.write_bytes(NOTES)
    external = tmp_path / "external.parquet"
    EXTERNAL.to_parquet(external)

    folio = datafolio.DataFolio(str(root), metadata={"experiment": "interop"})
    folio.add("table", TABLE, description="raw", inputs=["ns/array"])
    folio.add("indexed", INDEXED, preserve_index=True)
    folio.add("series", SERIES)
    folio.add("ns/array", ARRAY)
    folio.add("config", CONFIG)
    folio.add("listing", LISTING)
    folio.add("scalar", SCALAR)
    folio.add("moment", MOMENT)
    folio.add_model("model", MODEL)
    folio.add_model("model_skops", MODEL, custom=True)
    folio.add_file(str(notes), name="notes", category="bin")
    folio.reference_table("ext", str(external))
    folio.create_snapshot("v1", capture_git=False)
    folio.add("table", TABLE_V2, overwrite=True)  # pinned: old version kept
    folio.add("config", CONFIG_V2, overwrite=True)  # pinned: old version kept
    folio.add("unpinned", {"n": 1})
    folio.add("unpinned", {"n": 2}, overwrite=True)  # unpinned: old version dropped
    folio.delete("scalar")  # pinned: kept as a non-current version
    return root, folio


EXPECTED_CURRENT: dict[str, Any] = {
    "table": TABLE_V2,
    "indexed": INDEXED,
    "series": SERIES,
    "ns/array": ARRAY,
    "config": CONFIG_V2,
    "listing": LISTING,
    "moment": MOMENT,
    "model": MODEL,
    "model_skops": MODEL,
    "ext": EXTERNAL,
    "unpinned": {"n": 2},
}


def test_datafolio_bundle_reads_in_aiofolio(tmp_path: Path) -> None:
    root, folio = _datafolio_bundle(tmp_path)
    m = _load(root)
    assert m.schema_version == 2
    assert m.revision == json.loads((root / "items.json").read_bytes())["revision"]
    assert set(m.names()) == set(EXPECTED_CURRENT) | {"notes"}
    for name, expected in EXPECTED_CURRENT.items():
        item = m.current(name)
        ours = _read(root, item)
        _assert_same(ours, expected)
        _assert_same(ours, folio.get(name))
    notes = m.current("notes")
    assert Path(_read(root, notes)).read_bytes() == NOTES
    assert notes.raw["category"] == "bin"
    assert _read(root, m.current("moment"), as_unix=True) == MOMENT.timestamp()
    pdt.assert_frame_equal(_read(root, m.current("table"), columns=["i"]), TABLE_V2)


def test_datafolio_snapshot_and_versions(tmp_path: Path) -> None:
    root, folio = _datafolio_bundle(tmp_path)
    m = _load(root)
    snap = folio.get_snapshot("v1")
    pinned = {
        "table": TABLE,
        "config": CONFIG,
        "scalar": SCALAR,
        "ns/array": ARRAY,
        "model": MODEL,
    }
    for name, expected in pinned.items():
        item = m.resolve_snapshot("v1", name)
        _assert_same(_read(root, item), expected)
        _assert_same(snap.get(name), expected)
        assert item.to_dict() == snap.item_info(name)
    assert [v.is_current for v in m.versions("table")] == [True, False]
    assert len(m.versions("unpinned")) == 1
    assert m.get_current("scalar") is None
    # datafolio deleted exactly the unpinned, replaced payload.
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    named = {payload_path(i) for i in m.items if i.owns_payload}
    assert named <= on_disk
    assert not any(p.startswith("artifacts/unpinned--r") and p not in named for p in on_disk)


def test_manifest_round_trip_matches_datafolio_bytes(tmp_path: Path) -> None:
    root, _ = _datafolio_bundle(tmp_path)
    data = (root / "items.json").read_bytes()
    m = parse_manifest(data, source=str(root))
    assert m.to_dict() == json.loads(data)
    assert m.to_json_bytes() == data


def test_same_object_same_checksum_as_datafolio(tmp_path: Path) -> None:
    root, _ = _datafolio_bundle(tmp_path)
    m = _load(root)
    cases: dict[str, tuple[Any, dict[str, Any]]] = {
        "indexed": (INDEXED, {"preserve_index": True}),
        "series": (SERIES, {}),
        "ns/array": (ARRAY, {}),
        "listing": (LISTING, {}),
        "unpinned": ({"n": 2}, {}),
        "model": (MODEL, {"item_type": "model"}),
    }
    for name, (obj, opts) in cases.items():
        fields = serialize(obj, tmp_path / "probe", **opts)
        item = m.current(name)
        assert fields.checksum == item.checksum, name
        for key in ("shape", "dtype", "columns", "dtypes", "num_rows", "index_columns"):
            if key in item:
                assert fields.fields[key] == item[key], (name, key)
    moment = serialize(MOMENT, tmp_path / "probe")
    assert moment.fields["iso_string"] == m.current("moment")["iso_string"]
    assert moment.fields["unix_timestamp"] == m.current("moment")["unix_timestamp"]
    assert (
        moment.checksum
        == hashlib.md5((root / payload_path(m.current("moment"))).read_bytes()).hexdigest()
    )


# -- aiofolio writes, datafolio reads ------------------------------------------------------


class LocalBundle:
    """Carries out write plans with plain local file operations (what folio.py will do)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.manifest: Manifest | None = None
        self.publish(plan_create({"experiment": "written-by-aiofolio"}))

    def publish(self, plan: WritePlan, payload: Path | None = None) -> None:
        if plan.payload_path is not None:
            assert payload is not None
            dest = self.root / plan.payload_path
            assert not dest.exists(), "payload names are never reused"
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(payload, dest)
        self.root.mkdir(parents=True, exist_ok=True)
        on_disk = self.root / "items.json"
        if plan.base_revision is None:
            assert not on_disk.exists()
        else:
            assert _load(self.root).revision == plan.base_revision
        tmp = self.root / f".items.json.{uuid.uuid4().hex}"
        tmp.write_bytes(plan.manifest_bytes())
        os.replace(tmp, on_disk)
        for rel in plan.obsolete_payloads + plan.legacy_files:
            (self.root / rel).unlink(missing_ok=True)
        self.manifest = plan.manifest

    def add(self, name: str, obj: Any, *, overwrite: bool = False, **opts: Any) -> Item:
        assert self.manifest is not None
        tmp = self.root.parent / f"tmp-{uuid.uuid4().hex}"
        fields = serialize(obj, tmp, name=name, **opts)
        plan = plan_add(self.manifest, name, fields, overwrite=overwrite)
        self.publish(plan, tmp)
        assert plan.item is not None
        return plan.item

    def add_fields(self, name: str, fields: ItemFields) -> None:
        assert self.manifest is not None
        self.publish(plan_add(self.manifest, name, fields))

    def snapshot(self, name: str) -> None:
        assert self.manifest is not None
        self.publish(plan_snapshot(self.manifest, name, description="by aiofolio"))

    def delete(self, name: str) -> None:
        assert self.manifest is not None
        self.publish(plan_delete(self.manifest, name))


def _aiofolio_bundle(tmp_path: Path) -> Path:
    root = tmp_path / "aio-bundle"
    notes = tmp_path / "notes.bin"
    notes.write_bytes(NOTES)
    external = tmp_path / "external.parquet"
    EXTERNAL.to_parquet(external)

    b = LocalBundle(root)
    b.add("table", TABLE)
    b.add("indexed", INDEXED, preserve_index=True)
    b.add("series", SERIES)
    b.add("ns/array", ARRAY)
    b.add("config", CONFIG)
    b.add("listing", LISTING)
    b.add("scalar", SCALAR)
    b.add("moment", MOMENT)
    b.add("model", MODEL, item_type="model")
    b.add("model_skops", MODEL, item_type="model", custom=True)
    b.add("notes", notes, item_type="artifact", category="bin")
    b.add_fields("ext", reference_fields(str(external)))
    b.snapshot("v1")
    b.add("table", TABLE_V2, overwrite=True)
    b.add("config", CONFIG_V2, overwrite=True)
    b.add("unpinned", {"n": 1})
    b.add("unpinned", {"n": 2}, overwrite=True)
    b.delete("scalar")
    return root


def test_aiofolio_bundle_opens_and_validates_in_datafolio(tmp_path: Path) -> None:
    root = _aiofolio_bundle(tmp_path)
    folio = datafolio.DataFolio(str(root), read_only=True)
    status = folio.validate()
    assert status
    assert all(status.values()), status
    assert folio.is_valid()
    assert set(folio.tables) >= {"table", "ext"}
    for name, expected in EXPECTED_CURRENT.items():
        _assert_same(folio.get(name), expected)
    assert Path(folio.get("notes")).read_bytes() == NOTES
    assert folio.metadata["experiment"] == "written-by-aiofolio"
    assert folio.metadata["_datafolio"]["created_by"] == "aiofolio"

    snap = folio.get_snapshot("v1")
    for name, expected in {"table": TABLE, "config": CONFIG, "scalar": SCALAR}.items():
        _assert_same(snap.get(name), expected)
    assert "scalar" not in folio
    # Only the payload of the unpinned, replaced version was deleted.
    m = _load(root)
    on_disk = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    named = {payload_path(i) for i in m.items if i.owns_payload}
    assert on_disk - {"items.json"} == named


def test_datafolio_keeps_writing_an_aiofolio_bundle(tmp_path: Path) -> None:
    root = _aiofolio_bundle(tmp_path)
    before = _load(root)
    folio = datafolio.DataFolio(str(root))
    folio.add("from_datafolio", {"ok": True})
    folio.add("config", {"lr": 0.3}, overwrite=True)
    folio.create_snapshot("v2", capture_git=False)
    after = _load(root)
    assert after.revision == before.revision + 3
    assert after.current("from_datafolio").version_id == f"from_datafolio--r{before.revision + 1}"
    # Our extra fields (size_bytes on every payload, checksums on timestamps) survive.
    assert after.current("moment").checksum == before.current("moment").checksum
    assert after.current("ns/array")["size_bytes"] == before.current("ns/array")["size_bytes"]
    assert version_token(after.current("table")) == version_token(before.current("table"))
    assert version_token(after.current("config")) != version_token(before.current("config"))
    assert _read(root, after.current("from_datafolio")) == {"ok": True}
    assert _read(root, after.resolve_snapshot("v1", "config")) == CONFIG


def test_datafolio_validate_catches_a_bad_checksum_we_wrote(tmp_path: Path) -> None:
    root = _aiofolio_bundle(tmp_path)
    m = _load(root)
    (root / payload_path(m.current("listing"))).write_bytes(b"[1]")
    status = datafolio.DataFolio(str(root), read_only=True).validate()
    assert status["listing"] is False
    assert all(v for k, v in status.items() if k != "listing")


# -- legacy layouts ------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["v1", "v0_list", "v0_dict"])
def test_legacy_fixtures_agree_with_datafolio(tmp_path: Path, layout: str) -> None:
    root = tmp_path / layout
    shutil.copytree(FIXTURES / layout, root)
    ours = _load(root)
    folio = datafolio.DataFolio(str(root))
    assert set(folio.tables) == {"tbl"}
    for name in ours.names():
        assert folio.item_info(name) == ours.current(name).to_dict()
        _assert_same(_read(root, ours.current(name)), folio.get(name))
    assert dict(folio.metadata) == dict(ours.metadata)

    # datafolio's next write migrates to schema 2 and drops the sidecars, as our plans say.
    folio.metadata["touched"] = True
    migrated = _load(root)
    assert migrated.schema_version == 2
    assert migrated.revision == ours.revision + 1
    assert not (root / "metadata.json").exists()
    assert not (root / "snapshots.json").exists()
    assert [i.to_dict() for i in migrated.items] == [i.to_dict() for i in ours.items]
    assert dict(migrated.snapshots) == dict(ours.snapshots)
    assert plan_delete(ours, "tbl").legacy_files == ("metadata.json", "snapshots.json")
