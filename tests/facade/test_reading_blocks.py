"""Reading as datafolio 2.3.0 offers it: ``data``, ``get_many``, ``inspect_table``,
``scan_table``, and the ``pinned()`` and ``batch()`` blocks.

* ``folio.data`` gives items by attribute and key with ``content``/``path``/``type``/... and
  datafolio's reprs; missing names raise ``AttributeError``/``KeyError``.
* ``get_many(names, threads=)`` reads concurrently, resolving every name first.
* ``inspect_table`` records a referenced table's schema, size and identity as datafolio does;
  ``scan_table`` is a polars LazyFrame for local, remote and referenced tables.
* ``pinned()``: every read inside sees one revision, another writer's change (local, and a
  cached S3 bundle) is invisible until the outermost block exits, and no read inside asks
  the store anything (requests counted at the loopback proxy).
* ``batch()``: writes inside publish ``items.json`` once (PUTs counted at the proxy), reads
  inside see them, an exception publishes nothing and leaves no payload behind, a concurrent
  writer makes the batch fail as a whole.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import datafolio
import numpy as np
import pandas as pd
import pandas.testing as pdt
import polars as pl
import pytest

from aiofolio import (
    ConcurrentWriteError,
    DataAccessor,
    DataFolio,
    ItemProxy,
    RemoteUpdateWarning,
    UsageError,
)
from aiofolio.testing import FaultServer, MotoServer

TABLE = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})


@pytest.fixture
def pair(tmp_path: Path) -> tuple[DataFolio, Any]:
    ours = DataFolio(tmp_path / "ours")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    for folio in (ours, theirs):
        folio.add("t", TABLE, description="tbl")
        folio.add("j", {"k": 1})
        folio.add("dir/x", np.arange(3))
    return ours, theirs


def test_data_accessor_like_datafolio(pair: tuple[DataFolio, Any]) -> None:
    ours, theirs = pair
    data = ours.data
    assert isinstance(data, DataAccessor)
    assert repr(data) == repr(theirs.data)
    proxy = data.t
    assert isinstance(proxy, ItemProxy)
    assert repr(proxy) == repr(theirs.data.t) == "ItemProxy('t', type='included_table': tbl)"
    assert repr(data["dir/x"]) == repr(theirs.data["dir/x"])
    pdt.assert_frame_equal(proxy.content, TABLE)
    assert proxy.path == ours.item_path("t")
    assert proxy.type == "included_table"
    assert proxy.description == "tbl"
    assert proxy.metadata["name"] == "t"
    assert proxy.lazy.collect().to_pandas().equals(TABLE)
    np.testing.assert_array_equal(data["dir/x"].content, np.arange(3))
    assert list(data) == list(theirs.data)
    assert "j" in data
    assert "nope" not in data
    assert "t" in dir(data)
    with pytest.raises(AttributeError, match="Available items"):
        _ = data.nope
    with pytest.raises(KeyError):
        data["nope"]
    empty = DataFolio(Path(ours.path).parent / "empty")
    assert repr(empty.data) == "DataAccessor(no items)"
    ours.delete("j")
    proxy_j = ItemProxy(ours, "j")
    assert repr(proxy_j) == "ItemProxy('j', missing)"
    with pytest.raises(KeyError, match="deleted"):
        _ = proxy_j.type


def test_get_many_threads(pair: tuple[DataFolio, Any]) -> None:
    ours, _ = pair
    got = ours.get_many(["t", "j"], threads=1)
    pdt.assert_frame_equal(got["t"], TABLE)
    assert got["j"] == {"k": 1}
    assert ours.get_many(["t"], columns=["a"])["t"].columns.tolist() == ["a"]
    with pytest.raises(ValueError, match="threads"):
        ours.get_many(["t"], threads=0)
    with pytest.raises(KeyError):
        ours.get_many(["t", "nope"])
    assert asyncio.run(ours.aget_many(["j"], threads=2)) == {"j": {"k": 1}}


def test_inspect_and_scan_tables(tmp_path: Path) -> None:
    ext = tmp_path / "ext.parquet"
    TABLE.to_parquet(ext)
    csv = tmp_path / "ext.csv"
    TABLE.to_csv(csv, index=False)
    ours = DataFolio(tmp_path / "ours")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    for folio in (ours, theirs):
        folio.reference_table("r", str(ext))
        folio.reference_table("c", str(csv), table_format="csv")
        folio.add("t", TABLE)
        folio.add("j", 1)
    revision = ours.revision
    mine, yours = ours.inspect_table("r"), theirs.inspect_table("r")
    for key in ("size_bytes", "columns", "dtypes", "num_cols", "num_rows", "source_identity"):
        assert mine[key] == yours[key], key
    assert ours.revision == revision + 1
    assert ours.item_info("r")["num_rows"] == 3
    assert ours.inspect_table("c")["size_bytes"] == csv.stat().st_size
    assert ours.inspect_table("t") == ours.item_info("t")  # included: as it is, no commit
    assert ours.revision == revision + 2
    with pytest.raises(ValueError, match="not a table"):
        ours.inspect_table("j")
    ext.unlink()
    with pytest.raises(FileNotFoundError):
        ours.inspect_table("r")
    assert ours.validate() == {"r": False, "c": True, "t": True, "j": True}
    assert not ours.is_valid()

    assert isinstance(ours.scan_table("t"), pl.LazyFrame)
    assert ours.scan_table("t").collect().to_pandas().equals(TABLE)
    assert ours.scan_table("c").collect()["a"].to_list() == [1, 2, 3]
    with pytest.raises(ValueError, match="not a table"):
        ours.scan_table("j")


def test_scan_and_inspect_remote(moto_server: MotoServer, s3_bucket: str) -> None:
    opts = moto_server.storage_options()
    moto_server.put_object(s3_bucket, "lake/ext.parquet", TABLE.to_parquet())
    folio = DataFolio(f"s3://{s3_bucket}/b", storage_options=opts)
    folio.add("t", TABLE)
    folio.reference_table("r", f"s3://{s3_bucket}/lake/ext.parquet")
    info = folio.inspect_table("r")
    assert info["num_rows"] == 3
    assert info["columns"] == ["a", "b"]
    assert info["source_identity"]["size"] == info["size_bytes"]
    assert folio.scan_table("t").collect().to_pandas().equals(TABLE)
    assert folio.validate() == {"t": True, "r": True}


def test_pinned_local(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("a", 1)
    other = DataFolio(root)
    with folio.pinned() as pinned:
        assert pinned is folio
        revision = folio.revision
        other.add("b", 2)
        other.metadata["by"] = "other"
        assert "b" not in folio
        assert "by" not in folio.metadata
        assert folio.get("a") == 1
        with pytest.raises(KeyError):
            folio.get("b")
        with folio.pinned():
            assert folio.revision == revision
            assert folio.list_contents()["json_data"] == ["a"]
        assert "b" not in folio  # the inner exit does not unpin
    assert "b" in folio
    assert folio.get("b") == 2
    assert folio.metadata["by"] == "other"
    with pytest.raises(RuntimeError), folio.pinned():
        raise RuntimeError("boom")
    assert folio._pinned is None


def test_pinned_sees_its_own_writes(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    with folio.pinned():
        folio.add("mine", 1)
        assert folio.get("mine") == 1


def test_pinned_cached_s3_asks_nothing_inside(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    url = f"s3://{s3_bucket}/pinned"
    writer = DataFolio(url, storage_options=moto_server.storage_options(), cache_enabled=False)
    writer.add("a", 1)
    now = [1000.0]
    folio = DataFolio(
        url,
        storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url),
        clock=lambda: now[0],
        cache_ttl=10,
    )
    assert folio.get("a") == 1
    with folio.pinned():
        writer.add("a", 2, overwrite=True)
        now[0] += 100  # the TTL has passed: an unpinned read would revalidate
        fault_proxy.stats.reset()
        assert folio.get("a") == 1
        assert folio.get_many(["a"]) == {"a": 1}
        assert fault_proxy.stats.requests() == 0
    with pytest.warns(RemoteUpdateWarning):
        assert folio.get("a") == 2  # revalidated after the block
    assert fault_proxy.stats.requests(f"/{s3_bucket}/pinned/items.json", "GET") == 1

    async def inside() -> Any:
        async with folio.apinned():
            return await folio.aget("a")

    assert asyncio.run(inside()) == 2


def _puts(proxy: FaultServer, bucket: str) -> int:
    return proxy.stats.requests(f"/{bucket}/batch/items.json", "PUT")


def test_batch_publishes_once(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    url = f"s3://{s3_bucket}/batch"
    folio = DataFolio(
        url, storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url)
    )
    folio.add("base", 0)
    revision = folio.revision
    fault_proxy.stats.reset()
    with folio.batch():
        for i in range(5):
            folio.add(f"x{i}", i)
        folio.add("base", 100, overwrite=True)
        folio.metadata["phase"] = "batched"
        assert folio.get("x3") == 3  # reads inside see the staged items
        assert "x4" in folio
        assert _puts(fault_proxy, s3_bucket) == 0
    assert _puts(fault_proxy, s3_bucket) == 1
    fresh = DataFolio(url, storage_options=moto_server.storage_options(), create=False)
    assert sorted(fresh) == ["base", "x0", "x1", "x2", "x3", "x4"]
    assert fresh.get("base") == 100
    assert fresh.metadata["phase"] == "batched"
    assert fresh.revision > revision
    keys = {
        o["Key"]
        for o in moto_server.client.list_objects_v2(Bucket=s3_bucket, Prefix="batch/")["Contents"]
    }
    assert "batch/artifacts/base--r2.json" not in keys  # the replaced payload, after publish
    assert all(fresh.validate().values())


def test_batch_exception_publishes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("base", 0)
    before = (root / "items.json").read_bytes()
    files = sorted(p.name for p in (root / "artifacts").iterdir())

    def failing_batch() -> None:
        with folio.batch():
            folio.add("x", 1)
            folio.add("base", 5, overwrite=True)
            folio.delete("base")
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        failing_batch()
    assert (root / "items.json").read_bytes() == before
    assert sorted(p.name for p in (root / "artifacts").iterdir()) == files  # no orphan
    assert sorted(folio) == ["base"]
    assert folio.get("base") == 0
    assert datafolio.DataFolio(str(root), read_only=True).is_valid()


def test_batch_loses_to_a_concurrent_writer_as_a_whole(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    other = DataFolio(root)

    def racing_batch() -> None:
        with folio.batch():
            folio.add("mine", 1)
            other.add("theirs", 2)

    with pytest.raises(ConcurrentWriteError):
        racing_batch()
    names = json.loads((root / "items.json").read_text())["items"]
    assert [i["name"] for i in names] == ["theirs"]
    assert sorted(p.name for p in (root / "artifacts").iterdir()) == ["theirs--r2.json"]


def test_batch_refusals(tmp_path: Path) -> None:
    folio = DataFolio(tmp_path / "b")
    with folio.batch():
        with pytest.raises(UsageError, match="Nested"), folio.batch():
            pass
        with pytest.raises(UsageError, match="batch"):
            folio.refresh()
        folio.add("ok", 1)
    assert folio.get("ok") == 1
    with pytest.raises(RuntimeError):  # a read-only folio cannot batch
        DataFolio(tmp_path / "b", read_only=True).batch().__enter__()

    async def run() -> None:
        async with folio.abatch():
            await folio.aadd("async", 2)

    asyncio.run(run())
    assert folio.get("async") == 2
