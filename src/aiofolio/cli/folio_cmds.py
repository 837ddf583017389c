"""(placeholder: filled by the CLI work of issue 14)."""

from __future__ import annotations

import click

__all__ = ["register"]


def register(main: click.Group) -> None:
    """Add this module's commands to the ``aiofolio`` group."""
