"""datafolio 2.3.0's own commands on aiofolio: ``init``, ``add``, ``describe``, ``validate``,
``snapshot create|list|show|compare|diff|delete|status|gc``, ``folios``, ``find``.

Owns: their arguments and presentation only. Each command picks its folio from ``-f/--folio``
(env ``DATAFOLIO_PATH``), ``-a/--alias`` or the current directory, and calls the public
:class:`~aiofolio.DataFolio` API (snapshots, describe, validate) or the registry helpers
(:func:`aiofolio.set_alias`, :func:`aiofolio.find`, :func:`aiofolio.list_folios`). The
``--json`` schemas are documented in ``docs/CLI-datafolio.md``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from aiofolio.cli._common import CliContext, ExitCode, pass_cli

__all__ = ["register"]

F = TypeVar("F", bound=Callable[..., Any])
_TABLE_EXTS = {".parquet": "parquet", ".csv": "csv", ".feather": "feather", ".arrow": "arrow"}


def _folio_options(func: F) -> F:
    """``-f/--folio`` (env ``DATAFOLIO_PATH``) and ``-a/--alias``, as datafolio has them."""
    func = click.option(
        "-a", "--alias", "alias", default=None, help="Alias of a registered folio."
    )(func)
    func = click.option(
        "-f",
        "--folio",
        "folio_path",
        default=None,
        envvar="DATAFOLIO_PATH",
        help="Path or URL of the folio (default: DATAFOLIO_PATH, else the current directory).",
    )(func)
    return func


def _settings(cli: CliContext) -> dict[str, Any]:
    return {} if cli.cache_dir is None else {"cache_dir": cli.cache_dir}


def _open(cli: CliContext, path: str | None, alias: str | None, *, read_only: bool = False) -> Any:
    from aiofolio import DataFolio

    if path is None and alias is None:  # the group's -f/-a (datafolio's place for them)
        path, alias = cli.folio, cli.alias
    if path is None and alias is None:
        path = os.getcwd()
    return DataFolio(path, alias=alias, read_only=read_only, create=False, **_settings(cli))


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN and NaT become null, timestamps ISO text."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        try:
            return value.isoformat()
        except ValueError:  # NaT
            return None
    return value


def _records(frame: Any) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


# -- init, add, describe, validate ---------------------------------------------------------------
@click.command("init")
@click.argument("path", required=False)
@click.option("-d", "--description", default=None, help="Bundle description.")
@click.option("-n", "--name", default=None, help="Bundle name (default: the directory name).")
@click.option("--alias", default=None, help="Register the new folio under this alias.")
@pass_cli
def init_cmd(
    cli: CliContext, path: str | None, description: str | None, name: str | None, alias: str | None
) -> None:
    """Create a new bundle at PATH (default: the current directory)."""
    from aiofolio import DataFolio, RemoteNotFoundError, UsageError

    target = path or os.getcwd()
    try:
        DataFolio(target, read_only=True, create=False, **_settings(cli))
    except (RemoteNotFoundError, ValueError):
        pass
    else:
        raise UsageError(f"a DataFolio bundle already exists at {target}")
    metadata: dict[str, Any] = {}
    if description is not None:
        metadata["description"] = description
    if name is not None:
        metadata["name"] = name
    folio = DataFolio(
        target, metadata=metadata or None, alias=alias, allow_existing=True, **_settings(cli)
    )
    data = {
        "path": folio.path,
        "name": name or Path(folio.path.rstrip("/")).name,
        "description": description,
        "alias": alias,
    }

    def human() -> None:
        click.echo(f"Initialized DataFolio bundle: {folio.path}")
        cli.hint(f"Next: aiofolio add -f {folio.path} my_table.parquet -d 'What it is'")

    cli.emit(data, human)


@click.command("add")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--to", "to", default=None, help="Path of the folio to add to (local or cloud).")
@click.option("-a", "--alias", default=None, help="Alias of the folio to add to.")
@click.option("-f", "--folio", "folio_path", default=None, envvar="DATAFOLIO_PATH", hidden=True)
@click.option("-n", "--name", default=None, help="Item name (default: file name w/o extension).")
@click.option("-d", "--description", default=None, help="Item description.")
@click.option("--reference", is_flag=True, help="Link a parquet/csv file without copying it.")
@click.option("--as-file", is_flag=True, help="Store the file unchanged as an artifact.")
@click.option("--overwrite", is_flag=True, help="Replace an existing item.")
@pass_cli
def add_cmd(
    cli: CliContext,
    file: str,
    to: str | None,
    alias: str | None,
    folio_path: str | None,
    name: str | None,
    description: str | None,
    reference: bool,
    as_file: bool,
    overwrite: bool,
) -> None:
    """Add FILE to a folio: tables (.parquet .csv .feather .arrow) as parquet, streamed;
    .npy as an array; .json as JSON; anything else unchanged (artifact)."""
    from aiofolio import InvalidArgumentError, UsageError

    folio = _open(cli, to or folio_path, alias)
    ext = Path(file).suffix.lower()
    item = name or Path(file).stem
    try:
        if reference:
            if ext not in (".parquet", ".csv"):
                raise UsageError("--reference links parquet or csv files only")
            folio.reference_table(
                item,
                str(Path(file).resolve()),
                table_format=_TABLE_EXTS[ext],
                description=description,
                overwrite=overwrite,
            )
        elif as_file:
            folio.add_file(file, item, description=description, overwrite=overwrite)
        elif ext in _TABLE_EXTS:
            folio.import_table(item, file, description=description, overwrite=overwrite)
        elif ext == ".npy":
            import numpy as np

            folio.add(
                item,
                np.load(file, allow_pickle=False),
                description=description,
                overwrite=overwrite,
            )
        elif ext == ".json":
            folio.add(
                item,
                json.loads(Path(file).read_bytes()),
                description=description,
                overwrite=overwrite,
            )
        else:
            folio.add_file(file, item, description=description, overwrite=overwrite)
    except ValueError as exc:  # an existing name, a bad name: a usage error (exit 2)
        if isinstance(exc, InvalidArgumentError):
            raise
        raise InvalidArgumentError(str(exc)) from exc
    info = folio.item_info(item)
    data = {
        "folio": folio.path,
        "name": item,
        "item_type": info.get("item_type"),
        "size_bytes": info.get("size_bytes"),
    }
    cli.emit(data, lambda: click.echo(f"Added {item} ({data['item_type']}) to {folio.path}"))


@click.command("describe")
@_folio_options
@click.option("--max-metadata", type=int, default=10, help="Maximum metadata fields to show.")
@click.option("-s", "--snapshot", default=None, help="Describe this snapshot instead.")
@pass_cli
def describe_cmd(
    cli: CliContext,
    folio_path: str | None,
    alias: str | None,
    max_metadata: int,
    snapshot: str | None,
) -> None:
    """Show a detailed description of the bundle (or of one snapshot)."""
    folio = _open(cli, folio_path, alias)
    view = folio.get_snapshot(snapshot) if snapshot else folio
    items = [view.item_info(n) for n in view.item_names()]
    data = {
        "path": folio.path,
        "snapshot": snapshot,
        "metadata": dict(view.metadata),
        "items": [
            {
                k: i.get(k)
                for k in ("name", "item_type", "description", "size_bytes", "created_at", "version")
            }
            for i in items
        ],
        "snapshots": [s["name"] for s in folio.list_snapshots()],
    }
    text = folio.describe(return_string=True, max_metadata_fields=max_metadata, snapshot=snapshot)
    cli.emit(data, lambda: click.echo(text))


@click.command("validate")
@click.argument("path", required=False)
@_folio_options
@pass_cli
def validate_cmd(
    cli: CliContext, path: str | None, folio_path: str | None, alias: str | None
) -> None:
    """Check that PATH is a DataFolio bundle whose payloads match their checksums (exit 1 if
    not)."""
    from aiofolio import RemoteNotFoundError

    target = path or folio_path or (None if alias else cli.folio)
    try:
        folio = _open(cli, target, alias, read_only=True)
    except (RemoteNotFoundError, ValueError) as exc:
        where = target or alias or os.getcwd()
        reason = str(exc)
        cli.emit(
            {"path": where, "valid": False, "error": reason, "items": {}},
            lambda: click.echo(f"Not a valid DataFolio bundle: {where}: {reason}"),
        )
        raise SystemExit(int(ExitCode.CHECK_FAILED)) from None
    results = folio.validate()
    valid = all(results.values())
    data = {
        "path": folio.path,
        "valid": valid,
        "items": results,
        "snapshots": len(folio.list_snapshots()),
    }

    def human() -> None:
        if valid:
            click.echo(f"Valid DataFolio bundle: {folio.path}")
            click.echo(f"  Items: {len(results)} (all payloads verified)")
        else:
            click.echo(f"Invalid DataFolio bundle: {folio.path}")
            for name, ok in results.items():
                if not ok:
                    click.echo(f"  failed: {name}")
        click.echo(f"  Snapshots: {data['snapshots']}")

    cli.emit(data, human)
    if not valid:
        raise SystemExit(int(ExitCode.CHECK_FAILED))


# -- snapshots ------------------------------------------------------------------------------------
@click.group("snapshot")
def snapshot_group() -> None:
    """Manage snapshots: create, list, show, compare, diff, delete, status, gc."""


@snapshot_group.command("create")
@click.argument("name")
@_folio_options
@click.option("-d", "--description", default=None, help="Snapshot description.")
@click.option("-t", "--tag", "tags", multiple=True, help="A tag (repeatable).")
@click.option("--no-git", is_flag=True, help="Don't capture git information.")
@click.option("--env", "env", is_flag=True, help="Capture Python version and platform.")
@click.option("--exec", "execution", is_flag=True, help="Capture entry point and working dir.")
@pass_cli
def snapshot_create(
    cli: CliContext,
    name: str,
    folio_path: str | None,
    alias: str | None,
    description: str | None,
    tags: tuple[str, ...],
    no_git: bool,
    env: bool,
    execution: bool,
) -> None:
    """Create snapshot NAME of the current bundle state."""
    folio = _open(cli, folio_path, alias)
    folio.create_snapshot(
        name,
        description=description,
        tags=list(tags) or None,
        capture_git=not no_git,
        capture_environment=env,
        capture_execution=execution,
    )
    info = folio.get_snapshot_info(name)
    data = {
        "name": name,
        "timestamp": info.get("timestamp"),
        "description": description,
        "tags": list(tags),
        "items": len(info.get("item_versions") or {}),
    }
    cli.emit(data, lambda: click.echo(f"Created snapshot {name!r} ({data['items']} items)"))


@snapshot_group.command("list")
@_folio_options
@click.option("-t", "--tag", default=None, help="Only snapshots with this tag.")
@pass_cli
def snapshot_list(
    cli: CliContext, folio_path: str | None, alias: str | None, tag: str | None
) -> None:
    """List the bundle's snapshots, newest first."""
    rows = _open(cli, folio_path, alias, read_only=True).list_snapshots()
    if tag is not None:
        rows = [r for r in rows if tag in (r.get("tags") or [])]

    def human() -> None:
        if not rows:
            cli.hint("No snapshots.")
        for r in rows:
            tags = ",".join(r.get("tags") or [])
            click.echo(
                f"{r['name']}\t{r.get('timestamp')}\t{r.get('num_items', '')}\t"
                f"{tags}\t{r.get('description') or ''}"
            )

    cli.emit(rows, human)


