"""Hostile input for the fuzz suite (tests/test_fuzz.py): hypothesis strategies for
malformed JSON, Entra's bodies mutated, wrong types, huge and deep values, odd Unicode,
hostile query strings, paths, methods, credentials and headers, and raw HTTP/1.1 request
lines and header lines for the wire."""

from __future__ import annotations

import functools
import json
from typing import Any, Final
from urllib.parse import quote

from hypothesis import strategies as st

from bridge.scim.requests import MAX_DEPTH
from tests import entra
from tests.conftest import MODYO_TOKEN, TOKEN

MAX_BODY_BYTES: Final = 1_048_576  # the default of server.max_body_bytes


def quoted(path: str) -> str:
    """``path`` percent-encoded for a request target; a ``%`` already there is kept, so
    ``%2e%2e`` and ``%0d%0a`` arrive encoded (and are decoded by the server)."""
    return quote(path.encode("utf-8", "surrogatepass"), safe="/%")


def _dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


# --------------------------------------------------------------------------- values and bodies

ODD_CHARACTERS: Final = [
    "\u200f",  # right-to-left mark
    "\u202e",  # right-to-left override
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",  # byte order mark
    "e\u0301\u0301\u0301",  # combining acute accents
    "\U0001f600",  # emoji
    "\U0001f469\u200d\U0001f4bb",  # emoji ZWJ sequence
    "\x00",  # NUL (sent as \u0000)
    "\u2028",  # line separator
    "\r\n",
    '"',
    "\\",
    "%00",
    "%0d%0a",
    "\u0130",  # İ: lower() changes its length
    "\uff21",  # fullwidth A
    "\u00df",  # ß: upper() changes its length
]
LONE_SURROGATES: Final = ["\ud800", "\udfff"]  # sent as escapes: the body check refuses them
_LONE: Final = st.sampled_from(LONE_SURROGATES)
_PIECES: Final = st.sampled_from(ODD_CHARACTERS) | st.text(max_size=8)
odd_text = st.lists(
    st.integers(0, 29).flatmap(lambda n: _LONE if n == 0 else _PIECES), max_size=6
).map("".join)
"""Odd text; the strategies a flatmap picks from are built once (building them per draw
cost more than the rest of the draw)."""
numbers = (
    st.integers(-(2**70), 2**70)
    | st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**40])
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | odd_text
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)

USER_PATHS: Final = [
    "userName", "externalId", "active", "name", "name.givenName", "name.familyName",
    "name.formatted", "emails", 'emails[type eq "work"].value', "emails.value",
    'emails[type eq "work"]', "emails[value eq 1]", f"{entra.USER_URN}:userName",
    f"{entra.ENTERPRISE_URN}:department", f"{entra.ENTERPRISE_URN}:manager.value", "members",
    "id", "meta.created", "nickName", "urn:", "", ".", "[", 'emails[type eq "work"',
    "name..givenName", "x" * 300,
]  # fmt: skip
GROUP_PATHS: Final = [
    "displayName", "externalId", "members", 'members[value eq "1"]', "members[value eq 1]",
    'members[value eq "1"].value', "members.value", f"{entra.GROUP_URN}:displayName", "id",
    "", "[", "members[",
]  # fmt: skip
OPS: Final = ["add", "Add", "replace", "Replace", "remove", "Remove", "ADD", "move", "", "test"]


