"""``dnsieve alerts`` and ``dnsieve allow`` end to end on a SQLite store of real-data alerts."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dnsieve.alerts import AlertStore
from dnsieve.cli import app
from test_alert_store import _episodes, one, real_anomalies


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A SQLite store holding the real-data anomalies plus one hostile name."""
    url = f"sqlite:///{tmp_path / 'alerts.db'}"
    with AlertStore.open(url) as s:
        s.upsert_anomalies(real_anomalies())
        s.upsert_anomalies(one("[bold red]x[/bold red].\\x1b[2J.evil.com", score=0.5))
    return url


def run(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner(env={"COLUMNS": "160", **(env or {})}).invoke(app, list(args))


def _list(db: str, *args: str) -> list[dict[str, Any]]:
    res = run("alerts", "list", "--json", "--limit", "1000", "--db", db, *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_list_filters_and_env_default(db: str, tmp_path: Path) -> None:
    rows = _list(db)
    n = _episodes(real_anomalies()).height + 1  # one alert per episode, and the hostile one
    assert len(rows) == n
    assert {r["detector"] for r in _list(db, "--detector", "nxdomain")} == {"nxdomain"}
    res = run("alerts", "list", "--limit", "5", env={"DNSIEVE_DB": db})
    assert res.exit_code == 0 and "5 alert(s)" in res.output and f"new {n}" in res.output
    res = run("alerts", "list", "--status", "bogus", "--db", db)
    assert res.exit_code == 2 and "unknown status" in res.output


def test_show_escapes_markup_and_accepts_prefixes(db: str) -> None:
    hostile = next(r for r in _list(db) if r["entity"].startswith("[bold"))
    res = run("alerts", "show", hostile["id"][:10], "--db", db)
    assert res.exit_code == 0, res.output
    assert "[bold red]x[/bold red]" in res.output  # shown literally, not interpreted
    res = run("alerts", "show", "nothex!", "--db", db)
    assert res.exit_code == 1 and "hexadecimal" in res.output
    res = run("alerts", "show", hostile["id"], "--json", "--db", db)
    assert json.loads(res.stdout)["entity"] == hostile["entity"]


def test_verdict_audits_and_updates_the_threat_model(db: str) -> None:
    rows = _list(db)
    target = next(
        r for r in rows if r["entity"] == "172.18.0.3|example.attack"
    )  # the iodine client
    res = run(
        "alerts",
        "verdict",
        target["id"][:12],
        "threat",
        "--comment",
        "iodine",
        "--user",
        "alice",
        "--db",
        db,
    )
    assert res.exit_code == 0, res.output
    assert "new → threat" in res.output and "threat model v" in res.output
    with AlertStore.open(db) as s:
        a = s.get_alert(target["id"])
        assert a.status == "threat"
        trail = s.audit_trail(a.id)
        assert [(e.actor, e.new_status, e.comment) for e in trail] == [
            ("alice", "threat", "iodine")
        ]
        versions = s.list_model_versions()
        assert len(versions) == 1 and versions[0].active and versions[0].blob
        assert versions[0].metrics["alert_id"] == a.id
        assert all(x.threat_probability is not None for x in s.list_alerts(status="open"))
    # a second verdict builds on the first model version
    other = next(r for r in rows if r["detector"] == "volume")
    res = run("alerts", "verdict", other["id"], "not-relevant", "--db", db, env={"USER": "bob"})
    assert res.exit_code == 0, res.output
    with AlertStore.open(db) as s:
        v2, v1 = s.list_model_versions()
        assert v2.parent_id == v1.id and not v1.active
        assert s.audit_trail(other["id"])[0].actor == "bob"
    res = run("alerts", "verdict", target["id"], "threat", "--db", db)
    assert res.exit_code == 1 and "already 'threat'" in res.output
    res = run("alerts", "verdict", target["id"], "maybe", "--db", db)
    assert res.exit_code == 2


def test_export_formats_and_statuses(db: str, tmp_path: Path) -> None:
    rows = _list(db)
    run("alerts", "verdict", rows[0]["id"], "benign", "--no-learn", "--db", db)
    out = tmp_path / "open.jsonl"
    res = run("alerts", "export", "--out", str(out), "--db", db)
    n = len(rows)  # exports count episodes, as the queue does
    assert res.exit_code == 0 and f"exported {n - 1}" in res.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(recs) == n - 1 and all(r["status"] == "new" for r in recs)
    assert sum(r["n_windows"] for r in recs) + rows[0]["n_windows"] == len(real_anomalies()) + 1
    assert all(1 <= len(r["windows"]) <= r["n_windows"] for r in recs)
    for key in (
        "id",
        "detector",
        "entity",
        "window_start",
        "window_end",
        "score",
        "threat_probability",
        "status",
        "evidence",
    ):
        assert key in recs[0]
    res = run("alerts", "export", "--format", "ecs", "--status", "all", "--db", db)
    assert res.exit_code == 0
    docs = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(docs) == n and docs[0]["event"]["kind"] == "alert"
    assert all(d["event"]["start"] <= d["dnsieve"]["alert"]["window_start"] for d in docs)
    assert any(d["dnsieve"]["alert"]["status"] == "benign" for d in docs)
    assert run("alerts", "export", "--format", "xml", "--db", db).exit_code == 2


def test_allow_add_list_remove(db: str) -> None:
    before = _list(db)
    res = run(
        "allow",
        "add",
        "--suffix",
        "WRCCDC.org.",
        "--reason",
        "competition infrastructure",
        "--author",
        "alice",
        "--expires",
        "7d",
        "--db",
        db,
    )
    assert res.exit_code == 0, res.output
    assert "suffix wrccdc.org" in res.output
    after = _list(db)
    assert all(not (r["entity"].endswith("wrccdc.org")) for r in after)
    assert len(after) < len(before)
    listed = json.loads(run("allow", "list", "--json", "--db", db).stdout)
    assert [(e["kind"], e["value"], e["author"]) for e in listed] == [
        ("suffix", "wrccdc.org", "alice")
    ]
    assert listed[0]["suppresses"] == len(before) - len(after)
    res = run(
        "allow",
        "add",
        "--detector",
        "nxdomain",
        "--entity",
        "172.18.0.3",
        "--reason",
        "lab",
        "--db",
        db,
    )
    assert res.exit_code == 0, res.output
    assert not any(r["detector"] == "nxdomain" and r["entity"] == "172.18.0.3" for r in _list(db))
    res = run("allow", "remove", str(listed[0]["id"]), "--db", db)
    assert res.exit_code == 0, res.output
    lab = [r for r in before if r["detector"] == "nxdomain" and r["entity"] == "172.18.0.3"]
    assert lab and len(_list(db)) == len(before) - len(lab)
    entries = json.loads(run("allow", "list", "--all", "--json", "--db", db).output)
    gone = [e for e in entries if e["id"] == listed[0]["id"]]
    assert gone and gone[0]["removed_at"] is not None  # kept, marked removed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--reason", "x"], "exactly one of"),
        (["--domain", "a.com", "--suffix", "b.com", "--reason", "x"], "exactly one of"),
        (["--domain", "a.com", "--reason", "x", "--expires", "soon"], "unreadable expiry"),
        (["--entity", "a.com", "--reason", "x"], "needs a detector"),
        (["--client", "10.0.0.999", "--reason", "x"], "CIDR"),
        (["--domain", "a.com", "--reason", "  "], "needs a reason"),
    ],
)
def test_allow_add_errors(db: str, args: list[str], message: str) -> None:
    res = run("allow", "add", *args, "--db", db)
    assert res.exit_code in (1, 2) and message in res.output, res.output


