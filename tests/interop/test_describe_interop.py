"""``describe()`` and ``validate()`` give datafolio 2.3.0's answers on the same bundle.

One bundle with every item type, lineage, an archived item, a category, many metadata keys
(long strings, lists, dicts) and snapshots; written once by datafolio and once by aiofolio.
For each, both packages describe it, with every combination of the options that matter, and
the texts are equal line for line; ``validate()`` gives the same dict (referenced tables
included), before and after a payload and an external table go missing.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pytest

from aiofolio import DataFolio

OPTIONS: list[dict[str, Any]] = [
    {},
    {"show_empty": True},
    {"max_metadata_fields": 3},
    {"include_archived": True, "show_paths": True},
    {"pattern": "ns/*"},
    {"pattern": "zz*", "show_empty": True},
    {"snapshot": "v1"},
    {"snapshot": "v2"},
]


def _fill(folio: Any, tmp: Path) -> None:
    ext = tmp / "ext.parquet"
    pd.DataFrame({"e": [1, 2]}).to_parquet(ext)
    notes = tmp / "notes.txt"
    notes.write_text("notes")
    folio.add("t", pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}), description="a table")
    folio.reference_table("r", str(ext), description="external", inputs=["t"])
    folio.add("ns/arr", np.zeros((2, 3)), description="zeros", inputs=["t"])
    folio.add("cfg", {"k": [1, 2]})
    folio.add("when", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    folio.add_model("m", {"w": 1}, description="weights", inputs=["t", "ns/arr"])
    folio.add_file(str(notes), name="notes", category="docs", description="some notes")
    folio.add("gone", 1)
    folio.create_snapshot("v1", description="first", tags=["a", "b"], capture_git=False)
    folio.archive("gone")
    folio.create_snapshot("v2", capture_git=False)


METADATA = {
    "experiment": "e1",
    "long": "x" * 150,
    "listing": list(range(12)),
    "nested": {"a": 1, "b": 2, "c": 3, "d": 4},
    "short": [1, 2],
    "parent_bundle": "/somewhere/else",
    **{f"k{i}": i for i in range(6)},
}


@pytest.fixture(params=["datafolio", "aiofolio"])
def bundle(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    if request.param == "datafolio":
        _fill(datafolio.DataFolio(str(root), metadata=METADATA), tmp_path)
    else:
        _fill(DataFolio(root, metadata=METADATA), tmp_path)
    return root


@pytest.mark.parametrize("options", OPTIONS, ids=[str(o) for o in OPTIONS])
def test_describe_text_is_datafolios(bundle: Path, options: dict[str, Any]) -> None:
    theirs = datafolio.DataFolio(str(bundle), read_only=True).describe(
        return_string=True, **options
    )
    ours = DataFolio(bundle, read_only=True).describe(return_string=True, **options)
    assert ours is not None
    assert theirs is not None
    assert ours.splitlines() == theirs.splitlines()
    assert ours == theirs


def test_describe_prints(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert DataFolio(bundle, read_only=True).describe() is None
    ours = capsys.readouterr().out
    datafolio.DataFolio(str(bundle), read_only=True).describe()
    assert ours == capsys.readouterr().out


def test_snapshot_view_describe(bundle: Path) -> None:
    theirs = datafolio.DataFolio.load_snapshot(str(bundle), "v1").describe(return_string=True)
    ours = DataFolio.load_snapshot(bundle, "v1").describe(return_string=True)
    assert ours == theirs


def test_validate_is_datafolios(bundle: Path, tmp_path: Path) -> None:
    theirs = datafolio.DataFolio(str(bundle), read_only=True)
    ours = DataFolio(bundle, read_only=True)
    assert ours.validate() == theirs.validate()
    assert all(ours.validate().values())
    assert ours.is_valid()
    assert theirs.is_valid()
    (tmp_path / "ext.parquet").unlink()
    Path(ours.item_path("cfg")).unlink()
    theirs = datafolio.DataFolio(str(bundle), read_only=True)
    report = ours.validate()
    assert report == theirs.validate()
    assert {name for name, ok in report.items() if not ok} == {"r", "cfg"}
    assert not ours.is_valid()
    assert not theirs.is_valid()


def test_describe_of_a_writable_folio(bundle: Path) -> None:
    theirs = datafolio.DataFolio(str(bundle)).describe(return_string=True, show_empty=True)
    assert DataFolio(bundle).describe(return_string=True, show_empty=True) == theirs
