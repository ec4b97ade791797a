"""The simulator's issue-11 campaigns: new-domain attacks, benign anomalies, DGA styles and
real DGA family lists, and how campaign counts scale with the population."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from typer.testing import CliRunner

from dnsieve.simulate import (
    BENIGN_KINDS,
    DGA_STYLES,
    THREAT_KINDS,
    SimResult,
    campaign_counts,
    dga_style_names,
    read_dga_lists,
    simulate,
)


def _t(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@pytest.fixture(scope="module", params=[200, 2000], ids=["200-hosts", "2000-hosts"])
def sim(request: pytest.FixtureRequest) -> SimResult:
    # 36 h keeps the 2,000-host run cheap while leaving room for day-long campaigns.
    return simulate(36, request.param, 3)


def _campaign(sim: SimResult, kind: str) -> list[tuple[dict[str, object], pl.DataFrame]]:
    """(first label row, events) of every campaign of ``kind``."""
    out = []
    for camp in sim.labels.filter(pl.col("kind") == kind)["campaign"].unique().sort():
        row = sim.labels.filter(pl.col("campaign") == camp).row(0, named=True)
        out.append((row, sim.events.filter(pl.col("campaign") == camp)))
    return out


def test_every_kind_is_present_with_its_threat_flag(sim: SimResult) -> None:
    labels = sim.labels
    per_kind = labels.group_by("kind").agg(pl.col("campaign").n_unique(), pl.col("threat").unique())
    got = {r["kind"]: r for r in per_kind.to_dicts()}
    assert set(got) == set(THREAT_KINDS) | set(BENIGN_KINDS)
    for kind, r in got.items():
        assert r["threat"] == [0 if kind in BENIGN_KINDS else 1], kind
    # Benign anomalies outnumber the attacks.
    n_benign = sum(got[k]["campaign"] for k in BENIGN_KINDS)
    n_threat = sum(got[k]["campaign"] for k in THREAT_KINDS)
    assert n_benign > n_threat
    assert sim.stats["benign_campaigns"] == n_benign


def test_labelled_entities_lie_in_their_windows(sim: SimResult) -> None:
    ev = sim.events
    for row in sim.labels.filter(pl.col("detector_family") != "dga").iter_rows(named=True):
        ws, we = _t(row["window_start"]), _t(row["window_end"])
        camp = ev.filter(pl.col("campaign") == row["campaign"])
        assert camp["ts"].min() >= ws and camp["ts"].max() < we  # type: ignore[operator]
        if row["entity_type"] == "domain":
            assert (camp["registered_domain"] == row["entity"]).all(), row
        elif row["entity_type"] == "client":  # one of a campaign's bots
            assert (camp["src_ip"] == row["entity"]).any(), row
        else:
            client, domain = row["entity"].split("|")
            assert (camp["src_ip"] == client).all() and (camp["registered_domain"] == domain).all()


def test_newdomain_is_never_seen_then_several_hosts_within_hours(sim: SimResult) -> None:
    camps = _campaign(sim, "newdomain")
    assert camps
    for row, ev in camps:
        assert row["entity_type"] == "domain" and row["detector_family"] == "newdomain"
        dom = row["entity"]
        before = sim.events.filter(
            (pl.col("registered_domain") == dom) & pl.col("campaign").is_null()
        )
        assert before.height == 0  # never seen in the background, before or after
        hosts = ev["src_ip"].n_unique()
        assert 3 <= hosts <= 30
        first = ev.group_by("src_ip").agg(pl.col("ts").min())["ts"]
        spread = (first.max() - first.min()).total_seconds()  # type: ignore[operator, union-attr]
        assert spread <= 4 * 3600 + 120
        # They keep querying it after the first contact.
        assert (ev["ts"].max() - ev["ts"].min()).total_seconds() > 6 * 3600  # type: ignore[operator, union-attr]


def test_benign_anomalies_look_like_their_story(sim: SimResult) -> None:
    n = sim.clients
    for row, ev in _campaign(sim, "benign_adoption"):
        assert ev["src_ip"].n_unique() >= min(12, n)
        seen = sim.events.filter(
            (pl.col("registered_domain") == row["entity"]) & pl.col("campaign").is_null()
        )
        assert seen.height == 0
    for _row, ev in _campaign(sim, "benign_cdn"):
        a = ev.filter((pl.col("qtype") == "A") & pl.col("answers").is_not_null())
        assert ev["qname"].n_unique() >= 10
        assert a["ttls"].list.max().max() <= 60  # type: ignore[operator]
        assert a["answers"].explode().n_unique() >= 16
        assert ev["src_ip"].n_unique() >= min(10, n)
    for row, ev in _campaign(sim, "benign_update_burst"):
        span = (ev["ts"].max() - ev["ts"].min()).total_seconds()  # type: ignore[operator, union-attr]
        assert span <= 90 * 60 + 1
        assert ev["src_ip"].n_unique() >= min(10, n)
        seen = sim.events.filter(
            (pl.col("registered_domain") == row["entity"]) & pl.col("campaign").is_null()
        )
        assert seen.height > 0  # a known vendor domain
    for row, ev in _campaign(sim, "benign_nx_misconfig"):
        assert (ev["rcode"] == "NXDOMAIN").all()
        assert ev["src_ip"].unique().to_list() == [row["entity"]]
        assert ev["qname"].str.ends_with(".corp.local").all()


def test_beacons_and_volume_spikes_vary(sim: SimResult) -> None:
    descs = sim.labels.filter(pl.col("kind") == "volume_spike")["description"].to_list()
    assert all(d.startswith("hourly volume x") for d in descs)
    if sim.clients >= 2000:  # enough campaigns for two sizes
        assert len({d.split()[2] for d in descs}) >= 2
    for _row, ev in _campaign(sim, "beacon"):
        gaps = np.diff(ev["ts"].dt.epoch("us").to_numpy()) / 1e6
        assert 60 * 0.7 <= gaps.mean() <= 3600 * 1.3
        assert gaps.std() / gaps.mean() <= 0.3 / np.sqrt(3) + 0.05


def test_same_seed_same_campaigns() -> None:
    a, b = simulate(12, 150, 9), simulate(12, 150, 9)
    assert a.labels.equals(b.labels)
    assert a.events.equals(b.events)
    assert not simulate(12, 150, 10).labels.equals(a.labels)


def test_campaign_counts_scale_with_population() -> None:
    small, big = campaign_counts(168, 200), campaign_counts(168, 8000)
    assert set(small) == set(THREAT_KINDS) | set(BENIGN_KINDS)
    assert all(v >= 1 for v in campaign_counts(1, 200).values())
    assert all(big[k] > small[k] for k in small)
    assert campaign_counts(168, 500) == small  # flat up to the reference population
    # Simulated: more campaigns, and bigger new-domain campaigns, at 8,000 hosts.
    s, b = simulate(24, 200, 4), simulate(24, 8000, 4)
    assert b.stats["campaigns"] > s.stats["campaigns"]
    hosts_s = s.events.filter(pl.col("campaign").str.starts_with("newdomain"))["src_ip"].n_unique()
    hosts_b = b.events.filter(pl.col("campaign").str.starts_with("newdomain"))["src_ip"].n_unique()
    assert hosts_b > hosts_s


@pytest.mark.parametrize("style", DGA_STYLES)
def test_dga_styles_have_their_lexical_shape(style: str) -> None:
    names = dga_style_names(np.random.default_rng(1), 200, style, family_seed=5)
    labels = [n.split(".", 1)[0] for n in names]
    assert len(set(names)) > 150
    assert len({n.split(".", 1)[1] for n in names}) <= 4  # a family keeps a few TLDs
    if style == "hash":
        assert len({len(x) for x in labels}) == 1
        assert all(set(x) <= set("0123456789abcdef") for x in labels) or all(
            set(x) <= set("abcdefghijklmnopqrstuvwxyz234567") for x in labels
        )
    elif style == "short":
        assert all(4 <= len(x) <= 6 for x in labels)
    elif style == "pronounceable":
        vowels = set("aeiouy")
        assert all(
            all((a in vowels) != (b in vowels) for a, b in itertools.pairwise(x)) for x in labels
        )
    elif style == "wordpair":
        assert np.mean([len(x) for x in labels]) > 8
    with pytest.raises(ValueError):
        dga_style_names(np.random.default_rng(1), 1, "nonsense")


def test_every_style_shows_up_in_the_simulation() -> None:
    r = simulate(168, 500, 2)
    bots = r.labels.filter((pl.col("kind") == "dga") & (pl.col("entity_type") == "client"))
    descs = set(bots["description"].to_list())
    styles = {d.split("-style")[0] for d in descs}
    assert styles <= set(DGA_STYLES) and len(styles) >= 3


# --------------------------------------------------------------------------- real family lists


def _write_lists(tmp_path: Path) -> Path:
    d = tmp_path / "dga"
    d.mkdir()
    rng = np.random.default_rng(0)
    fam_a = [f"{''.join(rng.choice(list('qwrtzpsdfg'), 11))}.biz" for _ in range(60)]
    fam_b = [f"Alpha{i}Bravo.ORG." for i in range(40)]
    rows = ["family,domain"]
    rows += [f"fam_a,{x}" for x in fam_a]
    rows += [f"New_Goz,{x}" for x in fam_b]
    rows += ["fam_a,not a domain", "fam_a,nodot", "fam_a,"]
    (d / "one.csv").write_text("\n".join(rows) + "\n")
    (d / "two.csv").write_text("family,domain\nfam_c,zzzyyyxxx.info\n")
    return d


def test_read_dga_lists_cleans_filters_and_canonicalises(tmp_path: Path) -> None:
    d = _write_lists(tmp_path)
    lists = read_dga_lists(d)
    assert sorted(lists) == ["fam_a", "fam_c", "newgoz"]
    assert len(lists["fam_a"]) == 60  # the three malformed rows are skipped
    assert lists["newgoz"][0] == "alpha0bravo.org"
    only = read_dga_lists([d / "one.csv"], families=["new_goz"])
    assert list(only) == ["newgoz"]
    with pytest.raises(ValueError):
        read_dga_lists(d, families=["absent"])
    bad = tmp_path / "bad.csv"
    bad.write_text("family,name\nx,y.com\n")
    with pytest.raises(ValueError, match="domain"):
        read_dga_lists(bad)


def test_bots_draw_from_the_real_lists(tmp_path: Path) -> None:
    lists = read_dga_lists(_write_lists(tmp_path), families=["fam_a", "newgoz"])
    r = simulate(72, 150, 6, dga_lists=lists)
    dga = r.labels.filter((pl.col("kind") == "dga") & (pl.col("entity_type") == "domain"))
    names = set(lists["fam_a"]) | set(lists["newgoz"])
    assert dga.height > 0 and set(dga["entity"]) <= names
    bots = r.events.filter(pl.col("campaign").str.starts_with("dga"))
    assert set(bots["qname"]) <= names
    assert (bots["rcode"] == "NXDOMAIN").mean() > 0.5  # type: ignore[operator]
    fams = {d.split(" DGA")[0] for d in dga["description"]}
    assert fams <= {"fam_a", "newgoz"}
    again = simulate(72, 150, 6, dga_lists=lists)
    assert again.labels.equals(r.labels)


def test_cli_reads_dga_lists(tmp_path: Path) -> None:
    from dnsieve.cli import app

    d = _write_lists(tmp_path)
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["simulate", "--hours", "30", "--clients", "60", "--seed", "2", "--out", str(out)]
    res = runner.invoke(app, [*args, "--dga-list", str(d), "--dga-family", "fam_c"])
    assert res.exit_code == 0, res.output
    labels = pl.read_csv(out / "labels.csv")
    dga = labels.filter((pl.col("kind") == "dga") & (pl.col("entity_type") == "domain"))
    assert dga["entity"].to_list() == ["zzzyyyxxx.info"]
    assert "benign_adoption" in res.output and "threat" in res.output
    res = runner.invoke(app, [*args, "--dga-list", str(d), "--dga-family", "nope"])
    assert res.exit_code == 2 and "no DGA names" in res.output
    res = runner.invoke(app, [*args, "--dga-family", "fam_c"])
    assert res.exit_code == 2


def test_campaign_counts_can_be_overridden() -> None:
    r = simulate(24, 100, 1, campaigns={"dga": 3, "tunnel": 0})
    per = r.labels.group_by("kind").agg(pl.col("campaign").n_unique())
    got = dict(per.iter_rows())
    assert got["dga"] == 3 and "tunnel" not in got
    with pytest.raises(ValueError, match="unknown campaign kind"):
        simulate(2, 10, 1, campaigns={"ransomware": 1})
