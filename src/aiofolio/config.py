"""Settings for aiofolio: the ``Settings`` struct, precedence, env vars, config file, provenance.

This module owns every user-facing knob and where its value came from. It does no I/O beyond
reading ``<cache_dir>/config.json``, and it reads environment variables only when settings are
resolved (:func:`resolve_settings`), never at import.

Precedence, highest first::

    call argument > constructor > configure_cache(...) > env var > config file > default

Layer values may be given in their parsed form (``1800``, ``50 * 1000**3``) or as strings
(``"30m"``, ``"50GB"``, ``"unlimited"``, ``"true"``). In the call, constructor and
``configure_cache`` layers a missing key or the :data:`UNSET` sentinel means "not given"; an
explicit ``None`` is a value (``cache_ttl=None`` means never revalidate,
``max_cache_size=None`` means unlimited, ``cache_enabled=None`` means decide per URL), and it is
an error for settings that cannot be ``None``.

Environment variables are listed in :data:`ENV_VARS`: ``AIOFOLIO_<SETTING>`` for every setting,
plus the aliases ``DATAFOLIO_CACHE_DIR``, ``DATAFOLIO_CACHE_ENABLED``, ``DATAFOLIO_CACHE_TTL``,
``AIOFOLIO_CACHE_SIZE_LIMIT_MB``, ``AIOFOLIO_CACHE_HARD_LIMIT`` and ``AIOFOLIO_OFFLINE``. Within
the env layer the first variable of a setting that is set (non-empty) wins, in table order: the
``AIOFOLIO_<SETTING>`` name beats its aliases, except that ``AIOFOLIO_OFFLINE=1`` beats
``AIOFOLIO_CACHE_MODE`` (a switch meant to stop all network use must not be overridden by a
profile default). Empty env vars count as unset.

The config file is looked up once, at ``<cache_dir>/config.json`` where ``cache_dir`` comes from
the call, constructor, ``configure_cache``, env or default layers. Its own ``cache_dir`` key then
applies like any other file value (it wins only over the default). Its format is the seed's (see
:data:`CONFIG_FILE_KEYS`); unknown keys are errors. Parsed files are cached by
``(mtime_ns, size, inode)`` so resolving on every call costs one ``stat``.

Every error is a :class:`~aiofolio.errors.ConfigError` whose message names the source
(``env AIOFOLIO_CACHE_TTL``, ``file /x/config.json key limits.max_cache_size_bytes``,
``constructor argument cache_ttl``), the bad value and the accepted forms.
"""

from __future__ import annotations

import enum
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal, NamedTuple

import msgspec

from aiofolio.errors import ConfigError

__all__ = [
    "CONFIG_FILE_KEYS",
    "CONFIG_FILE_NAME",
    "ENV_VARS",
    "SETTING_NAMES",
    "UNSET",
    "CacheMode",
    "ChecksumAlgorithm",
    "ConfigFileKey",
    "EnvVar",
    "EvictionPolicy",
    "ResolvedSettings",
    "Settings",
    "UnsetType",
    "configure",
    "configured_settings",
    "default_cache_dir",
    "format_duration",
    "format_setting",
    "format_size",
    "human_size",
    "parse_bool",
    "parse_duration",
    "parse_size",
    "reset_configure",
    "resolve_settings",
]

CacheMode = Literal["read-write", "read-only", "write-through", "offline", "disabled"]
EvictionPolicy = Literal["lru", "lfu", "fifo"]
ChecksumAlgorithm = Literal["md5", "xxh3_128", "sha256"]

CONFIG_FILE_NAME: Final = "config.json"

_KiB: Final = 1024
_MiB: Final = 1024**2
_GB: Final = 1000**3


