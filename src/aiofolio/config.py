"""Settings for aiofolio: the ``Settings`` struct, precedence, env vars, config file, provenance.

This module owns every user-facing knob and where its value came from. It does no I/O beyond
reading ``<cache_dir>/config.json``, and it reads environment variables only when settings are
resolved (:func:`resolve_settings`), never at import.

Each setting is written once: a field of :class:`Settings` annotated with a :class:`SettingRow`
(parser, help, env vars, config-file keys, in ``Annotated[...]`` metadata that msgspec ignores).
:data:`SETTING_ROWS`, :data:`ENV_VARS`, :data:`CONFIG_FILE_KEYS`, the validation and the
reference at the end of this docstring are derived from those rows at import.

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

# No ``from __future__ import annotations`` here: the SettingRow metadata on the Settings fields
# is evaluated once, when the class is created, and every reader sees those same objects.
import enum
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal, NamedTuple, get_args, get_type_hints

import msgspec

from aiofolio.errors import ConfigError

__all__ = [
    "CONFIG_FILE_KEYS",
    "CONFIG_FILE_NAME",
    "ENV_VARS",
    "SETTING_NAMES",
    "SETTING_ROWS",
    "UNSET",
    "Alias",
    "CacheMode",
    "ChecksumAlgorithm",
    "ConfigFileKey",
    "EnvVar",
    "EvictionPolicy",
    "LockMode",
    "ResolvedSettings",
    "SettingRow",
    "Settings",
    "SharedPriority",
    "UnsetType",
    "apply_logging",
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
SharedPriority = Literal["fallback", "first"]
LockMode = Literal["auto", "flock", "lease", "none"]

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
# The rows: each setting is described once, on its Settings field.


class Alias(NamedTuple):
    """An env var or config-file key of a setting with a parser of its own.

    ``parse(value, source)`` returns the parsed value, or :data:`UNSET` when this name does not
    set anything (``AIOFOLIO_OFFLINE=0``); it raises ``ConfigError``.
    """

    name: str
    parse: Callable[[Any, str], object]
    help: str


class SettingRow(NamedTuple):
    """The one description of a setting, attached to its :class:`Settings` field.

    Written as ``name: Annotated[<type>, SettingRow(...)] = default``; msgspec ignores this
    metadata. :data:`ENV_VARS`, :data:`CONFIG_FILE_KEYS`, the validation and the docs are all
    derived from the rows.

    Attributes:
        spec: How values are parsed and validated.
        help: One or two sentences for the docs.
        env: Environment variables, highest priority first (names use the setting's parser;
            an :class:`Alias` brings its own).
        file: ``config.json`` key paths (``"section.key"``), highest priority first.
        default_doc: How to describe the default when it is computed (``default_factory``).
    """

    spec: _Spec
    help: str
    env: tuple[str | Alias, ...]
    file: tuple[str | Alias, ...]
    default_doc: str | None = None


def _parse_size_limit_mb(raw: str, source: str) -> object:
    text = _word(raw)
    if text == "unlimited":
        return None
    if re.fullmatch(r"[0-9]+", text) and int(text) > 0:
        return int(text) * _MiB
    raise _fail(source, raw, "a positive integer of MB, where 1 MB = 1048576 bytes, or 'unlimited'")


def _parse_offline(value: object, source: str) -> object:
    return "offline" if parse_bool(value, source=source) else UNSET


_OFFLINE_ENV: Final = Alias(
    "AIOFOLIO_OFFLINE",
    _parse_offline,
    "true/1 sets cache_mode 'offline' (wins over AIOFOLIO_CACHE_MODE); false sets nothing",
)
_OFFLINE_FILE: Final = Alias(
    "advanced.offline_mode", _parse_offline, "true sets cache_mode 'offline' (wins over it)"
)
_SIZE_LIMIT_MB_ENV: Final = Alias(
    "AIOFOLIO_CACHE_SIZE_LIMIT_MB",
    _parse_size_limit_mb,
    "a positive integer of MB of 1048576 bytes (102400 = 100 GiB), or 'unlimited'",
)


# --------------------------------------------------------------------------------------------
# Settings


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Every aiofolio setting, parsed and validated (build it with :func:`resolve_settings`).

    Constructing it directly validates types and ranges but takes parsed values only
    (``cache_ttl=1800``, not ``"30m"``); string forms are for the resolution layers.

    Each field carries its :class:`SettingRow` (parser, help, env vars, config-file keys); the
    ``Attributes`` section of this docstring is generated from those rows at import.
    """

    cache_enabled: Annotated[
        bool | None,
        SettingRow(
            spec=_bool_spec(auto=True),
            help="Cache at all; ``None`` (auto) = on for remote bundles, off for local paths "
            "(see :meth:`cache_enabled_for`).",
            env=("AIOFOLIO_CACHE_ENABLED", "DATAFOLIO_CACHE_ENABLED"),
            file=("enabled",),
        ),
    ] = None
    cache_dir: Annotated[
        str,
        SettingRow(
            spec=_path_spec(),
            help="Absolute path of the local cache; ``<cache_dir>/config.json`` is the config "
            "file.",
            env=("AIOFOLIO_CACHE_DIR", "DATAFOLIO_CACHE_DIR"),
            file=("cache_dir",),
            default_doc="the platform user cache dir (``~/.cache/aiofolio`` on Linux)",
        ),
    ] = msgspec.field(default_factory=default_cache_dir)
    cache_ttl: Annotated[
        float | None,
        SettingRow(
            spec=_duration_spec(nullable=True),
            help="Seconds a bundle's manifest is trusted before one revalidation; ``0`` = always "
            "revalidate, ``None`` = never revalidate.",
            env=("AIOFOLIO_CACHE_TTL", "DATAFOLIO_CACHE_TTL"),
            file=("defaults.ttl_seconds",),
        ),
    ] = 1800.0
    cache_mode: Annotated[
        CacheMode,
        SettingRow(
            spec=_choice_spec(get_args(CacheMode)),
            help="``read-write``, ``read-only`` (use, never fill), ``write-through``, "
            "``offline`` (cache only, no network) or ``disabled``.",
            env=(_OFFLINE_ENV, "AIOFOLIO_CACHE_MODE"),
            file=(_OFFLINE_FILE, "defaults.cache_mode"),
        ),
    ] = "read-write"
    cache_on_add: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Put the bytes of ``add()`` straight into the cache.",
            env=("AIOFOLIO_CACHE_ON_ADD",),
            file=("defaults.cache_on_add",),
        ),
    ] = False
    max_cache_size: Annotated[
        int | None,
        SettingRow(
            spec=_size_spec(nullable=True),
            help="Size limit in bytes; ``None`` = unlimited.",
            env=("AIOFOLIO_MAX_CACHE_SIZE", _SIZE_LIMIT_MB_ENV),
            file=("limits.max_cache_size_bytes",),
        ),
    ] = 100 * _GB
    hard_limit: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Refuse downloads that would pass the limit (default: evict afterwards).",
            env=("AIOFOLIO_HARD_LIMIT", "AIOFOLIO_CACHE_HARD_LIMIT"),
            file=("limits.hard_limit",),
        ),
    ] = False
    eviction_policy: Annotated[
        EvictionPolicy,
        SettingRow(
            spec=_choice_spec(get_args(EvictionPolicy)),
            help="Which items go first when the cache is over its limit: ``lru``, ``lfu`` or "
            "``fifo``.",
            env=("AIOFOLIO_EVICTION_POLICY",),
            file=("limits.eviction_policy",),
        ),
    ] = "lru"
    eviction_threshold: Annotated[
        float,
        SettingRow(
            spec=_fraction_spec(),
            help="Evict down to this fraction of ``max_cache_size``, in (0, 1].",
            env=("AIOFOLIO_EVICTION_THRESHOLD",),
            file=("limits.eviction_threshold",),
        ),
    ] = 0.9
    checksum_algorithm: Annotated[
        ChecksumAlgorithm,
        SettingRow(
            spec=_choice_spec(get_args(ChecksumAlgorithm)),
            help="``md5``, ``xxh3_128`` or ``sha256``.",
            env=("AIOFOLIO_CHECKSUM_ALGORITHM",),
            file=("defaults.checksum_algorithm",),
        ),
    ] = "md5"
    strict_mode: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Raise on checksum mismatch instead of re-downloading.",
            env=("AIOFOLIO_STRICT_MODE",),
            file=("defaults.strict_mode",),
        ),
    ] = False
    fallback_to_stale: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Serve a stale copy when revalidation fails.",
            env=("AIOFOLIO_FALLBACK_TO_STALE",),
            file=("defaults.fallback_to_stale",),
        ),
    ] = True
    max_stale_age: Annotated[
        float | None,
        SettingRow(
            spec=_duration_spec(nullable=True),
            help="Oldest stale copy to serve, in seconds; ``None`` = no limit.",
            env=("AIOFOLIO_MAX_STALE_AGE",),
            file=("defaults.max_stale_age",),
        ),
    ] = 86400.0
    parallel_downloads: Annotated[
        int,
        SettingRow(
            spec=_int_spec(minimum=1),
            help="Concurrent ranged GETs per file (and overall fan-out).",
            env=("AIOFOLIO_PARALLEL_DOWNLOADS",),
            file=("performance.parallel_downloads",),
        ),
    ] = 8
    chunk_size: Annotated[
        int,
        SettingRow(
            spec=_size_spec(),
            help="Bytes per ranged GET.",
            env=("AIOFOLIO_CHUNK_SIZE",),
            file=("performance.chunk_size_bytes",),
        ),
    ] = 8 * _MiB
    parallel_threshold: Annotated[
        int,
        SettingRow(
            spec=_size_spec(minimum=0),
            help="Objects at least this big are fetched in parallel chunks.",
            env=("AIOFOLIO_PARALLEL_THRESHOLD",),
            file=("performance.parallel_threshold",),
        ),
    ] = 16 * _MiB
    large_file_threshold: Annotated[
        int,
        SettingRow(
            spec=_size_spec(),
            help="Items at least this big warn with ``LargeFileWarning``.",
            env=("AIOFOLIO_LARGE_FILE_THRESHOLD",),
            file=("limits.large_file_threshold",),
        ),
    ] = _GB
    cache_large_files: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Cache items at or above ``large_file_threshold``.",
            env=("AIOFOLIO_CACHE_LARGE_FILES",),
            file=("limits.cache_large_files",),
        ),
    ] = True
    stream_large_files: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Stream such items (verified, to a private scratch file) instead of caching "
            "them, whatever ``cache_large_files`` says (the seed's name for it).",
            env=("AIOFOLIO_STREAM_LARGE_FILES",),
            file=("limits.stream_large_files",),
        ),
    ] = False
    lock_mode: Annotated[
        LockMode,
        SettingRow(
            spec=_choice_spec(get_args(LockMode)),
            help="How processes sharing the cache folder exclude each other: ``flock``, "
            "``lease`` (lock files with a heartbeat: for NFS, Lustre, GPFS, CIFS, where flock "
            "may be node-local, do nothing or fail), ``none`` (no locks: still correct, "
            "duplicate downloads possible) or ``auto`` (``lease`` when the folder is on a "
            "network filesystem per the mount table, else ``flock``). Every process sharing "
            "a folder must use the same mode.",
            env=("AIOFOLIO_LOCK_MODE",),
            file=("advanced.lock_mode",),
        ),
    ] = "auto"
    shared_cache_dir: Annotated[
        str | None,
        SettingRow(
            spec=_path_spec(nullable=True),
            help="A read-only shared (institutional) cache tier with the cache layout, filled by "
            "pointing an administrator's ``cache_dir`` at it; a read looks its blob up there "
            "before downloading and never writes, locks or touches anything in it; ``None`` "
            "= no shared tier.",
            env=("AIOFOLIO_SHARED_CACHE_DIR",),
            file=("advanced.shared_cache_dir",),
        ),
    ] = None
    shared_cache_priority: Annotated[
        SharedPriority,
        SettingRow(
            spec=_choice_spec(get_args(SharedPriority)),
            help="``fallback``: the local cache first, then the shared tier; ``first``: the "
            "shared tier before the local cache (only with ``shared_cache_dir``).",
            env=("AIOFOLIO_SHARED_CACHE_PRIORITY",),
            file=("advanced.shared_cache_priority",),
        ),
    ] = "fallback"
    shared_cache_copy: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Copy a shared-tier hit into the local cache (a hard link where the filesystem "
            "allows it), under the size limits, so later reads are local hits.",
            env=("AIOFOLIO_SHARED_CACHE_COPY",),
            file=("advanced.shared_cache_copy",),
        ),
    ] = False
    retry_attempts: Annotated[
        int,
        SettingRow(
            spec=_int_spec(minimum=1),
            help="Total tries per request, the first included (1 = no retry).",
            env=("AIOFOLIO_RETRY_ATTEMPTS",),
            file=("performance.retry_attempts",),
        ),
    ] = 5
    retry_max_time: Annotated[
        float,
        SettingRow(
            spec=_duration_spec(positive=True),
            help="Total seconds to keep retrying one request.",
            env=("AIOFOLIO_RETRY_MAX_TIME",),
            file=("performance.retry_max_time",),
        ),
    ] = 60.0
    connect_timeout: Annotated[
        float,
        SettingRow(
            spec=_duration_spec(positive=True),
            help="Seconds to connect.",
            env=("AIOFOLIO_CONNECT_TIMEOUT",),
            file=("performance.connect_timeout",),
        ),
    ] = 10.0
    read_timeout: Annotated[
        float,
        SettingRow(
            spec=_duration_spec(positive=True),
            help="Seconds to wait for data on an open connection.",
            env=("AIOFOLIO_READ_TIMEOUT",),
            file=("performance.read_timeout",),
        ),
    ] = 60.0
    progress: Annotated[
        bool | None,
        SettingRow(
            spec=_bool_spec(auto=True),
            help="Show progress bars; ``None`` (auto) = when stderr is a terminal.",
            env=("AIOFOLIO_PROGRESS",),
            file=("logging.progress",),
        ),
    ] = None
    log_level: Annotated[
        str,
        SettingRow(
            spec=_level_spec(),
            help="Level of the ``aiofolio`` logger, set when a folio resolves its settings and "
            "only when this setting is not at its default (so the default never overrides a "
            "level the application set; see :func:`apply_logging`).",
            env=("AIOFOLIO_LOG_LEVEL",),
            file=("logging.level",),
        ),
    ] = "WARNING"
    log_cache_hits: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="One INFO line on the ``aiofolio.cache`` logger per cache hit.",
            env=("AIOFOLIO_LOG_CACHE_HITS",),
            file=("logging.log_cache_hits",),
        ),
    ] = False
    log_cache_misses: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="One INFO line on the ``aiofolio.cache`` logger per cache miss.",
            env=("AIOFOLIO_LOG_CACHE_MISSES",),
            file=("logging.log_cache_misses",),
        ),
    ] = True
    log_evictions: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="One INFO line on the ``aiofolio.limits`` logger per eviction pass (items and "
            "bytes freed).",
            env=("AIOFOLIO_LOG_EVICTIONS",),
            file=("logging.log_evictions",),
        ),
    ] = True
    hit_fast_path: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Read a small cached item (at most 256 KiB) within the TTL in the calling "
            "thread, with no hop to the engine thread; ``False`` sends every read through the "
            "engine (for benchmarks and debugging).",
            env=("AIOFOLIO_HIT_FAST_PATH",),
            file=("advanced.hit_fast_path",),
        ),
    ] = True
    allow_local_references: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Let a remote bundle's referenced tables point at local paths (``file://`` "
            "or a bare path). Off: such a read raises ``LocalReferenceError``, so a bundle "
            "from S3, GCS or HTTP cannot make this machine read its own files.",
            env=("AIOFOLIO_ALLOW_LOCAL_REFERENCES",),
            file=("advanced.allow_local_references",),
        ),
    ] = False
    pickle_credentials: Annotated[
        bool,
        SettingRow(
            spec=_bool_spec(),
            help="Keep secrets (``key``, ``secret``, ``token``, ``password``, session tokens, "
            "credentials) in a pickled folio's ``storage_options``. Off: they are left out and "
            "the receiving process (a Dask worker) takes credentials from its own environment.",
            env=("AIOFOLIO_PICKLE_CREDENTIALS",),
            file=("advanced.pickle_credentials",),
        ),
    ] = False

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


