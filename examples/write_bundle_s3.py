"""Write a small DataFolio bundle to S3: a table, an array, a config, a timestamp and a model.

Runs against a local moto server that it starts itself on 127.0.0.1, unless the environment
variable AIOFOLIO_EXAMPLE_ENDPOINT names an S3 endpoint to use instead (for example
``http://127.0.0.1:5000``). Run it as ``python examples/write_bundle_s3.py``.

The other examples import ``s3_endpoint``, ``storage_options`` and ``write_bundle`` from here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from aiofolio import DataFolio

BUCKET = os.environ.get("AIOFOLIO_EXAMPLE_BUCKET", "aiofolio-examples")
BUNDLE = f"s3://{BUCKET}/lab/exp-001"
# Fake credentials: moto accepts any; nothing here talks to AWS.
KEY, SECRET, REGION = "testing", "testing", "us-east-1"


@contextlib.contextmanager
def s3_endpoint() -> Iterator[str]:
    """The S3 endpoint URL: $AIOFOLIO_EXAMPLE_ENDPOINT, or a moto server started here."""
    given = os.environ.get("AIOFOLIO_EXAMPLE_ENDPOINT")
    if given:
        yield given
        return
    from aiofolio.testing import MotoServer

    with MotoServer() as server:  # binds 127.0.0.1 only; stopped on exit
        yield server.endpoint_url


def storage_options(endpoint: str) -> dict[str, Any]:
    """s3fs options for the endpoint, as pandas and fsspec take them."""
    return {
        "endpoint_url": endpoint,
        "key": KEY,
        "secret": SECRET,
        "client_kwargs": {"region_name": REGION},
        "config_kwargs": {"proxies": {}},
    }


def ensure_bucket(endpoint: str) -> None:
    """Create the example bucket if it does not exist yet."""
    import boto3
    import botocore.config
    import botocore.exceptions

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        region_name=REGION,
        config=botocore.config.Config(proxies={}),
    )
    try:
        s3.head_bucket(Bucket=BUCKET)
    except botocore.exceptions.ClientError:
        s3.create_bucket(Bucket=BUCKET)


def write_bundle(endpoint: str) -> DataFolio:
    """Write (or overwrite) every item of the example bundle; returns the folio."""
    ensure_bucket(endpoint)
    folio = DataFolio(
        BUNDLE, metadata={"project": "demo"}, storage_options=storage_options(endpoint)
    )
    rng = np.random.default_rng(0)
    scores = pd.DataFrame({"run": range(5), "x": rng.normal(size=5), "y": rng.normal(size=5)})
    folio.add("scores", scores, description="per-run scores", overwrite=True)
    folio.add("embeddings", rng.normal(size=(4, 3)), overwrite=True)
    folio.add("config", {"lr": 0.01, "epochs": 3}, overwrite=True)
    folio.add(
        "finished_at", dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), overwrite=True
    )
    folio.add_model("model", {"weights": [0.5, -0.25], "bias": 1.0}, overwrite=True)
    folio.metadata["status"] = "done"
    return folio


def main() -> None:
    with s3_endpoint() as endpoint:
        folio = write_bundle(endpoint)
        print(f"wrote {BUNDLE} at revision {folio.revision}")
        print(folio.describe(return_string=True))
        print("valid:", folio.is_valid())


if __name__ == "__main__":
    main()