class UnsetType(enum.Enum):
    """The type of :data:`UNSET`; a one-member enum so ``x is UNSET`` narrows for mypy."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False


UNSET: Final = UnsetType.UNSET
"""Marks a layer value as "not given" (``None`` is a real value for some settings)."""


def default_cache_dir() -> str:
    """Return the platform user cache dir for aiofolio (no env vars consulted).

    Returns:
        An absolute path such as ``~/.cache/aiofolio`` on Linux.
    """
    import platformdirs

    return os.path.abspath(platformdirs.user_cache_dir("aiofolio", appauthor=False))


# --------------------------------------------------------------------------------------------
# Parsers


class _Invalid(Exception):
    """Internal: a value is not in any accepted form (turned into a ConfigError by callers)."""


def _fail(source: str, value: object, accepted: str) -> ConfigError:
    return ConfigError(f"{source}: invalid value {value!r}; accepted: {accepted}")


_NUMBER_UNIT: Final = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)\s*")

_SIZE_UNITS: Final[dict[str, int]] = {
    "": 1,
    "b": 1,
    **{f"{prefix}b": 1000 ** (i + 1) for i, prefix in enumerate("kmgtp")},
    **{f"{prefix}ib": 1024 ** (i + 1) for i, prefix in enumerate("kmgtp")},
}
_SIZE_FORMS: Final = (
    "a number of bytes (e.g. 1048576 or '1048576'), or a number with a unit: "
    "B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), "
    "case-insensitive, e.g. '500MB', '1.5 GiB'"
)
_UNLIMITED_FORMS: Final = "'unlimited' or 'none' (no limit)"

_DURATION_UNITS: Final[dict[str, int]] = {"": 1} | {
    alias: factor
    for factor, aliases in (
        (1, "s sec secs second seconds"),
        (60, "m min mins minute minutes"),
        (3600, "h hr hrs hour hours"),
        (86400, "d day days"),
        (604800, "w week weeks"),
    )
    for alias in aliases.split()
}
_DURATION_FORMS: Final = (
    "seconds as a number (e.g. 1800 or '1800'), or a number with a unit s, m (minutes), h, d, w, "
    "e.g. '30s', '30m', '1.5h', '7d', '1w'"
)
_NEVER_FORMS: Final = "'never' or 'none' (no limit)"

_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})
_BOOL_FORMS: Final = "true/false, 1/0, yes/no, on/off (any case)"


def _size(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Invalid
    if isinstance(value, int):
        if value < 0:
            raise _Invalid
        return value
    if isinstance(value, float):
        if math.isinf(value) and value > 0:
            return None
        if not math.isfinite(value) or value < 0:
            raise _Invalid
        return round(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("unlimited", "none"):
            return None
        match = _NUMBER_UNIT.fullmatch(text)
        if match is None or match[2] not in _SIZE_UNITS:
            raise _Invalid
        from decimal import ROUND_HALF_EVEN, Decimal

        exact = Decimal(match[1]) * _SIZE_UNITS[match[2]]
        return int(exact.to_integral_value(rounding=ROUND_HALF_EVEN))
    raise _Invalid


def _duration(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _Invalid
    if isinstance(value, int | float):
        seconds = float(value)
        if math.isinf(seconds) and seconds > 0:
            return None
        if not math.isfinite(seconds) or seconds < 0:
            raise _Invalid
        return seconds
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("never", "none"):
            return None
        match = _NUMBER_UNIT.fullmatch(text)
        if match is None or match[2] not in _DURATION_UNITS:
            raise _Invalid
        return float(match[1]) * _DURATION_UNITS[match[2]]
    raise _Invalid


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _Invalid


def parse_size(value: object, *, source: str = "value") -> int | None:
    """Parse a size in bytes.

    Args:
        value: An int or float of bytes, ``None``, or a string: ``"1048576"``, ``"500MB"``,
            ``"500 mb"``, ``"1.5 GiB"``, ``"unlimited"``/``"none"``. KB, MB, GB, TB are powers of
            1000; KiB, MiB, GiB, TiB powers of 1024; units are case-insensitive.
        source: Where the value came from, for the error message.

    Returns:
        The size in bytes (fractions rounded), or ``None`` for unlimited.

    Raises:
        ConfigError: The value is not a size; the message names ``source``, the value and the
            accepted forms.
    """
    try:
        return _size(value)
    except _Invalid:
        raise _fail(source, value, f"{_SIZE_FORMS}; or {_UNLIMITED_FORMS}") from None


def parse_duration(value: object, *, source: str = "value") -> float | None:
    """Parse a duration in seconds.

    Args:
        value: An int or float of seconds, ``None``, or a string: ``"1800"``, ``"30s"``,
            ``"30m"`` (minutes), ``"2h"``, ``"1.5h"``, ``"7d"``, ``"1w"``, ``"never"``/``"none"``.
        source: Where the value came from, for the error message.

    Returns:
        Seconds as a float, or ``None`` for never (no limit).

    Raises:
        ConfigError: The value is not a duration; the message names ``source``, the value and
            the accepted forms.
    """
    try:
        return _duration(value)
    except _Invalid:
        raise _fail(source, value, f"{_DURATION_FORMS}; or {_NEVER_FORMS}") from None


def parse_bool(value: object, *, source: str = "value") -> bool:
    """Parse a boolean.

    Args:
        value: A bool, 0/1, or one of ``1 true yes on`` / ``0 false no off`` in any case.
        source: Where the value came from, for the error message.

    Returns:
        The boolean.

    Raises:
        ConfigError: The value is not a boolean; the message names ``source``, the value and
            the accepted forms.
    """
    try:
        return _bool(value)
    except _Invalid:
        raise _fail(source, value, _BOOL_FORMS) from None


_SIZE_FORMAT_UNITS: Final = (
    ("TiB", 1024**4),
    ("TB", 1000**4),
    ("GiB", 1024**3),
    ("GB", 1000**3),
    ("MiB", 1024**2),
    ("MB", 1000**2),
    ("KiB", 1024),
    ("KB", 1000),
)
_DURATION_FORMAT_UNITS: Final = (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60))


def format_size(size: int) -> str:
    """Format bytes in the largest unit that divides them exactly (parses back unchanged).

    Args:
        size: A size in bytes.

    Returns:
        E.g. ``"100GB"``, ``"8MiB"``, ``"1234B"``.
    """
    for unit, factor in _SIZE_FORMAT_UNITS:
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


def human_size(size: float) -> str:
    """Bytes in a short readable form, decimal units as ``GB`` parses: ``"2.1 GB"``, ``"512 B"``.

    For messages and logs; :func:`format_size` is the exact form that parses back.
    """
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def format_duration(seconds: float) -> str:
    """Format seconds in the largest unit that divides them exactly (parses back unchanged).

    Args:
        seconds: A duration in seconds.

    Returns:
        E.g. ``"30m"``, ``"1d"``, ``"90s"``, ``"1.5s"``.
    """
    if seconds.is_integer():
        whole = int(seconds)
        for unit, factor in _DURATION_FORMAT_UNITS:
            if whole and whole % factor == 0:
                return f"{whole // factor}{unit}"
        return f"{whole}s"
    return f"{seconds:f}".rstrip("0") + "s"


# --------------------------------------------------------------------------------------------
# Per-setting coercion: one spec per Settings field.

_Coerce = Callable[[object, str], object]


class _Spec(NamedTuple):
    kind: str  # bool, auto_bool, size, duration, int, float, choice, path, level
    coerce: _Coerce  # (value, source) -> parsed value; raises ConfigError
    types: tuple[type, ...]  # runtime types a Settings field may hold (besides None)
    nullable: bool
    accepted: str  # accepted forms, for docs


def _bool_spec(*, auto: bool = False) -> _Spec:
    accepted = _BOOL_FORMS + ("; or 'auto'/'none' (decide automatically)" if auto else "")

    def coerce(value: object, source: str) -> bool | None:
        if auto and (value is None or (isinstance(value, str) and _word(value) in _AUTO)):
            return None
        try:
            return _bool(value)
        except _Invalid:
            raise _fail(source, value, accepted) from None

    return _Spec("auto_bool" if auto else "bool", coerce, (bool,), auto, accepted)


_AUTO: Final = frozenset({"auto", "none"})


def _word(value: str) -> str:
    return value.strip().lower()


def _size_spec(*, nullable: bool = False, minimum: int = 1) -> _Spec:
    accepted = f"{_SIZE_FORMS}, at least {minimum} bytes"
    if nullable:
        accepted += f"; or {_UNLIMITED_FORMS}"

    def coerce(value: object, source: str) -> int | None:
        try:
            size = _size(value)
        except _Invalid:
            raise _fail(source, value, accepted) from None
        if size is None and nullable:
            return None
        if size is None or size < minimum:
            raise _fail(source, value, accepted)
        return size

    return _Spec("size", coerce, (int,), nullable, accepted)


def _duration_spec(*, nullable: bool = False, positive: bool = False) -> _Spec:
    accepted = f"{_DURATION_FORMS}, {'above 0' if positive else 'at least 0'}"
    if nullable:
        accepted += f"; or {_NEVER_FORMS}"

    def coerce(value: object, source: str) -> float | None:
        try:
            seconds = _duration(value)
        except _Invalid:
            raise _fail(source, value, accepted) from None
        if seconds is None and nullable:
            return None
        if seconds is None or (positive and seconds <= 0):
            raise _fail(source, value, accepted)
        return seconds

    return _Spec("duration", coerce, (int, float), nullable, accepted)


def _int_spec(*, minimum: int) -> _Spec:
    accepted = f"an integer >= {minimum}"

    def coerce(value: object, source: str) -> int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
            number = int(value)
        if number is None or number < minimum:
            raise _fail(source, value, accepted)
        return number

    return _Spec("int", coerce, (int,), False, accepted)


def _fraction_spec() -> _Spec:
    accepted = "a number above 0 and at most 1, e.g. 0.9"

    def coerce(value: object, source: str) -> float:
        number: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                number = None
        if number is None or not 0 < number <= 1:  # NaN fails the comparison too
            raise _fail(source, value, accepted)
        return number

    return _Spec("float", coerce, (int, float), False, accepted)


def _choice_spec(choices: tuple[str, ...]) -> _Spec:
    accepted = "one of " + ", ".join(repr(c) for c in choices) + " (any case)"

    def coerce(value: object, source: str) -> str:
        if isinstance(value, str) and _word(value) in choices:
            return _word(value)
        raise _fail(source, value, accepted)

    return _Spec("choice", coerce, (str,), False, accepted)


def _path_spec(*, nullable: bool = False) -> _Spec:
    accepted = "a non-empty directory path ('~' is expanded)"
    if nullable:
        accepted += "; or None/null/'none' (no directory)"

    def coerce(value: object, source: str) -> str | None:
        if nullable and (value is None or (isinstance(value, str) and _word(value) == "none")):
            return None
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if isinstance(value, str) and value.strip():
            return os.path.abspath(os.path.expanduser(value))
        raise _fail(source, value, accepted)

    return _Spec("path", coerce, (str,), nullable, accepted)


_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _level_spec() -> _Spec:
    accepted = "one of " + ", ".join(_LEVELS) + " (any case; WARN means WARNING)"

    def coerce(value: object, source: str) -> str:
        if isinstance(value, str):
            level = value.strip().upper()
            level = "WARNING" if level == "WARN" else level
            if level in _LEVELS:
                return level
        raise _fail(source, value, accepted)

    return _Spec("level", coerce, (str,), False, accepted)


_SPECS: Final[dict[str, _Spec]] = {
    "cache_enabled": _bool_spec(auto=True),
    "cache_dir": _path_spec(),
    "cache_ttl": _duration_spec(nullable=True),
    "cache_mode": _choice_spec(("read-write", "read-only", "write-through", "offline", "disabled")),
    "cache_on_add": _bool_spec(),
    "max_cache_size": _size_spec(nullable=True),
    "hard_limit": _bool_spec(),
    "eviction_policy": _choice_spec(("lru", "lfu", "fifo")),
    "eviction_threshold": _fraction_spec(),
    "checksum_algorithm": _choice_spec(("md5", "xxh3_128", "sha256")),
    "strict_mode": _bool_spec(),
    "fallback_to_stale": _bool_spec(),
    "max_stale_age": _duration_spec(nullable=True),
    "parallel_downloads": _int_spec(minimum=1),
    "chunk_size": _size_spec(),
    "parallel_threshold": _size_spec(minimum=0),
    "large_file_threshold": _size_spec(),
    "cache_large_files": _bool_spec(),
    "stream_large_files": _bool_spec(),
    "shared_cache_dir": _path_spec(nullable=True),
    "retry_attempts": _int_spec(minimum=1),
    "retry_max_time": _duration_spec(positive=True),
    "connect_timeout": _duration_spec(positive=True),
    "read_timeout": _duration_spec(positive=True),
    "progress": _bool_spec(auto=True),
    "log_level": _level_spec(),
    "log_cache_hits": _bool_spec(),
    "log_cache_misses": _bool_spec(),
    "log_evictions": _bool_spec(),
}

_LOCAL_SCHEMES: Final = frozenset({"file", "local", "memory"})
_SCHEME: Final = re.compile(r"[a-z][a-z0-9+.-]+")


def _is_remote(url: str | os.PathLike[str]) -> bool:
    if not isinstance(url, str):
        return False
    scheme, sep, _ = url.partition("://")
    if not sep:
        return False
    scheme = scheme.rsplit("::", 1)[-1].lower()  # fsspec chains: "simplecache::s3://..."
    return _SCHEME.fullmatch(scheme) is not None and scheme not in _LOCAL_SCHEMES


# --------------------------------------------------------------------------------------------
# Settings


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every aiofolio setting, parsed and validated (build it with :func:`resolve_settings`).

    Constructing it directly validates types and ranges but takes parsed values only
    (``cache_ttl=1800``, not ``"30m"``); string forms are for the resolution layers.

    Attributes:
        cache_enabled: Cache at all; ``None`` = on for remote bundles, off for local paths (see
            :meth:`cache_enabled_for`).
        cache_dir: Absolute path of the local cache.
        cache_ttl: Seconds a bundle's manifest is trusted before one revalidation; ``0`` =
            always revalidate, ``None`` = never revalidate.
        cache_mode: ``read-write``, ``read-only`` (use, never fill), ``write-through``,
            ``offline`` (cache only, no network) or ``disabled``.
        cache_on_add: Put the bytes of ``add()`` straight into the cache.
        max_cache_size: Size limit in bytes; ``None`` = unlimited.
        hard_limit: Refuse downloads that would pass the limit (default: evict afterwards).
        eviction_policy: ``lru``, ``lfu`` or ``fifo``.
        eviction_threshold: Evict down to this fraction of ``max_cache_size``, in (0, 1].
        checksum_algorithm: ``md5``, ``xxh3_128`` or ``sha256``.
        strict_mode: Raise on checksum mismatch instead of re-downloading.
        fallback_to_stale: Serve a stale copy when revalidation fails.
        max_stale_age: Oldest stale copy to serve, in seconds; ``None`` = no limit.
        parallel_downloads: Concurrent ranged GETs per file (and overall fan-out).
        chunk_size: Bytes per ranged GET.
        parallel_threshold: Objects at least this big are fetched in parallel chunks.
        large_file_threshold: Items at least this big warn with ``LargeFileWarning``.
        cache_large_files: Cache items at or above ``large_file_threshold``.
        stream_large_files: Stream such items (verified, to a private scratch file) instead of
            caching them, whatever ``cache_large_files`` says (the seed's name for it).
        shared_cache_dir: A read-only shared (institutional) cache tier, or ``None``.
        retry_attempts: Total tries per request, the first included (1 = no retry).
        retry_max_time: Total seconds to keep retrying one request.
        connect_timeout: Seconds to connect.
        read_timeout: Seconds to wait for data on an open connection.
        progress: Show progress bars; ``None`` = when stderr is a terminal.
        log_level: Level for the ``aiofolio`` logger (a name such as ``WARNING``).
        log_cache_hits: Log each cache hit.
        log_cache_misses: Log each cache miss.
        log_evictions: Log each eviction.
    """

    cache_enabled: bool | None = None
    cache_dir: str = msgspec.field(default_factory=default_cache_dir)
    cache_ttl: float | None = 1800.0
    cache_mode: CacheMode = "read-write"
    cache_on_add: bool = False
    max_cache_size: int | None = 100 * _GB
    hard_limit: bool = False
    eviction_policy: EvictionPolicy = "lru"
    eviction_threshold: float = 0.9
    checksum_algorithm: ChecksumAlgorithm = "md5"
    strict_mode: bool = False
    fallback_to_stale: bool = True
    max_stale_age: float | None = 86400.0
    parallel_downloads: int = 8
    chunk_size: int = 8 * _MiB
    parallel_threshold: int = 16 * _MiB
    large_file_threshold: int = _GB
    cache_large_files: bool = True
    stream_large_files: bool = False
    shared_cache_dir: str | None = None
    retry_attempts: int = 5
    retry_max_time: float = 60.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    progress: bool | None = None
    log_level: str = "WARNING"
    log_cache_hits: bool = False
    log_cache_misses: bool = True
    log_evictions: bool = True

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            spec = _SPECS[name]
            value = getattr(self, name)
            source = f"Settings({name}=...)"
            parsed = spec.coerce(value, source)
            if value is None and spec.nullable:
                continue
            well_typed = isinstance(value, spec.types) and (
                bool in spec.types or not isinstance(value, bool)
            )
            # Paths are normalized by coerce; other kinds must already be in parsed form.
            if not well_typed or parsed is None or (spec.kind != "path" and parsed != value):
                raise _fail(source, value, f"the parsed form ({spec.kind}) of: {spec.accepted}")

    def cache_enabled_for(self, url: str | os.PathLike[str]) -> bool:
        """Say whether the cache is used for a bundle at ``url``.

        Args:
            url: The bundle URL or local path.

        Returns:
            False when ``cache_mode`` is ``disabled``; else ``cache_enabled`` when set; else
            True for remote URLs (``s3://``, ``gs://``, ``http(s)://``, ...) and False for local
            paths, ``file://`` and ``memory://``.
        """
        if self.cache_mode == "disabled":
            return False
        if self.cache_enabled is not None:
            return self.cache_enabled
        return _is_remote(url)


