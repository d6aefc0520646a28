"""The settings schema: a TOML file overridable by ``BRIDGE_*`` environment variables
(pydantic-settings), its sections, their keys, defaults and the rules across them.

Every key is documented in ``config.example.toml`` and in docs/reference/configuration.md,
generated from these models. Loading them and phrasing every problem for the user is
``bridge.config_loading``'s job.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import re
import ssl
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from bridge.logs import remember_secrets

ENV_PREFIX = "BRIDGE_"
MIN_TOKEN_LENGTH = 32
MIN_TOKEN_CHARACTERS = 8
"""A token of fewer distinct characters (``aaaa…``, ``0101…``) is a pattern, not a secret."""
PLACEHOLDER_MARKERS: Final = (
    "change-me",
    "changeme",
    "replace-me",
    "generate-with",
    "demo-scim-token",
    "placeholder",
    "${",
)
"""What the placeholders this repository ships hold (``CHANGE-ME`` in deploy/kubernetes,
compose's demo token, config.example.toml's ``generate-with: ...``): a token holding one is
copied from a public file, not generated (docs/operator/security.md, Tokens). ``${`` is a
variable reference nothing expanded (compose.yaml's ``${SCIM_TOKEN:?...}`` read as is)."""
TOKEN_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
FILE_SUFFIX: Final = "_file"
"""``<key>_file`` names the file holding the secret ``<key>`` (Kubernetes and Docker
secrets); for a table of secrets (``scim.tokens``), a table of files under the same names."""
_HOSTNAME: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be listened on: not an IP address nor a host name (a dotted
    number such as ``256.1.1.1`` is neither). ``""`` and ``0.0.0.0`` mean every IPv4
    interface, ``::`` every IPv6 one."""
    if host == "":
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if ":" in host or re.fullmatch(r"[0-9.]+", host) or not _HOSTNAME.fullmatch(host):
            return "must be an IP address or a host name"
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only: ``localhost`` or a loopback address
    (127.0.0.0/8, ``::1``, RFC 6890), so what is sent to it never leaves the host. Other
    ``*.localhost`` names are not trusted: a resolver may send them anywhere."""
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot be a SCIM bearer token: too short to be a secret, a pattern
    (fewer than :data:`MIN_TOKEN_CHARACTERS` distinct characters), a placeholder this
    repository ships, or holding what no ``Authorization`` header carries intact (leading or
    trailing whitespace, control characters). Never quotes the token."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"is shorter than {MIN_TOKEN_LENGTH} characters"
    if token != token.strip() or any(ord(char) < 0x20 or ord(char) == 0x7F for char in token):
        return "has leading or trailing whitespace or control characters"
    if len(set(token)) < MIN_TOKEN_CHARACTERS:
        return f"repeats fewer than {MIN_TOKEN_CHARACTERS} distinct characters: generate one"
    lowered = token.lower()
    if any(marker in lowered for marker in PLACEHOLDER_MARKERS):
        return "is a placeholder from this repository's examples: generate one"
    return None


def _walk(value: Any) -> Iterator[Any]:
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    else:
        yield value


def _secret_forms(secret: str) -> list[str]:
    """How a secret may appear in text: itself, or for a URL its password (as written in the
    URL and decoded) and the base64 ``user:password`` a Basic ``Proxy-Authorization`` carries."""
    if "://" not in secret:
        return [secret]
    parts = urlsplit(secret)
    if parts.password is None:
        return []  # a URL without credentials holds nothing secret
    user, password = unquote(parts.username or ""), unquote(parts.password)
    written = parts.netloc.rsplit("@", 1)[0].partition(":")[2]
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    return [password, written, basic]


def check_tls_pair(cert: Path | None, key: Path | None, section: str) -> None:
    """A listener's certificate chain and key load (``key`` None: it is in ``cert``)."""
    if key is not None and cert is None:
        raise ValueError(f"{section}.tls_key_file is set without {section}.tls_cert_file")
    if cert is None:
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        raise ValueError(
            f"{section}.tls_cert_file (with {section}.tls_key_file) is not a PEM certificate "
            f"chain and its private key ({exc.reason})"
        ) from None


class _Section(BaseModel):
    """A table of the configuration; a field's docstring is its description
    (docs/reference/configuration.md is generated from them). Every secret key (a
    ``SecretStr``, or a table of them) may instead be read from a file: ``<key>_file``
    (:data:`FILE_SUFFIX`)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        for name, table in secret_fields(cls).items():
            key = name + FILE_SUFFIX
            if key in cls.model_fields:
                continue  # the section reads that file itself (``journal.key_file``)
            matched = [given for given in values if str(given).lower() == key]
            if not matched:
                continue
            values = dict(values)
            files = values.pop(matched[0])
            if table:
                values[name] = _secret_table(name, values.get(name), files)
            elif values.get(name) is not None:
                raise ValueError(f"set {name} or {key}, not both")
            else:
                values[name] = _read_secret(key, files)
        return values

    @model_validator(mode="after")
    def _secrets_are_masked(self) -> Self:
        """From the moment a section holding a secret is valid, the secret is masked in every
        log line, SCIM error detail and ``check`` line (``bridge.logs.mask``): however the
        settings were built (a file, the environment, a test), nothing can print it first."""
        remember_secrets(
            form
            for value in _walk(self)
            if isinstance(value, SecretStr)
            for form in _secret_forms(value.get_secret_value())
        )
        return self


def _secret_url(url: SecretStr, schemes: tuple[str, str], example: str) -> SplitResult:
    """A URL that may hold a password, split and checked without echoing it: one of
    ``schemes`` (plain, TLS) with a host, and a numeric port if any."""
    try:
        parts = urlsplit(url.get_secret_value())
        _ = parts.port  # raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"is not a URL ({example})") from None
    if parts.scheme not in schemes or not parts.hostname:
        plain, tls = schemes
        article = "an" if plain[0] in "aeiouh" else "a"
        raise ValueError(f"must be {article} {plain}:// or {tls}:// URL with a host ({example})")
    return parts


def secret_fields(model: type[BaseModel]) -> dict[str, bool]:
    """The secret keys of a section, each with whether it is a table of secrets."""
    found: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if typing.get_origin(annotation) is dict:
            if typing.get_args(annotation)[1:] == (SecretStr,):
                found[name] = True
        elif annotation is SecretStr or SecretStr in typing.get_args(annotation):
            found[name] = False
    return found


def _read_secret(key: str, path: object) -> str:
    """A secret's value from its file: the whole content without its final line break (what
    ``echo`` and editors add). The path may be named; the content never is."""
    if not isinstance(path, str | Path) or not str(path):
        raise ValueError(f"{key} must be the path of a file")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(
            f"{key}: cannot read {path} ({exc.strerror or type(exc).__name__})"
        ) from None
    except UnicodeDecodeError:
        raise ValueError(f"{key}: {path} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def _secret_table(name: str, given: object, files: object) -> object:
    """A table of secrets (``scim.tokens``): the values given, and those read from the files
    of ``<name>_file`` (a table of the same names; JSON in a variable)."""
    key = name + FILE_SUFFIX
    if isinstance(files, str):
        try:
            files = json.loads(files)
        except ValueError:
            files = None
    if not isinstance(files, dict):
        raise ValueError(
            f'{key} must be a table of names and file paths, like {{"entra": '
            f'"/run/secrets/scim-token"}} (the same JSON in a variable)'
        )
    if given is not None and not isinstance(given, dict):
        return given  # its own validation says what it must be
    merged: dict[str, Any] = dict(given or {})
    for token_name, path in files.items():
        if token_name in merged:
            raise ValueError(f"{name}: {token_name!r} is set both in {name} and in {key}")
        merged[token_name] = _read_secret(f"{key}.{token_name}", path)
    return merged


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    """Interface uvicorn listens on (``0.0.0.0`` in a container); ``serve --host`` beats it."""
    port: int = Field(8000, ge=1, le=65535)
    """Port of the SCIM listener; ``serve --port`` beats it."""
    tls_cert_file: FilePath | None = None
    """PEM certificate chain: the SCIM listener then speaks TLS 1.2+ only, and takes a
    replaced certificate (cert-manager's renewal) for new connections, without a restart."""
    tls_key_file: FilePath | None = None
    """Its private key (PEM), unless ``tls_cert_file`` holds it."""
    base_path: str = "/scim"
    """Path of the SCIM endpoints: Entra's Tenant URL is the public host plus this path."""
    public_url: AnyHttpUrl | None = None
    """Public scheme and host for ``Location`` and ``meta.location``; unset: the request's
    own, or a trusted proxy's ``X-Forwarded-Proto`` and ``X-Forwarded-Host``."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """Largest request body (413 beyond, from ``Content-Length`` before reading it)."""
    max_buffered_body_bytes: int = Field(33_554_432, ge=1024)
    """Request bodies held in memory at once, across every request; beyond, 503 with
    ``Retry-After`` until others finish (docs/operator/security.md)."""
    allowed_hosts: list[str] | None = None
    """Without ``public_url``: the ``Host`` names (forwarded by a trusted proxy, or sent)
    the bridge builds its URLs from; a SCIM request naming another is refused (421). Unset:
    ``host`` and the loopback names. ``["*"]``: any (the ``dev`` server)."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    """``debug`` adds one line per Modyo call; ``serve --log-level`` beats it."""
    log_format: Literal["json", "text"] = "json"
    """One JSON object per line on stderr, or plain text for people."""
    metrics_enabled: bool = True
    """Serve ``/metrics`` on the internal listener (``[internal]``), never on this one."""
    forwarded_allow_ips: str = "127.0.0.1"
    """Comma-separated IPs or CIDRs (``*``: any) of the proxies whose ``X-Forwarded-Proto``,
    ``-Host`` and ``-For`` are trusted; other clients' are ignored."""
    readiness_interval_seconds: float = Field(5.0, gt=0, le=300)
    """How often the background probes of Modyo and the shared store run (each is cut after
    this long); ``/status`` reports them, ``/readyz`` does not depend on them."""
    readiness_max_age_seconds: float = Field(15.0, gt=0, le=3600)
    """``/readyz`` is 503 (``stale``) when the probing task has completed no round for this
    long: the process is stuck, whatever the probes found."""
    status_consecutive: int = Field(3, ge=1, le=100)
    """Probe results in a row that change what ``/status`` reports about a dependency
    (Modyo, the shared store), logged once: a single lost answer changes nothing."""
    keepalive_timeout_seconds: float = Field(75.0, gt=0, le=3600)
    """How long an idle connection is kept open: longer than the load balancer's idle timeout."""
    shutdown_timeout_seconds: float = Field(25.0, gt=0, le=3600)
    """After SIGTERM, requests in flight get this long to finish; then the remaining
    connections are closed and the process exits (keep it below Kubernetes'
    ``terminationGracePeriodSeconds``, 30 s by default)."""
    header_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """A request head must arrive within it: a silent connection is closed, a partial head
    gets 408."""
    body_timeout_seconds: float = Field(10.0, gt=0, le=300)
    """A request body must arrive within it (and the request deadline), else 408."""
    max_connections: int = Field(512, ge=1, le=100_000)
    """Client connections at once; one more is answered 503 with ``Retry-After`` and closed."""
    http_parser: Literal["httptools", "h11"] = "httptools"
    """HTTP/1.1 parser: ``httptools`` (requests it refuses are re-read by h11) or ``h11``."""
    workers: int = Field(1, ge=1, le=64)
    """uvicorn worker processes; more than one needs ``idempotency.backend = "redis"``."""

    @model_validator(mode="before")
    @classmethod
    def _metrics_port_moved(cls, data: Any) -> Any:
        """``server.metrics_port`` served ``/metrics`` on ``server.host``; the internal
        listener has a host of its own, loopback by default. Taking the old key as an alias
        would move a scraper's target from every interface to loopback without a word:
        it is refused, in one line saying what to set instead."""
        if isinstance(data, dict) and "metrics_port" in data:
            raise ValueError(
                "server.metrics_port (BRIDGE_SERVER__METRICS_PORT) is now internal.port "
                "(BRIDGE_INTERNAL__PORT), on internal.host, which is 127.0.0.1 unless set: "
                'set internal.host = "0.0.0.0" too if the scraper is on another host '
                "(docs/operator/listeners.md)"
            )
        return data

    @field_validator("host")
    @classmethod
    def _host_is_a_host(cls, value: str) -> str:
        problem = host_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _allowed_hosts_are_hosts(cls, hosts: list[str] | None) -> list[str] | None:
        for position, host in enumerate(hosts or ()):
            if host != "*" and (not host or host_problem(host.strip("[]"))):
                raise ValueError(f"host #{position + 1} must be a host name, an IP address or *")
        return hosts

    def url_hosts(self) -> frozenset[str] | None:
        """The lower-cased host names URLs may be built from (None: any): ``allowed_hosts``,
        else the listening address (unless it is every interface) and the loopback names."""
        if self.allowed_hosts is not None:
            if "*" in self.allowed_hosts:
                return None
            return frozenset(host.strip("[]").lower() for host in self.allowed_hosts)
        names = {"localhost", "127.0.0.1", "::1"}
        if self.host not in ("", "0.0.0.0", "::"):
            names.add(self.host.lower())
        return frozenset(names)

    @field_validator("base_path")
    @classmethod
    def _normalise_base_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/' (for example '/scim')")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _certificate_loads(self) -> ServerSettings:
        check_tls_pair(self.tls_cert_file, self.tls_key_file, "server")
        return self

    @model_validator(mode="after")
    def _buffer_holds_a_body(self) -> ServerSettings:
        if self.max_buffered_body_bytes < self.max_body_bytes:
            raise ValueError(
                "server.max_buffered_body_bytes must be at least server.max_body_bytes"
            )
        return self

    @model_validator(mode="after")
    def _readiness_results_outlive_a_round(self) -> ServerSettings:
        """A round takes up to one interval, then waits one: results are refreshed at least
        every two intervals, so a shorter maximum age would flap."""
        if self.readiness_max_age_seconds < 2 * self.readiness_interval_seconds:
            raise ValueError(
                "server.readiness_max_age_seconds must be at least twice "
                "server.readiness_interval_seconds"
            )
        return self


class InternalSettings(_Section):
    """The internal listener: ``/metrics`` (and what else must never face the internet), on
    an address of its own, with the SCIM listener's protocols, timeouts and limits but its
    own connection cap, so that a flood of it cannot starve SCIM (docs/operator/listeners.md).
    Off while ``port`` is unset."""

    host: str = "127.0.0.1"
    """Address of the internal listener: loopback, or the pod's address for a scraper that a
    NetworkPolicy admits; never where Entra (the internet) comes."""
    port: int | None = Field(None, ge=1, le=65535)
    """Port of the internal listener (``/metrics``); unset: no internal listener."""
    max_connections: int = Field(16, ge=1, le=1000)
    """Connections to the internal listener at once; one more is answered 503 and closed."""
    tls_cert_file: FilePath | None = None
    """PEM certificate chain: the internal listener speaks TLS 1.2+ only (as the SCIM one)."""
    tls_key_file: FilePath | None = None
    """Its private key (PEM), unless ``tls_cert_file`` holds it."""

    @field_validator("host")
    @classmethod
    def _host_is_a_host(cls, value: str) -> str:
        problem = host_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _certificate_loads(self) -> InternalSettings:
        check_tls_pair(self.tls_cert_file, self.tls_key_file, "internal")
        return self


def check_named_tokens(tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """Named bearer tokens (``scim.tokens``, ``admin.tokens``): each name a label the logs
    and metrics may show, each token strong (:func:`token_problem`), no two alike."""
    seen: dict[str, str] = {}
    for name, token in tokens.items():
        if not TOKEN_NAME.fullmatch(name):
            raise ValueError(
                "a token's name must be 1-63 letters, digits, '.', '_' or '-' "
                "(it is a metric label)"
            )
        value = token.get_secret_value()
        problem = token_problem(value)
        if problem:
            raise ValueError(f"token {name!r} {problem}")
        if value in seen:
            raise ValueError(f"tokens {seen[value]!r} and {name!r} are the same token")
        seen[value] = name
    return tokens


class AdminSettings(_Section):
    """The admin console on the internal listener, never on the SCIM one
    (docs/operator/console.md). Off while ``tokens`` is empty."""

    tokens: dict[str, SecretStr] = Field(default_factory=dict)
    """The admin tokens that sign in to the console, each under a name its pages and log
    lines show (never the token): ``{"ops-alice": "…"}``; the same rules as ``scim.tokens``,
    and none may be a SCIM token. Empty: no console."""
    session_minutes: int = Field(60, ge=1, le=1440)
    """How long a console session lasts after sign-in (then sign in again)."""
    sign_in_failures_per_minute: int = Field(5, ge=1, le=1000)
    """Failed sign-ins one client address may make in a minute; beyond, 429 until the
    minute ends."""
    page_size: int = Field(50, ge=10, le=200)
    """Events per page of the console's Activity page."""
    chart_hours: int = Field(3, ge=1, le=24)
    """Hours the console's charts cover, one bar per minute."""

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens_are_named(cls, tokens: Any) -> Any:
        if isinstance(tokens, list | tuple | str):
            raise ValueError(
                'must be a table of named tokens, like [admin.tokens] ops = "…" '
                """(BRIDGE_ADMIN__TOKENS='{"ops": "…"}'): the console names who signed in"""
            )
        return tokens

    @field_validator("tokens")
    @classmethod
    def _tokens_are_strong(cls, tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return check_named_tokens(tokens)


class ScimSettings(_Section):
    tokens: dict[str, SecretStr] = Field(min_length=1)
    """The bearer tokens Entra may present (its Secret Token), each under a name that the
    access log and the metrics show (never the token): ``{"entra-2026": "…"}``; several at
    once allow a rotation (docs/operator/security.md)."""
    max_page_size: int = Field(100, ge=1, le=1000)
    """Largest page of a query (the cap of ``count``, advertised as ``maxResults``)."""
    request_deadline_seconds: float = Field(20.0, gt=0, le=300)
    """Every SCIM request ends by then; past it, 503 with ``Retry-After``."""
    max_filter_scan: int = Field(10_000, ge=0, le=1_000_000)
    """Most users or groups a filter Modyo cannot search is evaluated over; beyond, 400
    ``tooMany`` (0: never scan)."""
    max_filter_length: int = Field(4096, ge=64, le=1_048_576)
    """Characters of a filter (400 ``invalidFilter`` beyond, before parsing it)."""
    max_filter_comparisons: int = Field(20, ge=1, le=10_000)
    """Comparisons (``eq``, ``pr``...) in a filter (400 ``invalidFilter`` beyond)."""
    max_patch_members: int = Field(1000, ge=1, le=1_000_000)
    """Group members one request names (a PATCH's operations together, or a POST/PUT's
    ``members``): 400 ``invalidValue`` beyond, before any Modyo call."""
    max_patch_operations: int = Field(1000, ge=1, le=1_000_000)
    """Operations of one PATCH (400 ``invalidValue`` beyond, before any Modyo call)."""
    max_json_values: int = Field(10_000, ge=100, le=10_000_000)
    """JSON values (objects, arrays, strings, numbers...) in one request body (400
    ``invalidSyntax`` beyond, before anything reads them)."""
    auth_failures_per_minute: int = Field(30, ge=1, le=1_000_000)
    """Failed authentications one client address may make in a minute; beyond, 429 with
    ``Retry-After`` until the minute ends. A valid token is never throttled."""
    auth_throttle_clients: int = Field(10_000, ge=100, le=10_000_000)
    """Client addresses the throttle remembers at once (the oldest forgotten first)."""

    @field_validator("tokens", mode="before")
    @classmethod
    def _tokens_are_named(cls, tokens: Any) -> Any:
        if isinstance(tokens, list | tuple | str):
            raise ValueError(
                'must be a table of named tokens, like [scim.tokens] entra = "…" '
                """(BRIDGE_SCIM__TOKENS='{"entra": "…"}'): the access log and the metrics """
                "name the token each request used, never its value"
            )
        return tokens

    @field_validator("tokens")
    @classmethod
    def _tokens_are_strong(cls, tokens: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return check_named_tokens(tokens)


class ModyoSettings(_Section):
    base_url: AnyHttpUrl
    """Your Modyo account's URL, such as ``https://acme.modyo.cloud``."""
    token: SecretStr
    """API access token of a dedicated Modyo admin, never in Entra's provisioning scope."""
    api: Literal["rest", "scim"] = "rest"
    """Which Modyo interface the bridge calls: the Administration REST API under
    ``/api/admin``, or Modyo's own SCIM server under ``/api/admin/scim``
    (docs/design/upstreams.md)."""
    connect_timeout_seconds: float = Field(5.0, gt=0, le=120)
    """Seconds to open a connection to Modyo."""
    read_timeout_seconds: float = Field(15.0, gt=0, le=300)
    """Seconds to wait for each read of a Modyo answer."""
    transport: Literal["aiohttp", "httpx"] = "aiohttp"
    """HTTP transport under httpx: aiohttp (faster under concurrency) or httpx's own pool."""
    max_connections: int = Field(64, ge=1, le=1000)
    """Connections kept open to Modyo."""
    max_in_flight: int = Field(32, ge=1, le=1000)
    """Modyo calls in flight at once, across all SCIM requests; more wait, within the deadline."""
    group_directory_size: int = Field(50_000, ge=0, le=1_000_000)
    """With ``api = "scim"``: most groups the group directory holds (in this process, or in
    the shared Redis); an account with more, or 0, reads the whole group listing for each
    group query (docs/design/upstreams.md)."""
    group_directory_max_age_seconds: float = Field(60.0, gt=0, le=86_400)
    """With ``api = "scim"``: how long a group the directory saw in Modyo, or the absence of
    a name after a full pass over the listing, is trusted; past it, a group query costs one
    Modyo call (the group read again, or the pass's next page)."""
    max_calls_per_request: int = Field(2000, ge=10, le=1_000_000)
    """Modyo calls one SCIM request may cause; a request that would need more is refused
    (400 ``tooMany``) before the calls that would pass it (docs/operator/security.md)."""
    verify_tls: bool = True
    """Verify Modyo's TLS certificate (leave it on outside local tests)."""
    allow_insecure: bool = False
    """Let the token travel in plaintext (an ``http://`` base URL) or over unverified TLS
    (``verify_tls = false``) to a Modyo beyond this host; either needs it unless Modyo is on
    a loopback address. In effect, it is logged at warning on start, listed in ``/readyz``
    and ``scim_bridge_modyo_insecure`` is 1 (docs/operator/listeners.md)."""
    proxy_url: SecretStr | None = None
    """Egress proxy (``http://[user:password@]host:port``); unset: ``HTTPS_PROXY``,
    ``HTTP_PROXY`` and ``NO_PROXY`` decide. A secret: it may carry a password."""
    ca_file: FilePath | None = None
    """PEM CA certificates trusted for Modyo's TLS, in addition to the public ones."""
    client_cert: FilePath | None = None
    """PEM client certificate (mTLS), with its key unless ``client_key`` is given."""
    client_key: FilePath | None = None
    """PEM private key of ``client_cert``, when it is not in the same file."""
    dry_run: bool = False
    """Rehearse: reads go to Modyo, no write ever does; writes are planned in an overlay
    that later reads see (docs/operator/first-cycle.md). ``serve --dry-run`` sets it."""
    dry_run_max_changes: int = Field(20_000, ge=1, le=1_000_000)
    """Planned changes the overlay holds (a member added or removed counts one); beyond,
    writes are answered 503 with a reason."""

    @field_validator("token")
    @classmethod
    def _token_not_empty(cls, token: SecretStr) -> SecretStr:
        if not token.get_secret_value().strip():
            raise ValueError("must not be empty")
        return token

    @field_validator("proxy_url")
    @classmethod
    def _proxy_is_an_http_url(cls, proxy: SecretStr | None) -> SecretStr | None:
        """Checked without echoing the value (it may hold a password)."""
        if proxy is None:
            return None
        parts = _secret_url(proxy, ("http", "https"), "http://host:port")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("must be scheme://[user:password@]host:port, without a path")
        return proxy

    @field_validator("ca_file")
    @classmethod
    def _ca_file_loads(cls, path: Path | None) -> Path | None:
        if path is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=path)
            except ssl.SSLError as exc:
                raise ValueError(f"holds no PEM CA certificate ({exc.reason})") from None
        return path

    @property
    def insecure(self) -> tuple[str, ...]:
        """What ``allow_insecure`` lets through here (``plaintext``, ``unverified_tls``):
        nothing when Modyo is on a loopback address, where nothing leaves the host."""
        if is_loopback(self.base_url.host or ""):
            return ()
        found = ("plaintext",) if self.base_url.scheme == "http" else ()
        return found + (("unverified_tls",) if not self.verify_tls else ())

    @model_validator(mode="after")
    def _no_plaintext_by_accident(self) -> ModyoSettings:
        """Plain HTTP or unverified TLS to a Modyo beyond this host exposes the token (and
        every user's data) to whoever is on the path: only with ``allow_insecure``."""
        if self.allow_insecure:
            return self
        if "plaintext" in self.insecure:
            raise ValueError(
                "modyo.base_url is http://, which sends the Modyo token in plaintext: use "
                "https://, or set modyo.allow_insecure = true to accept that (http:// to a "
                "loopback address, 127.0.0.1, ::1 or localhost, needs no flag)"
            )
        if "unverified_tls" in self.insecure:
            raise ValueError(
                "modyo.verify_tls = false accepts any certificate, an interceptor's "
                "included; trust your CA with modyo.ca_file instead, or set "
                "modyo.allow_insecure = true to accept that"
            )
        return self

    @model_validator(mode="after")
    def _client_certificate_loads(self) -> ModyoSettings:
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("modyo.client_key is set without modyo.client_cert")
        if self.client_cert is not None:
            try:
                ssl.create_default_context().load_cert_chain(self.client_cert, self.client_key)
            except ssl.SSLError as exc:
                raise ValueError(
                    "modyo.client_cert (with modyo.client_key) is not a PEM certificate "
                    f"and its private key ({exc.reason})"
                ) from None
        return self


class RetrySettings(_Section):
    max_attempts: int = Field(5, ge=1, le=20)
    """Attempts per Modyo call (1: no retry)."""
    backoff_initial_seconds: float = Field(0.2, ge=0, le=30)
    """First wait of the exponential backoff (with jitter) between attempts."""
    backoff_max_seconds: float = Field(5.0, ge=0, le=120)
    """Longest wait of the backoff."""
    retry_after_cap_seconds: float = Field(10.0, ge=0, le=300)
    """Longest ``Retry-After`` the bridge waits out; a longer one goes to Entra in a 503."""


class IdempotencySettings(_Section):
    enabled: bool = True
    """Replay the answer of an identical write whose client never got it, and run identical
    concurrent writes once."""
    ttl_seconds: float = Field(600.0, gt=0, le=86_400)
    """How long an undelivered answer is kept for the retry."""
    max_entries: int = Field(10_000, ge=1, le=10_000_000)
    """The memory store's bound (Redis is bounded by its TTLs and ``maxmemory``)."""
    backend: Literal["memory", "redis"] = "memory"
    """Where answers, single-flight and create locks live: this process, or a Redis shared
    by every replica (docs/operator/high-availability.md)."""
    redis_url: SecretStr | None = None
    """``redis://[:password@]host:port/db`` or ``rediss://`` (TLS); a secret (its password)."""
    redis_sentinels: list[str] = Field(default_factory=list)
    """Sentinels (``host:port``) that name the primary of ``redis_sentinel_service``."""
    redis_sentinel_service: str | None = None
    """The service (primary name) the sentinels monitor."""
    key_prefix: str = Field("scim-bridge:", min_length=1, max_length=100)
    """Prefix of every key, so one Redis can serve several groups of bridges."""
    lock_ttl_seconds: float = Field(10.0, gt=0, le=300)
    """Expiry of a single-flight or create lock, renewed by its owner while it runs: how soon
    another replica takes over the write of a process that died."""
    redis_timeout_seconds: float = Field(5.0, gt=0, le=60)
    """The longest one Redis call may take (and never past the request's deadline): a slower
    Redis counts as unreachable, and the write it served answers 503 with ``Retry-After``."""
    redis_connect_timeout_seconds: float = Field(2.0, gt=0, le=60)
    """The longest opening a connection to Redis (or to a sentinel) may take."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_a_redis_url(cls, url: SecretStr | None) -> SecretStr | None:
        """Checked without echoing the value (it may hold a password)."""
        if url is None:
            return None
        parts = _secret_url(url, ("redis", "rediss"), "redis://host:6379/0")
        if parts.path not in ("", "/") and not parts.path[1:].isdigit():
            raise ValueError("must name a database number as its path (redis://host:6379/0)")
        return url

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_are_addresses(cls, sentinels: list[str]) -> list[str]:
        for position, address in enumerate(sentinels):
            host, _, port = address.rpartition(":")
            if not host or host_problem(host.strip("[]")) or not port.isdigit():
                raise ValueError(f"sentinel #{position + 1} must be host:port")
            if not 1 <= int(port) <= 65535:
                raise ValueError(f"sentinel #{position + 1} has a port outside 1-65535")
        return sentinels

    @model_validator(mode="after")
    def _redis_is_located(self) -> IdempotencySettings:
        """The redis backend needs one way to find Redis: a URL, or sentinels and a service."""
        if self.backend != "redis":
            return self
        if bool(self.redis_sentinels) != bool(self.redis_sentinel_service):
            raise ValueError(
                "idempotency.redis_sentinels and idempotency.redis_sentinel_service "
                "go together (set both, or neither)"
            )
        if not self.redis_sentinels and self.redis_url is None:
            raise ValueError(
                'idempotency.backend = "redis" needs idempotency.redis_url (or '
                "idempotency.redis_sentinels and idempotency.redis_sentinel_service)"
            )
        return self


class SafetySettings(_Section):
    """The brake on destructive changes: per rolling window, at most this many of each kind
    are applied; beyond, they are held (503 + ``Retry-After``, nothing sent to Modyo) until an
    administrator releases the brake. Counts are shared in Redis when
    ``idempotency.backend = "redis"``, so a threshold is global. Defaults are set well above
    what a medium-sized bank's Entra cycles change in an hour, and the reasons are in
    docs/operator/first-cycle.md, "The brake". A threshold of 0 holds every change of its
    kind."""

    enabled: bool = True
    """Whether the brake counts and holds (a dry run never needs it: nothing is written)."""
    window_minutes: float = Field(60.0, gt=0, le=10_080)
    """The rolling window the thresholds count over."""
    max_disables: int = Field(50, ge=0, le=1_000_000)
    """Users set ``active: false`` per window (an already disabled user is not counted)."""
    max_deletes: int = Field(25, ge=0, le=1_000_000)
    """Users deleted per window."""
    max_group_deletes: int = Field(5, ge=0, le=1_000_000)
    """Groups deleted per window."""
    max_member_removals: int = Field(250, ge=0, le=1_000_000)
    """Members removed from groups per window (each user leaving each group counts one)."""
    privileged_groups: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=100
    )
    """Groups (Modyo ids or displayNames, ignoring case) whose new members are counted against
    ``max_privileged_additions``; empty: additions are never held."""
    max_privileged_additions: int = Field(10, ge=0, le=1_000_000)
    """Members added to ``privileged_groups`` per window."""


MIN_JOURNAL_KEY_LENGTH: Final = 32
_REPLICA: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class JournalSettings(_Section):
    """The provisioning journal: one event per SCIM write and failed read, chained by a keyed
    hash (docs/reference/journal.md)."""

    enabled: bool = False
    """Write the journal: one event per SCIM write and per failed read."""
    file: Path | None = None
    """JSON-lines files (one per replica, rotated by size); unset: its own stream on stdout."""
    max_bytes: int = Field(104_857_600, ge=65_536, le=10_737_418_240)
    """A file is rotated once it holds this many bytes (it exceeds it by one line at most)."""
    keep_files: int = Field(20, ge=0, le=100_000)
    """Rotated files kept per replica, the oldest removed first; 0 keeps every file."""
    fsync: Literal["rotation", "event"] = "rotation"
    """When a file is forced to disk: at rotation and close, or after every line."""
    key: SecretStr | None = None
    """The journal key (at least 32 characters): seals the chain, and keys the hashes of
    ``values = "hashed"``. A secret: never stored beside the journal."""
    key_file: FilePath | None = None
    """A file holding the journal key (a mounted secret), instead of ``key``."""
    values: Literal["full", "hashed", "none"] = "full"
    """Personal values (names, e-mails, userName): as given, as keyed hashes, or left out."""
    replica: str | None = None
    """Names this process's chain and files; unset: the host name (a Kubernetes pod's name)."""
    queue_size: int = Field(10_000, ge=1, le=1_000_000)
    """Events waiting for the writer; beyond, an event is dropped (counted), never waited for."""
    history_size: int = Field(10_000, ge=1, le=1_000_000)
    """Most recent events the history keeps (memory, or the Redis stream)."""
    witness_interval_seconds: float = Field(60.0, gt=0, le=3600)
    """How often the chain's head is written to the ordinary log (when it moved)."""

    @field_validator("key")
    @classmethod
    def _key_is_strong(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None:
            problem = journal_key_problem(key.get_secret_value())
            if problem:
                raise ValueError(problem)
        return key

    @field_validator("replica")
    @classmethod
    def _replica_is_a_name(cls, replica: str | None) -> str | None:
        if replica is not None and not _REPLICA.fullmatch(replica):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-' (a file name part)")
        return replica

    @model_validator(mode="after")
    def _key_is_where_it_is_needed(self) -> JournalSettings:
        """One key source; its file read here (so the log redaction knows it) and never
        beside the journal; a file sink or hashed values need it."""
        if self.key is not None and self.key_file is not None:
            raise ValueError("journal.key and journal.key_file are exclusive: set one")
        if self.key_file is not None:
            self.key = SecretStr(_read_key_file(self.key_file))
            if self.file is not None and _beside(self.key_file, self.file):
                raise ValueError(
                    "journal.key_file is in the journal's directory: whoever can edit the "
                    "journal could read the key and rebuild the chain; keep it in a secret mount"
                )
        if not self.enabled:
            return self
        if self.file is not None and self.key is None:
            raise ValueError(
                "journal.file needs journal.key or journal.key_file: the keyed hash chaining "
                "its lines is what makes the file tamper-evident"
            )
        if self.values == "hashed" and self.key is None:
            raise ValueError(
                'journal.values = "hashed" needs journal.key or journal.key_file (the hash key)'
            )
        if self.file is not None and not self.file.parent.is_dir():
            raise ValueError("journal.file: its directory does not exist")
        return self


def journal_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be the journal key: too short, or holding whitespace or control
    characters (a key file's final line break is not part of the key)."""
    if len(key) < MIN_JOURNAL_KEY_LENGTH:
        return f"is shorter than {MIN_JOURNAL_KEY_LENGTH} characters"
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in key):
        return "holds whitespace or control characters"
    return None


def _read_key_file(path: Path) -> str:
    """The key in ``path``: its text without the final line break; never echoed."""
    try:
        key = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError):
        raise ValueError("journal.key_file cannot be read as UTF-8 text") from None
    problem = journal_key_problem(key)
    if problem:
        raise ValueError(f"journal.key_file: the key {problem}")
    return key


def _beside(key_file: Path, journal: Path) -> bool:
    """Whether ``key_file`` lies in the journal's directory or below it."""
    return journal.resolve().parent in key_file.resolve().parents


class _Configuration(BaseSettings):
    """Where settings come from (TOML file, ``BRIDGE_*``), and what every configuration does."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    def secret_values(self) -> list[str]:
        """Every secret this configuration holds, for the log redaction: the value of every
        ``SecretStr`` setting, found by walking the sections (a new secret setting is covered
        without code). A secret that is a URL (a proxy or a store with ``user:password@``)
        contributes its password, as written and decoded, and its Basic credentials."""
        found: list[str] = []
        for value in _walk(self):
            if isinstance(value, SecretStr):
                found.extend(_secret_forms(value.get_secret_value()))
        return found

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


class Settings(_Configuration):
    """The whole configuration; sections mirror the tables of ``config.example.toml``."""

    server: ServerSettings = ServerSettings()
    internal: InternalSettings = InternalSettings()
    scim: ScimSettings
    modyo: ModyoSettings
    retry: RetrySettings = RetrySettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    journal: JournalSettings = JournalSettings()
    admin: AdminSettings = AdminSettings()

    @model_validator(mode="after")
    def _admin_tokens_are_not_scim_tokens(self) -> Settings:
        """An admin token is not a SCIM token: Entra, which holds the SCIM tokens, must not
        be able to sign in to the console (nor an admin to provision)."""
        scim = {token.get_secret_value() for token in self.scim.tokens.values()}
        for name, token in self.admin.tokens.items():
            if token.get_secret_value() in scim:
                raise ValueError(f"admin.tokens: {name!r} is also a SCIM token (scim.tokens)")
        return self

    safety: SafetySettings = SafetySettings()

    @model_validator(mode="after")
    def _listeners_apart(self) -> Settings:
        if self.internal.port is not None and self.internal.port == self.server.port:
            raise ValueError(
                f"internal.port and server.port are both {self.server.port}: the internal "
                "listener needs a port of its own"
            )
        return self

    @model_validator(mode="after")
    def _a_patch_fits_the_call_budget(self) -> Settings:
        """A PATCH naming ``scim.max_patch_members`` members costs up to one Modyo call per
        member and two per hundred (in either ``modyo.api``): it must fit the budget, so the
        member cap, checked before any call, is the one a PATCH meets."""
        members = self.scim.max_patch_members
        needed = members + 2 * -(-members // 100) + 1
        if self.modyo.max_calls_per_request < needed:
            raise ValueError(
                f"modyo.max_calls_per_request must be at least {needed}: a PATCH naming "
                f"scim.max_patch_members ({members}) members may cost that many Modyo calls"
            )
        return self

    @model_validator(mode="after")
    def _workers_share_a_store(self) -> Settings:
        """Workers are processes: with the memory backend each would keep its own answers and
        create locks, and a retry or a concurrent create landing on another would run twice."""
        if self.server.workers > 1 and self.idempotency.backend == "memory":
            raise ValueError(
                f"server.workers = {self.server.workers} needs idempotency.backend = "
                '"redis": the memory backend holds one process\'s idempotency and create locks'
            )
        if self.server.workers > 1 and self.journal.enabled and self.journal.file is None:
            raise ValueError(
                f"server.workers = {self.server.workers} with journal.enabled needs "
                "journal.file: workers sharing stdout could interleave their longer lines"
            )
        return self


class CheckSettings(_Configuration):
    """What ``scim-bridge check`` needs: ``[modyo]`` (and ``[retry]``), validated. The
    server's other sections may be present, as in the file ``serve`` reads, incomplete or
    not (check serves nothing, so their values are not read); an unknown section is refused
    as in :class:`Settings`."""

    server: dict[str, Any] | None = None
    internal: dict[str, Any] | None = None
    scim: dict[str, Any] | None = None
    modyo: ModyoSettings
    retry: RetrySettings = RetrySettings()
    idempotency: dict[str, Any] | None = None
    journal: dict[str, Any] | None = None
    admin: dict[str, Any] | None = None


class JournalReadSettings(_Configuration):
    """What ``journal tail --redis`` and ``journal export --redis`` need: ``[idempotency]``,
    the shared Redis the history is in. The bridge's own configuration serves: its other
    sections are validated when present, none is required."""

    server: ServerSettings = ServerSettings()
    internal: InternalSettings = InternalSettings()
    scim: ScimSettings | None = None
    modyo: ModyoSettings | None = None
    retry: RetrySettings = RetrySettings()
    idempotency: IdempotencySettings = IdempotencySettings()
    journal: JournalSettings = JournalSettings()
    admin: AdminSettings = AdminSettings()
    safety: SafetySettings = SafetySettings()


def redact_url(url: str) -> str:
    """``url`` with its password replaced, for messages (``http://user:***@proxy:3128``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
