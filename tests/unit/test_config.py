"""Tests for aiofolio.config: parsers, Settings, env vars, config file, precedence, provenance."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from aiofolio import config
from aiofolio.config import (
    CONFIG_FILE_KEYS,
    ENV_VARS,
    SETTING_NAMES,
    SETTING_ROWS,
    UNSET,
    Alias,
    SettingRow,
    Settings,
    configure,
    configured_settings,
    format_duration,
    format_setting,
    format_size,
    parse_bool,
    parse_duration,
    parse_size,
    reset_configure,
    resolve_settings,
)
from aiofolio.errors import ConfigError

REAL_DEFAULT_CACHE_DIR = config.default_cache_dir  # before the fixture patches it

KB, MB, GB, TB = 1000, 1000**2, 1000**3, 1000**4
KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4


@pytest.fixture(autouse=True)
def _isolate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No stray env vars, no configure() leftovers, and a private default cache dir."""
    for var in ENV_VARS:
        monkeypatch.delenv(var.name, raising=False)
    default_dir = tmp_path / "default-cache"
    monkeypatch.setattr(config, "default_cache_dir", lambda: str(default_dir))
    reset_configure()
    yield default_dir
    reset_configure()


@pytest.fixture
def default_dir(_isolate: Path) -> Path:
    return _isolate


def write_config(directory: Path, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# --------------------------------------------------------------------------------------------
# parse_size


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (1024, 1024),
        (1500.0, 1500),
        (None, None),
        (math.inf, None),
        ("1048576", 1048576),
        ("  7  ", 7),
        ("10B", 10),
        ("10 b", 10),
        ("1KB", KB),
        ("500MB", 500 * MB),
        ("500 mb", 500 * MB),
        ("50GB", 50 * GB),
        ("2TB", 2 * TB),
        ("1.1TB", 1_100_000_000_000),
        (".5KB", 500),
        ("1KiB", KiB),
        ("8MiB", 8 * MiB),
        ("1.5 GiB", 1610612736),
        ("1.5 gib", 1610612736),
        ("1TiB", TiB),
        ("unlimited", None),
        ("UNLIMITED", None),
        ("none", None),
        (" None ", None),
    ],
)
def test_parse_size_accepts(value: object, expected: int | None) -> None:
    assert parse_size(value) == expected


@pytest.mark.parametrize(
    "value",
    ["-5MB", "5 XB", "MB", "", "1.2.3GB", "5 M", "fifty", True, -1, math.nan, -math.inf, [1]],
)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_size(value, source="env AIOFOLIO_MAX_CACHE_SIZE")
    message = str(info.value)
    assert message.startswith("env AIOFOLIO_MAX_CACHE_SIZE: invalid value ")
    assert repr(value) in message
    assert "accepted:" in message
    assert "GiB" in message
    assert "'unlimited'" in message


# --------------------------------------------------------------------------------------------
# parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, 30.0),
        (1.5, 1.5),
        (0, 0.0),
        (None, None),
        (math.inf, None),
        ("30", 30.0),
        ("0", 0.0),
        ("30s", 30.0),
        ("30 sec", 30.0),
        ("30m", 1800.0),
        ("10 minutes", 600.0),
        ("2h", 7200.0),
        ("1.5h", 5400.0),
        ("7d", 604800.0),
        ("1w", 604800.0),
        ("2 Weeks", 1209600.0),
        ("never", None),
        ("NEVER", None),
        ("none", None),
    ],
)
def test_parse_duration_accepts(value: object, expected: float | None) -> None:
    result = parse_duration(value)
    assert result == expected
    if expected is not None:
        assert isinstance(result, float)


@pytest.mark.parametrize("value", ["-1s", "soon", "5y", "", "1h30", "m", True, -3, math.nan, {}])
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(value, source="env AIOFOLIO_CACHE_TTL")
    message = str(info.value)
    assert message.startswith("env AIOFOLIO_CACHE_TTL: invalid value ")
    assert repr(value) in message
    assert "'30m'" in message
    assert "'never'" in message


# --------------------------------------------------------------------------------------------
# parse_bool


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        *[(text, True) for text in ("1", "true", "TRUE", "True", "yes", "Yes", "on", "ON", " on ")],
        *[(text, False) for text in ("0", "false", "False", "NO", "no", "off", "Off")],
        (True, True),
        (False, False),
        (1, True),
        (0, False),
    ],
)
def test_parse_bool_accepts(value: object, expected: bool) -> None:
    assert parse_bool(value) is expected


@pytest.mark.parametrize("value", ["maybe", "2", "", "t", "y", 2, None, 1.0])
def test_parse_bool_rejects(value: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_bool(value, source="file /x/config.json key defaults.strict_mode")
    message = str(info.value)
    assert message.startswith("file /x/config.json key defaults.strict_mode: invalid value ")
    assert repr(value) in message
    assert "yes/no" in message


# --------------------------------------------------------------------------------------------
# formatting


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1500, "1500B"),
        (1000, "1KB"),
        (1024, "1KiB"),
        (8 * MiB, "8MiB"),
        (100 * GB, "100GB"),
        (GB, "1GB"),
        (2 * TB, "2TB"),
        (1610612736, "1536MiB"),
    ],
)
def test_format_size_round_trips(size: int, text: str) -> None:
    assert format_size(size) == text
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1800.0, "30m"),
        (86400.0, "1d"),
        (604800.0, "1w"),
        (7200.0, "2h"),
        (90.0, "90s"),
        (0.0, "0s"),
        (1.5, "1.5s"),
    ],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


def test_format_setting_renders_none_per_kind() -> None:
    assert format_setting("max_cache_size", None) == "unlimited"
    assert format_setting("cache_ttl", None) == "never"
    assert format_setting("cache_enabled", None) == "auto"
    assert format_setting("progress", None) == "auto"
    assert format_setting("shared_cache_dir", None) == "none"
    assert format_setting("strict_mode", True) == "true"
    assert format_setting("eviction_threshold", 0.9) == "0.9"


# --------------------------------------------------------------------------------------------
# Settings


def test_settings_defaults() -> None:
    s = Settings()
    assert s.cache_enabled is None
    assert s.cache_dir == REAL_DEFAULT_CACHE_DIR()
    assert s.cache_ttl == 1800.0
    assert s.cache_mode == "read-write"
    assert s.cache_on_add is False
    assert s.max_cache_size == 100 * 1000**3
    assert s.hard_limit is False
    assert s.eviction_policy == "lru"
    assert s.eviction_threshold == 0.9
    assert s.checksum_algorithm == "md5"
    assert s.strict_mode is False
    assert s.fallback_to_stale is True
    assert s.max_stale_age == 86400.0
    assert s.parallel_downloads == 8
    assert s.chunk_size == 8 * 1024 * 1024
    assert s.parallel_threshold == 16 * 1024 * 1024
    assert s.large_file_threshold == 1000**3
    assert s.cache_large_files is True
    assert s.shared_cache_dir is None
    assert s.retry_attempts == 5
    assert s.retry_max_time == 60.0
    assert s.connect_timeout == 10.0
    assert s.read_timeout == 60.0
    assert s.progress is None
    assert s.log_level == "WARNING"
    assert (s.log_cache_hits, s.log_cache_misses, s.log_evictions) == (False, True, True)
    assert s.hit_fast_path is True


