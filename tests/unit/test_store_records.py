"""Bundle records: round trips, tolerant decoding, corruption as a miss, the memory cache."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

import msgspec
import pytest

from aiofolio.store import BundleRecord, CacheLayout, ItemRecord, RecordStore

URL = "s3://lab/exp-001"
MANIFEST = b'{"schema_version": 2, "revision": 3, "items": []}'


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return layout


@pytest.fixture
def records(layout: CacheLayout) -> RecordStore:
    return RecordStore(layout)


def _record(**changes: object) -> BundleRecord:
    item = ItemRecord(
        name="training_data",
        item_type="included_table",
        payload="tables/training_data--r3.parquet",
        version_token="v3|abc|10",
        remote_token='"etag-1"',
        digest="0123456789abcdef0123456789abcdef",
        fast_hash="fedcba9876543210fedcba9876543210",
        fast_algorithm="xxh3_128",
        size=10,
        cached_at=1000.0,
        last_verified=1000.0,
        pinned=True,
        priority=2,
    )
    record = BundleRecord(
        url=URL,
        manifest_token='"m-1"',
        last_check=1000.0,
        created_at=999.0,
        items={item.name: item},
    )
    return msgspec.structs.replace(record, **changes) if changes else record


def test_every_field_has_a_default() -> None:
    assert msgspec.json.decode(b"{}", type=BundleRecord) == BundleRecord()
    assert msgspec.json.decode(b"{}", type=ItemRecord) == ItemRecord()
    assert BundleRecord().items == {}
    assert BundleRecord().items is not BundleRecord().items
    assert ItemRecord().algorithm == "md5"


def test_round_trip_with_manifest(records: RecordStore, layout: CacheLayout) -> None:
    saved = records.save(_record(), MANIFEST)
    assert saved.manifest_size == len(MANIFEST)
    assert saved.manifest_md5 == hashlib.md5(MANIFEST).hexdigest()
    folder = layout.bundle_dir(URL)
    assert (folder / f"manifest-{saved.manifest_md5}.json").read_bytes() == MANIFEST
    assert json.loads((folder / "record.json").read_bytes())["url"] == URL
    fresh = RecordStore(layout)  # another process: nothing in memory
    loaded = fresh.load(URL)
    assert loaded is not None
    record, manifest = loaded
    assert record == saved
    assert manifest == MANIFEST
    assert records.load(URL) == (saved, MANIFEST)
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


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
    assert record.items["x"] == ItemRecord(name="x", digest="ab" * 16, size=3)


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


def test_own_saves_need_no_decode(records: RecordStore) -> None:
    saved = records.save(_record(), MANIFEST)
    records.save(msgspec.structs.replace(saved, last_check=5.0))
    loaded = records.load(URL)
    assert loaded is not None
    assert loaded[0].last_check == 5.0
    assert loaded[1] == MANIFEST
    assert records.decodes == 0


def test_loaded_records_are_copies(records: RecordStore) -> None:
    records.save(_record(), MANIFEST)
    loaded = records.load(URL)
    assert loaded is not None
    record = loaded[0]
    record.last_check = -1.0
    record.items.clear()
    again = records.load(URL)
    assert again is not None
    assert again[0] == _record(manifest_size=len(MANIFEST), manifest_md5=again[0].manifest_md5)


def test_update_creates_applies_and_saves(records: RecordStore, layout: CacheLayout) -> None:
    def add_item(record: BundleRecord) -> BundleRecord:
        record.items["a"] = ItemRecord(name="a", size=1)
        return record

    first = records.update(URL, add_item)
    assert first.url == URL
    assert first.created_at > 0
    assert set(first.items) == {"a"}

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


def test_delete(records: RecordStore, layout: CacheLayout) -> None:
    records.save(_record(), MANIFEST)
    assert records.delete(URL) is True
    assert records.load(URL) is None
    assert not layout.bundle_dir(URL).exists()
    assert records.delete(URL) is False


def test_iter_records_skips_corrupt_ones(
    records: RecordStore, layout: CacheLayout, caplog: pytest.LogCaptureFixture
) -> None:
    urls = [f"s3://lab/b{i}" for i in range(3)]
    for url in urls:
        records.save(BundleRecord(url=url))
    bad = layout.bundle_dir("s3://lab/bad")
    bad.mkdir()
    (bad / "record.json").write_bytes(b"{")
    (layout.bundles_dir / "empty").mkdir()
    with caplog.at_level(logging.WARNING, logger="aiofolio.store"):
        assert sorted(r.url for r in records.iter_records()) == urls
    assert "does not decode" in caplog.text


def test_sweep_temps_removes_stale_save_temps(records: RecordStore, layout: CacheLayout) -> None:
    records.save(_record())
    folder = layout.bundle_dir(URL)
    old = time.time() - 7200
    stale = folder / ".record.json.999999999-abcd.tmp"
    mine = folder / f".record.json.{os.getpid()}-abcd.tmp"
    young = folder / ".manifest.json.999999999-ef01.tmp"
    for path in (stale, mine, young):
        path.write_bytes(b"{")
    for path in (stale, mine):
        os.utime(path, (old, old))
    assert records.sweep_temps() == 1
    assert not stale.exists()
    assert mine.exists()
    assert young.exists()
    assert records.load(URL) is not None


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
                items = {f"i{k}": ItemRecord(name=f"i{k}", size=k) for k in range(n * 7 + i % 5)}
                body = MANIFEST + b" " * (n * 31 + i)
                store.save(_record(last_check=float(i), items=items), body)
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
    final = RecordStore(layout).load(URL)
    assert final is not None
    assert not [p for p in layout.bundle_dir(URL).iterdir() if p.name.endswith(".tmp")]
