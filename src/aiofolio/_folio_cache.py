"""The cache half of :class:`~aiofolio.DataFolio`: status, stats, warming, limits, large files.

Owns: :class:`CacheMethods`, the mixin ``DataFolio`` inherits its cache methods from (this
keeps ``folio.py`` to the datafolio surface): ``cache_status``/``cache_stats``,
invalidation and callbacks; ``warm_cache`` and ``refresh_all`` (issue 6); pins, priorities,
limits and clean-up (issue 7); the large-file policy and reference conversions (issue 7).
Like the rest of the facade, every method runs engine coroutines through
:mod:`aiofolio._portal` and does no I/O of its own: a sync method is ``_portal.call(c, ...)``
and its twin ``await _portal.acall(c, ...)`` of the same private coroutine function ``c``
(disk work as :func:`~aiofolio._calls.threaded` of one blocking function).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from aiofolio import _portal
from aiofolio._calls import hybrid as _hybrid
from aiofolio._calls import kw as _kw
from aiofolio._calls import threaded as _threaded
from aiofolio._progress import WarmBar, wants_progress
from aiofolio._seed_compat import seed_spellings, set_large_file_policy, with_item_name
from aiofolio._warm import WarmHandle, astart, start
from aiofolio.config import configure, resolve_settings
from aiofolio.engine._runtime import Runtime, drop_runtimes, runtime
from aiofolio.engine.manifests import InvalidationCallback
from aiofolio.engine.revalidate import DEFAULT_CONCURRENCY as DEFAULT_REFRESH_CONCURRENCY
from aiofolio.engine.revalidate import RefreshOutcome, revalidate_references, revalidate_sessions
from aiofolio.engine.warm import (
    WarmJob,
    WarmResult,
    default_concurrency,
    large_slots,
)
from aiofolio.errors import ArgumentTypeError, InvalidArgumentError
from aiofolio.policy import hit_rate

if TYPE_CHECKING:
    from typing_extensions import Self

    from aiofolio.bundle import Item, Manifest
    from aiofolio.config import Settings
    from aiofolio.engine.session import BundleSession
    from aiofolio.folio import DataFolio

__all__ = ["CacheMethods"]


def _check_concurrency(concurrency: int) -> int:
    """``concurrency`` if it is at least 1, else :class:`InvalidArgumentError`."""
    if concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be at least 1, got {concurrency}")
    return concurrency


class CacheMethods:
    """Cache methods of :class:`~aiofolio.DataFolio` (a mixin; see the module docstring)."""

    if TYPE_CHECKING:  # provided by DataFolio
        _session: BundleSession
        _snapshot: str | None

        @property
        def path(self) -> str: ...

        @property
        def settings(self) -> Settings: ...

        @property
        def _manifest(self) -> Manifest: ...

        def _item(self, name: str) -> Item: ...

        def _fixed(self) -> Manifest | None: ...

        def _item_in(self, manifest: Manifest, name: str) -> Item: ...

        def _writable(self, what: str) -> None: ...

        def _after_write(self) -> None: ...

        def refresh(self) -> Self: ...

        async def arefresh(self) -> Self: ...

    # -- the cache ---------------------------------------------------------------------------
    def cache_status(self, name: str | None = None) -> dict[str, Any]:
        """Whether ``name`` is cached, where, how big, since when, and whether it verifies.

        Keys: ``cached``, ``cache_path``, ``size_bytes``, ``cached_at``, ``last_verified``,
        ``ttl_expires_in``, ``checksum_valid``, ``verified_by`` (what the download was checked
        against: ``"md5 (manifest)"``, ``"md5 (etag)"``, ``"crc32c (store)"``, ``"size and
        version only"``...), ``access_count``. Without a name, that dict for every current
        item, by name.
        """
        return _portal.call(self._cache_status, name)

    async def acache_status(self, name: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`cache_status`."""
        return await _portal.acall(self._cache_status, name)

    async def _cache_status(self, name: str | None) -> dict[str, Any]:
        if name is not None:
            return await self._session.cache_status(self._item(name))
        manifest = self._manifest
        out: dict[str, Any] = {}
        for one in manifest.names():
            out[one] = await self._session.cache_status(self._item_in(manifest, one))
        return out

    @_hybrid
    def cache_stats(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """Cache counters: hits, misses, remote checks, bytes downloaded and served, hit rate
        (``hit_rate``, and the seed's ``cache_hit_rate``).

        On a folio, the figures of its bundle; on the class (``DataFolio.cache_stats()``), of
        the whole cache, with the seed's keys too: ``cache_dir``, ``total_size`` (bytes),
        ``total_bundles``, ``total_items``, ``oldest_access``, ``max_size`` (bytes, None when
        unlimited) and ``percent_used``. They add up across processes sharing the folder.
        """
        return _portal.call(_threaded(CacheMethods._stats_of, self_or_cls, cache_dir))

    @_hybrid
    async def acache_stats(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`cache_stats`."""
        return await _portal.acall(_threaded(CacheMethods._stats_of, self_or_cls, cache_dir))

    @staticmethod
    def _stats_of(self_or_cls: Any, cache_dir: str | None) -> dict[str, Any]:
        if not isinstance(self_or_cls, type):
            totals = self_or_cls._session.stats()
        else:
            totals = runtime(cache_dir or resolve_settings().settings.cache_dir).stats.totals(None)
        out: dict[str, Any] = dict(totals)
        out["hit_rate"] = hit_rate(totals.get("hits", 0), totals.get("misses", 0))
        out["cache_hit_rate"] = out["hit_rate"]  # the seed's name
        if isinstance(self_or_cls, type):
            # The seed's whole-cache keys, from the cache folder's summary.
            info = CacheMethods._info(self_or_cls, cache_dir)
            out.update(
                cache_dir=info["path"],
                total_size=info["size_bytes"],
                total_bundles=info["bundles"],
                total_items=info["items"],
                oldest_access=info["oldest_access"],
                max_size=info["limit_bytes"],
                percent_used=info["usage_percent"],
            )
        return out

    def refresh_item(self, name: str, force: bool = True) -> Self:
        """Revalidate now (``force``) and fetch ``name`` again if it changed."""
        return _portal.call(self._refresh_item, name, force)

    async def arefresh_item(self, name: str, force: bool = True) -> Self:
        """Async twin of :meth:`refresh_item`."""
        return await _portal.acall(self._refresh_item, name, force)

    async def _refresh_item(self, name: str, force: bool) -> Self:
        manifest = await self._session.load(force=force)
        item = self._item_in(manifest, name)
        if self._session.cached and not item.is_reference:
            await self._session.blob_path(item)
        self._after_write()
        return self

    def refresh_cache(self, name: str | None = None) -> Self:
        """Revalidate the whole bundle now (one conditional request); with ``name``, also
        fetch that item again if it changed (``refresh_item(name, force=True)``)."""
        if name is not None:
            return self.refresh_item(name, force=True)
        return self.refresh()

    async def arefresh_cache(self, name: str | None = None) -> Self:
        """Async twin of :meth:`refresh_cache`."""
        if name is not None:
            return await self.arefresh_item(name, force=True)
        return await self.arefresh()

    def invalidate_cache(self, name: str | None = None) -> Self:
        """Forget the cached copy of ``name`` (all items when None); the next read fetches it."""
        return _portal.call(self._invalidate_cache, name)

    async def ainvalidate_cache(self, name: str | None = None) -> Self:
        """Async twin of :meth:`invalidate_cache`."""
        return await _portal.acall(self._invalidate_cache, name)

    async def _invalidate_cache(self, name: str | None) -> Self:
        self._session.require_cache()
        if name is not None:
            self._item(name)
        await self._session.invalidate(name)
        return self

    def clear_cache(self, name: str | None = None) -> Self:
        """Forget this bundle's cached manifest and items; with ``name``, only that item's
        cached copy (``invalidate_cache(name)``)."""
        if name is not None:
            return self.invalidate_cache(name)
        return _portal.call(self._clear_cache)

    async def aclear_cache(self, name: str | None = None) -> Self:
        """Async twin of :meth:`clear_cache`."""
        if name is not None:
            return await self.ainvalidate_cache(name)
        return await _portal.acall(self._clear_cache)

    async def _clear_cache(self) -> Self:
        await self._session.clear()
        return self

    @classmethod
    def clear_all_caches(cls, cache_dir: str | None = None, *, dry_run: bool = False) -> int:
        """Delete every cached bundle and blob in the cache folder; returns bytes freed
        (``dry_run``: delete nothing, return the bytes it would free). ``config.json`` stays."""
        return _portal.call(_threaded(CacheMethods._clear_all, cache_dir, dry_run))

    @classmethod
    async def aclear_all_caches(cls, cache_dir: str | None = None, *, dry_run: bool = False) -> int:
        """Async twin of :meth:`clear_all_caches`."""
        return await _portal.acall(_threaded(CacheMethods._clear_all, cache_dir, dry_run))

    @staticmethod
    def _clear_all(cache_dir: str | None, dry_run: bool = False) -> int:
        import shutil

        root = Path(cache_dir or resolve_settings().settings.cache_dir) / "v1"
        freed = 0
        if root.is_dir():
            for path in root.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    freed += path.stat().st_size
            if not dry_run:
                shutil.rmtree(root, ignore_errors=True)
        if not dry_run:
            drop_runtimes()
        return freed

    @classmethod
    def configure_cache(cls, **settings: Any) -> None:
        """Process-wide cache settings, below constructor arguments and above the environment.

        Accepts any setting name (``cache_ttl="30m"``, ``max_cache_size="50GB"``, ...) and the
        seed's spellings: ``enabled`` (``cache_enabled``), ``default_ttl`` (``cache_ttl``),
        ``stale_warning`` (False silences :class:`~aiofolio.StaleDataWarning`) and
        ``shared_cache_priority`` (``"fallback"`` or ``"first"``, a setting). A bad
        name or value raises :class:`~aiofolio.errors.ConfigError`. Folios opened after the
        call use them.
        """
        configure(**seed_spellings(settings))

    @classmethod
    def configure_large_file_policy(
        cls,
        size_threshold: int | str | None = None,
        default_action: str | None = None,
        warn_on_include: bool | None = None,
        cache_large_files: bool | None = None,
    ) -> None:
        """The seed's large-file policy, process-wide.

        ``size_threshold`` is ``large_file_threshold`` and ``cache_large_files`` the setting
        of that name (both through :meth:`configure_cache`). ``default_action="reference"``
        stores a table that ``add`` makes at or above the threshold as a reference to its
        payload (:meth:`convert_to_reference`; ``add(..., force_include=True)`` keeps it
        included); ``"include"`` (the default) keeps it. ``warn_on_include`` warns
        (:class:`~aiofolio.LargeFileWarning`) when a large table is included anyway. Arguments
        left None keep their current value.

        Raises:
            InvalidArgumentError: an unknown ``default_action``.
            ConfigError: a bad size.
        """
        changes: dict[str, Any] = {}
        if size_threshold is not None:
            changes["large_file_threshold"] = size_threshold
        if cache_large_files is not None:
            changes["cache_large_files"] = cache_large_files
        set_large_file_policy(default_action=default_action, warn_on_include=warn_on_include)
        if changes:
            configure(**changes)

    def on_cache_invalidation(self, callback: InvalidationCallback) -> InvalidationCallback:
        """Call ``callback(old_info, new_info)`` when a remote change drops a cached item.

        A callback of three positional parameters gets the seed's form,
        ``callback(item_name, old_info, new_info)``. It runs on aiofolio's event-loop thread:
        keep it short, and use async methods (``await folio.aget(...)``) inside it, not sync
        ones. Usable as a decorator (the callback is returned unchanged).
        """
        self._session.add_invalidation_callback(with_item_name(callback))
        return callback

    # -- warm_cache, refresh_all and progress ------------------------------------------------
    def _warm_job(
        self,
        items: str | Iterable[str] | None,
        concurrency: int | None,
        progress: bool | None,
    ) -> WarmJob:
        """Check the request (before anything starts) and build the job."""
        from aiofolio.errors import CacheError

        names: list[str] | None = None
        if items is not None:
            names = list(dict.fromkeys([items] if isinstance(items, str) else items))
            for name in names:
                self._item(name)  # ItemNotFoundError now, not in the background
        session = self._session
        if not session.is_local:
            session.require_cache()  # CacheError: caching is off
            if self.settings.cache_mode == "read-only":
                raise CacheError(
                    f"the cache of {self.path} is read-only (cache_mode='read-only'): "
                    "warm_cache cannot fill it"
                )
        limit = default_concurrency(self.settings.parallel_downloads)
        if concurrency is not None:
            limit = _check_concurrency(concurrency)
        bar = None
        if wants_progress(progress, self.settings.progress):
            bar = WarmBar(f"warming {self.path.rstrip('/').rsplit('/', 1)[-1]}")
        return session.warm_job(
            names,
            snapshot=self._snapshot,
            concurrency=limit,
            large=large_slots(limit, self.settings.parallel_downloads),
            listener=bar.update if bar is not None else None,
            on_finish=bar.close if bar is not None else None,
            manifest=self._fixed(),  # pinned() or batch(): that revision, not revalidated
        )

    @overload
    def warm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[False] = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult: ...

    @overload
    def warm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[True],
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmHandle: ...

    def warm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: bool = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult | WarmHandle:
        """Fetch items into the cache now, so later reads are hits.

        Every item is downloaded and verified exactly as ``get`` would (a ``get`` of an item
        being warmed joins its download), ``concurrency`` items at a time; referenced tables
        are cached too (one ``stat`` each when their TTL has passed). Foreground reads are not
        held back by the warm's limit.

        Args:
            items: A name or names (default: every current, non-archived item; for a
                snapshot view, the snapshot's items).
            background: Return a :class:`~aiofolio.WarmHandle` at once instead of waiting.
            concurrency: Items downloading at once; default ``4 * parallel_downloads`` (32).
                Large (chunked) items take at most half the connections: with the defaults,
                2 at a time, leaving the rest free for foreground reads.
            progress: Draw a rich progress bar (default: the ``progress`` setting, i.e. when
                stderr is a terminal or in a notebook; ``False`` never draws).

        Returns:
            A :class:`~aiofolio.WarmResult` (cached names, failed names with their
            exceptions; one failure does not stop the rest; large items that
            ``cache_large_files=False`` keeps out of the cache are ``skipped``), or the handle.

        Raises:
            ItemNotFoundError: an unknown name (before anything starts).
            CacheError: the bundle is remote and not cached, or the cache is read-only.
        """
        job = self._warm_job(items, concurrency, progress)
        if background:
            return start(job)
        return _portal.call(job.run)

    @overload
    async def awarm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[False] = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult: ...

    @overload
    async def awarm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: Literal[True],
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmHandle: ...

    async def awarm_cache(
        self,
        items: str | Iterable[str] | None = None,
        *,
        background: bool = False,
        concurrency: int | None = None,
        progress: bool | None = None,
    ) -> WarmResult | WarmHandle:
        """Async twin of :meth:`warm_cache` (the handle is awaitable: ``await handle``)."""
        job = self._warm_job(items, concurrency, progress)
        if background:
            return await astart(job)
        return await _portal.acall(job.run)

    def refresh_references(
        self, *, concurrency: int = DEFAULT_REFRESH_CONCURRENCY
    ) -> dict[str, RefreshOutcome]:
        """Revalidate every cached remote referenced table now, whatever the TTL.

        One ``stat`` of each external object, ``concurrency`` at a time. An unchanged table
        keeps its cached copy (its check time moves); a changed one's copy is dropped, so the
        next read fetches it. Tables never read yet report ``"uncached"``; failures report
        ``"error"`` with the exception, per table.

        Returns:
            A :class:`~aiofolio.RefreshOutcome` per referenced table, by item name.

        Raises:
            CacheError: the bundle is not cached.
        """
        return _portal.call(revalidate_references, self._session, _check_concurrency(concurrency))

    async def arefresh_references(
        self, *, concurrency: int = DEFAULT_REFRESH_CONCURRENCY
    ) -> dict[str, RefreshOutcome]:
        """Async twin of :meth:`refresh_references`."""
        return await _portal.acall(
            revalidate_references, self._session, _check_concurrency(concurrency)
        )

    @classmethod
    def refresh_all(
        cls, folios: Iterable[DataFolio], *, concurrency: int = DEFAULT_REFRESH_CONCURRENCY
    ) -> list[RefreshOutcome]:
        """Revalidate many folios at once: one conditional manifest request each.

        Also available as ``aiofolio.refresh_all``. A changed bundle drops only its changed
        items from the cache (with :class:`~aiofolio.RemoteUpdateWarning`), as a TTL expiry
        would. Failures are reported per folio, never raised.

        Returns:
            A :class:`~aiofolio.RefreshOutcome` per folio, in order: ``status`` is
            ``"changed"``, ``"unchanged"`` or ``"error"`` (with ``error``); ``folio`` is the
            folio, ``changed_items`` the names the new manifest changed.
        """
        return _portal.call(cls._refresh_all, list(folios), _check_concurrency(concurrency))

    @classmethod
    async def arefresh_all(
        cls, folios: Iterable[DataFolio], *, concurrency: int = DEFAULT_REFRESH_CONCURRENCY
    ) -> list[RefreshOutcome]:
        """Async twin of :meth:`refresh_all` (also ``aiofolio.arefresh_all``)."""
        return await _portal.acall(cls._refresh_all, list(folios), _check_concurrency(concurrency))

    @staticmethod
    async def _refresh_all(folios: Sequence[DataFolio], concurrency: int) -> list[RefreshOutcome]:
        import dataclasses

        outcomes = await revalidate_sessions([f._session for f in folios], concurrency)
        for folio, outcome in zip(folios, outcomes, strict=True):
            if outcome.status != "error":
                folio._after_write()
        return [dataclasses.replace(o, folio=f) for f, o in zip(folios, outcomes, strict=True)]

    # -- size limits, pins, priorities, maintenance --------------------------------------------
    def _limits_target(self_or_cls: Any, cache_dir: str | None) -> tuple[Runtime, Settings]:
        """The cache folder and settings a limits method works on (a folio's, or resolved)."""
        if not isinstance(self_or_cls, type) and cache_dir is None:
            return self_or_cls._session.runtime, self_or_cls.settings
        # A named folder's own config.json applies (its limit, policy, ...).
        settings = resolve_settings(call={"cache_dir": cache_dir} if cache_dir else None).settings
        return runtime(settings.cache_dir, settings.lock_mode), settings

    async def _set_prefs(self, name: str, changes: dict[str, Any]) -> Self:
        self._item(name)  # a clear error for an unknown name
        await self._session.set_prefs(name, **changes)
        return self

    @staticmethod
    def _priority(priority: int) -> dict[str, Any]:
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise ArgumentTypeError(f"a cache priority is an int, not {priority!r}")
        return {"priority": priority}

    def set_cache_priority(self, name: str, priority: int) -> Self:
        """Keep ``name`` longer (higher ``priority``) or shorter (lower) when evicting.

        Eviction takes lower priorities first and applies the policy (LRU, LFU, FIFO) within
        a priority. The default is 0. It is saved in the cache folder, for this bundle's item
        name (whatever version is cached), and lasts across processes until changed.

        Raises:
            ArgumentTypeError: ``priority`` is not an int (also a ``TypeError``).
        """
        return _portal.call(self._set_prefs, name, self._priority(priority))

    async def aset_cache_priority(self, name: str, priority: int) -> Self:
        """Async twin of :meth:`set_cache_priority`."""
        return await _portal.acall(self._set_prefs, name, self._priority(priority))

    def pin_cache(self, name: str) -> Self:
        """Never evict ``name`` from the cache (by any limit or ``cleanup_cache``).

        The pin is saved in the cache folder and survives restarts; it does not download the
        item (``get`` or ``warm_cache`` does). ``invalidate_cache``/``clear_cache`` still
        drop the copy; ``unpin_cache`` lifts the pin.
        """
        return _portal.call(self._set_prefs, name, {"pinned": True})

    async def apin_cache(self, name: str) -> Self:
        """Async twin of :meth:`pin_cache`."""
        return await _portal.acall(self._set_prefs, name, {"pinned": True})

    def unpin_cache(self, name: str) -> Self:
        """Let ``name`` be evicted again (see :meth:`pin_cache`)."""
        return _portal.call(self._set_prefs, name, {"pinned": False})

    async def aunpin_cache(self, name: str) -> Self:
        """Async twin of :meth:`unpin_cache`."""
        return await _portal.acall(self._set_prefs, name, {"pinned": False})

    @_hybrid
    def enforce_cache_limit(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """Evict now: if the cache is over ``max_cache_size``, down to the eviction threshold.

        On a folio, with its settings; on the class, with the resolved settings. Pinned and
        in-use items stay. Returns ``evicted`` (blobs), ``items`` (``"url::name"`` entries
        dropped), ``bytes_freed``, ``total_before``, ``total_after``, ``limit``, ``reached``.
        """
        return _portal.call(_threaded(CacheMethods._enforce, self_or_cls, cache_dir))

    @_hybrid
    async def aenforce_cache_limit(
        self_or_cls: Any, cache_dir: str | None = None
    ) -> dict[str, Any]:
        """Async twin of :meth:`enforce_cache_limit`."""
        return await _portal.acall(_threaded(CacheMethods._enforce, self_or_cls, cache_dir))

    @staticmethod
    def _enforce(self_or_cls: Any, cache_dir: str | None) -> dict[str, Any]:
        rt, settings = CacheMethods._limits_target(self_or_cls, cache_dir)
        return rt.enforce(settings).as_dict()

    @_hybrid
    def cleanup_cache(
        self_or_cls: Any,
        older_than: str | float = "7d",
        cache_dir: str | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Evict every item not read for ``older_than`` (``"7d"``, ``"12h"``, seconds).

        Works on the whole cache folder (also when called on a folio). Pinned and in-use
        items stay. Returns ``evicted`` (count), ``bytes_freed`` and the details of
        :meth:`enforce_cache_limit`. ``dry_run``: evict nothing; the result says what would
        go.

        Raises:
            InvalidArgumentError: ``older_than`` is not finite (also a ``ValueError``).
        """
        seconds = CacheMethods._older_than(older_than)
        return _portal.call(
            _threaded(CacheMethods._cleanup, self_or_cls, seconds, cache_dir, dry_run)
        )

    @_hybrid
    async def acleanup_cache(
        self_or_cls: Any,
        older_than: str | float = "7d",
        cache_dir: str | None = None,
        *,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Async twin of :meth:`cleanup_cache`."""
        seconds = CacheMethods._older_than(older_than)
        return await _portal.acall(
            _threaded(CacheMethods._cleanup, self_or_cls, seconds, cache_dir, dry_run)
        )

    @staticmethod
    def _older_than(older_than: str | float) -> float:
        from aiofolio.config import parse_duration

        seconds = parse_duration(older_than, source="older_than")
        if seconds is None:
            raise InvalidArgumentError("cleanup_cache needs a finite older_than")
        return seconds

    @staticmethod
    def _cleanup(
        self_or_cls: Any, seconds: float, cache_dir: str | None, dry_run: bool = False
    ) -> dict[str, Any]:
        rt, settings = CacheMethods._limits_target(self_or_cls, cache_dir)
        return rt.cleanup(settings, seconds, dry_run=dry_run).as_dict()

    @_hybrid
    def cache_info(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """The cache folder at a glance (gaggle's ``cache_info`` keys, and more).

        Keys: ``path``, ``type``, ``size_bytes``, ``size_mb``, ``limit_bytes``, ``limit_mb``,
        ``usage_percent`` (None when unlimited), ``is_soft_limit``, ``policy``,
        ``eviction_threshold``, ``bundles``, ``items``, ``blobs`` (shared blobs count once),
        ``pinned``, ``prioritized``, ``in_use``, ``hits``, ``misses``, ``evictions``,
        ``hit_rate``, ``oldest_access``, ``newest_access`` (ISO 8601, UTC).
        """
        return _portal.call(_threaded(CacheMethods._info, self_or_cls, cache_dir))

    @_hybrid
    async def acache_info(self_or_cls: Any, cache_dir: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`cache_info`."""
        return await _portal.acall(_threaded(CacheMethods._info, self_or_cls, cache_dir))

    @staticmethod
    def _info(self_or_cls: Any, cache_dir: str | None) -> dict[str, Any]:
        rt, settings = CacheMethods._limits_target(self_or_cls, cache_dir)
        return rt.info(settings)

    @_hybrid
    def cleanup_orphaned_caches(
        self_or_cls: Any,
        cache_dir: str | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        concurrency: int = 8,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Remove the cached bundles whose remote manifest (``items.json``) is gone.

        Every cached bundle is checked with one ``stat``, ``concurrency`` at a time; only a
        definite "not found" removes it (an unreachable remote keeps it). Blobs that only
        removed bundles used are deleted too. ``storage_options`` are used for every check
        (credentials, endpoint). Returns ``removed`` (bundle URLs), ``bundles`` (count),
        ``bytes_freed``. ``dry_run``: remove nothing; report what would go.
        """
        return _portal.call(
            _kw(
                CacheMethods._cleanup_orphans,
                self_or_cls,
                cache_dir,
                storage_options=storage_options,
                concurrency=concurrency,
                dry_run=dry_run,
            )
        )

    @_hybrid
    async def acleanup_orphaned_caches(
        self_or_cls: Any,
        cache_dir: str | None = None,
        *,
        storage_options: Mapping[str, Any] | None = None,
        concurrency: int = 8,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Async twin of :meth:`cleanup_orphaned_caches`."""
        return await _portal.acall(
            _kw(
                CacheMethods._cleanup_orphans,
                self_or_cls,
                cache_dir,
                storage_options=storage_options,
                concurrency=concurrency,
                dry_run=dry_run,
            )
        )

    @staticmethod
    async def _cleanup_orphans(
        self_or_cls: Any,
        cache_dir: str | None,
        *,
        storage_options: Mapping[str, Any] | None,
        concurrency: int,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        import anyio.to_thread

        from aiofolio.backends import join_url
        from aiofolio.engine._runtime import engine
        from aiofolio.engine.evict import find_orphans

        rt, settings = CacheMethods._limits_target(self_or_cls, cache_dir)
        if storage_options is None and not isinstance(self_or_cls, type):
            storage_options = self_or_cls._session.storage_options
        pool = engine().pool

        async def stat(url: str) -> object:
            backend = pool.get(
                url,
                storage_options,
                connect_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            )
            return await backend.stat(join_url(url, "items.json"))

        gone = await find_orphans(rt, stat, concurrency=concurrency)
        freed = await anyio.to_thread.run_sync(lambda: rt.remove_bundles(gone, dry_run=dry_run))
        return {"removed": gone, "bundles": len(gone), "bytes_freed": freed}

    # -- the large-file policy and references -------------------------------------------------
    def list_references(self) -> dict[str, dict[str, Any]]:
        """The referenced tables: name → ``path``, ``table_format``, ``size_bytes`` (None when
        not recorded) and ``is_directory``."""
        from aiofolio.engine.storage import list_references

        return list_references(self._manifest)

    def is_reference(self, name: str) -> bool:
        """Whether ``name`` is a referenced table (its data lives outside the bundle).

        Raises:
            ItemNotFoundError: no such item.
        """
        return self._item(name).is_reference

    def is_included(self, name: str) -> bool:
        """Whether ``name``'s data is stored inside the bundle (every item but a reference).

        Raises:
            ItemNotFoundError: no such item.
        """
        return self._item(name).owns_payload

    def convert_to_reference(self, name: str, path: str | None = None) -> dict[str, Any]:
        """Store the included table ``name`` as a ``referenced_table`` (a new revision).

        Without ``path`` the reference points at the table's existing payload in the bundle
        (``<bundle>/tables/<name>--r<N>.parquet``): nothing is copied and that file stays, but
        the bundle no longer owns it. With ``path`` (absolute, ``file://`` or a cloud URI) the
        verified payload is copied there first and the bundle's copy is deleted.

        Returns:
            ``{"name", "path", "bytes_saved"}``: the reference target, and the owned payload
            bytes the bundle no longer carries.

        Raises:
            ItemNotFoundError: no such item.
            UsageError: not a single-file included table (models, arrays, ... cannot be
                references), or ``path`` already holds other bytes.
            ValueError: a relative ``path``.
            ConcurrentWriteError: another writer published first; nothing was published.
        """
        return _portal.call(self._convert_to_reference, name, path)

    async def aconvert_to_reference(self, name: str, path: str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`convert_to_reference`."""
        return await _portal.acall(self._convert_to_reference, name, path)

    async def _convert_to_reference(self, name: str, path: str | None) -> dict[str, Any]:
        from aiofolio.engine.storage import convert_to_reference

        self._writable(f"convert {name!r}")
        done = await convert_to_reference(self._session, name, path)
        self._after_write()
        return done

    def convert_to_included(self, name: str) -> dict[str, Any]:
        """Fetch the referenced table ``name`` and store it in the bundle (a new revision).

        A Parquet reference is copied byte for byte, a CSV one is read and written as Parquet.

        Returns:
            ``{"name", "path", "bytes_added"}``: the new payload's path inside the bundle and
            its size.

        Raises:
            ItemNotFoundError: no such item.
            UsageError: not a reference, or a directory dataset.
            ChecksumMismatchError: the data does not match a recorded checksum.
            ConcurrentWriteError: another writer published first; nothing was published.
        """
        return _portal.call(self._convert_to_included, name)

    async def aconvert_to_included(self, name: str) -> dict[str, Any]:
        """Async twin of :meth:`convert_to_included`."""
        return await _portal.acall(self._convert_to_included, name)

    async def _convert_to_included(self, name: str) -> dict[str, Any]:
        from aiofolio.engine.storage import convert_to_included

        self._writable(f"convert {name!r}")
        done = await convert_to_included(self._session, name)
        self._after_write()
        return done

    def _storage_threshold(self, threshold: int | str | None) -> int:
        from aiofolio.config import parse_size

        if threshold is None:
            return self.settings.large_file_threshold
        size = parse_size(threshold, source="optimize_storage(threshold=...)")
        if size is None:
            raise InvalidArgumentError("optimize_storage needs a finite threshold, not 'unlimited'")
        return size

    def optimize_storage(self, threshold: int | str | None = None) -> dict[str, Any]:
        """Convert every included table at or above ``threshold`` to a reference.

        Args:
            threshold: bytes or a size string (``"1GB"``); default ``large_file_threshold``.

        Returns:
            ``{"converted": [{"name", "path", "size_bytes"}, ...], "bytes_saved",
            "bundle_bytes_before", "bundle_bytes_after"}`` (owned payload bytes). Each
            conversion is its own commit, as :meth:`convert_to_reference` without a path.
        """
        return _portal.call(self._optimize_storage, threshold)

    async def aoptimize_storage(self, threshold: int | str | None = None) -> dict[str, Any]:
        """Async twin of :meth:`optimize_storage`."""
        return await _portal.acall(self._optimize_storage, threshold)

    async def _optimize_storage(self, threshold: int | str | None) -> dict[str, Any]:
        from aiofolio.engine.storage import optimize_storage

        self._writable("optimize storage")
        done = await optimize_storage(self._session, self._storage_threshold(threshold))
        self._after_write()
        return done
