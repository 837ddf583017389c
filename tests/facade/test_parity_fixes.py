"""Smaller datafolio parity points, each checked against datafolio's own behaviour.

* ``copy()`` keeps the source's ``created_at`` and ``_datafolio`` (datafolio 2.3.0 copies the
  whole metadata); ``updated_at`` is the copy's.
* ``copy(include_items=..., follow_lineage=...)`` copies an archived item (named, or reached
  through lineage) only with ``include_archived=True``, as datafolio does.
* datafolio's private views that code written for it reads (``_items``, ``_snapshots``,
  ``_pin_depth``) give what datafolio's give, as copies.
* Every public name of datafolio 1.3's ``DataFolio`` exists on ours, and the names 1.3 had
  but 2.3.0 dropped take 1.3's parameters in 1.3's order (listed here from 1.3.0's
  signatures); they behave as 1.3 documented (type checks raise ``ValueError``, missing names
  ``KeyError``).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pytest

from aiofolio import DataFolio

TABLE = pd.DataFrame({"a": [1, 2, 3]})
BORN = "2025-01-02T03:04:05+00:00"


def test_copy_keeps_the_source_created_at_like_datafolio(tmp_path: Path) -> None:
    ours = DataFolio(tmp_path / "ours", metadata={"created_at": BORN, "k": 1})
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"), metadata={"created_at": BORN, "k": 1})
    for folio in (ours, theirs):
        folio.add("j", {"a": 1})
    mine = ours.copy(tmp_path / "mine", metadata_updates={"parent": "ours"})
    their_copy = theirs.copy(str(tmp_path / "their_copy"), metadata_updates={"parent": "t"})
    assert their_copy.metadata["created_at"] == BORN  # datafolio's behaviour
    assert mine.metadata["created_at"] == BORN
    assert mine.metadata["_datafolio"] == ours.metadata["_datafolio"]
    assert mine.metadata["updated_at"] > BORN
    assert (mine.metadata["k"], mine.metadata["parent"]) == (1, "ours")
    reopened = datafolio.DataFolio(str(tmp_path / "mine"))
    assert reopened.metadata["created_at"] == BORN
    assert reopened.get("j") == {"a": 1}
    # metadata_updates may still set created_at, as in datafolio
    again = ours.copy(tmp_path / "again", metadata_updates={"created_at": "2020-01-01T00:00:00"})
    assert again.metadata["created_at"] == "2020-01-01T00:00:00"


#: datafolio 1.3.0's public ``DataFolio`` names (``None``: a property).
NAMES_13: dict[str, tuple[str, ...] | None] = {
    **dict.fromkeys(
        [
            "artifacts",
            "data",
            "in_snapshot_mode",
            "loaded_snapshot",
            "models",
            "path",
            "read_only",
            "snapshots",
            "tables",
        ]
    ),
    **dict.fromkeys(
        [
            "archive",
            "batch",
            "cache_status",
            "cleanup_orphaned_versions",
            "clear_cache",
            "compare_snapshots",
            "copy",
            "create_snapshot",
            "delete",
            "delete_snapshot",
            "describe",
            "diff_from_snapshot",
            "export_snapshot",
            "get_dependents",
            "get_inputs",
            "get_lineage_graph",
            "get_model",
            "get_snapshot",
            "get_snapshot_info",
            "invalidate_cache",
            "is_valid",
            "list_contents",
            "list_snapshots",
            "load_snapshot",
            "reference_table",
            "refresh",
            "refresh_cache",
            "restore_snapshot",
            "unarchive",
            "update_item",
            "validate",
            "add_file",
            "add_model",
        ],
        (),
    ),
    # the names 1.3 had and 2.3.0 dropped, with their parameters (1.3's 'code', 'models'
    # and 'hyperparameters' lineage fields excepted: 2.x records none of them)
    "add_artifact": ("name", "path", "category", "description", "overwrite"),
    "add_data": ("name", "data", "reference", "description"),
    "add_json": ("name", "data", "description", "overwrite", "inputs"),
    "add_numpy": ("name", "array", "description", "overwrite", "inputs"),
    "add_sklearn": ("name", "model"),
    "add_table": ("name", "data", "description", "overwrite", "inputs"),
    "add_timestamp": ("name", "timestamp", "description", "overwrite", "inputs"),
    "get_artifact_info": ("name",),
    "get_artifact_path": ("name",),
    "get_data": ("name",),
    "get_data_path": ("name",),
    "get_item_path": ("name",),
    "get_json": ("name",),
    "get_json_path": ("name",),
    "get_model_info": ("name",),
    "get_model_path": ("name",),
    "get_numpy": ("name",),
    "get_numpy_path": ("name",),
    "get_sklearn": ("name",),
    "get_table": ("name",),
    "get_table_info": ("name",),
    "get_table_path": ("name",),
    "get_timestamp": ("name", "as_unix"),
    "get_timestamp_path": ("name",),
    "reproduce_instructions": ("snapshot",),
}


@pytest.mark.parametrize("name", sorted(NAMES_13))
def test_every_13_name_exists_with_its_parameters(name: str) -> None:
    assert hasattr(DataFolio, name), name
    params = NAMES_13[name]
    if not params:
        return
    ours = [p for p in inspect.signature(getattr(DataFolio, name)).parameters if p != "self"]
    assert tuple(ours[: len(params)]) == params


def test_13_aliases_behave_as_13_documented(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add_table("t", TABLE, "a table")  # description positional, as in 1.3
    folio.add_numpy("arr", np.arange(3), "an array", False, ["t"])
    folio.add_json("j", {"a": 1})
    folio.add_timestamp("ts", pd.Timestamp("2025-01-01", tz="UTC").to_pydatetime())
    notes = tmp_path / "notes.txt"
    notes.write_bytes(b"n")
    folio.add_artifact("notes", notes, "docs", "some notes")
    assert folio.item_info("t")["description"] == "a table"
    assert folio.get_inputs("arr") == ["t"]
    assert folio.item_info("notes")["category"] == "docs"
    for getter, name in [
        (folio.get_table_path, "t"),
        (folio.get_numpy_path, "arr"),
        (folio.get_json_path, "j"),
        (folio.get_timestamp_path, "ts"),
        (folio.get_item_path, "t"),
        (folio.get_data_path, "j"),
    ]:
        path = getter(name)
        assert path == folio.item_path(name)
        assert Path(path).is_file()
    assert Path(folio.get_data_path("notes")).read_bytes() == b"n"
    assert folio.get_table_info("t")["item_type"] == "included_table"
    assert folio.get_artifact_info("notes")["item_type"] == "artifact"
    with pytest.raises(ValueError, match="is not a numpy array"):
        folio.get_numpy_path("j")
    with pytest.raises(ValueError, match="is not a model"):
        folio.get_model_info("t")
    with pytest.raises(KeyError):
        folio.get_json_path("nope")
    folio.add_data("ref", reference=str(tmp_path / "b" / folio.item_info("t")["filename"]))
    assert folio.item_info("ref")["item_type"] == "referenced_table"


def test_reproduce_instructions(tmp_path: Path) -> None:
    folio: Any = DataFolio(tmp_path / "b", metadata={"accuracy": 0.9})
    with pytest.raises(ValueError, match="no snapshots exist"):
        folio.reproduce_instructions()
    folio.add("j", 1)
    folio.create_snapshot("v1", description="first", capture_git=False)
    text = folio.reproduce_instructions()
    assert text.splitlines()[:5] == [
        "To reproduce snapshot 'v1':",
        "Description: first",
        "",
        "1. Expected results:",  # no git/environment/execution recorded: no such steps
        "   - accuracy: 0.9",
    ]
    assert "created_at" not in text
    assert text.endswith("\n")
    with pytest.raises(KeyError):
        folio.reproduce_instructions("nope")


def _archived_lineage(folio: Any) -> None:
    folio.add("raw", 1)
    folio.add("processed", 2, inputs=["raw"])
    folio.add("result", 3, inputs=["processed"])
    folio.add("other", 4)
    folio.archive(["raw", "other"])


@pytest.mark.parametrize(
    "case",
    [
        {"include_items": ["result"], "follow_lineage": True},
        {"include_items": ["result"], "follow_lineage": True, "include_archived": True},
        {"include_items": ["other", "result"]},
        {"include_items": ["other", "result"], "include_archived": True},
    ],
)
def test_copy_skips_archived_selected_items_like_datafolio(
    tmp_path: Path, case: dict[str, Any]
) -> None:
    ours = DataFolio(tmp_path / "ours")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    _archived_lineage(ours)
    _archived_lineage(theirs)
    mine = ours.copy(tmp_path / "mine", **case)
    their_copy = theirs.copy(str(tmp_path / "their_copy"), **case)
    assert sorted(mine.item_names()) == sorted(their_copy._items)
    archived = "raw" if case.get("follow_lineage") else "other"
    assert (archived in mine.item_names()) is bool(case.get("include_archived"))


def test_private_views_match_datafolio(tmp_path: Path) -> None:
    ours = DataFolio(tmp_path / "ours")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    for folio in (ours, theirs):
        _archived_lineage(folio)
        folio.create_snapshot("v1", capture_git=False)
    mine: Any = ours
    assert sorted(mine._items) == sorted(theirs._items)
    assert mine._items["raw"]["archived"] is True
    assert mine._items["result"]["inputs"] == theirs._items["result"]["inputs"]
    assert sorted(mine._snapshots["v1"]["item_versions"]) == sorted(
        theirs._snapshots["v1"]["item_versions"]
    )
    mine._items["raw"]["archived"] = False  # a copy: the folio is unchanged
    assert mine._items["raw"]["archived"] is True
    assert mine._pin_depth == theirs._pin_depth == 0
    with ours.pinned(), theirs.pinned(), ours.pinned(), theirs.pinned():
        assert mine._pin_depth == theirs._pin_depth == 2
    assert mine._pin_depth == 0
