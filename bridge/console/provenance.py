"""The Configuration page: every resolved setting, secrets masked, with where its value came
from: ``default``, ``file`` (the TOML file), ``environment`` (``BRIDGE_*``) or ``command
line`` (a ``serve`` flag) (docs/operator/console.md, "Configuration").

Computed once, when the console is built, from the same sources the settings were loaded
from (pydantic-settings' precedence: arguments, environment, file; bridge/config.py). A
secret is shown as set or unset, a table of secrets by its names: no value of a secret is
ever read into a row.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from bridge.config import ENV_PREFIX, FILE_SUFFIX, Settings
from bridge.logs import mask

MASKED = "•••••• (set, masked)"


@dataclass(frozen=True, slots=True)
class Row:
    key: str
    value: str
    source: str


def rows(settings: Settings, environ: Mapping[str, str] | None = None) -> list[Row]:
    """One row per setting of every section, in the order of ``config.example.toml``."""
    environ = {name.upper(): value for name, value in (environ or os.environ).items()}
    toml = _toml(settings)
    found: list[Row] = []
    for section in type(settings).model_fields:
        model = getattr(settings, section)
        if not isinstance(model, BaseModel):
            continue
        defaults = _defaults(type(model))
        for key in type(model).model_fields:
            value = getattr(model, key)
            source = _source(section, key, environ, toml)
            if source is None:
                source = "default" if defaults.get(key, _NO_DEFAULT) == value else "command line"
            found.append(Row(f"{section}.{key}", _shown(value), source))
    return found


_NO_DEFAULT = object()


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, field in model.model_fields.items():
        if not field.is_required():
            found[key] = field.get_default(call_default_factory=True)
    return found


def _toml(settings: Settings) -> Mapping[str, Any]:
    """The TOML file the settings were loaded from (``load_settings``), if any."""
    path = type(settings).model_config.get("toml_file")
    if not isinstance(path, str | Path):
        return {}
    try:
        with Path(path).open("rb") as handle:
            return tomllib.load(handle)
    except (OSError, ValueError):
        return {}


def _source(
    section: str, key: str, environ: Mapping[str, str], toml: Mapping[str, Any]
) -> str | None:
    names = (key, key + FILE_SUFFIX)
    prefix = f"{ENV_PREFIX}{section.upper()}"
    if any(f"{prefix}__{name.upper()}" in environ for name in names):
        return "environment"
    whole = environ.get(prefix)
    if whole is not None:
        try:
            table = json.loads(whole)
        except ValueError:
            table = None
        if isinstance(table, dict) and any(name in {k.lower() for k in table} for name in names):
            return "environment"
    table = toml.get(section)
    if isinstance(table, dict) and any(name in {k.lower() for k in table} for name in names):
        return "file"
    return None


def _shown(value: Any) -> str:
    """A setting as the page shows it: a secret masked, a table of secrets by its names."""
    if isinstance(value, SecretStr):
        return MASKED
    if isinstance(value, dict) and any(isinstance(item, SecretStr) for item in value.values()):
        names = ", ".join(sorted(value))
        return f"{names} (values masked)"
    if value is None:
        return "unset"
    if isinstance(value, list | tuple):
        return mask(json.dumps([str(item) for item in value]))
    if isinstance(value, bool):
        return "true" if value else "false"
    return mask(str(value))
