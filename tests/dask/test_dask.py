"""aiofolio on a real Dask cluster: 4 worker processes (2 threads each) on loopback.

The bundle is served by the conftest's counting HTTP server (a thread of this process on
127.0.0.1, reachable from the workers), so every assertion about downloads is a request count
at the server. One cluster for the module keeps the time down; each test registers its own
``AiofolioPlugin`` (the same name replaces the previous one).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from aiofolio import DataFolio, UsageError  # noqa: E402
from aiofolio._travel import state_of  # noqa: E402
from aiofolio.bundle import payload_path  # noqa: E402
from aiofolio.dask import HOST_ID_ENV, AiofolioPlugin, warm  # noqa: E402
from aiofolio.testing import Fault, FaultServer  # noqa: E402

N_ITEMS = 16
ITEM = 64 * 1024


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[distributed.Client]:
    default = str(tmp_path_factory.mktemp("worker-default-cache"))
    cluster = distributed.LocalCluster(
        n_workers=4,
        processes=True,
        threads_per_worker=2,
        dashboard_address=None,
        env={"AIOFOLIO_CACHE_DIR": default},
    )
    with cluster, distributed.Client(cluster) as c:
        yield c


def _plugin(client: distributed.Client, plugin: AiofolioPlugin) -> None:
    """Register ``plugin`` in place of the previous test's (the plugin is idempotent)."""
    if "aiofolio" in client.run_on_scheduler(
        lambda dask_scheduler: list(dask_scheduler.worker_plugins)
    ):
        client.unregister_worker_plugin("aiofolio")
    client.register_plugin(plugin)


