"""The server process's logging: structlog → JSON lines (or a console renderer) on stderr.

The server's own loggers are structlog loggers; the library logs through the standard
library (``tokenward.*`` loggers, see :mod:`tokenward._logging`), and those records are
rendered by the same processors, with their event name and fields, so access logs, security
events and errors come out as one stream. Library code never calls this.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
import structlog

__all__ = ["configure_logging", "log_access"]

_HANDLER_NAME = "tokenward-server"
_access = structlog.get_logger("tokenward.access")
#: set by configure_logging(json=True): the stream and the processor list it configured
_direct: tuple[TextIO, list[structlog.typing.Processor]] | None = None


def _library_record(_logger: Any, _name: str, event_dict: Any) -> Any:
    """A ``tokenward.*`` stdlib record: its event name and fields, as structlog would have."""
    record = event_dict.get("_record")
    if record is not None:
        event = getattr(record, "tw_event", None)
        if event is not None:
            event_dict["event"] = event
            event_dict.update(getattr(record, "tw_fields", {}))
        event_dict.setdefault("logger", record.name)
    return event_dict


def log_access(
    *, request_id: str, method: str | None, route: str, status: int, ms: float, client: str
) -> None:
    """The access log line of one request. With the server's JSON logging in place (and not
    reconfigured since), the line is built here in one ``orjson`` call — the same fields,
    level and timestamp structlog's processors would add (``request_id`` is the only value the
    server binds to the context) — and written straight to the stream; otherwise it goes
    through structlog."""
    direct = _direct
    if direct is None or structlog.get_config()["processors"] is not direct[1]:
        _access.info("request", method=method, route=route, status=status, ms=ms, client=client)
        return
    stream, _ = direct
    line = orjson.dumps(
        {
            "request_id": request_id,
            "method": method,
            "route": route,
            "status": status,
            "ms": ms,
            "client": client,
            "event": "request",
            "level": "info",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
        option=orjson.OPT_APPEND_NEWLINE,
    )
    stream.write(line.decode())
    stream.flush()


def _orjson_text(obj: Any, **kw: Any) -> str:
    """structlog's JSON serializer, with orjson (several times the standard library's speed on
    an access line); ``default`` renders what JSON has no type for, as structlog's does."""
    return orjson.dumps(obj, default=kw.get("default")).decode()


def configure_logging(*, json: bool = True) -> None:
    """For the server process (and each of its workers): structlog → JSON lines on stderr
    (access log, security events, errors), and the library's ``tokenward.*`` records
    through the same renderer at ``info`` and above."""
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_text)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    global _direct
    processors: list[structlog.typing.Processor] = [
        *shared,
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    _direct = (sys.stderr, processors) if json else None
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[_library_record, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    library = logging.getLogger("tokenward")
    for old in [h for h in library.handlers if h.get_name() == _HANDLER_NAME]:
        library.removeHandler(old)
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
