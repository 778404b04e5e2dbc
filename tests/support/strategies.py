"""Hypothesis strategies for what attackers send: compact tokens (mutations of real ones and
structured forgeries), refresh tokens, ``Authorization`` headers and OAuth form bodies."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

__all__ = [
    "authorization_headers",
    "b64",
    "form_bodies",
    "header_objects",
    "json_values",
    "mutated",
    "refresh_like",
    "token_like",
]

B64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
# characters that matter to parsers: separators, padding, the standard alphabet, whitespace,
# quotes, NUL, non-ASCII
SPECIALS = ".=+/ \t\r\n\x00\"'\\{}[]:,%~\u00e9\u2028\udc80"
HEADER_NAMES = ["alg", "kid", "typ", "crit", "jku", "jwk", "x5u", "x5c", "b64", "zip", "enc",
                "cty", "p2c", "p2s", "epk", "x"]  # fmt: skip
CLAIM_NAMES = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "sid", "x"]
ALGS = ["ES256", "ES384", "RS256", "PS256", "EdDSA", "Ed25519", "HS256", "none", "None", "",
        "RSA-OAEP-256", "PBES2-HS256+A128KW", "dir", "ES256K", "Ed448"]  # fmt: skip


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(ALGS),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


def header_objects(kids: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """JOSE headers: mostly plausible members (our kids, real alg names), some garbage."""
    value = st.one_of(json_values, st.sampled_from(kids), st.sampled_from(ALGS))
    return st.dictionaries(st.sampled_from(HEADER_NAMES), value, max_size=6)


def claim_objects(plausible: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Claims: the plausible ones with some members replaced, dropped or added."""
    return st.builds(
        lambda over, drop: {k: v for k, v in {**plausible, **over}.items() if k not in drop},
        st.dictionaries(st.sampled_from(CLAIM_NAMES), json_values, max_size=3),
        st.sets(st.sampled_from(CLAIM_NAMES), max_size=2),
    )


def _segment() -> st.SearchStrategy[str]:
    return st.one_of(
        st.binary(max_size=64).map(b64),
        json_values.map(lambda v: b64(json.dumps(v).encode())),
        st.text(alphabet=B64_ALPHABET + SPECIALS, max_size=40),
    )


@st.composite
def mutated(draw: st.DrawFn, token: str) -> str:
    """One to three edits of ``token``: a character replaced, inserted or deleted, a segment
    replaced, dots added or removed, truncation, duplication."""
    t = token
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "segment", "dots", "cut", "dup"]))
        if op in ("replace", "insert", "delete") and t:
            i = draw(st.integers(0, len(t) - 1))
            c = draw(st.sampled_from(B64_ALPHABET + SPECIALS))
            t = {"replace": t[:i] + c + t[i + 1 :], "insert": t[:i] + c + t[i:],
                 "delete": t[:i] + t[i + 1 :]}[op]  # fmt: skip
        elif op == "segment":
            parts = t.split(".")
            i = draw(st.integers(0, len(parts) - 1))
            parts[i] = draw(_segment())
            t = ".".join(parts)
        elif op == "dots":
            t = draw(st.sampled_from([t + ".", "." + t, t.replace(".", "..", 1),
                                      t.replace(".", "", 1)]))  # fmt: skip
        elif op == "cut" and t:
            t = t[: draw(st.integers(0, len(t) - 1))]
        else:
            t = t + draw(st.sampled_from(["", ".", " "])) + t
    return t


def token_like(valid: list[str], kids: list[str]) -> st.SearchStrategy[str]:
    """Anything a client might send as a token: mutations of real tokens, tokens with a
    fuzzed header or payload (and the original or an empty signature), and plain text."""
    real = st.sampled_from(valid)
    forged = st.builds(
        lambda h, p, s: f"{b64(json.dumps(h).encode())}.{p}.{s}",
        header_objects(kids),
        st.one_of(real.map(lambda t: t.split(".")[1]), _segment()),
        st.one_of(real.map(lambda t: t.split(".")[2]), st.just(""), _segment()),
    )
    return st.one_of(
        real.flatmap(mutated),
        forged,
        st.text(max_size=80),
        st.lists(_segment(), min_size=1, max_size=6).map(".".join),
    )


def refresh_like(valid: list[str]) -> st.SearchStrategy[str]:
    """Refresh-token look-alikes: mutated real ones, random well-formed and near-formed ones."""
    body = st.text(alphabet=B64_ALPHABET, min_size=40, max_size=46)
    return st.one_of(
        st.sampled_from(valid).flatmap(mutated),
        st.builds(lambda p, b: p + b, st.sampled_from(["twr_", "twx_", "TWR_", "", "twr"]), body),
        st.binary(min_size=30, max_size=34).map(lambda b: "twr_" + b64(b)),
    )


def authorization_headers(tokens: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    scheme = st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "DPoP", "Token", ""])
    sep = st.sampled_from([" ", "  ", "\t", "", " Bearer "])
    return st.builds(lambda a, s, t: f"{a}{s}{t}", scheme, sep, tokens)


def form_bodies(tokens: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    names = st.sampled_from(
        [
            "grant_type",
            "refresh_token",
            "token",
            "token_type_hint",
            "client_id",
            "client_secret",
            "scope",
            "username",
            "password",
        ]
    )
    values = st.one_of(
        tokens,
        st.sampled_from(
            [
                "refresh_token",
                "password",
                "client_credentials",
                "access_token",
                "web",
                "svc",
                "read",
                "",
            ]
        ),
        st.text(max_size=30),
    )
    return st.lists(st.tuples(names, values), max_size=6)
