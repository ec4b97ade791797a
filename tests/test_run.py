"""``dnsieve run`` end to end on real captures, logs and background traffic.

Tunnel tools (Domainator pcapng recordings, the iodine dnsmasq log) must be
flagged by their registered domain, and nothing else in the same files —
the Windows background (microsoft.com, windowsupdate.com, msftncsi.com,
skype.com, live.com, office.com, dns.google, azureedge.net, ntp.org ...) stays
quiet.  Real background (brimdata, RITA) must stay quiet too: the alerts
there are RITA's own dnscat2 slice and two GoTo client check-ins every 30 min
(benign periodic software, listed in docs/detectors.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnsieve.cli import app
from dnsieve.config import load_settings
from dnsieve.jobs import run_job

TOOL_DOMAINS = {
    "dnscat": {"hacker-dnscat.com"},
    "iodine": {"hacker-iodine.com"},
    "roguerobin-powershell": {
        "anyconnect.stream",
        "bigip.stream",
        "fortiweb.download",
        "kaspersky.science",
        "microtik.stream",
        "owa365.bid",
        "symanteclive.download",
        "windowsdefender.win",
    },
}
# RogueRobin handshakes carry only short beacon names (``2320.bigip.stream``,
# one to eight lookups per domain, no payload): no tunnel yet.  Their C2 domains
# imitate security brands on abused TLDs (symanteclive.download,
# kaspersky.science, windowsdefender.win), which the look-alike detector flags.
HANDSHAKE_ONLY = {
    "roguerobin-ps_handshake_240229.pcapng",
    "roguerobin-ps_handshake-fakenet_240229.pcapng",
    "roguerobin-ps_handshake-offline_240229.pcapng",
}
BACKGROUND = {
    "microsoft.com", "windowsupdate.com", "msftncsi.com", "skype.com", "live.com", "office.com",
    "dns.google", "azureedge.net", "googleapis.com", "ntp.org", "bing.com",
}  # fmt: skip


def _alerts(paths: list[Path]) -> list[tuple[str, str]]:
    _, _, alerts = run_job(paths, settings=load_settings(env={}))
    return list(zip(alerts["detector"].to_list(), alerts["entity"].to_list(), strict=True))


def _c2_hosts(capture: Path, domains: set[str]) -> set[str]:
    """The hosts of a capture that queried one of its tool's C2 domains (the infected ones)."""
    import polars as pl

    from dnsieve.ingest import read_file
    from dnsieve.ingest.base import IngestStats, ReadContext

    ctx = ReadContext(sensor=str(capture), stats=IngestStats(source=str(capture)))
    ev = pl.concat([pl.from_arrow(b) for b in read_file(capture, "auto", ctx)])  # type: ignore[misc]
    hit = ev.filter(pl.col("registered_domain").is_in(sorted(domains)))
    return set(hit.get_column("src_ip").to_list())


def _domainator(shared: Path) -> list[Path]:
    return sorted((shared / "tunnel/domainator").glob("*/*.pcapng"))


@pytest.mark.shared
def test_domainator_pcaps(shared_data: Path) -> None:
    files = _domainator(shared_data)
    assert len(files) == 18
    for f in files:
        tool = f.parent.name
        alerts = _alerts([f])
        # beacon entities are "client|domain": judge them by their domain; a host-level
        # alert (dga_host: a host failing on rare domains) must name an infected host
        entities = {e.rsplit("|", 1)[-1] for _, e in alerts}
        hosts = {e for e in entities if not any(c.isalpha() for c in e)}
        assert hosts <= _c2_hosts(f, TOOL_DOMAINS[tool]), (f.name, alerts)
        entities -= hosts
        assert entities <= TOOL_DOMAINS[tool], (f.name, alerts)
        assert not entities & BACKGROUND
        assert entities, (f.name, alerts)
        detectors = {d for d, _ in alerts}
        if f.name in HANDSHAKE_ONLY:
            assert "lookalike" in detectors, (f.name, alerts)
        else:
            assert "tunnel" in detectors, (f.name, alerts)


