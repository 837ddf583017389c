"""Snapshots as datafolio 2.3.0 has them, on real local bundles and on S3 (moto).

* ``create_snapshot`` writes datafolio's record (``item_versions``, ``metadata_snapshot``,
  ``tags``, ``description``, ``git``/``environment``/``execution`` when asked), and datafolio
  reads every pinned version back; ``list_snapshots``/``get_snapshot_info``/``snapshots``
  return what datafolio returns for the same bundle.
* ``delete_snapshot`` (with and without ``cleanup_orphans``), ``restore_snapshot`` and
  ``cleanup_orphaned_versions`` leave the same items, versions and payload files datafolio
  leaves, and the bundle ``validate()``s in datafolio.
* ``load_snapshot``/``get_snapshot`` views are read-only, show the snapshot's metadata and
  items; ``export_snapshot`` makes a standalone bundle (payloads byte for byte) datafolio
  opens, also from S3 to S3.
* ``diff_from_snapshot``/``compare_snapshots`` equal datafolio's answers.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio import (
    DataFolio,
    InvalidArgumentError,
    ItemNotFoundError,
    ReadOnlyError,
    SnapshotView,
    UsageError,
)
from aiofolio.testing import MotoServer

TABLE = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
TABLE_V2 = pd.DataFrame({"a": [9]})


def _manifest(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "items.json").read_text())
    return data


def _versions(root: Path) -> list[tuple[str, str, bool]]:
    return sorted((i["name"], i["version_id"], i["is_current"]) for i in _manifest(root)["items"])


def _payloads(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for folder in ("tables", "models", "artifacts")
        for p in (root / folder).rglob("*")
        if p.is_file()
    }


def _history(folio: Any) -> None:
    """The same history through either package's API."""
    folio.add("a", 1, description="first a")
    folio.add("t", TABLE)
    folio.create_snapshot("s1", description="one", tags=["x", "y"], capture_git=False)
    folio.add("a", 10, overwrite=True)
    folio.add("c", 3)
    folio.delete("t")
    folio.metadata["stage"] = "two"
    folio.create_snapshot("s2", capture_git=False)
    folio.add("a", 100, overwrite=True)
    folio.add("d", 4)


@pytest.fixture
def pair(tmp_path: Path) -> tuple[DataFolio, Any]:
    ours = DataFolio(tmp_path / "ours", metadata={"exp": 1})
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"), metadata={"exp": 1})
    _history(ours)
    _history(theirs)
    return ours, theirs


def _strip(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "timestamp"} for r in rows]


def test_create_snapshot_record_and_listings_match_datafolio(
    pair: tuple[DataFolio, Any],
) -> None:
    ours, theirs = pair
    root = Path(ours.path)
    record = _manifest(root)["snapshots"]["s1"]
    their_record = _manifest(Path(theirs.path))["snapshots"]["s1"]
    assert list(record) == list(their_record)  # datafolio's on-disk record, key for key
    assert record["item_versions"] == their_record["item_versions"] == {"a": "a--r2", "t": "t--r3"}
    assert record["metadata_snapshot"].keys() == their_record["metadata_snapshot"].keys()
    assert _versions(root) == _versions(Path(theirs.path))  # the kept versions too
    # aiofolio also records size_bytes of every payload (datafolio only of tables)
    ours_items = {
        (i["name"], i["version_id"]): set(i) - {"size_bytes"} for i in _manifest(root)["items"]
    }
    their_items = {
        (i["name"], i["version_id"]): set(i) - {"size_bytes"}
        for i in _manifest(Path(theirs.path))["items"]
    }
    assert ours_items == their_items
    assert record["tags"] == ["x", "y"]
    assert _strip(ours.list_snapshots()) == _strip(theirs.list_snapshots())
    assert [r["name"] for r in ours.list_snapshots()] == ["s2", "s1"]  # newest first
    mine, yours = ours.get_snapshot_info("s1"), theirs.get_snapshot_info("s1")
    assert set(mine) == set(yours)
    assert mine["item_versions"] == yours["item_versions"]
    mine["item_versions"]["a"] = "changed"  # a copy
    assert ours.get_snapshot_info("s1")["item_versions"]["a"] == "a--r2"
    with pytest.raises(KeyError):
        ours.get_snapshot_info("nope")
    with pytest.raises(ValueError, match="already exists"):
        ours.create_snapshot("s1")
    with pytest.raises(ValueError):
        ours.create_snapshot("bad@name")

    # datafolio reads every version the snapshots pin from the bundle aiofolio wrote.
    df = datafolio.DataFolio(str(root), read_only=True)
    assert df.is_valid()
    s1 = datafolio.DataFolio.load_snapshot(str(root), "s1")
    assert s1.get("a") == 1
    pdt.assert_frame_equal(s1.get("t"), TABLE)
    assert datafolio.DataFolio.load_snapshot(str(root), "s2").get("a") == 10
    assert df.get("a") == 100