def test_settings_is_frozen() -> None:
    s = Settings(cache_dir="/c")
    with pytest.raises(AttributeError):
        s.cache_ttl = 5.0  # type: ignore[misc]
    assert s.cache_ttl == 1800.0


def test_setting_names_match_struct_fields() -> None:
    assert [f.name for f in msgspec.structs.fields(Settings)] == list(SETTING_NAMES)
    assert len(SETTING_NAMES) == 35
    assert SETTING_NAMES[:3] == ("cache_enabled", "cache_dir", "cache_ttl")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("parallel_downloads", 0),
        ("retry_attempts", 0),
        ("eviction_threshold", 0.0),
        ("eviction_threshold", 1.5),
        ("eviction_threshold", math.nan),
        ("chunk_size", 0),
        ("large_file_threshold", -1),
        ("cache_ttl", -1.0),
        ("cache_ttl", "30m"),  # string forms belong to the resolution layers
        ("max_cache_size", "50GB"),
        ("strict_mode", 1),
        ("parallel_downloads", True),
        ("cache_mode", "bogus"),
        ("cache_mode", "READ-ONLY"),
        ("log_level", "verbose"),
        ("connect_timeout", 0.0),
        ("retry_max_time", None),
        ("cache_dir", ""),
        ("cache_dir", Path("/c")),
        ("shared_cache_dir", 5),
        ("shared_cache_dir", "none"),
        ("max_cache_size", math.inf),
    ],
)
def test_settings_rejects_bad_direct_values(field: str, value: object) -> None:
    kwargs: dict[str, Any] = {"cache_dir": "/c", field: value}
    with pytest.raises(ConfigError) as info:
        Settings(**kwargs)
    message = str(info.value)
    assert f"Settings({field}=...)" in message
    assert repr(value) in message


def test_settings_accepts_edge_values() -> None:
    s = Settings(
        cache_dir="/c",
        cache_ttl=None,
        max_cache_size=None,
        max_stale_age=None,
        eviction_threshold=1.0,
        parallel_threshold=0,
        connect_timeout=3,
    )
    assert s.cache_ttl is None
    assert s.max_cache_size is None
    assert s.max_stale_age is None
    assert s.eviction_threshold == 1.0
    assert s.parallel_threshold == 0
    assert s.connect_timeout == 3


def test_settings_decodes_from_json() -> None:
    s = msgspec.json.decode(b'{"cache_dir": "/c", "cache_ttl": null}', type=Settings)
    assert s.cache_ttl is None
    assert s.cache_dir == "/c"
    with pytest.raises(msgspec.ValidationError, match="parallel_downloads"):
        msgspec.json.decode(b'{"cache_dir": "/c", "parallel_downloads": 0}', type=Settings)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("s3://bucket/exp-001", True),
        ("gs://bucket/exp", True),
        ("gcs://bucket/exp", True),
        ("https://host/exp", True),
        ("HTTP://host/exp", True),
        ("simplecache::s3://bucket/exp", True),
        ("/data/exp-001", False),
        ("relative/exp", False),
        ("file:///data/exp", False),
        ("memory://exp", False),
        ("C:\\data\\exp", False),
        ("C://data/exp", False),
        (Path("/data/exp"), False),
    ],
)
def test_cache_enabled_for_auto(url: str | Path, expected: bool) -> None:
    assert Settings(cache_dir="/c").cache_enabled_for(url) is expected


def test_cache_enabled_for_explicit_and_disabled_mode() -> None:
    assert Settings(cache_dir="/c", cache_enabled=False).cache_enabled_for("s3://b/x") is False
    assert Settings(cache_dir="/c", cache_enabled=True).cache_enabled_for("/local") is True
    disabled = Settings(cache_dir="/c", cache_enabled=True, cache_mode="disabled")
    assert disabled.cache_enabled_for("s3://b/x") is False


# --------------------------------------------------------------------------------------------
# resolve_settings: defaults


def test_resolve_defaults_everything_from_default(default_dir: Path) -> None:
    resolved = resolve_settings(environ={})
    assert resolved.settings == Settings(cache_dir=str(default_dir))
    assert resolved.sources == dict.fromkeys(SETTING_NAMES, "default")
    assert resolved.config_file == str(default_dir / "config.json")
    assert resolved.config_file_found is False


def test_default_cache_dir_is_platform_user_cache_dir() -> None:
    import platformdirs

    expected = os.path.abspath(platformdirs.user_cache_dir("aiofolio", appauthor=False))
    assert REAL_DEFAULT_CACHE_DIR() == expected
    assert Settings().cache_dir == expected


# --------------------------------------------------------------------------------------------
# resolve_settings: env vars

