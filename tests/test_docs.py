"""The design the code cites is in the repository: every citation of the design names
docs/DESIGN.md, and a cited section exists there."""

from __future__ import annotations

import re
from pathlib import Path

from helpers.checkout import project_files

REPO = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"([\w./-]*DESIGN\.md)(?: section (\d+))?")


def test_design_citations_point_to_docs_design_md() -> None:
    design = (REPO / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^## (\d+)\. ", design, flags=re.MULTILINE))
    cited, wrong = 0, []
    for name in project_files():
        path = REPO / name
        if path.suffix not in (".py", ".md", ".yaml", ".toml") or name == "tests/test_docs.py":
            continue
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target, section in CITATION.findall(line):
                cited += 1
                if target != "docs/DESIGN.md":
                    wrong.append(f"{name}:{line_no}: cites {target}, not docs/DESIGN.md")
                if section and section not in sections:
                    wrong.append(f"{name}:{line_no}: docs/DESIGN.md has no section {section}")
    assert cited >= 8
    assert not wrong, "\n".join(wrong)
