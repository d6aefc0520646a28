"""Dependencies run one way: edge -> SCIM -> upstream interface <- Modyo, over the journal
(which either side may feed) and a shared base. No module imports from a layer above it, and
the SCIM and Modyo sides never see each other (docs/design/layers.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import bridge

ROOT = Path(bridge.__file__).parent
BASE = {"bridge", "bridge.config", "bridge.deadline", "bridge.metrics", "bridge.logs",
        "bridge.request_state", "bridge.yielding"}  # fmt: skip
ALLOWED = {
    "base": {"base"},
    "journal": {"base", "journal"},
    "upstream": {"base", "upstream"},
    "scim": {"base", "journal", "upstream", "scim"},
    "modyo": {"base", "journal", "upstream", "modyo"},
    "edge": {"base", "journal", "upstream", "scim", "modyo", "edge"},
}


def layer(module: str) -> str:
    if module in BASE:
        return "base"
    if module == "bridge.upstream":
        return "upstream"
    if module.startswith("bridge.journal"):
        return "journal"
    if module.startswith("bridge.scim"):
        return "scim"
    if module.startswith("bridge.modyo"):
        return "modyo"
    return "edge"


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


def test_the_rule_sees_a_violation() -> None:
    """The check itself: an import back up would be reported."""
    assert layer("bridge.scim.users") not in ALLOWED["modyo"]
    assert layer("bridge.app") not in ALLOWED["scim"]
    assert layer("bridge.modyo.rest") not in ALLOWED["scim"]
    assert layer("bridge.idempotency.redis_link") not in ALLOWED["journal"]
    assert layer("bridge.scim.errors") not in ALLOWED["journal"]
    assert layer("bridge.journal.record") in ALLOWED["scim"]
    assert known("bridge.scim.errors.InternalError") == "bridge.scim.errors"
