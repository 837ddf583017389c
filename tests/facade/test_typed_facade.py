"""The facade keeps its real signatures: for mypy, for ``inspect.signature``, and in pairs.

* One ``mypy --strict`` run over a generated snippet: wrong calls of the hybrid methods (on
  the class and on a folio), of the cache methods and of their async twins ARE errors, right
  ones type-check, and ``reveal_type`` shows the real return types.
* ``inspect.signature`` of every hybrid method, on the class and on a folio, is the
  undecorated function's minus its first parameter (IDEs, ``help()``).
* Every public sync method that does I/O has an async twin ``a<name>`` with the same
  parameters (the methods that do no I/O are listed here, so a new method must pick a side).
"""

from __future__ import annotations

import inspect
import re
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import aiofolio
from aiofolio import DataFolio, MetadataDict
from aiofolio._calls import hybrid

# Public sync methods that do no I/O (they read the manifest already in memory, or settings;
# on an uncached local bundle, one stat of items.json to follow other writers).
NO_IO = {
    "analyze_storage",
    "compare_snapshots",
    "configure_cache",
    "configure_large_file_policy",
    "describe",
    "diff_from_snapshot",
    "get_dependents",
    "get_inputs",
    "get_lineage_graph",
    "get_snapshot_info",
    "mutable_references",
    "get_item",
    "get_snapshot",
    "get_table_path",
    "get_numpy_path",  # the 1.x path and info getters: manifest lookups, like item_path
    "get_json_path",
    "get_timestamp_path",
    "get_model_path",
    "get_item_path",
    "get_table_info",
    "get_model_info",
    "get_artifact_info",
    "reproduce_instructions",
    "is_included",
    "is_reference",
    "item_info",
    "item_names",
    "item_path",
    "list_contents",
    "list_references",
    "list_snapshots",
    "on_cache_invalidation",
}

# Context managers whose twin is an async context manager of the same parameters.
CONTEXT_MANAGERS = {"batch": "abatch", "pinned": "apinned", "open_item": "aopen_item"}

# The snippet: lines ending in "# E" must be errors, every other line must type-check.
SNIPPET = """
from __future__ import annotations

import aiofolio
from aiofolio import DataFolio


async def main(folio: DataFolio) -> None:
    folio.cache_info(42, nonsense=True)  # E
    DataFolio.cache_info(nonsense=1)  # E
    DataFolio.cache_info(42)  # E
    folio.pin_cache(3)  # E
    folio.unpin_cache()  # E
    folio.set_cache_priority("a", "high")  # E
    folio.cache_stats(cache_dir=1)  # E
    DataFolio.cache_stats(1, 2)  # E
    folio.enforce_cache_limit(nonsense=True)  # E
    DataFolio.cleanup_cache(older_than=[1])  # E
    DataFolio.cleanup_orphaned_caches(concurrency="8")  # E
    await folio.acache_info(nonsense=1)  # E
    await DataFolio.acache_stats(cache_dir=b"x")  # E
    await folio.apin_cache(3)  # E
    await folio.aset_cache_priority("a")  # E
    await folio.arefresh_item(1)  # E
    await folio.acache_status(1)  # E
    await folio.ainvalidate_cache(1)  # E
    await DataFolio.aclear_all_caches(1)  # E
    await folio.aclear_cache(True)  # E
    await folio.acleanup_cache(older_than=None)  # E
    size: int = folio.cache_info()  # E
    handle: int = folio.warm_cache(background=True)  # E
    reveal_type(folio.cache_info())  # R cache_info
    reveal_type(DataFolio.cache_info)  # R class_cache_info
    reveal_type(folio.cache_info)  # R folio_cache_info
    reveal_type(DataFolio.cleanup_cache)  # R class_cleanup_cache
    reveal_type(folio.acache_info)  # R folio_acache_info
    reveal_type(await DataFolio.acache_stats())  # R acache_stats
    reveal_type(DataFolio.cleanup_orphaned_caches(concurrency=2))  # R orphans
    reveal_type(folio.pin_cache("a"))  # R pin_cache
    reveal_type(await folio.apin_cache("a"))  # R apin_cache
    reveal_type(await folio.aset_cache_priority("a", 2))  # R aset_cache_priority
    reveal_type(await folio.arefresh_item("a", force=False))  # R arefresh_item
    reveal_type(await folio.acache_status("a"))  # R acache_status
    reveal_type(DataFolio.clear_all_caches())  # R clear_all_caches
    reveal_type(await DataFolio.aclear_all_caches("/tmp/c"))  # R aclear_all_caches
    reveal_type(folio.warm_cache(background=True))  # R warm_handle
    reveal_type(folio.warm_cache())  # R warm_result
    reveal_type(aiofolio.refresh_all([folio]))  # R refresh_all
    reveal_type(folio.metadata)  # R metadata
    reveal_type(folio.settings)  # R settings
    reveal_type(await folio.ais_valid())  # R ais_valid
"""

