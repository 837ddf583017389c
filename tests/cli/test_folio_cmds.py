"""datafolio's own commands on aiofolio (``init``, ``add``, ``describe``, ``validate``,
``snapshot ...``, ``folios``, ``find``): through click's runner and as real subprocesses, on
real local bundles (and one on moto S3); exit codes, stdout/stderr split, ``--json`` parsed; a
bundle made by ``aiofolio init``/``add`` opens in datafolio 2.3.0 with the same bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _cli_helpers import Run

from aiofolio import DataFolio
from aiofolio.bundle import payload_path
from aiofolio.testing import AWS_TEST_ENV, MotoServer


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private folio registry ($DATAFOLIO_HOME) for the test and its subprocesses."""
    folder = tmp_path / "registry-home"
    monkeypatch.setenv("DATAFOLIO_HOME", str(folder))
    return folder


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    src = tmp_path / "src"
    src.mkdir()
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    out = {
        "csv": src / "cells.csv",
        "parquet": src / "syn.parquet",
        "npy": src / "arr.npy",
        "json": src / "conf.json",
        "txt": src / "notes.txt",
    }
    frame.to_csv(out["csv"], index=False)
    frame.to_parquet(out["parquet"])
    np.save(out["npy"], np.arange(7, dtype=np.int64))
    out["json"].write_text(json.dumps({"k": [1, 2]}))
    out["txt"].write_bytes(b"some notes\n")
    return out


def _bundle(cli: Any, tmp_path: Path, files: dict[str, Path]) -> Path:
    folio = tmp_path / "exp"
    assert cli("init", str(folio), "-d", "My experiment", "--alias", "exp").code == 0
    for kind in ("csv", "parquet", "npy", "json", "txt"):
        run = cli("add", "-a", "exp", str(files[kind]))
        assert run.code == 0, run.err
    return folio


def test_init_add_describe_and_the_bundle_opens_in_datafolio(
    cli: Any, tmp_path: Path, files: dict[str, Path], home: Path
) -> None:
    import datafolio

    folio = _bundle(cli, tmp_path, files)
    run = cli("--json", "add", "--to", str(folio), str(files["txt"]), "-n", "raw", "--as-file")
    assert run.code == 0
    assert run.json()["item_type"] == "artifact"
    assert run.json()["size_bytes"] == len(b"some notes\n")

    described = cli("--json", "describe", "-f", str(folio)).json()
    kinds = {i["name"]: i["item_type"] for i in described["items"]}
    assert kinds == {
        "cells": "included_table",
        "syn": "included_table",
        "arr": "numpy_array",
        "conf": "json_data",
        "notes": "artifact",
        "raw": "artifact",
    }
    assert described["metadata"]["description"] == "My experiment"
    human = cli("describe", "-a", "exp")
    assert human.code == 0
    assert "cells" in human.out
    assert human.err == ""

    theirs = datafolio.DataFolio(str(folio))
    assert theirs.get("cells").equals(pd.read_csv(files["csv"]))
    assert theirs.get("syn").equals(pd.read_parquet(files["parquet"]))
    assert np.array_equal(theirs.get("arr"), np.arange(7))
    assert theirs.get("conf") == {"k": [1, 2]}
    assert Path(theirs.get("notes")).read_bytes() == b"some notes\n"
    assert theirs.is_valid()
    assert theirs.metadata["description"] == "My experiment"


def test_init_refuses_an_existing_bundle_and_add_an_existing_name(
    cli: Any, tmp_path: Path, files: dict[str, Path], home: Path
) -> None:
    folio = _bundle(cli, tmp_path, files)
    before = (folio / "items.json").read_bytes()
    again = cli("init", str(folio))
    assert again.code == 2
    assert again.out == ""
    assert again.err.startswith("Error: ")
    assert len(again.err.strip().splitlines()) == 1
    dup = cli("add", "-a", "exp", str(files["txt"]))
    assert dup.code == 2
    assert "already exists" in dup.err
    assert (folio / "items.json").read_bytes() == before


def test_validate_exit_codes_and_a_corrupted_payload(
    cli: Any, tmp_path: Path, files: dict[str, Path], home: Path
) -> None:
    folio = _bundle(cli, tmp_path, files)
    ok = cli("--json", "validate", str(folio))
    assert ok.code == 0
    assert ok.json()["valid"] is True
    assert len(ok.json()["items"]) == 5

    item = DataFolio(folio, read_only=True).get_item("notes")
    (folio / payload_path(item)).write_bytes(b"tampered!!\n")
    bad = cli("--json", "validate", str(folio))
    assert bad.code == 1
    assert bad.json()["items"] == {
        "cells": True,
        "syn": True,
        "arr": True,
        "conf": True,
        "notes": False,
    }
    assert cli("validate", str(tmp_path / "src")).code == 1  # not a bundle at all


