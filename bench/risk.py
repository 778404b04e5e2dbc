"""The risk engine: its cost per refresh, and the false positives of the default policy.

* ``overhead``: one server runtime (memory store, in process) with the engine and one
  without, same run, same machine: ``--refreshes`` refreshes each, interleaved in rounds so
  drift hits both; reported per-refresh time (median of the rounds) and the ratio, plus the
  engine call alone (``RiskEngine.on_refresh``).
* ``access``: the ``/userinfo`` hook (``riskwire.access_used``: the caller's prefix checked
  against the family's last place, in memory) per call, with the engine on and off, beside
  the peer every ``/userinfo`` request already pays — verifying its access token
  (``Verifier.verify``, ES256) — same run; plus ``RiskEngine.on_access`` alone.
* ``day``: a simulated day of normal traffic through the engine with the *default* policy
  (frozen clock): ``--users`` users, each with a phone (refreshing every 15 minutes while in
  use, moving between home Wi-Fi, mobile data on a few carrier prefixes and office Wi-Fi; a
  retry right after a network switch now and then; its app calls ``/userinfo`` after half
  of its refreshes, now and then right across a switch) and a laptop (home/office), one or two
  sign-ins a day, a few mistyped passwords. Reported: how many decisions each signal made,
  and how many carried an action that ends a session or blocks (the false positives that
  matter: the defaults must make none).

Run: ``.venv/bin/python bench/risk.py`` (about 20 s). Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections import Counter

from tokenward.clock import FrozenClock
from tokenward.server.risk import RiskEngine, RiskPolicy
from tokenward.server.riskwire import access_used, request_context
from tokenward.server.runtime import Runtime
from tokenward.server.settings import Settings
from tokenward.store.memory import MemoryStore

UA_PHONE = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36"
UA_LAPTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
ENDING = {"step_up", "revoke_session", "revoke_subject", "block_prefix"}


async def _runtime(enabled: bool) -> Runtime:
    settings = Settings(
        store_url="memory://", risk_enabled=enabled, password_memory_cost=8, password_time_cost=1
    )
    rt = Runtime(settings, store=MemoryStore())
    await rt.start()
    return rt


async def overhead(refreshes: int, rounds: int) -> None:
    rts = {True: await _runtime(True), False: await _runtime(False)}
    # one refresh per family per round, as real clients (once per access-token lifetime)
    tokens: dict[bool, list[str]] = {True: [], False: []}
    for on, rt in rts.items():
        await rt.users.create("bench", "a bench password 1")
        for _ in range(refreshes):
            pair = await rt.sessions.start(sub="bench", client_id="tokenward-console", scope="")
            tokens[on].append(pair.refresh_token)
    per: dict[bool, list[float]] = {True: [], False: []}
    token = request_context.set(("192.0.2.10", UA_PHONE))
    try:
        for r in range(rounds):
            for on in (False, True) if r % 2 else (True, False):  # alternate who goes first
                rt = rts[on]
                t0 = time.perf_counter()
                for i in range(refreshes):
                    pair = await rt.sessions.refresh(tokens[on][i], client_id="tokenward-console")
                    tokens[on][i] = pair.refresh_token
                per[on].append((time.perf_counter() - t0) / refreshes)
    finally:
        request_context.reset(token)
    for rt in rts.values():
        await rt.stop()
    t_off, t_on = statistics.median(per[False]), statistics.median(per[True])
    engine = RiskEngine(RiskPolicy(velocity_max=10**9), secret=b"k" * 32)
    n = 50_000
    t0 = time.perf_counter()
    for i in range(n):
        engine.on_refresh(sid=f"s{i % 1000}", address="192.0.2.10", user_agent=UA_PHONE)
    call = (time.perf_counter() - t0) / n
    print("## Refresh overhead (memory store, in process, same run)\n")
    print("| engine | per refresh (median of rounds) |")
    print("|---|---|")
    print(f"| off | {t_off * 1e6:.1f} µs |")
    print(f"| on | {t_on * 1e6:.1f} µs |")
    print(
        f"\nratio on/off: **{t_on / t_off:.3f}** ({(t_on - t_off) * 1e6:+.1f} µs per refresh); "
        f"`RiskEngine.on_refresh` alone: {call * 1e6:.2f} µs "
        f"({rounds} rounds × {refreshes} families, one refresh each)\n"
    )


async def access(calls: int, rounds: int) -> None:
    rts = {True: await _runtime(True), False: await _runtime(False)}
    claims = {}
    for on, rt in rts.items():
        await rt.users.create("bench", "a bench password 1")
        pair = await rt.sessions.start(sub="bench", client_id="tokenward-console", scope="")
        claims[on] = rt.verifier.verify(pair.access_token)
    token = pair.access_token  # the engine-off runtime's, verified by that runtime
    per: dict[str, list[float]] = {"on": [], "off": [], "verify": []}
    for _ in range(rounds):
        for on in (True, False):
            rt, c = rts[on], claims[on]
            t0 = time.perf_counter()
            for _ in range(calls):
                await access_used(rt, c, "192.0.2.10")
            per["on" if on else "off"].append((time.perf_counter() - t0) / calls)
        t0 = time.perf_counter()
        for _ in range(calls):
            rts[False].verifier.verify(token)
        per["verify"].append((time.perf_counter() - t0) / calls)
    for rt in rts.values():
        await rt.stop()
    engine = RiskEngine(secret=b"k" * 32)
    t0 = time.perf_counter()
    for i in range(calls):
        engine.on_access(sid=f"s{i % 1000}", address="192.0.2.10")
    alone = (time.perf_counter() - t0) / calls
    on, off, verify = (statistics.median(per[k]) for k in ("on", "off", "verify"))
    print("## The /userinfo hook (in process, same run)\n")
    print("| call | per call (median of rounds) |")
    print("|---|---|")
    print(f"| `access_used`, engine on | {on * 1e6:.2f} µs |")
    print(f"| `access_used`, engine off | {off * 1e6:.2f} µs |")
    print(f"| `RiskEngine.on_access` alone (1000 families) | {alone * 1e6:.2f} µs |")
    print(f"| peer: `Verifier.verify` of the access token | {verify * 1e6:.2f} µs |")
    print(
        f"\nhook (engine on) / token verification: **{on / verify:.3f}** "
        f"({rounds} rounds × {calls} calls)\n"
    )


def day(users: int, seed: int) -> None:
    rnd = random.Random(seed)
    clock = FrozenClock(1_800_000_000.0)
    engine = RiskEngine(secret=b"k" * 32, clock=clock)
    home = [f"198.51.{i % 250}.{1 + i % 200}" for i in range(users)]
    office = [f"203.0.{113 + i % 5}.{1 + i % 250}" for i in range(users)]
    carriers = ["100.64.0.0", "100.65.0.0", "100.66.0.0", "100.67.0.0"]
    events: list[tuple[float, int, str]] = []  # (time, user, what)
    for u in range(users):
        start = 6 * 3600 + rnd.uniform(0, 3 * 3600)
        for step in range(int(start), 23 * 3600, 900):  # the phone refreshes every 15 minutes
            events.append((step + rnd.uniform(0, 30), u, "phone"))
        for step in range(9 * 3600, 18 * 3600, 900):  # the laptop at work
            events.append((step + rnd.uniform(0, 30), u, "laptop"))
        events.append((start - 60, u, "signin"))
        events.append((9 * 3600 - 60, u, "signin"))
        for _ in range(rnd.randint(0, 2)):
            events.append((rnd.uniform(7 * 3600, 22 * 3600), u, "typo"))
    events.sort()
    signals: Counter[str] = Counter()
    ending: Counter[str] = Counter()
    decisions = refreshes = accesses = 0

    def place(u: int, t: float) -> str:
        hour = t / 3600
        if 9 <= hour < 18:
            return office[u] if rnd.random() < 0.7 else _carrier(rnd, carriers)
        return home[u] if rnd.random() < 0.6 else _carrier(rnd, carriers)

    for t, u, what in events:
        clock.set(1_800_000_000.0 + t)
        if what == "signin":
            d = engine.on_sign_in(sub=f"user{u}", address=place(u, t), device=f"phone{u}")
        elif what == "typo":
            d = engine.on_sign_in_failure(
                username=f"user{u}", password=f"typo{rnd.random()}", address=place(u, t)
            )
        else:
            refreshes += 1
            address = place(u, t) if what == "phone" else office[u]
            d = engine.on_refresh(
                sid=f"{what}{u}",
                address=address,
                user_agent=UA_PHONE if what == "phone" else UA_LAPTOP,
            )
            if what == "phone" and rnd.random() < 0.5:  # the app reads /userinfo
                clock.set(1_800_000_000.0 + t + rnd.uniform(1, 60))
                # from where it refreshed, or (2 %) right after a switch to mobile data
                there = _carrier(rnd, carriers) if rnd.random() < 0.02 else address
                d3 = engine.on_access(sid=f"phone{u}", address=there)
                accesses += 1
                for s in d3.signals:
                    signals[f"{s.name} (at /userinfo)"] += 1
                if set(d3.actions) & ENDING:
                    ending[",".join(d3.actions)] += 1
                decisions += bool(d3)
            if what == "phone" and rnd.random() < 0.02:  # a retry right after a switch
                clock.set(1_800_000_000.0 + t + 5)
                refreshes += 1
                d2 = engine.on_refresh(
                    sid=f"phone{u}", address=_carrier(rnd, carriers), user_agent=UA_PHONE
                )
                for s in d2.signals:
                    signals[s.name] += 1
                if set(d2.actions) & ENDING:
                    ending[",".join(d2.actions)] += 1
                decisions += bool(d2)
        for s in d.signals:
            signals[s.name] += 1
        if set(d.actions) & ENDING:
            ending[",".join(d.actions)] += 1
        decisions += bool(d)
    print(
        f"## A simulated day, default policy ({users} users, {refreshes} refreshes, "
        f"{accesses} /userinfo calls)\n"
    )
    print("| signal | decisions |")
    print("|---|---|")
    for name, n in sorted(signals.items()):
        print(f"| {name} | {n} |")
    print(
        f"\ndecisions with any signal: {decisions}; decisions that end a session or block: "
        f"**{sum(ending.values())}** {dict(ending) or ''}\n"
    )


def _carrier(rnd: random.Random, carriers: list[str]) -> str:
    base = rnd.choice(carriers).rsplit(".", 2)[0]
    return f"{base}.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--refreshes", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--users", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--calls", type=int, default=20_000)
    ap.add_argument("--only", choices=("overhead", "access", "day"))
    args = ap.parse_args()
    if args.only in (None, "overhead"):
        asyncio.run(overhead(args.refreshes, args.rounds))
    if args.only in (None, "access"):
        asyncio.run(access(args.calls, args.rounds))
    if args.only in (None, "day"):
        day(args.users, args.seed)


if __name__ == "__main__":
    main()
