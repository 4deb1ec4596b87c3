"""The domain package sits below the orchestration layer: nothing in ``kline/`` imports
``prefect``, ``tasks`` or ``flows`` — not at module level, not inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

import kline

ORCHESTRATION = ("prefect", "tasks", "flows")


def imported_roots(path: Path) -> set[str]:
    """Top-level packages a module imports anywhere in its body (relative imports skipped)."""
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_domain_package_imports_no_orchestration_code():
    package = Path(kline.__file__).parent
    offenders = {str(p.relative_to(package.parent)): sorted(imported_roots(p) & set(ORCHESTRATION))
                 for p in sorted(package.rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_check_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from flows.daily import daily_flow\n    import prefect.artifacts\n")
    assert imported_roots(probe) == {"flows", "prefect"}
