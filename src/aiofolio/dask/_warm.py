"""The Dask worker plugin and the cluster warm (:func:`warm`, :class:`WarmReport`).

``"shared"``: items, largest first, go to the least-loaded worker (by bytes) of the whole
cluster, so each object is fetched once cluster-wide into the one shared cache dir.
``"node"``: every host (:func:`~aiofolio.dask._guard.host_key`) gets every item, spread over
its workers; workers of one host share its node-local cache through the cache's
cross-process single flight. A task warms a batch of items with the folio's own
``warm_cache``; its key is derived from the bundle, revision, mode, host and names, so a rerun
of the same warm is cheap (hits), and a task whose worker dies is rerun by Dask (retries).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from distributed import WorkerPlugin, get_worker

from aiofolio.dask._guard import guard_worker_loop, host_key
from aiofolio.errors import InvalidArgumentError, WarmError

if TYPE_CHECKING:
    from distributed import Client, Worker

    from aiofolio.folio import DataFolio

__all__ = ["AiofolioPlugin", "ItemOutcome", "WarmReport", "warm"]

_BATCH = 8
"""Items per task: a killed worker loses at most this much work, and Dask balances batches."""


class AiofolioPlugin(WorkerPlugin):
    """Set every worker's aiofolio cache settings (``DataFolio.configure_cache``).

    ``cache_dir`` may hold ``{host}`` (replaced by the worker's host key). Without it the
    worker's own configuration decides (``AIOFOLIO_CACHE_DIR``, the config file, the user
    cache dir): never a cache inside the worker's disposable ``local_directory`` unless
    ``cache_dir`` says so. Idempotent (name ``"aiofolio"``): registering it again while one
    is registered does nothing; ``client.unregister_worker_plugin("aiofolio")`` first to
    change the settings (the teardown removes them). It also
    makes blocking aiofolio calls on the worker's event loop raise
    :class:`~aiofolio.errors.UsageError`.
    """

    name = "aiofolio"
    idempotent = True

    def __init__(self, cache_dir: str | None = None, **settings: Any) -> None:
        self.cache_dir = cache_dir
        self.settings = dict(settings)

    def setup(self, worker: Worker) -> None:
        from aiofolio.folio import DataFolio

        settings = dict(self.settings)
        if self.cache_dir is not None:
            settings["cache_dir"] = self.cache_dir.replace("{host}", host_key())
        if settings:
            DataFolio.configure_cache(**settings)
        self._applied = list(settings)
        guard_worker_loop()

    def teardown(self, worker: Worker) -> None:
        """Remove the settings :meth:`setup` applied (unregistering the plugin)."""
        from aiofolio.config import UNSET
        from aiofolio.folio import DataFolio

        applied = getattr(self, "_applied", [])
        if applied:
            DataFolio.configure_cache(**dict.fromkeys(applied, UNSET))


@dataclass(frozen=True)
class ItemOutcome:
    """One item of a cluster warm on one host."""

    name: str
    host: str
    worker: str
    status: Literal["hit", "fetched", "failed"]
    bytes: int
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class WarmReport:
    """What :func:`warm` did, item by item (one row per item per host in ``"node"`` mode)."""

    mode: str
    items: tuple[ItemOutcome, ...]

    @property
    def failed(self) -> tuple[ItemOutcome, ...]:
        """The rows that failed."""
        return tuple(i for i in self.items if i.status == "failed")

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    def raise_for_errors(self) -> None:
        """Raise :class:`~aiofolio.errors.WarmError` naming the failed items, if any."""
        bad = self.failed
        if bad:
            shown = "; ".join(f"{i.name} on {i.host}: {i.error}" for i in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise WarmError(f"{len(bad)} item(s) failed to warm: {shown}{more}")

    def to_json(self) -> str:
        """The report as JSON (``mode``, ``items``: one object per row)."""
        return json.dumps({"mode": self.mode, "items": [asdict(i) for i in self.items]})


def _warm_batch(folio: DataFolio, names: list[str], concurrency: int) -> list[ItemOutcome]:
    """Runs in a worker's task thread: warm ``names``, one outcome each."""
    guard_worker_loop()
    host = host_key()
    try:
        worker = get_worker().address
    except ValueError:
        worker = ""

    def status_of(name: str) -> tuple[bool, int]:
        status = folio.cache_status(name)
        cached = bool(status.get("cached") and status.get("checksum_valid"))
        return cached, int(status.get("size_bytes") or 0)

    rows: dict[str, ItemOutcome] = {}
    t0 = time.perf_counter()
    misses: list[str] = []
    for name in names:  # a verified cached copy is a hit; the rest go to one warm
        try:
            cached, size = status_of(name)
        except Exception as exc:
            rows[name] = ItemOutcome(name, host, worker, "failed", 0, 0.0, repr(exc))
            continue
        if cached:
            rows[name] = ItemOutcome(name, host, worker, "hit", size, time.perf_counter() - t0)
        else:
            misses.append(name)
    if misses:
        t1 = time.perf_counter()
        try:  # one warm job for the batch: its downloads share one engine pass
            result = folio.warm_cache(misses, concurrency=max(1, concurrency), progress=False)
            failed: dict[str, str] = {n: repr(e) for n, e in result.failed.items()}
            failed.update({n: "cancelled" for n in result.cancelled})
        except Exception as exc:
            failed = {n: repr(exc) for n in misses}
        seconds = (time.perf_counter() - t1) / len(misses)  # the batch's time, shared
        for name in misses:
            if name in failed:
                rows[name] = ItemOutcome(name, host, worker, "failed", 0, seconds, failed[name])
                continue
            size = int(folio._item(name).size_bytes or 0) or status_of(name)[1]
            rows[name] = ItemOutcome(name, host, worker, "fetched", size, seconds)
    return [rows[name] for name in names]


