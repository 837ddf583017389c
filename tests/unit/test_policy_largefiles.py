"""The large-file policy's pure decisions: what a read caches, and when ``add`` warns."""

from __future__ import annotations

import pytest

from aiofolio.bundle import Item
from aiofolio.config import Settings
from aiofolio.policy.largefiles import (
    growth_warning,
    human_size,
    is_large,
    owned_payload_bytes,
    should_cache,
)

THRESHOLD = 1000


def _settings(cache_large_files: bool) -> Settings:
    return Settings(
        cache_dir="/c", large_file_threshold=THRESHOLD, cache_large_files=cache_large_files
    )


@pytest.mark.parametrize(
    ("size", "cache_large", "force", "expected"),
    [
        (999, False, False, True),  # below the threshold: cached
        (1000, False, False, False),  # at the threshold: large, streamed
        (5000, False, False, False),
        (5000, False, True, True),  # force_cache=True caches it anyway
        (5000, True, False, True),  # cache_large_files=True (the default) caches everything
        (None, False, False, True),  # unknown size: never large (no request to learn it)
    ],
)
def test_should_cache(size: int | None, cache_large: bool, force: bool, expected: bool) -> None:
    assert should_cache(size, _settings(cache_large), force) is expected


@pytest.mark.parametrize(
    ("size", "force", "expected"), [(999, False, True), (5000, False, False), (5000, True, True)]
)
def test_stream_large_files_streams_large_items_even_with_cache_large_files_on(
    size: int, force: bool, expected: bool
) -> None:
    s = Settings(cache_dir="/c", large_file_threshold=THRESHOLD, stream_large_files=True)
    assert s.cache_large_files is True
    assert should_cache(size, s, force) is expected


def test_stream_large_files_is_a_setting_with_env_and_seed_names() -> None:
    from aiofolio.config import resolve_settings

    resolved = resolve_settings(environ={"AIOFOLIO_STREAM_LARGE_FILES": "true"})
    assert resolved.settings.stream_large_files is True
    assert Settings(cache_dir="/c").stream_large_files is False


def test_default_settings_cache_large_files() -> None:
    s = Settings(cache_dir="/c")
    assert s.cache_large_files is True
    assert should_cache(10 * s.large_file_threshold, s) is True


def test_is_large_is_at_or_above() -> None:
    assert not is_large(None, 1)
    assert not is_large(9, 10)
    assert is_large(10, 10)


def _item(name: str, filename: str | None, size: int | None, **extra: object) -> Item:
    data: dict[str, object] = {"name": name, "item_type": "included_table", **extra}
    if filename is not None:
        data["filename"] = filename
    if size is not None:
        data["size_bytes"] = size
    return Item(data)


def test_owned_payload_bytes_counts_each_owned_payload_once() -> None:
    items = [
        _item("a", "a--r1.parquet", 100),
        _item("a", "a--r1.parquet", 100, is_current=False),  # same payload, shared
        _item("b", "b--r2.parquet", 50, is_current=False),  # pinned old version: counts
        _item("c", "c--r3.parquet", None),  # size unknown: 0
        Item({"name": "r", "item_type": "referenced_table", "path": "s3://b/x", "size_bytes": 7}),
    ]
    assert owned_payload_bytes(items) == 150
    assert owned_payload_bytes([]) == 0


def _warn(before: int, after: int, size: int | None, *, is_table: bool = True) -> str | None:
    return growth_warning(
        name="x",
        item_size=size,
        before=before,
        after=after,
        items=3,
        threshold=THRESHOLD,
        is_table=is_table,
    )


def test_growth_warning_once_per_crossing() -> None:
    assert _warn(0, 400, 400) is None
    assert _warn(400, 999, 599) is None
    crossed = _warn(999, 1300, 301)
    assert crossed is not None
    assert "past large_file_threshold" in crossed
    assert "1.3 KB" in crossed
    assert "3 item(s)" in crossed
    assert _warn(1300, 1700, 400) is None  # already past: no second warning
    assert _warn(500, 1000, 500) is not None  # reaching the threshold exactly counts


def test_growth_warning_for_a_large_item_every_time() -> None:
    first = _warn(0, 5000, 5000)
    assert first is not None
    assert "item 'x' is 5.0 KB" in first
    assert "past large_file_threshold" in first
    again = _warn(5000, 10000, 5000)
    assert again is not None
    assert "item 'x'" in again
    assert "now holds" not in again
    assert "convert_to_reference('x')" in again


def test_growth_warning_advice_for_non_tables() -> None:
    text = _warn(0, 5000, 5000, is_table=False)
    assert text is not None
    assert "convert_to_reference" not in text
    assert "optimize_storage()" in text


def test_human_size() -> None:
    assert human_size(512) == "512 B"
    assert human_size(1500) == "1.5 KB"
    assert human_size(2_500_000_000) == "2.5 GB"
    assert human_size(3 * 10**15) == "3000.0 TB"
