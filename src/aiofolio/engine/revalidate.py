"""Concurrent revalidation: many bundles at once, and every referenced table of one bundle.

Owns: :func:`revalidate_sessions` (one forced, conditional manifest check per open bundle,
with a bounded fan-out; the cache's decision tree then drops only the changed items, as a
TTL expiry would) and :func:`revalidate_references` (one ``stat`` per cached referenced
table of a bundle, bounded: an unchanged table's check time moves, a changed one's cached copy
is dropped so the next read fetches it), and :class:`RefreshOutcome`, the per-target answer
(changed / unchanged / uncached / error). Failures are reported per target, never raised, so
one unreachable bundle does not hide the others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from aiofolio.backends import Backend, scheme_of
from aiofolio.bundle import Item
from aiofolio.engine._runtime import engine
from aiofolio.engine.blobs import BlobCache, reference_token
from aiofolio.engine.manifests import tokens_of
from aiofolio.errors import NotCachedError
from aiofolio.policy import changed_names

if TYPE_CHECKING:
    from aiofolio.engine.session import BundleSession

__all__ = [
    "DEFAULT_CONCURRENCY",
    "RefreshOutcome",
    "RefreshStatus",
    "revalidate_references",
    "revalidate_sessions",
]

log = logging.getLogger("aiofolio.revalidate")
T = TypeVar("T")

DEFAULT_CONCURRENCY = 64
"""Checks in flight at once: each is one small request, so more than a download fan-out."""

RefreshStatus = Literal["changed", "unchanged", "uncached", "error"]


@dataclass(frozen=True)
class RefreshOutcome:
    """The answer of one revalidation.

    Attributes:
        url: The bundle (or, for a referenced table, the external object) checked.
        status: ``"changed"`` (the remote differs from what we had: changed items were
            dropped from the cache), ``"unchanged"``, ``"uncached"`` (a referenced table with
            no cached copy: nothing to check) or ``"error"`` (see ``error``).
        name: The item name, for a referenced table; None for a bundle.
        revision: The bundle's manifest revision after the check (bundles only).
        changed_items: Names added, removed or changed by the new manifest (bundles only).
        error: The exception of a failed check.
        folio: The :class:`~aiofolio.DataFolio` checked (set by ``DataFolio.refresh_all``).
    """

    url: str
    status: RefreshStatus
    name: str | None = None
    revision: int | None = None
    changed_items: tuple[str, ...] = ()
    error: BaseException | None = None
    folio: Any = field(default=None, repr=False, compare=False)

    @property
    def changed(self) -> bool:
        """Whether the check found a change."""
        return self.status == "changed"


async def _bounded(jobs: Sequence[Callable[[], Awaitable[T]]], concurrency: int) -> list[T]:
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    limit = asyncio.Semaphore(concurrency)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with limit:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


async def _revalidate_session(session: BundleSession) -> RefreshOutcome:
    before, before_token = session.manifest, session.manifest_token
    try:
        after = await session.load(force=True)
    except Exception as exc:  # reported, not raised: the other bundles go on
        log.info("revalidating %s failed: %s", session.url, exc)
        return RefreshOutcome(url=session.url, status="error", error=exc)
    items = changed_names(tokens_of(before) if before is not None else None, tokens_of(after))
    changed = (
        before is None
        or session.manifest_token != before_token
        or after.revision != before.revision
        or bool(items)
    )
    return RefreshOutcome(
        url=session.url,
        status="changed" if changed else "unchanged",
        revision=after.revision,
        changed_items=items,
    )


async def revalidate_sessions(
    sessions: Sequence[BundleSession], concurrency: int = DEFAULT_CONCURRENCY
) -> list[RefreshOutcome]:
    """Revalidate every bundle now: one conditional manifest request each, ``concurrency``
    at a time (an uncached bundle reloads its manifest instead). Outcomes in input order."""
    jobs = [functools.partial(_revalidate_session, s) for s in sessions]
    return await _bounded(jobs, concurrency)


async def _revalidate_reference(blobs: BlobCache, item: Item, target: Backend) -> RefreshOutcome:
    url = str(item.path)
    try:
        rec = blobs.cached_item(item)
        if rec is None:
            return RefreshOutcome(url=url, status="uncached", name=item.name)
        if blobs.scope.offline:
            raise NotCachedError(f"offline: the referenced table {item.name!r} was not checked")
        stat = await target.stat(url)
        blobs.rt.stats.add(blobs.url, remote_checks=1)
        if rec.remote_token == reference_token(stat):
            if blobs.scope.writes_cache:
                blobs.confirm_reference(rec, blobs.scope.clock())
            return RefreshOutcome(url=url, status="unchanged", name=item.name)
        log.info("referenced table %r (%s) changed; dropping its cached copy", item.name, url)
        if blobs.scope.writes_cache:
            blobs.invalidate(item.name)
        return RefreshOutcome(url=url, status="changed", name=item.name)
    except Exception as exc:  # reported per table
        return RefreshOutcome(url=url, status="error", name=item.name, error=exc)


async def revalidate_references(
    session: BundleSession, concurrency: int = DEFAULT_CONCURRENCY
) -> dict[str, RefreshOutcome]:
    """Check every cached remote referenced table of ``session``'s bundle now, whatever the
    TTL: one ``stat`` each, ``concurrency`` at a time. Local (``file``) references are read
    from disk directly and are not listed.

    Raises:
        CacheError: the bundle is not cached (nothing to revalidate).
    """
    blobs = session.require_cache().blobs
    manifest = await session.current_manifest()
    refs = [
        item
        for item in manifest.current_items().values()
        if item.is_reference and not item.archived and scheme_of(str(item.path or "")) != "file"
    ]
    pool = engine().pool
    jobs = [
        functools.partial(
            _revalidate_reference, blobs, i, pool.get(str(i.path), session.storage_options)
        )
        for i in refs
    ]
    outcomes = await _bounded(jobs, concurrency)
    return {o.name or "": o for o in outcomes}
