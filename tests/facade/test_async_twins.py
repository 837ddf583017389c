"""The async twins do what their sync methods do, on real bundles and a real cache folder.

The remote bundle is written locally and served by the loopback HTTP file server; reads are
cached in the test's own cache folder (conftest's ``_isolated_cache``), with an injected clock.
Each test runs a sync method and its twin and compares what they leave behind: the cache
status and the cached bytes, the pins and priorities on disk and what eviction does with them,
request counts and statuses at the server, the manifest file of a local bundle. Finally each
twin hands the engine the same coroutine (or the same blocking function) as its sync method:
one implementation, two entry points.
"""

from __future__ import annotations

import datetime as dt
import inspect
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio import (
    ArgumentTypeError,
    DataFolio,
    InvalidArgumentError,
    ItemNotFoundError,
    RemoteUpdateWarning,
    _portal,
)
from aiofolio.bundle import payload_path
from aiofolio.store import CacheLayout
from aiofolio.store.prefs import PrefsStore
from aiofolio.testing import FaultServer

TTL = 60.0
START = 1_700_000_000.0
VALUES: dict[str, Any] = {
    "a": np.arange(500, dtype=np.int64),
    "b": np.arange(500, dtype=np.int64) * 2,
    "c": np.arange(500, dtype=np.int64) * 3,
    "cfg": {"lr": 0.1, "layers": [8, 4]},
}
NAMES = list(VALUES)


class Served:
    """A bundle written under ``root`` and published on the loopback HTTP file server."""

    def __init__(self, server: FaultServer, root: Path) -> None:
        self.server, self.root = server, root
        self.writer = DataFolio(root, cache_enabled=False)
        for name, value in VALUES.items():
            self.writer.add(name, value)
        self.publish()

    def publish(self) -> None:
        for p in self.root.rglob("*"):
            if p.is_file():
                self.server.put(f"/bundle/{p.relative_to(self.root).as_posix()}", p.read_bytes())

    def write(self, name: str, value: Any) -> None:
        self.writer.add(name, value, overwrite=True)
        self.publish()

    @property
    def url(self) -> str:
        return f"{self.server.url}/bundle"

    def payload(self, name: str) -> bytes:
        return (self.root / payload_path(self.writer.get_item(name))).read_bytes()

    def gets(self, name: str) -> int:
        path = f"/bundle/{payload_path(self.writer.get_item(name))}"
        return self.server.stats.requests(path=path, method="GET")

    def manifest_statuses(self) -> list[int]:
        return self.server.stats.statuses(path="/bundle/items.json", method="GET")


@pytest.fixture
def served(http_server: FaultServer, tmp_path: Path) -> Served:
    return Served(http_server, tmp_path / "bundle")


@pytest.fixture
def now() -> list[float]:
    return [START]


@pytest.fixture
def cache_dir(_isolated_cache: str) -> Path:
    return Path(_isolated_cache)


def _open(served: Served, now: list[float], **kwargs: Any) -> DataFolio:
    return DataFolio(served.url, cache_ttl=TTL, clock=lambda: now[0], **kwargs)


