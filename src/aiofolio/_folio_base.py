"""The state every part of :class:`~aiofolio.DataFolio` shares, and which manifest it views.

Owns :class:`FolioBase`, the base of ``DataFolio`` and its mixins (``_folio_snapshots``,
``_folio_curation``, ``_folio_reading``, ``_folio_compat``): the session, the snapshot a
view is pinned to, ``pinned()`` blocks, and the one rule for which manifest a call sees
(:meth:`FolioBase._view`): a pinned block's manifest, else a batch's staged one, else the
session's; before that, an uncached local bundle adopts another writer's newer revision
(datafolio's auto-refresh: one ``os.stat`` while nothing changed). No I/O of its own beyond
that stat: the rest runs on the engine through :mod:`aiofolio._portal`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiofolio import _portal
from aiofolio.bundle import Item, Manifest
from aiofolio.engine.reads import resolve
from aiofolio.errors import ReadOnlyError

if TYPE_CHECKING:
    from typing_extensions import Self

    from aiofolio.config import ResolvedSettings, Settings
    from aiofolio.engine.session import BundleSession
    from aiofolio.folio import MetadataDict

__all__ = ["FolioBase"]


class FolioBase:
    """Shared state and plumbing of ``DataFolio`` (see the module docstring)."""

    _session: BundleSession
    _snapshot: str | None
    _resolved: ResolvedSettings
    _max_eager_bytes: int | None
    _metadata: MetadataDict
    _created: bool
    _pins: int = 0
    _pinned: Manifest | None = None

    # -- which manifest a call sees --------------------------------------------------------
    @property
    def _manifest(self) -> Manifest:
        pinned = self._pinned
        if pinned is not None:
            return pinned
        return self._session.working_manifest()

    def _follow(self) -> None:
        """Adopt another writer's newer revision (uncached local bundles; sync callers)."""
        if self._pinned is not None or self._snapshot is not None:
            return
        if _portal.in_engine_thread() or not self._session.local_changed():
            return
        _portal.call(self._reload)

    async def _afollow(self) -> None:
        """Async twin of :meth:`_follow` (from the caller's event loop)."""
        if self._pinned is not None or self._snapshot is not None:
            return
        if _portal.in_engine_thread() or not self._session.local_changed():
            return
        await _portal.acall(self._reload)

    def _view(self) -> Manifest:
        """The manifest of this call, after following other local writers."""
        self._follow()
        return self._manifest

    async def _aview(self) -> Manifest:
        await self._afollow()
        return self._manifest

    async def _reload(self) -> None:
        await self._session.load(force=True)
        self._after_write()

    # -- plumbing ------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        """The resolved settings of this folio."""
        return self._resolved.settings

    def _names(self, include_archived: bool = True, manifest: Manifest | None = None) -> list[str]:
        m = self._manifest if manifest is None else manifest
        if self._snapshot is not None:
            names = list(m.snapshot_items(self._snapshot))
            if include_archived:
                return names
            return [n for n in names if not m.resolve_snapshot(self._snapshot, n).archived]
        return m.names(include_archived=include_archived)

    def _item(self, name: str) -> Item:
        return self._item_in(self._manifest, name)

    def _item_in(self, manifest: Manifest, name: str) -> Item:
        return resolve(manifest, name, self._snapshot)

    def _writable(self, what: str) -> None:
        if self._snapshot is not None:
            raise ReadOnlyError(
                f"snapshot view {self._snapshot!r} of {self._session.url} is read-only: "
                f"cannot {what}"
            )

    def _metadata_source(self) -> dict[str, Any]:
        """What ``metadata`` shows: the bundle's, or the snapshot's for a snapshot view."""
        manifest = self._manifest
        if self._snapshot is not None:
            return dict(manifest.snapshot(self._snapshot).get("metadata_snapshot") or {})
        return dict(manifest.metadata)

    def _after_write(self) -> None:
        if self._pinned is not None:  # our own write is visible inside the block
            self._pinned = self._session.working_manifest()
        self._metadata._refill(self._metadata_source())

    def _pin(self) -> None:
        """Enter a ``pinned()`` block (the outermost one fixes the manifest)."""
        if self._pins == 0:
            self._pinned = self._view()
        self._pins += 1

    async def _apin(self) -> None:
        if self._pins == 0:
            self._pinned = await self._aview()
        self._pins += 1

    def _unpin(self) -> None:
        self._pins -= 1
        if self._pins == 0:
            self._pinned = None

    def _self(self) -> Self:
        return self
