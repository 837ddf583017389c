"""``aiofolio cache export URI FILE`` and ``aiofolio cache import FILE``: sharing a warm cache.

Owns: the two commands, added to the ``cache`` group (made here only when no other module
has made it yet); the work is ``DataFolio.export_cache`` / ``DataFolio.import_cache``.
"""

from __future__ import annotations

from typing import Any

import click

from aiofolio.cli._common import CliContext, pass_cli

__all__ = ["register"]


@click.command("export")
@click.argument("uri")
@click.argument("file", type=click.Path(dir_okay=False))
@pass_cli
def export_cmd(cli: CliContext, uri: str, file: str) -> None:
    """Write URI's cached items (manifest, records, blobs) to FILE (.tar.gz)."""
    from aiofolio import DataFolio

    try:
        kwargs: dict[str, Any] = {}
        if cli.cache_dir is not None:
            kwargs["cache_dir"] = cli.cache_dir
        done = DataFolio(uri, **kwargs).export_cache(file)
    except Exception as exc:
        cli.fail(exc)
    cli.emit(
        done,
        lambda: cli.out.print(
            f"exported {done['items']} items ({done['blobs']} blobs, {done['bytes']} bytes) "
            f"of {done['bundle']} to {done['path']}",
            highlight=False,
            markup=False,
        ),
    )


@click.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--no-verify-checksums",
    is_flag=True,
    help="Skip the manifest MD5 check before writing (blob digests are always checked).",
)
@pass_cli
def import_cmd(cli: CliContext, file: str, no_verify_checksums: bool) -> None:
    """Add the items of an export FILE to the local cache (checked before any write)."""
    from aiofolio import DataFolio

    try:
        done = DataFolio.import_cache(
            file, verify_checksums=not no_verify_checksums, cache_dir=cli.cache_dir
        )
    except Exception as exc:
        cli.fail(exc)
    cli.emit(
        done,
        lambda: cli.out.print(
            f"imported {done['items']} items of {done['bundle']}: {done['blobs_imported']} "
            f"blobs ({done['bytes_imported']} bytes) added, {done['blobs_skipped']} already "
            "cached",
            highlight=False,
            markup=False,
        ),
    )


def register(main: click.Group) -> None:
    """Add ``export`` and ``import`` to the ``cache`` group (creating it when absent)."""
    group = main.commands.get("cache")
    if not isinstance(group, click.Group):

        @click.group("cache")
        def cache() -> None:
            """Inspect and manage the local cache."""

        main.add_command(cache)
        group = cache
    group.add_command(export_cmd)
    group.add_command(import_cmd)
