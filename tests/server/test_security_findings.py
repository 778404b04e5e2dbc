"""Regression tests for the second security review (``docs/security.md``, "Review findings",
F8 onwards). Each test is named after its finding and fails on the code before the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx

from .conftest import Server


def _stream_post(
    server: Server, path: str, body: AsyncIterator[bytes], ctype: str
) -> httpx.Response:
    """POST a body that arrives chunk by chunk (no ``Content-Length``: chunked framing)."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=server.http.app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as c:
            return await c.post(path, content=body, headers={"Content-Type": ctype})

    return server.run(go)


# -- F10: a chunked request body had no size limit ------------------------------------------------


def test_f10_chunked_body_past_the_limit_is_413_and_not_read_to_the_end(server: Server) -> None:
    """No ``Content-Length``: the body arrives chunked. Before the fix every chunk was read
    (buffered in memory) and the answer was a validation error; now the body is cut off at the
    limit (64 KiB) and the rest is never read."""
    chunks_read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(64):  # 4 MiB in 64 KiB chunks
            chunks_read += 1
            yield b"x" * 65536

    r = _stream_post(server, "/login", body(), "application/json")
    assert r.status_code == 413, r.text
    assert r.json()["error"] == "invalid_request"
    assert chunks_read < 4


def test_f10_chunked_body_within_the_limit_still_works(server: Server) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"username": "alice", '
        yield b'"password": "correct horse battery"}'

    r = _stream_post(server, "/login", body(), "application/json")
    assert r.status_code == 200, r.text


def test_f10_chunked_form_past_the_limit_is_413(server_factory: Callable[..., Server]) -> None:
    server = server_factory()

    async def body() -> AsyncIterator[bytes]:
        yield b"grant_type=password&username=alice&password="
        for _ in range(8):
            yield b"x" * 16384

    r = _stream_post(server, "/token", body(), "application/x-www-form-urlencoded")
    assert r.status_code == 413, r.text
