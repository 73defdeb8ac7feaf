"""docs/security.md's threat table names its evidence: every test it names must exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"


def named_tests():
    """(file, test name) for each reference; ``::name`` alone continues the last file named."""
    refs, current = [], None
    for match in re.finditer(r"`(tests/[\w/]+\.py)?::(test_\w+)`", DOC.read_text()):
        current = match.group(1) or current
        refs.append((current, match.group(2)))
    return refs


def test_security_doc_names_only_tests_that_exist():
    refs = named_tests()
    assert len(refs) >= 5 * 2, "the threat table should name tests for each threat"
    missing = []
    for path, name in refs:
        tree = ast.parse((ROOT / path).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        if name not in defined:
            missing.append(f"{path}::{name}")
    assert missing == []


def test_security_doc_has_a_row_for_each_threat_the_issue_names():
    text = DOC.read_text()
    for threat in ("Stolen kiosk credential", "Hostile payload", "Re-flashed kiosk",
                   "Clock step", "Physical access at the counter"):
        assert f"| **{threat}**" in text, threat
