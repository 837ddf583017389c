"""The cache's decision tree, modes and API, asserted on request counts at the server.

Every remote bundle is read through a counting server: S3 bundles through the fault proxy in
front of moto (their writer talks to moto directly, so its requests are not counted), HTTP
bundles from the loopback file server (written locally, then copied onto it). Time is an
injected clock (``clock=lambda: now[0]``): nothing sleeps.

* Decision tree: within the TTL no request at all; expired and unchanged exactly one
  conditional manifest request (304), however many items; changed: the manifest plus the
  changed payload only, with :class:`~aiofolio.RemoteUpdateWarning` and the
  ``on_cache_invalidation`` callbacks; ``cache_ttl=None`` never asks again.
* Modes: offline (argument and ``AIOFOLIO_OFFLINE=1``), read-only, write-through /
  ``cache_on_add``, disabled, and ``use_stale=True``.
* API: ``cache_status``, ``cache_stats`` (folio and whole cache), ``get_path``,
  ``refresh_item``, ``invalidate_cache``, ``clear_cache``, ``clear_all_caches``,
  ``configure_cache``; local bundles are cached only with ``cache_enabled=True``.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio import CacheError, DataFolio, NotCachedError, RemoteUpdateWarning
from aiofolio.bundle import payload_path
from aiofolio.testing import FaultServer, MotoServer

TTL = 60.0
START = 1_700_000_000.0

ARRAY = np.arange(2_000, dtype=np.float64)
CONTENT: dict[str, Any] = {
    "arr": ARRAY,
    "table": pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}),
    "cfg": {"lr": 0.01, "layers": [64, 32]},
    "notes": ["first", "second"],
    "vec": np.ones(16, dtype=np.int32),
}
NAMES = list(CONTENT)


def _same(actual: Any, expected: Any) -> None:
    if isinstance(expected, pd.DataFrame):
        pdt.assert_frame_equal(actual, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected)
    else:
        assert actual == expected


@dataclasses.dataclass
class Remote:
    """A bundle read through a counting server, and a second writer that bypasses it."""

    kind: str
    url: str
    options: dict[str, Any]
    server: FaultServer
    prefix: str  # the bundle's URL path at ``server``
    writer: DataFolio  # cache_enabled=False, its requests are not counted
    sync: Callable[[], None]  # make the writer's changes visible at ``server``
    read_object: Callable[[str], bytes]  # raw bytes of a file of the bundle (uncounted)

    def folio(self, clock: list[float], **kwargs: Any) -> DataFolio:
        kwargs.setdefault("cache_ttl", TTL)
        return DataFolio(self.url, storage_options=self.options, clock=lambda: clock[0], **kwargs)

    def write(self, name: str, value: Any) -> None:
        self.writer.add(name, value, overwrite=True)
        self.sync()

    def requests(self, method: str | None = None) -> int:
        return self.server.stats.requests(method=method)

    def manifest_path(self) -> str:
        return f"{self.prefix}/items.json"

    def payload_url_path(self, name: str) -> str:
        return f"{self.prefix}/{payload_path(self.writer.get_item(name))}"

    def payload_gets(self, name: str) -> int:
        return self.server.stats.requests(path=self.payload_url_path(name), method="GET")

    def all_payload_gets(self) -> int:
        return sum(
            1
            for r in self.server.stats.records(method="GET")
            if r.path.startswith(self.prefix + "/") and not r.path.endswith("/items.json")
        )

    def manifest_statuses(self) -> list[int]:
        return self.server.stats.statuses(path=self.manifest_path(), method="GET")

    def payload(self, name: str) -> bytes:
        return self.read_object(payload_path(self.writer.get_item(name)))


def _fill(folio: DataFolio) -> None:
    for name, value in CONTENT.items():
        folio.add(name, value)


def _s3_remote(moto: MotoServer, bucket: str, proxy: FaultServer) -> Remote:
    prefix = "lab/cached"
    url = f"s3://{bucket}/{prefix}"
    writer = DataFolio(url, storage_options=moto.storage_options(), cache_enabled=False)
    _fill(writer)
    return Remote(
        kind="s3",
        url=url,
        options=moto.storage_options(endpoint_url=proxy.url),
        server=proxy,
        prefix=f"/{bucket}/{prefix}",
        writer=writer,
        sync=lambda: None,
        read_object=lambda rel: moto.client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")[
            "Body"
        ].read(),
    )


def _http_remote(server: FaultServer, root: Path) -> Remote:
    writer = DataFolio(root, cache_enabled=False)
    _fill(writer)

    def sync() -> None:
        for p in root.rglob("*"):
            if p.is_file():
                server.put(f"/bundle/{p.relative_to(root).as_posix()}", p.read_bytes())

    sync()
    return Remote(
        kind="http",
        url=f"{server.url}/bundle",
        options={},
        server=server,
        prefix="/bundle",
        writer=writer,
        sync=sync,
        read_object=lambda rel: (root / rel).read_bytes(),
    )


@pytest.fixture(params=["s3", "http"])
def remote(request: pytest.FixtureRequest, tmp_path: Path) -> Remote:
    if request.param == "s3":
        return _s3_remote(
            request.getfixturevalue("moto_server"),
            request.getfixturevalue("s3_bucket"),
            request.getfixturevalue("fault_proxy"),
        )
    return _http_remote(request.getfixturevalue("http_server"), tmp_path / "bundle")


@pytest.fixture
def http_remote(http_server: FaultServer, tmp_path: Path) -> Remote:
    return _http_remote(http_server, tmp_path / "bundle")


@pytest.fixture
def now() -> list[float]:
    return [START]


@pytest.fixture
def cache_dir(_isolated_cache: str) -> Path:
    return Path(_isolated_cache)


def _files(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in folder.rglob("*") if p.is_file()
    }


def _blob_files(cache_dir: Path) -> set[str]:
    blobs = cache_dir / "v1" / "blobs"
    return {p.name for p in blobs.rglob("*") if p.is_file()} if blobs.is_dir() else set()


@pytest.fixture
def warm(remote: Remote, now: list[float]) -> Iterator[DataFolio]:
    """A folio on ``remote`` with every item read once (so cached)."""
    folio = remote.folio(now)
    for name in NAMES:
        folio.get(name)
    assert remote.all_payload_gets() == len(NAMES)
    return folio


# -- the decision tree ---------------------------------------------------------------------------
def test_within_ttl_no_request_at_all(remote: Remote, warm: DataFolio, now: list[float]) -> None:
    before = remote.requests()
    for _ in range(3):
        for name, expected in CONTENT.items():
            _same(warm.get(name), expected)
    now[0] += TTL - 1
    again = remote.folio(now)  # a new object on the same bundle: the cached manifest
    for name, expected in CONTENT.items():
        _same(again.get(name), expected)
    assert again.get_many(NAMES)["cfg"] == CONTENT["cfg"]
    assert remote.requests() == before


def test_expired_and_unchanged_is_one_conditional_request(
    remote: Remote, warm: DataFolio, now: list[float]
) -> None:
    before = remote.requests()
    statuses = len(remote.manifest_statuses())
    now[0] += TTL + 1
    for name, expected in CONTENT.items():
        _same(warm.get(name), expected)
    for name in NAMES:  # the check moved the clock of the record: fresh again
        warm.get(name)
    assert remote.requests() == before + 1
    assert remote.manifest_statuses()[statuses:] == [304]

    # A new folio after the next expiry: again exactly one conditional request.
    now[0] += TTL + 1
    other = remote.folio(now)
    for name in NAMES:
        other.get(name)
    assert remote.requests() == before + 2
    assert remote.manifest_statuses()[statuses:] == [304, 304]


def test_changed_item_costs_the_manifest_and_that_payload_only(
    remote: Remote, warm: DataFolio, now: list[float]
) -> None:
    seen: list[tuple[dict[str, Any] | None, dict[str, Any] | None]] = []
    warm.on_cache_invalidation(lambda old, new: seen.append((old, new)))
    old_payload = remote.payload_url_path("cfg")
    remote.write("cfg", {"lr": 0.5})
    assert remote.payload_url_path("cfg") != old_payload

    before = remote.requests()
    manifest_gets = remote.server.stats.requests(path=remote.manifest_path(), method="GET")
    # Within the TTL the change is not seen: the cached value, no request.
    assert warm.get("cfg") == CONTENT["cfg"]
    assert remote.requests() == before

    now[0] += TTL + 1
    with pytest.warns(RemoteUpdateWarning, match="'cfg'") as caught:
        values = {name: warm.get(name) for name in NAMES}
    assert [w for w in caught if issubclass(w.category, RemoteUpdateWarning)]
    assert not any("'arr'" in str(w.message) for w in caught)
    assert values["cfg"] == {"lr": 0.5}
    for name in NAMES:
        if name != "cfg":
            _same(values[name], CONTENT[name])
    assert remote.requests() == before + 2
    assert remote.server.stats.requests(path=remote.manifest_path(), method="GET") == (
        manifest_gets + 1
    )
    assert remote.manifest_statuses()[-1] == 200
    assert remote.payload_gets("cfg") == 1
    assert remote.server.stats.requests(path=old_payload) == 1  # the first, warm-up read
    assert len(seen) == 1
    old, new = seen[0]
    assert old is not None
    assert new is not None
    assert old["name"] == new["name"] == "cfg"
    assert old["version_id"] != new["version_id"]


def test_ttl_none_never_asks_again(remote: Remote, now: list[float]) -> None:
    folio = remote.folio(now, cache_ttl=None)
    for name in NAMES:
        folio.get(name)
    remote.write("cfg", {"lr": 0.9})
    before = remote.requests()
    now[0] += 10 * 365 * 86400
    assert folio.get("cfg") == CONTENT["cfg"]
    assert remote.folio(now, cache_ttl=None).get("cfg") == CONTENT["cfg"]
    assert remote.requests() == before


# -- modes ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["argument", "env"])
def test_offline_serves_the_cache_and_names_what_is_missing(
    remote: Remote, now: list[float], how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    online = remote.folio(now)
    online.get("arr")
    before = remote.requests()
    now[0] += 10 * TTL  # long expired: offline never asks anyway

    if how == "env":
        monkeypatch.setenv("AIOFOLIO_OFFLINE", "1")
        offline = remote.folio(now)
        assert offline.settings.cache_mode == "offline"
    else:
        offline = remote.folio(now, cache_mode="offline")
    _same(offline.get("arr"), ARRAY)
    with pytest.raises(NotCachedError, match="'cfg'"):
        offline.get("cfg")
    with pytest.raises(NotCachedError, match="not in the cache"):
        DataFolio(
            remote.url + "-elsewhere",
            storage_options=remote.options,
            clock=lambda: now[0],
            **({} if how == "env" else {"cache_mode": "offline"}),
        )
    assert remote.requests() == before


def test_read_only_cache_reads_but_never_fills(
    remote: Remote, now: list[float], cache_dir: Path
) -> None:
    # Warm one item so the cache folder, its stats and the bundle's record exist.
    remote.folio(now).get("arr")
    before_blobs = _blob_files(cache_dir)
    before_files = set(_files(cache_dir))

    folio = remote.folio(now, cache_mode="read-only")
    _same(folio.get("arr"), ARRAY)  # a hit on what is there
    gets = remote.all_payload_gets()
    for name, expected in CONTENT.items():
        _same(folio.get(name), expected)
    assert remote.all_payload_gets() == gets + len(NAMES) - 1
    # Not cached: the next read downloads again.
    folio.get("cfg")
    assert remote.payload_gets("cfg") == 2
    assert _blob_files(cache_dir) == before_blobs
    assert set(_files(cache_dir)) == before_files
    assert folio.cache_status("cfg")["cached"] is False


def test_read_only_cache_on_an_empty_cache_writes_no_blob_or_record(
    remote: Remote, now: list[float], cache_dir: Path
) -> None:
    folio = remote.folio(now, cache_mode="read-only")
    for name, expected in CONTENT.items():
        _same(folio.get(name), expected)
    assert remote.all_payload_gets() == len(NAMES)
    # The TTL holds in memory: one manifest load for the open and all five reads.
    assert remote.manifest_statuses() == [200]
    now[0] += TTL + 1
    folio.get("cfg")
    folio.get("notes")
    assert remote.manifest_statuses() == [200, 304]
    assert _blob_files(cache_dir) == set()
    bundles = cache_dir / "v1" / "bundles"
    assert not bundles.is_dir() or not [p for p in bundles.rglob("*") if p.is_file()]


@pytest.mark.parametrize("how", [{"cache_on_add": True}, {"cache_mode": "write-through"}])
def test_write_through_add_then_get_downloads_nothing(
    moto_server: MotoServer,
    s3_bucket: str,
    fault_proxy: FaultServer,
    now: list[float],
    how: dict[str, Any],
) -> None:
    url = f"s3://{s3_bucket}/wt"
    options = moto_server.storage_options(endpoint_url=fault_proxy.url)
    folio = DataFolio(url, storage_options=options, clock=lambda: now[0], cache_ttl=TTL, **how)
    folio.add("arr", ARRAY)
    folio.add("cfg", CONTENT["cfg"])
    gets = fault_proxy.stats.requests(method="GET")
    _same(folio.get("arr"), ARRAY)
    assert folio.get("cfg") == CONTENT["cfg"]
    assert fault_proxy.stats.requests(method="GET") == gets
    assert folio.cache_status("arr")["cached"] is True
    # Another folio on the same bundle and cache: still no payload request.
    other = DataFolio(url, storage_options=options, clock=lambda: now[0], cache_ttl=TTL)
    _same(other.get("arr"), ARRAY)
    assert fault_proxy.stats.requests(method="GET") == gets


def test_without_write_through_add_then_get_downloads(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer, now: list[float]
) -> None:
    url = f"s3://{s3_bucket}/plain"
    options = moto_server.storage_options(endpoint_url=fault_proxy.url)
    folio = DataFolio(url, storage_options=options, clock=lambda: now[0], cache_ttl=TTL)
    folio.add("arr", ARRAY)
    gets = fault_proxy.stats.requests(method="GET")
    _same(folio.get("arr"), ARRAY)
    assert fault_proxy.stats.requests(method="GET") == gets + 1


def test_disabled_reads_the_remote_every_time(
    remote: Remote, now: list[float], cache_dir: Path
) -> None:
    folio = remote.folio(now, cache_mode="disabled")
    for _ in range(3):
        _same(folio.get("arr"), ARRAY)
    assert remote.payload_gets("arr") == 3
    assert _blob_files(cache_dir) == set()
    with pytest.raises(CacheError, match="caching is off"):
        folio.cache_status("arr")


def test_use_stale_asks_nothing_after_the_ttl(
    remote: Remote, warm: DataFolio, now: list[float]
) -> None:
    remote.write("cfg", {"lr": 2.0})
    before = remote.requests()
    now[0] += 100 * TTL
    with warnings.catch_warnings():
        warnings.simplefilter("error", RemoteUpdateWarning)
        assert warm.get("cfg", use_stale=True) == CONTENT["cfg"]
        _same(warm.get("arr", use_stale=True), ARRAY)
        assert warm.get_many(["cfg", "notes"], use_stale=True)["cfg"] == CONTENT["cfg"]
    assert remote.requests() == before
    # Without it, the expired TTL revalidates and the change is seen.
    with pytest.warns(RemoteUpdateWarning):
        assert warm.get("cfg") == {"lr": 2.0}
    assert remote.requests() == before + 2


# -- the API -------------------------------------------------------------------------------------
def test_cache_status(remote: Remote, now: list[float]) -> None:
    folio = remote.folio(now)
    status = folio.cache_status("arr")
    assert set(status) == {
        "cached",
        "cache_path",
        "size_bytes",
        "cached_at",
        "last_verified",
        "ttl_expires_in",
        "checksum_valid",
        "verified_by",
        "access_count",
    }
    assert status["cached"] is False
    assert status["verified_by"] is None
    assert status["cache_path"] is None
    assert status["access_count"] == 0
    assert status["ttl_expires_in"] == pytest.approx(TTL)

    folio.get("arr")
    first = folio.cache_status("arr")
    payload = remote.payload("arr")
    assert first["cached"] is True
    assert first["size_bytes"] == len(payload) == os.path.getsize(first["cache_path"])
    assert Path(first["cache_path"]).read_bytes() == payload
    assert first["checksum_valid"] is True
    assert first["verified_by"] == "md5 (manifest)"  # aiofolio's writer records the MD5
    assert first["access_count"] == 1
    assert isinstance(first["cached_at"], str)
    assert first["cached_at"].endswith("Z")

    now[0] += 10
    folio.get("arr")
    folio.get("arr")
    second = folio.cache_status("arr")
    assert second["ttl_expires_in"] == pytest.approx(TTL - 10)
    assert second["ttl_expires_in"] < first["ttl_expires_in"]
    assert second["access_count"] == 3
    assert folio.cache_status("cfg")["cached"] is False
    now[0] += TTL
    assert folio.cache_status("arr")["ttl_expires_in"] == 0.0


def test_cache_stats_for_the_folio_and_the_whole_cache(
    remote: Remote, now: list[float], cache_dir: Path
) -> None:
    folio = remote.folio(now)
    folio.get("arr")  # miss
    folio.get("arr")  # hit
    folio.get("cfg")  # miss
    folio.get("arr")  # hit
    stats = folio.cache_stats()
    downloaded = len(remote.payload("arr")) + len(remote.payload("cfg"))
    assert stats["hits"] == 2
    assert stats["misses"] == 2
    assert stats["bytes_downloaded"] == downloaded
    assert stats["hit_rate"] == pytest.approx(0.5)
    assert stats["remote_checks"] == 1  # the first load
    now[0] += TTL + 1
    folio.get("arr")
    stats = folio.cache_stats()
    assert stats["remote_checks"] == 2
    assert stats["hits"] == 3
    assert stats["hit_rate"] == pytest.approx(3 / 5)

    # A second bundle in the same cache: the class-level figures cover both.
    second = DataFolio(
        remote.url,
        storage_options=remote.options,
        clock=lambda: now[0],
        cache_ttl=TTL,
    )
    second.get("notes")  # a miss, on the same bundle (same counters)
    whole = DataFolio.cache_stats(cache_dir=str(cache_dir))
    assert whole["hits"] == 3
    assert whole["misses"] == 3
    assert whole["bytes_downloaded"] == downloaded + len(remote.payload("notes"))
    assert whole["hit_rate"] == pytest.approx(0.5)
    assert folio.cache_stats()["misses"] == 3


def test_cache_stats_whole_cache_adds_bundles(
    http_remote: Remote, http_server: FaultServer, tmp_path: Path, now: list[float], cache_dir: Path
) -> None:
    other_root = tmp_path / "other"
    other_writer = DataFolio(other_root, cache_enabled=False)
    other_writer.add("x", np.arange(10))
    for p in other_root.rglob("*"):
        if p.is_file():
            http_server.put(f"/other/{p.relative_to(other_root).as_posix()}", p.read_bytes())
    a = http_remote.folio(now)
    b = DataFolio(f"{http_server.url}/other", clock=lambda: now[0])
    a.get("arr")
    a.get("arr")
    b.get("x")
    sa, sb = a.cache_stats(), b.cache_stats()
    whole = DataFolio.cache_stats(cache_dir=str(cache_dir))
    for key in ("hits", "misses", "bytes_downloaded", "remote_checks"):
        assert whole[key] == sa[key] + sb[key], key
    assert whole["bytes_downloaded"] == http_server.stats.bytes_served(method="GET") - sum(
        http_server.stats.bytes_served(path=p, method="GET")
        for p in ("/bundle/items.json", "/other/items.json")
    )
    assert whole["hit_rate"] == pytest.approx(1 / 3)


def test_get_path_is_a_read_only_copy_of_the_payload(remote: Remote, now: list[float]) -> None:
    folio = remote.folio(now)
    path = folio.get_path("arr")
    assert os.path.isfile(path)
    assert Path(path).read_bytes() == remote.payload("arr")
    mode = os.stat(path).st_mode
    assert not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, ARRAY)
    del mapped
    before = remote.requests()
    assert folio.get_path("arr") == path
    _same(folio.get("arr"), ARRAY)
    assert remote.requests() == before


def test_refresh_item_force_asks_within_the_ttl(
    remote: Remote, warm: DataFolio, now: list[float]
) -> None:
    before = remote.requests()
    statuses = len(remote.manifest_statuses())
    warm.refresh_item("arr", force=True)
    assert remote.requests() == before + 1
    assert remote.manifest_statuses()[statuses:] == [304]
    warm.refresh_item("arr", force=False)  # within the TTL: nothing
    assert remote.requests() == before + 1

    remote.write("arr", ARRAY * 2)
    with pytest.warns(RemoteUpdateWarning, match="'arr'"):
        warm.refresh_item("arr")
    assert remote.requests() == before + 3  # the manifest, then the new payload
    assert remote.payload_gets("arr") == 1
    before = remote.requests()
    _same(warm.get("arr"), ARRAY * 2)
    assert remote.requests() == before


def test_invalidate_cache_downloads_that_item_again(
    remote: Remote, warm: DataFolio, now: list[float]
) -> None:
    before = remote.requests()
    warm.invalidate_cache("cfg")
    assert warm.cache_status("cfg")["cached"] is False
    assert warm.get("cfg") == CONTENT["cfg"]
    _same(warm.get("arr"), ARRAY)
    assert remote.requests() == before + 1
    assert remote.payload_gets("cfg") == 2

    warm.invalidate_cache()
    for name in NAMES:
        warm.get(name)
    assert remote.requests() == before + 1 + len(NAMES)
    assert remote.all_payload_gets() == 2 * len(NAMES) + 1


def test_clear_cache_then_get_downloads_again(
    remote: Remote, warm: DataFolio, now: list[float]
) -> None:
    before = remote.requests()
    warm.clear_cache()
    assert warm.cache_status("arr")["cached"] is False
    _same(warm.get("arr"), ARRAY)
    assert remote.payload_gets("arr") == 2
    # The manifest had to be loaded again too, then the payload.
    assert remote.requests() == before + 2


def test_clear_all_caches_frees_the_bytes(
    remote: Remote, warm: DataFolio, now: list[float], cache_dir: Path
) -> None:
    blobs = cache_dir / "v1" / "blobs"
    payloads = sum(len(remote.payload(n)) for n in NAMES)
    on_disk = sum(_files(cache_dir / "v1").values())
    assert (cache_dir / "CACHEDIR.TAG").is_file()
    assert sum(p.stat().st_size for p in blobs.rglob("*") if p.is_file()) == payloads
    freed = DataFolio.clear_all_caches(str(cache_dir))
    assert freed == on_disk
    assert freed >= payloads
    assert _blob_files(cache_dir) == set()

    # Usable again afterwards: the next read downloads.
    folio = remote.folio(now)
    _same(folio.get("arr"), ARRAY)
    assert remote.payload_gets("arr") == 2
    assert len(_blob_files(cache_dir)) == 1


def test_configure_cache_applies_to_folios_opened_after_it(
    remote: Remote, now: list[float]
) -> None:
    earlier = remote.folio(now, cache_ttl=TTL)
    earlier.get("cfg")
    DataFolio.configure_cache(cache_ttl=None)
    later = DataFolio(remote.url, storage_options=remote.options, clock=lambda: now[0])
    assert later.settings.cache_ttl is None
    assert earlier.settings.cache_ttl == TTL
    later.get("cfg")
    remote.write("cfg", {"lr": 7})
    before = remote.requests()
    now[0] += 1000 * TTL
    assert later.get("cfg") == CONTENT["cfg"]
    assert remote.requests() == before
    with pytest.warns(RemoteUpdateWarning):
        assert earlier.get("cfg") == {"lr": 7}
    assert remote.requests() == before + 2


def test_local_bundles_are_cached_only_when_asked(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "local"
    folio = DataFolio(root)
    folio.add("arr", ARRAY)
    _same(folio.get("arr"), ARRAY)
    with pytest.raises(CacheError, match="local bundles are not cached unless cache_enabled"):
        folio.cache_status("arr")
    assert _blob_files(cache_dir) == set()
    assert folio.get_path("arr") == str(root / payload_path(folio.get_item("arr")))

    cached = DataFolio(root, cache_enabled=True)
    assert cached.cache_status("arr")["cached"] is False
    _same(cached.get("arr"), ARRAY)
    status = cached.cache_status("arr")
    payload = (root / payload_path(cached.get_item("arr"))).read_bytes()
    assert status["cached"] is True
    assert status["size_bytes"] == len(payload)
    assert Path(status["cache_path"]).read_bytes() == payload
    assert len(_blob_files(cache_dir)) == 1
