"""The background event-loop thread: sync calls from anywhere, cancellation, fork and exit."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import anyio
import anyio.lowlevel
import pytest

from aiofolio import _portal
from aiofolio.errors import UsageError


async def _where() -> str:
    await anyio.lowlevel.checkpoint()
    return threading.current_thread().name


def test_sync_call_runs_on_the_named_engine_thread() -> None:
    assert _portal.call(_where) == _portal.THREAD_NAME


def test_sync_call_from_inside_a_running_loop_like_jupyter() -> None:
    async def notebook_cell() -> str:
        # A sync API call inside a running loop, with no nest_asyncio.
        return _portal.call(_where)

    assert asyncio.run(notebook_cell()) == _portal.THREAD_NAME


def test_eight_threads_at_once() -> None:
    results: list[int] = []
    lock = threading.Lock()

    async def double(x: int) -> int:
        await anyio.sleep(0.01)
        return 2 * x

    def worker(i: int) -> None:
        value = _portal.call(double, i)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [2 * i for i in range(8)]


def test_errors_propagate_with_their_class() -> None:
    async def boom() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        _portal.call(boom)


def test_reentry_from_the_engine_thread_is_a_usage_error() -> None:
    async def reenter() -> str:
        return _portal.call(_where)

    with pytest.raises(UsageError, match="async method"):
        _portal.call(reenter)


async def test_acall_from_another_loop_and_cancellation_reaches_the_engine() -> None:
    assert await _portal.acall(_where) == _portal.THREAD_NAME
    started = threading.Event()
    cancelled = threading.Event()

    async def long_job() -> None:
        started.set()
        try:
            await anyio.Event().wait()  # held until cancelled
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    task = asyncio.ensure_future(_portal.acall(long_job))
    assert await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(cancelled.wait, 5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_fresh_engine_thread() -> None:
    parent_thread = _portal.call(_where)
    assert parent_thread == _portal.THREAD_NAME
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(read_fd)
            name = _portal.call(_where)
            os.write(write_fd, name.encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        got = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert got == _portal.THREAD_NAME


SIGINT_SCRIPT = textwrap.dedent(
    """
    import sys, anyio
    from aiofolio import _portal

    async def long_job():
        try:
            print("started", flush=True)
            await anyio.Event().wait()  # held until cancelled
        finally:
            print("cleanup ran", flush=True)

    try:
        _portal.call(long_job)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        print("after:", _portal.call(anyio.sleep, 0), flush=True)
        sys.exit(3)
    """
)


def test_ctrl_c_cancels_the_engine_task_and_reraises() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGINT_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 3, err
    assert out.splitlines() == ["cleanup ran", "interrupted", "after: None"]


EXIT_SCRIPT = textwrap.dedent(
    """
    import aiohttp
    from aiofolio import _portal

    async def open_session():
        session = aiohttp.ClientSession()
        async def close():
            await session.close()
        _portal.add_shutdown_callback(close)
        return not session.closed

    print(_portal.call(open_session), flush=True)
    """
)


def test_interpreter_exit_runs_shutdown_callbacks_without_hanging_or_warnings() -> None:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-W", "error::ResourceWarning", "-c", EXIT_SCRIPT],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"
    assert "Unclosed" not in proc.stderr
    assert time.monotonic() - started < 20
