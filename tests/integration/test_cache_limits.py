"""Cache size limits with real downloads from the loopback HTTP file server.

* Soft limit: fill past a small ``max_cache_size``, then check which items remain for each
  policy (LRU, LFU, FIFO), that evicted items are fetched again (one GET) and kept ones are
  not, and the ``Evicted N items (...) from cache`` log line.
* Pins and priorities survive eviction (and a new folio object, as after a restart).
* Hard limit: a download that cannot fit is refused with ``CacheFullError`` before any byte is
  fetched, with no temp file or reservation left; one that fits after evicting evicts first.
* In use: a path handed out by ``get_path`` is not evicted; a blob another process evicts
  before the reader opens it is fetched again, not an error.
* Maintenance: ``enforce_cache_limit``, ``cleanup_cache(older_than=...)``,
  ``cleanup_orphaned_caches()``, ``cache_info()``.
* A full disk: ENOSPC on a 4 MiB tmpfs (skipped with the reason where mounting is not allowed).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aiofolio import CacheFullError, DataFolio
from aiofolio.bundle import payload_path
from aiofolio.config import human_size
from aiofolio.store import CacheLayout
from aiofolio.store.prefs import PrefsStore
from aiofolio.testing import FaultServer

NAMES = ["a", "b", "c", "d", "e", "f"]
N = 1000  # bytes of array data per item (the .npy file adds a 128-byte header)


def _value(name: str, n: int = N) -> np.ndarray:
    return np.full(n, ord(name[0]), dtype=np.uint8)


class Remote:
    """A bundle written locally and served by the HTTP file server."""

    def __init__(self, server: FaultServer, root: Path, prefix: str = "/bundle") -> None:
        self.server, self.root, self.prefix = server, root, prefix
        self.writer = DataFolio(root, cache_enabled=False)

    def add(self, name: str, value: np.ndarray) -> None:
        self.writer.add(name, value, overwrite=True)
        for p in self.root.rglob("*"):
            if p.is_file():
                self.server.put(
                    f"{self.prefix}/{p.relative_to(self.root).as_posix()}", p.read_bytes()
                )

    @property
    def url(self) -> str:
        return f"{self.server.url}{self.prefix}"

    def size(self, name: str) -> int:
        size = self.writer.get_item(name).size_bytes
        assert size is not None
        return size

    def gets(self, name: str) -> int:
        path = f"{self.prefix}/{payload_path(self.writer.get_item(name))}"
        return self.server.stats.requests(path=path, method="GET")


@pytest.fixture
def remote(http_server: FaultServer, tmp_path: Path) -> Remote:
    r = Remote(http_server, tmp_path / "bundle")
    for name in NAMES:
        r.add(name, _value(name))
    return r


@pytest.fixture
def cache_dir(_isolated_cache: str) -> Path:
    return Path(_isolated_cache)


def _cached(folio: DataFolio) -> set[str]:
    return {n for n in NAMES if folio.cache_status(n)["cached"]}


def _check(folio: DataFolio, name: str) -> None:
    np.testing.assert_array_equal(folio.get(name), _value(name))


def _temps(cache_dir: Path) -> list[str]:
    tmp = cache_dir / "v1" / "tmp"
    return sorted(os.listdir(tmp)) if tmp.is_dir() else []


def _reservations(cache_dir: Path) -> list[str]:
    folder = cache_dir / "v1" / "reservations"
    return sorted(os.listdir(folder)) if folder.is_dir() else []


# -- the soft limit, per policy ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "extra_reads", "kept"),
    [
        ("lru", ["a"], {"a", "d", "e"}),  # b, c: least recently used
        ("lfu", ["a", "a", "a", "b", "b", "d"], {"a", "b", "e"}),  # c (1 read), then d (2)
        ("fifo", ["a", "a", "b"], {"c", "d", "e"}),  # a, b: cached first, reads do not matter
    ],
)
def test_soft_limit_keeps_what_the_policy_prefers(
    remote: Remote,
    policy: str,
    extra_reads: list[str],
    kept: set[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = remote.size("a")
    folio = DataFolio(
        remote.url,
        max_cache_size=int(size * 4.5),
        eviction_threshold=0.7,  # down to 3.15 items: two go
        eviction_policy=policy,
    )
    for name in ["a", "b", "c", "d"]:
        _check(folio, name)
    for name in extra_reads:
        _check(folio, name)
    assert _cached(folio) == {"a", "b", "c", "d"}
    with caplog.at_level(logging.INFO, logger="aiofolio.limits"):
        _check(folio, "e")  # 5 items > 4.5: evict down to 3.15 items
    assert _cached(folio) == kept
    assert [r.getMessage() for r in caplog.records if r.name == "aiofolio.limits"] == [
        f"Evicted 2 items ({human_size(2 * size)}) from cache"
    ]
    info = DataFolio.cache_info()
    assert info["blobs"] == 3
    assert info["size_bytes"] == 3 * size <= info["limit_bytes"]
    # Kept items are hits; evicted ones are downloaded again (exactly once more).
    before = {n: remote.gets(n) for n in ["a", "b", "c", "d", "e"]}
    for name in sorted(kept):
        _check(folio, name)
        assert remote.gets(name) == before[name]
    gone = sorted({"a", "b", "c", "d"} - kept)[0]
    _check(folio, gone)
    assert remote.gets(gone) == before[gone] + 1


def test_pins_and_priorities_survive_eviction_and_restarts(remote: Remote, cache_dir: Path) -> None:
    size = remote.size("a")
    # Down to 3.15 items: the pinned and the prioritized one stay, plus the newest.
    opts = {"max_cache_size": int(size * 3.5), "eviction_threshold": 0.9}
    first = DataFolio(remote.url, **opts)
    first.pin_cache("a")
    first.set_cache_priority("b", 5)
    del first
    # On disk, readable by any other process (a fresh store object has no memory of it).
    wishes = PrefsStore(CacheLayout(cache_dir)).load(remote.url)
    assert (wishes["a"].pinned, wishes["b"].priority) == (True, 5)
    folio = DataFolio(remote.url, **opts)  # a new object: the preferences are on disk
    for name in NAMES:  # a and b are the oldest, but stay
        _check(folio, name)
    assert _cached(folio) == {"a", "b", "f"}
    assert DataFolio.cache_info()["pinned"] == 1
    # Unpinned and back to priority 0, they go like any other.
    folio.unpin_cache("a")
    folio.set_cache_priority("b", 0)
    DataFolio.configure_cache(max_cache_size=size)
    result = DataFolio.enforce_cache_limit()
    assert result["evicted"] == 3
    assert result["total_after"] == 0
    assert _cached(folio) == set()


def test_enforce_cache_limit_on_a_folio_and_on_the_class(remote: Remote) -> None:
    size = remote.size("a")
    folio = DataFolio(remote.url, max_cache_size=None)
    for name in NAMES:
        _check(folio, name)
    assert folio.enforce_cache_limit()["evicted"] == 0  # unlimited
    DataFolio.configure_cache(max_cache_size=size * 2, eviction_threshold=1.0)
    result = DataFolio.enforce_cache_limit()
    assert result["evicted"] == 4
    assert result["bytes_freed"] == 4 * size
    assert len(result["items"]) == 4
    assert _cached(folio) == {"e", "f"}  # the most recently used


# -- the hard limit --------------------------------------------------------------------------------
def test_hard_limit_evicts_first_then_refuses_without_a_temp_file(
    remote: Remote, cache_dir: Path
) -> None:
    size = remote.size("a")
    folio = DataFolio(remote.url, max_cache_size=int(size * 2.5), hard_limit=True)
    _check(folio, "a")
    _check(folio, "b")
    _check(folio, "c")  # evicts a before downloading: never more than the limit
    assert _cached(folio) == {"b", "c"}
    folio.pin_cache("b")
    folio.pin_cache("c")
    gets = remote.gets("d")
    with pytest.raises(
        CacheFullError, match=rf"{size} bytes.*hard cache limit of {int(size * 2.5)}"
    ):
        folio.get("d")
    assert remote.gets("d") == gets  # refused before any byte was fetched
    assert _temps(cache_dir) == []
    assert _reservations(cache_dir) == []
    assert _cached(folio) == {"b", "c"}  # refusing did not evict anything


def test_hard_limit_refuses_an_item_bigger_than_the_limit(remote: Remote, cache_dir: Path) -> None:
    remote.add("big", _value("big", 5 * N))
    folio = DataFolio(remote.url, max_cache_size=3 * N, hard_limit=True)
    _check(folio, "a")
    with pytest.raises(CacheFullError, match="does not fit under the hard cache limit"):
        folio.get("big")
    assert remote.gets("big") == 0
    assert _cached(folio) == {"a"}  # nothing evicted for a hopeless download
    assert _temps(cache_dir) == []
    assert _reservations(cache_dir) == []


def test_what_dead_processes_left_behind_is_ignored(remote: Remote, cache_dir: Path) -> None:
    """A reservation or in-use marker of a process killed with -9 blocks nothing."""
    size = remote.size("a")
    dead = subprocess.Popen(["true"])
    dead.wait()
    folio = DataFolio(remote.url, max_cache_size=int(size * 1.5), hard_limit=True)
    _check(folio, "a")
    digest = Path(folio.cache_status("a")["cache_path"]).name
    v1 = cache_dir / "v1"
    (v1 / "reservations").mkdir(exist_ok=True)
    (v1 / "reservations" / f"{dead.pid}-0123456789abcdef.json").write_text(str(100 * size))
    (v1 / "inuse").mkdir(exist_ok=True)
    (v1 / "inuse" / f"{dead.pid}-0123456789abcdef.json").write_text(f'["{digest}"]')
    _check(folio, "b")  # fits by evicting a: the dead reservation and marker do not count
    assert _cached(folio) == {"b"}
    assert _reservations(cache_dir) == []
    assert os.listdir(v1 / "inuse") == []


# -- in use --------------------------------------------------------------------------------------
def test_a_path_from_get_path_is_not_evicted_while_its_folio_lives(remote: Remote) -> None:
    size = remote.size("a")
    folio = DataFolio(remote.url, max_cache_size=int(size * 2.5), eviction_threshold=0.5)
    path = folio.get_path("a")
    for name in ["b", "c", "d"]:
        _check(folio, name)
    assert os.path.exists(path)
    assert np.load(path).tobytes() == _value("a").tobytes()
    del folio
    gc.collect()
    other = DataFolio(remote.url, max_cache_size=int(size * 2.5), eviction_threshold=0.5)
    DataFolio.configure_cache(max_cache_size=size // 2)
    other.enforce_cache_limit()
    DataFolio.enforce_cache_limit()
    assert not os.path.exists(path)  # the first folio is gone: its path is evictable now


_HOLDER = """
import sys
from aiofolio import DataFolio
folio = DataFolio(sys.argv[1], cache_dir=sys.argv[2])
print(folio.get_path("a"), flush=True)
sys.stdin.read()  # hold the folio until the test closes stdin
"""


def test_a_path_handed_out_in_another_process_is_not_evicted(
    remote: Remote, cache_dir: Path
) -> None:
    import aiofolio

    env = dict(os.environ)
    src = str(Path(aiofolio.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, remote.url, str(cache_dir)],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        path = holder.stdout.readline().strip()
        assert os.path.exists(path)
        folio = DataFolio(remote.url)
        _check(folio, "b")
        DataFolio.configure_cache(max_cache_size=1)
        result = DataFolio.enforce_cache_limit()
        assert result["evicted"] == 1  # b; a is held by the other process
        assert os.path.exists(path)
    finally:
        holder.communicate(input="", timeout=60)
    assert DataFolio.enforce_cache_limit()["evicted"] == 1  # the holder is gone: a goes now
    assert not os.path.exists(path)


def test_a_blob_evicted_by_another_process_is_fetched_again(remote: Remote) -> None:
    folio = DataFolio(remote.url)
    _check(folio, "a")
    blob = Path(folio.cache_status("a")["cache_path"])
    os.chmod(blob.parent, 0o755)
    blob.unlink()  # what another process's eviction does (record entry still there)
    _check(folio, "a")
    assert remote.gets("a") == 2


async def test_the_read_retries_when_the_blob_vanishes_before_it_is_opened(
    remote: Remote,
) -> None:
    folio = await DataFolio.aopen(remote.url)
    await folio.aget("a")
    caches = folio._session.require_cache()
    in_use = caches.rt.inuse.local
    item = folio._item("a")
    calls: list[Path] = []

    async def use(blob: Path) -> bytes:
        calls.append(blob)
        if len(calls) == 1:
            os.unlink(blob)  # evicted between blob_for returning and the open
        assert blob.name in in_use()
        return np.load(blob).tobytes()

    from aiofolio import _portal

    data = await _portal.acall(lambda: caches.blobs.read(item, use))
    assert data == _value("a").tobytes()
    assert len(calls) == 2
    assert remote.gets("a") == 2
    assert calls[0].name not in in_use()


# -- maintenance ---------------------------------------------------------------------------------
def test_cleanup_cache_removes_what_was_not_read_for_a_while(remote: Remote) -> None:
    folio = DataFolio(remote.url)
    for name in NAMES:
        _check(folio, name)
    folio.pin_cache("c")
    old = time.time() - 10 * 86400
    for name in ["a", "b", "c"]:
        os.utime(folio.cache_status(name)["cache_path"], (old, old))
    result = DataFolio.cleanup_cache(older_than="7d")
    assert result["evicted"] == 2
    assert result["bytes_freed"] == remote.size("a") + remote.size("b")
    assert _cached(folio) == {"c", "d", "e", "f"}
    assert folio.cleanup_cache("7d")["evicted"] == 0


def test_cleanup_orphaned_caches_removes_bundles_whose_manifest_is_gone(
    http_server: FaultServer, tmp_path: Path
) -> None:
    keep = Remote(http_server, tmp_path / "keep", "/keep")
    gone = Remote(http_server, tmp_path / "gone", "/gone")
    keep.add("x", _value("x"))
    gone.add("y", _value("y"))
    gone.add("shared", _value("s"))
    keep.add("shared", _value("s"))  # the same bytes: one blob for both bundles
    a, b = DataFolio(keep.url), DataFolio(gone.url)
    for folio, names in ((a, ["x", "shared"]), (b, ["y", "shared"])):
        for name in names:
            folio.get(name)
    assert DataFolio.cache_info()["blobs"] == 3
    http_server.delete("/gone/items.json")
    result = DataFolio.cleanup_orphaned_caches()
    assert result["removed"] == [gone.url]
    assert result["bytes_freed"] == gone.size("y")  # the shared blob stays for "keep"
    info = DataFolio.cache_info()
    assert (info["bundles"], info["blobs"]) == (1, 2)
    np.testing.assert_array_equal(a.get("shared"), _value("s"))


def test_cache_info_reports_size_limit_and_usage(remote: Remote, cache_dir: Path) -> None:
    size = remote.size("a")
    folio = DataFolio(remote.url, max_cache_size=100 * size)
    for name in ["a", "b"]:
        _check(folio, name)
    _check(folio, "a")
    info = folio.cache_info()
    assert info["path"] == str(cache_dir)
    assert info["size_bytes"] == 2 * size
    assert info["limit_bytes"] == 100 * size
    assert info["usage_percent"] == pytest.approx(2.0)
    assert info["is_soft_limit"] is True
    assert info["policy"] == "lru"
    assert (info["bundles"], info["items"], info["blobs"]) == (1, 2, 2)
    assert info["hit_rate"] == pytest.approx(1 / 3)
    assert info["oldest_access"] is not None
    assert info["oldest_access"].endswith("Z")


async def test_the_async_twins(remote: Remote, http_server: FaultServer) -> None:
    size = remote.size("a")
    folio = await DataFolio.aopen(remote.url, max_cache_size=size * 2, eviction_threshold=1.0)
    for name in ["a", "b"]:
        await folio.aget(name)
    info = await DataFolio.acache_info()
    assert (info["blobs"], info["size_bytes"]) == (2, 2 * size)
    assert (await folio.aenforce_cache_limit())["evicted"] == 0
    assert (await DataFolio.acleanup_cache(older_than=0))["evicted"] == 2
    await folio.aget("c")
    http_server.delete("/bundle/items.json")
    result = await DataFolio.acleanup_orphaned_caches()
    assert result["removed"] == [remote.url]
    assert (await folio.acache_info())["bundles"] == 0


# -- a full disk -----------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs (needs root and a container that allows mounts)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs for the ENOSPC test: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the ENOSPC test: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run(["umount", "-l", str(mount)], timeout=10, check=False)


def test_a_full_disk_evicts_and_retries_once_then_refuses(
    http_server: FaultServer, tmp_path: Path, small_disk: Path
) -> None:
    mib = 1 << 20
    r = Remote(http_server, tmp_path / "bundle")
    rng = np.random.default_rng(7)
    values = {n: rng.integers(0, 255, size=mib, dtype=np.uint8) for n in ["p", "q", "r"]}
    values["big"] = rng.integers(0, 255, size=int(1.5 * mib), dtype=np.uint8)
    values["huge"] = rng.integers(0, 255, size=5 * mib, dtype=np.uint8)
    for name, value in values.items():
        r.add(name, value)
    cache = small_disk / "cache"
    folio = DataFolio(r.url, cache_dir=str(cache), max_cache_size=None)
    for name in ["p", "q", "r"]:
        folio.get(name)
    # 3 MiB cached on a 4 MiB disk: 1.5 MiB more hits ENOSPC, evicts, and fits on the retry.
    np.testing.assert_array_equal(folio.get("big"), values["big"])
    assert r.gets("big") == 2
    cached = {n for n in values if folio.cache_status(n)["cached"]}
    assert "big" in cached
    assert len(cached) <= 3
    assert _temps(cache) == []
    # Bigger than the disk: ENOSPC twice, then CacheFullError and no partial file.
    with pytest.raises(CacheFullError, match="full"):
        folio.get("huge")
    assert r.gets("huge") == 2
    assert _temps(cache) == []
    np.testing.assert_array_equal(folio.get("big"), values["big"])
