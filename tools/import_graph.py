"""The layer's import graph from its syntax trees: cycles and upward imports (nothing is imported or run).

Usage: python -m tools.import_graph [PACKAGE_DIR]   (default: layers/shared/python/connector)

Layers, bottom to top (docs/internals.md, "Import layers"); a module may import its own layer and those below:
  0 contracts   models/, errors, config, settings, timeutil, phones, memo, observability, retry
  1 adapters    aws, store/, alfacrm/, uis/, queues, secrets, eventlog, http_errors
  2 root        runtime, accounts
  3 use cases   deals/, texts/, admin, intake, access, pages, health, replay, lifecycle
  4 edge        http, admin_edge (helpers the API handlers share)
Every import counts, module-level or not, `if TYPE_CHECKING:` included (a type-only cycle is still a cycle a
reader has to untangle). Prints the edges that go up, the cycles (strongly connected components), and a last
line `import-graph: modules=N edges=N upward=N cycles=N`.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "connector"
LAYERS: dict[str, int] = {
    "models": 0,
    "errors": 0,
    "jsonbody": 0,
    "config": 0,
    "settings": 0,
    "timeutil": 0,
    "phones": 0,
    "memo": 0,
    "aws": 1,
    "observability": 0,
    "retry": 0,
    "store": 1,
    "alfacrm": 1,
    "uis": 1,
    "queues": 1,
    "secrets": 1,
    "eventlog": 1,
    "http_errors": 1,
    "runtime": 2,
    "accounts": 2,
    "deals": 3,
    "texts": 3,
    "admin": 3,
    "intake": 3,
    "access": 3,
    "pages": 3,
    "health": 3,
    "replay": 3,
    "lifecycle": 3,
    "http": 4,
    "admin_edge": 4,
}


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def imports(tree: ast.AST, here: str, is_package: bool) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            found.add(stem)
            found |= {f"{stem}.{a.name}" for a in node.names}
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def graph(root: Path) -> dict[str, set[str]]:
    paths = sorted(root.rglob("*.py"))
    modules = {module_name(root, p): p for p in paths}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = imports(tree, name, path.name == "__init__.py")
        # `from connector.deals import rules` names a module; `from connector.deals.rules import x` names x
        edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "layers/shared/python/connector")
    edges = graph(root)
    upward = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = layer(source), layer(target)
            if a is not None and b is not None and b > a:
                upward.append((source, target))
    found = cycles(edges)
    for source, target in upward:
        print(f"upward  {source} → {target}")
    for component in found:
        print("cycle   " + " ↔ ".join(component))
    unplaced = sorted({m.split(".")[1] for m in edges if len(m.split(".")) > 1 and layer(m) is None})
    for name in unplaced:
        print(f"unplaced {PACKAGE}.{name} (no layer in tools/import_graph.py)")
    n_edges = sum(len(t) for t in edges.values())
    print(f"import-graph: modules={len(edges)} edges={n_edges} upward={len(upward)} cycles={len(found)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
