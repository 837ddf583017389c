"""The ``aiofolio`` command line (click + rich): the group, its global options, its commands.

Owns: argument parsing and presentation only; every command calls the library's public API.
Each command family lives in its own module and registers itself on :data:`main`:

- ``cache.py``: ``aiofolio cache stats|list|clear|cleanup|config|verify|dir|export|import``;
- ``analysis.py``: ``aiofolio warm``, ``aiofolio analyze``, ``aiofolio optimize``;
- ``folio_cmds.py``: datafolio's commands (``init``, ``add``, ``describe``, ``validate``,
  ``snapshot ...``, ``folios``, ``find``);
- ``demo.py``: ``aiofolio demo``.

``_common.py`` holds what they share (the context, output, confirmation and exit codes).
"""

from __future__ import annotations

import click

from aiofolio import __version__
from aiofolio.cli._common import EXIT_CODES_HELP, AiofolioGroup, CliContext

__all__ = ["main"]


@click.group(
    cls=AiofolioGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, prog_name="aiofolio")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="The cache root (default: the resolved cache_dir setting).",
)
@click.option(
    "-f",
    "--folio",
    "folio_path",
    default=None,
    envvar="DATAFOLIO_PATH",
    help="datafolio's option: the folio the folio commands act on (also after the command).",
)
@click.option("-a", "--alias", default=None, help="datafolio's option: a registered folio alias.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.option("-v", "--verbose", is_flag=True, help="Tracebacks with errors; more detail.")
@click.pass_context
def main(
    ctx: click.Context,
    cache_dir: str | None,
    folio_path: str | None,
    alias: str | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """aiofolio: an async-first caching client for DataFolio bundles.

    Data goes to stdout; progress, warnings and hints to stderr. Sizes and times are for
    people unless --json is given (raw bytes, ISO 8601 times in UTC).
    """
    ctx.obj = CliContext(
        cache_dir=cache_dir, folio=folio_path, alias=alias, json=as_json, verbose=verbose
    )


def _register() -> None:
    from aiofolio.cli import analysis, cache, folio_cmds, sharing
    from aiofolio.cli.demo import demo

    main.add_command(demo)
    for module in (cache, sharing, analysis, folio_cmds):
        module.register(main)


_register()
