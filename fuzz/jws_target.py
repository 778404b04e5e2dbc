"""Coverage-guided fuzzing (atheris / libFuzzer) of the strict JWS parser and verifier.

    .venv/bin/python fuzz/jws_target.py -atheris_runs=20000000    # or: make fuzz
    .venv/bin/python fuzz/jws_target.py -max_total_time=600       # libFuzzer's stats at the end

The seed corpus is generated at run time from the repository's own vectors: every compact JWS
of the Wycheproof ``json_web_signature_test.json`` and RFC 7520 ``jws_rfc7520.json`` files in
``tests/vectors`` plus fresh valid tokens of each algorithm we sign with. Each
input is tried as latin-1 text and as UTF-8 text against a :class:`tokenward.Verifier` that
knows ES256, RS256, EdDSA and HS256 keys (and the RFC 7520 keys when they import). The only
acceptable failures are ``tokenward.errors.TokenwardError`` subclasses, and the only
acceptable successes are the very tokens we signed: anything else raises and libFuzzer reports
it as a crash (non-zero exit). On exit a summary line is
printed: ``fuzz-summary inputs=N accepted=A rejected=R other=0 by_class={...}``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["tokenward"]):
    from tokenward import FrozenClock, Issuer, KeyRing, Verifier
    from tokenward.errors import TokenwardError
    from tokenward.keys import SigningKey, key_from_jwk

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"
ISS, AUD = "https://issuer.example", "api"
CLOCK = FrozenClock(1_800_000_000.0)
STATS: Counter[str] = Counter()


def _keys_and_tokens() -> tuple[list[SigningKey], list[str]]:
    keys: list[SigningKey] = []
    tokens: list[str] = []
    for alg in ("ES256", "RS256", "EdDSA", "HS256"):
        ring = KeyRing.generate(alg, clock=CLOCK, with_next=False)
        keys.extend(ring)
        issuer = Issuer(ring, issuer=ISS, audience=AUD, clock=CLOCK)
        tokens.append(issuer.issue_access_token(sub="alice", scope="read", sid="s", client_id="c"))
    keydir = VECTORS / "rfc7520" / "keys"
    for name in ("RFC7520-RSA-public.json", "RFC7520-EC-public.json"):
        # the EC key is P-521, outside our profile: it may be refused at import
        with contextlib.suppress(ValueError, TokenwardError):
            keys.append(key_from_jwk(json.loads((keydir / name).read_text())))
    return keys, tokens


def seed_corpus(tokens: list[str]) -> list[str]:
    """Seeds from the repository's vectors; a missing file is an error, never a smaller corpus."""
    seeds = list(tokens)
    data = json.loads((VECTORS / "wycheproof" / "json_web_signature_test.json").read_text())
    seeds += [t["jws"] for g in data["testGroups"] for t in g["tests"] if isinstance(t["jws"], str)]
    rfc = json.loads((VECTORS / "rfc7520" / "jws_rfc7520.json").read_text())
    seeds += [t["compact"] for t in rfc["tests"] if t.get("compact")]
    return seeds


KEYS, TOKENS = _keys_and_tokens()
VERIFIER = Verifier(KEYS, issuer=ISS, audience=AUD, clock=CLOCK, cache_size=0)
VALID = frozenset(TOKENS)


def test_one_input(data: bytes) -> None:
    STATS["inputs"] += 1
    n = STATS["inputs"]
    if n >= 1 << 20 and n & (n - 1) == 0:  # progress at every power of two (libFuzzer's
        _summary()  # time limit ends the process without running Python's atexit)
    for text in (data.decode("latin-1"), data.decode("utf-8", "surrogateescape")):
        try:
            VERIFIER.verify(text)
        except TokenwardError as exc:
            STATS["rejected"] += 1
            STATS["class:" + type(exc).__name__] += 1
        else:
            STATS["accepted"] += 1
            # only a token we signed, character for character, may ever verify
            if text not in VALID:
                raise AssertionError("a token we did not sign verified")


def _summary() -> None:
    by_class = {k[6:]: v for k, v in sorted(STATS.items()) if k.startswith("class:")}
    print(
        f"fuzz-summary inputs={STATS['inputs']} accepted={STATS['accepted']} "
        f"rejected={STATS['rejected']} other=0 by_class={by_class}",
        file=sys.stderr,
        flush=True,
    )


def main(argv: list[str]) -> None:
    args = [a for a in argv[1:] if not a.startswith("--corpus=")]
    corpus = tempfile.mkdtemp(prefix="tokenward-jws-corpus-")
    seeds = seed_corpus(TOKENS)
    for i, s in enumerate(seeds):
        Path(corpus, f"seed-{i:04d}").write_bytes(s.encode("utf-8", "surrogatepass"))
    print(f"fuzz-seeds {len(seeds)} in {corpus}", file=sys.stderr, flush=True)
    atexit.register(_summary)
    atheris.Setup([argv[0], *args, corpus], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
