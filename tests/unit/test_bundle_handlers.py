"""Item-type handlers: round trips, one-pass checksums, type dispatch and datafolio's choices."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import json
import math
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest

from aiofolio.bundle.handlers import (
    SUPPORTED_TYPES,
    deserialize,
    detect_item_type,
    read_reference,
    reference_fields,
    serialize,
)
from aiofolio.bundle.manifest import Item, ItemFields
from aiofolio.errors import ManifestError


def _item(name: str, fields: ItemFields, filename: str = "payload") -> Item:
    data = {"name": name, "item_type": fields.item_type, "filename": filename}
    data.update(fields.fields)
    return Item(data)


def _round_trip(tmp_path: Path, obj: Any, **opts: Any) -> tuple[Any, ItemFields, Path]:
    dest = tmp_path / "payload.tmp"
    fields = serialize(obj, dest, name="x", **opts)
    return deserialize(dest, _item("x", fields)), fields, dest


def _assert_hashed(fields: ItemFields, dest: Path) -> None:
    data = dest.read_bytes()
    assert fields.checksum == hashlib.md5(data).hexdigest()
    assert fields.size_bytes == len(data)


# -- tables --------------------------------------------------------------------------------


def test_table_round_trip(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, None, 2.5],
            "s": ["a", "b", None],
            "b": [True, False, True],
            "t": pd.to_datetime(["2024-01-01", "2024-01-02", None]),
            "n": pd.array([1, None, 3], dtype="Int64"),
        }
    )
    back, fields, dest = _round_trip(tmp_path, df)
    pdt.assert_frame_equal(back, df)
    _assert_hashed(fields, dest)
    assert fields.item_type == "included_table"
    assert fields.extension == ".parquet"
    f = fields.fields
    assert f["table_format"] == "parquet"
    assert f["is_directory"] is False
    assert (f["num_rows"], f["num_cols"]) == (3, 6)
    assert f["columns"] == ["i", "f", "s", "b", "t", "n"]
    assert f["dtypes"]["i"] == "int64"
    assert f["dtypes"]["f"] == "double"
    assert f["dtypes"]["t"].startswith("timestamp[")
    assert "index_columns" not in f
    assert "series" not in f


def test_table_bytes_match_pyarrow_defaults(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    fields = serialize(df, tmp_path / "ours")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "theirs")
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "theirs").read_bytes()
    assert fields.checksum == hashlib.md5((tmp_path / "theirs").read_bytes()).hexdigest()


def test_table_columns_and_frames(tmp_path: Path) -> None:
    import pyarrow as pa

    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"], "c": [1.0, 2.0]})
    dest = tmp_path / "t"
    item = _item("t", serialize(df, dest))
    pdt.assert_frame_equal(deserialize(dest, item, columns=["c", "a"]), df[["c", "a"]])
    arrow = deserialize(dest, item, frame="arrow", columns=["b"])
    assert isinstance(arrow, pa.Table)
    assert arrow.column_names == ["b"]
    pdt.assert_frame_equal(deserialize(dest.read_bytes(), item), df)
    with pytest.raises(ValueError, match="Unknown frame"):
        deserialize(dest, item, frame="spark")
    with pytest.raises(TypeError, match="Unknown option"):
        deserialize(dest, item, nrows=3)
    polars_only = item.evolve({"polars_only": True})
    with pytest.raises(ValueError, match="polars"):
        deserialize(dest, polars_only)


def test_non_default_index_is_dropped_with_a_warning(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2]}, index=[10, 20])
    with pytest.warns(UserWarning, match="non-default pandas index"):
        back, fields, _ = _round_trip(tmp_path, df)
    pdt.assert_frame_equal(back, df.reset_index(drop=True))
    assert "index_columns" not in fields.fields


@pytest.mark.parametrize(
    "index",
    [
        pd.Index(["x", "y", "z"], name="key"),
        pd.Index([3, 1, 2]),
        pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["l1", None]),
        pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-03"], name="day"),
    ],
)
def test_preserve_index(tmp_path: Path, index: pd.Index) -> None:
    df = pd.DataFrame({"v": [1.0, 2.0, 3.0]}, index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back, fields, _ = _round_trip(tmp_path, df, preserve_index=True)
    pdt.assert_frame_equal(back, df)
    assert fields.fields["index_names"] == list(index.names)
    assert len(fields.fields["index_columns"]) == index.nlevels


def test_preserve_index_collision_is_a_value_error(tmp_path: Path) -> None:
    df = pd.DataFrame({"k": [1]}, index=pd.Index([5], name="k"))
    with pytest.raises(ValueError, match="collides"):
        serialize(df, tmp_path / "x", preserve_index=True)


def test_default_index_with_preserve_index_stores_nothing_extra(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1, 2]})
    back, fields, _ = _round_trip(tmp_path, df, preserve_index=True)
    pdt.assert_frame_equal(back, df)
    assert "index_columns" not in fields.fields


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1, 2, 3], index=["a", "b", "c"], name="counts"),
        pd.Series([1.5, 2.5]),
        pd.Series(["x", "y"], name=7),
    ],
)
def test_series_round_trip(tmp_path: Path, series: pd.Series) -> None:
    assert detect_item_type(series) == "included_table"
    back, fields, _ = _round_trip(tmp_path, series)
    pdt.assert_series_equal(back, series)
    assert fields.fields["series"] == {"name": series.name}


def test_polars_frames(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    df = pl.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    assert detect_item_type(df) == "included_table"
    dest = tmp_path / "p"
    item = _item("p", serialize(df, dest))
    assert deserialize(dest, item, frame="polars").equals(df)
    pdt.assert_frame_equal(deserialize(dest, item), df.to_pandas())
    with pytest.raises(TypeError, match="polars frames have no index"):
        serialize(df, dest, preserve_index=True)


# -- references ----------------------------------------------------------------------------


def test_reference_fields_normalize_paths(tmp_path: Path) -> None:
    ext = tmp_path / "ext.parquet"
    f = reference_fields(str(ext))
    assert f.item_type == "referenced_table"
    assert f.extension == ""
    assert dict(f.fields) == {
        "path": f"file://{ext}",
        "table_format": "parquet",
        "is_directory": False,
        "mutable": True,
    }
    assert reference_fields("s3://b/t.csv", table_format="csv").fields["path"] == "s3://b/t.csv"
    shard = reference_fields("gs://b/dataset/", allow_full_load=True, num_rows=5, version=2)
    assert shard.fields["is_directory"] is True
    assert shard.fields["polars_only"] is True
    assert shard.fields["allow_full_load"] is True
    assert (shard.fields["num_rows"], shard.fields["version"]) == (5, 2)
    assert reference_fields(str(tmp_path)).fields["is_directory"] is True
    assert "polars_only" not in reference_fields(str(tmp_path), polars_only=False).fields
    assert reference_fields(f"file://{tmp_path}").fields["is_directory"] is True


@pytest.mark.parametrize(
    ("path", "fmt", "match"),
    [
        ("relative/t.parquet", "parquet", "Relative reference path"),
        ("/abs/t.parquet", "delta", "not supported"),
        ("/abs/t.parquet", "feather", "Unsupported table format"),
        ("s3://b/table.delta", "parquet", "Delta/Iceberg"),
        ("s3://b/t/_delta_log/", "parquet", "Delta/Iceberg"),
    ],
)
def test_reference_fields_refuse(path: str, fmt: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        reference_fields(path, table_format=fmt)


def test_read_reference_through_fetch(tmp_path: Path) -> None:
    df = pd.DataFrame({"z": [1, 2, 3], "w": ["a", "b", "c"]})
    df.to_parquet(tmp_path / "ext.parquet")
    df.to_csv(tmp_path / "ext.csv", index=False)
    seen: list[str] = []

    def fetch_path(path: str) -> str:
        seen.append(path)
        return path.removeprefix("file://")

    parquet = Item({"name": "r", **reference_fields(str(tmp_path / "ext.parquet")).fields})
    parquet = parquet.evolve({"item_type": "referenced_table"})
    pdt.assert_frame_equal(read_reference(parquet, fetch_path), df)
    pdt.assert_frame_equal(read_reference(parquet, fetch_path, columns=["w"]), df[["w"]])
    assert seen == [f"file://{tmp_path / 'ext.parquet'}"] * 2

    csv_fields = reference_fields(str(tmp_path / "ext.csv"), table_format="csv").fields
    csv = Item({"name": "c", "item_type": "referenced_table", **csv_fields})
    pdt.assert_frame_equal(read_reference(csv, fetch_path), df)
    pdt.assert_frame_equal(
        read_reference(csv, lambda p: Path(p.removeprefix("file://")).read_bytes()), df
    )
    pdt.assert_frame_equal(read_reference(csv, fetch_path, columns=["z"]), df[["z"]])
    with pytest.raises(ValueError, match="not a referenced_table"):
        read_reference(Item({"name": "t", "item_type": "json_data"}), fetch_path)


# -- arrays --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.asfortranarray(np.arange(6).reshape(2, 3)),
        np.arange(20)[::3],
        np.array([True, False]),
        np.array(["2024-01-01", "2024-06-01"], dtype="datetime64[D]"),
        np.array([[1 + 2j]]),
        np.zeros((0, 3)),
        np.array(5.0),
        np.array(["ab", "c"]),
        np.zeros(3, dtype=[("x", "i4"), ("y", "f8")]),
    ],
)
def test_array_round_trip(tmp_path: Path, arr: np.ndarray) -> None:
    back, fields, dest = _round_trip(tmp_path, arr)
    np.testing.assert_array_equal(back, arr)
    assert back.dtype == arr.dtype
    _assert_hashed(fields, dest)
    assert fields.extension == ".npy"
    assert fields.fields["shape"] == list(arr.shape)
    assert fields.fields["dtype"] == str(arr.dtype)
    np.save(tmp_path / "ref.npy", arr)  # datafolio's writer: identical bytes
    assert dest.read_bytes() == (tmp_path / "ref.npy").read_bytes()


def test_array_mmap_and_bytes(tmp_path: Path) -> None:
    arr = np.arange(100, dtype=np.int64)
    dest = tmp_path / "a"
    item = _item("a", serialize(arr, dest))
    mapped = deserialize(dest, item, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, arr)
    np.testing.assert_array_equal(deserialize(dest.read_bytes(), item), arr)
    with pytest.raises(ValueError, match="mmap_mode"):
        deserialize(dest.read_bytes(), item, mmap_mode="r")


def test_array_refusals(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="masked"):
        serialize(np.ma.masked_array([1, 2], mask=[0, 1]), tmp_path / "m")
    with pytest.raises(ValueError, match="object-dtype"):
        serialize(np.array([{"a": 1}], dtype=object), tmp_path / "o")
    with pytest.raises(TypeError, match="Expected numpy array"):
        serialize([1, 2], tmp_path / "l", item_type="numpy_array")


def test_pandas_index_dispatch(tmp_path: Path) -> None:
    numeric = pd.Index([1, 2, 3])
    assert detect_item_type(numeric) == "numpy_array"
    back, _, _ = _round_trip(tmp_path, numeric)
    np.testing.assert_array_equal(back, numeric.to_numpy())
    labels = pd.Index(["a", "b"], dtype=object)
    assert detect_item_type(labels) == "json_data"
    back, _, _ = _round_trip(tmp_path, labels)
    assert back == ["a", "b"]


# -- JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "data_type"),
    [
        ({"lr": 0.01, "layers": [1, 2], "nested": {"ok": True, "none": None}}, "dict"),
        ([1, "two", 3.0, None, False], "list"),
        ("a string, not a path", "str"),
        (42, "int"),
        (-(2**63), "int"),
        (2**64 - 1, "int"),
        (3.25, "float"),
        (True, "bool"),
        (None, "NoneType"),
        ({"ünïcode": "日本語 😀"}, "dict"),
        ({}, "dict"),
        ([], "list"),
    ],
)
def test_json_round_trip(tmp_path: Path, obj: Any, data_type: str) -> None:
    assert detect_item_type(obj) == "json_data"
    back, fields, dest = _round_trip(tmp_path, obj)
    assert back == obj
    assert type(back) is type(obj)
    _assert_hashed(fields, dest)
    assert fields.fields["data_type"] == data_type
    assert fields.extension == ".json"
    assert json.loads(dest.read_bytes()) == obj


def test_json_text_layout_matches_datafolio(tmp_path: Path) -> None:
    # orjson OPT_INDENT_2: two spaces, ": ", raw UTF-8, no trailing newline.
    serialize({"a": 1, "b": [1, 2], "c": {}, "d": "é"}, tmp_path / "j")
    expected = '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ],\n  "c": {},\n  "d": "é"\n}'
    assert (tmp_path / "j").read_bytes() == expected.encode()
    serialize(3.5, tmp_path / "s")
    assert (tmp_path / "s").read_bytes() == b"3.5"


class _Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class _Config:
    lr: float
    tags: tuple[str, ...]


def test_json_conversions(tmp_path: Path) -> None:
    obj = {
        "tuple": (1, 2),
        "range": range(3),
        "nan": math.nan,
        "inf": -math.inf,
        "np_int": np.int64(3),
        "np_float": np.float32(0.5),
        "np_array": np.array([[1, 2], [3, 4]]),
        "when": dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
        "uuid": uuid.UUID(int=1),
        "enum": _Color.RED,
        "dc": _Config(0.1, ("a",)),
    }
    back, _, _ = _round_trip(tmp_path, obj)
    assert back == {
        "tuple": [1, 2],
        "range": [0, 1, 2],
        "nan": None,
        "inf": None,
        "np_int": 3,
        "np_float": 0.5,
        "np_array": [[1, 2], [3, 4]],
        "when": "2024-01-01T00:00:00+00:00",
        "uuid": "00000000-0000-0000-0000-000000000001",
        "enum": "red",
        "dc": {"lr": 0.1, "tags": ["a"]},
    }


def test_json_lossy_conversions_warn(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="sets are stored as lists"):
        back, _, _ = _round_trip(tmp_path, {"s": {3, 1, 2}})
    assert back == {"s": [1, 2, 3]}
    with pytest.warns(UserWarning, match="non-str dict keys"):
        back, _, _ = _round_trip(tmp_path, {1: "a", 2.5: "b", None: "d"})
    assert back == {"1": "a", "2.5": "b", "null": "d"}
    with pytest.warns(UserWarning, match="non-str dict keys"):
        back, _, _ = _round_trip(tmp_path, {False: "c"})
    assert back == {"false": "c"}
    with pytest.raises(ValueError, match="collide"):
        serialize({1: "a", "1": "b"}, tmp_path / "c")


def test_json_scalars_and_dataclasses(tmp_path: Path) -> None:
    back, fields, _ = _round_trip(tmp_path, np.float64(2.5))
    assert back == 2.5
    assert fields.fields["data_type"] == "float"
    back, fields, _ = _round_trip(tmp_path, _Config(0.5, ("x", "y")))
    assert back == {"lr": 0.5, "tags": ["x", "y"]}
    assert fields.fields["data_type"] == "_Config"
    back, _, _ = _round_trip(tmp_path, (1, 2))
    assert back == [1, 2]


@pytest.mark.parametrize(
    "obj", [{"big": 2**64}, -(2**63) - 1, {"b": b"bytes"}, [object()], {"d": dt.timedelta(1)}]
)
def test_json_refuses_what_json_cannot_hold(tmp_path: Path, obj: Any) -> None:
    with pytest.raises(TypeError):
        serialize(obj, tmp_path / "x")
    assert not (tmp_path / "x").exists()


# -- timestamps ----------------------------------------------------------------------------


def test_timestamp_round_trip(tmp_path: Path) -> None:
    moment = dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert detect_item_type(moment) == "timestamp"
    back, fields, dest = _round_trip(tmp_path, moment)
    assert back == moment
    assert back.tzinfo == dt.timezone.utc
    _assert_hashed(fields, dest)
    assert fields.fields["iso_string"] == "2024-01-02T01:04:05.678000+00:00"
    assert fields.fields["unix_timestamp"] == moment.timestamp()
    assert dest.read_bytes() == b'{\n  "iso_string": "2024-01-02T01:04:05.678000+00:00"\n}'
    item = _item("t", fields)
    assert deserialize(dest, item, as_unix=True) == moment.timestamp()


def test_timestamp_inputs(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Naive datetime"):
        serialize(dt.datetime(2024, 1, 1), tmp_path / "n")
    fields = serialize(0, tmp_path / "u", item_type="timestamp")
    assert fields.fields["iso_string"] == "1970-01-01T00:00:00+00:00"
    stamp = pd.Timestamp("2024-03-04 05:06:07", tz="Europe/Paris")
    back, fields, _ = _round_trip(tmp_path, stamp)
    assert back == stamp.to_pydatetime()
    assert fields.fields["iso_string"] == "2024-03-04T04:06:07+00:00"
    with pytest.raises(TypeError, match="Expected datetime"):
        serialize("2024-01-01", tmp_path / "s", item_type="timestamp")


# -- models --------------------------------------------------------------------------------


def test_joblib_model_round_trip(tmp_path: Path) -> None:
    joblib = pytest.importorskip("joblib")
    model = {"weights": np.arange(5.0), "bias": 0.5}
    back, fields, dest = _round_trip(tmp_path, model, item_type="model")
    np.testing.assert_array_equal(back["weights"], model["weights"])
    assert back["bias"] == 0.5
    _assert_hashed(fields, dest)
    assert fields.extension == ".joblib"
    assert fields.fields["serialization_format"] == "joblib"
    assert fields.fields["model_type"] == "dict"
    joblib.dump(model, tmp_path / "ref.joblib")  # datafolio's writer: identical bytes
    assert dest.read_bytes() == (tmp_path / "ref.joblib").read_bytes()


def test_skops_model_round_trip(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    linear_model = pytest.importorskip("sklearn.linear_model")
    model = linear_model.LinearRegression().fit([[0.0], [1.0], [2.0]], [0.0, 2.0, 4.0])
    assert detect_item_type(model) == "model"
    back, fields, dest = _round_trip(tmp_path, model, item_type="model", custom=True)
    np.testing.assert_allclose(back.coef_, model.coef_)
    _assert_hashed(fields, dest)
    assert fields.extension == ".skops"
    assert fields.fields["serialization_format"] == "skops"
    assert fields.fields["model_type"] == "LinearRegression"
    assert fields.fields["sklearn_version"]


class _Box:
    def __init__(self, value: int) -> None:
        self.value = value


def test_skops_untrusted_types_need_consent(tmp_path: Path) -> None:
    pytest.importorskip("skops")
    dest = tmp_path / "m"
    item = _item("m", serialize(_Box(3), dest, item_type="model", custom=True))
    with pytest.raises(ValueError, match="trusted=True"):
        deserialize(dest, item)
    assert deserialize(dest, item, trusted=True).value == 3
    type_name = f"{__name__}._Box"
    assert deserialize(dest, item, trusted=[type_name]).value == 3


def test_model_format_from_item(tmp_path: Path) -> None:
    pytest.importorskip("joblib")
    dest = tmp_path / "m"
    fields = serialize([1, 2], dest, item_type="model")
    legacy = Item({"name": "m", "item_type": "model", "filename": "m.joblib"})
    assert deserialize(dest, legacy) == [1, 2]
    assert deserialize(dest.read_bytes(), _item("m", fields)) == [1, 2]
    bad = legacy.evolve({"serialization_format": "pickle5"})
    with pytest.raises(ManifestError, match="serialization_format"):
        deserialize(dest, bad)


# -- artifacts -----------------------------------------------------------------------------


def test_artifact_copy(tmp_path: Path) -> None:
    src = tmp_path / "plot.v2.png"
    src.write_bytes(bytes(range(256)) * 50)
    dest = tmp_path / "payload"
    fields = serialize(str(src), dest, item_type="artifact", category="plots")
    assert dest.read_bytes() == src.read_bytes()
    _assert_hashed(fields, dest)
    assert fields.extension == ".png"
    assert fields.fields["original_path"] == str(src)
    assert fields.fields["file_size"] == src.stat().st_size
    assert fields.fields["category"] == "plots"
    assert deserialize(dest, _item("a", fields)) == str(dest)
    plain = serialize(src, tmp_path / "p2", item_type="artifact")
    assert "category" not in plain.fields
    with pytest.raises(TypeError, match="local file path"):
        deserialize(b"bytes", _item("a", fields))


def test_artifact_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        serialize(tmp_path / "missing.txt", tmp_path / "d", item_type="artifact")
    with pytest.raises(IsADirectoryError):
        serialize(tmp_path, tmp_path / "d", item_type="artifact")
    noext = tmp_path / "README"
    noext.write_text("x")
    assert serialize(noext, tmp_path / "d", item_type="artifact").extension == ""


# -- dispatch ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("obj", "item_type"),
    [
        (pd.DataFrame({"a": [1]}), "included_table"),
        (pd.Series([1]), "included_table"),
        (np.zeros(2), "numpy_array"),
        ({"a": 1}, "json_data"),
        ([1], "json_data"),
        ((1,), "json_data"),
        ({1, 2}, "json_data"),
        ("s", "json_data"),
        (1, "json_data"),
        (1.5, "json_data"),
        (False, "json_data"),
        (None, "json_data"),
        (np.int32(1), "json_data"),
        (dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc), "timestamp"),
    ],
)
def test_detect_item_type(obj: Any, item_type: str) -> None:
    assert detect_item_type(obj) == item_type


@pytest.mark.parametrize("obj", [object(), b"bytes", dt.date(2024, 1, 1), lambda: 1, 1j])
def test_unsupported_objects_list_the_supported_types(obj: Any) -> None:
    with pytest.raises(TypeError, match="Unsupported data type") as info:
        detect_item_type(obj)
    assert SUPPORTED_TYPES in str(info.value)


def test_unknown_options_and_types(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"Unknown option\(s\) for item type 'json_data'"):
        serialize({"a": 1}, tmp_path / "x", compress=True)
    with pytest.raises(TypeError, match="referenced_table has no payload"):
        serialize("s3://b/x", tmp_path / "x", item_type="referenced_table")
    with pytest.raises(TypeError, match="No serializer"):
        serialize(1, tmp_path / "x", item_type="pytorch_model")
    with pytest.raises(ManifestError, match="unknown item_type"):
        deserialize(tmp_path / "x", Item({"name": "q", "item_type": "pytorch_model"}))
    with pytest.raises(TypeError, match="Unknown option"):
        deserialize(tmp_path / "x", Item({"name": "j", "item_type": "json_data"}), columns=["a"])


HandlerCase = Callable[[Path], ItemFields]


@pytest.mark.parametrize(
    "write",
    [
        lambda p: serialize(pd.DataFrame({"a": range(1000)}), p),
        lambda p: serialize(np.random.default_rng(0).random((64, 64)), p),
        lambda p: serialize({"k": list(range(500))}, p),
        lambda p: serialize(dt.datetime.now(dt.timezone.utc), p),
        lambda p: serialize({"w": np.ones(1000)}, p, item_type="model"),
        lambda p: serialize(pd.Series(range(10), name="s"), p),
    ],
    ids=["table", "array", "json", "timestamp", "model", "series"],
)
def test_checksum_computed_while_writing_equals_hashlib(tmp_path: Path, write: HandlerCase) -> None:
    dest = tmp_path / "payload"
    fields = write(dest)
    _assert_hashed(fields, dest)


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(128, dtype=np.int64),
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        np.array(3.5),
        np.zeros((0, 3), dtype=np.uint8),
        np.arange(6, dtype=">i4").reshape(2, 3),
        np.array([(1, 2.0)], dtype=[("a", "<i2"), ("b", "<f8")]),
        np.array(["ab", "cde"]),
    ],
    ids=["int64", "fortran", "0-d", "empty", "big-endian", "structured", "unicode"],
)
def test_small_arrays_read_from_memory_equal_np_load(arr: Any, tmp_path: Path) -> None:
    from aiofolio.bundle.handlers.arrays import deserialize_array

    path = tmp_path / "a.npy"
    np.save(path, arr)
    for got in (deserialize_array(str(path)), deserialize_array(path.read_bytes())):
        want = np.load(path)
        assert got.dtype == want.dtype
        assert got.shape == want.shape
        assert got.flags.f_contiguous == want.flags.f_contiguous
        assert got.flags.writeable
        np.testing.assert_array_equal(got, want)
