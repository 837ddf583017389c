"""Read every item of the static fixtures (datafolio 2.3.0 and legacy layouts) via the handlers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas.testing as pdt
import pytest

from aiofolio.bundle import Manifest, deserialize, parse_manifest, payload_path, read_reference

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bundles"


def _load_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "bundle_fixture_data", FIXTURES / "fixture_data.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DATA = _load_data()


def _manifest(layout: str) -> Manifest:
    root = FIXTURES / layout

    def read(name: str) -> bytes | None:
        return (root / name).read_bytes() if (root / name).exists() else None

    items = read("items.json")
    assert items is not None
    return parse_manifest(
        items,
        source=str(root),
        metadata_json=read("metadata.json"),
        snapshots_json=read("snapshots.json"),
    )


def _get(layout: str, manifest: Manifest, name: str, **opts: Any) -> Any:
    item = manifest.current(name)
    return deserialize(FIXTURES / layout / payload_path(item), item, **opts)


def test_v2_current_items_read_back_equal() -> None:
    m = _manifest("v2")
    pdt.assert_frame_equal(_get("v2", m, "table"), DATA.TABLE_V2)
    array = _get("v2", m, "ns/array")
    np.testing.assert_array_equal(array, DATA.ARRAY)
    assert array.dtype == DATA.ARRAY.dtype
    assert _get("v2", m, "config") == DATA.CONFIG_V2
    assert _get("v2", m, "event_time") == DATA.EVENT_TIME
    assert _get("v2", m, "event_time", as_unix=True) == DATA.EVENT_TIME.timestamp()
    pdt.assert_series_equal(_get("v2", m, "series"), DATA.SERIES)
    notes_path = _get("v2", m, "notes")
    assert Path(notes_path).read_text() == DATA.NOTES_TEXT


def test_v2_models_read_back_equal() -> None:
    pytest.importorskip("joblib")
    pytest.importorskip("skops")
    m = _manifest("v2")
    assert _get("v2", m, "model") == DATA.MODEL
    assert _get("v2", m, "model_skops") == DATA.MODEL


def test_v2_reference_reads_through_fetch() -> None:
    m = _manifest("v2")
    ref = m.current("ref")
    fetched: list[str] = []

    def fetch(path: str) -> Path:
        fetched.append(path)
        return FIXTURES / "external.parquet"

    pdt.assert_frame_equal(read_reference(ref, fetch), DATA.EXTERNAL_TABLE)
    assert fetched == [ref.path]


def test_v2_snapshot_versions_read_back_equal() -> None:
    m = _manifest("v2")

    def snap(name: str) -> Any:
        item = m.resolve_snapshot("v1", name)
        return deserialize(FIXTURES / "v2" / payload_path(item), item)

    pdt.assert_frame_equal(snap("table"), DATA.TABLE)
    assert snap("config") == DATA.CONFIG
    assert snap("scalar") == DATA.SCALAR
    np.testing.assert_array_equal(snap("ns/array"), DATA.ARRAY)


@pytest.mark.parametrize("layout", ["v2", "v1", "v0_list", "v0_dict"])
def test_recorded_checksums_match_the_payloads(layout: str) -> None:
    m = _manifest(layout)
    checked = 0
    for item in m.items:
        if not item.owns_payload:
            continue
        data = (FIXTURES / layout / payload_path(item)).read_bytes()
        if item.checksum is not None:
            assert hashlib.md5(data).hexdigest() == item.checksum, item.name
            checked += 1
        if item.get("size_bytes") is not None:
            assert item.size_bytes == len(data)
    assert checked >= 2


@pytest.mark.parametrize("layout", ["v1", "v0_list", "v0_dict"])
def test_legacy_items_read_back_equal(layout: str) -> None:
    m = _manifest(layout)
    pdt.assert_frame_equal(_get(layout, m, "tbl"), DATA.LEGACY_TABLE)
    assert _get(layout, m, "cfg") == DATA.LEGACY_CONFIG
    assert dict(m.metadata) == DATA.LEGACY_METADATA


def test_payload_dirs_only_hold_what_the_manifest_names() -> None:
    m = _manifest("v2")
    named = {payload_path(item) for item in m.items if item.owns_payload}
    on_disk = {
        str(p.relative_to(FIXTURES / "v2"))
        for p in (FIXTURES / "v2").rglob("*")
        if p.is_file() and p.name != "items.json"
    }
    assert on_disk == named


def test_v2_manifest_is_datafolio_output() -> None:
    raw = json.loads((FIXTURES / "v2" / "items.json").read_bytes())
    assert raw["metadata"]["_datafolio"]["created_by"] == "datafolio"
    assert list(raw) == ["schema_version", "revision", "metadata", "items", "snapshots"]
