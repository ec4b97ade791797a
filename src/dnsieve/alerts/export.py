"""Alert exports: JSON lines, Elastic Common Schema, webhook, syslog (RFC 5424).

Formats
-------
``jsonl``
    one flat object per alert: ``id``, ``detector``, ``entity_type``,
    ``entity``, ``window_start``, ``window_end``, ``score``, ``p_value``,
    ``threat_probability``, ``status``, ``severity``, ``times_seen``,
    ``first_seen``, ``last_seen``, ``suppressed_by`` and the nested ``evidence``.
``ecs``
    Elastic Common Schema field names (:func:`to_ecs`): ``@timestamp``,
    ``event.kind: alert``, ``event.category: [network]``, ``event.module:
    dnsieve``, ``rule.name``, ``dns.question.name``,
    ``dns.question.registered_domain``, ``source.ip``, ``event.risk_score``,
    ``event.severity``; what ECS has no field for lives under ``dnsieve.*``.

Destinations
------------
* a file or stdout (:func:`write_lines`);
* a webhook (:func:`post_webhook`): JSON arrays of documents, retried with
  exponential backoff on connection errors, timeouts, 408, 429 and 5xx
  (``Retry-After`` is honoured), never on other 4xx;
* syslog (:func:`format_syslog`, :class:`SyslogSender`): RFC 5424 messages over
  UDP (one per datagram) or TCP (RFC 6587 octet counting).

>>> from datetime import datetime, UTC
>>> from dnsieve.alerts.base import Alert
>>> t = datetime(2024, 5, 1, 12, tzinfo=UTC)
>>> a = Alert("0d058b026caeef4eafd3e616", "tunnel", "client_domain", "10.0.0.5|a.evil.co.uk",
...     "a.evil.co.uk", "10.0.0.5", t, t, 7.5, 1e-6, 0.8, "new", "high", {"q": 1}, None, t, t, 1, None)
>>> doc = to_ecs(a)
>>> doc["event"]["kind"], doc["rule"]["name"], doc["source"]["ip"]
('alert', 'tunnel', '10.0.0.5')
>>> doc["dns"]["question"]["registered_domain"], doc["event"]["risk_score"]
('evil.co.uk', 80.0)
>>> format_syslog(a, hostname="sensor1", procid="42", now=t, msg_format="text")[:60]
b'<131>1 2024-05-01T12:00:00.000000Z sensor1 dnsieve 42 alert '
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import random
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Literal

from dnsieve.alerts.base import Alert

__all__ = [
    "ECS_VERSION",
    "FACILITIES",
    "ExportFormat",
    "SyslogSender",
    "WebhookError",
    "WebhookReport",
    "format_syslog",
    "parse_hostport",
    "post_webhook",
    "to_ecs",
    "to_jsonl",
    "write_lines",
]

ExportFormat = Literal["jsonl", "ecs"]
ECS_VERSION = "8.11.0"

#: ECS ``event.severity`` per alert severity (the Elastic detection-rule convention).
ECS_SEVERITY = {"low": 21, "medium": 47, "high": 73, "critical": 99}
#: syslog severity per alert severity: crit, err, warning, notice.
SYSLOG_SEVERITY = {"critical": 2, "high": 3, "medium": 4, "low": 5}
FACILITIES = {
    "user": 1,
    "daemon": 3,
    "auth": 4,
    "security": 13,
    **{f"local{i}": 16 + i for i in range(8)},
}
SD_ID = "dnsieve@32473"  # 32473: the private enterprise number RFC 5612 reserves for examples


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return ts.isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_jsonl(alert: Alert) -> dict[str, Any]:
    """The flat JSON-lines record of an alert."""
    return {
        "id": alert.id,
        "detector": alert.detector,
        "entity_type": alert.entity_type,
        "entity": alert.entity,
        "window_start": _iso(alert.window_start),
        "window_end": _iso(alert.window_end),
        "score": alert.score,
        "p_value": alert.p_value,
        "threat_probability": alert.threat_probability,
        "status": alert.status,
        "severity": alert.severity,
        "times_seen": alert.times_seen,
        "first_seen": _iso(alert.first_seen),
        "last_seen": _iso(alert.last_seen),
        "suppressed_by": alert.suppressed_by,
        "episode_start": _iso(alert.episode_start),
        "episode_end": _iso(alert.episode_end),
        "n_windows": alert.n_windows,
        "windows": alert.windows,
        **_why(alert),
        "evidence": alert.evidence,
    }


def _why(alert: Alert) -> dict[str, Any]:
    """``reason`` (one sentence with its numbers) and ``clients`` (the addresses to look
    at) of :func:`dnsieve.explain.explain`."""
    from dnsieve.explain import explain

    hours = (alert.window_end - alert.window_start).total_seconds() / 3600.0
    e = explain(alert.detector, alert.entity, alert.evidence, alert.entity_type, hours or None)
    return {"reason": e.reason, "clients": e.clients}


def _risk_score(alert: Alert) -> float:
    if alert.threat_probability is not None:
        return round(100.0 * alert.threat_probability, 2)
    return float(ECS_SEVERITY.get(alert.severity, 21))


_SPLITTER: Any = None


def _split(domain: str) -> tuple[str, str, str]:
    global _SPLITTER
    if _SPLITTER is None:
        from dnsieve.domains import DomainSplitter

        _SPLITTER = DomainSplitter()
    parts: tuple[str, str, str] = _SPLITTER.split(domain)
    return parts


def to_ecs(alert: Alert) -> dict[str, Any]:
    """An alert (one episode) as an Elastic Common Schema document (nested objects).

    ``event.start``/``event.end``/``event.duration`` span the episode; its worst window
    and its windows are under ``dnsieve.alert``."""
    start = alert.episode_start or alert.window_start
    end = alert.episode_end or alert.window_end
    duration_ns = int((end - start).total_seconds() * 1_000_000) * 1000
    why = _why(alert)
    doc: dict[str, Any] = {
        "@timestamp": _iso(start),
        "ecs": {"version": ECS_VERSION},
        "message": f"{_summary(alert)}: {why['reason']}",
        "event": {
            "kind": "alert",
            "category": ["network"],
            "type": ["info"],
            "module": "dnsieve",
            "dataset": "dnsieve.alert",
            "id": alert.id,
            "start": _iso(start),
            "end": _iso(end),
            "duration": duration_ns,
            "created": _iso(alert.first_seen),
            "risk_score": _risk_score(alert),
            "severity": ECS_SEVERITY.get(alert.severity, 21),
        },
        "rule": {
            "name": alert.detector,
            "id": f"dnsieve.{alert.detector}",
            "ruleset": "dnsieve",
            "category": alert.entity_type,
        },
        "tags": ["dnsieve", alert.status],
        "dnsieve": {
            "alert": {
                "status": alert.status,
                "severity": alert.severity,
                "score": alert.score,
                "p_value": alert.p_value,
                "threat_probability": alert.threat_probability,
                "entity": alert.entity,
                "entity_type": alert.entity_type,
                "times_seen": alert.times_seen,
                "last_seen": _iso(alert.last_seen),
                "suppressed_by": alert.suppressed_by,
                "n_windows": alert.n_windows,
                "window_start": _iso(alert.window_start),
                "window_end": _iso(alert.window_end),
                "windows": alert.windows,
                **why,
            },
            "evidence": alert.evidence,
        },
    }
    techniques = [str(t) for t in (alert.evidence or {}).get("techniques") or []]
    if techniques:  # ECS threat fields: the MITRE ATT&CK techniques the alert evidences
        doc["threat"] = {
            "framework": "MITRE ATT&CK",
            "technique": {
                "id": techniques,
                "reference": [
                    f"https://attack.mitre.org/techniques/{t.replace('.', '/')}/"
                    for t in techniques
                ],
            },
        }
    if alert.domain:
        reg, sub, tld = _split(alert.domain)
        q: dict[str, Any] = {"name": alert.domain}
        if reg:
            q["registered_domain"] = reg
        if sub:
            q["subdomain"] = sub
        if tld:
            q["top_level_domain"] = tld
        doc["dns"] = {"question": q}
    if alert.client:
        try:
            ipaddress.ip_address(alert.client)
            doc["source"] = {"ip": alert.client}
        except ValueError:
            doc["source"] = {"address": alert.client}
    return doc


def _summary(alert: Alert) -> str:
    tp = (
        f" P(threat) {alert.threat_probability:.2f}" if alert.threat_probability is not None else ""
    )
    span = f" over {alert.n_windows} windows" if alert.n_windows > 1 else ""
    return (
        f"dnsieve {alert.detector} alert on {alert.entity}: score {alert.score:.3g}{tp}"
        f"{span} [{alert.status}]"
    )


def _dump(doc: Mapping[str, Any]) -> str:
    return json.dumps(
        doc, sort_keys=False, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )


def render(alert: Alert, fmt: ExportFormat) -> dict[str, Any]:
    """The document of one alert in ``fmt``."""
    if fmt == "ecs":
        return to_ecs(alert)
    if fmt == "jsonl":
        return to_jsonl(alert)
    raise ValueError(f"unknown export format {fmt!r}; choose jsonl or ecs")


def write_lines(alerts: Iterable[Alert], out: IO[str], fmt: ExportFormat = "jsonl") -> int:
    """Write one JSON document per line; returns the number written."""
    n = 0
    for a in alerts:
        out.write(_dump(render(a, fmt)))
        out.write("\n")
        n += 1
    return n


# --------------------------------------------------------------------------- webhook


class WebhookError(RuntimeError):
    """A batch could not be delivered after all retries (or was refused with a 4xx)."""

    def __init__(self, message: str, report: WebhookReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class WebhookReport:
    """What :func:`post_webhook` delivered."""

    sent: int = 0
    batches: int = 0
    attempts: int = 0
    retries: int = 0
    delays: list[float] = field(default_factory=list)


RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def _batches(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for it in items:
        batch.append(it)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def post_webhook(
    alerts: Iterable[Alert],
    url: str,
    fmt: ExportFormat = "ecs",
    batch_size: int = 100,
    max_retries: int = 5,
    backoff: float = 0.5,
    max_backoff: float = 30.0,
    jitter: float = 0.1,
    timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> WebhookReport:
    """POST alerts as JSON arrays of ``batch_size`` documents.

    A failed attempt is retried up to ``max_retries`` times, waiting
    ``min(max_backoff, backoff · 2**n)`` (plus up to ``jitter`` of it at
    random), or the server's ``Retry-After`` when it gives one.  Raises
    :class:`WebhookError` (with the report so far) when a batch cannot be
    delivered; earlier batches stay delivered.
    """
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook URL must be http:// or https://, got {url!r}")
    rng = rng or random.Random()
    report = WebhookReport()
    hdrs = {"Content-Type": "application/json", "User-Agent": "dnsieve"}
    hdrs.update(headers or {})
    for batch in _batches((render(a, fmt) for a in alerts), max(1, batch_size)):
        body = json.dumps(batch, ensure_ascii=False, allow_nan=False).encode("utf-8")
        attempt = 0
        while True:
            report.attempts += 1
            retry_after: float | None = None
            try:
                req = urllib.request.Request(url, data=body, headers=hdrs, method="POST")
                with urllib.request.urlopen(req, timeout=timeout) as resp:
                    resp.read()
                break
            except urllib.error.HTTPError as exc:
                if exc.code not in RETRY_STATUS:
                    raise WebhookError(
                        f"webhook refused the alerts: HTTP {exc.code} {exc.reason}", report
                    ) from None
                retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
                why = f"HTTP {exc.code}"
            except (OSError, http.client.HTTPException) as exc:
                why = str(getattr(exc, "reason", exc))
            if attempt >= max_retries:
                raise WebhookError(
                    f"webhook failed after {attempt + 1} attempts ({why}); "
                    f"{report.sent} alerts were delivered before",
                    report,
                )
            delay = min(max_backoff, backoff * (2**attempt))
            delay += rng.uniform(0, jitter * delay) if jitter > 0 else 0.0
            if retry_after is not None:
                delay = min(max_backoff, max(delay, retry_after))
            report.delays.append(delay)
            report.retries += 1
            sleep(delay)
            attempt += 1
        report.sent += len(batch)
        report.batches += 1
    return report


# --------------------------------------------------------------------------- syslog


def _printusascii(value: str, limit: int) -> str:
    s = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return s or "-"


def _sd_value(value: object) -> str:
    s = str(value)
    s = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in s)
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_syslog(
    alert: Alert,
    hostname: str | None = None,
    app_name: str = "dnsieve",
    procid: str | None = None,
    facility: int = FACILITIES["local0"],
    now: datetime | None = None,
    msg_format: Literal["json", "text"] = "json",
) -> bytes:
    """One RFC 5424 message.

    ``PRI`` combines ``facility`` with the alert's severity (critical → crit,
    high → err, medium → warning, low → notice).  Structured data
    ``[dnsieve@32473 ...]`` carries id, detector, entity, status, score and
    P(threat); the MSG is the ECS document as compact ASCII JSON, or a
    one-line summary (``msg_format="text"``).  Attacker-controlled strings are
    escaped: no control character reaches the wire.
    """
    if not 0 <= facility <= 23:
        raise ValueError(f"syslog facility must be 0..23, got {facility}")
    pri = facility * 8 + SYSLOG_SEVERITY.get(alert.severity, 5)
    ts = _iso(now or datetime.now(UTC))
    host = _printusascii(hostname if hostname is not None else socket.gethostname(), 255)
    app = _printusascii(app_name, 48)
    pid = _printusascii(procid if procid is not None else str(os.getpid()), 128)
    params = {
        "id": alert.id,
        "detector": alert.detector,
        "entity": alert.entity,
        "status": alert.status,
        "severity": alert.severity,
        "score": f"{alert.score:.6g}",
    }
    if alert.threat_probability is not None:
        params["threat_probability"] = f"{alert.threat_probability:.4f}"
    sd = "[" + SD_ID + "".join(f' {k}="{_sd_value(v)}"' for k, v in params.items()) + "]"
    if msg_format == "json":
        msg = json.dumps(to_ecs(alert), ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    else:
        msg = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in _summary(alert))
        msg = msg.encode("ascii", "backslashreplace").decode("ascii")
    return f"<{pri}>1 {ts} {host} {app} {pid} alert {sd} {msg}".encode()


def parse_hostport(value: str, default_port: int = 514) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, or a bare host (port 514).

    >>> parse_hostport("[::1]:6514"), parse_hostport("siem.local")
    (('::1', 6514), ('siem.local', 514))
    """
    v = value.strip()
    if v.startswith("["):
        host, _, rest = v[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif v.count(":") == 1:
        host, port = v.split(":")
    else:
        host, port = v, ""
    if not host:
        raise ValueError(f"no host in {value!r}")
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    if not 0 < p < 65536:
        raise ValueError(f"bad port in {value!r}")
    return host, p


class SyslogSender:
    """Sends RFC 5424 messages to one collector over UDP or TCP (octet counting).

    UDP messages longer than ``max_udp`` bytes are sent with the short text
    MSG instead of the JSON document, so no datagram is truncated.
    """

    def __init__(
        self,
        host: str,
        port: int = 514,
        protocol: Literal["udp", "tcp"] = "udp",
        timeout: float = 10.0,
        max_udp: int = 8192,
    ) -> None:
        self.host = host
        self.port = port
        self.protocol = protocol
        self.timeout = timeout
        self.max_udp = max_udp
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            info = socket.getaddrinfo(
                self.host,
                self.port,
                type=socket.SOCK_DGRAM if self.protocol == "udp" else socket.SOCK_STREAM,
            )[0]
            sock = socket.socket(info[0], info[1], info[2])
            sock.settimeout(self.timeout)
            sock.connect(info[4])
            self._sock = sock
        return self._sock

    def send(self, alerts: Iterable[Alert], **fmt: Any) -> int:
        """Send one message per alert; returns how many were sent."""
        sock = self._connect()
        n = 0
        for a in alerts:
            msg = format_syslog(a, **fmt)
            if self.protocol == "udp":
                if len(msg) > self.max_udp:
                    msg = format_syslog(a, **{**fmt, "msg_format": "text"})
                sock.send(msg)
            else:
                sock.sendall(str(len(msg)).encode() + b" " + msg)
            n += 1
        return n

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SyslogSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
