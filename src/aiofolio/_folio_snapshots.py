"""The snapshot half of :class:`~aiofolio.DataFolio`, as datafolio 2.3.0 has it.

Owns :class:`SnapshotMethods` (a mixin): ``create_snapshot``, ``delete_snapshot``,
``restore_snapshot``, ``list_snapshots``, ``get_snapshot_info``, ``diff_from_snapshot``,
``compare_snapshots``, ``export_snapshot``, the read-only snapshot views (``get_snapshot``,
the classmethod ``load_snapshot``, ``in_snapshot_mode``, ``loaded_snapshot``) and the
``snapshots`` mapping (:class:`SnapshotAccessor` of :class:`SnapshotView`). The plans and
comparisons are the pure functions of :mod:`aiofolio.bundle.snapshots`; writes run the
session's commit on the engine through :mod:`aiofolio._portal`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiofolio import _portal
from aiofolio._calls import kw as _kw
from aiofolio._folio_base import FolioBase
from aiofolio._version import __version__
from aiofolio.bundle import snapshots as snaps
from aiofolio.errors import InvalidArgumentError, ItemNotFoundError, UsageError

if TYPE_CHECKING:
    from typing_extensions import Self

    from aiofolio.folio import DataFolio

__all__ = ["SnapshotAccessor", "SnapshotMethods", "SnapshotView"]


class SnapshotMethods(FolioBase):
    """Snapshots of ``DataFolio`` (a mixin; see the module docstring)."""

    # -- taking, removing, restoring ---------------------------------------------------------------
    def create_snapshot(
        self,
        name: str,
        description: str | None = None,
        tags: list[str] | None = None,
        capture_git: bool = True,
        capture_environment: bool = False,
        capture_execution: bool = False,
    ) -> Self:
        """Pin the current version of every item, and the metadata, under ``name``.

        Later overwrites and deletes keep the pinned versions (copy-on-write). With
        ``capture_git`` the repository state of the working directory is recorded
        (``commit``, ``commit_short``, ``branch``, ``dirty``); ``capture_environment``
        records the Python version and platform (never environment variables);
        ``capture_execution`` the working directory and entry point.

        Raises:
            ValueError: an invalid name, or a snapshot of that name exists.
            UsageError: inside a ``batch()`` block.
        """
        return _portal.call(
            _kw(
                self._create_snapshot,
                name,
                description,
                tags,
                capture_git,
                capture_environment,
                capture_execution,
            )
        )

    async def acreate_snapshot(
        self,
        name: str,
        description: str | None = None,
        tags: list[str] | None = None,
        capture_git: bool = True,
        capture_environment: bool = False,
        capture_execution: bool = False,
    ) -> Self:
        """Async twin of :meth:`create_snapshot`."""
        return await _portal.acall(
            _kw(
                self._create_snapshot,
                name,
                description,
                tags,
                capture_git,
                capture_environment,
                capture_execution,
            )
        )

    async def _create_snapshot(
        self,
        name: str,
        description: str | None,
        tags: list[str] | None,
        git: bool,
        env: bool,
        execution: bool,
    ) -> Self:
        self._writable(f"create snapshot {name!r}")
        await self._session.create_snapshot(
            name,
            description=description,
            tags=tags,
            git=git,
            environment=env,
            execution=execution,
        )
        self._after_write()
        return self._self()

    def delete_snapshot(self, name: str, cleanup_orphans: bool = False) -> Self:
        """Remove snapshot ``name``; with ``cleanup_orphans`` also the versions only it kept
        (descriptors and payloads).

        Raises:
            ItemNotFoundError: no such snapshot (a ``KeyError``).
        """
        return _portal.call(self._delete_snapshot, name, cleanup_orphans)

    async def adelete_snapshot(self, name: str, cleanup_orphans: bool = False) -> Self:
        """Async twin of :meth:`delete_snapshot`."""
        return await _portal.acall(self._delete_snapshot, name, cleanup_orphans)

    async def _delete_snapshot(self, name: str, cleanup_orphans: bool) -> Self:
        self._writable(f"delete snapshot {name!r}")
        if self._session.staging:
            raise UsageError("delete_snapshot() cannot run inside a batch() block")
        await self._session.edit(
            f"delete snapshot {name!r}",
            lambda m: snaps.plan_delete_snapshot(m, name, cleanup_orphans=cleanup_orphans),
        )
        self._after_write()
        return self._self()

    def restore_snapshot(self, snapshot: str, confirm: bool = False) -> Self:
        """Make ``snapshot``'s versions and metadata the working state (DESTRUCTIVE).

        Items added since are removed, items deleted since come back; a replaced working
        version is kept while another snapshot pins it. The snapshot itself stays.

        Raises:
            InvalidArgumentError: ``confirm`` is not True (a ``ValueError``).
            ItemNotFoundError: no such snapshot (a ``KeyError``).
        """
        return _portal.call(self._restore_snapshot, snapshot, confirm)

    async def arestore_snapshot(self, snapshot: str, confirm: bool = False) -> Self:
        """Async twin of :meth:`restore_snapshot`."""
        return await _portal.acall(self._restore_snapshot, snapshot, confirm)

    async def _restore_snapshot(self, snapshot: str, confirm: bool) -> Self:
        self._writable(f"restore snapshot {snapshot!r}")
        if confirm is not True:
            raise InvalidArgumentError(
                "restore_snapshot requires confirm=True as this is a destructive operation"
            )
        await self._session.edit(
            f"restore snapshot {snapshot!r}",
            lambda m: snaps.plan_restore_snapshot(m, snapshot),
        )
        self._after_write()
        return self._self()

    # -- looking at snapshots ------------------------------------------------------------------
    def list_snapshots(self) -> list[dict[str, Any]]:
        """Snapshots with name, timestamp, description, tags and item count; newest first."""
        return snaps.list_snapshots(self._view())

    def get_snapshot_info(self, snapshot: str) -> dict[str, Any]:
        """The snapshot's full record (a copy), flagging the referenced tables it contains
        (``mutable_references``, ``mutable_reference_warning``).

        Raises:
            ItemNotFoundError: no such snapshot (a ``KeyError``).
        """
        return snaps.snapshot_info(self._view(), snapshot)

    def diff_from_snapshot(self, snapshot: str | None = None) -> dict[str, Any]:
        """What changed since ``snapshot`` (default: the newest): ``snapshot_name``,
        ``added_items``, ``removed_items``, ``modified_items``, ``unchanged_items``,
        ``metadata_changes`` (``{key: (then, now)}``).

        Raises:
            ItemNotFoundError: no such snapshot (a ``KeyError``).
            InvalidArgumentError: ``snapshot`` is None and there are none (a ``ValueError``).
        """
        return snaps.diff_from_snapshot(self._view(), snapshot)

    def compare_snapshots(self, snapshot1: str, snapshot2: str) -> dict[str, Any]:
        """The differences from ``snapshot1`` to ``snapshot2``: ``added_items``,
        ``removed_items``, ``modified_items``, ``shared_items``, ``metadata_changes``."""
        return snaps.compare_snapshots(self._view(), snapshot1, snapshot2)

    @property
    def snapshots(self) -> SnapshotAccessor:
        """The snapshots by name: ``folio.snapshots["v1"].get("table")``, ``"v1" in ...``."""
        return SnapshotAccessor(self)

    @property
    def in_snapshot_mode(self) -> bool:
        """Whether this folio is a read-only snapshot view (``load_snapshot``/``get_snapshot``)."""
        return self._snapshot is not None

    @property
    def loaded_snapshot(self) -> str | None:
        """The snapshot this view shows, or None."""
        return self._snapshot

    # -- snapshot views ------------------------------------------------------------------------
    def get_snapshot(self, snapshot: str) -> DataFolio:
        """A read-only view of the bundle as ``snapshot`` pinned it (items and metadata).

        Raises:
            ItemNotFoundError: no such snapshot (a ``KeyError``).
        """
        from aiofolio.folio import DataFolio, MetadataDict

        self._view().snapshot(snapshot)  # raises ItemNotFoundError for an unknown name
        view = DataFolio.__new__(DataFolio)
        view._init_state(
            self._session.url,
            read_only=True,
            random_suffix=False,
            max_eager_bytes=self._max_eager_bytes,
            storage_options=None,
            settings={},
            session=self._session,
            snapshot=snapshot,
        )
        view._resolved = self._resolved
        view._created = False
        view._metadata = MetadataDict(view, view._metadata_source())
        return view

    @classmethod
    def load_snapshot(
        cls,
        bundle_dir: str | os.PathLike[str],
        snapshot: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> DataFolio:
        """Open the bundle at ``bundle_dir`` read-only, as ``snapshot`` pinned it
        (``storage_options`` and settings as for the constructor).

        Raises:
            RemoteNotFoundError: no bundle there.
            ItemNotFoundError: no such snapshot (a ``KeyError``).
        """
        from aiofolio.folio import DataFolio

        folio = DataFolio(
            bundle_dir,
            read_only=True,
            create=False,
            storage_options=storage_options,
            **settings,
        )
        return folio.get_snapshot(snapshot)

    @classmethod
    async def aload_snapshot(
        cls,
        bundle_dir: str | os.PathLike[str],
        snapshot: str,
        *,
        storage_options: Mapping[str, Any] | None = None,
        **settings: Any,
    ) -> DataFolio:
        """Async twin of :meth:`load_snapshot`."""
        from aiofolio.folio import DataFolio

        folio = await DataFolio.aopen(
            bundle_dir,
            read_only=True,
            create=False,
            storage_options=storage_options,
            **settings,
        )
        return folio.get_snapshot(snapshot)

    def export_snapshot(
        self,
        snapshot: str,
        target_path: str | os.PathLike[str],
        *,
        include_snapshot_metadata: bool = True,
    ) -> DataFolio:
        """A new, history-free bundle at ``target_path`` with ``snapshot``'s items (payloads
        copied verified, byte for byte) and metadata (plus ``_source_snapshot`` unless
        ``include_snapshot_metadata=False``).

        Raises:
            ItemNotFoundError: no such snapshot (a ``KeyError``).
            InvalidArgumentError: ``target_path`` exists (a ``ValueError``).
        """
        dest = self._new_bundle(target_path)
        return _portal.call(self._export, snapshot, dest, include_snapshot_metadata)

    async def aexport_snapshot(
        self,
        snapshot: str,
        target_path: str | os.PathLike[str],
        *,
        include_snapshot_metadata: bool = True,
    ) -> DataFolio:
        """Async twin of :meth:`export_snapshot`."""
        dest = self._new_bundle(target_path)
        return await _portal.acall(self._export, snapshot, dest, include_snapshot_metadata)

    def _new_bundle(
        self, target: str | os.PathLike[str], *, refuse_existing: bool = True
    ) -> DataFolio:
        """An unopened folio for a bundle about to be created at ``target`` (with
        ``refuse_existing``, a local target that exists at all is refused, as datafolio's
        ``export_snapshot`` refuses it)."""
        from aiofolio.folio import DataFolio

        dest = DataFolio.__new__(DataFolio)
        dest._init_state(
            target,
            read_only=False,
            random_suffix=False,
            max_eager_bytes=self._max_eager_bytes,
            storage_options=self._session.storage_options,
            # The new bundle's session reads with this folio's own constructor settings.
            settings={
                name: getattr(self._resolved.settings, name)
                for name, source in self._resolved.sources.items()
                if source == "constructor"
            },
        )
        dest._resolved = self._resolved
        dest._created = True
        if refuse_existing and dest._session.is_local and Path(dest._session.url).exists():
            raise InvalidArgumentError(f"Target path already exists: {dest._session.url}")
        return dest

    async def _export(self, snapshot: str, dest: DataFolio, with_meta: bool) -> DataFolio:
        from aiofolio.folio import MetadataDict

        manifest = snaps.export_manifest(
            self._session.require_manifest(),
            snapshot,
            source=self._session.url,
            include_snapshot_metadata=with_meta,
            version=__version__,
        )
        await self._session.copy_into(dest._session, manifest)
        dest._metadata = MetadataDict(dest, dest._metadata_source())
        return dest


class SnapshotView:
    """One snapshot of ``folio.snapshots``: its record, and its items read as pinned."""

    __slots__ = ("_folio", "_name")

    def __init__(self, folio: SnapshotMethods, name: str) -> None:
        self._folio = folio
        self._name = name

    def _record(self) -> Mapping[str, Any]:
        return self._folio._view().snapshot(self._name)

    @property
    def name(self) -> str:
        """The snapshot's name."""
        return self._name

    @property
    def metadata(self) -> dict[str, Any]:
        """The bundle metadata as the snapshot recorded it (a copy)."""
        return dict(self._record().get("metadata_snapshot") or {})

    @property
    def timestamp(self) -> str | None:
        """When the snapshot was taken (ISO 8601, UTC)."""
        value = self._record().get("timestamp")
        return None if value is None else str(value)

    @property
    def description(self) -> str | None:
        """The snapshot's description, or None."""
        value = self._record().get("description")
        return None if value is None else str(value)

    @property
    def tags(self) -> list[str]:
        """The snapshot's tags."""
        return list(self._record().get("tags") or [])

    @property
    def item_versions(self) -> dict[str, str]:
        """The pinned version of each item, by name."""
        return dict(self._record().get("item_versions") or {})

    def get(self, name: str, frame: str = "pandas") -> Any:
        """The item ``name`` as the snapshot pinned it (tables as ``frame``)."""
        view = self._folio.get_snapshot(self._name)
        item = view._item(name)
        if item.item_type in ("included_table", "referenced_table"):
            return view.get(name, frame=frame)
        return view.get(name)

    async def aget(self, name: str, frame: str = "pandas") -> Any:
        """Async twin of :meth:`get`."""
        view = self._folio.get_snapshot(self._name)
        item = view._item(name)
        if item.item_type in ("included_table", "referenced_table"):
            return await view.aget(name, frame=frame)
        return await view.aget(name)

    def get_table(self, name: str, frame: str = "pandas") -> Any:
        """A table as the snapshot pinned it."""
        return self._folio.get_snapshot(self._name).get(name, frame=frame)

    def scan_table(self, name: str, **kwargs: Any) -> Any:
        """A pinned table as a polars ``LazyFrame``."""
        return self._folio.get_snapshot(self._name).scan_table(name, **kwargs)

    def __repr__(self) -> str:
        return f"SnapshotView({self._name!r}, items={len(self.item_versions)})"


class SnapshotAccessor(Mapping[str, SnapshotView]):
    """``folio.snapshots``: a read-only mapping of snapshot name to :class:`SnapshotView`."""

    __slots__ = ("_folio",)

    def __init__(self, folio: SnapshotMethods) -> None:
        self._folio = folio

    def __getitem__(self, name: str) -> SnapshotView:
        if name not in self._folio._view().snapshots:
            raise ItemNotFoundError(f"Snapshot {name!r} not found")
        return SnapshotView(self._folio, name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._folio._view().snapshots))

    def __len__(self) -> int:
        return len(self._folio._view().snapshots)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._folio._view().snapshots

    def __repr__(self) -> str:
        return f"SnapshotAccessor({list(self)!r})"
