"""Global calibration: local anomaly scores → alerts (ARCHITECTURE §4 "Local to global").

A detector's score is *local*: how surprising an (entity, window) is under the
entity's own model.  Across a population of thousands of entities and windows
some local surprises are bound to happen by chance, and a local model may be
miscalibrated for the population.  Calibration therefore ranks each score in
the population of its own detector:

1. **Peaks over threshold.**  The exceedances ``y = s − u`` of the highest
   scores over a threshold ``u`` are fitted with a generalised Pareto
   distribution (:func:`scipy.stats.genpareto`, location 0).  The population
   tail probability of a score ``s > u`` is ``(n_u/N)·GPD.sf(s − u)``, where
   ``N`` is the number of entity-windows the detector scored (its
   *population*, which includes the many it did not emit) and ``n_u`` the
   number of exceedances.  Below ``u`` the empirical rank is used.
   The fit is *declustered* (runs declustering, Coles 2001 §5.3.2): an
   anomaly lasting several consecutive windows of one entity is one cluster,
   and only each cluster's highest score enters the tail fit and the ranks.
   Without it a few long anomalies fill the top of the population with
   dependent exceedances, the fitted tail is heavier than the tail of
   independent events, and the threshold rises above the anomalies it is
   meant to single out.
2. **Mean/Max regime test** (Rochet & Serra 2016, arXiv:1606.08974).  The
   ratio ``R = mean(y)/max(y)`` is scale-free, so its distribution depends only
   on the tail index ξ.  Under an exponential tail (ξ = 0) it is simulated
   exactly (seeded); an observed R in the lower tail of that null means a heavy
   tail (ξ > 0: the maximum outruns the mean), in the upper tail a bounded one
   (ξ < 0).  The fitted GPD is trusted only when the sign of its ξ agrees with
   the regime; otherwise (and when the test says "exponential") the tail is
   fitted as exponential (ξ = 0, σ = mean excess).  ξ is also estimated by
   inverting ``E[R | ξ, n]`` (``xi_meanmax``), a cross-check on the fit.
3. **Significance threshold.**  ``target_far`` is a false-alarm rate *per
   entity per day*; per window it is ``q = target_far · window / 1 day``.  An
   anomaly is significant when its global p-value ``max(tail(s), p_local)`` is
   at most ``q``: it must be rare in the population *and* improbable under its
   own local model (``p_local`` is the detector's ``p_value`` when it gives one).
4. **A strong local signal is kept.**  A detector's ``score_floor`` is its
   bar of overwhelming evidence (set above the benign maxima measured on real
   traffic, docs/detectors.md).  A score at or above it is significant
   whatever the population: pooling more data may raise the tail threshold,
   but it never drops an anomaly whose own evidence is overwhelming (a
   capture of three C2 sessions and the same sessions among eighteen captures
   give the same alerts).  Below the floor nothing alerts.
5. **Per-stratum tails.**  A detector may name each candidate's reference
   population in its evidence (``"stratum": {"index": k, "share": [...]}``,
   the volume models' occurrence strata).  Each stratum is then also fitted
   as its own population (:func:`stratified_tails`: ``N_k = share_k · N``,
   peaks over threshold, the shape shrunk to the pooled one), and a candidate
   rare in its stratum and improbable locally is significant too: a quiet
   site's spike is not judged against the bursts of the busiest domains.
   Strata only add significance, never remove it.
6. **Popular domains need overwhelming evidence** (a prior).  The prior
   probability that an anomaly on a popular domain is worth an alert falls
   with its popularity rank ``r`` (:func:`dnsieve.popular.popularity_rank`):
   ``w(r) = min(1, r / popular_scale)`` (``popular_scale`` = 1,000,000, the
   length of a full top list: a domain past it is as unknown as any other).
   The required tail probability scales with it: an anomaly on a popular
   domain is significant only when it is significant as above *and* its
   evidence ``p`` is at most ``q · w(r)``, so the floor alone does not
   suffice.  ``p`` is the detector's own ``p_value`` when it gives a
   calibrated one (the volume model's predictive p-value: a 23-fold spike on
   a news site has p ≈ 1e-46 and passes), else the population tail, which
   only an extreme outlier of a large population takes to ``q·w(r)``
   (``google.com``, rank 1, needs ``p ≤ q·1e-6``): a single host polling a
   popular telemetry endpoint like a beacon is software, not an alert.
7. **Alert budget, by episode.**  At most ``budget_per_day`` alerts per UTC
   day, across detectors, the most significant first.  With ``episode_gap``
   the budget counts *episodes* (:func:`dnsieve.episodes.assign_episodes`):
   one detector × entity's significant windows without a quiet gap longer
   than ``episode_gap`` are one alert, ranked by and dated on its worst
   window, so one tunnel does not spend a day's budget hour by hour.  Every
   significant window of a kept episode is marked ``alert`` (the store keeps
   one alert per episode with its windows as evidence).  The budget is a
   ceiling: quiet days produce fewer alerts, or none.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> mean_max_test(rng.exponential(size=500)).regime
'exponential'
>>> mean_max_test(rng.pareto(1.5, size=500)).regime
'heavy'
>>> mean_max_test(rng.uniform(size=500)).regime
'bounded'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any, Literal

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy import stats

__all__ = [
    "CalibrationResult",
    "MeanMaxTest",
    "TailFit",
    "calibrate",
    "fit_tail",
    "floor_decision",
    "mean_max_test",
    "popular_prior",
    "stratified_tails",
]

Regime = Literal["bounded", "exponential", "heavy", "insufficient"]
DAY_SECONDS = 86_400.0


@dataclass(frozen=True)
class MeanMaxTest:
    """Result of the Mean/Max tail-regime test on exceedances."""

    n: int
    ratio: float
    p_heavy: float  # P(R ≤ r_obs) under the exponential null
    p_bounded: float  # P(R ≥ r_obs) under the exponential null
    regime: Regime
    xi_meanmax: float  # ξ whose expected Mean/Max ratio matches the observed one


def _gpd_quantile(u: NDArray[np.float64], xi: float) -> NDArray[np.float64]:
    """Unit-scale GPD variates from uniforms (survival form, ``u`` in (0,1])."""
    if abs(xi) < 1e-9:
        return -np.log(u)
    return (u ** (-xi) - 1.0) / xi


def mean_max_test(
    exceedances: ArrayLike, *, alpha: float = 0.05, n_sim: int = 2000, seed: int = 0
) -> MeanMaxTest:
    """Test whether exceedances follow a bounded, exponential or heavy tail (see module doc).

    The null distribution of ``R = mean/max`` for ``n`` iid exponentials is
    simulated with ``n_sim`` seeded samples (at most 20,000 values per sample
    are used: a random subset of larger inputs).
    """
    y = np.asarray(exceedances, dtype=np.float64)
    y = y[np.isfinite(y) & (y >= 0)]
    rng = np.random.default_rng(seed)
    if y.size > 20_000:
        y = rng.choice(y, 20_000, replace=False)
    n = int(y.size)
    if n < 5 or y.max() <= 0:
        return MeanMaxTest(
            n, float("nan"), float("nan"), float("nan"), "insufficient", float("nan")
        )
    r_obs = float(y.mean() / y.max())
    uni = 1.0 - rng.random((n_sim, n))  # in (0, 1]
    expo = _gpd_quantile(uni, 0.0)
    r_null = expo.mean(axis=1) / expo.max(axis=1)
    p_heavy = float((np.sum(r_null <= r_obs) + 1) / (n_sim + 1))
    p_bounded = float((np.sum(r_null >= r_obs) + 1) / (n_sim + 1))
    regime: Regime = "exponential"
    if p_heavy < alpha:
        regime = "heavy"
    elif p_bounded < alpha:
        regime = "bounded"
    # ξ by inverting E[R | ξ] on a grid (common random numbers; E[R] falls as ξ grows)
    grid = np.linspace(-0.9, 0.95, 38)
    sub = uni[: min(n_sim, 200)]
    er = np.empty(grid.size)
    for i, g in enumerate(grid):
        x = _gpd_quantile(sub, g)
        er[i] = np.mean(x.mean(axis=1) / x.max(axis=1))
    xi_hat = float(np.interp(r_obs, er[::-1], grid[::-1]))
    return MeanMaxTest(n, r_obs, p_heavy, p_bounded, regime, xi_hat)


@dataclass(frozen=True)
class TailFit:
    """A peaks-over-threshold fit of one detector's score population."""

    population: int
    threshold_u: float
    n_exceedances: int
    xi: float
    sigma: float
    model: Literal["gpd", "exponential", "empirical"]
    test: MeanMaxTest
    note: str = ""

    def tail(self, scores: ArrayLike, ranks: ArrayLike) -> NDArray[np.float64]:
        """Population tail probability P(S ≥ s) of each score (``ranks``: 1 = highest)."""
        s = np.asarray(scores, dtype=np.float64)
        emp = np.asarray(ranks, dtype=np.float64) / max(self.population, 1)
        if self.model == "empirical":
            return np.clip(emp, 0.0, 1.0)
        frac = self.n_exceedances / max(self.population, 1)
        ex = np.maximum(s - self.threshold_u, 0.0)
        sf = stats.genpareto.sf(ex, self.xi, loc=0.0, scale=self.sigma)
        return np.clip(np.where(s > self.threshold_u, frac * sf, emp), 0.0, 1.0)

    def score_at(self, q: float) -> float:
        """The score whose population tail probability is ``q`` (inf if beyond a bounded tail)."""
        frac = self.n_exceedances / max(self.population, 1)
        if self.model == "empirical" or q >= frac:
            return float("nan")
        return float(
            self.threshold_u + stats.genpareto.isf(q / frac, self.xi, loc=0.0, scale=self.sigma)
        )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["test"] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d["test"].items()}
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def fit_tail(
    scores: ArrayLike,
    population: int,
    *,
    min_exceedances: int = 20,
    max_exceedances: int | None = None,
    seed: int = 0,
) -> TailFit:
    """Peaks-over-threshold fit of the upper tail of ``scores`` from a population of ``population``.

    ``scores`` may be only the emitted top of the population.  The number of
    exceedances is about ``sqrt(population)`` (at least ``min_exceedances``),
    capped by what was emitted; ``u`` is the next score below them.
    """
    s = np.sort(
        np.asarray(scores, dtype=np.float64)[np.isfinite(np.asarray(scores, dtype=np.float64))]
    )[::-1]
    population = max(int(population), int(s.size))
    want = max(min_exceedances, math.ceil(math.sqrt(max(population, 1))))
    if max_exceedances is not None:
        want = min(want, max_exceedances)
    n_u = min(want, max(s.size - 1, 0))
    if n_u < min_exceedances:
        test = (
            mean_max_test(s[:n_u] - (s[n_u] if n_u < s.size else 0.0), seed=seed)
            if n_u >= 5
            else MeanMaxTest(
                n_u, float("nan"), float("nan"), float("nan"), "insufficient", float("nan")
            )
        )
        return TailFit(population, float("nan"), n_u, float("nan"), float("nan"), "empirical", test,
                       f"only {s.size} scores: empirical ranks, no tail fit")  # fmt: skip
    u = float(s[n_u])
    y = s[:n_u] - u
    test = mean_max_test(y, seed=seed)
    y_pos = np.maximum(y, 1e-12)
    note = ""
    if test.regime in ("heavy", "bounded"):
        xi, _, sigma = stats.genpareto.fit(y_pos, floc=0.0)
        if (test.regime == "heavy") != (xi > 0):
            note = f"GPD ξ={xi:.3f} disagrees with the {test.regime} Mean/Max regime: exponential tail used"
            xi, sigma, model = 0.0, float(y.mean()), "exponential"
        else:
            model = "gpd"
    else:
        xi, sigma, model = 0.0, float(max(y.mean(), 1e-12)), "exponential"
    return TailFit(population, u, n_u, float(xi), float(max(sigma, 1e-12)), model, test, note)  # type: ignore[arg-type]


