"""The conjugate hurdle volume model (ARCHITECTURE §4)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dnsieve.detectors import available, get
from dnsieve.detectors.base import DetectContext
from dnsieve.detectors.volume import (
    ClientVolumeDetector,
    HurdlePriors,
    VolumeDetector,
    baseline_columns,
    domain_stats,
    fit_priors,
    mean_max_ratio,
    window_stats,
)

T0 = datetime(2024, 4, 19, tzinfo=UTC)
CTX = DetectContext(start=T0, end=T0 + timedelta(hours=72))


def _hurdle_population(
    rng: np.random.Generator, n: int, hours: int, a0=0.6, b0=3.0, al0=2.0, be0=0.4
):
    p = rng.beta(a0, b0, n)
    lam = rng.gamma(al0, 1 / be0, n)
    z = rng.random((n, hours)) < p[:, None]
    return z * (1 + rng.poisson(lam[:, None], (n, hours)))


def _frame(y: np.ndarray, col: str = "registered_domain") -> pl.DataFrame:
    d, h = np.nonzero(y)
    return pl.DataFrame(
        {
            "hour": pl.Series(
                [T0 + timedelta(hours=int(x)) for x in h], dtype=pl.Datetime("us", "UTC")
            ),
            col: [f"d{i}.example" for i in d],
            "queries": y[d, h].astype(np.int64),
        }
    )


def test_registered() -> None:
    assert {"volume", "client_volume"} <= set(available())
    assert get("volume") is VolumeDetector and VolumeDetector.requires == "domain_hourly"
    assert (
        ClientVolumeDetector.requires == "client_hourly"
        and ClientVolumeDetector.entity_type == "client"
    )


@pytest.mark.parametrize("method", ["moments", "mml"])
def test_priors_recover_population(method: str) -> None:
    rng = np.random.default_rng(1)
    y = _hurdle_population(rng, 20_000, 168)
    k, s, q = domain_stats(y)
    pr = fit_priors(k, s, 168, q, method=method)  # type: ignore[arg-type]
    # the population is zero-truncated (unseen entities are invisible): means still match
    assert pr.a0 / (pr.a0 + pr.b0) == pytest.approx(0.6 / 3.6, rel=0.15)
    assert pr.alpha0 / pr.beta0 == pytest.approx(5.0, rel=0.1)
    assert pr.alpha0 == pytest.approx(2.0, rel=0.35)
    assert pr.phi_pop == pytest.approx(1.0, abs=0.2)  # Poisson sizes: no over-dispersion


def test_domain_stats() -> None:
    k, s, q = domain_stats(np.array([[0, 1, 3, 0, 5]]))
    assert (k[0], s[0], q[0]) == (3, 6, 0 + 4 + 16)


def _brute(y: np.ndarray, s0: int, c: int, b: int, period: int) -> tuple[float, float, float]:
    cols = baseline_columns(s0, c, b, period)
    base = y[cols]
    cur = y[s0 : s0 + c]
    return float((base > 0).sum()), float((base - 1)[base > 0].sum()), float((cur > 0).sum())


@pytest.mark.parametrize("period", [0, 24])
def test_window_stats_match_brute_force(period: int) -> None:
    rng = np.random.default_rng(2)
    y = _hurdle_population(rng, 40, 120).astype(np.float32)
    starts = np.array([24, 27, 48, 96, 117])
    pr = HurdlePriors(0.5, 2.0, 1.0, 0.5)
    st = window_stats(y, starts, 3, 72, pr, period=period)
    for w, s0 in enumerate(starts):
        for d in (0, 7, 39):
            kb, sb, kc = _brute(y[d], int(s0), 3, 72, period)
            assert st.k_b[d, w] == kb and st.s_b[d, w] == pytest.approx(sb) and st.k_c[d, w] == kc
    assert np.all((st.prob_occ >= 0) & (st.prob_occ <= 1))
    assert np.all(st.phi >= 1.0)


def test_closed_forms_agree_with_posterior_draws() -> None:
    """Normal approximations / exact incomplete beta vs seeded Monte Carlo draws."""
    from scipy import special

    rng = np.random.default_rng(3)
    y = _hurdle_population(rng, 300, 96).astype(np.float32)
    y[:30, 90:93] += rng.poisson(8, (30, 3)).astype(np.float32)
    pr = HurdlePriors(0.5, 2.0, 1.0, 0.5)
    st = window_stats(y, np.array([90]), 3, 90, pr)
    draws = 20_000
    mc_occ, mc_size, mc_dem = [], [], []
    for d in range(0, 300, 10):
        pb = rng.beta(st.a_b[d, 0], st.b_b[d, 0], draws)
        pc = rng.beta(st.a_c[d, 0], st.b_c[d, 0], draws)
        lb = rng.gamma(st.al_b[d, 0], 1 / st.be_b[d, 0], draws)
        lc = rng.gamma(st.al_c[d, 0], 1 / st.be_c[d, 0], draws)
        mc_occ.append((pc > pb).mean())
        mc_size.append((lc > lb).mean())
        mc_dem.append((pc * (1 + lc) > pb * (1 + lb)).mean())
    idx = np.arange(0, 300, 10)
    exact_size = special.betaincc(
        st.al_c[idx, 0], st.al_b[idx, 0], st.be_c[idx, 0] / (st.be_b[idx, 0] + st.be_c[idx, 0])
    )
    np.testing.assert_allclose(exact_size, mc_size, atol=0.015)
    # population screen: logit-normal approximation, documented accuracy ±0.1
    np.testing.assert_allclose(st.prob_occ[idx, 0], mc_occ, atol=0.1)
    np.testing.assert_allclose(st.prob_size[idx, 0], mc_size, atol=0.1)
    np.testing.assert_allclose(st.prob_demand[idx, 0], mc_dem, atol=0.1)


def test_detects_burst_with_readable_evidence() -> None:
    df = VolumeDetector.example(0)
    out = VolumeDetector().score(df, CTX)
    top = out.sort("score", descending=True).row(0, named=True)
    assert top["entity"] == "site0.example"
    assert top["window_start"] >= T0 + timedelta(hours=66)
    assert top["p_value"] < 1e-10 and top["score"] > 10
    ev = json.loads(top["evidence"])
    assert ev["current"]["queries"] > 10 * ev["baseline"]["expected_queries_per_hour"] * 3
    assert ev["effect"]["demand_ratio"] > 2 and ev["prob_increase"]["demand"] > 0.95
    assert ev["top_hours"][0]["observed"] > 200
    assert {"croston", "sba", "tsb", "hurdle"} <= set(ev["baseline_forecast_per_hour"])
    assert 0 < ev["burstiness_mean_max"] <= 1
    lo, hi = ev["baseline"]["p_occurrence"]["ci90"]
    assert lo <= ev["baseline"]["p_occurrence"]["mean"] <= hi


def test_empty_short_and_hostile_inputs() -> None:
    det = VolumeDetector()
    assert det.score(VolumeDetector.example(0).head(0), CTX).height == 0
    assert det.score(VolumeDetector.example(0).head(1), CTX).height == 0
    short = DetectContext(start=T0, end=T0 + timedelta(hours=10))
    assert det.score(VolumeDetector.example(0), short).height == 0
    assert det.skip_reason(3600) is not None and det.skip_reason(72 * 3600) is None
    df = VolumeDetector.example(1).with_columns(
        pl.when(pl.col("registered_domain") == "site0.example")
        .then(pl.lit("ev\x1b[31mil\n.com\u202e"))
        .otherwise(pl.col("registered_domain"))
        .alias("registered_domain"),
        pl.col("queries").cast(pl.Float64),
    )
    df = pl.concat(
        [
            df,
            pl.DataFrame(
                {"hour": [T0], "registered_domain": [None], "queries": [float("nan")]},
                schema=df.schema,
            ),
        ]
    )
    out = det.score(df, CTX)
    assert "ev\x1b[31mil\n.com\u202e" in out.get_column("entity").to_list()
    json.loads(out.get_column("evidence")[0])


def test_order_invariance_and_determinism() -> None:
    df = VolumeDetector.example(2)
    a = VolumeDetector().score(df, CTX)
    b = VolumeDetector().score(df.sample(fraction=1.0, shuffle=True, seed=5), CTX)
    assert a.equals(b)


def test_population_and_client_detector() -> None:
    df = ClientVolumeDetector.example(0)
    det = ClientVolumeDetector()
    n = det.population(df, CTX)
    assert 0 < n <= 30 * 16
    out = det.score(df, CTX)
    assert out.sort("score", descending=True).row(0, named=True)["entity"] == "10.0.0.0"


def test_shared_priors_make_partitions_consistent() -> None:
    df = VolumeDetector.example(0)
    whole = VolumeDetector().fit_population(df)
    part = df.filter(pl.col("registered_domain").is_in(["site0.example", "site1.example"]))
    a = whole.score(part, CTX)
    b = whole.score(df, CTX).filter(pl.col("entity").is_in(["site0.example", "site1.example"]))
    assert a.equals(b)


def test_mean_max_ratio() -> None:
    assert mean_max_ratio(np.array([2.0, 2.0])) == 1.0
    assert mean_max_ratio(np.array([0.0, 0.0, 9.0])) == pytest.approx(1 / 3)
    assert mean_max_ratio(np.zeros(4)) == 0.0


def test_real_rita_logs(shared_data: Path, tmp_path: Path) -> None:
    """The RITA 3-day logs: the reverse-lookup burst of 103.in-addr.arpa stands out
    to the model, and is not scored by default (a PTR zone is not a domain)."""
    from dnsieve.engines import get_engine
    from dnsieve.lake import Lake

    src = shared_data / "zeek" / "rita" / "missing_host"
    assert src.is_dir(), f"the shared corpus has no RITA sample at {src}"
    lake = Lake(tmp_path / "lake")
    lake.ingest_files(sorted(src.glob("*/dns.*.log.gz")))
    agg = get_engine("polars").aggregate("domain_hourly", lake)
    ctx = DetectContext(
        start=datetime(2024, 4, 19, tzinfo=UTC), end=datetime(2024, 4, 21, 23, tzinfo=UTC)
    )
    default = VolumeDetector().score(agg, ctx)
    assert not default["entity"].str.ends_with(".arpa").any()
    every = VolumeDetector()
    every.skip_names = None  # type: ignore[misc]
    out = every.score(agg, ctx).sort("score", descending=True)
    top = out.row(0, named=True)
    assert top["entity"] == "103.in-addr.arpa"
    ev = json.loads(top["evidence"])
    assert (
        ev["top_hours"][0]["hour"] == "2024-04-21T05:00Z" and ev["top_hours"][0]["observed"] == 72
    )


def test_size_prior_is_stratified_by_occurrence() -> None:
    # rare entities have small sizes, frequent ones large: one pooled Gamma is
    # diffuse, the per-stratum priors are tight around each group's own level
    rng = np.random.default_rng(3)
    rare = _hurdle_population(rng, 2000, 168, a0=1.0, b0=60.0, al0=20.0, be0=20.0)
    busy = _hurdle_population(rng, 2000, 168, a0=30.0, b0=10.0, al0=20.0, be0=0.4)
    k, s, q = domain_stats(np.vstack([rare, busy]))
    pr = fit_priors(k, s, 168, q)
    assert pr.size_edges and len(pr.size_alpha) == len(pr.size_edges) + 1
    al, be = pr.size_prior(np.array([1 / 168, 0.75]))
    assert al[0] / be[0] == pytest.approx(1.0, rel=0.3)  # rare group: λ ≈ 1
    assert al[1] / be[1] == pytest.approx(50.0, rel=0.3)  # busy group: λ ≈ 50
    assert al[0] > 5 * pr.alpha0  # far tighter than the pooled prior
    one = fit_priors(k, s, 168, q, n_strata=1)
    assert one.size_edges == () and one.size_prior(np.array([0.5]))[0][0] == one.alpha0


def test_distinct_clients_series_catches_masquerade() -> None:
    # a quiet site whose single usual visitor browses in bursts of 20-60 queries,
    # then 40 new clients in one hour with 1-2 queries each: ordinary by query
    # volume, extreme by distinct clients
    rng = np.random.default_rng(5)
    hours = 72
    y = _hurdle_population(rng, 300, hours)
    cl = np.minimum(y, 1 + rng.poisson(0.5, y.shape)) * (y > 0)
    bursty = np.zeros(hours, dtype=np.int64)
    bursty[rng.choice(60, 12, replace=False)] = rng.integers(20, 60, 12)
    y[0], cl[0] = bursty, (bursty > 0).astype(np.int64)
    y[0, 64], cl[0, 64] = 60, 40
    df = _frame(y).with_columns(pl.Series("clients", cl[np.nonzero(y)].astype(np.int64)))
    det = VolumeDetector(window_hours=3)
    out = det.score(df, CTX)
    hit = out.filter(
        (pl.col("entity") == "d0.example") & (pl.col("window_start") == T0 + timedelta(hours=63))
    )
    assert hit.height == 1
    ev = (
        json.loads(hit["evidence"][0])
        if isinstance(hit["evidence"][0], str)
        else hit["evidence"][0]
    )
    assert ev["p_local"]["driver"] == "clients"
    assert ev["p_local"]["clients"] < 1e-6 < ev["p_local"]["queries"]
    assert ev["client_series"]["current_per_hour"][1] == 40
    assert "from up to 40 clients an hour" in ev["reason"] and ev["clients"] == []
    # without the clients column it is the queries-only model
    q_only = det.score(df.drop("clients"), CTX).filter(pl.col("entity") == "d0.example")
    assert all(
        (json.loads(e) if isinstance(e, str) else e).get("client_series") is None
        for e in q_only["evidence"]
    )


def test_half_life_weights_recent_baseline_days_more() -> None:
    """With a half-life, a habit that changed a few days ago dominates the baseline."""
    y = np.zeros((1, 24 * 8), dtype=np.float32)
    y[0, 24 * 5 + 10 : 24 * 5 + 13] = 20.0  # yesterday and the day before: 20/h at 10-12 h
    y[0, 24 * 6 + 10 : 24 * 6 + 13] = 20.0
    starts = np.array([24 * 7 + 10])
    pr = HurdlePriors(0.5, 2.0, 1.0, 0.5)
    flat = window_stats(y, starts, 3, 168, pr, period=24)
    ew = window_stats(y, starts, 3, 168, pr, period=24, half_life_days=1.0)
    # occurrence share in the baseline: 2 of 7 days equally weighted, 1.5 of ~1.98 with decay
    assert flat.k_b[0, 0] == pytest.approx(6.0)
    assert ew.k_b[0, 0] == pytest.approx(3.0 * (1.0 + 0.5))
    assert ew.k_b[0, 0] / ew.n_b[0, 0] > flat.k_b[0, 0] / flat.n_b[0, 0]


def _sums_reference(y, starts, c, b, period, excl=None, eh=0):
    """Plain float64 loops: (n, k, s, q) of trailing baseline, slot baseline and window."""
    y = y.astype(np.float64)
    out = {
        k: np.zeros((y.shape[0], len(starts)))
        for k in ("n_t", "k_t", "s_t", "q_t", "n_b", "k_b", "s_b", "q_b", "k_c", "s_c", "y_max")
    }
    for w, s0 in enumerate(starts):
        trail = np.arange(max(s0 - b, 0), s0)
        slot = baseline_columns(int(s0), c, b, period) if period else trail
        for d in range(y.shape[0]):

            def keep(cols: np.ndarray, d: int = d, s0: int = int(s0)) -> np.ndarray:
                if excl is None:
                    return cols
                drop = [excl[d, h] and 0 < s0 - h <= eh for h in cols]
                return cols[~np.array(drop, dtype=bool)] if cols.size else cols

            for tag, cols in (("t", keep(trail)), ("b", keep(slot))):
                v = y[d, cols]
                nz = v[v > 0]
                out[f"n_{tag}"][d, w] = cols.size
                out[f"k_{tag}"][d, w] = nz.size
                out[f"s_{tag}"][d, w] = (nz - 1).sum()
                out[f"q_{tag}"][d, w] = ((nz - 1) ** 2).sum()
            cur = y[d, s0 : s0 + c]
            out["k_c"][d, w] = (cur > 0).sum()
            out["s_c"][d, w] = (cur[cur > 0] - 1).sum()
            out["y_max"][d, w] = cur.max()
    return out


@pytest.mark.parametrize("period", [0, 24])
def test_fast_sums_match_float64_reference(period: int) -> None:
    """The one-pass float32 sufficient statistics agree with plain float64 loops."""
    from dnsieve.detectors.volume import window_sums

    rng = np.random.default_rng(11)
    y = _hurdle_population(rng, 60, 96).astype(np.float64)
    y[:5] *= 997.0  # large counts: float32 sums of squares are no longer exact
    y32 = y.astype(np.float32)
    starts = np.array([24, 30, 51, 72, 93])
    excl = np.zeros(y.shape, dtype=bool)
    excl[rng.integers(0, 60, 40), rng.integers(20, 96, 40)] = True
    excl &= y > 0
    er, ec = np.nonzero(excl)
    for ex, eh in ((None, 0), ((er, ec), 5)):
        sm = window_sums(y32, starts, 3, 72, period=period, exclude=ex, exclude_hours=eh)
        ref = _sums_reference(y, starts, 3, 72, period, excl if ex else None, eh)
        for name, want in ref.items():
            np.testing.assert_allclose(getattr(sm, name), want, rtol=2e-6, atol=1e-9, err_msg=name)
    k, s, q = domain_stats(y32)
    yy = np.where(y > 0, y - 1, 0.0)
    np.testing.assert_allclose(k, (y > 0).sum(axis=1))
    np.testing.assert_allclose(s, yy.sum(axis=1), rtol=1e-7)
    np.testing.assert_allclose(q, (yy**2).sum(axis=1), rtol=2e-6)


def test_posteriors_match_direct_formulas() -> None:
    """window_posteriors (tabulated current-window terms) vs the formulas evaluated directly."""
    from scipy import special

    from dnsieve.detectors.volume import window_posteriors, window_sums

    rng = np.random.default_rng(12)
    y = _hurdle_population(rng, 500, 96).astype(np.float32)
    pr = HurdlePriors(0.4, 3.0, 0.8, 0.3)
    sm = window_sums(y, np.array([90]), 3, 90)
    st = window_posteriors(sm, pr)
    a_c, b_c = pr.a0 + sm.k_c, pr.b0 + 3 - sm.k_c
    tg = lambda x: special.polygamma(1, x)  # noqa: E731
    dg = special.digamma
    mu = (dg(a_c) - dg(b_c)) - (dg(st.a_b) - dg(st.b_b))
    want = special.ndtr(mu / np.sqrt(tg(a_c) + tg(b_c) + tg(st.a_b) + tg(st.b_b)))
    np.testing.assert_allclose(st.prob_occ, want, rtol=1e-8, atol=1e-12)
    m_b, m_c = st.al_b / st.be_b, st.al_c / st.be_c
    v_b = (m_b / st.be_b) / (1 + m_b) ** 2
    v_c = (m_c / st.be_c) / (1 + m_c) ** 2
    e_b = dg(st.a_b) - dg(st.a_b + st.b_b) + np.log1p(m_b) - v_b / 2
    e_c = dg(a_c) - dg(a_c + b_c) + np.log1p(m_c) - v_c / 2
    sd = np.sqrt(tg(st.a_b) - tg(st.a_b + st.b_b) + v_b + tg(a_c) - tg(a_c + b_c) + v_c)
    np.testing.assert_allclose(
        st.prob_demand, special.ndtr((e_c - e_b) / sd), rtol=1e-7, atol=1e-12
    )


def test_newcomer_prior_is_fitted_on_first_hours() -> None:
    rng = np.random.default_rng(13)
    y = _hurdle_population(rng, 3000, 168)
    k, s, q = domain_stats(y)
    first = rng.poisson(rng.gamma(0.5, 1 / 2.0, 4000)).astype(np.float64)  # Gamma(0.5, rate 2)
    pr = fit_priors(k, s, 168, q, first=first)
    assert pr.new_alpha == pytest.approx(0.5, rel=0.3) and pr.new_beta == pytest.approx(
        2.0, rel=0.4
    )
    al, be = pr.size_prior(np.array([0.0, 0.3]))
    assert (al[0], be[0]) == (pr.new_alpha, pr.new_beta) and al[1] != pr.new_alpha
    # without newcomers, an entity with no history gets the lowest stratum (single-hour entities)
    plain = fit_priors(k, s, 168, q)
    assert math.isnan(plain.new_alpha)
    assert plain.size_prior(np.array([0.0]))[0][0] == plain.size_alpha[0]


def test_flagged_hours_guard_lifts_a_straddling_spike() -> None:
    """A spike's first hour, flagged in its own window, stays out of the next window's baseline."""
    rng = np.random.default_rng(14)
    hours = 72
    y = _hurdle_population(rng, 300, hours)
    quiet = np.zeros(hours, dtype=np.int64)
    quiet[rng.choice(62, 20, replace=False)] = rng.integers(1, 4, 20)
    y[0] = quiet
    y[0, 62:66] = [40, 45, 50, 42]  # starts in the last hour of window 60-63
    df = _frame(y)
    ws = T0 + timedelta(hours=63)

    def score(exclude_p: float = 1e-4) -> float:
        out = VolumeDetector(exclude_p=exclude_p).score(df, CTX)
        hit = out.filter((pl.col("entity") == "d0.example") & (pl.col("window_start") == ws))
        return float(hit["score"][0]) if hit.height else 0.0

    guarded, plain = score(), score(exclude_p=0.0)
    assert guarded > plain + 2.0
    ev = (
        VolumeDetector()
        .score(df, CTX)
        .filter((pl.col("entity") == "d0.example") & (pl.col("window_start") == ws))["evidence"][0]
    )
    ev = json.loads(ev) if isinstance(ev, str) else ev
    assert ev["baseline"]["excluded_hours"] == ["2024-04-21T14:00Z"]


def test_active_hour_size_comes_from_the_whole_trailing_baseline() -> None:
    """Seasonal mode: occurrence by the hour of the day, size by the entity's whole history.

    A site busy in the afternoons (1-3 queries an active hour) gets 50 queries
    at 02:00, an hour it was never active in: its seasonal slot holds no
    active hour, yet its 60-odd active hours say how big an hour of it is.
    """
    from dnsieve.detectors.volume import window_posteriors, window_sums

    rng = np.random.default_rng(5)
    hours = 24 * 6
    y = _hurdle_population(rng, 400, hours).astype(np.float32)
    site = np.zeros(hours, dtype=np.float32)
    for day in range(6):
        site[day * 24 + 12 : day * 24 + 23] = 1 + rng.poisson(1.0, 11)
    site[5 * 24 + 2] = 50.0
    y[0] = site
    k, s, q = domain_stats(y[:, : 5 * 24])
    pr = fit_priors(k, s, 5 * 24, q)
    sm = window_sums(y, np.array([5 * 24]), 3, 120, period=24)
    st = window_posteriors(sm, pr)
    assert sm.k_b[0, 0] == 0 and sm.k_t[0, 0] >= 50  # empty slot, rich trailing history
    # the size posterior holds the trailing active hours at full weight
    assert st.be_b[0, 0] == pytest.approx(pr.size_prior(sm.k_t[:1, 0] / 120)[1][0]
                                          + sm.k_t[0, 0] / st.phi[0, 0])  # fmt: skip
    assert st.al_b[0, 0] / st.be_b[0, 0] == pytest.approx(sm.s_t[0, 0] / sm.k_t[0, 0], rel=0.2)
    res = VolumeDetector(min_baseline_hours=24).score(
        _frame(y.astype(np.int64)),
        DetectContext(start=T0 + timedelta(hours=120), end=T0 + timedelta(hours=123)),
    )
    hit = res.filter(pl.col("entity") == "d0.example")
    assert hit.height == 1 and hit["score"][0] > 10  # p < 1e-10 under its own baseline
    ev = json.loads(hit["evidence"][0])
    assert 0 <= ev["stratum"]["index"] < len(ev["stratum"]["share"])
    assert sum(ev["stratum"]["share"]) == pytest.approx(1.0, abs=1e-4)


def test_strata_and_shares_of_the_fitted_population() -> None:
    rng = np.random.default_rng(8)
    y = _hurdle_population(rng, 3000, 96)
    k, s, q = domain_stats(y)
    pr = fit_priors(k, s, 96, q)
    assert len(pr.stratum_share) == len(pr.size_edges) + 1
    rate = k[k >= 1] / 96
    got = np.bincount(pr.stratum(rate), minlength=len(pr.stratum_share)) / rate.size
    np.testing.assert_allclose(got, pr.stratum_share)
    assert fit_priors(k, s, 96, q, n_strata=1).stratum(rate).max() == 0
