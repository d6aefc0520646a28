"""Dependencies run one way, outermost first: run -> console -> edge -> SCIM -> upstream
interface <- Modyo (the safety rails wrapping the upstream for the edge, seeing neither side),
over the journal and the shared store (which either side may use) and a
shared base. No module imports from a layer above it, the SCIM and Modyo sides never see each
other, and every module of bridge/ is in a layer (docs/design/layers.md; README
"Development")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bridge

ROOT = Path(bridge.__file__).parent
BASE = {"bridge", "bridge.config", "bridge.config_loading", "bridge.deadline", "bridge.metrics",
        "bridge.logs", "bridge.request_state", "bridge.yielding"}  # fmt: skip
# Each layer and what it may import (itself included); the order is the README's.
ALLOWED = {
    "base": {"base"},
    "store": {"base", "store"},
    "journal": {"base", "store", "journal"},
    "upstream": {"base", "upstream"},
    "safety": {"base", "store", "journal", "upstream", "safety"},
    "scim": {"base", "store", "journal", "upstream", "scim"},
    "modyo": {"base", "store", "journal", "upstream", "modyo"},
    "edge": {"base", "store", "journal", "upstream", "safety", "scim", "modyo", "edge"},
    "console": {"base", "store", "journal", "upstream", "safety", "scim", "edge", "console"},
    "run": {
        "base",
        "store",
        "journal",
        "upstream",
        "safety",
        "scim",
        "modyo",
        "edge",
        "console",
        "run",
    },
}
PACKAGES = {  # a package and the layer it is
    "bridge.store": "store",
    "bridge.journal": "journal",
    "bridge.safety": "safety",
    "bridge.scim": "scim",
    "bridge.modyo": "modyo",
    "bridge.edge": "edge",
    "bridge.console": "console",
    "bridge.run": "run",
}


def layer(module: str) -> str:
    if module in BASE or module == "bridge.__main__":
        return "run" if module == "bridge.__main__" else "base"
    if module == "bridge.upstream":
        return "upstream"
    for package, its_layer in PACKAGES.items():
        if module == package or module.startswith(package + "."):
            return its_layer
    raise LookupError(f"{module} is in no layer: add it to tests/test_layers.py and the docs")


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bridge"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("bridge"))
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def known(name: str) -> str:
    """The module an import names (``bridge.scim.errors.X`` -> ``bridge.scim.errors``)."""
    while name.count(".") and not (
        (ROOT.parent / (name.replace(".", "/") + ".py")).exists()
        or (ROOT.parent / name.replace(".", "/") / "__init__.py").exists()
    ):
        name = name.rsplit(".", 1)[0]
    return name


def test_no_module_imports_from_a_layer_above_it() -> None:
    violations = []
    for path in sorted(ROOT.rglob("*.py")):
        importer = module_name(path)
        for imported in {known(name) for name in imports(path)}:
            if layer(imported) not in ALLOWED[layer(importer)]:
                violations.append(f"{importer} ({layer(importer)}) imports {imported}")
    assert violations == []


def test_every_module_is_in_a_layer() -> None:
    for path in sorted(ROOT.rglob("*.py")):
        layer(module_name(path))  # raises for a module in none


def test_no_import_cycle_between_modules() -> None:
    """Not even within a layer: a cycle hides which of two modules is the lower."""
    graph = {
        module_name(path): {known(name) for name in imports(path)} - {module_name(path)}
        for path in sorted(ROOT.rglob("*.py"))
    }
    state: dict[str, str] = {}
    cycles: list[str] = []

    def visit(module: str, trail: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph.get(module, ())):
            if imported.startswith(module + "."):
                continue  # a package's face re-exporting its own modules
            if state.get(imported) == "open":
                cycles.append(" -> ".join([*trail[trail.index(imported) :], imported]))
            elif imported not in state:
                visit(imported, [*trail, imported])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_rule_sees_a_violation() -> None:
    """The check itself: an import back up would be reported."""
    with pytest.raises(LookupError):
        layer("bridge.somewhere_new")
    assert layer("bridge.run.cli") not in ALLOWED["edge"]
    assert layer("bridge.edge.app") not in ALLOWED["store"]
    assert layer("bridge.scim.users") not in ALLOWED["modyo"]
    assert layer("bridge.edge.app") not in ALLOWED["scim"]
    assert layer("bridge.modyo.rest") not in ALLOWED["scim"]
    assert layer("bridge.store.redis_link") in ALLOWED["journal"]
    assert layer("bridge.scim.errors") not in ALLOWED["journal"]
    assert layer("bridge.journal.record") in ALLOWED["scim"]
    assert layer("bridge.safety.overlay") not in ALLOWED["scim"]
    assert layer("bridge.scim.errors") not in ALLOWED["safety"]
    assert layer("bridge.edge.errors") not in ALLOWED["scim"]
    assert layer("bridge.edge.protocols") not in ALLOWED["scim"]
    assert layer("bridge.modyo.rest") not in ALLOWED["safety"]
    assert layer("bridge.store.redis_link") in ALLOWED["safety"]
    assert known("bridge.scim.errors.InternalError") == "bridge.scim.errors"
