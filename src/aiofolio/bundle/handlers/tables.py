"""Table handlers: ``included_table`` (Parquet in ``tables/``) and ``referenced_table``.

This module owns how frames become Parquet payloads and back, byte for byte as
``datafolio`` 2.3.0 writes them (``pa.Table.from_pandas(df, preserve_index=False)``
then ``pq.write_table`` with default options, so the same frame yields the same
checksum), the index rules (a non-default pandas index is dropped with a warning
unless ``preserve_index=True`` stores it as columns recorded in ``index_columns``
and ``index_names``), Series round trips (the ``series`` field), and the fields of
an external reference. It reads and writes local files only.

Differences from datafolio: polars frames are written through ``to_arrow()`` and
pyarrow (datafolio uses polars' own writer; both read back equal), and a polars
``LazyFrame`` is collected first (datafolio streams it).
"""

from __future__ import annotations

import io
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from aiofolio.bundle.hashing import write_hashed
from aiofolio.bundle.manifest import REFERENCE_ITEM_TYPE, Item, ItemFields

__all__ = [
    "REFERENCE_TABLE_FORMATS",
    "deserialize_reference",
    "deserialize_table",
    "is_table",
    "reference_fields",
    "serialize_table",
]

#: Formats a referenced table may have (``datafolio.utils.validate_table_format``).
REFERENCE_TABLE_FORMATS = frozenset({"parquet", "csv"})

_CLOUD_PREFIXES = (
    "s3://",
    "gs://",
    "gcs://",
    "az://",
    "azure://",
    "https://",
    "http://",
    "file://",
)

Source = str | os.PathLike[str] | bytes


def _pandas() -> Any:
    return sys.modules.get("pandas")


def _polars() -> Any:
    return sys.modules.get("polars")


def is_table(obj: object) -> bool:
    """True for a pandas or polars DataFrame, Series or polars LazyFrame."""
    pd = _pandas()
    if pd is not None and isinstance(obj, pd.DataFrame | pd.Series):
        return True
    pl = _polars()
    return pl is not None and isinstance(obj, pl.DataFrame | pl.Series | pl.LazyFrame)


