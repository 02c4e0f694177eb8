"""Count the imports between Lattice's apps: cross-app import statements, those inside
functions, module paths of another app written in strings, and the cycles between apps.

    python scripts/import_graph.py [ROOT]

The layer contract itself is import-linter's (pyproject.toml, run by make lint); this script
gives the figures the structure issue quotes (the strongly connected groups are the cycles).
Imports under ``if TYPE_CHECKING:`` are listed apart: they never run.
"""

from __future__ import annotations

import ast
import collections
import sys
from pathlib import Path


def _is_type_checking(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def _in_function(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            return True
    return False


def _cycles(graph: dict[str, set[str]], nodes: list[str]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one app."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            groups.append(sorted(group))

    for v in nodes:
        if v not in index:
            visit(v)
    return [g for g in groups if len(g) > 1]


def main(root: Path) -> int:  # noqa: C901, PLR0912 - one pass that counts four things
    apps_dir = root / "apps"
    apps = sorted(p.name for p in apps_dir.iterdir() if (p / "__init__.py").exists())
    edges: collections.Counter[tuple[str, str]] = collections.Counter()
    in_function: list[str] = []
    type_checking = 0
    strings: list[str] = []
    for path in sorted(apps_dir.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        source = path.relative_to(apps_dir).parts[0]
        tree = ast.parse(path.read_text())
        parents = {c: n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts = node.value.split(".")
                if (
                    parts[0] == "apps"
                    and len(parts) > 2
                    and parts[1] in apps
                    and parts[1] != source
                ):
                    strings.append(f"{path.relative_to(root)}: {node.value}")
                continue
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] != "apps" or len(parts) < 2 or parts[1] == source:
                    continue
                if _is_type_checking(node, parents):
                    type_checking += 1
                    continue
                edges[source, parts[1]] += 1
                if _in_function(node, parents):
                    in_function.append(f"{path.relative_to(root)}:{node.lineno}: {module}")
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    cycles = _cycles(graph, apps)
    print(f"apps: {len(apps)}")
    print(f"cross-app import statements: {sum(edges.values())} over {len(edges)} app pairs")
    for (a, b), n in sorted(edges.items()):
        print(f"  {a} -> {b}: {n}")
    print(f"  (and {type_checking} under TYPE_CHECKING, not counted)")
    print(f"cross-app imports inside functions: {len(in_function)}")
    for line in in_function:
        print(f"  {line}")
    print(f"another app's module path in a string: {len(strings)}")
    for line in strings:
        print(f"  {line}")
    print(f"cycles between apps (strongly connected groups): {len(cycles)}")
    for group in cycles:
        print("  " + ", ".join(group))
    return 1 if cycles else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