_DICT = r"dict\[str, Any\]"
_OPT_STR = r"(str \| None|Union\[str, None\])"  # as mypy 2.x / 1.x print it
_CORO_DICT = rf"typing\.Coroutine\[Any, Any, {_DICT}\]"
REVEALED = {  # matched whole, after dropping "builtins."
    "cache_info": _DICT,
    "class_cache_info": rf"def \(cache_dir: {_OPT_STR} =\) -> {_DICT}",
    "folio_cache_info": rf"def \(cache_dir: {_OPT_STR} =\) -> {_DICT}",
    "class_cleanup_cache": (
        rf"def \(older_than: (str \| float|Union\[str, float\]) =, cache_dir: {_OPT_STR} =,"
        rf" \*, dry_run: bool =\) -> {_DICT}"
    ),
    "folio_acache_info": rf"def \(cache_dir: {_OPT_STR} =\) -> {_CORO_DICT}",
    "acache_stats": _DICT,
    "orphans": _DICT,
    "pin_cache": r"aiofolio\.folio\.DataFolio",
    "apin_cache": r"aiofolio\.folio\.DataFolio",
    "aset_cache_priority": r"aiofolio\.folio\.DataFolio",
    "arefresh_item": r"aiofolio\.folio\.DataFolio",
    "acache_status": _DICT,
    "clear_all_caches": r"int",
    "aclear_all_caches": r"int",
    "warm_handle": r"aiofolio\._warm\.WarmHandle",
    "warm_result": r"aiofolio\.engine\.warm\.WarmResult",
    "refresh_all": r"list\[aiofolio\.engine\.revalidate\.RefreshOutcome\]",
    "metadata": r"aiofolio\.folio\.MetadataDict",
    "settings": r"aiofolio\.config\.Settings",
    "ais_valid": r"bool",
}


def test_mypy_strict_sees_the_real_signatures(tmp_path: Path) -> None:
    from mypy import api

    source = textwrap.dedent(SNIPPET).lstrip()
    lines = source.splitlines()
    expect_errors = {i for i, line in enumerate(lines, 1) if line.endswith("# E")}
    reveals = {i: line.rsplit("# R ", 1)[1] for i, line in enumerate(lines, 1) if "# R " in line}
    assert len(expect_errors) >= 20
    assert set(reveals.values()) == set(REVEALED)
    snippet = tmp_path / "snippet.py"
    snippet.write_text(source)
    src = Path(aiofolio.__file__).resolve().parent.parent  # the aiofolio under test
    config = tmp_path / "mypy.ini"
    config.write_text(
        f"[mypy]\nstrict = True\nfollow_imports = silent\nmypy_path = {src}\n"
        "python_version = 3.10\n"
    )
    stdout, stderr, _ = api.run(
        [
            "--config-file",
            str(config),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-error-summary",
            "--hide-error-context",
            "--show-error-codes",
            str(snippet),
        ]
    )
    assert not stderr, stderr
    errors: dict[int, list[str]] = {}
    revealed: dict[int, str] = {}
    for line in stdout.splitlines():
        m = re.match(r".*snippet\.py:(\d+): (error|note): (.*)$", line)
        assert m, line  # nothing from aiofolio's own modules, or anywhere else
        number, kind, text = int(m[1]), m[2], m[3]
        if kind == "error":
            errors.setdefault(number, []).append(text)
        elif text.startswith("Revealed type is "):
            shown = text[len("Revealed type is ") :].strip('"')
            revealed[number] = shown.replace("builtins.", "")
    missed = [lines[i - 1].strip() for i in sorted(expect_errors - set(errors))]
    assert not missed, f"mypy accepted wrong calls: {missed}"
    unexpected = {lines[i - 1].strip(): errors[i] for i in sorted(set(errors) - expect_errors)}
    assert not unexpected, f"mypy rejected right calls: {unexpected}"
    for number, key in reveals.items():
        assert number in revealed, f"no reveal_type output for {key}"
        assert re.fullmatch(REVEALED[key], revealed[number]), (key, revealed[number])


