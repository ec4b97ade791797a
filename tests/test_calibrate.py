"""Global calibration: POT/GPD tail, Mean/Max regime test, threshold, daily budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from scipy import stats

from dnsieve.calibrate import calibrate, fit_tail, floor_decision, mean_max_test, popular_prior
from dnsieve.detectors.base import DetectContext, anomaly_frame
from dnsieve.detectors.volume import VolumeDetector

T0 = datetime(2024, 3, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("sampler", "regime"),
    [
        (lambda r, n: r.exponential(2.0, n), "exponential"),
        (lambda r, n: stats.genpareto.rvs(0.5, size=n, random_state=r), "heavy"),
        (lambda r, n: stats.genpareto.rvs(-0.4, size=n, random_state=r), "bounded"),
    ],
)
def test_mean_max_regimes(sampler, regime: str) -> None:
    hits = 0
    for seed in range(6):
        y = sampler(np.random.default_rng(seed), 400)
        hits += mean_max_test(y, seed=seed, n_sim=1000).regime == regime
    assert hits >= 5  # size ≈ 0.05 per side under the null, high power at n=400


def test_mean_max_xi_estimate() -> None:
    y = stats.genpareto.rvs(0.3, size=3000, random_state=np.random.default_rng(1))
    assert mean_max_test(y).xi_meanmax == pytest.approx(0.3, abs=0.12)
    assert mean_max_test([1.0, 2.0]).regime == "insufficient"


def test_fit_tail_exponential_threshold() -> None:
    rng = np.random.default_rng(4)
    pop = 200_000
    scores = rng.exponential(1.0, pop)
    top = np.sort(scores)[-2000:]  # only the top was emitted
    fit = fit_tail(top, pop)
    assert fit.model == "exponential" and fit.test.regime == "exponential"
    # P(S > s) = exp(-s): the 1e-5 quantile is ln(1e5) = 11.5
    assert fit.score_at(1e-5) == pytest.approx(np.log(1e5), abs=0.6)
    assert fit.tail(np.array([np.log(1e4)]), np.array([1]))[0] == pytest.approx(1e-4, rel=0.5)


def _frame(n: int, scores: np.ndarray, p: np.ndarray, det: str = "volume") -> pl.DataFrame:
    starts = [T0 + timedelta(hours=3 * (i % 56)) for i in range(n)]
    return anomaly_frame(
        det, "domain", [f"d{i}.example" for i in range(n)], starts,
        [s + timedelta(hours=3) for s in starts], scores.tolist(), p.tolist(),
    )  # fmt: skip


def test_budget_is_a_ceiling_per_day() -> None:
    n = 400
    scores = np.linspace(50, 60, n)
    df = _frame(n, scores, 10.0**-scores)
    res = calibrate(df, target_far=1.0, budget_per_day=5, population={"volume": n})
    per_day = res.alerts.group_by(pl.col("window_start").dt.date()).len()
    assert per_day.get_column("len").max() == 5
    assert res.diagnostics["detectors"]["volume"]["dropped_by_budget"] > 0
    # the kept ones are the most significant of their day
    day0 = res.anomalies.filter(pl.col("window_start").dt.date() == T0.date())
    kept = day0.filter(pl.col("alert")).get_column("score").min()
    assert kept >= day0.filter(~pl.col("alert")).get_column("score").max()


def test_calibrates_each_detector_separately() -> None:
    rng = np.random.default_rng(2)
    a = _frame(300, rng.exponential(1, 300) + 1, np.full(300, 1e-9), "volume")
    b = _frame(300, rng.exponential(50, 300) + 1, np.full(300, 1e-9), "other")
    res = calibrate(pl.concat([a, b]), population={"volume": 10**6, "other": 10**6})
    d = res.diagnostics["detectors"]
    assert d["other"]["score_threshold"] > 10 * d["volume"]["score_threshold"]
    assert {"tail_p", "global_p", "significant", "alert"} <= set(res.anomalies.columns)


def test_empty_and_bad_arguments() -> None:
    res = calibrate(_frame(0, np.zeros(0), np.zeros(0)))
    assert res.alerts.height == 0
    with pytest.raises(ValueError):
        calibrate(_frame(3, np.ones(3), np.ones(3)), target_far=0.0)


def _quiet_counts(rng: np.random.Generator, domains: int, hours: int) -> pl.DataFrame:
    """Pure Poisson background: stationary hurdle traffic, no campaign."""
    p = rng.beta(0.7, 2.0, domains)
    lam = rng.gamma(1.5, 3.0, domains)
    y = (rng.random((domains, hours)) < p[:, None]) * (
        1 + rng.poisson(lam[:, None], (domains, hours))
    )
    d, h = np.nonzero(y)
    return pl.DataFrame(
        {
            "hour": pl.Series(
                [T0 + timedelta(hours=int(x)) for x in h], dtype=pl.Datetime("us", "UTC")
            ),
            "registered_domain": [f"q{i}.example" for i in d],
            "queries": y[d, h].astype(np.int64),
        }
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_quiet_data_yields_few_or_no_alerts(seed: int) -> None:
    data = _quiet_counts(np.random.default_rng(seed), 2000, 168)
    ctx = DetectContext(start=T0, end=T0 + timedelta(hours=168))
    det = VolumeDetector()
    cands = det.score(data, ctx)
    pop = det.population(data, ctx)
    res = calibrate(cands, population={"volume": pop})
    # bar: ≤ 1 false alert per 10,000 domains per day -> ≤ 1.2 here (2000 domains, 6 scored days)
    assert res.alerts.height <= 1
    assert res.diagnostics["detectors"]["volume"]["population"] == pop > 10_000


def test_injected_burst_survives_calibration() -> None:
    rng = np.random.default_rng(7)
    data = _quiet_counts(rng, 2000, 168)
    burst = pl.DataFrame(
        {
            "hour": pl.Series(
                [T0 + timedelta(hours=h) for h in (100, 101, 102)], dtype=pl.Datetime("us", "UTC")
            ),
            "registered_domain": ["burst.example"] * 3,
            "queries": [40, 60, 50],
        }
    )
    quiet = pl.DataFrame(
        {
            "hour": pl.Series(
                [T0 + timedelta(hours=h) for h in range(0, 100, 7)], dtype=pl.Datetime("us", "UTC")
            ),
            "registered_domain": ["burst.example"] * len(range(0, 100, 7)),
            "queries": [1] * len(range(0, 100, 7)),
        }
    )
    data = pl.concat([data, burst, quiet])
    ctx = DetectContext(start=T0, end=T0 + timedelta(hours=168))
    det = VolumeDetector()
    res = calibrate(det.score(data, ctx), population={"volume": det.population(data, ctx)})
    assert "burst.example" in res.alerts.get_column("entity").to_list()


def test_declustering_counts_a_long_anomaly_once() -> None:
    """Consecutive windows of one entity form one cluster: its top score alone enters the fit."""
    rng = np.random.default_rng(21)
    n = 3000
    ents = [f"e{i}.example" for i in range(n)]
    starts = [T0 + timedelta(hours=3 * int(rng.integers(0, 50))) for _ in range(n)]
    scores = list(rng.exponential(1.0, n))
    # five anomalies, each lasting eight consecutive 3-hour windows with high scores
    for a in range(5):
        for w in range(8):
            ents.append(f"long{a}.example")
            starts.append(T0 + timedelta(hours=3 * (10 + w)))
            scores.append(float(30 + 5 * a + rng.normal()))
    frame = anomaly_frame(
        "volume", "domain", ents, starts, [s + timedelta(hours=3) for s in starts],
        scores, [1e-20] * len(scores), [{}] * len(scores),
    )  # fmt: skip
    pop = {"volume": 200_000}
    dec = calibrate(frame, population=pop, target_far=1e-3, budget_per_day=100)
    raw = calibrate(frame, population=pop, target_far=1e-3, budget_per_day=100, decluster=False)
    d_dec, d_raw = dec.diagnostics["detectors"]["volume"], raw.diagnostics["detectors"]["volume"]
    assert d_dec["clusters"] == n + 5 and d_raw["clusters"] is None
    # 40 dependent exceedances inflate the fitted tail; their 5 cluster maxima do not
    assert d_dec["score_threshold"] < d_raw["score_threshold"]
    long_alerts = dec.alerts.filter(pl.col("entity").str.starts_with("long"))
    assert long_alerts.get_column("entity").n_unique() == 5


def test_score_floor_decides_small_captures_and_guards_large_ones() -> None:
    """A small capture (no tail can be fitted): the floor alone decides.  A large
    population: the floor removes tail-significant scores below it, and keeps
    every score at or above it."""
    small = _frame(3, np.array([9.0, 5.0, 1.0]), np.full(3, 0.5), "tunnel")
    plain = calibrate(small)
    assert plain.alerts.height == 0
    floored = calibrate(small, floors={"tunnel": 4.5})
    assert floored.diagnostics["detectors"]["tunnel"]["tail"]["model"] == "empirical"
    assert floored.diagnostics["detectors"]["tunnel"]["score_floor"] == 4.5
    assert sorted(floored.alerts["score"].to_list()) == [5.0, 9.0]

    rng = np.random.default_rng(5)
    n = 2000
    scores = rng.exponential(1.0, n)
    scores[:3] = [30.0, 25.0, 3.0]  # two clear outliers and one below the floor
    big = _frame(n, scores, np.full(n, 1e-12), "tunnel")  # local p-values all tiny
    base = calibrate(big, target_far=1.0, budget_per_day=10**6, population={"tunnel": n})
    with_floor = calibrate(
        big, target_far=1.0, budget_per_day=10**6, population={"tunnel": n}, floors={"tunnel": 4.5}
    )
    assert with_floor.alerts["score"].min() >= 4.5
    assert {30.0, 25.0} <= set(with_floor.alerts["score"].to_list())
    assert with_floor.alerts.height < base.alerts.height
    # another detector is untouched by this detector's floor
    other = calibrate(big, target_far=1.0, budget_per_day=10**6, floors={"volume": 100.0})
    assert other.alerts.height == base.alerts.height


@pytest.mark.parametrize(
    ("scores", "tail_significant", "floor", "expected"),
    [
        ([9.0, 5.0, 1.0], [False, False, False], 4.5, [True, True, False]),  # floor suffices
        ([9.0, 4.0], [True, True], 4.5, [True, False]),  # and is required
        ([4.5], [False], 4.5, [True]),  # at the floor is enough
        ([0.0, 100.0], [True, False], 1e9, [False, False]),
    ],
)
def test_floor_decision_table(scores, tail_significant, floor, expected) -> None:
    got = floor_decision(np.array(scores), np.array(tail_significant), floor)
    assert got.tolist() == expected


def _windows(entities: list[str], scores: list[float], det: str = "tunnel") -> pl.DataFrame:
    n = len(entities)
    starts = [T0 + timedelta(hours=i % 5) for i in range(n)]
    return anomaly_frame(
        det, "domain", entities, starts, [s + timedelta(hours=1) for s in starts], scores
    )


def test_pooling_more_data_never_drops_an_overwhelming_score() -> None:
    """The issue's RogueRobin case in miniature: eight C2 domains at 7-18 over a
    floor of 4.5 alert in their own capture and still alert when pooled with
    two stronger tunnels and a population of benign names."""
    c2 = [f"c2-{i}.example" for i in range(8)]
    c2_scores = [7.3, 7.3, 7.3, 7.3, 17.6, 17.9, 18.0, 18.0]
    own = calibrate(_windows(c2, c2_scores), floors={"tunnel": 4.5}, budget_per_day=100)
    assert set(own.alerts["entity"]) == set(c2)
    rng = np.random.default_rng(0)
    benign = [f"benign-{i}.example" for i in range(300)]
    pooled_frame = _windows(
        [*c2, "dnscat.example", "iodine.example", *benign],
        [*c2_scores, 35.2, 40.8, *rng.exponential(0.3, 300).tolist()],
    )
    pooled = calibrate(pooled_frame, floors={"tunnel": 4.5}, budget_per_day=100)
    assert set(c2) | {"dnscat.example", "iodine.example"} <= set(pooled.alerts["entity"])
    assert not any(e.startswith("benign") for e in pooled.alerts["entity"])


@pytest.mark.parametrize(
    ("rank", "weight"),
    [(1.0, 1e-6), (1_000.0, 1e-3), (500_000.0, 0.5), (5_000_000.0, 1.0), (float("nan"), 1.0)],
)
def test_popular_prior_table(rank: float, weight: float) -> None:
    assert popular_prior(np.array([rank]))[0] == pytest.approx(weight)


def test_popular_domains_need_overwhelming_evidence() -> None:
    """The same floor-passing score on an unknown domain alerts, on google.com
    (rank 1) it does not; a volume window whose own p-value is overwhelming
    passes the prior on a popular news site."""
    frame = _windows(["google.com", "unknown-c2.example"], [12.0, 12.0], det="beacon")
    cal = calibrate(frame, floors={"beacon": 10.0})
    assert cal.alerts["entity"].to_list() == ["unknown-c2.example"]
    off = calibrate(frame, floors={"beacon": 10.0}, popular_scale=None)
    assert off.alerts.height == 2
    row = cal.anomalies.filter(pl.col("entity") == "google.com")
    assert row["prior"][0] == pytest.approx(1e-6)
    # volume: tiny local p on wsj.com (a listed news site) → kept; a mild one → not
    rng = np.random.default_rng(1)
    n = 400
    ents = ["wsj.com", "microsoft.com", *[f"d{i}.example" for i in range(n - 2)]]
    scores = np.concatenate([[46.0, 9.0], rng.exponential(1.0, n - 2)])
    vol = anomaly_frame(
        "volume", "domain", ents, [T0] * n, [T0 + timedelta(hours=3)] * n,
        scores.tolist(), (10.0 ** -scores).tolist(),
    )  # fmt: skip
    out = calibrate(vol, population={"volume": 100_000}, floors={"volume": 8.0})
    assert "wsj.com" in out.alerts["entity"].to_list()
    assert "microsoft.com" not in out.alerts["entity"].to_list()


def test_budget_counts_episodes_not_windows() -> None:
    """One tunnel significant for 30 consecutive hours and four short anomalies,
    a budget of 3 a day: by windows the tunnel takes every slot; by episodes it
    is one alert (all its windows kept with it) and two others get through."""
    ents = ["tunnel.example"] * 30 + [f"other-{i}.example" for i in range(4)]
    starts = [T0 + timedelta(hours=h) for h in range(30)] + [
        T0 + timedelta(hours=2 + 3 * i) for i in range(4)
    ]
    scores = [50.0] * 30 + [20.0, 19.0, 18.0, 17.0]
    frame = anomaly_frame(
        "tunnel", "domain", ents, starts, [s + timedelta(hours=1) for s in starts], scores
    )
    by_window = calibrate(frame, floors={"tunnel": 4.5}, budget_per_day=3)
    assert set(by_window.alerts["entity"]) == {"tunnel.example"}
    by_episode = calibrate(
        frame, floors={"tunnel": 4.5}, budget_per_day=3, episode_gap=timedelta(hours=6)
    )
    kept = by_episode.alerts
    assert set(kept["entity"]) == {"tunnel.example", "other-0.example", "other-1.example"}
    assert kept.filter(pl.col("entity") == "tunnel.example").height == 30
    assert by_episode.diagnostics["budget_counts"] == "episodes"
    assert {"episode_start", "episode_end"} <= set(by_episode.anomalies.columns)


def _strat_frame(scores: np.ndarray, strata: np.ndarray, share: list[float]) -> pl.DataFrame:
    """Candidates of a stratified detector (``client_volume``: no floor) in 3 h windows."""
    n = scores.size
    starts = [T0 + timedelta(hours=3 * (i % 400)) for i in range(n)]
    ev = [{"stratum": {"index": int(k), "share": share}} for k in strata]
    return anomaly_frame(
        "client_volume", "client", [f"10.0.{i // 250}.{i % 250}" for i in range(n - 1)] + ["spike"], starts,
        [s + timedelta(hours=3) for s in starts], scores.tolist(), (10.0 ** -scores).tolist(), ev,
    )  # fmt: skip


def test_a_quiet_stratum_is_not_judged_by_a_bursty_one() -> None:
    """Per-stratum tails: a score rare among quiet entities alerts although bursty ones reach it."""
    rng = np.random.default_rng(3)
    pop = 200_000  # half quiet, half bursty entity-windows
    # quiet stratum: exact local p-values (exponential excess, scale 1/ln 10), emitted above 1.3
    quiet = rng.exponential(1 / np.log(10), pop // 2)
    quiet = quiet[quiet > 1.3]
    # bursty stratum: heavy-tailed scores (benign update bursts), thousands above 6
    bursty = 1.3 + stats.genpareto.rvs(0.6, scale=1.5, size=4000, random_state=rng)
    spike = np.array([7.0])
    scores = np.concatenate([quiet, bursty, spike])
    strata = np.concatenate([np.zeros(quiet.size), np.ones(bursty.size), [0]]).astype(int)
    df = _strat_frame(scores, strata, [0.5, 0.5])
    res = calibrate(df, population={"client_volume": pop}, budget_per_day=10_000)
    sig = res.anomalies.filter(pl.col("significant"))
    # the quiet entity's spike is significant; in the pooled population it is not
    assert "spike" in sig.get_column("entity").to_list()
    pooled = calibrate(df.with_columns(pl.lit("{}").alias("evidence")),
                       population={"client_volume": pop}, budget_per_day=10_000)  # fmt: skip
    assert "spike" not in pooled.alerts.get_column("entity").to_list()
    # stratification only adds significance; and the bursty stratum stays quiet below 10
    assert set(pooled.alerts["entity"]) <= set(res.alerts["entity"])
    strata_diag = res.diagnostics["detectors"]["client_volume"]["strata"]
    assert [d["stratum"] for d in strata_diag] == [0, 1]
    assert strata_diag[0]["population"] == pop // 2
    # the rest is noise: q·N = 2.5 false alarms expected over both strata
    assert sig.filter(pl.col("entity") != "spike").height <= 4


def test_strata_need_every_candidate_to_name_one() -> None:
    from dnsieve.calibrate import _strata_of

    df = _strat_frame(np.array([3.0, 4.0]), np.array([0, 1]), [0.7, 0.3])
    idx, share = _strata_of(df)  # type: ignore[misc]
    assert idx.tolist() == [0, 1] and share.tolist() == pytest.approx([0.7, 0.3])
    mixed = df.with_columns(pl.Series("evidence", [df["evidence"][0], "{}"]))
    assert _strata_of(mixed) is None
    bad = df.with_columns(pl.lit('{"stratum": {"index": 5, "share": [1.0]}}').alias("evidence"))
    assert _strata_of(bad) is None
