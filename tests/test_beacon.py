"""Beacon scoring maths: regularity under jitter, missed beats, low-and-slow
periods and population context (docs/detectors.md, ``beacon``).

Series are generated here with a seeded RNG: a timer of period ``P`` whose
gaps carry uniform jitter of ±``jitter``·P (the simulator's model), beats
dropped at random with probability ``missed``, against irregular lookups
(Poisson, and bursty human browsing) that must stay far below the floor.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from dnsieve.detectors import get
from dnsieve.detectors.base import DetectContext
from dnsieve.detectors.beacon import poisson_on_beat_share, regularity_log10p
from dnsieve.detectors.frames import example_events

T0 = datetime(2024, 3, 4, tzinfo=UTC)
FLOOR = float(get("beacon").score_floor)  # type: ignore[arg-type]


def _rows(ts: np.ndarray, client: str, domain: str, ttl: float = 30.0) -> list[dict]:
    return [
        {
            "ts": T0 + timedelta(seconds=float(t)),
            "src_ip": client,
            "qname": "api." + domain,
            "qtype": "A",
            "rcode": "NOERROR",
            "answers": ["203.0.113.9"],
            "ttls": [ttl],
            "registered_domain": domain,
            "subdomain": "api",
            "tld": domain.rsplit(".", 1)[1],
        }
        for t in ts
    ]


def _timer(rng: np.random.Generator, period: float, jitter: float, missed: float, span: float):
    n = int(span / (period * (1 - jitter))) + 2
    t = np.cumsum(period * (1 + rng.uniform(-jitter, jitter, n)))
    t = t[t < span]
    return t[rng.random(t.size) >= missed]


def _background(rng: np.random.Generator, span: float, clients: int = 12) -> list[dict]:
    """Bursty browsing: sessions of a few quick lookups at Poisson times."""
    rows: list[dict] = []
    for c in range(clients):
        starts = np.cumsum(rng.exponential(1800.0, int(span / 1800) + 5))
        for s in starts[starts < span]:
            burst = s + np.cumsum(rng.exponential(20.0, int(rng.integers(1, 6))))
            dom = ("news.example", "shop.example", "wiki.example")[int(rng.integers(3))]
            rows += _rows(burst[burst < span], f"10.9.0.{c + 2}", dom, ttl=300.0)
    return rows


def _score(rows: list[dict], span: float, window: float = 3600.0) -> pl.DataFrame:
    ev = example_events(rows)
    ctx = DetectContext(start=T0, end=T0 + timedelta(seconds=span), window=window)
    return get("beacon")().score(ev, ctx)


def _best(out: pl.DataFrame, entity: str) -> float:
    s = out.filter(pl.col("entity") == entity)["score"]
    return float(s.max()) if s.len() else 0.0  # type: ignore[arg-type]


def test_poisson_on_beat_share_and_binomial_tail() -> None:
    # P(|g/M − 1| ≤ δ) for exponential gaps with median M
    assert poisson_on_beat_share(0.3) == pytest.approx(2**-0.7 - 2**-1.3)
    # all of m gaps on the beat: −log10 p0^m
    for m in (6, 19, 60):
        got = regularity_log10p(np.array([m]), np.array([m]), 0.25)[0]
        assert got == pytest.approx(-m * np.log10(0.25), rel=1e-9)
    # no gaps, or as many on the beat as chance predicts: no evidence
    assert regularity_log10p(np.array([0, 25]), np.array([0, 100]), 0.25).tolist()[0] == 0.0
    assert regularity_log10p(np.array([25]), np.array([100]), 0.25)[0] < 0.5


@pytest.mark.parametrize(
    ("period", "jitter", "missed"),
    [
        (60.0, 0.0, 0.0),
        (300.0, 0.1, 0.0),
        (300.0, 0.3, 0.0),  # the worst jitter
        (300.0, 0.0, 0.2),  # one beat in five missed
        (600.0, 0.3, 0.3),  # jitter and missed beats together
        (1800.0, 0.2, 0.1),
        (3600.0, 0.3, 0.0),  # low and slow: six beats per 6 h window, 24 h lookback
    ],
)
def test_timers_reach_the_floor(period: float, jitter: float, missed: float) -> None:
    rng = np.random.default_rng(int(period) + int(100 * jitter) + int(10 * missed))
    span = 2 * 86400.0
    rows = _rows(_timer(rng, period, jitter, missed, span), "10.9.1.1", "c2-timer.net")
    out = _score(rows + _background(rng, span), span)
    assert _best(out, "10.9.1.1|c2-timer.net") >= FLOOR
    # browsing never comes near it
    others = out.filter(pl.col("entity") != "10.9.1.1|c2-timer.net")["score"]
    assert others.len() == 0 or float(others.max()) < FLOOR / 2  # type: ignore[arg-type]


def test_evidence_grows_with_beats_not_only_regularity() -> None:
    """Six perfectly regular lookups are weak evidence; sixty are overwhelming."""
    six = _rows(np.arange(6) * 600.0 + 60.0, "10.9.1.2", "six.example")
    sixty = _rows(np.arange(60) * 300.0 + 60.0, "10.9.1.3", "sixty.example")
    browsing = _background(np.random.default_rng(2), 6 * 3600.0)
    out = _score(six + sixty + browsing, 6 * 3600.0, window=6 * 3600.0)
    assert _best(out, "10.9.1.2|six.example") < FLOOR < _best(out, "10.9.1.3|sixty.example")


def test_the_null_is_fitted_from_the_population() -> None:
    """Where every series is a timer, a timer is not surprising: the on-beat
    share under the null is the population's median, not a constant."""
    rng = np.random.default_rng(7)
    span = 6 * 3600.0
    timers = [
        row
        for c in range(5)
        for row in _rows(_timer(rng, 300.0, 0.05, 0.0, span), f"10.9.5.{c}", f"svc{c}.example")
    ]
    alone = _score(timers, span)
    crowd = _score(timers + _background(rng, span, clients=30), span)
    ev_alone = json.loads(alone["evidence"][0])
    ev_crowd = json.loads(crowd.filter(pl.col("entity") == "10.9.5.0|svc0.example")["evidence"][0])
    assert ev_alone["null_on_beat_share"] > 0.9
    assert ev_crowd["null_on_beat_share"] < 0.5
    assert _best(crowd, "10.9.5.0|svc0.example") > 5 * _best(alone, "10.9.5.0|svc0.example")


