"""The cached manifest of one bundle: the TTL driver, revalidation, stale fallback, callbacks.

Owns: :class:`ManifestCache`, which the bundle's session asks for the manifest a read should
use (:meth:`ManifestCache.manifest`). Decisions come from :mod:`aiofolio.policy`; the record
of the bundle (token, last check, the raw manifest) and of its items from
:mod:`aiofolio.store.records`. Rules it keeps:

* Within the TTL: no remote request at all.
* TTL expired: one conditional request for ``items.json``, however many items. Unchanged: only
  the check time moves. Changed: the items whose version token changed are dropped (and
  downloaded again when next read), with a :class:`~aiofolio.errors.RemoteUpdateWarning` and
  the ``on_cache_invalidation`` callbacks.
* Remote unreachable: the cached copy is served with a
  :class:`~aiofolio.errors.StaleDataWarning` while younger than ``max_stale_age``.
* Every record change is a merge: the bundle fields are rewritten alone, and item records are
  dropped by name (``retain_items``), so nothing another process recorded meanwhile is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from aiofolio.backends import NOT_MODIFIED, ObjectStat
from aiofolio.bundle import Item, Manifest, parse_manifest, version_token
from aiofolio.engine._runtime import BundleScope, in_thread
from aiofolio.errors import (
    CacheError,
    NotCachedError,
    RemoteError,
    RemoteNotFoundError,
    RemotePermissionError,
    RemoteUpdateWarning,
    StaleDataWarning,
)
from aiofolio.policy import Decision, decide, diff_items, may_serve_stale
from aiofolio.store import BundleRecord, ItemRecord

__all__ = ["InvalidationCallback", "Loader", "ManifestCache", "tokens_of"]

log = logging.getLogger("aiofolio.cache")

InvalidationCallback = Callable[[dict[str, Any] | None, dict[str, Any] | None], Any]
Loader = Callable[[], Awaitable[tuple[Manifest, bytes, str | None]]]
"""A full, unconditional load from the remote: the manifest, its bytes and its token."""


def tokens_of(manifest: Manifest) -> dict[str, str]:
    """Item name -> version token of every current item (what a refresh compares)."""
    return {name: version_token(item) for name, item in manifest.current_items().items()}


class ManifestCache:
    """The cached manifest of one bundle (lives on the engine loop)."""

    def __init__(self, scope: BundleScope, reparse: Callable[[bytes], Awaitable[Manifest]]) -> None:
        self.scope = scope
        self.url = scope.url
        self.rt = scope.rt
        self.reparse = reparse
        self.callbacks: list[InvalidationCallback] = []
        self._adopted: tuple[str | None, Manifest] | None = None
        """The parsed manifest and the record token it belongs to (replaced as one value)."""
        self._memory: BundleRecord | None = None
        """A read-only cache keeps its checks here (never on disk), so the TTL still holds."""

    # -- the record ---------------------------------------------------------------------------
    def record(self) -> tuple[BundleRecord, bytes | None] | None:
        """The record the TTL decision uses: on disk, or a newer in-memory one (read-only)."""
        loaded = self.rt.records.load(self.url)
        memory = self._memory
        if memory is not None and (loaded is None or memory.last_check >= loaded[0].last_check):
            return memory, None
        return loaded

    def last_check(self) -> float | None:
        loaded = self.record()
        return loaded[0].last_check if loaded is not None else None

    def _adopt(self, record: BundleRecord, raw: bytes | None) -> Manifest | None:
        """The parsed manifest of ``record`` (parsed once per record version)."""
        adopted = self._adopted  # one read: another thread may replace it meanwhile
        if adopted is not None and adopted[0] == record.manifest_token:
            return adopted[1]
        if raw is None:
            return None
        manifest = self.rt.parsed_manifest(self.url, record.manifest_md5)
        if manifest is None:
            try:
                manifest = parse_manifest(raw, source=self.url)
            except Exception as exc:  # a damaged copy is a miss, never a crash
                log.warning("cached manifest of %s is unreadable (%s); reloading it", self.url, exc)
                return None
            self.rt.remember_manifest(self.url, record.manifest_md5, manifest)
        self._adopted = (record.manifest_token, manifest)
        return manifest

    def _adopt_fresh(self, token: str | None, manifest: Manifest, data: bytes) -> None:
        """A manifest just fetched or written: this folio's, and the process's parsed copy."""
        self._adopted = (token, manifest)
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        self.rt.remember_manifest(self.url, md5, manifest)

    def _write(
        self,
        *,
        token: str | None,
        now: float,
        data: bytes | None,
        keep: Callable[[ItemRecord], bool] | None = None,
    ) -> None:
        """Merge a check into the record (blocking): bundle fields, then dropped items."""
        if not self.scope.writes_cache:
            self._memory = BundleRecord(
                url=self.url,
                manifest_token=token,
                last_check=now,
                created_at=now,
                manifest_size=len(data) if data is not None else 0,
            )
            return

        def merge(current: BundleRecord) -> BundleRecord:
            current.manifest_token = token
            current.last_check = now
            current.created_at = current.created_at or now
            return current

        try:
            if keep is not None:
                # Items first: a reader that sees the new token never finds a stale item.
                self.rt.records.retain_items(self.url, keep)
            self.rt.records.update(self.url, merge, manifest_bytes=data)
        except OSError as exc:
            raise CacheError(f"cannot write the cache record of {self.url}: {exc}") from exc

    @staticmethod
    def _keeper(manifest: Manifest) -> Callable[[ItemRecord], bool]:
        current = tokens_of(manifest)

        def keep(rec: ItemRecord) -> bool:
            return current.get(rec.name) == rec.version_token.split("#", 1)[0]

        return keep

    # -- the decision tree ----------------------------------------------------------------------
    async def manifest(
        self, *, force: bool = False, use_stale: bool = False, loader: Loader
    ) -> tuple[Manifest, str | None]:
        """The bundle's manifest as the decision tree allows, and its remote token.

        Args:
            force: revalidate now, whatever the TTL.
            use_stale: serve the cached manifest without asking the remote.
            loader: a full, unconditional load (for a bundle not cached yet).
        """
        loaded = self.record()  # one os.stat while the record is unchanged: inline
        record, raw = loaded if loaded is not None else (None, None)
        manifest = self._adopt(record, raw) if record is not None else None
        now = self.scope.clock()
        decision = decide(
            now=now,
            last_check=record.last_check if (record is not None and manifest) else None,
            ttl=self.scope.settings.cache_ttl,
            offline=self.scope.offline,
            use_stale=use_stale,
            force=force,
        )
        if decision in (Decision.FRESH, Decision.STALE_OK):
            assert record is not None
            assert manifest is not None
            return manifest, record.manifest_token
        if decision is Decision.MISSING:
            if self.scope.offline:
                raise NotCachedError(
                    f"offline, and {self.url} is not in the cache (open it once online first)"
                )
            fresh, data, token = await loader()
            self.rt.stats.add(self.url, remote_checks=1)
            self._adopt_fresh(token, fresh, data)
            # Merged with what is on disk: another process may have cached items while this
            # one loaded the manifest; only versions the manifest no longer lists go.
            await in_thread(
                lambda: self._write(token=token, now=now, data=data, keep=self._keeper(fresh))
            )
            return fresh, token
        assert record is not None
        assert manifest is not None
        return await self._revalidate(record, manifest, now)

    def fresh_manifest(self) -> Manifest | None:
        """The cached manifest when it is within the TTL and already parsed, else None.

        Costs one ``os.stat`` and no parsing, lock or remote request; safe from any thread
        (the hit fast paths of the facade). None means "ask :meth:`manifest`".
        """
        loaded = self.record()
        if loaded is None:
            return None
        record = loaded[0]
        adopted = self._adopted
        if adopted is None or adopted[0] != record.manifest_token:
            return None
        decision = decide(
            now=self.scope.clock(),
            last_check=record.last_check,
            ttl=self.scope.settings.cache_ttl,
            offline=self.scope.offline,
            use_stale=False,
            force=False,
        )
        return adopted[1] if decision is Decision.FRESH else None

    async def _revalidate(
        self, record: BundleRecord, manifest: Manifest, now: float
    ) -> tuple[Manifest, str | None]:
        settings = self.scope.settings
        try:
            result = await self.scope.backend.fetch_if_changed(
                f"{self.url.rstrip('/')}/items.json", record.manifest_token
            )
        except (RemoteNotFoundError, RemotePermissionError):
            raise
        except RemoteError as exc:
            if may_serve_stale(
                now=now,
                last_check=record.last_check,
                fallback_to_stale=settings.fallback_to_stale,
                max_stale_age=settings.max_stale_age,
            ):
                age = now - record.last_check
                warnings.warn(
                    StaleDataWarning(
                        f"could not revalidate {self.url} ({exc}); serving the cached copy "
                        f"last checked {age:.0f} s ago"
                    ),
                    stacklevel=2,
                )
                self.rt.stats.add(self.url, stale_served=1)
                return manifest, record.manifest_token
            raise
        self.rt.stats.add(self.url, remote_checks=1)
        if result is NOT_MODIFIED:
            await in_thread(lambda: self._write(token=record.manifest_token, now=now, data=None))
            return manifest, record.manifest_token
        raw, stat = result
        fresh = await self.reparse(raw)
        await self._apply_change(manifest, fresh, fresh.to_json_bytes(), stat, now)
        return fresh, stat.token

    async def _apply_change(
        self, old: Manifest, fresh: Manifest, data: bytes, stat: ObjectStat, now: float
    ) -> None:
        changes = diff_items(tokens_of(old), tokens_of(fresh))
        self._adopt_fresh(stat.token, fresh, data)
        await in_thread(
            lambda: self._write(token=stat.token, now=now, data=data, keep=self._keeper(fresh))
        )
        who = fresh.metadata.get("updated_by") or fresh.metadata.get("author")
        when = fresh.metadata.get("updated_at")
        for change in changes:
            if change.kind == "added":
                continue
            by = f" by {who}" if who else ""
            at = f" at {when}" if when else ""
            warnings.warn(
                RemoteUpdateWarning(
                    f"item {change.name!r} of {self.url} was {change.kind} on the remote"
                    f"{by}{at}; the cached copy was dropped"
                ),
                stacklevel=3,
            )
            await self._notify(old.get_current(change.name), fresh.get_current(change.name))

    async def _notify(self, old: Item | None, new: Item | None) -> None:
        before = None if old is None else old.to_dict()
        after = None if new is None else new.to_dict()
        for callback in list(self.callbacks):
            try:
                outcome = callback(before, after)
                if asyncio.iscoroutine(outcome):
                    await outcome
            except Exception as exc:  # one bad callback must not break reads
                log.warning("on_cache_invalidation callback %r failed: %s", callback, exc)

    async def note_write(self, manifest: Manifest, data: bytes, token: str | None) -> None:
        """Our own commit published ``manifest``: the cached copy follows it (no warning)."""
        self._adopt_fresh(token, manifest, data)
        now = self.scope.clock()
        await in_thread(
            lambda: self._write(token=token, now=now, data=data, keep=self._keeper(manifest))
        )

    def expire(self) -> None:
        """Make the next read revalidate the manifest (blocking)."""
        self._memory = None

        def stale(record: BundleRecord) -> BundleRecord:
            record.last_check = 0.0
            return record

        if self.scope.writes_cache and self.rt.records.load(self.url) is not None:
            self.rt.records.update(self.url, stale)
