"""aiofolio's ``DataFolio`` against a real nginx, a server aiofolio did not write.

nginx serves bundle folders (``etag on``, with and without ``gzip on; gzip_types
application/json application/octet-stream``); its access log is the request count. Checked:

* every item type reads back exactly over ``http://127.0.0.1:PORT/...`` from bundles written by
  aiofolio's ``DataFolio``, by the real ``datafolio`` 2.3.0 locally, and by datafolio on moto
  (``"checksum": null``, no ``size_bytes``) then copied to the served folder; every request asks
  for identity and no answer is encoded, though nginx gzips for a client that asks;
* a large item read in parallel pinned ranged GETs is exact, each range pinned to nginx's ETag;
* nginx's own ETag revalidates the manifest after the TTL in exactly one conditional request.

Skipped, with the reason, when nginx is not installed (``.ci/run`` installs it as root).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aiofolio import DataFolio
from aiofolio.testing import MotoServer, http_call
from aiofolio.testing.dfbundles import (
    DatafolioBundle,
    assert_same,
    expected_values,
)
from aiofolio.testing.nginx import NginxServer

pytestmark = pytest.mark.timeout(180)

Factory = Callable[..., NginxServer]
GZIP = [pytest.param(False, id="gzip-off"), pytest.param(True, id="gzip-on")]
KIB = 1024


def _aiofolio_writes(root: Path, sources: Path, *, array_bytes: int = 0) -> dict[str, Any]:
    """The same items as the datafolio bundles, written by aiofolio's DataFolio."""
    values = expected_values(array_bytes=array_bytes)
    sources.mkdir(parents=True, exist_ok=True)
    notes = sources / "notes.bin"
    notes.write_bytes(values["notes"])
    external = sources / "external.parquet"
    values["ref"].to_parquet(external)
    folio = DataFolio(root, metadata={"experiment": "aiofolio-written"})
    folio.add("table", values["table"], description="a table", inputs=["ns/array"])
    folio.add("ns/array", values["ns/array"])
    folio.add("config", values["config"])
    folio.add("listing", values["listing"])
    folio.add("scalar", values["scalar"])
    folio.add("moment", values["moment"])
    folio.add_model("object_model", values["object_model"])
    if "clf" in values:
        folio.add_model("clf", values["clf"])
    folio.add_file(str(notes), name="notes", category="bin")
    folio.reference_table("ref", str(external))
    return values


def _download(moto: MotoServer, bucket: str, prefix: str, dest: Path) -> None:
    listing = moto.client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    for obj in listing.get("Contents", []):
        target = dest / obj["Key"][len(prefix) + 1 :]
        target.parent.mkdir(parents=True, exist_ok=True)
        moto.client.download_file(bucket, obj["Key"], str(target))