def _file(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def _cached(folio: DataFolio) -> set[str]:
    return {n for n in NAMES if folio.cache_status(n)["cached"]}


# -- status and stats -----------------------------------------------------------------------------
async def test_acache_status_is_cache_status(served: Served, now: list[float]) -> None:
    folio = _open(served, now)
    assert (await folio.acache_status("a")) == folio.cache_status("a")
    assert (await folio.acache_status("a"))["cached"] is False
    np.testing.assert_array_equal(await folio.aget("a"), VALUES["a"])
    sync, twin = folio.cache_status("a"), await folio.acache_status("a")
    assert twin == sync
    assert twin["cached"] is True
    assert twin["checksum_valid"] is True
    assert twin["access_count"] == 1
    assert _file(twin["cache_path"]) == served.payload("a")
    with pytest.raises(ItemNotFoundError):
        await folio.acache_status("nope")


async def test_acache_stats_on_a_folio_and_on_the_class(
    served: Served, now: list[float], cache_dir: Path
) -> None:
    folio = _open(served, now)
    await folio.aget("a")  # a miss
    await folio.aget("a")  # a hit
    await folio.aget("cfg")  # a miss
    twin = await folio.acache_stats()
    assert twin == folio.cache_stats()
    assert (twin["hits"], twin["misses"]) == (1, 2)
    assert twin["bytes_downloaded"] == len(served.payload("a")) + len(served.payload("cfg"))
    whole = await DataFolio.acache_stats(str(cache_dir))
    assert whole == DataFolio.cache_stats(str(cache_dir))
    assert (whole["hits"], whole["misses"]) == (1, 2)


# -- refreshing -----------------------------------------------------------------------------------
async def test_arefresh_item_fetches_a_changed_item_into_the_cache(
    served: Served, now: list[float]
) -> None:
    folio = _open(served, now)
    await folio.awarm_cache()
    before = served.server.stats.requests()
    assert await folio.arefresh_item("a", force=False) is folio  # within the TTL: nothing
    assert served.server.stats.requests() == before
    assert await folio.arefresh_item("a") is folio  # forced: one conditional request
    assert served.manifest_statuses()[-1] == 304
    assert served.server.stats.requests() == before + 1

    served.write("a", VALUES["a"] + 1)
    served.write("b", VALUES["b"] + 1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await folio.arefresh_item("a")
    dropped = [str(w.message) for w in caught if issubclass(w.category, RemoteUpdateWarning)]
    assert len(dropped) == 2  # the new manifest changed a and b: both cached copies dropped
    assert any("'a'" in m for m in dropped)
    assert any("'b'" in m for m in dropped)
    status = await folio.acache_status("a")
    assert status["cached"] is True
    assert _file(status["cache_path"]) == served.payload("a")  # the new bytes
    assert served.gets("a") == 1  # downloaded by the refresh, once
    assert folio.revision == served.writer.revision
    # The sync method, on the other changed item, does the same.
    before = served.server.stats.requests()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemoteUpdateWarning)
        assert folio.refresh_item("b") is folio
    assert served.gets("b") == 1
    assert _file(folio.cache_status("b")["cache_path"]) == served.payload("b")
    assert served.server.stats.requests() == before + 2  # the manifest (304) and the payload
    np.testing.assert_array_equal(await folio.aget("a"), VALUES["a"] + 1)
    assert served.gets("a") == 1


async def test_arefresh_cache_is_one_conditional_request(served: Served, now: list[float]) -> None:
    folio = _open(served, now)
    statuses = len(served.manifest_statuses())
    assert await folio.arefresh_cache() is folio
    assert folio.refresh_cache() is folio
    assert served.manifest_statuses()[statuses:] == [304, 304]
    served.write("cfg", {"lr": 1.0})
    with pytest.warns(RemoteUpdateWarning):
        await folio.arefresh_cache()
    assert served.manifest_statuses()[-1] == 200
    assert folio.revision == served.writer.revision


# -- forgetting -----------------------------------------------------------------------------------
async def test_ainvalidate_cache_forgets_one_item_or_all(served: Served, now: list[float]) -> None:
    folio = _open(served, now)
    await folio.awarm_cache()
    assert _cached(folio) == set(NAMES)
    assert await folio.ainvalidate_cache("a") is folio
    assert _cached(folio) == {"b", "c", "cfg"}
    folio.invalidate_cache("b")
    assert _cached(folio) == {"c", "cfg"}
    await folio.ainvalidate_cache()
    assert _cached(folio) == set()
    np.testing.assert_array_equal(await folio.aget("c"), VALUES["c"])
    assert served.gets("c") == 2  # forgotten, so fetched again
    with pytest.raises(ItemNotFoundError):
        await folio.ainvalidate_cache("nope")


async def test_aclear_cache_removes_the_bundle_record(
    served: Served, now: list[float], cache_dir: Path
) -> None:
    folio = _open(served, now)
    await folio.awarm_cache()
    record = CacheLayout(cache_dir).bundle_dir(folio.path) / "record.json"
    assert record.is_file()
    assert await folio.aclear_cache() is folio
    assert not record.exists()
    assert _cached(folio) == set()
    before = served.server.stats.requests()
    np.testing.assert_array_equal(await folio.aget("a"), VALUES["a"])
    assert served.server.stats.requests() == before + 2  # the manifest again, then the payload
    assert record.is_file()


async def test_aclear_all_caches_frees_every_byte(
    served: Served, now: list[float], cache_dir: Path
) -> None:
    folio = _open(served, now)
    await folio.awarm_cache()
    v1 = cache_dir / "v1"
    on_disk = sum(p.stat().st_size for p in v1.rglob("*") if p.is_file() and not p.is_symlink())
    assert on_disk >= sum(len(served.payload(n)) for n in NAMES)
    freed = await DataFolio.aclear_all_caches(str(cache_dir))
    assert freed == on_disk
    assert not v1.exists()
    assert DataFolio.clear_all_caches(str(cache_dir)) == 0  # nothing left, as sync sees it
    again = _open(served, now)
    np.testing.assert_array_equal(await again.aget("a"), VALUES["a"])
    assert served.gets("a") == 2


# -- pins and priorities --------------------------------------------------------------------------
async def test_apin_and_priority_are_saved_and_obeyed_by_eviction(
    served: Served, now: list[float], cache_dir: Path
) -> None:
    size = served.writer.get_item("a").size_bytes
    assert size is not None
    folio = _open(served, now, max_cache_size=None)
    assert await folio.apin_cache("a") is folio
    assert await folio.aset_cache_priority("b", 5) is folio
    folio.pin_cache("cfg")
    wishes = PrefsStore(CacheLayout(cache_dir)).load(folio.path)  # on disk, for any process
    assert (wishes["a"].pinned, wishes["b"].priority, wishes["cfg"].pinned) == (True, 5, True)
    info = await folio.acache_info()
    assert (info["pinned"], info["prioritized"]) == (2, 1)
    assert info == folio.cache_info()

    await folio.awarm_cache()
    DataFolio.configure_cache(max_cache_size=int(size * 2.5), eviction_threshold=1.0)
    result = await DataFolio.aenforce_cache_limit()
    assert result["evicted"] == 1  # c: neither pinned nor prioritized
    assert _cached(folio) == {"a", "b", "cfg"}

    assert await folio.aunpin_cache("a") is folio
    await folio.aset_cache_priority("b", 0)
    folio.unpin_cache("cfg")
    assert PrefsStore(CacheLayout(cache_dir)).load(folio.path) == {}  # back to the defaults
    DataFolio.configure_cache(max_cache_size=1)
    assert (await DataFolio.aenforce_cache_limit())["evicted"] == 3
    assert _cached(folio) == set()


async def test_aset_cache_priority_refuses_a_non_int(served: Served, now: list[float]) -> None:
    folio = _open(served, now)
    for bad in (True, 1.5, "high"):
        with pytest.raises(ArgumentTypeError, match="priority"):
            await folio.aset_cache_priority("a", bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="priority"):  # what it raised before
            folio.set_cache_priority("a", bad)  # type: ignore[arg-type]
    with pytest.raises(ItemNotFoundError):
        await folio.apin_cache("nope")
    assert (await folio.acache_info())["prioritized"] == 0


# -- local bundles: validity, the 1.x names, metadata ---------------------------------------------
async def test_ais_valid_sees_a_damaged_payload(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "bundle")
    folio.add("a", VALUES["a"])
    folio.add("cfg", VALUES["cfg"])
    assert await folio.ais_valid() is True
    assert folio.is_valid() is True
    payload = tmp_path / "bundle" / payload_path(folio.get_item("a"))
    data = bytearray(payload.read_bytes())
    data[-1] ^= 0xFF
    payload.write_bytes(bytes(data))
    assert await folio.ais_valid() is False
    assert folio.is_valid() is False
    assert (await folio.avalidate()) == {"a": False, "cfg": True}


async def test_the_1x_names_have_async_twins(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    folio = DataFolio(root)
    frame = pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]})
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    source = tmp_path / "notes.txt"
    source.write_bytes(b"artifact bytes")
    assert await folio.aadd_table("t", frame) is folio
    await folio.aadd_numpy("n", VALUES["a"])
    await folio.aadd_json("j", VALUES["cfg"])
    await folio.aadd_timestamp("ts", when)
    await folio.aadd_data("d", [1, 2, 3])
    await folio.aadd_artifact("art", source, description="notes")
    folio.add_table("t_sync", frame)

    reopened = DataFolio(root)  # what reached the manifest on disk
    assert reopened.item_info("t")["item_type"] == reopened.item_info("t_sync")["item_type"]
    assert reopened.item_info("art")["description"] == "notes"
    pdt.assert_frame_equal(await reopened.aget_table("t"), reopened.get_table("t_sync"))
    pdt.assert_frame_equal(await reopened.aget_table("t", columns=["y"]), frame[["y"]])
    np.testing.assert_array_equal(await reopened.aget_numpy("n"), reopened.get_numpy("n"))
    assert await reopened.aget_json("j") == reopened.get_json("j") == VALUES["cfg"]
    assert await reopened.aget_timestamp("ts") == when
    assert await reopened.aget_timestamp("ts", as_unix=True) == reopened.get_timestamp(
        "ts", as_unix=True
    )
    assert await reopened.aget_data("d") == reopened.get_data("d") == [1, 2, 3]
    path = await reopened.aget_artifact_path("art")
    assert path == reopened.get_artifact_path("art")
    assert _file(path) == b"artifact bytes"


