"""Logging as ``configure_logging`` sets it up: one JSON object per line, or plain text, with
extras and exception text, and configured secrets masked (tests/test_logs.py: every path)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.logs import _utc_milliseconds, configure_logging

SECRET = "modyo-secret-0123456789"


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""  # logs go to stderr only
    return captured.err.splitlines()


def _json_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in _lines(capsys)]


def test_json_is_one_object_per_line_with_the_extras(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("bridge.test").info(
        "created %s", "Users/7", extra={"request_id": "r-1", "status": 201}
    )
    (entry,) = _json_lines(capsys)
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "info",
        "logger": "bridge.test",
        "message": "created Users/7",
        "request_id": "r-1",
        "status": 201,
    }


def test_json_time_is_utc_to_the_millisecond(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("bridge.test").warning("tick")
    (entry,) = _json_lines(capsys)
    offset = datetime.fromisoformat(entry["time"]).utcoffset()
    assert offset is not None and offset.total_seconds() == 0
    assert len(entry["time"].split(".")[1]) == len("123+00:00")  # milliseconds


@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 to 2100
def test_json_time_is_what_datetime_writes(created: float) -> None:
    """The time field, formatted once per second, reads as datetime's own ISO text."""
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert _utc_milliseconds(created) == expected


def test_json_carries_the_exception_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    try:
        raise ValueError("the upstream said no")
    except ValueError:
        logging.getLogger("bridge.test").exception("unexpected error")
    (entry,) = _json_lines(capsys)
    assert entry["level"] == "error" and entry["message"] == "unexpected error"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: the upstream said no")


def test_json_renders_what_json_cannot_hold_as_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json")
    logging.getLogger("bridge.test").info("odd", extra={"when": datetime(2025, 1, 2, 3, 4, 5)})
    (entry,) = _json_lines(capsys)
    assert entry["when"] == "2025-01-02 03:04:05"


def test_uvicorns_coloured_copy_of_the_message_is_left_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json")
    logging.getLogger("uvicorn.error").info(
        "Started", extra={"color_message": "\x1b[32mStarted\x1b[0m"}
    )
    (entry,) = _json_lines(capsys)
    assert "color_message" not in entry and entry["message"] == "Started"


def test_text_is_level_logger_message_and_extras(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug", "text")
    log = logging.getLogger("bridge.test")
    log.info("plain")
    log.debug("with extras", extra={"call": "GET /team_members/:id", "attempt": 2})
    assert _lines(capsys) == [
        "info    bridge.test: plain",
        "debug   bridge.test: with extras [call=GET /team_members/:id attempt=2]",
    ]


def test_text_leaves_out_fields_without_a_value(capsys: pytest.CaptureFixture[str]) -> None:
    """An access line's unset fields (no client request id, no reason) are noise at a
    terminal; the JSON format keeps them."""
    configure_logging("info", "text")
    logging.getLogger("bridge.test").info("request", extra={"status": 200, "reason": None})
    assert _lines(capsys) == ["info    bridge.test: request [status=200]"]


def test_text_appends_the_exception_text(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("bridge.test").error("failed", exc_info=True)
    lines = _lines(capsys)
    assert lines[0] == "error   bridge.test: failed"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "KeyError: 'missing'"


def test_the_level_filters_and_noisy_loggers_are_quietened(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("warning", "text")
    logging.getLogger("bridge.test").info("dropped")
    logging.getLogger("bridge.test").warning("kept")
    assert _lines(capsys) == ["warning bridge.test: kept"]
    configure_logging("debug", "text")
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).info("chatter")
    assert _lines(capsys) == []


def test_configuring_twice_replaces_the_handler(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "text")
    configure_logging("info", "json")
    logging.getLogger("bridge.test").info("once")
    assert [entry["message"] for entry in _json_lines(capsys)] == ["once"]


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_a_configured_secret_is_masked_in_the_message(
    capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    configure_logging("info", fmt, secrets=[SECRET, "scim-token-abcdef"])
    log = logging.getLogger("bridge.test")
    log.warning("Modyo answered 401 for Bearer %s", SECRET)
    log.warning("tokens %s and %s", "scim-token-abcdef", SECRET)
    log.warning("nothing to hide")
    output = "\n".join(_lines(capsys))
    assert SECRET not in output and "scim-token-abcdef" not in output
    assert "Modyo answered 401 for Bearer [redacted]" in output
    assert "tokens [redacted] and [redacted]" in output
    assert "nothing to hide" in output


def test_a_secret_too_short_to_mask_safely_is_not_masked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Masking a 1-3 character "secret" would shred every message; such a token is refused by
    the settings anyway (scim.tokens need 16 characters)."""
    configure_logging("info", "text", secrets=["abc"])
    logging.getLogger("bridge.test").info("abcdef")
    assert _lines(capsys) == ["info    bridge.test: abcdef"]


def test_a_configured_secret_is_masked_in_the_exception_text(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "json", secrets=[SECRET])
    try:
        raise RuntimeError(f"connect failed with token {SECRET}")
    except RuntimeError:
        logging.getLogger("bridge.test").exception("unexpected error")
    assert SECRET not in "\n".join(_lines(capsys))
