"""Security events of the token lifecycle, as log records (standard :mod:`logging`, logger
``tokenward.events``) and to in-process listeners (metrics, the console's live view).

Events and their fields (``None`` fields are left out):

=====================  =====================================================================
``issued``             a session started: ``sid, sub, client_id, scope, ip, user_agent``
``refreshed``          a rotation: ``sid, sub, client_id, generation, ip, user_agent``
``grace_replay``       the immediate parent came back inside the grace window: same fields
``refresh_token_reuse`` reuse detected, the family was revoked: ``sid, sub, client_id, ip,
                       user_agent, seq``
``dpop_key_mismatch``  a DPoP-bound refresh token came without a proof or with a proof of
                       another key (refused, the session is kept): ``sid, sub, client_id,
                       reason, ip, user_agent``
``revoked``            ``kind`` (``jti``/``sid``/``sub``), ``value``, ``reason``, ``seq``
``purged``             ``refresh_tokens, families, revocations``
=====================  =====================================================================

Token values never appear: callers pass identifiers only, and :func:`emit` additionally
replaces any string that looks like a refresh token (``twr_…``) or a compact JWS/JWE with
``"[redacted]"`` as a last line of defence.

The library configures no logging (a ``NullHandler``); the application does. The server
renders these records as JSON lines (:func:`tokenward.server.logs.configure_logging`).
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from ._logging import get_logger

__all__ = [
    "EVENT_LOGGER",
    "Listener",
    "SecurityEvent",
    "add_listener",
    "emit",
    "log_quietly",
]

EVENT_LOGGER = "tokenward.events"

Listener = Callable[[str, Mapping[str, Any]], None]


class SecurityEvent(StrEnum):
    ISSUED = "issued"
    REFRESHED = "refreshed"
    GRACE_REPLAY = "grace_replay"
    REFRESH_TOKEN_REUSE = "refresh_token_reuse"  # noqa: S105 - an event name
    DPOP_KEY_MISMATCH = "dpop_key_mismatch"
    REVOKED = "revoked"
    PURGED = "purged"
    PASSWORD_CHANGED = "password_changed"  # noqa: S105 - an event name


_logger = get_logger(EVENT_LOGGER)
_listeners: list[Listener] = []
_lock = threading.Lock()
_SECRET_LIKE = re.compile(r"twr_[A-Za-z0-9_.-]{20,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_.-]+")


def add_listener(listener: Listener) -> Callable[[], None]:
    """Call ``listener(event, fields)`` for every event; returns a function that removes it.

    Listeners run synchronously and must be fast; their exceptions are swallowed.
    """
    with _lock:
        _listeners.append(listener)

    def remove() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return remove


def _clean(value: Any) -> Any:
    if isinstance(value, str) and _SECRET_LIKE.search(value):
        return "[redacted]"
    return value


def log_quietly(logger: Any, level: str, event: str, **fields: Any) -> None:
    """``logger.<level>(event, **fields)``, never raising: a broken log sink (a closed stream,
    a full disk) must not break the lifecycle or a background task."""
    with contextlib.suppress(Exception):
        getattr(logger, level)(event, **fields)


def emit(event: SecurityEvent | str, **fields: Any) -> None:
    """Log one security event at ``info`` (``warning`` for reuse) and notify listeners."""
    name = str(event)
    clean = {k: _clean(v) for k, v in fields.items() if v is not None}
    level = "warning" if name == SecurityEvent.REFRESH_TOKEN_REUSE else "info"
    log_quietly(_logger, level, name, security_event=True, **clean)
    for listener in tuple(_listeners):
        # a broken listener must not break the lifecycle
        with contextlib.suppress(Exception):
            listener(name, clean)