async def test_metadata_async_twins_commit_to_the_manifest(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    folio = DataFolio(root, metadata={"keep": 1})

    def on_disk() -> dict[str, Any]:
        meta = json.loads((root / "items.json").read_text())["metadata"]
        return {
            k: v for k, v in meta.items() if k not in ("created_at", "updated_at", "_datafolio")
        }

    revision = folio.revision
    await folio.metadata.aupdate({"a": 1, "b": 2}, c=3)
    assert on_disk() == {"keep": 1, "a": 1, "b": 2, "c": 3}
    assert folio.revision == revision + 1  # one commit for the three keys
    assert await folio.metadata.asetdefault("a", 99) == 1
    assert await folio.metadata.asetdefault("z", [1]) == [1]
    assert on_disk()["z"] == [1]
    assert await folio.metadata.apop("b") == 2
    assert await folio.metadata.apop("missing", "dflt") == "dflt"
    with pytest.raises(KeyError):
        await folio.metadata.apop("missing")
    key, value = await folio.metadata.apopitem()
    assert (key, value) == ("z", [1])
    assert on_disk() == {"keep": 1, "a": 1, "c": 3}
    assert {k: v for k, v in folio.metadata.items() if k in on_disk()} == on_disk()
    assert DataFolio(root).metadata["c"] == 3
    with pytest.raises(TypeError):  # clear() was a TypeError; it is a usage error too
        folio.metadata.clear()


# -- one implementation: the twin hands the engine what its sync method does ----------------------
@pytest.fixture
def handed(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, object]]:
    """``(entry, target)`` for each portal call: ``call`` or ``acall``, and the function run."""
    seen: list[tuple[str, object]] = []
    real_call, real_acall = _portal.call, _portal.acall

    def call(fn: Any, *args: Any) -> Any:
        seen.append(("call", _target(fn)))
        return real_call(fn, *args)

    async def acall(fn: Any, *args: Any) -> Any:
        seen.append(("acall", _target(fn)))
        return await real_acall(fn, *args)

    monkeypatch.setattr(_portal, "call", call)
    monkeypatch.setattr(_portal, "acall", acall)
    return seen


