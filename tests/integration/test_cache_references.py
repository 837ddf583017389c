"""Referenced tables in a cached S3 bundle: revalidated by the external object's own ETag."""

from __future__ import annotations

import io

import pandas as pd
import pandas.testing as pdt

from aiofolio import DataFolio
from aiofolio.testing import FaultServer, MotoServer

TTL = 60.0


def _parquet(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    return buf.getvalue()


def test_reference_is_cached_and_revalidated_by_its_etag(
    moto_server: MotoServer, s3_bucket: str, fault_proxy: FaultServer
) -> None:
    first = pd.DataFrame({"x": [1, 2, 3]})
    second = pd.DataFrame({"x": [7, 8, 9, 10]})
    key = "lake/raw.parquet"
    moto_server.put_object(s3_bucket, key, _parquet(first))
    bundle = f"s3://{s3_bucket}/refbundle"
    writer = DataFolio(bundle, storage_options=moto_server.storage_options(), cache_enabled=False)
    writer.reference_table("raw", f"s3://{s3_bucket}/{key}")

    now = [1000.0]
    folio = DataFolio(
        bundle,
        storage_options=moto_server.storage_options(endpoint_url=fault_proxy.url),
        clock=lambda: now[0],
        cache_ttl=TTL,
    )
    path = f"/{s3_bucket}/{key}"
    fault_proxy.stats.reset()
    pdt.assert_frame_equal(folio.get("raw"), first)
    assert fault_proxy.stats.requests(path, "GET") == 1  # downloaded once

    fault_proxy.stats.reset()
    for _ in range(3):  # within the TTL: no request at all
        pdt.assert_frame_equal(folio.get("raw"), first)
    assert fault_proxy.stats.requests() == 0

    now[0] += TTL + 1  # expired, external object unchanged: one check, no download
    fault_proxy.stats.reset()
    pdt.assert_frame_equal(folio.get("raw"), first)
    assert fault_proxy.stats.requests(path, "GET") == 0
    assert fault_proxy.stats.requests(path, "HEAD") == 1

    moto_server.put_object(s3_bucket, key, _parquet(second))  # the external table changes
    now[0] += TTL + 1
    fault_proxy.stats.reset()
    pdt.assert_frame_equal(folio.get("raw"), second)
    assert fault_proxy.stats.requests(path, "HEAD") == 1
    assert fault_proxy.stats.requests(path, "GET") == 1
