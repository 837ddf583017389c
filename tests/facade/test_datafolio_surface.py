"""aiofolio's ``DataFolio`` is a drop-in for ``datafolio.DataFolio`` 2.3.0, name by name.

Read off the installed datafolio with ``inspect`` (its behaviour is the spec):

* every public name of ``datafolio.DataFolio`` exists on ``aiofolio.DataFolio``, as the same
  kind of attribute (method, classmethod, property);
* every method takes the same parameters in the same order, of the same kind and with the same
  defaults; aiofolio may add keyword-only parameters after them (``**opts`` where datafolio has
  ``**type_opts`` too);
* the package-level helpers datafolio exports (``datafolio.__all__``) exist in aiofolio with
  compatible signatures, and its exception classes keep their builtin bases.
"""

from __future__ import annotations

import inspect
from typing import Any

import datafolio
import pytest

import aiofolio
from aiofolio import DataFolio

P = inspect.Parameter


def _public_names(cls: type) -> list[str]:
    return sorted(n for n in dir(cls) if not n.startswith("_"))


def _kind(cls: type, name: str) -> str:
    attr = inspect.getattr_static(cls, name)
    if isinstance(attr, property):
        return "property"
    if isinstance(attr, classmethod):
        return "classmethod"
    if isinstance(attr, staticmethod):
        return "staticmethod"
    return "method" if callable(attr) or hasattr(attr, "__get__") else "attribute"


def _compatible(theirs: inspect.Signature, ours: inspect.Signature) -> list[str]:
    """What keeps ``ours`` from accepting every call ``theirs`` accepts, the same way."""
    problems: list[str] = []
    their_params = list(theirs.parameters.values())
    our_params = list(ours.parameters.values())
    our_var_kw = any(p.kind is P.VAR_KEYWORD for p in our_params)
    fixed = [p for p in their_params if p.kind is not P.VAR_KEYWORD]
    for index, theirs_p in enumerate(fixed):
        if index >= len(our_params):
            problems.append(f"missing parameter {theirs_p.name!r}")
            continue
        ours_p = our_params[index]
        if theirs_p.kind is P.KEYWORD_ONLY:
            # Keyword-only: the order does not matter, the name, kind and default do.
            match = ours.parameters.get(theirs_p.name)
            if match is None:
                problems.append(f"missing keyword-only {theirs_p.name!r}")
            elif match.kind is not P.KEYWORD_ONLY:
                problems.append(f"{theirs_p.name!r} is {match.kind.description}, not keyword-only")
            elif match.default != theirs_p.default:
                problems.append(
                    f"default of {theirs_p.name!r}: {match.default!r} != {theirs_p.default!r}"
                )
            continue
        if ours_p.name != theirs_p.name:
            problems.append(f"parameter {index}: {ours_p.name!r} != {theirs_p.name!r}")
        elif ours_p.kind is not theirs_p.kind:
            problems.append(
                f"{theirs_p.name!r}: {ours_p.kind.description} != {theirs_p.kind.description}"
            )
        elif ours_p.default != theirs_p.default:
            problems.append(
                f"default of {theirs_p.name!r}: {ours_p.default!r} != {theirs_p.default!r}"
            )
    if any(p.kind is P.VAR_KEYWORD for p in their_params) and not our_var_kw:
        problems.append("datafolio takes **kwargs; aiofolio does not")
    positional = [p for p in fixed if p.kind is not P.KEYWORD_ONLY]
    for extra in our_params[len(positional) :]:
        if extra.kind in (P.KEYWORD_ONLY, P.VAR_KEYWORD):
            continue
        if extra.name in theirs.parameters:
            continue
        problems.append(f"extra parameter {extra.name!r} is not keyword-only")
    return problems


THEIR_NAMES = _public_names(datafolio.DataFolio)


def test_the_spec_is_datafolio_2_3() -> None:
    assert datafolio.__version__ == "2.3.0"
    assert len(THEIR_NAMES) > 40


@pytest.mark.parametrize("name", THEIR_NAMES)
def test_every_public_name_exists_as_the_same_kind(name: str) -> None:
    assert hasattr(DataFolio, name), f"aiofolio.DataFolio has no {name!r}"
    assert _kind(DataFolio, name) == _kind(datafolio.DataFolio, name), name


@pytest.mark.parametrize(
    "name",
    [n for n in THEIR_NAMES if _kind(datafolio.DataFolio, n) != "property"] + ["__init__"],
)
def test_every_method_has_a_compatible_signature(name: str) -> None:
    ours_fn: Any = getattr(DataFolio, name, None)
    assert ours_fn is not None, f"aiofolio.DataFolio has no {name!r}"
    theirs = inspect.signature(getattr(datafolio.DataFolio, name))
    ours = inspect.signature(ours_fn)
    assert _compatible(theirs, ours) == [], name


@pytest.mark.parametrize("name", ["__contains__", "__repr__"])
def test_the_dunders_datafolio_defines_exist(name: str) -> None:
    assert name in vars(DataFolio) or any(name in vars(c) for c in DataFolio.__mro__[:-1])


@pytest.mark.parametrize("name", [n for n in datafolio.__all__ if n != "__version__"])
def test_every_package_level_name_exists_compatibly(name: str) -> None:
    theirs = getattr(datafolio, name)
    assert hasattr(aiofolio, name), f"aiofolio has no {name!r}"
    assert name in aiofolio.__all__
    ours = getattr(aiofolio, name)
    if isinstance(theirs, type):
        assert isinstance(ours, type)
        for base in theirs.__mro__:
            if base.__module__ == "builtins" and base is not object:
                assert issubclass(ours, base), (name, base)
        return
    assert _compatible(inspect.signature(theirs), inspect.signature(ours)) == [], name


def test_the_exception_hierarchy_matches() -> None:
    assert issubclass(aiofolio.ManifestReadError, aiofolio.ConcurrentWriteError)
    for cls in (
        aiofolio.ConcurrentWriteError,
        aiofolio.ManifestReadError,
        aiofolio.UnsupportedManifestVersionError,
        aiofolio.ReadOnlyError,
    ):
        assert issubclass(cls, RuntimeError), cls
        assert issubclass(cls, aiofolio.AiofolioError), cls


def test_the_checker_itself_catches_incompatibilities() -> None:
    def theirs(self: Any, a: int, b: int = 1, *, c: bool = False, **kw: Any) -> None: ...

    def same(self: Any, a: int, b: int = 1, *, c: bool = False, d: int = 0, **kw: Any) -> None: ...

    def renamed(self: Any, a: int, bb: int = 1, *, c: bool = False, **kw: Any) -> None: ...

    def default(self: Any, a: int, b: int = 2, *, c: bool = False, **kw: Any) -> None: ...

    def extra_positional(self: Any, a: int, b: int = 1, e: int = 0, *, c: bool = False) -> None:
        pass

    def no_kw(self: Any, a: int, b: int = 1, *, c: bool = False) -> None: ...

    sig = inspect.signature
    assert _compatible(sig(theirs), sig(same)) == []
    assert _compatible(sig(theirs), sig(renamed))
    assert _compatible(sig(theirs), sig(default))
    assert _compatible(sig(theirs), sig(extra_positional))
    assert _compatible(sig(theirs), sig(no_kw))
