"""One of the processes of the shared-FileTokenStorage tests: call /userinfo through its own
TokenManager on the shared token file until the stop file appears (or once, when the stop
file's name is ``once``); print the statuses seen."""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from tokenward.client import FileTokenStorage, LoginRequired, TokenManager


def main(base: str, client_id: str, token_file: str, stop_file: str) -> None:
    tm = TokenManager(base, client_id, storage=FileTokenStorage(token_file))
    seen: Counter[str] = Counter()
    stop = Path(stop_file)
    if stop.name == "once":  # started together: wait at the start line, then one call each
        Path(f"{token_file}.ready.{os.getpid()}").touch()
        go = Path(f"{token_file}.go")
        while not go.exists():
            time.sleep(0.005)
    with httpx.Client(base_url=base, auth=tm.httpx_auth(), timeout=30) as http:
        while not stop.exists() and not (stop.name == "once" and seen):
            try:
                seen[str(http.get("/userinfo").status_code)] += 1
            except LoginRequired:
                seen["LoginRequired"] += 1
                break
    print(json.dumps(seen))


if __name__ == "__main__":
    main(*sys.argv[1:5])