ENV_CASES: list[tuple[str, str, str, object]] = [
    ("AIOFOLIO_CACHE_ENABLED", "false", "cache_enabled", False),
    ("DATAFOLIO_CACHE_ENABLED", "yes", "cache_enabled", True),
    ("AIOFOLIO_CACHE_DIR", "{tmp}/a", "cache_dir", "{tmp}/a"),
    ("DATAFOLIO_CACHE_DIR", "{tmp}/b", "cache_dir", "{tmp}/b"),
    ("AIOFOLIO_CACHE_TTL", "30m", "cache_ttl", 1800.0),
    ("DATAFOLIO_CACHE_TTL", "60", "cache_ttl", 60.0),
    ("AIOFOLIO_OFFLINE", "1", "cache_mode", "offline"),
    ("AIOFOLIO_CACHE_MODE", "READ-ONLY", "cache_mode", "read-only"),
    ("AIOFOLIO_CACHE_ON_ADD", "on", "cache_on_add", True),
    ("AIOFOLIO_MAX_CACHE_SIZE", "50GB", "max_cache_size", 50 * GB),
    ("AIOFOLIO_CACHE_SIZE_LIMIT_MB", "51200", "max_cache_size", 50 * GiB),
    ("AIOFOLIO_HARD_LIMIT", "true", "hard_limit", True),
    ("AIOFOLIO_CACHE_HARD_LIMIT", "TRUE", "hard_limit", True),
    ("AIOFOLIO_EVICTION_POLICY", "LFU", "eviction_policy", "lfu"),
    ("AIOFOLIO_EVICTION_THRESHOLD", "0.75", "eviction_threshold", 0.75),
    ("AIOFOLIO_CHECKSUM_ALGORITHM", "sha256", "checksum_algorithm", "sha256"),
    ("AIOFOLIO_STRICT_MODE", "1", "strict_mode", True),
    ("AIOFOLIO_FALLBACK_TO_STALE", "off", "fallback_to_stale", False),
    ("AIOFOLIO_MAX_STALE_AGE", "never", "max_stale_age", None),
    ("AIOFOLIO_PARALLEL_DOWNLOADS", "16", "parallel_downloads", 16),
    ("AIOFOLIO_CHUNK_SIZE", "4MiB", "chunk_size", 4 * MiB),
    ("AIOFOLIO_PARALLEL_THRESHOLD", "32 MiB", "parallel_threshold", 32 * MiB),
    ("AIOFOLIO_LARGE_FILE_THRESHOLD", "2GB", "large_file_threshold", 2 * GB),
    ("AIOFOLIO_CACHE_LARGE_FILES", "no", "cache_large_files", False),
    ("AIOFOLIO_STREAM_LARGE_FILES", "yes", "stream_large_files", True),
    ("AIOFOLIO_SHARED_CACHE_DIR", "none", "shared_cache_dir", None),
    ("AIOFOLIO_SHARED_CACHE_PRIORITY", "FIRST", "shared_cache_priority", "first"),
    ("AIOFOLIO_SHARED_CACHE_COPY", "true", "shared_cache_copy", True),
    ("AIOFOLIO_LOCK_MODE", "Lease", "lock_mode", "lease"),
    ("AIOFOLIO_RETRY_ATTEMPTS", "3", "retry_attempts", 3),
    ("AIOFOLIO_RETRY_MAX_TIME", "2m", "retry_max_time", 120.0),
    ("AIOFOLIO_CONNECT_TIMEOUT", "5", "connect_timeout", 5.0),
    ("AIOFOLIO_READ_TIMEOUT", "1.5m", "read_timeout", 90.0),
    ("AIOFOLIO_PROGRESS", "0", "progress", False),
    ("AIOFOLIO_LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("AIOFOLIO_LOG_CACHE_HITS", "true", "log_cache_hits", True),
    ("AIOFOLIO_LOG_CACHE_MISSES", "false", "log_cache_misses", False),
    ("AIOFOLIO_LOG_EVICTIONS", "false", "log_evictions", False),
    ("AIOFOLIO_HIT_FAST_PATH", "0", "hit_fast_path", False),
    ("AIOFOLIO_ALLOW_LOCAL_REFERENCES", "yes", "allow_local_references", True),
    ("AIOFOLIO_PICKLE_CREDENTIALS", "yes", "pickle_credentials", True),
]


def test_env_cases_cover_the_whole_table() -> None:
    assert sorted(name for name, *_ in ENV_CASES) == sorted(var.name for var in ENV_VARS)
    assert {var.setting for var in ENV_VARS} == set(SETTING_NAMES)
    primary = {var.name for var in ENV_VARS}
    assert {f"AIOFOLIO_{name.upper()}" for name in SETTING_NAMES} <= primary
    assert all(var.help for var in ENV_VARS)


@pytest.mark.parametrize(("var", "raw", "field", "expected"), ENV_CASES)
def test_each_env_var(tmp_path: Path, var: str, raw: str, field: str, expected: object) -> None:
    raw = raw.format(tmp=tmp_path)
    if isinstance(expected, str):
        expected = expected.format(tmp=tmp_path)
    resolved = resolve_settings(environ={var: raw})
    assert getattr(resolved.settings, field) == expected
    assert resolved.sources[field] == f"env:{var}"
    others = {name for name, source in resolved.sources.items() if source != "default"}
    assert others == {field}


@pytest.mark.parametrize(
    ("primary", "alias", "field", "expected"),
    [
        ("AIOFOLIO_CACHE_TTL=120", "DATAFOLIO_CACHE_TTL=60", "cache_ttl", 120.0),
        ("AIOFOLIO_CACHE_ENABLED=false", "DATAFOLIO_CACHE_ENABLED=true", "cache_enabled", False),
        ("AIOFOLIO_CACHE_DIR=/aio", "DATAFOLIO_CACHE_DIR=/dfo", "cache_dir", "/aio"),
        ("AIOFOLIO_MAX_CACHE_SIZE=1GB", "AIOFOLIO_CACHE_SIZE_LIMIT_MB=5", "max_cache_size", GB),
        ("AIOFOLIO_HARD_LIMIT=false", "AIOFOLIO_CACHE_HARD_LIMIT=true", "hard_limit", False),
        ("AIOFOLIO_OFFLINE=1", "AIOFOLIO_CACHE_MODE=read-only", "cache_mode", "offline"),
    ],
)
def test_env_primary_name_wins_over_alias(
    primary: str, alias: str, field: str, expected: object
) -> None:
    environ = dict(item.split("=", 1) for item in (primary, alias))
    resolved = resolve_settings(environ=environ)
    assert getattr(resolved.settings, field) == expected
    assert resolved.sources[field] == "env:" + primary.split("=")[0]


def test_shadowed_alias_is_not_parsed() -> None:
    resolved = resolve_settings(
        environ={"AIOFOLIO_CACHE_TTL": "60", "DATAFOLIO_CACHE_TTL": "not a duration"}
    )
    assert resolved.settings.cache_ttl == 60.0


def test_empty_env_var_counts_as_unset() -> None:
    resolved = resolve_settings(environ={"AIOFOLIO_CACHE_TTL": "  ", "DATAFOLIO_CACHE_TTL": "90"})
    assert resolved.settings.cache_ttl == 90.0
    assert resolved.sources["cache_ttl"] == "env:DATAFOLIO_CACHE_TTL"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("102400", 100 * GiB), ("1", MiB), ("unlimited", None), ("Unlimited", None)],
)
def test_cache_size_limit_mb(raw: str, expected: int | None) -> None:
    resolved = resolve_settings(environ={"AIOFOLIO_CACHE_SIZE_LIMIT_MB": raw})
    assert resolved.settings.max_cache_size == expected
    assert resolved.sources["max_cache_size"] == "env:AIOFOLIO_CACHE_SIZE_LIMIT_MB"


@pytest.mark.parametrize("raw", ["50GB", "0", "-1", "1.5", "lots"])
def test_cache_size_limit_mb_rejects(raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(environ={"AIOFOLIO_CACHE_SIZE_LIMIT_MB": raw})
    message = str(info.value)
    assert message.startswith("env AIOFOLIO_CACHE_SIZE_LIMIT_MB: invalid value ")
    assert repr(raw) in message
    assert "1048576" in message
    assert "'unlimited'" in message


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("0", False), ("ON", True)])
def test_cache_hard_limit(raw: str, expected: bool) -> None:
    resolved = resolve_settings(environ={"AIOFOLIO_CACHE_HARD_LIMIT": raw})
    assert resolved.settings.hard_limit is expected
    assert resolved.sources["hard_limit"] == "env:AIOFOLIO_CACHE_HARD_LIMIT"


def test_offline_false_sets_nothing() -> None:
    alone = resolve_settings(environ={"AIOFOLIO_OFFLINE": "0"})
    assert alone.settings.cache_mode == "read-write"
    assert alone.sources["cache_mode"] == "default"
    with_mode = resolve_settings(
        environ={"AIOFOLIO_OFFLINE": "false", "AIOFOLIO_CACHE_MODE": "read-only"}
    )
    assert with_mode.settings.cache_mode == "read-only"
    assert with_mode.sources["cache_mode"] == "env:AIOFOLIO_CACHE_MODE"


