"""Tests for the synthetic DNS generator (``dnsieve simulate``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from dnsieve.ingest import read_file
from dnsieve.ingest.base import IngestStats, ReadContext
from dnsieve.simulate import (
    BENIGN_KINDS,
    LABEL_COLUMNS,
    THREAT_KINDS,
    SimResult,
    simulate,
    write_zeek,
    zeek_header,
)

HOURS, CLIENTS, SEED = 24, 100, 11


@pytest.fixture(scope="module")
def sim() -> SimResult:
    return simulate(HOURS, CLIENTS, SEED)


@pytest.fixture(scope="module")
def written(sim: SimResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    write_zeek(sim, out)
    return out


def _read_back(path: Path) -> tuple[pl.DataFrame, IngestStats]:
    stats = IngestStats(source=str(path))
    ctx = ReadContext(sensor="sim", stats=stats)
    table = pa.Table.from_batches(list(read_file(path, ctx=ctx)))
    return pl.DataFrame(pl.from_arrow(table)), stats


def _background(sim: SimResult) -> pl.DataFrame:
    return sim.events.filter(pl.col("campaign").is_null())


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_identical_files(sim: SimResult, written: Path, tmp_path: Path) -> None:
    again = simulate(HOURS, CLIENTS, SEED)
    assert again.events.equals(sim.events)
    assert again.labels.equals(sim.labels)
    write_zeek(again, tmp_path)
    assert (tmp_path / "dns.log").read_bytes() == (written / "dns.log").read_bytes()
    assert (tmp_path / "labels.csv").read_bytes() == (written / "labels.csv").read_bytes()


def test_other_seed_differs(sim: SimResult) -> None:
    other = simulate(HOURS, CLIENTS, SEED + 1)
    assert not other.events.equals(sim.events)
    assert set(other.labels["entity"]) != set(sim.labels["entity"])


def test_start_is_honoured() -> None:
    r = simulate(2, 5, 1, start="2023-07-01T10:30:00Z")
    assert r.start == datetime(2023, 7, 1, 10, tzinfo=UTC)
    ts = r.events["ts"]
    assert ts.min() >= r.start  # type: ignore[operator]
    assert ts.max() < datetime(2023, 7, 1, 12, tzinfo=UTC)  # type: ignore[operator]


@pytest.mark.parametrize(("hours", "clients"), [(0, 10), (10, 0)])
def test_rejects_empty_simulation(hours: int, clients: int) -> None:
    with pytest.raises(ValueError):
        simulate(hours, clients, 0)


def test_tiny_simulation_still_works() -> None:
    r = simulate(1, 1, 3)
    assert r.events.height > 0
    assert r.events["ts"].is_sorted()


# --------------------------------------------------------------------------- Zeek output


def test_zeek_header_is_exact(written: Path, sim: SimResult) -> None:
    lines = (written / "dns.log").read_text().splitlines()
    assert lines[0] == "#separator \\x09"
    assert lines[1] == "#set_separator\t,"
    assert lines[2] == "#empty_field\t(empty)"
    assert lines[3] == "#unset_field\t-"
    assert lines[4] == "#path\tdns"
    assert lines[5].startswith("#open\t2024-03-04-00-")
    assert lines[6].split("\t") == [
        "#fields", "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto",
        "trans_id", "rtt", "query", "qclass", "qclass_name", "qtype", "qtype_name", "rcode",
        "rcode_name", "AA", "TC", "RD", "RA", "Z", "answers", "TTLs", "rejected",
    ]  # fmt: skip
    assert lines[7].startswith(
        "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tcount\tinterval"
    )
    assert lines[-1] == "#close\t2024-03-05-00-00-00"
    assert len(lines) == sim.events.height + 9
    assert all(len(line.split("\t")) == 24 for line in lines[8:-1])
    assert zeek_header(0).count("\n") == 8


def test_tsv_reads_back_through_ingest(written: Path, sim: SimResult) -> None:
    back, stats = _read_back(written / "dns.log")
    assert stats.format == "zeek"
    assert dict(stats.rejects) == {}
    assert back.height == sim.events.height
    ev = sim.events
    for col in ("src_ip", "qname", "qtype", "rcode", "registered_domain", "answers", "ttls"):
        assert back[col].equals(ev[col], check_names=False), col
    assert (back["ts"] == ev["ts"]).all()
    assert back["rtt"].eq_missing(ev["rtt"]).all()


def test_json_reads_back_like_tsv(written: Path, sim: SimResult, tmp_path: Path) -> None:
    write_zeek(sim, tmp_path, fmt="zeek-json")
    back_json, stats = _read_back(tmp_path / "dns.log")
    assert stats.format == "zeek-json"
    assert dict(stats.rejects) == {}
    back_tsv, _ = _read_back(written / "dns.log")
    assert back_json.drop("sensor").equals(back_tsv.drop("sensor"))


def test_unknown_format_is_refused(sim: SimResult, tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_zeek(sim, tmp_path, fmt="csv")


# --------------------------------------------------------------------------- labels


def test_labels_cover_every_kind(sim: SimResult) -> None:
    labels = sim.labels
    assert tuple(labels.columns) == LABEL_COLUMNS
    assert set(labels["kind"]) == set(THREAT_KINDS) | set(BENIGN_KINDS)
    assert set(THREAT_KINDS) == {"masquerade", "volume_spike", "dga", "tunnel", "beacon", "exfil",
                                 "newdomain"}  # fmt: skip
    fams = set(zip(labels["kind"], labels["detector_family"], strict=True))
    assert {("masquerade", "visitors"), ("masquerade", "volume"), ("volume_spike", "volume"),
            ("dga", "nxdomain"), ("dga", "dga_host"), ("dga", "dga"), ("tunnel", "tunnel"),
            ("beacon", "beacon"), ("exfil", "exfil"), ("newdomain", "newdomain"),
            ("benign_adoption", "newdomain"), ("benign_cdn", "fastflux"),
            ("benign_update_burst", "volume"), ("benign_nx_misconfig", "nxdomain")} <= fams  # fmt: skip
    assert set(labels["entity_type"]) <= {"domain", "client", "client_domain"}
    # threat: 1 for attacks, 0 for the benign anomalies (contract 3 of issue 11).
    assert labels["threat"].dtype == pl.Int8
    assert (labels["threat"] == 0).to_list() == labels["kind"].str.starts_with("benign_").to_list()


def test_every_label_entity_appears_in_its_window(sim: SimResult) -> None:
    ev = sim.events
    for row in sim.labels.iter_rows(named=True):
        ws = datetime.fromisoformat(row["window_start"].replace("Z", "+00:00"))
        we = datetime.fromisoformat(row["window_end"].replace("Z", "+00:00"))
        assert ws < we
        inside = ev.filter((pl.col("ts") >= ws) & (pl.col("ts") < we))
        if row["entity_type"] == "domain":
            hit = inside.filter(pl.col("registered_domain") == row["entity"])
        elif row["entity_type"] == "client":
            hit = inside.filter(pl.col("src_ip") == row["entity"])
        else:
            client, domain = row["entity"].split("|")
            hit = inside.filter(
                (pl.col("src_ip") == client) & (pl.col("registered_domain") == domain)
            )
        assert hit.height > 0, row
        camp = ev.filter(pl.col("campaign") == row["campaign"])
        assert camp.height > 0
        assert camp["ts"].min() >= ws and camp["ts"].max() < we  # type: ignore[operator]


def test_campaign_properties(sim: SimResult) -> None:
    ev = sim.events
    # DGA: almost all NXDOMAIN.
    dga = ev.filter(pl.col("campaign").str.starts_with("dga"))
    assert (dga["rcode"] == "NXDOMAIN").mean() > 0.9  # type: ignore[operator]
    # Tunnel: long encoded names, TXT/NULL/CNAME/MX heavy.
    tun = ev.filter(pl.col("campaign").str.starts_with("tunnel"))
    assert tun["qname"].str.len_bytes().mean() > 60  # type: ignore[operator]
    assert tun["qtype"].is_in(["TXT", "NULL", "CNAME", "MX"]).mean() > 0.7  # type: ignore[operator]
    # Beacon: regular inter-arrival, period 1 min - 1 h, jitter at most 30 %
    # (uniform ±30 % has a coefficient of variation of 0.3 / sqrt(3) = 0.17).
    bea = ev.filter(pl.col("campaign") == "beacon-00")
    gaps = np.diff(bea["ts"].dt.epoch("us").to_numpy()) / 1e6
    assert len(gaps) > 10
    assert gaps.std() / gaps.mean() < 0.2
    assert 40 < gaps.mean() < 3600 * 1.3
    # Masquerade: the visitors in the window never queried the domain before it.
    lab = sim.labels.filter(
        (pl.col("kind") == "masquerade") & (pl.col("detector_family") == "visitors")
    )
    row = lab.row(0, named=True)
    dom = ev.filter(pl.col("registered_domain") == row["entity"])
    camp = dom.filter(pl.col("campaign") == row["campaign"])
    before = dom.filter(pl.col("campaign").is_null() & (pl.col("ts") < camp["ts"].min()))
    assert before.height > 0  # it is a real, previously seen site
    assert not set(camp["src_ip"]) & set(before["src_ip"])
    assert camp["src_ip"].n_unique() >= 3


# --------------------------------------------------------------------------- realism


def test_diurnal_cycle(sim: SimResult) -> None:
    hourly = _background(sim).group_by(pl.col("ts").dt.hour().alias("h")).len()
    counts = dict(zip(hourly["h"], hourly["len"], strict=True))
    day = np.mean([counts.get(h, 0) for h in range(9, 17)])
    night = np.mean([counts.get(h, 0) for h in range(1, 5)])
    assert day / night > 3


def test_weekly_cycle() -> None:
    r = simulate(168, 40, 5)
    bg = _background(r)
    daily = bg.group_by(pl.col("ts").dt.weekday().alias("d")).len()
    counts = dict(zip(daily["d"], daily["len"], strict=True))
    weekday = np.mean([counts[d] for d in range(1, 6)])
    weekend = np.mean([counts[d] for d in (6, 7)])
    assert weekday / weekend > 2


def test_zipf_popularity(sim: SimResult) -> None:
    cnt = (
        _background(sim)
        .group_by("registered_domain")
        .len()
        .sort("len", descending=True)["len"]
        .to_numpy()
    )
    ranks = np.arange(1, len(cnt) + 1)
    sel = (ranks >= 10) & (ranks <= 500)
    slope = np.polyfit(np.log(ranks[sel]), np.log(cnt[sel]), 1)[0]
    assert -2.2 < slope < -0.7


def test_nxdomain_share_and_qtype_mix(sim: SimResult) -> None:
    bg = _background(sim)
    nx = float((bg["rcode"] == "NXDOMAIN").mean())  # type: ignore[arg-type]
    assert 0.02 < nx < 0.12
    mix = bg["qtype"].value_counts(normalize=True, sort=True)
    share = dict(zip(mix["qtype"], mix["proportion"], strict=True))
    assert mix["qtype"][0] == "A" and mix["qtype"][1] == "AAAA"
    assert 0.05 < share["HTTPS"] < 0.2
    assert 0.01 < share["PTR"] < 0.1
    assert share["SRV"] > 0 and share.get("TXT", 0) < 0.03
    # NXDOMAIN noise kinds: search-suffix junk, wpad probes, reverse look-ups.
    nxq = bg.filter(pl.col("rcode") == "NXDOMAIN")["qname"]
    assert nxq.str.ends_with(".corp.local").any()
    assert (nxq == "wpad.corp.local").any()
    assert nxq.str.ends_with(".in-addr.arpa").any()


def test_habits_intermittency_and_cdns(sim: SimResult) -> None:
    bg = _background(sim)
    per_dom = bg.group_by("registered_domain").agg(
        clients=pl.col("src_ip").n_unique(),
        hours=pl.col("ts").dt.truncate("1h").n_unique(),
        hosts=pl.col("qname").n_unique(),
    )
    # Most domains have few visitors; a few are visited by nearly everyone.
    assert per_dom["clients"].median() <= 3  # type: ignore[operator]
    assert per_dom["clients"].max() >= 0.8 * CLIENTS  # type: ignore[operator]
    # Many domains are seen in only a few hours of the day.
    assert (per_dom["hours"] <= 3).mean() > 0.3  # type: ignore[operator]
    # CDNs: many host names, low TTLs, several answers.
    akam = bg.filter(
        pl.col("registered_domain").str.ends_with(".akamaiedge.net") & (pl.col("qtype") == "A")
    )
    assert akam.height > 0
    assert akam["ttls"].list.max().max() <= 60  # type: ignore[operator]
    assert akam["answers"].list.len().mean() >= 2  # type: ignore[operator]


# --------------------------------------------------------------------------- CLI


def test_cli_writes_files(tmp_path: Path) -> None:
    from dnsieve.cli import app

    runner = CliRunner()
    out = tmp_path / "out"
    res = runner.invoke(
        app, ["simulate", "--hours", "6", "--clients", "20", "--seed", "3", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    assert "injected campaigns" in res.output
    assert (out / "dns.log").read_text().startswith("#separator \\x09\n")
    labels = pl.read_csv(out / "labels.csv")
    assert labels.height > 0

    res = runner.invoke(
        app, ["simulate", "--hours", "6", "--clients", "20", "--out", str(out), "--format", "pcap"]
    )
    assert res.exit_code == 2
