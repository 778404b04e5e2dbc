"""``tokenward serve --workers auto`` (a worker process per CPU core), ``TOKENWARD_WORKERS``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from typer.testing import CliRunner

from tokenward.cli import app
from tokenward.cli import serve as serve_module
from tokenward.server import settings as settings_module
from tokenward.server.settings import MAX_WORKERS, Settings, cpu_cores, parse_workers


@pytest.fixture(autouse=True)
def _no_logging_leak() -> Iterator[None]:
    yield
    structlog.reset_defaults()  # `serve` configures logging globally


@pytest.fixture
def three_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda _pid: {0, 2, 5})


def test_auto_is_the_cores_this_process_may_run_on(three_cores: None) -> None:
    assert cpu_cores() == 3  # the affinity mask (a container's CPU set), not the machine's
    assert parse_workers("auto") == 3
    assert parse_workers(" AUTO ") == 3
    assert parse_workers("4") == 4
    assert parse_workers(2) == 2
    assert parse_workers("many") == "many"  # left to the setting's validation


def test_auto_without_affinity_uses_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(settings_module.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(settings_module.os, "cpu_count", lambda: 6)
    assert cpu_cores() == 6
    monkeypatch.setattr(settings_module.os, "cpu_count", lambda: None)
    assert cpu_cores() == 1


def test_auto_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings_module.os, "sched_getaffinity", lambda _pid: set(range(200)))
    assert parse_workers("auto") == MAX_WORKERS


def test_the_setting_takes_auto_from_the_environment(
    three_cores: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENWARD_WORKERS", "auto")
    assert settings_module.load_settings().workers == 3
    assert Settings(workers="auto").workers == 3  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="workers"):
        Settings(workers="0")  # type: ignore[arg-type]


def _serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *args: str) -> tuple[Any, list[int]]:
    """``tokenward serve ARGS`` up to the point where it would start uvicorn."""
    started: list[int] = []

    async def no_preflight(_settings: Any) -> list[str]:
        return []

    class Sock:
        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", 8000)

    monkeypatch.setattr(serve_module, "preflight", no_preflight)
    monkeypatch.setattr(serve_module, "bind_socket", lambda _h, _p: Sock())
    monkeypatch.setattr(serve_module, "_export", lambda _s, _c: None)
    monkeypatch.setattr(serve_module, "_serve_one", lambda s, *_: started.append(s.workers))
    monkeypatch.setattr(serve_module, "_serve_many", lambda s, *_: started.append(s.workers))
    monkeypatch.delenv("TOKENWARD_WORKERS", raising=False)
    monkeypatch.setenv("TOKENWARD_STORE_URL", f"sqlite:///{tmp_path}/tw.db")
    before = dict(os.environ)
    try:
        result = CliRunner().invoke(app, ["serve", *args])
    finally:
        os.environ.clear()
        os.environ.update(before)
    return result, started


def test_serve_workers_auto_starts_one_per_core(
    three_cores: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, started = _serve(monkeypatch, tmp_path, "--workers", "auto")
    assert result.exit_code == 0, result.output
    assert started == [3]
    result, started = _serve(monkeypatch, tmp_path, "--workers", "2")
    assert result.exit_code == 0, result.output
    assert started == [2]
    result, started = _serve(monkeypatch, tmp_path)
    assert started == [1]  # the default stays one process


@pytest.mark.parametrize("value", ["0", "-1", "65", "several", "2.5"])
def test_serve_refuses_a_bad_workers_value_in_one_line(
    value: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result, started = _serve(monkeypatch, tmp_path, "--workers", value)
    assert result.exit_code == 2
    assert started == []
    assert "--workers" in result.output and "auto" in result.output
