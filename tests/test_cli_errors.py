"""No traceback reaches a person: every CLI command, with every kind of bad
flag and configuration, exits non-zero with one line per problem, and never prints a
secret. Each case runs the real CLI (``python -m bridge``) in its own process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

SCIM_SECRET = "walk-scim-secret-0123456789-abcdefgh"
MODYO_SECRET = "walk-modyo-secret-0123456789"
CONFIGURED = {  # a complete, valid configuration, so each case shows only its own problem
    "BRIDGE_SCIM__TOKENS": f'{{"entra": "{SCIM_SECRET}"}}',
    "BRIDGE_MODYO__BASE_URL": "http://127.0.0.1:9",
    "BRIDGE_MODYO__TOKEN": MODYO_SECRET,
}
HEADER = "scim-bridge: the configuration cannot be used:"
FILES = {
    "bad.toml": b"[scim\n",
    "latin1.toml": b'[modyo]\ntoken = "caf\xe9-secret-0123456789"\n',
    "unknown.toml": b"[server]\nprot = 8000\n[nope]\nx = 1\n",
    "types.toml": b'[server]\nport = "eighty"\nmetrics_enabled = "maybe"\n'
    b'[scim]\ntokens = "plain"\n',
    "list.toml": b'[scim]\ntokens = ["walk-scim-secret-0123456789-abcdefgh"]\n',
    "section.toml": b"server = 5\n",
    "short.toml": b'[scim.tokens]\nentra = "short-secret"\n',
}
JSON_OBJECT = """must be a JSON object like '{"name": "value"}'"""
NAMED = (
    'scim.tokens: must be a table of named tokens, like [scim.tokens] entra = "…" '
    """(BRIDGE_SCIM__TOKENS='{"entra": "…"}'): the access log and the metrics name the token """
    "each request used, never its value"
)


@dataclass(frozen=True)
class Case:
    args: list[str]
    expected: list[str | re.Pattern[str]]  # the lines of stderr, in order
    env: dict[str, str] = field(default_factory=dict)
    status: int = 2
    secrets: tuple[str, ...] = ()

    def __str__(self) -> str:
        changed = [name for name, value in self.env.items() if CONFIGURED.get(name) != value]
        return " ".join([*(f"{name}=*" for name in changed), *self.args])[:100]


def config(*problems: str | re.Pattern[str]) -> list[str | re.Pattern[str]]:
    """What a configuration refused prints: the header, then one line per problem."""
    return [HEADER, *(p if isinstance(p, re.Pattern) else f"  - {p}" for p in problems)]


def usage(command: str, message: str) -> list[str | re.Pattern[str]]:
    prog = f"scim-bridge {command}".strip()
    return [f"{prog}: error: {message} (see {prog} --help)"]


CASES = [
    # --------------------------------------------------------------- variables that must be JSON
    Case(["serve"], config(f"BRIDGE_SCIM__TOKENS {JSON_OBJECT}"),
         CONFIGURED | {"BRIDGE_SCIM__TOKENS": SCIM_SECRET}, secrets=(SCIM_SECRET, MODYO_SECRET)),
    Case(["check"], config(f"BRIDGE_SCIM__TOKENS {JSON_OBJECT}"),
         CONFIGURED | {"BRIDGE_SCIM__TOKENS": SCIM_SECRET}, secrets=(SCIM_SECRET, MODYO_SECRET)),
    Case(["dev"], config(f"BRIDGE_SCIM__TOKENS {JSON_OBJECT}"),
         {"BRIDGE_SCIM__TOKENS": SCIM_SECRET}, secrets=(SCIM_SECRET,)),
    Case(["serve"], config(f"BRIDGE_SCIM__TOKENS {JSON_OBJECT}"),
         CONFIGURED | {"BRIDGE_SCIM__TOKENS": ""}),
    Case(["serve"], config(f"BRIDGE_SCIM__TOKENS {JSON_OBJECT}"),
         {"bridge_scim__tokens": f"[{SCIM_SECRET}"}, secrets=(SCIM_SECRET,)),
    Case(["check"], config("BRIDGE_MODYO must be a JSON object like '{\"key\": \"value\"}' (or "
                           "set each key as BRIDGE_MODYO__<KEY>)"),
         CONFIGURED | {"BRIDGE_MODYO": f"token={MODYO_SECRET}"}, secrets=(MODYO_SECRET,)),
    # --------------------------------------------------------------- wrong values, environment
    Case(["serve"], config("server.port: must be a whole number"),
         CONFIGURED | {"BRIDGE_SERVER__PORT": "eighty"}),
    Case(["serve"], config("server.host: must be an IP address or a host name"),
         CONFIGURED | {"BRIDGE_SERVER__HOST": "256.1.1.1"}),
    Case(["serve"], config("idempotency.enabled: must be true or false"),
         CONFIGURED | {"BRIDGE_IDEMPOTENCY__ENABLED": "maybe"}),
    Case(["serve"], config("server.log_level: must be one of 'debug', 'info', 'warning' or "
                           "'error'"),
         CONFIGURED | {"BRIDGE_SERVER__LOG_LEVEL": "loud"}),
    Case(["serve"], config("scim.max_page_size: must be at least 1"),
         CONFIGURED | {"BRIDGE_SCIM__MAX_PAGE_SIZE": "0"}),
    Case(["serve"], config("scim.tokens: must hold at least one value"),
         CONFIGURED | {"BRIDGE_SCIM__TOKENS": "{}"}),
    Case(["serve"], config(NAMED),
         CONFIGURED | {"BRIDGE_SCIM__TOKENS": f'["{SCIM_SECRET}"]'}, secrets=(SCIM_SECRET,)),
    Case(["serve"], config("scim.tokens: token 'entra' has leading or trailing whitespace or "
                           "control characters"),
         CONFIGURED | {"BRIDGE_SCIM__TOKENS": f'{{"entra": " {SCIM_SECRET} "}}'},
         secrets=(SCIM_SECRET,)),
    Case(["serve"], config("scim: tokens_file.entra: cannot read missing-token "
                           "(No such file or directory)"),
         {k: v for k, v in CONFIGURED.items() if "TOKENS" not in k}
         | {"BRIDGE_SCIM__TOKENS_FILE": '{"entra": "missing-token"}'}),
    Case(["serve"], config("scim: tokens: 'entra' is set both in tokens and in tokens_file"),
         CONFIGURED | {"BRIDGE_SCIM__TOKENS_FILE": '{"entra": "missing-token"}'}),
    Case(["serve"], config("modyo.base_url: must be a URL such as https://acme.modyo.cloud"),
         CONFIGURED | {"BRIDGE_MODYO__BASE_URL": "acme"}),
    Case(["serve"], config("modyo.token: must not be empty"),
         CONFIGURED | {"BRIDGE_MODYO__TOKEN": "   "}),
    # --------------------------------------------------------------- the TOML file
    Case(["serve", "--config", "bad.toml"],
         config(re.compile(r"  - config file bad\.toml is not valid TOML: .+")), CONFIGURED),
    Case(["check", "--config", "bad.toml"],
         config(re.compile(r"  - config file bad\.toml is not valid TOML: .+")), CONFIGURED),
    Case(["serve", "--config", "latin1.toml"],
         config("config file latin1.toml is not valid TOML: it is not UTF-8 text"), CONFIGURED,
         secrets=("secret-0123456789",)),
    Case(["serve", "--config", "missing.toml"], config("config file not found: missing.toml")),
    Case(["check", "--config", "."], config("config path is a directory, not a file: .")),
    Case(["serve", "--config", "unknown.toml"],
         config("server.prot: unknown setting (see config.example.toml for valid keys)",
                "nope: unknown setting (see config.example.toml for valid keys)"), CONFIGURED),
    Case(["serve", "--config", "types.toml"],
         config("server.port: must be a whole number",
                "server.metrics_enabled: must be true or false",
                NAMED),
         {k: v for k, v in CONFIGURED.items() if "TOKENS" not in k}),
    Case(["serve", "--config", "section.toml"],
         config("server: must be a table: a [section] in TOML, a JSON object in a variable"),
         CONFIGURED),
    Case(["serve", "--config", "list.toml"], config(NAMED),
         {k: v for k, v in CONFIGURED.items() if "TOKENS" not in k}, secrets=(SCIM_SECRET,)),
    Case(["serve", "--config", "short.toml"],  # check reads only [modyo] and [retry]
         config("scim.tokens: token 'entra' is shorter than 32 characters"),
         {k: v for k, v in CONFIGURED.items() if "TOKENS" not in k}, secrets=("short-secret",)),
    # --------------------------------------------------------------- flags
    Case(["serve", "--port", "70000"],
         usage("serve", "argument --port: '70000' is not a TCP port (1..65535)")),
    Case(["serve", "--host", "bad host"],
         usage("serve", "argument --host: 'bad host' must be an IP address or a host name")),
    Case(["serve", "--configg", "x"], usage("", "unrecognized arguments: --configg x")),
    Case(["dev", "--token", "abc"],
         usage("dev", "argument --token: the token is shorter than 32 characters"),
         secrets=("abc",)),
    Case(["dev", "--token", f"{SCIM_SECRET}\t"],
         usage("dev", "argument --token: the token has leading or trailing whitespace or "
                      "control characters"), secrets=(SCIM_SECRET,)),
    Case(["dev", "--port", "70000"],
         usage("dev", "argument --port: '70000' is not a TCP port (1..65535)")),
    Case(["dev", "--host", "256.1.1.1"],
         usage("dev", "argument --host: '256.1.1.1' must be an IP address or a host name")),
    Case(["dev", "--error-rate", "2"],
         config("fault options: fault rates are probabilities between 0 and 1")),
    Case(["dev", "--latency-ms", "nan"],
         config("fault options: fault options must be finite numbers (not nan or inf)")),
    Case(["dev", "--seed", "x"], usage("dev", "argument --seed: invalid int value: 'x'")),
    Case(["fake-modyo", "--port", "70000"],
         usage("fake-modyo", "argument --port: '70000' is not a TCP port (1..65535)")),
    Case(["fake-modyo", "--latency-ms", "inf"],
         config("fault options: fault options must be finite numbers (not nan or inf)")),
    Case(["fake-modyo", "--throttle-rate", "-1"],
         config("fault options: fault rates are probabilities between 0 and 1")),
    Case(["fake-modyo", "--host", "a b"],
         usage("fake-modyo", "argument --host: 'a b' must be an IP address or a host name")),
    Case(["check", "--write", "yes"], usage("", "unrecognized arguments: yes")),
    Case(["healthcheck", "--pid", "one"],
         usage("healthcheck", "argument --pid: invalid int value: 'one'")),
    Case(["healthcheck", "--timeout", "soon"],
         usage("healthcheck", "argument --timeout: invalid float value: 'soon'")),
    Case(["healthcheck", "--pid", "999999999"],
         ["unhealthy: cannot read the command line of process 999999999: No such file or "
          "directory"], status=1),
    Case(["bogus"], [re.compile(r"scim-bridge: error: argument \{serve,dev,fake-modyo,check,"
                                r"healthcheck,journal,"
                                r"brake\}: invalid choice: 'bogus' \(choose from "
                                r".+\) \(see scim-bridge --help\)")]),  # Python 3.12 drops quotes
    Case(["journal", "verify", "journal.jsonl"],
         ["scim-bridge journal: no journal key: give --key-file (or set BRIDGE_JOURNAL__KEY_FILE "
          "or BRIDGE_JOURNAL__KEY)"]),
    Case(["journal", "verify", "journal.jsonl"],
         ["scim-bridge journal: BRIDGE_JOURNAL__KEY: the key is shorter than 32 characters"],
         env={"BRIDGE_JOURNAL__KEY": "short-journal-secret"}, secrets=("short-journal-secret",)),
    Case(["journal", "export", "--since", "yesterday", "journal.jsonl"],
         usage("journal export", "argument --since: 'yesterday' is not an ISO 8601 time")),
]  # fmt: skip


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[int, subprocess.CompletedProcess[str]]:
    """Every case's run, four at a time (each is a fresh interpreter)."""
    workdir = tmp_path_factory.mktemp("cli-errors")
    for name, content in FILES.items():
        (workdir / name).write_bytes(content)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("BRIDGE_")}

    def run(case: Case) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bridge", *case.args]
        try:
            return subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                env=env | case.env, cwd=workdir, timeout=60, check=False,
            )  # fmt: skip
        except subprocess.TimeoutExpired:  # it started instead of refusing: that case fails
            return subprocess.CompletedProcess(command, -1, "", "did not exit: it is running")

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(enumerate(pool.map(run, CASES)))


@pytest.mark.parametrize("number", range(len(CASES)), ids=[str(case) for case in CASES])
def test_every_error_path_is_one_line_per_problem_without_traceback(
    results: dict[int, subprocess.CompletedProcess[str]], number: int
) -> None:
    case, result = CASES[number], results[number]
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == case.status, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == len(case.expected), result.stderr
    for line, expected in zip(lines, case.expected, strict=True):
        if isinstance(expected, re.Pattern):
            assert expected.fullmatch(line), line
        else:
            assert line == expected
    for secret in case.secrets:
        assert secret not in result.stderr + result.stdout
