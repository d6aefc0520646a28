"""Loading the settings (``bridge.config``): the TOML file, then ``BRIDGE_*`` environment
variables, validated. Loading never raises a traceback at the user: :func:`load_settings`
turns every problem into one readable line of a :class:`ConfigError`, and never echoes a
value (tokens are secrets).
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeVar, overload

from pydantic import BaseModel, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from bridge.config import ENV_PREFIX, FILE_SUFFIX, Settings, secret_fields

Config = TypeVar("Config", bound=BaseSettings)


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@overload
def load_settings(path: Path | None, **overrides: Any) -> Settings: ...


@overload
def load_settings(path: Path | None, model: type[Config], **overrides: Any) -> Config: ...


def load_settings(path: Path | None, model: Any = Settings, **overrides: Any) -> Any:
    """Load the TOML file at ``path`` (if any), apply ``BRIDGE_*`` variables, validate, as
    ``model`` (:class:`Settings`, or :class:`CheckSettings`).

    Raises :class:`ConfigError` listing every problem; values are never echoed.
    """
    if path is not None:
        _check_readable_toml(path)
    for warning in variable_warnings(os.environ):
        print(f"scim-bridge: warning: {warning}", file=sys.stderr)
    unreadable = json_variable_problems(os.environ)
    if unreadable:
        raise ConfigError(unreadable)

    class _FromFile(model):  # type: ignore[misc]
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        raise ConfigError([line for error in errors for line in _describe(error)]) from None
    except SettingsError as exc:  # backstop: json_variable_problems reads what it reads
        raise ConfigError([f"the {ENV_PREFIX}* variables cannot be read: {exc}"]) from None


def variable_warnings(environ: Mapping[str, str]) -> list[str]:
    """The ``BRIDGE_*`` variables that name no section, each by its own name (a warning:
    another tool may own it), with the setting it resembles when it has one ``_`` where
    ``__`` separates the section and the key (``BRIDGE_MODYO_TOKEN``, which would leave
    ``modyo.token`` unset). A variable naming a key its section lacks is refused by the
    section, as that key in the TOML file is, and named as the variable."""
    sections = _variable_sections()
    known = {f"{ENV_PREFIX}{section}__{key}" for section, keys in sections.items() for key in keys}
    warnings: list[str] = []
    for raw in sorted(environ):
        name = raw.upper()
        if not name.startswith(ENV_PREFIX):
            continue
        section = name[len(ENV_PREFIX) :].partition("__")[0]
        if section in sections:
            continue  # an unknown key is refused by its section, named as this variable
        resembles = sorted(candidate for candidate in known if candidate.replace("__", "_") == name)
        if resembles:
            warnings.append(f"{raw} is ignored: did you mean {resembles[0]} (two underscores)?")
        else:
            warnings.append(f"{raw} is ignored: no setting reads it")
    return warnings


def _variable_sections() -> dict[str, set[str]]:
    """Each section's upper-case name and the keys a variable may name under it (secret keys
    also with their file suffix)."""
    found: dict[str, set[str]] = {}
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        keys = {key.upper() for key in model.model_fields}
        keys |= {f"{key}{FILE_SUFFIX}".upper() for key in secret_fields(model)}
        found[section.upper()] = keys
    return found


def json_variable_problems(environ: Mapping[str, str]) -> list[str]:
    """The ``BRIDGE_*`` variables that must hold JSON (a list, or a whole section) and do
    not, one line each naming the variable and what it expects; values are never echoed.
    pydantic-settings would raise its ``SettingsError`` traceback instead."""
    expected = _json_variables()
    return [
        f"{name.upper()} must be {expected[name.upper()]}"
        for name, value in sorted(environ.items())
        if name.upper() in expected and not _is_json(value)
    ]


def _json_variables() -> dict[str, str]:
    """Every variable pydantic-settings parses as JSON, and what it must hold."""
    found: dict[str, str] = {}
    for section, field in Settings.model_fields.items():
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        name = f"{ENV_PREFIX}{section.upper()}"
        found[name] = (
            f"""a JSON object like '{{"key": "value"}}' (or set each key as {name}__<KEY>)"""
        )
        tables = {key for key, table in secret_fields(model).items() if table}
        for key, inner in model.model_fields.items():
            origin = typing.get_origin(inner.annotation)
            if origin is dict:
                found[f"{name}__{key.upper()}"] = """a JSON object like '{"name": "value"}'"""
            elif origin in (list, tuple, set):
                found[f"{name}__{key.upper()}"] = """a JSON list like '["first", "second"]'"""
            if key in tables:
                found[f"{name}__{key.upper()}{FILE_SUFFIX.upper()}"] = (
                    """a JSON object like '{"name": "/run/scim-token"}'"""
                )
    return found


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _check_readable_toml(path: Path) -> None:
    try:
        with path.open("rb") as handle:
            tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"]) from None
    except IsADirectoryError:
        raise ConfigError([f"config path is a directory, not a file: {path}"]) from None
    except PermissionError:
        raise ConfigError([f"config file is not readable: {path}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config file {path} is not valid TOML: {exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config file {path} is not valid TOML: it is not UTF-8 text"]) from None


def _describe(error: Any) -> list[str]:
    """One line per problem: the dotted key, what is wrong, and where it can be set.

    A missing section (no ``[scim]`` table and no ``BRIDGE_SCIM__*`` variable) is reported as
    its missing required keys, since those are what can be set.
    """
    loc = tuple(str(part) for part in error["loc"])
    if error["type"] == "missing":
        section = _section(loc)
        keys = [(*loc, *key) for key in _required_keys(section)] if section else []
        return [_required(key) for key in keys or [loc]]
    location = ".".join(loc)
    if not loc:  # a rule across sections: its message names the keys
        return [_phrase(error)]
    if error["type"] == "extra_forbidden":
        variable = f"{ENV_PREFIX}{'__'.join(part.upper() for part in loc)}"
        named = {name.upper(): name for name in os.environ}.get(variable)
        where = f"{named} ({location})" if named else location
        return [f"{where}: unknown setting (see config.example.toml for valid keys)"]
    return [f"{location}: {_phrase(error)}"]


def _required(key: tuple[str, ...]) -> str:
    """Where a missing key can be set; a secret also from a file (``<key>_file``)."""
    line = (
        f"{'.'.join(key)}: required, set it in the config file or "
        f"{ENV_PREFIX}{'__'.join(part.upper() for part in key)}"
    )
    section = _section(key[:-1])
    if section is not None and key[-1] in secret_fields(section):
        line += f" (or {'.'.join(key)}{FILE_SUFFIX}: a file holding it)"
    return line


_TABLE: Final = "must be a table: a [section] in TOML, a JSON object in a variable"
_PHRASES: Final = {
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "list_type": 'must be a list, like ["first", "second"] (the same JSON in a variable)',
    "url_type": "must be a URL such as https://acme.modyo.cloud",
    "url_parsing": "must be a URL such as https://acme.modyo.cloud",
    "url_scheme": "must be an http:// or https:// URL",
    "model_type": _TABLE,
    "model_attributes_type": _TABLE,
    "dict_type": _TABLE,
}


def _phrase(error: Any) -> str:
    """What a validation error asks for, in the configuration's words (not pydantic's
    ``Input should be ...``); the value is never part of it."""
    kind, ctx = str(error["type"]), error.get("ctx") or {}
    if kind in _PHRASES:
        return _PHRASES[kind]
    bounds = {"greater_than_equal": ("ge", "at least"), "less_than_equal": ("le", "at most"),
              "greater_than": ("gt", "more than"), "less_than": ("lt", "less than")}  # fmt: skip
    if kind in bounds and bounds[kind][0] in ctx:
        key, words = bounds[kind]
        return f"must be {words} {ctx[key]}"
    if kind == "literal_error" and "expected" in ctx:
        return f"must be one of {ctx['expected']}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must hold at least one value"
    return str(error["msg"]).removeprefix("Value error, ")


def _section(loc: tuple[str, ...]) -> type[BaseModel] | None:
    """The settings model at ``loc``, or None when ``loc`` names a single key."""
    model: type[BaseModel] = Settings
    for part in loc:
        field = model.model_fields.get(part)
        annotation = None if field is None else field.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        model = annotation
    return model


def _required_keys(section: type[BaseModel]) -> list[tuple[str, ...]]:
    """The required keys of ``section``, relative to it, nested sections expanded."""
    keys: list[tuple[str, ...]] = []
    for name, field in section.model_fields.items():
        if not field.is_required():
            continue
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += [(name, *key) for key in _required_keys(annotation)]
        else:
            keys.append((name,))
    return keys