@snapshot_group.command("show")
@click.argument("name")
@_folio_options
@pass_cli
def snapshot_show(cli: CliContext, name: str, folio_path: str | None, alias: str | None) -> None:
    """Show snapshot NAME's record."""
    info = _open(cli, folio_path, alias, read_only=True).get_snapshot_info(name)

    def human() -> None:
        click.echo(f"Snapshot: {name}")
        click.echo(f"Description: {info.get('description') or ''}")
        click.echo(f"Tags: {', '.join(info.get('tags') or [])}")
        click.echo(f"Timestamp: {info.get('timestamp')}")
        versions = info.get("item_versions") or {}
        click.echo(f"Items ({len(versions)}):")
        for item in sorted(versions):
            click.echo(f"  {item}")

    cli.emit(info, human)


def _print_changes(changes: dict[str, Any], kept_key: str) -> None:
    for key, label in (
        ("added_items", "Added"),
        ("removed_items", "Removed"),
        ("modified_items", "Modified"),
    ):
        for item in changes.get(key) or []:
            click.echo(f"{label}: {item}")
    for key, (then, now) in (changes.get("metadata_changes") or {}).items():
        click.echo(f"Metadata {key}: {then!r} -> {now!r}")
    click.echo(
        f"Summary: added {len(changes.get('added_items') or [])}, removed "
        f"{len(changes.get('removed_items') or [])}, modified "
        f"{len(changes.get('modified_items') or [])}, {kept_key.split('_')[0]} "
        f"{len(changes.get(kept_key) or [])}"
    )


