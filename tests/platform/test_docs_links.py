"""The guides in docs/ link each other by relative paths; a link must name a file that is
there, and a guide that depends on another area links it (models -> deployments)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _relative_links(page: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(page.read_text())
        if "://" not in target and not target.startswith("mailto:")
    ]


def test_every_relative_link_in_the_docs_names_a_file_that_is_there() -> None:
    broken = [
        f"{page.name}: {target}"
        for page in sorted(DOCS.glob("*.md"))
        for target in _relative_links(page)
        if not (page.parent / target).exists()
    ]
    assert broken == []


def test_the_models_guide_links_the_deployments_that_serve_its_versions() -> None:
    page = DOCS / "models.md"
    assert "deployments.md" in _relative_links(page)
    assert "a later issue" not in page.read_text()
