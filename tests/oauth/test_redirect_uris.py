"""Redirect URI registration rules and matching (RFC 9700 §2.1, RFC 8252 §7.1/§7.3/§8.3)."""

from __future__ import annotations

import pytest

from tokenward.errors import ConfigurationError
from tokenward.server.clients import ClientRegistry, require_redirect_uris
from tokenward.server.redirect_uris import redirect_uri_matches, validate_redirect_uri
from tokenward.store.memory import MemoryStore


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "https://app.example:8443/cb?x=1",
        "http://127.0.0.1/cb",
        "http://[::1]:8080/cb",
        "http://localhost/callback",
        "com.example.app:/oauth2redirect",
    ],
)
def test_registrable_redirect_uris(uri: str) -> None:
    assert validate_redirect_uri(uri) is None


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "http://app.example/cb",  # plain http off loopback
        "https://app.example/cb#frag",
        "javascript:alert(1)",
        "data:text/html,x",
        "myapp:/cb",  # private-use scheme not in reverse-domain form
        "https://user:pw@app.example/cb",
        "https:///nohost",
        "HTTPS://app.example/cb",
        "https://app.example/a b",
    ],
)
def test_refused_redirect_uris(uri: str) -> None:
    assert validate_redirect_uri(uri) is not None


def test_match_is_exact() -> None:
    reg = ("https://app.example/cb",)
    assert redirect_uri_matches(reg, "https://app.example/cb")
    assert not redirect_uri_matches(reg, "https://app.example/cb/")
    assert not redirect_uri_matches(reg, "https://app.example/cb?x=1")
    assert not redirect_uri_matches(reg, "https://app.example:443/cb")
    assert not redirect_uri_matches(reg, "https://APP.example/cb")


def test_loopback_matches_any_port_but_same_host_and_path() -> None:
    reg = ("http://127.0.0.1/cb",)
    assert redirect_uri_matches(reg, "http://127.0.0.1:51234/cb")
    assert redirect_uri_matches(reg, "http://127.0.0.1/cb")
    assert not redirect_uri_matches(reg, "http://127.0.0.1:51234/other")
    assert not redirect_uri_matches(reg, "http://[::1]:51234/cb")
    assert not redirect_uri_matches(reg, "http://127.0.0.1:51234/cb#x")
    assert not redirect_uri_matches(("https://127.0.0.1/cb",), "https://127.0.0.1:9/cb")


async def test_authorization_code_client_needs_redirect_uris() -> None:
    reg = ClientRegistry(MemoryStore())
    with pytest.raises(ConfigurationError, match="redirect"):
        require_redirect_uris(["authorization_code"], [])
    with pytest.raises(ConfigurationError, match="fragment"):
        await reg.create(
            "spa", public=True, grants=["authorization_code"], redirect_uris=["https://a.b/c#d"]
        )
    with pytest.raises(ConfigurationError, match="back-channel"):
        await reg.create(
            "spa",
            public=True,
            grants=["authorization_code"],
            redirect_uris=["https://a.b/c"],
            backchannel_logout_uri="ftp://a.b/x",
        )
    client, secret = await reg.create(
        "spa",
        public=True,
        grants=["authorization_code", "refresh_token"],
        redirect_uris=["https://a.b/c", "http://127.0.0.1/cb"],
        first_party=True,
        post_logout_redirect_uris=["https://a.b/bye"],
        backchannel_logout_uri="https://a.b/bcl",
    )
    assert secret is None and client.first_party
    assert client.redirect_uris == ("https://a.b/c", "http://127.0.0.1/cb")
    assert client.post_logout_redirect_uris == ("https://a.b/bye",)
