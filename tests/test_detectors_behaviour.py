"""Behaviour of the tunnel, NXDOMAIN, beacon, visitors, profile and fast-flux
detectors on real query names and on their own examples.

Query-name sets (netrack, Bubnov 2019, DNSExfiltrator) carry names but no
timestamps or clients, so :func:`names_to_events` builds canonical events from
them: one client per tool, one query per second in file order, qtype A, sensor
= the file.  Bubnov's tunnel rows had their base zone stripped by the dataset
authors, so each tool's rows get a synthetic zone ``<tool>-bubnov.com``;
the plain rows are full domain names and are used as they are.  The domain
split is the real one (:class:`dnsieve.ingest.base.ReadContext` →
``canonicalize``).
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from dnsieve.detectors import DetectContext, get
from dnsieve.ingest.base import IngestStats, ReadContext, canonicalize

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def names_to_events(
    names: list[str], client: str = "10.9.0.1", sensor: str = "names"
) -> pl.DataFrame:
    """Canonical events from bare query names: one query per second, one client."""
    df = pl.DataFrame(
        {
            "ts": [float(T0.timestamp()) + i for i in range(len(names))],
            "src_ip": [client] * len(names),
            "qname": names,
            "qtype": ["A"] * len(names),
            "rcode": ["NOERROR"] * len(names),
        }
    )
    return canonicalize(df, ReadContext(sensor=sensor, stats=IngestStats()))


def tunnel_scores(events: pl.DataFrame) -> dict[str, float]:
    """Tunnel score per registered domain over one window spanning all events."""
    lo, hi = events["ts"].min(), events["ts"].max()
    ctx = DetectContext(
        start=lo, end=hi + timedelta(seconds=1), window=(hi - lo).total_seconds() + 1
    )  # type: ignore[operator,union-attr,arg-type]
    out = get("tunnel")().score(events, ctx)
    return dict(zip(out["entity"].to_list(), out["score"].to_list(), strict=True))


FLOOR = get("tunnel").score_floor  # type: ignore[attr-defined]


@pytest.mark.shared
@pytest.mark.parametrize(
    "tool,zone",
    [("dns2tcp", "hidemyself.org"), ("iodine", "hidemyself.org"), ("dnscapy", "example.org")],
)
def test_netrack_tunnel_names_flagged(shared_data: Path, tool: str, zone: str) -> None:
    rows = list(csv.DictReader((shared_data / "tunnel/netrack" / tool / "names.csv").open()))
    ev = names_to_events([r["qname"] for r in rows], sensor=tool)
    scores = tunnel_scores(ev)
    assert scores[zone] >= FLOOR, (tool, scores[zone])


@pytest.mark.shared
def test_netrack_plain_names_quiet(shared_data: Path) -> None:
    rows = list(csv.DictReader((shared_data / "tunnel/netrack/plain/names.csv").open()))
    scores = tunnel_scores(names_to_events([r["qname"] for r in rows], sensor="plain"))
    loud = {d: s for d, s in scores.items() if s >= FLOOR}
    assert loud == {}, loud


@pytest.mark.shared
def test_bubnov_dev(shared_data: Path) -> None:
    rows = list(csv.DictReader((shared_data / "tunnel/bubnov2019/dev.csv").open()))
    by_tool: dict[str, list[str]] = {}
    for r in rows:
        name = r["input"] if r["class"] == "plain" else f"{r['input']}.{r['class']}-bubnov.com"
        by_tool.setdefault(r["class"], []).append(name)
    for tool, names in by_tool.items():
        scores = tunnel_scores(names_to_events(names, client=f"10.8.0.{len(tool)}", sensor=tool))
        if tool == "plain":
            loud = {d: s for d, s in scores.items() if s >= FLOOR}
            assert loud == {}, loud
        else:
            assert scores[f"{tool}-bubnov.com"] >= FLOOR, (tool, scores)


def _exfil_rows(path: Path) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="utf-8-sig") as fh:
        for row in csv.reader(fh):
            if len(row) == 2:
                out.append((row[0], row[1]))
    return out


@pytest.mark.shared
def test_dnsexfiltrator(shared_data: Path) -> None:
    base = shared_data / "tunnel/dnsexfiltrator"
    pos = _exfil_rows(base / "FileSet2_PositiveTestFiles/U-FLNAME-65-2584.txt")
    scores = tunnel_scores(names_to_events([n for _, n in pos]))
    assert scores["captechutest.org"] >= FLOOR
    mixed = _exfil_rows(sorted((base / "FileSet3_MixedTestFiles").glob("*.csv"))[0])
    benign = [n for lab, n in mixed if lab == "0"]
    assert len(benign) > 10
    scores = tunnel_scores(names_to_events(benign, client="10.7.0.1"))
    loud = {d: s for d, s in scores.items() if s >= FLOOR}
    assert loud == {}, loud


def _top(name: str, **ctx_kw: float) -> tuple[pl.DataFrame, DetectContext]:
    cls = get(name)
    ex = cls.example(0)
    lo, hi = ex["ts"].min(), ex["ts"].max()
    start = lo + (hi - lo) / 2 if name in ("visitors", "profile") else lo  # type: ignore[operator]
    ctx = DetectContext(
        start=start, end=hi + timedelta(seconds=1), window=ctx_kw.get("window", 3600.0)
    )  # type: ignore[operator,arg-type]
    return cls().score(ex, ctx).sort("score", descending=True), ctx


@pytest.mark.parametrize(
    "name,threat",
    [
        ("tunnel", "tun-example.com"),
        ("nxdomain", "10.1.0.66"),
        ("beacon", "10.2.0.9|update-check.net"),
        ("fastflux", "flux-pharma.ru"),
    ],
)
def test_examples_separate_threat_from_benign(name: str, threat: str) -> None:
    out, _ = _top(name)
    floor = get(name).score_floor  # type: ignore[attr-defined]
    assert out["entity"][0] == threat
    assert out["score"][0] >= floor
    assert (out["score"][1:] < floor).all()
    ev = json.loads(out["evidence"][0])
    assert ev  # human-readable evidence present


def test_visitors_flags_new_domain_with_many_established_hosts() -> None:
    out, _ = _top("visitors", window=86400.0)
    assert out["entity"].to_list() == ["invoice-docs.top"]
    ev = json.loads(out["evidence"][0])
    assert ev["new_domain"] is True and ev["new_visitors"] == 8
    assert out["score"][0] >= get("visitors").score_floor  # type: ignore[attr-defined]


def test_profile_ranks_changed_host_first() -> None:
    out, _ = _top("profile", window=86400.0)
    assert out["entity"][0] == "10.3.0.13"
    ev = json.loads(out["evidence"][0])
    assert ev["jsd_qtypes"] > 0.2 and ev["new_domains"] >= 10


def test_visitors_and_profile_need_a_baseline() -> None:
    for name in ("visitors", "profile"):
        ex = get(name).example(0)
        lo, hi = ex["ts"].min(), ex["ts"].max()
        # one window over all the data: nothing before it to compare with
        ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=4 * 86400.0)  # type: ignore[operator]
        assert get(name)().score(ex, ctx).height == 0


def test_visitors_baseline_is_everything_before_the_window() -> None:
    """A one-shot run over the whole capture (ctx.start = first event): day two
    is scored against day one, so the masquerading domain is found without a
    pre-start baseline."""
    ex = get("visitors").example(0)
    lo, hi = ex["ts"].min(), ex["ts"].max()
    ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=86400.0)  # type: ignore[operator]
    out = get("visitors")().score(ex, ctx)
    assert out["entity"].to_list() == ["invoice-docs.top"]
    ev = json.loads(out["evidence"][0])
    assert ev["new_visitors"] == 8 and ev["new_domain"] is True
    assert "8 hosts that had never queried it" in ev["reason"]
    assert ev["clients"] and len(ev["clients"]) == 5


def test_tunnel_slow_exfiltration_over_long_window() -> None:
    """200 encoded names over a week, one every ~50 minutes: quiet per hour,
    flagged over the week."""
    import numpy as np

    rng = np.random.default_rng(1)
    names = [
        "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz234567"), 48)) + ".drop.slow-exfil.net"
        for _ in range(200)
    ]
    ev = names_to_events(names).with_columns(
        ts=pl.lit(T0) + pl.duration(seconds=pl.int_range(0, 200) * 3000)
    )
    det = get("tunnel")()
    hi = ev["ts"].max()
    week = det.score(ev, DetectContext(start=T0, end=hi + timedelta(seconds=1), window=7 * 86400.0))  # type: ignore[operator]
    hourly = det.score(ev, DetectContext(start=T0, end=hi + timedelta(seconds=1), window=3600.0))  # type: ignore[operator]
    assert week["score"].max() > 2 * hourly["score"].max()  # type: ignore[operator]
    assert week["score"].max() >= FLOOR  # type: ignore[operator]


def test_nxdomain_ignores_local_and_reverse_failures() -> None:
    names = [f"host{i}.corp.localdomain" for i in range(30)] + [
        f"{i}.1.168.192.in-addr.arpa" for i in range(30)
    ]
    ev = names_to_events(names).with_columns(rcode=pl.lit("NXDOMAIN"))
    ctx = DetectContext(start=T0, end=T0 + timedelta(hours=1), window=3600.0)
    assert get("nxdomain")().score(ev, ctx).height == 0


def test_visitors_counts_a_campaign_that_straddles_a_window_edge() -> None:
    """Ten established hosts visit a quiet site between 34:30 and 36:30, across the
    36:00 edge of the 3 h windows: counted whole (10 new visitors), not 5 + 5."""
    t0 = datetime(2024, 3, 4, tzinfo=UTC)
    rows = []
    for h in range(48):
        for c in range(30):
            for d in ("example.org", "wikipedia.org", "python.org"):
                rows.append((t0 + timedelta(hours=h, minutes=c), f"10.9.0.{c + 2}", d))
    for i in range(10):
        rows.append(
            (t0 + timedelta(hours=34, minutes=30 + 12 * i), f"10.9.0.{i + 2}", "quiet-site.com")
        )
    ev = pl.DataFrame(
        {
            "ts": [r[0] for r in rows],
            "src_ip": [r[1] for r in rows],
            "registered_domain": [r[2] for r in rows],
        }
    ).with_columns(pl.col("ts").dt.cast_time_unit("us"))
    ctx = DetectContext(start=t0, end=t0 + timedelta(hours=48), window=3600.0)
    out = get("visitors")().score(ev, ctx).filter(pl.col("entity") == "quiet-site.com")
    best = json.loads(out.sort("score")["evidence"][-1])
    assert best["new_visitors"] == 10
    assert float(out["score"].max()) >= get("visitors").score_floor  # type: ignore[arg-type,attr-defined]
    split = get("visitors")(lookback_hours=0.0).score(ev, ctx)
    split = split.filter(pl.col("entity") == "quiet-site.com")
    assert max(json.loads(e)["new_visitors"] for e in split["evidence"]) < 10