def _hybrids() -> dict[str, hybrid[Any, Any]]:
    found = {}
    for name in dir(DataFolio):
        attr = inspect.getattr_static(DataFolio, name)
        if isinstance(attr, hybrid):
            found[name] = attr
    return found


def test_hybrid_methods_show_the_real_signature(tmp_path: Path) -> None:
    hybrids = _hybrids()
    assert {
        "cache_info",
        "acache_info",
        "cache_stats",
        "acache_stats",
        "cleanup_cache",
        "acleanup_cache",
        "enforce_cache_limit",
        "aenforce_cache_limit",
        "cleanup_orphaned_caches",
        "acleanup_orphaned_caches",
    } <= set(hybrids)
    folio = DataFolio(tmp_path / "bundle")
    for name, descriptor in hybrids.items():
        fn: Callable[..., Any] = descriptor.fn
        full = inspect.signature(fn)
        expected = full.replace(parameters=list(full.parameters.values())[1:])
        assert next(iter(full.parameters)) == "self_or_cls", name
        for target in (DataFolio, folio):
            method = getattr(target, name)
            assert inspect.signature(method) == expected, (name, target)
            assert method.__doc__, name
            assert method.__doc__ == fn.__doc__, name
            assert method.__name__ == name
            assert inspect.iscoroutinefunction(method) == inspect.iscoroutinefunction(fn), name
            assert method.__self__ is target  # called on what it was looked up on
        assert descriptor.__doc__ == fn.__doc__  # help(DataFolio) shows it
        assert descriptor.__wrapped__ is fn
    assert "cache_dir" in inspect.signature(DataFolio.cache_info).parameters
    assert inspect.iscoroutinefunction(DataFolio.acache_info)


def _public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    out = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        value = getattr(cls, name)
        if callable(value) and not isinstance(value, type):
            out[name] = value
    return out


def _params(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    return [
        (p.name, p.kind, p.default, p.annotation) for p in inspect.signature(fn).parameters.values()
    ]


@pytest.mark.parametrize("cls", [DataFolio, MetadataDict])
def test_every_io_method_has_an_async_twin_with_the_same_parameters(cls: type) -> None:
    methods = _public_methods(cls)
    if cls is MetadataDict:  # only the methods that commit; the rest are dict's own
        methods = {n: methods[n] for n in ("update", "pop", "popitem", "setdefault")}
    sync = {n: f for n, f in methods.items() if not inspect.iscoroutinefunction(f)}
    twins = {n: f for n, f in _public_methods(cls).items() if inspect.iscoroutinefunction(f)}
    missing = []
    for name, twin_name in CONTEXT_MANAGERS.items() if cls is DataFolio else ():
        assert _params(getattr(cls, twin_name)) == _params(getattr(cls, name)), name
    managers = set(CONTEXT_MANAGERS) | set(CONTEXT_MANAGERS.values())
    for name, fn in sorted(sync.items()):
        if name in NO_IO or name in managers:
            continue
        twin = twins.get(f"a{name}")
        if twin is None:
            missing.append(name)
            continue
        assert _params(twin) == _params(fn), name
    assert not missing, f"sync I/O methods without an async twin: {missing}"
    if cls is DataFolio:
        assert _params(DataFolio.aopen) == _params(DataFolio)  # the constructor's twin
        orphans = {n for n in twins if n != "aopen" and n[1:] not in sync}
        assert not orphans, f"async methods without a sync twin: {orphans}"
        assert set(sync) >= NO_IO, NO_IO - set(sync)  # the list names real methods


def test_no_public_method_is_erased_to_args_kwargs() -> None:
    for name, fn in _public_methods(DataFolio).items():
        params = list(inspect.signature(fn).parameters.values())
        kinds = [p.kind for p in params]
        assert kinds != [inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD], name
