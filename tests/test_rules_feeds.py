"""Watchlist imports (ThreatFox, plain, STIX 2.1, MISP) and the vectorised event matcher."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from dnsieve.domains import DomainSplitter
from dnsieve.lake import Lake
from dnsieve.rules.feeds import (
    WatchEntry,
    import_feed,
    match_events,
    parse_misp,
    parse_plain,
    parse_stix,
    parse_threatfox,
    sniff_feed,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
THREATFOX = SHARED / "domains" / "threatfox"

THREATFOX_EXPORT = """\
################################################################
# ThreatFox IOCs: CSV export                                   #
################################################################
# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware","malware_alias","malware_printable","last_seen_utc","confidence_level","reference","tags","anonymous","reporter"
"2024-05-01 10:00:00", "1001", "evil-c2.example", "domain", "botnet_cc", "win.qakbot", "", "QakBot", "", "100", "", "", "0", "x"
"2024-05-01 10:00:00", "1002", "198.51.100.7:443", "ip:port", "botnet_cc", "win.qakbot", "", "QakBot", "", "75", "", "", "0", "x"
"2024-05-01 10:00:00", "1003", "https://drop.bad.example/a.exe", "url", "payload_delivery", "win.emotet", "", "Emotet", "", "75", "", "", "0", "x"
"2024-05-01 10:00:00", "1004", "d41d8cd98f00b204e9800998ecf8427e", "md5_hash", "payload", "win.emotet", "", "Emotet", "", "75", "", "", "0", "x"
"""


def test_threatfox_export() -> None:
    feed = parse_threatfox(THREATFOX_EXPORT)
    assert [(e.kind, e.value, e.family, e.reference) for e in feed.entries] == [
        ("domain", "evil-c2.example", "QakBot", "1001"),
        ("client", "198.51.100.7", "QakBot", "1002"),
        ("domain", "drop.bad.example", "Emotet", "1003"),
    ]
    assert feed.skipped == {"ioc_type_md5_hash": 1}
    assert sniff_feed(THREATFOX_EXPORT) == "threatfox"


def test_plain_list_with_hosts_lines_and_junk() -> None:
    feed = parse_plain("0.0.0.0 ads.example tracker.example\nEVIL.example.\n\n%%%\n*.x.example\n")
    assert [(e.kind, e.value) for e in feed.entries] == [
        ("domain", "ads.example"),
        ("domain", "tracker.example"),
        ("domain", "evil.example"),
        ("suffix", "x.example"),
    ]
    assert feed.rejected == {"bad_value": 1}


def test_stix_bundle() -> None:
    bundle = {
        "type": "bundle",
        "id": "bundle--1",
        "objects": [
            {
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--a",
                "name": "C2",
                "pattern_type": "stix",
                "pattern": "[domain-name:value = 'c2.evil.example'] OR [url:value = 'http://dl.evil.example/x']",
            },
            {
                "type": "indicator",
                "id": "indicator--b",
                "pattern_type": "stix",
                "pattern": "[ipv4-addr:value = '203.0.113.0/24']",
            },
            {"type": "indicator", "id": "indicator--c", "pattern": "[file:hashes.MD5 = 'abc']"},
            {"type": "indicator", "id": "indicator--d", "pattern": "this is not a pattern"},
            {"type": "malware", "id": "malware--x", "name": "ignored"},
        ],
    }
    text = json.dumps(bundle)
    assert sniff_feed(text) == "stix"
    feed = parse_stix(text)
    assert {(e.kind, e.value) for e in feed.entries} == {
        ("domain", "c2.evil.example"),
        ("domain", "dl.evil.example"),
        ("client", "203.0.113.0/24"),
    }
    assert feed.skipped["unsupported_pattern"] == 1
    assert feed.rejected["bad_pattern"] == 1


def test_misp_event_with_objects() -> None:
    event = {
        "Event": {
            "info": "Phishing wave",
            "Attribute": [
                {"type": "domain", "value": "login-portal.example", "uuid": "u1"},
                {"type": "ip-dst|port", "value": "192.0.2.10|8080", "uuid": "u2"},
                {"type": "md5", "value": "abc", "uuid": "u3"},
            ],
            "Object": [
                {
                    "Attribute": [
                        {"type": "url", "value": "https://cdn.phish.example/p", "uuid": "u4"}
                    ]
                }
            ],
        }
    }
    text = json.dumps(event)
    assert sniff_feed(text) == "misp"
    feed = parse_misp(text)
    assert [(e.kind, e.value, e.family) for e in feed.entries] == [
        ("domain", "login-portal.example", "Phishing wave"),
        ("client", "192.0.2.10", "Phishing wave"),
        ("domain", "cdn.phish.example", "Phishing wave"),
    ]
    assert feed.skipped == {"type_md5": 1}


def test_import_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a regular file"):
        import_feed(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert import_feed(bad).format == "plain"  # not JSON: read as a plain list
    with pytest.raises(ValueError, match="not a valid misp feed"):
        import_feed(bad, "misp")


def test_matcher_domains_suffixes_and_clients() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    events = pl.DataFrame(
        {
            "ts": [t + timedelta(seconds=i) for i in range(5)],
            "src_ip": ["10.0.0.1", "10.0.0.2", "10.9.1.1", "10.0.0.3", "10.0.0.4"],
            "qname": [
                "evil.example",
                "a.b.bad.example",
                "ok.example",
                "notbad.example",
                "EVIL.example",
            ],
        }
    )
    entries = [
        WatchEntry("domain", "evil.example"),
        WatchEntry("suffix", "bad.example"),
        WatchEntry("client", "10.9.0.0/16"),
    ]
    hits = match_events(events, entries).sort("ts")
    assert hits.select("qname", "watch_value").rows() == [
        ("evil.example", "evil.example"),
        ("a.b.bad.example", "bad.example"),
        ("ok.example", "10.9.0.0/16"),
        ("EVIL.example", "evil.example"),
    ]
    assert match_events(events, []).height == 0


def test_a_watched_registered_domain_covers_its_names_a_host_name_only_itself() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    events = pl.DataFrame(
        {
            "ts": [t] * 3,
            "src_ip": ["10.0.0.1"] * 3,
            "qname": ["x.evil.example", "drop.bad.example", "other.bad.example"],
            "registered_domain": ["evil.example", "bad.example", "bad.example"],
        }
    )
    hits = match_events(
        events, [WatchEntry("domain", "evil.example"), WatchEntry("domain", "drop.bad.example")]
    )
    assert sorted(hits["qname"].to_list()) == ["drop.bad.example", "x.evil.example"]


@pytest.mark.shared
def test_threatfox_train_watchlist_marks_exactly_the_expected_events(tmp_path: Path) -> None:
    """A watchlist from the ThreatFox train split over a real log with some of its domains."""
    train = import_feed(THREATFOX / "train.csv")
    assert train.format == "threatfox" and len(train.entries) > 10_000
    assert train.skipped["benign_row"] > 0
    watched = {e.value for e in train.entries if e.kind == "domain"}
    dev = pl.read_csv(THREATFOX / "dev.csv")
    split = DomainSplitter()
    fresh = [
        d
        for d in dev.filter(pl.col("label") == "malicious")["input"].to_list()
        if d.lower() not in watched and "/" not in d and split.split(d.lower())[1] not in watched
    ][:20]
    assert len(fresh) == 20
    planted = sorted(watched)[:: max(1, len(watched) // 25)][:25]
    # A real Zeek dns.log (brimdata WRCCDC sample) with the planted and fresh names appended.
    base = (Path(__file__).parent / "data" / "zeek" / "brim_dns_head.log").read_text()
    header, rows = [], []
    for line in base.splitlines():
        (header if line.startswith("#") else rows).append(line)
    template = rows[0].split("\t")
    extra = []
    for i, name in enumerate([*planted, *fresh]):
        f = list(template)
        f[0] = f"{float(template[0]) + i:.6f}"
        f[9] = name
        extra.append("\t".join(f))
    log = tmp_path / "dns.log"
    log.write_text("\n".join([*header[:-1], *rows, *extra, header[-1]]) + "\n")
    lake = Lake(tmp_path / "lake")
    assert lake.ingest_files([log])[0].rows_written == len(rows) + len(extra)
    hits = match_events(lake.scan(), train.entries)
    assert sorted(set(hits["qname"].to_list())) == sorted(planted)
    # one row per (event, entry): an event may be watched twice (its name and its domain)
    assert hits.unique(["ts", "qname"]).height == len(planted)


def test_refresh_downloads_a_feed_into_a_watchlist_version(tmp_path: Path) -> None:
    """``dnsieve rules refresh`` fetches a published feed (here from a local HTTP server),
    stores it as a new version, keeps the watchlist enabled only with ``--enable``, and
    reports a server error or a plain-http URL cleanly without touching the store."""
    import http.server
    import threading

    from typer.testing import CliRunner

    from dnsieve.alerts.definitions import DefinitionStore
    from dnsieve.alerts.store import AlertStore
    from dnsieve.cli import app
    from dnsieve.rules.feeds import fetch_feed

    served = {"body": THREATFOX_EXPORT.encode()}

    class Feed(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/feed.csv":
                self.send_error(404, "no such feed")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.end_headers()
            self.wfile.write(served["body"])

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(ValueError, match="only https"):
            fetch_feed(f"{base}/feed.csv")
        feed = fetch_feed(f"{base}/feed.csv", allow_http=True)
        assert {e.value for e in feed.entries} >= {"evil-c2.example", "198.51.100.7"}
        with pytest.raises(ValueError, match="larger than"):
            fetch_feed(f"{base}/feed.csv", allow_http=True, max_bytes=100)

        db = f"sqlite:///{tmp_path / 'a.db'}"
        runner = CliRunner()
        args = ["rules", "refresh", "tf", "--url", f"{base}/feed.csv", "--allow-http"]
        res = runner.invoke(app, [*args, "--enable", "--db", db])
        assert res.exit_code == 0, res.output
        assert "version 1, enabled" in res.output
        served["body"] += (
            b'"2024-05-02 10:00:00", "1005", "new-c2.example", "domain", "botnet_cc", "", "", "X", "", "90", "", "", "0", "x"\n'
        )
        res = runner.invoke(app, [*args, "--db", db])
        assert "version 2, draft" in res.output  # a changed feed waits for approval
        res = runner.invoke(app, [*args[:4], f"{base}/missing.csv", "--allow-http", "--db", db])
        assert res.exit_code == 1 and "HTTP 404" in res.output
        with AlertStore.open(db) as store:
            d = DefinitionStore(store).get("tf")
            assert d.version == 2 and "new-c2.example" in d.body
    finally:
        server.shutdown()
