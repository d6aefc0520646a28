"""MkDocs hook (mkdocs.yml ``hooks:``): the reference pages are generated from the code at
build time, so they cannot drift from it.

A page holds a marker ``<!-- generated: NAME -->`` where the generated part goes:

- ``configuration``: every section and key of the settings model (``bridge/config.py``):
  type, default, bounds, description (the field's docstring), environment variable, secret;
- ``cli``: every command and option of the argparse parser (``bridge/run/cli.py``);
- ``metrics``: every Prometheus metric the bridge registers (``bridge/metrics.py``): name,
  type, labels with the values the code gives them where they are fixed, help;
- ``log-lines``: every structured log line the bridge writes (a ``log.<level>(...)`` call in
  ``bridge/``): logger, level, message and its extra fields.

Under ``mkdocs build --strict`` (.ci/run) a warning fails the build: a setting without a
description or missing from ``config.example.toml``, an unknown marker.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import os
import re
import textwrap
import tomllib
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import get_plugin_logger
from mkdocs.structure.files import Files
from mkdocs.structure.pages import Page
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

log = get_plugin_logger("reference")

ROOT = Path(__file__).resolve().parent.parent
BRIDGE = ROOT / "bridge"
MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")
BOUNDS = {
    "ge": "≥",
    "gt": ">",
    "le": "≤",
    "lt": "<",
    "min_length": "length ≥",
    "max_length": "length ≤",
}
NONE = "-"  # an empty table cell
CELL_BREAK = re.compile(r"\s*\n\s*")


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Replace each marker of the page by its generated Markdown."""

    def generated(match: re.Match[str]) -> str:
        name = match.group(1)
        generator = GENERATORS.get(name)
        if generator is None:
            log.warning("%s: unknown marker %r", page.file.src_uri, name)
            return match.group(0)
        return generator()

    return MARKER.sub(generated, markdown)


# ------------------------------------------------------------------------------ configuration


def configuration() -> str:
    from bridge.config import ENV_PREFIX, Settings

    example = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    example_text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    out: list[str] = []
    for section, section_field in Settings.model_fields.items():
        model = section_field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        out += [f"## `[{section}]`", ""]
        if model.__doc__ and model.__doc__ != BaseModel.__doc__:
            out += [_cell(model.__doc__), ""]
        out += ["| Key | Type | Default | Environment variable | Description |"]
        out += ["|---|---|---|---|---|"]
        docstrings = _docstrings(model)
        for key, field in model.model_fields.items():
            dotted = f"{section}.{key}"
            description = field.description or docstrings.get(key)
            if not description:
                log.warning(
                    "setting %s has no description (a docstring in bridge/config.py)", dotted
                )
            if key not in example.get(section, {}) and not re.search(
                rf"^#\s*{re.escape(key)}\s*=", _table(example_text, section), re.MULTILINE
            ):
                log.warning("setting %s is missing from config.example.toml", dotted)
            variable = f"`{ENV_PREFIX}{section.upper()}__{key.upper()}`"
            if typing.get_origin(field.annotation) in (list, tuple, set, dict):
                variable += " (JSON)"
            note = ""
            if _secret(field.annotation):
                note = " **Secret**: keep it in the environment or a secret store."
            out.append(
                f"| `{key}` | {_type(field.annotation)}{_bounds(field)} | {_default(field)} "
                f"| {variable} | {_cell(description or '')}{note} |"
            )
        out.append("")
    return "\n".join(out)


