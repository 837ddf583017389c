"""Fixtures of the CLI tests: a bundle served by the loopback HTTP server, a real cache folder
(conftest's ``_isolated_cache``), and the ``aiofolio`` command run in-process (click's runner)
or as a real subprocess (``python -m aiofolio.cli``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _cli_helpers import NAMES, Remote, Run, value
from click.testing import CliRunner

from aiofolio.cli import main
from aiofolio.testing import FaultServer, loopback_env


@pytest.fixture
def remote(http_server: FaultServer, tmp_path: Path) -> Remote:
    r = Remote(http_server, tmp_path / "bundle")
    for name in NAMES:
        r.writer.add(name, value(name))
    r.publish()
    return r


@pytest.fixture
def cache_dir(_isolated_cache: str) -> Path:
    return Path(_isolated_cache)


@pytest.fixture
def cli(cache_dir: Path) -> Any:
    """``cli(*args)``: the command through click's runner, with ``--cache-dir``."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> Run:
        result = runner.invoke(main, ["--cache-dir", str(cache_dir), *args], input=input)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Run(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def proc(cache_dir: Path, tmp_path: Path) -> Any:
    """``proc(*args)``: the command as a real subprocess (stdin and stdout are pipes)."""

    def run(*args: str, cache: bool = True, env: dict[str, str] | None = None) -> Run:
        prefix = ["--cache-dir", str(cache_dir)] if cache else []
        done = subprocess.run(
            [sys.executable, "-m", "aiofolio.cli", *prefix, *args],
            env=loopback_env({"COLUMNS": "200", **(env or {})}),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run
