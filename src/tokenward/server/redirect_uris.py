"""Redirect URIs of the authorization code flow: what may be registered and how a requested one
is matched.

* Matching is **exact** string comparison (RFC 9700 §2.1; OAuth 2.1 §2.3.1), with one
  exception: a registered loopback redirect (``http://127.0.0.1/…``, ``http://[::1]/…``,
  ``http://localhost/…``) matches a request with any port (RFC 8252 §7.3), since a native app
  picks a free port at run time.
* What may be registered: ``https`` URIs; ``http`` only for loopback hosts (RFC 8252 §8.3);
  private-use schemes of native apps in reverse-domain form such as ``com.example.app:/cb``
  (RFC 8252 §7.1, the scheme must contain a dot). Never a fragment (RFC 6749 §3.1.2), never
  user information, never ``javascript:``/``data:`` and the like.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["is_loopback_uri", "redirect_uri_matches", "validate_redirect_uri"]

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
_PRIVATE_SCHEME = re.compile(r"^[a-z][a-z0-9+\-]*(\.[a-z0-9+\-]+)+$")
_MAX = 2000


def is_loopback_uri(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK_HOSTS


def validate_redirect_uri(uri: str) -> str | None:
    """``None`` when ``uri`` may be registered, else the reason."""
    if not uri or len(uri) > _MAX or not uri.isprintable() or " " in uri:
        return "a redirect URI is 1-2000 printable characters without spaces"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        return f"{uri!r} is not a valid URI"
    if "#" in uri:
        return f"{uri!r}: a redirect URI has no fragment (RFC 6749 §3.1.2)"
    scheme = parts.scheme
    if uri.split(":", 1)[0] != scheme:
        return f"{uri!r}: write the scheme in lower case"
    if scheme == "https":
        if not parts.hostname:
            return f"{uri!r}: an https redirect URI needs a host"
    elif scheme == "http":
        if (parts.hostname or "") not in _LOOPBACK_HOSTS:
            return f"{uri!r}: plain http is only for loopback redirects (127.0.0.1, [::1])"
    elif not _PRIVATE_SCHEME.match(scheme):
        return (
            f"{uri!r}: use https, an http loopback URI, or a private-use scheme in "
            "reverse-domain form such as com.example.app:/callback (RFC 8252 §7.1)"
        )
    if parts.username is not None or parts.password is not None:
        return f"{uri!r}: a redirect URI has no user information"
    return None


def redirect_uri_matches(registered: tuple[str, ...] | list[str], requested: str) -> bool:
    """Exact match, or a loopback redirect with any port (RFC 8252 §7.3)."""
    if requested in registered:
        return True
    if not is_loopback_uri(requested):
        return False
    try:
        want = urlsplit(requested)
        want.port  # noqa: B018
    except ValueError:
        return False
    for uri in registered:
        if not is_loopback_uri(uri):
            continue
        have = urlsplit(uri)
        if (
            have.hostname == want.hostname
            and have.path == want.path
            and have.query == want.query
            and "#" not in requested
            and want.username is None
        ):
            return True
    return False
