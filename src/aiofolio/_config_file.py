"""Editing ``<cache_dir>/config.json``: validated, atomic, and reporting what changed.

Owns: :func:`edit_config_file` (behind ``DataFolio.edit_cache_config`` and ``aiofolio cache
config --max-size ...``) and :class:`ConfigChange`. Reading the file, its keys and its
validation stay in :mod:`aiofolio.config`: every new value goes through the setting's own
parser, and the whole edited file is parsed again before it replaces the old one, so an edit
never leaves a file that the next process would refuse. The file is written to a temp file in
the same folder and renamed over the old one (readers see the old file or the new one, never a
partial one). Two concurrent edits are last-writer-wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from typing import Any, NamedTuple

from aiofolio import config
from aiofolio.config import CONFIG_FILE_NAME, SETTING_ROWS, UNSET, format_setting
from aiofolio.errors import ConfigError

__all__ = ["ConfigChange", "edit_config_file", "file_key"]


class ConfigChange(NamedTuple):
    """One setting an edit of ``config.json`` changed.

    Attributes:
        setting: The setting name (``max_cache_size``).
        key: The ``config.json`` key written or removed (``limits.max_cache_size_bytes``).
        old: The value the file held before (parsed), or None when the key was absent.
        new: The value it holds now (parsed), or None when the key was removed.
        old_text: ``old`` for people (``"100 GB"``), or ``"not set"``.
        new_text: ``new`` for people, or ``"not set"``.
    """

    setting: str
    key: str
    old: object
    new: object
    old_text: str
    new_text: str


_NOT_SET = "not set"


def file_key(setting: str) -> str:
    """The ``config.json`` key an edit of ``setting`` writes (its first plain key).

    Raises:
        ConfigError: an unknown setting, or one the file cannot set.
    """
    row = SETTING_ROWS.get(setting)
    if row is None:
        raise ConfigError(f"unknown setting {setting!r}")
    for key in row.file:
        if isinstance(key, str):
            return key
    raise ConfigError(f"the setting {setting!r} cannot be set in {CONFIG_FILE_NAME}")


def _get(data: Mapping[str, Any], key: str) -> tuple[bool, object]:
    head, _, tail = key.rpartition(".")
    section = data.get(head) if head else data
    if not isinstance(section, Mapping) or tail not in section:
        return False, None
    return True, section[tail]


def _set(data: dict[str, Any], key: str, value: object) -> None:
    head, _, tail = key.rpartition(".")
    section = data.setdefault(head, {}) if head else data
    if not isinstance(section, dict):
        raise ConfigError(f"{CONFIG_FILE_NAME}: the section {head!r} is not a JSON object")
    section[tail] = value


def _remove(data: dict[str, Any], key: str) -> None:
    head, _, tail = key.rpartition(".")
    section = data.get(head) if head else data
    if isinstance(section, dict):
        section.pop(tail, None)
        if head and not section:
            del data[head]


def _text(setting: str, present: bool, value: object) -> str:
    return format_setting(setting, value) if present else _NOT_SET


def edit_config_file(cache_dir: str, changes: Mapping[str, object]) -> list[ConfigChange]:
    """Set (or, with :data:`~aiofolio.config.UNSET`, remove) settings in
    ``<cache_dir>/config.json``; returns the settings whose stored value changed.

    Values take the forms the config layers take (``"100GB"``, ``"30m"``, ``None`` for
    unlimited where the setting allows it). The folder and the file are created when missing;
    keys the edit does not name are kept as they were. Nothing is written when nothing changes.

    Raises:
        ConfigError: an unknown setting, a bad value, or an existing file that is not valid
            (the message names it); nothing was written.
        CacheError: the file cannot be written.
    """
    path = os.path.join(os.path.abspath(os.path.expanduser(cache_dir)), CONFIG_FILE_NAME)
    data: dict[str, Any] = {}
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raw = b""
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it: {exc}") from exc
    if raw.strip():
        try:
            loaded = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"config file {path}: invalid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: the top level must be a JSON object")
        data = loaded
    done: list[ConfigChange] = []
    for setting, value in changes.items():
        key = file_key(setting)
        present, before = _get(data, key)
        old = (
            SETTING_ROWS[setting].spec.coerce(before, f"file {path} key {key}") if present else None
        )
        if value is UNSET:
            if present:
                _remove(data, key)
                done.append(
                    ConfigChange(setting, key, old, None, _text(setting, True, old), _NOT_SET)
                )
            continue
        new = SETTING_ROWS[setting].spec.coerce(value, f"setting {setting}")
        if present and new == old:
            continue
        _set(data, key, new)
        done.append(
            ConfigChange(
                setting, key, old, new, _text(setting, present, old), _text(setting, True, new)
            )
        )
    if not done:
        return done
    data.setdefault("version", "1.0")
    config._parse_file(data, path)  # the next process must accept the file as written
    _write_atomically(path, json.dumps(data, indent=2, sort_keys=False) + "\n")
    return done


def _write_atomically(path: str, text: str) -> None:
    from aiofolio.errors import CacheError

    folder = os.path.dirname(path)
    part = os.path.join(folder, f".{CONFIG_FILE_NAME}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(part, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(part)
        raise CacheError(f"cannot write {path}: {exc.strerror or exc}") from exc
