"""The shared read-only cache tier (``shared_cache_dir``), against moto behind a counting proxy.

An administrator fills the tier by warming with ``cache_dir`` pointed at it; the tier is then
made read-only (``chmod -R a-w``) and handed to another owner. Readers that run as root would
ignore the mode bits, so the reads that must prove "nothing is written there" run in a
subprocess that drops to yet another uid first. Every test compares a listing of the tier
(paths, sizes, mtimes, modes, owners) before and after, and counts requests at the proxy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import site
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiofolio import DataFolio
from aiofolio.bundle import payload_path
from aiofolio.store import BlobStore, CacheLayout
from aiofolio.testing import AWS_TEST_ENV, FaultServer, MotoServer

TIER_UID = 65534  # owns the frozen tier (nobody)
READER_UID = 65533  # the user who reads it: neither root nor the owner
SRC = str(Path(__file__).resolve().parents[2] / "src")
ARRAY = np.arange(60_000, dtype=np.int64)  # 480 KB: above the 256 KiB caller-thread fast path
CONFIG = {"lr": 0.5, "name": "shared"}

needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="changing owners and dropping privileges needs root"
)

_READER = r"""
import hashlib, json, os, sys
import numpy as np
from aiofolio import DataFolio

args = json.loads(sys.argv[1])
folio = DataFolio(args["url"], storage_options=args["so"], **args["settings"])
values = {}
for name in args["names"]:
    value = folio.get(name)
    if isinstance(value, np.ndarray):
        value = "md5:" + hashlib.md5(value.tobytes()).hexdigest()
    values[name] = value
status = {name: folio.cache_status(name) for name in args["names"]}
try:  # may this user write into the tier at all? (it must not be able to)
    open(os.path.join(args["settings"]["shared_cache_dir"], "v1", "probe"), "x").close()
    probe = "written"
except PermissionError:
    probe = "denied"
stats = folio.cache_stats()
print(json.dumps({"values": values, "stats": stats, "status": status, "probe": probe}))
"""


def _reachable(path: str) -> bool:
    """Whether any user may run ``path``: every folder on the way is o+x, the file o+rx."""
    real = os.path.realpath(path)
    parts = Path(real).parents
    ok = all(os.stat(p).st_mode & 0o001 for p in parts)
    return ok and os.path.isfile(real) and os.stat(real).st_mode & 0o005 == 0o005


def _interpreter() -> tuple[str, str]:
    """A Python another uid can run, and the PYTHONPATH that finds aiofolio and its deps."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (
        sys.executable,
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ):
        if os.path.exists(candidate) and _reachable(candidate):
            paths = [SRC, *site.getsitepackages()]
            if all(_reachable_dir(p) for p in paths):
                return candidate, os.pathsep.join(paths)
    pytest.skip(f"no Python {version} that another uid may run (the venv's lives in /root?)")


def _reachable_dir(path: str) -> bool:
    real = Path(os.path.realpath(path))
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [real, *real.parents][:-1])


def _md5_of(array: np.ndarray[Any, Any]) -> str:
    return "md5:" + hashlib.md5(array.tobytes()).hexdigest()