def _cluster_maxima(df: pl.DataFrame, scores: NDArray[np.float64]) -> NDArray[np.float64]:
    """Highest score of each cluster: one entity's windows that follow each other without a gap."""
    if df.height == 0:
        return scores
    frame = pl.DataFrame(
        {
            "entity": df.get_column("entity"),
            "ws": df.get_column("window_start"),
            "we": df.get_column("window_end"),
            "s": scores,
        }
    ).sort(["entity", "ws"])
    new = (pl.col("entity") != pl.col("entity").shift(1)).fill_null(True) | (
        pl.col("ws") > pl.col("we").shift(1)
    ).fill_null(True)
    out = frame.with_columns(new.cum_sum().alias("_c")).group_by("_c").agg(pl.col("s").max())
    return out.get_column("s").to_numpy().astype(np.float64)


def _strata_of(df: pl.DataFrame) -> tuple[NDArray[np.int64], NDArray[np.float64]] | None:
    """Each candidate's calibration stratum and the strata's population shares, or None.

    A detector names the reference population of a candidate in its evidence:
    ``"stratum": {"index": k, "share": [share of stratum 0, 1, ...]}`` (the
    volume models: occurrence strata of the fitted population).  Only when
    every candidate has one; the shares are averaged over the distinct
    vectors seen (one per fit epoch).
    """
    if df.height == 0 or "evidence" not in df.columns:
        return None
    idx = np.zeros(df.height, dtype=np.int64)
    shares: dict[tuple[float, ...], None] = {}
    for i, text in enumerate(df.get_column("evidence").to_list()):
        if not text or '"stratum"' not in text:
            return None
        try:
            st = json.loads(text).get("stratum")
            k, share = int(st["index"]), tuple(float(x) for x in st["share"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        if not share or not 0 <= k < len(share):
            return None
        idx[i] = k
        shares[share] = None
    width = max(len(s) for s in shares)
    mat = np.array([list(s) + [0.0] * (width - len(s)) for s in shares])
    mean = mat.mean(axis=0)
    return idx, mean / max(float(mean.sum()), 1e-12)


def stratified_tails(
    df: pl.DataFrame,
    scores: NDArray[np.float64],
    strata: NDArray[np.int64],
    share: NDArray[np.float64],
    population: int,
    pooled: TailFit,
    q: float,
    *,
    min_exceedances: int = 20,
    seed: int = 0,
    decluster: bool = True,
) -> tuple[NDArray[np.float64], list[dict[str, Any]]]:
    """Population tail probability of each score *within its stratum*, and per-stratum diagnostics.

    A detector's candidates may come from populations of very different
    behaviour (the volume model: sites visited once a day next to CDNs and
    update services, whose bursts are frequent).  Ranked in one pooled
    population, a quiet site's spike is judged against the bursts of the
    busiest domains.  Each stratum ``k`` is its own reference population of
    ``N_k = share_k · population`` entity-windows, fitted by peaks over
    threshold like the pooled population (:func:`fit_tail`, declustered),
    with a hierarchical prior on the shape: the stratum's ξ is shrunk to the
    pooled fit's ξ with the weight of ``min_exceedances`` exceedances,
    ``ξ_k = (n_k ξ̂_k + m ξ_pool)/(n_k + m)`` (a small stratum takes the
    pooled shape; a large one its own), and its scale is the moment estimate
    given that shape, ``σ_k = mean excess · (1 − ξ_k)``.  Strata with fewer
    than 5 candidates use the pooled tail.
    """
    out = np.ones(scores.size)
    diag: list[dict[str, Any]] = []
    xi_pool = pooled.xi if np.isfinite(pooled.xi) else 0.0
    for k in range(share.size):
        m = strata == k
        n_k = max(round(population * float(share[k])), int(m.sum()))
        if not m.any():
            continue
        sub = df.filter(pl.Series(m))
        sc = scores[m]
        ref = _cluster_maxima(sub, sc) if decluster else sc
        srt = np.sort(ref)
        ranks = np.maximum(srt.size - np.searchsorted(srt, sc, side="left"), 1).astype(np.float64)
        if ref.size < 5:
            out[m] = pooled.tail(sc, ranks * max(pooled.population, 1) / max(n_k, 1))
            diag.append({"stratum": k, "population": n_k, "candidates": int(m.sum()),
                         "model": "pooled"})  # fmt: skip
            continue
        fit_k = fit_tail(ref, n_k, min_exceedances=min(min_exceedances, 5), seed=seed)
        n_u = fit_k.n_exceedances
        u = fit_k.threshold_u
        if not np.isfinite(u):
            out[m] = np.clip(ranks / max(n_k, 1), 0.0, 1.0)
            continue
        own = fit_k.xi if fit_k.model == "gpd" else 0.0
        w_own = n_u if n_u >= min_exceedances else 0
        xi = (w_own * own + min_exceedances * xi_pool) / (w_own + min_exceedances)
        xi = float(min(xi, 0.9))
        excess = srt[::-1][:n_u] - u
        sigma = float(max(excess.mean() * (1.0 - xi), 1e-9))
        fit_s = TailFit(
            n_k, u, n_u, xi, sigma, "gpd", fit_k.test, "stratum, ξ shrunk to the pooled ξ"
        )
        out[m] = fit_s.tail(sc, ranks)
        diag.append(
            {
                "stratum": k,
                "population": n_k,
                "candidates": int(m.sum()),
                "clusters": int(ref.size),
                "threshold_u": round(u, 4),
                "n_exceedances": n_u,
                "xi": round(xi, 4),
                "xi_own": round(own, 4),
                "sigma": round(sigma, 4),
                "score_threshold": fit_s.score_at(q),
            }
        )
    return out, diag


def floor_decision(
    scores: NDArray[np.float64],
    significant: NDArray[np.bool_],
    floor: float,
) -> NDArray[np.bool_]:
    """Significance of a detector with a score floor (its bar of overwhelming evidence).

    A score at or above the floor is significant whatever the population (a
    strong local signal is never dropped because more data came in); below
    the floor nothing is, even when the population tail would call it rare
    (small or quiet populations make weak scores look rare).

    >>> floor_decision(np.array([5.0, 5.0, 1.0]), np.array([False, True, True]), 4.0).tolist()
    [True, True, False]
    """
    del significant  # kept in the signature: the tail no longer vetoes a floored score
    return np.asarray(scores >= floor, dtype=np.bool_)


def popular_prior(ranks: ArrayLike, scale: float = 1_000_000.0) -> NDArray[np.float64]:
    """Prior weight ``w(r) = min(1, r/scale)`` of an alert on a domain of popularity rank ``r``.

    Unranked domains (NaN) weigh 1.  The required tail probability of an
    anomaly on the domain is ``q · w(r)``.

    >>> popular_prior(np.array([1.0, 5e5, 2e6, np.nan])).tolist()
    [1e-06, 0.5, 1.0, 1.0]
    """
    r = np.asarray(ranks, dtype=np.float64)
    w = np.clip(r / float(scale), 0.0, 1.0)
    return np.where(np.isfinite(r), np.maximum(w, 1e-12), 1.0)


def _entity_ranks(entities: pl.Series) -> NDArray[np.float64]:
    """Popularity rank of each entity's domain (``client|domain`` → domain; NaN if none)."""
    from dnsieve.popular import popularity_rank

    dom = entities.str.split("|").list.last()
    # a client address is no domain: only names with a letter are looked up
    dom = dom.map_elements(
        lambda d: d if any(c.isalpha() for c in d) else None, return_dtype=pl.String
    )
    return popularity_rank(dom).cast(pl.Float64).fill_null(float("nan")).to_numpy()


@dataclass
class CalibrationResult:
    """Calibrated anomalies, the alerts kept, and per-detector diagnostics."""

    anomalies: pl.DataFrame  # every input row with global_p, significant, alert columns
    alerts: pl.DataFrame  # the alerts: significant, within the daily budget
    diagnostics: dict[str, Any] = field(default_factory=dict)


def calibrate(
    anomalies: pl.DataFrame,
    *,
    target_far: float = 1e-4,
    budget_per_day: int = 20,
    population: Mapping[str, int] | None = None,
    min_exceedances: int = 20,
    seed: int = 0,
    decluster: bool = True,
    floors: Mapping[str, float] | None = None,
    floor_top_share: float | None = None,
    popular_scale: float | None = 1_000_000.0,
    episode_gap: timedelta | None = None,
) -> CalibrationResult:
    """Turn scored candidates (ANOMALY shape) into alerts; see the module doc.

    ``population[detector]`` is the number of entity-windows that detector
    scored (default: its number of rows, i.e. it emitted everything).  Adds
    ``tail_p`` (population tail probability), ``global_p`` (max of ``tail_p``
    and the local ``p_value``), ``significant`` and ``alert`` columns.
    With ``decluster`` the tail is fitted on cluster maxima (see the module
    doc); every row still gets the tail probability of its own score.

    ``floors[detector]`` is that detector's bar of overwhelming evidence
    (``Detector.score_floor``, see :func:`floor_decision`): with a floor, a
    candidate is significant exactly when its score reaches the floor (or,
    when its candidates name strata, when it is rare in its stratum: item 5).
    ``floor_top_share`` is accepted for compatibility and ignored.
    ``popular_scale`` sets the popularity prior (module doc, item 6; None
    turns it off).  With ``episode_gap`` the daily budget counts episodes
    (item 7); without it, windows.  Adds ``prior`` (the popularity weight) and,
    with ``episode_gap``, ``episode_start``/``episode_end`` to the anomalies.
    """
    del floor_top_share
    if target_far <= 0 or budget_per_day < 0:
        raise ValueError("target_far must be > 0 and budget_per_day ≥ 0")
    population = dict(population or {})
    extra = {
        "tail_p": pl.Float64,
        "global_p": pl.Float64,
        "significant": pl.Boolean,
        "prior": pl.Float64,
        "alert": pl.Boolean,
    }
    if anomalies.height == 0:
        empty = anomalies.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in extra.items()])
        diag = {
            "target_far_per_entity_day": target_far,
            "budget_per_day": budget_per_day,
            "detectors": {},
        }
        return CalibrationResult(empty, empty, diag)
    parts: list[pl.DataFrame] = []
    per_det: dict[str, Any] = {}
    for det in sorted(anomalies.get_column("detector").unique().to_list()):
        df = anomalies.filter(pl.col("detector") == det).with_row_index("_r")
        scores = df.get_column("score").fill_nan(None).fill_null(-np.inf).to_numpy()
        n_pop = max(int(population.get(det, df.height)), df.height)
        ref = _cluster_maxima(df, scores) if decluster else scores
        fit = fit_tail(ref, n_pop, min_exceedances=min_exceedances, seed=seed)
        # rank of each score among the reference scores (1 = highest)
        srt = np.sort(ref)
        ranks = np.maximum(srt.size - np.searchsorted(srt, scores, side="left"), 1)
        tail = fit.tail(scores, ranks)
        win = (df.get_column("window_end") - df.get_column("window_start")).dt.total_seconds()
        win_s = float(win.median() or 3600.0)  # type: ignore[arg-type]
        q = target_far * win_s / DAY_SECONDS
        local = df.get_column("p_value").fill_nan(None).fill_null(0.0).to_numpy()
        gp = np.maximum(tail, local)
        sig = gp <= q
        floor = (floors or {}).get(det)
        if floor is not None:
            sig = floor_decision(scores, sig, float(floor))
        strata = _strata_of(df)
        strat_diag: list[dict[str, Any]] | None = None
        if strata is not None:
            # rare in its own stratum and improbable locally is significant too
            # (below the floor, or above the pooled tail): a quiet site's spike is
            # not judged against the bursts of the busiest domains
            s_tail, strat_diag = stratified_tails(
                df, scores, strata[0], strata[1], n_pop, fit, q,
                min_exceedances=min_exceedances, seed=seed, decluster=decluster,
            )  # fmt: skip
            # (the pooled tail and global p stay the ranking scale the budget
            # compares across detectors)
            sig = sig | (np.maximum(s_tail, local) <= q)
        prior = np.ones(df.height)
        n_popular = 0
        if popular_scale is not None:
            prior = popular_prior(_entity_ranks(df.get_column("entity")), popular_scale)
            popular = prior < 1.0
            n_popular = int(popular.sum())
            # the floor alone does not suffice: the detector's own probability
            # (its p_value when it gives one, else the population tail) must meet
            # q·w(r)
            has_local = df.get_column("p_value").fill_nan(None).is_not_null().to_numpy()
            evidence_p = np.where(has_local, local, tail)
            strong = sig & (evidence_p <= q * prior)
            sig = np.where(popular, strong, sig)
        parts.append(
            df.drop("_r").with_columns(
                pl.Series("tail_p", tail),
                pl.Series("global_p", gp),
                pl.Series("significant", sig),
                pl.Series("prior", prior, dtype=pl.Float64),
            )
        )
        per_det[det] = {
            "candidates": df.height,
            "clusters": int(ref.size) if decluster else None,
            "population": n_pop,
            "window_seconds": win_s,
            "q_per_window": q,
            "score_threshold": fit.score_at(q),
            "score_floor": None if floor is None else float(floor),
            "popular_candidates": n_popular,
            "significant": int(sig.sum()),
            "tail": fit.to_dict(),
        }
        if strat_diag is not None:
            per_det[det]["strata"] = strat_diag
    scored = pl.concat(parts)
    keys = _budget(scored, budget_per_day, episode_gap)
    scored = scored.join(keys, on=["detector", "entity", "window_start"], how="left").with_columns(
        pl.col("alert").fill_null(False)
    )
    if episode_gap is not None:
        from dnsieve.episodes import assign_episodes

        scored = assign_episodes(scored, episode_gap)
    for det, d in per_det.items():
        sub = scored.filter(pl.col("detector") == det)
        d["alerts"] = int(sub.get_column("alert").sum())
        d["dropped_by_budget"] = d["significant"] - d["alerts"]
    scored = scored.sort(["detector", "entity", "window_start"])
    alerts = scored.filter(pl.col("alert")).sort(
        ["global_p", "score", "detector", "entity"],
        descending=[False, True, False, False],
        nulls_last=True,
    )
    diag = {
        "target_far_per_entity_day": target_far,
        "budget_per_day": budget_per_day,
        "budget_counts": "windows" if episode_gap is None else "episodes",
        "episode_gap_hours": None if episode_gap is None else episode_gap.total_seconds() / 3600,
        "popular_scale": popular_scale,
        "detectors": per_det,
    }
    return CalibrationResult(scored, alerts, diag)


