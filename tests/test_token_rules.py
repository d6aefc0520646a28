"""Tokens a bank would accept, named; every secret also from a file (docs/operator/security.md,
Tokens and Secrets). Any 16 characters passed (``aaaaaaaaaaaaaaaa``, duplicates, compose's
public demo token), and uncommenting config.example.toml's placeholder gave a working token."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from bridge.config import token_problem
from bridge.config_loading import ConfigError, load_settings

ROOT = Path(__file__).parent.parent
STRONG = "Zq8xW2vK9mLp4sT7yB3nR6-strong-token"
MODYO = {"base_url": "https://acme.modyo.cloud", "token": "modyo-token-value"}


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("BRIDGE_"):
            monkeypatch.delenv(name)


def _problems(**sections: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(None, **sections)
    return caught.value.problems


@pytest.mark.parametrize(
    ("token", "problem"),
    [
        ("a" * 31 + "bcdefgh", None),
        ("0123456789abcdef-token", "is shorter than 32 characters"),
        ("a" * 40, "repeats fewer than 8 distinct characters"),
        ("abcabcabcabcabcabcabcabcabcabcabcabc", "repeats fewer than 8 distinct characters"),
        ("0101010101010101010101010101010101010101", "repeats fewer than 8 distinct characters"),
        ("demo-scim-token-0123456789-padded-to-32", "is a placeholder"),
        ("CHANGE-ME-0123456789-abcdefghijklmnopq", "is a placeholder"),
        ("my-changeme-token-0123456789-abcdefghij", "is a placeholder"),
    ],
)
def test_a_token_must_be_long_varied_and_not_a_placeholder(token: str, problem: str | None) -> None:
    found = token_problem(token)
    assert (found is None) if problem is None else (found or "").startswith(problem), found
    if problem is not None:
        [line] = _problems(scim={"tokens": {"entra": token}}, modyo=MODYO)
        assert line.startswith(f"scim.tokens: token 'entra' {problem}")
        assert token not in line


def _shipped_tokens() -> dict[str, str]:
    """Every SCIM token this repository shows as an example, as an operator would copy it."""
    found: dict[str, str] = {}
    example = (ROOT / "config.example.toml").read_text()
    block = re.search(r"^# \[scim\.tokens\]\n((?:# .+ = .+\n)+)", example, re.M)
    assert block, "config.example.toml's commented [scim.tokens] table"
    uncommented = "\n".join(line.removeprefix("# ") for line in block.group(1).splitlines())
    found |= {f"config.example.toml {k}": v for k, v in tomllib.loads(uncommented).items()}
    secret = next(
        doc for doc in yaml.safe_load_all((ROOT / "deploy/kubernetes/secret.yaml").read_text())
    )
    tokens = json.loads(secret["stringData"]["scim-tokens"])
    found |= {f"secret.yaml {k}": v for k, v in tokens.items()}
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    variable = compose["x-bridge"]["environment"]["BRIDGE_SCIM__TOKENS"]
    found |= {f"compose.yaml {k}": v for k, v in json.loads(variable).items()}
    for path in ("README.md", "Dockerfile", "docs/operator/security.md"):
        for value in re.findall(r"BRIDGE_SCIM__TOKENS='(\{[^']*\})'", (ROOT / path).read_text()):
            found |= {f"{path} {k}": v for k, v in json.loads(value).items()}
    return found


def test_every_token_this_repository_shows_is_refused() -> None:
    """A token anyone can read here must never open a bridge."""
    shipped = _shipped_tokens()
    assert len(shipped) >= 4
    accepted = [where for where, token in shipped.items() if token_problem(token) is None]
    assert accepted == [], f"accepted as tokens: {accepted}"
    compose = shipped["compose.yaml demo"]
    assert compose.startswith("${SCIM_TOKEN:?"), "compose's token comes from the shell"


def test_two_names_for_one_token_and_bad_names_are_refused() -> None:
    [same] = _problems(scim={"tokens": {"old": STRONG, "new": STRONG}}, modyo=MODYO)
    assert same == "scim.tokens: tokens 'old' and 'new' are the same token"
    [named] = _problems(scim={"tokens": {'the "x" token': STRONG}}, modyo=MODYO)
    assert named.startswith("scim.tokens: a token's name must be 1-63 letters")
    assert STRONG not in same + named


def test_the_old_list_of_tokens_says_how_to_name_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_SCIM__TOKENS", json.dumps([STRONG]))
    [line] = _problems(modyo=MODYO)
    assert line.startswith("scim.tokens: must be a table of named tokens, like [scim.tokens]")
    assert STRONG not in line


# ---------------------------------------------------------------------- secrets from files


def test_every_secret_setting_can_be_read_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One mechanism for every secret (Kubernetes and Docker secrets mount files): the file's
    content without its final line break, from TOML or a variable."""
    files = {
        "entra": "Zq8xW2vK9mLp4sT7yB3nR6-from-a-file-a\n",
        "rotated": "Zq8xW2vK9mLp4sT7yB3nR6-from-a-file-b",
        "modyo": "modyo-token-from-a-file\r\n",
        "proxy": "http://user:pr0xy-pw@proxy.bank.example:3128\n",
        "redis": "rediss://:r3dis-pw@redis.bank.example:6380/0\n",
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content, newline="")
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[scim.tokens_file]\nentra = "{tmp_path / "entra"}"\n'
        f'[modyo]\nbase_url = "https://acme.modyo.cloud"\ntoken_file = "{tmp_path / "modyo"}"\n'
        f'proxy_url_file = "{tmp_path / "proxy"}"\n'
        f'[idempotency]\nredis_url_file = "{tmp_path / "redis"}"\n'
    )
    monkeypatch.setenv(
        "BRIDGE_SCIM__TOKENS_FILE", json.dumps({"rotated": str(tmp_path / "rotated")})
    )
    settings = load_settings(config)
    tokens = {name: token.get_secret_value() for name, token in settings.scim.tokens.items()}
    # a table merges key by key across the file and the variables, as a section does
    assert tokens == {"rotated": files["rotated"]}
    monkeypatch.delenv("BRIDGE_SCIM__TOKENS_FILE")
    settings = load_settings(config)
    assert settings.scim.tokens["entra"].get_secret_value() == files["entra"].strip()
    assert settings.modyo.token.get_secret_value() == "modyo-token-from-a-file"
    assert settings.modyo.proxy_url is not None and settings.idempotency.redis_url is not None
    assert settings.modyo.proxy_url.get_secret_value() == files["proxy"].strip()
    assert settings.idempotency.redis_url.get_secret_value() == files["redis"].strip()
    assert {"pr0xy-pw", "r3dis-pw", "modyo-token-from-a-file"} <= set(settings.secret_values())
    monkeypatch.setenv("BRIDGE_MODYO__TOKEN_FILE", str(tmp_path / "modyo"))
    monkeypatch.setenv("BRIDGE_MODYO__BASE_URL", "https://acme.modyo.cloud")
    monkeypatch.setenv("BRIDGE_SCIM__TOKENS", json.dumps({"entra": STRONG}))
    assert load_settings(None).modyo.token.get_secret_value() == "modyo-token-from-a-file"


