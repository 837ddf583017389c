"""Bundle records and the item-record API of RecordStore (one process; see also
test_store_itemlog.py for the log format and tests/engine for several processes)."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import msgspec
import pytest

from aiofolio.errors import CacheError
from aiofolio.store import BundleRecord, CacheLayout, ItemRecord, RecordStore

URL = "s3://lab/exp-001"
MANIFEST = b'{"schema_version": 2, "revision": 3, "items": []}'
FORMAT1 = Path(__file__).resolve().parents[1] / "fixtures" / "store" / "format1_bundle"
FORMAT1_URL = "s3://lab/format1"


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return layout


@pytest.fixture
def records(layout: CacheLayout) -> RecordStore:
    return RecordStore(layout)


def _record(**changes: object) -> BundleRecord:
    record = BundleRecord(url=URL, manifest_token='"m-1"', last_check=1000.0, created_at=999.0)
    return msgspec.structs.replace(record, **changes) if changes else record


def _item(name: str = "training_data", **changes: object) -> ItemRecord:
    item = ItemRecord(
        name=name,
        item_type="included_table",
        payload=f"tables/{name}--r3.parquet",
        version_token="v3|abc|10",
        remote_token='"etag-1"',
        digest=hashlib.md5(name.encode()).hexdigest(),
        fast_hash="fedcba9876543210fedcba9876543210",
        fast_algorithm="xxh3_128",
        size=10,
        cached_at=1000.0,
        last_verified=1000.0,
        pinned=True,
        priority=2,
    )
    return msgspec.structs.replace(item, **changes) if changes else item


def _copy_format1(layout: CacheLayout) -> Path:
    folder = layout.bundle_dir(FORMAT1_URL)
    shutil.copytree(FORMAT1, folder)
    return folder


# --------------------------------------------------------------------------------------------
# the bundle record


def test_every_field_has_a_default() -> None:
    assert msgspec.json.decode(b"{}", type=BundleRecord) == BundleRecord()
    assert msgspec.json.decode(b"{}", type=ItemRecord) == ItemRecord()
    assert BundleRecord().items == {}
    assert BundleRecord().items is not BundleRecord().items
    assert BundleRecord().format == 2
    assert ItemRecord().algorithm == "md5"


def test_round_trip_with_manifest(records: RecordStore, layout: CacheLayout) -> None:
    saved = records.save(_record(), MANIFEST)
    assert saved.manifest_size == len(MANIFEST)
    assert saved.manifest_md5 == hashlib.md5(MANIFEST).hexdigest()
    folder = layout.bundle_dir(URL)
    assert (folder / f"manifest-{saved.manifest_md5}.json").read_bytes() == MANIFEST
    on_disk = json.loads((folder / "record.json").read_bytes())
    assert on_disk["url"] == URL
    assert on_disk["format"] == 2
    assert "items" not in on_disk
    fresh = RecordStore(layout)  # another process: nothing in memory
    loaded = fresh.load(URL)
    assert loaded is not None
    record, manifest = loaded
    assert record == saved
    assert manifest == MANIFEST
    assert records.load(URL) == (saved, MANIFEST)
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def test_save_ignores_items_and_returns_the_record_without_them(
    records: RecordStore, layout: CacheLayout
) -> None:
    saved = records.save(_record(items={"x": _item("x")}))
    assert saved.items == {}
    assert "items" not in json.loads((layout.bundle_dir(URL) / "record.json").read_bytes())
    assert records.items(URL) == {}
    assert not (layout.bundle_dir(URL) / "items").exists()


def test_save_without_manifest_keeps_the_saved_one(
    records: RecordStore, layout: CacheLayout
) -> None:
    saved = records.save(_record(), MANIFEST)
    later = records.save(msgspec.structs.replace(saved, last_check=2000.0))
    assert later.manifest_md5 == saved.manifest_md5
    for store in (records, RecordStore(layout)):
        loaded = store.load(URL)
        assert loaded is not None
        assert loaded[0].last_check == 2000.0
        assert loaded[1] == MANIFEST


def test_a_record_never_saved_with_a_manifest_loads_with_none(records: RecordStore) -> None:
    records.save(_record())
    assert records.load(URL) == (_record(), None)
    assert RecordStore(records.layout).load(URL) == (_record(), None)


def test_save_needs_a_url(records: RecordStore) -> None:
    with pytest.raises(ValueError, match="url"):
        records.save(BundleRecord())


def test_load_of_an_unknown_bundle_is_none(records: RecordStore) -> None:
    assert records.load("s3://nowhere/x") is None
    assert records.item("s3://nowhere/x", "a") is None
    assert records.items("s3://nowhere/x") == {}
    assert not records.layout.bundle_dir("s3://nowhere/x").exists()


def test_unknown_fields_are_ignored_and_missing_ones_default(
    records: RecordStore, layout: CacheLayout
) -> None:
    folder = layout.bundle_dir(URL)
    folder.mkdir(parents=True)
    (folder / "record.json").write_text(
        json.dumps(
            {
                "format": 7,
                "url": URL,
                "future_field": {"nested": [1, 2]},
                "last_check": 5.5,
                "items": {
                    "x": {"name": "x", "digest": "ab" * 16, "size": 3, "from_the_future": True}
                },
            }
        )
    )
    loaded = records.load(URL)
    assert loaded is not None
    record, manifest = loaded
    assert manifest is None
    assert record.format == 7
    assert record.last_check == 5.5
    assert record.manifest_token is None
    assert record.items == {}  # load never carries items; they are the item view's
    assert records.item(URL, "x") == ItemRecord(name="x", digest="ab" * 16, size=3)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"[1, 2]",
        b'{"url": 5}',
        b'{"items": {"x": {"size": "big"}}}',
        b"\xff\xfe",
    ],
)
def test_a_corrupt_record_is_a_miss_with_one_warning(
    records: RecordStore,
    layout: CacheLayout,
    caplog: pytest.LogCaptureFixture,
    content: bytes,
) -> None:
    folder = layout.bundle_dir(URL)
    folder.mkdir(parents=True)
    (folder / "record.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert records.load(URL) is None
        decodes = records.decodes
        assert records.load(URL) is None  # same file: no new decode, no new warning
    assert records.decodes == decodes
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert URL in warnings[0].getMessage()
    assert records.items(URL) == {}
    records.save(_record())  # repaired by the next save
    assert records.load(URL) == (_record(), None)


def test_a_manifest_that_does_not_match_its_record_is_a_miss(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    saved = records.save(_record(), MANIFEST)
    path = layout.bundle_dir(URL) / f"manifest-{saved.manifest_md5}.json"
    path.write_bytes(MANIFEST.replace(b"3", b"4"))
    fresh = RecordStore(layout)
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert fresh.load(URL) is None
    assert "does not match" in caplog.text


def test_a_missing_manifest_is_a_miss(records: RecordStore, layout: CacheLayout) -> None:
    saved = records.save(_record(), MANIFEST)
    (layout.bundle_dir(URL) / f"manifest-{saved.manifest_md5}.json").unlink()
    assert RecordStore(layout).load(URL) is None


def test_a_record_naming_a_hostile_manifest_is_a_miss(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.save(_record(manifest_md5="../../../../etc/passwd"))
    assert RecordStore(layout).load(URL) is None


def test_old_manifests_go_after_the_grace_period(records: RecordStore, layout: CacheLayout) -> None:
    first = records.save(_record(), MANIFEST)
    folder = layout.bundle_dir(URL)
    old_path = folder / f"manifest-{first.manifest_md5}.json"
    second = records.save(_record(), MANIFEST + b" ")
    assert old_path.exists()  # within the grace period: a concurrent save may still need it
    old = time.time() - 3600
    os.utime(old_path, (old, old))
    records.save(msgspec.structs.replace(second, last_check=7.0))
    assert not old_path.exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        f"manifest-{second.manifest_md5}.json",
        "record.json",
    ]
    assert RecordStore(layout).load(URL) == (
        msgspec.structs.replace(second, last_check=7.0),
        MANIFEST + b" ",
    )


def test_sweep_temps_drops_unreferenced_old_manifests(
    records: RecordStore, layout: CacheLayout
) -> None:
    first = records.save(_record(), MANIFEST)
    records.save(_record(), MANIFEST + b"  ")
    old_path = layout.bundle_dir(URL) / f"manifest-{first.manifest_md5}.json"
    old = time.time() - 3600
    os.utime(old_path, (old, old))
    assert records.sweep_temps() == 1
    assert not old_path.exists()
    assert RecordStore(layout).load(URL) is not None


def test_a_save_from_a_stale_copy_stays_consistent(layout: CacheLayout) -> None:
    """Process A loads, B saves a new manifest, A saves its (older) copy: A's pair wins whole."""
    a, b = RecordStore(layout), RecordStore(layout)
    a.save(_record(), MANIFEST)
    loaded = a.load(URL)
    assert loaded is not None
    b.save(_record(last_check=50.0), MANIFEST + b" ")
    for path in layout.bundle_dir(URL).glob("manifest-*.json"):  # as if long ago
        os.utime(path, (1.0, 1.0))
    b.save(_record(last_check=60.0), MANIFEST + b"  ")  # cleans up the old manifests
    a.save(msgspec.structs.replace(loaded[0], last_check=70.0))
    again = RecordStore(layout).load(URL)
    assert again is not None
    assert again[0].last_check == 70.0
    assert again[1] == MANIFEST