def _collect_rows() -> dict[str, SettingRow]:
    hints = get_type_hints(Settings, include_extras=True)
    rows: dict[str, SettingRow] = {}
    for name in Settings.__struct_fields__:
        found = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, SettingRow)]
        if len(found) != 1:
            raise TypeError(f"Settings.{name} must carry exactly one SettingRow, not {len(found)}")
        rows[name] = found[0]
    return rows


SETTING_ROWS: Final[Mapping[str, SettingRow]] = MappingProxyType(_collect_rows())
"""Setting name to its :class:`SettingRow`, in field order."""

SETTING_NAMES: Final[tuple[str, ...]] = Settings.__struct_fields__

_SPECS: Final[dict[str, _Spec]] = {name: row.spec for name, row in SETTING_ROWS.items()}


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


def _default_text(field: msgspec.structs.FieldInfo) -> str:
    row = SETTING_ROWS[field.name]
    if row.default_doc is not None:
        return row.default_doc
    if field.default is msgspec.NODEFAULT:
        return "computed" if field.default_factory is not msgspec.NODEFAULT else "required"
    return format_setting(field.name, field.default)


def _wrap(text: str, indent: str, hang: str = "") -> str:
    import textwrap

    return textwrap.fill(text, 100, initial_indent=indent, subsequent_indent=indent + hang)


