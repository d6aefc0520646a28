"""Logging: one JSON object per line (or plain text) on stderr, each line written while serving
a request carrying its ``request_id``, and every known secret masked in the line as written.

The bridge never puts a token or a request body in a log record on purpose; :func:`mask` is
the last line of defence for what still gets there (an exception's text or traceback, a
library's message, an ``extra`` field). It masks the *formatted* line, so the message, its
arguments, every extra field and the traceback are covered alike, for every logger (uvicorn's
included: they all write through the one root handler).

:func:`mask` is also the one masking of every other text that leaves the process with words
it did not write itself (Modyo's error messages, a proxy's reason phrase): SCIM error
details (``bridge.scim.errors``) and ``scim-bridge check``'s output. The secrets it knows are
the process's: every settings section adds its own when it is validated (``bridge.config``).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from bridge import request_state

MASK: Final = "[redacted]"
MIN_SECRET_LENGTH: Final = 4
"""Shorter values are not masked: replacing every "ab" would make the logs unreadable."""

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}


class JsonFormatter(logging.Formatter):
    _encode = json.JSONEncoder(default=str, ensure_ascii=False).encode

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc_milliseconds(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._encode(entry)


_second: tuple[int, str] = (0, "")  # the last second formatted, and its text


def _utc_milliseconds(created: float) -> str:
    """``created`` as ``datetime.fromtimestamp(created, UTC).isoformat(timespec=
    "milliseconds")`` writes it (``2026-12-05T16:13:49.858+00:00``: microseconds rounded half
    to even, then cut to milliseconds), with the date and time of day formatted once per
    second."""
    global _second
    whole = int(created)
    microseconds = round((created - whole) * 1e6)
    if microseconds >= 1_000_000:
        whole, microseconds = whole + 1, microseconds - 1_000_000
    second, text = _second
    if second != whole:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return f"{text}.{microseconds // 1000:03d}+00:00"


class TextFormatter(logging.Formatter):
    """``level logger: message [key=value ...]`` for a person at a terminal (``dev``); a field
    without a value is left out (the JSON format keeps it, as ``null``, for machines)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in vars(record).items() if k not in _STANDARD and v is not None
        )
        line = f"{record.levelname.lower():7} {record.name}: {record.getMessage()}"
        if extras:
            line += f" [{extras}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class Redactor:
    """Secrets, masked in any text. :meth:`add` takes more at any time (each part of the
    bridge that holds a secret, such as a store's password, adds it)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[str] = []
        for secret in secrets:
            self.add(secret)

    def add(self, secret: str) -> None:
        if len(secret) < MIN_SECRET_LENGTH:
            return
        written = {secret, repr(secret)[1:-1]}  # a repr escapes it (KeyError, tracebacks)
        written |= {json.dumps(form, ensure_ascii=False)[1:-1] for form in written}  # JSON
        new = [form for form in written if form not in self._forms]
        if new:  # replaced whole: a thread masking meanwhile reads the old list or the new one
            self._forms = sorted([*self._forms, *new], key=len, reverse=True)  # longest first

    def __call__(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MASK)
        return text


SECRETS: Final = Redactor()
"""The secrets this process knows: those of every configuration it validated, and those given
to :func:`configure_logging`."""


def remember_secrets(secrets: Iterable[str]) -> None:
    """Mask ``secrets`` from now on, wherever :func:`mask` applies."""
    for secret in secrets:
        SECRETS.add(secret)


def mask(text: str) -> str:
    """``text`` with every secret this process knows replaced by :data:`MASK`: the masking of
    log lines, of SCIM error details and of ``check``'s output alike."""
    return SECRETS(text)


class RedactingFormatter(logging.Formatter):
    """Formats with ``inner``, then masks every secret in the finished line (:func:`mask`)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return mask(self.inner.format(record))


class RequestContext(logging.Filter):
    """Adds the ``request_id`` of the request being served (``bridge.request_state``) to
    every record logged while serving it, from any logger, retries included."""

    def filter(self, record: logging.LogRecord) -> bool:
        state = request_state.current()
        if state is not None and not hasattr(record, "request_id"):
            record.request_id = state.request_id
        return True


def configure_logging(
    level: str, fmt: str, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """One handler on the root logger (every logger propagates to it), writing to ``stream``
    (stderr by default); returns it."""
    remember_secrets(secrets)
    # No line shows where a call was made, nor its thread or process: not gathered for each
    # record (the Logging HOWTO's "Optimization").
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    inner = JsonFormatter() if fmt == "json" else TextFormatter()
    handler.setFormatter(RedactingFormatter(inner))
    handler.addFilter(RequestContext())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler
