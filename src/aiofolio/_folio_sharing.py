"""The sharing half of :class:`~aiofolio.DataFolio`: cache export/import and item file handles.

Owns: :class:`SharingMethods`, the mixin ``DataFolio`` inherits ``export_cache`` /
``import_cache`` (issue 15: a warm cache handed to another machine as a verified ``.tar.gz``;
the work is :mod:`aiofolio.engine.sharing`'s) and ``open_item`` / ``aopen_item`` (a binary,
read-only file object over an item's verified blob, fetched first when not cached; the blob
is marked in use for every process while the handle is open, so no eviction removes it).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import IO, TYPE_CHECKING, Any

from aiofiles.threadpool.binary import AsyncBufferedReader

from aiofolio import _portal
from aiofolio._calls import threaded as _threaded
from aiofolio.config import resolve_settings
from aiofolio.engine._runtime import runtime
from aiofolio.engine.sharing import export_bundle, import_archive

if TYPE_CHECKING:
    from aiofolio.bundle import Item
    from aiofolio.config import Settings
    from aiofolio.engine.session import BundleSession

__all__ = ["SharingMethods"]


class _Handle:
    """The owner of an open handle's in-use mark (weak-referenceable)."""


class SharingMethods:
    """Export/import and file handles of :class:`~aiofolio.DataFolio` (a mixin)."""

    if TYPE_CHECKING:  # provided by DataFolio
        _session: BundleSession

        @property
        def settings(self) -> Settings: ...

        def _item(self, name: str) -> Item: ...

    # -- export and import --------------------------------------------------------------------
    def export_cache(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Write this bundle's cached manifest, item records and blobs to the ``.tar.gz`` ``path``.

        Only the cached current versions go in (nothing is downloaded; ``warm_cache`` first
        for a complete export); every blob is re-hashed on the way. ``path`` appears complete
        or not at all. Returns ``path``, ``bundle``, ``items``, ``blobs``, ``bytes`` (blob
        bytes) and ``archive_bytes``.

        Raises:
            CacheError: caching is off, or nothing of the bundle is cached.
            ChecksumMismatchError: a cached blob no longer matches its record.
        """
        return _portal.call(self._export_cache, os.fspath(path))

    async def aexport_cache(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """Async twin of :meth:`export_cache`."""
        return await _portal.acall(self._export_cache, os.fspath(path))

    async def _export_cache(self, path: str) -> dict[str, Any]:
        rt = self._session.require_cache().rt
        return await _threaded(export_bundle, rt, self._session.url, path)()

    @classmethod
    def import_cache(
        cls,
        path: str | os.PathLike[str],
        verify_checksums: bool = True,
        *,
        cache_dir: str | None = None,
    ) -> dict[str, Any]:
        """Add the records and blobs of an :meth:`export_cache` archive to the local cache.

        Every member is checked before anything is written: only regular files at the
        paths the archive's index names, with the sizes it states (absolute paths, ``..``,
        links, devices, fifos, unexpected names and oversized members raise an
        :class:`~aiofolio.ArchiveError` subclass). Every new blob is verified against its
        digest (always) and, with ``verify_checksums``, against the manifest's MD5 before
        the first write. Blobs already cached are skipped. The size limits apply: under a
        hard limit the new bytes are reserved first (:class:`~aiofolio.CacheFullError`,
        nothing written); any failure removes what the import published.

        Returns:
            ``bundle``, ``items``, ``blobs_imported``, ``blobs_skipped``, ``bytes_imported``,
            ``bytes_skipped``.
        """
        return _portal.call(
            _threaded(SharingMethods._import, os.fspath(path), verify_checksums, cache_dir)
        )

    @classmethod
    async def aimport_cache(
        cls,
        path: str | os.PathLike[str],
        verify_checksums: bool = True,
        *,
        cache_dir: str | None = None,
    ) -> dict[str, Any]:
        """Async twin of :meth:`import_cache`."""
        return await _portal.acall(
            _threaded(SharingMethods._import, os.fspath(path), verify_checksums, cache_dir)
        )

    @staticmethod
    def _import(path: str, verify_checksums: bool, cache_dir: str | None) -> dict[str, Any]:
        settings = resolve_settings().settings
        rt = runtime(cache_dir or settings.cache_dir)
        return import_archive(rt, settings, path, verify_checksums=verify_checksums)

    # -- file handles ---------------------------------------------------------------------------
    async def _open_path(self, name: str, owner: _Handle) -> str:
        item = self._item(name)
        session = self._session
        for _attempt in (1, 2):
            path = await session.blob_path(item)
            blobs = session.blobs
            if blobs is None or os.path.dirname(os.path.dirname(path)) != str(
                session.runtime.layout.blobs_dir
            ):
                return path  # a local bundle's own file, or a private scratch copy
            if await blobs.hand_out(owner, path):
                return path
        return path  # pragma: no cover - the second fetch is protected by the mark

    def _release(self, owner: _Handle) -> None:
        if self._session.blobs is not None:
            self._session.runtime.inuse.release(owner)

    @contextlib.contextmanager
    def open_item(self, name: str) -> Iterator[IO[bytes]]:
        """``with folio.open_item(name) as f:`` a binary, read-only file over the item's bytes.

        The verified cached blob (downloaded first when not cached); it is not evicted (by
        any process) while the handle is open.
        """
        owner = _Handle()
        path = _portal.call(self._open_path, name, owner)
        try:
            with open(path, "rb") as fh:
                yield fh
        finally:
            self._release(owner)

    @contextlib.asynccontextmanager
    async def aopen_item(self, name: str) -> AsyncIterator[AsyncBufferedReader]:
        """``async with folio.aopen_item(name) as f:`` the async twin of :meth:`open_item`
        (an :mod:`aiofiles` binary reader)."""
        import aiofiles

        owner = _Handle()
        path = await _portal.acall(self._open_path, name, owner)
        try:
            async with aiofiles.open(path, "rb") as fh:
                yield fh
        finally:
            self._release(owner)
