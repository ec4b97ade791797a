"""Exports: JSON lines, ECS, webhook (local HTTP server that fails first), syslog (local sockets)."""

from __future__ import annotations

import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dnsieve.alerts import Alert, MemoryAlertStore
from dnsieve.alerts.export import (
    SyslogSender,
    WebhookError,
    format_syslog,
    parse_hostport,
    post_webhook,
    to_ecs,
    write_lines,
)
from test_alert_store import one, real_anomalies

T0 = datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def alerts() -> list[Alert]:
    store = MemoryAlertStore()
    store.upsert_anomalies(real_anomalies(), now=T0)
    out = store.list_alerts()
    store.set_threat_probabilities({out[0].id: 0.91})
    store.record_verdict(out[1].id, "benign", "alice", now=T0)
    return store.list_alerts()


def test_jsonl_carries_the_required_fields(alerts: list[Alert]) -> None:
    buf = io.StringIO()
    assert write_lines(alerts, buf, "jsonl") == len(alerts)
    lines = buf.getvalue().splitlines()
    assert len(lines) == len(alerts)
    for line, a in zip(lines, alerts, strict=True):
        rec = json.loads(line)
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
            assert key in rec
        assert rec["id"] == a.id and rec["evidence"] == a.evidence
        assert isinstance(rec["evidence"], dict)  # nested, not a JSON string
        assert rec["window_start"].endswith("Z")


def test_ecs_field_names(alerts: list[Alert]) -> None:
    docs = {a.entity_type: to_ecs(a) for a in alerts}
    pair = docs["client_domain"]
    assert pair["event"]["kind"] == "alert"
    assert pair["event"]["category"] == ["network"]
    assert pair["event"]["module"] == "dnsieve"
    assert pair["rule"]["name"] == "beacon"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", pair["@timestamp"])
    assert "ip" in pair["source"] and "name" in pair["dns"]["question"]
    assert "dns" not in docs["client"] and docs["client"]["source"]["ip"]
    dom = docs["domain"]
    assert "source" not in dom
    q = dom["dns"]["question"]
    assert q["registered_domain"] == q["name"]  # volume alerts are on registered domains
    top = to_ecs(alerts[0])
    assert top["event"]["risk_score"] == 91.0 and top["event"]["severity"] == 99
    assert 0 <= to_ecs(alerts[-1])["event"]["risk_score"] <= 100


def test_ecs_of_a_subdomain_and_hostile_names() -> None:
    store = MemoryAlertStore()
    store.upsert_anomalies(
        one("x\\x00\\x1b[31m.dnsc.r-1x.co.uk", evidence={"why": "\u202e"}), now=T0
    )
    doc = to_ecs(store.list_alerts()[0])
    q = doc["dns"]["question"]
    assert q["registered_domain"] == "r-1x.co.uk" and q["top_level_domain"] == "co.uk"
    assert q["subdomain"] == "x\\x00\\x1b[31m.dnsc"
    line = io.StringIO()
    write_lines(store.list_alerts(), line, "ecs")
    assert json.loads(line.getvalue())["dnsieve"]["evidence"] == {"why": "\u202e"}


# --------------------------------------------------------------------------- webhook


class _Hook:
    """A local HTTP receiver that answers ``fail_status`` to the first ``fail`` requests."""

    def __init__(self, fail: int, fail_status: int = 503, retry_after: str | None = None) -> None:
        self.fail, self.fail_status, self.retry_after = fail, fail_status, retry_after
        self.requests: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.requests.append(
                    {
                        "body": body,
                        "type": self.headers["Content-Type"],
                        "auth": self.headers.get("Authorization"),
                    }
                )
                if len(hook.requests) <= hook.fail:
                    self.send_response(hook.fail_status)
                    if hook.retry_after:
                        self.send_header("Retry-After", hook.retry_after)
                    self.end_headers()
                    return
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_factory() -> Iterator[Any]:
    hooks: list[_Hook] = []

    def make(*args: Any, **kwargs: Any) -> _Hook:
        hooks.append(_Hook(*args, **kwargs))
        return hooks[-1]

    yield make
    for h in hooks:
        h.close()


