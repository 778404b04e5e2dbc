"""The access log line: built directly (one orjson call) under the server's JSON logging, with the
same fields structlog's processors give it; through structlog otherwise; none with
``TOKENWARD_ACCESS_LOG=false``."""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from support.server import Server, bearer
from tokenward.server import logs
from tokenward.server.logs import configure_logging, log_access

FIELDS = {
    "request_id": "r-1",
    "method": "GET",
    "route": "/userinfo",
    "status": 200,
    "ms": 0.12,
    "client": "192.0.2.1",
}


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    configure_logging(json=True)
    yield buf
    structlog.reset_defaults()
    logs._direct = None


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]


def test_the_direct_line_has_structlogs_fields(stderr: io.StringIO) -> None:
    log_access(**FIELDS)  # type: ignore[arg-type]
    structlog.contextvars.bind_contextvars(request_id="r-1")
    try:
        structlog.get_logger("tokenward.access").info(
            "request", **{k: v for k, v in FIELDS.items() if k != "request_id"}
        )
    finally:
        structlog.contextvars.unbind_contextvars("request_id")
    direct, rendered = _lines(stderr)
    assert set(direct) == set(rendered)
    assert direct["timestamp"].endswith("Z") and rendered["timestamp"].endswith("Z")
    del direct["timestamp"], rendered["timestamp"]
    assert direct == rendered == {**FIELDS, "event": "request", "level": "info"}


def test_a_reconfigured_structlog_gets_the_line(stderr: io.StringIO) -> None:
    seen: list[dict[str, Any]] = []

    def keep(_logger: Any, _name: str, event: Any) -> Any:
        seen.append(dict(event))
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.contextvars.merge_contextvars, keep])
    log_access(**FIELDS)  # type: ignore[arg-type]
    assert stderr.getvalue() == ""
    assert seen and seen[0]["event"] == "request" and seen[0]["route"] == "/userinfo"


def test_access_log_off_writes_no_line(
    server_factory: Callable[..., Server], stderr: io.StringIO
) -> None:
    for enabled in (True, False):
        server = server_factory(access_log=enabled)
        tok = server.login()
        stderr.truncate(0)
        stderr.seek(0)
        assert server.http.get("/userinfo", headers=bearer(tok["access_token"])).status_code == 200
        routes = [line.get("route") for line in _lines(stderr) if line.get("event") == "request"]
        assert routes == (["/userinfo"] if enabled else [])
