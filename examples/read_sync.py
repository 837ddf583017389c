"""Read a DataFolio bundle from S3 with the plain (sync) API, as in a script or a notebook.

Writes the example bundle first if it is not there yet (see write_bundle_s3.py), so it runs on
its own: against a moto server it starts on 127.0.0.1, or $AIOFOLIO_EXAMPLE_ENDPOINT if set.
Run it as ``python examples/read_sync.py``.
"""

from __future__ import annotations

from write_bundle_s3 import BUNDLE, s3_endpoint, storage_options, write_bundle

from aiofolio import DataFolio, RemoteNotFoundError


def open_or_write(endpoint: str) -> DataFolio:
    options = storage_options(endpoint)
    try:
        folio = DataFolio(BUNDLE, create=False, storage_options=options)
        print(f"found {BUNDLE} (revision {folio.revision})")
        return folio
    except RemoteNotFoundError:
        print(f"no bundle at {BUNDLE}: writing it first")
        write_bundle(endpoint)
        return DataFolio(BUNDLE, create=False, storage_options=options)


def main() -> None:
    with s3_endpoint() as endpoint:
        folio = open_or_write(endpoint)
        print("items:", sorted(folio))
        print("scores (x, y):")
        print(folio.get("scores", columns=["x", "y"]))
        print("embeddings shape:", folio.get("embeddings").shape)
        print("config:", folio.get("config"))
        print("finished_at:", folio.get("finished_at").isoformat())
        print("model:", folio.get_model("model"))
        print("status:", folio.metadata["status"])


if __name__ == "__main__":
    main()
