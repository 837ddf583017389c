"""Bad input to the facade raises a :class:`~aiofolio.UsageError` that is also the old builtin.

Each case is raised through the public API on a real local bundle (or its cache folder) and
caught three ways: as the specific class, as ``UsageError`` (``except UsageError`` catches every
misuse) and as the ``ValueError``/``TypeError`` it was before, so old ``except`` clauses still
work. Nothing is written by a refused call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from aiofolio import (
    AiofolioError,
    ArgumentTypeError,
    DataFolio,
    InvalidArgumentError,
    UsageError,
)

TABLE = pd.DataFrame({"a": range(100), "b": [str(i) for i in range(100)]})


@pytest.fixture
def folio(tmp_path: Path) -> DataFolio:
    folio = DataFolio(tmp_path / "bundle", max_eager_bytes=10)
    folio.add("table", TABLE)
    folio.add("cfg", {"k": 1})
    return folio


def _cases(folio: DataFolio, tmp_path: Path) -> dict[str, tuple[Callable[[], Any], type, str]]:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    return {
        "path of a wrong type": (
            lambda: DataFolio(42),  # type: ignore[arg-type]
            ArgumentTypeError,
            r"str or os\.PathLike",
        ),
        "path is a file": (lambda: DataFolio(a_file), InvalidArgumentError, "is a file"),
        "busy folder": (lambda: DataFolio(busy), InvalidArgumentError, "allow_existing"),
        "table above max_eager_bytes": (
            lambda: folio.get("table"),
            InvalidArgumentError,
            "max_eager_bytes",
        ),
        "get_many above max_eager_bytes": (
            lambda: folio.get_many(["table"]),
            InvalidArgumentError,
            "max_eager_bytes",
        ),
        "warm concurrency 0": (
            lambda: folio.warm_cache(concurrency=0),
            InvalidArgumentError,
            "concurrency",
        ),
        "refresh_all concurrency 0": (
            lambda: DataFolio.refresh_all([folio], concurrency=-1),
            InvalidArgumentError,
            "concurrency",
        ),
        "cleanup_cache never": (
            lambda: DataFolio.cleanup_cache(older_than="never"),
            InvalidArgumentError,
            "finite older_than",
        ),
        "optimize_storage unlimited": (
            lambda: folio.optimize_storage("unlimited"),
            InvalidArgumentError,
            "finite threshold",
        ),
        "priority not an int": (
            lambda: folio.set_cache_priority("cfg", "high"),  # type: ignore[arg-type]
            ArgumentTypeError,
            "priority",
        ),
        "metadata clear": (lambda: folio.metadata.clear(), ArgumentTypeError, "clearing"),
    }


CASES = [
    "path of a wrong type",
    "path is a file",
    "busy folder",
    "table above max_eager_bytes",
    "get_many above max_eager_bytes",
    "warm concurrency 0",
    "refresh_all concurrency 0",
    "cleanup_cache never",
    "optimize_storage unlimited",
    "priority not an int",
    "metadata clear",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_a_usage_error_and_the_old_builtin(
    folio: DataFolio, tmp_path: Path, case: str
) -> None:
    cases = _cases(folio, tmp_path)
    assert set(cases) == set(CASES)
    action, cls, message = cases[case]
    old = ValueError if issubclass(cls, ValueError) else TypeError
    manifest = (Path(folio.path) / "items.json").read_bytes()
    for catch in (cls, UsageError, old, AiofolioError):
        with pytest.raises(catch, match=message) as info:
            action()
        assert type(info.value) is cls
    assert (Path(folio.path) / "items.json").read_bytes() == manifest  # nothing committed


async def test_async_twins_raise_the_same_usage_errors(folio: DataFolio) -> None:
    with pytest.raises(InvalidArgumentError, match="max_eager_bytes"):
        await folio.aget("table")
    with pytest.raises(InvalidArgumentError, match="max_eager_bytes"):
        await folio.aget_many(["table"])
    with pytest.raises(InvalidArgumentError, match="finite threshold"):
        await folio.aoptimize_storage("unlimited")
    with pytest.raises(InvalidArgumentError, match="concurrency"):
        await DataFolio.arefresh_all([folio], concurrency=0)
    with pytest.raises(ArgumentTypeError, match=r"str or os\.PathLike"):
        await DataFolio.aopen(42)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="path or an alias"):  # as datafolio
        await DataFolio.aopen(None)
    with pytest.raises(ArgumentTypeError, match="priority"):
        await folio.aset_cache_priority("cfg", None)  # type: ignore[arg-type]
