"""``DataFolio`` against the real ``datafolio`` package (2.3.0), through the public API.

* Bundles datafolio writes (every item type, an overwritten item, a snapshot) read identically
  through aiofolio's ``DataFolio``, from a local folder and from S3 after uploading their files
  to moto; the snapshot reads through ``get_snapshot(name).get(item)``.
* Bundles aiofolio's ``DataFolio`` writes, locally and to S3 (then downloaded with boto3),
  open in datafolio, pass its ``validate()`` and read back equal; datafolio can keep writing
  to them, and aiofolio reads what it wrote.

``tests/interop/test_datafolio_format.py`` covers the format layer underneath.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from sklearn.linear_model import LogisticRegression

from aiofolio import ConcurrentWriteError, DataFolio
from aiofolio.testing import MotoServer

TABLE = pd.DataFrame(
    {
        "i": [1, 2, 3],
        "f": [0.5, None, 1.5],
        "s": ["a", "b", None],
        "t": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
    }
)
TABLE_V2 = pd.DataFrame({"i": [9, 8], "s": ["new", "rows"]})
SERIES = pd.Series([3, 1, 2], name="counts")
ARRAY = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
CONFIG = {"lr": 0.001, "layers": [128, 64], "opt": {"name": "adam", "betas": [0.9, 0.999]}}
CONFIG_V2 = {"lr": 0.002}
LISTING = [1, "two", None, True, 2.5]
MOMENT = dt.datetime(2023, 7, 8, 9, 10, 11, 123456, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
OBJECT_MODEL = {"coef": [0.1, 0.2], "intercept": 1.0}
NOTES = b"artifact bytes \x00\x01\x02"
EXTERNAL = pd.DataFrame({"ext": [1, 2], "label": ["p", "q"]})
X = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0], [2.5, 2.5]])
Y = np.array([0, 0, 1, 1, 0, 1])


def _classifier() -> LogisticRegression:
    return LogisticRegression().fit(X, Y)


def _assert_same(actual: Any, expected: Any) -> None:
    if isinstance(expected, LogisticRegression):
        assert isinstance(actual, LogisticRegression)
        np.testing.assert_array_equal(actual.coef_, expected.coef_)
        np.testing.assert_array_equal(actual.intercept_, expected.intercept_)
        np.testing.assert_array_equal(actual.predict(X), expected.predict(X))
    elif isinstance(expected, pd.DataFrame):
        pdt.assert_frame_equal(actual, expected)
    elif isinstance(expected, pd.Series):
        pdt.assert_series_equal(actual, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected)
        assert actual.dtype == expected.dtype
    else:
        assert actual == expected


@dataclasses.dataclass
class Written:
    """A bundle on disk and what it should read back as."""

    root: Path
    current: dict[str, Any]  # name -> value (artifacts: their bytes)
    snapshot: dict[str, Any]  # name -> value pinned by snapshot "v1" (empty if none)


def _sources(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    notes = src / "notes.bin"
    notes.write_bytes(NOTES)
    external = src / "external.parquet"
    EXTERNAL.to_parquet(external)
    return notes, external


def _check(folio: Any, expected: dict[str, Any]) -> None:
    """Every expected item reads back equal from ``folio`` (aiofolio's or datafolio's)."""
    assert set(folio.list_contents()["artifacts"]) <= set(expected)
    for name, value in expected.items():
        got = folio.get(name)
        if isinstance(value, bytes):  # an artifact: get() gives a local path
            assert Path(got).read_bytes() == value
        else:
            _assert_same(got, value)


# -- datafolio writes, aiofolio's DataFolio reads ------------------------------------------------


def _datafolio_wrote(tmp_path: Path) -> Written:
    notes, external = _sources(tmp_path)
    root = tmp_path / "df-bundle"
    clf = _classifier()
    folio = datafolio.DataFolio(str(root), metadata={"experiment": "interop"})
    folio.add("table", TABLE, description="raw", inputs=["ns/array"])
    folio.add("series", SERIES)
    folio.add("ns/array", ARRAY)
    folio.add("config", CONFIG)
    folio.add("listing", LISTING)
    folio.add("moment", MOMENT)
    folio.add_model("clf", clf)
    folio.add_model("object_model", OBJECT_MODEL)
    folio.add_file(str(notes), name="notes", category="bin")
    folio.reference_table("ext", str(external))
    folio.create_snapshot("v1", description="before the overwrite", capture_git=False)
    folio.add("table", TABLE_V2, overwrite=True)
    folio.add("config", CONFIG_V2, overwrite=True)
    folio.delete("listing")
    current = {
        "table": TABLE_V2,
        "series": SERIES,
        "ns/array": ARRAY,
        "config": CONFIG_V2,
        "moment": MOMENT,
        "clf": clf,
        "object_model": OBJECT_MODEL,
        "notes": NOTES,
        "ext": EXTERNAL,
    }
    snapshot = {"table": TABLE, "config": CONFIG, "listing": LISTING, "ns/array": ARRAY}
    return Written(root, current, snapshot)


def _upload(server: MotoServer, root: Path, bucket: str, prefix: str) -> None:
    """Every file under ``root`` to ``s3://bucket/prefix/...`` with boto3."""
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(root).as_posix()}"
            server.client.upload_file(str(path), bucket, key)