def test_offline_bad_value() -> None:
    with pytest.raises(ConfigError, match=r"env AIOFOLIO_OFFLINE: invalid value 'maybe'"):
        resolve_settings(environ={"AIOFOLIO_OFFLINE": "maybe"})


@pytest.mark.parametrize(
    ("var", "raw", "accepted"),
    [
        ("AIOFOLIO_CACHE_TTL", "soon", "'30m'"),
        ("DATAFOLIO_CACHE_TTL", "-5", "'30m'"),
        ("AIOFOLIO_PARALLEL_DOWNLOADS", "0", "integer >= 1"),
        ("AIOFOLIO_PARALLEL_DOWNLOADS", "eight", "integer >= 1"),
        ("AIOFOLIO_EVICTION_THRESHOLD", "1.5", "at most 1"),
        ("AIOFOLIO_EVICTION_THRESHOLD", "0", "above 0"),
        ("AIOFOLIO_CACHE_MODE", "sometimes", "'write-through'"),
        ("AIOFOLIO_CHECKSUM_ALGORITHM", "crc32", "'xxh3_128'"),
        ("AIOFOLIO_MAX_CACHE_SIZE", "big", "GiB"),
        ("AIOFOLIO_CHUNK_SIZE", "unlimited", "at least 1 bytes"),
        ("AIOFOLIO_CONNECT_TIMEOUT", "0", "above 0"),
        ("AIOFOLIO_RETRY_MAX_TIME", "never", "above 0"),
        ("AIOFOLIO_LOG_LEVEL", "loud", "WARNING"),
        ("AIOFOLIO_PROGRESS", "sometimes", "'auto'"),
        ("DATAFOLIO_CACHE_ENABLED", "perhaps", "yes/no"),
    ],
)
def test_bad_env_value_names_var_value_and_forms(var: str, raw: str, accepted: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(environ={var: raw})
    message = str(info.value)
    assert message.startswith(f"env {var}: invalid value {raw!r}; accepted: ")
    assert accepted in message


def test_auto_values_from_env() -> None:
    resolved = resolve_settings(
        environ={"AIOFOLIO_PROGRESS": "auto", "AIOFOLIO_CACHE_ENABLED": "AUTO"}
    )
    assert resolved.settings.progress is None
    assert resolved.settings.cache_enabled is None
    assert resolved.sources["progress"] == "env:AIOFOLIO_PROGRESS"


def test_env_is_read_at_resolve_time_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    # The module was imported at the top of this file, before these variables existed.
    assert resolve_settings().settings.cache_ttl == 1800.0
    monkeypatch.setenv("AIOFOLIO_CACHE_TTL", "2h")
    monkeypatch.setenv("AIOFOLIO_MAX_CACHE_SIZE", "unlimited")
    resolved = resolve_settings()
    assert resolved.settings.cache_ttl == 7200.0
    assert resolved.settings.max_cache_size is None
    assert resolved.sources["cache_ttl"] == "env:AIOFOLIO_CACHE_TTL"
    monkeypatch.delenv("AIOFOLIO_CACHE_TTL")
    assert resolve_settings().settings.cache_ttl == 1800.0


def test_explicit_environ_ignores_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOFOLIO_CACHE_TTL", "2h")
    assert resolve_settings(environ={}).settings.cache_ttl == 1800.0
    assert resolve_settings(environ={"AIOFOLIO_CACHE_TTL": "1h"}).settings.cache_ttl == 3600.0


# --------------------------------------------------------------------------------------------
# Config file

FULL_FILE: dict[str, Any] = {
    "version": "1.0",
    "enabled": True,
    "defaults": {
        "ttl_seconds": 600,
        "checksum_algorithm": "sha256",
        "strict_mode": True,
        "cache_mode": "write-through",
        "fallback_to_stale": False,
        "max_stale_age": "2d",
        "cache_on_add": True,
    },
    "limits": {
        "max_cache_size_bytes": 53687091200,
        "hard_limit": True,
        "eviction_policy": "fifo",
        "eviction_threshold": 0.8,
        "large_file_threshold": "5GB",
        "cache_large_files": False,
        "stream_large_files": True,
    },
    "performance": {
        "parallel_downloads": 4,
        "chunk_size_bytes": 4194304,
        "parallel_threshold": "64MiB",
        "compression": "auto",
        "retry_attempts": 2,
        "retry_max_time": 30,
        "connect_timeout": 3,
        "read_timeout": "2m",
    },
    "logging": {
        "level": "INFO",
        "log_cache_hits": True,
        "log_cache_misses": False,
        "log_evictions": False,
        "progress": False,
    },
    "advanced": {
        "content_addressable_storage": False,
        "shared_cache_dir": None,
        "shared_cache_priority": "first",
        "shared_cache_copy": True,
        "offline_mode": False,
        "hit_fast_path": False,
        "allow_local_references": True,
        "lock_mode": "lease",
        "pickle_credentials": True,
    },
}

FULL_FILE_EXPECTED: dict[str, object] = {
    "cache_enabled": True,
    "cache_ttl": 600.0,
    "checksum_algorithm": "sha256",
    "strict_mode": True,
    "cache_mode": "write-through",
    "fallback_to_stale": False,
    "max_stale_age": 172800.0,
    "cache_on_add": True,
    "max_cache_size": 53687091200,
    "hard_limit": True,
    "eviction_policy": "fifo",
    "eviction_threshold": 0.8,
    "large_file_threshold": 5 * GB,
    "cache_large_files": False,
    "stream_large_files": True,
    "parallel_downloads": 4,
    "chunk_size": 4194304,
    "parallel_threshold": 64 * MiB,
    "retry_attempts": 2,
    "retry_max_time": 30.0,
    "connect_timeout": 3.0,
    "read_timeout": 120.0,
    "log_level": "INFO",
    "log_cache_hits": True,
    "log_cache_misses": False,
    "log_evictions": False,
    "progress": False,
    "shared_cache_dir": None,
    "shared_cache_priority": "first",
    "shared_cache_copy": True,
    "hit_fast_path": False,
    "allow_local_references": True,
    "lock_mode": "lease",
    "pickle_credentials": True,
}


def test_config_file_every_section(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = write_config(cache, FULL_FILE)
    resolved = resolve_settings(environ={"AIOFOLIO_CACHE_DIR": str(cache)})
    assert resolved.config_file == str(path)
    assert resolved.config_file_found is True
    for name, expected in FULL_FILE_EXPECTED.items():
        assert getattr(resolved.settings, name) == expected, name
        assert resolved.sources[name] == f"file:{path}", name
    assert resolved.settings.cache_dir == str(cache)
    assert resolved.sources["cache_dir"] == "env:AIOFOLIO_CACHE_DIR"
    assert set(FULL_FILE_EXPECTED) | {"cache_dir"} == set(SETTING_NAMES)


def test_config_file_keys_table_matches_full_file() -> None:
    used = {"version", "enabled"} | {
        f"{section}.{key}"
        for section, body in FULL_FILE.items()
        if isinstance(body, dict)
        for key in body
    }
    assert used | {"cache_dir"} == {key.path for key in CONFIG_FILE_KEYS}


def test_config_file_seed_example(
    default_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    seed = """
    {
      "version": "1.0",
      "enabled": true,
      "cache_dir": "~/.datafolio_cache",
      "defaults": {"ttl_seconds": 1800, "checksum_algorithm": "md5", "strict_mode": false,
                   "cache_mode": "read-write"},
      "limits": {"max_cache_size_bytes": 53687091200, "eviction_policy": "lru",
                 "eviction_threshold": 0.9},
      "performance": {"parallel_downloads": 4, "chunk_size_bytes": 8388608,
                      "compression": "auto"},
      "logging": {"level": "INFO", "log_cache_hits": false, "log_cache_misses": true,
                  "log_evictions": true},
      "advanced": {"content_addressable_storage": false, "shared_cache_dir": null,
                   "offline_mode": false}
    }
    """
    path = write_config(default_dir, seed)
    resolved = resolve_settings(environ={})
    s = resolved.settings
    # The file is found in the default dir; its cache_dir key redirects the cache dir.
    assert resolved.config_file == str(path)
    assert s.cache_dir == str(tmp_path / "home" / ".datafolio_cache")
    assert resolved.sources["cache_dir"] == f"file:{path}"
    assert s.cache_enabled is True
    assert s.cache_ttl == 1800.0
    assert s.max_cache_size == 53687091200
    assert s.parallel_downloads == 4
    assert s.chunk_size == 8388608
    assert s.log_level == "INFO"
    assert s.shared_cache_dir is None
    assert resolved.sources["shared_cache_dir"] == f"file:{path}"
    assert s.cache_mode == "read-write"
    assert resolved.sources["parallel_threshold"] == "default"


def test_config_file_is_only_looked_up_in_the_first_cache_dir(default_dir: Path) -> None:
    other = default_dir.parent / "other"
    write_config(default_dir, {"cache_dir": str(other), "defaults": {"ttl_seconds": 5}})
    write_config(other, {"defaults": {"ttl_seconds": 99, "strict_mode": True}})
    resolved = resolve_settings(environ={})
    assert resolved.settings.cache_dir == str(other)
    assert resolved.settings.cache_ttl == 5.0
    assert resolved.settings.strict_mode is False
    assert resolved.config_file == str(default_dir / "config.json")


def test_config_file_relative_paths_are_relative_to_the_file(
    tmp_path: Path, default_dir: Path
) -> None:
    write_config(default_dir, {"cache_dir": "../sub"})
    resolved = resolve_settings(environ={})
    assert resolved.settings.cache_dir == os.path.normpath(str(default_dir.parent / "sub"))
    cache = tmp_path / "cache"
    write_config(cache, {"cache_dir": "sub"})
    resolved = resolve_settings(environ={"AIOFOLIO_CACHE_DIR": str(cache)})
    assert resolved.settings.cache_dir == str(cache)  # env beats the file's cache_dir


def test_config_file_offline_mode_wins_over_cache_mode(default_dir: Path) -> None:
    path = write_config(
        default_dir,
        {"defaults": {"cache_mode": "read-only"}, "advanced": {"offline_mode": True}},
    )
    resolved = resolve_settings(environ={})
    assert resolved.settings.cache_mode == "offline"
    assert resolved.sources["cache_mode"] == f"file:{path}"


def test_config_file_string_forms_and_null(default_dir: Path) -> None:
    write_config(
        default_dir,
        {
            "version": 1,
            "defaults": {"ttl_seconds": None, "max_stale_age": "12h"},
            "limits": {"max_cache_size_bytes": "unlimited", "hard_limit": "yes"},
        },
    )
    s = resolve_settings(environ={}).settings
    assert s.cache_ttl is None
    assert s.max_stale_age == 43200.0
    assert s.max_cache_size is None
    assert s.hard_limit is True


def test_config_file_missing_is_fine(default_dir: Path) -> None:
    resolved = resolve_settings(environ={})
    assert resolved.config_file_found is False
    assert not (default_dir / "config.json").exists()
    assert resolved.settings.cache_ttl == 1800.0


def test_config_file_reloads_when_changed(default_dir: Path) -> None:
    path = write_config(default_dir, {"defaults": {"ttl_seconds": 10}})
    assert resolve_settings(environ={}).settings.cache_ttl == 10.0
    path.write_text(json.dumps({"defaults": {"ttl_seconds": 12345}}))
    assert resolve_settings(environ={}).settings.cache_ttl == 12345.0
    path.unlink()
    resolved = resolve_settings(environ={})
    assert resolved.settings.cache_ttl == 1800.0
    assert resolved.config_file_found is False


@pytest.mark.parametrize(
    ("data", "key", "suggestion"),
    [
        ({"verison": "1.0"}, "verison", "'version'"),
        ({"limits": {"max_cache_size": 5}}, "limits.max_cache_size", "limits.max_cache_size_bytes"),
        ({"defaults": {"ttl": 5}}, "defaults.ttl", "defaults.ttl_seconds"),
        ({"extras": {"a": 1}}, "extras", "known: "),
    ],
)
def test_config_file_unknown_key(
    default_dir: Path, data: dict[str, Any], key: str, suggestion: str
) -> None:
    path = write_config(default_dir, data)
    with pytest.raises(ConfigError) as info:
        resolve_settings(environ={})
    message = str(info.value)
    assert str(path) in message
    assert f"unknown key {key!r}" in message
    assert suggestion in message


def test_config_file_invalid_json(default_dir: Path) -> None:
    path = write_config(default_dir, '{"defaults": {"ttl_seconds": 5,}}')
    with pytest.raises(ConfigError) as info:
        resolve_settings(environ={})
    message = str(info.value)
    assert message.startswith(f"config file {path}: invalid JSON")
    assert "line 1" in message


def test_config_file_not_utf8(default_dir: Path) -> None:
    default_dir.mkdir(parents=True)
    (default_dir / "config.json").write_bytes(b'{"enabled": "\xff"}')
    with pytest.raises(ConfigError, match="invalid JSON"):
        resolve_settings(environ={})


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], "the top level must be a JSON object"),
        ({"limits": 5}, "key limits: invalid value 5; accepted: a JSON object"),
        ({"version": "2.0"}, "key version: invalid value '2.0'"),
        (
            {"limits": {"eviction_threshold": 2}},
            "key limits.eviction_threshold: invalid value 2; accepted: a number above 0",
        ),
        (
            {"performance": {"parallel_downloads": "many"}},
            "key performance.parallel_downloads: invalid value 'many'; accepted: an integer",
        ),
        (
            {"advanced": {"offline_mode": "sure"}},
            "key advanced.offline_mode: invalid value 'sure'",
        ),
    ],
)
def test_config_file_bad_values(default_dir: Path, data: Any, expected: str) -> None:
    path = write_config(default_dir, data)
    with pytest.raises(ConfigError) as info:
        resolve_settings(environ={})
    message = str(info.value)
    assert str(path) in message
    assert expected in message


