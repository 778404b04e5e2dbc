"""The risk engine alone: each signal, its score and reason, the policy and the retention."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenward.clock import FrozenClock
from tokenward.server.risk import (
    DEFAULT_ACTIONS,
    SIGNALS,
    RiskEngine,
    RiskPolicy,
    Signal,
    parse_actions,
    ua_context,
)

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0 Mobile Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1"
)


def engine(clock: FrozenClock | None = None, **policy: object) -> RiskEngine:
    return RiskEngine(RiskPolicy(**policy), secret=b"s" * 32, clock=clock or FrozenClock())  # type: ignore[arg-type]


def test_signal_names_are_the_contract() -> None:
    assert SIGNALS == (
        "concurrent_use",
        "context_change",
        "refresh_velocity",
        "new_device",
        "credential_stuffing",
        "password_spraying",
    )
    assert set(DEFAULT_ACTIONS) == set(SIGNALS)


def test_parse_actions_reads_a_comma_list_and_names_an_unknown_action() -> None:
    assert parse_actions("flag, revoke_session,flag") == ("flag", "revoke_session")
    assert parse_actions("") == ()
    assert parse_actions("none") == ()
    with pytest.raises(ValueError, match="'logout'"):
        parse_actions("flag,logout")


def test_policy_refuses_unknown_signals_and_actions() -> None:
    with pytest.raises(ValueError, match="unknown signal"):
        RiskPolicy(actions={"geo": ("flag",)})
    with pytest.raises(ValueError, match="unknown action"):
        RiskPolicy(actions={"concurrent_use": ("explode",)})
    with pytest.raises(ValueError, match="velocity_max"):
        RiskPolicy(velocity_max=0)


def test_policy_unions_the_actions_of_every_fired_signal_in_a_fixed_order() -> None:
    policy = RiskPolicy(
        actions={
            **DEFAULT_ACTIONS,
            "concurrent_use": ("revoke_session", "flag"),
            "context_change": ("log", "flag"),
        }
    )
    d = policy.decide([Signal("concurrent_use", 1.0, "a"), Signal("context_change", 0.8, "b")], "p")
    assert d.actions == ("log", "flag", "revoke_session")
    assert d.reason == "a; b"
    assert d.score == 1.0
    assert d.event_fields()["scores"] == {"concurrent_use": 1.0, "context_change": 0.8}


def test_first_refresh_of_a_family_is_no_signal() -> None:
    d = engine().on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    assert not d
    assert d.actions == ()
    assert d.prefix == "127.0.1.0/24"


def test_same_family_from_two_prefixes_within_the_window_is_concurrent_use() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    clock.advance(5)
    d = e.on_refresh(sid="s1", address="127.0.2.2", user_agent=FIREFOX_LINUX)
    assert [s.name for s in d.signals] == ["concurrent_use"]
    assert d.signals[0].score == 1.0
    assert "two places" in d.reason and "127.0.1.0/24" in d.reason and "127.0.2.0/24" in d.reason
    assert d.actions == ("flag",)


def test_same_prefix_is_not_concurrent_use() -> None:
    e = engine()
    e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    assert not e.on_refresh(sid="s1", address="127.0.1.99", user_agent=FIREFOX_LINUX)


def test_moving_network_after_the_window_is_a_low_score_context_change_logged_only() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_refresh(sid="s1", address="192.0.2.10", user_agent=CHROME_ANDROID)
    clock.advance(900)  # the next refresh, one access-token lifetime later, on mobile data
    d = e.on_refresh(sid="s1", address="198.51.100.7", user_agent=CHROME_ANDROID)
    assert [(s.name, s.score) for s in d.signals] == [("context_change", 0.2)]
    assert d.actions == ("log",)  # the default: no session ends


def test_user_agent_family_or_platform_change_is_a_high_score_context_change() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_refresh(sid="s1", address="192.0.2.10", user_agent=CHROME_ANDROID)
    clock.advance(900)
    d = e.on_refresh(sid="s1", address="192.0.2.10", user_agent=FIREFOX_LINUX)
    assert [(s.name, s.score) for s in d.signals] == [("context_change", 0.8)]
    assert "Chrome on Android → Firefox on Linux" in d.reason


def test_network_and_device_change_merge_into_one_signal_with_both_reasons() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_refresh(sid="s1", address="192.0.2.10", user_agent=CHROME_ANDROID)
    clock.advance(900)
    d = e.on_refresh(sid="s1", address="198.51.100.7", user_agent=SAFARI_IPHONE)
    assert len(d.signals) == 1 and d.signals[0].score == 0.8
    assert "network changed" in d.reason and "device changed" in d.reason


def test_more_refreshes_than_the_lifetime_explains_is_refresh_velocity() -> None:
    clock = FrozenClock()
    e = engine(clock, velocity_max=3, velocity_window=60)
    for _ in range(3):
        assert not e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
        clock.advance(1)
    d = e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    assert [s.name for s in d.signals] == ["refresh_velocity"]
    assert "4 refreshes in 60 s" in d.reason
    clock.advance(120)  # the window passed: the count starts again
    assert not e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)


def test_family_context_is_forgotten_after_the_retention() -> None:
    clock = FrozenClock()
    e = engine(clock, retention=3600)
    e.on_refresh(sid="s1", address="192.0.2.10", user_agent=CHROME_ANDROID)
    clock.advance(3601)
    assert not e.on_refresh(sid="s1", address="198.51.100.7", user_agent=FIREFOX_LINUX)


def test_tables_are_bounded() -> None:
    e = RiskEngine(secret=b"s" * 32, max_entries=10)
    for i in range(50):
        e.on_refresh(sid=f"s{i}", address="127.0.1.2", user_agent=None)
    assert e.sizes()["families"] == 10


def test_first_sign_in_of_a_user_is_not_new_device_but_a_later_new_place_is() -> None:
    e = engine()
    assert not e.on_sign_in(sub="alice", address="192.0.2.10", device="d1")
    assert not e.on_sign_in(sub="alice", address="192.0.2.77", device="d1")
    d = e.on_sign_in(sub="alice", address="203.0.113.5", device="d2")
    assert [(s.name, s.score) for s in d.signals] == [("new_device", 0.6)]
    assert "new sign-in from 203.0.113.0/24" in d.reason
    d = e.on_sign_in(sub="alice", address="198.51.100.1", device="d1")
    assert d.signals[0].score == 0.3 and "known device" in d.reason
    d = e.on_sign_in(sub="alice", address="192.0.2.10", device="d9")
    assert d.signals[0].score == 0.3 and "new device" in d.reason


def test_stuffing_needs_many_usernames_from_one_prefix() -> None:
    e = engine(stuffing_usernames=5)
    for i in range(4):
        assert not e.on_sign_in_failure(username=f"u{i}", password=f"p{i}", address="127.0.1.2")
    # the same username again does not count twice
    assert not e.on_sign_in_failure(username="u0", password="x", address="127.0.1.3")
    # another prefix has its own count
    assert not e.on_sign_in_failure(username="u9", password="x", address="127.0.2.2")
    d = e.on_sign_in_failure(username="u4", password="p4", address="127.0.1.4")
    assert [s.name for s in d.signals] == ["credential_stuffing"]
    assert d.actions == ("flag", "block_prefix")
    assert d.prefix == "127.0.1.0/24"
    assert "5 usernames from 127.0.1.0/24" in d.reason


def test_stuffing_counts_only_inside_its_window() -> None:
    clock = FrozenClock()
    e = engine(clock, stuffing_usernames=3, stuffing_window=60)
    e.on_sign_in_failure(username="a", password="1", address="127.0.1.2")
    e.on_sign_in_failure(username="b", password="2", address="127.0.1.2")
    clock.advance(61)
    assert not e.on_sign_in_failure(username="c", password="3", address="127.0.1.2")


def test_spraying_is_one_password_against_many_usernames_from_anywhere() -> None:
    e = engine(spraying_usernames=3)
    e.on_sign_in_failure(username="a", password="Summer2026!", address="192.0.2.1")
    e.on_sign_in_failure(username="b", password="other", address="198.51.100.1")
    e.on_sign_in_failure(username="b", password="Summer2026!", address="198.51.100.1")
    d = e.on_sign_in_failure(username="c", password="Summer2026!", address="203.0.113.1")
    assert [s.name for s in d.signals] == ["password_spraying"]
    assert "3 usernames" in d.reason


def test_no_password_or_username_is_kept_in_clear() -> None:
    e = engine(spraying_usernames=100)
    e.on_sign_in_failure(username="alice", password="hunter2-secret", address="127.0.1.2")
    e.on_sign_in(sub="alice", address="127.0.1.2", device="dev")
    dump = repr(e.__dict__) + repr(e._by_password.data) + repr(e._by_prefix.data)
    dump += repr(e._users.data)
    assert "hunter2" not in dump
    assert "alice" not in dump


def test_only_the_user_agent_family_and_platform_are_kept() -> None:
    e = engine()
    e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    ctx = e._families.data["s1"]
    assert (ctx.ua_family, ctx.platform) == ("Firefox", "Linux")
    assert FIREFOX_LINUX not in repr(ctx)


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (FIREFOX_LINUX, ("Firefox", "Linux")),
        (CHROME_ANDROID, ("Chrome", "Android")),
        (SAFARI_IPHONE, ("Safari", "iOS")),
        ("python-httpx/0.28.1", ("python", "other")),
        (None, ("other", "other")),
    ],
)
def test_ua_context_reduces_a_user_agent_to_family_and_platform(
    ua: str | None, expected: tuple[str, str]
) -> None:
    assert ua_context(ua) == expected


def test_engine_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        RiskEngine(secret=b"short")


def test_risk_settings_come_from_the_risk_table_and_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tokenward.errors import ConfigurationError
    from tokenward.server.riskwire import policy_from_settings
    from tokenward.server.settings import load_settings

    toml = tmp_path / "tokenward.toml"
    toml.write_text('[risk]\nconcurrent_use = "flag, revoke_session"\nblock_seconds = "5m"\n')
    s = load_settings(toml)
    policy = policy_from_settings(s)
    assert policy.actions["concurrent_use"] == ("flag", "revoke_session")
    assert policy.actions["credential_stuffing"] == ("flag", "block_prefix")  # the default
    assert policy.block_seconds == 300
    monkeypatch.setenv("TOKENWARD_RISK_CONCURRENT_USE", "step_up")
    assert policy_from_settings(load_settings(toml)).actions["concurrent_use"] == ("step_up",)
    monkeypatch.setenv("TOKENWARD_RISK_CONCURRENT_USE", "flag,explode")
    with pytest.raises(ConfigurationError, match="TOKENWARD_RISK_CONCURRENT_USE: unknown action"):
        load_settings(toml)
    monkeypatch.delenv("TOKENWARD_RISK_CONCURRENT_USE")
    toml.write_text('[risk]\nconcurent_use = "flag"\n')
    with pytest.raises(ConfigurationError, match="did you mean 'risk_concurrent_use'"):
        load_settings(toml)


def test_notices_are_kept_per_user_newest_first_bounded_and_forgotten_after_retention() -> None:
    clock = FrozenClock()
    e = engine(clock, retention=3600)
    for i in range(12):
        e.notify_user("alice", f"n{i}")
        clock.advance(1)
    assert [text for _, text in e.notices("alice")] == [f"n{i}" for i in range(11, 1, -1)]
    assert e.notices("bob") == []
    clock.advance(3600)
    assert e.notices("alice") == []


# -- access-token use (/userinfo) as an input of concurrent_use ----------------------------------
def test_access_token_used_from_another_prefix_within_the_window_is_concurrent_use() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    clock.advance(5)
    assert not e.on_access(sid="s1", address="127.0.1.9")  # the same network
    clock.advance(5)
    d = e.on_access(sid="s1", address="127.0.2.2")
    assert [(s.name, s.score) for s in d.signals] == [("concurrent_use", 1.0)]
    assert d.reason == "used from two places: 127.0.1.0/24 and 127.0.2.0/24 5 s apart"
    assert d.actions == ("flag",)
    assert d.prefix == "127.0.2.0/24"


def test_one_pair_of_places_is_reported_once_per_window_from_access_tokens() -> None:
    clock = FrozenClock()
    e = engine(clock, concurrent_window=60)
    e.on_access(sid="s1", address="127.0.1.2")
    clock.advance(1)
    assert e.on_access(sid="s1", address="127.0.2.2")
    for address in ("127.0.1.2", "127.0.2.2", "127.0.1.2"):  # a copied token used beside
        clock.advance(1)
        assert not e.on_access(sid="s1", address=address)
    clock.advance(1)
    assert e.on_access(sid="s1", address="127.0.3.2")  # a third place is news
    clock.advance(61)
    e.on_access(sid="s1", address="127.0.1.2")
    clock.advance(1)
    assert e.on_access(sid="s1", address="127.0.3.2")  # the window passed: reported again


def test_access_token_use_then_a_refresh_elsewhere_is_concurrent_use() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    clock.advance(600)
    assert not e.on_access(sid="s1", address="127.0.1.2")
    clock.advance(30)
    d = e.on_refresh(sid="s1", address="127.0.2.2", user_agent=FIREFOX_LINUX)
    assert [s.name for s in d.signals] == ["concurrent_use"]
    assert "30 s apart" in d.reason


def test_a_user_moving_between_access_token_uses_outside_the_window_is_no_signal() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_refresh(sid="s1", address="192.0.2.10", user_agent=CHROME_ANDROID)
    clock.advance(300)  # on the train: mobile data
    assert not e.on_access(sid="s1", address="198.51.100.7")
    clock.advance(600)  # the next refresh, on the same network: only the move is seen
    d = e.on_refresh(sid="s1", address="198.51.100.7", user_agent=CHROME_ANDROID)
    assert [(s.name, s.score) for s in d.signals] == [("context_change", 0.2)]
    assert d.actions == ("log",)


def test_access_tokens_of_a_family_a_decision_ended_are_not_judged_again() -> None:
    clock = FrozenClock()
    e = engine(clock)
    e.on_access(sid="s1", address="127.0.1.2")
    e.forget_family("s1")  # e.g. step_up: its access tokens live on
    for address in ("127.0.2.2", "127.0.1.2", "127.0.3.2"):
        clock.advance(1)
        assert not e.on_access(sid="s1", address=address)


def test_purge_drops_everything_past_its_keeping_time() -> None:
    clock = FrozenClock()
    e = engine(clock, retention=3600, stuffing_window=60, spraying_window=120)
    e.on_refresh(sid="s1", address="127.0.1.2", user_agent=FIREFOX_LINUX)
    e.on_sign_in(sub="alice", address="127.0.1.2", device="d1")
    e.on_sign_in_failure(username="bob", password="guess", address="127.0.3.2")
    e.notify_user("alice", "new sign-in from 127.0.1.0/24")
    full = {"families": 1, "users": 1, "prefixes": 1, "passwords": 1, "notices": 1}
    assert e.sizes() == full
    clock.advance(61)
    assert e.purge() == 1  # the stuffing window passed
    assert e.sizes() == {**full, "prefixes": 0}
    clock.advance(60)
    assert e.purge() == 1  # the spraying window passed
    clock.advance(3600)
    assert e.purge() == 3  # the retention passed
    assert set(e.sizes().values()) == {0}
