"""The ``aiofolio`` command line (click + rich): the group and its subcommands.

Owns: argument parsing and presentation only; every command calls the library.
"""

from __future__ import annotations

import click

from aiofolio import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aiofolio")
def main() -> None:
    """aiofolio: an async-first caching client for DataFolio bundles."""


# -- demo (issue 6) -------------------------------------------------------------------------------
from aiofolio.cli.demo import demo  # noqa: E402 - registered on the group defined above

main.add_command(demo)
# (end of demo section)
