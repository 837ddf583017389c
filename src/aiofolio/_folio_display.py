"""``describe()`` of :class:`~aiofolio.DataFolio`: the text datafolio 2.3.0 prints.

Owns :class:`DisplayMethods` (a mixin) and the formatting rules of that text: the header
(path, created/updated times as "Today at 2:34 PM UTC", "Yesterday at ...", or "January 5,
2024 at ..." in local time), up to ``max_metadata_fields`` user metadata keys (sorted; long
strings, lists and dicts shortened), the five newest snapshots, then one section per kind of
item (tables, arrays, JSON, models, artifacts, timestamps) with their details, sizes (local
bundles) and lineage; ``show_empty`` lists empty sections too; ``snapshot=`` describes one
snapshot instead. Pure formatting over the manifest, plus the payload sizes of a local bundle.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiofolio._folio_base import FolioBase
from aiofolio.bundle import ITEM_TYPE_DIRS, Item, Manifest
from aiofolio.bundle import snapshots as snaps

__all__ = ["DisplayMethods", "format_size", "format_time", "format_value"]

_INTERNAL_METADATA = frozenset({"created_at", "updated_at", "parent_bundle", "_datafolio"})
_MAX_SNAPSHOTS = 5


def format_time(iso: str) -> str:
    """An ISO timestamp in local time: "Today at 2:34 PM UTC", "Yesterday at ...", or
    "January 05, 2024 at ..."; the text itself when it does not parse."""
    try:
        moment = datetime.fromisoformat(str(iso).replace("Z", "+00:00")).astimezone()
    except (ValueError, TypeError):
        return str(iso)
    today = datetime.now().astimezone().date()
    clock = moment.strftime("%I:%M %p %Z").lstrip("0")
    days = (today - moment.date()).days
    if days == 0:
        return f"Today at {clock}"
    if days == 1:
        return f"Yesterday at {clock}"
    return f"{moment.strftime('%B %d, %Y')} at {clock}"


def _moment(iso: str) -> str:
    """A timestamp item's time: ``2024-01-15 10:30:00 UTC``."""
    try:
        moment = datetime.fromisoformat(iso)
    except (ValueError, TypeError):
        return str(iso)
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z") or f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more chars)"


def format_value(value: Any, limit: int = 60) -> str:
    """A metadata value, shortened: strings past ``limit`` characters, lists past 5 items,
    dicts past 3 keys."""
    if isinstance(value, str):
        return _shorten(value, limit)
    if isinstance(value, list):
        if len(value) <= 5:
            return str(value)
        return f"{str(value[:5])[:-1]}, ...] ({len(value) - 5} more items)"
    if isinstance(value, dict):
        if len(value) <= 3:
            return str(value)
        head = dict(list(value.items())[:3])
        return f"{str(head)[:-1]}, ...}} ({len(value) - 3} more fields)"
    return _shorten(str(value), limit)


def format_size(size: int) -> str:
    """Bytes as ``512 B``, ``1.5 KB``, ``2.0 MB`` ... (powers of 1024)."""
    units = ("B", "KB", "MB", "GB", "TB")
    value, unit = float(size), 0
    while value >= 1024 and unit < len(units) - 1:
        value /= 1024
        unit += 1
    return f"{int(value)} {units[unit]}" if unit == 0 else f"{value:.1f} {units[unit]}"


