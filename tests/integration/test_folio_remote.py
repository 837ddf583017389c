"""``DataFolio`` on remote bundles: S3 (moto), GCS (the emulator, and FakeGCS where
preconditions matter), and HTTP (read-only).

* Every item type round-trips on S3 and GCS; cloud writes record MD5 ``checksum`` and
  ``size_bytes``, and both match the stored objects.
* Remote reads are verified: a payload corrupted in the store raises
  :class:`~aiofolio.ChecksumMismatchError`, never returns bad bytes.
* HTTP bundles (written locally or to S3, then served by the loopback file server) read every
  item and refuse every write without sending one.
* Two writers on one bundle: exactly one wins, the other gets
  :class:`~aiofolio.ConcurrentWriteError` and leaves no orphan payload (S3 and FakeGCS honour
  the conditions; the GCS emulator ignores them, so it is not used for races).
* Hostile or unreadable manifests in S3 are refused on open and never overwritten.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio import (
    ChecksumMismatchError,
    ConcurrentWriteError,
    DataFolio,
    ManifestError,
    ReadOnlyError,
    RemoteNotFoundError,
    UnsupportedManifestVersionError,
)
from aiofolio.bundle import payload_path
from aiofolio.engine._runtime import engine as get_engine
from aiofolio.testing import FaultServer, GcsEmulator, MotoServer
from aiofolio.testing.fakegcs import FakeGCS

TABLE = pd.DataFrame({"a": [1, 2, 3], "b": ["x", None, "z"], "c": [0.5, 1.5, None]})
SERIES = pd.Series([1.5, 2.5], name="s")
ARRAY = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
CONFIG = {"lr": 0.01, "tags": ["a", "b"], "nested": {"k": None}}
MOMENT = dt.datetime(2024, 2, 3, 4, 5, 6, tzinfo=dt.timezone.utc)
MODEL = {"weights": [0.5, -0.25], "bias": 1.0}
NOTES = b"remote artifact \x00\xff payload"
EXTERNAL = pd.DataFrame({"ext": [7, 8]})


@dataclasses.dataclass
class Store:
    """A bundle location plus raw access to its objects (keys relative to the bundle)."""

    kind: str
    url: str
    options: dict[str, Any]
    read: Callable[[str], bytes]
    write: Callable[[str, bytes], None]
    listing: Callable[[], set[str]]

    def folio(self, **kwargs: Any) -> DataFolio:
        # The bundles here reference tables in the test's own folder: trusted.
        kwargs.setdefault("allow_local_references", True)
        return DataFolio(self.url, storage_options=self.options, **kwargs)

    async def afolio(self, **kwargs: Any) -> DataFolio:
        kwargs.setdefault("allow_local_references", True)
        return await DataFolio.aopen(self.url, storage_options=self.options, **kwargs)


def _s3_store(server: MotoServer, bucket: str) -> Store:
    client = server.client
    prefix = "lab/exp-001"

    def listing() -> set[str]:
        listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        return {o["Key"][len(prefix) + 1 :] for o in listing.get("Contents", [])}

    return Store(
        kind="s3",
        url=f"s3://{bucket}/{prefix}",
        options=server.storage_options(),
        read=lambda rel: client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read(),
        write=lambda rel, data: server.put_object(bucket, f"{prefix}/{rel}", data),
        listing=listing,
    )


def _gcs_store(server: GcsEmulator, bucket: str) -> Store:
    fs = server.gcsfs()
    prefix = "lab/exp-001"
    base = f"{bucket}/{prefix}"

    def listing() -> set[str]:
        fs.invalidate_cache()
        return {p[len(base) + 1 :] for p in fs.find(base)}

    return Store(
        kind="gcs",
        url=f"gs://{base}",
        options=server.storage_options(),
        read=lambda rel: fs.cat(f"{base}/{rel}"),
        write=lambda rel, data: fs.pipe(f"{base}/{rel}", data),
        listing=listing,
    )


def _fake_gcs_store(fake: FakeGCS) -> Store:
    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fake.create_bucket(bucket)
    prefix = "lab/exp-001"

    def write(rel: str, data: bytes) -> None:
        fake.put_object(bucket, f"{prefix}/{rel}", data)

    return Store(
        kind="fakegcs",
        url=f"gs://{bucket}/{prefix}",
        options=fake.storage_options(),
        read=lambda rel: fake.get_object(bucket, f"{prefix}/{rel}").data,
        write=write,
        listing=lambda: {
            n[len(prefix) + 1 :] for n in fake.object_names(bucket) if n.startswith(prefix + "/")
        },
    )


@pytest.fixture(scope="module")
def fake_gcs() -> Iterator[FakeGCS]:
    with FakeGCS() as server:
        yield server


@pytest.fixture(params=["s3", "gcs"])
def cloud(request: pytest.FixtureRequest) -> Store:
    """A fresh bundle location on S3 (moto) or GCS (the emulator)."""
    if request.param == "s3":
        return _s3_store(
            request.getfixturevalue("moto_server"), request.getfixturevalue("s3_bucket")
        )
    return _gcs_store(request.getfixturevalue("gcs_server"), request.getfixturevalue("gcs_bucket"))


@pytest.fixture(params=["s3", "fakegcs"])
def racing(request: pytest.FixtureRequest) -> Store:
    """A fresh bundle location on a store that honours conditional writes."""
    if request.param == "s3":
        return _s3_store(
            request.getfixturevalue("moto_server"), request.getfixturevalue("s3_bucket")
        )
    return _fake_gcs_store(request.getfixturevalue("fake_gcs"))


@pytest.fixture
def s3(moto_server: MotoServer, s3_bucket: str) -> Store:
    return _s3_store(moto_server, s3_bucket)


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    notes = tmp_path / "notes.bin"
    notes.write_bytes(NOTES)
    external = tmp_path / "external.parquet"
    EXTERNAL.to_parquet(external)
    return notes, external


def _fill(folio: DataFolio, sources: tuple[Path, Path]) -> dict[str, Any]:
    notes, external = sources
    folio.add("table", TABLE, description="rows")
    folio.add("series", SERIES)
    folio.add("ns/array", ARRAY)
    folio.add("config", CONFIG)
    folio.add("moment", MOMENT)
    folio.add_model("model", MODEL)
    folio.add_file(notes, name="notes")
    folio.reference_table("ext", str(external))
    return {
        "table": TABLE,
        "series": SERIES,
        "ns/array": ARRAY,
        "config": CONFIG,
        "moment": MOMENT,
        "model": MODEL,
        "ext": EXTERNAL,
    }


def _assert_same(actual: Any, expected: Any) -> None:
    if isinstance(expected, pd.DataFrame):
        pdt.assert_frame_equal(actual, expected)
    elif isinstance(expected, pd.Series):
        pdt.assert_series_equal(actual, expected)
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected)
        assert actual.dtype == expected.dtype
    else:
        assert actual == expected


def _read_everything(folio: DataFolio, expected: dict[str, Any]) -> None:
    assert set(folio) == set(expected) | {"notes"}
    for name, value in expected.items():
        _assert_same(folio.get(name), value)
    assert Path(folio.get("notes")).read_bytes() == NOTES
    assert Path(folio.get_artifact_path("notes")).read_bytes() == NOTES
    pdt.assert_frame_equal(folio.get("table", columns=["c"]), TABLE[["c"]])


def _no_partial_downloads() -> None:
    scratch = get_engine().scratch_dir
    assert not [n for n in os.listdir(scratch) if n.endswith(".part")]


# -- round trips and what cloud writes record ---------------------------------------------------


def test_round_trip_every_item_type(cloud: Store, sources: tuple[Path, Path]) -> None:
    folio = cloud.folio(metadata={"where": cloud.kind})
    expected = _fill(folio, sources)
    again = cloud.folio(create=False)
    _read_everything(again, expected)
    assert again.metadata["where"] == cloud.kind
    assert again.revision == folio.revision == 9
    assert all(again.validate().values())
    assert again.item_path("table") == f"{cloud.url}/{payload_path(again.get_item('table'))}"

    # Every owned payload has an MD5 checksum and size_bytes that match the stored object.
    manifest = json.loads(cloud.read("items.json"))
    assert manifest["schema_version"] == 2
    owned = [i for i in manifest["items"] if i["item_type"] != "referenced_table"]
    assert len(owned) == 7
    for item in owned:
        folder = "tables" if item["item_type"] == "included_table" else "artifacts"
        if item["item_type"] == "model":
            folder = "models"
        data = cloud.read(f"{folder}/{item['filename']}")
        assert item["checksum"] == hashlib.md5(data, usedforsecurity=False).hexdigest()
        assert item["size_bytes"] == len(data)
    named = {payload_path(again.get_item(n)) for n in again if n != "ext"}
    assert cloud.listing() == named | {"items.json"}


async def test_async_twins_on_a_cloud_store(cloud: Store, sources: tuple[Path, Path]) -> None:
    folio = await cloud.afolio()
    await asyncio.gather(
        folio.aadd("t", TABLE), folio.aadd("arr", ARRAY), folio.aadd("cfg", CONFIG)
    )
    reader = await cloud.afolio(create=False)
    t, arr, cfg = await asyncio.gather(reader.aget("t"), reader.aget("arr"), reader.aget("cfg"))
    pdt.assert_frame_equal(t, TABLE)
    np.testing.assert_array_equal(arr, ARRAY)
    assert cfg == CONFIG
    many = await reader.aget_many(["cfg", "arr"])
    assert many["cfg"] == CONFIG
    await folio.adelete(["t", "cfg"])
    assert set(await reader.arefresh()) == {"arr"}
    assert cloud.listing() == {"items.json", payload_path(reader.get_item("arr"))}


def test_refresh_sees_another_writer(s3: Store) -> None:
    mine = s3.folio()
    mine.add("first", 1)
    theirs = s3.folio(create=False)
    theirs.add("second", 2)
    theirs.metadata["who"] = "them"
    assert "second" not in mine
    mine.refresh()
    assert mine.get("second") == 2
    assert mine.metadata["who"] == "them"


# -- verified reads -------------------------------------------------------------------------------


def test_corrupt_payload_is_never_returned(cloud: Store, sources: tuple[Path, Path]) -> None:
    folio = cloud.folio()
    folio.add("arr", ARRAY)
    folio.add("cfg", CONFIG)
    folio.add_file(sources[0], name="notes")
    reader = cloud.folio(create=False)
    arr_key = payload_path(reader.get_item("arr"))
    good = cloud.read(arr_key)
    cloud.write(arr_key, good[:-1] + bytes([good[-1] ^ 0xFF]))  # same size, other bytes
    notes_key = payload_path(reader.get_item("notes"))
    cloud.write(notes_key, NOTES + b"appended")  # other size

    with pytest.raises(ChecksumMismatchError, match="did not verify"):
        reader.get("arr")
    with pytest.raises(ChecksumMismatchError):
        asyncio.run(reader.aget("arr"))
    with pytest.raises(ChecksumMismatchError):
        reader.get_many(["cfg", "arr"])
    with pytest.raises(ChecksumMismatchError):
        reader.get_artifact_path("notes")
    assert reader.get("cfg") == CONFIG  # the rest still reads
    assert reader.validate() == {"arr": False, "cfg": True, "notes": False}
    _no_partial_downloads()

    cloud.write(arr_key, good)  # repaired in place: reads verify again
    np.testing.assert_array_equal(reader.get("arr"), ARRAY)


# -- HTTP (read-only) ------------------------------------------------------------------------------


@pytest.mark.parametrize("written_on", ["local", "s3"])
def test_http_bundle_reads_every_item_and_refuses_writes(
    http_server: FaultServer,
    tmp_path: Path,
    sources: tuple[Path, Path],
    written_on: str,
    request: pytest.FixtureRequest,
) -> None:
    files: dict[str, bytes] = {}
    if written_on == "local":
        root = tmp_path / "bundle"
        expected = _fill(DataFolio(root), sources)
        files = {
            p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()
        }
    else:
        store = _s3_store(
            request.getfixturevalue("moto_server"), request.getfixturevalue("s3_bucket")
        )
        expected = _fill(store.folio(), sources)
        files = {key: store.read(key) for key in store.listing()}
    for rel, data in files.items():
        http_server.put(f"/bundle/{rel}", data)

    url = f"{http_server.url}/bundle"
    folio = DataFolio(url, allow_local_references=True)  # its reference is a local test file
    assert folio.read_only
    _read_everything(folio, expected)
    assert all(folio.validate().values())
    assert folio.item_path("config") == f"{url}/{payload_path(folio.get_item('config'))}"

    notes, external = sources
    writes: list[Callable[[], Any]] = [
        lambda: folio.add("x", 1),
        lambda: folio.add("table", TABLE, overwrite=True),
        lambda: folio.add_model("m", MODEL),
        lambda: folio.add_file(notes, name="n2"),
        lambda: folio.reference_table("r", str(external)),
        lambda: folio.delete("config"),
        lambda: folio.add_json("j", [1]),
    ]
    for write in writes:
        with pytest.raises(ReadOnlyError, match="HTTP"):
            write()
    with pytest.raises(ReadOnlyError):
        folio.metadata["k"] = "v"
    with pytest.raises(ReadOnlyError):
        asyncio.run(folio.aadd("x", 1))
    assert http_server.stats.requests(method="PUT") == 0
    assert http_server.stats.requests(method="DELETE") == 0
    assert http_server.get("/bundle/items.json") == files["items.json"]

    # Reads over HTTP are verified too.
    key = payload_path(folio.get_item("ns/array"))
    http_server.put(f"/bundle/{key}", files[key][:-3] + b"bad")
    # Within the TTL the verified cached copy is served: the tampered bytes are not fetched.
    np.testing.assert_array_equal(folio.get("ns/array"), expected["ns/array"])
    folio.invalidate_cache("ns/array")
    with pytest.raises(ChecksumMismatchError):
        folio.get("ns/array")
    with pytest.raises(RemoteNotFoundError):
        DataFolio(f"{http_server.url}/no-bundle-here")


# -- two writers ----------------------------------------------------------------------------------


def _two_writers(store: Store) -> tuple[DataFolio, DataFolio]:
    store.folio().add("base", {"n": 0})
    a, b = store.folio(create=False), store.folio(create=False)
    assert a.revision == b.revision == 2
    return a, b


def _assert_exactly(store: Store, names: set[str]) -> DataFolio:
    fresh = store.folio(create=False)
    assert set(fresh) == names
    assert all(fresh.validate().values())
    named = {payload_path(fresh.get_item(n)) for n in fresh}
    assert store.listing() == named | {"items.json"}  # no orphan payload from the loser
    return fresh


@pytest.mark.parametrize("loser_name", ["loser", "winner"], ids=["other-name", "same-name"])
def test_two_writers_race(racing: Store, loser_name: str) -> None:
    a, b = _two_writers(racing)
    a.add("winner", TABLE)
    with pytest.raises(ConcurrentWriteError, match="another writer published first"):
        b.add(loser_name, ARRAY)
    assert b.revision == 2
    fresh = _assert_exactly(racing, {"base", "winner"})
    pdt.assert_frame_equal(fresh.get("winner"), TABLE)
    b.refresh()
    b.add("retried", ARRAY)
    _assert_exactly(racing, {"base", "winner", "retried"})


async def test_concurrent_writers_exactly_one_wins(racing: Store) -> None:
    a, b = _two_writers(racing)
    results = await asyncio.gather(
        a.aadd("from_a", ARRAY), b.aadd("from_b", CONFIG), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], ConcurrentWriteError)
    winner = "from_a" if results[0] is a else "from_b"
    _assert_exactly(racing, {"base", winner})


def test_metadata_and_delete_races(s3: Store) -> None:
    a, b = _two_writers(s3)
    a.delete("base")
    with pytest.raises(ConcurrentWriteError):
        b.metadata["k"] = 1
    with pytest.raises(ConcurrentWriteError):
        b.add("x", 1)
    assert "k" not in b.metadata
    assert s3.listing() == {"items.json"}


# -- hostile and unreadable manifests in S3 -------------------------------------------------------

HOSTILE_ITEMS = {
    "name-dotdot": {"name": "../../evil", "item_type": "json_data", "filename": "e.json"},
    "name-absolute": {"name": "/evil", "item_type": "json_data", "filename": "e.json"},
    "name-backslash": {"name": "..\\evil", "item_type": "json_data", "filename": "e.json"},
    "file-dotdot": {"name": "ok", "item_type": "json_data", "filename": "../../../other.json"},
    "file-absolute": {"name": "ok", "item_type": "included_table", "filename": "/x.parquet"},
    "file-backslash": {"name": "ok", "item_type": "model", "filename": "..\\..\\x.joblib"},
}


def _manifest(items: list[dict[str, Any]], schema_version: int = 2) -> bytes:
    return json.dumps(
        {
            "schema_version": schema_version,
            "revision": 5,
            "metadata": {},
            "items": items,
            "snapshots": {},
        }
    ).encode()


def _bucket_state(server: MotoServer, bucket: str) -> dict[str, bytes]:
    listing = server.client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        o["Key"]: server.client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listing
    }


@pytest.mark.parametrize("evil", list(HOSTILE_ITEMS.values()), ids=list(HOSTILE_ITEMS))
def test_hostile_manifest_in_s3_is_refused(
    moto_server: MotoServer, s3_bucket: str, s3: Store, evil: dict[str, Any]
) -> None:
    # A secret next to the bundle, where a "../" filename would point.
    moto_server.put_object(s3_bucket, "lab/other.json", b'{"secret": 1}')
    moto_server.put_object(s3_bucket, "lab/exp-001/artifacts/fine.json", b"1")
    fine = {"name": "fine", "item_type": "json_data", "filename": "fine.json"}
    s3.write("items.json", _manifest([fine, evil]))
    before = _bucket_state(moto_server, s3_bucket)
    for kwargs in ({}, {"create": False}, {"read_only": True}):
        with pytest.raises(ManifestError, match="outside the bundle") as info:
            s3.folio(**kwargs)
        assert s3.url in str(info.value)
    assert _bucket_state(moto_server, s3_bucket) == before


def test_unreadable_manifests_in_s3(moto_server: MotoServer, s3_bucket: str, s3: Store) -> None:
    s3.write("items.json", _manifest([], schema_version=3))
    with pytest.raises(UnsupportedManifestVersionError, match="schema_version 3"):
        s3.folio()
    assert json.loads(s3.read("items.json"))["schema_version"] == 3  # not overwritten

    s3.write("items.json", b'{"schema_version": 2, "items": [{"name": ')
    with pytest.raises(ManifestError, match="not valid JSON") as info:
        s3.folio()
    assert s3.url in str(info.value)
    assert "items.json" in str(info.value)
    assert s3.listing() == {"items.json"}


def test_missing_bundle_with_create_false(moto_server: MotoServer, s3_bucket: str) -> None:
    url = f"s3://{s3_bucket}/nothing/here"
    options = moto_server.storage_options()
    with pytest.raises(RemoteNotFoundError, match="no DataFolio bundle"):
        DataFolio(url, create=False, storage_options=options)
    with pytest.raises(RemoteNotFoundError):
        DataFolio(url, read_only=True, storage_options=options)
    assert _bucket_state(moto_server, s3_bucket) == {}
    # With create (the default) the bundle is made: exactly one manifest, revision 1.
    assert DataFolio(url, storage_options=options).revision == 1
    assert set(_bucket_state(moto_server, s3_bucket)) == {"nothing/here/items.json"}