def _changes_json(changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(changes)
    out["metadata_changes"] = {
        k: {"old": v[0], "new": v[1]} for k, v in (changes.get("metadata_changes") or {}).items()
    }
    return out


@snapshot_group.command("compare")
@click.argument("snapshot1")
@click.argument("snapshot2")
@_folio_options
@pass_cli
def snapshot_compare(
    cli: CliContext, snapshot1: str, snapshot2: str, folio_path: str | None, alias: str | None
) -> None:
    """Compare SNAPSHOT1 with SNAPSHOT2."""
    changes = _open(cli, folio_path, alias, read_only=True).compare_snapshots(snapshot1, snapshot2)
    cli.emit(_changes_json(changes), lambda: _print_changes(changes, "shared_items"))


@snapshot_group.command("diff")
@click.argument("snapshot", required=False)
@_folio_options
@pass_cli
def snapshot_diff(
    cli: CliContext, snapshot: str | None, folio_path: str | None, alias: str | None
) -> None:
    """Show changes between the current state and SNAPSHOT (default: the newest)."""
    changes = _open(cli, folio_path, alias, read_only=True).diff_from_snapshot(snapshot)
    cli.emit(_changes_json(changes), lambda: _print_changes(changes, "unchanged_items"))


@snapshot_group.command("status")
@_folio_options
@pass_cli
def snapshot_status(cli: CliContext, folio_path: str | None, alias: str | None) -> None:
    """Show the current state compared to the newest snapshot (like ``git status``)."""
    folio = _open(cli, folio_path, alias, read_only=True)
    if not folio.list_snapshots():
        cli.emit(
            {"path": folio.path, "last_snapshot": None, "changed": None},
            lambda: click.echo(f"{folio.path}: no snapshots yet"),
        )
        return
    changes = folio.diff_from_snapshot(None)
    changed = any(
        changes.get(k)
        for k in ("added_items", "removed_items", "modified_items", "metadata_changes")
    )
    data = {
        "path": folio.path,
        "last_snapshot": changes.get("snapshot_name"),
        "changed": changed,
        **_changes_json(changes),
    }

    def human() -> None:
        click.echo(f"Current bundle: {folio.path}")
        click.echo(f"Last snapshot: {changes.get('snapshot_name')}")
        if changed:
            _print_changes(changes, "unchanged_items")
        else:
            click.echo("No changes since last snapshot")

    cli.emit(data, human)


@snapshot_group.command("delete")
@click.argument("name")
@_folio_options
@click.option("--cleanup/--no-cleanup", default=False, help="Also drop versions only it kept.")
@click.option("-y", "--yes", is_flag=True, help="Skip the confirmation.")
@pass_cli
def snapshot_delete(
    cli: CliContext,
    name: str,
    folio_path: str | None,
    alias: str | None,
    cleanup: bool,
    yes: bool,
) -> None:
    """Delete snapshot NAME (asks first; without a terminal it needs --yes)."""
    folio = _open(cli, folio_path, alias)
    folio.get_snapshot_info(name)  # an unknown name fails before the question
    cli.confirm(f"Delete snapshot {name!r}?", yes=yes)
    folio.delete_snapshot(name, cleanup_orphans=cleanup)
    cli.emit(
        {"deleted": name, "cleanup": cleanup}, lambda: click.echo(f"Deleted snapshot {name!r}")
    )


@snapshot_group.command("gc")
@_folio_options
@click.option("--dry-run", is_flag=True, help="Show what would be deleted, delete nothing.")
@pass_cli
def snapshot_gc(cli: CliContext, folio_path: str | None, alias: str | None, dry_run: bool) -> None:
    """Drop item versions neither current nor pinned by a snapshot."""
    files = _open(cli, folio_path, alias).cleanup_orphaned_versions(dry_run=dry_run)

    def human() -> None:
        if not files:
            click.echo("No orphaned versions found")
        for f in files:
            click.echo(f"{'would delete' if dry_run else 'deleted'}: {f}")

    cli.emit({"dry_run": dry_run, "files": files}, human)


# -- the registry: folios, find -------------------------------------------------------------------
@click.group("folios")
def folios_group() -> None:
    """Folio aliases and recently used folios (the registry in $DATAFOLIO_HOME, ~/.datafolio)."""


@folios_group.command("list")
@pass_cli
def folios_list(cli: CliContext) -> None:
    """List aliases, then recently used folios."""
    from aiofolio import list_folios

    rows = _records(list_folios())

    def human() -> None:
        if not rows:
            cli.hint("No folios registered (aiofolio folios alias NAME PATH).")
        for r in rows:
            click.echo(
                f"{r['alias'] or '-'}\t{r['path']}\t{r['last_accessed'] or ''}\t"
                f"{'' if r['exists'] is None else ('yes' if r['exists'] else 'missing')}"
            )

    cli.emit(rows, human)


@folios_group.command("alias")
@click.argument("alias_name")
@click.argument("path", required=False)
@click.option("-f", "--folio", "folio_path", default=None, envvar="DATAFOLIO_PATH", hidden=True)
@click.option("--overwrite", is_flag=True, help="Rebind an alias that already exists.")
@pass_cli
def folios_alias(
    cli: CliContext, alias_name: str, path: str | None, folio_path: str | None, overwrite: bool
) -> None:
    """Register ALIAS_NAME for the folio at PATH (default: -f, DATAFOLIO_PATH or cwd)."""
    from aiofolio import set_alias

    target = set_alias(alias_name, path or folio_path or os.getcwd(), overwrite=overwrite)
    cli.emit({"alias": alias_name, "path": target}, lambda: click.echo(f"{alias_name} -> {target}"))


@folios_group.command("unalias")
@click.argument("alias_name")
@pass_cli
def folios_unalias(cli: CliContext, alias_name: str) -> None:
    """Remove an alias (the folio itself is untouched)."""
    from aiofolio import remove_alias

    remove_alias(alias_name)
    cli.emit({"removed": alias_name}, lambda: click.echo(f"Removed alias {alias_name}"))


@folios_group.command("prune")
@pass_cli
def folios_prune(cli: CliContext) -> None:
    """Drop aliases whose local folio no longer exists (cloud folios are kept)."""
    from aiofolio import list_folios, remove_alias

    gone = [r for r in _records(list_folios()) if r["alias"] and r["exists"] is False]
    for r in gone:
        remove_alias(r["alias"])
    cli.emit(
        {"removed": [{"alias": r["alias"], "path": r["path"]} for r in gone]},
        lambda: click.echo(
            "\n".join(f"Removed {r['alias']} ({r['path']})" for r in gone) or "Nothing to prune"
        ),
    )


@click.command("find")
@click.argument("pattern", default="*")
@click.option("--regex", is_flag=True, help="PATTERN is a regular expression.")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(["table", "model", "artifact", "array", "json", "timestamp"]),
    help="Only items of this type (repeatable).",
)
@click.option("--metadata", is_flag=True, help="Match metadata keys (KEY or KEY=VALUE).")
@click.option("--in", "within", multiple=True, help="Only this alias or path (repeatable).")
@click.option("--aliases-only", is_flag=True, help="Skip recently used, unaliased folios.")
@click.option("--local-only", is_flag=True, help="Skip cloud folios.")
@click.option("--include-archived", is_flag=True, help="Include archived items.")
@click.option("--case-sensitive", is_flag=True, help="Match case-sensitively.")
@click.option("--desc", is_flag=True, help="Also match text in item descriptions.")
@pass_cli
def find_cmd(
    cli: CliContext,
    pattern: str,
    regex: bool,
    types: tuple[str, ...],
    metadata: bool,
    within: tuple[str, ...],
    aliases_only: bool,
    local_only: bool,
    include_archived: bool,
    case_sensitive: bool,
    desc: bool,
) -> None:
    """Find items across registered and recently used folios (manifests only; exit 1 if
    nothing matches)."""
    from aiofolio import find

    frame = find(
        pattern,
        regex=regex,
        item_type=list(types) or None,
        metadata=metadata,
        folios=list(within) or None,
        aliases_only=aliases_only,
        local_only=local_only,
        include_archived=include_archived,
        case_sensitive=case_sensitive,
        descriptions=desc,
    )
    rows = _records(frame)

    def human() -> None:
        for r in rows:
            where = r["alias"] or r["folio_path"]
            rest = (
                f"{r['key']}={r['value']}"
                if metadata
                else f"{r['name']}\t{r['item_type']}\t{r['description'] or ''}"
            )
            click.echo(f"{where}\t{rest}")

    cli.emit(rows, human)
    if not rows:
        cli.hint(f"No matches for {pattern!r}.")
        raise SystemExit(int(ExitCode.CHECK_FAILED))


def register(main: click.Group) -> None:
    """Add this module's commands to the ``aiofolio`` group."""
    for command in (
        init_cmd,
        add_cmd,
        describe_cmd,
        validate_cmd,
        snapshot_group,
        folios_group,
        find_cmd,
    ):
        main.add_command(command)