class DisplayMethods(FolioBase):
    """``describe`` of ``DataFolio`` (a mixin; see the module docstring)."""

    if TYPE_CHECKING:  # provided by ReadingMethods

        def _contents(self, manifest: Manifest, include_archived: bool) -> dict[str, list[str]]: ...

        def item_path(self, name: str) -> str: ...

    def describe(
        self,
        pattern: str | None = None,
        return_string: bool = False,
        show_empty: bool = False,
        max_metadata_fields: int = 10,
        snapshot: str | None = None,
        include_archived: bool = False,
        show_paths: bool = False,
    ) -> str | None:
        """A readable summary of the bundle (datafolio's text); printed unless
        ``return_string``.

        ``pattern`` (a glob over names) filters the items; ``show_empty`` shows empty
        sections; ``max_metadata_fields`` bounds the metadata listed; ``snapshot`` describes
        that snapshot instead; ``include_archived`` shows archived items; ``show_paths`` adds
        each payload's location.

        Raises:
            ItemNotFoundError: ``snapshot`` names no snapshot (a ``KeyError``).
        """
        manifest = self._view()
        if snapshot:
            text = self._describe_snapshot(manifest, snapshot)
        else:
            text = self._describe(
                manifest, pattern, show_empty, max_metadata_fields, include_archived, show_paths
            )
        text = self._header(manifest) + text
        if return_string:
            return text
        print(text)
        return None

    def _header(self, manifest: Manifest) -> str:
        """datafolio's prefix: a snapshot view's name and record, then ``[READ-ONLY MODE]``
        (joined to the text without a line break of its own, as datafolio does)."""
        lines: list[str] = []
        if self._snapshot is not None:
            record = manifest.snapshot(self._snapshot)
            lines.append(f"Snapshot: {self._snapshot}")
            if record.get("timestamp"):
                lines.append(f"Created: {record['timestamp']}")
            if record.get("description"):
                lines.append(f"Description: {record['description']}")
            if record.get("tags"):
                lines.append(f"Tags: {', '.join(record['tags'])}")
            lines.append("")
        if self._session.read_only or self._snapshot is not None:
            lines += ["[READ-ONLY MODE]", ""]
        return "\n".join(lines)

    # -- the bundle ----------------------------------------------------------------------------
    def _describe(
        self,
        manifest: Manifest,
        pattern: str | None,
        show_empty: bool,
        max_fields: int,
        include_archived: bool,
        show_paths: bool,
    ) -> str:
        title = f"DataFolio: {self._session.url}"
        lines = [title, "=" * len(title), ""]
        meta = self._metadata_source()
        if "created_at" in meta:
            lines.append(f"Created: {format_time(meta['created_at'])}")
        if "updated_at" in meta:
            lines.append(f"Updated: {format_time(meta['updated_at'])}")
        if "parent_bundle" in meta:
            lines.append(f"Parent: {meta['parent_bundle']}")
        if any(k in meta for k in ("created_at", "updated_at", "parent_bundle")):
            lines.append("")
        custom = {k: v for k, v in meta.items() if k not in _INTERNAL_METADATA}
        if custom:
            lines.append(f"Metadata ({len(custom)} fields):")
            shown = sorted(custom)[:max_fields]
            lines.extend(f"  • {key}: {format_value(custom[key])}" for key in shown)
            if len(custom) > len(shown):
                lines.append(f"  ... ({len(custom) - len(shown)} more fields)")
            lines.append("")
        self._snapshot_lines(lines, manifest, show_empty)

        contents = self._contents(manifest, include_archived)
        if pattern is not None:
            contents = {k: fnmatch.filter(v, pattern) for k, v in contents.items()}
        current = {n: self._item_in(manifest, n) for v in contents.values() for n in v}
        sections = (
            ("Tables", contents["referenced_tables"] + contents["included_tables"]),
            ("Numpy Arrays", contents["numpy_arrays"]),
            ("JSON Data", contents["json_data"]),
            ("Models", contents["models"]),
            ("Artifacts", contents["artifacts"]),
            ("Timestamps", contents["timestamps"]),
        )
        for index, (label, names) in enumerate(sections):
            if not names and not show_empty:
                continue
            lines.append(f"{label} ({len(names)}):")
            if not names:
                lines.append("  (none)")
            for name in names:
                lines.extend(self._item_lines(current[name], show_paths))
            if index < len(sections) - 1:  # datafolio ends the last section without a blank
                lines.append("")
        return "\n".join(lines)

    def _snapshot_lines(self, lines: list[str], manifest: Manifest, show_empty: bool) -> None:
        rows = snaps.list_snapshots(manifest)
        if not rows and not show_empty:
            return
        lines.append(f"Snapshots ({len(rows)}):")
        for row in rows[:_MAX_SNAPSHOTS]:
            lines.append(f"  • {row['name']}: {row.get('description') or '(no description)'}")
            lines.append(
                f"    ↳ created: {format_time(row.get('timestamp', ''))}, "
                f"items: {row.get('num_items', 0)}"
            )
            if row.get("tags"):
                lines.append(f"    ↳ tags: {', '.join(row['tags'])}")
        if len(rows) > _MAX_SNAPSHOTS:
            lines.append(f"  ... ({len(rows) - _MAX_SNAPSHOTS} more snapshots)")
        if not rows:
            lines.append("  (none)")
        lines.append("")

    def _size(self, item: Item) -> int | None:
        """The payload's size on disk (local bundles only, as datafolio shows it)."""
        filename = item.get("filename")
        folder = ITEM_TYPE_DIRS.get(item.item_type)
        if not filename or item.is_reference or folder is None or not self._session.is_local:
            return None
        try:
            return os.path.getsize(os.path.join(self._session.url, folder, str(filename)))
        except OSError:
            return None

    def _item_lines(self, item: Item, show_paths: bool) -> list[str]:
        kind = item.item_type
        desc = item.description or "(no description)"
        if item.is_reference:
            lines = [f"  • {item.name} (reference): {desc}"]
            if item.get("path") is not None:
                lines.append(f"    ↳ path: {item.get('path')}")
            return lines + _inputs(item)
        tag = f" ({item.get('category')})" if kind == "artifact" and item.get("category") else ""
        lines = [f"  • {item.name}{tag}: {desc}"]
        if show_paths:
            lines.append(f"    ↳ path: {self.item_path(item.name)}")
        if kind == "numpy_array":
            shape, dtype = item.get("shape", "unknown"), item.get("dtype", "unknown")
            lines.append(f"    ↳ shape: {shape}, dtype: {dtype}")
        elif kind == "json_data":
            lines.append(f"    ↳ type: {item.get('data_type', 'unknown')}")
        elif kind == "timestamp" and item.get("iso_string"):
            lines.append(f"    ↳ time: {_moment(str(item.get('iso_string')))}")
        size = self._size(item)
        if size is not None:
            lines.append(f"    ↳ size: {format_size(size)}")
        if kind != "artifact":
            lines.extend(_inputs(item))
        if kind == "included_table" and item.get("models"):
            lines.append(f"    ↳ models: {', '.join(item.get('models'))}")
        params = item.get("hyperparameters")
        if kind == "model" and isinstance(params, Mapping) and params:
            text = ", ".join(f"{k}={v}" for k, v in list(params.items())[:3])
            if len(params) > 3:
                text += f", ... ({len(params) - 3} more)"
            lines.append(f"    ↳ hyperparameters: {text}")
        return lines

    # -- one snapshot ----------------------------------------------------------------------------
    def _describe_snapshot(self, manifest: Manifest, name: str) -> str:
        info = snaps.snapshot_info(manifest, name)
        title = f"Snapshot: {name}"
        lines = [title, "=" * len(title), ""]
        if info.get("description"):
            lines += [f"Description: {info['description']}", ""]
        if info.get("timestamp"):
            lines.append(f"Created: {format_time(info['timestamp'])}")
        if info.get("tags"):
            lines.append(f"Tags: {', '.join(info['tags'])}")
        if "timestamp" in info or "tags" in info:
            lines.append("")
        pinned = manifest.snapshot_items(name)
        versions = info.get("item_versions") or {}
        lines.append(f"Items ({len(versions)}):")
        if not versions:
            lines.append("  (none)")
            return "\n".join(lines)
        groups: dict[str, list[str]] = {k: [] for k in ("t", "j", "n", "m", "a")}
        keys = {
            "included_table": "t",
            "referenced_table": "t",
            "json_data": "j",
            "numpy_array": "n",
            "model": "m",
            "artifact": "a",
        }
        for item_name in versions:
            item = pinned.get(item_name)
            key = keys.get(item.item_type) if item is not None else None
            if item is None or key is None:
                continue  # datafolio lists timestamps under no group
            ref = " (reference)" if item.is_reference else ""
            groups[key].append(f"    • {item_name}{ref}: {item.description or '(no description)'}")
        labels = {"t": "Tables", "j": "JSON Data", "n": "Numpy Arrays", "m": "Models"}
        labels["a"] = "Artifacts"
        for key, entries in groups.items():
            if entries:
                lines.append(f"\n  {labels[key]} ({len(entries)}):")
                lines.extend(entries)
        return "\n".join(lines)


def _inputs(item: Item) -> list[str]:
    return [f"    ↳ inputs: {', '.join(item.inputs)}"] if item.inputs else []
