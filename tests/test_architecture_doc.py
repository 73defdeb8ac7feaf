"""docs/architecture.md matches the code: its links lead to files here, and the one path of a
rating is at most eight hops, each naming functions (or the facts they pass) that exist."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"


def section(title):
    text = DOC.read_text(encoding="utf-8")
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def test_architecture_doc_links_only_to_files_in_this_repository():
    links = re.findall(r"\]\(([^)]+)\)", DOC.read_text(encoding="utf-8"))
    assert links, "the rooms table links to the code"
    outside = [link for link in links if "://" in link
               or not (DOC.parent / link).resolve().is_relative_to(ROOT)]
    missing = [link for link in links if link not in outside
               and not (DOC.parent / link).exists()]
    assert (outside, missing) == ([], [])


def test_architecture_doc_walks_a_rating_in_at_most_eight_named_functions():
    hops = re.findall(r"^\d+\. (.*?)(?=^\d+\. |\Z)", section("One rating"), re.S | re.M)
    assert 1 < len(hops) <= 8
    code = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "kiosk").rglob("*.py"))
    for hop in hops:
        named = re.findall(r"`(?:[\w.]+\.)?(\w+)\(", hop)
        assert named, f"hop names no function: {hop[:60]}"
        for name in named:
            assert re.search(rf"^\s*(def|class) {name}\b", code, re.M), f"no {name} in kiosk/"
