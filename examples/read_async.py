"""Read a DataFolio bundle from S3 with the async API: several items at once with gather.

Writes the example bundle first if it is not there yet (see write_bundle_s3.py), so it runs on
its own: against a moto server it starts on 127.0.0.1, or $AIOFOLIO_EXAMPLE_ENDPOINT if set.
Run it as ``python examples/read_async.py``.
"""

from __future__ import annotations

import asyncio

from write_bundle_s3 import BUNDLE, s3_endpoint, storage_options, write_bundle

from aiofolio import DataFolio, RemoteNotFoundError

NAMES = ["scores", "embeddings", "config", "finished_at", "model"]


async def read_all(endpoint: str) -> None:
    options = storage_options(endpoint)
    try:
        folio = await DataFolio.aopen(BUNDLE, create=False, storage_options=options)
        print(f"found {BUNDLE} (revision {folio.revision})")
    except RemoteNotFoundError:
        print(f"no bundle at {BUNDLE}: writing it first")
        await asyncio.to_thread(write_bundle, endpoint)
        folio = await DataFolio.aopen(BUNDLE, create=False, storage_options=options)
    values = await asyncio.gather(*(folio.aget(name) for name in NAMES))
    for name, value in zip(NAMES, values, strict=True):
        summary = getattr(value, "shape", value)
        print(f"{name}: {type(value).__name__} {summary}")
    both = await folio.aget_many(["config", "model"])
    print("aget_many:", sorted(both))


def main() -> None:
    with s3_endpoint() as endpoint:
        asyncio.run(read_all(endpoint))


if __name__ == "__main__":
    main()