def test_config_file_that_is_a_directory(default_dir: Path) -> None:
    (default_dir / "config.json").mkdir(parents=True)
    with pytest.raises(ConfigError) as info:
        resolve_settings(environ={})
    assert f"config file {default_dir / 'config.json'}: cannot read it" in str(info.value)


# --------------------------------------------------------------------------------------------
# Precedence and provenance


def test_full_precedence_chain(default_dir: Path) -> None:
    path = write_config(default_dir, {"defaults": {"ttl_seconds": 100}})
    environ: dict[str, str] = {}
    constructor: dict[str, Any] = {}
    call: dict[str, Any] = {}

    def ttl() -> tuple[float | None, str]:
        r = resolve_settings(call=call, constructor=constructor, environ=environ)
        return r.settings.cache_ttl, r.sources["cache_ttl"]

    path.unlink()
    assert ttl() == (1800.0, "default")
    write_config(default_dir, {"defaults": {"ttl_seconds": 100}})
    assert ttl() == (100.0, f"file:{path}")
    environ["AIOFOLIO_CACHE_TTL"] = "200"
    assert ttl() == (200.0, "env:AIOFOLIO_CACHE_TTL")
    configure(cache_ttl="5m")
    assert ttl() == (300.0, "configure_cache")
    constructor["cache_ttl"] = 400
    assert ttl() == (400.0, "constructor")
    call["cache_ttl"] = "500s"
    assert ttl() == (500.0, "call")
    # Peel the layers off again, from the top.
    del call["cache_ttl"]
    assert ttl() == (400.0, "constructor")
    constructor["cache_ttl"] = UNSET
    assert ttl() == (300.0, "configure_cache")
    reset_configure()
    assert ttl() == (200.0, "env:AIOFOLIO_CACHE_TTL")