@pytest.mark.shared
def test_iodine_dnsmasq_log(shared_data: Path) -> None:
    alerts = _alerts([shared_data / "tunnel/iodine_dnsmasq/dnsmasq.log"])
    assert alerts == [("tunnel", "example.attack")]


@pytest.mark.shared
def test_real_background_is_quiet(shared_data: Path) -> None:
    assert _alerts([shared_data / "zeek/brimdata/dns.log.gz"]) == []
    rita = shared_data / "zeek/rita"
    assert _alerts([rita / "proxy_rolling"]) == []
    # missing_host's conn.log is routed to the flows (docs/flows.md): RITA's planted HTTP
    # beacon, periodic inbound scanners and SSH guessers of the internet-facing host, and
    # its own repeated connections to two OVH addresses it never resolved.  Its DNS is quiet.
    got = set(_alerts([rita / "missing_host"]))
    assert ("conn_beacon", "73.54.23.243|64.225.56.201") in got
    assert {d for d, _ in got} <= {"conn_beacon", "conn_no_dns"}
    # GoTo (LogMeIn) clients check in every 1800 s with ~0 jitter: real,
    # benign software beaconing.  Through this proxy most series are automated
    # (the fitted null on-beat share is 0.64), and 8 lookups in 4 h are not
    # overwhelming: no alert (docs/detectors.md).
    assert _alerts([rita / "proxy"]) == []
    # The one RITA sample that is a tunnel: dnscat2 over *.dnsc.r-1x.com.
    assert _alerts([rita / "json_with_all_fields"]) == [("tunnel", "r-1x.com")]


@pytest.mark.shared
def test_cli_run_writes_json_lines(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    pcap = shared_data / "tunnel/domainator/iodine/iodine_upload-big_240731.pcapng"
    res = CliRunner().invoke(
        app, ["run", str(pcap), "--out", str(out), "--lake", str(tmp_path / "lake")]
    )
    assert res.exit_code == 0, res.output
    assert "tunnel" in res.output and "wrote 1 alerts" in res.output
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["entity"] for r in recs] == ["hacker-iodine.com"]
    rec = recs[0]
    for key in ("detector", "entity", "window_start", "window_end", "score", "evidence"):
        assert key in rec
    assert isinstance(rec["evidence"], dict) and rec["evidence"]["unique_subdomains"] > 10
    res = CliRunner().invoke(app, ["run", str(pcap), "--json", "--lake", str(tmp_path / "lake")])
    assert res.exit_code == 0
    payload = json.loads(res.output)
    assert payload["summary"]["detectors"]["tunnel"]["alerts"] == 1
    assert payload["ingest"][0]["status"] == "unchanged"  # same lake: idempotent re-ingest


def test_cli_run_missing_input(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["run", str(tmp_path / "nope.pcap")])
    assert res.exit_code == 2


@pytest.mark.shared
def test_run_stores_scored_alerts_idempotently_and_keeps_verdicts(
    shared_data: Path, tmp_path: Path
) -> None:
    """`dnsieve run --db` stores alerts with P(threat); a re-run merges, never duplicates,
    and an analyst's verdict survives it."""
    from dnsieve.alerts.store import AlertStore

    pcap = shared_data / "tunnel/domainator/dnscat/dnscat_upload-big_240731.pcapng"
    db = f"sqlite:///{tmp_path / 'alerts.db'}"
    args = ["run", str(pcap), "--db", db, "--json"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    summary = json.loads(first.output)["summary"]
    assert summary["store"]["inserted"] >= 1
    with AlertStore.open(db) as store:
        stored = store.list_alerts(status="all")
        assert {a.entity for a in stored if a.entity_type == "domain"} >= {"hacker-dnscat.com"}
        assert all(a.threat_probability is not None for a in stored)
        assert all(a.features for a in stored)
        target = next(a for a in stored if a.entity == "hacker-dnscat.com")
        store.record_verdict(target.id, "threat", "analyst", "dnscat2 C2")
        n = len(stored)
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert json.loads(second.output)["summary"]["store"]["inserted"] == 0
    with AlertStore.open(db) as store:
        again = store.list_alerts(status="all")
        assert len(again) == n
        assert store.get_alert(target.id).status == "threat"
        assert len(store.list_runs()) == 2
