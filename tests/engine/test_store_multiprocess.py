"""The on-disk cache shared by several processes: records, item logs, stats, locks, publishing.

Every test starts real Python processes (bounded in number and time) on one cache folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.synchronize import Event
from pathlib import Path

import pytest

import aiofolio
from aiofolio.store import (
    BlobStore,
    BundleRecord,
    CacheLayout,
    ItemRecord,
    RecordStore,
    StatsCounter,
    blob_lock,
    itemlog,
    locks,
)
from aiofolio.store import records as records_module

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
        return record

    for i in range(n):
        records.update(url, bump)
        records.put_items(url, [ItemRecord(name=f"{who}-{i}", size=i)])
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
    items = RecordStore(layout).items(url)
    assert {name: item.size for name, item in items.items()} == {
        f"p{p}-{i}": i for p in range(4) for i in range(n)
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


# --------------------------------------------------------------------------------------------
# item records from several processes (multiprocessing: spawn and fork), no working lock

_FORMAT1 = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "format1_bundle"
_FORMAT1_URL = "s3://lab/format1"
_ITEMS_URL = "s3://lab/warm"
_INHERITED: list[RecordStore] = []  # a store the parent used, for forked children


def _expected_item(name: str) -> ItemRecord:
    digest = hashlib.md5(name.encode()).hexdigest()
    return ItemRecord(name=name, digest=digest, size=len(name), fast_hash=digest[::-1])


def _without_locks(compact_bytes: int | None = None) -> None:
    """In a child: every cache lock yields False (as where flock is unavailable)."""

    @contextlib.contextmanager
    def no_lock(*args: object, **kwargs: object) -> Iterator[bool]:
        yield False

    locks.cache_lock = no_lock
    records_module.cache_lock = no_lock  # type: ignore[attr-defined]
    if compact_bytes is not None:
        itemlog.COMPACT_MIN_BYTES = compact_bytes


def _wait_for(go: str) -> None:
    deadline = time.monotonic() + 30
    while not os.path.exists(go) and time.monotonic() < deadline:
        time.sleep(0.005)


def _putter(root: str, url: str, who: str, n: int, go: str, compact_bytes: int) -> None:
    _without_locks(compact_bytes)
    store = _INHERITED[0] if _INHERITED else RecordStore(CacheLayout(root))
    _wait_for(go)
    i = 0
    while i < n:
        batch = [_expected_item(f"{who}-{k}") for k in range(i, min(n, i + 1 + i % 3))]
        store.put_items(url, batch)
        i += len(batch)
        if i % 97 == 0:
            store.items(url)  # read others' logs now and then, as an engine would


def _saver(root: str, url: str, n: int, go: str) -> None:
    _without_locks()
    store = RecordStore(CacheLayout(root))
    _wait_for(go)

    def bump(record: BundleRecord) -> BundleRecord:
        record.last_check += 1
        return record

    for _ in range(n):
        store.update(url, bump)


def _run(ctx: BaseContext, target: Callable[..., None], argsets: list[tuple[object, ...]]) -> None:
    procs = [ctx.Process(target=target, args=args) for args in argsets]  # type: ignore[attr-defined]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=_PROC_TIMEOUT)
        if proc.is_alive():
            proc.kill()
            proc.join()
        assert proc.exitcode == 0


def _log_writers(layout: CacheLayout, url: str) -> dict[str, set[str]]:
    """Each log file and the writer ids its entries name."""
    folder = layout.bundle_dir(url) / "items"
    found = {}
    for path in folder.iterdir():
        lines = path.read_bytes().splitlines()
        found[path.name] = {json.loads(line)["w"] for line in lines}
    return found


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_four_processes_without_locks_lose_no_item(
    layout: CacheLayout, tmp_path: Path, method: str
) -> None:
    ctx = multiprocessing.get_context(method)
    go = tmp_path / "go"
    parent_items = 0
    if method == "fork":  # the children inherit a store that already has its own log open
        store = RecordStore(layout)
        store.put_items(_ITEMS_URL, [_expected_item(f"parent-{k}") for k in range(10)])
        _INHERITED.append(store)
        parent_items = 10
    try:
        args = [(str(layout.root), _ITEMS_URL, f"p{p}", 500, str(go), 16 * 1024) for p in range(4)]
        procs = [ctx.Process(target=_putter, args=a) for a in args]  # type: ignore[attr-defined]
        for proc in procs:
            proc.start()
        time.sleep(0.3 if method == "fork" else 1.5)  # spawned children import first
        go.write_text("go")
        for proc in procs:
            proc.join(timeout=_PROC_TIMEOUT)
            if proc.is_alive():
                proc.kill()
                proc.join()
            assert proc.exitcode == 0
    finally:
        _INHERITED.clear()
    want = {f"p{p}-{k}" for p in range(4) for k in range(500)}
    want |= {f"parent-{k}" for k in range(parent_items)}
    view = RecordStore(layout).items(_ITEMS_URL)
    assert set(view) == want  # no lost update, with racing compactions and no lock
    assert all(rec == _expected_item(name) for name, rec in view.items())
    assert (layout.bundle_dir(_ITEMS_URL) / "items.snap").exists()  # compactions ran
    writers = _log_writers(layout, _ITEMS_URL)
    assert len(writers) == 4 + (method == "fork")  # one log per process, the parent's too
    assert all(ids == {name[:-4]} for name, ids in writers.items())  # one writer per file
    assert len({name.rsplit("-", 2)[1] for name in writers}) == len(writers)  # distinct pids


def test_bundle_saves_racing_with_item_puts_lose_no_item(
    layout: CacheLayout, tmp_path: Path
) -> None:
    """Starting from a format-1 record: the first save migrates while the puts go on."""
    ctx = multiprocessing.get_context("spawn")
    shutil.copytree(_FORMAT1, layout.bundle_dir(_FORMAT1_URL))
    base = json.loads((_FORMAT1 / "record.json").read_bytes())
    go = tmp_path / "go"
    root = str(layout.root)
    procs = [
        ctx.Process(target=_putter, args=(root, _FORMAT1_URL, f"p{p}", 500, str(go), 1 << 20))
        for p in range(2)
    ] + [ctx.Process(target=_saver, args=(root, _FORMAT1_URL, 50, str(go)))]
    for proc in procs:
        proc.start()
    time.sleep(1.5)
    go.write_text("go")
    for proc in procs:
        proc.join(timeout=_PROC_TIMEOUT)
        if proc.is_alive():
            proc.kill()
            proc.join()
        assert proc.exitcode == 0
    store = RecordStore(layout)
    view = store.items(_FORMAT1_URL)
    assert set(view) == set(base["items"]) | {f"p{p}-{k}" for p in range(2) for k in range(500)}
    loaded = store.load(_FORMAT1_URL)
    assert loaded is not None
    assert loaded[0].last_check == base["last_check"] + 50
    on_disk = json.loads((layout.bundle_dir(_FORMAT1_URL) / "record.json").read_bytes())
    assert on_disk["format"] == 2
    assert "items" not in on_disk


def _killed_warmer(root: str, url: str, conn: Connection) -> None:
    _without_locks(8 * 1024)  # compact often, so that a kill may land in one
    store = RecordStore(CacheLayout(root))
    i = 0
    while True:
        batch = [_expected_item(f"w-{k}") for k in range(i, i + 1 + i % 4)]
        store.put_items(url, batch)
        i += len(batch)
        conn.send(i)  # everything below i is committed


@pytest.mark.parametrize("stop_at", [300, 1700])
def test_a_process_killed_mid_warm_leaves_a_usable_store(layout: CacheLayout, stop_at: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_killed_warmer, args=(str(layout.root), _ITEMS_URL, sender))
    proc.start()
    sender.close()
    acked = 0
    deadline = time.monotonic() + _PROC_TIMEOUT
    try:
        while acked < stop_at and time.monotonic() < deadline:
            if receiver.poll(1.0):
                acked = receiver.recv()
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=_PROC_TIMEOUT)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
    with contextlib.suppress(EOFError, OSError):
        while receiver.poll(0):
            acked = receiver.recv()
    assert acked >= stop_at
    store = RecordStore(layout)
    view = store.items(_ITEMS_URL)
    assert {f"w-{k}" for k in range(acked)} <= set(view)  # every committed put is there
    assert all(rec == _expected_item(name) for name, rec in view.items())  # and nothing torn
    # The store goes on: writes, a sweep of the dead process's temps, a compaction that
    # reclaims its log once it is old enough, and the same view throughout.
    store.put_items(_ITEMS_URL, [_expected_item("after")])
    store.sweep_temps(max_age_s=0)
    folder = layout.bundle_dir(_ITEMS_URL)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    for path in (folder / "items").iterdir():
        os.utime(path, (time.time() - 600, time.time() - 600))
    assert store.compact(_ITEMS_URL)
    remaining = list((folder / "items").iterdir())
    assert [p.name.rsplit("-", 2)[1] for p in remaining] == [str(os.getpid())]
    assert RecordStore(layout).items(_ITEMS_URL) == view | {"after": _expected_item("after")}


def _short_writer(root: str, url: str, who: str, hold: Event | None) -> None:
    store = RecordStore(CacheLayout(root))
    store.put_items(url, [_expected_item(f"{who}-{k}") for k in range(100)])
    if hold is not None:
        hold.wait(_PROC_TIMEOUT)


def test_compaction_removes_the_logs_of_exited_processes(layout: CacheLayout) -> None:
    ctx = multiprocessing.get_context("spawn")
    root = str(layout.root)
    hold = ctx.Event()
    holder = ctx.Process(target=_short_writer, args=(root, _ITEMS_URL, "holder", hold))
    holder.start()
    try:
        _run(ctx, _short_writer, [(root, _ITEMS_URL, f"gone{p}", None) for p in range(3)])
        store = RecordStore(layout)
        deadline = time.monotonic() + _PROC_TIMEOUT
        while len(store.items(_ITEMS_URL)) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)  # the holder has written
        view = store.items(_ITEMS_URL)
        assert len(view) == 400
        folder = layout.bundle_dir(_ITEMS_URL) / "items"
        assert store.compact(_ITEMS_URL)
        assert len(list(folder.iterdir())) == 4  # all within the grace period
        old = time.time() - 600
        for path in folder.iterdir():
            os.utime(path, (old, old))
        assert store.compact(_ITEMS_URL)
        (left,) = folder.iterdir()  # only the live holder's
        assert left.name.rsplit("-", 2)[1] == str(holder.pid)
        assert RecordStore(layout).items(_ITEMS_URL) == view
        hold.set()
        holder.join(timeout=_PROC_TIMEOUT)
        assert holder.exitcode == 0
        os.utime(left, (old, old))
        assert store.compact(_ITEMS_URL)
        assert list(folder.iterdir()) == []
        assert RecordStore(layout).items(_ITEMS_URL) == view
    finally:
        hold.set()
        if holder.is_alive():
            holder.kill()
        holder.join()
