"""``DataFolio`` on local bundles: every item type, the sync API and its async twins, the 1.x
aliases, writes and their conflicts, hostile manifests and bad input.

Each test makes its own bundle under ``tmp_path``; nothing here needs a server. The last tests
drive the write protocol through a scripted in-memory store (``memory://``) to reach failures
that real stores make only by chance (a publish that lands but whose answer is lost, a bundle
created by someone else between our look and our publish).
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import datetime as dt
import hashlib
import json
import pickle
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio import (
    ConcurrentWriteError,
    DataFolio,
    ItemNotFoundError,
    ManifestError,
    ReadOnlyError,
    RemoteNotFoundError,
    RemoteTimeoutError,
    UnsupportedManifestVersionError,
    _portal,
)
from aiofolio.backends.memory import MemoryBackend
from aiofolio.bundle import (
    parse_manifest,
    payload_path,
    plan_create,
    plan_metadata,
    plan_snapshot,
)
from aiofolio.config import resolve_settings
from aiofolio.engine._runtime import engine as get_engine

TABLE = pd.DataFrame(
    {
        "a": [1, 2, 3],
        "b": ["x", "y", None],
        "c": [0.5, None, 2.5],
        "when": pd.to_datetime(["2024-01-01", None, "2024-03-01"]),
    }
)
SERIES = pd.Series([3, 1, 2], name="counts")
ARRAY = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
CONFIG = {"lr": 0.001, "layers": [64, 32], "opt": {"name": "adam", "betas": [0.9, 0.999]}}
LISTING = [1, "two", None, True, 2.5]
MOMENT = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone.utc)
MODEL = {"coef": [0.25, -1.5], "intercept": 0.125}
NOTES = b"artifact bytes \x00\x01\x02 end"
EXTERNAL = pd.DataFrame({"ext": [10, 20, 30], "name": ["p", "q", "r"]})


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
        assert type(actual) is type(expected)


def _files(root: Path) -> set[str]:
    """Every file under ``root`` but the derived README.md and CONTENTS.md, as POSIX paths
    relative to it."""
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.relative_to(root).as_posix() not in ("README.md", "CONTENTS.md")
    }


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


@dataclasses.dataclass
class Sources:
    """Files outside the bundle that items are made from."""

    notes: Path
    external: Path


@pytest.fixture
def sources(tmp_path: Path) -> Sources:
    src = tmp_path / "src"
    src.mkdir()
    notes = src / "notes.bin"
    notes.write_bytes(NOTES)
    external = src / "external.parquet"
    EXTERNAL.to_parquet(external)
    return Sources(notes, external)


def _fill(folio: DataFolio, sources: Sources) -> dict[str, Any]:
    """Add one item of every type; returns what each should read back as."""
    folio.add("table", TABLE, description="raw rows", inputs=["ns/array"])
    folio.add("series", SERIES)
    folio.add("ns/array", ARRAY)
    folio.add("config", CONFIG)
    folio.add("listing", LISTING)
    folio.add("scalar", 42)
    folio.add("moment", MOMENT)
    folio.add_model("model", MODEL, description="weights")
    folio.add_file(sources.notes, name="notes", category="bin")
    folio.reference_table("ext", str(sources.external))
    return {
        "table": TABLE,
        "series": SERIES,
        "ns/array": ARRAY,
        "config": CONFIG,
        "listing": LISTING,
        "scalar": 42,
        "moment": MOMENT,
        "model": MODEL,
        "ext": EXTERNAL,
    }


@pytest.fixture
def filled(tmp_path: Path, sources: Sources) -> tuple[DataFolio, dict[str, Any]]:
    folio = DataFolio(tmp_path / "bundle", metadata={"experiment": "e1"})
    return folio, _fill(folio, sources)


# -- round trip -----------------------------------------------------------------------------


def test_every_item_type_round_trips_through_a_fresh_folio(
    filled: tuple[DataFolio, dict[str, Any]],
) -> None:
    folio, expected = filled
    again = DataFolio(folio.path, create=False)
    assert set(again) == set(expected) | {"notes"}
    for name, value in expected.items():
        _assert_same(again.get(name), value)
        _assert_same(folio.get(name), value)
    assert Path(again.get("notes")).read_bytes() == NOTES
    assert again.get("moment", as_unix=True) == MOMENT.timestamp()
    kinds = {name: again.item_info(name)["item_type"] for name in again}
    assert kinds == {
        "table": "included_table",
        "series": "included_table",
        "ns/array": "numpy_array",
        "config": "json_data",
        "listing": "json_data",
        "scalar": "json_data",
        "moment": "timestamp",
        "model": "model",
        "notes": "artifact",
        "ext": "referenced_table",
    }
    assert again.item_info("table")["inputs"] == ["ns/array"]
    assert again.item_info("notes")["category"] == "bin"
    assert again.metadata["experiment"] == "e1"
    # The payload layout is datafolio's: <folder>/<version_id><ext>, namespaces as folders.
    vid = again.item_info("ns/array")["version_id"]
    assert vid.startswith("ns/array--r")
    assert f"artifacts/{vid}.npy" in _files(Path(folio.path))


def test_sklearn_estimator_is_stored_as_a_model(tmp_path: Path) -> None:
    linear = pytest.importorskip("sklearn.linear_model")
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    clf = linear.LogisticRegression().fit(x, y)
    folio = DataFolio(tmp_path / "b")
    folio.add("clf", clf)
    assert folio.item_info("clf")["item_type"] == "model"
    back = DataFolio(folio.path).get_model("clf")
    np.testing.assert_array_equal(back.coef_, clf.coef_)
    np.testing.assert_array_equal(back.predict(x), clf.predict(x))


def test_get_columns_and_get_many(filled: tuple[DataFolio, dict[str, Any]]) -> None:
    folio, expected = filled
    pdt.assert_frame_equal(folio.get("table", columns=["a", "c"]), TABLE[["a", "c"]])
    pdt.assert_frame_equal(folio.get_table("table", columns=["b"]), TABLE[["b"]])
    pdt.assert_frame_equal(folio.get("ext", columns=["name"]), EXTERNAL[["name"]])
    many = folio.get_many(["table", "ns/array", "config", "moment"])
    assert list(many) == ["table", "ns/array", "config", "moment"]
    for name, value in many.items():
        _assert_same(value, expected[name])
    with pytest.raises(ItemNotFoundError, match="did you mean 'config'"):
        folio.get_many(["table", "confg"])


def test_max_eager_bytes_guards_full_table_loads(tmp_path: Path) -> None:
    DataFolio(tmp_path / "b").add("table", TABLE)
    small = DataFolio(tmp_path / "b", max_eager_bytes=10)
    with pytest.raises(ValueError, match="max_eager_bytes"):
        small.get("table")
    pdt.assert_frame_equal(small.get("table", columns=["a"]), TABLE[["a"]])
    pdt.assert_frame_equal(DataFolio(tmp_path / "b", max_eager_bytes=None).get("table"), TABLE)


# -- async twins and the notebook style ------------------------------------------------------


async def test_async_twins(tmp_path: Path, sources: Sources) -> None:
    folio = await DataFolio.aopen(tmp_path / "b", metadata={"run": 7})
    # Concurrent writes on one folio are serialised, each over the last commit.
    await asyncio.gather(
        folio.aadd("t", TABLE),
        folio.aadd("arr", ARRAY),
        folio.aadd("cfg", CONFIG),
        folio.aadd("when", MOMENT),
        folio.aadd_model("model", MODEL),
        folio.aadd_file(sources.notes, name="notes"),
        folio.areference_table("ext", str(sources.external)),
    )
    assert folio.revision == 8
    names = ["t", "arr", "cfg", "when", "model", "ext"]
    values = await asyncio.gather(*(folio.aget(n) for n in names))
    for value, expected in zip(
        values, [TABLE, ARRAY, CONFIG, MOMENT, MODEL, EXTERNAL], strict=True
    ):
        _assert_same(value, expected)
    assert await folio.aget_model("model") == MODEL
    many = await folio.aget_many(["cfg", "arr"])
    assert many["cfg"] == CONFIG
    np.testing.assert_array_equal(many["arr"], ARRAY)
    pdt.assert_frame_equal(await folio.aget("t", columns=["a"]), TABLE[["a"]])
    assert all((await folio.avalidate()).values())

    await folio.adelete("cfg")
    await folio.adelete(["arr", "when"])
    assert set(folio) == {"t", "model", "notes", "ext"}
    with pytest.raises(ItemNotFoundError):
        await folio.aget("cfg")

    other = await DataFolio.aopen(folio.path, create=False)
    await other.aadd("late", [1, 2])
    assert await folio.aget("late") == [1, 2]  # an uncached local bundle follows its writers
    assert "late" in folio
    assert await folio.arefresh() is folio
    with pytest.raises(RemoteNotFoundError):
        await DataFolio.aopen(tmp_path / "missing", create=False)


def test_sync_get_inside_asyncio_run_like_a_notebook(
    filled: tuple[DataFolio, dict[str, Any]],
) -> None:
    folio, _ = filled

    async def cell() -> tuple[Any, Any]:
        # Plain sync calls while an event loop runs in this thread (Jupyter), no nest_asyncio.
        again = DataFolio(folio.path)
        again.add("from_cell", {"ok": True})
        return again.get("table", columns=["a"]), again.get("from_cell")

    table, value = asyncio.run(cell())
    pdt.assert_frame_equal(table, TABLE[["a"]])
    assert value == {"ok": True}


async def test_sync_calls_inside_a_running_test_loop(
    filled: tuple[DataFolio, dict[str, Any]],
) -> None:
    folio, _ = filled
    np.testing.assert_array_equal(folio.get("ns/array"), ARRAY)
    assert folio.get_many(["config"]) == {"config": CONFIG}


# -- metadata, delete, paths, listings ---------------------------------------------------------


def test_metadata_changes_commit_and_persist(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b", metadata={"experiment": "e1"})
    meta = folio.metadata
    assert meta["experiment"] == "e1"
    assert {"created_at", "updated_at", "_datafolio"} <= set(meta)
    created_at = meta["created_at"]
    start = folio.revision

    meta["lr"] = 0.1
    meta.update({"a": 1, "b": [1, 2]})  # one commit for both keys
    assert folio.revision == start + 2
    del meta["a"]
    assert meta.pop("b") == [1, 2]
    assert meta.pop("missing", "default") == "default"
    assert meta.setdefault("seed", 3) == 3
    meta |= {"c": {"nested": True}}  # commits like update(), once
    assert folio.revision == start + 6
    folio.metadata |= {"d": 4}  # the property setter must not commit a second time
    assert folio.revision == start + 7
    meta["tmp"] = 1
    assert meta.popitem() == ("tmp", 1)  # commits the removal
    assert folio.revision == start + 9

    again = DataFolio(folio.path)
    assert again.metadata["lr"] == 0.1
    assert again.metadata["c"] == {"nested": True}
    assert again.metadata["d"] == 4
    assert again.metadata["seed"] == 3
    assert "a" not in again.metadata
    assert "b" not in again.metadata
    assert "tmp" not in again.metadata
    assert again.metadata["created_at"] == created_at
    assert again.metadata["updated_at"] >= created_at
    assert dict(again.metadata) == dict(folio.metadata)
    with pytest.raises(KeyError):
        del again.metadata["nope"]
    with pytest.raises(TypeError):
        again.metadata.clear()

    again.metadata = {"only": 1}  # wholesale replacement, as in datafolio
    assert set(DataFolio(folio.path).metadata) == {"only", "updated_at"}


def test_metadata_copies_are_plain_dicts_and_commit_nothing(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b", metadata={"params": {"lr": 0.1}, "tags": ["a"]})
    start = folio.revision
    copies = [
        copy.copy(folio.metadata),
        copy.deepcopy(folio.metadata),
        pickle.loads(pickle.dumps(folio.metadata)),
        folio.metadata.copy(),
    ]
    for snapshot in copies:
        assert type(snapshot) is dict
        assert snapshot == dict(folio.metadata)
    assert folio.revision == start  # copying committed nothing
    copies[1]["params"]["lr"] = 0.5  # a deep copy is independent
    assert folio.metadata["params"] == {"lr": 0.1}
    assert DataFolio(folio.path).metadata["params"] == {"lr": 0.1}


def test_delete_one_and_a_list(filled: tuple[DataFolio, dict[str, Any]]) -> None:
    folio, _ = filled
    root = Path(folio.path)
    arr_file = payload_path(folio.get_item("ns/array"))
    assert arr_file in _files(root)
    with pytest.warns(UserWarning, match="used by: table"):  # datafolio's lineage warning
        folio.delete("ns/array")
    assert "ns/array" not in folio
    assert arr_file not in _files(root)
    with pytest.raises(ItemNotFoundError):
        folio.get("ns/array")

    before = folio.revision
    doomed = [payload_path(folio.get_item(n)) for n in ("config", "listing")]
    folio.delete(["config", "listing", "ext"])
    assert folio.revision == before + 1  # one commit for the list
    assert not set(doomed) & _files(root)
    assert sorted(DataFolio(folio.path)) == sorted(
        ["table", "series", "scalar", "moment", "model", "notes"]
    )

    # A list naming a missing item deletes nothing.
    with pytest.raises(ItemNotFoundError, match="did you mean 'scalar'"):
        folio.delete(["table", "scalr"])
    assert "table" in DataFolio(folio.path)
    assert folio.revision == before + 1


def test_item_path_and_item_info(
    filled: tuple[DataFolio, dict[str, Any]], sources: Sources
) -> None:
    folio, _ = filled
    root = Path(folio.path)
    info = folio.item_info("table")
    path = Path(folio.item_path("table"))
    assert path == root / "tables" / f"{info['version_id']}.parquet"
    assert path.is_file()
    assert folio.get_table_path("table") == str(path)
    assert info["checksum"] == _md5(path)
    assert info["size_bytes"] == path.stat().st_size
    assert info["num_rows"] == 3
    assert info["description"] == "raw rows"
    assert Path(folio.item_path("ns/array")).parent == root / "artifacts" / "ns"
    assert folio.item_path("ext") == folio.item_info("ext")["path"]
    assert str(sources.external) in folio.item_path("ext")
    info["description"] = "changed"  # a copy: the folio is unaffected
    assert folio.item_info("table")["description"] == "raw rows"
    with pytest.raises(ItemNotFoundError):
        folio.item_info("tabel")


def test_list_contents_and_properties(filled: tuple[DataFolio, dict[str, Any]]) -> None:
    folio, _ = filled
    assert folio.list_contents() == {
        "referenced_tables": ["ext"],
        "included_tables": ["table", "series"],
        "numpy_arrays": ["ns/array"],
        "json_data": ["config", "listing", "scalar"],
        "timestamps": ["moment"],
        "models": ["model"],
        "artifacts": ["notes"],
    }
    assert folio.tables == ["ext", "table", "series"]
    assert folio.models == ["model"]
    assert folio.artifacts == ["notes"]
    assert len(folio) == 10
    assert "table" in folio
    assert "nope" not in folio
    assert 3 not in folio
    assert "items=10" in repr(folio)


def test_describe(
    filled: tuple[DataFolio, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    folio, _ = filled
    text = folio.describe(return_string=True)
    assert text is not None
    assert text.startswith(f"DataFolio: {folio.path}\n")
    assert "  • experiment: e1" in text
    for name in folio:
        assert f"  • {name}" in text
    assert "  • table: raw rows\n" in text
    assert "    ↳ inputs: ns/array" in text
    assert "  • model: weights" in text
    only = folio.describe(pattern="ns/*", return_string=True)
    assert only is not None
    assert "  • ns/array" in only
    assert "  • table" not in only
    with_paths = folio.describe(show_paths=True, return_string=True)
    assert with_paths is not None
    assert f"    ↳ path: {folio.item_path('table')}" in with_paths
    assert folio.describe() is None
    assert "  • moment" in capsys.readouterr().out


def test_validate_true_then_false_after_corruption(
    filled: tuple[DataFolio, dict[str, Any]],
) -> None:
    folio, _ = filled
    report = folio.validate()
    assert set(report) == set(folio)  # the reference: its external file exists
    assert all(report.values())
    assert folio.is_valid()

    arr = Path(folio.item_path("ns/array"))
    data = bytearray(arr.read_bytes())
    data[-1] ^= 0xFF  # same size, different bytes
    arr.write_bytes(bytes(data))
    table = Path(folio.item_path("table"))
    table.write_bytes(table.read_bytes()[:-5])
    Path(folio.item_path("config")).unlink()

    report = DataFolio(folio.path).validate()
    bad = {name for name, ok in report.items() if not ok}
    assert bad == {"ns/array", "table", "config"}
    assert not folio.is_valid()


def test_refresh_sees_another_writer(filled: tuple[DataFolio, dict[str, Any]]) -> None:
    folio, _ = filled
    other = DataFolio(folio.path)
    other.add("added_elsewhere", {"by": "other"})
    other.metadata["owner"] = "other"
    other.delete("scalar")
    assert folio.get("added_elsewhere") == {"by": "other"}  # followed on the next read
    assert "scalar" not in folio
    assert folio.refresh() is folio
    assert folio.revision == other.revision
    assert folio.get("added_elsewhere") == {"by": "other"}
    assert "scalar" not in folio
    assert folio.metadata["owner"] == "other"


def test_one_x_aliases(tmp_path: Path, sources: Sources) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add_table("t", TABLE, description="via add_table")
    folio.add_numpy("arr", ARRAY)
    folio.add_json("cfg", CONFIG)
    folio.add_timestamp("when", MOMENT)
    folio.add_artifact("notes", sources.notes)
    folio.add_data("data", [1, 2, 3])
    folio.add_data("frame", EXTERNAL)

    again = DataFolio(folio.path)
    pdt.assert_frame_equal(again.get_table("t"), TABLE)
    assert again.item_info("t")["description"] == "via add_table"
    np.testing.assert_array_equal(again.get_numpy("arr"), ARRAY)
    assert again.get_json("cfg") == CONFIG
    assert again.get_timestamp("when") == MOMENT
    assert again.get_timestamp("when", as_unix=True) == MOMENT.timestamp()
    artifact = Path(again.get_artifact_path("notes"))
    assert artifact.read_bytes() == NOTES
    assert artifact == Path(again.item_path("notes"))
    assert again.get_table_path("t") == again.item_path("t")
    assert again.get_data("data") == [1, 2, 3]
    pdt.assert_frame_equal(again.get_data("frame"), EXTERNAL)
    assert sorted(again.item_names()) == sorted(
        ["t", "arr", "cfg", "when", "notes", "data", "frame"]
    )
    kinds = {n: again.item_info(n)["item_type"] for n in again}
    assert kinds["arr"] == "numpy_array"
    assert kinds["when"] == "timestamp"
    assert kinds["notes"] == "artifact"
    assert kinds["frame"] == "included_table"


def test_overwrite_semantics(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add("cfg", {"v": 1}, description="first", inputs=["x"])
    root = Path(folio.path)
    first = folio.item_info("cfg")
    before_files = _files(root)
    with pytest.raises(ValueError, match="already exists"):
        folio.add("cfg", {"v": 2})
    assert folio.get("cfg") == {"v": 1}
    assert _files(root) == before_files  # nothing uploaded for a refused add

    folio.add("cfg", {"v": 2}, overwrite=True)
    second = folio.item_info("cfg")
    assert DataFolio(folio.path).get("cfg") == {"v": 2}
    assert second["version_id"] != first["version_id"]
    assert second["description"] == "first"  # None keeps the description
    assert "inputs" not in second  # lineage is not carried over
    assert payload_path(folio.get_item("cfg")) in _files(root)
    assert f"artifacts/{first['filename']}" not in _files(root)  # unpinned: old payload gone
    assert len([f for f in _files(root) if f.startswith("artifacts/cfg--")]) == 1

    folio.add("cfg", TABLE, overwrite=True, description="")  # another type; "" clears
    third = folio.item_info("cfg")
    assert third["item_type"] == "included_table"
    assert "description" not in third
    pdt.assert_frame_equal(DataFolio(folio.path).get("cfg"), TABLE)
    assert not [f for f in _files(root) if f.startswith("artifacts/cfg--")]


def test_snapshot_views_are_read_only_and_pinned(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add("cfg", {"v": 1})
    folio.add("arr", ARRAY)
    # aiofolio has no create_snapshot yet: publish one with the bundle layer's plan.
    items = Path(folio.path) / "items.json"
    manifest = parse_manifest(items.read_bytes(), source=folio.path)
    items.write_bytes(plan_snapshot(manifest, "v1", description="first").manifest_bytes())
    folio.refresh()
    folio.add("cfg", {"v": 2}, overwrite=True)
    folio.delete("arr")

    assert [s["name"] for s in folio.list_snapshots()] == ["v1"]
    assert folio.list_snapshots()[0]["num_items"] == 2
    view = folio.get_snapshot("v1")
    assert view.read_only
    assert view.get("cfg") == {"v": 1}
    np.testing.assert_array_equal(view.get("arr"), ARRAY)
    assert sorted(view) == ["arr", "cfg"]
    assert folio.get("cfg") == {"v": 2}
    with pytest.raises(ReadOnlyError):
        view.add("x", 1)
    with pytest.raises(ReadOnlyError):
        view.delete("cfg")
    with pytest.raises(ItemNotFoundError, match="did you mean 'v1'"):
        folio.get_snapshot("v11")
    assert all(DataFolio(folio.path).validate().values())


def test_create_options(tmp_path: Path) -> None:
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="allow_existing"):
        DataFolio(busy)
    folio = DataFolio(busy, allow_existing=True)
    folio.add("x", 1)
    assert (busy / "keep.txt").read_text() == "mine"

    suffixed = DataFolio(tmp_path / "run", random_suffix=True)
    assert Path(suffixed.path).name.startswith("run-")
    assert Path(suffixed.path, "items.json").is_file()

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        DataFolio(a_file)


# -- two writers -------------------------------------------------------------------------------


def _two_writers(root: Path) -> tuple[DataFolio, DataFolio]:
    DataFolio(root).add("base", {"n": 0})
    a, b = DataFolio(root, create=False), DataFolio(root, create=False)
    assert a.revision == b.revision == 2
    return a, b


@pytest.mark.parametrize("loser_name", ["loser", "winner"], ids=["other-name", "same-name"])
def test_two_writers_race_local(tmp_path: Path, loser_name: str) -> None:
    root = tmp_path / "b"
    a, b = _two_writers(root)
    a.add("winner", TABLE)
    with pytest.raises(ConcurrentWriteError, match="another writer published first"):
        b.add(loser_name, ARRAY)
    # Nothing of the loser's was published; its next read shows the winner's commit.
    assert sorted(b) == ["base", "winner"]
    assert b.revision == 3
    pdt.assert_frame_equal(b.get("winner"), TABLE)
    fresh = DataFolio(root, create=False)
    assert sorted(fresh) == ["base", "winner"]
    pdt.assert_frame_equal(fresh.get("winner"), TABLE)
    assert fresh.revision == 3
    assert all(fresh.validate().values())
    # No orphan payload from the loser (its upload was removed after the lost race).
    named = {payload_path(fresh.get_item(n)) for n in fresh}
    assert _files(root) == named | {"items.json"}

    # The loser refreshes and tries again.
    b.refresh()
    b.add("late", ARRAY)
    assert sorted(DataFolio(root)) == ["base", "late", "winner"]


def test_metadata_race_leaves_the_loser_unchanged(tmp_path: Path) -> None:
    a, b = _two_writers(tmp_path / "b")
    meta_b = b.metadata  # taken before a's change: writing through it races a
    a.metadata["owner"] = "a"
    with pytest.raises(ConcurrentWriteError):
        meta_b["owner"] = "b"
    assert "owner" not in meta_b
    a.add("more", 1)
    with pytest.raises(ConcurrentWriteError):  # writes never follow: a stale writer fails
        b.delete("base")
    assert b.metadata["owner"] == "a"  # a read follows
    assert DataFolio(a.path).metadata["owner"] == "a"
    assert "base" in DataFolio(a.path)


async def test_concurrent_writers_exactly_one_wins(tmp_path: Path) -> None:
    root = tmp_path / "b"
    a, b = _two_writers(root)
    results = await asyncio.gather(
        a.aadd("from_a", {"by": "a"}), b.aadd("from_b", {"by": "b"}), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], ConcurrentWriteError)
    winner = "from_a" if results[0] is a else "from_b"
    fresh = await DataFolio.aopen(root, create=False)
    assert sorted(fresh) == sorted(["base", winner])
    named = {payload_path(fresh.get_item(n)) for n in fresh}
    assert _files(root) == named | {"items.json"}


# -- hostile manifests and bad input -------------------------------------------------------------

HOSTILE_ITEMS = {
    "name-dotdot": {"name": "../evil", "item_type": "json_data", "filename": "evil.json"},
    "name-absolute": {"name": "/etc/evil", "item_type": "json_data", "filename": "evil.json"},
    "name-backslash": {"name": "a\\..\\evil", "item_type": "json_data", "filename": "e.json"},
    "file-dotdot": {"name": "ok", "item_type": "json_data", "filename": "../../outside.json"},
    "file-inner-dotdot": {"name": "ok", "item_type": "json_data", "filename": "a/../../x.json"},
    "file-absolute": {"name": "ok", "item_type": "json_data", "filename": "/etc/passwd"},
    "file-backslash": {"name": "ok", "item_type": "artifact", "filename": "..\\outside.json"},
    "file-drive": {"name": "ok", "item_type": "model", "filename": "C:/outside.json"},
}


def _manifest_json(items: list[dict[str, Any]], schema_version: int = 2) -> bytes:
    return json.dumps(
        {
            "schema_version": schema_version,
            "revision": 3,
            "metadata": {"created_at": "2024-01-01T00:00:00+00:00"},
            "items": items,
            "snapshots": {},
        },
        indent=2,
    ).encode()


@pytest.mark.parametrize("evil", list(HOSTILE_ITEMS.values()), ids=list(HOSTILE_ITEMS))
def test_hostile_manifest_is_refused_on_open(tmp_path: Path, evil: dict[str, Any]) -> None:
    outside = tmp_path / "outside.json"
    outside.write_text('{"secret": true}')
    root = tmp_path / "bundle"
    (root / "artifacts").mkdir(parents=True)
    good = {"name": "fine", "item_type": "json_data", "filename": "fine.json"}
    (root / "artifacts" / "fine.json").write_text("1")
    manifest = _manifest_json([good, evil])
    (root / "items.json").write_bytes(manifest)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}

    for kwargs in ({}, {"create": False}, {"read_only": True}):
        with pytest.raises(ManifestError, match="outside the bundle") as info:
            DataFolio(root, **kwargs)
        assert str(root) in str(info.value)
    # Nothing was read into a result or written, inside or outside the bundle.
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before


def test_unsupported_object_type(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    for bad in (object(), b"raw bytes", 1 + 2j):
        with pytest.raises(TypeError, match="Unsupported data type") as info:
            folio.add("bad", bad)
        for supported in ("DataFrame", "ndarray", "dict", "datetime", "scikit-learn"):
            assert supported in str(info.value)
    with pytest.raises(ValueError, match=r"[Nn]aive"):
        folio.add("naive", dt.datetime(2024, 1, 1))
    assert len(folio) == 0
    assert _files(Path(folio.path)) == {"items.json"}


def test_missing_item_suggests_close_names(filled: tuple[DataFolio, dict[str, Any]]) -> None:
    folio, _ = filled
    with pytest.raises(ItemNotFoundError, match="did you mean 'table'") as info:
        folio.get("tabel")
    assert isinstance(info.value, KeyError)
    assert "tabel" in str(info.value)
    with pytest.raises(KeyError):
        folio.get_numpy("ns/aray")
    with pytest.raises(ItemNotFoundError):
        folio.item_path("nothing-like-it")


BAD_NAMES = ["", "../x", "a/../b", "/abs", "a\\b", "x@v1", ".hidden", "a//b", "-dash", "a b", "x\n"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_are_refused_and_nothing_is_written(tmp_path: Path, name: str) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add("ok", 1)
    root = Path(folio.path)
    manifest = (root / "items.json").read_bytes()
    with pytest.raises(ValueError):  # the message names the rule
        folio.add(name, {"v": 1})
    with pytest.raises(ValueError):
        folio.add_model(name, MODEL)
    assert (root / "items.json").read_bytes() == manifest
    assert _files(root) == {"items.json", payload_path(folio.get_item("ok"))}


def test_read_only_folio_refuses_every_write(
    filled: tuple[DataFolio, dict[str, Any]], sources: Sources
) -> None:
    folio, _ = filled
    root = Path(folio.path)
    manifest = (root / "items.json").read_bytes()
    ro = DataFolio(root, read_only=True)
    assert ro.read_only
    writes: list[Callable[[], Any]] = [
        lambda: ro.add("x", 1),
        lambda: ro.add("table", TABLE, overwrite=True),
        lambda: ro.add_model("m", MODEL),
        lambda: ro.add_file(sources.notes, name="n2"),
        lambda: ro.reference_table("r", str(sources.external)),
        lambda: ro.delete("table"),
        lambda: ro.add_table("t2", TABLE),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyError, match="read-only") as info:
            write()
        assert isinstance(info.value, PermissionError)
    with pytest.raises(ReadOnlyError):
        ro.metadata["k"] = "v"
    with pytest.raises(ReadOnlyError):
        asyncio.run(ro.aadd("x", 1))
    assert "k" not in ro.metadata
    assert (root / "items.json").read_bytes() == manifest
    pdt.assert_frame_equal(ro.get("table"), TABLE)  # reads still work


def test_manifest_newer_than_schema_2(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    (root / "items.json").write_bytes(_manifest_json([], schema_version=3))
    with pytest.raises(UnsupportedManifestVersionError, match="schema_version 3"):
        DataFolio(root)
    with pytest.raises(ManifestError):  # it is a ManifestError too
        DataFolio(root, create=False)
    assert json.loads((root / "items.json").read_bytes())["schema_version"] == 3


def test_corrupt_manifest_json_names_the_path(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    (root / "items.json").write_bytes(b'{"schema_version": 2, "items": [')
    with pytest.raises(ManifestError, match="not valid JSON") as info:
        DataFolio(root)
    assert str(root) in str(info.value)
    assert "items.json" in str(info.value)
    (root / "items.json").write_bytes(b'"just a string"')
    with pytest.raises(ManifestError, match="must hold an object or a list"):
        DataFolio(root)


def test_missing_bundle_with_create_false(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(RemoteNotFoundError, match="no DataFolio bundle") as info:
        DataFolio(missing, create=False)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(RemoteNotFoundError):
        DataFolio(missing, read_only=True)
    assert not missing.exists()


# -- write protocol failures, through a scripted in-memory store -------------------------------


class _LandsThenFails(MemoryBackend):
    """Stores the manifest, then fails as if its answer was lost (retries used up)."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next_manifest_answer = False

    async def put(self, url: str, data: bytes | str, **kwargs: Any) -> Any:
        stat = await super().put(url, data, **kwargs)
        if self.lose_next_manifest_answer and url.endswith("/items.json"):
            self.lose_next_manifest_answer = False
            raise RemoteTimeoutError(f"answer lost: {url}", url=url)
        return stat