def _operations(attribute_paths: list[str]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """PatchOp operations (RFC 7644 §3.5.2) with any op, path and value, or none. The
    strategies are built once: building them per draw costs more than the requests."""
    names = st.sampled_from(OPS) | odd_text
    paths = st.sampled_from(attribute_paths) | odd_text
    members = st.builds(lambda ids: [{"value": i} for i in ids], st.lists(odd_text, max_size=3))
    values = json_values | members | st.dictionaries(paths, json_values, max_size=3)

    @st.composite
    def operation(draw: st.DrawFn) -> dict[str, Any]:
        op: dict[str, Any] = {"op": draw(names)}
        if draw(st.booleans()):
            op["path"] = draw(paths)
        if draw(st.integers(0, 3)):
            op["value"] = draw(values)
        return op

    return st.lists(operation(), min_size=1, max_size=4)


USER_OPERATIONS: Final = _operations(USER_PATHS)
GROUP_OPERATIONS: Final = _operations(GROUP_PATHS)
_NAMES: Final = (
    st.sampled_from(["ann@contoso.com", "bo@contoso.com", "fuzz@contoso.com"]) | odd_text
)
_PICKS: Final = st.lists(st.integers(0, 2), max_size=3)


KINDS: Final = ["user", "group", "user-patch", "group-patch", "search"]


@st.composite
def entra_body(draw: st.DrawFn, kind: str, user_id: str) -> Any:
    """A body as Entra sends it for ``kind`` (one of :data:`KINDS`), before mutation;
    ``user_id`` is a real user, for group members."""
    name = draw(_NAMES)
    if kind == "user":
        return entra.user(name or "x@contoso.com")
    if kind == "group":
        body = entra.group(name or "G")
        if draw(st.booleans()):
            ids = [(user_id, "999", name)[pick] for pick in draw(_PICKS)]
            body["members"] = entra.members(*ids)
        return body
    if kind == "user-patch":
        return entra.patch(*draw(USER_OPERATIONS))
    if kind == "group-patch":
        return entra.patch(*draw(GROUP_OPERATIONS))
    search: dict[str, Any] = {"schemas": [entra.SEARCH_URN]}
    for key in draw(st.lists(st.sampled_from(SEARCH_KEYS), unique=True)):
        search[key] = draw(FILTERS if key == "filter" else json_values)
    return search


@functools.cache
def any_bodies(user_id: str) -> st.SearchStrategy[bytes | None]:
    """No body, random JSON, bytes, or one of Entra's bodies mutated (built once per user)."""
    entra_bodies = st.sampled_from(KINDS).flatmap(lambda kind: entra_body(kind, user_id))
    return (
        st.none()
        | json_values.flatmap(encoded)
        | st.binary(max_size=200)
        | entra_bodies.flatmap(mutated).flatmap(encoded)
    )


SEARCH_KEYS: Final = ["filter", "startIndex", "count", "attributes", "excludedAttributes",
                      "Filter", "sortBy", "schemas"]  # fmt: skip


def search_requests() -> st.SearchStrategy[dict[str, Any]]:
    """A SearchRequest (RFC 7644 §3.4.3) with any of its keys holding anything."""
    values = FILTERS | QUERY_VALUES | json_values | st.lists(st.sampled_from(ATTRIBUTE_NAMES))
    return st.dictionaries(st.sampled_from(SEARCH_KEYS), values).map(
        lambda keys: {"schemas": [entra.SEARCH_URN], **keys}
    )


_ACTIONS: Final = st.sampled_from(["mutate", "swap", "remove", "rename", "add", "nest"])


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with some of its parts swapped, removed, renamed, wrapped, made huge or deep."""
    if depth > 6 or not draw(st.integers(0, 2 if depth == 0 else 1)):
        return value
    if isinstance(value, dict) and value:
        value = dict(value)
        key = draw(st.sampled_from(sorted(value)))
        action = draw(_ACTIONS)
        if action == "mutate":
            value[key] = draw(mutated(value[key], depth + 1))
        elif action == "swap":
            value[key] = _huge_text(draw) if draw(st.integers(0, 4)) == 0 else draw(json_values)
        elif action == "remove":
            del value[key]
        elif action == "rename":
            variants = [key.upper(), key.lower(), f"{entra.USER_URN}:{key}", key + " "]
            renamed = draw(st.sampled_from(variants)) if draw(st.booleans()) else draw(odd_text)
            value[renamed] = value.pop(key)
        elif action == "add":
            value[draw(odd_text)] = draw(json_values)
        else:
            value[key] = _nest(value[key], draw(st.integers(1, MAX_DEPTH + 4)), draw(st.booleans()))
        return value
    if isinstance(value, list) and value:
        value = list(value)
        position = draw(st.integers(0, len(value) - 1))
        value[position] = draw(mutated(value[position], depth + 1))
        if draw(st.booleans()):
            value.append(draw(json_values))
        return value
    return draw(json_values)


def _huge_text(draw: st.DrawFn) -> str:
    """A string that makes the body near ``server.max_body_bytes``: a little under, or over
    (``\u00e9`` is 2 bytes raw and 6 escaped, the emoji 4 and 12)."""
    size = MAX_BODY_BYTES + draw(st.integers(-4096, 64))
    character, width = draw(_WIDTHS)
    return character * (size // width)


_WIDTHS: Final = st.sampled_from(
    [("x", 1), ("\u00e9", 2), ("\u00e9", 6), ("\U0001f600", 4), ("\U0001f600", 12)]
)


def _nest(value: Any, levels: int, as_object: bool) -> Any:
    for _ in range(levels):
        value = {"a": value} if as_object else [value]
    return value


_DAMAGES: Final = st.sampled_from(["none"] * 14 + ["truncate", "duplicate-key", "bytes", "bom",
                                                  "deep", "utf16", "trailing"])  # fmt: skip


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> bytes:
    """``value`` as body bytes: JSON (escaped or raw UTF-8), or JSON damaged on purpose."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    body = text.encode("utf-8", "surrogatepass")  # a raw lone surrogate is invalid UTF-8
    damage = draw(_DAMAGES)
    if damage == "truncate" and body:
        return body[: draw(st.integers(0, len(body) - 1))]
    if damage == "duplicate-key" and body.startswith(b"{") and len(body) > 2:
        key = draw(st.sampled_from(["userName", "schemas", "Operations", "displayName", "filter"]))
        return b'{"' + key.encode() + b'": ' + _dumps(draw(json_values)) + b", " + body[1:]
    if damage == "bytes":
        return draw(st.binary(max_size=64))
    if damage == "bom":
        return b"\xef\xbb\xbf" + body
    if damage == "deep":
        depth = draw(st.sampled_from([MAX_DEPTH, MAX_DEPTH + 1, 1000, 10_000]))
        opener = draw(st.sampled_from([b"[", b'{"a": ']))
        closer = b"]" if opener == b"[" else b"}"
        return b'{"schemas": ' + opener * depth + closer * draw(st.sampled_from([0, depth])) + b"}"
    if damage == "utf16":
        return text.encode("utf-16", "surrogatepass")
    if damage == "trailing":
        return body + draw(st.sampled_from([b",", b"}", b" garbage", b"\x00", b"\n{}"]))
    return body


FILTER_TOKENS: Final = [
    "userName", "externalId", "id", "displayName", "members", "members.value", "emails.value",
    'emails[type eq "work"].value', "emails[type eq work].value", "meta.created", "active",
    f"{entra.USER_URN}:userName", "urn:x", "eq", "ne", "co", "sw", "ew", "pr", "gt", "ge", "lt",
    "le", "and", "or", "not", "(", ")", "[", "]", '"a@contoso.com"', '"\\ud800"', '"\\u0000"',
    '"\\"', '"', "'x'", "true", "null", "12", "-0", "1e999", "NaN", "bare@word", '""', " ",
    "  ", "\t", "\u200b", "\U0001f600",
]  # fmt: skip


FILTERS: Final = (
    st.lists(st.sampled_from(FILTER_TOKENS) | odd_text, max_size=12).map(" ".join)
    | st.builds(
        lambda n, t: "(" * n + t + ")" * n,
        st.integers(0, 3000),
        st.sampled_from(['userName eq "a"', "x"]),
    )
    | st.builds(lambda n: "not(" * n + 'userName eq "a"' + ")" * n, st.integers(0, 2000))
    | st.just('userName eq "' + "a" * 10_000 + '"')
)
"""Filters from random tokens (hostile quoting, escapes), deep parentheses, long values."""
ABSURD_START_INDEXES: Final = ["9223372036854775709", "9" * 5000]
"""What a fuzzer sent (the largest 64-bit integer less 98), and more digits than ``int()`` reads."""
QUERY_VALUES: Final = (
    st.sampled_from(["0", "-1", "1", "100", "101", "2147483648", "9" * 30, "9" * 5000, "1e5",
                     "0x10", " 1", "1_000", "\u0661\u0662", "\u00b2", "NaN", "", "1.5", "+3"])
    | odd_text
    | st.integers().map(str)
)  # fmt: skip


ATTRIBUTE_NAMES: Final = [
    "userName", "members", "displayName", "emails.value", "name.givenName", "meta", "id",
    f"{entra.USER_URN}:userName", "urn:", "a.b.c.d", "[", "members[value eq 1]", "", ",",
]  # fmt: skip


_PARAMETERS: Final = st.lists(
    st.sampled_from(["filter", "startIndex", "count", "attributes", "excludedAttributes",
                     "FILTER", "sortBy", "x"]) | odd_text,
    max_size=5,
)  # fmt: skip
_ATTRIBUTE_LISTS: Final = st.lists(st.sampled_from(ATTRIBUTE_NAMES) | odd_text, max_size=4)


@st.composite
def queries(draw: st.DrawFn) -> bytes:
    """A query string of list parameters (RFC 7644 §3.4.2) holding anything."""
    params: list[tuple[str, str]] = []
    for name in draw(_PARAMETERS):
        if name.lower() == "filter":
            value = draw(FILTERS)
        elif "ttributes" in name:
            value = ",".join(draw(_ATTRIBUTE_LISTS))
        else:
            value = draw(QUERY_VALUES)
        params.append((name, value))
    pairs = [
        f"{quote(n.encode('utf-8', 'surrogatepass'), safe='')}="
        f"{quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for n, v in params
    ]
    raw = "&".join(pairs).encode()
    if draw(st.integers(0, 9)) == 0:  # raw, invalid percent-encoding and bytes
        raw += draw(st.sampled_from([b"&%", b"&%zz", b"&filter=%ff%fe", b"&&&=", b"&count=%00"]))
    return raw[:60_000]


PATHS: Final = [
    "/Users", "/Users/{user}", "/Users/.search", "/Users/{group}", "/Groups", "/Groups/{group}",
    "/Groups/.search", "/Groups/{user}", "/Schemas", f"/Schemas/{entra.USER_URN}",
    f"/Schemas/{entra.GROUP_URN}", "/Schemas/x", "/ResourceTypes", "/ResourceTypes/User",
    "/ResourceTypes/Group", "/ResourceTypes/x", "/ServiceProviderConfig", "/.search", "/Nothing",
    "/", "", "/users", "/USERS", "/groups/{group}", "/serviceproviderconfig", "/Users/",
    "/Users/{user}/", "/Users//{user}", "/Users/0", "/Users/-1", "/Users/1.5", "/Users/../Groups",
    "/Users/%2e%2e", "/Users/\x00", "/Users/\r\nX-Injected: 1", "/Groups/{group}/members",
    "/Users/" + "9" * 5000, "/Bulk", "/Me", "/Schemas/" + "x" * 5000,
]  # fmt: skip
METHODS: Final = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE",
                  "PROPFIND", "get", "FOO", "CONNECT"]  # fmt: skip
