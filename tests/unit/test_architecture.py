"""The structure rules of docs/ARCHITECTURE.md, checked on the source (AST, no imports run).

* no import cycle among aiofolio's modules, counting imports under ``TYPE_CHECKING`` and
  inside functions;
* ``engine/`` never imports the facade (``aiofolio``'s ``__init__``, ``_portal``, ``folio``,
  ``_folio_cache``, ``_warm``, ``_progress``, ``cli``);
* ``policy/`` is pure: no I/O modules, no ``async def``, no ``await``;
* no module in ``engine/`` is much over 450 lines;
* at most one module-level mutable registry in ``engine/`` (``_runtime._STATE``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "aiofolio"
FACADE = {
    "aiofolio",
    "aiofolio._portal",
    "aiofolio.folio",
    "aiofolio._folio_cache",
    "aiofolio._warm",
    "aiofolio._progress",
    "aiofolio._calls",
    "aiofolio._folio_base",
    "aiofolio._folio_reading",
    "aiofolio._folio_snapshots",
    "aiofolio._folio_curation",
    "aiofolio._folio_display",
    "aiofolio._folio_compat",
    "aiofolio._seed_compat",
    "aiofolio._registry",
    "aiofolio._search",
    "aiofolio.cli",
}
ENGINE_MAX_LINES = 470


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """The aiofolio modules ``name`` imports, anywhere in the file."""
    tree = ast.parse(MODULES[name].read_text())
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def test_no_import_cycles_even_under_type_checking() -> None:
    # Packages import their submodules by design (a package __init__ re-exporting); a cycle
    # through a package's own __init__ is how Python packages work, not a design cycle.
    def edges(name: str) -> set[str]:
        return {t for t in GRAPH[name] if not name.startswith(t + ".")}

    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges(node)):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)
    engine_cycles = [c for c in cycles if any(m.startswith("aiofolio.engine") for m in c)]
    assert engine_cycles == []


def test_the_engine_never_imports_the_facade() -> None:
    bad = {
        name: sorted(GRAPH[name] & FACADE)
        for name in MODULES
        if name.startswith("aiofolio.engine") and GRAPH[name] & FACADE
    }
    assert bad == {}


def test_policy_is_pure() -> None:
    io_modules = {"os", "io", "asyncio", "anyio", "aiofiles", "socket", "shutil", "pathlib"}
    for name, path in MODULES.items():
        if not name.startswith("aiofolio.policy"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not isinstance(node, ast.AsyncFunctionDef | ast.Await), f"{name}: async code"
            if isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & io_modules, name
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in io_modules, name
        # Data types and settings only (no I/O in them): the manifest structs, Settings.
        allowed = {"aiofolio.errors", "aiofolio.config", "aiofolio.bundle.manifest"}
        policy = {m for m in MODULES if m.startswith("aiofolio.policy")}
        assert not (GRAPH[name] - policy - allowed), f"{name} imports {GRAPH[name]}"


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n.startswith("aiofolio.engine")), ids=str
)
def test_engine_modules_stay_readable(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= ENGINE_MAX_LINES, f"{name} has {lines} lines"
    docstring = ast.get_docstring(ast.parse(MODULES[name].read_text()))
    assert docstring, f"{name} has no module docstring saying what it owns"


def test_one_module_level_registry_in_the_engine() -> None:
    mutable_calls = {"dict", "set", "list", "Counter", "WeakKeyDictionary", "WeakSet", "_State"}
    found: list[str] = []
    for name, path in MODULES.items():
        if not name.startswith("aiofolio.engine"):
            continue
        for node in ast.parse(path.read_text()).body:
            value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
            if value is None:
                continue
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            if names == ["__all__"]:
                continue
            mutable = isinstance(value, ast.Dict | ast.Set | ast.List) or (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name | ast.Attribute)
                and (value.func.id if isinstance(value.func, ast.Name) else value.func.attr)
                in mutable_calls
            )
            if mutable:
                found.extend(f"{name}.{n}" for n in names)
    assert found == ["aiofolio.engine._runtime._STATE"]