def _docstrings(model: type[BaseModel]) -> dict[str, str]:
    """The docstring under each field of ``model`` (and of the classes it derives from), read
    from the source: the bridge does not pay for them at run time."""
    found: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)) or cls is BaseModel:
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]
        assert isinstance(body, ast.ClassDef)
        for node, after in zip(body.body, body.body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                found[node.target.id] = after.value.value
    return found


def _table(text: str, section: str) -> str:
    """The lines of ``[section]`` in a TOML text, comments included."""
    match = re.search(
        rf"^\[{re.escape(section)}\]\n(.*?)(?=^\[|\Z)", text, re.MULTILINE | re.DOTALL
    )
    return match.group(1) if match else ""


def _type(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(f'`"{value}"`' for value in arguments)
    if origin in (typing.Union, types.UnionType):
        kept = [argument for argument in arguments if argument is not type(None)]
        return " \\| ".join(_type(argument) for argument in kept)  # None: "unset" (Default)
    if origin is typing.Annotated:
        return _type(arguments[0])
    if origin is list:
        return f"list of {_type(arguments[0])}"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "string"}
    if annotation in names:
        return names[annotation]
    if isinstance(annotation, type) and "Url" in annotation.__name__:
        return "URL"
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path to a file"
    return f"`{annotation}`"


def _secret(annotation: Any) -> bool:
    return annotation is SecretStr or any(_secret(arg) for arg in typing.get_args(annotation))


def _bounds(field: FieldInfo) -> str:
    found = [
        f"{BOUNDS[name]} {getattr(item, name)}"
        for item in field.metadata
        for name in BOUNDS
        if getattr(item, name, None) is not None
    ]
    return f" ({', '.join(found)})" if found else ""


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "**required**"
    if field.default_factory is not None:
        return f"`{field.default_factory()}`"  # type: ignore[call-arg]
    if field.default is None or field.default is PydanticUndefined:
        return "unset"
    if isinstance(field.default, str):
        return f'`"{field.default}"`'
    if isinstance(field.default, bool):
        return f"`{str(field.default).lower()}`"
    return f"`{field.default}`"


def _cell(text: str) -> str:
    """``text`` (a docstring: reStructuredText literals, line breaks) as one table cell."""
    text = inspect.cleandoc(text).replace("``", "`")
    return CELL_BREAK.sub(" ", text).replace("|", "\\|")


# ------------------------------------------------------------------------------------------ cli


def cli() -> str:
    from bridge.run.cli import _parser

    os.environ["COLUMNS"] = "100"  # argparse wraps usage lines at the terminal's width
    parser = _parser()
    out = [f"`{parser.prog}` {_cell(parser.description or '')}", ""]
    out += ["```text", parser.format_usage().strip(), "```", ""]
    out += ["`--version` prints the version; `--help` (after any command too) its usage.", ""]
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    summaries = {choice.dest: choice.help for choice in commands._choices_actions}
    for name, command in commands.choices.items():
        out += [f"## `{parser.prog} {name}`", "", _cell(summaries.get(name) or "") + "."]
        if command.description:
            out += ["", _cell(command.description)]
        out += ["", "```text", command.format_usage().strip(), "```", ""]
        out += ["| Option | Default | Description |", "|---|---|---|"]
        for action in command._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
            if action.metavar or action.type not in (None, bool) or action.nargs != 0:
                flags += f" `{(action.metavar or action.dest).upper()}`"
            described = action.help or ""
            if action.choices:
                described += f" (one of {', '.join(f'`{c}`' for c in action.choices)})"
            unset = action.default is None or action.default is False
            default = "" if unset or action.default == argparse.SUPPRESS else f"`{action.default}`"
            out.append(f"| {flags} | {default} | {_cell(described)} |")
        out.append("")
    return "\n".join(out)


# -------------------------------------------------------------------------------------- metrics


def metrics() -> str:
    from prometheus_client.metrics import MetricWrapperBase

    from bridge import metrics as module
    from bridge.metrics import Labelled

    known = _label_values()
    out = ["| Metric | Type | Labels | Description |", "|---|---|---|---|"]
    for variable, value in vars(module).items():
        metric = value.metric if isinstance(value, Labelled) else value
        if not isinstance(metric, MetricWrapperBase):
            continue
        kind = metric._type
        name = metric._name + ("_total" if kind == "counter" else "")
        labels = []
        for position, label in enumerate(metric._labelnames):
            values = known.get((variable, position)) or known.get(("*", label))
            listed = f": {', '.join(_value(v) for v in sorted(values))}" if values else ""
            labels.append(f"`{label}`{listed}")
        series = f" (series `{name}_bucket`, `_sum`, `_count`)" if kind == "histogram" else ""
        out.append(
            f"| `{name}` | {kind}{series} | {'<br>'.join(labels) or NONE} "
            f"| {_cell(metric._documentation)} |"
        )
    return "\n".join(out)


def _value(value: str) -> str:
    """A label value as code, or what stands for a family of values (``HTTP status``)."""
    return f"*{value}*" if " " in value and not re.match(r"[A-Z]+ /", value) else f"`{value}`"


def _label_values() -> dict[tuple[str, Any], set[str]]:
    """Label values fixed in the code: literal arguments of each metric's calls
    (``IDEMPOTENCY("replayed")``), the SCIM operations and methods of the routes, and the
    Modyo call names (``"GET /team_members/:id"``) and connection-failure kinds."""
    found: dict[tuple[str, Any], set[str]] = {}
    for tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                for position, argument in enumerate(node.args):
                    if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                        found.setdefault((node.func.id, position), set()).add(argument.value)
    operations, methods = _operations()
    calls = _constants(("modyo/rest.py", "modyo/scim.py", "modyo/profile.py"))
    kinds, transient = _connect_failures()
    return {
        **{key: values for key, values in found.items() if key[0].isupper()},
        ("*", "operation"): operations,
        ("*", "method"): methods,
        ("*", "call"): {call for call in calls if re.fullmatch(r"[A-Z]+ /[A-Za-z_/:]+", call)},
        ("MODYO_CALLS", 1): {"HTTP status", "deadline", "transport error class", *kinds},
        ("MODYO_RETRIES", 1): _retry_reasons() | transient,
        ("SCIM_REQUESTS", 2): {"HTTP status"},
    }


def _connect_failures() -> tuple[set[str], set[str]]:
    """The kinds of ``ConnectFailure(kind, detail, permanent)`` in ``bridge/modyo/http.py``:
    all of them, and the transient ones (retried)."""
    kinds: set[str] = set()
    transient: set[str] = set()
    for node in ast.walk(_parse("modyo/http.py")):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "ConnectFailure":
            kind = node.args[0]
            if isinstance(kind, ast.Constant):
                kinds.add(str(kind.value))
                permanent = node.args[2] if len(node.args) > 2 else None
                if isinstance(permanent, ast.Constant) and permanent.value is False:
                    transient.add(str(kind.value))
    return kinds, transient


def _retry_reasons() -> set[str]:
    """The reasons of ``Retryable(...)``: the first word of its text, and the statuses of
    ``RETRIED_STATUSES`` (``f"{status} from Modyo"``)."""
    reasons: set[str] = set()
    for node in ast.walk(_parse("modyo/http.py")):
        if (
            isinstance(node, ast.Assign)
            and getattr(node.targets[0], "id", None) == "RETRIED_STATUSES"
        ):
            reasons |= {str(n.value) for n in ast.walk(node.value) if isinstance(n, ast.Constant)}
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Retryable":
            text = node.args[0]
            head = text.values[0] if isinstance(text, ast.JoinedStr) and text.values else text
            if isinstance(head, ast.Constant) and str(head.value).split(" ")[0]:
                reasons.add(str(head.value).split(" ")[0])
    return reasons


def _parse(path: str) -> ast.Module:
    return ast.parse((BRIDGE / path).read_text(encoding="utf-8"))


def _operations() -> tuple[set[str], set[str]]:
    """The operation and method of every route ``method_route`` declares (``users.create``),
    and ``unrouted`` (a request no route served)."""
    from bridge.edge.observe import UNROUTED

    operations, methods = {UNROUTED}, set()
    for tree in _modules():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "method_route":
                for keyword in node.keywords:
                    if keyword.arg and isinstance(keyword.value, ast.Tuple):
                        methods.add(keyword.arg)
                        operations |= _expand(keyword.value.elts[0])
    return operations, methods


def _expand(node: ast.expr) -> set[str]:
    """A literal operation name, or the f-string ``f"{name}.create"`` of the resource
    endpoints, expanded over the resource types (``users``, ``groups``)."""
    if isinstance(node, ast.Constant):
        return {str(node.value)}
    if isinstance(node, ast.JoinedStr):
        tail = "".join(str(part.value) for part in node.values if isinstance(part, ast.Constant))
        return {f"{resource}{tail}" for resource in ("users", "groups")}
    return set()


def _constants(paths: tuple[str, ...]) -> set[str]:
    """The string literals passed first to a call in the modules at ``paths``."""
    found: set[str] = set()
    for path in paths:
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Call) and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    found.add(first.value)
    return found


