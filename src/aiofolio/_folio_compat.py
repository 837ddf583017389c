"""The datafolio 1.x names of :class:`~aiofolio.DataFolio`, and their async twins.

Owns :class:`CompatMethods` (a mixin): ``add_table``, ``add_numpy``, ``add_json``,
``add_timestamp``, ``add_data``, ``add_artifact``, the ``get_*`` readers and
``get_table_path``/``get_artifact_path``, ``add_sklearn``/``get_sklearn``, each a thin alias
of the 2.x method it became (``add``, ``add_file``, ``add_model``, ``get``, ``get_model``,
``item_path``). No logic of its own.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiofolio._folio_base import FolioBase
from aiofolio.errors import InvalidArgumentError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["CompatMethods", "reproduce_text"]

_TABLES = ("included_table", "referenced_table")


class CompatMethods(FolioBase):
    """The 1.x names (a mixin; see the module docstring)."""

    if TYPE_CHECKING:  # provided by DataFolio and ReadingMethods

        def add(self, name: str, obj: Any, **kw: Any) -> Self: ...

        async def aadd(self, name: str, obj: Any, **kw: Any) -> Self: ...

        def add_file(
            self,
            path: str | os.PathLike[str],
            name: str | None = None,
            *,
            category: str | None = None,
            description: str | None = None,
            overwrite: bool = False,
        ) -> Self: ...

        async def aadd_file(
            self,
            path: str | os.PathLike[str],
            name: str | None = None,
            *,
            category: str | None = None,
            description: str | None = None,
            overwrite: bool = False,
        ) -> Self: ...

        def get(self, name: str, **kw: Any) -> Any: ...

        async def aget(self, name: str, **kw: Any) -> Any: ...

        def item_path(self, name: str) -> str: ...

        def item_info(self, name: str) -> dict[str, Any]: ...

        def list_snapshots(self) -> list[dict[str, Any]]: ...

        def add_model(
            self,
            name: str,
            model: Any,
            *,
            description: str | None = None,
            inputs: list[str] | None = None,
            overwrite: bool = False,
            custom: bool = False,
        ) -> Self: ...

        async def aadd_model(
            self,
            name: str,
            model: Any,
            *,
            description: str | None = None,
            inputs: list[str] | None = None,
            overwrite: bool = False,
            custom: bool = False,
        ) -> Self: ...

        def get_model(self, name: str, trusted: bool = False) -> Any: ...

        async def aget_model(self, name: str, trusted: bool = False) -> Any: ...

    # datafolio's private views, which code and tests written for it read: copies, read-only.
    @property
    def _items(self) -> dict[str, dict[str, Any]]:
        """datafolio's ``_items``: every item entry by name (archived ones too), a copy."""
        manifest = self._view()
        return {n: self._item_in(manifest, n).to_dict() for n in self._names(manifest=manifest)}

    @property
    def _snapshots(self) -> dict[str, dict[str, Any]]:
        """datafolio's ``_snapshots``: every snapshot record by name, a copy."""
        return copy.deepcopy({k: dict(v) for k, v in self._view().snapshots.items()})

    @property
    def _pin_depth(self) -> int:
        """datafolio's ``_pin_depth``: how many ``pinned()`` blocks are open."""
        return self._pins

    def add_sklearn(self, name: str, model: Any, **kw: Any) -> Self:
        """1.x name of :meth:`add_model` (scikit-learn estimators)."""
        return self.add_model(name, model, **kw)

    async def aadd_sklearn(self, name: str, model: Any, **kw: Any) -> Self:
        """Async twin of :meth:`add_sklearn`."""
        return await self.aadd_model(name, model, **kw)

    def get_sklearn(self, name: str, trusted: bool = False) -> Any:
        """1.x name of :meth:`get_model`."""
        return self.get_model(name, trusted=trusted)

    async def aget_sklearn(self, name: str, trusted: bool = False) -> Any:
        """Async twin of :meth:`get_sklearn`."""
        return await self.aget_model(name, trusted=trusted)

    def add_table(
        self,
        name: str,
        data: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """1.x name of :meth:`add` for tables (1.3's parameter order)."""
        return self.add(
            name, data, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    def add_numpy(
        self,
        name: str,
        array: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """1.x name of :meth:`add` for arrays (1.3's parameter order)."""
        return self.add(
            name, array, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    def add_json(
        self,
        name: str,
        data: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """1.x name of :meth:`add` for JSON data (1.3's parameter order)."""
        return self.add(
            name, data, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    def add_timestamp(
        self,
        name: str,
        timestamp: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """1.x name of :meth:`add` for timestamps (1.3's parameter order)."""
        return self.add(
            name, timestamp, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    def add_data(
        self,
        name: str,
        data: Any = None,
        reference: str | os.PathLike[str] | None = None,
        description: str | None = None,
        **kw: Any,
    ) -> Self:
        """1.x name of :meth:`add`; ``reference=`` records a referenced table instead."""
        if reference is not None:
            if data is not None:
                raise InvalidArgumentError("add_data: give data or reference=, not both")
            folio: Any = self  # reference_table is DataFolio's
            made: Self = folio.reference_table(name, reference, description=description, **kw)
            return made
        if data is None:
            raise InvalidArgumentError("add_data: give data or reference=")
        return self.add(name, data, description=description, **kw)

    def add_artifact(
        self,
        name: str,
        path: str | os.PathLike[str],
        category: str | None = None,
        description: str | None = None,
        overwrite: bool = False,
    ) -> Self:
        """1.x name of :meth:`add_file` (name first)."""
        return self.add_file(
            path, name, category=category, description=description, overwrite=overwrite
        )

    def get_table(self, name: str, **opts: Any) -> Any:
        """1.x name of :meth:`get` for tables."""
        return self.get(name, **opts)

    def get_numpy(self, name: str, **opts: Any) -> Any:
        """1.x name of :meth:`get` for arrays."""
        return self.get(name, **opts)

    def get_json(self, name: str) -> Any:
        """1.x name of :meth:`get` for JSON data."""
        return self.get(name)

    def get_timestamp(self, name: str, as_unix: bool = False) -> Any:
        """1.x name of :meth:`get` for timestamps."""
        return self.get(name, as_unix=as_unix)

    def get_data(self, name: str, **opts: Any) -> Any:
        """1.x name of :meth:`get`."""
        return self.get(name, **opts)

    def get_table_path(self, name: str) -> str:
        """1.x name of :meth:`item_path` for tables."""
        return self._typed_path(name, _TABLES, "a table")

    def get_numpy_path(self, name: str) -> str:
        """1.x: :meth:`item_path` of an array (``ValueError`` for another type)."""
        return self._typed_path(name, ("numpy_array",), "a numpy array")

    def get_json_path(self, name: str) -> str:
        """1.x: :meth:`item_path` of JSON data (``ValueError`` for another type)."""
        return self._typed_path(name, ("json_data",), "JSON data")

    def get_timestamp_path(self, name: str) -> str:
        """1.x: :meth:`item_path` of a timestamp (``ValueError`` for another type)."""
        return self._typed_path(name, ("timestamp",), "a timestamp")

    def get_model_path(self, name: str) -> str:
        """1.x: :meth:`item_path` of a model (``ValueError`` for another type)."""
        return self._typed_path(name, ("model",), "a model")

    def get_item_path(self, name: str) -> str:
        """1.x name of :meth:`item_path` (any item type)."""
        return self.item_path(name)

    def get_data_path(self, name: str) -> str:
        """1.x: the path of any item, as the type-specific ``get_*_path`` gives it."""
        if self._item_in(self._view(), name).item_type == "artifact":
            return self.get_artifact_path(name)
        return self.item_path(name)

    def get_table_info(self, name: str) -> dict[str, Any]:
        """1.x: :meth:`item_info` of a table (``ValueError`` for another type)."""
        return self._typed_info(name, _TABLES, "a table")

    def get_model_info(self, name: str) -> dict[str, Any]:
        """1.x: :meth:`item_info` of a model (``ValueError`` for another type)."""
        return self._typed_info(name, ("model",), "a model")

    def get_artifact_info(self, name: str) -> dict[str, Any]:
        """1.x: :meth:`item_info` of an artifact (``ValueError`` for another type)."""
        return self._typed_info(name, ("artifact",), "an artifact")

    def _typed_info(self, name: str, types: tuple[str, ...], what: str) -> dict[str, Any]:
        self._check_type(name, types, what)
        return self.item_info(name)

    def _typed_path(self, name: str, types: tuple[str, ...], what: str) -> str:
        self._check_type(name, types, what)
        return self.item_path(name)

    def _check_type(self, name: str, types: tuple[str, ...], what: str) -> None:
        kind = self._item_in(self._view(), name).item_type  # ItemNotFoundError: a KeyError
        if kind not in types:
            raise InvalidArgumentError(f"Item {name!r} is not {what} (type: {kind})")

    def reproduce_instructions(self, snapshot: str | None = None) -> str:
        """1.x: how to reproduce a snapshot (default: the newest), as text: its code
        (git), environment, execution and expected results, from what it recorded."""
        manifest = self._view()
        if snapshot is None:
            listed = self.list_snapshots()
            if not listed:
                raise InvalidArgumentError(
                    "No snapshot specified and no snapshots exist. "
                    "Create a snapshot first or specify a snapshot name."
                )
            snapshot = str(listed[0]["name"])
        return "\n".join(reproduce_text(snapshot, manifest.snapshot(snapshot)))  # KeyError if none

    def get_artifact_path(self, name: str) -> str:
        """1.x: the local path of an artifact (downloaded for remote bundles)."""
        return str(self.get(name))

    # Async twins of the 1.x names.
    async def aadd_table(
        self,
        name: str,
        data: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """Async twin of :meth:`add_table`."""
        return await self.aadd(
            name, data, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    async def aadd_numpy(
        self,
        name: str,
        array: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """Async twin of :meth:`add_numpy`."""
        return await self.aadd(
            name, array, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    async def aadd_json(
        self,
        name: str,
        data: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """Async twin of :meth:`add_json`."""
        return await self.aadd(
            name, data, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    async def aadd_timestamp(
        self,
        name: str,
        timestamp: Any,
        description: str | None = None,
        overwrite: bool = False,
        inputs: list[str] | None = None,
        **kw: Any,
    ) -> Self:
        """Async twin of :meth:`add_timestamp`."""
        return await self.aadd(
            name, timestamp, description=description, overwrite=overwrite, inputs=inputs, **kw
        )

    async def aadd_data(
        self,
        name: str,
        data: Any = None,
        reference: str | os.PathLike[str] | None = None,
        description: str | None = None,
        **kw: Any,
    ) -> Self:
        """Async twin of :meth:`add_data`."""
        if reference is not None:
            if data is not None:
                raise InvalidArgumentError("add_data: give data or reference=, not both")
            folio: Any = self
            made: Self = await folio.areference_table(
                name, reference, description=description, **kw
            )
            return made
        if data is None:
            raise InvalidArgumentError("add_data: give data or reference=")
        return await self.aadd(name, data, description=description, **kw)

    async def aadd_artifact(
        self,
        name: str,
        path: str | os.PathLike[str],
        category: str | None = None,
        description: str | None = None,
        overwrite: bool = False,
    ) -> Self:
        """Async twin of :meth:`add_artifact`."""
        return await self.aadd_file(
            path, name, category=category, description=description, overwrite=overwrite
        )

    async def aget_data_path(self, name: str) -> str:
        """Async twin of :meth:`get_data_path`."""
        if self._item_in(self._view(), name).item_type == "artifact":
            return await self.aget_artifact_path(name)
        return self.item_path(name)

    async def aget_table(self, name: str, **opts: Any) -> Any:
        """Async twin of :meth:`get_table`."""
        return await self.aget(name, **opts)

    async def aget_numpy(self, name: str, **opts: Any) -> Any:
        """Async twin of :meth:`get_numpy`."""
        return await self.aget(name, **opts)

    async def aget_json(self, name: str) -> Any:
        """Async twin of :meth:`get_json`."""
        return await self.aget(name)

    async def aget_timestamp(self, name: str, as_unix: bool = False) -> Any:
        """Async twin of :meth:`get_timestamp`."""
        return await self.aget(name, as_unix=as_unix)

    async def aget_data(self, name: str, **opts: Any) -> Any:
        """Async twin of :meth:`get_data`."""
        return await self.aget(name, **opts)

    async def aget_artifact_path(self, name: str) -> str:
        """Async twin of :meth:`get_artifact_path`."""
        return str(await self.aget(name))


def reproduce_text(name: str, snap: Mapping[str, Any]) -> list[str]:
    """The lines of ``reproduce_instructions`` for the snapshot record ``snap``."""
    out = [f"To reproduce snapshot '{name}':"]
    if snap.get("description"):
        out.append(f"Description: {snap['description']}")
    out.append("")
    steps: list[tuple[str, list[str]]] = []
    git = snap.get("git")
    if git is not None:
        body = []
        if git.get("remote"):
            body += [f"   git clone {git['remote']}", "   cd <repository>"]
        body.append(f"   git checkout {git.get('commit_short') or str(git.get('commit', ''))[:7]}")
        if git.get("dirty"):
            body.append("   Note: Original snapshot had uncommitted changes")
        steps.append(("Restore code:", body))
    env = snap.get("environment")
    if env is not None:
        body = [f"   python --version  # Should be {env['python_version']}"]
        body = body if "python_version" in env else []
        steps.append(
            ("Restore environment:", [*body, "   uv sync  # Or: pip install -r requirements.txt"])
        )
    run = snap.get("execution")
    if run is not None:
        body = [f"   {run['entry_point']}"] if "entry_point" in run else []
        if "working_dir" in run:
            body.append(f"   # Working directory: {run['working_dir']}")
        steps.append(("Run execution:", body))
    meta = snap.get("metadata_snapshot") or {}
    if meta:
        shown = [(k, v) for k, v in list(meta.items())[:5] if k not in ("created_at", "updated_at")]
        body = [f"   - {k}: {v}" for k, v in shown]
        if len(meta) > 5:
            body.append(f"   ... and {len(meta) - 5} more fields")
        steps.append(("Expected results:", body))
    for number, (title, body) in enumerate(steps, start=1):
        out += [f"{number}. {title}", *body, ""]
    return out
