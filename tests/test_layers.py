"""The package shape: the layer rules hold, and the library stays light.

The import-linter contracts in ``pyproject.toml`` are the executable description of the
layers (core, store, guard, server, CLI); this test runs them so that ``make test`` fails
when a module crosses a layer, not only ``make lint``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the server extra's packages (and the CLI's): none may load with the library or the guard
SERVER_ONLY = (
    "sqlalchemy",
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic_settings",
    "argon2",
    "alembic",
    "limits",
    "prometheus_client",
    "typer",
    "rich",
    "structlog",
    "uvicorn",
)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _blocking(modules: tuple[str, ...]) -> str:
    """A prelude making ``modules`` unimportable, as in an install without the extras."""
    return f"""
    import sys
    from importlib.abc import MetaPathFinder

    BLOCKED = {set(modules)!r}

    class Block(MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
            return None

    sys.meta_path.insert(0, Block())
    """


def test_import_linter_contracts_are_kept() -> None:
    lint_imports = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    r = subprocess.run(
        [lint_imports, "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout


def test_library_and_guard_import_without_the_server_extra() -> None:
    """``import tokenward, tokenward.guard`` works with every server-only package missing
    and a memory-store session manager needs none of them either."""
    r = _run(
        _blocking(SERVER_ONLY)
        + """
    import tokenward, tokenward.guard
    from tokenward import Verifier, SessionManager, FrozenClock, TokenPair
    from tokenward.store.memory import MemoryStore
    print(sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED))
    """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_importing_the_guard_loads_no_store_and_no_server_package() -> None:
    heavy = set(SERVER_ONLY) - {"rich"}  # httpx imports rich for its own CLI when present
    r = _run(
        f"""
    import sys
    import tokenward.guard
    print(sorted(m for m in sys.modules if m.startswith(("tokenward.store", "tokenward.server"))))
    print(sorted(m for m in sys.modules if m.partition(".")[0] in {heavy!r}))
    """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["[]", "[]"]


def test_library_prints_nothing_unless_the_application_configures_logging() -> None:
    r = _run(
        """
    from tokenward._logging import get_logger
    get_logger("tokenward.guard.jwks").warning("jwks_fetch_failed", url="https://x", error="e")
    get_logger("tokenward.events").info("issued", sid="s")
    """
    )
    assert r.returncode == 0
    assert r.stdout == "" and r.stderr == ""


def test_cli_without_the_server_extra_names_what_to_install() -> None:
    r = _run(
        _blocking(("typer", "rich", "fastapi", "sqlalchemy", "pydantic", "structlog"))
        + """
    sys.argv = ["tokenward", "user", "list"]
    from tokenward.cli import main
    main()
    """
    )
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip() == (
        "tokenward: the command line needs the server extra: pip install 'tokenward[server]'"
    )
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("module", ["tokenward.server.users", "tokenward.server.stores"])
def test_server_helpers_do_not_import_the_web_framework(module: str) -> None:
    """``tokenward user list`` opens the store and the user service, not FastAPI."""
    r = _run(
        f"""
    import sys, {module}
    print(sorted(m for m in ("fastapi", "starlette", "uvicorn") if m in sys.modules))
    """
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def _project() -> dict[str, Any]:
    import tomllib

    with (ROOT / "pyproject.toml").open("rb") as f:
        project: dict[str, Any] = tomllib.load(f)["project"]
    return project


def _names(specs: list[str]) -> set[str]:
    import re

    return {re.split(r"[\[<>=;! ]", s, maxsplit=1)[0].lower() for s in specs}


def test_core_dependencies_are_exactly_the_four() -> None:
    assert _names(_project()["dependencies"]) == {"cryptography", "joserfc", "orjson", "httpx"}


def test_each_framework_extra_brings_only_its_framework() -> None:
    extras = _project()["optional-dependencies"]
    assert _names(extras["flask"]) == {"flask"}
    assert _names(extras["django"]) == {"django", "djangorestframework"}
    assert _names(extras["fastapi"]) == {"fastapi"}
    server = _names(extras["server"])
    assert {"fastapi", "sqlalchemy", "typer", "structlog"} <= server
    assert not server & {"flask", "django", "djangorestframework", "redis", "psycopg"}


def test_dev_installs_everything_the_tests_need() -> None:
    extras = _project()["optional-dependencies"]
    assert "tokenward[all]" in extras["dev"]
    assert all(name in extras["all"][0] for name in ("server", "redis", "postgres", "flask"))
    assert "import-linter" in _names(extras["dev"])