def test_poisson_lookups_score_low() -> None:
    rng = np.random.default_rng(3)
    span = 86400.0
    ts = np.cumsum(rng.exponential(300.0, 400))
    out = _score(_rows(ts[ts < span], "10.9.1.4", "random.example"), span)
    assert _best(out, "10.9.1.4|random.example") < 3.0


def test_a_domain_every_host_polls_is_software() -> None:
    """Population context: the same period from every host to one domain."""
    rng = np.random.default_rng(4)
    span = 12 * 3600.0
    rows: list[dict] = []
    for c in range(12):
        rows += _rows(
            _timer(rng, 900.0, 0.05, 0.0, span) + c * 7, f"10.9.2.{c}", "telemetry.example"
        )
    rows += _rows(_timer(rng, 900.0, 0.05, 0.0, span), "10.9.2.99", "c2-lonely.net")
    out = _score(rows + _background(rng, span, clients=30), span)
    assert _best(out, "10.9.2.99|c2-lonely.net") >= FLOOR
    assert _best(out, "10.9.2.3|telemetry.example") < FLOOR / 2
    ev = json.loads(out.filter(pl.col("entity") == "10.9.2.3|telemetry.example")["evidence"][0])
    assert ev["periodic_clients_of_domain"] == 12


def test_period_matching_the_ttl_is_halved() -> None:
    rng = np.random.default_rng(5)
    ts = _timer(rng, 300.0, 0.01, 0.0, 6 * 3600.0)
    cache = _score(_rows(ts, "10.9.3.1", "cache.example", ttl=300.0), 6 * 3600.0)
    timer = _score(_rows(ts, "10.9.3.1", "cache.example", ttl=30.0), 6 * 3600.0)
    assert cache["score"].max() == pytest.approx(0.5 * timer["score"].max())  # type: ignore[operator]


def test_reason_and_clients() -> None:
    rng = np.random.default_rng(6)
    rows = _rows(_timer(rng, 240.0, 0.05, 0.0, 6 * 3600.0), "10.9.4.1", "fresh-c2.top")
    out = _score(rows, 6 * 3600.0)
    ev = json.loads(out.sort("score", descending=True)["evidence"][0])
    assert ev["clients"] == ["10.9.4.1"]
    assert ev["reason"].startswith("10.9.4.1 looked up fresh-c2.top ")
    assert "4.0 min period" in ev["reason"] and "gaps within" in ev["reason"]


# -- causal scoring: epoch tiles, lookback from history, null before the fit epoch --


def _low_and_slow(seed: int) -> tuple[pl.DataFrame, str]:
    """Two days: an hourly timer (six beats per 6 h tile) among bursty browsing."""
    rng = np.random.default_rng(seed)
    span = 2 * 86400.0
    rows = _rows(_timer(rng, 3600.0, 0.2, 0.0, span), "10.9.6.1", "slow-c2.net")
    return example_events(rows + _background(rng, span, clients=20)), "10.9.6.1|slow-c2.net"


