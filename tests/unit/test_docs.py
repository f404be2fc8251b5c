"""What a newcomer reads must hold: links resolve inside the repository, every setting is documented, and
nothing cites a file the repository does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#+\s+(.*)$", re.MULTILINE)
_ANCHOR = re.compile(r'<a id="([^"]+)">')


def _anchors(markdown: str) -> set[str]:
    """GitHub's heading slugs (lower case, punctuation dropped, spaces to hyphens) plus explicit ``<a id>``."""
    slugs = {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
             for heading in _HEADING.findall(markdown)}
    return slugs | set(_ANCHOR.findall(markdown))


def _links() -> list[tuple[Path, str]]:
    return [(doc, target) for doc in DOCS for target in _LINK.findall(doc.read_text(encoding="utf-8"))]


def test_the_docs_have_links_to_check():
    assert len(_links()) > 10


@pytest.mark.parametrize(("doc", "target"), _links(), ids=lambda v: v.name if isinstance(v, Path) else v)
def test_every_link_resolves_inside_the_repository(doc, target):
    assert "://" not in target and not target.startswith("mailto:"), f"{doc.name} links outside: {target}"
    path, _, fragment = target.partition("#")
    resolved = (doc.parent / path).resolve() if path else doc
    assert resolved.is_relative_to(REPO), f"{doc.name}: {target} leaves the repository"
    assert resolved.exists(), f"{doc.name}: {target} does not exist"
    if fragment and resolved.suffix == ".md":
        assert fragment in _anchors(resolved.read_text(encoding="utf-8")), f"{doc.name}: no anchor {target}"


def test_every_setting_the_app_reads_is_in_the_readme_table():
    source = (REPO / "lib" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r'(?:env\.get|required)\("([A-Za-z][A-Za-z0-9_]+)"', source))
    assert "COSMOS_ENDPOINT" in names  # the pattern still finds the settings
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = "\n".join(line for line in readme.splitlines() if line.startswith("| `"))
    missing = sorted(name for name in names
                     if f"`{name}`" not in table and not (name.endswith("_FILE") and f"`{name[:-5]}`" in table))
    assert missing == []


def test_nothing_cites_a_design_file_the_repository_does_not_have():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    outside = re.compile(r"DESIGN\.md|STYLE\.md|\.\./shared|reference/security\.md")
    this_file = Path(__file__).resolve()
    hits = []
    for name in tracked.splitlines():
        path = REPO / name
        if path.suffix not in {".py", ".md", ".sh", ".bicep", ".js", ".json", ".html", ""} or path == this_file:
            continue
        if not path.is_file() or path.name == "package-lock.json":
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        hits += [f"{name}: {m.group(0)}" for m in outside.finditer(text)]
    assert hits == []
