"""The retry policy around every Modyo call (tenacity).

Retried: connection errors and timeouts (when repeating the call is safe), 429 (waiting for
``Retry-After``, in seconds or as an HTTP date), 502, 503 and 504. Never retried: any other 4xx,
and 500 (a bug upstream is not transient). Waits are exponential with jitter, and no retry is
started that the request's deadline could not see through: the caller then answers SCIM 503
with ``Retry-After`` so that Entra comes back later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from tenacity.wait import wait_exponential_jitter

from bridge import deadline, request_state
from bridge.config import RetrySettings
from bridge.metrics import MODYO_RETRIES

T = TypeVar("T")
log = logging.getLogger("bridge.modyo")

MIN_ATTEMPT_SECONDS = 0.05
"""A retry is only worth starting if at least this long remains after its wait."""


class Retryable(Exception):
    """An attempt failed in a way that a later identical attempt may not."""

    def __init__(self, reason: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.kind = kind
        """The retry metric's label ("429", "502", "connection_refused"...): given by the
        caller, never read back from ``reason``'s text."""
        self.planned_wait = 0.0


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


class RetryPolicy:
    """Runs one logical Modyo call, retrying :class:`Retryable` failures within the deadline."""

    def __init__(
        self, settings: RetrySettings, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._backoff = wait_exponential_jitter(
            multiplier=settings.backoff_initial_seconds,
            max=settings.backoff_max_seconds,
            jitter=settings.backoff_initial_seconds,
        )

    async def run(self, call: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """Await ``attempt()`` until it succeeds or the policy gives up (re-raising the last
        :class:`Retryable`, whose ``retry_after`` says when trying again makes sense).

        The first attempt runs on its own: the common case, a first attempt that succeeds,
        skips building tenacity's machinery (docs/performance.md, Costs the code avoids).
        A failed first attempt is handed to tenacity as its attempt 1, so waits, stops and
        logs are tenacity's from then on."""
        try:
            return await attempt()
        except Retryable as failure:
            first_failure = failure
        replayed = False

        async def again() -> T:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first_failure
            return await attempt()

        retrying = AsyncRetrying(
            stop=self._should_stop,
            wait=self._wait,
            retry=retry_if_exception_type(Retryable),
            before_sleep=lambda state: self._log_retry(call, state),
            sleep=self._sleep,
            reraise=True,
        )
        return await retrying(again)

    def _wait(self, state: RetryCallState) -> float:
        """Modyo's ``Retry-After`` if it gave one, else exponential backoff with jitter.
        (tenacity computes the wait first, then asks whether to stop.)"""
        failure = _retryable(state)
        wait = failure.retry_after if failure.retry_after is not None else self._backoff(state)
        failure.planned_wait = wait
        return wait

    def _should_stop(self, state: RetryCallState) -> bool:
        failure = _retryable(state)
        if state.attempt_number >= self.settings.max_attempts:
            return True
        if (
            failure.retry_after is not None
            and failure.retry_after > self.settings.retry_after_cap_seconds
        ):
            return True  # honour Retry-After: never call before it, hand the wait to Entra
        left = deadline.remaining()
        return left is not None and state.upcoming_sleep + MIN_ATTEMPT_SECONDS >= left

    @staticmethod
    def _log_retry(call: str, state: RetryCallState) -> None:
        failure = _retryable(state)
        MODYO_RETRIES(call, failure.kind).inc()
        serving = request_state.current()
        if serving is not None:
            serving.upstream_retries += 1
        log.warning(
            "retrying Modyo call",
            extra={
                "call": call,
                "attempt": state.attempt_number,
                "reason": failure.reason,
                "wait_seconds": round(failure.planned_wait, 3),
            },
        )


def _retryable(state: RetryCallState) -> Retryable:
    assert state.outcome is not None
    failure = state.outcome.exception()
    assert isinstance(failure, Retryable)
    return failure
