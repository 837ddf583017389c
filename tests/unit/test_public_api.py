"""``aiofolio.__all__`` stays honest: everything listed exists, everything public is listed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

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
