"""Settings: a TOML file overridable by ``BRIDGE_*`` environment variables (pydantic-settings).

Every key is documented in ``config.example.toml``. Loading never raises a traceback at the
user: :func:`load_settings` turns every problem into one readable line of a
:class:`ConfigError`, and never echoes a value (tokens are secrets).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "BRIDGE_"
MIN_TOKEN_LENGTH = 16


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    base_path: str = "/scim"
    public_url: AnyHttpUrl | None = None
    max_body_bytes: int = Field(1_048_576, ge=1024)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "text"] = "json"
    metrics_enabled: bool = True
    forwarded_allow_ips: str = "127.0.0.1"
    keepalive_timeout_seconds: float = Field(75.0, gt=0, le=3600)
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    body_timeout_seconds: float = Field(10.0, gt=0, le=300)
    max_connections: int = Field(512, ge=1, le=100_000)
    http_parser: Literal["httptools", "h11"] = "httptools"

    @field_validator("base_path")
    @classmethod
    def _normalise_base_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/' (for example '/scim')")
        return value.rstrip("/")


class ScimSettings(_Section):
    tokens: list[SecretStr] = Field(min_length=1)
    max_page_size: int = Field(100, ge=1, le=1000)
    request_deadline_seconds: float = Field(20.0, gt=0, le=300)

    @field_validator("tokens")
    @classmethod
    def _tokens_are_strong(cls, tokens: list[SecretStr]) -> list[SecretStr]:
        for position, token in enumerate(tokens):
            if len(token.get_secret_value()) < MIN_TOKEN_LENGTH:
                raise ValueError(
                    f"token #{position + 1} is shorter than {MIN_TOKEN_LENGTH} characters"
                )
        return tokens


class ModyoSettings(_Section):
    base_url: AnyHttpUrl
    token: SecretStr
    connect_timeout_seconds: float = Field(5.0, gt=0, le=120)
    read_timeout_seconds: float = Field(15.0, gt=0, le=300)
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    max_connections: int = Field(64, ge=1, le=1000)
    max_in_flight: int = Field(32, ge=1, le=1000)
    verify_tls: bool = True

    @field_validator("token")
    @classmethod
    def _token_not_empty(cls, token: SecretStr) -> SecretStr:
        if not token.get_secret_value().strip():
            raise ValueError("must not be empty")
        return token


class RetrySettings(_Section):
    max_attempts: int = Field(5, ge=1, le=20)
    backoff_initial_seconds: float = Field(0.2, ge=0, le=30)
    backoff_max_seconds: float = Field(5.0, ge=0, le=120)
    retry_after_cap_seconds: float = Field(10.0, ge=0, le=300)


class IdempotencySettings(_Section):
    enabled: bool = True
    ttl_seconds: float = Field(600.0, gt=0, le=86_400)
    max_entries: int = Field(10_000, ge=1, le=10_000_000)


class Settings(BaseSettings):
    """The whole configuration; sections mirror the tables of ``config.example.toml``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    server: ServerSettings = ServerSettings()
    scim: ScimSettings
    modyo: ModyoSettings
    retry: RetrySettings = RetrySettings()
    idempotency: IdempotencySettings = IdempotencySettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Precedence: explicit arguments, then environment, then the TOML file."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


class ConfigError(Exception):
    """The configuration cannot be used; ``problems`` holds one readable line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Load the TOML file at ``path`` (if any), apply ``BRIDGE_*`` variables, validate.

    Raises :class:`ConfigError` listing every problem; values are never echoed.
    """
    if path is not None:
        _check_readable_toml(path)

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors(include_input=False)]) from None


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


def _describe(error: Any) -> str:
    """One line per problem: the dotted key, what is wrong, and where it can be set."""
    location = ".".join(str(part) for part in error["loc"])
    env_name = ENV_PREFIX + "__".join(str(part).upper() for part in error["loc"])
    if error["type"] == "missing":
        return f"{location}: required, set it in the config file or {env_name}"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown setting (see config.example.toml for valid keys)"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}"
