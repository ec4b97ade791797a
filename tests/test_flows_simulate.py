"""``simulate_flows``: a conn.log consistent with the simulated DNS, with labelled flow campaigns."""

from __future__ import annotations

from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from dnsieve.cli import app
from dnsieve.ingest.base import IngestStats, ReadContext
from dnsieve.ingest.flows_common import read_flow_file
from dnsieve.simulate import FLOW_KINDS, LABEL_COLUMNS, simulate, simulate_flows


def test_flows_follow_the_dns_and_carry_labelled_campaigns() -> None:
    sim = simulate(hours=24, clients=60, seed=5)
    before = sim.events.clone()
    fl = simulate_flows(sim, campaigns=1)
    assert sim.events.equals(before)  # the DNS is not touched
    assert set(fl.labels["kind"]) == set(FLOW_KINDS) and list(fl.labels.columns) == list(
        LABEL_COLUMNS
    )
    conn = fl.conn
    assert conn["ts"].is_sorted()
    bg = conn.filter(pl.col("campaign").is_null() & (pl.col("dst_port") != 123))
    # every background connection follows its client's own lookup of that address
    answers = (
        sim.events.select("ts", "src_ip", pl.col("answers").list.first().alias("dst_ip"))
        .drop_nulls()
        .sort("ts")
    )
    joined = bg.sort("ts").join_asof(
        answers.rename({"ts": "dns_ts"}), left_on="ts", right_on="dns_ts", by=["src_ip", "dst_ip"]
    )
    assert joined["dns_ts"].null_count() == 0
    assert float((joined["ts"] - joined["dns_ts"]).dt.total_seconds().median()) < 30  # type: ignore[arg-type]
    # the hard-coded C2 address is resolved by nobody
    c2 = fl.labels.filter(pl.col("kind") == "flow_c2_ip")["entity"][0].split("|")[1]
    assert c2 not in set(sim.events["answers"].explode().drop_nulls().to_list())
    # injected hosts are not DNS-campaign hosts
    dns_hosts = {
        e.split("|")[0] for e in sim.labels.filter(pl.col("entity_type") != "domain")["entity"]
    }
    assert not dns_hosts & {e.split("|")[0] for e in fl.labels["entity"]}


def test_simulate_command_writes_a_readable_conn_log(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["simulate", "--out", str(tmp_path), "--hours", "12", "--clients", "30", "--flows"]
    )
    assert res.exit_code == 0, res.output
    stats = IngestStats(source="conn.log")
    ctx = ReadContext(sensor="conn.log", stats=stats)
    rows = sum(b.num_rows for b in read_flow_file(tmp_path / "conn.log", ctx=ctx))
    assert rows > 0 and stats.rejected == 0 and stats.format == "zeek-conn"
    assert (tmp_path / "conn_labels.csv").read_text().startswith("kind,entity_type,entity")