def test_a_record_of_another_url_is_a_miss(records: RecordStore, layout: CacheLayout) -> None:
    records.save(_record())
    other = "s3://lab/other"
    os.rename(layout.bundle_dir(URL), layout.bundle_dir(other))
    assert records.load(other) is None


def test_memory_cache_reloads_only_when_the_file_changes(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.save(_record(), MANIFEST)
    reader = RecordStore(layout)
    for _ in range(5):
        assert reader.load(URL) is not None
    assert reader.decodes == 1
    # Another process saves a change: the stamp (mtime_ns, size, inode) moves.
    RecordStore(layout).save(_record(last_check=2000.0), MANIFEST)
    loaded = reader.load(URL)
    assert loaded is not None
    assert loaded[0].last_check == 2000.0
    assert reader.decodes == 2
    for _ in range(5):
        reader.load(URL)
    assert reader.decodes == 2
    # A rewrite in place with the same size but a new mtime is seen too.
    path = layout.bundle_dir(URL) / "record.json"
    raw = path.read_bytes().replace(b"2000.0", b"3000.0")
    path.write_bytes(raw)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    loaded = reader.load(URL)
    assert loaded is not None
    assert loaded[0].last_check == 3000.0
    assert reader.decodes == 3


def test_item_writes_do_not_touch_the_bundle_record(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.save(_record(), MANIFEST)
    reader = RecordStore(layout)
    assert reader.load(URL) is not None
    stat_before = os.stat(layout.bundle_dir(URL) / "record.json")
    for i in range(20):
        records.put_items(URL, [_item(f"i{i}")])
    assert os.stat(layout.bundle_dir(URL) / "record.json").st_ino == stat_before.st_ino
    for _ in range(3):
        loaded = reader.load(URL)
        assert loaded is not None
        assert loaded[0].items == {}
    assert reader.decodes == 1  # the hit path stays one stat
    assert len(reader.items(URL)) == 20


def test_own_saves_need_no_decode(records: RecordStore) -> None:
    saved = records.save(_record(), MANIFEST)
    records.save(msgspec.structs.replace(saved, last_check=5.0))
    loaded = records.load(URL)
    assert loaded is not None
    assert loaded[0].last_check == 5.0
    assert loaded[1] == MANIFEST
    records.put_items(URL, [_item()])
    assert records.item(URL, "nothing-such") is None  # a refresh
    assert records.decodes == 0


def test_loaded_records_are_copies(records: RecordStore) -> None:
    records.save(_record(), MANIFEST)
    loaded = records.load(URL)
    assert loaded is not None
    record = loaded[0]
    record.last_check = -1.0
    record.items["x"] = _item("x")
    again = records.load(URL)
    assert again is not None
    assert again[0] == _record(manifest_size=len(MANIFEST), manifest_md5=again[0].manifest_md5)
    assert records.items(URL) == {}


def test_update_creates_applies_and_saves(records: RecordStore, layout: CacheLayout) -> None:
    def add_item(record: BundleRecord) -> BundleRecord:
        assert record.items == {}
        record.items["a"] = ItemRecord(name="a", size=1)  # ignored: items have their own API
        return record

    first = records.update(URL, add_item)
    assert first.url == URL
    assert first.created_at > 0
    assert first.items == {}
    assert records.items(URL) == {}

    def bump(record: BundleRecord) -> BundleRecord:
        return msgspec.structs.replace(record, last_check=record.last_check + 1, url="")

    records.update(URL, bump)
    second = records.update(URL, bump, manifest_bytes=MANIFEST)
    assert second.url == URL
    assert second.last_check == 2.0
    assert RecordStore(layout).load(URL) == (second, MANIFEST)
    assert list(layout.locks_dir.iterdir())  # the lock file stays (unlinking it is racy)


def test_update_repairs_a_corrupt_record(records: RecordStore, layout: CacheLayout) -> None:
    folder = layout.bundle_dir(URL)
    folder.mkdir(parents=True)
    (folder / "record.json").write_bytes(b"garbage")
    result = records.update(URL, lambda r: r)
    assert result.url == URL
    assert records.load(URL) == (result, None)


def test_update_saves_nothing_when_fn_raises(records: RecordStore) -> None:
    records.save(_record())

    def boom(record: BundleRecord) -> BundleRecord:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        records.update(URL, boom)
    assert records.load(URL) == (_record(), None)


def test_delete_removes_the_folder_with_its_item_records(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.save(_record(), MANIFEST)
    records.put_items(URL, [_item("a"), _item("b")])
    records.compact(URL)
    other = RecordStore(layout)  # another process with its own log there
    other.put_items(URL, [_item("c")])
    assert records.delete(URL) is True
    assert records.load(URL) is None
    assert not layout.bundle_dir(URL).exists()
    assert records.items(URL) == {}
    assert other.items(URL) == {}  # it sees the deletion too
    assert records.delete(URL) is False
    records.put_items(URL, [_item("d")])  # a new log in a new folder
    assert set(RecordStore(layout).items(URL)) == {"d"}
    other.put_items(URL, [_item("e")])  # its old log was deleted: it writes a new one
    assert set(RecordStore(layout).items(URL)) == {"d", "e"}


def test_iter_records_fills_items_and_skips_corrupt_ones(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    urls = [f"s3://lab/b{i}" for i in range(3)]
    for n, url in enumerate(urls):
        records.save(BundleRecord(url=url))
        records.put_items(url, [_item(f"item{k}") for k in range(n)])
    RecordStore(layout).put_items(urls[2], [_item("other")])  # not yet in records' memory
    bad = layout.bundle_dir("s3://lab/bad")
    bad.mkdir()
    (bad / "record.json").write_bytes(b"{")
    (layout.bundles_dir / "empty").mkdir()
    _copy_format1(layout)
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        listed = {r.url: set(r.items) for r in records.iter_records()}
    assert listed == {
        urls[0]: set(),
        urls[1]: {"item0"},
        urls[2]: {"item0", "item1", "other"},
        FORMAT1_URL: {"training_data", "model", "config"},
    }
    assert "does not decode" in caplog.text
    fresh = {r.url: set(r.items) for r in RecordStore(layout).iter_records()}
    assert fresh == listed


def test_sweep_temps_removes_stale_save_and_snapshot_temps(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.save(_record())
    records.put_items(URL, [_item()])
    folder = layout.bundle_dir(URL)
    old = time.time() - 7200
    stale = folder / ".record.json.999999999-abcd.tmp"
    stale_snap = folder / ".items.snap.999999999-abce.tmp"
    mine = folder / f".record.json.{os.getpid()}-abcd.tmp"
    young = folder / ".manifest.json.999999999-ef01.tmp"
    for path in (stale, stale_snap, mine, young):
        path.write_bytes(b"{")
    for path in (stale, stale_snap, mine):
        os.utime(path, (old, old))
    assert records.sweep_temps() == 2
    assert not stale.exists()
    assert not stale_snap.exists()
    assert mine.exists()
    assert young.exists()
    assert records.load(URL) is not None
    assert set(RecordStore(layout).items(URL)) == {"training_data"}


def test_concurrent_saves_and_loads_never_see_a_torn_file(
    layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    RecordStore(layout).save(_record(), MANIFEST)
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[float] = []

    def writer(n: int) -> None:
        store = RecordStore(layout)  # its own memory cache, like another process
        try:
            for i in range(30):
                body = MANIFEST + b" " * (n * 31 + i)
                store.save(_record(last_check=float(i)), body)
                store.put_items(URL, [_item(f"w{n}-{i}")])
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        store = RecordStore(layout)
        try:
            while not stop.is_set():
                loaded = store.load(URL)
                if loaded is not None:
                    record, manifest = loaded
                    assert manifest is not None
                    assert len(manifest) == record.manifest_size
                    seen.append(record.last_check)
                store.items(URL)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=reader) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        for thread in readers + writers:
            thread.start()
        for thread in writers:
            thread.join(timeout=60)
        stop.set()
        for thread in readers:
            thread.join(timeout=10)
    assert errors == []
    assert seen
    assert "ignoring" not in caplog.text  # every record came with its own manifest
    assert "skipping" not in caplog.text  # no reader ever took a partial log line
    final = RecordStore(layout).load(URL)
    assert final is not None
    assert set(RecordStore(layout).items(URL)) == {f"w{n}-{i}" for n in range(6) for i in range(30)}
    assert not [p for p in layout.bundle_dir(URL).iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------------------------
# item records


def test_put_then_item_and_items_in_this_and_another_process(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.save(_record(), MANIFEST)
    records.put_items(URL, [_item("a"), _item("b", size=7)])
    assert records.item(URL, "a") == _item("a")
    assert records.item(URL, "b") == _item("b", size=7)
    assert records.item(URL, "c") is None
    fresh = RecordStore(layout)
    assert fresh.items(URL) == {"a": _item("a"), "b": _item("b", size=7)}
    # item() of a name not in memory refreshes: another process's put is found.
    records.put_items(URL, [_item("c")])
    assert fresh.item(URL, "c") == _item("c")
    # A name in memory is served from memory (O(1)); items() refreshes unless told not to.
    records.put_items(URL, [_item("a", size=99)])
    assert fresh.item(URL, "a") == _item("a")
    assert fresh.items(URL, refresh=False)["a"].size == 10
    assert fresh.items(URL)["a"].size == 99
    assert fresh.item(URL, "a") == _item("a", size=99)
    copy = fresh.items(URL)
    copy.clear()
    assert len(fresh.items(URL, refresh=False)) == 3


def test_put_items_is_one_append_to_this_process_log(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.put_items(URL, [_item("a"), _item("b")])
    records.put_items(URL, [])
    logs = list((layout.bundle_dir(URL) / "items").iterdir())
    assert len(logs) == 1
    _host, pid, rest = logs[0].name.rsplit("-", 2)
    assert int(pid) == os.getpid()
    assert rest.endswith(".log")
    lines = logs[0].read_bytes().split(b"\n")
    assert lines[-1] == b""
    entries = [json.loads(line) for line in lines[:-1]]
    assert [e["k"] for e in entries] == ["put", "put"]
    assert [e["seq"] for e in entries] == [0, 1]
    assert {e["w"] for e in entries} == {logs[0].name[:-4]}
    assert entries[0]["rec"] == msgspec.to_builtins(_item("a"))
    with pytest.raises(ValueError, match="name"):
        records.put_items(URL, [ItemRecord()])


def test_drop_items_with_a_digest_only_drops_that_version(
    records: RecordStore, layout: CacheLayout
) -> None:
    a, b, c = _item("a"), _item("b"), _item("c")
    records.put_items(URL, [a, b, c])
    assert records.drop_items(URL, {"a": "0" * 32, "b": b.digest, "c": None, "z": None}) == [
        "b",
        "c",
    ]
    assert set(records.items(URL)) == {"a"}
    assert set(RecordStore(layout).items(URL)) == {"a"}
    assert records.drop_items(URL, {"b": None}) == []  # nothing there: nothing written
    # Another process replaced "a" meanwhile: a drop naming the old digest leaves the new one.
    RecordStore(layout).put_items(URL, [_item("a", digest="1" * 32)])
    assert records.drop_items(URL, {"a": a.digest}) == []
    assert records.item(URL, "a") == _item("a", digest="1" * 32)
    assert records.drop_items(URL, {}) == []


def test_retain_items_drops_the_others_in_one_append(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.put_items(URL, [_item(f"i{k}", size=k) for k in range(10)])
    log_file = next((layout.bundle_dir(URL) / "items").iterdir())
    size_before = log_file.stat().st_size
    dropped = records.retain_items(URL, lambda rec: rec.size % 2 == 0)
    assert sorted(dropped) == ["i1", "i3", "i5", "i7", "i9"]
    assert sorted(RecordStore(layout).items(URL)) == ["i0", "i2", "i4", "i6", "i8"]
    added = log_file.read_bytes()[size_before:]
    assert added.count(b"\n") == 5
    assert all(json.loads(line)["k"] == "drop" for line in added.splitlines())
    assert records.retain_items(URL, lambda rec: True) == []


def test_clear_items_drops_everything_older_from_every_process(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.clear_items("s3://lab/none")
    assert not layout.bundle_dir("s3://lab/none").exists()
    other = RecordStore(layout)
    other.put_items(URL, [_item("a")])
    records.put_items(URL, [_item("b")])
    records.clear_items(URL)
    assert records.items(URL) == {}
    assert other.items(URL) == {}
    other.put_items(URL, [_item("c")])
    assert set(RecordStore(layout).items(URL)) == {"c"}
    records.compact(URL)
    assert set(RecordStore(layout).items(URL)) == {"c"}


def test_the_last_writer_wins_across_processes(layout: CacheLayout) -> None:
    a, b = RecordStore(layout), RecordStore(layout)
    a.put_items(URL, [_item("x", size=1)])
    b.put_items(URL, [_item("x", size=2)])
    assert a.items(URL)["x"].size == 2
    assert b.items(URL)["x"].size == 2
    a.put_items(URL, [_item("x", size=3)])
    b.drop_items(URL, {"x": None})
    a.put_items(URL, [_item("y")])
    for store in (a, b, RecordStore(layout)):
        assert set(store.items(URL)) == {"y"}
    a.compact(URL)
    b.put_items(URL, [_item("x", size=4)])
    for store in (a, b, RecordStore(layout)):
        assert store.items(URL)["x"].size == 4


def test_threads_of_one_process_lose_no_put(records: RecordStore, layout: CacheLayout) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                records.put_items(URL, [_item(f"t{n}-{i}")])
                assert records.item(URL, f"t{n}-{i}") is not None
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(RecordStore(layout).items(URL)) == 800
    assert len(list((layout.bundle_dir(URL) / "items").iterdir())) == 1


def test_an_unwritable_cache_raises_cache_error(records: RecordStore, layout: CacheLayout) -> None:
    folder = layout.bundle_dir(URL)
    folder.mkdir(parents=True)
    (folder / "items").write_bytes(b"not a folder")
    with pytest.raises(CacheError):
        records.put_items(URL, [_item()])
    assert records.item(URL, "training_data") is None


def test_open_log_files_are_bounded_and_reopened(records: RecordStore, layout: CacheLayout) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0

    urls = [f"s3://lab/many-{i}" for i in range(80)]
    before = open_fds()
    for round_ in ("a", "b"):
        for url in urls:
            records.put_items(url, [_item(round_)])
        assert open_fds() - before <= 64
    fresh = RecordStore(layout)
    for url in urls:
        assert set(fresh.items(url)) == {"a", "b"}
        assert len(list((layout.bundle_dir(url) / "items").iterdir())) == 1  # same log again


def test_clear_memory_forgets_the_views_and_keeps_the_log(
    records: RecordStore, layout: CacheLayout
) -> None:
    records.put_items(URL, [_item("a")])
    RecordStore(layout).put_items(URL, [_item("b")])
    records.clear_memory()
    assert records.items(URL, refresh=False) == {"a": _item("a"), "b": _item("b")}
    records.put_items(URL, [_item("c")])
    assert len(list((layout.bundle_dir(URL) / "items").iterdir())) == 2


# --------------------------------------------------------------------------------------------
# migration from format 1


def test_a_format1_record_keeps_working_and_migrates_on_the_first_save(
    records: RecordStore, layout: CacheLayout
) -> None:
    folder = _copy_format1(layout)
    original = json.loads((folder / "record.json").read_bytes())
    assert original["format"] == 1
    expected = {name: msgspec.convert(item, ItemRecord) for name, item in original["items"].items()}
    loaded = records.load(FORMAT1_URL)
    assert loaded is not None
    record, manifest = loaded
    assert record.items == {}
    assert record.manifest_md5 == original["manifest_md5"]
    assert manifest is not None
    assert records.items(FORMAT1_URL) == expected
    assert RecordStore(layout).item(FORMAT1_URL, "model") == expected["model"]
    # Item writes before the migration land on top of the old items.
    other = RecordStore(layout)
    other.put_items(FORMAT1_URL, [_item("new")])
    other.drop_items(FORMAT1_URL, {"config": None})
    assert not (folder / "items.snap").exists()
    # The first save of the bundle record moves the items into the snapshot.
    saved = records.save(msgspec.structs.replace(record, last_check=1.0))
    assert saved.format == 2
    on_disk = json.loads((folder / "record.json").read_bytes())
    assert on_disk["format"] == 2
    assert "items" not in on_disk
    assert (folder / "items.snap").exists()
    want = {k: v for k, v in expected.items() if k != "config"} | {"new": _item("new")}
    for store in (records, other, RecordStore(layout)):
        assert store.items(FORMAT1_URL) == want
    again = RecordStore(layout).load(FORMAT1_URL)
    assert again is not None
    assert again[0].last_check == 1.0
    assert again[1] == manifest
    # Later saves do not write the snapshot again.
    stamp = os.stat(folder / "items.snap").st_mtime_ns
    records.save(msgspec.structs.replace(saved, last_check=2.0))
    assert os.stat(folder / "items.snap").st_mtime_ns == stamp


def test_a_format1_record_migrates_through_update_and_clear(
    records: RecordStore, layout: CacheLayout
) -> None:
    _copy_format1(layout)
    updated = records.update(FORMAT1_URL, lambda r: msgspec.structs.replace(r, last_check=9.0))
    assert updated.items == {}
    assert set(RecordStore(layout).items(FORMAT1_URL)) == {"training_data", "model", "config"}
    records.clear_items(FORMAT1_URL)
    assert RecordStore(layout).items(FORMAT1_URL) == {}


def test_a_format1_record_clears_without_a_save(records: RecordStore, layout: CacheLayout) -> None:
    _copy_format1(layout)
    records.clear_items(FORMAT1_URL)  # older than the clear: the file's items are gone too
    assert RecordStore(layout).items(FORMAT1_URL) == {}


# --------------------------------------------------------------------------------------------
# cost


def test_a_put_costs_the_same_at_100000_items(records: RecordStore, layout: CacheLayout) -> None:
    """Item commits cost O(1): the last 10,000 of 100,000 puts are no slower than the first,
    and a new process reads the 100,000 records in well under a second.

    CPU time of this process (compactions included) rather than wall time, so that other
    load on the machine does not decide the outcome (both are printed).
    """
    records.save(_record(), MANIFEST)
    template = _item("x")
    n, window = 100_000, 10_000
    marks: list[tuple[float, float]] = [(time.process_time(), time.perf_counter())]
    for i in range(n):
        records.put_items(URL, [msgspec.structs.replace(template, name=f"item-{i:06d}", size=i)])
        if (i + 1) % window == 0:
            marks.append((time.process_time(), time.perf_counter()))
    cpu = [b[0] - a[0] for a, b in itertools.pairwise(marks)]
    wall = [b[1] - a[1] for a, b in itertools.pairwise(marks)]
    print(f"100,000 puts: {marks[-1][1] - marks[0][1]:.2f} s wall")
    print("per 10,000 (CPU s):", [round(t, 3) for t in cpu])
    print("per 10,000 (wall s):", [round(t, 3) for t in wall])
    assert cpu[-1] < 2 * cpu[0], cpu
    start, start_cpu = time.perf_counter(), time.process_time()
    view = RecordStore(layout).items(URL)
    elapsed, cpu_load = time.perf_counter() - start, time.process_time() - start_cpu
    print(f"fresh items() of {len(view)} records: {elapsed:.3f} s wall, {cpu_load:.3f} s CPU")
    assert len(view) == n
    assert view["item-099999"].size == 99_999
    assert cpu_load < 1.5
