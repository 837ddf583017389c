"""The human-facing files of a bundle: ``README.md`` and the derived ``CONTENTS.md``.

Owns their text (pure functions of a manifest; the engine writes them, for local bundles,
best-effort). ``CONTENTS.md`` has datafolio 2.3.0's layout: a title, a note that it is
derived from ``items.json`` at a given revision, and one table row per current item (name,
type, location, description), sorted by name. ``README.md`` explains how to read the bundle
without any package.
"""

from __future__ import annotations

from aiofolio.bundle.manifest import ITEM_TYPE_DIRS, Manifest

__all__ = ["CONTENTS_FILE", "README_FILE", "contents_text", "readme_text"]

README_FILE = "README.md"
CONTENTS_FILE = "CONTENTS.md"


def _cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def contents_text(manifest: Manifest) -> str:
    """``CONTENTS.md`` for ``manifest``."""
    lines = [
        "# Contents",
        "",
        "> **Derived file — do not edit.** Regenerated from `items.json`, which is the "
        f"authoritative catalog. This reflects manifest revision **{manifest.revision}**.",
        "",
        "| Name | Type | Location | Description |",
        "| --- | --- | --- | --- |",
    ]
    current = manifest.current_items()
    for name in sorted(current):
        item = current[name]
        filename = item.get("filename")
        if filename:
            folder = ITEM_TYPE_DIRS.get(item.item_type)
            location = f"{folder}/{filename}" if folder else str(filename)
        elif item.get("path"):
            location = f"{item.get('path')} (external reference)"
        else:
            location = ""
        lines.append(
            f"| {_cell(name)} | {_cell(item.item_type or 'unknown')} | {_cell(location)} "
            f"| {_cell(item.description or '')} |"
        )
    lines.append("")
    return "\n".join(lines)


def readme_text(path: str, *, version: str) -> str:
    """``README.md`` of a new bundle at ``path``, written by aiofolio ``version``."""
    return f"""# DataFolio Bundle

This bundle was written by aiofolio {version}, a client of the
[datafolio](https://github.com/caseysm/datafolio) format. Nothing in it needs
either package: it is a folder of standard files and one JSON manifest.

## Layout

- `items.json` - the manifest, and the only authority: the bundle's metadata,
  every item version and the named snapshots, in one JSON document.
- `CONTENTS.md` - a readable list of the current items, derived from
  `items.json` after each change (never parse it; read `items.json`).
- `tables/` - Parquet files of the tables stored in the bundle.
- `models/` - serialized models (joblib or skops).
- `artifacts/` - arrays (`.npy`), JSON values (`.json`) and other files.

## Reading it by hand

`items.json` holds `{{"schema_version": 2, "revision", "metadata", "items": [...],
"snapshots"}}`. Each entry of `items` is one version of one item:

1. The current version of an item is the entry whose `is_current` is `true` (or
   missing, in old bundles); entries with `false` are kept for a snapshot.
2. An entry with a `filename` is stored here, in the folder of its `item_type`:
   `included_table` in `tables/`, `model` in `models/`, the rest in
   `artifacts/`. Open it with the usual reader of its format (Parquet, JSON,
   `numpy.load`, ...); `checksum` is its MD5.
3. A `referenced_table` names an external table by its `path`; its bytes are
   not part of the bundle and may have changed since it was recorded.

## With Python

```python
from aiofolio import DataFolio   # or: from datafolio import DataFolio

folio = DataFolio({path!r})
folio.describe()
df = folio.get("table_name")
path = folio.item_path("table_name")
```
"""
