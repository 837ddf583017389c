"""What every ``aiofolio`` command shares: global options, output, confirmation, exit codes.

Owns: the :class:`CliContext` passed to every command, the exit-code table, the one-line error
report (``-v`` adds the traceback), the split of data (stdout) from progress, warnings and hints
(stderr), JSON output with raw bytes and ISO 8601 times, and the "ask, or refuse without a
terminal" rule of destructive commands. It holds no cache logic: commands call the library.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import json
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

import click
from rich.console import Console

from aiofolio.errors import (
    AiofolioError,
    ConfigError,
    ItemNotFoundError,
    UsageError,
)

__all__ = [
    "EXIT_CODES_HELP",
    "AiofolioGroup",
    "CliContext",
    "ExitCode",
    "Refused",
    "age_text",
    "exit_code_for",
    "from_iso",
    "iso_time",
    "pass_cli",
    "size_text",
    "split_names",
]


class ExitCode(enum.IntEnum):
    """The exit codes of every command (documented in ``aiofolio --help``)."""

    OK = 0
    CHECK_FAILED = 1  # a check failed (verify, validate) or some items failed (warm)
    USAGE = 2  # a usage error, or a destructive command refused
    FAILURE = 3  # the remote store or the local cache failed


EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 a check failed or some items failed; 2 usage error or refused "
    "(e.g. a destructive command without --yes and without a terminal); 3 remote or cache "
    "failure."
)


class Refused(click.ClickException):
    """A destructive command that was not confirmed: nothing was changed (exit 2)."""

    exit_code = int(ExitCode.USAGE)


def exit_code_for(exc: BaseException) -> ExitCode:
    """The exit code an exception ends a command with."""
    if isinstance(exc, (UsageError, ConfigError, ItemNotFoundError, click.UsageError)):
        return ExitCode.USAGE
    return ExitCode.FAILURE  # the remote store, the cache, or anything else that failed


def iso_time(ts: float | None) -> str | None:
    """A POSIX time as ISO 8601 in UTC with a ``Z`` (``None`` stays): the ``--json`` format."""
    if ts is None:
        return None
    text = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).isoformat()
    return text.replace("+00:00", "Z")  # as the library writes them (cache_info)


def age_text(ts: float | None, now: float | None = None) -> str:
    """A relative time for people: ``"just now"``, ``"5 minutes ago"``, ``"12 days ago"``."""
    if ts is None:
        return "never"
    now = _dt.datetime.now(tz=_dt.timezone.utc).timestamp() if now is None else now
    delta = max(0.0, now - ts)
    for unit, seconds in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if delta >= seconds:
            n = int(delta // seconds)
            return f"{n} {unit}{'s' if n != 1 else ''} ago"
    return "just now"


def from_iso(text: str | None) -> float | None:
    """An ISO 8601 time (as the library reports them) as a POSIX time; ``None`` stays."""
    if not text:
        return None
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def size_text(size: float | None) -> str:
    """A byte count for people (``"2.1 GB"``, decimal units); ``None`` is ``"unknown"``."""
    from aiofolio.config import human_size

    return "unknown" if size is None else human_size(size)


def _json_default(value: object) -> object:
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


@dataclass
class CliContext:
    """The global options, and the two consoles (data on stdout, everything else on stderr)."""

    cache_dir: str | None = None
    #: datafolio's group-level ``-f/--folio`` (env ``DATAFOLIO_PATH``) and ``-a/--alias``.
    folio: str | None = None
    alias: str | None = None
    json: bool = False
    verbose: bool = False
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    @property
    def interactive(self) -> bool:
        """Whether stdout is a terminal: colour and progress bars only then."""
        return self.out.is_terminal

    @property
    def bars(self) -> bool:
        """Whether to draw progress bars: on stderr, when both stdout and stderr are terminals
        and the output is not ``--json``."""
        return not self.json and self.out.is_terminal and self.err.is_terminal

    @contextlib.contextmanager
    def byte_bar(self, description: str) -> Iterator[Callable[[int, int], None] | None]:
        """A transient rich progress bar of bytes on stderr, as ``update(done, total)``
        (callable from any thread); ``None`` when :attr:`bars` is False."""
        if not self.bars:
            yield None
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TimeRemainingColumn(),
            console=self.err,
            transient=True,
        ) as progress:
            task = progress.add_task(description, total=None)

            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            yield update

    def emit(self, data: object, human: Callable[[], None] | None = None) -> None:
        """Print a command's result: ``data`` as JSON with ``--json``, else ``human()``."""
        if self.json or human is None:
            click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))
        else:
            human()

    def hint(self, text: str) -> None:
        """A hint or a warning for people: stderr, never in the data."""
        self.err.print(text, highlight=False, markup=False)

    def confirm(self, question: str, *, yes: bool) -> None:
        """Go on only if confirmed: ``--yes``, or "y" at a terminal; else :class:`Refused`."""
        if yes:
            return
        if not (sys.stdin.isatty() and sys.stderr.isatty()):
            raise Refused("not confirmed: no terminal to ask on; pass --yes to go ahead")
        if not click.confirm(question, default=False, err=True):
            raise Refused("not confirmed: nothing was changed")

    def fail(self, exc: BaseException) -> NoReturn:
        """Report ``exc`` as one line on stderr (``-v``: the traceback) and exit with its code."""
        if self.verbose:
            self.err.print("".join(traceback.format_exception(exc)), markup=False, highlight=False)
        name = type(exc).__name__
        click.echo(f"Error: {name}: {exc}", err=True)
        sys.exit(int(exit_code_for(exc)))


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


class AiofolioGroup(click.Group):
    """A click group whose commands report library errors as one line with the exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except BrokenPipeError:
            # The reader went away (`aiofolio cache list | head`): no error message for it,
            # and none at exit when Python flushes stdout.
            import os

            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(int(ExitCode.FAILURE))
        except (AiofolioError, OSError, ValueError, KeyError, TypeError) as exc:
            cli = ctx.find_object(CliContext) or CliContext()
            cli.fail(exc)


def split_names(values: Sequence[str]) -> list[str]:
    """Names given as repeated arguments or comma lists, flattened and without blanks."""
    return [part for value in values for part in value.split(",") if part]