def _json_scalar(value: Any) -> Any:
    """A Series or index-level name in a form the manifest can hold."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _to_arrow(obj: Any, *, preserve_index: bool, name: str) -> tuple[Any, dict[str, Any]]:
    """Convert a frame to a pyarrow Table; also return the index/series fields."""
    import pyarrow as pa

    extra: dict[str, Any] = {}
    pd = _pandas()
    pl = _polars()
    if pd is not None and isinstance(obj, pd.Series):
        column = str(obj.name) if obj.name is not None else "value"
        extra["series"] = {"name": _json_scalar(obj.name)}
        obj = obj.to_frame(name=column)
        preserve_index = True
    elif pl is not None and isinstance(obj, pl.Series):
        extra["series"] = {"name": obj.name}
        obj = obj.to_frame(obj.name or "value")
    elif pl is not None and isinstance(obj, pl.LazyFrame):
        obj = obj.collect()

    if pl is not None and isinstance(obj, pl.DataFrame):
        if preserve_index:
            raise TypeError(
                f"preserve_index=True is only meaningful for pandas DataFrames (table "
                f"{name!r} is a polars DataFrame; polars frames have no index)"
            )
        return obj.to_arrow(), extra

    if pd is None or not isinstance(obj, pd.DataFrame):
        raise TypeError(f"Expected a pandas or polars DataFrame, got {type(obj).__name__}")

    default_index = isinstance(obj.index, pd.RangeIndex) and obj.index.equals(
        pd.RangeIndex(len(obj))
    )
    if preserve_index and not default_index:
        original = set(obj.columns)
        index_names = [_json_scalar(n) for n in obj.index.names]
        try:
            obj = obj.reset_index()
        except ValueError as exc:
            raise ValueError(
                f"Cannot preserve the index of table {name!r}: an index level collides "
                f"with an existing column ({exc}). Rename the index level or the column, "
                f"or reset_index() yourself first."
            ) from exc
        extra = {
            "index_columns": [str(c) for c in obj.columns if c not in original],
            "index_names": index_names,
            **extra,
        }
    elif not default_index:
        warnings.warn(
            f"Table {name!r} has a non-default pandas index that will NOT be stored "
            f"(parquet keeps columns only). Call reset_index() first to keep it as a "
            f"column, or pass preserve_index=True to store it.",
            UserWarning,
            stacklevel=4,
        )
    return pa.Table.from_pandas(obj, preserve_index=False), extra


def serialize_table(
    obj: Any,
    dest_path: str | os.PathLike[str],
    *,
    preserve_index: bool = False,
    name: str = "table",
) -> ItemFields:
    """Write a frame as Parquet to ``dest_path``, hashing while writing.

    Args:
        obj: A pandas DataFrame or Series, or a polars DataFrame, Series or LazyFrame.
        dest_path: Local file to (over)write, mode 0644.
        preserve_index: Store a non-default pandas index as columns (always on for
            a pandas Series, whose index is usually the point).
        name: The item name, for messages.

    Returns:
        ``included_table`` fields: ``table_format``, ``is_directory``, ``checksum``,
        ``num_rows``, ``num_cols``, ``columns``, ``dtypes`` (Arrow type names),
        ``size_bytes`` and, when used, ``index_columns``/``index_names`` and ``series``.

    Raises:
        TypeError: If ``obj`` is not a supported frame.
        ValueError: If an index level collides with a column.
    """
    import pyarrow.parquet as pq

    table, extra = _to_arrow(obj, preserve_index=preserve_index, name=name)
    checksum, size = write_hashed(dest_path, lambda w: pq.write_table(table, w))
    schema = table.schema
    fields: dict[str, Any] = {
        "table_format": "parquet",
        "is_directory": False,
        "checksum": checksum,
        "num_rows": table.num_rows,
        "num_cols": len(schema),
        "columns": list(schema.names),
        "dtypes": {f.name: str(f.type) for f in schema},
        "size_bytes": size,
    }
    fields.update(extra)
    return ItemFields("included_table", fields, ".parquet")


def _restore_pandas(df: Any, item: Item) -> Any:
    index_columns = item.get("index_columns")
    if index_columns and all(c in df.columns for c in index_columns):
        df = df.set_index(index_columns if len(index_columns) > 1 else index_columns[0])
        index_names = item.get("index_names")
        if index_names and len(index_names) == df.index.nlevels:
            df.index.names = index_names
        elif index_columns == ["index"]:
            df.index.name = None
    series = item.get("series")
    if isinstance(series, dict) and df.shape[1] == 1:
        return df.iloc[:, 0].rename(series.get("name"))
    return df


def _as_readable(source: Source) -> Any:
    return io.BytesIO(source) if isinstance(source, bytes) else source


def deserialize_table(
    source: Source,
    item: Item,
    *,
    columns: Sequence[str] | None = None,
    frame: str = "pandas",
) -> Any:
    """Read an ``included_table`` payload.

    Args:
        source: The local Parquet file (or its bytes).
        item: The manifest item (for index and Series restoration).
        columns: Read only these columns.
        frame: ``"pandas"`` (default; a table stored from a Series comes back as a
            Series), ``"polars"`` (needs polars) or ``"arrow"`` (a pyarrow Table).

    Raises:
        ValueError: For an unknown ``frame``, or pandas on a ``polars_only`` table.
    """
    cols = list(columns) if columns is not None else None
    if frame == "pandas":
        if item.get("polars_only"):
            raise ValueError(
                f"Table {item.get('name')!r} is a sharded/partitioned (polars-only) "
                f"dataset and cannot be loaded as pandas; use frame='polars'"
            )
        import pandas as pd

        return _restore_pandas(pd.read_parquet(_as_readable(source), columns=cols), item)
    if frame == "polars":
        import polars as pl  # type: ignore[import-not-found,unused-ignore]

        return pl.read_parquet(_as_readable(source), columns=cols)
    if frame == "arrow":
        import pyarrow.parquet as pq

        return pq.read_table(_as_readable(source), columns=cols)
    raise ValueError(f"Unknown frame {frame!r}. Use 'pandas', 'polars' or 'arrow'.")


def _is_uri(path: str) -> bool:
    return path.startswith(_CLOUD_PREFIXES)


def reference_fields(
    path: str | os.PathLike[str],
    *,
    table_format: str = "parquet",
    is_directory: bool | None = None,
    polars_only: bool | None = None,
    allow_full_load: bool = False,
    num_rows: int | None = None,
    version: int | None = None,
) -> ItemFields:
    """The fields of a ``referenced_table`` (nothing is read or copied).

    An absolute local path is stored as a ``file://`` URI; URIs are kept as given;
    a relative path is refused, as in datafolio.

    Args:
        path: The external table: a URI (``s3://``, ``gs://``, ``https://``,
            ``file://`` ...) or an absolute local path.
        table_format: ``"parquet"`` or ``"csv"``.
        is_directory: Whether ``path`` is a directory dataset; by default a local
            path is checked on disk and a URI counts as one if it ends with ``/``.
        polars_only: Readable only through polars; defaults to ``is_directory``.
        allow_full_load: Exempt the reference from eager-size guards.
        num_rows: Recorded row count, if known.
        version: Recorded source version, if any.

    Raises:
        ValueError: For a relative path, a Delta/Iceberg path or another format.
    """
    if table_format in ("delta", "iceberg"):
        raise ValueError(
            f"Table format {table_format!r} is not supported: datafolio has no "
            f"{table_format} reader. Use 'parquet' (canonical) or 'csv'."
        )
    if table_format not in REFERENCE_TABLE_FORMATS:
        raise ValueError(
            f"Unsupported table format: {table_format}. Supported formats: "
            f"{sorted(REFERENCE_TABLE_FORMATS)}"
        )
    text = os.fspath(path)
    lowered = text.rstrip("/").lower()
    if lowered.endswith((".delta", ".iceberg", "_delta_log")):
        raise ValueError(
            f"Path {text!r} looks like a Delta/Iceberg table, which datafolio does not "
            f"support. Convert it to plain Parquet first, then reference that."
        )
    if _is_uri(text):
        stored = text
    elif os.path.isabs(text):
        stored = "file://" + text
    else:
        raise ValueError(
            f"Relative reference path {text!r} is not allowed. External references must "
            f"be absolute so moving or copying the bundle keeps the link. Pass an "
            f"absolute path, a file:// URI or a cloud URI (s3://, gs://, ...)."
        )
    if is_directory is None:
        if stored.startswith("file://"):
            is_directory = os.path.isdir(stored[len("file://") :])
        else:
            is_directory = stored.endswith("/")
    fields: dict[str, Any] = {
        "path": stored,
        "table_format": table_format,
        "is_directory": is_directory,
        "mutable": True,
    }
    if allow_full_load:
        fields["allow_full_load"] = True
    if is_directory if polars_only is None else polars_only:
        fields["polars_only"] = True
    if num_rows is not None:
        fields["num_rows"] = num_rows
    if version is not None:
        fields["version"] = version
    return ItemFields(REFERENCE_ITEM_TYPE, fields, "")


def deserialize_reference(
    source: Source,
    item: Item,
    *,
    columns: Sequence[str] | None = None,
    frame: str = "pandas",
) -> Any:
    """Read a ``referenced_table`` from a local copy (or the bytes) of its external data.

    The caller fetches ``item.path`` (resolving a legacy relative path against the
    bundle); this function only parses. CSV is read with ``pandas.read_csv`` (or
    ``polars.read_csv``); ``columns`` then selects columns by name.

    Raises:
        ValueError: For an unknown format or frame, or pandas on a polars-only table.
    """
    table_format = item.table_format
    cols = list(columns) if columns is not None else None
    if table_format == "parquet":
        return deserialize_table(source, item, columns=cols, frame=frame)
    if table_format != "csv":
        raise ValueError(f"Unsupported table format {table_format!r} for a referenced table")
    if frame == "pandas":
        if item.get("polars_only"):
            raise ValueError(f"Table {item.get('name')!r} is polars-only; use frame='polars'")
        import pandas as pd

        return pd.read_csv(_as_readable(source), usecols=cols)
    if frame == "polars":
        import polars as pl  # type: ignore[import-not-found,unused-ignore]

        return pl.read_csv(_as_readable(source), columns=cols)
    if frame == "arrow":
        import pyarrow.csv as pacsv

        read_options = pacsv.ConvertOptions(include_columns=cols) if cols else None
        return pacsv.read_csv(_as_readable(source), convert_options=read_options)
    raise ValueError(f"Unknown frame {frame!r}. Use 'pandas', 'polars' or 'arrow'.")
