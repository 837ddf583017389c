"""The scripts in ``examples/`` run as documented and print what they promise.

Each example is run in a subprocess (``python examples/X.py``, timeout 120 s): once on its own,
where it starts its own moto server, and once in a row against the session's moto server
through ``AIOFOLIO_EXAMPLE_ENDPOINT``, where the readers find the bundle the writer left.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aiofolio.testing import MotoServer, loopback_env

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = ["write_bundle_s3", "read_sync", "read_async"]
TIMEOUT = 120.0


def _env(**extra: str) -> dict[str, str]:
    env = loopback_env()
    for name in ("AIOFOLIO_EXAMPLE_ENDPOINT", "AIOFOLIO_EXAMPLE_BUCKET"):
        env.pop(name, None)
    # A fresh cache per run: each standalone example starts its own (empty) moto server, and a
    # cache kept across servers would describe buckets that no longer exist.
    env["AIOFOLIO_CACHE_DIR"] = tempfile.mkdtemp(prefix="aiofolio-example-cache-")
    env.update(extra)
    return env


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{script}.py")],
        cwd=EXAMPLES.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def standalone() -> Iterator[dict[str, subprocess.CompletedProcess[str]]]:
    """Every example run on its own (each with its own moto server), all at once."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py")],
            cwd=EXAMPLES.parent,
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in SCRIPTS
    }
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=TIMEOUT)
            results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
        yield results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_examples_readme_lists_every_script() -> None:
    readme = (EXAMPLES / "README.md").read_text()
    for name in SCRIPTS:
        assert f"{name}.py" in readme


def test_write_bundle_s3_alone(standalone: dict[str, subprocess.CompletedProcess[str]]) -> None:
    out = _ok(standalone["write_bundle_s3"])
    assert "wrote s3://aiofolio-examples/lab/exp-001 at revision 7" in out
    assert "  • scores: per-run scores" in out  # datafolio's describe() text
    assert "valid: True" in out


def test_read_sync_alone(standalone: dict[str, subprocess.CompletedProcess[str]]) -> None:
    out = _ok(standalone["read_sync"])
    assert "no bundle at s3://aiofolio-examples/lab/exp-001: writing it first" in out
    assert "items: ['config', 'embeddings', 'finished_at', 'model', 'scores']" in out
    assert "embeddings shape: (4, 3)" in out
    assert "config: {'lr': 0.01, 'epochs': 3}" in out
    assert "finished_at: 2024-01-02T03:04:05+00:00" in out
    assert "status: done" in out


def test_read_async_alone(standalone: dict[str, subprocess.CompletedProcess[str]]) -> None:
    out = _ok(standalone["read_async"])
    assert "writing it first" in out
    assert "scores: DataFrame (5, 3)" in out
    assert "embeddings: ndarray (4, 3)" in out
    assert "model: dict {'weights': [0.5, -0.25], 'bias': 1.0}" in out
    assert "aget_many: ['config', 'model']" in out


def test_examples_in_a_row_against_a_given_endpoint(
    moto_server: MotoServer, s3_bucket: str
) -> None:
    env = _env(
        AIOFOLIO_EXAMPLE_ENDPOINT=moto_server.endpoint_url, AIOFOLIO_EXAMPLE_BUCKET=s3_bucket
    )
    bundle = f"s3://{s3_bucket}/lab/exp-001"
    assert f"wrote {bundle} at revision 7" in _ok(_run("write_bundle_s3", env))
    sync_out = _ok(_run("read_sync", env))
    assert f"found {bundle} (revision 7)" in sync_out
    assert "writing it first" not in sync_out
    async_out = _ok(_run("read_async", env))
    assert f"found {bundle} (revision 7)" in async_out
    assert "embeddings: ndarray (4, 3)" in async_out
    # Re-running the writer overwrites every item: six more commits.
    assert f"wrote {bundle} at revision 13" in _ok(_run("write_bundle_s3", env))
    keys = moto_server.client.list_objects_v2(Bucket=s3_bucket)["KeyCount"]
    assert keys == 6  # the manifest and five payloads: replaced payloads were removed