def test_mixed_sources_in_one_resolution(default_dir: Path) -> None:
    path = write_config(default_dir, {"limits": {"eviction_policy": "lfu"}})
    configure(strict_mode=True)
    resolved = resolve_settings(
        call={"parallel_downloads": 2},
        constructor={"chunk_size": "1MiB"},
        environ={"AIOFOLIO_HARD_LIMIT": "1"},
    )
    s = resolved.settings
    assert (s.parallel_downloads, s.chunk_size, s.strict_mode) == (2, MiB, True)
    assert (s.hard_limit, s.eviction_policy) == (True, "lfu")
    expected = dict.fromkeys(SETTING_NAMES, "default")
    expected.update(
        parallel_downloads="call",
        chunk_size="constructor",
        strict_mode="configure_cache",
        hard_limit="env:AIOFOLIO_HARD_LIMIT",
        eviction_policy=f"file:{path}",
    )
    assert resolved.sources == expected


def test_explicit_none_overrides_lower_layers(default_dir: Path) -> None:
    write_config(default_dir, {"limits": {"max_cache_size_bytes": 1000}})
    resolved = resolve_settings(
        call={"max_cache_size": None},
        constructor={"cache_ttl": None, "cache_enabled": None},
        environ={"AIOFOLIO_CACHE_TTL": "30m", "AIOFOLIO_CACHE_ENABLED": "true"},
    )
    assert resolved.settings.cache_ttl is None
    assert resolved.sources["cache_ttl"] == "constructor"
    assert resolved.settings.cache_enabled is None
    assert resolved.sources["cache_enabled"] == "constructor"
    assert resolved.settings.max_cache_size is None
    assert resolved.sources["max_cache_size"] == "call"


def test_unset_means_not_given() -> None:
    resolved = resolve_settings(
        constructor={"cache_ttl": UNSET, "max_cache_size": UNSET},
        environ={"AIOFOLIO_CACHE_TTL": "1h"},
    )
    assert resolved.settings.cache_ttl == 3600.0
    assert resolved.sources["cache_ttl"] == "env:AIOFOLIO_CACHE_TTL"
    assert resolved.settings.max_cache_size == 100 * GB
    assert resolved.sources["max_cache_size"] == "default"
    assert repr(UNSET) == "UNSET"
    assert not UNSET


def test_none_for_a_non_nullable_setting_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(constructor={"parallel_downloads": None}, environ={})
    message = str(info.value)
    assert message.startswith("constructor argument parallel_downloads: invalid value None")
    assert "integer >= 1" in message


def test_string_forms_in_layers(tmp_path: Path) -> None:
    resolved = resolve_settings(
        call={"cache_ttl": "1.5h", "strict_mode": "yes"},
        constructor={"max_cache_size": "50GB", "cache_dir": tmp_path / "c", "progress": "auto"},
        environ={},
    )
    s = resolved.settings
    assert s.cache_ttl == 5400.0
    assert s.strict_mode is True
    assert s.max_cache_size == 50 * GB
    assert s.cache_dir == str(tmp_path / "c")
    assert s.progress is None


def test_call_cache_dir_moves_the_config_file(tmp_path: Path, default_dir: Path) -> None:
    write_config(default_dir, {"defaults": {"ttl_seconds": 1}})
    here = tmp_path / "here"
    path = write_config(here, {"defaults": {"ttl_seconds": 2}})
    resolved = resolve_settings(call={"cache_dir": str(here)}, environ={})
    assert resolved.settings.cache_ttl == 2.0
    assert resolved.sources["cache_ttl"] == f"file:{path}"
    assert resolved.sources["cache_dir"] == "call"
    assert resolved.config_file == str(path)


def test_cache_dir_is_absolute_and_user_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    resolved = resolve_settings(constructor={"cache_dir": "~/c"}, environ={})
    assert resolved.settings.cache_dir == str(tmp_path / "c")
    resolved = resolve_settings(constructor={"cache_dir": "rel"}, environ={})
    assert resolved.settings.cache_dir == str(tmp_path / "rel")


