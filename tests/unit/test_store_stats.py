"""Cache statistics: in-memory counting, per-process files, totals, compaction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiofolio.store import COUNTERS, CacheLayout, StatsCounter

URL = "s3://lab/exp-001"


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return layout


@pytest.fixture
def counter(layout: CacheLayout) -> Iterator[StatsCounter]:
    stats = StatsCounter(layout, flush_interval=3600)
    yield stats
    stats.close()


def _dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def _write_stats(layout: CacheLayout, name: str, totals: dict[str, int], **extra: object) -> Path:
    path = layout.stats_dir / name
    body = {"pid": 1, "host": extra.pop("host", ""), "totals": totals, **extra}
    path.write_text(json.dumps(body))
    return path


def test_counts_in_memory_without_touching_disk(counter: StatsCounter, layout: CacheLayout) -> None:
    counter.incr("hits")
    counter.incr("hits", url=URL)
    counter.add(URL, bytes_from_cache=100, misses=1)
    counter.add(None, evictions=2)
    assert list(layout.stats_dir.iterdir()) == []
    totals = counter.totals()
    assert set(COUNTERS) <= set(totals)
    assert totals["hits"] == 2
    assert totals["bytes_from_cache"] == 100
    assert totals["evictions"] == 2
    assert totals["stale_served"] == 0
    assert counter.totals(URL) == dict.fromkeys(COUNTERS, 0) | {
        "hits": 1,
        "bytes_from_cache": 100,
        "misses": 1,
    }
    assert counter.totals("s3://other") == dict.fromkeys(COUNTERS, 0)


def test_unknown_counters_are_rejected(counter: StatsCounter) -> None:
    with pytest.raises(ValueError, match="unknown counter"):
        counter.incr("hitz")
    with pytest.raises(ValueError, match="unknown counter"):
        counter.add(URL, hits=1, hitz=1)
    assert counter.totals()["hits"] == 0  # nothing counted on a bad call


def test_flush_writes_one_file_per_process_atomically(
    counter: StatsCounter, layout: CacheLayout
) -> None:
    counter.add(URL, hits=3)
    counter.record_access(URL, "training_data")
    assert counter.flush() is True
    assert counter.flush() is False  # nothing changed
    files = list(layout.stats_dir.iterdir())
    assert files == [counter.path]
    assert counter.path.name.startswith(f"{os.getpid()}-")
    body = json.loads(counter.path.read_text())
    assert body["totals"] == {"hits": 3}
    assert body["bundles"] == {URL: {"hits": 3}}
    assert body["access"] == {URL: {"training_data": 1}}
    counter.add(URL, hits=1)
    counter.flush()
    assert json.loads(counter.path.read_text())["totals"] == {"hits": 4}  # cumulative
    assert list(layout.stats_dir.iterdir()) == [counter.path]


def test_another_counter_sees_flushed_figures_only(layout: CacheLayout) -> None:
    a = StatsCounter(layout, flush_interval=3600)
    b = StatsCounter(layout, flush_interval=3600)
    try:
        a.add(URL, hits=2, bytes_downloaded=10)
        assert b.totals()["hits"] == 0
        a.flush()
        b.add(URL, hits=1)
        assert b.totals()["hits"] == 3
        assert b.totals(URL)["bytes_downloaded"] == 10
        assert a.totals()["hits"] == 2  # b has not flushed yet
    finally:
        a.close()
        b.close()


def test_background_flush_within_the_interval(layout: CacheLayout) -> None:
    stats = StatsCounter(layout, flush_interval=0.05)
    try:
        stats.incr("misses")
        deadline = time.monotonic() + 5
        while not stats.path.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert json.loads(stats.path.read_text())["totals"] == {"misses": 1}
        for _ in range(50):  # a burst: few writes, the last figure lands
            stats.incr("misses")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if json.loads(stats.path.read_text())["totals"] == {"misses": 51}:
                break
            time.sleep(0.01)
        assert json.loads(stats.path.read_text())["totals"] == {"misses": 51}
    finally:
        stats.close()


def test_zero_interval_flushes_on_every_change(layout: CacheLayout) -> None:
    stats = StatsCounter(layout, flush_interval=0)
    stats.incr("hits")
    assert json.loads(stats.path.read_text())["totals"] == {"hits": 1}
    stats.close()


def test_close_flushes(layout: CacheLayout) -> None:
    stats = StatsCounter(layout, flush_interval=3600)
    stats.incr("evictions", 4)
    stats.close()
    assert json.loads(stats.path.read_text())["totals"] == {"evictions": 4}


def test_access_counts_sum_over_files(counter: StatsCounter, layout: CacheLayout) -> None:
    _write_stats(layout, "merged-aa.json", {}, access={URL: {"a": 5, "b": 1}})
    counter.record_access(URL, "a")
    counter.record_access(URL, "c", 2)
    assert counter.access_counts(URL) == {"a": 6, "b": 1, "c": 2}
    assert counter.access_counts("s3://other") == {}


def test_undecodable_files_are_ignored(counter: StatsCounter, layout: CacheLayout) -> None:
    (layout.stats_dir / "123-bad.json").write_text("{")
    (layout.stats_dir / ".x.123-tmp.tmp").write_text("{}")
    _write_stats(layout, "merged-ok.json", {"hits": 2, "from_the_future": 7})
    totals = counter.totals()
    assert totals["hits"] == 2
    assert totals["from_the_future"] == 7  # a newer aiofolio's counter still adds up


def test_compact_merges_dead_processes_and_keeps_totals(
    counter: StatsCounter, layout: CacheLayout
) -> None:
    dead = _dead_pid()
    for i in range(5):
        _write_stats(
            layout,
            f"{dead}-{i:04x}.json",
            {"hits": i, "misses": 1},
            bundles={URL: {"hits": i}},
            access={URL: {"a": 1}},
        )
    live = _write_stats(layout, f"{os.getpid()}-live.json", {"hits": 100})
    _write_stats(layout, "merged-old.json", {"evictions": 3})
    counter.add(URL, hits=1000)
    counter.flush()
    before = counter.totals(), counter.totals(URL), counter.access_counts(URL)
    assert counter.compact() == 6
    names = sorted(p.name for p in layout.stats_dir.iterdir())
    merged = [n for n in names if n.startswith("merged-")]
    assert len(merged) == 1
    assert sorted(names) == sorted([*merged, live.name, counter.path.name])
    assert (counter.totals(), counter.totals(URL), counter.access_counts(URL)) == before
    assert before[0]["hits"] == 0 + 1 + 2 + 3 + 4 + 100 + 1000
    assert before[2] == {"a": 5}
    assert counter.compact() == 0  # one merged file and live ones: nothing to do


def test_compact_keeps_other_hosts_files_until_they_are_old(
    counter: StatsCounter, layout: CacheLayout
) -> None:
    recent = _write_stats(
        layout, "1-aaaa.json", {"hits": 1}, host="another-host", updated=time.time()
    )
    old = _write_stats(layout, "2-bbbb.json", {"hits": 2}, host="another-host", updated=1.0)
    counter.compact()
    assert recent.exists()
    assert not old.exists()
    assert counter.totals()["hits"] == 3


def test_a_compaction_that_died_midway_is_neither_lost_nor_double_counted(
    counter: StatsCounter, layout: CacheLayout, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = _dead_pid()
    # Died after writing its merged file, before deleting the claimed inputs.
    _write_stats(layout, f"claimed-{dead}-0001.json", {"hits": 1})
    _write_stats(layout, f"claimed-{dead}-0002.json", {"hits": 2})
    _write_stats(
        layout,
        "merged-done.json",
        {"hits": 3},
        subsumes=[f"claimed-{dead}-0001.json", f"claimed-{dead}-0002.json"],
    )
    # Died after claiming, before merging (an old claim).
    _write_stats(layout, f"claimed-{dead}-0003.json", {"hits": 10})
    # A claim is abandoned when its rename (ctime, which utime cannot age) is old.
    monkeypatch.setattr("aiofolio.store.stats._ABANDONED_CLAIM_AGE", -1.0)
    assert counter.totals()["hits"] == 13
    counter.compact()
    assert counter.totals()["hits"] == 13
    assert [p.name.startswith("merged-") for p in layout.stats_dir.iterdir()] == [True]


def test_first_flush_compacts_a_crowded_folder(layout: CacheLayout) -> None:
    dead = _dead_pid()
    for i in range(10):
        _write_stats(layout, f"{dead}-{i:04x}.json", {"hits": 1})
    stats = StatsCounter(layout, flush_interval=3600, compact_threshold=5)
    stats.incr("hits")
    stats.flush()
    assert len(list(layout.stats_dir.iterdir())) == 2  # merged + ours
    assert stats.totals()["hits"] == 11
    stats.close()


def test_a_missing_stats_folder_is_created_on_flush(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path / "never-ensured")
    stats = StatsCounter(layout, flush_interval=3600)
    assert stats.totals()["hits"] == 0
    stats.incr("hits")
    assert stats.flush()
    assert stats.path.exists()
    stats.close()


def test_a_failed_flush_is_logged_and_retried(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    stats = StatsCounter(CacheLayout(tmp_path / "file"), flush_interval=3600)
    stats.incr("hits")
    assert stats.flush() is False  # never raises
    assert stats.totals()["hits"] == 1
    stats.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_counts_for_itself(layout: CacheLayout) -> None:
    stats = StatsCounter(layout, flush_interval=3600)
    try:
        stats.add(URL, hits=7)  # unflushed in the parent at fork time
        pid = os.fork()
        if pid == 0:  # the child: never return into pytest
            code = 1
            try:
                fresh = stats.totals()["hits"] == 0 and stats.path.name.startswith(
                    f"{os.getpid()}-"
                )
                stats.add(URL, hits=1)
                stats.flush()
                code = 0 if fresh else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert stats.totals()["hits"] == 8  # the parent's 7 and the child's 1, each once
        stats.flush()
        assert len(list(layout.stats_dir.iterdir())) == 2
    finally:
        stats.close()
