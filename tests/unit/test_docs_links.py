"""The documentation stands alone in a clone: every relative link (and its #anchor) resolves to a file in
the repository, nothing points outside it, and every repository path the docs name in `code` exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.M)
EXTERNAL = ("http://", "https://", "mailto:")


def _repository_files() -> set[str]:
    """What a clone has: tracked files, and new ones git would commit (not ignored ones such as var/)."""
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return set(out.split())


def _documents() -> list[Path]:
    docs = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "benchmarks" / "README.md"]
    docs += sorted((ROOT / "docs").rglob("*.md")) + sorted((ROOT / "deploy").glob("*.md"))
    docs += sorted((ROOT / "benchmarks").glob("*.md"))
    return sorted({d for d in docs if d.is_file()})


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in HEADING.findall(FENCE.sub("", doc.read_text())):
        slug = _slug(heading)
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _prose(doc: Path) -> str:
    return FENCE.sub("", doc.read_text())


DOCUMENTS = _documents()


def test_the_documents_exist() -> None:
    names = {d.relative_to(ROOT).as_posix() for d in DOCUMENTS}
    assert {"README.md", "ARCHITECTURE.md", "docs/buyer.md", "docs/seller.md", "docs/operator.md"} <= names


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(doc: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(doc)):
        if target.startswith(EXTERNAL):
            continue
        path_part, _, anchor = target.partition("#")
        dest = (doc.parent / path_part).resolve() if path_part else doc
        if not dest.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.relative_to(ROOT)})")
    assert not broken, f"{doc.relative_to(ROOT)}: dead links: {broken}"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_named_repository_paths_exist(doc: Path) -> None:
    """`python/dragonfly/gateway/chat.py`, `deploy/`, `tests/e2e/`: a path under a tracked top-level
    folder must be there. Runtime paths (`var/…`) and module names are not repository paths."""
    files = _repository_files()
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    top = {d for d in dirs if "/" not in d}
    missing = []
    for span in CODE_SPAN.findall(doc.read_text()):
        token = span.split()[0].rstrip(",.:;)") if span.split() else ""
        token = token.split(":", 1)[0]  # `gateway/app.py:create_app`
        if "/" not in token or token.split("/", 1)[0] not in top or any(c in token for c in "*?<>{}…$"):
            continue
        path = token.rstrip("/")
        if path not in files and path not in dirs:
            missing.append(token)
    assert not missing, f"{doc.relative_to(ROOT)} names paths a clone does not have: {missing}"


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda d: d.relative_to(ROOT).as_posix())
def test_nothing_points_outside_the_repository(doc: Path) -> None:
    assert "../shared" not in doc.read_text(), f"{doc.relative_to(ROOT)} refers to ../shared"
