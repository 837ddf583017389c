"""The library API the ``aiofolio cache`` commands stand on: ``DataFolio.list_cache``,
``verify_cache``, ``clear_bundle_caches``, ``cache_config``/``edit_cache_config`` and the
class methods reading a named folder's own ``config.json``; on a bundle served by the loopback
HTTP server and a real cache folder."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from _cli_helpers import NAMES, Remote, blob_of, value

from aiofolio import ConfigError, DataFolio


def test_list_cache_describes_bundles_and_items(remote: Remote, cache_dir: Path) -> None:
    folio = DataFolio(remote.url)
    folio.warm_cache()
    folio.pin_cache("alpha")
    [bundle] = DataFolio.list_cache()
    assert bundle.url == remote.url
    assert [i.name for i in bundle.items] == sorted(NAMES)
    assert bundle.size == sum(remote.writer.get_item(n).size_bytes or 0 for n in NAMES)
    assert bundle.fresh
    alpha = bundle.items[0]
    assert alpha.pinned
    assert alpha.present
    assert alpha.last_access is not None
    assert alpha.cached_at is not None
    assert blob_of(folio, "alpha").read_bytes() == remote.server.get(remote.payload("alpha"))

    DataFolio.edit_cache_config(str(cache_dir), cache_ttl=0)  # always revalidate: stale now
    [again] = DataFolio.list_cache(str(cache_dir))
    assert not again.fresh
    assert not any(i.fresh for i in again.items)


def test_verify_cache_finds_wrong_sizes_and_stray_corrupt_blobs(
    remote: Remote, cache_dir: Path
) -> None:
    folio = DataFolio(remote.url)
    folio.warm_cache()
    short = blob_of(folio, "alpha")
    os.chmod(short, stat.S_IRUSR | stat.S_IWUSR)
    with open(short, "r+b") as fh:
        fh.truncate(10)
    stray = cache_dir / "v1" / "blobs" / "ab" / ("ab" + "0" * 30)  # named as an MD5, no record
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"not what the name says")
    seen: list[tuple[int, int]] = []

    report = DataFolio.verify_cache(progress=lambda done, total: seen.append((done, total)))
    problems = {p.digest: p for p in report.problems}
    assert not report.ok
    assert problems[short.name].problem == "size"
    assert problems[short.name].actual_size == 10
    assert problems[short.name].refs == ((remote.url, "alpha"),)
    assert problems[stray.name].problem == "corrupt"
    assert problems[stray.name].refs == ()
    assert report.checked == 3  # beta, gamma and the stray one are hashed
    assert seen[-1][0] == seen[-1][1]

    only = DataFolio.verify_cache(remote.url)  # the bundle's blobs: the stray one is not
    assert [p.digest for p in only.problems] == [short.name]

    fixed = DataFolio.verify_cache(repair=True)
    assert fixed.repaired
    assert not short.exists()
    assert not stray.exists()
    assert DataFolio.verify_cache().ok
    np.testing.assert_array_equal(DataFolio(remote.url).get("alpha"), value("alpha"))
    assert remote.gets("alpha") == 2


def test_clear_bundle_caches_keeps_blobs_another_bundle_uses(
    remote: Remote, http_server: object, tmp_path: Path
) -> None:
    twin = Remote(remote.server, tmp_path / "twin", prefix="/twin")
    twin.add("alpha", value("alpha"))  # the same bytes: one blob, two bundles
    DataFolio(remote.url).warm_cache()
    DataFolio(twin.url).warm_cache()
    shared = remote.writer.get_item("alpha").size_bytes or 0
    unique = sum(remote.writer.get_item(n).size_bytes or 0 for n in ("beta", "gamma"))

    plan = DataFolio.clear_bundle_caches([remote.url + "/"], dry_run=True)
    assert plan["removed"] == [remote.url]
    assert plan["items"] == 3
    assert plan["bytes_freed"] == unique
    assert [b.url for b in DataFolio.list_cache()] == sorted([remote.url, twin.url])

    done = DataFolio.clear_bundle_caches([remote.url, "s3://nowhere/x"])
    assert done["bytes_freed"] == unique
    assert done["not_cached"] == ["s3://nowhere/x"]
    [left] = DataFolio.list_cache()
    assert left.url == twin.url
    assert left.size == shared
    assert left.items[0].present


def test_edit_cache_config_validates_and_writes_atomically(cache_dir: Path) -> None:
    path = cache_dir / "config.json"
    [change] = DataFolio.edit_cache_config(max_cache_size="2GB")
    assert (change.setting, change.key, change.old, change.new) == (
        "max_cache_size",
        "limits.max_cache_size_bytes",
        None,
        2_000_000_000,
    )
    assert change.old_text == "not set"
    assert DataFolio.cache_info()["limit_bytes"] == 2_000_000_000
    written = path.read_bytes()
    inode = path.stat().st_ino

    assert DataFolio.edit_cache_config(max_cache_size=2_000_000_000) == []  # no change
    assert path.stat().st_ino == inode  # not rewritten
    with pytest.raises(ConfigError, match="max_cache_size"):
        DataFolio.edit_cache_config(max_cache_size="a lot")
    with pytest.raises(ConfigError, match="unknown setting"):
        DataFolio.edit_cache_config(max_size="1GB")
    assert path.read_bytes() == written

    [removed] = DataFolio.edit_cache_config(remove=["max_cache_size"])
    assert removed.new is None
    assert "limits" not in json.loads(path.read_text())
    assert DataFolio.cache_config().sources["max_cache_size"] == "default"
    assert DataFolio.edit_cache_config(remove=["max_cache_size"]) == []

    path.write_text('{"limits": {"max_cache_size_bytes": "nonsense"}}')
    with pytest.raises(ConfigError, match=r"config\.json key limits\.max_cache_size_bytes"):
        DataFolio.edit_cache_config(hard_limit=True)
    assert json.loads(path.read_text()) == {"limits": {"max_cache_size_bytes": "nonsense"}}
    assert not [p for p in cache_dir.iterdir() if p.suffix == ".part"]


def test_class_methods_on_a_named_folder_read_its_config(tmp_path: Path) -> None:
    other = tmp_path / "other-cache"
    DataFolio.edit_cache_config(str(other), max_cache_size="3GB", eviction_policy="fifo")
    info = DataFolio.cache_info(str(other))
    assert info["limit_bytes"] == 3_000_000_000
    assert info["policy"] == "fifo"
    assert DataFolio.cache_stats(str(other))["max_size"] == 3_000_000_000
    assert DataFolio.cache_info()["limit_bytes"] != 3_000_000_000  # the default folder's own
    resolved = DataFolio.cache_config(str(other))
    assert resolved.config_file == str(other / "config.json")
    assert resolved.config_file_found


async def test_the_async_twins(remote: Remote) -> None:
    await DataFolio(remote.url).awarm_cache(["alpha"])
    listed = await DataFolio.alist_cache()
    assert [i.name for b in listed for i in b.items] == ["alpha"]
    assert (await DataFolio.averify_cache()).ok
    plan = await DataFolio.aclear_bundle_caches([remote.url], dry_run=True)
    assert plan["items"] == 1
    assert (await DataFolio.acleanup_incomplete(dry_run=True))["count"] == 0
    assert (
        await DataFolio.acache_config()
    ).settings.cache_dir == DataFolio.cache_config().settings.cache_dir
    [change] = await DataFolio.aedit_cache_config(cache_ttl="5m")
    assert change.new == 300.0
