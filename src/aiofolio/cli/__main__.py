"""``python -m aiofolio.cli``: the ``aiofolio`` command (the console script's twin)."""

from __future__ import annotations

from aiofolio.cli import main

if __name__ == "__main__":
    main(prog_name="aiofolio")
