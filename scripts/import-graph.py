#!/usr/bin/env python3
"""Prints the import graph of src/ between top-level modules and fails if it has a cycle; then
does the same inside each module that is a folder, between its files.

Every `crate::NAME` path in a file (in `use` lines and inline paths alike) is an edge from the
file's top-level module to NAME. Inside a folder (`config/`, `issuer/`, ...), `super::NAME` and
`crate::FOLDER::NAME` from one of its files (or sub-folders) to a sibling file or sub-folder
NAME is an edge between the two; `mod.rs` is the folder's hub and not a node (names it
re-exports do not count as edges). Test-only code (`#[cfg(test)] mod tests` at the bottom of a
file, a `tests.rs` beside it, and src/testing/) is left out: tests may reach anywhere.

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


def inner_graph(folder: pathlib.Path) -> dict[str, set[str]]:
    """Edges between the files (and sub-folders) of `folder`, mod.rs left out."""
    nodes = {p.stem for p in folder.glob("*.rs") if p.name not in ("mod.rs", "tests.rs")}
    nodes |= {p.name for p in folder.iterdir() if p.is_dir()}
    edges: dict[str, set[str]] = {n: set() for n in nodes}
    name = folder.name
    for path in sorted(folder.rglob("*.rs")):
        rel = path.relative_to(folder)
        node = rel.parts[0].removesuffix(".rs")
        if node not in nodes:
            continue
        code = code_of(path.read_text())
        # super:: from a file in a sub-folder names the sub-folder (from its mod.rs, this one)
        depth = len(rel.parts) - 1 - (1 if path.name == "mod.rs" else 0)
        refs = set()
        up = r"\bsuper::" if depth == 0 else r"\bsuper::super::"
        refs |= set(re.findall(up + r"([a-z_][a-z0-9_]*)", code))
        for group in re.findall(up + r"\{([^}]*)\}", code, re.S):
            refs |= {part.strip().split("::")[0].strip() for part in group.split(",")}
        refs |= set(re.findall(rf"\bcrate::{name}::([a-z_][a-z0-9_]*)", code))
        edges[node] |= {r for r in refs if r in nodes and r != node}
    return edges


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
    failed = False
    for folder in sorted(p for p in SRC.iterdir() if p.is_dir() and p.name != "testing"):
        inner = inner_graph(folder)
        print(f"\ninside {folder.name}/:")
        for a in sorted(inner):
            print(f"  {a:14} -> {', '.join(sorted(inner[a])) or '(nothing)'}")
        cycle = find_cycle(inner)
        if cycle:
            print(f"  cycle: {' -> '.join(cycle)}")
            failed = True
        else:
            print("  no cycle")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