def test_snapshots_create_list_show_diff_status_compare_gc_delete(
    cli: Any, tmp_path: Path, files: dict[str, Path], home: Path
) -> None:
    folio = _bundle(cli, tmp_path, files)
    f = ["-f", str(folio)]
    made = cli("--json", "snapshot", "create", "v1", *f, "-d", "first", "-t", "base", "--no-git")
    assert made.code == 0
    assert made.json()["items"] == 5
    assert made.json()["tags"] == ["base"]
    assert cli("--json", "snapshot", "status", *f).json()["changed"] is False

    assert cli("add", *f, str(files["txt"]), "--overwrite").code == 0
    status = cli("--json", "snapshot", "status", *f).json()
    assert status["changed"] is True
    assert status["modified_items"] == ["notes"]
    assert cli("snapshot", "create", "v2", *f, "--no-git").code == 0

    listed = cli("--json", "snapshot", "list", *f).json()
    assert [s["name"] for s in listed] == ["v2", "v1"]
    assert [s["name"] for s in cli("--json", "snapshot", "list", *f, "-t", "base").json()] == ["v1"]
    shown = cli("--json", "snapshot", "show", "v1", *f).json()
    assert shown["description"] == "first"
    assert set(shown["item_versions"]) == {
        "cells",
        "syn",
        "arr",
        "conf",
        "notes",
    }
    compared = cli("--json", "snapshot", "compare", "v1", "v2", *f).json()
    assert compared["modified_items"] == ["notes"]
    assert compared["added_items"] == []
    assert cli("--json", "snapshot", "diff", "v1", *f).json()["modified_items"] == ["notes"]

    # delete without --yes and without a terminal: refused, nothing changed
    refused = cli("snapshot", "delete", "v1", *f)
    assert refused.code == 2
    assert "--yes" in refused.err
    assert len(DataFolio(folio, read_only=True).list_snapshots()) == 2
    assert cli("snapshot", "delete", "v1", *f, "-y").code == 0
    gc_plan = cli("--json", "snapshot", "gc", *f, "--dry-run").json()
    assert gc_plan["dry_run"] is True
    assert len(gc_plan["files"]) == 1
    assert cli("--json", "snapshot", "gc", *f).json()["files"] == gc_plan["files"]
    assert cli("--json", "snapshot", "gc", *f, "--dry-run").json()["files"] == []
    assert cli("snapshot", "show", "v1", *f).code == 2  # gone: ItemNotFoundError


def test_folios_and_find(cli: Any, tmp_path: Path, files: dict[str, Path], home: Path) -> None:
    folio = _bundle(cli, tmp_path, files)
    # datafolio's place for -f/-a is before the command; both places work
    for where in (["-f", str(folio)], ["-a", "exp"]):
        described = cli(*where, "--json", "describe").json()
        assert sorted(i["name"] for i in described["items"]) == [
            "arr",
            "cells",
            "conf",
            "notes",
            "syn",
        ]
    rows = cli("--json", "folios", "list").json()
    assert rows == [{"alias": "exp", "path": str(folio), "last_accessed": None, "exists": True}]
    found = cli("--json", "find", "c*").json()
    assert sorted(r["name"] for r in found) == ["cells", "conf"]
    assert [r["name"] for r in cli("--json", "find", "*", "--type", "array").json()] == ["arr"]
    meta = cli("--json", "find", "description=my*", "--metadata").json()
    assert meta == [
        {"alias": "exp", "folio_path": str(folio), "key": "description", "value": "My experiment"}
    ]
    none = cli("find", "zzz")
    assert none.code == 1
    assert none.out == ""
    assert "No matches" in none.err

    other = tmp_path / "other"
    assert cli("init", str(other)).code == 0
    assert cli("folios", "alias", "other", str(other)).code == 0
    assert cli("folios", "alias", "other", str(folio)).code == 2  # bound elsewhere
    os.rename(other, tmp_path / "moved")
    pruned = cli("--json", "folios", "prune").json()
    assert pruned["removed"] == [{"alias": "other", "path": str(other)}]
    assert cli("folios", "unalias", "exp").code == 0
    assert json.loads((home / "registry.json").read_bytes())["aliases"] == {}


def test_subprocess_stdout_stderr_split_and_datafolio_path(
    proc: Any, tmp_path: Path, files: dict[str, Path], home: Path
) -> None:
    folio = tmp_path / "exp"
    env = {"DATAFOLIO_HOME": str(home), "DATAFOLIO_PATH": str(folio)}
    made: Run = proc("--json", "init", str(folio), env=env)
    assert made.code == 0
    assert json.loads(made.out)["path"] == str(folio)
    added = proc("add", str(files["npy"]), env=env)  # the folio from DATAFOLIO_PATH
    assert added.code == 0
    assert "arr (numpy_array)" in added.out
    described = proc("--json", "describe", env=env)
    assert [i["name"] for i in json.loads(described.out)["items"]] == ["arr"]
    missing = proc("snapshot", "show", "nope", env=env)
    assert missing.code == 2
    assert missing.out == ""
    assert missing.err.count("\n") == 1
    assert proc("validate", env=env).code == 0


def test_a_bundle_on_moto_s3(
    proc: Any, moto_server: MotoServer, s3_bucket: str, home: Path, files: dict[str, Path]
) -> None:
    """``init``/``add``/``validate`` against S3, credentials and endpoint from the environment."""
    env = {
        **AWS_TEST_ENV,
        "AWS_ENDPOINT_URL": moto_server.endpoint_url,
        "DATAFOLIO_HOME": str(home),
    }
    url = f"s3://{s3_bucket}/cli-folio"
    assert proc("init", url, "-d", "on s3", env=env).code == 0
    assert proc("--json", "snapshot", "list", "-f", url, env=env).out.strip() == "[]"
    assert proc("add", "--to", url, str(files["txt"]), env=env).code == 0
    checked = proc("--json", "validate", url, env=env)
    assert checked.code == 0, checked.err
    assert json.loads(checked.out)["valid"] is True
    client = moto_server.boto3_client()
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]}
    assert "cli-folio/items.json" in keys
    (payload,) = [k for k in keys if k.startswith("cli-folio/artifacts/notes")]
    body = client.get_object(Bucket=s3_bucket, Key=payload)["Body"].read()
    assert body == b"some notes\n"
