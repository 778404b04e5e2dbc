"""Client addresses: who is calling, behind which proxies, and the address *prefix* used to
group callers (the login limits, and anything else that reasons about "the same network").

* :func:`parse_trusted_proxies` reads ``TOKENWARD_TRUSTED_PROXIES`` (comma-separated IPs or
  CIDRs; empty: no proxy is trusted and ``X-Forwarded-For`` is ignored).
* :func:`client_address` is the caller: the socket peer, or, when the peer is a trusted proxy,
  the rightmost ``X-Forwarded-For`` entry that is not itself a trusted proxy (entries to the
  left of it were written by the client and prove nothing). An entry that does not parse as
  an IP address counts as untrusted, so the walk stops there; since only parsed addresses are
  ever returned, the caller is then the hop that handed that entry over. The result is always
  a canonical address string (or ``None`` when the peer is not an IP address, e.g. a Unix
  socket), never a header's text.
* :func:`address_prefix` maps an address to its network (``/24`` for IPv4 and ``/48`` for IPv6
  by default, ``TOKENWARD_ADDRESS_PREFIX_V4``/``_V6``): one home or office network, one mobile
  carrier's NAT pool, one cloud tenant's range.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from functools import lru_cache

__all__ = [
    "Network",
    "address_prefix",
    "client_address",
    "parse_address",
    "parse_trusted_proxies",
]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_trusted_proxies(text: str) -> tuple[Network, ...]:
    """``"10.0.0.1, 10.1.0.0/16, fd00::/8"`` → networks; raises ``ValueError`` naming the
    entry that is neither an IP address nor a CIDR (host bits set are refused too)."""
    out: list[Network] = []
    for part in text.split(","):
        entry = part.strip()
        if not entry:
            continue
        try:
            out.append(ipaddress.ip_network(entry, strict=True))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
    return tuple(out)


@lru_cache(maxsize=4096)  # every request parses its peer; the same few peers come back
def parse_address(text: str | None) -> Address | None:
    """An IP address, or ``None`` for anything else (a hostname, ``unknown``, a port suffix,
    an empty string). IPv4-mapped IPv6 addresses become the IPv4 address."""
    if not text:
        return None
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


@lru_cache(maxsize=4096)  # str() of an address is computed anew on every call
def _canonical(text: str | None) -> str | None:
    """``text`` as :func:`parse_address` reads it, written back (``None``: not an address)."""
    addr = parse_address(text)
    return str(addr) if addr is not None else None


def _trusted(addr: Address, proxies: Sequence[Network]) -> bool:
    return any(addr.version == net.version and addr in net for net in proxies)


def client_address(
    peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[Network]
) -> str | None:
    """The caller's address (see the module docstring). ``forwarded_for`` holds the values of
    every ``X-Forwarded-For`` header in order; they are read only when ``peer`` is trusted."""
    if not proxies:
        return _canonical(peer)
    current = parse_address(peer)
    if current is None or not _trusted(current, proxies):
        return str(current) if current is not None else None
    hops = [h for value in forwarded_for for h in value.split(",")]
    for hop in reversed(hops):
        addr = parse_address(hop)
        if addr is None:  # unparsable: untrusted, and not an address to store
            break
        current = addr
        if not _trusted(addr, proxies):
            break
    return str(current)


@lru_cache(maxsize=4096)
def address_prefix(address: str, v4: int = 24, v6: int = 48) -> str:
    """The network of ``address`` as a CIDR string (``203.0.113.7`` → ``203.0.113.0/24``);
    a string that is not an address is returned as it is."""
    addr = parse_address(address)
    if addr is None:
        return address
    bits = v4 if addr.version == 4 else v6
    return str(ipaddress.ip_network(f"{addr}/{bits}", strict=False))