def _reference() -> str:
    lines = [
        "Every setting, generated from the rows on :class:`Settings`: ``name = default``, its",
        "environment variables (highest priority first) and its ``config.json`` keys::",
        "",
    ]
    for field in msgspec.structs.fields(Settings):
        row = SETTING_ROWS[field.name]
        env = ", ".join(e.name if isinstance(e, Alias) else e for e in row.env)
        keys = ", ".join(e.name if isinstance(e, Alias) else e for e in row.file)
        lines.append(f"    {field.name} = {_default_text(field)}")
        lines.append(_wrap(f"env {env}; file key {keys}", " " * 8))
        lines.append(_wrap(row.help, " " * 8))
    return "\n".join(lines) + "\n"


def _attributes() -> str:
    return "\n".join(
        ["    Attributes:"]
        + [_wrap(f"{name}: {row.help}", " " * 8, " " * 4) for name, row in SETTING_ROWS.items()]
    )


if __doc__ is not None:  # None under python -OO
    __doc__ = f"{__doc__}\n{_reference()}"
if Settings.__doc__ is not None:
    Settings.__doc__ = f"{Settings.__doc__.rstrip()}\n\n{_attributes()}\n    "


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


def apply_logging(resolved: ResolvedSettings) -> None:
    """Set the level of the ``aiofolio`` logger from the ``log_level`` setting.

    Only a ``log_level`` that came from a non-default source (call, constructor,
    ``configure_cache``, env var or config file) is applied, so the default ``WARNING`` never
    overrides a level the application set on the ``aiofolio`` logger itself. An explicit
    setting is applied again each time a folio resolves its settings. Only the level is set:
    records go to the handlers the application configured (with none, Python's last-resort
    handler prints WARNING and above).

    Args:
        resolved: Settings with their provenance, from :func:`resolve_settings`.
    """
    if resolved.sources.get("log_level", "default") != "default":
        logging.getLogger("aiofolio").setLevel(resolved.settings.log_level)


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


