"""A bundle rewritten by the real ``datafolio`` 2.3.0 at the same URL: the cache serves new bytes.

datafolio names item versions by the bundle's write counter (``config--r2``) and writes
``"checksum": null`` to the cloud; arrays, JSON and models carry no ``size_bytes``. So a bundle
whose prefix is deleted and written again by the same sequence of adds has the same version
ids, file names and (often) sizes as before: only the items' ``created_at`` differ. Here such
bundles are cached through aiofolio from moto (reads through the counting fault proxy; the
writer talks to moto directly), rewritten, and read again after the TTL (an injected clock):
the values must be the new ones, each changed payload downloaded once more, each change
warned about, and a hit afterwards costs no request.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest

from aiofolio import DataFolio, RemoteUpdateWarning
from aiofolio.bundle import payload_path
from aiofolio.testing import FaultServer, MotoServer
from aiofolio.testing.dfbundles import assert_same, datafolio_s3_location

pytestmark = pytest.mark.timeout(180)

TTL = 60.0
PREFIX = "lab/rewritten"
STAGING = "lab/staging"


def _values(seed: int) -> dict[str, Any]:
    """Same names, types and shapes for every seed; JSON values of equal encoded length."""
    rng = np.random.default_rng(seed)
    return {
        "table": pd.DataFrame({"i": rng.integers(0, 9, 4), "f": rng.random(4)}),
        "ns/array": rng.integers(0, 100, size=(3, 5)).astype(np.int32),
        "config": {"lr": seed, "name": f"run{seed}"},
        "scalar": float(seed) + 0.25,
    }


def _write(moto: MotoServer, bucket: str, values: dict[str, Any], prefix: str = PREFIX) -> None:
    import datafolio

    folio = datafolio.DataFolio(datafolio_s3_location(moto.endpoint_url, bucket, prefix))
    for name, value in values.items():
        folio.add(name, value)


def _objects(moto: MotoServer, bucket: str, prefix: str = PREFIX) -> dict[str, int]:
    listing = moto.client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    return {o["Key"]: o["Size"] for o in listing.get("Contents", [])}


def _delete(moto: MotoServer, bucket: str, keys: list[str]) -> None:
    moto.client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys]})


def _items(moto: MotoServer, bucket: str) -> dict[str, dict[str, Any]]:
    body = moto.client.get_object(Bucket=bucket, Key=f"{PREFIX}/items.json")["Body"].read()
    return {i["name"]: i for i in json.loads(body)["items"] if i.get("is_current")}


def _cached_folio(
    moto: MotoServer, bucket: str, proxy: FaultServer, now: list[float], old: dict[str, Any]
) -> DataFolio:
    _write(moto, bucket, old)
    folio = DataFolio(
        f"s3://{bucket}/{PREFIX}",
        storage_options=moto.storage_options(endpoint_url=proxy.url),
        clock=lambda: now[0],
        cache_ttl=TTL,
    )
    for name, value in old.items():
        assert_same(folio.get(name), value)
        assert folio.cache_status(name)["cached"], name
    return folio


def _payload_gets(proxy: FaultServer, bucket: str, folio: DataFolio, name: str) -> int:
    key = f"/{bucket}/{PREFIX}/{payload_path(folio.get_item(name))}"
    return proxy.stats.requests(path=key, method="GET")


def _read_after_ttl(
    folio: DataFolio,
    proxy: FaultServer,
    bucket: str,
    now: list[float],
    new: dict[str, Any],
) -> None:
    before = {name: _payload_gets(proxy, bucket, folio, name) for name in new}
    now[0] += TTL + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, value in new.items():
            assert_same(folio.get(name), value)
    warned = " ".join(str(w.message) for w in caught if w.category is RemoteUpdateWarning)
    for name in new:
        assert f"{name!r}" in warned, name
        # the old blob was not served: the new payload was downloaded, exactly once more
        assert _payload_gets(proxy, bucket, folio, name) == before[name] + 1, name
    # and it is now the cached copy: a hit, no request at all
    requests = proxy.stats.requests()
    for name, value in new.items():
        assert_same(folio.get(name), value)
    assert proxy.stats.requests() == requests


def test_a_bundle_deleted_and_rewritten_at_the_same_url_serves_the_new_bytes(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    now = [1_700_000_000.0]
    old, new = _values(1), _values(2)
    folio = _cached_folio(moto_server, s3_bucket, fault_proxy, now, old)
    first = _items(moto_server, s3_bucket)
    _delete(moto_server, s3_bucket, list(_objects(moto_server, s3_bucket)))
    assert _objects(moto_server, s3_bucket) == {}
    _write(moto_server, s3_bucket, new)
    second = _items(moto_server, s3_bucket)
    # what makes it hard: the same version ids and file names, no checksum
    for name in new:
        for field in ("version_id", "filename", "checksum", "size_bytes"):
            if field != "size_bytes" or "size_bytes" not in first[name]:
                assert second[name].get(field) == first[name].get(field), (name, field)
        assert second[name]["checksum"] is None
        assert second[name]["created_at"] != first[name]["created_at"]
    _read_after_ttl(folio, fault_proxy, s3_bucket, now, new)


def test_payloads_overwritten_in_place_with_the_same_size_serve_the_new_bytes(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    # datafolio itself never overwrites a payload file that exists (it mints ``--r2-1``); a
    # bundle written by it elsewhere and copied over the prefix does (a staging -> production
    # sync): every object is replaced in place, under the same key.
    now = [1_700_000_000.0]
    old, new = _values(3), _values(4)
    folio = _cached_folio(moto_server, s3_bucket, fault_proxy, now, old)
    sizes = _objects(moto_server, s3_bucket)
    first = _items(moto_server, s3_bucket)
    _write(moto_server, s3_bucket, new, prefix=STAGING)
    for key in _objects(moto_server, s3_bucket, STAGING):
        moto_server.client.copy_object(
            Bucket=s3_bucket,
            Key=PREFIX + key[len(STAGING) :],
            CopySource={"Bucket": s3_bucket, "Key": key},
        )
    second = _items(moto_server, s3_bucket)
    after = _objects(moto_server, s3_bucket)
    assert set(after) == set(sizes)  # every key overwritten, none added
    moving = ("created_at", "size_bytes")  # a table's parquet size may move by a few bytes
    for name in new:
        assert {k: v for k, v in second[name].items() if k not in moving} == {
            k: v for k, v in first[name].items() if k not in moving
        }, name
    for name in ("config", "scalar", "ns/array"):
        key = f"{PREFIX}/{payload_path(folio.get_item(name))}"
        assert after[key] == sizes[key], name  # same size, other bytes
    _read_after_ttl(folio, fault_proxy, s3_bucket, now, new)
