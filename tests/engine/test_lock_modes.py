"""Lock modes for caches on network filesystems: mount-table detection, leases, ``"none"``.

The lease tests use real lease files (a stale one written as another host's or a dead
process's would be) and a real heartbeat thread; the stress tests run 8 real processes, each
claiming its own host (``AIOFOLIO_HOST_ID``), on one cache folder against the counting HTTP
loopback server.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import aiofolio
from aiofolio import DataFolio, LockUnavailableError
from aiofolio.store import CacheLayout, cache_lock, lease, locks
from aiofolio.store.mounts import auto_lock_mode, filesystem_type, is_network_filesystem
from aiofolio.testing import FaultServer

_SRC = str(Path(aiofolio.__file__).resolve().parents[1])

_MOUNTS = """\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
filer:/export/home /home nfs4 rw,relatime,vers=4.2 0 0
/dev/sdb1 /home/alice/local xfs rw,relatime 0 0
mds@tcp:/scratch /scratch lustre rw,flock 0 0
//srv/share /mnt/my\\040share cifs rw 0 0
alice@box:/data /mnt/ssh fuse.sshfs rw,nosuid 0 0
"""


def test_the_longest_mount_point_prefix_decides() -> None:
    assert filesystem_type("/home/bob/.cache/aiofolio", _MOUNTS) == "nfs4"
    assert filesystem_type("/home/alice/local/cache", _MOUNTS) == "xfs"  # mounted inside
    assert filesystem_type("/home/alicex", _MOUNTS) == "nfs4"  # a prefix of a name is not
    assert filesystem_type("/scratch/c", _MOUNTS) == "lustre"
    assert filesystem_type("/mnt/my share/c", _MOUNTS) == "cifs"  # \040 in the table
    assert filesystem_type("/var/cache", _MOUNTS) == "ext4"
    assert is_network_filesystem("fuse.sshfs")
    assert is_network_filesystem("NFS")
    assert not is_network_filesystem("tmpfs")
    assert not is_network_filesystem(None)


def test_auto_chooses_lease_on_a_network_filesystem() -> None:
    assert auto_lock_mode("/home/bob/.cache/aiofolio", _MOUNTS) == "lease"
    assert auto_lock_mode("/scratch/alice/cache", _MOUNTS) == "lease"
    assert auto_lock_mode("/mnt/ssh/cache", _MOUNTS) == "lease"
    assert auto_lock_mode("/home/alice/local/cache", _MOUNTS) == "flock"
    assert auto_lock_mode("/tmp/cache", _MOUNTS) == "flock"


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return layout


def _write_lease(path: Path, host: str, pid: int, beat: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = {"host": host, "pid": pid, "token": "f" * 16, "beat": beat}
    path.write_text(json.dumps(line) + "\n")
    os.utime(path, (beat, beat))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_stale_lease_of_another_host_is_taken_over(layout: CacheLayout) -> None:
    assert locks.configure(layout, "lease") == "lease"
    path = locks.lease_path(layout, "digest-1")
    _write_lease(path, "other-node", os.getpid(), time.time() - 3600)  # old heartbeat
    with cache_lock(layout, "digest-1", 0.0) as locked:
        assert locked is True
        info = lease.read_lease(path)
        assert info is not None
        assert info.pid == os.getpid()
        assert info.token != "f" * 16
    assert not path.exists()  # released
    assert not path.with_name(path.name + ".takeover").exists()


def test_a_fresh_lease_of_another_host_is_respected(layout: CacheLayout) -> None:
    locks.configure(layout, "lease")
    path = locks.lease_path(layout, "digest-1")
    _write_lease(path, "other-node", os.getpid(), time.time())
    with cache_lock(layout, "digest-1", 0.2) as locked:
        assert locked is False
    assert json.loads(path.read_text())["token"] == "f" * 16  # untouched


def test_a_lease_of_a_dead_process_of_this_host_is_taken_over_at_once(
    layout: CacheLayout,
) -> None:
    locks.configure(layout, "lease")
    path = locks.lease_path(layout, "digest-1")
    _write_lease(path, aiofolio.store._util.host_id(), _dead_pid(), time.time())
    with cache_lock(layout, "digest-1", 0.0) as locked:
        assert locked is True


def _race_for(layout: CacheLayout, key: str, takers: int) -> list[bool]:
    barrier = threading.Barrier(takers)
    held: list[bool] = []
    inside = threading.Event()
    release = threading.Event()

    def take() -> None:
        barrier.wait()
        with cache_lock(layout, key, 0.0) as locked:
            held.append(locked)
            if locked:
                inside.set()
                release.wait(5)

    threads = [threading.Thread(target=take) for _ in range(takers)]
    for t in threads:
        t.start()
    inside.wait(5)
    time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(10)
    return held


def test_two_takers_of_one_stale_lease_do_not_both_hold_it(layout: CacheLayout) -> None:
    locks.configure(layout, "lease")
    path = locks.lease_path(layout, "k")
    for _ in range(20):
        _write_lease(path, "other-node", 1, time.time() - 3600)
        held = _race_for(layout, "k", 4)
        assert held.count(True) == 1, held


_CONTENDER = """
import sys, time
from aiofolio.store import CacheLayout, cache_lock, lease, locks

