"""The caching seed's spellings (``../shared/seeds/datafolio-caching-design.md``).

Owns the translations the facade applies for them: ``configure_cache``'s seed names
(:func:`seed_spellings`), the process-wide large-file policy of
``configure_large_file_policy`` that ``add`` applies (:func:`large_file_policy`), and the
three-argument ``on_cache_invalidation`` callbacks (:func:`with_item_name`). No I/O.
"""

from __future__ import annotations

import inspect
import threading
import warnings
from collections.abc import Mapping
from typing import Any

from aiofolio.engine.manifests import InvalidationCallback
from aiofolio.errors import ConfigError, InvalidArgumentError, StaleDataWarning

__all__ = [
    "LargeFilePolicy",
    "large_file_policy",
    "reset_large_file_policy",
    "seed_spellings",
    "set_large_file_policy",
    "with_item_name",
]

_RENAMED = {"enabled": "cache_enabled", "default_ttl": "cache_ttl"}
_ACTIONS = ("include", "reference")


def seed_spellings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``configure_cache`` arguments with the seed's names turned into settings.

    ``stale_warning=False`` silences :class:`StaleDataWarning` (a warnings filter, for the
    process); ``shared_cache_priority`` is the setting of that name.

    Raises:
        ConfigError: a seed name given twice (with its setting name too), or a bad value.
    """
    out = dict(settings)
    for seed, name in _RENAMED.items():
        if seed in out:
            if name in out:
                raise ConfigError(f"configure_cache: pass {seed}= or {name}=, not both")
            out[name] = out.pop(seed)
    if "stale_warning" in out:
        value = out.pop("stale_warning")
        if not isinstance(value, bool):
            raise ConfigError(f"configure_cache: stale_warning must be a bool, not {value!r}")
        warnings.filterwarnings(
            "default" if value else "ignore", category=StaleDataWarning, append=False
        )
    return out


class LargeFilePolicy:
    """What ``add`` does with a table at or above ``large_file_threshold``."""

    __slots__ = ("default_action", "warn_on_include")

    def __init__(self, default_action: str = "include", warn_on_include: bool = True) -> None:
        self.default_action = default_action
        self.warn_on_include = warn_on_include


_policy = LargeFilePolicy()
_lock = threading.Lock()


def large_file_policy() -> LargeFilePolicy:
    """The current policy (a copy)."""
    with _lock:
        return LargeFilePolicy(_policy.default_action, _policy.warn_on_include)


def set_large_file_policy(
    *, default_action: str | None = None, warn_on_include: bool | None = None
) -> None:
    """Change the policy; None keeps a field.

    Raises:
        InvalidArgumentError: an unknown ``default_action``.
    """
    if default_action is not None and default_action not in _ACTIONS:
        raise InvalidArgumentError(
            f"default_action must be one of {_ACTIONS}, not {default_action!r}"
        )
    with _lock:
        if default_action is not None:
            _policy.default_action = default_action
        if warn_on_include is not None:
            _policy.warn_on_include = bool(warn_on_include)


def reset_large_file_policy() -> None:
    """Back to the defaults (include, warn)."""
    set_large_file_policy(default_action="include", warn_on_include=True)


def _positional_count(callback: Any) -> int:
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in kinds)


def with_item_name(callback: InvalidationCallback) -> InvalidationCallback:
    """``callback`` as the engine calls it (``old_info, new_info``): a three-parameter
    callback (the seed's ``item_name, old_version, new_version``) gets the name first."""
    if _positional_count(callback) < 3:
        return callback
    seed_form: Any = callback

    def named(old: dict[str, Any] | None, new: dict[str, Any] | None) -> Any:
        name = (new or old or {}).get("name")
        return seed_form(name, old, new)

    return named
