"""The server renders the library's standard-logging records as its JSON lines."""

from __future__ import annotations

import json
import subprocess
import sys


def test_library_security_events_come_out_as_json_lines_with_their_fields() -> None:
    code = (
        "from tokenward.server.logs import configure_logging\n"
        "configure_logging(json=True)\n"
        "configure_logging(json=True)  # idempotent: one handler, one line per record\n"
        "from tokenward.events import emit\n"
        "emit('refresh_token_reuse', sid='s1', sub='alice', ip='192.0.2.1')\n"
        "from tokenward._logging import get_logger\n"
        "get_logger('tokenward.guard.jwks').debug('below_info_is_not_printed')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    lines = [json.loads(line) for line in r.stderr.splitlines()]
    assert len(lines) == 1
    (line,) = lines
    assert line["event"] == "refresh_token_reuse" and line["security_event"] is True
    assert (line["sid"], line["sub"], line["ip"]) == ("s1", "alice", "192.0.2.1")
    assert line["level"] == "warning" and line["logger"] == "tokenward.events"
