"""``aiofolio.__all__`` stays honest: everything listed exists, everything public is listed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import typing

import aiofolio


def test_all_names_exist_and_are_unique() -> None:
    assert len(aiofolio.__all__) == len(set(aiofolio.__all__))
    for name in aiofolio.__all__:
        assert hasattr(aiofolio, name), name


def test_no_public_name_is_left_out_of_all() -> None:
    public = {
        name
        for name, obj in vars(aiofolio).items()
        if not name.startswith("_") and not inspect.ismodule(obj) and name != "annotations"
    }
    assert public <= set(aiofolio.__all__), public - set(aiofolio.__all__)


def test_every_module_says_what_it_owns() -> None:
    for info in pkgutil.walk_packages(aiofolio.__path__, prefix="aiofolio."):
        module = importlib.import_module(info.name)
        assert module.__doc__, info.name
        assert len(module.__doc__.strip()) > 20, info.name


def test_py_typed_marker_ships() -> None:
    from importlib.resources import files

    assert files("aiofolio").joinpath("py.typed").is_file()


def _aiofolio_types(hint: object) -> set[type]:
    """The classes defined in aiofolio that a type hint mentions (through unions, generics)."""
    found: set[type] = set()
    if isinstance(hint, type) and hint.__module__.startswith("aiofolio"):
        found.add(hint)
    for arg in typing.get_args(hint):
        found |= _aiofolio_types(arg)
    return found


def _hints(fn: object) -> dict[str, object]:
    from aiofolio.bundle import Item, Manifest
    from aiofolio.config import Settings
    from aiofolio.engine.session import BundleSession

    target = inspect.unwrap(getattr(fn, "__func__", fn))  # type: ignore[arg-type]
    local = {
        "Self": aiofolio.DataFolio,
        "DataFolio": aiofolio.DataFolio,
        "Item": Item,
        "Manifest": Manifest,
        "Settings": Settings,
        "BundleSession": BundleSession,
    }
    return typing.get_type_hints(target, localns=local)


def test_every_type_a_public_method_takes_or_returns_is_exported() -> None:
    used: dict[type, str] = {}
    for cls in (aiofolio.DataFolio, aiofolio.MetadataDict, aiofolio.WarmHandle):
        for name in dir(cls):
            if name.startswith("_"):
                continue
            attr = inspect.getattr_static(cls, name)
            fn = attr.fget if isinstance(attr, property) else getattr(cls, name)
            if not callable(fn) or isinstance(fn, type):
                continue
            for hint in _hints(fn).values():
                for found in _aiofolio_types(hint):
                    used.setdefault(found, f"{cls.__name__}.{name}")
    assert {aiofolio.Settings, aiofolio.MetadataDict, aiofolio.WarmHandle} <= set(used)
    for found, where in used.items():
        assert found.__name__ in aiofolio.__all__, f"{found} (used by {where}) is not exported"
        assert getattr(aiofolio, found.__name__) is found


def test_annotation_types_are_exported() -> None:
    from aiofolio._warm import WarmHandle
    from aiofolio.bundle import Item
    from aiofolio.config import Settings
    from aiofolio.engine.manifests import InvalidationCallback
    from aiofolio.engine.revalidate import RefreshOutcome
    from aiofolio.engine.warm import WarmProgress, WarmResult
    from aiofolio.folio import MetadataDict

    assert aiofolio.Settings is Settings
    assert aiofolio.MetadataDict is MetadataDict
    assert aiofolio.Item is Item
    assert aiofolio.InvalidationCallback is InvalidationCallback
    assert aiofolio.RefreshOutcome is RefreshOutcome
    assert (aiofolio.WarmHandle, aiofolio.WarmProgress, aiofolio.WarmResult) == (
        WarmHandle,
        WarmProgress,
        WarmResult,
    )
    for name in ("Settings", "MetadataDict", "Item", "InvalidationCallback", "WarmHandle"):
        assert name in aiofolio.__all__
