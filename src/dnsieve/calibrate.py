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
4. **Alert budget.**  At most ``budget_per_day`` alerts per UTC day (by
   ``window_start``), across detectors, the most significant first.  The
   budget is a ceiling: quiet days produce fewer alerts, or none.

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

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
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


def floor_decision(
    scores: NDArray[np.float64],
    significant: NDArray[np.bool_],
    tail_p: NDArray[np.float64],
    floor: float,
    empirical: bool,
    top_share: float = 0.05,
) -> NDArray[np.bool_]:
    """Significance of a detector with a score floor (small captures).

    Population calibration ranks a score among its detector's other scores; a
    single capture may hold two domains, too few to fit a tail, and on a few
    hundred entity-windows no tail reaches a false-alarm rate of 1e-4 per
    entity-day.  The floor, set per detector above the benign maxima measured
    on real traffic (docs/detectors.md), is then the absolute evidence bar and
    the population rank guards against floods: significant ⇔ score ≥ floor and
    (significant by the tail, or no tail fitted (``empirical``), or
    ``tail_p ≤ top_share``).

    >>> floor_decision(np.array([5.0, 5.0, 1.0]), np.array([False, True, True]),
    ...                np.array([0.5, 0.01, 0.01]), 4.0, empirical=False).tolist()
    [False, True, False]
    """
    top = np.nan_to_num(tail_p, nan=1.0) <= top_share
    return np.asarray((scores >= floor) & (significant | empirical | top), dtype=np.bool_)


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
    floor_top_share: float = 0.05,
) -> CalibrationResult:
    """Turn scored candidates (ANOMALY shape) into alerts; see the module doc.

    ``population[detector]`` is the number of entity-windows that detector
    scored (default: its number of rows, i.e. it emitted everything).  Adds
    ``tail_p`` (population tail probability), ``global_p`` (max of ``tail_p``
    and the local ``p_value``), ``significant`` and ``alert`` columns.
    With ``decluster`` the tail is fitted on cluster maxima (see the module
    doc); every row still gets the tail probability of its own score.

    ``floors[detector]`` is that detector's absolute evidence bar
    (``Detector.score_floor``, see :func:`floor_decision`): with a floor, a
    candidate is significant when its score reaches the floor *and* it is
    significant by the tail, or no tail could be fitted (too few candidates),
    or it is in the top ``floor_top_share`` of its population.  The daily
    budget applies after that, to every detector alike.
    """
    if target_far <= 0 or budget_per_day < 0:
        raise ValueError("target_far must be > 0 and budget_per_day ≥ 0")
    population = dict(population or {})
    extra = {
        "tail_p": pl.Float64,
        "global_p": pl.Float64,
        "significant": pl.Boolean,
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
            sig = floor_decision(
                scores, sig, tail, float(floor), fit.model == "empirical", floor_top_share
            )
        parts.append(
            df.drop("_r").with_columns(
                pl.Series("tail_p", tail), pl.Series("global_p", gp), pl.Series("significant", sig)
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
            "significant": int(sig.sum()),
            "tail": fit.to_dict(),
        }
    scored = pl.concat(parts)
    scored = scored.with_columns(pl.col("window_start").dt.date().alias("_day"))
    ranked = scored.filter(pl.col("significant")).sort(
        ["_day", "global_p", "score", "detector", "entity"],
        descending=[False, False, True, False, False],
    )
    kept = ranked.group_by("_day", maintain_order=True).head(budget_per_day)
    keys = kept.select("detector", "entity", "window_start").with_columns(
        pl.lit(True).alias("alert")
    )
    scored = scored.join(keys, on=["detector", "entity", "window_start"], how="left").with_columns(
        pl.col("alert").fill_null(False)
    )
    for det, d in per_det.items():
        sub = scored.filter(pl.col("detector") == det)
        d["alerts"] = int(sub.get_column("alert").sum())
        d["dropped_by_budget"] = d["significant"] - d["alerts"]
    scored = scored.drop("_day").sort(["detector", "entity", "window_start"])
    alerts = scored.filter(pl.col("alert")).sort(
        ["global_p", "score", "detector", "entity"],
        descending=[False, True, False, False],
        nulls_last=True,
    )
    diag = {
        "target_far_per_entity_day": target_far,
        "budget_per_day": budget_per_day,
        "detectors": per_det,
    }
    return CalibrationResult(scored, alerts, diag)
