"""Curation as datafolio 2.3.0 does it, on real local bundles and on S3 (moto).

* ``archive``/``unarchive`` (a name, a list, a glob) and ``update_item`` leave the manifest
  datafolio leaves for the same calls (copy-on-write of pinned versions included), and the
  results open and validate in datafolio.
* ``copy`` forks the current versions (``include_items``/``exclude_items``/``follow_lineage``/
  ``include_archived``/``metadata_updates``/``name``/``random_suffix``), payloads byte for
  byte, locally and S3 to S3; the copy validates in datafolio.
* ``import_table`` copies Parquet byte for byte and converts csv/feather/arrow in blocks,
  recording the fields datafolio records; bad input fails before anything is published.
* ``mutable_references`` lists referenced tables.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import datafolio
import pandas as pd
import pandas.testing as pdt
import pyarrow as pa
import pyarrow.feather as feather
import pytest

from aiofolio import DataFolio, ItemNotFoundError
from aiofolio.testing import MotoServer

TABLE = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
VOLATILE = ("created_at", "checksum", "size_bytes")


def _items(root: Path) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads((root / "items.json").read_text())["items"]
    return [{k: v for k, v in i.items() if k not in VOLATILE} for i in items]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _lineage(folio: Any) -> None:
    folio.add("raw", 1, description="raw")
    folio.add("clean", 2, inputs=["raw"])
    folio.add("feat", 3, inputs=["clean"])
    folio.add("tmp/a", 4)
    folio.add("tmp/b", 5)
    folio.add("other", 6)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[DataFolio, Any]:
    ours = DataFolio(tmp_path / "ours")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    _lineage(ours)
    _lineage(theirs)
    return ours, theirs


def _same(ours: DataFolio, theirs: Any) -> None:
    assert _items(Path(ours.path)) == _items(Path(theirs.path))


def test_archive_and_unarchive_as_datafolio(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    for folio in (ours, theirs):
        folio.create_snapshot("s", capture_git=False)
        folio.archive("raw")
        folio.archive(["clean", "other"])
        folio.archive("tmp/*")
    _same(ours, theirs)
    assert ours.list_contents() == theirs.list_contents()
    assert ours.list_contents(include_archived=True) == theirs.list_contents(include_archived=True)
    assert ours.list_contents()["json_data"] == ["feat"]
    assert "raw" in ours  # archived items are still there
    assert ours.get("raw") == 1
    assert "raw" not in ours.describe(return_string=True)
    assert "raw" in ours.describe(return_string=True, include_archived=True)
    assert ours.snapshots["s"].get("raw") == 1
    for folio in (ours, theirs):
        folio.unarchive("tmp/*")
        folio.unarchive(["raw"])
    _same(ours, theirs)
    assert ours.list_contents()["json_data"] == theirs.list_contents()["json_data"]
    with pytest.raises(KeyError):
        ours.archive("nope")
    with pytest.raises(KeyError):
        ours.unarchive(["raw", "nope"])
    before = (Path(ours.path) / "items.json").read_bytes()
    ours.archive("zz*")  # a glob that matches nothing changes nothing
    ours.archive("feat")
    ours.archive("feat")  # already archived: no new revision
    assert json.loads(before)["revision"] + 1 == ours.revision
    assert datafolio.DataFolio(ours.path, read_only=True).is_valid()


def test_update_item_as_datafolio(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    for folio in (ours, theirs):
        folio.create_snapshot("s", capture_git=False)
        folio.update_item("clean", description="cleaned", inputs=["raw", "other"])
        folio.update_item("clean", description="")
        folio.update_item("feat", inputs=[])
        folio.update_item("raw", description="still raw")
    _same(ours, theirs)
    assert ours.item_info("clean").get("description") is None
    assert ours.get_inputs("clean") == ["raw", "other"]
    assert ours.get_inputs("feat") == []
    view = ours.get_snapshot("s")
    assert view.get_inputs("clean") == ["raw"]  # the snapshot keeps its descriptor
    assert view.item_info("raw")["description"] == "raw"
    with pytest.raises(KeyError):
        ours.update_item("nope", description="x")
    with pytest.raises(TypeError):
        ours.update_item("raw", inputs="raw")  # type: ignore[arg-type]
    df = datafolio.DataFolio(ours.path, read_only=True)
    assert df.is_valid()
    assert df.get_inputs("clean") == ["raw", "other"]


def test_lineage_queries_match_datafolio(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    assert ours.get_lineage_graph() == theirs.get_lineage_graph()
    for name in ("raw", "clean", "feat", "other"):
        assert ours.get_inputs(name) == theirs.get_inputs(name)
        assert ours.get_dependents(name) == theirs.get_dependents(name)
    assert ours.get_dependents("raw") == ["clean"]
    with pytest.raises(KeyError):
        ours.get_inputs("nope")
    with pytest.raises(KeyError):
        ours.get_dependents("nope")
    with pytest.warns(UserWarning, match="used by: clean"):
        ours.delete("raw")
    ours.delete("clean", warn_dependents=False)


def test_copy_selects_like_datafolio(pair: tuple[DataFolio, Any], tmp_path: Path) -> None:
    ours, theirs = pair
    ours.archive("other")
    theirs.archive("other")
    cases: list[dict[str, Any]] = [
        {},
        {"include_items": ["feat"], "follow_lineage": True},
        {"include_items": ["feat"]},
        {"exclude_items": ["raw", "tmp/a"]},
        {"include_archived": True},
    ]
    for index, case in enumerate(cases):
        mine = ours.copy(tmp_path / f"mine{index}", metadata_updates={"n": index}, **case)
        yours = theirs.copy(str(tmp_path / f"yours{index}"), **case)
        assert sorted(mine.list_contents(include_archived=True)["json_data"]) == sorted(
            yours.list_contents(include_archived=True)["json_data"]
        ), case
        assert mine.metadata["n"] == index
        assert mine.list_snapshots() == []
        root = Path(mine.path)
        for item in json.loads((root / "items.json").read_text())["items"]:
            path = root / "artifacts" / item["filename"]
            assert _md5(path) == item["checksum"]
        assert datafolio.DataFolio(mine.path, read_only=True).is_valid()
    named = ours.copy(tmp_path, name="named")
    assert named.path == str(tmp_path / "named")
    suffixed = ours.copy(tmp_path / "sfx", random_suffix=True)
    assert Path(suffixed.path).name.startswith("sfx-")
    with pytest.raises(ValueError, match="both"):
        ours.copy(tmp_path / "x", include_items=["raw"], exclude_items=["feat"])
    with pytest.raises(ValueError, match="already contains a folio"):
        ours.copy(tmp_path / "mine0")
    with pytest.raises(ItemNotFoundError):
        ours.copy(tmp_path / "y", include_items=["nope"])
    assert not (tmp_path / "y").exists()


def test_copy_s3_to_s3_and_back(moto_server: MotoServer, s3_bucket: str, tmp_path: Path) -> None:
    opts = moto_server.storage_options()
    source = DataFolio(
        f"s3://{s3_bucket}/src",
        storage_options=opts,
        metadata={"m": 1},
        allow_local_references=True,  # "r" is a file in the test's folder; copies inherit it
    )
    source.add("t", TABLE)
    source.add("j", {"k": 1}, inputs=["t"])
    ext = tmp_path / "ext.parquet"
    TABLE.to_parquet(ext)
    source.reference_table("r", str(ext))
    copied = source.copy(f"s3://{s3_bucket}/dst", metadata_updates={"parent": "src"})
    pdt.assert_frame_equal(copied.get("t"), TABLE)
    assert copied.get("j") == {"k": 1}
    pdt.assert_frame_equal(copied.get("r"), TABLE)
    assert dict(copied.metadata)["m"] == 1
    assert copied.metadata["parent"] == "src"
    keys = {
        o["Key"]
        for o in moto_server.client.list_objects_v2(Bucket=s3_bucket, Prefix="dst/")["Contents"]
    }
    assert keys == {"dst/items.json", "dst/tables/t--r2.parquet", "dst/artifacts/j--r3.json"}
    local = source.copy(tmp_path / "local")
    assert datafolio.DataFolio(local.path, read_only=True).is_valid()
    with pytest.raises(ValueError, match="already contains"):
        source.copy(f"s3://{s3_bucket}/dst")


def test_import_table_parquet_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    TABLE.to_parquet(src)
    ours = DataFolio(tmp_path / "ours")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    ours.import_table("p", src, description="imported")
    theirs.import_table("p", str(src), description="imported")
    item = ours.item_info("p")
    assert item["checksum"] == _md5(src)
    assert (Path(ours.item_path("p"))).read_bytes() == src.read_bytes()
    assert {k: v for k, v in item.items() if k != "created_at"} == {
        k: v for k, v in theirs.item_info("p").items() if k != "created_at"
    }
    pdt.assert_frame_equal(ours.get("p"), TABLE)
    assert datafolio.DataFolio(ours.path, read_only=True).get("p").equals(TABLE)


@pytest.mark.parametrize("fmt", ["csv", "feather", "arrow"])
def test_import_table_converts(tmp_path: Path, fmt: str) -> None:
    big = pd.DataFrame({"i": range(5000), "s": [f"row{i}" for i in range(5000)]})
    src = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        big.to_csv(src, index=False)
    elif fmt == "feather":
        feather.write_feather(big, src)
    else:
        table = pa.Table.from_pandas(big, preserve_index=False)
        with pa.OSFile(str(src), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
            for batch in table.to_batches(max_chunksize=700):
                w.write_batch(batch)
    ours = DataFolio(tmp_path / "ours")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    kw: dict[str, Any] = {"block_size": 4096} if fmt == "csv" else {}
    ours.import_table(None, src, **kw)
    theirs.import_table(None, str(src), **kw)
    got = ours.get("in")
    assert got["i"].tolist() == list(range(5000))
    assert got["s"].tolist() == big["s"].tolist()
    mine, yours = ours.item_info("in"), theirs.item_info("in")
    for key in ("item_type", "table_format", "num_rows", "num_cols", "columns", "dtypes"):
        assert mine[key] == yours[key], key
    assert mine["filename"].endswith(".parquet")
    assert datafolio.DataFolio(ours.path, read_only=True).is_valid()


def test_import_table_errors(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    before = (tmp_path / "b" / "items.json").read_bytes()
    with pytest.raises(FileNotFoundError):
        folio.import_table("x", tmp_path / "missing.parquet")
    bad = tmp_path / "data.xlsx"
    bad.write_text("x")
    with pytest.raises(ValueError, match="infer"):
        folio.import_table("x", bad)
    with pytest.raises(ValueError, match="Unsupported table_format"):
        folio.import_table("x", bad, table_format="xlsx")
    csv = tmp_path / "mixed.csv"
    csv.write_text("a\n" + "1\n" * 2000 + "oops\n")
    with pytest.raises(ValueError):
        folio.import_table("m", csv, block_size=1024)
    assert (tmp_path / "b" / "items.json").read_bytes() == before
    assert list((tmp_path / "b" / "tables").iterdir()) == []
    src = tmp_path / "in.parquet"
    TABLE.to_parquet(src)
    folio.import_table("p", src)
    with pytest.raises(ValueError, match="already exists"):
        folio.import_table("p", src)
    folio.import_table("p", src, overwrite=True)


def test_mutable_references(tmp_path: Path) -> None:
    ext = tmp_path / "ext.parquet"
    TABLE.to_parquet(ext)
    folio = DataFolio(tmp_path / "b")
    folio.add("t", TABLE)
    folio.reference_table("r", ext)
    assert folio.mutable_references() == ["r"]
    folio.create_snapshot("s", capture_git=False)
    info = folio.get_snapshot_info("s")
    assert info["mutable_references"] == ["r"]
    assert "reference link" in info["mutable_reference_warning"]
