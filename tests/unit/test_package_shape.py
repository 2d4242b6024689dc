"""The package's shape: no import cycle, and no module reaching into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "simpletuner_secrets"
#: Underscore names of the standard library used on purpose: namedtuple's public methods, and
#: asyncio's flag that silences "Task was destroyed but it is pending" for a task whose loop
#: was closed under it (the AWS provider releases such clients; the task can never run again).
STDLIB_UNDERSCORE_API = frozenset(
    {"_replace", "_asdict", "_fields", "_make", "_log_destroy_pending"}
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking_block(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Name | ast.Attribute)
        and ast.unparse(node.test).endswith("TYPE_CHECKING")
    )


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, `if TYPE_CHECKING:` blocks left out (they never run)."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if is_type_checking_block(node):
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def absolute(module: str, level: int, target: str | None) -> str:
    """The absolute module a relative import names."""
    is_package = MODULES[module].name == "__init__.py"
    base = module.split(".")
    if level:
        base = base[: len(base) - level + (1 if is_package else 0)]
        return ".".join([*base, target] if target else base)
    return target or ""


def package_imports(module: str) -> dict[str, set[str]]:
    """The package modules ``module`` imports at run time, with the names taken from each."""
    tree = ast.parse(MODULES[module].read_text())
    found: dict[str, set[str]] = {}
    for node in runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            source = absolute(module, node.level, node.module)
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if sub in MODULES:  # `from . import cache` imports a module
                    found.setdefault(sub, set())
                elif source in MODULES:
                    found.setdefault(source, set()).add(alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES:
                    found.setdefault(alias.name, set())
    found.pop(module, None)
    return found


def defined_private_names(tree: ast.AST) -> set[str]:
    """Underscore names a module defines: functions, classes, assignments, attributes, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_")}


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_import_cycle_in_the_package() -> None:
    """No chain of run-time imports inside the package leads back to where it started."""
    graph = {m: set(package_imports(m)) for m in MODULES}
    # A package's __init__ re-exporting its modules is not a cycle with them.
    for module, targets in graph.items():
        graph[module] = {t for t in targets if not module.startswith(f"{t}.")}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


def test_no_module_imports_another_modules_private_names() -> None:
    """`from .x import _name` appears nowhere in the package."""
    offences = [
        f"{module} imports {name} from {source}"
        for module in MODULES
        for source, names in package_imports(module).items()
        for name in names
        if is_private(name)
    ]
    assert offences == []


def test_no_module_reaches_into_private_attributes_it_does_not_define() -> None:
    """``obj._name`` is used only where the module itself defines ``_name``."""
    offences = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        own = defined_private_names(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and is_private(node.attr)
                and node.attr not in own
                and node.attr not in STDLIB_UNDERSCORE_API
            ):
                offences.append(f"{module}:{node.lineno} uses .{node.attr}")
    assert offences == []


def test_the_checks_see_a_private_import_and_a_cycle() -> None:
    """The walkers themselves work: they find the imports the package really has."""
    imports = package_imports("simpletuner_secrets.manager")
    assert "simpletuner_secrets._resolver" in imports
    assert "OnError" in imports["simpletuner_secrets._resolver"]
    sync = package_imports("simpletuner_secrets.sync")
    assert "simpletuner_secrets.manager" not in sync  # only under TYPE_CHECKING