def test_snapshot_context_capture(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (["init", "-q"], ["config", "user.email", "t@e"], ["config", "user.name", "t"]):
        subprocess.run(["git", *args], cwd=repo, check=True)
    (repo / "f.txt").write_text("x")
    subprocess.run(["git", "add", "."], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-qm", "c"], cwd=repo, check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    ).stdout.strip()
    folio = DataFolio(tmp_path / "b")
    folio.add("a", 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo)
        folio.create_snapshot("g", capture_environment=True, capture_execution=True)
        (repo / "f.txt").write_text("dirty")
        folio.create_snapshot("dirty")
        folio.create_snapshot("bare", capture_git=False)
    info = folio.get_snapshot_info("g")
    assert info["git"] == {
        "commit": head,
        "commit_short": head[:7],
        "branch": info["git"]["branch"],
        "dirty": False,
    }
    assert set(info["environment"]) == {"python_version", "platform"}
    assert info["execution"]["working_dir"] == str(repo)
    assert folio.get_snapshot_info("dirty")["git"]["dirty"] is True
    assert "git" not in folio.get_snapshot_info("bare")
    assert "environment" not in folio.get_snapshot_info("dirty")


def test_snapshots_mapping_and_views(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    assert list(ours.snapshots) == list(theirs.snapshots) == ["s1", "s2"]
    assert len(ours.snapshots) == 2
    assert "s1" in ours.snapshots
    assert "nope" not in ours.snapshots
    view = ours.snapshots["s1"]
    assert isinstance(view, SnapshotView)
    theirs_view = theirs.snapshots["s1"]
    for attr in ("name", "description", "tags", "item_versions"):
        assert getattr(view, attr) == getattr(theirs_view, attr), attr
    assert view.metadata["exp"] == 1
    assert "stage" not in view.metadata
    assert view.get("a") == 1
    pdt.assert_frame_equal(view.get("t"), TABLE)
    pdt.assert_frame_equal(view.get_table("t"), TABLE)
    assert view.scan_table("t").collect().to_pandas().equals(TABLE)
    with pytest.raises(KeyError):
        ours.snapshots["nope"]

    snap = DataFolio.load_snapshot(ours.path, "s1")
    assert snap.in_snapshot_mode
    assert snap.loaded_snapshot == "s1"
    assert not ours.in_snapshot_mode
    assert ours.loaded_snapshot is None
    assert snap.read_only
    assert sorted(snap) == ["a", "t"]
    assert snap.get("a") == 1
    assert dict(snap.metadata)["exp"] == 1
    assert "stage" not in snap.metadata
    assert ours.get_snapshot("s2").metadata["stage"] == "two"
    assert repr(snap).endswith("[READ-ONLY] [snapshot: s1]")
    for write in (
        lambda: snap.add("x", 1),
        lambda: snap.delete("a"),
        lambda: snap.create_snapshot("s3"),
        lambda: snap.archive("a"),
    ):
        with pytest.raises(ReadOnlyError) as info:
            write()
        assert isinstance(info.value, RuntimeError)
    with pytest.raises(ReadOnlyError):
        snap.metadata["k"] = 1
    with pytest.raises(KeyError):
        DataFolio.load_snapshot(ours.path, "nope")


def test_diff_and_compare_match_datafolio(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    for snapshot in ("s1", "s2", None):
        assert ours.diff_from_snapshot(snapshot) == theirs.diff_from_snapshot(snapshot)
    diff = ours.diff_from_snapshot("s1")
    assert diff["added_items"] == ["c", "d"]
    assert diff["removed_items"] == ["t"]
    assert diff["modified_items"] == ["a"]
    assert diff["metadata_changes"] == {"stage": (None, "two")}
    mine = ours.compare_snapshots("s1", "s2")
    yours = theirs.compare_snapshots("s1", "s2")
    assert {k: v for k, v in mine.items() if k != "metadata_changes"} == {
        k: v for k, v in yours.items() if k != "metadata_changes"
    }
    assert mine["metadata_changes"]["stage"] == (None, "two")
    assert set(mine["metadata_changes"]) == set(yours["metadata_changes"])
    with pytest.raises(KeyError):
        ours.compare_snapshots("s1", "nope")
    empty = DataFolio(Path(ours.path).parent / "empty")
    with pytest.raises(ValueError, match="No snapshots"):
        empty.diff_from_snapshot()


def test_restore_snapshot_as_datafolio(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    with pytest.raises(InvalidArgumentError, match="confirm=True"):
        ours.restore_snapshot("s1")
    with pytest.raises(KeyError):
        ours.restore_snapshot("nope", confirm=True)
    ours.restore_snapshot("s1", confirm=True)
    theirs.restore_snapshot("s1", confirm=True)
    root, theirs_root = Path(ours.path), Path(theirs.path)
    assert _versions(root) == _versions(theirs_root)
    assert _payloads(root) == _payloads(theirs_root)
    assert ours.get("a") == 1
    pdt.assert_frame_equal(ours.get("t"), TABLE)
    assert sorted(ours) == ["a", "t"]
    assert "stage" not in ours.metadata
    assert ours.list_snapshots()[1]["name"] == "s1"  # the snapshot stays
    df = datafolio.DataFolio(str(root), read_only=True)
    assert df.is_valid()
    assert df.get("a") == 1
    assert datafolio.DataFolio.load_snapshot(str(root), "s2").get("a") == 10


def test_delete_snapshot_and_cleanup_orphans_as_datafolio(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    root, theirs_root = Path(ours.path), Path(theirs.path)
    ours.delete_snapshot("s2")
    theirs.delete_snapshot("s2")
    assert _versions(root) == _versions(theirs_root)
    assert _payloads(root) == _payloads(theirs_root)
    assert ours.cleanup_orphaned_versions(dry_run=True) == ["a--r5.json"]
    assert ours.cleanup_orphaned_versions(dry_run=True) == theirs.cleanup_orphaned_versions(
        dry_run=True
    )
    assert "artifacts/a--r5.json" in _payloads(root)
    assert ours.cleanup_orphaned_versions() == theirs.cleanup_orphaned_versions()
    assert _versions(root) == _versions(theirs_root)
    assert _payloads(root) == _payloads(theirs_root)
    assert "artifacts/a--r5.json" not in _payloads(root)
    assert ours.cleanup_orphaned_versions() == []
    with pytest.raises(KeyError):
        ours.delete_snapshot("s2")
    ours.delete_snapshot("s1", cleanup_orphans=True)
    theirs.delete_snapshot("s1", cleanup_orphans=True)
    assert _versions(root) == _versions(theirs_root)
    assert _payloads(root) == _payloads(theirs_root)
    assert all(current for _, _, current in _versions(root))
    assert datafolio.DataFolio(str(root), read_only=True).is_valid()


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def test_export_snapshot_local(pair: tuple[DataFolio, Any], tmp_path: Path) -> None:
    ours, _ = pair
    target = tmp_path / "exported"
    exported = ours.export_snapshot("s1", target)
    assert isinstance(exported, DataFolio)
    assert sorted(exported) == ["a", "t"]
    assert exported.get("a") == 1
    manifest = _manifest(target)
    assert manifest["snapshots"] == {}
    assert all(i["is_current"] for i in manifest["items"])
    source = manifest["metadata"]["_source_snapshot"]
    assert source["name"] == "s1"
    assert source["source_bundle"] == ours.path
    assert source["tags"] == ["x", "y"]
    assert manifest["metadata"]["exp"] == 1
    for item in manifest["items"]:
        folder = "tables" if item["item_type"] == "included_table" else "artifacts"
        assert _md5(target / folder / item["filename"]) == item["checksum"]
        assert _md5(Path(ours.path) / folder / item["filename"]) == item["checksum"]
    assert (target / "README.md").is_file()
    assert (target / "CONTENTS.md").is_file()
    df = datafolio.DataFolio(str(target), read_only=True)
    assert df.is_valid()
    assert df.get("a") == 1
    with pytest.raises(ValueError, match="already exists"):
        ours.export_snapshot("s1", target)
    bare = ours.export_snapshot("s2", tmp_path / "bare", include_snapshot_metadata=False)
    assert "_source_snapshot" not in bare.metadata
    assert bare.get("a") == 10
    with pytest.raises(KeyError):
        ours.export_snapshot("nope", tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_snapshots_on_s3(moto_server: MotoServer, s3_bucket: str, tmp_path: Path) -> None:
    opts = moto_server.storage_options()
    url = f"s3://{s3_bucket}/snaps"
    folio = DataFolio(url, storage_options=opts, cache_enabled=False)
    folio.add("arr", np.arange(5))
    folio.add("t", TABLE)
    folio.create_snapshot("v1", capture_git=False)
    folio.add("t", TABLE_V2, overwrite=True)
    assert folio.snapshots["v1"].get("t").equals(TABLE)
    exported = folio.export_snapshot("v1", f"s3://{s3_bucket}/exported")
    pdt.assert_frame_equal(exported.get("t"), TABLE)
    again = DataFolio(f"s3://{s3_bucket}/exported", storage_options=opts, create=False)
    pdt.assert_frame_equal(again.get("t"), TABLE)
    assert again.is_valid()
    with pytest.raises(ValueError, match="already contains"):
        folio.export_snapshot("v1", f"s3://{s3_bucket}/exported")
    local = folio.export_snapshot("v1", tmp_path / "from-s3")
    assert datafolio.DataFolio(str(tmp_path / "from-s3"), read_only=True).is_valid()
    np.testing.assert_array_equal(local.get("arr"), np.arange(5))
    folio.restore_snapshot("v1", confirm=True)
    pdt.assert_frame_equal(folio.get("t"), TABLE)
    keys = {
        o["Key"]
        for o in moto_server.client.list_objects_v2(Bucket=s3_bucket, Prefix="snaps/")["Contents"]
    }
    assert "snaps/tables/t--r5.parquet" not in keys  # the unpinned replaced version is gone
    folio.delete_snapshot("v1")
    assert folio.list_snapshots() == []


def test_snapshot_writes_inside_a_batch_raise(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    folio.add("a", 1)
    folio.create_snapshot("s")
    with pytest.raises(UsageError), folio.batch():
        folio.create_snapshot("s2")
    with pytest.raises(UsageError), folio.batch():
        folio.delete_snapshot("s")
    assert [r["name"] for r in folio.list_snapshots()] == ["s"]
    with pytest.raises(ItemNotFoundError):
        folio.get_snapshot("zz")
