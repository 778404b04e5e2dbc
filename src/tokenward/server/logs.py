"""The server process's logging: structlog → JSON lines (or a console renderer) on stderr.

The server's own loggers are structlog loggers; the library logs through the standard
library (``tokenward.*`` loggers, see :mod:`tokenward._logging`), and those records are
rendered by the same processors, with their event name and fields, so access logs, security
events and errors come out as one stream. Library code never calls this.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog

__all__ = ["configure_logging"]

_HANDLER_NAME = "tokenward-server"


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
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
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