class _CreatedMeanwhile(MemoryBackend):
    """Another writer creates the bundle just before our create-only publish."""

    def __init__(self, theirs: bytes) -> None:
        super().__init__()
        self.theirs: bytes | None = theirs

    async def put(self, url: str, data: bytes | str, **kwargs: Any) -> Any:
        if kwargs.get("if_none_match") and url.endswith("/items.json") and self.theirs:
            self.set(url, self.theirs)
            self.theirs = None
        return await super().put(url, data, **kwargs)


class _OvertakenBeforeTheAnswer(MemoryBackend):
    """Another writer publishes over our manifest before the store's answer reaches us (as when
    a backend stats the object after its PUT)."""

    def __init__(self) -> None:
        super().__init__()
        self.overtake = False

    async def put(self, url: str, data: bytes | str, **kwargs: Any) -> Any:
        stat = await super().put(url, data, **kwargs)
        if self.overtake and url.endswith("/items.json"):
            self.overtake = False
            ours = parse_manifest(data, source=url)
            self.set(url, plan_metadata(ours, {"by": "them"}).manifest_bytes())
            return await super().stat(url)  # the answer describes their manifest
        return stat


@pytest.fixture
def memory_store() -> Callable[[MemoryBackend, int], tuple[str, dict[str, Any]]]:
    """Registers a backend for a fresh ``memory://`` bundle; returns (url, folio kwargs)."""

    def register(backend: MemoryBackend, attempts: int) -> tuple[str, dict[str, Any]]:
        tag = uuid.uuid4().hex
        options = {"test_tag": tag}
        settings = resolve_settings(constructor={"retry_attempts": attempts}).settings
        url = f"memory://bucket-{tag}/bundle"

        async def add() -> None:
            get_engine().pool.add(
                url,
                backend,
                options,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            )

        _portal.call(add)
        return url, {"storage_options": options, "retry_attempts": attempts}

    return register