def test_allow_remove_unknown(db: str) -> None:
    res = run("allow", "remove", "42", "--db", db)
    assert res.exit_code == 1 and "no allow-list entry 42" in res.output


def test_unreachable_database_is_a_clean_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = run(
        "alerts",
        "list",
        "--db",
        f"postgresql+psycopg://u:secret@127.0.0.1:{port}/x?connect_timeout=2",
    )
    assert res.exit_code == 1 and "cannot open the alert store" in res.output
    assert "secret" not in res.output and "Traceback" not in res.output


def test_webhook_and_syslog_commands(db: str) -> None:
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(503 if len(bodies) == 1 else 204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
        res = run(
            "alerts", "webhook", url, "--batch-size", "50", "--detector", "volume", "--db", db
        )
    finally:
        srv.shutdown()
        srv.server_close()
    assert res.exit_code == 0, res.output
    assert "1 retried" in res.output
    docs = [d for b in bodies[1:] for d in json.loads(b)]
    assert docs and {d["rule"]["name"] for d in docs} == {"volume"}

    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    res = run(
        "alerts",
        "syslog",
        f"127.0.0.1:{udp.getsockname()[1]}",
        "--detector",
        "nxdomain",
        "--text",
        "--db",
        db,
    )
    assert res.exit_code == 0, res.output
    n = int(res.output.split("sent ")[1].split()[0])
    msgs = [udp.recv(65535) for _ in range(n)]
    udp.close()
    assert all(m.startswith(b"<13") and b" dnsieve " in m for m in msgs)
    assert run("alerts", "syslog", "host:notaport", "--db", db).exit_code == 2


def test_import_run_output(tmp_path: Path) -> None:
    """``dnsieve run --out`` lines (nested evidence, calibrated global_p) import idempotently."""
    rec = {
        "alert": True,
        "detector": "tunnel",
        "entity": "hacker-iodine.com",
        "entity_type": "domain",
        "evidence": {"queries": 95, "top_qtypes": [{"n": 95, "qtype": "NULL"}]},
        "global_p": 0.0009154812405642506,
        "p_value": None,
        "score": 21.40643652,
        "window_end": "2024-07-31T13:50:23.012875Z",
        "window_start": "2024-07-31T13:00:00Z",
    }
    f = tmp_path / "alerts.jsonl"
    f.write_text(json.dumps(rec) + "\n{broken\n" + json.dumps({"detector": "x"}) + "\n")
    db = f"sqlite:///{tmp_path / 'a.db'}"
    res = run("alerts", "import", str(f), "--json", "--db", db)
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert (rep["inserted"], rep["rejects"]) == (1, {"not_json": 1, "missing_key": 1})
    res = run("alerts", "import", str(f), "--db", db)
    assert "1 window(s): 0 new alert(s), 1 stored one(s) extended or seen again" in res.output
    (a,) = _list(db)
    assert a["p_value"] == rec["global_p"] and a["times_seen"] == 2
    assert a["evidence"]["top_qtypes"][0]["qtype"] == "NULL"
    assert run("alerts", "import", str(tmp_path / "nope.jsonl"), "--db", db).exit_code == 2
