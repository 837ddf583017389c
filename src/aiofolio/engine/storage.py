"""Moving tables between "included" and "referenced": the storage side of the large-file policy.

Owns: :func:`convert_to_reference`, :func:`convert_to_included`, :func:`optimize_storage`,
:func:`analyze_storage` (what it would do) and :func:`list_references`, the async work behind
the ``DataFolio`` methods of the same names.
Every change is one commit through :class:`~aiofolio.engine.session.BundleSession`'s optimistic
write path (payload uploaded create-only, ``items.json`` published conditionally on the
manifest we loaded), so a concurrent writer raises
:class:`~aiofolio.errors.ConcurrentWriteError` and nothing half-done is visible.

The manifest stays what ``datafolio`` 2.x writes and validates: a ``referenced_table`` has an
absolute ``path`` (``file://`` for local files) and no ``filename``; an ``included_table`` has a
``filename`` under ``tables/``, its MD5 ``checksum`` and ``size_bytes``.

* **Included → reference, no path given**: the reference points at the table's existing
  payload (``<bundle>/tables/<name>--r<N>.parquet``); no byte is copied or moved, and that file
  is kept (not deleted as an obsolete payload). The bundle's *owned* size shrinks by the
  payload's size: copying the bundle's owned files, or ``datafolio``'s notion of what the
  bundle contains, no longer includes it, but the bytes stay on disk where they were. The
  reference records the payload's ``checksum`` and ``size_bytes`` (the file is immutable, so
  reads can verify it).
* **Included → reference at a given path**: the verified payload is copied there (create-only;
  an existing object with the same MD5 is accepted as is, any other is refused), then the
  bundle's own payload is deleted after the publish. The reference records ``size_bytes`` but
  no checksum: the external object is the user's to change.
* **Reference → included**: the external data is downloaded (verified against a recorded
  checksum when there is one) and stored as a new ``included_table`` revision: a Parquet file
  byte for byte, a CSV through pandas. If the reference pointed at a file inside this bundle
  that nothing else names any more, that file is deleted after the publish.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
from typing import TYPE_CHECKING, Any

from aiofolio.backends import scheme_of
from aiofolio.backends.local import local_path
from aiofolio.bundle import (
    REFERENCE_ITEM_TYPE,
    Item,
    ItemFields,
    Manifest,
    WritePlan,
    md5_file,
    payload_path,
    plan_add,
)
from aiofolio.bundle.handlers import deserialize_reference, serialize_table
from aiofolio.engine._runtime import engine, in_thread
from aiofolio.engine.blobs import chunking_of
from aiofolio.engine.fetch import download_verified
from aiofolio.errors import IntegrityError, PreconditionFailedError, UsageError
from aiofolio.policy.largefiles import human_size, is_large, owned_payload_bytes

if TYPE_CHECKING:
    from aiofolio.engine.session import BundleSession

__all__ = [
    "analyze_storage",
    "convert_to_included",
    "convert_to_reference",
    "list_references",
    "optimize_storage",
]

log = logging.getLogger("aiofolio.storage")

# Table fields a conversion carries over (schema facts and how pandas restores the frame).
_CARRIED_FIELDS = (
    "num_rows",
    "num_cols",
    "columns",
    "dtypes",
    "index_columns",
    "index_names",
    "series",
    "allow_full_load",
)


def list_references(manifest: Manifest) -> dict[str, dict[str, Any]]:
    """The current ``referenced_table`` items: name → ``path``, ``table_format``,
    ``size_bytes`` (None when not recorded) and ``is_directory``."""
    out: dict[str, dict[str, Any]] = {}
    for name, item in manifest.current_items().items():
        if item.is_reference:
            out[name] = {
                "path": item.path,
                "table_format": item.table_format,
                "size_bytes": item.size_bytes,
                "is_directory": bool(item.get("is_directory", False)),
            }
    return out


def _location_in_bundle(session: BundleSession, relative: str) -> str:
    """The absolute location (``file://`` for local bundles) of a file inside the bundle."""
    if session.is_local:
        return "file://" + os.path.join(session.url, *relative.split("/"))
    return session.object_url(relative)


def _bundle_relative(session: BundleSession, location: str) -> str | None:
    """The path inside the bundle that ``location`` names, or None if it is outside."""
    if session.is_local:
        if scheme_of(location) != "file":
            return None
        path = local_path(location)
        root = session.url.rstrip(os.sep) + os.sep
        return path[len(root) :].replace(os.sep, "/") if path.startswith(root) else None
    prefix = session.url.rstrip("/") + "/"
    return location[len(prefix) :] if location.startswith(prefix) else None


def _external_location(path: str) -> str:
    """A user-given reference target as stored: a URI, or ``file://`` + an absolute path."""
    text = os.fspath(path)
    if text.startswith("gcs://"):
        text = "gs://" + text[len("gcs://") :]
    if "://" in text:
        return text
    if os.path.isabs(text):
        return "file://" + text
    raise ValueError(
        f"relative reference path {text!r} is not allowed: pass an absolute path, a file:// "
        "URI or a cloud URI (s3://, gs://, ...), so moving the bundle keeps the link"
    )


def _convertible_table(item: Item) -> None:
    """Refuse anything but a single-file included table."""
    if item.is_reference:
        raise UsageError(f"item {item.name!r} is already a reference (to {item.path})")
    if item.item_type != "included_table":
        raise UsageError(
            f"item {item.name!r} is a {item.item_type}; only tables (included_table) can be "
            "stored as references (datafolio references are tables)"
        )
    if item.get("is_directory"):
        raise UsageError(f"table {item.name!r} is a directory dataset; it cannot be converted")


async def _verified_local_copy(session: BundleSession, item: Item) -> tuple[str, bool]:
    """A local file with ``item``'s payload, checked against its MD5; and whether it is a temp."""
    path, temporary = await session.local_payload(item)  # remote: download_verified
    if not temporary and item.checksum is not None:
        md5, size = await in_thread(md5_file, path)
        if md5 != item.checksum or (item.size_bytes is not None and size != item.size_bytes):
            raise IntegrityError(
                f"the payload of {item.name!r} ({path}) does not match its recorded checksum; "
                "nothing was converted"
            )
    return path, temporary


async def _copy_out(session: BundleSession, item: Item, target: str) -> None:
    """Copy ``item``'s verified payload to the external ``target`` (create-only)."""
    backend = engine().pool.get(target, session.storage_options)
    url = local_path(target) if scheme_of(target) == "file" else target
    if scheme_of(target) == "file":
        await in_thread(lambda: os.makedirs(os.path.dirname(url), exist_ok=True))
    source, temporary = await _verified_local_copy(session, item)
    try:
        try:
            await backend.put(url, source, content_md5=item.checksum, if_none_match=True)
        except PreconditionFailedError:
            stat = await backend.stat(url)
            md5 = stat.md5
            if md5 is None and scheme_of(target) == "file":
                md5, _ = await in_thread(md5_file, url)
            if md5 is None or md5 != item.checksum:
                raise UsageError(
                    f"{target} already exists and does not hold the bytes of {item.name!r}; "
                    "choose another path or remove it first"
                ) from None
            log.info("%s already holds the bytes of %r; not copied again", target, item.name)
    finally:
        if temporary:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(source)


async def convert_to_reference(
    session: BundleSession, name: str, path: str | None = None
) -> dict[str, Any]:
    """Turn the included table ``name`` into a ``referenced_table`` (one commit).

    Args:
        session: The open bundle.
        name: A current ``included_table``.
        path: Where the reference should point. None: at the table's own payload in the
            bundle (nothing is copied; the file is kept). Else an absolute path or URI: the
            payload is copied there first and the bundle's copy is deleted after the commit.

    Returns:
        ``{"name", "path", "bytes_saved"}``: the reference target and the owned payload bytes
        the bundle no longer carries.

    Raises:
        ItemNotFoundError: no current item ``name``.
        UsageError: it is not a single-file included table, or ``path`` holds other bytes.
        ValueError: ``path`` is relative.
        ConcurrentWriteError: another writer published first; nothing was published.
    """
    session.require_writable(f"convert {name!r} to a reference")
    target = _external_location(path) if path is not None else None
    async with session.write_lock:
        item = session.require_manifest().current(name)
        _convertible_table(item)
        relative = payload_path(item)
        fields: dict[str, Any] = {
            "path": target or _location_in_bundle(session, relative),
            "table_format": item.table_format,
            "is_directory": False,
            "mutable": True,
        }
        fields.update({k: item.get(k) for k in _CARRIED_FIELDS if item.get(k) is not None})
        if item.size_bytes is not None:
            fields["size_bytes"] = item.size_bytes
        if target is None:
            if item.checksum is not None:
                fields["checksum"] = item.checksum  # our immutable payload: reads can verify
        else:
            await _copy_out(session, item, target)
        ref = ItemFields(REFERENCE_ITEM_TYPE, fields, "")

        def plan(manifest: Manifest, taken: Any) -> WritePlan:
            step = plan_add(manifest, name, ref, overwrite=True, inputs=list(item.inputs) or None)
            if target is None:  # the reference names the old payload: it must stay
                kept = tuple(p for p in step.obsolete_payloads if p != relative)
                step = dataclasses.replace(step, obsolete_payloads=kept)
            return step

        await session.commit(plan, None)
    saved = item.size_bytes or 0
    log.info(
        "converted %r of %s to a reference (%s); owned payloads %s smaller",
        name,
        session.url,
        fields["path"],
        human_size(saved),
    )
    return {"name": name, "path": fields["path"], "bytes_saved": saved}


def _parquet_fields(path: str, ref: Item) -> dict[str, Any]:
    """``included_table`` fields of an existing Parquet file (checksum and size added later)."""
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    fields: dict[str, Any] = {
        "table_format": "parquet",
        "is_directory": False,
        "num_rows": pq.read_metadata(path).num_rows,
        "num_cols": len(schema),
        "columns": list(schema.names),
        "dtypes": {f.name: str(f.type) for f in schema},
    }
    for key in ("index_columns", "index_names", "series", "allow_full_load"):
        if ref.get(key) is not None:
            fields[key] = ref.get(key)
    return fields


def _included_fields(source: str, upload: str, ref: Item) -> ItemFields:
    """Write the upload file from the external data's local copy; return its fields."""
    if ref.table_format == "parquet":
        shutil.copyfile(source, upload)
        fields = _parquet_fields(upload, ref)
        md5, size = md5_file(upload)
        fields = {**fields, "checksum": md5, "size_bytes": size}
        return ItemFields("included_table", fields, ".parquet")
    frame = deserialize_reference(source, ref)
    return serialize_table(frame, upload, name=ref.name)


async def convert_to_included(session: BundleSession, name: str) -> dict[str, Any]:
    """Fetch the referenced table ``name`` and store it in the bundle (one commit).

    Returns:
        ``{"name", "path", "bytes_added"}``: the new payload (relative to the bundle) and its
        size.

    Raises:
        ItemNotFoundError: no current item ``name``.
        UsageError: it is not a reference, or it is a directory dataset.
        ChecksumMismatchError: the external data does not match a recorded checksum.
        ConcurrentWriteError: another writer published first; nothing was published.
    """
    session.require_writable(f"convert {name!r} to an included table")
    scratch = engine().scratch_dir
    upload = os.path.join(scratch, f"include-{secrets.token_hex(8)}")
    fetched: str | None = None
    try:
        async with session.write_lock:
            item = session.require_manifest().current(name)
            if not item.is_reference:
                raise UsageError(f"item {name!r} is already included in the bundle")
            if item.get("is_directory") or item.get("polars_only"):
                raise UsageError(
                    f"referenced table {name!r} is a directory dataset ({item.path}); only a "
                    "single Parquet or CSV file can be included"
                )
            location = str(item.path or "")
            if not location:
                raise UsageError(f"referenced table {name!r} has no path")
            if scheme_of(location) == "file":
                source = session.local_reference(item)  # refused for a remote bundle
                if item.checksum is not None:
                    md5, _ = await in_thread(md5_file, source)
                    if md5 != item.checksum:
                        raise IntegrityError(
                            f"{location} does not match the checksum recorded for {name!r}; "
                            "nothing was converted"
                        )
            else:
                backend = engine().pool.get(location, session.storage_options)
                fetched = os.path.join(scratch, f"ref-{secrets.token_hex(8)}")
                source = await download_verified(
                    backend,
                    location,
                    fetched,
                    md5=item.checksum,
                    size=item.size_bytes if item.checksum is not None else None,
                    chunking=chunking_of(session.settings),
                )
            fields = await in_thread(_included_fields, source, upload, item)
            inside = _bundle_relative(session, location)

            def plan(manifest: Manifest, taken: Any) -> WritePlan:
                step = plan_add(
                    manifest,
                    name,
                    fields,
                    overwrite=True,
                    inputs=list(item.inputs) or None,
                    taken=taken,
                )
                if inside is not None and not _still_named(step.manifest, inside, location):
                    step = dataclasses.replace(
                        step, obsolete_payloads=(*step.obsolete_payloads, inside)
                    )
                return step

            done = await session.commit(plan, upload)
    finally:
        for leftover in (upload, fetched):
            if leftover is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
    assert done.item is not None
    assert done.payload_path is not None
    added = done.item.size_bytes or 0
    log.info(
        "converted reference %r of %s to an included table (%s, %s)",
        name,
        session.url,
        done.payload_path,
        human_size(added),
    )
    return {"name": name, "path": done.payload_path, "bytes_added": added}


def _still_named(manifest: Manifest, relative: str, location: str) -> bool:
    """Whether any descriptor in ``manifest`` still names the in-bundle file ``relative``."""
    for item in manifest.items:
        if item.is_reference:
            if item.path == location:
                return True
        elif item.owns_payload:
            with contextlib.suppress(ValueError):
                if payload_path(item) == relative:
                    return True
    return False


async def optimize_storage(session: BundleSession, threshold: int) -> dict[str, Any]:
    """Convert every current included table at or above ``threshold`` bytes to a reference.

    Each conversion is its own commit (see :func:`convert_to_reference`, no path): the
    references point at the tables' existing payloads, so nothing is copied.

    Returns:
        ``{"converted": [{"name", "path", "size_bytes"}, ...], "bytes_saved": int,
        "bundle_bytes_before": int, "bundle_bytes_after": int}``; the byte counts are the
        bundle's owned payload bytes (:func:`~aiofolio.policy.largefiles.owned_payload_bytes`).
    """
    manifest = session.require_manifest()
    before = owned_payload_bytes(manifest.items)
    candidates = _candidates(manifest, threshold)
    converted: list[dict[str, Any]] = []
    for name in candidates:
        done = await convert_to_reference(session, name)
        converted.append({"name": name, "path": done["path"], "size_bytes": done["bytes_saved"]})
    after = owned_payload_bytes(session.require_manifest().items)
    saved = sum(c["size_bytes"] for c in converted)
    log.info(
        "optimize_storage(%s) on %s: %d table(s) converted to references, %s saved",
        human_size(threshold),
        session.url,
        len(converted),
        human_size(saved),
    )
    return {
        "converted": converted,
        "bytes_saved": saved,
        "bundle_bytes_before": before,
        "bundle_bytes_after": after,
    }


def _candidates(manifest: Manifest, threshold: int) -> list[str]:
    """The current included tables :func:`optimize_storage` converts, by name."""
    return sorted(
        name
        for name, item in manifest.current_items().items()
        if item.item_type == "included_table"
        and not item.get("is_directory")
        and is_large(item.size_bytes, threshold)
    )


def analyze_storage(manifest: Manifest, threshold: int) -> dict[str, Any]:
    """The seed's ``analyze`` report: included and referenced bytes, and what
    :func:`optimize_storage` at ``threshold`` would convert (no I/O).

    Returns:
        ``{"total_bytes", "included": {"bytes", "items"}, "references": {"bytes", "items"},
        "threshold", "suggestions": [{"name", "size_bytes"}, ...], "bytes_saved",
        "percent_saved"}``: sizes of current items as the manifest records them (a
        reference of unrecorded size counts 0); ``bytes_saved`` is what the suggestions take
        out of the included bytes, ``percent_saved`` its share of ``total_bytes``.
    """
    current = manifest.current_items()
    included = [i for i in current.values() if i.owns_payload]
    references = [i for i in current.values() if i.is_reference]
    inc_bytes = sum(i.size_bytes or 0 for i in included)
    ref_bytes = sum(i.size_bytes or 0 for i in references)
    sizes = {name: current[name].size_bytes or 0 for name in _candidates(manifest, threshold)}
    order = sorted(sizes, key=lambda name: (-sizes[name], name))
    suggestions = [{"name": name, "size_bytes": sizes[name]} for name in order]
    saved = sum(sizes.values())
    total = inc_bytes + ref_bytes
    return {
        "total_bytes": total,
        "included": {"bytes": inc_bytes, "items": len(included)},
        "references": {"bytes": ref_bytes, "items": len(references)},
        "threshold": threshold,
        "suggestions": suggestions,
        "bytes_saved": saved,
        "percent_saved": round(100.0 * saved / total, 1) if total else 0.0,
    }