def test_a_secret_file_is_checked_as_its_value_is_and_never_echoed(tmp_path: Path) -> None:
    weak, missing = tmp_path / "weak", tmp_path / "missing"
    weak.write_text("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n")
    proxy = tmp_path / "proxy"
    proxy.write_text("socks5://u:hidden-pw@h:1080\n")
    problems = _problems(
        scim={"tokens_file": {"weak": str(weak), "gone": str(missing)}},
        modyo={**MODYO, "token": None, "token_file": str(missing), "proxy_url_file": str(proxy)},
    )
    assert problems == [
        f"scim: tokens_file.gone: cannot read {missing} (No such file or directory)",
        f"modyo: token_file: cannot read {missing} (No such file or directory)",
    ]
    [weakness] = _problems(scim={"tokens_file": {"weak": str(weak)}}, modyo=MODYO)
    assert weakness.startswith("scim.tokens: token 'weak' repeats fewer than 8")
    [scheme] = _problems(
        scim={"tokens": {"entra": STRONG}}, modyo={**MODYO, "proxy_url_file": str(proxy)}
    )
    assert scheme.startswith("modyo.proxy_url: must be an http://")
    assert "hidden-pw" not in scheme and "aaaa" not in weakness


def test_a_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("modyo-token-from-a-file\n")
    [both] = _problems(scim={"tokens": {"entra": STRONG}}, modyo={**MODYO, "token_file": str(path)})
    assert both == "modyo: set token or token_file, not both"
    [twice] = _problems(
        scim={"tokens": {"entra": STRONG}, "tokens_file": {"entra": str(path)}}, modyo=MODYO
    )
    assert twice == "scim: tokens: 'entra' is set both in tokens and in tokens_file"
