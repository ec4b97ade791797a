"""The volume model: a conjugate Bayesian hurdle model, vectorised (ARCHITECTURE §4).

Let ``y_dt`` be the query count of entity ``d`` (a registered domain, or a
client) in UTC hour ``t``.

* Occurrence ``z_dt = 1[y_dt > 0] ~ Bernoulli(p_d)``, ``p_d ~ Beta(a0, b0)``.
* Size ``y_dt − 1 | z_dt = 1 ~ Poisson(λ_d)``, ``λ_d ~ Gamma(α0, β0)`` (rate β0).
* The priors are fitted on the whole population (empirical Bayes,
  :func:`fit_priors`): method of moments by default, or maximum marginal
  likelihood (zero-truncated beta-binomial / negative binomial) via scipy.
* Real DNS counts are over-dispersed (diurnal cycles, retries).  Each entity's
  index of dispersion ``φ_d`` (variance/mean of its non-zero sizes in the
  baseline, shrunk towards the population median) *tempers* the size
  likelihood: sufficient statistics are divided by ``φ_d`` (quasi-Poisson power
  likelihood), which keeps the posterior mean and widens the posterior by
  ``φ_d``.  With ``φ_d = 1`` everything is the exact conjugate model.
* The size prior is stratified by the entity's trailing occurrence rate, and
  an entity with no trailing activity gets the *newcomer* prior, fitted on the
  first active hour of the entities that appeared during the data.
* Seasonal baselines compare an hour's *occurrence* with the same hours of
  previous days, but the *size* of an active hour is the entity's own: its
  posterior holds every active hour of the trailing baseline at full weight
  (a slot holds a handful of active hours at most, often none).
* Each (entity, window) has a calibration *stratum*, its occurrence stratum
  (:meth:`HurdlePriors.stratum`), named in the evidence with the strata's
  shares of the fitted population (``stratum_share``): calibration ranks the
  score among the windows of its stratum (:func:`dnsieve.calibrate.stratified_tails`).
* Hours the detector already flagged as extreme are left out of the baselines
  of the windows that follow within ``exclude_hours`` (flagged-hours guard),
  so a spike's first hour does not mask the rest of it.

For every window ``C`` of ``window_hours`` and its trailing baseline ``B`` (up to
``baseline_hours`` before it), the posteriors are

    p | B ~ Beta(a0 + k_B, b0 + n_B − k_B)
    λ | B ~ Gamma(α0 + s_B/φ, β0 + k_B/φ)

with ``k`` the number of non-zero hours and ``s = Σ(y−1)z``; the same for C
(seasonal: ``B`` is the slot for ``p`` with the trailing baseline as a
one-slot-day power prior, and the whole trailing baseline for ``λ``).

Window difference
    ``P(p_C > p_B)``, ``P(λ_C > λ_B)`` and ``P(D_C > D_B)`` for the expected
    hourly demand ``D = p·(1+λ)``, by closed-form normal approximations on the
    logit / log scale (digamma and trigamma moments) for the whole population;
    the exact ``P(λ_C > λ_B) = I_{β_C/(β_B+β_C)}`` (regularised incomplete beta)
    for candidates.  The effect size is ``E[D_C]/E[D_B]`` with a 90 % interval.
Window tail probability
    Posterior-predictive, given the baseline: ``P(K ≥ k_C)`` under the
    beta-binomial, and ``P(S ≥ s_C | k_C)`` under the negative binomial
    (Gamma–Poisson mixture, dispersion-corrected), combined by Fisher's method.
Extreme hours
    The posterior-predictive tail ``P(Y ≥ y)`` of each observed hour.  Hours the
    baseline expects to be empty (``E[p] < 0.5``) are scored on the joint event
    "any traffic, this much": ``E[p]·P(size ≥ y−1)``; hours it expects to be
    busy are scored on the size alone, ``P(size ≥ y−1)``, since their occurrence
    is no surprise.  The window's hour score is the smallest hour tail times the
    number of hours (Bonferroni).
Outlier window
    A candidate is an (entity, window) with a high posterior probability of an
    increase (``prob_threshold``) *and* a material effect (``min_effect``), or
    an hour screened as extreme; its local p-value is
    ``min(1, 2·min(p_window, C·min_hour))`` and its score ``−log10`` of that.

Everything is NumPy over a dense ``entities × hours`` matrix, in chunks of
entities, and over all windows at once.  Exact (slow) special functions are
evaluated only for the few screened candidates.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, ClassVar, Literal

import numpy as np
import polars as pl
from numpy.typing import NDArray
from scipy import optimize, special

from dnsieve.detectors import register
from dnsieve.detectors.base import (
    DetectContext,
    Detector,
    EntityType,
    InputKind,
    anomaly_frame,
    empty_anomalies,
)
from dnsieve.detectors.croston import croston_classic, croston_sba, tsb

__all__ = [
    "ClientVolumeDetector",
    "HurdlePriors",
    "VolumeDetector",
    "WindowStats",
    "dense_matrix",
    "domain_stats",
    "fit_priors",
    "mean_max_ratio",
    "window_stats",
]

Array = NDArray[np.float64]
_Z90 = 1.6448536269514722
_LOG10 = math.log(10.0)


# --------------------------------------------------------------------- priors
@dataclass(frozen=True)
class HurdlePriors:
    """Population priors: Beta(a0, b0) on occurrence, Gamma(alpha0, beta0) on size."""

    a0: float
    b0: float
    alpha0: float
    beta0: float
    phi_pop: float = 1.0
    method: str = "moments"
    n_entities: int = 0
    #: size prior stratified by occurrence rate: interior edges of the rate
    #: strata and (alpha0, beta0) per stratum (empty: one prior for everyone)
    size_edges: tuple[float, ...] = ()
    size_alpha: tuple[float, ...] = ()
    size_beta: tuple[float, ...] = ()
    #: size prior of a *newcomer* (no activity in its trailing baseline), fitted
    #: on the first active hour of the entities that appeared during the data
    #: (NaN: not fitted, newcomers use the lowest occurrence stratum)
    new_alpha: float = math.nan
    new_beta: float = math.nan
    #: share of the fitted population in each occurrence stratum (the strata of
    #: ``size_edges``, lowest first): the calibration's reference populations
    #: (:func:`dnsieve.calibrate.calibrate`, per-stratum tails)
    stratum_share: tuple[float, ...] = ()

    def stratum(self, rate: Array) -> NDArray[np.int64]:
        """Occurrence stratum (0 = lowest) of entities with trailing occurrence rate ``rate``.

        The strata of :meth:`size_prior`; an entity with no trailing activity
        (a newcomer) is in the lowest one.  Without strata everyone is in 0.
        """
        rate = np.asarray(rate, dtype=np.float64)
        if not self.size_edges:
            return np.zeros(rate.shape, dtype=np.int64)
        return np.searchsorted(np.asarray(self.size_edges), rate, side="left").astype(np.int64)

    def size_prior(self, rate: Array) -> tuple[Array, Array]:
        """Gamma (alpha0, beta0) of the size for entities with trailing occurrence rate ``rate``.

        Strata are right-closed quantile bins of the rate, so the lowest holds
        the entities seen in a single hour.  ``rate == 0`` (nothing in the
        trailing baseline) selects the newcomer prior when it was fitted.
        """
        rate = np.asarray(rate, dtype=np.float64)
        if not self.size_alpha:
            al, be = np.full(rate.shape, self.alpha0), np.full(rate.shape, self.beta0)
        else:
            idx = np.searchsorted(np.asarray(self.size_edges), rate, side="left")
            al, be = np.asarray(self.size_alpha)[idx], np.asarray(self.size_beta)[idx]
        if math.isfinite(self.new_alpha) and math.isfinite(self.new_beta):
            new = rate <= 0.0
            al = np.where(new, self.new_alpha, al)
            be = np.where(new, self.new_beta, be)
        return al, be

    def to_dict(self) -> dict[str, Any]:
        def rd(v: Any) -> Any:
            if isinstance(v, float):
                return float(f"{v:.6g}")
            if isinstance(v, tuple):
                return [rd(x) for x in v]
            return v

        return {k: rd(v) for k, v in asdict(self).items()}


@lru_cache(maxsize=64)
def _priors_dict(priors: HurdlePriors) -> dict[str, Any]:
    """``priors.to_dict()``, computed once per fitted priors (the evidence of every candidate)."""
    return priors.to_dict()


def domain_stats(y: NDArray[Any]) -> tuple[Array, Array, Array]:
    """Per-row hurdle sufficient statistics of a counts matrix: (k, s, q).

    ``k`` = non-zero hours, ``s = Σ(y−1)z`` and ``q = Σ(y−1)²z``.
    """
    yf = np.asarray(y)
    if yf.dtype not in (np.float32, np.float64):
        yf = yf.astype(np.float64)
    pz, py, py2 = _prefix_sums(yf, np.zeros(1, dtype=np.int64))
    k, sy, sy2 = pz[:, 1], py[:, 1], py2[:, 1]
    return k, sy - k, sy2 - 2.0 * sy + k


def _dispersion(k: Array, s: Array, q: Array) -> Array:
    """Index of dispersion (variance/mean) of non-zero sizes; NaN when undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        m = s / k
        var = (q - k * m * m) / (k - 1.0)
        phi = var / m
    return np.where((k >= 2) & (m > 0), np.clip(phi, 1.0, 1e4), np.nan)


