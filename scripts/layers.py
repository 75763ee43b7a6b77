#!/usr/bin/env python3
"""The crate's import graph between its top-level modules (`src/<module>.rs` or `src/<module>/`):
which module names which (`use crate::X`, `crate::X::...`, `super::` reaching the crate root is
not followed), and every circle in it (strongly connected components of more than one module).

    scripts/layers.py            # the edges and the circles; exits 1 when there is a circle
    scripts/layers.py --dot      # the graph for graphviz

Test code (`#[cfg(test)]` modules, `tests.rs`, `tests/` folders) is left out: tests may import
upward.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
REF = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def without_tests(text: str) -> str:
    """The text up to the first `#[cfg(test)]` (the house keeps test modules last)."""
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in SRC.rglob("*.rs"):
        if path.name in ("main.rs", "lib.rs") and path.parent == SRC:
            continue
        if path.name == "tests.rs" or "tests" in path.relative_to(SRC).parts[:-1]:
            continue
        module = module_of(path)
        text = without_tests(path.read_text())
        # Strip comments: doc links name modules without importing them.
        text = "\n".join(line.split("//")[0] for line in text.splitlines())
        targets = {m for m in REF.findall(text) if m != module}
        edges.setdefault(module, set()).update(targets)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main() -> int:
    edges = graph()
    if "--dot" in sys.argv:
        print("digraph crate {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    for a in sorted(edges):
        print(f"{a} -> {', '.join(sorted(edges[a])) or '(nothing)'}")
    found = circles(edges)
    print()
    if not found:
        print("no circles")
        return 0
    for comp in found:
        print("circle: " + ", ".join(comp))
    return 1


if __name__ == "__main__":
    sys.exit(main())