@pytest.mark.parametrize(
    ("layer", "name", "suggestion"),
    [
        ("constructor", "cache_tll", "did you mean 'cache_ttl'?"),
        ("call", "max_cache_sise", "did you mean 'max_cache_size'?"),
        ("constructor", "zzz", "known: cache_enabled, cache_dir"),
        ("call", "timeout", "did you mean 'read_timeout' or 'connect_timeout'?"),
    ],
)
def test_unknown_setting_name(layer: str, name: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(**{layer: {name: 1}}, environ={})
    message = str(info.value)
    assert message.startswith(f"{layer} argument: unknown setting {name!r}; ")
    assert suggestion in message


def test_bad_values_in_layers_name_the_layer() -> None:
    with pytest.raises(ConfigError, match=r"^call argument cache_ttl: invalid value 'soon'"):
        resolve_settings(call={"cache_ttl": "soon"}, environ={})
    with pytest.raises(ConfigError, match=r"^constructor argument eviction_threshold: invalid"):
        resolve_settings(constructor={"eviction_threshold": 0}, environ={})
    with pytest.raises(ConfigError, match=r"^call argument cache_dir: invalid value ''"):
        resolve_settings(call={"cache_dir": ""}, environ={})


def test_a_bad_value_in_a_lower_layer_is_still_reported(default_dir: Path) -> None:
    path = write_config(default_dir, {"defaults": {"ttl_seconds": "soon"}})
    with pytest.raises(ConfigError) as info:
        resolve_settings(constructor={"cache_ttl": 5}, environ={})
    assert str(info.value).startswith(f"file {path} key defaults.ttl_seconds: invalid value")


# --------------------------------------------------------------------------------------------
# configure()


def test_configure_merges_and_unset_removes() -> None:
    configure(cache_ttl="10m", max_cache_size="1GB")
    configure(strict_mode=True)
    assert configured_settings() == {"cache_ttl": 600.0, "max_cache_size": GB, "strict_mode": True}
    configure(cache_ttl=UNSET, max_cache_size=None)
    assert configured_settings() == {"max_cache_size": None, "strict_mode": True}
    resolved = resolve_settings(environ={"AIOFOLIO_MAX_CACHE_SIZE": "5GB"})
    assert resolved.settings.max_cache_size is None
    assert resolved.sources["max_cache_size"] == "configure_cache"
    assert resolved.sources["cache_ttl"] == "default"
    reset_configure()
    assert configured_settings() == {}
    assert resolve_settings(environ={}).sources["strict_mode"] == "default"


def test_configure_validates_before_applying() -> None:
    configure(cache_ttl=60)
    with pytest.raises(ConfigError, match=r"^configure_cache argument parallel_downloads"):
        configure(cache_ttl=120, parallel_downloads=0)
    assert configured_settings() == {"cache_ttl": 60.0}


def test_configure_unknown_name_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        configure(max_cache_sise="5GB")
    assert str(info.value) == (
        "configure_cache argument: unknown setting 'max_cache_sise'; did you mean 'max_cache_size'?"
    )
    assert configured_settings() == {}


# --------------------------------------------------------------------------------------------
# rows()


def test_rows_render_values_and_sources(tmp_path: Path) -> None:
    resolved = resolve_settings(
        constructor={"cache_ttl": None, "max_cache_size": "50GB"},
        environ={"AIOFOLIO_CACHE_DIR": str(tmp_path)},
    )
    rows = resolved.rows()
    assert [name for name, _, _ in rows] == list(SETTING_NAMES)
    by_name = {name: (value, source) for name, value, source in rows}
    assert by_name["cache_ttl"] == ("never", "constructor")
    assert by_name["max_cache_size"] == ("50GB", "constructor")
    assert by_name["cache_dir"] == (str(tmp_path), "env:AIOFOLIO_CACHE_DIR")
    assert by_name["chunk_size"] == ("8MiB", "default")
    assert by_name["max_stale_age"] == ("1d", "default")
    assert by_name["cache_enabled"] == ("auto", "default")
    assert by_name["fallback_to_stale"] == ("true", "default")


def test_rows_parse_back_to_the_same_settings(default_dir: Path) -> None:
    write_config(default_dir, FULL_FILE)
    original = resolve_settings(environ={})
    again = resolve_settings(
        constructor={name: value for name, value, _ in original.rows()}, environ={}
    )
    assert again.settings == original.settings
    assert set(again.sources.values()) == {"constructor"}


def test_rows_of_defaults_parse_back(default_dir: Path) -> None:
    original = resolve_settings(environ={})
    again = resolve_settings(call={name: value for name, value, _ in original.rows()}, environ={})
    assert again.settings == original.settings
    assert again.settings.shared_cache_dir is None
    assert set(again.sources.values()) == {"call"}


# --------------------------------------------------------------------------------------------
# One row per setting


def test_every_field_has_exactly_one_row_with_env_file_and_help() -> None:
    hints = typing.get_type_hints(Settings, include_extras=True)
    assert list(hints) == list(SETTING_NAMES)
    for name, hint in hints.items():
        rows = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, SettingRow)]
        assert len(rows) == 1, name
        row = rows[0]
        assert SETTING_ROWS[name] is row
        assert row.help.strip().endswith("."), name
        assert row.env, name
        assert row.file, name
        names = [e.name if isinstance(e, Alias) else e for e in row.env]
        assert f"AIOFOLIO_{name.upper()}" in names, name
    env_names = [var.name for var in ENV_VARS]
    assert len(env_names) == len(set(env_names))
    key_paths = [key.path for key in CONFIG_FILE_KEYS]
    assert len(key_paths) == len(set(key_paths))
    assert {key.setting for key in CONFIG_FILE_KEYS} - {None} == set(SETTING_NAMES)
    assert key_paths[0] == "version"


def test_tables_are_derived_from_the_rows() -> None:
    for var in ENV_VARS:
        row = SETTING_ROWS[var.setting]
        entry = next(e for e in row.env if (e.name if isinstance(e, Alias) else e) == var.name)
        if isinstance(entry, Alias):
            assert (var.parse, var.help) == (entry.parse, entry.help)
        else:
            assert (var.parse, var.help) == (row.spec.coerce, row.spec.accepted)
    # Order within a setting is the row's order: that is the env precedence.
    for name, row in SETTING_ROWS.items():
        in_table = [var.name for var in ENV_VARS if var.setting == name]
        assert in_table == [e.name if isinstance(e, Alias) else e for e in row.env]


def test_msgspec_ignores_the_row_metadata() -> None:
    info = msgspec.inspect.type_info(Settings)
    assert isinstance(info, msgspec.inspect.StructType)
    by_name = {f.name: f for f in info.fields}
    assert by_name["cache_ttl"].type == msgspec.inspect.UnionType(
        (msgspec.inspect.FloatType(), msgspec.inspect.NoneType())
    )
    assert by_name["parallel_downloads"].type == msgspec.inspect.IntType()
    assert by_name["hit_fast_path"].default is True
    s = Settings(cache_dir="/c", cache_ttl=None, eviction_policy="lfu", hit_fast_path=False)
    assert msgspec.json.decode(msgspec.json.encode(s), type=Settings) == s
    with pytest.raises(msgspec.ValidationError, match="Expected `bool`"):
        msgspec.json.decode(b'{"cache_dir": "/c", "hit_fast_path": "no"}', type=Settings)


def test_module_doc_and_settings_doc_list_every_setting() -> None:
    doc = config.__doc__ or ""
    reference = doc[doc.index("Every setting, generated from the rows") :]
    settings_doc = Settings.__doc__ or ""
    for name, row in SETTING_ROWS.items():
        entry = reference[reference.index(f"\n    {name} = ") + 1 :]
        flat = " ".join(re.split(r"\n    (?=\S)", entry)[0].split())
        for e in (*row.env, *row.file):
            assert (e.name if isinstance(e, Alias) else e) in flat, (name, e)
        assert " ".join(row.help.split()) in flat, name
        assert f"\n        {name}: " in settings_doc, name
    assert "    cache_ttl = 30m\n" in reference
    assert "    max_cache_size = 100GB\n" in reference
    assert "    cache_dir = the platform user cache dir" in reference
    assert "    shared_cache_dir = none\n" in reference


