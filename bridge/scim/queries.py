"""Queries (RFC 7644 §3.4.2, §3.4.3): filter, window and which attributes to return, from a
GET's URL or a POST ``/.search`` body."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Final

from pydantic import ValidationError
from scim2_models import InvalidValueException, ResponseParameters
from starlette.requests import Request

from bridge.scim.errors import from_validation
from bridge.scim.requests import ListParams, list_params

Parameters = ResponseParameters[Any]


@dataclass(frozen=True, slots=True)
class Query:
    """A query: its filter text, its window, and which attributes to return."""

    filter: str | None
    window: ListParams
    params: Parameters | None


def query_from_url(
    request: Request, parameters_model: type[Parameters], max_page_size: int
) -> Query:
    """GET ``?filter=&startIndex=&count=&attributes=&excludedAttributes=`` (others ignored)."""
    get = request.query_params.get
    return Query(
        filter=get("filter"),
        window=list_params(get("startIndex"), get("count"), max_page_size),
        params=response_parameters(parameters_model, get("attributes"), get("excludedAttributes")),
    )


def query_from_body(
    body: dict[str, Any], parameters_model: type[Parameters], max_page_size: int
) -> Query:
    """POST ``/.search`` (RFC 7644 §3.4.3): the same query as a SearchRequest body."""
    fields = {key.lower(): value for key, value in body.items()}
    attributes, excluded = fields.get("attributes"), fields.get("excludedattributes")
    if fields.get("filter") is not None and not isinstance(fields["filter"], str):
        raise InvalidValueException(detail="filter must be a string")
    return Query(
        filter=fields.get("filter"),
        window=list_params(fields.get("startindex"), fields.get("count"), max_page_size),
        params=response_parameters(parameters_model, _joined(attributes), _joined(excluded)),
    )


MAX_CACHED_TEXT: Final = 256
"""Longest ``attributes`` and ``excludedAttributes`` cached: a cache entry is never a copy of
a client's long text (a POST ``/.search`` body may hold a megabyte of it)."""


def response_parameters(
    model: type[Parameters], attributes: str | None, excluded: str | None
) -> Parameters | None:
    """``attributes`` / ``excludedAttributes`` (RFC 7644 §3.9), comma-separated; None when
    neither is given. Building the model costs ~40 µs, and Entra sends the same
    ``excludedAttributes=members`` on every group read, so results are cached (bounded in
    entries and in the length of each; the models are never modified)."""
    if len(attributes or "") + len(excluded or "") > MAX_CACHED_TEXT:
        return _response_parameters(model, attributes, excluded)
    return _cached_parameters(model, attributes, excluded)


@lru_cache(maxsize=256)
def _cached_parameters(
    model: type[Parameters], attributes: str | None, excluded: str | None
) -> Parameters | None:
    return _response_parameters(model, attributes, excluded)


def _response_parameters(
    model: type[Parameters], attributes: str | None, excluded: str | None
) -> Parameters | None:
    if not attributes and not excluded:
        return None
    try:
        return model(
            attributes=_names(attributes) or None,
            excluded_attributes=_names(excluded) or None,
        )
    except ValidationError as exc:
        raise from_validation(exc) from None


def _joined(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return ",".join(value)
    raise InvalidValueException(detail="attributes must be a list of attribute names")


def _names(raw: str | None) -> list[str]:
    return [name.strip() for name in (raw or "").split(",") if name.strip()]
