"""Reading SCIM requests: the JSON body (size-capped), resources and PatchOps validated under
Entra's policy, and the list parameters (RFC 7644 §3.4.2)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from pydantic import ValidationError
from scim2_models import BaseModel, Context, InvalidSyntaxException, InvalidValueException
from starlette.requests import Request

from bridge.metrics import REQUEST_LIMITS
from bridge.scim.errors import PayloadTooLarge, from_validation
from bridge.scim.models import ENTRA_POLICY
from bridge.scim.unheld import HeldAttributes

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


async def read_json_object(request: Request, max_values: int | None = None) -> dict[str, Any]:
    """The body as a JSON object; 400 ``invalidSyntax`` if it is not one, 413 if it holds
    more than ``max_values`` JSON values (``scim.max_json_values``). (Its size and time
    limits were enforced at the edge, where bodies are read: ``bridge/edge/body.py``.)"""
    body = await request.body()
    if not body.strip():
        raise InvalidSyntaxException(detail="the request body is empty; a JSON object is required")
    try:
        parsed = _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidSyntaxException(detail=f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidSyntaxException(detail=_TOO_DEEP) from None
    if not isinstance(parsed, dict):
        raise InvalidSyntaxException(detail="the request body must be a JSON object")
    _check_document(parsed, max_values)
    return parsed


def _not_json(constant: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity``: Python reads them, JSON has no such values
    (RFC 8259 §6)."""
    raise ValueError(f"{constant} is not a JSON value")


_DECODER: Final = json.JSONDecoder(parse_constant=_not_json)
"""``json.loads(body, parse_constant=...)``, with the decoder built once (``loads`` builds one
per call when given an argument)."""


MAX_DEPTH: Final = 32
"""SCIM bodies nest a few levels (a PatchOp's value of an extension's complex attribute is
six); a deeper document is refused before anything recurses over it."""
_TOO_DEEP: Final = f"the request body nests deeper than {MAX_DEPTH} levels"


def _check_document(document: dict[str, Any], max_values: int | None = None) -> None:
    """Refuse, with a SCIM 400, what JSON allows but no SCIM value is: nesting beyond
    :data:`MAX_DEPTH`, and strings holding a lone UTF-16 surrogate (``"\\ud800"``), which
    are not Unicode text (RFC 8259 §8.2) and could be neither stored nor answered; and with
    413 (RFC 9110 §15.5.14), a document of more than ``max_values`` values, whose validation
    would cost in proportion (a SCIM resource or PatchOp from Entra holds a few dozen)."""
    stack: list[tuple[Any, int]] = [(document, 1)]
    counted = 0
    while stack:
        value, depth = stack.pop()
        counted += 1
        if max_values is not None and counted > max_values:
            REQUEST_LIMITS("scim.max_json_values").inc()
            raise PayloadTooLarge(
                detail=f"the request body holds more than {max_values} JSON values "
                "(scim.max_json_values)"
            )
        if depth > MAX_DEPTH:
            raise InvalidSyntaxException(detail=_TOO_DEEP)
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key)
                stack.append((item, depth + 1))
        elif isinstance(value, list):
            stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def is_unicode(text: str) -> bool:
    """Whether ``text`` is Unicode text: JSON's escapes can spell a lone UTF-16 surrogate
    (``"\\ud800"``), which is not (RFC 8259 §8.2) and cannot be encoded to send on."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _check_text(text: str) -> None:
    if not is_unicode(text):
        raise InvalidValueException(
            detail="the request body holds a string that is not valid Unicode "
            "(a lone UTF-16 surrogate)"
        )


def check_operations(body: dict[str, Any], max_operations: int) -> None:
    """413 for a PatchOp of more than ``max_operations`` operations (as RFC 7644 §3.7.3
    answers a bulk request over ``maxOperations``), before any is read."""
    operations = next((value for key, value in body.items() if key.lower() == "operations"), None)
    if isinstance(operations, list) and len(operations) > max_operations:
        REQUEST_LIMITS("scim.max_patch_operations").inc()
        raise PayloadTooLarge(
            detail=f"the PATCH has {len(operations)} operations; at most {max_operations} "
            "are accepted (scim.max_patch_operations)"
        )


async def off_loop(work: Callable[[], T]) -> T:
    """Run the library's validation of a body (scim2-models: a resource, a PatchOp and its
    application) in a worker thread: its cost grows with the body (milliseconds per
    operation or attribute), and the event loop keeps serving every other request meanwhile
    (docs/operator/security.md, Event loop). Entra's everyday bodies take the fast paths
    (``bridge.scim.fast_paths``) on the loop instead."""
    return await asyncio.to_thread(work)


def resource_from(payload: dict[str, Any], holding: HeldAttributes[M], context: Context) -> M:
    """A POST/PUT body, without what the upstream cannot hold, validated under Entra's
    policy (SCIM 400 on any problem)."""
    body = holding.body(payload)
    try:
        resource = holding.model.model_validate(body, scim_ctx=context, scim_policy=ENTRA_POLICY)
    except ValidationError as exc:
        raise from_validation(exc) from None
    holding.note_sub_attributes(resource)
    return resource


def patch_from(body: dict[str, Any], patch_model: type[M]) -> M:
    """A PatchOp body (RFC 7644 §3.5.2) validated under Entra's policy."""
    try:
        return patch_model.model_validate(
            body, scim_ctx=Context.RESOURCE_PATCH_REQUEST, scim_policy=ENTRA_POLICY
        )
    except ValidationError as exc:
        raise from_validation(exc) from None


@dataclass(frozen=True, slots=True)
class ListParams:
    """``startIndex`` (1-based) and ``count`` as RFC 7644 §3.4.2.4 reads them, normalised
    for every upstream (:func:`list_params`)."""

    start_index: int
    count: int

    @property
    def offset(self) -> int:
        return self.start_index - 1


PAST_EVERY_LISTING: Final = 2**31 - 1
"""A ``startIndex`` from which no listing holds a resource (no Modyo holds two billion users or
groups), and the largest one answered: a later one is read as this. Its page is empty, and the
upstream is asked for the listing's total alone (``count`` 0), never for an offset its database
would have to reach; docs/design/modyo-contract.md "Paging"."""


def list_params(start: Any, count: Any, max_page_size: int) -> ListParams:
    """RFC 7644 §3.4.2.4: a ``startIndex`` below 1 means 1 and a ``count`` below 0 means 0;
    counts above the maximum page size are capped, and a ``startIndex`` at or beyond
    :data:`PAST_EVERY_LISTING` is an empty page there."""
    first = min(max(_integer("startIndex", start, default=1), 1), PAST_EVERY_LISTING)
    size = min(max(_integer("count", count, default=max_page_size), 0), max_page_size)
    return ListParams(start_index=first, count=0 if first == PAST_EVERY_LISTING else size)


_DECIMAL: Final = re.compile(r"\s*([+-]?)[0-9]+\s*")


def _integer(name: str, raw: Any, default: int) -> int:
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return default
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise InvalidValueException(detail=f"{name} must be an integer, got {raw!r}")
    try:
        return int(raw)
    except ValueError:
        decimal = _DECIMAL.fullmatch(raw)  # more digits than int() reads (4,300): past any bound
        if decimal is None:
            raise InvalidValueException(detail=f"{name} must be an integer, got {raw!r}") from None
        return -sys.maxsize if decimal.group(1) == "-" else sys.maxsize
