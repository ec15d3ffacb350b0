"""Markdown pages from templates: what every benchmark's report is made of.

A page's prose lives in bench/templates/<page>.md, cut into named `<!-- section: NAME -->`
parts, each a `string.Template`; the code only computes the values and the tables, so a figure
is never formatted twice and a missing value is an error, not a "$name" in the page.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).resolve().parent / "templates"
SECTION = re.compile(r"^<!-- section: (\w+) -->\n", re.MULTILINE)


class Sections:
    def __init__(self, path: Path):
        """The template file's sections by name (text before the first marker is a comment)."""
        parts = SECTION.split(path.read_text())[1:]
        self.templates = {name: Template(body.strip("\n")) for name, body in zip(parts[::2], parts[1::2])}

    def __call__(self, name: str, **values) -> str:
        """One section with every placeholder filled (a missing value is a KeyError)."""
        return self.templates[name].substitute(values)


def _cell(value) -> str:
    return " |" if value == "" else f" {value} |"


def table(header: list[str], align: str, rows: list[list]) -> str:
    """A Markdown table; align has one letter per column: l(eft) or r(ight)."""
    lines = ["|" + "".join(map(_cell, header)), "|" + "".join("---:|" if a == "r" else "---|" for a in align)]
    return "\n".join(lines + ["|" + "".join(_cell(str(c)) for c in row) for row in rows])


def num(x, digits: int = 1) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def document(parts: list[str]) -> str:
    """Sections joined by a blank line; the blank lines that empty placeholders leave collapse."""
    text = "\n\n".join(p for p in parts if p)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n") + "\n"
