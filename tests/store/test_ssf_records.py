"""Shared Signals streams and their SET queues live in the store's grant records: on every
backend a second instance (another server process, or the same one after a restart) sees the
streams, the queued SETs in order and the pushes waiting in the outbox; an acknowledged SET is
gone for both."""

from __future__ import annotations

from support.stores import StoreFactory
from tokenward.clock import FrozenClock
from tokenward.keys import KeyRing
from tokenward.server.outbox import Outbox
from tokenward.server.ssf import ACCOUNT_DISABLED, verify_set
from tokenward.server.ssf_streams import POLL, PUSH
from tokenward.server.ssf_transmitter import Transmitter
from tokenward.store import Store

NOW = 1_800_000_000.0
ISS = "https://auth.example"


def transmitter(store: Store, clock: FrozenClock, ring: KeyRing) -> Transmitter:
    outbox = Outbox(store, clock=clock, allow_private=True)
    return Transmitter(
        store, clock=clock, outbox=outbox, issuer=ISS, keyring=lambda: ring, allow_private=True
    )


async def test_streams_and_queues_are_shared_through_the_store(
    store_factory: StoreFactory,
) -> None:
    clock, ring = FrozenClock(NOW), KeyRing.generate()
    first = transmitter(await store_factory(), clock, ring)
    wanted = [ACCOUNT_DISABLED]
    poll = await first.streams.create(
        "rcv", {"delivery": {"method": POLL}, "events_requested": wanted}
    )
    push = await first.streams.create(
        "rcv",
        {
            "delivery": {"method": PUSH, "endpoint_url": "http://127.0.0.1:9/events"},
            "events_requested": wanted,
        },
    )
    for name in ("alice", "bob", "carol"):
        assert await first.publish([("user_disabled", {"sub": name})]) == 2
        clock.advance(1)
    second = transmitter(await store_factory(), clock, ring)
    assert {s.stream_id for s in await second.streams.all()} == {poll.stream_id, push.stream_id}
    sets, more = await second.take(poll.stream_id, 2)
    assert more
    claims = [verify_set(ring.public_jwks(), t) for t in sets.values()]
    assert [c["sub_id"]["sub"] for c in claims] == ["alice", "bob"]  # queue order
    assert all(c["aud"] == "rcv" for c in claims)
    pending = await second.outbox.pending()
    assert [r.data["ref"] for r in pending] == [push.stream_id] * 3
    await second.acknowledge(poll.stream_id, list(sets), {})
    left, more = await first.take(poll.stream_id, 10)
    assert not more
    assert [verify_set(ring.public_jwks(), t)["sub_id"]["sub"] for t in left.values()] == ["carol"]
    assert await first.drop_queue(push.stream_id) == 3  # a deleted stream's pushes go too
    assert await second.outbox.pending() == []
