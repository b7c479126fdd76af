#!/usr/bin/env python3
"""Prints the import graph of src/ between top-level modules and fails if it has a cycle.

Every `crate::NAME` path in a file (in `use` lines and inline paths alike) is an edge from the
file's top-level module to NAME. Test-only code (`#[cfg(test)] mod tests` at the bottom of a
file, and src/testing/) is left out: tests may reach anywhere.

    python3 scripts/import-graph.py          # edges, then "no cycle" or the cycle found
    python3 scripts/import-graph.py --dot    # the graph in Graphviz dot
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::c}` names several modules in one path.
GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def module_of(path: pathlib.Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def code_of(text: str) -> str:
    # Drop the unit tests at the bottom of a file.
    cut = re.search(r"^#\[cfg\(test\)\]\s*\nmod tests", text, re.M)
    text = text[: cut.start()] if cut else text
    # Drop comments (doc links such as [`crate::cache`] are not imports).
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.rs")):
        module = module_of(path)
        if module in ("testing", "main", "lib"):
            continue
        code = code_of(path.read_text())
        names = set(PATH.findall(code))
        for group in GROUP.findall(code):
            for part in group.split(","):
                head = part.strip().split("::")[0].strip()
                if head and head != "self":
                    names.add(head)
        names.discard(module)
        names.discard("testing")
        edges.setdefault(module, set()).update(names)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def main() -> int:
    edges = graph()
    if "--dot" in sys.argv:
        print("digraph imports {")
        for a in sorted(edges):
            for b in sorted(edges[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    for a in sorted(edges):
        print(f"{a:12} -> {', '.join(sorted(edges[a])) or '(nothing)'}")
    cycle = find_cycle(edges)
    if cycle:
        print("cycle: " + " -> ".join(cycle))
        return 1
    print("no cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
