"""``tokenward demo``: every step of the lifecycle is shown, checked, and the exit code is 0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tokenward.cli import _common, app
from tokenward.cli.demo import STEPS
from tokenward.clock import FrozenClock

_SECRET_LIKE = re.compile(r"twr_[A-Za-z0-9_-]{20,}|eyJ[A-Za-z0-9_-]{8,}\.")


@pytest.fixture(autouse=True)
def _frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_common, "CLOCK", FrozenClock(1_800_000_000.0))


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, ["demo", *args])
    assert result.exit_code == 0, result.output
    return result.output


def _assert_timeline(out: str) -> None:
    # log lines another test's logging set-up may route to stdout come before the table
    table = out[out.find("one session's life") :]
    positions = [table.find(step) for step in STEPS]
    assert all(p >= 0 for p in positions), [
        s for s, p in zip(STEPS, positions, strict=True) if p < 0
    ]
    assert positions == sorted(positions)  # in lifecycle order
    assert "every step behaved" in out
    assert "demo failed" not in out
    assert not _SECRET_LIKE.search(out)  # token values are never printed


def test_demo_walks_the_whole_lifecycle_in_memory() -> None:
    out = _run()
    _assert_timeline(out)
    for event in ("issued", "refreshed", "grace_replay", "refresh_token_reuse", "revoked:sub"):
        assert event in out  # the security events each step emitted


def test_demo_on_a_temp_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    _assert_timeline(_run("--store", f"sqlite:///{db}"))
    assert db.exists()


def test_demo_store_is_throw_away_and_an_existing_one_is_refused_in_one_line(
    tmp_path: Path,
) -> None:
    db = tmp_path / "demo.db"
    _assert_timeline(_run("--store", f"sqlite:///{db}"))
    again = CliRunner().invoke(app, ["demo", "--store", f"sqlite:///{db}"])
    assert again.exit_code == 2, again.output
    assert "throw-away" in again.output and "Traceback" not in again.output
    assert "cannot decrypt" not in again.output


def test_demo_reports_a_step_that_misbehaves(monkeypatch: pytest.MonkeyPatch) -> None:
    """The demo checks what it shows: with no grace window the replay step must fail."""
    from tokenward.server import settings as settings_module

    original = settings_module.Settings.__init__

    def no_grace(self: object, **kw: object) -> None:
        kw["refresh_grace_seconds"] = 0
        original(self, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(settings_module.Settings, "__init__", no_grace)
    result = CliRunner().invoke(app, ["demo"])
    assert result.exit_code == 1
    assert "demo failed" in result.output and "grace" in result.output
