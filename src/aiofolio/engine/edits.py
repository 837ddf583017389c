"""Edits of one bundle beyond add and delete, all through the v2 ``commit`` protocol.

Owns :class:`EditMixin` (a base of :class:`~aiofolio.engine.writes.WriteMixin`):

* manifest-only edits (:meth:`EditMixin.edit`: archive, update_item, snapshots, restore,
  clean-up), planned by the pure functions of :mod:`aiofolio.bundle` and published by
  ``commit``; obsolete payloads are deleted after the publish;
* snapshots with the context they record (git, environment, execution);
* batches (:meth:`EditMixin.begin_batch`): every commit in the batch uploads its payload but
  only stages its manifest; :meth:`EditMixin.finish_batch` publishes once, conditionally on
  the manifest the batch started from; :meth:`EditMixin.abort_batch` publishes nothing and
  deletes the batch's payloads;
* copies into a new bundle (:meth:`EditMixin.copy_into`: ``copy``, ``export_snapshot``):
  payloads copied verified and create-only, then the new manifest published create-only;
* following other writers of an uncached local bundle (:meth:`EditMixin.local_changed`);
* the human-facing files of a local bundle (:meth:`EditMixin.write_docs`: ``README.md`` when
  created, ``CONTENTS.md`` after every publish; best-effort).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import anyio

from aiofolio._version import __version__
from aiofolio.bundle import ITEMS_FILE, Item, Manifest, WritePlan, payload_path, plan_snapshot
from aiofolio.bundle.context import capture_context
from aiofolio.bundle.docs import CONTENTS_FILE, README_FILE, contents_text, readme_text
from aiofolio.engine._runtime import in_thread
from aiofolio.errors import ConcurrentWriteError, InvalidArgumentError, UsageError

if TYPE_CHECKING:
    from aiofolio.backends import Backend
    from aiofolio.config import Settings

__all__ = ["EditMixin", "Stage"]

log = logging.getLogger("aiofolio.session")


@dataclasses.dataclass
class Stage:
    """A batch in progress: the manifest it started from and what it staged since."""

    base: Manifest
    token: str | None
    manifest: Manifest
    uploaded: list[str] = dataclasses.field(default_factory=list)
    obsolete: list[str] = dataclasses.field(default_factory=list)
    legacy: list[str] = dataclasses.field(default_factory=list)

    def record(self, plan: WritePlan) -> None:
        """Stage one commit (its payload is already uploaded)."""
        self.manifest = plan.manifest
        if plan.payload_path is not None and plan.item is not None and plan.item.owns_payload:
            self.uploaded.append(plan.payload_path)
        self.obsolete.extend(p for p in plan.obsolete_payloads if p not in self.obsolete)
        self.legacy.extend(p for p in plan.legacy_files if p not in self.legacy)


def _named(manifest: Manifest) -> set[str]:
    return {payload_path(i) for i in manifest.items if i.owns_payload and i.get("filename")}


class EditMixin:
    """Edits, snapshots, batches, copies and local-writer tracking (module docstring)."""

    _stage: Stage | None = None
    _local_seen: tuple[int, int, int] | None = None

    if TYPE_CHECKING:  # provided by BundleSession / WriteMixin / ReadMixin
        url: str
        settings: Settings
        manifest: Manifest | None
        manifest_token: str | None
        write_lock: anyio.Lock

        @property
        def backend(self) -> Backend: ...

        @property
        def is_local(self) -> bool: ...

        @property
        def cached(self) -> bool: ...

        def object_url(self, relative: str) -> str: ...

        def require_manifest(self) -> Manifest: ...

        def require_writable(self, what: str) -> None: ...

        async def commit(
            self, make_plan: Callable[[Manifest, Sequence[str]], WritePlan], upload: str | None
        ) -> WritePlan: ...

        async def _publish(self, plan: WritePlan, *, created: bool = False) -> None: ...

        async def _cleanup(self, relatives: Iterable[str]) -> None: ...

        async def local_payload(self, item: Item) -> tuple[str, bool]: ...

    # -- manifest-only edits -------------------------------------------------------------------
    def working_manifest(self) -> Manifest:
        """The manifest writes build on: the batch's staged one inside a batch."""
        stage = self._stage
        return stage.manifest if stage is not None else self.require_manifest()

    @property
    def staging(self) -> bool:
        """Whether a batch is open."""
        return self._stage is not None

    async def edit(
        self, what: str, planner: Callable[[Manifest], WritePlan | None]
    ) -> WritePlan | None:
        """Commit the plan ``planner`` makes of the current manifest (None: nothing to do).

        ``planner`` is a pure function of :mod:`aiofolio.bundle` (bound to plain arguments).
        """
        self.require_writable(what)
        async with self.write_lock:
            plan = planner(self.working_manifest())
            if plan is None:
                return None
            return await self.commit(lambda _m, _taken: plan, None)

    async def create_snapshot(
        self,
        name: str,
        *,
        description: str | None,
        tags: Sequence[str] | None,
        git: bool,
        environment: bool,
        execution: bool,
    ) -> None:
        """Take snapshot ``name`` of the current items, with the context asked for."""
        self.require_writable(f"create snapshot {name!r}")
        if self.staging:
            raise UsageError("create_snapshot() cannot run inside a batch() block")
        extra = await in_thread(lambda: capture_context(git=git, env=environment, exec_=execution))
        await self.edit(
            f"create snapshot {name!r}",
            lambda m: plan_snapshot(m, name, description=description, tags=tags, extra=extra),
        )

    # -- batches -------------------------------------------------------------------------------
    def begin_batch(self) -> None:
        """Open a batch (commits stage their manifest until :meth:`finish_batch`)."""
        self.require_writable("start a batch")
        if self._stage is not None:
            raise UsageError(
                "Nested batch() blocks are not supported: the outer batch already defers the commit"
            )
        base = self.require_manifest()
        self._stage = Stage(base=base, token=self.manifest_token, manifest=base)

    async def finish_batch(self) -> None:
        """Publish the batch's manifest once, over the manifest the batch started from."""
        stage, self._stage = self._stage, None
        if stage is None or stage.manifest is stage.base:
            return
        async with self.write_lock:
            saved = (self.manifest, self.manifest_token)
            self.manifest, self.manifest_token = stage.base, stage.token
            plan = WritePlan(base_revision=stage.base.revision, manifest=stage.manifest)
            try:
                await self._publish(plan)
            except ConcurrentWriteError:
                self.manifest, self.manifest_token = saved
                await self._cleanup(stage.uploaded)  # known unpublished: orphans
                raise
            except BaseException:
                self.manifest, self.manifest_token = saved  # the payloads may be named: keep
                raise
        named = _named(stage.manifest)
        await self._cleanup([p for p in (*stage.obsolete, *stage.legacy) if p not in named])
        await self.write_docs()

    async def abort_batch(self) -> None:
        """Drop the batch: nothing is published; its payloads are deleted."""
        stage, self._stage = self._stage, None
        if stage is not None:
            await self._cleanup(stage.uploaded)

    # -- copies into a new bundle --------------------------------------------------------------
    async def copy_into(self, dest: EditMixin, manifest: Manifest) -> None:
        """Create the bundle ``dest`` with ``manifest``, copying the payloads it names.

        Each payload is read verified (downloaded for a remote bundle) and uploaded
        create-only; the manifest is published only if ``dest`` has none, so an existing
        bundle is never overwritten.

        Raises:
            InvalidArgumentError: ``dest`` already holds a bundle (also a ``ValueError``).
        """
        if await dest.backend.exists(dest.object_url(ITEMS_FILE)):
            raise InvalidArgumentError(f"{dest.url} already contains a DataFolio bundle")
        owned = [i for i in manifest.items if i.owns_payload and i.get("filename")]
        limit = asyncio.Semaphore(max(1, self.settings.parallel_downloads))
        uploaded: list[str] = []

        async def one(item: Item) -> None:
            async with limit:
                relative = payload_path(item)
                path, temporary = await self.local_payload(item)
                try:
                    await dest.backend.put(
                        dest.object_url(relative),
                        path,
                        content_md5=item.checksum,
                        if_none_match=True,
                    )
                    uploaded.append(relative)
                finally:
                    if temporary:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)

        try:
            await asyncio.gather(*(one(i) for i in owned))
            await dest._publish(WritePlan(base_revision=None, manifest=manifest), created=True)
        except ConcurrentWriteError:
            await dest._cleanup(uploaded)
            raise InvalidArgumentError(
                f"{dest.url} was created by another writer during the copy"
            ) from None
        if dest.is_local:
            for folder in ("tables", "models", "artifacts"):
                os.makedirs(os.path.join(dest.url, folder), exist_ok=True)
        await dest.write_docs(readme=True)

    # -- README.md and CONTENTS.md -------------------------------------------------------------
    async def write_docs(self, *, readme: bool = False) -> None:
        """Rewrite ``CONTENTS.md`` (and with ``readme`` write ``README.md``) of a local
        bundle from the manifest; a failure is logged, never raised (they are derived)."""
        manifest = self.manifest
        if not self.is_local or manifest is None:
            return
        url = self.url

        def write() -> None:
            files = [(CONTENTS_FILE, contents_text(manifest))]
            if readme:
                files.append((README_FILE, readme_text(url, version=__version__)))
            for name, text in files:
                target = os.path.join(url, name)
                tmp = f"{target}.{secrets.token_hex(4)}.tmp"
                with open(tmp, "w", encoding="utf-8") as fh:
                    fh.write(text)
                os.replace(tmp, target)

        try:
            await in_thread(write)
        except OSError as exc:
            log.info("could not write the docs of %s: %s", url, exc)

    # -- other writers of an uncached local bundle ---------------------------------------------
    def local_changed(self) -> bool:
        """Whether another writer published a newer revision of this uncached local bundle.

        One ``os.stat`` of ``items.json`` while it is unchanged; when it changed, one read of
        its revision. Only a higher revision counts (a lower one is a replaced manifest, which
        only an explicit refresh adopts, as in datafolio). Safe from any thread.
        """
        manifest = self.manifest
        if not self.is_local or manifest is None or self._stage is not None or self.cached:
            return False
        path = os.path.join(self.url, ITEMS_FILE)
        try:
            st = os.stat(path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
            if sig == self._local_seen:
                return False
            with open(path, "rb") as fh:
                data = json.loads(fh.read())
            revision = int(data.get("revision", 0) or 0) if isinstance(data, Mapping) else 0
        except (OSError, ValueError, TypeError):
            return False
        self._local_seen = sig
        return revision > manifest.revision
