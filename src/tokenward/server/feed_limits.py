"""Caps on concurrent revocation-feed streams (SSE streams and long-polls) in one process:
``feed_max_streams`` in all and ``feed_max_streams_per_client`` per client. Beyond either the
request is answered 429 (``invalid_request``) with ``Retry-After``, before any store read."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import RateLimited

__all__ = ["RETRY_AFTER", "StreamSlots"]

RETRY_AFTER = 5  # seconds a refused subscriber should wait


class StreamSlots:
    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open = 0
        self._by_client: dict[str, int] = {}

    def acquire(self, client: str) -> None:
        """Take a slot for ``client`` or raise ``RateLimited`` (429)."""
        if self.open >= self.total:
            raise RateLimited("too many revocation feed streams", retry_after=RETRY_AFTER)
        if self._by_client.get(client, 0) >= self.per_client:
            raise RateLimited(
                "too many revocation feed streams for this client", retry_after=RETRY_AFTER
            )
        self.open += 1
        self._by_client[client] = self._by_client.get(client, 0) + 1

    def release(self, client: str) -> None:
        self.open -= 1
        n = self._by_client.get(client, 0) - 1
        if n > 0:
            self._by_client[client] = n
        else:
            self._by_client.pop(client, None)

    @contextmanager
    def slot(self, client: str) -> Iterator[None]:
        self.acquire(client)
        try:
            yield
        finally:
            self.release(client)
