"""The version of aiofolio (one place; the package and the engine read it)."""

__version__ = "0.1.0"
