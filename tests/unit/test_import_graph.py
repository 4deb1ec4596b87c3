"""The import graph of the domain package, read with ``ast`` (imports inside functions
count): ``kline/`` never imports ``prefect``, ``tasks`` or ``flows``, and its modules form
no cycle, so every module only imports from below."""

from __future__ import annotations

import ast
from pathlib import Path

import kline

ORCHESTRATION = {"prefect", "tasks", "flows"}
PACKAGE = Path(kline.__file__).parent


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path, package: str = "") -> set[str]:
    """Absolute names a module of ``package`` imports anywhere in its body; ``from a import
    b`` gives ``a`` and ``a.b`` (b may be a module), relative imports resolved."""
    names, package_parts = set(), package.split(".") if package else []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package_parts[: len(package_parts) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)
    return names


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def domain_graph() -> dict[str, set[str]]:
    """Module of ``kline`` -> the modules of ``kline`` it imports (itself excluded)."""
    modules = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    return {m: {n for n in imported_names(p, package_of(p)) if n in modules and n != m}
            for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a closed path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*path[path.index(n):], n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_domain_package_imports_no_orchestration_code():
    offenders = {module_name(p): sorted({n.split(".")[0] for n in imported_names(p, package_of(p))} & ORCHESTRATION)
                 for p in sorted(PACKAGE.rglob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_domain_modules_form_no_import_cycle():
    assert find_cycle(domain_graph()) is None


def test_the_check_sees_imports_inside_functions(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from flows.daily import daily_flow\n    import prefect.artifacts\n")
    assert {n.split(".")[0] for n in imported_names(probe)} == {"flows", "prefect"}


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import():
    graph = {"kline.a": {"kline.b"}, "kline.b": {"kline.c"}, "kline.c": {"kline.a"}, "kline.d": {"kline.a"}}
    assert find_cycle(graph) == ["kline.a", "kline.b", "kline.c", "kline.a"]
    assert find_cycle({"kline.a": {"kline.b"}, "kline.b": set()}) is None


def test_the_graph_resolves_from_imports_of_modules_and_relative_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from kline import registry\nfrom . import base\nfrom ..lake import Lake\n")
    assert imported_names(probe, "kline.providers") >= {"kline.registry", "kline.providers.base", "kline.lake.Lake"}
