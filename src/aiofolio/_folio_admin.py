"""Cache-folder administration on :class:`~aiofolio.DataFolio`: listing, verifying, removing
bundles, clearing incomplete downloads, and the settings file.

Owns: :class:`AdminMethods`, the classmethods ``aiofolio cache ...`` is built on (and that
scripts can call): :meth:`~AdminMethods.list_cache`, :meth:`~AdminMethods.verify_cache`,
:meth:`~AdminMethods.clear_bundle_caches`, :meth:`~AdminMethods.cleanup_incomplete`,
:meth:`~AdminMethods.cache_config` and :meth:`~AdminMethods.edit_cache_config`, each with its
async twin; and :meth:`~AdminMethods.analyze_storage` on a folio (what ``optimize_storage``
would do). Like the rest of the facade they do no I/O of their own: the blocking work is in
:mod:`aiofolio.engine.inventory`, :mod:`aiofolio.engine.evict`, the store and
:mod:`aiofolio._config_file`, run through :mod:`aiofolio._portal`.

A ``cache_dir`` argument names the cache folder; None is the resolved ``cache_dir`` setting.
Settings of a named folder are resolved with that folder's ``config.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiofolio import _portal
from aiofolio._calls import threaded as _threaded
from aiofolio._config_file import ConfigChange
from aiofolio.config import ResolvedSettings, resolve_settings
from aiofolio.engine._runtime import runtime
from aiofolio.engine.inventory import (
    CachedBundle,
    ProgressCallback,
    VerifyReport,
    list_cached,
    repair,
    verify_blobs,
)

if TYPE_CHECKING:
    from aiofolio.bundle import Manifest
    from aiofolio.config import Settings

__all__ = ["AdminMethods", "resolved_for"]


def resolved_for(cache_dir: str | None) -> ResolvedSettings:
    """The settings (with provenance) of the cache folder ``cache_dir`` (None: the resolved
    one): ``cache_dir`` given is a call argument, so its own ``config.json`` is read."""
    return resolve_settings(call={"cache_dir": cache_dir} if cache_dir else None)


def _list(cache_dir: str | None) -> list[CachedBundle]:
    settings = resolved_for(cache_dir).settings
    return list_cached(runtime(settings.cache_dir), settings.cache_ttl)


def _verify(
    url: str | None, cache_dir: str | None, repair_: bool, progress: ProgressCallback | None
) -> VerifyReport:
    from aiofolio.engine.session import normalize_bundle_url

    rt = runtime(resolved_for(cache_dir).settings.cache_dir)
    report = verify_blobs(rt, None if url is None else normalize_bundle_url(url), progress=progress)
    if repair_ and report.problems:
        report.bytes_freed = repair(rt, report.problems)
        rt.quota.note(-report.bytes_freed)
        report.repaired = True
    return report


def _clear_bundles(urls: list[str], cache_dir: str | None, dry_run: bool) -> dict[str, Any]:
    from aiofolio.engine.session import normalize_bundle_url

    rt = runtime(resolved_for(cache_dir).settings.cache_dir)
    wanted = list(dict.fromkeys(normalize_bundle_url(u) for u in urls))
    cached = {b.url: b for b in list_cached(rt, None)}
    found = [u for u in wanted if u in cached]
    freed = rt.remove_bundles(found, dry_run=dry_run)
    return {
        "removed": found,
        "not_cached": [u for u in wanted if u not in cached],
        "bundles": len(found),
        "items": sum(len(cached[u].items) for u in found),
        "bytes_freed": freed,
        "dry_run": dry_run,
    }


def _incomplete(cache_dir: str | None, dry_run: bool) -> dict[str, Any]:
    import os

    rt = runtime(resolved_for(cache_dir).settings.cache_dir)
    found = rt.blobs.abandoned_temps(0.0, keep_resumable=False)
    removed: list[tuple[str, int]] = []
    for path, size in found:
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
        removed.append((path, size))
    return {
        "files": [path for path, _ in removed],
        "count": len(removed),
        "bytes_freed": sum(size for _, size in removed),
        "dry_run": dry_run,
    }


def _edit(cache_dir: str | None, settings: dict[str, Any], remove: list[str]) -> list[ConfigChange]:
    import os

    from aiofolio._config_file import edit_config_file
    from aiofolio.config import UNSET

    # The file settings are read from (its folder's cache_dir key may point elsewhere).
    folder = os.path.dirname(resolved_for(cache_dir).config_file)
    return edit_config_file(folder, {**settings, **dict.fromkeys(remove, UNSET)})


class AdminMethods:
    """Cache-folder administration of :class:`~aiofolio.DataFolio` (a mixin; see the module
    docstring)."""

    if TYPE_CHECKING:  # provided by DataFolio

        @property
        def settings(self) -> Settings: ...

        @property
        def _manifest(self) -> Manifest: ...

    @classmethod
    def list_cache(cls, cache_dir: str | None = None) -> list[CachedBundle]:
        """Every cached bundle of the cache folder with its cached items, sorted by URL.

        Each :class:`~aiofolio.CachedBundle` has its ``url``, ``size`` (bytes of its blobs),
        ``last_access``, ``last_check`` and ``fresh`` (manifest within ``cache_ttl``), and its
        ``items``: a :class:`~aiofolio.CachedItem` per item with ``size``, ``pinned``,
        ``priority``, ``cached_at``, ``last_access`` (epoch seconds), ``fresh`` and
        ``present`` (its blob is on disk). Scans the folder once; downloads nothing.
        """
        return _portal.call(_threaded(_list, cache_dir))

    @classmethod
    async def alist_cache(cls, cache_dir: str | None = None) -> list[CachedBundle]:
        """Async twin of :meth:`list_cache`."""
        return await _portal.acall(_threaded(_list, cache_dir))

    @classmethod
    def verify_cache(
        cls,
        url: str | None = None,
        *,
        cache_dir: str | None = None,
        repair: bool = False,
        progress: ProgressCallback | None = None,
    ) -> VerifyReport:
        """Re-hash every cached blob (or only those of the bundle ``url``) against its digest.

        Args:
            url: Only the blobs this bundle's cached items use.
            cache_dir: The cache folder.
            repair: Drop every bad blob and the item records naming it, so the next read of
                those items downloads them again.
            progress: ``progress(bytes_done, bytes_total)`` after each blob (from a worker
                thread).

        Returns:
            A :class:`~aiofolio.VerifyReport`: ``checked``, ``bytes_checked``, ``skipped``,
            ``problems`` (a :class:`~aiofolio.BlobProblem` per corrupt, wrong-size or missing
            blob, with the ``(bundle, item)`` records naming it), ``repaired``,
            ``bytes_freed``; ``ok`` is True when there is no problem.
        """
        return _portal.call(_threaded(_verify, url, cache_dir, repair, progress))

    @classmethod
    async def averify_cache(
        cls,
        url: str | None = None,
        *,
        cache_dir: str | None = None,
        repair: bool = False,
        progress: ProgressCallback | None = None,
    ) -> VerifyReport:
        """Async twin of :meth:`verify_cache`."""
        return await _portal.acall(_threaded(_verify, url, cache_dir, repair, progress))

    @classmethod
    def clear_bundle_caches(
        cls, urls: Iterable[str], cache_dir: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Remove whole bundles from the cache folder: their records, and the blobs no other
        bundle uses (blobs a process is reading stay).

        Args:
            urls: Bundle URLs (or local paths), spelled as when opened.
            dry_run: Remove nothing; report what would go.

        Returns:
            ``removed`` (the URLs that were cached), ``not_cached``, ``bundles``, ``items``,
            ``bytes_freed`` (would be freed, with ``dry_run``) and ``dry_run``.
        """
        return _portal.call(_threaded(_clear_bundles, list(urls), cache_dir, dry_run))

    @classmethod
    async def aclear_bundle_caches(
        cls, urls: Iterable[str], cache_dir: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Async twin of :meth:`clear_bundle_caches`."""
        return await _portal.acall(_threaded(_clear_bundles, list(urls), cache_dir, dry_run))

    @classmethod
    def cleanup_incomplete(
        cls, cache_dir: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Delete the partial downloads of processes that are gone, resumable ones included
        (downloads of live processes on this host stay).

        Returns:
            ``files`` (paths), ``count``, ``bytes_freed`` and ``dry_run`` (nothing deleted).
        """
        return _portal.call(_threaded(_incomplete, cache_dir, dry_run))

    @classmethod
    async def acleanup_incomplete(
        cls, cache_dir: str | None = None, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """Async twin of :meth:`cleanup_incomplete`."""
        return await _portal.acall(_threaded(_incomplete, cache_dir, dry_run))

    @classmethod
    def cache_config(cls, cache_dir: str | None = None) -> ResolvedSettings:
        """Every setting with its value and where it came from, as a folio opened now (with
        no constructor argument) would resolve them.

        Returns:
            A :class:`~aiofolio.ResolvedSettings`: ``settings``, ``sources`` (``"default"``,
            ``"env:NAME"``, ``"file:PATH"``, ``"configure_cache"``), ``config_file`` and
            ``config_file_found``; ``rows()`` gives ``(name, value text, source)``.
        """
        return _portal.call(_threaded(resolved_for, cache_dir))

    @classmethod
    async def acache_config(cls, cache_dir: str | None = None) -> ResolvedSettings:
        """Async twin of :meth:`cache_config`."""
        return await _portal.acall(_threaded(resolved_for, cache_dir))

    @classmethod
    def edit_cache_config(
        cls, cache_dir: str | None = None, *, remove: Iterable[str] = (), **settings: Any
    ) -> list[ConfigChange]:
        """Set settings in ``<cache_dir>/config.json`` (validated, written atomically).

        ``edit_cache_config(max_cache_size="100GB", cache_ttl="30m")`` sets them (the forms
        ``configure_cache`` takes; ``None`` where a setting allows it, e.g. unlimited);
        ``remove=["cache_enabled"]`` deletes keys (those settings fall back to their default).
        Other keys of the file are kept. Processes that resolve settings afterwards (a new
        folio, ``cache_info()``) see the new values, unless a higher layer (env var,
        ``configure_cache``) sets them.

        Returns:
            A :class:`~aiofolio.ConfigChange` per setting whose stored value changed.

        Raises:
            ConfigError: an unknown setting, a bad value, or an invalid existing file;
                nothing was written.
        """
        return _portal.call(_threaded(_edit, cache_dir, dict(settings), list(remove)))

    @classmethod
    async def aedit_cache_config(
        cls, cache_dir: str | None = None, *, remove: Iterable[str] = (), **settings: Any
    ) -> list[ConfigChange]:
        """Async twin of :meth:`edit_cache_config`."""
        return await _portal.acall(_threaded(_edit, cache_dir, dict(settings), list(remove)))

    def analyze_storage(self, threshold: int | str | None = None) -> dict[str, Any]:
        """What :meth:`optimize_storage` at ``threshold`` would convert, and the bundle's
        included and referenced sizes (the seed's ``analyze``; reads the loaded manifest).

        Returns:
            ``total_bytes``, ``included`` and ``references`` (``{"bytes", "items"}``),
            ``threshold`` (bytes), ``suggestions`` (``[{"name", "size_bytes"}]``, largest
            first), ``bytes_saved`` and ``percent_saved``. Sizes are those the manifest
            records (datafolio records none for arrays, JSON and models: they count 0).
        """
        from aiofolio.engine.storage import analyze_storage

        limit = self._storage_threshold(threshold)  # type: ignore[attr-defined]
        return analyze_storage(self._manifest, limit)