def _modules() -> Iterator[ast.Module]:
    for path in sorted(BRIDGE.rglob("*.py")):
        if "fake" not in path.relative_to(BRIDGE).parts:
            yield ast.parse(path.read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------ log lines


LEVELS = ("debug", "info", "warning", "error", "exception", "critical")


def log_lines() -> str:
    """Every ``log.<level>(message, ..., extra={...})`` call of ``bridge/`` whose logger is a
    module's ``logging.getLogger("name")``."""
    rows: list[tuple[str, str, str, str, str]] = []
    for path in sorted(BRIDGE.rglob("*.py")):
        if "fake" in path.relative_to(BRIDGE).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        loggers = {
            target.id: str(node.value.args[0].value)
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "attr", None) == "getLogger"
            and node.value.args
            and isinstance(node.value.args[0], ast.Constant)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in loggers
                and node.func.attr in LEVELS
                and node.args
            ):
                continue
            extra = next((k.value for k in node.keywords if k.arg == "extra"), None)
            fields = (
                ", ".join(f"`{key.value!s}`" for key in extra.keys if isinstance(key, ast.Constant))
                if isinstance(extra, ast.Dict)
                else ""
            )
            level = "error" if node.func.attr == "exception" else node.func.attr
            where = str(path.relative_to(ROOT))
            rows.append((loggers[node.func.value.id], level, _message(node.args[0]), fields, where))
    out = ["| Logger | Level | Message | Fields | Written by |", "|---|---|---|---|---|"]
    for logger, level, message, fields, where in sorted(rows):
        out.append(f"| `{logger}` | {level} | {message} | {fields or NONE} | `{where}` |")
    return "\n".join(out)


def _message(node: ast.expr) -> str:
    """A log message as written: its ``%s`` placeholders, or an f-string's ``{...}``."""
    if isinstance(node, ast.Constant):
        text = str(node.value)
    elif isinstance(node, ast.JoinedStr):
        text = "".join(
            str(part.value) if isinstance(part, ast.Constant) else "{…}" for part in node.values
        )
    else:
        text = "…"
    return f"`{text}`".replace("|", "\\|")


GENERATORS = {
    "configuration": configuration,
    "cli": cli,
    "metrics": metrics,
    "log-lines": log_lines,
}
