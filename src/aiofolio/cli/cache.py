"""``aiofolio cache ...``: stats, list (ls), clear, cleanup, config, verify and dir.

Owns: the arguments and the presentation of those commands (human text, ``--json`` documents
as docs/CLI.md describes them, the list filters and sort keys). Every figure and every change
comes from the library: ``DataFolio.cache_info``, ``list_cache``, ``clear_bundle_caches``,
``clear_all_caches``, ``cleanup_cache``, ``cleanup_orphaned_caches``, ``cleanup_incomplete``,
``cache_config``, ``edit_cache_config`` and ``verify_cache``. Destructive commands print their
plan (a dry run of the same library call), ask, and refuse without a terminal unless ``--yes``.
"""

from __future__ import annotations

import fnmatch
import operator
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import click

from aiofolio.cli._common import (
    CliContext,
    ExitCode,
    age_text,
    from_iso,
    iso_time,
    pass_cli,
    size_text,
)

__all__ = ["cache", "register"]


def _folio() -> Any:
    from aiofolio import DataFolio

    return DataFolio


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class _CacheGroup(click.Group):
    """The ``cache`` group, with ``ls`` as an alias of ``list`` (not listed twice in help)."""

    aliases = {"ls": "list"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command is not None else name), command, rest


@click.group("cache", cls=_CacheGroup)
def cache() -> None:
    """Inspect and manage the local cache folder."""


# -- stats ----------------------------------------------------------------------------------------


@cache.command("stats")
@pass_cli
def stats(cli: CliContext) -> None:
    """Cache directory, size against the limit, bundles, items, hit rate, oldest access."""
    info = _folio().cache_info(cli.cache_dir)
    limit = info["limit_bytes"]
    data = {
        "cache_dir": info["path"],
        "size_bytes": info["size_bytes"],
        "limit_bytes": limit,
        "limit_kind": None if limit is None else ("soft" if info["is_soft_limit"] else "hard"),
        "percent_used": info["usage_percent"],
        "policy": info["policy"],
        "bundles": info["bundles"],
        "items": info["items"],
        "blobs": info["blobs"],
        "pinned": info["pinned"],
        "hits": info["hits"],
        "misses": info["misses"],
        "hit_rate": info["hit_rate"],
        "oldest_access": info["oldest_access"],
        "newest_access": info["newest_access"],
    }

    def human() -> None:
        if limit is None:
            of = "no limit"
        else:
            of = f"{data['percent_used']:.0f}% of {size_text(limit)} {data['limit_kind']} limit"
        click.echo(f"Cache directory: {data['cache_dir']}")
        click.echo(f"Total size: {size_text(data['size_bytes'])} ({of})")
        click.echo(f"Bundles cached: {data['bundles']}")
        click.echo(f"Total items: {data['items']}")
        lookups = data["hits"] + data["misses"]
        if lookups:
            rate = f"{100 * data['hit_rate']:.0f}% ({data['hits']} hits, {data['misses']} misses)"
        else:
            rate = "n/a (no reads yet)"
        click.echo(f"Cache hit rate: {rate}")
        oldest = from_iso(data["oldest_access"])
        if oldest is None:
            click.echo("Oldest access: never")
        else:
            day = str(data["oldest_access"])[:10]
            click.echo(f"Oldest access: {day} ({age_text(oldest)})")

    cli.emit(data, human)


# -- list -----------------------------------------------------------------------------------------

_FILTER = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|!=|>|<|=)\s*(.+?)\s*$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
    "=": operator.eq,
    "!=": operator.ne,
}
_FILTER_KEYS = ("size", "accessed", "cached", "bundle", "name", "pinned", "state")
_SORT_KEYS = ("size", "accessed", "name")


