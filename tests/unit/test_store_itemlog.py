"""Item logs: the merge order, the on-disk format read by hand, torn and bad lines, compaction."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from pathlib import Path

import msgspec
import pytest

from aiofolio.store import CacheLayout, ItemRecord, RecordStore, itemlog
from aiofolio.store.itemlog import ItemIndex, Key

URL = "s3://lab/logs"
DEAD_PID = 999_999_999  # above any pid_max: never a running process


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return layout


@pytest.fixture
def records(layout: CacheLayout) -> RecordStore:
    return RecordStore(layout)


def _rec(name: str, digest: str = "d0", size: int = 0) -> ItemRecord:
    return ItemRecord(name=name, digest=digest, size=size)


def _writer(n: int, *, pid: int = DEAD_PID, host: str | None = None) -> str:
    return f"{host or itemlog.host_id()}-{pid}-{n:016x}"


def _line(kind: str, ts: float, w: str, seq: int, **fields: object) -> bytes:
    return json.dumps({"k": kind, "ts": ts, "w": w, "seq": seq, **fields}).encode() + b"\n"


def _put(ts: float, w: str, seq: int, name: str, digest: str = "d0", size: int = 0) -> bytes:
    rec = msgspec.to_builtins(_rec(name, digest, size))
    return _line("put", ts, w, seq, rec=rec)


def _log(layout: CacheLayout, writer: str, *lines: bytes, age: float = 0.0) -> Path:
    folder = layout.bundle_dir(URL) / "items"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{writer}.log"
    with open(path, "ab") as fh:
        fh.write(b"".join(lines))
    if age:
        _age(path, age)
    return path


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _logs(layout: CacheLayout) -> list[str]:
    folder = layout.bundle_dir(URL) / "items"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


# --------------------------------------------------------------------------------------------
# the merge


_Op = tuple[str, Key, str, str | None]  # (kind, key, name, digest)


def _sequential(ops: list[_Op]) -> dict[str, str]:
    """The reference semantics: apply in key order, last wins."""
    state: dict[str, str] = {}
    for kind, _key, name, digest in sorted(ops, key=lambda op: op[1]):
        if kind == "put":
            state[name] = digest or ""
        elif kind == "drop":
            if digest is None or state.get(name) == digest:
                state.pop(name, None)
        else:
            state.clear()
    return state


def _apply(index: ItemIndex, op: _Op) -> None:
    kind, key, name, digest = op
    if kind == "put":
        index.put(key, _rec(name, digest or ""))
    elif kind == "drop":
        index.drop(key, name, digest)
    else:
        index.clear(key)


def _random_ops(rng: random.Random, count: int) -> list[_Op]:
    ops: list[_Op] = []
    seqs = [0, 0, 0]
    for _ in range(count):
        w = rng.randrange(3)
        key = (float(rng.randrange(40)), f"w{w}", seqs[w])
        seqs[w] += 1
        name = rng.choice("abcd")
        roll = rng.random()
        if roll < 0.5:
            ops.append(("put", key, name, rng.choice(["d1", "d2", "d3"])))
        elif roll < 0.7:
            ops.append(("drop", key, name, rng.choice(["d1", "d2", "d3"])))
        elif roll < 0.9:
            ops.append(("drop", key, name, None))
        else:
            ops.append(("clear", key, "", None))
    return ops


def test_the_view_is_the_sequential_result_whatever_the_arrival_order() -> None:
    rng = random.Random(20240611)
    for _ in range(400):
        ops = _random_ops(rng, rng.randrange(1, 25))
        want = _sequential(ops)
        for _ in range(4):
            arrival = ops + rng.sample(ops, k=len(ops) // 3)  # some arrive twice
            rng.shuffle(arrival)
            index = ItemIndex()
            for op in arrival:
                _apply(index, op)
            assert {n: r.digest for n, r in index.view.items()} == want, (ops, arrival)


def test_a_snapshot_in_the_middle_changes_nothing() -> None:
    rng = random.Random(7)
    decoder = msgspec.json.Decoder(itemlog._Snapshot)
    for _ in range(300):
        ops = _random_ops(rng, rng.randrange(1, 25))
        rng.shuffle(ops)
        cut = rng.randrange(len(ops) + 1)
        index = ItemIndex()
        for op in ops[:cut]:
            _apply(index, op)
        snap = index.to_snapshot(float("-inf"), url=URL, written_at=0.0, max_ts=0.0, offsets={})
        index = ItemIndex.from_snapshot(decoder.decode(msgspec.json.encode(snap)))
        for op in ops[cut:]:
            _apply(index, op)
        assert {n: r.digest for n, r in index.view.items()} == _sequential(ops)


def test_a_snapshot_leaves_out_only_old_tombstones() -> None:
    index = ItemIndex()
    index.put((10.0, "w", 0), _rec("old"))
    index.drop((11.0, "w", 1), "old", None)
    index.put((10.0, "w", 2), _rec("young"))
    index.drop((100.0, "w", 3), "young", None)
    index.put((12.0, "w", 4), _rec("live"))
    snap = index.to_snapshot(50.0, url=URL, written_at=0.0, max_ts=0.0, offsets={})
    assert set(snap.keys) == {"young", "live"}
    assert set(snap.live) == {"live"}


# --------------------------------------------------------------------------------------------
# logs on disk


def test_order_is_by_key_not_by_file_or_reading_order(
    records: RecordStore, layout: CacheLayout
) -> None:
    a, b, c = _writer(1), _writer(2), _writer(3)
    _log(layout, a, _put(200.0, a, 0, "x", size=1))
    assert records.item(URL, "x") == _rec("x", size=1)
    _log(layout, b, _put(100.0, b, 0, "x", size=2))  # read later, but older
    _log(layout, c, _line("drop", 150.0, c, 0, name="x"))  # older than the winning put
    assert records.items(URL) == {"x": _rec("x", size=1)}
    assert RecordStore(layout).items(URL) == {"x": _rec("x", size=1)}
    _log(layout, c, _line("drop", 300.0, c, 1, name="x", digest="other"))  # another version
    assert set(records.items(URL)) == {"x"}
    _log(layout, c, _line("drop", 301.0, c, 2, name="x", digest="d0"))
    assert records.items(URL) == {}
    _log(layout, b, _put(250.0, b, 1, "x", size=3), _line("clear", 240.0, b, 2))
    assert records.items(URL) == {}  # the put (250) is older than the drop (301)
    _log(layout, a, _put(400.0, a, 1, "y"), _line("clear", 350.0, a, 2))
    assert set(records.items(URL)) == {"y"}
    assert records.items(URL) == RecordStore(layout).items(URL)


def test_a_torn_last_line_is_ignored_until_complete(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    w = _writer(1, pid=os.getpid())
    second = _put(2.0, w, 1, "b")
    path = _log(layout, w, _put(1.0, w, 0, "a"), second[:25])
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert set(records.items(URL)) == {"a"}
        assert records.item(URL, "b") is None
        with open(path, "ab") as fh:
            fh.write(second[25:])
        assert records.item(URL, "b") == _rec("b")
    assert caplog.records == []
    assert set(RecordStore(layout).items(URL)) == {"a", "b"}


def test_a_crashed_writer_with_a_torn_tail_is_read_and_its_log_reclaimed(
    records: RecordStore, layout: CacheLayout
) -> None:
    w = _writer(1)
    line = _put(2.0, w, 1, "b")
    path = _log(layout, w, _put(1.0, w, 0, "a"), line[: len(line) // 2], age=600)
    records.put_items(URL, [_rec("mine")])
    assert set(records.items(URL)) == {"a", "mine"}
    assert records.compact(URL)
    assert not path.exists()  # consumed but for a tail that can never complete
    assert set(RecordStore(layout).items(URL)) == {"a", "mine"}


def test_a_bad_line_is_skipped_with_one_warning(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    w = _writer(1)
    _log(layout, w, _put(1.0, w, 0, "a"), b'{"k": "put", "ts": oops}\n', _put(3.0, w, 2, "c"))
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert set(records.items(URL)) == {"a", "c"}
        _log(layout, w, b"\xff\xfe garbage\n", _put(5.0, w, 4, "e"))
        assert set(records.items(URL)) == {"a", "c", "e"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "bad line" in warnings[0].getMessage()
    assert set(RecordStore(layout).items(URL)) == {"a", "c", "e"}


def test_entries_of_another_writer_or_kind_are_skipped(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    w, other = _writer(1), _writer(2)
    _log(
        layout,
        w,
        _put(1.0, other, 0, "forged"),
        _line("rename", 2.0, w, 1, name="a"),
        _put(3.0, w, 2, "ok"),
        _line("put", 4.0, w, 3, rec={"name": "future", "new_field": [1]}, extra=True),
    )
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert set(records.items(URL)) == {"ok", "future"}
    assert "written by" in caplog.text


def test_nul_bytes_of_a_recent_log_are_read_again_later(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    """A network filesystem may show a file grown before the bytes of a write arrive."""
    w = _writer(1, pid=os.getpid())
    first = _put(1.0, w, 0, "a")
    hole = b"\0" * (len(first) - 1) + b"\n"
    path = _log(layout, w, hole, _put(2.0, w, 1, "b"))
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert records.items(URL) == {}
        with open(path, "r+b") as fh:
            fh.write(first)  # the bytes arrive
        assert set(records.items(URL)) == {"a", "b"}
    assert caplog.records == []
    # In a log untouched for long, NULs are damage: skipped, and the rest is read.
    v = _writer(2)
    _log(layout, v, b"\0\0\0\n", _put(3.0, v, 1, "c"), age=3600)
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert set(records.items(URL)) == {"a", "b", "c"}
    assert "bad line" in caplog.text


def test_other_files_in_the_items_folder_are_ignored(
    records: RecordStore, layout: CacheLayout
) -> None:
    w = _writer(1)
    _log(layout, w, _put(1.0, w, 0, "a"))
    folder = layout.bundle_dir(URL) / "items"
    (folder / "notes.txt").write_bytes(_put(2.0, w, 1, "b"))
    (folder / "x.log").write_bytes(_put(2.0, "x", 0, "c"))
    assert set(records.items(URL)) == {"a"}
    records.compact(URL)
    assert (folder / "notes.txt").exists()
    assert (folder / "x.log").exists()


def test_a_deleted_own_log_makes_the_next_put_write_a_new_one(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.put_items(URL, [_rec("a")])
    (first,) = _logs(layout)
    (layout.bundle_dir(URL) / "items" / first).unlink()
    records.put_items(URL, [_rec("b")])
    (second,) = _logs(layout)
    assert second != first
    assert set(RecordStore(layout).items(URL)) == {"b"}


# --------------------------------------------------------------------------------------------
# compaction


def _varied_state(layout: CacheLayout) -> tuple[RecordStore, RecordStore]:
    a, b = RecordStore(layout), RecordStore(layout)
    a.put_items(URL, [_rec(f"a{i}", digest=f"{i}") for i in range(50)])
    b.put_items(URL, [_rec(f"b{i}") for i in range(20)])
    b.drop_items(URL, {"a1": "1", "a2": "wrong", "a3": None})
    a.clear_items(URL)
    b.put_items(URL, [_rec("after", size=5), _rec("gone")])
    a.drop_items(URL, {"gone": None})
    a.put_items(URL, [_rec("a7", digest="7", size=7)])
    return a, b


def test_compaction_keeps_the_view_and_readers_start_from_it(layout: CacheLayout) -> None:
    a, b = _varied_state(layout)
    before = RecordStore(layout).items(URL)
    assert set(before) == {"after", "a7"}
    assert a.compact(URL)
    snap = json.loads((layout.bundle_dir(URL) / "items.snap").read_bytes())
    folder = layout.bundle_dir(URL) / "items"
    assert snap["offsets"] == {name: (folder / name).stat().st_size for name in _logs(layout)}
    assert set(snap["live"]) == set(before)
    for store in (a, b, RecordStore(layout)):
        assert store.items(URL) == before
    # New entries after the snapshot are read from the logs' consumed offsets on.
    b.put_items(URL, [_rec("later")])
    a.drop_items(URL, {"a7": "7"})
    want = {"after": before["after"], "later": _rec("later")}
    for store in (a, b, RecordStore(layout)):
        assert store.items(URL) == want
    assert b.compact(URL)
    assert a.compact(URL)
    assert RecordStore(layout).items(URL) == want
    assert _logs(layout) == sorted(
        {a._bundles[URL].writer.name, b._bundles[URL].writer.name}  # type: ignore[union-attr]
    )  # live writers' logs stay


def test_compaction_deletes_consumed_logs_of_gone_writers_only(
    records: RecordStore, layout: CacheLayout
) -> None:
    dead, dead_young = _writer(1), _writer(2)
    alive = _writer(3, pid=os.getppid())
    foreign_old = _writer(4, pid=1, host="elsewhere")
    foreign_recent = _writer(5, pid=1, host="elsewhere")
    _log(layout, dead, _put(1.0, dead, 0, "dead"), age=600)
    _log(layout, dead_young, _put(1.0, dead_young, 0, "dead_young"))
    _log(layout, alive, _put(1.0, alive, 0, "alive"), age=600)
    _log(layout, foreign_old, _put(1.0, foreign_old, 0, "foreign_old"), age=2 * 86400)
    _log(layout, foreign_recent, _put(1.0, foreign_recent, 0, "foreign_recent"), age=3600)
    view = RecordStore(layout).items(URL)
    assert len(view) == 5
    assert records.compact(URL)
    assert _logs(layout) == sorted(f"{w}.log" for w in (dead_young, alive, foreign_recent))
    assert RecordStore(layout).items(URL) == view
    assert records.items(URL) == view


def test_own_log_rotates_and_the_retired_one_goes_later(
    records: RecordStore, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(itemlog, "ROTATE_BYTES", 1)
    records.put_items(URL, [_rec("a")])
    (first,) = _logs(layout)
    assert records.compact(URL)
    records.put_items(URL, [_rec("b")])
    assert len(_logs(layout)) == 2  # a new log; the retired one waits out the grace period
    _age(layout.bundle_dir(URL) / "items" / first, 600)
    assert records.compact(URL)
    assert first not in _logs(layout)
    assert len(_logs(layout)) == 1
    assert set(RecordStore(layout).items(URL)) == {"a", "b"}
    records.put_items(URL, [_rec("c")])
    assert set(RecordStore(layout).items(URL)) == {"a", "b", "c"}


def test_puts_compact_by_themselves(
    records: RecordStore, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(itemlog, "COMPACT_MIN_BYTES", 4096)
    snap = layout.bundle_dir(URL) / "items.snap"
    stamps = set()
    for i in range(600):
        records.put_items(URL, [_rec(f"i{i}", size=i)])
        if snap.exists():
            stamps.add(snap.stat().st_mtime_ns)
    assert 3 <= len(stamps) <= 12  # geometric: the snapshot grows, compactions get rarer
    view = RecordStore(layout).items(URL)
    assert len(view) == 600
    assert view == records.items(URL)
    log_bytes = sum(p.stat().st_size for p in (layout.bundle_dir(URL) / "items").iterdir())
    assert log_bytes - json.loads(snap.read_bytes())["offsets"].get(_logs(layout)[0], 0) <= max(
        4096, 2 * snap.stat().st_size
    )


def test_many_logs_of_gone_writers_trigger_a_compaction(
    records: RecordStore, layout: CacheLayout
) -> None:
    for n in range(40):
        w = _writer(n)
        _log(layout, w, _put(float(n), w, 0, f"d{n}"), age=600)
    assert len(records.items(URL)) == 40
    records.put_items(URL, [_rec("mine")])
    assert (layout.bundle_dir(URL) / "items.snap").exists()
    assert len(_logs(layout)) == 1
    assert len(RecordStore(layout).items(URL)) == 41


def test_a_corrupt_snapshot_is_ignored_and_repaired(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    records.put_items(URL, [_rec("a"), _rec("b")])
    snap = layout.bundle_dir(URL) / "items.snap"
    snap.write_bytes(b'{"live": 5')
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert set(RecordStore(layout).items(URL)) == {"a", "b"}  # the logs are all there
    assert "does not decode" in caplog.text
    assert records.compact(URL)
    assert set(RecordStore(layout).items(URL)) == {"a", "b"}
    other = "s3://lab/other-bundle"
    RecordStore(layout).put_items(other, [_rec("z")])
    RecordStore(layout).compact(other)
    os.replace(layout.bundle_dir(other) / "items.snap", snap)
    assert set(RecordStore(layout).items(URL)) == {"a", "b"}  # a snapshot of another URL


def test_compact_of_nothing_is_false(records: RecordStore) -> None:
    assert records.compact("s3://lab/nothing") is False


def test_writes_order_after_everything_read_whatever_the_clocks(
    records: RecordStore, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    ahead = _writer(1, pid=1, host="fast_clock")
    _log(layout, ahead, _put(time.time() + 3600, ahead, 0, "x", size=1))
    assert records.items(URL)["x"].size == 1
    records.put_items(URL, [_rec("x", size=2)])  # after what we saw, though our clock is behind
    assert RecordStore(layout).items(URL)["x"].size == 2
    assert records.drop_items(URL, {"x": None}) == ["x"]
    assert RecordStore(layout).items(URL) == {}
    # Our own clock stepping back does not reorder our own writes either.
    clock = iter(range(10**9, 0, -1))
    monkeypatch.setattr(itemlog.time, "time", lambda: float(next(clock)))
    other = RecordStore(layout)
    other.put_items(URL, [_rec("y", size=1)])
    other.put_items(URL, [_rec("y", size=2)])
    other.drop_items(URL, {"y": None})
    other.put_items(URL, [_rec("y", size=3)])
    monkeypatch.undo()
    assert RecordStore(layout).items(URL)["y"].size == 3
