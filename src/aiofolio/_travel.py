"""A folio that travels: what pickling a :class:`~aiofolio.DataFolio` sends, and the rebuild.

Owns :class:`FolioState` (the URL, the storage options without secrets unless
``pickle_credentials`` is on, the constructor settings except the machine-local ``cache_dir``,
``read_only``, ``max_eager_bytes``, a snapshot view's name and, inside ``pinned()``, the pinned
manifest), :func:`state_of` and :func:`rebuild`, which the unpickler calls: it opens a fresh
folio in the receiving process (its own engine thread, its own cache settings), memoized per
process so a Dask worker that unpickles the same folio for every task opens it once.
Nothing of the sender's engine, session or cache travels.
"""

from __future__ import annotations

import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from aiofolio import _portal

if TYPE_CHECKING:
    from aiofolio.folio import DataFolio

__all__ = ["FolioState", "is_secret", "rebuild", "state_of", "strip_secrets"]

_SECRET_NAMES = frozenset(
    {"key", "auth", "authorization", "cookie", "credentials", "sas", "account_key"}
)
_SECRET_PARTS = (
    "secret",
    "token",
    "password",
    "passwd",
    "credential",
    "private_key",
    "api_key",
    "access_key",
    "session",
)
_MEMO_MAX = 16
_memo: OrderedDict[tuple[FolioState, str], DataFolio] = OrderedDict()
_memo_lock = threading.Lock()


def is_secret(name: str) -> bool:
    """Whether a ``storage_options`` key names a secret (``key``, ``secret``, ``*token*``...)."""
    low = name.lower().replace("-", "_")
    return low in _SECRET_NAMES or any(part in low for part in _SECRET_PARTS)


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if (
        isinstance(value, tuple)
        and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value)
        and value
    ):
        return {k: _thaw(v) for k, v in value}
    return value


def strip_secrets(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` without secret entries, at any depth (``client_kwargs``, ``headers``...)."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if is_secret(str(name)):
            continue
        out[name] = strip_secrets(value) if isinstance(value, Mapping) else value
    return out


class FolioState(NamedTuple):
    """What rebuilds a folio in another process (hashable: it keys the per-process memo)."""

    url: str
    storage_options: Any
    settings: Any
    read_only: bool
    max_eager_bytes: int | None
    snapshot: str | None
    pinned: bytes | None


def state_of(folio: DataFolio) -> FolioState:
    """The travelling state of ``folio`` (see the module docstring)."""
    resolved = folio._resolved
    settings = {
        name: getattr(resolved.settings, name)
        for name, source in resolved.sources.items()
        if source == "constructor" and name != "cache_dir"
    }
    options: Mapping[str, Any] = folio._session.storage_options
    if not resolved.settings.pickle_credentials:
        options = strip_secrets(options)
    pinned = folio._pinned
    return FolioState(
        url=folio._session.url,
        storage_options=_freeze(options),
        settings=_freeze(settings),
        read_only=folio._session.read_only,
        max_eager_bytes=folio._max_eager_bytes,
        snapshot=folio._snapshot,
        pinned=pinned.to_json_bytes() if pinned is not None else None,
    )


def rebuild(state: FolioState) -> DataFolio:
    """The folio ``state`` describes, opened in this process (one per state and process)."""
    if "distributed" in sys.modules:  # a Dask worker's event loop must refuse blocking calls
        from aiofolio.dask._guard import guard_worker_loop

        guard_worker_loop()
    try:
        hash(state)
    except TypeError:  # an unhashable storage option: no memo
        with _portal.allow_blocking():
            return _open(state)
    key = (state, _local_config())
    with _memo_lock:
        found = _memo.get(key)
        if found is not None:
            _memo.move_to_end(key)
            return found
        with _portal.allow_blocking():  # Dask unpickles on the worker's event loop
            folio = _open(state)
        _memo[key] = folio
        while len(_memo) > _MEMO_MAX:
            _memo.popitem(last=False)
        return folio


def _local_config() -> str:
    """This process's own settings layers (configure_cache, AIOFOLIO_* variables): a folio
    opened before ``AiofolioPlugin`` changed them is not reused."""
    from aiofolio.config import configured_settings

    env = sorted((k, v) for k, v in os.environ.items() if k.startswith("AIOFOLIO_"))
    return repr((sorted(configured_settings().items()), env))


def _open(state: FolioState) -> DataFolio:
    from aiofolio.bundle import parse_manifest
    from aiofolio.folio import DataFolio

    settings = _thaw(state.settings) or {}
    folio = DataFolio(
        state.url,
        read_only=state.read_only,
        max_eager_bytes=state.max_eager_bytes,
        create=False,
        storage_options=_thaw(state.storage_options) or None,
        **settings,
    )
    if state.snapshot is not None:
        folio = folio.get_snapshot(state.snapshot)
    if state.pinned is not None:  # read the sender's pinned revision, for good
        folio._pinned = parse_manifest(state.pinned, source=f"{state.url} (pinned, pickled)")
        folio._pins = 1
    return folio