@dataclass(frozen=True)
class _Filter:
    key: str
    op: str
    value: Any

    def matches(self, row: dict[str, Any], now: float) -> bool:
        key, op, value = self.key, self.op, self.value
        if key in ("bundle", "name"):
            hit = fnmatch.fnmatchcase(str(row[key]), value)
            return hit if op == "=" else not hit
        if key == "size":
            return _OPS[op](row["size_bytes"], value)
        if key in ("accessed", "cached"):
            ts = row["last_access" if key == "accessed" else "cached_at"]
            if ts is None:  # never: older than any age
                return op in (">", ">=", "!=")
            return _OPS[op](now - ts, value)
        if key == "pinned":
            return _OPS[op](row["pinned"], value)
        return _OPS[op]("fresh" if row["fresh"] else "stale", value)  # state


def _parse_filter(text: str, items: bool) -> _Filter:
    from aiofolio.config import parse_bool, parse_duration, parse_size

    found = _FILTER.match(text)
    if found is None:
        raise click.BadParameter(
            f"{text!r}: expected KEY OP VALUE, e.g. 'size>1GB'", param_hint="--filter"
        )
    key, op, raw = found.groups()
    if key not in _FILTER_KEYS:
        raise click.BadParameter(
            f"{text!r}: unknown key {key!r} (known: {', '.join(_FILTER_KEYS)})",
            param_hint="--filter",
        )
    if key in ("name", "pinned", "cached") and not items:
        raise click.BadParameter(f"{text!r}: {key!r} filters need --items", param_hint="--filter")
    value: Any
    try:
        if key in ("bundle", "name", "state"):
            if op not in ("=", "!="):
                raise ValueError(f"{key} takes = or !=")
            value = raw
            if key == "state" and raw not in ("fresh", "stale"):
                raise ValueError("state is 'fresh' or 'stale'")
        elif key == "size":
            value = parse_size(raw, source="--filter size")
            if value is None:
                raise ValueError("a size filter needs a finite size")
        elif key == "pinned":
            if op not in ("=", "!="):
                raise ValueError("pinned takes = or !=")
            value = parse_bool(raw, source="--filter pinned")
        else:
            value = parse_duration(raw, source=f"--filter {key}")
            if value is None:
                raise ValueError(f"an {key} filter needs a finite duration ('30d')")
    except (ValueError, TypeError) as exc:
        raise click.BadParameter(f"{text!r}: {exc}", param_hint="--filter") from None
    return _Filter(key, op, value)


def _parse_sort(text: str) -> tuple[str, bool]:
    key, _, order = text.partition(":")
    if key not in _SORT_KEYS or order not in ("", "asc", "desc"):
        raise click.BadParameter(
            f"{text!r}: expected {'|'.join(_SORT_KEYS)}[:asc|desc]", param_hint="--sort"
        )
    descending = order == "desc" if order else key in ("size", "accessed")
    return key, descending


def _sorted(rows: list[dict[str, Any]], key: str, descending: bool) -> list[dict[str, Any]]:
    name_key = "url" if rows and "url" in rows[0] else "name"
    if key == "name":
        return sorted(rows, key=lambda r: (r.get("bundle", ""), r[name_key]), reverse=descending)
    if key == "size":
        return sorted(rows, key=lambda r: r["size_bytes"], reverse=descending)
    return sorted(rows, key=lambda r: r["last_access"] or 0.0, reverse=descending)


def _bundle_row(bundle: Any) -> dict[str, Any]:
    return {
        "url": bundle.url,
        "bundle": bundle.url,  # for the bundle= filter
        "size_bytes": bundle.size,
        "items": len(bundle.items),
        "last_access": bundle.last_access,
        "cached_at": min((i.cached_at for i in bundle.items if i.cached_at), default=None),
        "last_check": bundle.last_check,
        "fresh": bundle.fresh,
    }


def _item_row(item: Any) -> dict[str, Any]:
    return {
        "bundle": item.bundle,
        "name": item.name,
        "size_bytes": item.size,
        "digest": item.digest,
        "pinned": item.pinned,
        "priority": item.priority,
        "cached_at": item.cached_at,
        "last_access": item.last_access,
        "fresh": item.fresh,
        "present": item.present,
    }


