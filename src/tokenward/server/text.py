"""The one rule for text that arrives over HTTP, applied at the edge: no NUL character and no
lone UTF-16 surrogate in any field of any request (JSON bodies, forms, query strings).

Neither can be stored (PostgreSQL refuses NUL in ``text``; a lone surrogate cannot be encoded
as UTF-8) and no identifier, name, scope, password or token has one, so a request carrying one
is refused with 400 ``invalid_request`` naming the field, before any route logic or store call.

* :class:`RequestModel` is the base of every JSON request body (it checks every string,
  nested in lists and dicts too);
* :func:`check_text` is called by the form reader for each parameter;
* the request middleware refuses ``%00`` in the query string and a NUL in the path.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

__all__ = ["RequestModel", "bad_text", "check_text"]

_BAD = re.compile("[\x00\ud800-\udfff]")


def bad_text(value: str) -> str | None:
    """Why ``value`` cannot be accepted, or ``None``."""
    if value.isascii():  # no surrogate can be in it: one memchr for NUL, not a regex scan
        return "a NUL character" if "\x00" in value else None
    m = _BAD.search(value)
    if m is None:
        return None
    return "a NUL character" if m.group() == "\x00" else "a lone surrogate"


def check_text(field: str, value: str) -> None:
    """Raise ``InvalidRequest`` when ``value`` (of ``field``) cannot be accepted."""
    why = bad_text(value)
    if why is not None:
        from ..errors import InvalidRequest

        raise InvalidRequest(f"{field!r} contains {why}")


def _walk(path: str, value: Any) -> None:
    if isinstance(value, str):
        why = bad_text(value)
        if why is not None:
            raise ValueError(f"{path} contains {why}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _walk(f"{path}.{k}" if path else str(k), k)
            _walk(f"{path}.{k}" if path else str(k), v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _walk(f"{path}[{i}]", v)


class RequestModel(BaseModel):
    """Base of the JSON request bodies: unknown fields are refused, and so is any string with
    a NUL or a lone surrogate (a 400 naming the field, through the validation handler)."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _text(cls, data: Any) -> Any:
        _walk("", data)
        return data
