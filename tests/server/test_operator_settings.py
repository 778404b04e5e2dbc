"""Settings as an operator writes them: TOML typos named as TOML keys, durations with units."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenward.errors import ConfigurationError
from tokenward.server.settings import load_settings


def test_toml_typo_is_reported_as_its_toml_key(tmp_path: Path) -> None:
    toml = tmp_path / "tokenward.toml"
    toml.write_text("acess_token_ttl = 600\n")
    with pytest.raises(ConfigurationError) as ei:
        load_settings(toml)
    msg = ei.value.description
    assert msg.startswith(f"{toml}: unknown setting 'acess_token_ttl'"), msg
    assert "did you mean 'access_token_ttl'" in msg and "TOKENWARD_" not in msg
    toml.write_text('access_token_ttl = "soon"\n')
    with pytest.raises(ConfigurationError) as ei:
        load_settings(toml)
    assert ei.value.description.startswith(f"{toml}: access_token_ttl: ")


def test_duration_settings_accept_15m_and_7d(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    toml = tmp_path / "tokenward.toml"
    toml.write_text('access_token_ttl = "15m"\nrefresh_idle_ttl = "7d"\nleeway = "30s"\n')
    s = load_settings(toml)
    assert (s.access_token_ttl, s.refresh_idle_ttl, s.leeway) == (900, 604800, 30)
    monkeypatch.setenv("TOKENWARD_REFRESH_ABSOLUTE_TTL", "2w")
    monkeypatch.setenv("TOKENWARD_STORE_TIMEOUT", "1500ms")
    s = load_settings()
    assert s.refresh_absolute_ttl == 14 * 86400 and s.store_timeout == 1.5
    monkeypatch.setenv("TOKENWARD_ACCESS_TOKEN_TTL", "15 minutes please")
    with pytest.raises(ConfigurationError, match=r"TOKENWARD_ACCESS_TOKEN_TTL: .*not a duration"):
        load_settings()


def test_sqlite_one_slash_typo_is_a_one_line_setting_error() -> None:
    with pytest.raises(ConfigurationError, match=r"TOKENWARD_STORE_URL: .sqlite:/x\.db. is not"):
        load_settings(store_url="sqlite:/x.db")
