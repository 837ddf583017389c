"""Bundles written by the real ``datafolio`` 2.3.0 (``aiofolio.testing.dfbundles``), read by
aiofolio's ``DataFolio``: locally, and on moto where datafolio wrote them itself (through
cloudfiles' ``s3://http://127.0.0.1:PORT/bucket/...`` form), with ``"checksum": null`` and no
``size_bytes`` for arrays, JSON and models, as datafolio writes to the cloud.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiofolio import DataFolio
from aiofolio.testing import MotoServer
from aiofolio.testing.dfbundles import DatafolioBundle, assert_same

pytestmark = pytest.mark.timeout(120)


def test_a_local_datafolio_bundle_reads_exactly(datafolio_local_bundle: DatafolioBundle) -> None:
    manifest = json.loads((Path(datafolio_local_bundle.location) / "items.json").read_text())
    kinds = {item["item_type"] for item in manifest["items"]}
    assert {"included_table", "numpy_array", "json_data", "timestamp", "model", "artifact"} <= (
        kinds
    )
    assert "referenced_table" in kinds
    folio = DataFolio(datafolio_local_bundle.location, create=False)
    for name, value in datafolio_local_bundle.expected.items():
        assert_same(folio.get(name), value)


def test_a_datafolio_bundle_written_to_moto_reads_exactly(
    datafolio_s3_bundle: tuple[DatafolioBundle, str], moto_server: MotoServer
) -> None:
    bundle, url = datafolio_s3_bundle
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    raw = moto_server.client.get_object(Bucket=bucket, Key=f"{prefix}/items.json")["Body"].read()
    items = json.loads(raw)["items"]
    assert items
    assert all(item.get("checksum") is None for item in items if "filename" in item)
    arrays = [item for item in items if item["item_type"] in ("numpy_array", "json_data")]
    assert arrays
    assert all("size_bytes" not in item for item in arrays)
    folio = DataFolio(
        url,
        storage_options=moto_server.storage_options(),
        create=False,
        allow_local_references=True,  # its "ref" is a parquet file in the test's folder
    )
    for name, value in bundle.expected.items():
        assert_same(folio.get(name), value)
