"""The client package imports nothing of the server's (apps, config, Django): it runs where
only httpx, rich and click are installed. Every import statement under
clients/python/src is read, including those under ``if TYPE_CHECKING``."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

SOURCE = ROOT / "clients" / "python" / "src"
SERVER = {"apps", "config", "django", "rest_framework", "celery", "channels", "tests"}


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_no_client_module_imports_the_servers_code() -> None:
    modules = sorted(SOURCE.rglob("*.py"))
    assert len(modules) > 5, modules  # the walk found the package

    offending = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in modules
        for line, name in _imported(ast.parse(path.read_text(), str(path)))
        if name.split(".")[0] in SERVER
    ]

    assert offending == []


def test_the_walk_sees_an_import_of_django() -> None:
    tree = ast.parse("import os\nif True:\n    from django.conf import settings\n")

    assert (3, "django.conf") in _imported(tree)