def _spread(sizes: dict[str, int], workers: Sequence[str]) -> dict[str, list[str]]:
    """Items, largest first, each to the worker with the fewest bytes so far."""
    load = {w: 0 for w in workers}
    plan: dict[str, list[str]] = {w: [] for w in workers}
    for name in sorted(sizes, key=lambda n: (-sizes[n], n)):
        target = min(workers, key=lambda w: (load[w], w))
        plan[target].append(name)
        load[target] += sizes[name]
    return plan


def _key(folio: DataFolio, mode: str, scope: str, names: list[str]) -> str:
    raw = json.dumps([folio.path, folio.revision, mode, scope, names]).encode()
    return f"aiofolio-warm-{mode}-{hashlib.sha1(raw).hexdigest()[:20]}"


def warm(
    folio: DataFolio,
    client: Client,
    items: str | Iterable[str] | None = None,
    mode: Literal["node", "shared"] = "node",
    concurrency: int | None = None,
    *,
    retries: int = 3,
) -> WarmReport:
    """Warm ``items`` (default: every current item) on the cluster of ``client``.

    ``mode="node"``: every host gets every item (one download per host). ``"shared"``: the
    items are spread over all workers into one shared cache dir (each object fetched once
    cluster-wide); the workers' ``cache_dir`` must then be the same shared folder (see
    :class:`AiofolioPlugin`). ``concurrency``: items one task downloads at once (default 4).
    Per-item failures are in the report (:meth:`WarmReport.raise_for_errors`).

    Raises:
        InvalidArgumentError: a bad ``mode`` or ``concurrency``, or no workers.
        ItemNotFoundError: an unknown item name.
    """
    if mode not in ("node", "shared"):
        raise InvalidArgumentError(f"mode is 'node' or 'shared', not {mode!r}")
    if concurrency is not None and concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be at least 1, got {concurrency}")
    limit = concurrency or 4
    if items is None:
        names = folio._names(include_archived=False)
    else:
        names = list(dict.fromkeys([items] if isinstance(items, str) else items))
    sizes = {n: folio._item(n).size_bytes or 0 for n in names}  # ItemNotFoundError first
    hosts: dict[str, str] = client.run(host_key)
    if not hosts:
        raise InvalidArgumentError("the Dask cluster has no workers")
    by_host: dict[str, list[str]] = {}
    for address, host in sorted(hosts.items()):
        by_host.setdefault(host, []).append(address)
    groups = {"*": sorted(hosts)} if mode == "shared" else by_host
    futures = []
    for scope, workers in sorted(groups.items()):
        for address, assigned in sorted(_spread(sizes, workers).items()):
            for i in range(0, len(assigned), _BATCH):
                batch = assigned[i : i + _BATCH]
                futures.append(
                    client.submit(
                        _warm_batch,
                        folio,
                        batch,
                        limit,
                        key=_key(folio, mode, scope, batch),
                        # shared: any worker may take over; node: only the host's workers
                        workers=[address] if mode == "shared" else workers,
                        allow_other_workers=mode == "shared",
                        retries=retries,
                        pure=False,
                    )
                )
    rows: list[ItemOutcome] = []
    for result in client.gather(futures):  # type: ignore[no-untyped-call]
        rows.extend(result)
    return WarmReport(mode=mode, items=tuple(sorted(rows, key=lambda r: (r.host, r.name))))