def _download(server: MotoServer, bucket: str, prefix: str, dest: Path) -> Path:
    """Every object under ``s3://bucket/prefix/`` into ``dest`` with boto3."""
    listing = server.client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    for obj in listing.get("Contents", []):
        target = dest / obj["Key"][len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        server.client.download_file(bucket, obj["Key"], str(target))
    return dest


def _reads_like_datafolio(ours: DataFolio, written: Written) -> None:
    theirs = datafolio.DataFolio(str(written.root), read_only=True)
    assert sorted(ours) == sorted(written.current)
    _check(ours, written.current)
    for name in written.current:
        if name != "notes":
            _assert_same(ours.get(name), theirs.get(name))
    assert ours.list_contents() == theirs.list_contents()
    assert ours.revision == json.loads((written.root / "items.json").read_bytes())["revision"]
    assert ours.metadata["experiment"] == "interop"
    assert ours.item_info("table")["description"] == "raw"  # kept over the overwrite
    pdt.assert_frame_equal(ours.get("table", columns=["s"]), TABLE_V2[["s"]])
    assert ours.get("moment", as_unix=True) == MOMENT.timestamp()
    assert all(ours.validate().values())

    # The snapshot pins the versions from before the overwrite and the delete.
    assert [s["name"] for s in ours.list_snapshots()] == ["v1"]
    assert ours.list_snapshots()[0]["description"] == "before the overwrite"
    view = ours.get_snapshot("v1")
    their_view = theirs.get_snapshot("v1")
    for name, value in written.snapshot.items():
        _assert_same(view.get(name), value)
        _assert_same(view.get(name), their_view.get(name))
    _assert_same(view.get("clf"), written.current["clf"])
    assert "listing" not in ours


def test_datafolio_written_bundle_reads_locally(tmp_path: Path) -> None:
    written = _datafolio_wrote(tmp_path)
    _reads_like_datafolio(DataFolio(written.root, create=False), written)


def test_datafolio_written_bundle_reads_from_s3(
    tmp_path: Path, moto_server: MotoServer, s3_bucket: str
) -> None:
    written = _datafolio_wrote(tmp_path)
    _upload(moto_server, written.root, s3_bucket, "from-datafolio")
    ours = DataFolio(
        f"s3://{s3_bucket}/from-datafolio",
        create=False,
        storage_options=moto_server.storage_options(),
        allow_local_references=True,  # datafolio referenced a table in the test's folder
    )
    _reads_like_datafolio(ours, written)


# -- aiofolio's DataFolio writes, datafolio reads ------------------------------------------------


def _aiofolio_writes(folio: DataFolio, tmp_path: Path) -> dict[str, Any]:
    notes, external = _sources(tmp_path)
    clf = _classifier()
    folio.add("table", TABLE, description="raw", inputs=["ns/array"])
    folio.add("series", SERIES)
    folio.add("ns/array", ARRAY)
    folio.add("config", CONFIG)
    folio.add("listing", LISTING)
    folio.add("moment", MOMENT)
    folio.add_model("clf", clf)
    folio.add_model("object_model", OBJECT_MODEL)
    folio.add_file(notes, name="notes", category="bin")
    folio.reference_table("ext", str(external))
    folio.add("table", TABLE_V2, overwrite=True)
    folio.delete("listing")
    folio.metadata["owner"] = "aiofolio"
    return {
        "table": TABLE_V2,
        "series": SERIES,
        "ns/array": ARRAY,
        "config": CONFIG,
        "moment": MOMENT,
        "clf": clf,
        "object_model": OBJECT_MODEL,
        "notes": NOTES,
        "ext": EXTERNAL,
    }


def _opens_in_datafolio(root: Path, expected: dict[str, Any]) -> None:
    theirs = datafolio.DataFolio(str(root))
    report = theirs.validate()
    assert set(report) == set(expected)
    assert all(report.values()), report
    _check(theirs, expected)
    assert theirs.metadata["experiment"] == "interop"
    assert theirs.metadata["owner"] == "aiofolio"
    assert theirs.item_info("table")["description"] == "raw"
    assert theirs.get("moment", as_unix=True) == MOMENT.timestamp()
    # datafolio keeps writing to the bundle, and aiofolio reads what it wrote.
    theirs.add("from_datafolio", {"ok": True})
    theirs.add("config", CONFIG_V2, overwrite=True)
    ours = DataFolio(root, create=False)
    assert ours.get("from_datafolio") == {"ok": True}
    assert ours.get("config") == CONFIG_V2
    assert all(ours.validate().values())


def test_aiofolio_written_bundle_opens_in_datafolio(tmp_path: Path) -> None:
    root = tmp_path / "ours"
    expected = _aiofolio_writes(DataFolio(root, metadata={"experiment": "interop"}), tmp_path)
    _opens_in_datafolio(root, expected)


def test_aiofolio_written_bundle_on_s3_opens_in_datafolio(
    tmp_path: Path, moto_server: MotoServer, s3_bucket: str
) -> None:
    folio = DataFolio(
        f"s3://{s3_bucket}/from-aiofolio",
        metadata={"experiment": "interop"},
        storage_options=moto_server.storage_options(),
    )
    expected = _aiofolio_writes(folio, tmp_path)
    root = _download(moto_server, s3_bucket, "from-aiofolio", tmp_path / "downloaded")
    _opens_in_datafolio(root, expected)


def test_race_winner_validates_in_datafolio(tmp_path: Path) -> None:
    root = tmp_path / "raced"
    DataFolio(root).add("base", 1)
    a, b = DataFolio(root), DataFolio(root)
    a.add("winner", TABLE)
    with pytest.raises(ConcurrentWriteError):
        b.add("loser", ARRAY)
    theirs = datafolio.DataFolio(str(root))
    assert sorted(theirs.validate()) == ["base", "winner"]
    assert all(theirs.validate().values())
    pdt.assert_frame_equal(theirs.get("winner"), TABLE)
