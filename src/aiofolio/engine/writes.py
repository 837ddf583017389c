"""Writing one bundle: the datafolio v2 commit protocol and the writes built on it.

Owns: :class:`WriteMixin`, the write half of :class:`~aiofolio.engine.session.BundleSession`:
serialize to a temp file with MD5 computed on the way, upload the payload create-only under a
fresh name (a clash replans), then publish ``items.json`` conditionally on the token of the
manifest we loaded (:meth:`WriteMixin.commit`). A lost race raises
:class:`~aiofolio.errors.ConcurrentWriteError` and removes our orphan payload; nothing
half-published is ever visible. With write-through, the payload is copied into the cache under
the size limits. Inside a batch, ``commit`` uploads but only stages the manifest
(:mod:`aiofolio.engine.edits`, the mixin's base, owns batches and the other edits).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from aiofolio.backends import Backend
from aiofolio.bundle import (
    ITEMS_FILE,
    Item,
    ItemFields,
    Manifest,
    WritePlan,
    plan_add,
    plan_delete,
    plan_metadata,
    reference_fields,
    serialize,
)
from aiofolio.bundle.handlers.imports import import_table_file
from aiofolio.config import Settings
from aiofolio.engine._runtime import engine, in_thread
from aiofolio.engine.blobs import BlobCache
from aiofolio.engine.edits import EditMixin
from aiofolio.errors import (
    CacheFullError,
    ConcurrentWriteError,
    LargeFileWarning,
    ManifestReadError,
    PreconditionFailedError,
    RemoteNotFoundError,
)
from aiofolio.policy.largefiles import growth_warning, owned_payload_bytes, should_cache

if TYPE_CHECKING:
    from aiofolio.engine.manifests import ManifestCache

__all__ = ["WriteMixin"]

log = logging.getLogger("aiofolio.session")
_MANIFEST_CACHE_CONTROL = "no-cache"
_MAX_NAME_CLASHES = 5


def _parses(data: bytes) -> bool:
    """Whether ``data`` is a JSON manifest of some schema (a dict or a legacy list)."""
    try:
        return isinstance(json.loads(data), (dict, list))
    except ValueError:
        return False


class WriteMixin(EditMixin):
    """The write half of a bundle session (see the module docstring)."""

    if TYPE_CHECKING:  # provided by BundleSession
        url: str
        settings: Settings
        manifest: Manifest | None
        manifest_token: str | None
        write_lock: anyio.Lock

        @property
        def backend(self) -> Backend: ...

        @property
        def blobs(self) -> BlobCache | None: ...

        @property
        def manifests(self) -> ManifestCache | None: ...

        def object_url(self, relative: str) -> str: ...

        def require_manifest(self) -> Manifest: ...

        def require_writable(self, what: str) -> None: ...

        async def load(self, *, force: bool = False, use_stale: bool = False) -> Manifest: ...

    async def _publish(self, plan: WritePlan, *, created: bool = False) -> None:
        """Publish ``plan``'s manifest only over the manifest we loaded (or none)."""
        url = self.object_url(ITEMS_FILE)
        body = plan.manifest_bytes()
        try:
            stat = await self.backend.put(
                url,
                body,
                cache_control=_MANIFEST_CACHE_CONTROL,
                content_type="application/json",
                if_match=None if created else self.manifest_token,
                if_none_match=created,
            )
        except PreconditionFailedError:
            # A retried PUT whose first try landed also fails its condition: check for that.
            try:
                remote = await self.backend.read_range(url)
            except RemoteNotFoundError:
                if created:
                    remote = b""
                else:
                    raise ManifestReadError(
                        f"{url} is gone (we had revision {plan.base_revision}); refusing to "
                        "write over a manifest we cannot read. Nothing of this change was "
                        "published: refresh() once the bundle is readable, and try again."
                    ) from None
            if remote != body and not _parses(remote):
                raise ManifestReadError(
                    f"{url} is no longer a readable manifest (we had revision "
                    f"{plan.base_revision}); refusing to write over it. Nothing of this change "
                    "was published: refresh() once the bundle is readable, and try again."
                ) from None
            if remote != body:
                raise ConcurrentWriteError(
                    f"{self.url} changed since it was loaded (we had revision "
                    f"{plan.base_revision}); another writer published first. Nothing of this "
                    "change was published: refresh() and try again."
                ) from None
            stat = await self.backend.stat(url)
        if (
            stat.md5 is not None
            and stat.md5 != hashlib.md5(body, usedforsecurity=False).hexdigest()
        ):
            # The stat describes a newer manifest: another writer published over ours before
            # the store answered. Its token is not ours; load what is there now (it was built
            # on our commit) rather than pair our manifest with their token and lose theirs.
            log.info("%s changed right after our publish; reloading", url)
            await self.load(force=True)
            return
        self.manifest = plan.manifest
        self.manifest_token = stat.token
        manifests = self.manifests
        if manifests is not None:
            await manifests.note_write(plan.manifest, body, stat.token)

    async def _cleanup(self, relatives: Iterable[str]) -> None:
        for relative in relatives:
            try:
                await self.backend.delete(self.object_url(relative))
            except Exception as exc:  # an orphan payload is harmless
                log.info("could not delete %s: %s", relative, exc)

    async def commit(
        self, make_plan: Callable[[Manifest, Sequence[str]], WritePlan], upload: str | None
    ) -> WritePlan:
        """Upload the payload (create-only, replanning on a name clash), then publish."""
        taken: list[str] = []
        manifest = self.working_manifest()
        for _ in range(_MAX_NAME_CLASHES):
            plan = make_plan(manifest, taken)
            if upload is None or plan.payload_path is None:
                break
            fields_md5 = plan.item.checksum if plan.item is not None else None
            try:
                await self.backend.put(
                    self.object_url(plan.payload_path),
                    upload,
                    content_md5=fields_md5,
                    if_none_match=True,
                )
                break
            except PreconditionFailedError:
                taken.append(plan.payload_path)
        else:
            raise ConcurrentWriteError(
                f"could not find a free payload name in {self.url} after "
                f"{_MAX_NAME_CLASHES} tries; another writer is busy"
            )
        stage = self._stage
        if stage is not None:  # a batch: published once by finish_batch
            stage.record(plan)
            return plan
        try:
            await self._publish(plan)
        except ConcurrentWriteError:
            # Only a lost race is known not to have published: our payload is an orphan. After
            # any other failure (a timeout, a cancellation) the manifest may have landed and
            # name the payload, so it must stay (an orphan is harmless, a dangling item is not).
            if upload is not None and plan.payload_path is not None:
                await self._cleanup([plan.payload_path])
            raise
        await self._cleanup((*plan.obsolete_payloads, *plan.legacy_files))
        await self.write_docs()
        return plan

    async def add(
        self,
        name: str,
        obj: Any,
        *,
        item_type: str | None = None,
        description: str | None = None,
        inputs: Sequence[str] | None = None,
        overwrite: bool = False,
        opts: Mapping[str, Any] | None = None,
        warn_large: bool = True,
    ) -> Item:
        """Serialize ``obj`` and commit it as item ``name`` (``warn_large=False``: no
        ``LargeFileWarning``, the caller decides about large items)."""
        options = dict(opts or {})
        return await self.add_written(
            name,
            lambda tmp: serialize(obj, tmp, item_type=item_type, name=name, **options),
            description=description,
            inputs=inputs,
            overwrite=overwrite,
            warn_large=warn_large,
        )

    async def import_table(
        self,
        name: str,
        path: str,
        *,
        table_format: str | None = None,
        description: str | None = None,
        inputs: Sequence[str] | None = None,
        overwrite: bool = False,
        block_size: int | None = None,
    ) -> Item:
        """Commit the local table file ``path`` as the Parquet table ``name`` (never loaded
        whole: Parquet is copied byte for byte, CSV and Arrow IPC converted in blocks)."""
        return await self.add_written(
            name,
            lambda tmp: import_table_file(
                path, tmp, table_format=table_format, block_size=block_size
            ),
            description=description,
            inputs=inputs,
            overwrite=overwrite,
        )

    async def add_written(
        self,
        name: str,
        write: Callable[[str], ItemFields],
        *,
        description: str | None = None,
        inputs: Sequence[str] | None = None,
        overwrite: bool = False,
        warn_large: bool = True,
    ) -> Item:
        """Commit the payload ``write(tmp)`` writes to a scratch file as item ``name``.

        ``write`` runs in a worker thread and returns the item's fields (a handler of
        :mod:`aiofolio.bundle`).
        """
        self.require_writable(f"add {name!r}")
        manifest = self.working_manifest()
        if name in manifest and not overwrite:
            # Fail before serializing a large object (the plan would refuse too).
            plan_add(manifest, name, ItemFields("json_data"), overwrite=False)
        scratch = engine().scratch_dir
        tmp = os.path.join(scratch, f"upload-{secrets.token_hex(8)}")
        try:
            fields = await in_thread(write, tmp)
            async with self.write_lock:
                owned_before = owned_payload_bytes(self.working_manifest().items)
                plan = await self.commit(
                    lambda m, taken: plan_add(
                        m,
                        name,
                        fields,
                        overwrite=overwrite,
                        description=description,
                        inputs=inputs,
                        taken=taken,
                    ),
                    tmp,
                )
            if warn_large:
                self._warn_if_large(plan, owned_before)
            if not self.staging:  # a batch's payloads are not cached before they publish
                await self._write_through(plan, tmp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        assert plan.item is not None
        return plan.item

    async def _write_through(self, plan: WritePlan, tmp: str) -> None:
        blobs = self.blobs
        write_through = self.settings.cache_on_add or (self.settings.cache_mode == "write-through")
        if (
            blobs is not None
            and write_through
            and plan.item is not None
            and should_cache(plan.item.size_bytes, self.settings)
        ):
            # Under the size limits like a download. The upload has landed: a copy that
            # the hard limit refuses is skipped, not an error of the add.
            try:
                await in_thread(blobs.publisher.adopt_file, plan.item, tmp)
            except CacheFullError as exc:
                log.warning("not caching the write-through copy of %r: %s", plan.item.name, exc)

    def _warn_if_large(self, plan: WritePlan, owned_before: int) -> None:
        """``LargeFileWarning`` for a large item or a bundle that just grew past the threshold."""
        item = plan.item
        if item is None:
            return
        message = growth_warning(
            name=item.name,
            item_size=item.size_bytes,
            before=owned_before,
            after=owned_payload_bytes(plan.manifest.items),
            items=len(plan.manifest.current_items()),
            threshold=self.settings.large_file_threshold,
            is_table=item.item_type == "included_table",
        )
        if message is not None:
            warnings.warn(LargeFileWarning(message), stacklevel=2)

    async def reference_table(
        self,
        name: str,
        path: str,
        *,
        table_format: str = "parquet",
        description: str | None = None,
        inputs: Sequence[str] | None = None,
        overwrite: bool = False,
        opts: Mapping[str, Any] | None = None,
    ) -> Item:
        self.require_writable(f"reference {name!r}")
        fields = reference_fields(path, table_format=table_format, **dict(opts or {}))
        async with self.write_lock:
            plan = await self.commit(
                lambda m, taken: plan_add(
                    m,
                    name,
                    fields,
                    overwrite=overwrite,
                    description=description,
                    inputs=inputs,
                    taken=taken,
                ),
                None,
            )
        assert plan.item is not None
        return plan.item

    async def delete(self, names: str | Sequence[str]) -> None:
        self.require_writable("delete items")
        async with self.write_lock:
            await self.commit(lambda m, _taken: plan_delete(m, names), None)

    async def set_metadata(
        self, changes: Mapping[str, Any] | None = None, remove: Iterable[str] = ()
    ) -> None:
        self.require_writable("change metadata")
        async with self.write_lock:
            await self.commit(lambda m, _t: plan_metadata(m, changes, remove=remove), None)
