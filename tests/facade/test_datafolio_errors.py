"""Errors as datafolio 2.3.0 raises them, and still aiofolio's.

* A write on a read-only folio (``read_only=True``, a snapshot view) is refused with an error
  that is a ``RuntimeError`` (datafolio's class), a ``PermissionError`` and an
  ``AiofolioError``; datafolio itself raises a ``RuntimeError`` for the same call.
* ``add(series, preserve_index=True)`` is a ``TypeError`` (a Series keeps its index itself),
  as in datafolio; nothing is written.
* A write whose ``items.json`` vanished since it was loaded raises ``ManifestReadError`` (a
  ``ConcurrentWriteError``, a ``RuntimeError``); nothing is published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datafolio
import pandas as pd
import pytest

import aiofolio
from aiofolio import (
    AiofolioError,
    ConcurrentWriteError,
    DataFolio,
    ManifestReadError,
    ReadOnlyError,
)


def _writes(folio: Any) -> list[Callable[[], Any]]:
    return [
        lambda: folio.add("x", 1),
        lambda: folio.add_model("m", {"a": 1}),
        lambda: folio.delete("t"),
        lambda: folio.reference_table("r", "/nowhere.parquet"),
    ]


def test_read_only_writes_raise_a_runtime_error_in_both(tmp_path: Path) -> None:
    root = tmp_path / "b"
    writer = DataFolio(root)
    writer.add("t", pd.DataFrame({"a": [1]}))
    before = (root / "items.json").read_bytes()

    theirs = datafolio.DataFolio(str(root), read_only=True)
    ours = DataFolio(root, read_only=True)
    for write in _writes(theirs):
        with pytest.raises(RuntimeError):
            write()
    for write in _writes(ours):
        with pytest.raises(RuntimeError) as info:
            write()
        assert isinstance(info.value, ReadOnlyError)
        assert isinstance(info.value, AiofolioError)
        assert isinstance(info.value, PermissionError)
    with pytest.raises(RuntimeError):
        ours.metadata["k"] = 1
    with pytest.raises(RuntimeError):
        asyncio.run(ours.aadd("x", 1))
    assert (root / "items.json").read_bytes() == before


def test_series_with_preserve_index_is_a_type_error(tmp_path: Path) -> None:
    series = pd.Series([1, 2], name="s")
    theirs = datafolio.DataFolio(str(tmp_path / "theirs"))
    with pytest.raises(TypeError):
        theirs.add("s", series, preserve_index=True)
    ours = DataFolio(tmp_path / "ours")
    before = (tmp_path / "ours" / "items.json").read_bytes()
    for value in (True, False):
        with pytest.raises(TypeError, match="preserve_index") as info:
            ours.add("s", series, preserve_index=value)
        assert isinstance(info.value, AiofolioError)
    assert (tmp_path / "ours" / "items.json").read_bytes() == before
    assert list((tmp_path / "ours" / "tables").iterdir()) == []
    ours.add("s", series)  # without the option it is stored, index and all
    pd.testing.assert_series_equal(ours.get("s"), series)


def test_a_vanished_manifest_is_a_manifest_read_error(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("a", 1)
    (root / "items.json").unlink()
    with pytest.raises(ManifestReadError, match="gone") as info:
        folio.add("b", 2)
    assert isinstance(info.value, ConcurrentWriteError)
    assert isinstance(info.value, RuntimeError)
    assert not (root / "items.json").exists()  # nothing published
    assert [p.name for p in (root / "artifacts").iterdir()] == ["a--r2.json"]  # orphan removed


def test_datafolio_names_are_exported() -> None:
    assert aiofolio.ManifestReadError is ManifestReadError
    assert issubclass(aiofolio.UnsupportedManifestVersionError, RuntimeError)


def test_a_garbled_manifest_is_a_manifest_read_error(tmp_path: Path) -> None:
    root = tmp_path / "b"
    folio = DataFolio(root)
    folio.add("a", 1)
    (root / "items.json").write_bytes(b"{not json")
    with pytest.raises(ManifestReadError, match="readable"):
        folio.add("b", 2)
    assert (root / "items.json").read_bytes() == b"{not json"
    assert [p.name for p in (root / "artifacts").iterdir()] == ["a--r2.json"]
    (root / "items.json").write_text("[]")  # a valid (legacy) manifest: a lost race
    with pytest.raises(ConcurrentWriteError) as info:
        folio.add("c", 3)
    assert not isinstance(info.value, ManifestReadError)