def _target(fn: Any) -> object:
    """The function behind a bound method or a ``kw``/``threaded`` closure."""
    if inspect.ismethod(fn):
        return _target(fn.__func__)
    inner = inspect.getclosurevars(fn).nonlocals.get("fn") if fn.__closure__ else None
    return _target(inner) if inner is not None else fn


Call = tuple[str, tuple[Any, ...], dict[str, Any]]
REMOTE_PAIRS: list[Call] = [
    ("cache_status", ("a",), {}),
    ("cache_stats", (), {}),
    ("cache_info", (), {}),
    ("refresh_item", ("a",), {}),
    ("refresh_cache", (), {}),
    ("refresh", (), {}),
    ("invalidate_cache", ("a",), {}),
    ("clear_cache", (), {}),
    ("pin_cache", ("a",), {}),
    ("unpin_cache", ("a",), {}),
    ("set_cache_priority", ("a", 3), {}),
    ("enforce_cache_limit", (), {}),
    ("cleanup_cache", ("1d",), {}),
    ("cleanup_orphaned_caches", (), {}),
    ("clear_all_caches", (), {}),
    ("get_path", ("a",), {}),
    ("get_many", (["a", "cfg"],), {}),
    ("warm_cache", (["a"],), {}),
]
LOCAL_PAIRS: list[Call] = [
    ("add", ("x", [1]), {"overwrite": True}),
    ("add_model", ("m", {"w": 1}), {"overwrite": True}),
    ("reference_table", ("r", "/data/t.parquet"), {"overwrite": True}),
    ("delete", ("x",), {}),
    ("validate", (), {}),
    ("is_valid", (), {}),
    ("optimize_storage", (), {}),
]


