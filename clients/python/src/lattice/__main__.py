"""``python -m lattice``: the ``lattice`` command, for when its script is not on PATH."""

from __future__ import annotations

from lattice.cli.main import main

if __name__ == "__main__":
    main()
