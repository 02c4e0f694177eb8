"""The ``lattice`` command (click + rich) over the SDK: every command calls lattice.Client."""
