"""Where a snapshot was taken: git state, Python environment, execution context.

Owns :func:`capture_context`, the ``git``, ``environment`` and ``execution`` records
``create_snapshot`` adds (datafolio 2.3.0's keys). Local only: ``git`` runs as a subprocess
with a short timeout, no network; environment variables are never recorded. Blocking: call it
from a worker thread.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from typing import Any

__all__ = ["capture_context"]

_GIT_TIMEOUT = 5.0


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=_GIT_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state() -> dict[str, Any] | None:
    """``commit``, ``commit_short``, ``branch``, ``dirty`` of the current directory's
    repository; None outside one (or without git)."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return None
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    status = _git("status", "--porcelain")
    return {
        "commit": commit,
        "commit_short": commit[:7],
        "branch": branch,
        "dirty": bool(status),
    }


def environment() -> dict[str, Any]:
    """The Python version and platform (never environment variables)."""
    return {"python_version": platform.python_version(), "platform": platform.platform()}


def execution() -> dict[str, Any]:
    """The working directory and the entry point (``sys.argv[0]``, ``-`` for none)."""
    entry = sys.argv[0] if sys.argv and sys.argv[0] else "-"
    return {"working_dir": os.getcwd(), "entry_point": entry}


def capture_context(*, git: bool, env: bool, exec_: bool) -> dict[str, Any]:
    """The records asked for, in datafolio's order; absent parts are left out."""
    out: dict[str, Any] = {}
    if git:
        state = git_state()
        if state is not None:
            out["git"] = state
    if env:
        out["environment"] = environment()
    if exec_:
        out["execution"] = execution()
    return out