def _read_everything(folio: DataFolio, expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        assert_same(folio.get(name), value)


def _served_bundle(
    writer: str, www: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> dict[str, Any]:
    """Write a bundle with ``writer`` into ``www/bundle``; return its expected values."""
    target = www / "bundle"
    if writer == "aiofolio":
        return _aiofolio_writes(target, tmp_path / "sources")
    if writer == "datafolio-local":
        bundle: DatafolioBundle = request.getfixturevalue("datafolio_local_bundle")
        shutil.copytree(bundle.location, target)
        return bundle.expected
    moto: MotoServer = request.getfixturevalue("moto_server")
    written, url = request.getfixturevalue("datafolio_s3_bundle")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    _download(moto, bucket, prefix, target)
    manifest = (target / "items.json").read_text()
    assert '"checksum": null' in manifest  # what datafolio writes to the cloud
    return dict(written.expected)


@pytest.mark.parametrize("gzip", GZIP)
@pytest.mark.parametrize("writer", ["aiofolio", "datafolio-local", "datafolio-s3"])
def test_every_item_reads_exactly_over_nginx(
    nginx_factory: Factory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    writer: str,
    gzip: bool,
) -> None:
    www = tmp_path / "www"
    www.mkdir()
    expected = _served_bundle(writer, www, tmp_path, request)
    nginx = nginx_factory(www, gzip=gzip)
    url = nginx.url_for("bundle")

    folio = DataFolio(url, allow_local_references=True)  # the references are local test files
    assert folio.read_only
    _read_everything(folio, expected)

    seen = nginx.requests()
    assert any(r.path == "/bundle/items.json" and r.status == 200 for r in seen)
    payloads = [r for r in seen if r.path != "/bundle/items.json" and r.method == "GET"]
    assert payloads, "no payload was fetched from nginx"
    for record in seen:
        assert record.accept_encoding == "identity", record
        assert record.content_encoding is None, record
        assert record.status in (200, 206, 304), record

    # The gzip setting is live: a client that accepts gzip gets the manifest gzipped.
    nginx.clear_log()
    status, body = http_call("GET", f"{url}/items.json", headers={"Accept-Encoding": "gzip"})
    assert status == 200
    (probe,) = nginx.requests()
    assert probe.content_encoding == ("gzip" if gzip else None)
    assert body[:2] == (b"\x1f\x8b" if gzip else b"{\n")


@pytest.mark.parametrize("gzip", GZIP)
def test_a_large_item_reads_in_pinned_parallel_ranges(
    nginx_factory: Factory, tmp_path: Path, gzip: bool
) -> None:
    www = tmp_path / "www"
    expected = _aiofolio_writes(www / "bundle", tmp_path / "sources", array_bytes=1200 * KIB)
    nginx = nginx_factory(www, gzip=gzip)
    folio = DataFolio(nginx.url_for("bundle"), parallel_threshold=256 * KIB, chunk_size=128 * KIB)
    relative = folio.item_path("ns/array").removeprefix(nginx.url_for(""))
    size = (www / relative).stat().st_size
    assert size > 1024 * KIB
    nginx.clear_log()

    assert_same(folio.get("ns/array"), expected["ns/array"])

    ranged = [r for r in nginx.requests() if r.path == f"/{relative}" and r.range is not None]
    assert len(ranged) >= size // (128 * KIB)  # one GET per chunk, at least
    etags = {r.etag for r in ranged}
    assert len(etags) == 1
    assert next(iter(etags)).startswith('"')
    first = next(r for r in ranged if r.range == f"bytes=0-{128 * KIB - 1}")
    assert first.if_match is None  # the first answer states the size and the ETag to pin
    for record in ranged:
        assert record.status == 206, record
        if record is not first:
            assert record.if_match == record.etag, record  # pinned to nginx's own ETag
        assert record.content_encoding is None
    covered = sorted(
        (int(a), int(b)) for a, b in (r.range.removeprefix("bytes=").split("-") for r in ranged)
    )
    assert covered[0][0] == 0
    assert covered[-1][1] == size - 1
    assert sum(b - a + 1 for a, b in covered) == size  # every byte once, no overlap


@pytest.mark.parametrize("gzip", GZIP)
def test_nginx_etag_revalidates_in_one_conditional_request(
    nginx_factory: Factory, tmp_path: Path, gzip: bool
) -> None:
    www = tmp_path / "www"
    expected = _aiofolio_writes(www / "bundle", tmp_path / "sources")
    nginx = nginx_factory(www, gzip=gzip)
    now = [1_000_000.0]
    folio = DataFolio(
        nginx.url_for("bundle"),
        cache_ttl=60,
        clock=lambda: now[0],
        allow_local_references=True,  # the bundle's reference is a local test file
    )
    _read_everything(folio, expected)
    manifest_etag = next(
        r.etag for r in nginx.requests() if r.path == "/bundle/items.json" and r.status == 200
    )

    nginx.clear_log()
    now[0] += 30  # within the TTL: nothing is asked
    _read_everything(folio, expected)
    assert nginx.requests() == []

    now[0] += 31  # past the TTL: one conditional GET of the manifest, answered 304
    _read_everything(folio, expected)
    seen = nginx.requests()
    assert len(seen) == 1, seen
    (revalidation,) = seen
    assert revalidation.path == "/bundle/items.json"
    assert revalidation.conditional
    assert revalidation.if_none_match == manifest_etag
    assert revalidation.status == 304
    assert revalidation.accept_encoding == "identity"
