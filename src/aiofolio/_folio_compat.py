"""The datafolio 1.x names of :class:`~aiofolio.DataFolio`, and their async twins.

Owns :class:`CompatMethods` (a mixin): ``add_table``, ``add_numpy``, ``add_json``,
``add_timestamp``, ``add_data``, ``add_artifact``, the ``get_*`` readers and
``get_table_path``/``get_artifact_path``, ``add_sklearn``/``get_sklearn``, each a thin alias
of the 2.x method it became (``add``, ``add_file``, ``add_model``, ``get``, ``get_model``,
``item_path``). No logic of its own.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from aiofolio._folio_base import FolioBase

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["CompatMethods"]


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

    def add_table(self, name: str, df: Any, **kw: Any) -> Self:
        """1.x name of :meth:`add` for tables."""
        return self.add(name, df, **kw)

    def add_numpy(self, name: str, array: Any, **kw: Any) -> Self:
        """1.x name of :meth:`add` for arrays."""
        return self.add(name, array, **kw)

    def add_json(self, name: str, data: Any, **kw: Any) -> Self:
        """1.x name of :meth:`add` for JSON data."""
        return self.add(name, data, **kw)

    def add_timestamp(self, name: str, timestamp: Any, **kw: Any) -> Self:
        """1.x name of :meth:`add` for timestamps."""
        return self.add(name, timestamp, **kw)

    def add_data(self, name: str, data: Any, **kw: Any) -> Self:
        """1.x name of :meth:`add`."""
        return self.add(name, data, **kw)

    def add_artifact(self, name: str, path: str | os.PathLike[str], **kw: Any) -> Self:
        """1.x name of :meth:`add_file` (name first)."""
        return self.add_file(path, name, **kw)

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
        return self.item_path(name)

    def get_artifact_path(self, name: str) -> str:
        """1.x: the local path of an artifact (downloaded for remote bundles)."""
        return str(self.get(name))

    # Async twins of the 1.x names.
    async def aadd_table(self, name: str, df: Any, **kw: Any) -> Self:
        """Async twin of :meth:`add_table`."""
        return await self.aadd(name, df, **kw)

    async def aadd_numpy(self, name: str, array: Any, **kw: Any) -> Self:
        """Async twin of :meth:`add_numpy`."""
        return await self.aadd(name, array, **kw)

    async def aadd_json(self, name: str, data: Any, **kw: Any) -> Self:
        """Async twin of :meth:`add_json`."""
        return await self.aadd(name, data, **kw)

    async def aadd_timestamp(self, name: str, timestamp: Any, **kw: Any) -> Self:
        """Async twin of :meth:`add_timestamp`."""
        return await self.aadd(name, timestamp, **kw)

    async def aadd_data(self, name: str, data: Any, **kw: Any) -> Self:
        """Async twin of :meth:`add_data`."""
        return await self.aadd(name, data, **kw)

    async def aadd_artifact(self, name: str, path: str | os.PathLike[str], **kw: Any) -> Self:
        """Async twin of :meth:`add_artifact`."""
        return await self.aadd_file(path, name, **kw)

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
