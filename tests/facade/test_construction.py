"""Constructing a ``DataFolio`` as datafolio 2.3.0 does.

* Aliases: ``DataFolio(path, alias=...)``, ``set_alias``/``remove_alias``/``find``/
  ``list_folios`` share datafolio's registry file (``$DATAFOLIO_HOME/registry.json``) both
  ways; ``overwrite_alias``; the errors datafolio raises.
* ``use_https``: an S3 bundle read over plain HTTP(S) from moto, read-only.
* A half-created local bundle (empty ``tables/``, ``models/``, ``artifacts/``, no manifest)
  is initialised; any other non-empty folder still needs ``allow_existing``.
* A new local bundle gets ``README.md`` and ``CONTENTS.md``; ``CONTENTS.md`` follows every
  commit and is the text datafolio writes for the same manifest.
* Another writer's items (datafolio's too) show on this folio's next read.
"""

from __future__ import annotations

import json
from pathlib import Path

import datafolio
import pandas as pd
import pytest

import aiofolio
from aiofolio import DataFolio, ReadOnlyError
from aiofolio.testing import MotoServer


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("DATAFOLIO_HOME", str(folder))
    return folder


def test_aliases_share_datafolios_registry(home: Path, tmp_path: Path) -> None:
    ours = DataFolio(tmp_path / "one", alias="one")
    ours.add("cells_a", 1, description="the synapse table")
    registry = json.loads((home / "registry.json").read_text())
    assert registry["version"] == 1
    assert registry["aliases"]["one"]["path"] == ours.path
    assert registry["recent"] == []
    assert datafolio.DataFolio(alias="one").get("cells_a") == 1  # datafolio opens ours

    datafolio.DataFolio(str(tmp_path / "two"), alias="two").add("x", 2)
    assert DataFolio(alias="two").get("x") == 2  # we open datafolio's
    assert aiofolio.set_alias("gs", "gs://bucket/folio/") == "gs://bucket/folio"
    assert datafolio.list_folios().to_dict() == aiofolio.list_folios().to_dict()

    with pytest.raises(ValueError, match="already points"):
        DataFolio(tmp_path / "three", alias="one")
    assert not (tmp_path / "three").exists()  # refused before anything is created
    DataFolio(tmp_path / "three", alias="one", overwrite_alias=True)
    assert datafolio.DataFolio(alias="one").path == str(tmp_path / "three")
    ours.set_alias("uno")
    with pytest.raises(ValueError):
        ours.set_alias("two")
    ours.set_alias("two", overwrite=True)
    assert aiofolio.list_folios().set_index("alias")["path"]["two"] == ours.path
    with pytest.raises(ValueError, match="Alias"):
        aiofolio.set_alias("bad name", tmp_path)
    with pytest.raises(KeyError, match="Known aliases"):
        DataFolio(alias="nope")
    with pytest.raises(ValueError, match="path or an alias"):
        DataFolio()
    aiofolio.remove_alias("gs")
    with pytest.raises(KeyError):
        aiofolio.remove_alias("gs")
    with pytest.raises(KeyError):
        datafolio.remove_alias("gs")


def test_find_matches_datafolio(home: Path, tmp_path: Path) -> None:
    a = DataFolio(tmp_path / "a", alias="a", metadata={"dataset": "minnie65"})
    a.add("cells_a", pd.DataFrame({"x": [1]}), description="the synapse table")
    a.add("cells_b", 1)
    a.add("model_m", {"w": 1})
    a.archive("cells_b")
    b = DataFolio(tmp_path / "b", alias="b")
    b.add_model("clf", {"k": 1})
    aiofolio.set_alias("broken", tmp_path / "missing")
    cases = [
        ("cells*", {}),
        ("synapse", {"descriptions": True}),
        ("CELLS*", {"case_sensitive": True}),
        ("cell|clf", {"regex": True}),
        ("*", {"item_type": "table"}),
        ("*", {"item_type": ["model", "json"]}),
        ("*", {"include_archived": True, "folios": "a"}),
        ("dataset=minnie*", {"metadata": True}),
    ]
    for pattern, kw in cases:
        if "folios" in kw:  # the broken folio is not searched
            theirs, ours = datafolio.find(pattern, **kw), aiofolio.find(pattern, **kw)
        else:
            with pytest.warns(UserWarning, match="broken|missing"):
                theirs = datafolio.find(pattern, **kw)
            with pytest.warns(UserWarning, match="broken|missing"):
                ours = aiofolio.find(pattern, **kw)
        assert list(ours.columns) == list(theirs.columns), (pattern, kw)
        key = ["folio_path", "key"] if kw.get("metadata") else ["folio_path", "name"]
        assert sorted(map(tuple, ours[key].values.tolist())) == sorted(
            map(tuple, theirs[key].values.tolist())
        ), (pattern, kw)
    with pytest.raises(ValueError, match="item_type"):
        aiofolio.find("*", item_type="nonsense")


