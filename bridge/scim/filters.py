"""SCIM filters as Entra sends them (``eq`` and ``and``, entra-scim-behaviour.md §2 R3, R10, R15),
parsed by scim2-models, compiled into one upstream lookup plus an exact re-check.

A filter the bridge cannot honour is a 400 ``invalidFilter``, never a silent "everything":
Entra treats any non-empty answer as a match (§0 item 1).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from scim2_models import InvalidFilterException, ScimFilter
from scim2_models.path import (
    AttributeBinding,
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    ValuePath,
)

from bridge.scim.models import ENTRA_POLICY, GroupFilter, UserFilter
from bridge.scim.requests import is_unicode
from bridge.upstream import GroupField, UserField

_TOKEN: Final = re.compile(r'"(?:[^"\\]|\\.)*"|\s+|[()\[\]]|[^\s()\[\]"]+')
_COMPARISONS: Final = frozenset(op.value for op in CompareOperator)
_LITERALS: Final = frozenset({"true", "false", "null"})

F = TypeVar("F", UserField, GroupField)
ID = "id"
"""A lookup by id: the upstream fetches the object itself instead of searching."""


def quote_bare_values(text: str) -> str:
    """Quote unquoted comparison values (``externalId eq jyoung``, Microsoft's own example),
    which RFC 7644's grammar does not allow but Entra sends. ``true``/``false``/``null`` stay."""
    tokens = [match.group() for match in _TOKEN.finditer(text)]
    if "".join(tokens) != text:
        return text  # an unterminated string: let the parser report it
    expect_value = False
    out = []
    for token in tokens:
        if expect_value and not token.isspace():
            expect_value = False
            if token[0] not in '"([' and token.lower() not in _LITERALS:
                token = json.dumps(token)
        elif token.lower() in _COMPARISONS:
            expect_value = True
        out.append(token)
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Lookup(Generic[F]):
    """What to ask the upstream for, and the filter every candidate must then match."""

    field: F | None  # None: the lookup is by id
    value: str
    filter: ScimFilter[Any]  # bound to the resource type
    binding: AttributeBinding | None = None  # set when the filter is this comparison alone

    def equals(self, held: str | None) -> bool:
        """For a one-comparison filter: whether a held value matches, compared as
        scim2-models compares (its comparison key: case-insensitive unless the attribute is
        caseExact). Saves building a resource per candidate (~50 µs)."""
        if held is None:
            return False
        key = ENTRA_POLICY.comparison_key
        return bool(key(self.binding, held) == key(self.binding, self.value))


_PREFERENCE: Final = (
    ID,
    UserField.USER_NAME,
    GroupField.DISPLAY_NAME,
    UserField.EMAIL,
    UserField.EXTERNAL_ID,
    GroupField.EXTERNAL_ID,
)


def user_lookup(text: str, terms: Mapping[tuple[str, str | None], UserField]) -> Lookup[UserField]:
    return _compile(text, UserFilter, terms)


def group_lookup(
    text: str, terms: Mapping[tuple[str, str | None], GroupField]
) -> Lookup[GroupField]:
    return _compile(text, GroupFilter, terms)


def _compile(
    text: str, bound: type[ScimFilter[Any]], terms: Mapping[tuple[str, str | None], F]
) -> Lookup[F]:
    """Accept ``eq`` comparisons on ``terms`` (and ``id``) joined by ``and``."""
    known = ", ".join(["id", *sorted({".".join(p for p in key if p) for key in terms})])
    lookups: Mapping[tuple[str, str | None], Any] = {("id", None): ID, **terms}
    scim_filter = bound(quote_bare_values(text))
    found: list[tuple[Any, str]] = []
    _collect(scim_filter.ast, lookups, known, found)
    field, value = min(found, key=lambda term: _PREFERENCE.index(term[0]))
    binding = None
    if isinstance(scim_filter.ast, Comparison):
        binding = scim_filter.resolve_comparison(scim_filter.ast.attr_path)
    return Lookup(
        field=None if field == ID else field, value=value, filter=scim_filter, binding=binding
    )


def _collect(
    node: FilterNode,
    terms: Mapping[tuple[str, str | None], Any],
    known: str,
    found: list[tuple[Any, str]],
) -> None:
    """Accept ``eq`` comparisons on known attributes joined by ``and``; reject the rest."""
    if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_:
        for term in node.terms:
            _collect(term, terms, known, found)
        return
    if isinstance(node, Comparison):
        found.append(_term(node.attr_path, node.op, node.value, terms, known))
        return
    if isinstance(node, ValuePath) and node.attr_path.attr.lower() == "emails":
        _collect_email_selection(node.val_filter, terms, known, found)
        return
    raise InvalidFilterException(
        detail=f"unsupported filter expression '{node}': only 'eq' comparisons joined by "
        f"'and' on {known} are supported"
    )


def _collect_email_selection(
    node: FilterNode,
    terms: Mapping[tuple[str, str | None], Any],
    known: str,
    found: list[tuple[Any, str]],
) -> None:
    """``emails[type eq "work" and value eq "x"]`` (how scim2-models reads Entra's
    ``emails[type eq "work"].value eq "x"``): the value is looked up, the type re-checked."""
    parts = (
        node.terms if isinstance(node, LogicalExpr) and node.op == LogicalOperator.and_ else (node,)
    )
    values = []
    for part in parts:
        if not isinstance(part, Comparison) or part.op != CompareOperator.eq:
            raise InvalidFilterException(detail=f"unsupported email selection '{node}'")
        if part.attr_path.attr.lower() == "value":
            values.append(_term(AttrPath("emails", "value"), part.op, part.value, terms, known))
        elif part.attr_path.attr.lower() != "type":
            raise InvalidFilterException(detail=f"unsupported email selection '{node}'")
    if not values:
        raise InvalidFilterException(detail=f"an email selection needs 'value eq': '{node}'")
    found.extend(values)


def _term(
    attr_path: AttrPath,
    op: CompareOperator,
    value: Any,
    terms: Mapping[tuple[str, str | None], Any],
    known: str,
) -> tuple[Any, str]:
    key = (attr_path.attr.lower(), attr_path.sub_attr.lower() if attr_path.sub_attr else None)
    field = terms.get(key)
    if field is None or attr_path.uri not in (None, *_CORE_URNS):
        raise InvalidFilterException(
            detail=f"filtering on '{attr_path}' is not supported; use {known}"
        )
    if op != CompareOperator.eq or not isinstance(value, str):
        raise InvalidFilterException(
            detail=f"only '{attr_path} eq \"value\"' is supported, not '{op.value} {value!r}'"
        )
    if not is_unicode(value):
        raise InvalidFilterException(
            detail=f"the value compared with '{attr_path}' is not valid Unicode "
            "(a lone UTF-16 surrogate)"
        )
    return field, value


_CORE_URNS: Final = (
    "urn:ietf:params:scim:schemas:core:2.0:User",
    "urn:ietf:params:scim:schemas:core:2.0:Group",
)
