"""Every read inside ``pinned()`` sees the pinned revision, ``get_path`` and ``warm_cache`` too.

A second writer overwrites an item and adds another while a cached S3 folio (through the
counting proxy, its TTL run out by a fake clock) is inside ``pinned()``:

* ``get_path``/``aget_path`` hand out the pinned version's bytes and ask nothing about
  ``items.json``; after the block they give the new version.
* ``warm_cache`` warms the pinned revision's items (not the new one), without revalidating.
* ``validate`` and ``list_contents`` report the pinned revision's names.
* inside ``batch()``, ``get_path`` of an item staged by the batch gives its bytes.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from aiofolio import DataFolio, RemoteUpdateWarning
from aiofolio.testing import FaultServer, MotoServer

OLD = np.arange(3, dtype=np.int64)
NEW = np.arange(7, dtype=np.int64)


def _folio_pair(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer, now: list[float]
) -> tuple[DataFolio, DataFolio, str]:
    url = f"s3://{s3_bucket}/pin"
    writer = DataFolio(url, storage_options=moto_server.storage_options(), cache_enabled=False)
    writer.add("a", OLD)
    writer.add("j", {"k": 1})
    folio = DataFolio(
        url,
        storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url),
        clock=lambda: now[0],
        cache_ttl=10,
    )
    return writer, folio, f"/{s3_bucket}/pin/items.json"


def test_get_path_inside_pinned_is_the_pinned_version(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    now = [1000.0]
    writer, folio, manifest_path = _folio_pair(moto_server, s3_bucket, fault_proxy, now)
    np.testing.assert_array_equal(np.load(folio.get_path("a")), OLD)
    with folio.pinned():
        writer.add("a", NEW, overwrite=True)
        writer.add("b", {"n": 2})
        now[0] += 100  # the TTL has passed: an unpinned read would revalidate
        fault_proxy.stats.reset()
        np.testing.assert_array_equal(np.load(folio.get_path("a")), OLD)
        np.testing.assert_array_equal(folio.data.a.content, OLD)
        assert fault_proxy.stats.requests(manifest_path, "GET") == 0
        assert sorted(folio.validate()) == ["a", "j"]
        assert folio.list_contents()["json_data"] == ["j"]

        async def inside() -> str:
            async with folio.apinned():
                return await folio.aget_path("a")

        np.testing.assert_array_equal(np.load(asyncio.run(inside())), OLD)
        assert fault_proxy.stats.requests(manifest_path, "GET") == 0
    with pytest.warns(RemoteUpdateWarning):
        np.testing.assert_array_equal(np.load(folio.get_path("a")), NEW)
    assert fault_proxy.stats.requests(manifest_path, "GET") == 1


def test_warm_cache_inside_pinned_warms_the_pinned_revision(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    now = [1000.0]
    writer, folio, manifest_path = _folio_pair(moto_server, s3_bucket, fault_proxy, now)
    with folio.pinned():
        writer.add("b", {"n": 2})
        now[0] += 100
        fault_proxy.stats.reset()
        result = folio.warm_cache(progress=False)
        assert result.ok
        assert result.cached == ("a", "j")  # not "b": added after the block began
        assert fault_proxy.stats.requests(manifest_path, "GET") == 0
        fault_proxy.stats.reset()
        assert folio.get("j") == {"k": 1}  # warmed: a hit, no request at all
        assert fault_proxy.stats.requests() == 0
    assert folio.warm_cache(progress=False).cached == ("a", "j", "b")  # revalidated now


def test_get_path_inside_batch_sees_the_staged_item(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    folio = DataFolio(f"s3://{s3_bucket}/batch-path", storage_options=moto_server.storage_options())
    folio.add("base", 0)
    with folio.batch():
        folio.add("n", NEW)
        np.testing.assert_array_equal(np.load(folio.get_path("n")), NEW)
    np.testing.assert_array_equal(np.load(folio.get_path("n")), NEW)
