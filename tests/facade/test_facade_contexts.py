"""The sync facade on real remote reads, in the contexts users call it from.

Each read here is a miss (a download through the engine thread), asserted on the bytes and on
the requests the loopback S3 (moto, through the counting proxy) or HTTP server saw:

* a sync ``get`` inside ``asyncio.run(...)``, as in a notebook cell (no ``nest_asyncio``);
* 8 threads at once on one folio: each item downloaded once, every thread gets right bytes;
* a forked child: a fresh engine thread, its own download, right bytes;
* a script that reads from S3 and exits: no hang, no "Unclosed client session".
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aiofolio import DataFolio
from aiofolio.bundle import payload_path
from aiofolio.testing import FaultServer, MotoServer

ARRAYS = {f"a{i}": np.arange(1_000 * (i + 1), dtype=np.int64) for i in range(4)}


@pytest.fixture
def http_bundle(http_server: FaultServer, tmp_path: Path) -> tuple[str, DataFolio]:
    root = tmp_path / "bundle"
    writer = DataFolio(root, cache_enabled=False)
    for name, value in ARRAYS.items():
        writer.add(name, value)
    for p in root.rglob("*"):
        if p.is_file():
            http_server.put(f"/bundle/{p.relative_to(root).as_posix()}", p.read_bytes())
    return f"{http_server.url}/bundle", writer


def _gets(server: FaultServer, writer: DataFolio, name: str) -> int:
    path = f"/bundle/{payload_path(writer.get_item(name))}"
    return server.stats.requests(path=path, method="GET")


def test_a_sync_get_inside_asyncio_run_like_a_notebook_cell(
    http_bundle: tuple[str, DataFolio], http_server: FaultServer
) -> None:
    url, writer = http_bundle

    async def cell() -> Any:
        folio = DataFolio(url)  # sync constructor and sync get, with a loop running here
        return folio.get("a1")

    np.testing.assert_array_equal(asyncio.run(cell()), ARRAYS["a1"])
    assert _gets(http_server, writer, "a1") == 1


def test_eight_threads_at_once_share_downloads(
    http_bundle: tuple[str, DataFolio], http_server: FaultServer
) -> None:
    url, writer = http_bundle
    folio = DataFolio(url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def reader(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            for name in (f"a{i % 4}", "a3", f"a{(i + 1) % 4}"):
                np.testing.assert_array_equal(folio.get(name), ARRAYS[name])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert [_gets(http_server, writer, n) for n in ARRAYS] == [1, 1, 1, 1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reads_with_its_own_engine(
    http_bundle: tuple[str, DataFolio], http_server: FaultServer
) -> None:
    url, writer = http_bundle
    folio = DataFolio(url)
    np.testing.assert_array_equal(folio.get("a0"), ARRAYS["a0"])  # the parent's engine runs
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a miss, downloaded by the child's fresh engine thread
        code = 1
        try:
            os.close(read_fd)
            ok = np.array_equal(DataFolio(url).get("a2"), ARRAYS["a2"])
            os.write(write_fd, b"ok" if ok else b"bad")
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        got = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got == b"ok"
    assert _gets(http_server, writer, "a2") == 1
    np.testing.assert_array_equal(folio.get("a2"), ARRAYS["a2"])  # parent still works


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from aiofolio import DataFolio

    endpoint, url = sys.argv[1], sys.argv[2]
    opts = {"key": "testing", "secret": "testing",
            "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}
    folio = DataFolio(url, storage_options=opts)
    folio.add("v", np.arange(10))
    print(int(DataFolio(url, storage_options=opts).get("v").sum()), flush=True)
    """
)


def test_a_script_using_s3_exits_without_hanging_or_unclosed_sessions(
    moto_server: MotoServer, s3_bucket: str, tmp_path: Path
) -> None:
    env = dict(os.environ, AIOFOLIO_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.run(
        [
            sys.executable,
            "-W",
            "error::ResourceWarning",
            "-c",
            EXIT_SCRIPT,
            moto_server.endpoint_url,
            f"s3://{s3_bucket}/exit-test",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "45"
    assert "Unclosed" not in proc.stderr
    assert "Traceback" not in proc.stderr