ENV_VARS: Final[tuple[EnvVar, ...]] = tuple(
    EnvVar(entry.name, name, entry.parse, entry.help)
    if isinstance(entry, Alias)
    else EnvVar(entry, name, row.spec.coerce, row.spec.accepted)
    for name, row in SETTING_ROWS.items()
    for entry in row.env
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


def _check_version(value: object, source: str) -> object:
    if not re.fullmatch(r"1(\.[0-9]+)*", str(value)):
        raise _fail(source, value, "'1.0' (any 1.x version)")
    return UNSET


def _ignore(value: object, source: str) -> object:
    return UNSET


# Keys of the seed's format that set no setting (so not part of any row).
_OTHER_FILE_KEYS: Final = (
    Alias("version", _check_version, "format version; '1.0' (any 1.x)"),
    Alias("performance.compression", _ignore, "accepted and ignored"),
    Alias("advanced.content_addressable_storage", _ignore, "accepted and ignored (always on)"),
)
_SECTION_ORDER: Final = ("", "defaults", "limits", "performance", "logging", "advanced")


class _FileEntry(NamedTuple):
    key: ConfigFileKey
    parse: Callable[[Any, str], object]
    relative_path: bool  # a path value, taken relative to the file's folder


def _file_entries() -> list[_FileEntry]:
    version, *others = (
        _FileEntry(ConfigFileKey(a.name, None, a.help), a.parse, False) for a in _OTHER_FILE_KEYS
    )
    entries = [version]
    for name, row in SETTING_ROWS.items():
        for entry in row.file:
            if isinstance(entry, Alias):
                entries.append(
                    _FileEntry(ConfigFileKey(entry.name, name, entry.help), entry.parse, False)
                )
            else:
                key = ConfigFileKey(entry, name, row.spec.accepted)
                entries.append(_FileEntry(key, row.spec.coerce, row.spec.kind == "path"))
    entries += others

    def section(entry: _FileEntry) -> int:
        head = entry.key.path.rpartition(".")[0]
        return _SECTION_ORDER.index(head) if head in _SECTION_ORDER else len(_SECTION_ORDER)

    return sorted(entries, key=section)  # stable: version first, then field order per section


_FILE_ENTRIES: Final = {entry.key.path: entry for entry in _file_entries()}

CONFIG_FILE_KEYS: Final[tuple[ConfigFileKey, ...]] = tuple(e.key for e in _FILE_ENTRIES.values())
"""Every key ``config.json`` accepts; anything else is a ``ConfigError``."""

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
    items: list[tuple[str, object]] = []
    for key, value in data.items():
        if key in _FILE_SECTIONS:
            if not isinstance(value, dict):
                raise _fail(f"file {path} key {key}", value, "a JSON object (section)")
            items.extend((f"{key}.{sub}", subvalue) for sub, subvalue in value.items())
        else:
            items.append((key, value))
    parsed: dict[str, object] = {}  # key path -> parsed value (every key is validated)
    for keypath, value in items:
        entry = _FILE_ENTRIES.get(keypath)
        if entry is None:
            raise _unknown(keypath, list(_FILE_ENTRIES), f"config file {path}", "key")
        if entry.relative_path and isinstance(value, str) and value.strip():
            value = os.path.join(base, os.path.expanduser(value))
        parsed[keypath] = entry.parse(value, f"file {path} key {keypath}")
    layer: _Layer = {}
    for name, row in SETTING_ROWS.items():  # within a setting, the first key given wins
        for key in row.file:
            value = parsed.get(key.name if isinstance(key, Alias) else key, UNSET)
            if value is not UNSET:
                layer[name] = (value, provenance)
                break
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
