"""Bundles written by the real ``datafolio`` package (2.3.0), for tests and benchmarks.

This module owns :func:`write_datafolio_bundle`: one bundle with every item type datafolio
writes (a table, a numpy array, JSON dict/list/scalar, a timestamp, models: a plain object
through joblib and a scikit-learn estimator when sklearn is installed, an artifact file, a
referenced external table), written by ``datafolio.DataFolio`` itself to a local folder or to an
S3-compatible server (datafolio writes through cloudfiles: :func:`datafolio_s3_location` builds
the ``s3://http://127.0.0.1:PORT/bucket/prefix`` form it takes; credentials come from the
``AWS_*`` environment, e.g. :data:`~aiofolio.testing.AWS_TEST_ENV`). :func:`assert_same`
compares what a reader returns with what was written.

Such bundles are what datafolio users have: arrays, JSON and models carry no ``size_bytes``,
and everything written to the cloud has ``"checksum": null``. datafolio, pandas, numpy and
scikit-learn are imported when used, so importing :mod:`aiofolio.testing` needs none of them.
"""

from __future__ import annotations

import datetime as dt
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DatafolioBundle",
    "assert_same",
    "datafolio_s3_location",
    "expected_values",
    "write_datafolio_bundle",
]

MOMENT = dt.datetime(2024, 5, 6, 7, 8, 9, 101112, tzinfo=dt.timezone(dt.timedelta(hours=2)))
CONFIG = {"lr": 0.01, "layers": [64, 32], "nested": {"ok": True, "none": None}, "name": "ü"}
LISTING = [1, "two", None, True, 2.5]
SCALAR = 3.25
OBJECT_MODEL = {"weights": [0.5, -0.25], "bias": 1.0}
NOTES = b"artifact bytes \x00\x01\x02\xff and a tail\n"


def _np() -> Any:
    return importlib.import_module("numpy")


def _pd() -> Any:
    return importlib.import_module("pandas")


def _sklearn_model() -> Any | None:
    """A fitted LogisticRegression, or None when scikit-learn is not installed."""
    try:
        linear = importlib.import_module("sklearn.linear_model")
    except ImportError:
        return None
    np = _np()
    x = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.5], [0.5, 2.0], [2.5, 2.5]])
    y = np.array([0, 0, 1, 1, 0, 1])
    return linear.LogisticRegression().fit(x, y)


def expected_values(*, array_bytes: int = 0) -> dict[str, Any]:
    """The values :func:`write_datafolio_bundle` writes (artifacts as bytes, references too).

    Args:
        array_bytes: make the array about this big (0: a small one), e.g. to exercise ranged
            and parallel downloads.
    """
    np, pd = _np(), _pd()
    table = pd.DataFrame(
        {
            "i": [1, 2, 3],
            "f": [0.5, None, 1.5],
            "s": ["a", "b", None],
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
        }
    )
    if array_bytes > 0:
        array = np.random.default_rng(7).random(max(1, array_bytes // 8))
    else:
        array = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    values: dict[str, Any] = {
        "table": table,
        "ns/array": array,
        "config": dict(CONFIG),
        "listing": list(LISTING),
        "scalar": SCALAR,
        "moment": MOMENT,
        "object_model": dict(OBJECT_MODEL),
        "notes": NOTES,
        "ref": pd.DataFrame({"ext": [7, 8, 9], "label": ["p", "q", "r"]}),
    }
    model = _sklearn_model()
    if model is not None:
        values["clf"] = model
    return values


@dataclass
class DatafolioBundle:
    """A bundle datafolio wrote, and what it should read back as.

    Attributes:
        location: what was given to ``datafolio.DataFolio`` (a folder, or the cloudfiles URL).
        expected: item name -> value (artifacts: their bytes).
        sources: the folder holding the artifact's source file and the referenced table.
    """

    location: str
    expected: dict[str, Any]
    sources: Path


def datafolio_s3_location(endpoint_url: str, bucket: str, prefix: str) -> str:
    """The location datafolio (cloudfiles) takes for ``bucket/prefix`` on an S3 endpoint."""
    if not endpoint_url.startswith("http://127.0.0.1:"):
        raise ValueError(f"refusing a non-loopback endpoint {endpoint_url!r}")
    return f"s3://{endpoint_url.rstrip('/')}/{bucket}/{prefix.strip('/')}"


def write_datafolio_bundle(
    location: str | os.PathLike[str],
    sources: str | os.PathLike[str],
    *,
    array_bytes: int = 0,
) -> DatafolioBundle:
    """Write every item type with the real ``datafolio`` to ``location``.

    Args:
        location: a local folder (created), or :func:`datafolio_s3_location`'s form.
        sources: a folder for the artifact's source file and the referenced parquet table
            (the reference records its local path, so keep the folder while reading).
        array_bytes: see :func:`expected_values`.
    """
    datafolio = importlib.import_module("datafolio")
    src = Path(sources)
    src.mkdir(parents=True, exist_ok=True)
    values = expected_values(array_bytes=array_bytes)
    notes = src / "notes.bin"
    notes.write_bytes(values["notes"])
    external = src / "external.parquet"
    values["ref"].to_parquet(external)
    where = os.fspath(location)
    folio = datafolio.DataFolio(where, metadata={"experiment": "datafolio-written"})
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
    return DatafolioBundle(location=where, expected=values, sources=src)


def assert_same(actual: Any, expected: Any) -> None:
    """``actual`` (as a reader returned it) equals ``expected`` (as written), exactly.

    DataFrames, Series and arrays compare with dtypes; an estimator by its coefficients and
    predictions; an artifact (expected bytes) by the bytes of the path returned.
    """
    np, pd = _np(), _pd()
    if isinstance(expected, bytes):
        path = Path(actual)
        assert path.read_bytes() == expected, f"artifact {path} differs"
    elif isinstance(expected, pd.DataFrame):
        pd.testing.assert_frame_equal(actual, expected)
    elif isinstance(expected, pd.Series):
        pd.testing.assert_series_equal(actual, expected)
    elif isinstance(expected, np.ndarray):
        assert isinstance(actual, np.ndarray)
        assert actual.dtype == expected.dtype
        np.testing.assert_array_equal(actual, expected)
    elif hasattr(expected, "coef_"):
        assert type(actual) is type(expected)
        np.testing.assert_array_equal(actual.coef_, expected.coef_)
        np.testing.assert_array_equal(actual.intercept_, expected.intercept_)
        x = np.array([[0.0, 1.0], [3.0, 0.5], [2.5, 2.5]])
        np.testing.assert_array_equal(actual.predict(x), expected.predict(x))
    else:
        assert actual == expected, f"{actual!r} != {expected!r}"
        assert type(actual) is type(expected), f"{type(actual)} is not {type(expected)}"
