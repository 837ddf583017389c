"""Table files imported as ``included_table`` payloads without loading them whole.

Owns :func:`import_table_file` (``DataFolio.import_table``): a Parquet file is copied byte
for byte (schema and row count from its footer); Arrow IPC files (feather v2, ``.arrow``,
``.ipc``) are converted one record batch at a time and CSV block by block (types inferred
from the first block, a later value that does not fit is a ``ValueError``), as datafolio
2.3.0 does. Local files only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from aiofolio.bundle.hashing import HashingWriter, write_hashed
from aiofolio.bundle.manifest import ItemFields
from aiofolio.errors import InvalidArgumentError

__all__ = ["IMPORT_FORMATS", "import_format", "import_table_file"]

IMPORT_FORMATS = ("parquet", "csv", "feather", "arrow")

_EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".feather": "feather",
    ".arrow": "arrow",
    ".ipc": "arrow",
}


def import_format(path: str | os.PathLike[str], table_format: str | None) -> str:
    """The format of the file: ``table_format`` checked, or inferred from the extension.

    Raises:
        InvalidArgumentError: An unknown format, or none given and none inferable.
    """
    if table_format is None:
        found = _EXTENSIONS.get(Path(path).suffix.lower())
        if found is None:
            raise InvalidArgumentError(
                f"Cannot infer the table format of {os.fspath(path)!r} from its extension; "
                f"pass table_format= (one of {', '.join(IMPORT_FORMATS)})"
            )
        return found
    if table_format not in IMPORT_FORMATS:
        raise InvalidArgumentError(
            f"Unsupported table_format {table_format!r} (supported: {', '.join(IMPORT_FORMATS)})"
        )
    return table_format


def _fields(schema: Any, num_rows: int, checksum: str, size: int) -> ItemFields:
    return ItemFields(
        "included_table",
        {
            "table_format": "parquet",
            "is_directory": False,
            "checksum": checksum,
            "num_rows": int(num_rows),
            "num_cols": len(schema),
            "columns": list(schema.names),
            "dtypes": {f.name: str(f.type) for f in schema},
            "size_bytes": size,
        },
        ".parquet",
    )


def _copy_parquet(source: str, dest_path: str) -> ItemFields:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(source).metadata  # a bad file fails here, before any copy
    schema = meta.schema.to_arrow_schema()

    def copy(writer: HashingWriter) -> None:
        with open(source, "rb") as fh:
            shutil.copyfileobj(fh, writer, 1 << 20)

    checksum, size = write_hashed(dest_path, copy)
    return _fields(schema, meta.num_rows, checksum, size)


def _convert(batches: Any, schema: Any, dest_path: str) -> ItemFields:
    import pyarrow.parquet as pq

    rows = 0

    def write(writer: HashingWriter) -> None:
        nonlocal rows
        with pq.ParquetWriter(writer, schema) as out:
            for batch in batches:
                rows += batch.num_rows
                out.write_batch(batch)

    checksum, size = write_hashed(dest_path, write)
    return _fields(schema, rows, checksum, size)


def import_table_file(
    source: str | os.PathLike[str],
    dest_path: str | os.PathLike[str],
    *,
    table_format: str | None = None,
    block_size: int | None = None,
) -> ItemFields:
    """Write the table file ``source`` as a Parquet payload at ``dest_path``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        InvalidArgumentError: The format is unknown or unsupported (a ``ValueError``).
        ValueError: A CSV value does not fit the type inferred from the first block.
    """
    src = os.fspath(source)
    dest = os.fspath(dest_path)
    fmt = import_format(src, table_format)
    if not os.path.isfile(src):
        raise FileNotFoundError(f"Table file not found: {src}")
    if fmt == "parquet":
        return _copy_parquet(src, dest)
    if fmt == "csv":
        import pyarrow.csv as pcsv

        options = pcsv.ReadOptions(block_size=block_size) if block_size else None
        reader = pcsv.open_csv(src, read_options=options)
        return _convert(reader, reader.schema, dest)
    import pyarrow as pa

    with pa.memory_map(src, "r") as mapped:
        ipc = pa.ipc.open_file(mapped)
        batches = (ipc.get_batch(i) for i in range(ipc.num_record_batches))
        return _convert(batches, ipc.schema, dest)
