"""Looking at a bundle's tables where they live: existence and schema of referenced tables.

Owns :func:`check_references` (the referenced-table half of ``validate``: does each external
object still exist) and :func:`inspect_table` (datafolio 2.3.0's ``inspect_table``: read a
referenced table's Parquet footer with two ranged reads, its size and identity, and record
them in its manifest entry through the session's commit; an included table's entry is
returned as it is). Both take a :class:`~aiofolio.engine.session.BundleSession`.
"""

from __future__ import annotations

import asyncio
import io
import os
import struct
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiofolio.backends import Backend, scheme_of
from aiofolio.backends.local import local_path
from aiofolio.bundle import REFERENCE_ITEM_TYPE, Item, Manifest
from aiofolio.bundle.curation import plan_item_edits
from aiofolio.engine._runtime import engine, in_thread
from aiofolio.errors import InvalidArgumentError, RemoteError, RemoteNotFoundError

if TYPE_CHECKING:
    from aiofolio.engine.session import BundleSession

__all__ = ["check_references", "inspect_table"]

_TABLES = ("included_table", REFERENCE_ITEM_TYPE)
_PARQUET_MAGIC = b"PAR1"


def _backend(session: BundleSession, target: str) -> Backend:
    return engine().pool.get(target, session.storage_options)


async def _exists(session: BundleSession, item: Item) -> bool:
    target = str(item.path or "")
    if not target:
        return False
    if scheme_of(target) == "file":
        where = local_path(target)
        return await in_thread(os.path.exists, where)
    backend = _backend(session, target)
    try:
        if await backend.exists(target):
            return True
        if item.get("is_directory"):
            return bool(await backend.list(target.rstrip("/") + "/"))
        return False
    except RemoteError:
        return False


async def check_references(
    session: BundleSession, manifest: Manifest | None = None
) -> dict[str, bool]:
    """Whether each current referenced table's external object exists (in ``manifest``,
    default the loaded one), by name."""
    manifest = manifest if manifest is not None else session.require_manifest()
    refs = [i for i in manifest.current_items().values() if i.is_reference]
    found = await asyncio.gather(*(_exists(session, i) for i in refs))
    return {i.name: ok for i, ok in zip(refs, found, strict=True)}


def _schema_fields(footer_file: bytes) -> dict[str, Any]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(footer_file)).metadata
    schema = meta.schema.to_arrow_schema()
    return {
        "columns": list(schema.names),
        "dtypes": {f.name: str(f.type) for f in schema},
        "num_cols": len(schema),
        "num_rows": int(meta.num_rows),
    }


async def _parquet_footer(backend: Backend, url: str, size: int) -> bytes:
    """The file's tail as a minimal Parquet file (footer, its length, the magic)."""
    if size < 12:
        raise InvalidArgumentError(f"{url} is too small to be a Parquet file ({size} bytes)")
    tail = await backend.read_range(url, size - 8, size)
    if tail[4:] != _PARQUET_MAGIC:
        raise InvalidArgumentError(f"{url} is not a Parquet file (no PAR1 footer)")
    (length,) = struct.unpack("<I", tail[:4])
    footer = await backend.read_range(url, size - 8 - length, size - 8)
    return _PARQUET_MAGIC + footer + tail


async def _local_facts(item: Item, where: str) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        try:
            st = os.stat(where)
        except FileNotFoundError:
            raise FileNotFoundError(f"Referenced table not found: {where}") from None
        out: dict[str, Any] = {"size_bytes": st.st_size}
        if item.table_format == "parquet" and not os.path.isdir(where):
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(where).metadata
            schema = meta.schema.to_arrow_schema()
            out.update(
                columns=list(schema.names),
                dtypes={f.name: str(f.type) for f in schema},
                num_cols=len(schema),
                num_rows=int(meta.num_rows),
            )
        out["source_identity"] = {
            "size": st.st_size,
            "last_modified": datetime.fromtimestamp(st.st_mtime).isoformat(),
        }
        return out

    return await in_thread(read)


async def _remote_facts(session: BundleSession, item: Item, target: str) -> dict[str, Any]:
    backend = _backend(session, target)
    try:
        stat = await backend.stat(target)
    except RemoteNotFoundError:
        raise FileNotFoundError(f"Referenced table not found: {target}") from None
    out: dict[str, Any] = {"size_bytes": stat.size}
    if item.table_format == "parquet":
        footer = await _parquet_footer(backend, target, stat.size)
        out.update(await in_thread(_schema_fields, footer))
    identity: dict[str, Any] = {"size": stat.size}
    if stat.last_modified is not None:
        identity["last_modified"] = datetime.fromtimestamp(stat.last_modified).isoformat()
    if stat.etag:
        identity["etag"] = stat.etag
    if stat.version:
        identity["version"] = stat.version
    out["source_identity"] = identity
    return out


async def inspect_table(session: BundleSession, name: str) -> dict[str, Any]:
    """Record a referenced table's size, schema and identity; return the item's entry.

    Raises:
        ItemNotFoundError: No such item (a ``KeyError``).
        InvalidArgumentError: It is not a table, or not a readable Parquet file (a
            ``ValueError``).
        FileNotFoundError: The referenced object does not exist.
    """
    item = session.working_manifest().current(name)
    if item.item_type not in _TABLES:
        raise InvalidArgumentError(f"Item {name!r} is not a table (type: {item.item_type})")
    if not item.is_reference:
        return item.to_dict()
    target = str(item.path or "")
    if scheme_of(target) == "file":
        facts = await _local_facts(item, local_path(target))
    else:
        facts = await _remote_facts(session, item, target)
    plan = await session.edit(
        f"inspect {name!r}", lambda m: plan_item_edits(m, {name: (facts, ())})
    )
    if plan is None:  # pragma: no cover - plan_item_edits always plans
        return item.to_dict()
    return plan.manifest.current(name).to_dict()
