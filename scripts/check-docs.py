#!/usr/bin/env python3
"""Checks every link of the README and the book (docs/*.md) that stays in the repository: the
file it names exists, and the #anchor it names is a heading of that file (as GitHub and mdBook
make anchors from headings). Links to the web are left alone: CI has no internet to follow them.
Also checks that docs/SUMMARY.md lists every page of the book, and that each page it lists
exists.

    python3 scripts/check-docs.py        # prints what is broken, exits 1 if anything is
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def slug(heading: str) -> str:
    """The anchor GitHub (and mdBook) give a heading."""
    text = re.sub(r"`|\*\*|\*|_(?=\w)|(?<=\w)_", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link's text only
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def anchors(path: pathlib.Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path.read_text()):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def check(page: pathlib.Path, problems: list[str]) -> int:
    links = 0
    for number, line in enumerate(prose(page.read_text()), 1):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            links += 1
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)}: link to {target}"
            if not dest.exists():
                problems.append(f"{where}: {path} does not exist")
                continue
            if anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                problems.append(f"{where}: no heading makes #{anchor} in {dest.relative_to(ROOT)}")
    return links


def main() -> int:
    problems: list[str] = []
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    links = sum(check(page, problems) for page in pages)
    summary = ROOT / "docs" / "SUMMARY.md"
    if summary.exists():
        listed = set(re.findall(r"\]\(([^)#]+\.md)\)", summary.read_text()))
        for page in sorted((ROOT / "docs").glob("*.md")):
            if page.name != "SUMMARY.md" and page.name not in listed:
                problems.append(f"docs/{page.name} is not in docs/SUMMARY.md")
        for name in sorted(listed):
            if not (ROOT / "docs" / name).exists():
                problems.append(f"docs/SUMMARY.md lists {name}, which does not exist")
    for p in problems:
        print(p)
    print(f"{len(pages)} pages, {links} links in the repository checked, {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