def _budget(
    scored: pl.DataFrame, budget_per_day: int, episode_gap: timedelta | None
) -> pl.DataFrame:
    """(detector, entity, window_start, alert=True) of the windows the daily budget keeps.

    Without ``episode_gap`` every significant window is one unit of budget,
    dated by its ``window_start``.  With it, the significant windows are
    grouped into episodes (:func:`dnsieve.episodes.assign_episodes`); an
    episode is one unit, ranked by and dated on its worst window (lowest
    ``global_p``, then highest score), and all its windows are kept with it.
    """
    sig = scored.filter(pl.col("significant")).select(
        "detector", "entity", "window_start", "window_end", "global_p", "score"
    )
    order = ["_day", "global_p", "score", "detector", "entity"]
    desc = [False, False, True, False, False]
    if episode_gap is None:
        ranked = sig.with_columns(pl.col("window_start").dt.date().alias("_day")).sort(
            order, descending=desc
        )
        kept = ranked.group_by("_day", maintain_order=True).head(budget_per_day)
        return kept.select("detector", "entity", "window_start").with_columns(
            pl.lit(True).alias("alert")
        )
    from dnsieve.episodes import assign_episodes

    ep = assign_episodes(sig, episode_gap)
    ekey = ["detector", "entity", "episode_start"]
    worst = (
        ep.sort(["global_p", "score", "window_start"], descending=[False, True, False])
        .group_by(ekey, maintain_order=True)
        .first()
        .with_columns(pl.col("window_start").dt.date().alias("_day"))
        .sort(order, descending=desc)
    )
    kept = worst.group_by("_day", maintain_order=True).head(budget_per_day).select(ekey)
    return (
        ep.join(kept, on=ekey, how="inner")
        .select("detector", "entity", "window_start")
        .with_columns(pl.lit(True).alias("alert"))
    )
