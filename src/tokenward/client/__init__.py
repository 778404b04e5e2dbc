"""``tokenward.client``: the client half of the token lifecycle.

    from tokenward.client import TokenManager, FileTokenStorage
    tm = TokenManager("http://127.0.0.1:8000", "my-cli",
                      storage=FileTokenStorage("~/.config/my-cli/tokens.json"))
    tm.login_password("alice", "…")                 # or login_device / login_authorization_code
    httpx.get("http://api.example/items", auth=tm.httpx_auth())

Needs only the core install (httpx); ``requests`` and ``keyring`` are optional.
See ``docs/clients.md``.
"""

from .auth import HttpxAuth, is_invalid_token
from .errors import ClientError, LoginRequired, TemporarilyUnavailable
from .interactive import DeviceCode, pkce_pair
from .manager import TokenManager, default_refresh_margin
from .storage import FileTokenStorage, KeyringTokenStorage, MemoryTokenStorage, TokenStorage

__all__ = [
    "ClientError",
    "DeviceCode",
    "FileTokenStorage",
    "HttpxAuth",
    "KeyringTokenStorage",
    "LoginRequired",
    "MemoryTokenStorage",
    "TemporarilyUnavailable",
    "TokenManager",
    "TokenStorage",
    "default_refresh_margin",
    "is_invalid_token",
    "pkce_pair",
]