def test_use_https_reads_an_s3_bundle_over_http(moto_server: MotoServer, s3_bucket: str) -> None:
    opts = moto_server.storage_options()
    writer = DataFolio(f"s3://{s3_bucket}/pub", storage_options=opts)
    writer.add("t", pd.DataFrame({"a": [1, 2]}))
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{s3_bucket}/*",
            }
        ],
    }
    moto_server.client.put_bucket_policy(Bucket=s3_bucket, Policy=json.dumps(policy))
    reader = DataFolio(
        f"s3://{s3_bucket}/pub",
        use_https=True,
        storage_options={"endpoint_url": moto_server.endpoint_url},
        cache_enabled=False,
    )
    assert reader.path == f"{moto_server.endpoint_url}/{s3_bucket}/pub"
    assert reader.read_only
    assert reader.get("t")["a"].tolist() == [1, 2]
    with pytest.raises(ReadOnlyError):
        reader.add("x", 1)


def test_half_created_bundle_is_initialised(tmp_path: Path) -> None:
    root = tmp_path / "half"
    for folder in ("tables", "models", "artifacts"):
        (root / folder).mkdir(parents=True)
    folio = DataFolio(root)
    assert (root / "items.json").is_file()
    folio.add("a", 1)
    assert datafolio.DataFolio(str(root)).get("a") == 1
    busy = tmp_path / "busy"
    (busy / "tables").mkdir(parents=True)
    (busy / "tables" / "stray.parquet").write_bytes(b"x")
    with pytest.raises(ValueError, match="allow_existing"):
        DataFolio(busy)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="allow_existing"):
        DataFolio(other)


def test_readme_and_contents(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    readme = (root / "README.md").read_text()
    assert readme.startswith("# DataFolio Bundle")
    assert "items.json" in readme
    assert repr(str(root)) in readme
    assert "revision **1**" in (root / "CONTENTS.md").read_text()
    ext = tmp_path / "ext.parquet"
    pd.DataFrame({"e": [1]}).to_parquet(ext)
    folio.add("t", pd.DataFrame({"a": [1]}), description="pipe | in it")
    folio.add("j", {"k": 1})
    folio.reference_table("r", ext)
    folio.archive("j")
    ours = (root / "CONTENTS.md").read_text()
    assert f"revision **{folio.revision}**" in ours
    (root / "CONTENTS.md").unlink()
    datafolio.DataFolio(str(root))._write_contents()  # datafolio's text for this manifest
    assert (root / "CONTENTS.md").read_text() == ours
    with folio.batch():
        folio.add("b1", 1)
        folio.add("b2", 2)
    assert "| b2 |" in (root / "CONTENTS.md").read_text()


def test_another_writer_shows_on_the_next_read(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("mine", 1)
    theirs = datafolio.DataFolio(str(root))
    theirs.add("theirs", 2)
    assert folio.get("theirs") == 2
    assert "theirs" in folio.list_contents()["json_data"]
    DataFolio(root).add("third", 3)
    assert "third" in folio
    folio.add("after", 4)  # a write on top of what it followed
    assert datafolio.DataFolio(str(root)).list_contents()["json_data"] == [
        "mine",
        "theirs",
        "third",
        "after",
    ]
