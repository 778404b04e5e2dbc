"""The registry of grant types: name → ``"module:Class"`` (imported on first use).

Importing this module imports no handler and no web framework.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Grant

__all__ = ["GRANTS", "GrantInfo", "grant_names", "load_grant", "register_grant"]


@dataclass(frozen=True, slots=True)
class GrantInfo:
    target: str  # "module:Class" of the Grant subclass
    confidential_only: bool = False  # public clients may not be registered for it


#: grant_type -> where its handler lives; the one list of the grants the server supports
GRANTS: dict[str, GrantInfo] = {
    "authorization_code": GrantInfo(
        "tokenward.server.grants.authorization_code:AuthorizationCodeGrant"
    ),
    "urn:ietf:params:oauth:grant-type:device_code": GrantInfo(
        "tokenward.server.grants.device_code:DeviceCodeGrant"
    ),
    "password": GrantInfo("tokenward.server.grants.password:PasswordGrant"),
    "refresh_token": GrantInfo("tokenward.server.grants.refresh_token:RefreshTokenGrant"),
    "client_credentials": GrantInfo(
        "tokenward.server.grants.client_credentials:ClientCredentialsGrant",
        confidential_only=True,
    ),
}

_loaded: dict[str, Grant] = {}


def register_grant(name: str, target: str, *, confidential_only: bool = False) -> None:
    """Add (or replace) a grant type, e.g. from an application before ``create_app``."""
    GRANTS[name] = GrantInfo(target, confidential_only)
    _loaded.pop(name, None)


def grant_names() -> tuple[str, ...]:
    return tuple(GRANTS)


def load_grant(name: str) -> Grant:
    """The handler for ``name`` (``KeyError`` when it is not registered)."""
    grant = _loaded.get(name)
    if grant is None:
        module, _, cls_name = GRANTS[name].target.partition(":")
        grant = getattr(importlib.import_module(module), cls_name)()
        _loaded[name] = grant
    return grant