layout = CacheLayout(sys.argv[1])
lease.TTL_S = 0.6
locks.configure(layout, "lease")
won = 0
for _ in range(30):  # 3 TTLs and more
    with cache_lock(layout, "long", 0.0) as locked:
        won += locked
    time.sleep(0.06)
print(won)
"""


def test_the_heartbeat_keeps_a_long_holder_s_lease(
    layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease, "TTL_S", 0.6)
    monkeypatch.setattr(lease, "HEARTBEAT_S", 0.05)
    lease._wake.set()  # a heartbeat thread of an earlier test picks the new interval up
    locks.configure(layout, "lease")
    path = locks.lease_path(layout, "long")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
    env["AIOFOLIO_HOST_ID"] = "other-node"  # judges the lease by its heartbeat only
    with cache_lock(layout, "long", 0.0) as locked:
        assert locked
        first = lease.read_lease(path)
        assert first is not None
        out = subprocess.run(
            [sys.executable, "-c", _CONTENDER, str(layout.root)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        assert out.strip() == "0"  # never taken over while the holder lives
        now = lease.read_lease(path)
        assert now is not None
        assert now.token == first.token
        assert now.beat > first.beat + 1.0
    assert not path.exists()


def test_none_never_locks(layout: CacheLayout) -> None:
    locks.configure(layout, "none")
    with cache_lock(layout, "k", 1.0) as a, cache_lock(layout, "k", 1.0) as b:
        assert (a, b) == (False, False)
    assert list(layout.locks_dir.iterdir()) == []


def test_flock_refused_raises_a_named_error_in_flock_mode(
    layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import fcntl

    def refuse(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", refuse)  # what NFS without lockd answers
    locks.configure(layout, "flock")
    with pytest.raises(LockUnavailableError, match="lock_mode='lease'"), cache_lock(layout, "k", 0):
        pass
    locks.configure(layout, "auto")  # auto (here: a local disk) falls back to leases
    with cache_lock(layout, "k", 0.0) as locked:
        assert locked is True
    assert locks.lock_mode(layout) == "lease"


# --------------------------------------------------------------------------------------------
# 8 processes ("hosts") on one cache folder

ITEMS = 12
N = 3000
PROCS = 8

_WORKER = """
import hashlib, json, random, sys, time
import numpy as np
from aiofolio import DataFolio

url, cache_dir, seed, evict_limit = sys.argv[1:5]
rng = random.Random(int(seed))
limit = int(evict_limit) or None
folio = DataFolio(url, cache_dir=cache_dir, cache_ttl=3600, max_cache_size=limit,
                  eviction_threshold=0.5)
ops, errors = {"get": 0, "warm": 0, "enforce": 0}, []
for step in range(40):
    i = rng.randrange(12)
    roll = rng.random()
    try:
        if roll < 0.15:
            DataFolio.enforce_cache_limit(cache_dir)
            ops["enforce"] += 1
        elif roll < 0.3:
            names = [f"item{k:02d}" for k in rng.sample(range(12), 4)]
            result = folio.warm_cache(names, progress=False)
            ops["warm"] += 1
        else:
            value = folio.get(f"item{i:02d}")
            if not np.array_equal(value, np.full(3000, i, dtype=np.uint8)):
                errors.append(f"item{i:02d}: wrong value")
            ops["get"] += 1
    except Exception as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
