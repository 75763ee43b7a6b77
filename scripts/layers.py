#!/usr/bin/env python3
"""The crate's import graph between its top-level modules (`src/<module>.rs` or `src/<module>/`):
which module names which (`use crate::X`, `use crate::{X, Y}`, `crate::X::...`; `super::`
reaching the crate root is not followed), checked against the map in `src/lib.rs`.

    scripts/layers.py            # the layers, the edges, and what is wrong; exit 1 if anything
    scripts/layers.py --dot      # the graph for graphviz

It fails (exit 1) on a circle (strongly connected components of more than one module), on an
import of a module in the same or a higher layer, on a module the map leaves out or names
without a module behind it, and on a map entry whose `(imports ...)` is not exactly what the
module imports.

Test code (`#[cfg(test)]` modules, `tests.rs`, `tests/` folders) is left out: tests may import
upward.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
REF = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
GROUP = re.compile(r"\bcrate::\{([^}]*)\}")


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
        named = REF.findall(text)
        for group in GROUP.findall(text):
            named += [item.strip().split("::")[0].split(" ")[0] for item in group.split(",") if item.strip()]
        targets = {m for m in named if m != module and m != "self"}
        edges.setdefault(module, set()).update(targets)
    return edges


LIB = SRC / "lib.rs"
LAYER = re.compile(r"^### Layer (\d+): (.*)$")
ENTRY = re.compile(r"^- \[`([a-z_][a-z0-9_]*)`\] \(imports ([^)]*)\)")


def declared() -> tuple[dict[str, int], dict[str, set[str]], list[str]]:
    """lib.rs's map: each module's layer, the imports it names, and the layers' titles."""
    doc = [line.removeprefix("//!").removeprefix(" ") for line in LIB.read_text().splitlines()
           if line.startswith("//!")]
    # One entry per `- [`module`]` line and its indented continuation lines.
    joined: list[str] = []
    for line in doc:
        if line.startswith("  ") and joined and joined[-1].startswith("- "):
            joined[-1] += " " + line.strip()
        else:
            joined.append(line)
    layers: dict[str, int] = {}
    imports: dict[str, set[str]] = {}
    titles: list[str] = []
    layer = None
    for line in joined:
        if m := LAYER.match(line):
            layer = int(m.group(1))
            titles.append(m.group(2))
        elif (m := ENTRY.match(line)) and layer is not None:
            layers[m.group(1)] = layer
            names = m.group(2).strip()
            imports[m.group(1)] = set() if names == "nothing" else set(re.findall(r"`([a-z_][a-z0-9_]*)`", names))
    return layers, imports, titles


def problems(edges: dict[str, set[str]]) -> list[str]:
    layers, imports, _ = declared()
    out = []
    for module in sorted(set(edges) - set(layers)):
        out.append(f"{module}: not in src/lib.rs's map")
    for module in sorted(set(layers) - set(edges)):
        out.append(f"{module}: in src/lib.rs's map, but there is no such module")
    for module in sorted(set(edges) & set(layers)):
        said, real = imports[module], edges[module]
        if said != real:
            extra = ", ".join(sorted(real - said)) or "-"
            gone = ", ".join(sorted(said - real)) or "-"
            out.append(f"{module}: the map's imports are not the code's (also imports: {extra}; no longer: {gone})")
        for target in sorted(real):
            if target in layers and layers[target] >= layers[module]:
                out.append(
                    f"{module} (layer {layers[module]}) imports {target} (layer {layers[target]}): "
                    "only lower layers may be imported"
                )
    return out


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
    layers, _, titles = declared()
    for n, title in enumerate(titles):
        print(f"layer {n}: {title}")
        for a in sorted(m for m in edges if layers.get(m) == n):
            print(f"  {a} -> {', '.join(sorted(edges[a])) or '(nothing)'}")
    wrong = [f"circle: {', '.join(comp)}" for comp in circles(edges)] + problems(edges)
    print()
    if not wrong:
        print(f"{len(edges)} modules in {len(titles)} layers: no circles, every import goes to a lower layer, "
              "and src/lib.rs's map is the code's")
        return 0
    for line in wrong:
        print(line)
    return 1


if __name__ == "__main__":
    sys.exit(main())
