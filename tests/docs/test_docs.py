"""The documentation: the README as a front door whose every link resolves and whose figures are the
benchmark pages' own; the reference pages as generated from the code (scripts/gen_docs.py); and the
site, built by `mkdocs build --strict` exactly as `make docs` builds it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import unicodedata

from conftest import REPO

README = REPO / "README.md"
REFERENCE = REPO / "docs" / "reference"
GENERATED = ("embed-corpus.md", "settings.md", "api-fields.md")
README_MAX_LINES = 200
# [text](target): inline links and images, not inside code spans; targets without spaces.
LINK = re.compile(r"!?\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^)\s]+)\)")


def without_code(markdown: str) -> str:
    """The text outside fenced blocks and code spans, where links are links."""
    markdown = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", markdown)


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings: lower case, punctuation dropped, spaces to hyphens,
    -1, -2... on repeats (github-slugger's rules)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    for line in re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M).splitlines():
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not heading:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1))  # a link's text only
        slug = "".join(ch for ch in text.lower()
                       if ch in " -_" or unicodedata.category(ch)[0] in "LNM").replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def readme_links() -> list[tuple[str, str]]:
    return [(text, target) for text, target in LINK.findall(without_code(README.read_text()))]


def test_given_the_readme_then_it_fits_on_a_screen_or_two():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    for command in ("make setup", "make test", "make serve", "make lambda-local", "embed-corpus",
                    "scripts/deploy.sh deploy"):
        assert command in README.read_text(), command


def test_given_the_readme_then_every_link_points_at_a_file_or_heading_that_exists():
    links = readme_links()
    assert len(links) > 20
    broken = []
    for text, target in links:
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        file = (README.parent / path).resolve() if path else README
        if not file.exists() or REPO not in (file, *file.parents):
            broken.append(f"[{text}]({target}): no file {path}")
        elif anchor and (file.suffix != ".md" or anchor not in github_anchors(file.read_text())):
            broken.append(f"[{text}]({target}): no heading #{anchor} in {path or 'README.md'}")
    assert broken == []


def test_given_the_readme_figures_then_each_is_copied_from_the_page_it_links():
    """Every number the README links (the headline table, the ratios) is written exactly so on its page."""
    figures = [(text.strip("*"), target.partition("#")[0]) for text, target in readme_links()
               if re.fullmatch(r"\**\$?[\d.,]+x?\**", text)]
    assert len(figures) >= 18
    missing = [f"{figure} not in {page}" for figure, page in figures
               if not re.search(rf"(?<![\d.]){re.escape(figure)}(?![\d])", (REPO / page).read_text())]
    assert missing == []


def test_given_the_parser_settings_and_schemas_then_the_reference_docs_are_regenerated(tmp_path):
    """docs/reference/ is what scripts/gen_docs.py writes now: change a flag, a setting or a request field
    without `make docs` and this fails."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "gen_docs.py"), "--out", str(tmp_path)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for name in GENERATED:
        assert (tmp_path / name).read_text() == (REFERENCE / name).read_text(), (
            f"docs/reference/{name} is stale: run `make docs` (or .venv/bin/python scripts/gen_docs.py)"
        )


def test_given_the_docs_then_mkdocs_builds_the_site_strictly(tmp_path):
    """A broken link or anchor, a page missing from the nav, a missing snippet: each fails the build."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    for page in ("index.html", "api/index.html", "lambda/index.html", "terraform/index.html",
                 "corpus/index.html", "frameworks/index.html", "reference/settings/index.html",
                 "benchmarks/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    # The included files are really there: Terraform's README and the generated usage block.
    assert "Lambda deployment (Terraform)" in (tmp_path / "site" / "terraform" / "index.html").read_text()
    assert "usage: embed-corpus" in (tmp_path / "site" / "corpus" / "index.html").read_text()