async def _both(folio: DataFolio, call: Call, handed: list[tuple[str, object]]) -> None:
    name, args, kwargs = call
    handed.clear()
    getattr(folio, name)(*args, **kwargs)
    sync = list(handed)
    handed.clear()
    if name == "delete":
        folio.add("x", [1])  # deleted by the sync call: the twin deletes it again
        handed.clear()
    await getattr(folio, f"a{name}")(*args, **kwargs)
    twin = list(handed)
    assert sync, f"{name} did not go through the portal"
    assert [e for e, _ in sync] == ["call"] * len(sync), name
    assert [e for e, _ in twin] == ["acall"] * len(twin), name
    if name == "get_path" and not twin:
        return  # the path was handed out by the sync call: the twin's hit skips the engine
    assert [t for _, t in twin] == [t for _, t in sync], name


@pytest.mark.parametrize("call", REMOTE_PAIRS, ids=[c[0] for c in REMOTE_PAIRS])
async def test_a_remote_twin_runs_the_same_implementation(
    served: Served, now: list[float], handed: list[tuple[str, object]], call: Call
) -> None:
    folio = _open(served, now)
    await folio.aget("a")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RemoteUpdateWarning)
        await _both(folio, call, handed)


@pytest.mark.parametrize("call", LOCAL_PAIRS, ids=[c[0] for c in LOCAL_PAIRS])
async def test_a_local_twin_runs_the_same_implementation(
    tmp_path: Path, handed: list[tuple[str, object]], call: Call
) -> None:
    folio = DataFolio(tmp_path / "bundle")
    folio.add("x", [1])
    await _both(folio, call, handed)


async def test_usage_errors_of_the_twins_are_the_sync_ones(
    served: Served, now: list[float]
) -> None:
    folio = _open(served, now)
    checks: list[tuple[Callable[[], Any], Callable[[], Any], type[Exception]]] = [
        (
            lambda: folio.warm_cache(concurrency=0),
            lambda: folio.awarm_cache(concurrency=0),
            ValueError,
        ),
        (
            lambda: folio.refresh_references(concurrency=0),
            lambda: folio.arefresh_references(concurrency=0),
            ValueError,
        ),
        (
            lambda: DataFolio.refresh_all([folio], concurrency=0),
            lambda: DataFolio.arefresh_all([folio], concurrency=0),
            ValueError,
        ),
        (
            lambda: folio.cleanup_cache(older_than="never"),
            lambda: folio.acleanup_cache(older_than="never"),
            ValueError,
        ),
    ]
    for sync, twin, builtin in checks:
        with pytest.raises(InvalidArgumentError) as raised_sync:
            sync()
        with pytest.raises(InvalidArgumentError) as raised_twin:
            await twin()
        assert isinstance(raised_twin.value, builtin)
        assert str(raised_twin.value) == str(raised_sync.value)
