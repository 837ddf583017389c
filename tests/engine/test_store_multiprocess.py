"""The on-disk cache shared by several processes: record updates, stats, locks, publishing.

Every test starts real Python processes (bounded in number and time) on one cache folder.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

import aiofolio
from aiofolio.store import BlobStore, CacheLayout, RecordStore, StatsCounter, blob_lock

_SRC = str(Path(aiofolio.__file__).resolve().parents[1])
_PROC_TIMEOUT = 60


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(procs: Sequence[subprocess.Popen[str]]) -> list[str]:
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=_PROC_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        assert proc.returncode == 0, err
        outputs.append(out)
    return outputs


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return layout


_UPDATER = """
    import os, sys, time
    from aiofolio.store import CacheLayout, ItemRecord, RecordStore

    root, url, who, go, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    records = RecordStore(CacheLayout(root))
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:  # start together
        time.sleep(0.005)

    def bump(record):
        record.last_check += 1
        done = record.items.get(who)
        count = done.size if done is not None else 0
        record.items[who] = ItemRecord(name=who, size=count + 1)
        return record

    for _ in range(n):
        records.update(url, bump)
"""


def test_update_from_four_processes_loses_no_change(layout: CacheLayout, tmp_path: Path) -> None:
    url = "s3://lab/shared"
    go = tmp_path / "go"
    n = 25
    procs = [_spawn(_UPDATER, str(layout.root), url, f"p{i}", str(go), str(n)) for i in range(4)]
    time.sleep(0.2)  # let them import; the go file releases them together
    go.write_text("go")
    _finish(procs)
    loaded = RecordStore(layout).load(url)
    assert loaded is not None
    record, _ = loaded
    assert record.last_check == 4 * n  # every increment landed: the lock serialized them
    assert {name: item.size for name, item in record.items.items()} == {
        f"p{i}": n for i in range(4)
    }
    assert not [p for p in layout.bundle_dir(url).iterdir() if p.name.endswith(".tmp")]


_STATS_WRITER = """
    import sys
    from aiofolio.store import CacheLayout, StatsCounter

    stats = StatsCounter(CacheLayout(sys.argv[1]), flush_interval=3600)
    stats.add(sys.argv[2], hits=5, misses=2, bytes_downloaded=1000)
    stats.record_access(sys.argv[2], "training_data")
    # no flush() or close(): the exit handler must write the figures
"""


def test_stats_of_an_exited_process_are_seen(layout: CacheLayout) -> None:
    url = "s3://lab/exp"
    _finish([_spawn(_STATS_WRITER, str(layout.root), url) for _ in range(2)])
    stats = StatsCounter(layout, flush_interval=3600)
    try:
        stats.add(url, hits=1)
        totals = stats.totals()
        assert totals["hits"] == 11
        assert totals["misses"] == 4
        assert totals["bytes_downloaded"] == 2000
        assert stats.totals(url)["hits"] == 11
        assert stats.access_counts(url) == {"training_data": 2}
        assert stats.compact() == 2  # both writers are gone
        assert len(list(layout.stats_dir.iterdir())) == 1
        assert stats.totals() == totals
    finally:
        stats.close()


_HOLDER = """
    import sys, threading
    from aiofolio.store import CacheLayout, blob_lock

    with blob_lock(CacheLayout(sys.argv[1]), sys.argv[2], timeout=10) as locked:
        print("locked" if locked else "not locked", flush=True)
        threading.Event().wait(60)  # held until this process is killed
"""


def test_lock_held_by_another_process_then_freed_by_its_death(layout: CacheLayout) -> None:
    holder = _spawn(_HOLDER, str(layout.root), "digest-1")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        start = time.monotonic()
        with blob_lock(layout, "digest-1", timeout=0.1) as locked:
            assert locked is False
        assert time.monotonic() - start < 1.0
        with blob_lock(layout, "digest-2", timeout=0.1) as other:
            assert other is True  # other keys are independent
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=_PROC_TIMEOUT)
        start = time.monotonic()
        with blob_lock(layout, "digest-1", timeout=5) as locked:
            assert locked is True
        assert time.monotonic() - start < 0.5  # the kernel dropped the dead holder's flock
    finally:
        if holder.poll() is None:
            holder.kill()
        holder.communicate(timeout=_PROC_TIMEOUT)


_PUBLISHER = """
    import hashlib, os, sys, time
    from aiofolio.store import BlobStore, CacheLayout

    store = BlobStore(CacheLayout(sys.argv[1]))
    data = bytes(range(256)) * 4096
    digest = hashlib.md5(data).hexdigest()
    deadline = time.monotonic() + 30
    while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
        time.sleep(0.005)
    for _ in range(20):
        tmp = store.new_temp()
        tmp.write_bytes(data)
        assert store.publish(tmp, digest) == store.path(digest)
        assert store.lookup(digest, len(data)) is not None
        assert store.path(digest).read_bytes() == data  # never a partial file
"""


def test_processes_publishing_one_digest(layout: CacheLayout, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [_spawn(_PUBLISHER, str(layout.root), str(go)) for _ in range(4)]
    time.sleep(0.2)
    go.write_text("go")
    _finish(procs)
    data = bytes(range(256)) * 4096
    store = BlobStore(layout)
    digest = hashlib.md5(data).hexdigest()
    assert store.lookup(digest, len(data)) is not None
    assert [info.digest for info in store.iter_blobs()] == [digest]
    assert list(layout.tmp_dir.iterdir()) == []
