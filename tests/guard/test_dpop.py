"""DPoP (RFC 9449 §7) in every guard integration: the DPoP scheme, the proof for the request as
the application sees it (or as the client sees it behind a proxy, ``external_url``), ``ath``,
the ``cnf.jkt`` key, replay (per process, and shared through Redis), and a bound token sent as
``Bearer`` refused (§7.2)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from support.authstub import AUD, ISS
from tokenward.claims import AccessTokenClaims
from tokenward.dpop import DPoPKey
from tokenward.errors import InvalidDPoPProof
from tokenward.guard.dpop import DPoPChecker, RedisReplayCache
from tokenward.issuer import Issuer
from tokenward.verifier import Verifier as CoreVerifier

from .test_integrations import _fastapi_app, _flask_app, _Resp, _starlette_app

Headers = list[tuple[str, str]]
Call = Callable[[Headers], Any]


class WithDPoP:
    """A verifier with its own DPoP settings (what ``guard.Verifier(external_url=...)`` has)."""

    def __init__(self, inner: CoreVerifier, dpop: DPoPChecker) -> None:
        self.inner = inner
        self.dpop = dpop

    def verify(self, token: str) -> AccessTokenClaims:
        return self.inner.verify(token)


@pytest.fixture
def verifier(issuer: Issuer, fclock: Any) -> CoreVerifier:
    return CoreVerifier(issuer.keyring.public_jwks(), issuer=ISS, audience=AUD, clock=fclock)


@pytest.fixture
def key() -> DPoPKey:
    return DPoPKey.generate()


@pytest.fixture
def bound(issuer: Issuer, key: DPoPKey) -> str:
    return issuer.issue_access_token(
        sub="alice", client_id="web", scope="read", extra={"cnf": {"jkt": key.jkt}}
    )


def _django_call(verifier: Any) -> Call:
    from django.http import JsonResponse
    from django.test import RequestFactory

    from support.django_setup import configure

    configure()
    from tokenward.guard import django as dj

    dj.set_verifier(verifier)

    @dj.require_token(scopes=["read"])
    def view(request: Any) -> JsonResponse:
        return JsonResponse({"sub": request.token_claims.sub})

    mw = dj.GuardMiddleware(view)
    rf = RequestFactory()

    def call(headers: Headers) -> _Resp:
        meta: dict[str, str] = {}
        for name, value in headers:
            k = "HTTP_" + name.upper()
            meta[k] = f"{meta[k]},{value}" if k in meta else value  # as WSGI joins them
        return _Resp(mw(rf.get("/orders", **meta)))

    return call


def _client_call(framework: str, verifier: Any) -> tuple[Call, str]:
    if framework == "django":
        return _django_call(verifier), "http://testserver/orders"
    if framework == "flask":
        client = _flask_app(verifier).test_client()
        return (lambda h: client.get("/orders", headers=h)), "http://localhost/orders"
    from starlette.testclient import TestClient

    app = _fastapi_app(verifier) if framework == "fastapi" else _starlette_app(verifier)
    tc = TestClient(app)
    return (lambda h: tc.get("/orders", headers=h)), "http://testserver/orders"


def body(r: Any) -> dict[str, Any]:
    j = r.json
    return j() if callable(j) else j  # type: ignore[no-any-return]


FRAMEWORKS = ["fastapi", "starlette", "flask", "django"]


@pytest.fixture(params=FRAMEWORKS)
def app(request: pytest.FixtureRequest, verifier: CoreVerifier) -> Any:
    call, url = _client_call(request.param, verifier)
    yield call, url
    if request.param == "django":
        from tokenward.guard import django as dj

        dj.set_verifier(None)


def test_a_bound_token_with_the_dpop_scheme_and_a_fitting_proof_is_accepted(
    app: tuple[Call, str], key: DPoPKey, bound: str
) -> None:
    call, url = app
    r = call(
        [("Authorization", f"DPoP {bound}"), ("DPoP", key.proof("GET", url, access_token=bound))]
    )
    assert r.status_code == 200, body(r)
    assert body(r)["sub"] == "alice"


def test_a_bound_token_sent_as_bearer_is_refused(app: tuple[Call, str], bound: str) -> None:
    call, _ = app
    r = call([("Authorization", f"Bearer {bound}")])
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith('DPoP algs="ES256 EdDSA Ed25519 RS256 PS256"')
    assert body(r)["error"] == "invalid_token"


@pytest.mark.parametrize(
    "case", ["no proof", "ath of another token", "another key", "other URL", "POST", "two proofs"]
)
def test_a_proof_that_does_not_fit_the_request_is_refused(
    app: tuple[Call, str], key: DPoPKey, bound: str, case: str
) -> None:
    call, url = app
    headers: Headers = [("Authorization", f"DPoP {bound}")]
    if case == "ath of another token":
        headers.append(("DPoP", key.proof("GET", url, access_token="other")))
    elif case == "another key":
        headers.append(("DPoP", DPoPKey.generate().proof("GET", url, access_token=bound)))
    elif case == "other URL":
        headers.append(("DPoP", key.proof("GET", url + "/x", access_token=bound)))
    elif case == "POST":
        headers.append(("DPoP", key.proof("POST", url, access_token=bound)))
    elif case == "two proofs":
        headers += [("DPoP", key.proof("GET", url, access_token=bound))] * 2
    r = call(headers)
    assert r.status_code == 401
    assert body(r)["error"] == "invalid_dpop_proof"
    assert 'error="invalid_dpop_proof"' in r.headers["WWW-Authenticate"]


def test_a_replayed_proof_is_refused(app: tuple[Call, str], key: DPoPKey, bound: str) -> None:
    call, url = app
    headers = [
        ("Authorization", f"DPoP {bound}"),
        ("DPoP", key.proof("GET", url, access_token=bound)),
    ]
    assert call(headers).status_code == 200
    r = call(headers)
    assert r.status_code == 401 and "replay" in body(r)["error_description"]


def test_query_differences_do_not_matter(app: tuple[Call, str], key: DPoPKey, bound: str) -> None:
    call, url = app
    p = key.proof("GET", url + "?page=2", access_token=bound)
    r = call([("Authorization", f"DPoP {bound}"), ("DPoP", p)])
    assert r.status_code == 200


def test_an_unbound_token_with_the_dpop_scheme_is_refused(
    app: tuple[Call, str], issuer: Issuer, key: DPoPKey
) -> None:
    call, url = app
    plain = issuer.issue_access_token(sub="alice", client_id="web", scope="read")
    r = call(
        [("Authorization", f"DPoP {plain}"), ("DPoP", key.proof("GET", url, access_token=plain))]
    )
    assert r.status_code == 401 and body(r)["error"] == "invalid_token"


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_behind_a_proxy_the_proof_names_the_external_url(
    framework: str, verifier: CoreVerifier, key: DPoPKey, bound: str
) -> None:
    external = DPoPChecker(external_url="https://api.example.com/")
    call, seen_url = _client_call(framework, WithDPoP(verifier, external))
    try:
        outside = key.proof("GET", "https://api.example.com/orders", access_token=bound)
        assert call([("Authorization", f"DPoP {bound}"), ("DPoP", outside)]).status_code == 200
        inside = key.proof("GET", seen_url, access_token=bound)
        r = call([("Authorization", f"DPoP {bound}"), ("DPoP", inside)])
        assert r.status_code == 401 and "htu" in body(r)["error_description"]
    finally:
        if framework == "django":
            from tokenward.guard import django as dj

            dj.set_verifier(None)


def test_the_remote_verifier_takes_external_url_and_a_shared_replay_cache() -> None:
    from tokenward.guard import Verifier

    v = Verifier(
        jwks_url="http://127.0.0.1:9/jwks",
        issuer=ISS,
        audience=AUD,
        external_url="https://api.example.com",
        dpop_max_age=30,
    )
    try:
        assert v.dpop.external_url == "https://api.example.com"
        assert v.dpop.htu("http://10.0.0.5:8080/orders?x=1") == "https://api.example.com/orders"
        assert v.dpop.max_age == 30
    finally:
        v.close()


@pytest.mark.services
def test_a_replay_is_seen_by_every_process_sharing_redis(
    issuer: Issuer, fclock: Any, key: DPoPKey, bound: str
) -> None:
    from support.env import service_missing
    from support.stores import REDIS_URL, redis_problem

    if (problem := redis_problem()) is not None:
        service_missing(problem)
    prefix = f"twtest:dpop:{secrets.token_hex(4)}:"
    url = "http://testserver/orders"
    a = DPoPChecker(replay=RedisReplayCache(REDIS_URL, prefix=prefix))
    b = DPoPChecker(replay=RedisReplayCache(REDIS_URL, prefix=prefix))
    v = CoreVerifier(issuer.keyring.public_jwks(), issuer=ISS, audience=AUD, clock=fclock)
    claims = v.verify(bound)
    proof = key.proof("GET", url, access_token=bound)
    a.check(claims, scheme="DPoP", token=bound, method="GET", url=url, proofs=[proof])
    with pytest.raises(InvalidDPoPProof, match="replay"):
        b.check(claims, scheme="DPoP", token=bound, method="GET", url=url, proofs=[proof])
