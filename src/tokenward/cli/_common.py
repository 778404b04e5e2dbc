"""Shared helpers of the CLI sub-apps: error handling, durations, the KEK, key files, time."""

from __future__ import annotations

import base64
import functools
import os
import re
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console

from ..clock import Clock, system_clock
from ..errors import TokenwardError
from ..keys import KeyRing
from ..server.settings import DEPRECATED_KEK_ENV, KEK_ENV, decode_kek, warn_deprecated_kek

__all__ = [
    "CLOCK",
    "KEK_ENV",
    "as_json_text",
    "cli_errors",
    "err_console",
    "fail",
    "format_ago",
    "format_ts",
    "get_clock",
    "load_ring",
    "out_console",
    "parse_duration",
    "read_kek",
    "read_kek_file_text",
]

out_console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

#: The CLI's clock; tests replace it with a ``FrozenClock`` (``_common.CLOCK = ...``).
CLOCK: Clock = system_clock

P = ParamSpec("P")
R = TypeVar("R")

_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def get_clock() -> Clock:
    return CLOCK


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    err_console.print(f"[bold red]error:[/] {message}", markup=True)
    return typer.Exit(code)


def cli_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn tokenward, file and value errors into a one-line message and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except TokenwardError as exc:
            raise fail(exc.description) from None
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            raise fail(f"{exc.strerror or exc}{where}") from None
        except ValueError as exc:
            raise fail(str(exc)) from None

    return wrapper


def parse_duration(text: str) -> int:
    """``90s``, ``15m``, ``1h``, ``30d`` or plain seconds → seconds (> 0)."""
    m = _DURATION.match(text or "")
    if not m:
        raise typer.BadParameter(f"{text!r} is not a duration like 90s, 15m, 1h or 30d")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise typer.BadParameter("a duration must be positive")
    return seconds


def read_kek(kek_file: Path | None) -> bytes | None:
    """The key-encryption key from ``--kek-file`` or else ``TOKENWARD_KEY_ENCRYPTION_KEY``
    (base64url, 32 B; the old ``TOKENWARD_KEK`` is accepted with a deprecation warning)."""
    if kek_file is not None:
        raw = kek_file.read_bytes()
        mode = kek_file.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            err_console.print(
                f"warning: KEK file {kek_file} is readable by others; chmod 600 it",
                markup=False,
            )
        if len(raw) == 32:  # raw key bytes; otherwise base64url text
            return raw
        try:
            return decode_kek(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ValueError(f"KEK file {kek_file}: {exc}") from None
    name = KEK_ENV
    env = os.environ.get(KEK_ENV)
    if not env and os.environ.get(DEPRECATED_KEK_ENV):
        name, env = DEPRECATED_KEK_ENV, os.environ[DEPRECATED_KEK_ENV]
        warn_deprecated_kek()
    if env:
        try:
            return decode_kek(env)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return None


def read_kek_file_text(kek_file: Path) -> str:
    """``--kek-file`` as the base64url text of the key (for the settings)."""
    kek = read_kek(kek_file)
    assert kek is not None
    return base64.urlsafe_b64encode(kek).decode().rstrip("=")


def load_ring(path: Path, kek_file: Path | None) -> KeyRing:
    return KeyRing.load(path, kek=read_kek(kek_file), clock=CLOCK)


def format_ts(ts: float | None) -> str:
    if ts is None:
        return "-"
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def _span(seconds: float) -> str:
    s = int(abs(seconds))
    if s < 90:
        return f"{s} s"
    if s < 90 * 60:
        return f"{round(s / 60)} min"
    if s < 36 * 3600:
        return f"{round(s / 3600)} h"
    return f"{round(s / 86400)} days"


def format_ago(ts: float, now: float, *, future: str, past: str) -> str:
    """``expires in 14 min`` / ``expired 3 min ago`` style phrases."""
    delta = ts - now
    return f"{future} in {_span(delta)}" if delta >= 0 else f"{past} {_span(delta)} ago"


def as_json_text(obj: Any) -> str:
    import orjson

    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
