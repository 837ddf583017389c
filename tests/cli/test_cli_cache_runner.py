"""``aiofolio cache ...``, ``analyze`` and ``optimize`` through click's runner (in-process), on
a bundle served by the loopback HTTP server and a real cache folder: the figures the library
reports, the filters and sort keys of ``list``, the plans and refusals of destructive commands,
and the stdout/stderr split."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from _cli_helpers import NAMES, Remote, blob_of, cache_files

from aiofolio import DataFolio

DAY = 86400.0


def _age_blob(folio: DataFolio, name: str, days: float) -> None:
    path = blob_of(folio, name)
    st = path.stat()
    os.utime(path, ns=(int((time.time() - days * DAY) * 1e9), st.st_mtime_ns))


def test_stats_report_the_cache_folder(remote: Remote, cli: Any, cache_dir: Path) -> None:
    folio = DataFolio(remote.url)
    folio.get("alpha")
    folio.get("alpha")
    folio.get("beta")
    _age_blob(folio, "beta", 12)
    doc = cli("--json", "cache", "stats").json()
    sizes = sum(remote.writer.get_item(n).size_bytes or 0 for n in ("alpha", "beta"))
    assert doc["cache_dir"] == str(cache_dir)
    assert doc["size_bytes"] == sizes
    assert doc["bundles"] == 1
    assert doc["items"] == 2
    assert doc["limit_kind"] == "soft"
    assert doc["hits"] >= 1
    assert doc["misses"] == 2
    assert doc["oldest_access"].endswith("Z")  # ISO 8601, UTC

    human = cli("cache", "stats")
    assert human.code == 0
    lines = human.out.splitlines()
    assert lines[0] == f"Cache directory: {cache_dir}"
    assert lines[1].startswith("Total size: ")
    assert "soft limit" in lines[1]
    assert "Bundles cached: 1" in lines
    assert "Total items: 2" in lines
    assert lines[-1].startswith("Oldest access: ")
    assert lines[-1].endswith("(12 days ago)")
    assert human.err == ""


def test_list_bundles_and_items_with_filters_sort_and_limit(
    remote: Remote, http_server: Any, tmp_path: Path, cli: Any
) -> None:
    other = Remote(http_server, tmp_path / "other", prefix="/other")
    other.add("big", np.zeros(200_000, dtype=np.uint8))
    folio = DataFolio(remote.url)
    folio.warm_cache()
    DataFolio(other.url).warm_cache()
    folio.pin_cache("alpha")
    folio.set_cache_priority("beta", 5)
    _age_blob(folio, "gamma", 40)

    bundles = cli("--json", "cache", "list").json()
    assert [b["url"] for b in bundles] == sorted([remote.url, other.url])
    first = next(b for b in bundles if b["url"] == remote.url)
    assert first["items"] == 3
    assert first["fresh"] is True
    assert set(first) == {
        "url",
        "size_bytes",
        "items",
        "last_access",
        "cached_at",
        "last_check",
        "fresh",
    }

    by_size = cli("--json", "cache", "ls", "--sort", "size", "--limit", "1").json()
    assert [b["url"] for b in by_size] == [other.url]
    big = cli("--json", "cache", "list", "--filter", "size>100KB").json()
    assert [b["url"] for b in big] == [other.url]
    glob = cli("--json", "cache", "list", "--filter", "bundle=*/other").json()
    assert [b["url"] for b in glob] == [other.url]

    items = cli("--json", "cache", "list", "--items", "--filter", f"bundle={remote.url}").json()
    rows = {r["name"]: r for r in items}
    assert sorted(rows) == sorted(NAMES)
    assert rows["alpha"]["pinned"] is True
    assert rows["beta"]["priority"] == 5
    assert rows["gamma"]["present"] is True
    assert rows["alpha"]["size_bytes"] == remote.writer.get_item("alpha").size_bytes

    old = cli("--json", "cache", "list", "--items", "--filter", "accessed>30d").json()
    assert [r["name"] for r in old] == ["gamma"]
    pinned = cli("--json", "cache", "list", "--items", "--filter", "pinned=true").json()
    assert [r["name"] for r in pinned] == ["alpha"]
    both = cli(
        "--json", "cache", "list", "--items", "--filter", "name=?a*", "--filter", "size<1KB"
    ).json()
    assert both == []
    recent = cli("--json", "cache", "list", "--items", "--sort", "accessed:asc").json()
    assert recent[0]["name"] == "gamma"

    human = cli("cache", "list", "--items")
    assert human.out.splitlines()[0].split() == [
        "BUNDLE", "ITEM", "SIZE", "PINNED", "PRIORITY", "CACHED", "LAST", "ACCESS", "STATE"
    ]  # fmt: skip
    assert any("gamma" in line and "40 days ago" in line for line in human.out.splitlines())

    for bad in (["--filter", "sizes>1"], ["--filter", "size>huge"], ["--sort", "colour"]):
        run = cli("cache", "list", *bad)
        assert run.code == 2
        assert run.out == ""
        assert "Invalid value" in run.err
    assert cli("cache", "list", "--filter", "name=x").code == 2  # needs --items


def test_cleanup_older_than_plans_asks_and_evicts(
    remote: Remote, cli: Any, cache_dir: Path
) -> None:
    folio = DataFolio(remote.url)
    folio.warm_cache()
    _age_blob(folio, "alpha", 31)
    _age_blob(folio, "beta", 45)
    folio.pin_cache("beta")  # pinned: stays whatever its age
    before = cache_files(cache_dir)

    plan = cli("--json", "cache", "cleanup", "--older-than", "30d", "--dry-run")
    assert plan.code == 0
    doc = plan.json()
    assert doc["dry_run"] is True
    assert doc["older_than"]["items"] == [f"{remote.url}::alpha"]
    assert doc["bytes_freed"] == remote.writer.get_item("alpha").size_bytes
    assert cache_files(cache_dir) == before

    refused = cli("cache", "cleanup", "--older-than", "30d")
    assert refused.code == 2
    assert "not confirmed" in refused.err
    assert cache_files(cache_dir) == before

    done = cli("cache", "cleanup", "--older-than", "30d", "--yes")
    assert done.code == 0
    assert done.out.startswith("Removed 1 blob")
    assert not folio.cache_status("alpha")["cached"]
    assert folio.cache_status("beta")["cached"]
    assert folio.cache_status("gamma")["cached"]

    assert cli("cache", "cleanup").code == 2  # nothing asked for


def test_cleanup_incomplete_and_orphaned(
    remote: Remote, cli: Any, cache_dir: Path, http_server: Any
) -> None:
    DataFolio(remote.url).warm_cache()
    code = "import os; print(os.getpid())"
    dead = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    tmp = cache_dir / "v1" / "tmp"
    partial = tmp / f"{int(dead.stdout)}-deadbeef.part"
    partial.write_bytes(b"x" * 1000)
    live = (
        tmp / f"{os.getpid()}-cafe0000-h00000000.part"
    )  # a pid that is alive: not this host's tag
    live.write_bytes(b"y" * 10)

    plan = cli("--json", "cache", "cleanup", "--incomplete", "--dry-run").json()
    assert plan["incomplete"]["files"] == [str(partial)]
    assert plan["incomplete"]["bytes_freed"] == 1000
    assert partial.exists()
    done = cli("--json", "cache", "cleanup", "--incomplete", "--yes").json()
    assert done["incomplete"]["count"] == 1
    assert not partial.exists()
    assert live.exists()

    orphans = cli("--json", "cache", "cleanup", "--orphaned", "--dry-run").json()
    assert orphans["orphaned"]["removed"] == []
    http_server.delete(f"{remote.prefix}/items.json")
    orphans = cli("--json", "cache", "cleanup", "--orphaned", "--dry-run").json()
    assert orphans["orphaned"]["removed"] == [remote.url]
    assert cli("--json", "cache", "list").json() != []
    gone = cli("cache", "cleanup", "--orphaned", "--yes")
    assert gone.code == 0
    assert gone.out.startswith("Removed 1 orphaned bundle")
    assert cli("--json", "cache", "list").json() == []
    assert not any(k.startswith("v1/blobs/") for k in cache_files(cache_dir))


def test_verify_reports_a_missing_blob_and_repair_drops_its_record(
    remote: Remote, cli: Any
) -> None:
    folio = DataFolio(remote.url)
    folio.warm_cache()
    blob = blob_of(folio, "gamma")
    blob.unlink()
    run = cli("--json", "cache", "verify", remote.url)
    assert run.code == 1
    [problem] = run.json()["problems"]
    assert problem["problem"] == "missing"
    assert problem["refs"] == [{"bundle": remote.url, "item": "gamma"}]
    assert cli("cache", "verify", "--repair").code == 0
    items = cli("--json", "cache", "list", "--items").json()
    assert sorted(r["name"] for r in items) == ["alpha", "beta"]
    assert cli("cache", "verify").code == 0


def test_clear_an_uncached_bundle_and_usage_errors(remote: Remote, cli: Any) -> None:
    run = cli("--json", "cache", "clear", remote.url, "--yes")
    assert run.code == 0
    assert run.json()["not_cached"] == [remote.url]
    assert "is not cached" in run.err
    assert cli("cache", "clear").code == 2
    assert cli("cache", "clear", remote.url, "--all").code == 2


def test_config_enable_disable_policy_and_ttl(cli: Any, cache_dir: Path) -> None:
    off = cli("cache", "config", "--disable", "--policy", "lfu", "--ttl", "10m")
    assert off.code == 0
    assert "Caching disabled globally (existing cache preserved)" in off.out
    assert "Updated eviction_policy: lfu (was not set)" in off.out
    info = DataFolio.cache_info(str(cache_dir))  # a named folder's own config.json applies
    assert info["policy"] == "lfu"
    resolved = DataFolio.cache_config(str(cache_dir))
    assert resolved.settings.cache_enabled is False
    assert resolved.settings.cache_ttl == 600.0
    on = cli("--json", "cache", "config", "--enable")
    assert on.json()["changed"] == [
        {"setting": "cache_enabled", "key": "enabled", "old": False, "new": None}
    ]
    assert DataFolio.cache_config(str(cache_dir)).sources["cache_enabled"] == "default"


# -- analyze and optimize --------------------------------------------------------------------------


@pytest.fixture
def tables(tmp_path: Path) -> DataFolio:
    folio = DataFolio(tmp_path / "tables")
    folio.add("big", pd.DataFrame({"x": np.arange(50_000), "y": np.arange(50_000) * 2.0}))
    folio.add("small", pd.DataFrame({"x": [1, 2, 3]}))
    return folio


def test_analyze_suggests_the_large_tables(tables: DataFolio, cli: Any) -> None:
    big = tables.get_item("big").size_bytes
    small = tables.get_item("small").size_bytes
    assert big is not None
    assert small is not None
    doc = cli("--json", "analyze", tables.path, "--threshold", "100KB").json()
    assert doc["included"] == {"bytes": big + small, "items": 2}
    assert doc["references"] == {"bytes": 0, "items": 0}
    assert doc["suggestions"] == [{"name": "big", "size_bytes": big}]
    assert doc["bytes_saved"] == big
    human = cli("analyze", tables.path, "--threshold", "100KB").out
    assert f"Bundle: {tables.path}" in human
    assert "Convert 'big' to reference" in human
    assert "Potential savings" in human
    none = cli("analyze", tables.path, "--threshold", "1GB").out
    assert "nothing to optimize" in none


def test_optimize_refuses_without_yes_then_converts(tables: DataFolio, cli: Any) -> None:
    manifest = Path(tables.path, "items.json").read_bytes()
    plan = cli("--json", "optimize", tables.path, "--threshold", "100KB", "--dry-run")
    assert plan.code == 0
    assert plan.json()["dry_run"] is True
    assert [s["name"] for s in plan.json()["suggestions"]] == ["big"]
    refused = cli("optimize", tables.path, "--threshold", "100KB")
    assert refused.code == 2
    assert "Convert 'big' to reference" in refused.err  # the plan, on stderr
    assert Path(tables.path, "items.json").read_bytes() == manifest

    done = cli("--json", "optimize", tables.path, "--threshold", "100KB", "--yes")
    assert done.code == 0
    doc = done.json()
    assert [c["name"] for c in doc["converted"]] == ["big"]
    assert doc["bundle_bytes_after"] < doc["bundle_bytes_before"]
    fresh = DataFolio(tables.path)
    assert fresh.is_reference("big")
    assert not fresh.is_reference("small")
    assert len(fresh.get("big")) == 50_000