def _serve(server: FaultServer, tmp_path: Path) -> tuple[str, dict[str, str]]:
    root = tmp_path / "src"
    folio = DataFolio(root)
    rng = np.random.default_rng(16)
    want: dict[str, str] = {}
    for i in range(N_ITEMS):
        arr = rng.integers(0, 255, size=ITEM + i, dtype=np.uint8)
        folio.add(f"a{i:02d}", arr)
        want[f"a{i:02d}"] = hashlib.md5(arr.tobytes()).hexdigest()
    for p in root.rglob("*"):
        if p.is_file():
            server.put(f"/bundle/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"{server.url}/bundle", want


def _keys(folio: DataFolio) -> dict[str, str]:
    return {n: f"/bundle/{payload_path(folio.get_item(n))}" for n in folio.item_names()}


def _md5(arr: np.ndarray) -> str:
    return hashlib.md5(arr.tobytes()).hexdigest()


def _blobs_verify(cache: Path) -> int:
    """Every file under the blob store is complete (its MD5 is its name); how many there are."""
    blobs = [p for p in (cache / "v1" / "blobs").rglob("*") if p.is_file()]
    for p in blobs:
        assert hashlib.md5(p.read_bytes()).hexdigest() == p.name, p
    return len(blobs)


def test_shared_mode_downloads_each_item_once(
    client: distributed.Client, http_server: FaultServer, tmp_path: Path
) -> None:
    url, want = _serve(http_server, tmp_path)
    shared = tmp_path / "shared-cache"
    _plugin(client, AiofolioPlugin(cache_dir=str(shared)))
    folio = DataFolio(url)
    keys = _keys(folio)
    http_server.stats.reset()
    report = warm(folio, client, mode="shared", concurrency=2)
    assert report.ok, report.to_json()
    assert sorted(r.name for r in report.items) == sorted(want)
    assert {r.status for r in report.items} == {"fetched"}
    assert len({r.worker for r in report.items}) == 4  # spread over every worker
    for name, key in keys.items():
        assert http_server.stats.requests(key, "GET") == 1, name
    assert _blobs_verify(shared) == N_ITEMS
    # every value, read on the workers from the shared cache: no further download
    got = client.gather(client.map(lambda n, f=folio: _md5(f.get(n)), sorted(want)))
    assert dict(zip(sorted(want), got, strict=True)) == want
    again = warm(folio, client, mode="shared")
    assert {r.status for r in again.items} == {"hit"}
    assert sum(http_server.stats.requests(k, "GET") for k in keys.values()) == N_ITEMS
    report.raise_for_errors()


def test_node_mode_one_download_per_simulated_host(
    client: distributed.Client, http_server: FaultServer, tmp_path: Path
) -> None:
    url, want = _serve(http_server, tmp_path)
    workers = sorted(client.scheduler_info()["workers"])
    hosts = {w: f"host{i % 2}" for i, w in enumerate(workers)}
    for w, h in hosts.items():
        client.run(lambda h=h: os.environ.__setitem__(HOST_ID_ENV, h), workers=[w])
    try:
        _plugin(client, AiofolioPlugin(cache_dir=str(tmp_path / "{host}")))
        folio = DataFolio(url)
        keys = _keys(folio)
        http_server.stats.reset()
        report = warm(folio, client, mode="node")
        assert report.ok, report.to_json()
        assert len(report.items) == 2 * N_ITEMS
        assert {(r.host, r.name) for r in report.items} == {
            (h, n) for h in ("host0", "host1") for n in want
        }
        for name, key in keys.items():
            assert http_server.stats.requests(key, "GET") == 2, name
        for h in ("host0", "host1"):
            assert _blobs_verify(tmp_path / h) == N_ITEMS
    finally:
        client.run(lambda: os.environ.pop(HOST_ID_ENV, None))


def test_worker_killed_mid_warm_report_is_complete(
    client: distributed.Client, http_server: FaultServer, tmp_path: Path
) -> None:
    url, want = _serve(http_server, tmp_path)
    shared = tmp_path / "shared-cache"
    _plugin(client, AiofolioPlugin(cache_dir=str(shared)))
    folio = DataFolio(url)
    http_server.set_fault("/bundle/*/*", Fault(bandwidth=128 * 1024, methods={"GET"}))
    victim = sorted(client.scheduler_info()["workers"])[0]
    import threading

    result: dict[str, object] = {}
    runner = threading.Thread(
        target=lambda: result.setdefault("report", warm(folio, client, mode="shared")),
        daemon=True,
    )
    http_server.stats.reset()
    runner.start()
    deadline = time.monotonic() + 30
    while http_server.stats.requests(None, "GET") < 6 and time.monotonic() < deadline:
        time.sleep(0.05)

    async def die() -> None:
        os.kill(os.getpid(), signal.SIGKILL)

    client.run(die, workers=[victim], wait=False)
    runner.join(120)
    assert not runner.is_alive()
    report = result["report"]
    assert report.ok, report.to_json()  # type: ignore[attr-defined]
    assert sorted(r.name for r in report.items) == sorted(want)  # type: ignore[attr-defined]
    assert _blobs_verify(shared) == N_ITEMS  # no partial file among the blobs
    http_server.clear_faults()
    reader = DataFolio(url, cache_dir=str(shared))
    assert {n: _md5(reader.get(n)) for n in want} == want


def test_client_map_over_a_pickled_folio(
    client: distributed.Client, http_server: FaultServer, tmp_path: Path
) -> None:
    url, want = _serve(http_server, tmp_path)
    _plugin(client, AiofolioPlugin(cache_dir=str(tmp_path / "w")))
    folio = DataFolio(url)
    names = sorted(want)
    local = [folio.get(n) for n in names]
    remote = client.gather(client.map(folio.get, names))
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(a, b)
    with folio.pinned():
        pinned = client.gather(client.submit(lambda f: f.revision, folio))
    assert pinned == folio.revision


def test_blocking_on_the_worker_event_loop_is_refused(
    client: distributed.Client, http_server: FaultServer, tmp_path: Path
) -> None:
    url, _want = _serve(http_server, tmp_path)
    _plugin(client, AiofolioPlugin(cache_dir=str(tmp_path / "w")))
    folio = DataFolio(url)
    # client.run runs a plain function on the worker's event-loop thread
    with pytest.raises(UsageError, match="event-loop"):
        client.run(lambda f=folio: f.get("a00"))


def test_pickled_secrets_are_absent_unless_asked(tmp_path: Path) -> None:
    options = {
        "key": "AKIA-SECRET-KEY",
        "secret": "s3cr3t-value",
        "client_kwargs": {"region_name": "eu-west-3", "aws_session_token": "sess-tok"},
        "headers": {"Authorization": "Bearer hdr-tok", "X-Plain": "plain"},
    }
    DataFolio(tmp_path / "b").add("x", [1, 2, 3])
    folio = DataFolio(tmp_path / "b", storage_options=options)
    raw = pickle.dumps(folio)
    for secret in ("AKIA-SECRET-KEY", "s3cr3t-value", "sess-tok", "hdr-tok"):
        assert secret.encode() not in raw
    assert b"eu-west-3" in raw
    assert b"plain" in raw
    back = pickle.loads(raw)
    assert back.get("x") == [1, 2, 3]
    asked = DataFolio(tmp_path / "b", storage_options=options, pickle_credentials=True)
    assert b"s3cr3t-value" in pickle.dumps(asked)
    assert "cache_dir" not in dict(
        state_of(DataFolio(tmp_path / "b", cache_dir=str(tmp_path))).settings
    )