CONTENT_TYPES: Final = [
    b"application/scim+json", b"application/json", b"text/plain", b"",
    b"application/x-www-form-urlencoded", b"multipart/form-data; boundary=x",
    b"application/scim+json; charset=utf-16", b"\xff\xfe", b"application/json; charset=\"\r\n\"",
]  # fmt: skip


def paths() -> st.SearchStrategy[str]:
    return st.sampled_from(PATHS) | st.builds(
        lambda p, t: p + "/" + t,
        st.sampled_from(["/Users", "/Groups", "/Schemas", "/ResourceTypes"]),
        odd_text,
    )


HOSTILE_HEADER_VALUES: Final = [
    b"", b" ", b"\x00", b"\xff\xfe", b"a\r\nX-Injected: 1", b"a\nb", b"a\rb", b"\t", b"x" * 70_000,
    b"..", b"a b", b"<script>", b"\xc3\xa9", b"%0d%0aX-Injected:%201",
]  # fmt: skip


HEADER_BYTES: Final = (
    st.sampled_from(HOSTILE_HEADER_VALUES)
    | st.binary(max_size=40)
    | odd_text.map(lambda t: t.encode("utf-8", "surrogatepass"))
)
REQUEST_IDS: Final = (
    st.none() | st.sampled_from([b"trace-42", b"a" * 64, b"a" * 65, b"ok.id_-"]) | HEADER_BYTES
)


