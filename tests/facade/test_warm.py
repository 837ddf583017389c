"""``warm_cache`` on local bundles, the handle's API, and when a progress bar is drawn.

Local payloads are used in place (nothing to download), so these tests need no server; the
request-counting tests over HTTP and S3 live in ``tests/integration/test_warm_remote.py``.
Whether a bar is drawn is decided by :func:`aiofolio._progress.wants_progress`; the terminal
check is replaced here (capsys is never a terminal) to see both sides of it.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from aiofolio import DataFolio, ItemNotFoundError, WarmHandle, WarmProgress, WarmResult, _progress

ITEMS = {"a": np.arange(10), "b": {"k": "v"}, "c": [1, 2, 3]}


@pytest.fixture
def folio(tmp_path: Path) -> DataFolio:
    folio = DataFolio(tmp_path / "bundle")
    for name, value in ITEMS.items():
        folio.add(name, value)
    folio.add("old", 1)
    folio.delete("old")
    return folio


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend stderr is a terminal."""
    monkeypatch.setattr(_progress, "interactive", lambda stream=None: True)


def test_warm_local_bundle_lists_every_current_item(folio: DataFolio, tmp_path: Path) -> None:
    result = folio.warm_cache()
    assert isinstance(result, WarmResult)
    assert result.cached == ("a", "b", "c")
    assert result.ok
    assert folio.warm_cache("b").cached == ("b",)
    assert folio.warm_cache(["c", "a", "c"]).cached == ("c", "a")
    assert folio.warm_cache([]).cached == ()


def test_unknown_name_and_bad_concurrency_fail_before_starting(folio: DataFolio) -> None:
    with pytest.raises(ItemNotFoundError):
        folio.warm_cache(["a", "missing"])
    with pytest.raises(ItemNotFoundError):
        folio.warm_cache("missing", background=True)
    with pytest.raises(ValueError, match="concurrency"):
        folio.warm_cache(concurrency=0)


def test_background_handle_on_a_local_bundle(folio: DataFolio) -> None:
    handle = folio.warm_cache(background=True)
    assert isinstance(handle, WarmHandle)
    result = handle.result(timeout=30)
    assert result.cached == ("a", "b", "c")
    assert handle.done()
    assert not handle.cancel()
    progress = handle.progress
    assert isinstance(progress, WarmProgress)
    assert progress.items_done == progress.items_total == 3
    assert progress.bytes_done == progress.bytes_total > 0
    with pytest.raises(AttributeError):
        progress.items_done = 0  # type: ignore[misc]  # frozen


async def test_async_twin_and_awaitable_handle(folio: DataFolio) -> None:
    assert (await folio.awarm_cache(["a"])).cached == ("a",)
    handle = await folio.awarm_cache(background=True)
    assert (await handle).cached == ("a", "b", "c")


# -- progress ----------------------------------------------------------------------------------
def test_wants_progress_never_without_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_progress, "interactive", lambda stream=None: False)
    for argument in (None, True, False):
        for setting in (None, True, False):
            assert not _progress.wants_progress(argument, setting)


def test_wants_progress_on_a_terminal(terminal: None) -> None:
    assert _progress.wants_progress(None, None)
    assert _progress.wants_progress(True, False)  # the call's argument wins
    assert not _progress.wants_progress(False, True)
    assert not _progress.wants_progress(None, False)


def test_interactive_checks_the_stream() -> None:
    assert not _progress.interactive(io.StringIO())

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert _progress.interactive(Tty())


def test_bar_renders_items_and_bytes() -> None:
    from rich.console import Console

    out = io.StringIO()
    bar = _progress.WarmBar("warming x", console=Console(file=out, force_terminal=True, width=120))
    bar.update(WarmProgress(items_done=2, items_total=3, bytes_done=500, bytes_total=1000))
    bar.update(WarmProgress(items_done=3, items_total=3, bytes_done=1000, bytes_total=1000))
    bar.close()
    bar.close()  # idempotent
    bar.update(WarmProgress())  # ignored once closed
    text = out.getvalue()
    assert "warming x" in text
    assert "3/3 items" in text


def test_progress_draws_on_a_terminal_unless_turned_off(
    folio: DataFolio,
    terminal: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folio.warm_cache(progress=False)
    assert capsys.readouterr() == ("", "")
    DataFolio(folio.path, progress=False).warm_cache()
    assert capsys.readouterr() == ("", "")
    monkeypatch.setenv("AIOFOLIO_PROGRESS", "0")
    DataFolio(folio.path).warm_cache(background=True).result(timeout=30)
    assert capsys.readouterr() == ("", "")
    monkeypatch.delenv("AIOFOLIO_PROGRESS")

    folio.warm_cache()  # on (what we pretend is) a terminal: a bar on stderr, nothing on stdout
    out, err = capsys.readouterr()
    assert out == ""
    assert "warming bundle" in err
    assert "3/3" in err
