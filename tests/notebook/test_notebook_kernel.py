"""aiofolio in a real Jupyter kernel (ipykernel, driven by nbclient / jupyter_client).

``examples/quickstart.ipynb`` runs top to bottom against a bundle served by the loopback
fault server (its URL injected as ``AIOFOLIO_EXAMPLE_URL``): a sync ``folio.get`` in a cell,
a top-level ``await folio.aget``, ``warm_cache(background=True)`` and its handle with the
progress bar as cell output, and ``nest_asyncio`` never imported. Then, in the same kernel, a
download slowed by the server is interrupted: the cell ends in ``KeyboardInterrupt``, the
cache holds no blob of that item, and the next call returns the right bytes.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiofolio import DataFolio
from aiofolio.bundle import payload_path
from aiofolio.testing import Fault, FaultServer

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (dev extra)")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (dev extra)")
pytest.importorskip("ipykernel", reason="ipykernel is not installed (dev extra)")


@pytest.fixture
def cache_dir(_isolated_cache: str) -> str:
    """The test's cache folder (AIOFOLIO_CACHE_DIR, which the kernel inherits)."""
    return _isolated_cache


NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"
SLOW = 4_000_000  # bytes of the interrupted item, served at 100 kB/s (40 s if not interrupted)


def _serve(server: FaultServer, root: Path) -> str:
    writer = DataFolio(root, cache_enabled=False)
    writer.add("small", np.arange(1000, dtype=np.int64))
    writer.add("medium", np.full(300_000, 3, dtype=np.uint8))
    writer.add("slow", np.full(SLOW, 7, dtype=np.uint8))
    for p in root.rglob("*"):
        if p.is_file():
            server.put(f"/nb/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"/nb/{payload_path(writer.get_item('slow'))}"


def _blobs(cache_dir: str) -> dict[str, int]:
    folder = Path(cache_dir) / "v1" / "blobs"
    return {str(p): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _run(kc: Any, code: str, timeout: float = 60) -> dict[str, Any]:
    from jupyter_client.utils import run_sync

    """Execute ``code``; the execute_reply content (outputs are not needed here)."""
    msg_id = kc.execute(code)
    while True:
        reply = run_sync(kc.get_shell_msg)(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return dict(reply["content"])


def test_quickstart_notebook_and_an_interrupt(
    http_server: FaultServer,
    tmp_path: Path,
    cache_dir: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow_path = _serve(http_server, tmp_path / "bundle")
    url = f"{http_server.url}/nb"
    monkeypatch.setenv("AIOFOLIO_EXAMPLE_URL", url)  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    print(f"executing cell {index}: {cell.source.splitlines()[0]}", flush=True)
                    client.execute_cell(cell, index)
            texts = [_text(c) for c in nb.cells if c.cell_type == "code"]
            assert "['medium', 'slow', 'small']" in texts[0]
            assert str(sum(range(1000))) in texts[1]
            assert str(300_000 * 3) in texts[2]
            assert "warm done: True" in texts[3]
            assert _has_bar(nb.cells[4]), nb.cells[4].outputs
            assert "nest_asyncio imported: False" in texts[4]

            _interrupt(client, http_server, slow_path, cache_dir)
    except RuntimeError as exc:  # nbclient: the kernel did not start
        if "Kernel" in str(exc) and "start" in str(exc).lower():
            pytest.skip(f"ipykernel could not start: {exc}")
        raise


def _text(cell: Any) -> str:
    parts = []
    for out in cell.outputs:
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(str(out.data.get("text/plain", "")))
    return "\n".join(parts)


def _has_bar(cell: Any) -> bool:
    """rich draws its live bar in a notebook as an ipywidgets ``Output`` widget: a display
    output of the widget-view type (the bar's frames travel as widget messages)."""
    return any(
        out.output_type == "display_data"
        and "application/vnd.jupyter.widget-view+json" in out.get("data", {})
        for out in cell.outputs
    )


def _interrupt(client: Any, server: FaultServer, slow_path: str, cache_dir: str) -> None:
    from jupyter_client.utils import run_sync

    km, kc = client.km, client.kc  # nbclient's async manager and client
    before = _blobs(cache_dir)
    server.set_fault(slow_path, Fault(bandwidth=100_000, methods={"GET"}))
    # stop_on_error=False: the kernel must not abort the request that follows the interrupt
    msg_id = kc.execute('slow = folio.get("slow")', stop_on_error=False)
    for _ in range(600):  # bounded: until the server has seen the download start
        if server.stats.bytes_served(path=slow_path, method="GET") > 0:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the slow download never started")
    run_sync(km.interrupt_kernel)()
    while True:
        reply = run_sync(kc.get_shell_msg)(timeout=60)
        if reply["parent_header"].get("msg_id") == msg_id:
            break
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "KeyboardInterrupt"
    assert server.stats.bytes_served(path=slow_path, method="GET") < SLOW
    after = _blobs(cache_dir)
    assert not any(size == SLOW for size in after.values())  # no blob of the item
    assert set(after) == set(before)  # nothing partial where blobs live

    server.clear_faults()
    ok = _run(kc, f'slow = folio.get("slow")\nassert int(slow.sum()) == 7 * {SLOW}')
    assert ok["status"] == "ok", ok
    assert os.path.isdir(cache_dir)
    assert any(size >= SLOW for size in _blobs(cache_dir).values())
