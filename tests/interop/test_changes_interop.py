"""Bundles one package changes stay valid and readable in the other (datafolio 2.3.0).

Each package in turn takes a bundle the other wrote and changes it with the 2.3.0 surface
(snapshots, overwrites, archive, update_item, restore, delete_snapshot with orphans,
import_table, batch); the other package then opens it, ``validate()``s every item, and reads
the current and the snapshot-pinned versions back equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio import DataFolio

TABLE = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
TABLE_V2 = pd.DataFrame({"a": [7]})


def _seed(folio: Any, tmp: Path) -> None:
    folio.add("t", TABLE, description="table")
    folio.add("arr", np.arange(4))
    folio.add("cfg", {"k": 1}, inputs=["t"])
    folio.add("tmp/x", 1)


def _change(folio: Any, tmp: Path) -> None:
    src = tmp / "imported.parquet"
    TABLE_V2.to_parquet(src)
    folio.create_snapshot("base", capture_git=False)
    folio.add("t", TABLE_V2, overwrite=True)
    folio.archive("tmp/*")
    folio.update_item("cfg", description="config", inputs=["t", "arr"])
    folio.import_table("imp", str(src))
    folio.create_snapshot("after", capture_git=False)
    folio.add("arr", np.arange(9), overwrite=True)
    folio.delete_snapshot("after", cleanup_orphans=True)
    folio.cleanup_orphaned_versions()


def _check(folio: Any) -> None:
    report = folio.validate()
    assert report
    assert all(report.values()), report
    pdt.assert_frame_equal(folio.get("t"), TABLE_V2)
    np.testing.assert_array_equal(folio.get("arr"), np.arange(9))
    pdt.assert_frame_equal(folio.get("imp"), TABLE_V2)
    assert folio.get_inputs("cfg") == ["t", "arr"]
    assert folio.list_contents()["json_data"] == ["cfg"]
    assert "tmp/x" in folio.list_contents(include_archived=True)["json_data"]
    assert [s["name"] for s in folio.list_snapshots()] == ["base"]


def _check_snapshot(snap: Any) -> None:
    pdt.assert_frame_equal(snap.get("t"), TABLE)
    np.testing.assert_array_equal(snap.get("arr"), np.arange(4))
    assert snap.get_inputs("cfg") == ["t"]


@pytest.mark.parametrize("direction", ["aiofolio-changes-datafolio", "datafolio-changes-aiofolio"])
def test_changes_cross_over(tmp_path: Path, direction: str) -> None:
    root = tmp_path / "bundle"
    if direction == "aiofolio-changes-datafolio":
        _seed(datafolio.DataFolio(str(root)), tmp_path)
        _change(DataFolio(root), tmp_path)
        other: Any = datafolio.DataFolio(str(root), read_only=True)
        snap: Any = datafolio.DataFolio.load_snapshot(str(root), "base")
    else:
        _seed(DataFolio(root), tmp_path)
        _change(datafolio.DataFolio(str(root)), tmp_path)
        other = DataFolio(root, read_only=True)
        snap = DataFolio.load_snapshot(root, "base")
    _check(other)
    _check_snapshot(snap)


def test_restore_and_batch_cross_over(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    theirs = datafolio.DataFolio(str(root))
    _seed(theirs, tmp_path)
    theirs.create_snapshot("v1", capture_git=False)
    theirs.add("t", TABLE_V2, overwrite=True)
    ours = DataFolio(root)
    with ours.batch():
        ours.add("b1", 1)
        ours.add("b2", 2)
        ours.delete("arr")
    df = datafolio.DataFolio(str(root), read_only=True)
    assert all(df.validate().values())
    assert df.get("b2") == 2
    ours.restore_snapshot("v1", confirm=True)
    df = datafolio.DataFolio(str(root), read_only=True)
    assert all(df.validate().values())
    pdt.assert_frame_equal(df.get("t"), TABLE)
    assert sorted(df.list_contents(include_archived=True)["json_data"]) == ["cfg", "tmp/x"]
    datafolio.DataFolio(str(root)).restore_snapshot("v1", confirm=True)
    assert all(DataFolio(root).validate().values())