def test_webhook_retries_with_exponential_backoff(alerts: list[Alert], hook_factory: Any) -> None:
    hook = hook_factory(fail=3)
    slept: list[float] = []
    rep = post_webhook(
        alerts,
        hook.url,
        batch_size=25,
        jitter=0,
        sleep=slept.append,
        headers={"Authorization": "Bearer t"},
    )
    assert slept == [0.5, 1.0, 2.0]
    assert (rep.sent, rep.retries) == (len(alerts), 3)
    assert rep.batches == -(-len(alerts) // 25)
    delivered = [json.loads(r["body"]) for r in hook.requests[3:]]
    assert sum(len(b) for b in delivered) == len(alerts)
    assert [d["event"]["id"] for b in delivered for d in b] == [a.id for a in alerts]
    assert hook.requests[0]["type"] == "application/json" and hook.requests[0]["auth"] == "Bearer t"


def test_webhook_honours_retry_after_and_caps_backoff(
    alerts: list[Alert], hook_factory: Any
) -> None:
    hook = hook_factory(fail=2, fail_status=429, retry_after="7")
    slept: list[float] = []
    post_webhook(alerts[:3], hook.url, jitter=0, sleep=slept.append, max_backoff=5.0)
    assert slept == [5.0, 5.0]


def test_webhook_does_not_retry_a_client_error(alerts: list[Alert], hook_factory: Any) -> None:
    hook = hook_factory(fail=10, fail_status=400)
    slept: list[float] = []
    with pytest.raises(WebhookError, match="HTTP 400"):
        post_webhook(alerts, hook.url, sleep=slept.append)
    assert slept == [] and len(hook.requests) == 1


def test_webhook_gives_up_after_max_retries(alerts: list[Alert]) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    slept: list[float] = []
    with pytest.raises(WebhookError, match="after 4 attempts") as info:
        post_webhook(
            alerts, f"http://127.0.0.1:{port}/", max_retries=3, jitter=0, sleep=slept.append
        )
    assert slept == [0.5, 1.0, 2.0]
    assert info.value.report.sent == 0
    with pytest.raises(ValueError, match="http"):
        post_webhook(alerts, "file:///etc/passwd")


# --------------------------------------------------------------------------- syslog

RFC5424 = re.compile(
    rb"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) "
    rb"(?P<pid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) (?P<sd>\[.*?(?<!\\)\]) (?P<msg>.*)$",
    re.DOTALL,
)
SD_PARAM = re.compile(rb' ([!-~]{1,32}?)="((?:[^"\\\]\\]|\\.)*)"')


def test_syslog_format(alerts: list[Alert]) -> None:
    a = alerts[0]
    msg = format_syslog(a, hostname="sensor 1", procid="99", now=T0)
    m = RFC5424.match(msg)
    assert m, msg
    assert int(m["pri"]) == 16 * 8 + 2  # local0, critical (P(threat) 0.91) → crit
    assert m["ts"] == b"2024-05-01T12:00:00.000000Z" and m["host"] == b"sensor1"
    assert m["msgid"] == b"alert" and m["sd"].startswith(b'[dnsieve@32473 id="' + a.id.encode())
    assert json.loads(m["msg"])["event"]["id"] == a.id
    assert msg.isascii()


def test_syslog_escapes_hostile_structured_data() -> None:
    store = MemoryAlertStore()
    store.upsert_anomalies(one('x"] [evil k="v\\\n.example'), now=T0)
    msg = format_syslog(store.list_alerts()[0], hostname="h", now=T0, msg_format="text")
    assert b"\n" not in msg
    m = RFC5424.match(msg)
    assert m is not None
    params = dict(SD_PARAM.findall(m["sd"]))
    assert set(params) == {b"id", b"detector", b"entity", b"status", b"severity", b"score"}
    unescaped = re.sub(rb"\\(.)", rb"\1", params[b"entity"])
    assert unescaped == b'x"] [evil k="v\\\\x0a.example'


def test_syslog_udp_and_tcp_to_local_sockets(alerts: list[Alert]) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    with SyslogSender("127.0.0.1", udp.getsockname()[1], "udp") as s:
        assert s.send(alerts[:3], hostname="h", now=T0) == 3
    got = [udp.recv(65535) for _ in range(3)]
    udp.close()
    assert all(RFC5424.match(g) for g in got)
    assert [json.loads(RFC5424.match(g)["msg"])["event"]["id"] for g in got] == [
        a.id for a in alerts[:3]
    ]  # type: ignore[index]

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(5)
    received = bytearray()

    def accept() -> None:
        conn, _ = srv.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    t = threading.Thread(target=accept)
    t.start()
    with SyslogSender("127.0.0.1", srv.getsockname()[1], "tcp") as s:
        s.send(alerts, hostname="h", now=T0)
    t.join(5)
    srv.close()
    frames, buf = [], bytes(received)
    while buf:  # RFC 6587 octet counting: "LEN SP MSG"
        length, _, rest = buf.partition(b" ")
        frames.append(rest[: int(length)])
        buf = rest[int(length) :]
    assert len(frames) == len(alerts) and all(RFC5424.match(f) for f in frames)


def test_syslog_udp_falls_back_to_text_for_big_messages() -> None:
    store = MemoryAlertStore()
    store.upsert_anomalies(one("big.example", evidence={"names": ["a" * 60] * 200}), now=T0)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(5)
    with SyslogSender("127.0.0.1", udp.getsockname()[1], "udp", max_udp=2048) as s:
        s.send(store.list_alerts(), hostname="h", now=T0)
    got = udp.recv(65535)
    udp.close()
    assert len(got) <= 2048 and got.endswith(b"[new]")


def test_parse_hostport() -> None:
    assert parse_hostport("10.0.0.1:1514") == ("10.0.0.1", 1514)
    assert parse_hostport("[2001:db8::1]") == ("2001:db8::1", 514)
    for bad in ("host:0", "host:x", ":514"):
        with pytest.raises(ValueError):
            parse_hostport(bad)


def test_export_of_an_empty_store_is_empty() -> None:
    buf = io.StringIO()
    assert write_lines(MemoryAlertStore().list_alerts(), buf, "ecs") == 0
    assert buf.getvalue() == ""