def fit_priors(
    k: Array,
    s: Array,
    n_hours: float,
    q: Array | None = None,
    method: Literal["moments", "mml"] = "moments",
    max_entities: int = 50_000,
    seed: int = 0,
    n_strata: int = 8,
    first: Array | None = None,
) -> HurdlePriors:
    """Empirical-Bayes priors from per-entity sufficient statistics over ``n_hours``.

    Only entities seen at least once (``k ≥ 1``) are in the population.

    ``moments``: the beta-binomial moment identity
    ``Var(k/n) = m(1−m)[1/n + (1−1/n)ρ]``, ``ρ = 1/(a0+b0+1)``, gives (a0, b0);
    ``Var(s/k) = μ·E[1/k] + Var(λ)`` gives (α0, β0).
    ``mml``: maximises the zero-truncated beta-binomial marginal likelihood of
    ``k`` and the negative-binomial marginal likelihood of ``s | k`` (L-BFGS on
    log-parameters, started at the moment estimates) on a seeded subsample of at
    most ``max_entities`` entities.

    The size prior is also fitted by moments within ``n_strata`` quantile
    strata of the occurrence rate ``k/n`` (``size_edges``/``size_alpha``/
    ``size_beta``, see :func:`_size_strata`); the window kernel looks each
    entity's prior up by its trailing occurrence rate.  ``n_strata = 1``: one
    pooled prior.

    ``first`` (optional): the size ``y − 1`` of the first active hour of each
    entity that first appeared during the data (not at its start).  The
    *newcomer* size prior (``new_alpha``/``new_beta``), used for entities with
    no activity in their trailing baseline, is the maximum-marginal-likelihood
    Gamma fit to these (negative-binomial marginal, :func:`_mml_gamma`): the
    population in exactly the situation the prior is used for.  With fewer
    than 50 newcomers it is not fitted.
    """
    k = np.asarray(k, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    keep = (k >= 1) & np.isfinite(k) & np.isfinite(s)
    k, s = k[keep], np.maximum(s[keep], 0.0)
    n = float(max(n_hours, 1.0))
    phi_pop = 1.0
    if q is not None:
        phi = _dispersion(k, s, np.asarray(q, dtype=np.float64)[keep])
        ok = np.isfinite(phi) & (k >= 10)
        if ok.any():
            phi_pop = float(np.median(phi[ok]))
    if k.size == 0:
        return HurdlePriors(0.5, 10.0, 1.0, 1.0, phi_pop, method, 0)
    r = np.minimum(k / n, 1.0)
    m = float(np.clip(r.mean(), 1e-6, 1 - 1e-6))
    v = float(r.var()) if r.size > 1 else 0.0
    rho = (v / (m * (1 - m)) - 1.0 / n) / (1.0 - 1.0 / n) if n > 1 else 0.5
    rho = float(np.clip(rho, 1e-4, 0.999))
    conc = 1.0 / rho - 1.0
    a0, b0 = m * conc, (1.0 - m) * conc
    alpha0, beta0 = _gamma_moments(k, s)
    edges, al_s, be_s = _size_strata(k, s, r, n_strata, alpha0, beta0)
    share: tuple[float, ...] = ()
    if edges:
        cnt = np.bincount(
            np.searchsorted(np.asarray(edges), r, side="left"), minlength=len(edges) + 1
        )
        share = tuple(float(c) / float(r.size) for c in cnt)
    if method == "mml":
        if k.size > max_entities:
            idx = np.random.default_rng(seed).choice(k.size, max_entities, replace=False)
            k, s = k[idx], s[idx]
        a0, b0 = _mml_beta(k, n, a0, b0)
        alpha0, beta0 = _mml_gamma(k, s, alpha0, beta0)
    elif method != "moments":
        raise ValueError(f"unknown prior method {method!r}: use 'moments' or 'mml'")
    new_al = new_be = math.nan
    if first is not None:
        f = np.asarray(first, dtype=np.float64)
        f = np.maximum(f[np.isfinite(f)], 0.0)
        if f.size >= 50:
            new_al, new_be = _mml_gamma(np.ones_like(f), f, *_gamma_moments(np.ones_like(f), f))
    return HurdlePriors(
        float(a0), float(b0), float(alpha0), float(beta0), phi_pop, method, int(keep.sum()),
        edges, al_s, be_s, new_al, new_be, share,
    )  # fmt: skip


def _gamma_moments(k: Array, s: Array) -> tuple[float, float]:
    """Moment estimate of the Gamma(α0, β0) size prior: ``Var(s/k) = μ·E[1/k] + Var(λ)``."""
    x = s / k
    mu = max(float(x.mean()), 1e-3)
    var_lam = float(x.var()) - mu * float((1.0 / k).mean()) if x.size > 1 else 0.0
    alpha0 = 1e3 if var_lam <= 1e-9 * mu * mu else mu * mu / var_lam
    alpha0 = float(np.clip(alpha0, 1e-2, 1e3))
    return alpha0, alpha0 / mu


def _size_strata(
    k: Array,
    s: Array,
    rate: Array,
    n_strata: int,
    alpha0: float,
    beta0: float,
    min_size: int = 50,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """Size priors per occurrence-rate stratum (quantile strata of ``rate``).

    Query sizes span orders of magnitude across a population (a site visited
    once a day vs a CDN), so one pooled Gamma prior is very diffuse and gives
    entities with little size history an extremely heavy predictive tail.  The
    size of an entity is strongly related to how often it occurs, so the prior
    is fitted per stratum of the occurrence rate ``k/n`` (empirical Bayes with
    a covariate).  Strata with fewer than ``min_size`` entities use the pooled
    prior.  Strata are right-closed (``rate ≤ edge``), so the lowest one holds
    the entities seen in a single hour.

    Returns (interior edges, α0 per stratum, β0 per stratum).
    """
    if n_strata <= 1 or rate.size < 2 * min_size:
        return (), (), ()
    qs = np.quantile(rate, np.linspace(0.0, 1.0, n_strata + 1)[1:-1])
    edges = np.unique(qs)
    idx = np.searchsorted(edges, rate, side="left")
    al, be = [], []
    for b in range(edges.size + 1):
        m = idx == b
        if int(m.sum()) < min_size:
            al.append(alpha0)
            be.append(beta0)
        else:
            kb, sb = k[m], s[m]
            a_b, b_b = _gamma_moments(kb, sb)
            al.append(a_b)
            be.append(b_b)
    return tuple(float(e) for e in edges), tuple(al), tuple(be)


def _mml_beta(k: Array, n: float, a0: float, b0: float) -> tuple[float, float]:
    def nll(theta: Array) -> float:
        a, b = np.exp(theta)
        ll = special.betaln(k + a, n - k + b) - special.betaln(a, b)
        p0 = np.exp(special.betaln(a, n + b) - special.betaln(a, b))
        return -float(ll.sum() - k.size * np.log1p(-min(p0, 1 - 1e-12)))

    res = optimize.minimize(nll, np.log([a0, b0]), method="L-BFGS-B", bounds=[(-9, 9), (-9, 12)])
    a, b = np.exp(res.x)
    return float(a), float(b)


def _mml_gamma(k: Array, s: Array, alpha0: float, beta0: float) -> tuple[float, float]:
    """Maximum marginal likelihood Gamma(α0, β0) size prior (L-BFGS on log-parameters).

    ``s | k ~ NegBin(α0, β0/(β0+k))`` (Poisson sizes integrated over the Gamma),
    started at ``(alpha0, beta0)``.  Identical (k, s) pairs are grouped and
    weighted by their count, so the cost scales with distinct pairs, not entities.
    """
    pairs, cnt = np.unique(np.stack([k, s], axis=1), axis=0, return_counts=True)
    kk, ss, w = pairs[:, 0], pairs[:, 1], cnt.astype(np.float64)
    lk = np.log(kk)

    def nll(theta: Array) -> float:
        al, be = np.exp(theta)
        lbk = np.log(be + kk)
        ll = (
            special.gammaln(ss + al)
            - special.gammaln(al)
            + al * (np.log(be) - lbk)
            + ss * (lk - lbk)
        )
        return -float(w @ ll)

    res = optimize.minimize(
        nll, np.log([alpha0, beta0]), method="L-BFGS-B", bounds=[(-7, 7), (-12, 12)]
    )
    al, be = np.exp(res.x)
    return float(al), float(be)


# ------------------------------------------------------------- special maths
def _trigamma(x: Array) -> Array:
    """Vectorised trigamma (recurrence to x ≥ 6, then the asymptotic series); |rel err| ≤ 1.1e-9.

    Only the arguments under 6 take the recurrence (many posterior parameters,
    such as the baseline's Beta ``b``, are large).
    """
    x = np.asarray(x, dtype=np.float64)
    small = x < 6.0
    acc = np.zeros_like(x)
    xx = x
    if small.any():
        xs = x[small]
        a = np.zeros_like(xs)
        for _ in range(6):
            a += 1.0 / (xs * xs)
            xs = xs + 1.0
        acc[small] = a
        xx = x.copy()
        xx[small] = xs
    inv = 1.0 / xx
    inv2 = inv * inv
    tail = inv + inv2 * (0.5 + inv * (1 / 6 - inv2 * (1 / 30 - inv2 * (1 / 42 - inv2 / 30))))
    return acc + tail


def _nb_tail(x: Array, mean: Array, alpha: Array, phi: Array) -> Array:
    """P(X ≥ x) for the dispersion-corrected negative binomial predictive.

    Mean ``mean``, variance ``φ·mean + mean²/α`` (the Gamma(α, ·)–Poisson
    mixture when φ = 1), i.e. NB(r, p) with ``r = 1/((φ−1)/mean + 1/α)``,
    ``p = r/(r+mean)``; ``P(X ≥ x) = 1 − I_p(r, x)``.
    """
    x = np.asarray(x, dtype=np.float64)
    mean = np.maximum(np.asarray(mean, dtype=np.float64), 1e-12)
    r = 1.0 / ((np.asarray(phi) - 1.0) / mean + 1.0 / np.asarray(alpha))
    p = r / (r + mean)
    out = np.ones_like(x)
    pos = x >= 1
    if pos.any():
        rr, xx, pp = np.broadcast_arrays(r, x, p)
        out[pos] = special.betaincc(rr[pos], xx[pos], pp[pos])
    return out


def _betabinom_sf(kobs: Array, n: int, a: Array, b: Array) -> Array:
    """P(K ≥ kobs) for K ~ BetaBinomial(n, a, b), vectorised over rows."""
    out = np.zeros_like(np.asarray(a, dtype=np.float64))
    lbab = special.betaln(a, b)
    for j in range(n + 1):
        logp = (
            special.gammaln(n + 1.0)
            - special.gammaln(j + 1.0)
            - special.gammaln(n - j + 1.0)
            + special.betaln(j + a, n - j + b)
            - lbab
        )
        out += np.where(kobs <= j, np.exp(logp), 0.0)
    return np.clip(out, 0.0, 1.0)


def mean_max_ratio(y: NDArray[Any], axis: int = -1) -> Array:
    """Mean/Max ratio of non-negative samples (1 = flat, 1/n = a single burst; 0 if all zero)."""
    arr = np.asarray(y, dtype=np.float64)
    mx = arr.max(axis=axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mx > 0, arr.mean(axis=axis) / mx, 0.0)


def _draw_probs(
    a_b: Array,
    b_b: Array,
    a_c: Array,
    b_c: Array,
    al_b: Array,
    be_b: Array,
    al_c: Array,
    be_c: Array,
    keys: list[int],
    seed: int,
    draws: int = 2000,
) -> tuple[Array, Array]:
    """P(p_C > p_B) and P(D_C > D_B) by posterior draws, for candidates only.

    Each candidate's generator is seeded by (``seed``, its key), so a candidate's
    evidence does not depend on which other candidates share its partition.
    """
    n = a_b.size
    occ, dem = np.zeros(n), np.zeros(n)
    for i in range(n):
        rng = np.random.default_rng([seed, keys[i]])
        pb = rng.beta(a_b[i], b_b[i], draws)
        pc = rng.beta(a_c[i], b_c[i], draws)
        lb = rng.gamma(al_b[i], 1.0 / be_b[i], draws)
        lc = rng.gamma(al_c[i], 1.0 / be_c[i], draws)
        occ[i] = (pc > pb).mean()
        dem[i] = (pc * (1 + lc) > pb * (1 + lb)).mean()
    return occ, dem  # fmt: skip


# ------------------------------------------------------------- window kernel
@dataclass
class WindowStats:
    """Window-difference statistics for every (entity, window): arrays of shape (D, W)."""

    k_b: Array
    n_b: Array
    s_b: Array
    k_c: Array
    s_c: Array
    phi: Array
    a_b: Array
    b_b: Array
    a_c: Array
    b_c: Array
    al_b: Array
    be_b: Array
    al_c: Array
    be_c: Array
    prob_occ: Array
    prob_size: Array
    prob_demand: Array
    effect: Array
    effect_lo: Array
    effect_hi: Array
    hour_z: Array
    active: NDArray[np.bool_]
    #: occurrence stratum of each (entity, window) by its trailing rate (HurdlePriors.stratum)
    stratum: NDArray[np.int64]

    def set_rows(self, rows: NDArray[np.intp], other: WindowStats) -> None:
        """Overwrite rows ``rows`` of every array with the rows of ``other`` (same order)."""
        for name, arr in vars(self).items():
            if not arr.flags.writeable:
                arr = np.array(arr)
                setattr(self, name, arr)
            arr[rows] = getattr(other, name)


def _slots(
    starts: NDArray[np.int64], window: int, baseline: int, period: int
) -> list[tuple[NDArray[np.int64], NDArray[np.int64]]]:
    """Seasonal baseline segments: for each day back j, (start, end) columns (−1 when before 0)."""
    if period <= 0:
        return []
    out = []
    for j in range(1, max(baseline // period, 1) + 1):
        a = starts - j * period
        out.append((np.where(a >= 0, a, -1), np.where(a >= 0, a + window, -1)))
    return out


@lru_cache(maxsize=4096)
def baseline_columns(start: int, window: int, baseline: int, period: int) -> NDArray[np.int64]:
    """Matrix columns forming the baseline of the window starting at column ``start`` (time order).

    Cached (candidates share window starts); the array returned is read-only.
    """
    out = _baseline_columns(start, window, baseline, period)
    out.flags.writeable = False
    return out


def _baseline_columns(start: int, window: int, baseline: int, period: int) -> NDArray[np.int64]:
    if period <= 0:
        return np.arange(max(start - baseline, 0), start, dtype=np.int64)
    segs = _slots(np.array([start], dtype=np.int64), window, baseline, period)
    cols = [np.arange(int(a[0]), int(a[0]) + window) for a, _ in segs if a[0] >= 0]
    return np.sort(np.concatenate(cols)).astype(np.int64) if cols else np.zeros(0, dtype=np.int64)


def _prefix_sums(y: NDArray[Any], bounds: NDArray[np.int64]) -> tuple[Array, Array, Array]:
    """Prefix sums at ``bounds`` of the non-zero hours, the counts and their squares.

    Returns three (D, len(bounds)+1) float64 arrays whose column ``i`` sums the
    columns before ``bounds[i]`` (the last: the whole row).  One pass over
    ``y`` without full-size temporaries: each segment between two bounds is
    reduced in float64 and accumulated in float64, so the sums do not depend
    on where the bounds fall (a stream's windows cut the hours differently
    from one pass over the lake; float32 sums of squared counts would differ
    in their last digits, and the dispersion φ, a difference of such sums,
    by up to 1 %).
    """
    d, t = y.shape
    edges = np.append(bounds, t)
    pz = np.zeros((d, bounds.size + 1))
    py, py2 = np.zeros_like(pz), np.zeros_like(pz)
    for i in range(bounds.size):
        blk = y[:, edges[i] : edges[i + 1]]
        pz[:, i + 1] = np.einsum("ij->i", (blk > 0).view(np.uint8), dtype=np.int32)
        py[:, i + 1] = blk.sum(axis=1, dtype=np.float64)
        py2[:, i + 1] = np.einsum("ij,ij->i", blk, blk, dtype=np.float64)
    for i in range(2, bounds.size + 1):  # column-wise: cumsum along a short axis 1 is slow
        pz[:, i] += pz[:, i - 1]
        py[:, i] += py[:, i - 1]
        py2[:, i] += py2[:, i - 1]
    return pz, py, py2


def window_sums(
    y: NDArray[Any],
    starts: NDArray[np.int64],
    window: int,
    baseline: int,
    period: int = 0,
    guard: int = 0,
    half_life_days: float = 0.0,
    exclude: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None,
    exclude_hours: int = 0,
) -> WindowSums:
    """Hurdle sufficient statistics of windows ``[s, s+window)`` and their baselines.

    ``y`` is a dense (D, T) counts matrix, ``starts`` the column index of each
    window start.  With ``period = 0`` each window's baseline is the trailing
    ``[max(0, s−baseline), s−guard)`` (``guard`` hours left out before the window); with ``period = 24`` it is the same hours of
    the day on each of the previous ``baseline // 24`` days inside the matrix
    (a seasonal baseline: mornings are compared with mornings).  With
    ``half_life_days > 0`` those days are weighted exponentially by age (day j back
    weighs 0.5^((j−1)/half_life_days)), so the baseline follows traffic as it
    evolves and last month's habits fade; the weighted counts stay conjugate
    sufficient statistics (a power prior).  ``exclude = (rows, cols)`` leaves
    those hours out of the baselines of the windows starting at most
    ``exclude_hours`` after them, as if unobserved (the current window still
    uses them): :class:`_HurdleVolume` passes the hours it already flagged as
    extreme, so a transient anomaly does not become part of the baseline it is
    compared with, while a lasting change becomes the new normal after
    ``exclude_hours``.  One pass over ``y`` (segment sums at the window boundaries), then
    O(D·W) maths.
    """
    y = np.asarray(y)
    starts = np.asarray(starts, dtype=np.int64)
    d, t = y.shape
    lo = np.maximum(starts - baseline, 0)
    # guard band: the trailing baseline ends ``guard`` hours before the window,
    # so an anomaly that began just before the window does not mask it
    te = np.maximum(starts - max(int(guard), 0), lo)
    hi = starts + window
    if starts.size and (hi.max() > t or starts.min() < 1):
        raise ValueError("windows must lie inside the matrix and have at least one baseline hour")
    slots = _slots(starts, window, baseline, period)
    extra = [np.concatenate([a, b]) for a, b in slots]
    bounds = np.unique(np.concatenate([[0], lo, te, starts, hi, *extra]))
    bounds = bounds[(bounds >= 0) & (bounds < t)]
    yf = y if y.dtype in (np.float32, np.float64) else y.astype(np.float64)
    pz, py, py2 = _prefix_sums(yf, bounds)
    pos = {int(b): i for i, b in enumerate(bounds)}
    pos[t] = bounds.size

    def at(pre: Array, cols: NDArray[np.int64]) -> Array:
        return pre[:, [pos[int(c)] for c in cols]]

    def seg(pre: Array, a: NDArray[np.int64], b: NDArray[np.int64]) -> Array:
        return at(pre, b) - at(pre, a)

    # excluded hours: (pair, window) incidences where the hour lies in the
    # window's trailing baseline and at most ``exclude_hours`` before it
    if exclude is not None and exclude[0].size and exclude_hours > 0:
        er, ec = np.asarray(exclude[0]), np.asarray(exclude[1])
        age = starts[None, :] - ec[:, None]
        inc = (age > 0) & (age <= exclude_hours) & (ec[:, None] >= lo[None, :])
        inc &= ec[:, None] < te[None, :]
        ev = yf[er, ec].astype(np.float64)
        ez = (ev > 0).astype(np.float64)
    else:
        inc = None

    def drop(sums: list[Array], m: NDArray[np.bool_] | None, w: float = 1.0) -> None:
        """Subtract the excluded hours (incidences ``m``) from (n, k, Σy, Σy²)."""
        if m is None or not m.any():
            return
        pi, wi_ = np.nonzero(m)
        for arr, v in zip(sums, (np.ones_like(ev), ez, ev, ev * ev), strict=True):
            np.subtract.at(arr, (er[pi], wi_), w * v[pi])

    n_t = np.array(np.broadcast_to((te - lo).astype(np.float64), (d, starts.size)))
    k_t, sy_t, sy2_t = seg(pz, lo, te), seg(py, lo, te), seg(py2, lo, te)
    drop([n_t, k_t, sy_t, sy2_t], inc)
    if period > 0:
        k_b = np.zeros((d, starts.size))
        sy_b, sy2_b = np.zeros_like(k_b), np.zeros_like(k_b)
        n_b = np.zeros_like(k_b)
        for j, (a, b) in enumerate(slots):
            w_j = 0.5 ** (j / half_life_days) if half_life_days > 0 else 1.0
            valid = a >= 0
            a0, b0 = np.where(valid, a, 0), np.where(valid, b, 0)
            k_b += w_j * seg(pz, a0, b0)
            sy_b += w_j * seg(py, a0, b0)
            sy2_b += w_j * seg(py2, a0, b0)
            n_b += w_j * (b0 - a0)
            if inc is not None:
                drop([n_b, k_b, sy_b, sy2_b], inc & (ec[:, None] >= a0) & (ec[:, None] < b0), w_j)
    else:
        k_b, sy_b, sy2_b, n_b = k_t, sy_t, sy2_t, n_t
    k_c, sy_c = seg(pz, starts, hi), seg(py, starts, hi)
    s_b = sy_b - k_b
    q_b = sy2_b - 2.0 * sy_b + k_b
    s_c = sy_c - k_c

    # over-dispersion is a property of the entity: always estimated on the whole
    # trailing baseline (a seasonal slot has too few hours to estimate it)
    if period > 0:
        s_t, q_t = sy_t - k_t, sy2_t - 2.0 * sy_t + k_t
    else:
        s_t, q_t = s_b, q_b
    y_max = np.max(np.stack([yf[:, starts + c] for c in range(window)]), axis=0)
    return WindowSums(
        n_t, k_t, s_t, q_t, n_b, k_b, s_b, q_b, k_c, s_c,
        y_max.astype(np.float64), int(window), int(period),
    )  # fmt: skip


@dataclass
class WindowSums:
    """Sufficient statistics per (entity, window): trailing baseline (``_t``), the
    baseline proper (``_b``: the seasonal slot or, without seasons, the trailing
    baseline), the current window (``_c``) and its busiest hour; arrays (D, W)."""

    n_t: Array
    k_t: Array
    s_t: Array
    q_t: Array
    n_b: Array
    k_b: Array
    s_b: Array
    q_b: Array
    k_c: Array
    s_c: Array
    y_max: Array
    window: int
    period: int


def window_stats(
    y: NDArray[Any],
    starts: NDArray[np.int64],
    window: int,
    baseline: int,
    priors: HurdlePriors,
    shrink: float = 10.0,
    period: int = 0,
    guard: int = 0,
    half_life_days: float = 0.0,
    exclude: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None,
    exclude_hours: int = 0,
) -> WindowStats:
    """Posteriors and window differences for windows ``[s, s+window)`` of every row.

    :func:`window_sums` (the one pass over ``y``; see it for the baselines)
    followed by :func:`window_posteriors`.
    """
    sums = window_sums(
        y, starts, window, baseline, period=period, guard=guard,
        half_life_days=half_life_days, exclude=exclude, exclude_hours=exclude_hours,
    )  # fmt: skip
    return window_posteriors(sums, priors, shrink)


def _beta_terms(a0: float, b0: float, k: Array, n: Array | int) -> tuple[Array, ...]:
    """ψ and ψ' of ``a = a0 + k``, ``b = b0 + n − k`` and ``a + b`` (the Beta posterior terms).

    When ``k`` holds whole hours and ``n`` is the same for every entity of a
    window (no weighting or excluded hours), ``a`` takes at most ``n+1`` values
    per window: the special functions are tabulated on those and gathered,
    exactly.  Otherwise they are evaluated element-wise.
    """
    k = np.asarray(k, dtype=np.float64)
    nn = np.broadcast_to(np.asarray(n, dtype=np.float64), k.shape)
    col = nn[:1] if nn.shape[0] else nn
    ki = np.rint(k)
    if k.size and np.array_equal(ki, k) and np.array_equal(np.broadcast_to(col, nn.shape), nn):
        n_w = col[0]
        if np.array_equal(np.rint(n_w), n_w) and n_w.max() <= 10_000 and k.min() >= 0:
            top = int(n_w.max())
            grid = np.arange(top + 1, dtype=np.float64)
            ga = a0 + grid
            gb = b0 + n_w[:, None] - grid[None, :]  # (W, top+1)
            idx = ki.astype(np.intp)
            cols = np.arange(k.shape[1])[None, :]
            dga, tga = special.digamma(ga)[idx], _trigamma(ga)[idx]
            dgb = special.digamma(np.maximum(gb, 1.0))[cols, idx]
            tgb = _trigamma(np.maximum(gb, 1.0))[cols, idx]
            gs = a0 + b0 + n_w
            return (dga, dgb, np.broadcast_to(special.digamma(gs), k.shape), tga, tgb,
                    np.broadcast_to(_trigamma(gs), k.shape))  # fmt: skip
    a, b = a0 + k, b0 + nn - k
    return (special.digamma(a), special.digamma(b), special.digamma(a + b),
            _trigamma(a), _trigamma(b), _trigamma(a + b))  # fmt: skip


def window_posteriors(sums: WindowSums, priors: HurdlePriors, shrink: float = 10.0) -> WindowStats:
    """Posteriors, window differences and the extreme-hour screen from :class:`WindowSums`."""
    n_t, k_t, s_t, q_t = sums.n_t, sums.k_t, sums.s_t, sums.q_t
    n_b, k_b, s_b, q_b = sums.n_b, sums.k_b, sums.s_b, sums.q_b
    k_c, s_c, window, period = sums.k_c, sums.s_c, sums.window, sums.period
    phi_hat = _dispersion(k_t, s_t, q_t)
    phi = np.where(
        np.isfinite(phi_hat),
        (k_t * np.nan_to_num(phi_hat, nan=1.0) + shrink * priors.phi_pop) / (k_t + shrink),
        priors.phi_pop,
    )
    if period > 0:
        # the slot's own dispersion (around its seasonal level) where it has the
        # data, shrunk towards the entity's trailing dispersion
        phi_slot = _dispersion(k_b, s_b, q_b)
        phi = np.where(
            np.isfinite(phi_slot),
            (k_b * np.nan_to_num(phi_slot, nan=1.0) + shrink * phi) / (k_b + shrink),
            phi,
        )
    phi = np.maximum(phi, 1.0)
    # size prior of the entity's occurrence stratum (by its trailing rate)
    rate_t = k_t / np.maximum(n_t, 1.0)
    alpha0, beta0 = priors.size_prior(rate_t)

    if period > 0:
        # power prior: the entity's whole trailing baseline counts as one more
        # day of this slot (weight window/n_t), on top of the population prior
        w_t = window / np.maximum(n_t, 1.0)
        a_b = priors.a0 + k_b + w_t * k_t
        b_b = priors.b0 + n_b - k_b + w_t * (n_t - k_t)
        # the size of an active hour is the entity's, not the hour of the day's:
        # its whole trailing baseline informs it at full weight (occurrence is
        # what follows the day; a slot holds a handful of active hours at most)
        al_b = alpha0 + s_t / phi
        be_b = beta0 + k_t / phi
    else:
        a_b, b_b = priors.a0 + k_b, priors.b0 + n_b - k_b
        al_b, be_b = alpha0 + s_b / phi, beta0 + k_b / phi
    a_c, b_c = priors.a0 + k_c, priors.b0 + window - k_c
    al_c, be_c = alpha0 + s_c / phi, beta0 + k_c / phi

    dg = special.digamma
    dg_ac, dg_bc, dg_sc, tg_ac, tg_bc, tg_sc = _beta_terms(priors.a0, priors.b0, k_c, window)
    if period > 0:
        dg_ab, dg_bb, dg_sb = dg(a_b), dg(b_b), dg(a_b + b_b)
        tg_ab, tg_bb, tg_sb = _trigamma(a_b), _trigamma(b_b), _trigamma(a_b + b_b)
    else:
        dg_ab, dg_bb, dg_sb, tg_ab, tg_bb, tg_sb = _beta_terms(priors.a0, priors.b0, k_b, n_b)
    # occurrence: logit p ≈ Normal(ψ(a)−ψ(b), ψ'(a)+ψ'(b))
    mu_o = (dg_ac - dg_bc) - (dg_ab - dg_bb)
    prob_occ = special.ndtr(mu_o / np.sqrt(tg_ac + tg_bc + tg_ab + tg_bb))
    # size: log λ ≈ Normal(ψ(α) − log β, ψ'(α))
    tga_b, tga_c = _trigamma(al_b), _trigamma(al_c)
    mu_s = (dg(al_c) - np.log(be_c)) - (dg(al_b) - np.log(be_b))
    prob_size = special.ndtr(mu_s / np.sqrt(tga_b + tga_c))
    # demand D = p(1+λ): log D = log p + log(1+λ), delta method for log(1+λ)
    m_b, m_c = al_b / be_b, al_c / be_c
    v1_b = (m_b / be_b) / np.square(1.0 + m_b)
    v1_c = (m_c / be_c) / np.square(1.0 + m_c)
    e_b = dg_ab - dg_sb + np.log1p(m_b) - v1_b / 2
    e_c = dg_ac - dg_sc + np.log1p(m_c) - v1_c / 2
    sd = np.sqrt(tg_ab - tg_sb + v1_b + tg_ac - tg_sc + v1_c)
    prob_demand = special.ndtr((e_c - e_b) / sd)
    effect = (a_c / (a_c + b_c) * (1.0 + m_c)) / (a_b / (a_b + b_b) * (1.0 + m_b))
    effect_lo = np.exp(e_c - e_b - _Z90 * sd)
    effect_hi = np.exp(e_c - e_b + _Z90 * sd)

    # extreme-hour screen: largest z-score of an hour against its predictive
    p_hat = a_b / (a_b + b_b)
    size_var = phi * m_b + m_b * m_b / al_b
    ey = p_hat * (1.0 + m_b)
    vy = np.maximum(p_hat * (1.0 + 2.0 * m_b + size_var + m_b * m_b) - ey * ey, 1e-12)
    inv_sd = 1.0 / np.sqrt(vy)
    hour_z = (sums.y_max - ey) * inv_sd
    return WindowStats(
        k_b, n_b, s_b, k_c, s_c, phi, a_b, b_b, a_c, b_c, al_b, be_b, al_c, be_c,
        prob_occ, prob_size, prob_demand, effect, effect_lo, effect_hi, hour_z,
        (k_b + k_c) > 0, priors.stratum(rate_t),
    )  # fmt: skip


# --------------------------------------------------------------- frame input
def dense_matrix(
    data: pl.DataFrame,
    entity_col: str,
    t0: int,
    n_hours: int,
    entities: list[str] | None = None,
) -> tuple[list[str], NDArray[np.float32]]:
    """Entities (sorted) and their (D, n_hours) counts matrix from hourly rows.

    ``data`` holds ``entity_col``, ``h`` (epoch hour) and ``y``; hours outside
    ``[t0, t0+n_hours)`` are ignored; missing hours are zeros.  With
    ``entities`` the rows are exactly those entities, in that order (entities
    absent from ``data`` get a zero row; rows of other entities are ignored).
    """
    sub = data.filter((pl.col("h") >= t0) & (pl.col("h") < t0 + n_hours))
    if entities is None:
        ents = sub.get_column(entity_col).unique().sort()
    else:
        ents = pl.Series(entity_col, entities, dtype=pl.String)
    idx = sub.join(
        pl.DataFrame({entity_col: ents, "_i": pl.int_range(ents.len(), eager=True)}),
        on=entity_col,
        how="inner",
    )
    mat = np.zeros((ents.len(), n_hours), dtype=np.float32)
    rows = idx.get_column("_i").to_numpy()
    cols = (idx.get_column("h").to_numpy() - t0).astype(np.int64)
    np.add.at(mat, (rows, cols), idx.get_column("y").to_numpy().astype(np.float32))
    return ents.to_list(), mat


def _hours_of(data: pl.DataFrame, entity_col: str, count_col: str) -> pl.DataFrame:
    """Clean hourly rows → (entity, h, y): nulls/NaN/negatives to 0, duplicates summed."""
    if data.height == 0 or entity_col not in data.columns or "hour" not in data.columns:
        return pl.DataFrame(schema={entity_col: pl.String, "h": pl.Int64, "y": pl.Float64})
    cnt = pl.col(count_col) if count_col in data.columns else pl.lit(0)
    return (
        data.lazy()
        .select(
            pl.col(entity_col).cast(pl.String),
            (pl.col("hour").cast(pl.Datetime("us", "UTC")).dt.epoch("s") // 3600).alias("h"),
            cnt.cast(pl.Float64).fill_nan(0.0).fill_null(0.0).clip(lower_bound=0.0).alias("y"),
        )
        .drop_nulls([entity_col, "h"])
        .group_by([entity_col, "h"])
        .agg(pl.col("y").sum())
        .filter(pl.col("y") > 0)
        .collect()
    )


#: The flagged-hours guard's carried state: an entity's flagged epoch hours.
_FLAG_COLUMNS = ["entity", "h"]
_FLAGS = pl.Schema({"entity": pl.String(), "h": pl.Int64()})


def _empty_flags() -> pl.DataFrame:
    return pl.DataFrame(schema=_FLAGS)


def _flag_matrix(
    flags: pl.DataFrame, names: list[str], t0: int, n_hours: int
) -> NDArray[np.bool_] | None:
    """``flags`` as a (names × hours from ``t0``) mask, None when none falls inside."""
    if flags.height == 0 or not names:
        return None
    idx = pl.DataFrame({"entity": names, "_r": np.arange(len(names), dtype=np.int64)})
    hit = flags.join(idx, on="entity", how="inner").filter(
        (pl.col("h") >= t0) & (pl.col("h") < t0 + n_hours)
    )
    if hit.height == 0:
        return None
    mask = np.zeros((len(names), n_hours), dtype=bool)
    mask[hit["_r"].to_numpy(), hit["h"].to_numpy() - t0] = True
    return mask


def _epoch_hour(t: datetime, ceil: bool) -> int:
    ts = (t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() / 3600.0
    return math.ceil(ts - 1e-9) if ceil else math.floor(ts + 1e-9)


@lru_cache(maxsize=65536)
def _iso(h: int) -> str:
    return datetime.fromtimestamp(h * 3600, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _r(x: float, nd: int = 4) -> float:
    return float(f"{x:.{nd}g}") if math.isfinite(x) else x


# ------------------------------------------------------------------ detector
class _HurdleVolume(Detector):
    """Shared implementation of the domain and client volume detectors."""

    entity_col: ClassVar[str] = "registered_domain"
    #: entities whose name matches this regex are not scored (None: all)
    skip_names: ClassVar[str | None] = None
    #: column of distinct clients per hour, scored as a second series (None: queries only)
    clients_col: ClassVar[str | None] = None

    def __init__(
        self,
        window_hours: int = 3,
        baseline_hours: int = 168,
        min_baseline_hours: int = 24,
        prob_threshold: float = 0.95,
        min_effect: float = 2.0,
        hour_z: float = 4.0,
        emit_p: float = 0.05,
        min_queries: int = 3,
        seasonal: bool = True,
        prior_method: Literal["moments", "mml"] = "moments",
        chunk_size: int = 200_000,
        top_hours: int = 3,
        guard: int = 0,
        half_life_days: float = 0.0,
        exclude_p: float = 1e-4,
        exclude_hours: int = 3,
        exclude_passes: int = 10,
    ) -> None:
        self.window_hours = window_hours
        self.baseline_hours = baseline_hours
        self.min_baseline_hours = min_baseline_hours
        self.prob_threshold = prob_threshold
        self.min_effect = min_effect
        self.hour_z = hour_z
        self.emit_p = emit_p
        self.min_queries = min_queries
        self.seasonal = seasonal
        self.prior_method = prior_method
        self.chunk_size = chunk_size
        self.top_hours = top_hours
        self.guard = guard
        self.half_life_days = half_life_days
        self.exclude_p = exclude_p
        self.exclude_hours = exclude_hours
        self.exclude_passes = exclude_passes

    # -- planning ----------------------------------------------------------
    def _plan(self, rows: pl.DataFrame, ctx: DetectContext) -> tuple[int, int, NDArray[np.int64]]:
        """(t0, n_hours, window start hours) for the windows scored in ``ctx``.

        Windows are the ``window_hours``-long tiles aligned on the epoch; a
        period scores the tiles that *close* in it (end in ``(start, end]``),
        so scoring a lake hour by hour as it arrives (a stream) scores every
        tile once, at the hour it completes, exactly as one pass over the lake.
        """
        c = int(self.window_hours)
        start_h = _epoch_hour(ctx.start, ceil=True)
        end_h = _epoch_hour(ctx.end, ceil=False)
        first = -(-(start_h - c + 1) // c) * c
        ws = np.arange(first, end_h - c + 1, c, dtype=np.int64)
        if rows.height == 0 or ws.size == 0:
            return 0, 0, np.zeros(0, dtype=np.int64)
        first_h = getattr(self, "t0_", None)
        if first_h is None:
            first_h = int(rows.get_column("h").min())  # type: ignore[arg-type]
        t0 = max(first_h, int(ws[0]) - int(self.baseline_hours))
        ws = ws[ws - t0 >= max(int(self.min_baseline_hours), 1)]
        return t0, end_h - t0, ws

    def skip_reason(self, span_seconds: float) -> str | None:
        """Why this detector cannot score a lake spanning ``span_seconds`` (None if it can)."""
        need = (self.min_baseline_hours + self.window_hours) * 3600
        if span_seconds < need:
            return (
                f"needs at least {self.min_baseline_hours} h of baseline plus a "
                f"{self.window_hours} h window; the data spans {span_seconds / 3600:.1f} h"
            )
        return None

    def population(self, data: pl.DataFrame, ctx: DetectContext) -> int:
        """Number of (entity, window) pairs scored: entities active in the window or its baseline."""
        rows = _hours_of(data, self.entity_col, "queries")
        t0, _, ws = self._plan(rows, ctx)
        if ws.size == 0:
            return 0
        c, b = int(self.window_hours), int(self.baseline_hours)
        hs = rows.get_column("h").to_numpy()
        total = 0
        ents = rows.get_column(self.entity_col)
        for w in ws:
            m = (hs >= max(w - b, t0)) & (hs < w + c)
            total += int(ents.filter(pl.Series(m)).n_unique())
        return total

    def fit_population(self, data: pl.DataFrame, until: datetime | None = None) -> _HurdleVolume:
        """Fit the population priors on ``data`` and keep them (``priors_``).

        Engines that score partitions of the entities separately (Spark) call
        this once on the driver so every partition shares the same priors.
        With ``until`` the priors are fitted causally, on the baseline before it
        only (hours in ``[until - baseline_hours, until)``): the pipeline fits
        once per fit epoch and scores the epoch's windows with it, so a window
        is scored the same whether the lake is scored at once or hour by hour.
        """
        rows = _hours_of(data, self.entity_col, "queries")
        self.t0_ = int(rows.get_column("h").min()) if rows.height else None  # type: ignore[arg-type]
        crows = self._client_rows(data)
        self.priors_ = self._fit(self._before(rows, until))
        self.client_priors_ = self._fit(self._before(crows, until)) if crows is not None else None
        return self

    def _before(self, rows: pl.DataFrame, until: datetime | None) -> pl.DataFrame:
        """``rows`` of the baseline before ``until`` (all of them when None)."""
        if until is None:
            return rows
        u = _epoch_hour(until, ceil=False)
        h = pl.col("h")
        return rows.filter((h < u) & (h >= u - int(self.baseline_hours)))

    def _client_rows(self, data: pl.DataFrame) -> pl.DataFrame | None:
        """Hourly distinct-client rows, or None when this detector or ``data`` has none."""
        col = self.clients_col
        if col is None or col not in data.columns:
            return None
        return _hours_of(data, self.entity_col, col)

    def _fit(self, rows: pl.DataFrame) -> HurdlePriors:
        if rows.height == 0:
            return fit_priors(np.zeros(0), np.zeros(0), 1.0)
        hmin, hmax = rows.get_column("h").min(), rows.get_column("h").max()
        n = float(int(hmax) - int(hmin) + 1)  # type: ignore[arg-type]
        st = (
            rows.group_by(self.entity_col)
            .agg(
                k=pl.len().cast(pl.Float64),
                s=(pl.col("y") - 1).sum(),
                q=((pl.col("y") - 1) ** 2).sum(),
                h1=pl.col("h").min(),
                s1=pl.col("y").sort_by("h").first() - 1,
            )
            .sort(self.entity_col)
        )  # fixed order: the fit does not depend on input order
        # newcomers: entities first seen once the data already had a baseline's
        # worth of history (earlier ones may simply predate the data)
        first = st.filter(pl.col("h1") >= int(hmin) + int(self.min_baseline_hours))  # type: ignore[arg-type]
        return fit_priors(
            st.get_column("k").to_numpy(),
            st.get_column("s").to_numpy(),
            n,
            st.get_column("q").to_numpy(),
            method=self.prior_method,
            first=first.get_column("s1").to_numpy(),
        )

    # -- scoring -----------------------------------------------------------
    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        return self.score_with_state(data, ctx, getattr(self, "carried_", None))[0]

    def score_with_state(
        self, data: pl.DataFrame, ctx: DetectContext, state: pl.DataFrame | None
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Score ``ctx``'s windows given the hours flagged before them; return the new flags.

        ``state`` (``entity``, ``h``: epoch hour) holds the hours the
        flagged-hours guard found extreme in windows scored earlier (an earlier
        fit epoch, or an earlier hour of a stream): they stay out of this
        period's baselines, as they would had the windows been scored in one
        call.  The returned state adds this period's flags, pruned to the hours
        a later baseline can still reach.
        """
        rows = _hours_of(data, self.entity_col, "queries")
        t0, n_hours, ws = self._plan(rows, ctx)
        carried = _empty_flags() if state is None else state.select(_FLAG_COLUMNS).cast(_FLAGS)
        if ws.size == 0:
            return empty_anomalies(), carried
        priors = getattr(self, "priors_", None) or self._fit(rows.filter(pl.col("h") >= t0))
        crows = self._client_rows(data)
        cpriors: HurdlePriors | None = None
        if crows is not None:
            cpriors = getattr(self, "client_priors_", None) or self._fit(
                crows.filter(pl.col("h") >= t0)
            )
        ents = rows.filter((pl.col("h") >= t0) & (pl.col("h") < t0 + n_hours)).get_column(
            self.entity_col
        )
        ents = ents.unique().sort()
        if self.skip_names is not None:
            ents = ents.filter(~ents.str.contains(self.skip_names))
        out: list[pl.DataFrame] = []
        flags: list[pl.DataFrame] = [carried]
        step = max(int(self.chunk_size), 1)
        for i in range(0, ents.len(), step):
            chunk = ents.slice(i, step)
            sub = rows.join(pl.DataFrame({self.entity_col: chunk}), on=self.entity_col, how="semi")
            names, mat = dense_matrix(sub, self.entity_col, t0, n_hours)
            cmat = None
            if crows is not None and cpriors is not None:
                _, cmat = dense_matrix(crows, self.entity_col, t0, n_hours, entities=names)
            pre = _flag_matrix(carried, names, t0, n_hours)
            res, excluded = self._score_matrix(
                names, mat, t0, ws - t0, priors, ctx.seed, cmat, cpriors, pre
            )
            out.append(res)
            er, ec = np.nonzero(excluded)
            if er.size:
                flags.append(
                    pl.DataFrame(
                        {"entity": [names[int(r)] for r in er], "h": (ec + t0).astype(np.int64)},
                        schema=_FLAGS,
                    )
                )
        res = pl.concat(out) if out else empty_anomalies()
        # a flag matters to baselines within baseline_hours (+ the guard's reach) after it
        keep_from = (
            _epoch_hour(ctx.end, ceil=False)
            - int(self.baseline_hours)
            - int(self.exclude_hours)
            - int(self.window_hours)
        )
        new_state = pl.concat(flags).filter(pl.col("h") >= keep_from).unique().sort(_FLAG_COLUMNS)
        return res.sort(["entity", "window_start", "detector"]), new_state

    def _series_tails(
        self,
        mat: NDArray[np.float32],
        st: WindowStats,
        di: NDArray[np.intp],
        wi: NDArray[np.intp],
        starts: NDArray[np.int64],
    ) -> dict[str, Array]:
        """Posterior-predictive tails of one series for the gated (entity, window) pairs.

        Returns the window tails (occurrence, size, Fisher-combined), the hours
        of each window with their tails, and the series' local p-value
        ``min(1, 2·min(p_window, C·min_hour))``.
        """
        c = int(self.window_hours)

        def g(a: Array) -> Array:
            return a[di, wi]

        k_c, s_c, phi = g(st.k_c), g(st.s_c), g(st.phi)
        a_b, b_b, al_b, be_b = g(st.a_b), g(st.b_b), g(st.al_b), g(st.be_b)
        p_hat = a_b / (a_b + b_b)
        m_b = al_b / be_b
        # window predictive tails
        p_occ = _betabinom_sf(k_c, c, a_b, b_b)
        p_size = np.where(
            s_c > k_c * m_b, _nb_tail(s_c, np.maximum(k_c, 1e-12) * m_b, al_b, phi), 1.0
        )
        p_size = np.where(k_c > 0, p_size, 1.0)
        p_occ = np.where(k_c > c * p_hat, p_occ, 1.0)
        fx = -2.0 * (np.log(np.maximum(p_occ, 1e-300)) + np.log(np.maximum(p_size, 1e-300)))
        p_win = np.exp(-fx / 2.0) * (1.0 + fx / 2.0)
        # extreme hours
        hours = np.stack([mat[di, starts[wi] + j] for j in range(c)], axis=1).astype(np.float64)
        size_tail = _nb_tail(
            np.maximum(hours - 1.0, 0.0), m_b[:, None], al_b[:, None], phi[:, None]
        )
        exp_zero = (p_hat < 0.5)[:, None]
        tail = np.where(exp_zero, p_hat[:, None] * size_tail, size_tail)
        tail = np.where(hours > 0, tail, 1.0)
        p_local = np.minimum(1.0, 2.0 * np.minimum(p_win, c * tail.min(axis=1)))
        return dict(
            p_occ=p_occ, p_size=p_size, p_win=p_win, hours=hours, tail=tail,
            p_hat=p_hat, m_b=m_b, phi=phi, p_local=p_local,
        )  # fmt: skip

    def _gate(self, st: WindowStats) -> NDArray[np.bool_]:
        """Outlier windows of one series: a probable, material increase or an extreme hour."""
        return ((st.prob_demand >= self.prob_threshold) & (st.effect >= self.min_effect)) | (
            st.hour_z >= self.hour_z
        )

    def _score_matrix(
        self,
        names: list[str],
        mat: NDArray[np.float32],
        t0: int,
        starts: NDArray[np.int64],
        priors: HurdlePriors,
        seed: int = 0,
        cmat: NDArray[np.float32] | None = None,
        cpriors: HurdlePriors | None = None,
        pre_excluded: NDArray[np.bool_] | None = None,
    ) -> tuple[pl.DataFrame, NDArray[np.bool_]]:
        """Candidates of ``names`` × window ``starts``, and the hours the guard excluded.

        ``pre_excluded`` marks hours flagged before this call (carried state):
        they are out of every baseline from the start.
        """
        c = int(self.window_hours)
        b, per = int(self.baseline_hours), self._period
        guard = int(self.guard)
        hl = float(self.half_life_days)
        eh = int(self.exclude_hours)

        def stats(
            m: NDArray[np.float32],
            pr: HurdlePriors,
            excl: tuple[NDArray[np.intp], NDArray[np.intp]] | None,
        ) -> WindowStats:
            return window_stats(
                m, starts, c, b, pr, period=per, guard=guard, half_life_days=hl,
                exclude=excl, exclude_hours=eh,
            )  # fmt: skip

        excluded = np.zeros(mat.shape, dtype=bool)
        pre: tuple[NDArray[np.intp], NDArray[np.intp]] | None = None
        if pre_excluded is not None and pre_excluded.any():
            excluded |= pre_excluded
            pre_r, pre_c = np.nonzero(excluded)
            pre = (pre_r, pre_c)
        st = stats(mat, priors, pre)
        cst = stats(cmat, cpriors, pre) if cmat is not None and cpriors is not None else None
        totals = np.stack([mat[:, s : s + c].sum(axis=1) for s in starts], axis=1)
        passes = max(int(self.exclude_passes), 0) if self.exclude_p > 0 and eh > 0 else 0
        for it in range(passes + 1):
            outlier = self._gate(st) if cst is None else self._gate(st) | self._gate(cst)
            gate = st.active & (totals >= self.min_queries) & outlier
            di, wi = np.nonzero(gate)
            if di.size == 0:
                return empty_anomalies(), excluded
            ex = self._series_tails(mat, st, di, wi, starts)
            cex: dict[str, Array] | None = None
            if cst is not None and cmat is not None:
                cex = self._series_tails(cmat, cst, di, wi, starts)
            if it == passes:
                break
            # flagged-hours guard: hours judged extreme (in either series) are
            # left out of the later baselines, and the affected entities are
            # rescored.  The flags are recomputed from scratch each pass (plus
            # the carried ones), so the passes converge to what scoring the
            # windows one at a time, in time order, gives: a window's flags
            # depend only on earlier hours.
            flag = ex["tail"] <= self.exclude_p
            if cex is not None:
                flag |= cex["tail"] <= self.exclude_p
            ci, hj = np.nonzero(flag)
            now = np.zeros_like(excluded) if pre_excluded is None else pre_excluded.copy()
            now[di[ci], starts[wi[ci]] + hj] = True
            changed = np.nonzero((now != excluded).any(axis=1))[0]
            if changed.size == 0:
                break
            excluded = now
            rows = changed
            er, ec = np.nonzero(excluded[rows])
            st.set_rows(rows, stats(mat[rows], priors, (er, ec)))
            if cst is not None and cmat is not None and cpriors is not None:
                cst.set_rows(rows, stats(cmat[rows], cpriors, (er, ec)))

        def g(a: Array) -> Array:
            return a[di, wi]

        a_b, b_b, a_c, b_c = g(st.a_b), g(st.b_b), g(st.a_c), g(st.b_c)
        al_b, be_b, al_c, be_c = g(st.al_b), g(st.be_b), g(st.al_c), g(st.be_c)
        p_local = ex["p_local"]
        if cex is not None:
            # two series tested: Bonferroni over the more significant of the two
            p_local = np.minimum(1.0, 2.0 * np.minimum(ex["p_local"], cex["p_local"]))
        keep = p_local <= self.emit_p
        if not keep.any():
            return empty_anomalies(), excluded
        sel = np.nonzero(keep)[0]
        # exact P(λ_C > λ_B) for the evidence: X/(X+Y) ~ Beta(α_C, α_B)
        prob_size_exact = special.betaincc(
            al_c[sel], al_b[sel], be_c[sel] / (be_b[sel] + be_c[sel])
        )
        prob_occ_mc, prob_dem_mc = _draw_probs(
            a_b[sel], b_b[sel], a_c[sel], b_c[sel], al_b[sel], be_b[sel], al_c[sel], be_c[sel],
            [zlib.crc32(f"{names[int(di[i])]}|{int(starts[wi[i]]) + t0}".encode("utf-8", "surrogatepass")) for i in sel],
            seed,
        )  # fmt: skip
        evidence = []
        croston = self._croston(mat, di[sel], starts[wi[sel]])
        ex.update(prob_size_exact=prob_size_exact, prob_occ_mc=prob_occ_mc, prob_dem_mc=prob_dem_mc)
        # 90 % intervals of every candidate's posteriors in one vectorised call each
        # (the same ufuncs the evidence used to call per candidate and window).
        q90 = np.array([0.05, 0.95])
        ds, ws_ = di[sel], wi[sel]
        for tag in ("b", "c"):
            a_, b_ = getattr(st, f"a_{tag}")[ds, ws_], getattr(st, f"b_{tag}")[ds, ws_]
            al_, be_ = getattr(st, f"al_{tag}")[ds, ws_], getattr(st, f"be_{tag}")[ds, ws_]
            ex[f"ci_p_{tag}"] = special.betaincinv(a_[:, None], b_[:, None], q90)
            ex[f"ci_l_{tag}"] = special.gammaincinv(al_[:, None], q90) / be_[:, None]
        for j, i in enumerate(sel):
            w_abs, w_rel = t0 + int(starts[wi[i]]), int(starts[wi[i]])
            ev = self._evidence(
                int(i), j, w_abs, mat[di[i]], w_rel, st, di, wi, ex, croston, priors
            )
            lo_x = max(w_rel - int(self.exclude_hours), 0)
            gone = np.nonzero(excluded[di[i], lo_x:w_rel])[0] + lo_x
            ev["baseline"]["excluded_hours"] = [_iso(t0 + int(h)) for h in gone]
            if cex is not None and cst is not None and cmat is not None and cpriors is not None:
                ev["client_series"] = self._client_evidence(
                    int(i), w_abs, cmat[di[i]], w_rel, cst, di, wi, cex, cpriors
                )
                pq, pc = float(ex["p_local"][i]), float(cex["p_local"][i])
                ev["p_local"] = {
                    "queries": _r(pq),
                    "clients": _r(pc),
                    "combined": _r(float(p_local[i])),
                    "driver": "clients" if pc < pq else "queries",
                    "method": "Bonferroni: 2 × the smaller of the two series' p-values",
                }
            ev["reason"] = self._reason(names[int(di[i])], ev, float(p_local[i]))
            # the entity itself for a client; a domain's addresses are not in the
            # hourly aggregate: the pipeline adds its top clients to alerts
            ev["clients"] = [names[int(di[i])]] if self.entity_type == "client" else []
            evidence.append(ev)
        w_start = [datetime.fromtimestamp((t0 + int(starts[wi[i]])) * 3600, UTC) for i in sel]
        frame = anomaly_frame(
            self.name,
            self.entity_type,
            [names[int(di[i])] for i in sel],
            w_start,
            [w + timedelta(hours=c) for w in w_start],
            (-np.log(np.maximum(p_local[sel], 1e-300)) / _LOG10).tolist(),
            p_local[sel].tolist(),
            evidence,
        )
        return frame, excluded

    @property
    def _period(self) -> int:
        return 24 if self.seasonal else 0

    def _reason(self, entity: str, ev: dict[str, Any], p: float) -> str:
        """One sentence with the numbers: volume now, usual volume, the ratio, the chance."""
        c = int(self.window_hours)
        cur = ev["current"]
        q = int(cur["queries"])
        usual = float(ev["baseline_forecast_per_hour"]["hurdle"])
        ratio = (q / c) / usual if usual > 0 else float("inf")
        times = f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:,.1f}×"
        who = ""
        series = ev.get("client_series")
        if isinstance(series, dict) and series.get("current_per_hour"):
            top = int(max(series["current_per_hour"]))
            who = f" from up to {top:,} client{'s' if top != 1 else ''} an hour"
        verb = "sent" if self.entity_type == "client" else "got"
        usual_txt = f"{usual:,.2f}" if usual < 10 else f"{usual:,.0f}"
        chance = f"p = {p:.0e}" if p > 0 else "p < 1e-300"
        return (
            f"{entity} {verb} {q:,} queries in {c} h{who}: "
            f"{times if np.isfinite(ratio) else 'far above'} its usual {usual_txt} an hour "
            f"({int(cur['nonzero_hours'])} of {c} hours active; {chance} under its own baseline)"
        )

    def _croston(
        self, mat: NDArray[np.float32], rows: NDArray[np.intp], starts: NDArray[np.int64]
    ) -> dict[str, Array]:
        """Croston / SBA / TSB forecasts from each candidate's baseline hours (in time order)."""
        out = {k: np.zeros(rows.size) for k in ("croston", "sba", "tsb")}
        c, b = int(self.window_hours), int(self.baseline_hours)
        for s0 in np.unique(starts):
            m = starts == s0
            cols = baseline_columns(int(s0), c, b, self._period)
            ys = mat[np.ix_(rows[m], cols)]
            out["croston"][m] = croston_classic(ys)
            out["sba"][m] = croston_sba(ys)
            out["tsb"][m] = tsb(ys)
        return out

    def _evidence(
        self,
        i: int,
        j: int,
        w_abs: int,
        row: NDArray[np.float32],
        w_rel: int,
        st: WindowStats,
        di: NDArray[np.intp],
        wi: NDArray[np.intp],
        ex: dict[str, Array],
        croston: dict[str, Array],
        priors: HurdlePriors,
    ) -> dict[str, Any]:
        c = int(self.window_hours)
        d, w = int(di[i]), int(wi[i])

        def window_summary(
            a: float, b: float, al: float, be: float, hours: float, nz: float, q: float, tag: str
        ) -> dict[str, Any]:
            lo_p, hi_p = ex[f"ci_p_{tag}"][j]
            lo_l, hi_l = ex[f"ci_l_{tag}"][j]
            return {
                "hours": int(hours),
                "nonzero_hours": int(nz),
                "queries": int(q),
                "p_occurrence": {"mean": _r(a / (a + b)), "ci90": [_r(lo_p), _r(hi_p)]},
                "lambda_extra_per_active_hour": {
                    "mean": _r(al / be),
                    "ci90": [_r(lo_l), _r(hi_l)],
                },
                "expected_queries_per_hour": _r(a / (a + b) * (1 + al / be)),
            }

        nb = int(st.n_b[d, w])
        base = row[baseline_columns(w_rel, c, int(self.baseline_hours), self._period)].astype(
            np.float64
        )
        cur = row[w_rel : w_rel + c].astype(np.float64)
        p_hat, m_b = float(ex["p_hat"][i]), float(ex["m_b"][i])
        order = np.argsort(ex["tail"][i], kind="stable")[: self.top_hours]
        top = [
            {
                "hour": _iso(w_abs + int(h)),
                "observed": int(ex["hours"][i, h]),
                "expected": _r(p_hat * (1 + m_b)),
                "tail_p": _r(float(ex["tail"][i, h])),
                "kind": "expected_zero" if p_hat < 0.5 else "expected_nonzero",
            }
            for h in order
            if ex["hours"][i, h] > 0
        ]
        allh = np.concatenate([base, cur])
        return {
            "model": "hurdle Beta-Bernoulli occurrence × Gamma-Poisson size (empirical Bayes)",
            "entity_type": self.entity_type,
            "baseline_mode": (
                f"same {c} h of the day on up to {int(self.baseline_hours) // 24} previous days"
                if self.seasonal
                else f"trailing {int(self.baseline_hours)} h"
            ),
            "baseline": window_summary(
                st.a_b[d, w],
                st.b_b[d, w],
                st.al_b[d, w],
                st.be_b[d, w],
                nb,
                st.k_b[d, w],
                base.sum(),
                "b",
            ),
            "current": window_summary(
                st.a_c[d, w],
                st.b_c[d, w],
                st.al_c[d, w],
                st.be_c[d, w],
                c,
                st.k_c[d, w],
                cur.sum(),
                "c",
            ),
            "effect": {
                "demand_ratio": _r(st.effect[d, w]),
                "ci90": [_r(st.effect_lo[d, w]), _r(st.effect_hi[d, w])],
            },
            "prob_increase": {
                "occurrence": _r(float(ex["prob_occ_mc"][j])),
                "size": _r(float(ex["prob_size_exact"][j])),
                "demand": _r(float(ex["prob_dem_mc"][j])),
                "method": "occurrence, demand: 2,000 seeded posterior draws; size: exact",
            },
            "tail_p": {
                "occurrence": _r(float(ex["p_occ"][i])),
                "size": _r(float(ex["p_size"][i])),
                "window": _r(float(ex["p_win"][i])),
                "min_hour": _r(float(ex["tail"][i].min())),
            },
            "top_hours": top,
            "overdispersion_phi": _r(float(ex["phi"][i])),
            "baseline_forecast_per_hour": {
                "hurdle": _r(p_hat * (1 + m_b)),
                "croston": _r(float(croston["croston"][j])),
                "sba": _r(float(croston["sba"][j])),
                "tsb": _r(float(croston["tsb"][j])),
                "observed_current": _r(float(cur.mean())),
            },
            "burstiness_mean_max": _r(float(mean_max_ratio(allh))),
            "priors": dict(_priors_dict(priors)),
            # the reference population calibration ranks this score in (calibrate.py)
            "stratum": {
                "index": int(st.stratum[d, w]),
                "share": list(_priors_dict(priors)["stratum_share"]),
                "by": "trailing occurrence rate (quantile strata of the fitted population)",
            },
        }

    def _client_evidence(
        self,
        i: int,
        w_abs: int,
        row: NDArray[np.float32],
        w_rel: int,
        st: WindowStats,
        di: NDArray[np.intp],
        wi: NDArray[np.intp],
        ex: dict[str, Array],
        priors: HurdlePriors,
    ) -> dict[str, Any]:
        """Evidence of the distinct-clients series for candidate ``i``."""
        c = int(self.window_hours)
        d, w = int(di[i]), int(wi[i])
        base = row[baseline_columns(w_rel, c, int(self.baseline_hours), self._period)]
        cur = row[w_rel : w_rel + c]
        p_hat, m_b = float(ex["p_hat"][i]), float(ex["m_b"][i])
        order = np.argsort(ex["tail"][i], kind="stable")[: self.top_hours]
        return {
            "series": "distinct clients per hour (same hurdle model, own priors)",
            "baseline_expected_per_hour": _r(p_hat * (1 + m_b)),
            "baseline_max_per_hour": int(base.max()) if base.size else 0,
            "baseline_nonzero_hours": int(st.k_b[d, w]),
            "current_per_hour": [int(v) for v in cur],
            "tail_p": {
                "occurrence": _r(float(ex["p_occ"][i])),
                "size": _r(float(ex["p_size"][i])),
                "window": _r(float(ex["p_win"][i])),
                "min_hour": _r(float(ex["tail"][i].min())),
            },
            "top_hours": [
                {
                    "hour": _iso(w_abs + int(h)),
                    "observed": int(ex["hours"][i, h]),
                    "expected": _r(p_hat * (1 + m_b)),
                    "tail_p": _r(float(ex["tail"][i, h])),
                }
                for h in order
                if ex["hours"][i, h] > 0
            ],
            "overdispersion_phi": _r(float(ex["phi"][i])),
            "priors": dict(_priors_dict(priors)),
        }

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Hurdle traffic for 30 entities over 72 hours; entity 0 bursts in the last 6 hours."""
        rng = np.random.default_rng(seed)
        n_ent, hours = 30, 72
        t0 = datetime(2024, 4, 19, tzinfo=UTC)
        p = rng.beta(0.8, 2.0, n_ent)
        lam = rng.gamma(1.0, 4.0, n_ent)
        y = (rng.random((n_ent, hours)) < p[:, None]) * (
            1 + rng.poisson(lam[:, None], (n_ent, hours))
        )
        y[0, -6:] += 200
        ent, hr, q = [], [], []
        for d in range(n_ent):
            for h in np.nonzero(y[d])[0]:
                ent.append(
                    f"site{d}.example" if cls.entity_col == "registered_domain" else f"10.0.0.{d}"
                )
                hr.append(t0 + timedelta(hours=int(h)))
                q.append(int(y[d, h]))
        return pl.DataFrame(
            {
                "hour": pl.Series(hr, dtype=pl.Datetime("us", "UTC")),
                cls.entity_col: pl.Series(ent, dtype=pl.String),
                "queries": pl.Series(q, dtype=pl.Int64),
            }
        )


@register
class VolumeDetector(_HurdleVolume):
    """Query-volume anomalies per registered domain (Bayesian hurdle model, §4)."""

    name: ClassVar[str] = "volume"
    techniques: ClassVar[tuple[str, ...]] = ("T1071.004",)
    entity_type: ClassVar[EntityType] = "domain"
    requires: ClassVar[InputKind] = "domain_hourly"
    description: ClassVar[str] = (
        "registered domains whose hourly query volume rose materially and improbably over "
        "their own trailing baseline (hurdle Beta/Gamma posteriors, empirical-Bayes priors)"
    )
    entity_col: ClassVar[str] = "registered_domain"
    clients_col: ClassVar[str | None] = "clients"
    #: Reverse-lookup zones and site-local names are not scored (they enter the
    #: priors): a burst of PTR lookups under ``103.in-addr.arpa`` is a log or
    #: scan tool resolving addresses, not a domain that calls home (RITA's
    #: missing_host capture, p = 2e-11).
    skip_names: ClassVar[str | None] = (
        r"(^|\.)(arpa|local|localdomain|lan|home|internal|localhost)$"
    )
    #: The score is −log10 of the window's predictive p-value under the
    #: domain's own baseline; 8 (p ≤ 1e-8) sits above the benign maxima on real
    #: captures (6.2, docs/volume.md) and is overwhelming local evidence: kept
    #: whatever the pooled population's tail (calibrate.py).
    score_floor: ClassVar[float] = 8.0


@register
class ClientVolumeDetector(_HurdleVolume):
    """Query-volume anomalies per client (same hurdle model over ``client_hourly``)."""

    name: ClassVar[str] = "client_volume"
    techniques: ClassVar[tuple[str, ...]] = ("T1071.004", "T1048")
    entity_type: ClassVar[EntityType] = "client"
    requires: ClassVar[InputKind] = "client_hourly"
    description: ClassVar[str] = (
        "clients whose hourly query volume rose materially and improbably over their own baseline"
    )
    entity_col: ClassVar[str] = "src_ip"
