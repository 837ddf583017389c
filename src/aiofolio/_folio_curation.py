"""Curation and lineage of :class:`~aiofolio.DataFolio`, as datafolio 2.3.0 has them.

Owns :class:`CurationMethods` (a mixin): ``archive``/``unarchive``, ``update_item``,
``copy`` (a fork: current versions only), ``import_table``, ``inspect_table``,
``cleanup_orphaned_versions``, ``mutable_references``, the lineage queries (``get_inputs``,
``get_dependents``, ``get_lineage_graph``) and ``set_alias``. Plans are the pure functions
of :mod:`aiofolio.bundle.curation` and :mod:`aiofolio.bundle.snapshots`; writes run the
session's commit on the engine through :mod:`aiofolio._portal`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiofolio import _portal, _registry
from aiofolio._calls import kw as _kw
from aiofolio._folio_base import FolioBase
from aiofolio._version import __version__
from aiofolio.backends import join_url, scheme_of
from aiofolio.bundle import ITEMS_FILE, Item
from aiofolio.bundle import curation as cur
from aiofolio.bundle import snapshots as snaps
from aiofolio.engine.session import normalize_bundle_url
from aiofolio.engine.tables import inspect_table as _inspect
from aiofolio.errors import InvalidArgumentError

if TYPE_CHECKING:
    from typing_extensions import Self

    from aiofolio.folio import DataFolio

__all__ = ["CurationMethods"]


class CurationMethods(FolioBase):
    """Curation and lineage of ``DataFolio`` (a mixin; see the module docstring)."""

    if TYPE_CHECKING:  # provided by SnapshotMethods

        def _new_bundle(
            self, target: str | os.PathLike[str], *, refuse_existing: bool = True
        ) -> DataFolio: ...

    # -- archive, update ---------------------------------------------------------------------------
    def archive(self, name: str | list[str]) -> Self:
        """Hide items from default listings, ``describe`` and ``copy`` (not deleted; ``get``
        still reads them). ``name``: a name, a list of names, or a glob (``"tmp/*"``).

        Raises:
            ItemNotFoundError: a plain (non-glob) name has no item (a ``KeyError``).
        """
        return _portal.call(self._archive, name, True)

    async def aarchive(self, name: str | list[str]) -> Self:
        """Async twin of :meth:`archive`."""
        return await _portal.acall(self._archive, name, True)

    def unarchive(self, name: str | list[str]) -> Self:
        """Show archived items again (a name, a list of names, or a glob)."""
        return _portal.call(self._archive, name, False)

    async def aunarchive(self, name: str | list[str]) -> Self:
        """Async twin of :meth:`unarchive`."""
        return await _portal.acall(self._archive, name, False)

    async def _archive(self, name: str | list[str], archived: bool) -> Self:
        what = "archive items" if archived else "unarchive items"
        self._writable(what)
        names = cur.select_names(self._session.working_manifest(), name)
        await self._session.edit(what, lambda m: cur.plan_archive(m, names, archived=archived))
        self._after_write()
        return self._self()

    def update_item(
        self, name: str, description: str | None = None, inputs: list[str] | None = None
    ) -> Self:
        """Change an item's description or inputs (None leaves a field, ``""``/``[]`` removes
        it). A version a snapshot pins is copy-on-write: the snapshot keeps its entry.

        Raises:
            ItemNotFoundError: no such item (a ``KeyError``).
        """
        return _portal.call(self._update_item, name, description, inputs)

    async def aupdate_item(
        self, name: str, description: str | None = None, inputs: list[str] | None = None
    ) -> Self:
        """Async twin of :meth:`update_item`."""
        return await _portal.acall(self._update_item, name, description, inputs)

    async def _update_item(
        self, name: str, description: str | None, inputs: list[str] | None
    ) -> Self:
        self._writable(f"update {name!r}")
        await self._session.edit(
            f"update {name!r}",
            lambda m: cur.plan_update_item(m, name, description=description, inputs=inputs),
        )
        self._after_write()
        return self._self()

    # -- versions ------------------------------------------------------------------------------
    def cleanup_orphaned_versions(self, dry_run: bool = False) -> list[str]:
        """Drop versions that are neither current nor pinned by a snapshot, and their
        payloads; returns their file names (only listed with ``dry_run``)."""
        return _portal.call(self._cleanup_versions, dry_run)

    async def acleanup_orphaned_versions(self, dry_run: bool = False) -> list[str]:
        """Async twin of :meth:`cleanup_orphaned_versions`."""
        return await _portal.acall(self._cleanup_versions, dry_run)

    async def _cleanup_versions(self, dry_run: bool) -> list[str]:
        orphans = snaps.orphaned_versions(self._session.working_manifest())
        names = [str(i.get("filename")) for i in orphans if i.get("filename")]
        if dry_run or not orphans:
            return names
        self._writable("clean up orphaned versions")
        await self._session.edit("clean up orphaned versions", snaps.plan_cleanup_orphans)
        self._after_write()
        return names

    def mutable_references(self) -> list[str]:
        """Names of the referenced tables: their bytes are not the bundle's, so a snapshot
        keeps the link, not the content."""
        return cur.mutable_references(self._view())

    # -- lineage -------------------------------------------------------------------------------
    def _lineage_items(self) -> dict[str, Item]:
        """The items lineage is about: the current ones, or a snapshot view's."""
        manifest = self._view()
        return {n: self._item_in(manifest, n) for n in self._names(manifest=manifest)}

    def get_inputs(self, item_name: str) -> list[str]:
        """The items ``item_name`` was derived from (``ItemNotFoundError`` if none such)."""
        return cur.inputs_of(self._lineage_items(), item_name)

    def get_dependents(self, item_name: str) -> list[str]:
        """The items that list ``item_name`` among their inputs."""
        return cur.dependents_of(self._lineage_items(), item_name)

    def get_lineage_graph(self) -> dict[str, list[str]]:
        """Every item's inputs, by name."""
        return cur.lineage_graph(self._lineage_items())

    # -- tables ------------------------------------------------------------------------------------
    def import_table(
        self,
        name: str | None,
        path: str | os.PathLike[str],
        *,
        table_format: str | None = None,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        block_size: int | None = None,
    ) -> Self:
        """Store a local table file as a Parquet table without loading it whole.

        Parquet is copied byte for byte; ``csv`` is converted block by block
        (``block_size`` bytes; types inferred from the first block); ``feather``/``arrow``
        (Arrow IPC) one record batch at a time. ``table_format`` defaults to the extension;
        ``name`` None is the file name without extension.

        Raises:
            FileNotFoundError: no such file.
            ValueError: an unknown format, a bad or existing name (without ``overwrite``), or
                a CSV value that does not fit its column's type.
        """
        source = os.fspath(path)
        return _portal.call(
            _kw(
                self._import_table,
                name or Path(source).stem,
                source,
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                block_size=block_size,
            )
        )

    async def aimport_table(
        self,
        name: str | None,
        path: str | os.PathLike[str],
        *,
        table_format: str | None = None,
        description: str | None = None,
        inputs: list[str] | None = None,
        overwrite: bool = False,
        block_size: int | None = None,
    ) -> Self:
        """Async twin of :meth:`import_table`."""
        source = os.fspath(path)
        return await _portal.acall(
            _kw(
                self._import_table,
                name or Path(source).stem,
                source,
                table_format=table_format,
                description=description,
                inputs=inputs,
                overwrite=overwrite,
                block_size=block_size,
            )
        )

    async def _import_table(self, name: str, path: str, **kw: Any) -> Self:
        self._writable(f"import {name!r}")
        await self._session.import_table(name, path, **kw)
        self._after_write()
        return self._self()

    def inspect_table(self, name: str) -> dict[str, Any]:
        """Read a referenced table's schema, size and identity where it lives, record them in
        its entry (one commit) and return the entry; an included table's entry as it is.

        Raises:
            ItemNotFoundError: no such item (a ``KeyError``).
            InvalidArgumentError: not a table (a ``ValueError``).
            FileNotFoundError: the referenced object does not exist.
        """
        return _portal.call(self._inspect_table, name)

    async def ainspect_table(self, name: str) -> dict[str, Any]:
        """Async twin of :meth:`inspect_table`."""
        return await _portal.acall(self._inspect_table, name)

    async def _inspect_table(self, name: str) -> dict[str, Any]:
        item = self._session.working_manifest().current(name)
        if item.is_reference:
            self._writable(f"inspect {name!r}")
        entry = await _inspect(self._session, name)
        self._after_write()
        return entry

    # -- copies ------------------------------------------------------------------------------------
    def copy(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        metadata_updates: dict[str, Any] | None = None,
        include_items: list[str] | None = None,
        exclude_items: list[str] | None = None,
        random_suffix: bool = False,
        follow_lineage: bool = False,
        include_archived: bool = False,
    ) -> DataFolio:
        """A new bundle at ``path`` (``path/name`` with ``name``) with the current version of
        the chosen items (payloads copied verified, byte for byte; references stay
        references), the metadata plus ``metadata_updates``, and no history or snapshots.

        ``include_items`` (with ``follow_lineage``: and everything they derive from) or
        ``exclude_items`` choose the items; archived items come only with
        ``include_archived`` or by name.

        Raises:
            InvalidArgumentError: both ``include_items`` and ``exclude_items``, or the
                destination already holds a bundle (a ``ValueError``).
            ItemNotFoundError: an included name has no item (a ``KeyError``).
        """
        dest, names = self._copy_plan(
            path,
            name,
            include_items,
            exclude_items,
            random_suffix,
            follow_lineage,
            include_archived,
        )
        return _portal.call(self._copy, dest, names, metadata_updates)

    async def acopy(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        metadata_updates: dict[str, Any] | None = None,
        include_items: list[str] | None = None,
        exclude_items: list[str] | None = None,
        random_suffix: bool = False,
        follow_lineage: bool = False,
        include_archived: bool = False,
    ) -> DataFolio:
        """Async twin of :meth:`copy`."""
        dest, names = self._copy_plan(
            path,
            name,
            include_items,
            exclude_items,
            random_suffix,
            follow_lineage,
            include_archived,
        )
        return await _portal.acall(self._copy, dest, names, metadata_updates)

    def _copy_plan(
        self,
        path: str | os.PathLike[str],
        name: str | None,
        include: list[str] | None,
        exclude: list[str] | None,
        random_suffix: bool,
        follow_lineage: bool,
        include_archived: bool,
    ) -> tuple[DataFolio, list[str]]:
        if include is not None and exclude is not None:
            raise InvalidArgumentError("Cannot specify both include_items and exclude_items")
        manifest = self._view()
        visible = manifest.names(include_archived=include_archived)
        if include is not None:
            cur.require_items(manifest, include)
            names = cur.follow_lineage(manifest, include) if follow_lineage else list(include)
            # as datafolio: archived items (named, or reached through lineage) are copied
            # only with include_archived=True
            names = [n for n in names if n in set(visible)]
        else:
            names = [n for n in visible if n not in set(exclude or ())]
        target = os.fspath(path)
        if name is not None:
            target = join_url(target, name) if "://" in target else os.path.join(target, name)
        if random_suffix:
            target = f"{target.rstrip('/')}-{secrets.token_hex(3)}"
        if scheme_of(target) == "file":
            root = Path(normalize_bundle_url(target))
            if (root / ITEMS_FILE).exists():
                raise InvalidArgumentError(
                    f"copy() destination already contains a folio: {root}. Use a fresh path."
                )
            if root.exists() and (not root.is_dir() or any(root.iterdir())):
                raise InvalidArgumentError(f"copy() destination is not empty: {root}")
        return self._new_bundle(target, refuse_existing=False), names

    async def _copy(
        self, dest: DataFolio, names: list[str], updates: Mapping[str, Any] | None
    ) -> DataFolio:
        from aiofolio.folio import MetadataDict

        manifest = cur.copy_manifest(
            self._manifest,  # inside pinned(): the pinned revision
            names,
            metadata_updates=updates,
            source=dest._session.url,
            version=__version__,
        )
        await self._session.copy_into(dest._session, manifest)
        dest._metadata = MetadataDict(dest, dest._metadata_source())
        return dest

    # -- the registry ------------------------------------------------------------------------------
    def set_alias(self, alias: str, overwrite: bool = False) -> Self:
        """Register this folio under ``alias`` in the per-user registry datafolio keeps.

        Raises:
            InvalidArgumentError: a bad alias, or one bound elsewhere without ``overwrite``
                (a ``ValueError``).
        """
        _registry.set_alias(alias, self._session.url, overwrite=overwrite)
        return self._self()

    async def aset_alias(self, alias: str, overwrite: bool = False) -> Self:
        """Async twin of :meth:`set_alias` (the registry is a small local file)."""
        return self.set_alias(alias, overwrite)