print(json.dumps({"ops": ops, "errors": errors[:20]}))
"""


@pytest.fixture
def cache_dir(_isolated_cache: str) -> str:
    return _isolated_cache


def _bundle(http_server: FaultServer, tmp_path: Path) -> str:
    root = tmp_path / "bundle"
    writer = DataFolio(root, cache_enabled=False)
    for i in range(ITEMS):
        writer.add(f"item{i:02d}", np.full(N, i, dtype=np.uint8))
    for p in root.rglob("*"):
        if p.is_file():
            http_server.put(f"/bundle/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"{http_server.url}/bundle"


def _run_hosts(url: str, cache_dir: str, mode: str, evict_limit: int) -> None:
    procs = []
    for seed in range(PROCS):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
        env["AIOFOLIO_LOCK_MODE"] = mode
        env["AIOFOLIO_HOST_ID"] = f"node{seed}"
        code = textwrap.dedent(_WORKER)
        args = [url, cache_dir, str(seed), str(evict_limit)]
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", code, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    errors = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        assert proc.returncode == 0, err[-3000:]
        result = json.loads(out.strip().splitlines()[-1])
        errors += result["errors"]
        assert sum(result["ops"].values()) == 40
    assert errors == [], "\n".join(errors)
    v1 = Path(cache_dir) / "v1"
    assert list((v1 / "tmp").iterdir()) == []  # no temp file left
    assert [p for p in (v1 / "locks").iterdir() if p.suffix == ".lease"] == []
    for blob in (v1 / "blobs").rglob("*"):
        if blob.is_file():
            assert hashlib.md5(blob.read_bytes()).hexdigest() == blob.name


def _payload_gets(http_server: FaultServer) -> Counter[str]:
    return Counter(
        r.path
        for r in http_server.stats.records(method="GET")
        if not r.path.endswith(("items.json", "metadata.json"))
    )


@pytest.mark.timeout(240)
def test_eight_hosts_with_leases_download_each_item_once(
    http_server: FaultServer, tmp_path: Path, cache_dir: str
) -> None:
    url = _bundle(http_server, tmp_path)
    before = _payload_gets(http_server)
    _run_hosts(url, cache_dir, "lease", 0)  # no limit: passes run, nothing is evicted
    gets = _payload_gets(http_server) - before
    assert len(gets) == ITEMS  # every item was read
    assert set(gets.values()) == {1}, gets  # and downloaded once across the 8 "hosts"


@pytest.mark.timeout(240)
def test_eight_hosts_without_locks_stay_correct(
    http_server: FaultServer, tmp_path: Path, cache_dir: str
) -> None:
    url = _bundle(http_server, tmp_path)
    _run_hosts(url, cache_dir, "none", 4 * (N + 128))  # a tiny cache: evictions race
    assert DataFolio.cache_stats(cache_dir)["evictions"] > 0
    assert list((Path(cache_dir) / "v1" / "locks").iterdir()) == []


def test_in_use_marks_of_another_host_are_kept_and_dead_local_ones_dropped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiofolio.engine._folder import Folder
    from aiofolio.engine.inuse import InUse
    from aiofolio.store import _util

    folder = Folder(str(tmp_path / "cache"))
    inuse = InUse(folder)
    marks = folder.layout.version_dir / "inuse"
    marks.mkdir(parents=True, exist_ok=True)
    dead = _dead_pid()
    monkeypatch.setenv(_util.HOST_ID_ENV, "node-b")  # a file written on another host
    other = marks / _util.unique_name(".json", tagged=True).replace(str(os.getpid()), str(dead))
    other.write_text(json.dumps(["a" * 32]))
    monkeypatch.delenv(_util.HOST_ID_ENV)
    local = marks / _util.unique_name(".json", tagged=True).replace(str(os.getpid()), str(dead))
    local.write_text(json.dumps(["b" * 32]))
    assert inuse.marked_by_others() == {"a" * 32}  # the pid means nothing on this host
    assert other.exists()
    assert not local.exists()  # a dead process of this host
