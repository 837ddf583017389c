"""``aiofolio cache ...`` and ``aiofolio warm`` as real subprocesses, against the loopback HTTP
server and a real cache folder: exit codes, the stdout/stderr split, ``--json`` parsed, and what
is left on disk and asked of the server."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _cli_helpers import NAMES, Remote, blob_of, cache_files, value

from aiofolio import DataFolio
from aiofolio.testing import loopback_env

pytestmark = pytest.mark.timeout(120)


def test_a_corrupted_blob_fails_verify_and_repair_makes_the_next_read_fetch_it(
    remote: Remote, proc: Any, cache_dir: Path
) -> None:
    warmed = proc("--json", "warm", remote.url)
    assert warmed.code == 0, warmed.err
    assert sorted(warmed.json()["cached"]) == sorted(NAMES)
    assert [remote.gets(n) for n in NAMES] == [1, 1, 1]

    ok = proc("--json", "cache", "verify")
    assert ok.code == 0, ok.err
    assert ok.json()["ok"] is True
    assert ok.json()["checked"] == 3

    blob = blob_of(DataFolio(remote.url), "beta")
    os.chmod(blob, stat.S_IWUSR | stat.S_IRUSR)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))

    bad = proc("--json", "cache", "verify")
    assert bad.code == 1, bad.err
    report = bad.json()  # stdout is the JSON document alone
    assert report["ok"] is False
    assert report["repaired"] is False
    [problem] = report["problems"]
    assert problem["problem"] == "corrupt"
    assert problem["refs"] == [{"bundle": remote.url, "item": "beta"}]
    assert problem["path"] == str(blob)

    human = proc("cache", "verify", remote.url)
    assert human.code == 1
    assert "corrupt" in human.out
    assert f"{remote.url}::beta" in human.out
    assert "--repair" in human.err
    assert "--repair" not in human.out

    fixed = proc("--json", "cache", "verify", "--repair")
    assert fixed.code == 0, fixed.err
    assert fixed.json()["repaired"] is True
    assert fixed.json()["bytes_freed"] == len(data)
    assert not blob.exists()

    reader = DataFolio(remote.url)
    np.testing.assert_array_equal(reader.get("beta"), value("beta"))
    assert [remote.gets(n) for n in NAMES] == [1, 2, 1]  # only the repaired one again
    assert proc("cache", "verify").code == 0


def test_clear_without_yes_in_a_pipe_deletes_nothing(
    remote: Remote, proc: Any, cache_dir: Path
) -> None:
    assert proc("warm", remote.url).code == 0
    before = cache_files(cache_dir)
    assert any(k.startswith("v1/blobs/") for k in before)

    refused = proc("cache", "clear", remote.url)
    assert refused.code == 2
    assert refused.out == ""
    assert "not confirmed" in refused.err
    assert "--yes" in refused.err
    assert "3 items" in refused.err  # the plan was shown first
    assert cache_files(cache_dir) == before

    assert proc("cache", "clear", "--all").code == 2
    assert cache_files(cache_dir) == before

    plan = proc("--json", "cache", "clear", remote.url, "--dry-run")
    assert plan.code == 0
    planned = plan.json()
    assert planned["dry_run"] is True
    assert planned["items"] == 3
    assert planned["bundles"] == 1
    assert planned["bytes_freed"] == sum(remote.writer.get_item(n).size_bytes or 0 for n in NAMES)
    assert cache_files(cache_dir) == before

    done = proc("--json", "cache", "clear", remote.url, "--yes")
    assert done.code == 0, done.err
    assert done.json()["bytes_freed"] == planned["bytes_freed"]
    assert not any(k.startswith("v1/blobs/") for k in cache_files(cache_dir))
    assert proc("--json", "cache", "list").json() == []


def test_config_max_size_changes_cache_info_in_a_new_process(proc: Any, cache_dir: Path) -> None:
    edited = proc("--json", "cache", "config", "--max-size", "123MB", "--soft-limit")
    assert edited.code == 0, edited.err
    changed = {c["setting"]: c for c in edited.json()["changed"]}
    assert changed["max_cache_size"]["new"] == 123_000_000
    assert changed["max_cache_size"]["key"] == "limits.max_cache_size_bytes"
    on_disk = json.loads((cache_dir / "config.json").read_text())
    assert on_disk["limits"]["max_cache_size_bytes"] == 123_000_000
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".part")]

    code = "import json; from aiofolio import DataFolio; print(json.dumps(DataFolio.cache_info()))"
    fresh = subprocess.run(
        [sys.executable, "-c", code],
        env=loopback_env({"AIOFOLIO_CACHE_DIR": str(cache_dir)}),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    info = json.loads(fresh.stdout)
    assert info["limit_bytes"] == 123_000_000
    assert info["is_soft_limit"] is True

    again = proc("cache", "config", "--max-size", "123MB")
    assert again.code == 0
    assert again.out.strip() == "Nothing changed"

    shown = proc("--json", "cache", "config")
    rows = {r["name"]: r for r in shown.json()["settings"]}
    assert rows["max_cache_size"]["value"] == 123_000_000
    assert rows["max_cache_size"]["source"] == f"file:{cache_dir / 'config.json'}"
    assert rows["eviction_policy"]["source"] == "default"

    # an env var above the file: the edit is made and the override is pointed out on stderr
    env = {"AIOFOLIO_MAX_CACHE_SIZE": "1GB"}
    over = proc("cache", "config", "--max-size", "7GB", env=env)
    assert over.code == 0
    assert "AIOFOLIO_MAX_CACHE_SIZE" in over.err
    assert "Updated cache limit: 7GB" in over.out

    stats = proc("--json", "cache", "stats").json()
    assert stats["limit_bytes"] == 7_000_000_000
    assert stats["limit_kind"] == "soft"

    bad = proc("cache", "config", "--max-size", "lots")
    assert bad.code == 2
    assert bad.out == ""
    assert bad.err.startswith("Error: ConfigError")
    assert len(bad.err.strip().splitlines()) == 1
    assert (
        json.loads((cache_dir / "config.json").read_text())["limits"]["max_cache_size_bytes"]
        == 7_000_000_000
    )


def test_warm_reports_a_failed_item_with_exit_1(remote: Remote, proc: Any) -> None:
    remote.server.delete(remote.payload("gamma"))
    run = proc("--json", "warm", remote.url, "--concurrency", "2")
    assert run.code == 1
    doc = run.json()
    assert sorted(doc["cached"]) == ["alpha", "beta"]
    assert list(doc["failed"]) == ["gamma"]
    assert "failed: gamma" in run.err
    assert "\x1b[" not in run.out + run.err  # no colour, no bar: not a terminal

    some = proc("warm", remote.url, "alpha")
    assert some.code == 0
    assert some.out.strip() == f"Cached 1 item of {remote.url}"


def test_cache_dir_prints_the_root_only(proc: Any, cache_dir: Path, tmp_path: Path) -> None:
    run = proc("cache", "dir")
    assert run.code == 0
    assert run.out == f"{cache_dir}\n"
    assert run.err == ""
    other = tmp_path / "elsewhere"
    env = {"AIOFOLIO_CACHE_DIR": str(other)}
    assert proc("cache", "dir", cache=False, env=env).out == f"{other}\n"
    assert not other.exists()  # printing the root creates nothing


def _at_a_terminal(args: list[str], answer: bytes, cwd: Path) -> tuple[int, str]:
    """Run the command with stdin, stdout and stderr on a pseudo-terminal; answer its question."""
    import pty
    import select

    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "aiofolio.cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=loopback_env({"COLUMNS": "200", "TERM": "xterm"}),
        cwd=cwd,
    )
    os.close(slave)
    seen = b""
    answered = False
    try:
        for _ in range(600):  # at most 60 s
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            if not answered and b"Continue?" in seen:
                os.write(master, answer)
                answered = True
            if child.poll() is not None and not ready:
                break
        code = child.wait(timeout=30)
    finally:
        os.close(master)
        if child.poll() is None:
            child.kill()
    return code, seen.decode(errors="replace")


def test_clear_asks_at_a_terminal(
    remote: Remote, proc: Any, cache_dir: Path, tmp_path: Path
) -> None:
    root = ["--cache-dir", str(cache_dir)]
    code, text = _at_a_terminal([*root, "warm", remote.url], b"", tmp_path)
    assert code == 0, text
    assert "warming bundle" in text  # the progress bar, drawn at a terminal
    code, text = _at_a_terminal([*root, "cache", "verify"], b"", tmp_path)
    assert code == 0, text
    assert "Checked 3 blobs" in text
    before = cache_files(cache_dir)
    args = [*root, "cache", "clear", remote.url]
    code, text = _at_a_terminal(args, b"n\n", tmp_path)
    assert code == 2
    assert "Continue? [y/N]" in text
    assert cache_files(cache_dir) == before
    code, text = _at_a_terminal(args, b"y\n", tmp_path)
    assert code == 0, text
    assert "Removed" in text
    assert not any(k.startswith("v1/blobs/") for k in cache_files(cache_dir))
