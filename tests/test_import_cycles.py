"""No two first-party files import each other, directly or through others.

Every import counts, those inside functions too: a lazy import delays a circle but does
not remove it (the two files still cannot be read, tested or moved apart). The rule is
stated in docs/ARCHITECTURE.md.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("app", "labeling", "judges", "training", "data")
# Circles not broken yet, each with its way out. The list only shrinks: a circle that is
# gone must leave it (the test says so), and a new one fails the test.
KNOWN_CIRCLES: dict[frozenset[str], str] = {}  # none left; a new one fails below


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def first_party_files() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(path: Path, name: str, known: set[str]) -> set[str]:
    """The first-party modules (files) that the file `name` imports, anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from app.ui import judge_jobs` imports the file app/ui/judge_jobs.py
            targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = targets or [base]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` where c is a name
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(files: dict[str, Path]) -> dict[str, set[str]]:
    known = set(files)
    return {name: imports_of(path, name, known) for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected group of more than one file (Tarjan), as one cycle in it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [one_cycle(graph, group) for group in groups]


def one_cycle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """A shortest path from the group's first file back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for node in frontier:
            for nxt in sorted(graph[node] & members):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    nxt_frontier.append(nxt)
        frontier = nxt_frontier
    return group


def test_no_import_cycles() -> None:
    found = cycles(import_graph(first_party_files()))
    new = [c for c in found if frozenset(c) not in KNOWN_CIRCLES]
    assert new == [], "import circles:\n" + "\n".join(" -> ".join(c) for c in new)
    gone = set(KNOWN_CIRCLES) - {frozenset(c) for c in found}
    assert not gone, f"these circles are broken now; drop them from KNOWN_CIRCLES: {gone}"


def test_the_checker_sees_a_cycle(tmp_path: Path) -> None:
    """Guard against a checker that can never fail."""
    (tmp_path / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "b.py").write_text("from pkg.c import x\n")
    (tmp_path / "c.py").write_text("import pkg.a\n")
    known = {"pkg.a", "pkg.b", "pkg.c"}
    graph = {n: imports_of(tmp_path / f"{n[4:]}.py", n, known) for n in known}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
