"""Definitions in the alert store (versions, states, audit) and the ``dnsieve rules`` CLI."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dnsieve.alerts.definitions import DefinitionError, DefinitionStore
from dnsieve.alerts.store import AlertStore
from dnsieve.cli import app
from dnsieve.lake import Lake

DATA = Path(__file__).parent / "data"
RULE = """\
title: WRCCDC AAAA
logsource: {category: dns}
detection:
  sel: {query|endswith: .wrccdc.org, record_type: AAAA}
  condition: sel
level: high
tags: [attack.t1071.004]
"""


def test_versions_states_and_audit() -> None:
    with AlertStore.open("sqlite:///:memory:") as store:
        ds = DefinitionStore(store)
        d = ds.add("tor", "sigma", RULE, "ana", "no Tor here", techniques=["T1090.003"])
        assert (d.state, d.version, d.detector) == ("draft", 1, "rule:tor")
        with pytest.raises(DefinitionError, match="exists already"):
            ds.add("tor", "sigma", RULE, "ana", "again")
        ds.set_state("tor", "enabled", "admin")
        assert [x.name for x in ds.active()] == ["tor"]
        # An edited enabled definition goes back to draft: what runs is what was approved.
        d2 = ds.edit("tor", "ana", "tighter", body=RULE.replace("AAAA", "TXT"))
        assert (d2.state, d2.version) == ("draft", 2)
        assert ds.active() == []
        assert ds.body_at("tor", 1) == RULE
        assert [v[0] for v in ds.versions("tor")] == [1, 2]
        assert [e.action for e in ds.history("tor")] == ["edited", "enabled", "created"]
        with pytest.raises(DefinitionError, match="no definition"):
            ds.get("missing")
        with pytest.raises(DefinitionError, match="severity"):
            ds.add("x", "sigma", RULE, "a", "r", severity="urgent")
        with pytest.raises(DefinitionError, match="name"):
            ds.add("two\nlines", "sigma", RULE, "a", "r")


@pytest.fixture()
def env(tmp_path: Path) -> tuple[CliRunner, str, Path]:
    lake = tmp_path / "lake"
    Lake(lake).ingest_files([DATA / "zeek" / "brim_dns_head.log"])
    return CliRunner(), f"sqlite:///{tmp_path / 'a.db'}", lake


def test_cli_add_hunt_enable_export(env: tuple[CliRunner, str, Path], tmp_path: Path) -> None:
    runner, db, lake = env
    rule = tmp_path / "r.yml"
    rule.write_text(RULE)
    res = runner.invoke(app, ["rules", "add", str(rule), "-r", "test", "--db", db])
    assert res.exit_code == 0, res.output
    res = runner.invoke(
        app, ["rules", "hunt", "WRCCDC AAAA", "--lake", str(lake), "--db", db, "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["events"] == 12 and out["alerts"] == 1
    assert runner.invoke(app, ["rules", "enable", "WRCCDC AAAA", "--db", db]).exit_code == 0
    res = runner.invoke(app, ["rules", "export", "--db", db])
    rows = [json.loads(line) for line in res.output.splitlines()]
    assert rows[0]["state"] == "enabled" and rows[0]["techniques"] == ["T1071.004"]
    res = runner.invoke(app, ["rules", "show", "WRCCDC AAAA", "--db", db])
    assert "hunted (12 events, 1 alerts)" in res.output


def test_cli_refuses_a_bad_rule_with_the_reason(
    env: tuple[CliRunner, str, Path], tmp_path: Path
) -> None:
    runner, db, _ = env
    bad = tmp_path / "z.yml"
    bad.write_text((DATA / "sigma" / "zeek_dns_susp_zbit_flag.yml").read_text())
    res = runner.invoke(app, ["rules", "add", str(bad), "-r", "x", "--db", db])
    assert res.exit_code == 2
    assert "field 'Z'" in res.output


def test_cli_import_watchlist_hits_and_hostile_names(
    env: tuple[CliRunner, str, Path], tmp_path: Path
) -> None:
    runner, db, lake = env
    feed = tmp_path / "feed.txt"
    feed.write_text("wrccdc.org  # competition\n")
    hostile = "[bold red]x[/bold red]<script>"
    res = runner.invoke(
        app, ["rules", "import", str(feed), "--name", hostile, "-r", "watch", "--db", db]
    )
    assert res.exit_code == 0, res.output
    assert hostile in res.output  # shown literally, not as markup
    res = runner.invoke(app, ["rules", "hunt", hostile, "--lake", str(lake), "--db", db, "--json"])
    expected = Lake(lake).scan().filter(pl.col("registered_domain") == "wrccdc.org").collect()
    assert json.loads(res.output)["events"] == expected.height > 0


def test_run_raises_alerts_for_enabled_definitions_only(tmp_path: Path) -> None:
    """``dnsieve run`` evaluates enabled definitions; a re-run adds nothing twice."""
    from dnsieve.jobs import run_job

    db = f"sqlite:///{tmp_path / 'a.db'}"
    with AlertStore.open(db) as store:
        ds = DefinitionStore(store)
        ds.add("competition", "watchlist", "wrccdc.org  # WRCCDC\n", "ana", "watch it")
        ds.add("draft-only", "watchlist", "wrccdc.org\n", "ana", "not enabled")
        ds.set_state("competition", "enabled", "admin")
    log = DATA / "zeek" / "brim_dns_head.log"
    _, res, alerts = run_job([log], tmp_path / "lake", store_url=db)
    rules = alerts.filter(pl.col("detector").str.starts_with("rule:"))
    assert rules["detector"].unique().to_list() == ["rule:competition"]
    assert rules["entity"].to_list() == ["wrccdc.org"]
    evidence = json.loads(rules["evidence"][0])
    assert evidence["definition"] == "competition" and evidence["families"] == ["WRCCDC"]
    assert "wrccdc.org" in evidence["reason"] and evidence["clients"]
    assert res.summary["store"]["definitions"]["competition"]["status"] == "ok"
    with AlertStore.open(db) as store:
        stored = [a for a in store.iter_alerts() if a.detector == "rule:competition"]
    assert len(stored) == 1
    run_job([log], tmp_path / "lake", store_url=db)
    with AlertStore.open(db) as store:
        again = [a for a in store.iter_alerts() if a.detector == "rule:competition"]
    assert [a.id for a in again] == [a.id for a in stored]


def test_detect_evaluates_the_stores_definitions(
    env: tuple[CliRunner, str, Path], tmp_path: Path
) -> None:
    """``dnsieve detect --db`` adds the enabled definitions' hits to its alerts; with
    ``--no-definitions``, or a store that does not exist, it does not (and creates none)."""
    runner, db, lake = env
    with AlertStore.open(db) as store:
        ds = DefinitionStore(store)
        ds.add("competition", "watchlist", "wrccdc.org  # WRCCDC\n", "ana", "watch it")
        ds.set_state("competition", "enabled", "admin")

    def rule_alerts(*extra: str) -> list[str]:
        args = ["detect", "--lake", str(lake), "--until", "2018-03-25T00:00:00Z", "--json"]
        res = runner.invoke(app, [*args, *extra])
        assert res.exit_code == 0, res.output
        return [a["detector"] for a in json.loads(res.output)["alerts"] if "rule:" in a["detector"]]

    assert rule_alerts("--db", db) == ["rule:competition"]
    assert rule_alerts("--db", db, "--no-definitions") == []
    missing = tmp_path / "none.db"
    assert rule_alerts("--db", str(missing)) == []
    assert not missing.exists()
