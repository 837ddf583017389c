"""Best-effort cache locks within one process (the cross-process tests are in tests/engine)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from aiofolio.store import CacheLayout, blob_lock, cache_lock, sweep_locks
from aiofolio.store.locks import lock_path


@pytest.fixture
def layout(tmp_path: Path) -> CacheLayout:
    layout = CacheLayout(tmp_path / "cache")
    layout.ensure()
    return layout


def test_lock_file_is_named_by_a_hash_of_the_key(layout: CacheLayout) -> None:
    path = lock_path(layout, "../../etc/passwd")
    assert path.parent == layout.locks_dir
    assert len(path.stem) == 32
    assert path.suffix == ".lock"
    assert lock_path(layout, "a") != lock_path(layout, "b")


def test_acquire_and_release(layout: CacheLayout) -> None:
    with blob_lock(layout, "k", timeout=1) as locked:
        assert locked is True
        with blob_lock(layout, "other", timeout=0) as other:
            assert other is True
    with blob_lock(layout, "k", timeout=0) as again:
        assert again is True


def test_a_held_lock_times_out_to_false_and_the_block_still_runs(layout: CacheLayout) -> None:
    ran = False
    with blob_lock(layout, "k", timeout=1) as first:
        assert first
        start = time.monotonic()
        with blob_lock(layout, "k", timeout=0.1) as second:
            ran = True
            assert second is False
        assert 0.09 <= time.monotonic() - start < 1.0
    assert ran


def test_other_threads_are_excluded_too(layout: CacheLayout) -> None:
    results: list[bool] = []
    with blob_lock(layout, "k", timeout=1):
        thread = threading.Thread(
            target=lambda: results.append(blob_lock(layout, "k", 0).__enter__())
        )
        thread.start()
        thread.join(timeout=10)
    assert results == [False]


def test_entered_in_one_thread_and_left_in_another(layout: CacheLayout) -> None:
    """The engine enters and leaves the context in worker threads that may differ."""
    ctx = blob_lock(layout, "k", 1)
    entered: list[bool] = []
    t1 = threading.Thread(target=lambda: entered.append(ctx.__enter__()))
    t1.start()
    t1.join(timeout=10)
    assert entered == [True]
    t2 = threading.Thread(target=lambda: ctx.__exit__(None, None, None))
    t2.start()
    t2.join(timeout=10)
    with blob_lock(layout, "k", timeout=0) as again:
        assert again is True  # really released


def test_a_waiter_gets_the_lock_soon_after_release(layout: CacheLayout) -> None:
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        with blob_lock(layout, "k", timeout=1):
            holding.set()
            release.wait(timeout=10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(timeout=10)
    threading.Timer(0.1, release.set).start()
    start = time.monotonic()
    with blob_lock(layout, "k", timeout=5) as locked:
        waited = time.monotonic() - start
        assert locked is True
    thread.join(timeout=10)
    assert 0.05 < waited < 1.0


def test_an_exception_in_the_block_releases_the_lock(layout: CacheLayout) -> None:
    with pytest.raises(RuntimeError), blob_lock(layout, "k", timeout=1):
        raise RuntimeError
    with blob_lock(layout, "k", timeout=0) as locked:
        assert locked


@pytest.mark.parametrize("timeout", [math.nan, math.inf])
def test_unbounded_timeouts_are_refused(layout: CacheLayout, timeout: float) -> None:
    with pytest.raises(ValueError, match="finite"), cache_lock(layout, "k", timeout):
        pass


def test_negative_timeout_tries_once(layout: CacheLayout) -> None:
    with blob_lock(layout, "k", timeout=-5) as locked:
        assert locked


def test_unusable_lock_folder_yields_false_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    layout = CacheLayout(tmp_path / "file")  # v1/locks cannot exist below a file
    with blob_lock(layout, "k", timeout=0.05) as locked:
        assert locked is False


def test_sweep_locks_removes_old_unheld_lock_files(layout: CacheLayout) -> None:
    import os

    for key in ("a", "b", "c"):
        with blob_lock(layout, key, timeout=1):
            pass
    old = time.time() - 7 * 86400
    for key in ("a", "b"):
        os.utime(lock_path(layout, key), (old, old))
    with blob_lock(layout, "a", timeout=1):
        assert sweep_locks(layout) == 1  # b: old and free; a: held; c: young
    assert lock_path(layout, "a").exists()
    assert not lock_path(layout, "b").exists()
    assert lock_path(layout, "c").exists()
