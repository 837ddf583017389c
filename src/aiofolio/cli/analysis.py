"""``aiofolio warm``, ``aiofolio analyze`` and ``aiofolio optimize``.

Owns: the arguments and the presentation of those commands (human text, ``--json`` documents
as docs/CLI.md describes them). The work is the library's: ``DataFolio.warm_cache`` (its rich
progress bar on stderr when both streams are terminals), ``DataFolio.analyze_storage`` and
``DataFolio.optimize_storage``. ``optimize`` prints its plan (the analysis), asks, and refuses
without a terminal unless ``--yes``.
"""

from __future__ import annotations

from typing import Any

import click

from aiofolio.cli._common import CliContext, ExitCode, pass_cli, size_text, split_names

__all__ = ["analyze", "optimize", "register", "warm"]


def _open(cli: CliContext, uri: str) -> Any:
    from aiofolio import DataFolio

    if cli.cache_dir is not None:
        return DataFolio(uri, cache_dir=cli.cache_dir)
    return DataFolio(uri)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@click.command("warm")
@click.argument("uri")
@click.argument("items", nargs=-1)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Items downloading at once (default: 4 x parallel_downloads).",
)
@pass_cli
def warm(cli: CliContext, uri: str, items: tuple[str, ...], concurrency: int | None) -> None:
    """Download ITEMs of the bundle URI (default: every current item) into the cache.

    Exit 1 if any item failed (the others are cached).
    """
    folio = _open(cli, uri)
    names = split_names(items) or None
    result = folio.warm_cache(names, concurrency=concurrency, progress=cli.bars)
    data = {
        "bundle": folio.path,
        "ok": not result.failed,
        "cached": list(result.cached),
        "skipped": list(result.skipped),
        "cancelled": list(result.cancelled),
        "failed": {name: f"{type(e).__name__}: {e}" for name, e in result.failed.items()},
    }

    def human() -> None:
        line = f"Cached {_plural(len(result.cached), 'item')} of {folio.path}"
        if result.skipped:
            line += f"; {len(result.skipped)} skipped (large files kept out of the cache)"
        if result.failed:
            line += f"; {len(result.failed)} failed"
        click.echo(line)

    for name, exc in result.failed.items():
        cli.hint(f"failed: {name}: {type(exc).__name__}: {exc}")
    cli.emit(data, human)
    if result.failed or result.cancelled:
        raise SystemExit(int(ExitCode.CHECK_FAILED))


def _analysis(folio: Any, threshold: str | None) -> dict[str, Any]:
    report: dict[str, Any] = folio.analyze_storage(threshold)
    return {"bundle": folio.path, **report}


def _print_analysis(report: dict[str, Any], echo: Any) -> None:
    inc, ref = report["included"], report["references"]
    echo(f"Bundle: {report['bundle']}")
    echo(f"Total size: {size_text(report['total_bytes'])}")
    echo(f"Included: {size_text(inc['bytes'])} ({_plural(inc['items'], 'item')})")
    echo(f"References: {size_text(ref['bytes'])} ({_plural(ref['items'], 'item')})")
    echo("")
    if not report["suggestions"]:
        echo(f"No included table of {size_text(report['threshold'])} or more: nothing to optimize")
        return
    echo("Optimization suggestions:")
    for s in report["suggestions"]:
        echo(f"  - Convert {s['name']!r} to reference ({size_text(s['size_bytes'])})")
    echo(
        f"  - Potential savings: {size_text(report['bytes_saved'])} "
        f"({report['percent_saved']:.0f}% reduction)"
    )


_THRESHOLD_HELP = "Tables of this size or more (1GB; default: the large_file_threshold setting)."


@click.command("analyze")
@click.argument("uri")
@click.option("--threshold", metavar="SIZE", default=None, help=_THRESHOLD_HELP)
@pass_cli
def analyze(cli: CliContext, uri: str, threshold: str | None) -> None:
    """Included and referenced sizes of the bundle URI, and which tables to convert."""
    report = _analysis(_open(cli, uri), threshold)
    cli.emit(report, lambda: _print_analysis(report, click.echo))


@click.command("optimize")
@click.argument("uri")
@click.option("--threshold", metavar="SIZE", default=None, help=_THRESHOLD_HELP)
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@pass_cli
def optimize(cli: CliContext, uri: str, threshold: str | None, dry_run: bool, yes: bool) -> None:
    """Convert the included tables of URI at or above --threshold to references.

    Each conversion is one commit; the references point at the tables' existing payloads
    (nothing is copied). Asks first; without a terminal it refuses unless --yes (exit 2).
    """
    folio = _open(cli, uri)
    plan = _analysis(folio, threshold)
    if dry_run or not plan["suggestions"]:
        cli.emit({**plan, "dry_run": dry_run}, lambda: _print_analysis(plan, click.echo))
        return
    _print_analysis(plan, cli.hint)
    cli.confirm(f"Convert {_plural(len(plan['suggestions']), 'table')} to references?", yes=yes)
    done = folio.optimize_storage(plan["threshold"])
    data = {"bundle": folio.path, "dry_run": False, "threshold": plan["threshold"], **done}

    def human() -> None:
        before, after = done["bundle_bytes_before"], done["bundle_bytes_after"]
        percent = 100.0 * (before - after) / before if before else 0.0
        click.echo(f"Converted {_plural(len(done['converted']), 'item')} to references")
        click.echo(
            f"Bundle size: {size_text(before)} -> {size_text(after)} ({percent:.0f}% reduction)"
        )

    cli.emit(data, human)


def register(main: click.Group) -> None:
    """Add ``warm``, ``analyze`` and ``optimize`` to the ``aiofolio`` group."""
    for command in (warm, analyze, optimize):
        main.add_command(command)
