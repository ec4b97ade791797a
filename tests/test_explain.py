"""explain(): every alert gets a one-sentence reason with its numbers and the clients to look at."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import polars as pl
import pytest

from dnsieve.detectors import DetectContext, available, get
from dnsieve.explain import MAX_CLIENTS, Explanation, explain, fmt_count, one_in


def _scored(name: str) -> pl.DataFrame:
    cls = get(name)
    ex = cls.example(0)
    time_col = "ts" if "ts" in ex.columns else "hour"  # events, or an hourly aggregate
    lo, hi = ex[time_col].min(), ex[time_col].max()
    if (hi - lo) > timedelta(hours=30):  # type: ignore[operator]
        # score the last day: the rest of the example is the detector's baseline
        lo = hi - timedelta(hours=23)  # type: ignore[operator]
    if time_col == "hour":
        hi = hi + timedelta(minutes=59)  # type: ignore[operator]
    ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=3600.0)  # type: ignore[operator,arg-type]
    return cls().score(ex, ctx).sort("score", descending=True)


@pytest.mark.parametrize("name", available())
def test_every_detector_gets_a_numeric_reason(name: str) -> None:
    """Own reason or fallback, each anomaly of each registered detector reads as a sentence
    that carries at least one number, and names no more than five clients."""
    out = _scored(name)  # every registered detector's example scores on its own
    assert out.height > 0, f"{name}'s example raises no anomaly: its reason is untested"
    for r in out.head(5).iter_rows(named=True):
        ev = json.loads(r["evidence"])
        got = explain(r["detector"], r["entity"], ev, r["entity_type"], 1.0)
        assert isinstance(got, Explanation)
        assert re.search(r"\d", got.reason), (name, got.reason)
        assert "\n" not in got.reason and len(got.reason) <= 400
        assert len(got.clients) <= MAX_CLIENTS
        if r["entity_type"] in ("client", "client_domain"):
            assert got.clients[0] == r["entity"].split("|")[0]


def test_tunnel_names_the_client_to_isolate() -> None:
    out = _scored("tunnel")
    top = json.loads(out["evidence"][0])
    assert top["clients"] == ["10.0.0.5"]
    assert isinstance(top["distinct_clients"], int)
    got = explain("tunnel", out["entity"][0], top)
    assert got.clients == ["10.0.0.5"]
    assert got.reason.startswith("10.0.0.5 sent 30 queries with 30 distinct encoded-looking")
    assert "under tun-example.com" in got.reason


def test_lookalike_reason_names_the_brand_and_the_busiest_client() -> None:
    out = _scored("lookalike")
    ev = json.loads(out.filter(pl.col("entity") == "xn--pypal-4ve.com")["evidence"][0])
    assert ev["reason"].startswith("xn--pypal-4ve.com imitates paypal.com")
    assert ev["clients"] and ev["reason"].split("; ")[1].startswith(ev["clients"][0])


@pytest.mark.parametrize(
    ("detector", "entity", "evidence", "expected"),
    [
        (  # a DGA alert of an older store: the infected host is in context_clients
            "dga",
            "ohwjpblenvjswvjtsaq.biz",
            {
                "client_dga_nxdomains": 198,
                "clients": 1,
                "context_clients": ["10.20.1.181"],
                "dga_probability": 0.9995,
                "queries": 1,
            },
            Explanation(
                "ohwjpblenvjswvjtsaq.biz looks machine-generated (DGA probability 1.00); "
                "10.20.1.181 got 198 NXDOMAIN answers for DGA-like names in 1 h",
                ["10.20.1.181"],
            ),
        ),
        (
            "nxdomain",
            "10.1.2.3",
            {"queries": 400, "nxdomain": 320, "nx_share": 0.8, "failed_domains": 176},
            Explanation(
                "10.1.2.3 got 320 NXDOMAIN answers for 176 distinct domains in 1 h "
                "(80\u00a0% of its queries)",
                ["10.1.2.3"],
            ),
        ),
        (
            "fastflux",
            "flux.example",
            {"distinct_ips": 135, "distinct_slash24": 130, "distinct_slash16": 120,
             "median_ttl": 55.5, "clients": 3},
            Explanation(
                "flux.example answered with 135 distinct addresses in 130 /24 and 120 /16 "
                "networks, median TTL 55.5 s in 1 h",
                [],
            ),
        ),
        (
            "volume",
            "play-car.com",
            {"current": {"queries": 72, "hours": 3},
             "baseline": {"expected_queries_per_hour": 0.4711},
             "effect": {"demand_ratio": 16.13}},
            Explanation("play-car.com was queried 72 times in 3 h, 16.1× its baseline of 0.471/h", []),
        ),
        (
            "someone_elses",
            "x.example",
            {"weird": 3.5, "nested": {"a": 1}},
            Explanation("someone_elses flagged x.example in 1 h: weird 3.5", []),
        ),
    ],
)  # fmt: skip
def test_fallback_reasons_of_older_evidence(
    detector: str, entity: str, evidence: dict[str, object], expected: Explanation
) -> None:
    assert explain(detector, entity, evidence, window_hours=1.0) == expected


def test_hostile_reason_is_one_line_of_text_and_clients_are_capped() -> None:
    ev = {
        "reason": "a\x00b\n<script>alert(1)</script>\t" + "x" * 1000,
        "clients": [f"10.0.0.{i}" for i in range(9)] + [{"not": "a client"}],
    }
    got = explain("tunnel", "evil.example", ev)
    assert "\x00" not in got.reason and "\n" not in got.reason
    assert got.reason.startswith("a b <script>")  # plain text: the page escapes it
    assert len(got.reason) == 400 and got.reason.endswith("…")
    assert got.clients == [f"10.0.0.{i}" for i in range(5)]
    assert explain("beacon", "10.9.9.9|c2.example", {"clients": ["10.1.1.1"]}).clients == [
        "10.9.9.9",
        "10.1.1.1",
    ]
    assert explain("tunnel", "x.example", None).reason == "tunnel flagged x.example"


@pytest.mark.parametrize(
    ("p", "text"),
    [(None, ""), (float("nan"), ""), (1.0, "1 in 1"), (0.5, "1 in 2"), (0.0004687, "1 in 2,100"),
     (1.8e-5, "1 in 56 k"), (9.2e-8, "1 in 11 M"), (2.75e-17, "1 in 4e16"), (0.0, "1 in > 1e15")],
)  # fmt: skip
def test_one_in(p: float | None, text: str) -> None:
    assert one_in(p) == text


def test_fmt_count() -> None:
    assert [fmt_count(x) for x in (0, 7, 6028, 1234567, 0.5, 46.18, 112.67)] == [
        "0", "7", "6,028", "1,234,567", "0.5", "46.2", "113",
    ]  # fmt: skip
