"""Configuration: TOML plus BRIDGE_* environment, one clear line per problem, no secret echoed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge.config import host_problem
from bridge.config_loading import ConfigError, load_settings

VALID = """
[scim.tokens]
entra = "0123456789abcdef-token-Zq8xW2vK9mLp"
[modyo]
base_url = "https://acme.modyo.cloud"
token = "modyo-secret-value"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def test_example_config_is_valid_once_secrets_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_MODYO__TOKEN", "a-real-modyo-token")
    monkeypatch.setenv("BRIDGE_SCIM__TOKENS", '{"entra": "a-real-scim-token-0123456789-abcdef"}')
    settings = load_settings(Path(__file__).parent.parent / "config.example.toml")
    assert settings.server.base_path == "/scim"
    assert settings.modyo.token.get_secret_value() == "a-real-modyo-token"


def test_defaults_and_file_values(tmp_path: Path) -> None:
    settings = load_settings(_write(tmp_path, VALID))
    assert (settings.server.host, settings.server.port, settings.server.base_path) == (
        "127.0.0.1",
        8000,
        "/scim",
    )
    assert str(settings.modyo.base_url) == "https://acme.modyo.cloud/"
    assert settings.scim.request_deadline_seconds == 20
    assert settings.idempotency.max_entries == 10_000


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_MODYO__TOKEN", "from-the-environment")
    monkeypatch.setenv("BRIDGE_SERVER__PORT", "9443")
    monkeypatch.setenv(
        "BRIDGE_SCIM__TOKENS",
        '{"entra": "first-token-0123456789-abcdefghij", "new": "second-token-0123456789-abcdefgh"}',
    )
    settings = load_settings(_write(tmp_path, VALID))
    assert settings.modyo.token.get_secret_value() == "from-the-environment"
    assert settings.server.port == 9443
    tokens = {name: token.get_secret_value() for name, token in settings.scim.tokens.items()}
    assert tokens == {  # a table merges key by key, as a section does: the variable's wins
        "entra": "first-token-0123456789-abcdefghij",
        "new": "second-token-0123456789-abcdefgh",
    }
    assert (
        str(settings.modyo.base_url) == "https://acme.modyo.cloud/"
    )  # the rest still from the file


def test_environment_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_SCIM__TOKENS", '{"entra": "only-env-token-0123456789-abcdefgh"}')
    monkeypatch.setenv("BRIDGE_MODYO__BASE_URL", "http://127.0.0.1:8001")
    monkeypatch.setenv("BRIDGE_MODYO__TOKEN", "fake-modyo-token")
    assert load_settings(None).server.base_path == "/scim"


