"""The ASGI floor: a bare ASGI app served exactly as ``tokenward serve`` serves tokenward.

``python asgi_floor.py serve --host H --port P`` runs ``tokenward serve`` itself (its CLI, its
uvicorn configuration: the httptools protocol with the header-timeout mixin, uvloop, the
keep-alive and connection limits, access log off, one worker) with the app factory replaced
by :func:`floor_app`, which answers every HTTP request with a 16-byte JSON object and no
framework at all. Whatever the server costs per request beyond this is the application's.

Every response carries ``x-bench-floor: 1`` so that the bench can check that the replacement
took (it fails loudly if ``tokenward serve`` stops building its app through
``tokenward.server.create_app``).
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["floor_app"]

BODY = b'{"sub":"floor"}\n'
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
        (b"x-bench-floor", b"1"),
    ],
}
BODY_EVENT = {"type": "http.response.body", "body": BODY}


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:  # drain a request body, if any
        more = (await receive()).get("more_body", False)
    await send(START)
    await send(BODY_EVENT)


def _factory(*_args: Any, **_kwargs: Any) -> Any:
    return floor_app


def main() -> None:
    import importlib

    import tokenward.server
    from tokenward.cli import main as tokenward_main

    tokenward.server.create_app = _factory  # type: ignore[attr-defined]
    for name in ("tokenward.server.app", "tokenward.cli.serve"):  # any module-level binding too
        module = importlib.import_module(name)
        if hasattr(module, "create_app"):
            module.create_app = _factory  # type: ignore[attr-defined]
    sys.argv = ["tokenward", *sys.argv[1:]]
    tokenward_main()


if __name__ == "__main__":
    main()
