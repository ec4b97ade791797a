"""The newdomain detector and the fast-flux CDN/flux separation, on simulated traffic."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
import pytest

from dnsieve.detectors.base import DetectContext
from dnsieve.detectors.fastflux import FastFluxDetector
from dnsieve.detectors.newdomain import NewDomainDetector
from dnsieve.simulate import simulate


def _ctx(ev: pl.DataFrame, window: float = 3600.0) -> DetectContext:
    lo, hi = ev["ts"].min(), ev["ts"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    return DetectContext(start=lo, end=hi + timedelta(seconds=1), window=window)


def _add(ev: pl.DataFrame, rows: list[dict[str, Any]]) -> pl.DataFrame:
    df = pl.DataFrame(rows)
    for c in ev.columns:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None).cast(ev.schema[c]).alias(c))
    return pl.concat([ev, df.select(ev.columns).cast(dict(ev.schema))])  # type: ignore[arg-type]


def _t(ev: pl.DataFrame) -> datetime:
    t = ev["ts"].min()
    assert isinstance(t, datetime)
    return t


@pytest.fixture(scope="module")
def sim() -> pl.DataFrame:
    return simulate(hours=72, clients=300, seed=21).events


# ----------------------------------------------------------------- newdomain


def _campaign(ev: pl.DataFrame, domain: str, hosts: list[str], t0: datetime) -> pl.DataFrame:
    """Hosts open a phishing link within an hour, then their dropper calls back hourly."""
    rng = np.random.default_rng(5)
    rows = []
    for i, h in enumerate(hosts):
        first = t0 + timedelta(minutes=10 * i + float(rng.uniform(0, 5)))
        for k in range(int(rng.integers(6, 12))):
            rows.append(
                {
                    "ts": first + timedelta(hours=2 * k, minutes=float(rng.uniform(0, 20))),
                    "src_ip": h,
                    "qname": f"login.{domain}",
                    "qtype": "A",
                    "rcode": "NOERROR",
                    "answers": ["203.0.113.7"],
                    "ttls": [300.0],
                    "registered_domain": domain,
                }
            )
    return _add(ev, rows)


def test_newdomain_campaign_caught_and_ranked_first(sim: pl.DataFrame) -> None:
    hosts = sim["src_ip"].unique().sort().to_list()[40:45]
    t0 = _t(sim) + timedelta(hours=30)
    ev = _campaign(sim, "invoice-docs-share.top", hosts, t0)
    det = NewDomainDetector().fit_population(ev)
    out = det.score(ev, _ctx(ev))
    best = out.group_by("entity").agg(pl.col("score").max()).sort("score", descending=True)
    campaign = best.filter(pl.col("entity") == "invoice-docs-share.top")["score"][0]
    assert campaign >= NewDomainDetector.score_floor
    injected = set(sim.filter(pl.col("campaign").is_not_null())["registered_domain"].to_list())
    background = best.filter(~pl.col("entity").is_in([*injected, "invoice-docs-share.top"]))
    # Above every never-seen domain of the background that no campaign injected.
    assert campaign > float(background["score"].max())  # type: ignore[arg-type]
    row = out.filter(pl.col("entity") == "invoice-docs-share.top").sort("score").row(-1, named=True)
    e = json.loads(row["evidence"])
    assert set(e["clients"]) == set(hosts)
    assert e["reason"].startswith("never-seen domain invoice-docs-share.top was queried by 5 host")
    assert e["return_hours"] > 0 and e["new_domains_per_day"] > 0


def test_newdomain_ignores_domains_seen_in_the_warmup(sim: pl.DataFrame) -> None:
    """A domain already queried in the first hours is not new, however many hosts come."""
    hosts = sim["src_ip"].unique().sort().to_list()[40:45]
    t_early = _t(sim) + timedelta(hours=1)
    ev = _campaign(sim, "old-friend.example", hosts[:1], t_early)
    ev = _campaign(ev, "old-friend.example", hosts, t_early + timedelta(hours=40))
    out = NewDomainDetector().fit_population(ev).score(ev, _ctx(ev))
    assert "old-friend.example" not in out["entity"].to_list()


def test_newdomain_established_site_first_seen_here_is_not_new(sim: pl.DataFrame) -> None:
    """nytimes.com reaching five hosts on day two is adoption of an established site
    (it is in the popular list), not a campaign; skip_popular=False scores it again."""
    hosts = sim["src_ip"].unique().sort().to_list()[40:45]
    base = sim.filter(pl.col("registered_domain") != "nytimes.com")  # never visited before
    ev = _campaign(base, "nytimes.com", hosts, _t(sim) + timedelta(hours=40))
    ev = _campaign(ev, "invoice-docs-share.top", hosts, _t(sim) + timedelta(hours=40))
    out = NewDomainDetector().fit_population(ev).score(ev, _ctx(ev))
    assert "nytimes.com" not in out["entity"].to_list()
    assert "invoice-docs-share.top" in out["entity"].to_list()
    keep = NewDomainDetector(skip_popular=False).fit_population(ev).score(ev, _ctx(ev))
    assert "nytimes.com" in keep["entity"].to_list()


@pytest.mark.parametrize(
    ("span_hours", "skipped"), [(1.0, True), (5.9, True), (6.0, False), (72.0, False)]
)
def test_newdomain_needs_history(span_hours: float, skipped: bool) -> None:
    assert (NewDomainDetector().skip_reason(span_hours * 3600) is not None) == skipped


def test_newdomain_reference_law_without_population() -> None:
    df = NewDomainDetector.example(0)
    det = NewDomainDetector(min_new_domains=1000).fit_population(df)
    assert det.population_.method == "reference"
    out = det.score(df, _ctx(df))
    top = out.sort("score", descending=True)["entity"][0]
    assert top == "invoice-portal-login.com"


# ----------------------------------------------------------------- fast-flux


def _answers(ev: pl.DataFrame, domain: str, ips: list[list[str]], ttl: float) -> pl.DataFrame:
    t0 = _t(ev) + timedelta(hours=10)
    rows = [
        {
            "ts": t0 + timedelta(seconds=30 * i),
            "src_ip": f"10.9.0.{i % 20 + 1}",
            "qname": f"www.{domain}",
            "qtype": "A",
            "rcode": "NOERROR",
            "answers": a,
            "ttls": [ttl] * len(a),
            "registered_domain": domain,
        }
        for i, a in enumerate(ips)
    ]
    return _add(ev, rows)


def _scattered(rng: np.random.Generator, n: int) -> list[list[str]]:
    """Addresses drawn from announced space in many ASes (a botnet's hosts)."""
    firsts = [
        24,
        31,
        41,
        46,
        62,
        77,
        78,
        79,
        80,
        81,
        82,
        83,
        84,
        85,
        86,
        87,
        88,
        89,
        90,
        91,
        92,
        93,
        94,
        95,
        109,
        176,
        178,
        185,
        188,
        190,
        200,
        201,
    ]
    return [
        [
            f"{firsts[int(rng.integers(0, len(firsts)))]}.{int(rng.integers(0, 255))}."
            f"{int(rng.integers(0, 255))}.{int(rng.integers(1, 254))}"
            for _ in range(3)
        ]
        for _ in range(n)
    ]


def test_fastflux_separates_cdn_from_flux(sim: pl.DataFrame) -> None:
    rng = np.random.default_rng(1)
    ev = _answers(sim, "pharma-flux.ru", _scattered(rng, 30), 60.0)
    # microsoft.com answering from scattered addresses (as the simulator draws
    # them) is a popular service: not scored at all.
    ev = _answers(ev, "microsoft.com", _scattered(rng, 30), 20.0)
    # An unlisted CDN: low TTL, many /16s, but one AS (Akamai's 23.32.0.0/11).
    cdn = [
        [
            f"23.{int(rng.integers(32, 63))}.{int(rng.integers(0, 255))}.{int(rng.integers(1, 254))}"
            for _ in range(2)
        ]
        for _ in range(30)
    ]
    ev = _answers(ev, "shop-cdn-example.com", cdn, 20.0)
    out = FastFluxDetector().score(ev, _ctx(ev))
    best = dict(out.group_by("entity").agg(pl.col("score").max()).iter_rows())
    floor = FastFluxDetector.score_floor
    assert best["pharma-flux.ru"] >= floor
    assert "microsoft.com" not in best
    assert best["shop-cdn-example.com"] < 1.0
    e = json.loads(out.filter(pl.col("entity") == "pharma-flux.ru").sort("score")["evidence"][-1])
    assert e["distinct_networks"] >= 20 and e["clients"]
    assert e["reason"].startswith("pharma-flux.ru resolved to ")


def test_fastflux_without_popular_skip_still_scores_popular() -> None:
    df = FastFluxDetector.example(0)
    a = FastFluxDetector(skip_popular=False).score(df, _ctx(df))
    assert set(a["entity"].to_list()) >= {"flux-pharma.ru"}


# ------------------------------------------------- newdomain: history depth (issue 11)


def _best(out: pl.DataFrame, domain: str) -> float:
    s = out.filter(pl.col("entity") == domain)["score"]
    return float(s.max()) if s.len() else float("-inf")  # type: ignore[arg-type]


def test_newdomain_onset_needs_history_not_a_fixed_warmup(sim: pl.DataFrame) -> None:
    """Five established hosts starting on a domain after 18 h of history are a campaign
    (no 24 h warm-up); the same five in the first hour of the data could be an
    established domain the short history simply had not met, and score far lower."""
    hosts = sim["src_ip"].unique().sort().to_list()[40:45]
    late = _campaign(sim, "invoice-docs-share.top", hosts, _t(sim) + timedelta(hours=18))
    out = NewDomainDetector().fit_population(late).score(late, _ctx(late))
    late_score = _best(out, "invoice-docs-share.top")
    assert late_score >= NewDomainDetector.score_floor
    early = _campaign(sim, "invoice-docs-share.top", hosts, _t(sim) + timedelta(minutes=20))
    out = NewDomainDetector().fit_population(early).score(early, _ctx(early))
    early_score = _best(out, "invoice-docs-share.top")
    assert early_score < NewDomainDetector.score_floor and early_score < late_score - 3
    row = out.filter(pl.col("entity") == "invoice-docs-share.top").row(0, named=True)
    e = json.loads(row["evidence"])
    assert e["history_hours"] < 1.0 and e["p_unseen_if_established"] > 0.01


def test_newdomain_single_host_is_not_a_campaign(sim: pl.DataFrame) -> None:
    """One host calling a never-seen domain every hour is for the host detectors."""
    hosts = sim["src_ip"].unique().sort().to_list()[40:41]
    ev = _campaign(sim, "lonely-updater.net", hosts, _t(sim) + timedelta(hours=30))
    out = NewDomainDetector().fit_population(ev).score(ev, _ctx(ev))
    assert "lonely-updater.net" not in out["entity"].to_list()


def test_newdomain_onset_evidence_is_causal(sim: pl.DataFrame) -> None:
    """A window's onset evidence uses only data up to its end: cutting the input
    there gives the same p_unseen_if_established and host counts."""
    hosts = sim["src_ip"].unique().sort().to_list()[40:45]
    ev = _campaign(sim, "invoice-docs-share.top", hosts, _t(sim) + timedelta(hours=30))
    det = NewDomainDetector().fit_population(ev)
    t0 = _t(sim).replace(minute=0, second=0, microsecond=0)  # hourly windows, as a lake's
    whole = det.score(ev, DetectContext(start=t0, end=t0 + timedelta(hours=73), window=3600.0))
    whole = whole.filter(pl.col("entity") == "invoice-docs-share.top")
    cut_at = t0 + timedelta(hours=33)
    part = ev.filter(pl.col("ts") < cut_at)
    ctx = DetectContext(start=t0, end=cut_at, window=3600.0)
    cut = det.score(part, ctx).filter(pl.col("entity") == "invoice-docs-share.top")
    assert cut.height >= 2
    keys = ("p_unseen_if_established", "distinct_clients", "history_hours")
    for row in cut.iter_rows(named=True):
        same = whole.filter(pl.col("window_start") == row["window_start"]).row(0, named=True)
        a, b = json.loads(row["evidence"]), json.loads(same["evidence"])
        assert [a[k] for k in keys] == [b[k] for k in keys]


def test_onset_logp_is_the_order_statistic_probability() -> None:
    """k events all after the first sighting: (since / (before + since)) ** k."""
    from dnsieve.detectors.newdomain import onset_logp

    got = np.exp(onset_logp(np.array([1.0, 4.0, 4.0]), np.array([0.0, 9.0, 30.0]), np.ones(3)))
    assert got == pytest.approx([1.0, 0.1**4, (1 / 31) ** 4])