def test_tiles_are_aligned_on_the_epoch_and_scored_where_they_close() -> None:
    ev, _ = _low_and_slow(21)
    det = get("beacon")()
    # a period from 05:00 to 13:20 scores the tile 00:00-06:00 and 06:00-12:00 only:
    # 12:00-18:00 closes later, whatever the period's own start and end
    ctx = DetectContext(
        start=T0 + timedelta(hours=5), end=T0 + timedelta(hours=13, minutes=20), window=3600.0
    )
    out = det.score(ev, ctx)
    assert out.height > 0
    assert sorted(set(out["window_start"].dt.hour())) == [0, 6]
    assert set(out["window_end"].dt.hour()) == {6, 12}


def test_hour_by_hour_equals_one_pass_with_history_lookback() -> None:
    """Day two scored in one pass or hour by hour (a stream): the same rows, and
    the low-and-slow timer's tiles add the beats of the day before (the input's
    history), not only of the period's own tiles."""
    ev, slow = _low_and_slow(22)
    day = T0 + timedelta(days=1)
    det = get("beacon")()
    whole = det.score(ev, DetectContext(start=day, end=day + timedelta(days=1), window=3600.0))
    parts = [
        det.score(ev, DetectContext(start=h, end=h + timedelta(hours=1), window=3600.0))
        for h in (day + timedelta(hours=i) for i in range(24))
    ]
    hourly = pl.concat([p for p in parts if p.height])
    key = ["entity", "window_start"]
    assert whole.height > 0 and whole.height == hourly.height
    assert whole.sort(key).equals(hourly.sort(key))
    first = whole.filter((pl.col("entity") == slow) & (pl.col("window_start") == day))
    evidence = json.loads(first["evidence"][0])
    assert evidence["lookback_gaps"] > evidence["gaps"]  # beats of day one, from history
    assert "over the last 24 h" in evidence["reason"]
    assert float(first["score"][0]) >= FLOOR


def test_the_null_of_a_tile_reads_its_lookback_only() -> None:
    """A tile's null is the median share of the series of the spans ending with
    the tile (the tile and its 24 h lookback): data after the tile or before the
    lookback never changes it, it is the population's median share (never below
    the Poisson share), and the first tile of a lake has a population null too."""
    ev, _ = _low_and_slow(23)
    det = get("beacon")()
    tile = T0 + timedelta(days=1, hours=6)
    ctx = DetectContext(start=tile, end=tile + timedelta(hours=6), window=3600.0)
    seen = ev.filter(
        (pl.col("ts") >= tile - timedelta(hours=18)) & (pl.col("ts") < tile + timedelta(hours=6))
    )
    a, b = det.score(ev, ctx), det.score(seen, ctx)
    assert a.height > 0 and a.equals(b)
    null = {json.loads(e)["null_on_beat_share"] for e in a["evidence"]}
    first = det.score(ev, DetectContext(start=T0, end=T0 + timedelta(hours=6), window=3600.0))
    null0 = {json.loads(e)["null_on_beat_share"] for e in first["evidence"]}
    assert len(null) == len(null0) == 1  # one null per tile
    poisson = round(poisson_on_beat_share(det.jitter_tolerance), 4)  # type: ignore[attr-defined]
    shares = det.null_shares(ev, ctx)  # type: ignore[attr-defined]
    assert set(shares["window_start"]) == {tile}
    last = f"s{len(det.tolerances) - 1}"  # type: ignore[attr-defined]
    assert null.pop() == round(max(poisson, float(shares[last].median())), 4)  # type: ignore[arg-type]
    assert null0.pop() > poisson  # a lake's first tile: the population's, not the floor


def test_a_beacon_cut_by_tiles_is_judged_over_its_span() -> None:
    """The simulator's beacon-00 (200 hosts, seed 1): a 34-minute timer with
    30 % jitter for 13 h from 11:26, so 10-11 beats per 6 h tile.  Judged tile
    by tile against each tile's own median, the gaps at the jitter's edge fell
    off the beat and the gaps across tile boundaries were lost (best 5.6); over
    the span (the tile and its 24 h lookback, one period, every gap) all its
    gaps are on the beat and it reaches the floor."""
    rng = np.random.default_rng(11)
    span = 2 * 86400.0
    start = 11 * 3600 + 26 * 60.0
    beats = start + np.cumsum(2046.0 * (1 + rng.uniform(-0.3, 0.3, 24)))
    rows = _rows(beats[beats < start + 13 * 3600], "10.9.7.1", "edge-c2.top")
    out = _score(rows + _background(rng, span, clients=20), span)
    mine = out.filter(pl.col("entity") == "10.9.7.1|edge-c2.top").sort("window_start")
    assert _best(out, "10.9.7.1|edge-c2.top") >= FLOOR
    best = json.loads(mine.sort("score")["evidence"][-1])
    assert best["lookback_gaps"] > best["gaps"]  # gaps of the earlier tile, one period
    assert best["lookback_on_beat_gaps"] >= best["lookback_gaps"] - 1
