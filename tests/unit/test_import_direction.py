"""Imports flow one way: api, workers -> services -> scanner, policies; scanner -> policies.

Parses every module's imports (including function-local ones) and fails on a violation.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED: dict[str, set[str]] = {
    "policies": set(),
    "scanner": {"policies"},
    "services": {"scanner", "policies"},
    "workers": {"services", "scanner", "policies"},
    "api": {"workers", "services", "scanner", "policies"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_flow_one_way(package: str) -> None:
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = (_imports(path) & set(ALLOWED)) - ALLOWED[package] - {package}
        if bad:
            violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not violations, "imports against the one-way rule:\n" + "\n".join(violations)


def test_the_rule_detects_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from services import scans\n")
    assert "services" in _imports(bad)