def test_readme_settings_table_names_real_settings_and_env_vars() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Settings") :]
    table = [line for line in section.split("\n## ")[0].splitlines() if line.startswith("| `")]
    assert len(table) >= 5
    env_of = {var.name: var.setting for var in ENV_VARS}
    for line in table:
        cells = line.split("|")
        names = re.findall(r"`([a-z_]+)`", cells[1])
        assert names, line
        assert set(names) <= set(SETTING_NAMES), line
        for var in re.findall(r"`(AIOFOLIO_[A-Z_]+|DATAFOLIO_[A-Z_]+)", cells[3]):
            assert env_of.get(var) in names, (line, var)


# --------------------------------------------------------------------------------------------
# log_level


@pytest.fixture
def aiofolio_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("aiofolio")
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_log_level_sets_the_aiofolio_logger_in_a_new_folio(
    tmp_path: Path, aiofolio_logger: logging.Logger
) -> None:
    from aiofolio import DataFolio

    aiofolio_logger.setLevel(logging.ERROR)
    folio = DataFolio(tmp_path / "a", cache_enabled=False, log_level="debug")
    assert folio.settings.log_level == "DEBUG"
    assert aiofolio_logger.level == logging.DEBUG
    assert logging.getLogger("aiofolio.cache").isEnabledFor(logging.DEBUG)


def test_default_log_level_leaves_the_applications_level_alone(
    tmp_path: Path, aiofolio_logger: logging.Logger
) -> None:
    from aiofolio import DataFolio

    aiofolio_logger.setLevel(logging.ERROR)
    folio = DataFolio(tmp_path / "a", cache_enabled=False)
    assert folio.settings.log_level == "WARNING"
    assert aiofolio_logger.level == logging.ERROR


def test_log_level_from_env_and_file(
    tmp_path: Path,
    default_dir: Path,
    aiofolio_logger: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from aiofolio import DataFolio

    write_config(default_dir, {"logging": {"level": "INFO"}})
    aiofolio_logger.setLevel(logging.ERROR)
    DataFolio(tmp_path / "a", cache_enabled=False)
    assert aiofolio_logger.level == logging.INFO
    monkeypatch.setenv("AIOFOLIO_LOG_LEVEL", "warn")  # an explicit WARNING is applied too
    DataFolio(tmp_path / "b", cache_enabled=False)
    assert aiofolio_logger.level == logging.WARNING


def test_apply_logging_uses_the_source_not_the_value(aiofolio_logger: logging.Logger) -> None:
    aiofolio_logger.setLevel(logging.CRITICAL)
    config.apply_logging(resolve_settings(environ={}))
    assert aiofolio_logger.level == logging.CRITICAL
    config.apply_logging(resolve_settings(call={"log_level": "WARNING"}, environ={}))
    assert aiofolio_logger.level == logging.WARNING


# --------------------------------------------------------------------------------------------
# the shared read-only tier: shared_cache_dir, shared_cache_priority, shared_cache_copy


def test_shared_tier_settings_from_every_layer(default_dir: Path, tmp_path: Path) -> None:
    path = write_config(
        default_dir,
        {
            "advanced": {
                "shared_cache_dir": "/lab/cache",
                "shared_cache_priority": "first",
                "shared_cache_copy": True,
            }
        },
    )
    resolved = resolve_settings(environ={})
    s = resolved.settings
    assert (s.shared_cache_dir, s.shared_cache_priority, s.shared_cache_copy) == (
        "/lab/cache",
        "first",
        True,
    )
    assert resolved.sources["shared_cache_dir"] == f"file:{path}"
    environ = {
        "AIOFOLIO_SHARED_CACHE_DIR": str(tmp_path / "env"),
        "AIOFOLIO_SHARED_CACHE_PRIORITY": "Fallback",
        "AIOFOLIO_SHARED_CACHE_COPY": "no",
    }
    s = resolve_settings(environ=environ).settings
    assert (s.shared_cache_dir, s.shared_cache_priority, s.shared_cache_copy) == (
        str(tmp_path / "env"),
        "fallback",
        False,
    )
    configure(shared_cache_dir="~/lab")
    resolved = resolve_settings(constructor={"shared_cache_priority": "first"}, environ=environ)
    assert resolved.settings.shared_cache_dir == os.path.expanduser("~/lab")
    assert resolved.sources["shared_cache_dir"] == "configure_cache"
    assert resolved.settings.shared_cache_priority == "first"


def test_shared_tier_defaults() -> None:
    s = resolve_settings(environ={}).settings
    assert s.shared_cache_dir is None
    assert s.shared_cache_priority == "fallback"
    assert s.shared_cache_copy is False


@pytest.mark.parametrize(
    ("name", "value"),
    [("shared_cache_priority", "primary"), ("shared_cache_dir", ""), ("shared_cache_copy", "x")],
)
def test_shared_tier_bad_values_name_their_source(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_settings(call={name: value}, environ={})
    assert str(info.value).startswith(f"call argument {name}: invalid value"), str(info.value)


def test_seed_configure_cache_takes_the_shared_tier(tmp_path: Path) -> None:
    from aiofolio import DataFolio

    DataFolio.configure_cache(shared_cache_dir=str(tmp_path / "lab"), shared_cache_priority="first")
    s = resolve_settings(environ={}).settings
    assert s.shared_cache_dir == str(tmp_path / "lab")
    assert s.shared_cache_priority == "first"


@pytest.mark.parametrize("value", [None, "none", " None "])
def test_shared_cache_dir_none_is_fine_everywhere(default_dir: Path, value: str | None) -> None:
    write_config(default_dir, {"advanced": {"shared_cache_dir": value}})
    configure(shared_cache_dir=value)
    environ = {"AIOFOLIO_SHARED_CACHE_DIR": value or "none"}
    resolved = resolve_settings(call={"shared_cache_dir": value}, environ=environ)
    assert resolved.settings.shared_cache_dir is None
    assert resolved.sources["shared_cache_dir"] == "call"


# --------------------------------------------------------------------------------------------
# hit_fast_path (observed on a folio in tests/facade/test_fast_path.py)


def test_hit_fast_path_from_each_layer(default_dir: Path) -> None:
    path = write_config(default_dir, {"advanced": {"hit_fast_path": False}})
    resolved = resolve_settings(environ={})
    assert (resolved.settings.hit_fast_path, resolved.sources["hit_fast_path"]) == (
        False,
        f"file:{path}",
    )
    resolved = resolve_settings(environ={"AIOFOLIO_HIT_FAST_PATH": "1"})
    assert resolved.settings.hit_fast_path is True
    resolved = resolve_settings(constructor={"hit_fast_path": "off"}, environ={})
    assert resolved.settings.hit_fast_path is False
    with pytest.raises(ConfigError, match=r"^env AIOFOLIO_HIT_FAST_PATH: invalid value 'fast'"):
        resolve_settings(environ={"AIOFOLIO_HIT_FAST_PATH": "fast"})