HOSTS: Final = [
    b"bridge.test", b"bridge.test:8443", b"127.0.0.1:8000", b"[::1]:8000", b"evil.example",
    b"a b", b"evil.example/path?q#f", b"@evil.example", b"x:port", b"[::1", b'"quoted"', b"",
    b"host:99999", b"h\xc3\xa9.example", b"bridge.test, evil.example", b"\\evil",
    b"bridge.test\r\nX-Injected: 1", b"xn--bcher-kva.example", b"UPPER.Example:80",
]  # fmt: skip


EXTRA_HEADERS: Final = [b"x-forwarded-proto", b"x-forwarded-for", b"x-forwarded-host",
                        b"forwarded", b"content-length", b"accept", b"x-http-method-override",
                        b"if-match", b"transfer-encoding"]  # fmt: skip
EXTRA_VALUES: Final = [b"https", b"ftp", b"-1", b"\xb2", b"99999999999999999999", b"\xd9\xa1",
                       b"chunked", b"1, 2"]  # fmt: skip


@st.composite
def extra_headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Hostile X-Request-Id, Host, X-Forwarded-*, Content-Type and Content-Length."""
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.integers(0, 9)) == 0:  # test_hostile_hosts_... tries Host values in earnest
        headers.append((b"host", draw(_HOSTS)))
    for name in draw(st.lists(st.sampled_from(EXTRA_HEADERS), unique=True, max_size=3)):
        headers.append((name, draw(_EXTRA_VALUES)))
    return headers


_HOSTS: Final = st.sampled_from(HOSTS) | HEADER_BYTES
_EXTRA_VALUES: Final = st.sampled_from(EXTRA_VALUES) | HEADER_BYTES


ROUTED: Final = [  # every route and method the bridge serves, with real and unknown ids
    (method, path)
    for method, paths in [
        ("GET", ["/Users", "/Users/{user}", "/Users/999999", "/Groups", "/Groups/{group}",
                 "/Groups/999999", "/Schemas", f"/Schemas/{entra.USER_URN}", "/ResourceTypes",
                 "/ResourceTypes/Group", "/ServiceProviderConfig"]),
        ("HEAD", ["/Users", "/Groups/{group}", "/ServiceProviderConfig"]),
        ("POST", ["/Users", "/Groups", "/Users/.search", "/Groups/.search", "/.search"]),
        ("PUT", ["/Users/{user}", "/Groups/{group}", "/Users/999999"]),
        ("PATCH", ["/Users/{user}", "/Groups/{group}", "/Groups/999999"]),
        ("DELETE", ["/Users/999999", "/Groups/999999"]),
    ]
    for path in paths
]  # fmt: skip


def endpoints() -> st.SearchStrategy[tuple[str, str]]:
    """A route the bridge serves (three times in four), or any method on any path."""
    anything, routed = st.tuples(st.sampled_from(METHODS), paths()), st.sampled_from(ROUTED)
    return st.integers(0, 3).flatmap(lambda n: anything if n == 0 else routed)


WRITES: Final = [  # (method, path, the kind of body), some on purpose to the wrong endpoint
    ("POST", "/Users", "user"), ("PUT", "/Users/{user}", "user"),
    ("PATCH", "/Users/{user}", "user-patch"), ("POST", "/Groups", "group"),
    ("PUT", "/Groups/{group}", "group"), ("PATCH", "/Groups/{group}", "group-patch"),
    ("POST", "/Users/.search", "search"), ("POST", "/Groups/.search", "search"),
    ("PATCH", "/Users/{user}", "group-patch"), ("PATCH", "/Groups/{group}", "user-patch"),
    ("POST", "/Users", "group"),
]  # fmt: skip


def credentials() -> st.SearchStrategy[bytes | None]:
    """Every way an Authorization header can be wrong (None: absent)."""
    good = TOKEN.encode()
    return (
        st.none()
        | st.sampled_from([b"", b"Bearer", b"Bearer ", b"Bearer  ", b"Basic dXNlcjpwYXNz",
                           b"Token " + good, b"Bearer " + good + b"x", b"Bearer " + good[:-1],
                           b"Bearer " + good.upper(), b"Bearer" + good, good,
                           b"Bearer " + b"x" * 70_000, b"Bearer " + good + b"\x00",
                           b"Bearer \xff" + good, b"Bearer " + MODYO_TOKEN.encode(),
                           b"Bearer " + good + b", Bearer " + good, b"Negotiate " + good])
        | HEADER_BYTES.map(lambda value: b"Bearer " + value)
        | HEADER_BYTES
    )  # fmt: skip


VALID_HOSTS: Final = st.from_regex(
    rb"\A(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2}){1,30}(?::[0-9]{1,5})?\Z"
    rb"|\A\[::1\](?::[0-9]{1,4})?\Z|\A[0-9]{1,3}(?:\.[0-9]{1,3}){3}\Z"
)


SEARCHED: Final = ["/Users", "/Groups", "/Users/{user}", "/Groups/{group}", "/Users/.search",
                   "/Groups/.search"]  # fmt: skip


# --------------------------------------------------------------------------- the wire

TARGETS: Final = [  # valid request targets (RFC 9112 §3.2), hostile in what they hold
    b"/scim/Users", b"/scim/Users/{user}", b"/scim/Groups/{group}", b"/scim/ServiceProviderConfig",
    b"/scim/Users/%0d%0aX-Injected:%201", b"/scim/Users/%0a", b"/scim/%0d%0a", b"/scim/Users/%00",
    b"/scim/Users/%ff%fe", b"/scim//Users", b"*", b"http://evil.example/scim/Users",
    b"//evil.example/scim/Users", b"/scim/Users/..%2F..%2Fhealthz", b"/scim/Users/" + b"9" * 20_000,
    b"/scim/Schemas/%", b"/", b"/scim/Users?filter=userName%20eq%20%22%0d%0a%22", b"/scim/Users?%",
    b"/scim/Users/%E2%80%AE", b"/healthz", b"/metrics", b"/scim", b"/scim/Users/.search",
]  # fmt: skip
BROKEN_TARGETS: Final = [  # what no valid request line holds
    b"/scim/Users/\xc3\xa9", b"/scim/Users/\xff", b"scim/Users", b"/scim/Users#f",
    b"/scim/Users?a=\xff", b"/scim/Users? x", b"/scim/Users\tx", b"/scim/Users\x00", b"",
]  # fmt: skip
LINES: Final = [  # valid header lines (RFC 9110 §5.5: obs-text allowed), hostile values
    b"X-Request-Id: trace-42", b"X-Request-Id: %0d%0aX-Injected:%201", b"X-Request-Id: \xff\xfe",
    b"X-Request-Id: " + b"a" * 64, b"X-Request-Id: " + b"a" * 65, b"X-Request-Id: a b",
    b"X-Forwarded-Proto: https", b"X-Forwarded-Proto: javascript", b"X-Forwarded-Proto: \xff",
    b"X-Forwarded-For: \xff, not-an-ip, 999.1.1.1", b"X-Forwarded-For: ", b"X-Forwarded-For: ::1",
    b"X-Forwarded-Host: evil.example", b'Forwarded: for="\\r"', b"Host: second.example",
    b"X-Long: " + b"x" * 60_000, b"Content-Type: application/scim+json", b"Content-Type: \xff",
    b"Authorization: Bearer second-credential", b"X-Empty:", b"Accept: */*",
]  # fmt: skip
BROKEN_LINES: Final = [  # header lines no valid request holds: CR/LF injection, NUL, folding
    b"X-Request-Id: a\rX-Injected: 1", b"X-Request-Id: a\nX-Injected: 1", b"X-Request-Id: \x00",
    b" folded-continuation", b"\tX-Injected: 1", b": no-name", b"NoColon", b"Bad Name: x",
    b"Accept: */*\x00", b"X-Forwarded-Proto: https\r\n",
]  # fmt: skip
METHOD_TOKENS: Final = [b"GET", b"POST", b"PUT", b"PATCH", b"DELETE", b"HEAD", b"OPTIONS",
                        b"M-SEARCH", b"PROPFIND"]  # fmt: skip
BROKEN_METHODS: Final = [b"get", b"FOO", b"G\xc3\x89T", b"GET GET", b"", b"G\x00T"]
VERSIONS: Final = [b"HTTP/1.1"] * 20 + [b"HTTP/1.0"]
BROKEN_VERSIONS: Final = [b"HTTP/2.0", b"http/1.1", b"HTTP/1.1 x", b"", b"HTTP/1.1\x00"]


FIELD_VALUES: Final = st.lists(
    st.sampled_from([*range(0x21, 0x7F), *range(0x80, 0x100), 0x20, 0x09]), max_size=30
).map(bytes)
"""Any valid field value (RFC 9110 §5.5: visible ASCII, obs-text, spaces and tabs)."""


def mostly(valid: list[bytes], broken: list[bytes]) -> st.SearchStrategy[bytes]:
    """A valid value nine times in ten, else a broken one."""
    valid_values, broken_values = st.sampled_from(valid), st.sampled_from(broken)
    return st.integers(0, 9).flatmap(lambda n: broken_values if n == 0 else valid_values)


def targets() -> st.SearchStrategy[bytes]:
    return mostly(TARGETS, BROKEN_TARGETS) | st.builds(
        lambda text: b"/scim/Users/" + quoted(text).encode(), odd_text
    )


def header_lines() -> st.SearchStrategy[list[bytes]]:
    request_id_lines = FIELD_VALUES.map(lambda value: b"X-Request-Id: " + value)
    return st.lists(mostly(LINES, BROKEN_LINES) | request_id_lines, max_size=3)


# --------------------------------------------------------------------------- the fakes of Modyo

NUMBER_TEXTS: Final = (
    st.sampled_from([*ABSURD_START_INDEXES, str(2**63), str(2**63 - 1), str(-(2**63)),
                     "-" + "9" * 5000, "--5", "-", "+", "00001", "1e3", "\u00b2", "\u0661"])
    | QUERY_VALUES
)  # fmt: skip
"""What a number in a query string or a path can be: absurd, signed twice, superscript..."""
ODD_IDS: Final = NUMBER_TEXTS | odd_text | st.sampled_from([".", "..", "%2e%2e", "%", "%ff", "%00"])
FAKE_FILTERS: Final = FILTERS | st.sampled_from(
    ['userName eq "\\q"', 'userName eq "\\u12"', 'externalId eq "\t"', 'userName eq "\\ud800"']
)
"""Filters for the fake of Modyo's SCIM server, with escapes JSON does not read."""
