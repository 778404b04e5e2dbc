"""Internal. Library logging through the standard library's :mod:`logging`.

The ``tokenward`` logger has a :class:`logging.NullHandler`, so the library prints nothing
unless the application configures logging. Calls read like structured logging
(``log.info("jwks_updated", url=..., kids=3)``): the event name and fields travel on the
record as ``tw_event``/``tw_fields`` (the server renders them as JSON lines) and are
appended to the message as ``key=value`` for plain handlers.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["EventLogger", "get_logger"]

logging.getLogger("tokenward").addHandler(logging.NullHandler())


class EventLogger:
    """A stdlib logger taking an event name and keyword fields."""

    __slots__ = ("_logger",)

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    @property
    def name(self) -> str:
        return self._logger.name

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if not self._logger.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", None)
        text = " ".join([event, *(f"{k}={v!r}" for k, v in fields.items())])
        self._logger.log(
            level,
            "%s",
            text,
            exc_info=exc_info,
            extra={"tw_event": event, "tw_fields": fields},
            stacklevel=3,
        )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        fields.setdefault("exc_info", True)
        self._log(logging.ERROR, event, fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(name)
