"""The revocation feed's event types, shared by the store, the server and the guard.

The feed is an ordered list of :class:`RevocationEvent`; ``seq`` is its cursor. A store
appends events, the server serves them (``/revocations``), and every revocation mirror
(the server's and the guard's) folds them into a denylist.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["RevocationEvent", "RevocationKind"]


class RevocationKind(StrEnum):
    JTI = "jti"  # one access token, until its exp
    SID = "sid"  # one session (family), until the longest access token it issued expires
    SUB = "sub"  # a subject: every token with iat < not_before (the event's ``at``)


@dataclass(frozen=True, slots=True)
class RevocationEvent:
    """One entry of the ordered revocation feed. ``seq`` is the cursor (strictly increasing)."""

    seq: int
    kind: RevocationKind
    value: str
    until: float  # the event (and its denylist entry) may be forgotten after this time
    at: float  # when it was revoked; for SUB this is the "not before" watermark

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind.value,
            "value": self.value,
            "until": self.until,
            "at": self.at,
        }