def _table(rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        click.echo("  ".join(cells).rstrip())


@cache.command("list")
@click.option("--items", "per_item", is_flag=True, help="One row per cached item.")
@click.option(
    "--filter",
    "filters",
    multiple=True,
    metavar="EXPR",
    help="KEY OP VALUE, repeatable (all must hold): size>1GB, accessed>30d (not read for 30 "
    "days), bundle=GLOB, state=fresh|stale; with --items also name=GLOB, cached>7d, "
    "pinned=true.",
)
@click.option(
    "--sort",
    "sort",
    default="name",
    show_default=True,
    metavar="KEY[:asc|desc]",
    help="size, accessed or name (size and accessed default to descending).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N rows.")
@pass_cli
def list_(
    cli: CliContext, per_item: bool, filters: tuple[str, ...], sort: str, limit: int | None
) -> None:
    """Cached bundles (URL, size, items, last access), or with --items one row per item.

    Alias: ls.
    """
    parsed = [_parse_filter(f, per_item) for f in filters]
    key, descending = _parse_sort(sort)
    bundles = _folio().list_cache(cli.cache_dir)
    if per_item:
        rows = [_item_row(i) for b in bundles for i in b.items]
    else:
        rows = [_bundle_row(b) for b in bundles]
    now = time.time()
    rows = [r for r in rows if all(f.matches(r, now) for f in parsed)]
    rows = _sorted(rows, key, descending)[:limit]
    times = ("last_access", "cached_at", "last_check")
    if per_item:
        data: list[dict[str, Any]] = [
            {k: (iso_time(v) if k in times else v) for k, v in r.items()} for r in rows
        ]
    else:
        data = [
            {k: (iso_time(v) if k in times else v) for k, v in r.items() if k != "bundle"}
            for r in rows
        ]

    def human() -> None:
        if not rows:
            cli.hint("No cached bundles." if not per_item else "No cached items.")
            return
        if per_item:
            table = [
                ["BUNDLE", "ITEM", "SIZE", "PINNED", "PRIORITY", "CACHED", "LAST ACCESS", "STATE"]
            ]
            table += [
                [
                    r["bundle"],
                    r["name"],
                    size_text(r["size_bytes"]),
                    "yes" if r["pinned"] else "no",
                    str(r["priority"]),
                    age_text(r["cached_at"]),
                    age_text(r["last_access"]) if r["present"] else "missing",
                    "fresh" if r["fresh"] else "stale",
                ]
                for r in rows
            ]
            _table(table, right=(2, 4))
        else:
            table = [["BUNDLE", "SIZE", "ITEMS", "LAST ACCESS"]]
            table += [
                [r["url"], size_text(r["size_bytes"]), str(r["items"]), age_text(r["last_access"])]
                for r in rows
            ]
            _table(table, right=(1, 2))

    cli.emit(data, human)


# -- clear ----------------------------------------------------------------------------------------


@cache.command("clear")
@click.argument("uris", nargs=-1, metavar="[URI]...")
@click.option("--all", "everything", is_flag=True, help="Clear the whole cache folder.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@pass_cli
def clear(
    cli: CliContext, uris: tuple[str, ...], everything: bool, yes: bool, dry_run: bool
) -> None:
    """Remove cached bundles (their items and the blobs no other bundle uses), or --all.

    Prints what goes and asks; without a terminal it refuses unless --yes (exit 2).
    """
    folio = _folio()
    if everything == bool(uris):
        raise click.UsageError("give bundle URIs or --all (not both)")
    if everything:
        info = folio.cache_info(cli.cache_dir)
        freed = folio.clear_all_caches(cli.cache_dir, dry_run=True)
        plan: dict[str, Any] = {
            "all": True,
            "removed": [b.url for b in folio.list_cache(cli.cache_dir)],
            "not_cached": [],
            "bundles": info["bundles"],
            "items": info["items"],
            "bytes_freed": freed,
        }
    else:
        plan = folio.clear_bundle_caches(uris, cli.cache_dir, dry_run=True)
        plan = {"all": False, **{k: v for k, v in plan.items() if k != "dry_run"}}
    for url in plan["not_cached"]:
        cli.hint(f"warning: {url} is not cached")
    what = (
        f"{size_text(plan['bytes_freed'])} ({_plural(plan['items'], 'item')}, "
        f"{_plural(plan['bundles'], 'bundle')})"
    )
    if dry_run:
        cli.emit({**plan, "dry_run": True}, lambda: click.echo(f"Would remove {what} from cache"))
        return
    if not plan["bundles"] and not plan["bytes_freed"]:
        cli.emit(
            {**plan, "bytes_freed": 0, "dry_run": False}, lambda: click.echo("Nothing to remove")
        )
        return
    cli.hint(f"This will delete {what} of cached data from {_cache_root(cli)}")
    cli.confirm("Continue?", yes=yes)
    if everything:
        done = {**plan, "bytes_freed": folio.clear_all_caches(cli.cache_dir)}
        counts = f"{_plural(plan['bundles'], 'bundle')}, {_plural(plan['items'], 'item')}"
        message = f"Cleared all caches ({counts})"
    else:
        result = folio.clear_bundle_caches(plan["removed"], cli.cache_dir)
        done = {**plan, "bytes_freed": result["bytes_freed"], "items": result["items"]}
        freed_text = size_text(done["bytes_freed"])
        message = f"Removed {freed_text} ({_plural(done['items'], 'item')}) from cache"
    cli.emit({**done, "dry_run": False}, lambda: click.echo(message))


def _cache_root(cli: CliContext) -> str:
    return str(_folio().cache_config(cli.cache_dir).settings.cache_dir)


# -- cleanup --------------------------------------------------------------------------------------


@cache.command("cleanup")
@click.option("--older-than", metavar="AGE", help="Evict items not read for AGE (30d, 12h).")
@click.option("--orphaned", is_flag=True, help="Remove bundles whose remote manifest is gone.")
@click.option("--incomplete", is_flag=True, help="Delete partial downloads of dead processes.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.option("--dry-run", is_flag=True, help="Print what would be removed; remove nothing.")
@pass_cli
def cleanup(
    cli: CliContext,
    older_than: str | None,
    orphaned: bool,
    incomplete: bool,
    yes: bool,
    dry_run: bool,
) -> None:
    """Remove old items (--older-than), orphaned bundles or incomplete downloads.

    Pinned and in-use items stay. Prints the plan and asks; without a terminal it refuses
    unless --yes (exit 2).
    """
    folio = _folio()
    if older_than is None and not orphaned and not incomplete:
        raise click.UsageError("give --older-than AGE, --orphaned and/or --incomplete")
    plans: dict[str, dict[str, Any]] = {}
    lines: list[tuple[str, Callable[[dict[str, Any]], str]]] = []
    if older_than is not None:
        plans["older_than"] = folio.cleanup_cache(older_than, cli.cache_dir, dry_run=True)
        lines.append(
            (
                "older_than",
                lambda r: (
                    f"{_plural(r['evicted'], 'blob')} ({size_text(r['bytes_freed'])}, "
                    f"{_plural(len(r['items']), 'item')}) not accessed in {older_than}"
                ),
            )
        )
    if orphaned:
        gone = folio.cleanup_orphaned_caches(cli.cache_dir, dry_run=True)["removed"]
        plans["orphaned"] = folio.clear_bundle_caches(gone, cli.cache_dir, dry_run=True)
        lines.append(
            (
                "orphaned",
                lambda r: (
                    f"{_plural(r['bundles'], 'orphaned bundle')} ({size_text(r['bytes_freed'])})"
                ),
            )
        )
    if incomplete:
        plans["incomplete"] = folio.cleanup_incomplete(cli.cache_dir, dry_run=True)
        lines.append(
            (
                "incomplete",
                lambda r: (
                    f"{_plural(r['count'], 'incomplete download')} ({size_text(r['bytes_freed'])})"
                ),
            )
        )
    total = sum(p["bytes_freed"] for p in plans.values())

    def report(verb: str, results: dict[str, dict[str, Any]]) -> Callable[[], None]:
        def human() -> None:
            for key, text in lines:
                click.echo(f"{verb} {text(results[key])}")

        return human

    if dry_run:
        cli.emit({"dry_run": True, "bytes_freed": total, **plans}, report("Would remove", plans))
        return
    if any(_count(k, p) for k, p in plans.items()):
        for key, text in lines:
            cli.hint(f"This will remove {text(plans[key])}")
        cli.confirm("Continue?", yes=yes)
        done: dict[str, dict[str, Any]] = {}
        if "older_than" in plans:
            done["older_than"] = folio.cleanup_cache(older_than, cli.cache_dir)
        if "orphaned" in plans:
            # the bundles the check found gone (not checked again)
            done["orphaned"] = folio.clear_bundle_caches(
                plans["orphaned"]["removed"], cli.cache_dir
            )
        if "incomplete" in plans:
            done["incomplete"] = folio.cleanup_incomplete(cli.cache_dir)
    else:  # nothing to remove
        done = {k: {**p, "dry_run": False} if "dry_run" in p else p for k, p in plans.items()}
    total = sum(p["bytes_freed"] for p in done.values())
    cli.emit({"dry_run": False, "bytes_freed": total, **done}, report("Removed", done))


_COUNT_KEY = {"older_than": "evicted", "orphaned": "bundles", "incomplete": "count"}


def _count(key: str, plan: dict[str, Any]) -> int:
    return int(plan[_COUNT_KEY[key]])


# -- config ---------------------------------------------------------------------------------------


def _json_value(value: object) -> object:
    return value if value is None or isinstance(value, (bool, int, float, str)) else str(value)


@cache.command("config")
@click.option("--max-size", metavar="SIZE", help="Size limit (100GB, 500MiB, unlimited).")
@click.option(
    "--hard-limit/--soft-limit",
    "hard",
    default=None,
    help="Refuse downloads over the limit (hard) or evict afterwards (soft).",
)
@click.option("--ttl", metavar="DURATION", help="Manifest TTL (30m, 1h, 0, never).")
@click.option("--policy", type=click.Choice(["lru", "lfu", "fifo"]), help="Eviction policy.")
@click.option(
    "--disable/--enable",
    "disable",
    default=None,
    help="Turn caching off, or back to the default (on for remote bundles).",
)
@pass_cli
def config(
    cli: CliContext,
    max_size: str | None,
    hard: bool | None,
    ttl: str | None,
    policy: str | None,
    disable: bool | None,
) -> None:
    """Without options, every setting with its value and source; with options, edit
    <cache_dir>/config.json (atomically) and print what changed."""
    folio = _folio()
    changes: dict[str, Any] = {}
    if max_size is not None:
        changes["max_cache_size"] = max_size
    if hard is not None:
        changes["hard_limit"] = hard
    if ttl is not None:
        changes["cache_ttl"] = ttl
    if policy is not None:
        changes["eviction_policy"] = policy
    remove: list[str] = []
    if disable:
        changes["cache_enabled"] = False
    elif disable is not None:
        remove.append("cache_enabled")
    if not changes and not remove:
        resolved = folio.cache_config(cli.cache_dir)
        rows = resolved.rows()
        data = {
            "config_file": resolved.config_file,
            "config_file_found": resolved.config_file_found,
            "settings": [
                {
                    "name": name,
                    "value": _json_value(getattr(resolved.settings, name)),
                    "text": text,
                    "source": source,
                }
                for name, text, source in rows
            ],
        }

        def human() -> None:
            found = "" if resolved.config_file_found else " (not found)"
            cli.hint(f"config file: {resolved.config_file}{found}")
            _table([["SETTING", "VALUE", "SOURCE"], *[list(r) for r in rows]])

        cli.emit(data, human)
        return
    done = folio.edit_cache_config(cli.cache_dir, remove=remove, **changes)
    resolved = folio.cache_config(cli.cache_dir)
    for change in done:  # a higher layer still wins over the file
        source = resolved.sources.get(change.setting, "default")
        if change.new is not None and not source.startswith("file:"):
            cli.hint(f"note: {change.setting} comes from {source}, which overrides the file")
    data = {
        "config_file": resolved.config_file,
        "changed": [
            {
                "setting": c.setting,
                "key": c.key,
                "old": _json_value(c.old),
                "new": _json_value(c.new),
            }
            for c in done
        ],
    }

    def changes_text() -> None:
        if not done:
            click.echo("Nothing changed")
        for c in done:
            if c.setting == "cache_enabled":
                if c.new is False:
                    click.echo("Caching disabled globally (existing cache preserved)")
                else:
                    click.echo("Caching enabled again (the default: on for remote bundles)")
            elif c.setting == "max_cache_size":
                click.echo(f"Updated cache limit: {c.new_text} (was {c.old_text})")
            else:
                click.echo(f"Updated {c.setting}: {c.new_text} (was {c.old_text})")

    cli.emit(data, changes_text)


# -- verify ---------------------------------------------------------------------------------------


@cache.command("verify")
@click.argument("uri", required=False)
@click.option("--repair", is_flag=True, help="Drop bad blobs so the next read fetches them again.")
@pass_cli
def verify(cli: CliContext, uri: str | None, repair: bool) -> None:
    """Re-hash every cached blob (of URI only, if given); list corrupt and missing ones.

    Exit 1 if any is bad (0 once --repair dropped them all).
    """
    with cli.byte_bar("verifying") as bar:
        report = _folio().verify_cache(uri, cache_dir=cli.cache_dir, repair=repair, progress=bar)
    data = {
        "ok": report.ok,
        "checked": report.checked,
        "bytes_checked": report.bytes_checked,
        "skipped": report.skipped,
        "repaired": report.repaired,
        "bytes_freed": report.bytes_freed,
        "problems": [
            {
                "digest": p.digest,
                "path": p.path,
                "problem": p.problem,
                "refs": [{"bundle": b, "item": n} for b, n in p.refs],
                "expected_size": p.expected_size,
                "actual_size": p.actual_size,
            }
            for p in report.problems
        ],
    }

    def human() -> None:
        for p in report.problems:
            names = ", ".join(f"{b}::{n}" for b, n in p.refs) or "(no record)"
            click.echo(f"{p.problem:8} {p.digest}  {names}")
        summary = (
            f"Checked {_plural(report.checked, 'blob')} ({size_text(report.bytes_checked)}): "
            f"{_plural(len(report.problems), 'problem')}"
        )
        if report.skipped:
            summary += f", {report.skipped} skipped"
        if report.repaired:
            summary += (
                f"; repaired ({size_text(report.bytes_freed)} dropped, fetched again on next read)"
            )
        click.echo(summary)

    cli.emit(data, human)
    if report.problems and not report.repaired:
        if not cli.json:
            cli.hint("run 'aiofolio cache verify --repair' to drop them")
        raise SystemExit(int(ExitCode.CHECK_FAILED))


# -- dir ------------------------------------------------------------------------------------------


@cache.command("dir")
@pass_cli
def dir_(cli: CliContext) -> None:
    """Print the cache root, nothing else (du -sh $(aiofolio cache dir))."""
    root = _cache_root(cli)
    cli.emit({"cache_dir": root}, lambda: click.echo(root))


def register(main: click.Group) -> None:
    """Add ``aiofolio cache`` to the ``aiofolio`` group."""
    main.add_command(cache)
