"""Settings: defaults, TOML file, DNSIEVE_* variables, validation messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from dnsieve.config import ConfigError, load_settings, settings_as_toml


def test_defaults_need_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(env={})
    assert s.ingest.format == "auto"
    assert s.domains.private_suffixes is True
    assert s.lake.path.name == "lake"


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "dnsieve.toml"
    f.write_text('[lake]\npath = "/data/lake"\nrows_per_file = 2000\n[ingest]\nbatch_size = 1024\n')
    s = load_settings(
        f, env={"DNSIEVE_LAKE__ROWS_PER_FILE": "3000"}, overrides={"ingest": {"batch_size": 2048}}
    )
    assert s.lake.path == Path("/data/lake")
    assert s.lake.rows_per_file == 3000
    assert s.ingest.batch_size == 2048


def test_config_env_var_points_at_file(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    f.write_text("[domains]\nprivate_suffixes = false\n")
    s = load_settings(env={"DNSIEVE_CONFIG": str(f)})
    assert s.domains.private_suffixes is False


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[ingest]\nbatch_size = 1\n", "ingest.batch_size"),
        ("[ingest]\nformat = 'nope'\n", "ingest.format"),
        ("[lake]\nunknown_key = 1\n", "lake.unknown_key"),
        ("[ingest\n", "invalid TOML"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(f, env={})
    assert needle in str(info.value)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_show_round_trips(tmp_path: Path) -> None:
    s = load_settings(env={"DNSIEVE_INGEST__YEAR": "2024"})
    f = tmp_path / "round.toml"
    f.write_text(settings_as_toml(s))
    assert load_settings(f, env={}) == s