def test_every_problem_is_one_line_and_secrets_are_never_echoed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[server]
port = 70000
prot = 1
base_path = "scim"
[scim.tokens]
entra = "short-secret"
[modyo]
base_url = "not a url"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    problems = caught.value.problems
    assert any(p.startswith("server.port:") for p in problems)
    assert "server.prot: unknown setting (see config.example.toml for valid keys)" in problems
    assert any(p.startswith("server.base_path: must start with '/'") for p in problems)
    assert "scim.tokens: token 'entra' is shorter than 32 characters" in problems
    assert any(p.startswith("modyo.base_url:") for p in problems)
    assert (
        "modyo.token: required, set it in the config file or BRIDGE_MODYO__TOKEN "
        "(or modyo.token_file: a file holding it)"
    ) in problems
    assert all("\n" not in p for p in problems)
    assert not any("short-secret" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "expected"),
    [(None, "config file not found"), ("[scim\n", "is not valid TOML")],
)
def test_unreadable_files(tmp_path: Path, text: str | None, expected: str) -> None:
    path = tmp_path / "missing.toml" if text is None else _write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert len(caught.value.problems) == 1 and expected in caught.value.problems[0]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('proxy_url = "socks5://u:hidden-pw@h:1080"', "modyo.proxy_url: must be an http://"),
        ('proxy_url = "http://u:hidden-pw@h:1080/path"', "modyo.proxy_url: must be scheme://"),
        ('proxy_url = "http://u:hidden-pw@h:port"', "modyo.proxy_url: is not a URL"),
        ('ca_file = "/nonexistent/ca.pem"', "modyo.ca_file: Path does not point to a file"),
        ("ca_file = '{not_pem}'", "modyo.ca_file: holds no PEM CA certificate"),
        ("client_key = '{not_pem}'", "modyo: modyo.client_key is set without modyo.client_cert"),
        ("client_cert = '{not_pem}'", "modyo: modyo.client_cert (with modyo.client_key) is not"),
    ],
)
def test_egress_settings_are_checked_without_echoing_them(
    tmp_path: Path, line: str, expected: str
) -> None:
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hidden-pw, not a certificate\n")
    path = _write(tmp_path, VALID + line.format(not_pem=not_pem) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert problem.startswith(expected), problem
    assert "hidden-pw" not in problem


def test_egress_settings_load(tmp_path: Path) -> None:
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    ca.issue_cert("bridge").private_key_and_cert_chain_pem.write_to_path(tmp_path / "me.pem")
    text = VALID + (
        f'proxy_url = "http://user:p%40ss@proxy.bank.example:3128"\n'
        f'ca_file = "{tmp_path / "ca.pem"}"\nclient_cert = "{tmp_path / "me.pem"}"\n'
    )
    settings = load_settings(_write(tmp_path, text))
    assert settings.modyo.ca_file == tmp_path / "ca.pem"
    assert "p%40ss" not in repr(settings) and "p@ss" in settings.secret_values()


JSON_OBJECT = """a JSON object like '{"name": "value"}'"""
JSON_FILES = """a JSON object like '{"name": "/run/scim-token"}'"""


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("BRIDGE_SCIM__TOKENS", "plain-secret-token", JSON_OBJECT),
        ("bridge_scim__tokens", "", JSON_OBJECT),
        ("BRIDGE_SCIM__TOKENS", '{"entra": "unterminated-secret', JSON_OBJECT),
        ("BRIDGE_SCIM__TOKENS_FILE", "/var/secret-token", JSON_FILES),
        ("BRIDGE_MODYO", "token=modyo-secret",
         """a JSON object like '{"key": "value"}' (or set each key as BRIDGE_MODYO__<KEY>)"""),
    ],
)  # fmt: skip
def test_a_variable_that_must_be_json_and_is_not_is_one_line(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    """pydantic-settings raised a 47-line SettingsError traceback for the most likely mistake,
    ``BRIDGE_SCIM__TOKENS=plain-token``; the line names the variable, never its value."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert caught.value.problems == [f"{name.upper()} must be {expected}"]
    assert "secret" not in str(caught.value)


def test_a_config_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[modyo]\ntoken = "caf\xe9-secret"\n')  # tomllib raised UnicodeDecodeError
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [f"config file {path} is not valid TOML: it is not UTF-8 text"]


def test_wrong_types_say_what_is_expected_not_what_pydantic_says(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[server]
port = "eighty"
host = "256.1.1.1"
metrics_enabled = "maybe"
log_level = "loud"
[scim]
tokens = {entra = 5}
max_page_size = 0
[modyo]
base_url = 5
token = ["x"]
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [
        "server.host: must be an IP address or a host name",
        "server.port: must be a whole number",
        "server.log_level: must be one of 'debug', 'info', 'warning' or 'error'",
        "server.metrics_enabled: must be true or false",
        "scim.tokens.entra: must be a string",
        "scim.max_page_size: must be at least 1",
        "modyo.base_url: must be a URL such as https://acme.modyo.cloud",
        "modyo.token: must be a string",
    ]


@pytest.mark.parametrize(
    "token",
    [
        " padded-token-0123456789-abcdefghij",
        "padded-token-0123456789-abcdefghij\n",
        "nul\x00-token-0123456789-abcdefghijk",
    ],
)
def test_a_token_no_authorization_header_can_carry_is_refused(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    """BearerAuth strips the credential, so a padded token could never match: the bridge
    started and refused every request."""
    monkeypatch.setenv("BRIDGE_SCIM__TOKENS", json.dumps({"entra": token}))
    monkeypatch.setenv("BRIDGE_MODYO__BASE_URL", "http://127.0.0.1:8001")
    monkeypatch.setenv("BRIDGE_MODYO__TOKEN", "fake-modyo-token")
    with pytest.raises(ConfigError) as caught:
        load_settings(None)
    assert caught.value.problems == [
        "scim.tokens: token 'entra' has leading or trailing whitespace or control characters"
    ]


@pytest.mark.parametrize(
    ("host", "valid"),
    [("0.0.0.0", True), ("::", True), ("", True), ("localhost", True), ("scim_bridge", True),
     ("bridge.internal", True), ("::1", True), ("256.1.1.1", False), ("a b", False),
     ("1.2.3", False), ("host:80", False), ("-", False), ("x" * 300, False)],
)  # fmt: skip
def test_listen_hosts(host: str, valid: bool) -> None:
    assert (host_problem(host) is None) is valid


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('backend = "redis"',
         'idempotency: idempotency.backend = "redis" needs idempotency.redis_url'),
        ('backend = "redis"\nredis_sentinels = ["10.0.0.1:26379"]',
         "idempotency: idempotency.redis_sentinels and idempotency.redis_sentinel_service go"),
        ('redis_url = "http://:hidden-pw@redis:6379"',
         "idempotency.redis_url: must be a redis:// or rediss:// URL"),
        ('redis_url = "redis://:hidden-pw@redis:port"', "idempotency.redis_url: is not a URL"),
        ('redis_url = "redis://:hidden-pw@redis:6379/cache"',
         "idempotency.redis_url: must name a database number"),
        ('redis_sentinels = ["10.0.0.1"]', "idempotency.redis_sentinels: sentinel #1 must be"),
        ('redis_sentinels = ["a:1", "b:70000"]',
         "idempotency.redis_sentinels: sentinel #2 has a port outside 1-65535"),
        ('key_prefix = ""', "idempotency.key_prefix: String should have at least 1 character"),
        ('backend = "disk"', "idempotency.backend: must be one of 'memory' or 'redis'"),
    ],
)  # fmt: skip
def test_redis_settings_are_checked_without_echoing_them(
    tmp_path: Path, lines: str, expected: str
) -> None:
    path = _write(tmp_path, VALID + "[idempotency]\n" + lines + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    [problem] = caught.value.problems
    assert problem.startswith(expected), problem
    assert "hidden-pw" not in problem


def test_redis_settings_load_and_the_password_is_a_secret(tmp_path: Path) -> None:
    text = VALID + (
        '[idempotency]\nbackend = "redis"\nredis_url = "rediss://:s%3Acret-pw@redis.bank:6380/2"\n'
        'redis_sentinels = ["10.0.0.1:26379", "[::1]:26380"]\nredis_sentinel_service = "bridge"\n'
        "[server]\nworkers = 3\n"
    )
    settings = load_settings(_write(tmp_path, text))
    assert settings.server.workers == 3
    assert settings.idempotency.redis_sentinels == ["10.0.0.1:26379", "[::1]:26380"]
    assert settings.idempotency.key_prefix == "scim-bridge:"
    assert "cret-pw" not in repr(settings) and "s:cret-pw" in settings.secret_values()


def test_several_workers_with_the_memory_backend_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, VALID + "[server]\nworkers = 2\n"))
    assert caught.value.problems == [
        'server.workers = 2 needs idempotency.backend = "redis": the memory backend holds '
        "one process's idempotency and create locks"
    ]


JOURNAL_KEY = "journal-key-0123456789-abcdefghijkl"


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ('enabled = true\nfile = "{dir}/journal.jsonl"',
         "journal: journal.file needs journal.key or journal.key_file: the keyed hash chaining "
         "its lines is what makes the file tamper-evident"),
        ('enabled = true\nvalues = "hashed"',
         'journal: journal.values = "hashed" needs journal.key or journal.key_file (the hash '
         "key)"),
        (f'key = "{JOURNAL_KEY}"\nkey_file = "{{secrets}}/key"',
         "journal: journal.key and journal.key_file are exclusive: set one"),
        ('enabled = true\nfile = "{dir}/journal.jsonl"\nkey_file = "{dir}/key"',
         "journal: journal.key_file is in the journal's directory: whoever can edit the journal "
         "could read the key and rebuild the chain; keep it in a secret mount"),
        ('key = "short-hidden-key"', "journal.key: is shorter than 32 characters"),
        (f'key = "{JOURNAL_KEY} x"', "journal.key: holds whitespace or control characters"),
        ('key_file = "{secrets}/short"',
         "journal: journal.key_file: the key is shorter than 32 characters"),
        ('replica = "pod/1"',
         "journal.replica: must be 1-64 letters, digits, '.', '_' or '-' (a file name part)"),
        (f'enabled = true\nfile = "{{dir}}/missing/journal.jsonl"\nkey = "{JOURNAL_KEY}"',
         "journal: journal.file: its directory does not exist"),
        ('values = "pseudonymous"', "journal.values: must be one of 'full', 'hashed' or 'none'"),
        ("max_bytes = 10", "journal.max_bytes: must be at least 65536"),
    ],
)  # fmt: skip
def test_journal_settings_are_checked_without_echoing_the_key(
    tmp_path: Path, lines: str, expected: str
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key").write_text(JOURNAL_KEY + "\n")
    (secrets / "short").write_text("short-hidden-key\n")
    (tmp_path / "key").write_text(JOURNAL_KEY + "\n")
    text = lines.format(dir=tmp_path, secrets=secrets)
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, VALID + "[journal]\n" + text + "\n"))
    [problem] = caught.value.problems
    assert problem == expected
    assert "short-hidden-key" not in problem and JOURNAL_KEY not in problem


def test_workers_write_their_journal_to_files(tmp_path: Path) -> None:
    redis = '[idempotency]\nbackend = "redis"\nredis_url = "redis://127.0.0.1:6379/0"\n'
    text = VALID + redis + "[server]\nworkers = 2\n[journal]\nenabled = true\n"
    with pytest.raises(ConfigError) as caught:
        load_settings(_write(tmp_path, text))
    assert caught.value.problems == [
        "server.workers = 2 with journal.enabled needs journal.file: workers sharing stdout "
        "could interleave their longer lines"
    ]


def test_journal_settings_load_and_the_key_file_is_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "key").write_text(JOURNAL_KEY + "\r\n")
    (tmp_path / "journal").mkdir()
    monkeypatch.setenv("BRIDGE_JOURNAL__FILE", str(tmp_path / "journal" / "journal.jsonl"))
    text = VALID + f'[journal]\nenabled = true\nkey_file = "{secrets}/key"\nvalues = "hashed"\n'
    settings = load_settings(_write(tmp_path, text))
    journal = settings.journal
    assert journal.file == tmp_path / "journal" / "journal.jsonl"
    assert journal.key is not None and journal.key.get_secret_value() == JOURNAL_KEY
    assert JOURNAL_KEY in settings.secret_values() and JOURNAL_KEY not in repr(settings)
    assert (journal.values, journal.max_bytes, journal.keep_files) == ("hashed", 104_857_600, 20)


def test_a_variable_naming_no_setting_is_reported_by_its_own_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key its section lacks is refused, as the variable an operator set; a name that is
    no section is warned about, with the setting it resembles (one ``_`` for ``__``)."""
    monkeypatch.setenv("BRIDGE_MODYO_TOKEN", "looks-right")  # modyo.token would stay unset
    monkeypatch.setenv("BRIDGE_SOMETHING_ELSE", "1")
    monkeypatch.setenv("BRIDGE_MODYO__TOKN", "typo")
    with pytest.raises(ConfigError) as refused:
        load_settings(_write(tmp_path, VALID))
    assert refused.value.problems == [
        "BRIDGE_MODYO__TOKN (modyo.tokn): unknown setting (see config.example.toml for valid keys)"
    ]
    assert capsys.readouterr().err.splitlines() == [
        "scim-bridge: warning: BRIDGE_MODYO_TOKEN is ignored: did you mean BRIDGE_MODYO__TOKEN "
        "(two underscores)?",
        "scim-bridge: warning: BRIDGE_SOMETHING_ELSE is ignored: no setting reads it",
    ]
    assert "looks-right" not in capsys.readouterr().err + str(refused.value)