def test_payload_stays_when_the_publish_may_have_landed(memory_store: Any) -> None:
    backend = _LandsThenFails()
    url, kwargs = memory_store(backend, 1)
    folio = DataFolio(url, **kwargs)
    backend.lose_next_manifest_answer = True
    with pytest.raises(RemoteTimeoutError):
        folio.add("arr", ARRAY)
    # The manifest did land: the item it names must be readable, its payload kept.
    again = DataFolio(url, **kwargs)
    np.testing.assert_array_equal(again.get("arr"), ARRAY)
    assert again.validate() == {"arr": True}


def test_retried_publish_whose_first_try_landed_succeeds(memory_store: Any) -> None:
    backend = _LandsThenFails()
    url, kwargs = memory_store(backend, 3)
    folio = DataFolio(url, **kwargs)
    backend.lose_next_manifest_answer = True
    folio.add("cfg", CONFIG)  # the retry sees its own manifest there: no conflict
    assert folio.revision == 2
    folio.add("more", [1])  # and our token is the current one
    again = DataFolio(url, **kwargs)
    assert again.get("cfg") == CONFIG
    assert again.get("more") == [1]


def test_bundle_created_meanwhile_is_opened(memory_store: Any) -> None:
    theirs = plan_create({"owner": "them"}, source="memory").manifest.to_json_bytes()
    url, kwargs = memory_store(_CreatedMeanwhile(theirs), 1)
    folio = DataFolio(url, metadata={"owner": "us"}, **kwargs)
    assert folio.metadata["owner"] == "them"
    assert folio.revision == 1
    folio.add("x", 1)  # and it is writable over their manifest
    assert DataFolio(url, **kwargs).get("x") == 1


def test_token_is_never_taken_from_another_writers_manifest(memory_store: Any) -> None:
    backend = _OvertakenBeforeTheAnswer()
    url, kwargs = memory_store(backend, 1)
    folio = DataFolio(url, **kwargs)
    backend.overtake = True
    folio.add("ours", 1)
    assert folio.metadata["by"] == "them"  # we now hold their manifest, built on ours
    folio.add("more", 2)
    again = DataFolio(url, **kwargs)
    assert again.metadata["by"] == "them"  # our next write did not publish over theirs
    assert sorted(again) == ["more", "ours"]