SETTING_NAMES: Final[tuple[str, ...]] = Settings.__struct_fields__


def format_setting(name: str, value: object) -> str:
    """Render a setting's value for display; the result parses back to the same value.

    Args:
        name: A setting name (a field of :class:`Settings`).
        value: Its parsed value.

    Returns:
        E.g. ``"100GB"``, ``"30m"``, ``"never"``, ``"unlimited"``, ``"auto"``, ``"true"``.
    """
    kind = _SPECS[name].kind
    if value is None:
        return {"size": "unlimited", "duration": "never", "auto_bool": "auto"}.get(kind, "none")
    if isinstance(value, bool):
        return "true" if value else "false"
    if kind == "size" and isinstance(value, int):
        return format_size(value)
    if kind == "duration" and isinstance(value, int | float):
        return format_duration(float(value))
    return str(value)


class ResolvedSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Resolved settings with the provenance of every value.

    Attributes:
        settings: The effective settings.
        sources: Setting name to where its value came from: ``"default"``, ``"file:<path>"``,
            ``"env:<NAME>"``, ``"configure_cache"``, ``"constructor"`` or ``"call"``.
        config_file: The config file path that was consulted.
        config_file_found: Whether that file existed.
    """

    settings: Settings
    sources: dict[str, str]
    config_file: str
    config_file_found: bool = False

    def rows(self) -> list[tuple[str, str, str]]:
        """Rows for ``aiofolio cache config``.

        Returns:
            ``(name, value, source)`` per setting in field order; values are rendered with
            :func:`format_setting`.
        """
        return [
            (name, format_setting(name, getattr(self.settings, name)), self.sources[name])
            for name in SETTING_NAMES
        ]


# --------------------------------------------------------------------------------------------
# Environment variables


class EnvVar(NamedTuple):
    """One environment variable: its name, the setting it sets, its parser and a help line.

    ``parse(raw, source)`` returns the parsed value, or :data:`UNSET` when the variable does
    not set anything (``AIOFOLIO_OFFLINE=0``); it raises ``ConfigError``.
    """

    name: str
    setting: str
    parse: Callable[[str, str], object]
    help: str


def _env(setting: str, name: str | None = None) -> EnvVar:
    spec = _SPECS[setting]
    return EnvVar(name or f"AIOFOLIO_{setting.upper()}", setting, spec.coerce, spec.accepted)


def _parse_size_limit_mb(raw: str, source: str) -> object:
    text = _word(raw)
    if text == "unlimited":
        return None
    if re.fullmatch(r"[0-9]+", text) and int(text) > 0:
        return int(text) * _MiB
    raise _fail(source, raw, "a positive integer of MB, where 1 MB = 1048576 bytes, or 'unlimited'")


def _parse_offline(raw: str, source: str) -> object:
    return "offline" if parse_bool(raw, source=source) else UNSET


ENV_VARS: Final[tuple[EnvVar, ...]] = (
    _env("cache_enabled"),
    _env("cache_enabled", "DATAFOLIO_CACHE_ENABLED"),
    _env("cache_dir"),
    _env("cache_dir", "DATAFOLIO_CACHE_DIR"),
    _env("cache_ttl"),
    _env("cache_ttl", "DATAFOLIO_CACHE_TTL"),
    EnvVar(
        "AIOFOLIO_OFFLINE",
        "cache_mode",
        _parse_offline,
        "true/1 sets cache_mode 'offline' (wins over AIOFOLIO_CACHE_MODE); false sets nothing",
    ),
    _env("cache_mode"),
    _env("cache_on_add"),
    _env("max_cache_size"),
    EnvVar(
        "AIOFOLIO_CACHE_SIZE_LIMIT_MB",
        "max_cache_size",
        _parse_size_limit_mb,
        "a positive integer of MB of 1048576 bytes (102400 = 100 GiB), or 'unlimited'",
    ),
    _env("hard_limit"),
    _env("hard_limit", "AIOFOLIO_CACHE_HARD_LIMIT"),
    _env("eviction_policy"),
    _env("eviction_threshold"),
    _env("checksum_algorithm"),
    _env("strict_mode"),
    _env("fallback_to_stale"),
    _env("max_stale_age"),
    _env("parallel_downloads"),
    _env("chunk_size"),
    _env("parallel_threshold"),
    _env("large_file_threshold"),
    _env("cache_large_files"),
    _env("stream_large_files"),
    _env("shared_cache_dir"),
    _env("retry_attempts"),
    _env("retry_max_time"),
    _env("connect_timeout"),
    _env("read_timeout"),
    _env("progress"),
    _env("log_level"),
    _env("log_cache_hits"),
    _env("log_cache_misses"),
    _env("log_evictions"),
)
"""Every environment variable, in priority order within each setting (first set wins)."""

_Layer = dict[str, tuple[object, str]]  # setting -> (parsed value, provenance)


def _read_env(environ: Mapping[str, str]) -> _Layer:
    layer: _Layer = {}
    for var in ENV_VARS:
        if var.setting in layer:
            continue
        raw = environ.get(var.name)
        if raw is None or not raw.strip():
            continue
        value = var.parse(raw, f"env {var.name}")
        if value is not UNSET:
            layer[var.setting] = (value, f"env:{var.name}")
    return layer


# --------------------------------------------------------------------------------------------
# Config file


class ConfigFileKey(NamedTuple):
    """One key of ``config.json``: its dotted path and the setting it sets (``None``: ignored)."""

    path: str
    setting: str | None
    help: str


def _fkey(path: str, setting: str) -> ConfigFileKey:
    return ConfigFileKey(path, setting, _SPECS[setting].accepted)


CONFIG_FILE_KEYS: Final[tuple[ConfigFileKey, ...]] = (
    ConfigFileKey("version", None, "format version; '1.0' (any 1.x)"),
    _fkey("enabled", "cache_enabled"),
    _fkey("cache_dir", "cache_dir"),
    _fkey("defaults.ttl_seconds", "cache_ttl"),
    _fkey("defaults.checksum_algorithm", "checksum_algorithm"),
    _fkey("defaults.strict_mode", "strict_mode"),
    _fkey("defaults.cache_mode", "cache_mode"),
    _fkey("defaults.fallback_to_stale", "fallback_to_stale"),
    _fkey("defaults.max_stale_age", "max_stale_age"),
    _fkey("defaults.cache_on_add", "cache_on_add"),
    _fkey("limits.max_cache_size_bytes", "max_cache_size"),
    _fkey("limits.hard_limit", "hard_limit"),
    _fkey("limits.eviction_policy", "eviction_policy"),
    _fkey("limits.eviction_threshold", "eviction_threshold"),
    _fkey("limits.large_file_threshold", "large_file_threshold"),
    _fkey("limits.cache_large_files", "cache_large_files"),
    _fkey("limits.stream_large_files", "stream_large_files"),
    _fkey("performance.parallel_downloads", "parallel_downloads"),
    _fkey("performance.chunk_size_bytes", "chunk_size"),
    _fkey("performance.parallel_threshold", "parallel_threshold"),
    ConfigFileKey("performance.compression", None, "accepted and ignored"),
    _fkey("performance.retry_attempts", "retry_attempts"),
    _fkey("performance.retry_max_time", "retry_max_time"),
    _fkey("performance.connect_timeout", "connect_timeout"),
    _fkey("performance.read_timeout", "read_timeout"),
    _fkey("logging.level", "log_level"),
    _fkey("logging.log_cache_hits", "log_cache_hits"),
    _fkey("logging.log_cache_misses", "log_cache_misses"),
    _fkey("logging.log_evictions", "log_evictions"),
    _fkey("logging.progress", "progress"),
    ConfigFileKey("advanced.content_addressable_storage", None, "accepted and ignored (always on)"),
    _fkey("advanced.shared_cache_dir", "shared_cache_dir"),
    ConfigFileKey(
        "advanced.offline_mode", "cache_mode", "true sets cache_mode 'offline' (wins over it)"
    ),
)
"""Every key ``config.json`` accepts; anything else is a ``ConfigError``."""

_FILE_KEY_MAP: Final = {key.path: key for key in CONFIG_FILE_KEYS}
_FILE_SECTIONS: Final = frozenset(
    key.path.split(".")[0] for key in CONFIG_FILE_KEYS if "." in key.path
)

_FILE_CACHE: dict[str, tuple[tuple[int, int, int], _Layer]] = {}
_FILE_LOCK = threading.Lock()


def _unknown(name: str, known: tuple[str, ...] | list[str], where: str, what: str) -> ConfigError:
    import difflib

    scored = sorted(
        ((difflib.SequenceMatcher(None, name, k).ratio(), k) for k in known), reverse=True
    )
    close = [k for score, k in scored[:3] if score >= max(0.6, scored[0][0] - 0.15)]
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        hint = "known: " + ", ".join(known)
    return ConfigError(f"{where}: unknown {what} {name!r}; {hint}")


def _parse_file(data: object, path: str) -> _Layer:
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a JSON object")
    provenance = f"file:{path}"
    base = os.path.dirname(path)
    layer: _Layer = {}
    offline = False
    items: list[tuple[str, object]] = []
    for key, value in data.items():
        if key in _FILE_SECTIONS:
            if not isinstance(value, dict):
                raise _fail(f"file {path} key {key}", value, "a JSON object (section)")
            items.extend((f"{key}.{sub}", subvalue) for sub, subvalue in value.items())
        else:
            items.append((key, value))
    for keypath, value in items:
        entry = _FILE_KEY_MAP.get(keypath)
        if entry is None:
            raise _unknown(keypath, list(_FILE_KEY_MAP), f"config file {path}", "key")
        source = f"file {path} key {keypath}"
        if keypath == "version":
            if not re.fullmatch(r"1(\.[0-9]+)*", str(value)):
                raise _fail(source, value, "'1.0' (any 1.x version)")
        elif keypath == "advanced.offline_mode":
            offline = parse_bool(value, source=source)
        elif entry.setting is not None:
            spec = _SPECS[entry.setting]
            if spec.kind == "path" and isinstance(value, str) and value.strip():
                value = os.path.join(base, os.path.expanduser(value))  # relative to the file
            layer[entry.setting] = (spec.coerce(value, source), provenance)
    if offline:
        layer["cache_mode"] = ("offline", provenance)
    return layer


def _load_file(path: str) -> tuple[_Layer, bool]:
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return {}, False
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc}") from exc
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _FILE_LOCK:
        cached = _FILE_CACHE.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1], True
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return {}, False
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc}") from exc
    import json

    try:
        data = json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise ConfigError(f"config file {path}: invalid JSON: {exc}") from None
    layer = _parse_file(data, path)
    with _FILE_LOCK:
        _FILE_CACHE[path] = (stamp, layer)
    return layer, True


# --------------------------------------------------------------------------------------------
# configure_cache layer and resolution

_configured: _Layer = {}
_configure_lock = threading.Lock()


def _coerce_layer(values: Mapping[str, Any] | None, where: str, provenance: str) -> _Layer:
    layer: _Layer = {}
    for name, value in (values or {}).items():
        if value is UNSET:
            continue
        if name not in _SPECS:
            raise _unknown(name, SETTING_NAMES, where, "setting")
        layer[name] = (_SPECS[name].coerce(value, f"{where} {name}"), provenance)
    return layer


def configure(**settings: Any) -> None:
    """Set process-wide settings (the ``DataFolio.configure_cache`` layer).

    Calls merge: a later call overrides the names it gives and keeps the others. Passing
    :data:`UNSET` for a name removes it from this layer. Values are validated before any is
    applied.

    Args:
        **settings: Setting names to values (parsed or string forms; ``None`` where allowed).

    Raises:
        ConfigError: An unknown setting name (with close names suggested) or a bad value.
    """
    global _configured
    layer = _coerce_layer(settings, "configure_cache argument", "configure_cache")
    with _configure_lock:
        merged = {k: v for k, v in _configured.items() if settings.get(k) is not UNSET}
        merged.update(layer)
        _configured = merged


def reset_configure() -> None:
    """Clear every value set with :func:`configure`."""
    global _configured
    with _configure_lock:
        _configured = {}


def configured_settings() -> dict[str, object]:
    """Return the values currently set with :func:`configure` (parsed)."""
    return {name: value for name, (value, _) in _configured.items()}


def resolve_settings(
    *,
    call: Mapping[str, Any] | None = None,
    constructor: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ResolvedSettings:
    """Resolve every setting from all layers, recording where each value came from.

    Args:
        call: Per-call overrides (highest precedence). Missing keys or :data:`UNSET` values are
            not given; ``None`` is a value.
        constructor: ``DataFolio(...)`` arguments, same rules.
        environ: The environment; ``os.environ`` as it is at call time by default.

    Returns:
        The settings and their provenance.

    Raises:
        ConfigError: An unknown setting name, a bad value in any layer, an unreadable or
            invalid config file, or an unknown config file key.
    """
    env = os.environ if environ is None else environ
    layers = (
        _coerce_layer(call, "call argument", "call"),
        _coerce_layer(constructor, "constructor argument", "constructor"),
        _configured,
        _read_env(env),
    )
    chosen: _Layer = {}
    for layer in layers:
        for name, entry in layer.items():
            chosen.setdefault(name, entry)
    given_dir = chosen.get("cache_dir")
    lookup_dir = str(given_dir[0]) if given_dir is not None else default_cache_dir()
    config_file = os.path.join(lookup_dir, CONFIG_FILE_NAME)
    file_layer, found = _load_file(config_file)
    for name, entry in file_layer.items():
        chosen.setdefault(name, entry)
    chosen.setdefault("cache_dir", (lookup_dir, "default"))
    values: dict[str, Any] = {name: value for name, (value, _) in chosen.items()}
    settings = Settings(**values)
    sources = {name: chosen[name][1] if name in chosen else "default" for name in SETTING_NAMES}
    return ResolvedSettings(
        settings=settings, sources=sources, config_file=config_file, config_file_found=found
    )
