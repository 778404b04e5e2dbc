"""No input gives a 5xx: random form bodies, JSON bodies, headers and query strings against every
endpoint (hypothesis). A stand-in for schemathesis, which is not installed here."""

from __future__ import annotations

from urllib.parse import quote

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.server import Server

_text = st.text(max_size=60)
_names = st.sampled_from(
    [
        "grant_type",
        "username",
        "password",
        "refresh_token",
        "scope",
        "client_id",
        "client_secret",
        "token",
        "token_type_hint",
        "x",
    ]
)
_form = st.lists(st.tuples(_names, _text), max_size=8)
_paths = st.sampled_from(["/token", "/revoke", "/introspect"])
_auth = st.one_of(
    st.none(),
    st.text(max_size=80).map(lambda t: "Basic " + t),
    st.text(max_size=80).map(lambda t: "Bearer " + t),
    st.sampled_from(["Basic Og==", "Basic OnNlY3JldA==", "Basic ZGVmZWN0", "Bearer a.b.c"]),
)
_FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _ascii(h: str | None) -> dict[str, bytes]:
    if h is None:
        return {}
    # raw bytes: the server sees them as latin-1, whatever they are
    return {
        "Authorization": h.encode("utf-8", "surrogatepass")
        .replace(b"\r", b"")
        .replace(b"\n", b"")
        .replace(b"\x00", b"")
    }


@_FUZZ
@given(path=_paths, form=_form, auth=_auth)
def test_form_endpoints_never_5xx(
    server: Server, path: str, form: list[tuple[str, str]], auth: str | None
) -> None:
    server.store.set_available(True)
    r = server.http.post(path, data=form, headers=_ascii(auth))  # type: ignore[arg-type]
    assert r.status_code < 500, r.text
    assert "error" in r.json() or r.status_code == 200


@_FUZZ
@given(
    body=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(
            _text, st.one_of(_text, st.integers(-(2**63), 2**63 - 1), st.none()), max_size=6
        ).map(orjson.dumps),
    ),
    ctype=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "multipart/form-data",
            "application/x-www-form-urlencoded",
        ]
    ),
)
def test_json_and_raw_bodies_never_5xx(server: Server, body: bytes, ctype: str) -> None:
    for path in ("/login", "/logout", "/token", "/admin/users"):
        r = server.http.post(path, content=body, headers={"Content-Type": ctype})
        assert r.status_code < 500, (path, r.text)


@_FUZZ
@given(q=st.text(max_size=40), auth=_auth)
def test_get_endpoints_never_5xx(server: Server, q: str, auth: str | None) -> None:
    q = quote(q, safe="")
    for path in (
        f"/revocations?after={q}",
        f"/revocations?wait={q}",
        "/userinfo",
        f"/sessions/{q or 'x'}",
        "/sessions",
    ):
        method = "DELETE" if path.startswith("/sessions/") else "GET"
        r = server.http.request(method, path, headers=_ascii(auth))
        assert r.status_code < 500, (path, r.text)
