"""nox sessions: tests (default, what CI runs), interop, lint, typecheck, bench, demo."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = False

DATAFOLIO_PIN = "datafolio==2.3.0"


@nox.session
def tests(session: nox.Session) -> None:
    """The default and what CI runs: every test, the interop ones included."""
    session.install("-e", ".[all,dev]", DATAFOLIO_PIN)
    session.run("pytest", *(session.posargs or ["-q"]), env={"PYTHONFAULTHANDLER": "1"})


@nox.session
def interop(session: nox.Session) -> None:
    """Round trips with the real `datafolio` package (pinned)."""
    session.install("-e", ".[all,dev]", DATAFOLIO_PIN)
    session.run("pytest", "tests/interop", *(session.posargs or ["-q"]))


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src."""
    session.install("-e", ".[all,dev]")
    session.run("mypy", "--strict", "src/aiofolio")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks: writes benchmarks/out/results.json, results.md (and results.png)."""
    session.install("-e", ".[all,dev]", "matplotlib", DATAFOLIO_PIN)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """The README's first command: `aiofolio demo` on a loopback S3 (moto) behind a shaped link.

    Arguments after ``--`` go to the demo, e.g. ``nox -s demo -- --size-mb 64 --keep``.
    """
    session.install("-e", ".[demo]")
    session.run("aiofolio", "demo", *session.posargs)