def listing(root: Path) -> dict[str, tuple[int, int, int, int]]:
    """Every path under ``root``: (size, mtime_ns, mode, uid); directories included."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            size = 0 if os.path.isdir(path) else st.st_size
            out[os.path.relpath(path, root)] = (size, st.st_mtime_ns, st.st_mode, st.st_uid)
    return out


def freeze(root: Path, uid: int) -> None:
    """``chmod -R a+rX,a-w`` (what an administrator publishes) and hand the tree to ``uid``."""
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files, "."]:
            path = os.path.normpath(os.path.join(folder, name))
            mode = os.lstat(path).st_mode
            readable = 0o555 if os.path.isdir(path) else 0o444
            os.chmod(path, (mode | readable) & ~0o222)
            os.lchown(path, uid, uid)


@pytest.fixture
def world() -> Iterator[Path]:
    """A folder every uid can enter (pytest's tmp_path is 0700 under root's folder)."""
    folder = Path(tempfile.mkdtemp(prefix="aiofolio-shared-"))
    os.chmod(folder, 0o755)
    try:
        yield folder
    finally:
        for path, _, _ in os.walk(folder):
            os.chmod(path, 0o755)  # frozen folders: let rmtree in
        shutil.rmtree(folder, ignore_errors=True)


class Lab:
    """A bundle on moto, its shared tier warmed by the administrator, and a counting proxy."""

    def __init__(self, moto: MotoServer, bucket: str, proxy: FaultServer, world: Path) -> None:
        self.url = f"s3://{bucket}/published"
        self.bucket = bucket
        self.moto = moto
        self.proxy = proxy
        self.world = world
        self.shared = world / "shared"
        writer = DataFolio(self.url, storage_options=moto.storage_options(), cache_enabled=False)
        writer.add("config", CONFIG)
        writer.add("array", ARRAY)
        self.names = ["config", "array"]

    @property
    def options(self) -> dict[str, Any]:
        return self.moto.storage_options(endpoint_url=self.proxy.url)

    def warm(self, url: str | None = None, names: list[str] | None = None) -> None:
        admin = DataFolio(
            url or self.url, storage_options=self.moto.storage_options(), cache_dir=str(self.shared)
        )
        result = admin.warm_cache(names)
        assert not result.failed
        assert result.cached

    def reader(self, local: Path, **settings: Any) -> DataFolio:
        return DataFolio(
            self.url,
            storage_options=self.options,
            cache_dir=str(local),
            shared_cache_dir=str(self.shared),
            **settings,
        )

    def payload_requests(self) -> list[str]:
        """Requests for anything but the manifest since the last reset."""
        return [
            f"{r.method} {r.path}"
            for r in self.proxy.stats.records()
            if not r.path.endswith("/items.json")
        ]

    def manifest_requests(self) -> int:
        return self.proxy.stats.requests(f"/{self.bucket}/published/items.json")

    def read_as(self, uid: int, local: Path, **settings: Any) -> dict[str, Any]:
        """Read every item in a subprocess running as ``uid`` (mode bits bite)."""
        python, pythonpath = _interpreter()
        local.mkdir()
        os.chown(local, uid, uid)
        args = {
            "url": self.url,
            "so": self.options,
            "names": self.names,
            "settings": {
                "cache_dir": str(local),
                "shared_cache_dir": str(self.shared),
                **settings,
            },
        }
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": pythonpath,
            "PYTHONDONTWRITEBYTECODE": "1",
            "HOME": str(local),
            "TMPDIR": str(local),
            **AWS_TEST_ENV,
        }

        def drop() -> None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)

        done = subprocess.run(
            [python, "-c", _READER, json.dumps(args)],
            env=env,
            preexec_fn=drop,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        result["stderr"] = done.stderr
        return result


@pytest.fixture
def lab(moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer, world: Path) -> Lab:
    return Lab(moto_server, s3_bucket, fault_proxy, world)


def _local_blobs(local: Path) -> dict[str, os.stat_result]:
    out = {}
    for folder, _, files in os.walk(local / "v1" / "blobs"):
        for name in files:
            out[name] = os.stat(os.path.join(folder, name))
    return out


# -- a read-only tier owned by another user ------------------------------------------------------
@needs_root
def test_a_read_only_tier_of_another_user_serves_hits_without_payload_requests(
    lab: Lab, world: Path
) -> None:
    lab.warm()
    freeze(lab.shared, TIER_UID)
    before = listing(lab.shared)
    lab.proxy.stats.reset()
    got = lab.read_as(READER_UID, world / "reader")
    assert got["values"] == {"config": CONFIG, "array": _md5_of(ARRAY)}
    assert lab.payload_requests() == []  # the bytes came from the tier
    assert lab.manifest_requests() == 1  # the manifest check of a fresh local cache
    stats = got["stats"]
    assert stats["shared_hits"] == 2
    assert stats["hits"] == 2
    assert stats["misses"] == 0
    assert stats["bytes_downloaded"] == 0
    status = got["status"]["array"]
    assert status["cached"] is False  # not copied: shared_cache_copy is off
    assert status["shared_cache_path"].startswith(str(lab.shared))
    assert _local_blobs(world / "reader") == {}
    assert listing(lab.shared) == before  # nothing written, touched, locked or swept there
    assert got["probe"] == "denied"  # the mode bits bite this reader
    assert "ermission" not in got["stderr"]
    assert "Traceback" not in got["stderr"]


@needs_root
def test_copy_into_the_local_tier_from_a_tier_of_another_user(lab: Lab, world: Path) -> None:
    lab.warm()
    freeze(lab.shared, TIER_UID)
    before = listing(lab.shared)
    lab.proxy.stats.reset()
    local = world / "reader"
    got = lab.read_as(READER_UID, local, shared_cache_copy=True)
    assert got["values"] == {"config": CONFIG, "array": _md5_of(ARRAY)}
    assert lab.payload_requests() == []
    assert got["stats"]["shared_hits"] == 2
    status = got["status"]["array"]
    assert status["cached"] is True
    assert status["checksum_valid"] is True
    assert status["cache_path"].startswith(str(local))
    assert status["verified_by"] == "md5 (manifest), shared cache copy"
    blobs = _local_blobs(local)
    assert len(blobs) == 2
    for digest, st in blobs.items():
        tier = os.stat(status["shared_cache_path"]).st_ino
        assert (st.st_uid, st.st_nlink) == (READER_UID, 1), digest
        assert st.st_ino != tier
    assert listing(lab.shared) == before

    # The copies are local hits now, also without the tier.
    lab.proxy.stats.reset()
    again = DataFolio(lab.url, storage_options=lab.options, cache_dir=str(local))
    assert again.get("config") == CONFIG
    np.testing.assert_array_equal(again.get("array"), ARRAY)
    assert lab.payload_requests() == []
    assert again.cache_stats()["shared_hits"] == 2  # the subprocess's, nothing new


def test_copy_hard_links_where_the_filesystem_allows(lab: Lab, world: Path) -> None:
    lab.warm()
    for folder, _, files in os.walk(lab.shared / "v1" / "blobs"):
        for name in files:
            assert not os.stat(os.path.join(folder, name)).st_mode & 0o222
    before = listing(lab.shared)
    local = world / "linked"
    folio = lab.reader(local, shared_cache_copy=True)
    lab.proxy.stats.reset()
    np.testing.assert_array_equal(folio.get("array"), ARRAY)
    assert lab.payload_requests() == []
    status = folio.cache_status("array")
    mine, tier = os.stat(status["cache_path"]), os.stat(status["shared_cache_path"])
    assert status["cache_path"].startswith(str(local))
    assert (mine.st_ino, mine.st_dev) == (tier.st_ino, tier.st_dev)  # one inode, two names
    assert status["verified_by"] == "md5 (manifest), shared cache link"
    np.testing.assert_array_equal(folio.get("array"), ARRAY)  # a local hit now
    assert folio.cache_stats()["shared_hits"] == 1
    assert lab.payload_requests() == []
    # A hit never writes the atime of a linked blob (the inode is the tier's).
    old = tier.st_atime_ns - 10**12
    os.utime(status["shared_cache_path"], ns=(old, tier.st_mtime_ns))
    assert BlobStore(CacheLayout(local)).touch(status["cache_path"]) is False
    assert os.stat(status["shared_cache_path"]).st_atime_ns == old
    assert listing(lab.shared) == before  # the link is a name in our folder, not in the tier


def test_a_copy_the_hard_limit_refuses_is_skipped_and_the_tier_serves(
    lab: Lab, world: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lab.warm()
    local = world / "tight"
    folio = lab.reader(local, shared_cache_copy=True, hard_limit=True, max_cache_size=4096)
    lab.proxy.stats.reset()
    with caplog.at_level(logging.WARNING, logger="aiofolio.cache"):
        np.testing.assert_array_equal(folio.get("array"), ARRAY)  # 480 KB: does not fit
    assert any("skipped" in r.getMessage() for r in caplog.records)
    assert lab.payload_requests() == []
    status = folio.cache_status("array")
    assert status["cached"] is False
    assert status["shared_cache_path"] is not None
    assert folio.cache_stats()["shared_hits"] == 1
    assert folio.get("config") == CONFIG  # small: copied
    assert folio.cache_status("config")["cached"] is True
    assert len(_local_blobs(local)) == 1


def test_a_large_item_the_policy_streams_is_read_from_the_tier_and_never_copied(
    lab: Lab, world: Path
) -> None:
    lab.warm()
    local = world / "small-disk"
    folio = lab.reader(
        local, shared_cache_copy=True, cache_large_files=False, large_file_threshold=100_000
    )
    lab.proxy.stats.reset()
    np.testing.assert_array_equal(folio.get("array"), ARRAY)  # 480 KB: "large" here
    assert lab.payload_requests() == []
    assert folio.cache_stats()["shared_hits"] == 1
    assert _local_blobs(local) == {}  # not copied: the policy keeps it out of the local tier


# -- verification --------------------------------------------------------------------------------
def test_a_corrupt_shared_blob_is_skipped_with_a_warning_and_downloaded(
    lab: Lab, world: Path, caplog: pytest.LogCaptureFixture
) -> None:
    lab.warm()
    admin = DataFolio(
        lab.url, storage_options=lab.moto.storage_options(), cache_dir=str(lab.shared)
    )
    blob = Path(admin.cache_status("array")["cache_path"])
    data = bytearray(blob.read_bytes())
    data[-100] ^= 0xFF  # same size: only the hash tells
    os.chmod(blob, 0o644)
    blob.write_bytes(bytes(data))
    os.chmod(blob, 0o444)
    freeze(lab.shared, TIER_UID)
    before = listing(lab.shared)
    folio = lab.reader(world / "reader")
    lab.proxy.stats.reset()
    with caplog.at_level(logging.WARNING, logger="aiofolio.cache"):
        np.testing.assert_array_equal(folio.get("array"), ARRAY)
        assert folio.get("config") == CONFIG
    assert any("does not verify" in r.getMessage() for r in caplog.records)
    payload = lab.payload_requests()
    assert payload
    assert all("array" in r for r in payload)  # the corrupt one only
    stats = folio.cache_stats()
    assert (stats["shared_hits"], stats["misses"]) == (1, 1)
    status = folio.cache_status("array")
    assert status["cached"] is True
    assert status["shared_cache_path"] is None
    assert Path(status["cache_path"]).read_bytes() != bytes(data)
    assert listing(lab.shared) == before


# -- priority ------------------------------------------------------------------------------------
def test_fallback_reads_the_local_tier_first_and_first_the_shared_one(
    lab: Lab, world: Path
) -> None:
    lab.warm()
    local = world / "both"
    plain = DataFolio(lab.url, storage_options=lab.options, cache_dir=str(local))
    plain.warm_cache()  # the item is in both tiers now
    before = listing(lab.shared)

    fallback = lab.reader(local)  # the default
    assert fallback.settings.shared_cache_priority == "fallback"
    lab.proxy.stats.reset()
    base = fallback.cache_stats()
    np.testing.assert_array_equal(fallback.get("array"), ARRAY)
    assert fallback.get("config") == CONFIG
    stats = fallback.cache_stats()
    assert stats["hits"] - base["hits"] == 2
    assert stats["shared_hits"] - base["shared_hits"] == 0  # local hits

    first = lab.reader(local, shared_cache_priority="first")
    base = first.cache_stats()
    np.testing.assert_array_equal(first.get("array"), ARRAY)
    assert first.get("config") == CONFIG  # the caller-thread fast path asks the tier too
    stats = first.cache_stats()
    assert stats["hits"] - base["hits"] == 2
    assert stats["shared_hits"] - base["shared_hits"] == 2
    assert lab.payload_requests() == []
    assert listing(lab.shared) == before


def test_an_item_missing_from_the_tier_is_downloaded(lab: Lab, world: Path) -> None:
    lab.warm(names=["config"])
    folio = lab.reader(world / "reader")
    lab.proxy.stats.reset()
    np.testing.assert_array_equal(folio.get("array"), ARRAY)
    assert folio.get("config") == CONFIG
    assert lab.payload_requests()
    assert all("array" in r for r in lab.payload_requests())
    stats = folio.cache_stats()
    assert (stats["shared_hits"], stats["misses"]) == (1, 1)


def test_offline_reads_use_the_tier(lab: Lab, world: Path) -> None:
    lab.warm()
    local = world / "reader"
    lab.reader(local).get("config")  # the manifest is cached locally
    lab.proxy.stats.reset()
    offline = lab.reader(local, cache_mode="offline")
    np.testing.assert_array_equal(offline.get("array"), ARRAY)
    assert lab.proxy.stats.requests() == 0


# -- bundles without checksums (datafolio 2.3.0 in the cloud) --------------------------------------
def _df_reader(
    url: str, moto: MotoServer, proxy: FaultServer, local: Path, shared: Path
) -> DataFolio:
    return DataFolio(
        url,
        storage_options=moto.storage_options(endpoint_url=proxy.url),
        cache_dir=str(local),
        shared_cache_dir=str(shared),
    )


def test_a_datafolio_bundle_without_checksums_is_served_from_the_tier(
    datafolio_s3_bundle: Any,
    moto_server: MotoServer,
    fault_proxy: FaultServer,
    world: Path,
) -> None:
    from aiofolio.testing.dfbundles import assert_same, write_datafolio_bundle

    bundle, url = datafolio_s3_bundle
    shared = world / "shared"
    admin = DataFolio(url, storage_options=moto_server.storage_options(), cache_dir=str(shared))
    names = [n for n in bundle.expected if n != "ref"]  # ref points at a local file
    assert all(admin._item(n).checksum is None for n in names)
    admin.warm_cache(names)
    before = listing(shared)

    fault_proxy.stats.reset()
    folio = _df_reader(url, moto_server, fault_proxy, world / "one", shared)
    for name in names:
        assert_same(folio.get(name), bundle.expected[name])
    payload = [r.path for r in fault_proxy.stats.records() if not r.path.endswith("items.json")]
    assert payload == []
    assert folio.cache_stats()["shared_hits"] == len(names)
    assert listing(shared) == before

    # The bundle is deleted and written again at the same URL: datafolio's version ids start
    # over ("table--r2" again), but the items are not the ones the tier cached. The tier's
    # records are not used for them: the reads download.
    client = moto_server.boto3_client()
    bucket, prefix = url[len("s3://") :].split("/", 1)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    for obj in listed.get("Contents", []):
        client.delete_object(Bucket=bucket, Key=obj["Key"])
    again = write_datafolio_bundle(bundle.location, world / "sources-2")
    fault_proxy.stats.reset()
    fresh = _df_reader(url, moto_server, fault_proxy, world / "two", shared)
    assert fresh._item("table").version_id == admin._item("table").version_id
    for name in names:
        assert_same(fresh.get(name), again.expected[name])
    stats = fresh.cache_stats()
    assert stats["shared_hits"] == 0
    assert stats["misses"] == len(names)
    assert listing(shared) == before


def test_a_local_datafolio_bundle_over_http_is_found_by_its_checksums(
    datafolio_local_bundle: Any, http_server: FaultServer, world: Path
) -> None:
    from aiofolio.testing.dfbundles import assert_same

    bundle = datafolio_local_bundle
    root = Path(bundle.location)
    for p in root.rglob("*"):
        if p.is_file():
            http_server.put(f"/df/{p.relative_to(root).as_posix()}", p.read_bytes())
    url = f"{http_server.url}/df"
    shared = world / "shared"
    admin = DataFolio(url, cache_dir=str(shared))
    names = [n for n in bundle.expected if n != "ref"]
    admin.warm_cache(names)
    # "moment" has no checksum: the tier serves it only if a digest verified its download.
    unchecked = {n for n in names if admin.get_item(n).checksum is None}
    assert unchecked == {"moment"}
    # The file server states no digest (no Content-MD5): nothing but size and version
    # verified the tier's copy of "moment", so the tier's record is not trusted for it.
    assert admin.cache_status("moment")["verified_by"] == "size and version only"
    before = listing(shared)
    http_server.stats.reset()
    folio = DataFolio(url, cache_dir=str(world / "local"), shared_cache_dir=str(shared))
    for name in names:
        assert_same(folio.get(name), bundle.expected[name])
    payload = [r.path for r in http_server.stats.records() if not r.path.endswith("items.json")]
    assert payload == ["/df/" + payload_path(folio.get_item("moment"))]  # downloaded
    stats = folio.cache_stats()
    assert stats["shared_hits"] == len(names) - 1
    assert stats["misses"] == 1
    assert listing(shared) == before
