"""P(threat | anomaly features): prior, online update, decay, drift, safe serialisation.

The model's probability is a *prior* plus a *learned correction*, mixed with
the *verdicts of similar alerts*::

    p₀(x) = σ(prior(x) + f_θ(standardise(x)))
    P(threat | x) = (c·p₀(x) + Σ_j k(x, x_j)·w_j·y_j) / (c + Σ_j k(x, x_j)·w_j)

``prior(x)`` works with zero labels.  With ``prior="shipped"`` (the default)
it is the initial model of :mod:`dnsieve.threat.initial`: a logistic
regression that ``scripts/train_threat.py`` trained on real C2 and tunnel
captures, ThreatFox and DGA domains, benign top lists and simulated campaigns
and benign anomalies.  ``prior="builtin"`` is the hand-set fallback: a
monotone function of the calibrated anomaly evidence (``-log10 p``, else the
detector's log score) plus a per-detector prior log-odds
(:data:`DETECTOR_PRIORS`).  ``f_θ`` starts at 0 and is learned from verdicts:

``kind="linear"``
    ``f(z) = w·z + b``: a logistic regression (the calibrated baseline: the
    log loss is a proper scoring rule, and with the prior as offset the
    probabilities stay on the prior's scale until evidence moves them).
``kind="mlp"``
    ``f(z) = v·tanh(W z + c) + b``: a one-hidden-layer network, ``v = 0`` at
    start so it also begins at the prior.

**Online update.**  Every verdict is appended to a bounded buffer of
(features, label, time) and θ is refitted at once, warm-started from its
current value, by L-BFGS on the weighted log loss plus ``l2/2·|θ|²``
(a Gaussian prior centred on "trust the prior").  This is the exact MAP
estimate for the linear model, deterministic for both, and takes
milliseconds for thousands of verdicts.

**Verdict memory.**  ``f_θ`` generalises along feature directions but, held
back by its anchor and L2 prior, moves slowly.  The second formula above makes
a verdict count at once where it was given: ``y_j`` is verdict *j* (1 threat,
0 benign), ``w_j`` its decay weight and ``k`` a Gaussian kernel on the
standardised features (``exp(-|Δz|²/(2·h·d))``, ``d`` the number of
features, ``h`` the bandwidth in use, see below).  It is a Beta-binomial update: the model's own
probability counts as ``c = memory_strength`` verdicts, so one ``threat``
verdict on an alert with p₀ = 0.13 lifts it (and its near-duplicates, such as
the same campaign's other windows) to (0.13·c + 1)/(c + 1), and every further
similar verdict weighs in with the same weight: the learning rate falls as
1/(number of similar verdicts), as it should.  Alerts unlike any judged one
keep p₀.

**How far verdicts may move it.**  ``l2`` is the precision of the Gaussian
prior on θ: how strongly the learned correction is held at "trust the
prior".  No single value suits every network (a strong hold ignores a
consistent analyst; a weak one chases noise), so with ``select_l2`` (the
default) it is chosen from the analyst's own verdicts once there are
``min_select`` of them: by ``folds``-fold cross-validated log loss of the
verdicts over :data:`L2_GRID`, taking the largest (most conservative) value
whose loss is within one standard error of the best (the usual one-SE rule).
The choice is redone each time the number of verdicts has grown by a quarter
(8, 10, 13, 17, … verdicts), so most verdicts cost one refit, not one per fold
and grid value.
The value in use is ``l2_`` (reported with the model's metadata).

**How far a verdict reaches.**  The memory's bandwidth says how alike two
alerts must be for one's verdict to count for the other.  Too wide, and the
verdicts on a benign class (a SaaS adoption seen by the volume detector) are
outweighed by the verdicts on a threat class of the same detector (a
masquerade) that differs in one or two features (new domain or not, its age),
so the benign class keeps its place in the queue; too narrow, and a verdict
counts for its own alert only.  With ``select_bandwidth`` (the default) it is
chosen, like ``l2``, from the analyst's own verdicts once there are
``min_select`` of them: the value of :data:`BANDWIDTH_GRID` with the smallest
leave-one-out log loss of the verdicts, each predicted from the *other*
verdicts and the prior (the memory formula without the held-out verdict; a
tie goes to the wider kernel).  It costs one kernel matrix per grid value, so
it is redone at every refit.  ``memory_bandwidth`` is the value before that
and without selection; the value in use is ``bandwidth_``.

**Decay.**  A verdict of age ``a`` days weighs ``0.5 ** (a / half_life_days)``,
so last year's benign does not silence this year's threat: as verdicts fade
the model returns towards the prior.

**Adapting to traffic.**  :meth:`ThreatModel.observe` updates the
standardiser's exponentially weighted running mean and variance with every
scored batch (``scaler_half_life`` rows), whether or not anyone gives a
verdict.

**Serialisation.**  :meth:`ThreatModel.to_bytes` writes a small binary
container (magic, JSON header, raw little-endian arrays); no pickle, so a
stored blob cannot execute code, and the bytes are a pure function of the
state, so a round trip is bit-exact and a stored version can be restored
(rolled back) exactly.

>>> import numpy as np
>>> from dnsieve.threat.features import FEATURE_NAMES
>>> m = ThreatModel()
>>> X = np.zeros((2, len(FEATURE_NAMES))); X[:, FEATURE_NAMES.index("det_tunnel")] = 1
>>> X[:, FEATURE_NAMES.index("has_p")] = 1
>>> X[1, FEATURE_NAMES.index("neg_log_p")] = 8.0
>>> p = m.predict_proba(X); bool(p[1] > p[0])
True
>>> m2 = ThreatModel.from_bytes(m.to_bytes()); bool(np.array_equal(m2.predict_proba(X), p))
True
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import optimize, stats

from dnsieve.threat.features import DETECTORS, FEATURE_NAMES
from dnsieve.threat.initial import align, grouped_logit, load_initial

__all__ = [
    "BANDWIDTH_GRID",
    "DETECTOR_PRIORS",
    "FORMAT_VERSION",
    "L2_GRID",
    "DriftRow",
    "ModelFormatError",
    "ThreatModel",
    "decay_weights",
    "drift_report",
    "drift_summary",
    "label_value",
    "on_verdict",
    "score_drift",
]

FORMAT_VERSION = 2
_MAGIC = b"DNSIEVE-THREAT\x00"
_ALLOWED_DTYPES = {"<f8", "<i8"}

#: Prior log-odds shift per detector (before any verdict).
DETECTOR_PRIORS: dict[str, float] = {
    "beacon": 0.5,
    "client_volume": -0.5,
    "dga": 1.0,
    "fastflux": -1.0,
    "lookalike": 0.5,
    "nxdomain": 0.5,
    "profile": -0.5,
    "tunnel": 1.0,
    "visitors": 0.0,
    "volume": -0.5,
    "other": 0.0,
}

F = npt.NDArray[np.float64]

_DEF = FEATURE_NAMES.index("def_confidence")

#: Candidate verdict-memory bandwidths for :attr:`ThreatModel.select_bandwidth` (geometric).
BANDWIDTH_GRID: tuple[float, ...] = (0.0125, 0.025, 0.05, 0.1, 0.2)

#: Candidate L2 strengths for :attr:`ThreatModel.select_l2` (geometric, 0.3 … 30).
L2_GRID: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0, 30.0)


class ModelFormatError(ValueError):
    """A model blob that is not a valid dnsieve threat model."""


def label_value(label: str | float | bool) -> int:
    """Verdict → training label: threat → 1; benign / not relevant → 0.

    >>> label_value("threat"), label_value("not-relevant"), label_value(True)
    (1, 0, 1)
    """
    if isinstance(label, bool | int | float | np.integer | np.floating):
        if label not in (0, 1):
            raise ValueError(f"label must be 0 or 1, got {label!r}")
        return int(label)
    s = str(label).strip().lower().replace("-", "_").replace(" ", "_")
    if s in ("threat", "malicious", "1", "true", "yes"):
        return 1
    if s in ("benign", "not_relevant", "notrelevant", "legit", "0", "false", "no"):
        return 0
    raise ValueError(f"unknown verdict {label!r}: use threat, benign or not-relevant")


def _epoch(ts: float | datetime | np.datetime64 | None) -> float:
    if ts is None:
        return 0.0
    if isinstance(ts, datetime):
        return ts.timestamp()
    if isinstance(ts, np.datetime64):
        return float(ts.astype("datetime64[us]").astype(np.int64)) / 1e6
    return float(ts)


def decay_weights(ts: npt.ArrayLike, now: float, half_life_days: float) -> F:
    """``0.5 ** (age / half_life)`` for epoch-second times (future times weigh 1).

    >>> decay_weights([0.0, 86400.0 * 10], now=86400.0 * 10, half_life_days=10).tolist()
    [0.5, 1.0]
    """
    age_days = np.maximum(float(now) - np.asarray(ts, dtype=np.float64), 0.0) / 86400.0
    return np.asarray(0.5 ** (age_days / half_life_days), dtype=np.float64)


def _one_blas_thread() -> contextlib.AbstractContextManager[Any]:
    """Run small linear algebra on one BLAS thread.

    The refit's products are tiny; with a multi-threaded BLAS on a busy host
    the threads' hand-offs cost ten times the arithmetic (measured: 12 s
    against 1 s for five verdicts on a loaded two-core machine).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1)


def _sigmoid(x: F) -> F:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float64)


class ThreatModel:
    """Online P(threat) model over :data:`dnsieve.threat.features.FEATURE_NAMES`.

    Hyperparameters only; fitted state ends in ``_`` (STYLE 2).
    """

    def __init__(
        self,
        kind: Literal["linear", "mlp"] = "mlp",
        prior: Literal["shipped", "builtin"] = "shipped",
        memory_strength: float = 1.0,
        memory_bandwidth: float = 0.1,
        hidden: int = 8,
        l2: float = 10.0,
        half_life_days: float = 90.0,
        scaler_half_life: float = 20000.0,
        prior_offset: float = -4.0,
        prior_slope: float = 0.6,
        use_prior: bool = True,
        anchor_weight: float = 20.0,
        n_anchor: int = 400,
        max_buffer: int = 5000,
        max_iter: int = 200,
        seed: int = 0,
        select_l2: bool = True,
        min_select: int = 8,
        folds: int = 5,
        select_bandwidth: bool = True,
    ) -> None:
        self.kind = kind
        self.prior = prior
        self.memory_strength = memory_strength
        self.memory_bandwidth = memory_bandwidth
        self.hidden = hidden
        self.l2 = l2
        self.half_life_days = half_life_days
        self.scaler_half_life = scaler_half_life
        self.prior_offset = prior_offset
        self.prior_slope = prior_slope
        self.use_prior = use_prior
        self.anchor_weight = anchor_weight
        self.n_anchor = n_anchor
        self.max_buffer = max_buffer
        self.max_iter = max_iter
        self.seed = seed
        self.select_l2 = select_l2
        self.min_select = min_select
        self.folds = folds
        self.select_bandwidth = select_bandwidth
        self._init_state()

    # ------------------------------------------------------------------ state
    def _init_state(self) -> None:
        if self.kind not in ("linear", "mlp"):
            raise ValueError(f"kind must be 'linear' or 'mlp', got {self.kind!r}")
        if self.prior not in ("shipped", "builtin"):
            raise ValueError(f"prior must be 'shipped' or 'builtin', got {self.prior!r}")
        if not self.memory_strength > 0 or not self.memory_bandwidth > 0:
            raise ValueError("memory_strength and memory_bandwidth must be positive")
        d = len(FEATURE_NAMES)
        self.mean_: F = np.zeros(d)
        self.var_: F = np.ones(d)
        self.n_seen_: float = 0.0
        self.theta_: F = self._initial_theta(d)
        self.anchor_: F = np.zeros((0, d))
        self.prior_w_: F = np.zeros(0)
        self.prior_wg_: F = np.zeros((0, d))
        self.prior_b_: F = np.zeros(0)
        self.prior_center_: F = np.zeros(0)
        self.prior_scale_: F = np.zeros(0)
        init = load_initial() if self.prior == "shipped" else None
        if init is not None:
            self.prior_w_ = init.w.copy()
            self.prior_wg_ = init.wg.copy()
            self.prior_b_ = np.array([init.b])
            self.prior_center_ = init.center.copy()
            self.prior_scale_ = init.scale.copy()
            self.mean_, self.var_ = init.mean.copy(), init.var.copy()
            self.anchor_ = self._anchor_rows(init.anchor.copy())
        self.X_buf_: F = np.zeros((0, d))
        self.y_buf_: F = np.zeros(0)
        self.t_buf_: F = np.zeros(0)
        self.w_buf_: F = np.zeros(0)  # each label's own weight (1 for a verdict)
        self.now_: float = 0.0
        self.version_: int = 0
        self.n_verdicts_: int = 0
        self.n_definition_labels_: int = 0
        self.l2_: float = float(self.l2)
        self.l2_n_: int = 0  # verdicts in the buffer when l2_ was last chosen
        self.bandwidth_: float = float(self.memory_bandwidth)

    def _initial_theta(self, d: int) -> F:
        if self.kind == "linear":
            return np.zeros(d + 1)
        h = self.hidden
        rng = np.random.default_rng(self.seed)
        W = rng.normal(0.0, 1.0 / math.sqrt(d), size=(h, d))
        return np.concatenate([W.ravel(), np.zeros(h), np.zeros(h), np.zeros(1)])

    def get_params(self) -> dict[str, Any]:
        """Hyperparameters (the ``__init__`` arguments)."""
        return {
            "kind": self.kind,
            "prior": self.prior,
            "memory_strength": self.memory_strength,
            "memory_bandwidth": self.memory_bandwidth,
            "hidden": self.hidden,
            "l2": self.l2,
            "half_life_days": self.half_life_days,
            "scaler_half_life": self.scaler_half_life,
            "prior_offset": self.prior_offset,
            "prior_slope": self.prior_slope,
            "use_prior": self.use_prior,
            "anchor_weight": self.anchor_weight,
            "n_anchor": self.n_anchor,
            "max_buffer": self.max_buffer,
            "max_iter": self.max_iter,
            "seed": self.seed,
            "select_l2": self.select_l2,
            "min_select": self.min_select,
            "folds": self.folds,
            "select_bandwidth": self.select_bandwidth,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"ThreatModel({args})"

    # ------------------------------------------------------------------ maths
    @property
    def has_shipped_prior(self) -> bool:
        """Whether the prior is the trained initial model (else the hand-set one)."""
        return bool(self.prior_w_.size)

    def prior_logit(self, X: npt.ArrayLike) -> F:
        """The zero-label logit (0 if not ``use_prior``).

        The shipped initial model when loaded, else the hand-set prior: detector
        prior + slope × evidence strength; in both cases no lower than the logit of
        ``def_confidence`` (an analyst's definition that matched says how sure it is).
        """
        X = self._check(X)
        if not self.use_prior:
            return np.zeros(X.shape[0])
        return self._definition_floor(X, self._detector_prior(X))

    def _definition_floor(self, X: F, logit: F) -> F:
        """The analysts' own definitions set a floor: never below ``logit(def_confidence)``."""
        conf = np.clip(X[:, _DEF], 0.0, 1.0 - 1e-6)
        floor = np.where(conf > 0, np.log(np.maximum(conf, 1e-12)) - np.log1p(-conf), -np.inf)
        return np.asarray(np.maximum(logit, floor), dtype=np.float64)

    def _detector_prior(self, X: F) -> F:
        if self.has_shipped_prior:
            return grouped_logit(
                X,
                self.prior_w_,
                self.prior_wg_,
                float(self.prior_b_[0]),
                self.prior_center_,
                self.prior_scale_,
            )
        det = X[:, : len(DETECTORS)]
        lscore = X[:, len(DETECTORS) : 2 * len(DETECTORS)].sum(axis=1)
        i = FEATURE_NAMES.index("neg_log_p")
        has_p = X[:, FEATURE_NAMES.index("has_p")] > 0
        strength = np.where(has_p, X[:, i], np.maximum(lscore, 0.0) * 2.0)
        pri = np.array([DETECTOR_PRIORS.get(d, 0.0) for d in DETECTORS])
        return np.asarray(
            self.prior_offset + det @ pri + self.prior_slope * strength, dtype=np.float64
        )

    def _z(self, X: F) -> F:
        return np.asarray((X - self.mean_) / np.sqrt(self.var_ + 1e-6), dtype=np.float64)

    def _f(self, theta: F, Z: F) -> tuple[F, Any]:
        d = Z.shape[1]
        if self.kind == "linear":
            return Z @ theta[:d] + theta[d], None
        h = self.hidden
        W = theta[: h * d].reshape(h, d)
        c = theta[h * d : h * d + h]
        v = theta[h * d + h : h * d + 2 * h]
        H = np.tanh(Z @ W.T + c)
        return H @ v + theta[-1], (W, c, v, H)

    def _loss_grad(
        self, theta: F, Z: F, off: F, y: F, w: F, n_lab: int, l2: float
    ) -> tuple[float, F]:
        """Weighted log loss on the first ``n_lab`` rows + prior-anchored loss on the rest + L2."""
        f, cache = self._f(theta, Z)
        s = off + f
        na = s.size - n_lab
        c = self.anchor_weight / max(na, 1)
        # labelled rows: log loss log(1 + e^s) - y s; anchor rows: the same with the
        # prior's own probability as soft target (minimal at f = 0, linear far from it)
        q = np.concatenate([y, _sigmoid(off[n_lab:])])
        sw = np.concatenate([w, np.full(na, c)])
        loss = float(np.sum(sw * (np.logaddexp(0.0, s) - q * s))) + 0.5 * l2 * float(theta @ theta)
        r = sw * (_sigmoid(s) - q)  # dL/df
        d = Z.shape[1]
        if self.kind == "linear":
            g = np.concatenate([Z.T @ r, [r.sum()]])
        else:
            _W, c, v, H = cache
            h = self.hidden
            gv = H.T @ r
            dH = np.outer(r, v) * (1.0 - H * H)
            gW = dH.T @ Z
            gc = dH.sum(axis=0)
            g = np.concatenate([gW.ravel(), gc, gv, [r.sum()]])
            assert g.shape[0] == h * d + 2 * h + 1
        return loss, g + l2 * theta

    def _check(self, X: npt.ArrayLike) -> F:
        A = np.asarray(X, dtype=np.float64)
        if A.ndim == 1:
            A = A[None, :]
        if A.ndim != 2 or A.shape[1] != len(FEATURE_NAMES):
            raise ValueError(f"expected (n, {len(FEATURE_NAMES)}) features, got shape {A.shape}")
        return np.nan_to_num(A, nan=0.0, posinf=30.0, neginf=-30.0)

    # ------------------------------------------------------------- public API
    def base_logit(self, X: npt.ArrayLike) -> F:
        """The logit of p₀: prior + learned correction, before the verdict memory."""
        A = self._check(X)
        f, _ = self._f(self.theta_, self._z(A))
        return np.asarray(self.prior_logit(A) + f, dtype=np.float64)

    def similarity(self, X: npt.ArrayLike) -> F:
        """Kernel weight ``k(x, x_j)·w_j`` of each row (axis 0) to each buffered verdict (axis 1)."""
        A = self._check(X)
        if self.y_buf_.shape[0] == 0:
            return np.zeros((A.shape[0], 0))
        Za = self._z(A)
        Zb = self._z(self.X_buf_)
        d2 = np.sum(Za * Za, axis=1)[:, None] + np.sum(Zb * Zb, axis=1)[None, :] - 2.0 * (Za @ Zb.T)
        h2 = self.bandwidth_ * Za.shape[1]
        K = np.exp(-np.maximum(d2, 0.0) / (2.0 * h2))
        return np.asarray(K * self.sample_weights()[None, :], dtype=np.float64)

    def loo_losses(self, w: F | None = None, grid: Sequence[float] = BANDWIDTH_GRID) -> F:
        """Leave-one-out log loss of the buffered verdicts under each bandwidth in ``grid``.

        Verdict *j* is predicted by the memory formula from the prior's
        probability and every *other* verdict, ``(c·p_prior + Σ_{i≠j} k·w_i·y_i) /
        (c + Σ_{i≠j} k·w_i)``; the loss is weighted by ``w`` (decay × own weight).
        The prior, not the refitted correction, is the base: the correction has
        seen verdict *j*.
        """
        n = self.y_buf_.shape[0]
        w = self.sample_weights() if w is None else w
        out = np.zeros(len(grid))
        if n == 0:
            return out
        Z = self._z(self.X_buf_)
        sq = np.sum(Z * Z, axis=1)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (Z @ Z.T), 0.0)
        np.fill_diagonal(d2, np.inf)  # leave the verdict itself out
        p0 = np.clip(_sigmoid(self.prior_logit(self.X_buf_)), 1e-6, 1.0 - 1e-6)
        c = self.memory_strength
        for g, h in enumerate(grid):
            K = np.exp(-d2 / (2.0 * h * Z.shape[1])) * w[None, :]
            p = np.clip((c * p0 + K @ self.y_buf_) / (c + K.sum(axis=1)), 1e-6, 1.0 - 1e-6)
            ll = -(self.y_buf_ * np.log(p) + (1.0 - self.y_buf_) * np.log1p(-p))
            out[g] = float(np.sum(w * ll) / max(float(np.sum(w)), 1e-12))
        return out

    def choose_bandwidth(self, w: F | None = None, grid: Sequence[float] = BANDWIDTH_GRID) -> float:
        """The bandwidth in ``grid`` with the smallest :meth:`loo_losses` (ties: the wider)."""
        losses = self.loo_losses(w, grid)
        best = min(losses)
        return float(max(h for h, v in zip(grid, losses, strict=True) if v <= best + 1e-12))

    def predict_proba(self, X: npt.ArrayLike) -> F:
        """P(threat) for each row (1-D array): p₀ mixed with the similar verdicts."""
        A = self._check(X)
        p0 = _sigmoid(self.base_logit(A))
        if self.y_buf_.shape[0] == 0:
            return p0
        out = np.empty_like(p0)
        c = self.memory_strength
        for lo in range(0, A.shape[0], 4096):  # bounded memory for big queues
            K = self.similarity(A[lo : lo + 4096])
            out[lo : lo + 4096] = (c * p0[lo : lo + 4096] + K @ self.y_buf_) / (c + K.sum(axis=1))
        return np.asarray(np.clip(out, 1e-9, 1.0 - 1e-9), dtype=np.float64)

    def decision_function(self, X: npt.ArrayLike) -> F:
        """The logit of P(threat) for each row."""
        p = self.predict_proba(X)
        return np.asarray(np.log(p) - np.log1p(-p), dtype=np.float64)

    def observe(self, X: npt.ArrayLike) -> ThreatModel:
        """Update the running standardiser with a batch of scored anomalies.

        Each row has weight ``1 - 2**(-1/scaler_half_life)``; the batch moves
        the mean and variance towards its own by ``1 - (1 - a)**n``.
        """
        A = self._check(X)
        n = A.shape[0]
        if n == 0:
            return self
        bm = A.mean(axis=0)
        bv = A.var(axis=0)
        if self.n_seen_ == 0 and not self.has_shipped_prior:
            self.mean_, self.var_ = bm, np.maximum(bv, 1e-6)
        else:
            a = 1.0 - 2.0 ** (-1.0 / self.scaler_half_life)
            beta = 1.0 - (1.0 - a) ** n
            delta = bm - self.mean_
            self.mean_ = self.mean_ + beta * delta
            self.var_ = np.maximum(
                (1 - beta) * (self.var_ + beta * delta * delta) + beta * bv, 1e-6
            )
        self.n_seen_ += float(n)
        self.anchor_ = self._anchor_rows(np.vstack([self.anchor_, A]))
        return self

    def _anchor_rows(self, A: F) -> F:
        """Keep ``n_anchor`` rows: the half with the highest prior, and an even spread of the rest.

        These rows act as pseudo-verdicts with the prior's own probability as
        soft label and ``anchor_weight`` verdicts of weight in all, so a few
        one-sided verdicts cannot overturn the prior's ranking of unjudged
        anomalies, while consistent verdicts still can.
        """
        if A.shape[0] <= self.n_anchor:
            return A
        order = np.argsort(-self.prior_logit(A), kind="stable")
        top = order[: self.n_anchor // 2]
        rest = order[self.n_anchor // 2 :]
        spread = rest[np.linspace(0, rest.size - 1, self.n_anchor - top.size).astype(np.int64)]
        return A[np.sort(np.concatenate([top, spread]))]

    def sample_weights(self, now: float | datetime | None = None) -> F:
        """Weight of each buffered label at ``now`` (default: latest label time): its decay
        times its own weight (1 for an analyst's verdict, the confidence for a definition's)."""
        t = self.now_ if now is None else _epoch(now)
        return decay_weights(self.t_buf_, t, self.half_life_days) * self.w_buf_

    def partial_fit(
        self,
        X: npt.ArrayLike,
        y: Sequence[int | str] | npt.ArrayLike,
        ts: Sequence[float | datetime] | npt.ArrayLike | float | datetime | None = None,
        weight: npt.ArrayLike | None = None,
        source: Literal["verdict", "definition"] = "verdict",
    ) -> ThreatModel:
        """Learn from new labels at once (append to the buffer, refit warm-started).

        ``weight`` (default 1) scales each label; ``source="definition"`` marks labels
        that come from the analysts' threat definitions rather than from verdicts (they
        are counted apart in ``n_definition_labels_``).
        """
        A = self._check(X)
        yy = np.asarray(
            [label_value(v) for v in np.atleast_1d(np.asarray(y, dtype=object))], dtype=np.float64
        )
        if yy.shape[0] != A.shape[0]:
            raise ValueError("X and y have different lengths")
        ww = np.ones(A.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
        ww = np.broadcast_to(ww, (A.shape[0],)).astype(np.float64)
        if not (np.isfinite(ww).all() and (ww >= 0).all()):
            raise ValueError("label weights must be finite and non-negative")
        if ts is None or isinstance(ts, float | int | datetime):
            tt = np.full(A.shape[0], _epoch(ts) if ts is not None else self.now_)
        else:
            tt = np.asarray(
                [_epoch(t) for t in np.atleast_1d(np.asarray(ts, dtype=object))], dtype=np.float64
            )
        if self.n_seen_ == 0 and not self.has_shipped_prior:
            self.observe(A)
        self.X_buf_ = np.vstack([self.X_buf_, A])
        self.y_buf_ = np.concatenate([self.y_buf_, yy])
        self.t_buf_ = np.concatenate([self.t_buf_, tt])
        self.w_buf_ = np.concatenate([self.w_buf_, ww])
        self.now_ = max(self.now_, float(tt.max()) if tt.size else self.now_)
        if self.y_buf_.shape[0] > self.max_buffer:  # drop the oldest verdicts
            keep = np.argsort(self.t_buf_, kind="stable")[-self.max_buffer :]
            keep.sort()
            self.X_buf_, self.y_buf_, self.t_buf_, self.w_buf_ = (
                self.X_buf_[keep],
                self.y_buf_[keep],
                self.t_buf_[keep],
                self.w_buf_[keep],
            )
        if source == "definition":
            self.n_definition_labels_ += int(A.shape[0])
        else:
            self.n_verdicts_ += int(A.shape[0])
        self.refit()
        return self

    def refit(self, now: float | datetime | None = None) -> ThreatModel:
        """Refit θ on the buffered verdicts with their decay weights at ``now``."""
        self.version_ += 1
        n = self.y_buf_.shape[0]
        if n == 0:
            return self
        w = self.sample_weights(now)
        if self.select_l2 and n >= max(self.min_select, 1.25 * self.l2_n_):
            self.l2_, self.l2_n_ = self.choose_l2(w), n
        elif not self.select_l2:
            self.l2_ = float(self.l2)
        if self.select_bandwidth and n >= self.min_select:
            self.bandwidth_ = self.choose_bandwidth(w)
        else:
            self.bandwidth_ = float(self.memory_bandwidth)
        self.theta_ = self._solve(self.X_buf_, self.y_buf_, w, self.l2_, self.theta_)
        return self

    def _solve(self, X: F, y: F, w: F, l2: float, theta0: F) -> F:
        """The MAP θ for verdicts ``(X, y, w)`` plus the anchor rows, at L2 strength ``l2``."""
        A = np.vstack([X, self.anchor_])
        Z = self._z(A)
        off = self.prior_logit(A)
        with _one_blas_thread():
            res = optimize.minimize(
                self._loss_grad,
                theta0,
                args=(Z, off, y, w, y.shape[0], l2),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter},
            )
        return np.asarray(res.x, dtype=np.float64)

    def cv_losses(self, w: F | None = None, grid: Sequence[float] = L2_GRID) -> F:
        """Cross-validated log loss of the buffered verdicts, one row per fold, one column per L2.

        Folds interleave the verdicts in time order (fold ``i mod k``), so each
        fold holds old and new verdicts; a held-out verdict is predicted by
        the base model (prior + correction) fitted without its fold.
        """
        n = self.y_buf_.shape[0]
        w = self.sample_weights() if w is None else w
        k = max(2, min(self.folds, n))
        fold = np.arange(n) % k
        out = np.zeros((k, len(grid)))
        order = np.argsort(grid)[::-1]  # strongest hold first: each fit warm-starts the next
        for f in range(k):
            tr, te = fold != f, fold == f
            Xte = self.X_buf_[te]
            off = self.prior_logit(Xte)
            Zte = self._z(Xte)
            th = self._initial_theta(len(FEATURE_NAMES))
            for j in order:
                l2 = grid[j]
                th = self._solve(self.X_buf_[tr], self.y_buf_[tr], w[tr], l2, th)
                s = off + self._f(th, Zte)[0]
                ll = np.logaddexp(0.0, s) - self.y_buf_[te] * s
                out[f, j] = float(np.sum(w[te] * ll) / max(float(np.sum(w[te])), 1e-12))
        return out

    def choose_l2(self, w: F | None = None, grid: Sequence[float] = L2_GRID) -> float:
        """The largest L2 in ``grid`` within one standard error of the best CV log loss."""
        losses = self.cv_losses(w, grid)
        mean = losses.mean(axis=0)
        se = losses.std(axis=0, ddof=1) / math.sqrt(losses.shape[0])
        best = int(np.argmin(mean))
        ok = [j for j in range(len(grid)) if mean[j] <= mean[best] + se[best]]
        return float(max(grid[j] for j in ok))

    def fit(
        self, X: npt.ArrayLike, y: Sequence[int | str] | npt.ArrayLike, ts: Any = None
    ) -> ThreatModel:
        """Initial training: reset θ and the buffer, observe ``X``, learn from all rows."""
        self._init_state()
        self.observe(X)
        return self.partial_fit(X, y, ts)

    # ---------------------------------------------------------- serialisation
    def _arrays(self) -> dict[str, F]:
        return {
            "mean": self.mean_,
            "var": self.var_,
            "theta": self.theta_,
            "anchor": self.anchor_,
            "X_buf": self.X_buf_,
            "y_buf": self.y_buf_,
            "t_buf": self.t_buf_,
            "w_buf": self.w_buf_,
            "prior_w": self.prior_w_,
            "prior_wg": self.prior_wg_,
            "prior_b": self.prior_b_,
            "prior_center": self.prior_center_,
            "prior_scale": self.prior_scale_,
        }

    def metadata(self) -> dict[str, Any]:
        """Version metadata stored with the model."""
        return {
            "format": FORMAT_VERSION,
            "model": "dnsieve.threat.ThreatModel",
            "params": self.get_params(),
            "feature_names": list(FEATURE_NAMES),
            "version": self.version_,
            "n_verdicts": self.n_verdicts_,
            "n_definition_labels": self.n_definition_labels_,
            "n_seen": self.n_seen_,
            "now": self.now_,
            "l2_in_use": self.l2_,
            "l2_chosen_at": self.l2_n_,
            "bandwidth_in_use": self.bandwidth_,
        }

    def to_bytes(self) -> bytes:
        """A safe, deterministic blob (magic + JSON header + raw float64 arrays)."""
        entries = []
        body = bytearray()
        for name, arr in self._arrays().items():
            a = np.ascontiguousarray(arr, dtype="<f8")
            entries.append(
                {"name": name, "dtype": "<f8", "shape": list(a.shape), "offset": len(body)}
            )
            body += a.tobytes()
        header = json.dumps({"meta": self.metadata(), "arrays": entries}, sort_keys=True).encode()
        return _MAGIC + struct.pack("<I", len(header)) + header + bytes(body)

    @classmethod
    def from_bytes(cls, blob: bytes) -> ThreatModel:
        """Rebuild a model from :meth:`to_bytes` output; raises :class:`ModelFormatError`.

        A blob of an older format or feature layout is migrated: its verdicts
        and anchor rows are re-laid out by feature name (a new feature is 0 in
        old rows), it gets the current shipped prior, and, when its learned
        correction no longer fits the layout, that is refitted from its
        verdicts.  So an upgrade never loses a verdict.
        """
        if not blob.startswith(_MAGIC) or len(blob) < len(_MAGIC) + 4:
            raise ModelFormatError("not a dnsieve threat model (bad magic)")
        (hlen,) = struct.unpack_from("<I", blob, len(_MAGIC))
        start = len(_MAGIC) + 4
        try:
            header = json.loads(blob[start : start + hlen].decode())
            meta = header["meta"]
            entries = header["arrays"]
            names = [str(n) for n in meta["feature_names"]]
            params = dict(meta["params"])
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ModelFormatError(f"corrupt model header: {exc}") from None
        fmt = meta.get("format")
        if fmt not in (1, FORMAT_VERSION):
            raise ModelFormatError(f"unsupported model format {fmt!r}")
        known = set(cls().get_params())
        try:
            m = cls(**{k: v for k, v in params.items() if k in known})
        except (TypeError, ValueError) as exc:
            raise ModelFormatError(f"bad model parameters: {exc}") from None
        body = memoryview(blob)[start + hlen :]
        arrays: dict[str, F] = {}
        for e in entries:
            if e.get("dtype") not in _ALLOWED_DTYPES:
                raise ModelFormatError(f"array dtype {e.get('dtype')!r} not allowed")
            shape = tuple(int(s) for s in e["shape"])
            count = int(np.prod(shape)) if shape else 1
            off = int(e["offset"])
            if off < 0 or off + 8 * count > len(body):
                raise ModelFormatError(f"array {e.get('name')!r} runs past the end of the blob")
            arrays[e["name"]] = (
                np.frombuffer(body, dtype=e["dtype"], count=count, offset=off).reshape(shape).copy()
            )
        same = names == list(FEATURE_NAMES)
        d_old = len(names)
        try:
            X_buf = arrays["X_buf"].reshape(-1, d_old)
            anchor = arrays["anchor"].reshape(-1, d_old)
            m.y_buf_, m.t_buf_ = arrays["y_buf"], arrays["t_buf"]
            m.w_buf_ = arrays.get("w_buf", np.ones_like(m.y_buf_))
            theta = arrays["theta"]
            mean, var = arrays["mean"], arrays["var"]
        except (KeyError, ValueError) as exc:
            raise ModelFormatError(f"missing or malformed array {exc}") from None
        if (
            X_buf.shape[0] != m.y_buf_.shape[0]
            or m.t_buf_.shape != m.y_buf_.shape
            or m.w_buf_.shape != m.y_buf_.shape
        ):
            raise ModelFormatError("verdict buffer arrays disagree in length")
        if same:
            m.X_buf_, m.anchor_, m.mean_, m.var_ = X_buf, anchor, mean, var
        else:
            m.X_buf_ = align(X_buf, names, FEATURE_NAMES, 0.0)
            m.anchor_ = align(anchor, names, FEATURE_NAMES, 0.0)
            if not m.has_shipped_prior:
                m.mean_ = align(mean, names, FEATURE_NAMES, 0.0)
                m.var_ = align(var, names, FEATURE_NAMES, 1.0)
        if fmt == FORMAT_VERSION and same and "prior_w" in arrays:
            m.prior_w_, m.prior_b_ = arrays["prior_w"], arrays["prior_b"]
            m.prior_center_, m.prior_scale_ = arrays["prior_center"], arrays["prior_scale"]
            m.prior_wg_ = arrays.get("prior_wg", np.zeros((0, len(FEATURE_NAMES))))
            if m.prior_wg_.size == 0:
                m.prior_wg_ = np.zeros((0, len(FEATURE_NAMES)))
            if m.prior_w_.size and (
                m.prior_w_.shape != (len(FEATURE_NAMES),)
                or m.prior_wg_.shape
                not in ((0, len(FEATURE_NAMES)), (len(DETECTORS), len(FEATURE_NAMES)))
                or m.prior_b_.shape != (1,)
                or m.prior_center_.shape != m.prior_w_.shape
                or m.prior_scale_.shape != m.prior_w_.shape
            ):
                raise ModelFormatError("prior arrays do not match the feature layout")
        m.version_ = int(meta.get("version", 0))
        m.n_verdicts_ = int(meta.get("n_verdicts", 0))
        m.n_definition_labels_ = int(meta.get("n_definition_labels", 0))
        m.n_seen_ = float(meta.get("n_seen", 0.0))
        m.now_ = float(meta.get("now", 0.0))
        m.l2_ = float(meta.get("l2_in_use", m.l2))
        m.l2_n_ = int(meta.get("l2_chosen_at", 0))
        m.bandwidth_ = float(meta.get("bandwidth_in_use", m.memory_bandwidth))
        migrated = not (same and fmt == FORMAT_VERSION)
        if not migrated:
            if theta.shape != m._initial_theta(len(FEATURE_NAMES)).shape:
                raise ModelFormatError("parameter vector does not match the model kind")
            m.theta_ = theta
        elif m.y_buf_.shape[0]:
            m.refit()  # the old correction was learned against another prior/layout
        return m


def on_verdict(
    model: ThreatModel,
    features_row: npt.ArrayLike,
    label: str | int | bool,
    ts: float | datetime | None = None,
) -> ThreatModel:
    """The hook the alert store / CLI calls for each analyst verdict: update at once.

    ``features_row`` is the stored feature vector of the alert, ``label`` the
    verdict (threat, benign, not-relevant), ``ts`` its time.
    """
    return model.partial_fit(np.atleast_2d(np.asarray(features_row, dtype=np.float64)), [label], ts)


# ---------------------------------------------------------------------- drift
@dataclass(frozen=True)
class DriftRow:
    """Drift of one feature (or detector score) between a reference and now."""

    name: str
    psi: float
    ks: float
    ks_p: float
    n_ref: int
    n_cur: int
    drifted: bool


def _psi(ref: F, cur: F, bins: int) -> float:
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if edges.size < 2:  # constant reference: two bins, at and off the value
        v = ref[0]
        r = np.array([np.mean(ref == v), np.mean(ref != v)])
        c = np.array([np.mean(cur == v), np.mean(cur != v)])
    else:
        inner = edges[1:-1]
        r = (
            np.bincount(np.searchsorted(inner, ref, side="right"), minlength=edges.size - 1)
            / ref.size
        )
        c = (
            np.bincount(np.searchsorted(inner, cur, side="right"), minlength=edges.size - 1)
            / cur.size
        )
    eps = 1e-4
    r, c = np.clip(r, eps, None), np.clip(c, eps, None)
    return float(np.sum((c - r) * np.log(c / r)))


def drift_report(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    names: Sequence[str] | None = None,
    *,
    bins: int = 10,
    psi_threshold: float = 0.2,
    ks_alpha: float = 1e-3,
    min_ks: float = 0.1,
) -> list[DriftRow]:
    """Per-column drift between two samples: PSI (quantile bins of the reference) and KS.

    A column drifts when ``psi > psi_threshold``, or when the two-sample KS
    test rejects at ``ks_alpha`` with a material statistic (``ks >= min_ks``).
    Columns constant in both samples never drift.
    """
    R = np.asarray(reference, dtype=np.float64)
    C = np.asarray(current, dtype=np.float64)
    if R.ndim == 1:
        R, C = R[:, None], C[:, None]
    cols = list(names) if names is not None else [f"x{i}" for i in range(R.shape[1])]
    rows = []
    for j, name in enumerate(cols):
        r = R[:, j][np.isfinite(R[:, j])]
        c = C[:, j][np.isfinite(C[:, j])]
        if r.size == 0 or c.size == 0:
            rows.append(
                DriftRow(name, float("nan"), float("nan"), float("nan"), r.size, c.size, False)
            )
            continue
        psi = _psi(r, c, bins)
        ks = stats.ks_2samp(r, c)
        ks_stat, ks_p = float(ks.statistic), float(ks.pvalue)
        drifted = psi > psi_threshold or (ks_p < ks_alpha and ks_stat >= min_ks)
        rows.append(DriftRow(name, psi, ks_stat, ks_p, int(r.size), int(c.size), bool(drifted)))
    return rows


def score_drift(reference: pl.DataFrame, current: pl.DataFrame, **kwargs: Any) -> list[DriftRow]:
    """Drift of the score distribution of each detector (ANOMALY frames)."""
    out: list[DriftRow] = []
    dets = sorted(
        set(reference["detector"].unique().to_list()) | set(current["detector"].unique().to_list())
    )
    for d in dets:
        r = reference.filter(pl.col("detector") == d)["score"].to_numpy()
        c = current.filter(pl.col("detector") == d)["score"].to_numpy()
        out.extend(drift_report(r, c, [d], **kwargs))
    return out


def drift_summary(rows: Sequence[DriftRow]) -> Mapping[str, Any]:
    """A JSON-ready summary: drifted names and every row."""
    return {
        "drifted": [r.name for r in rows if r.drifted],
        "rows": [r.__dict__ for r in rows],
    }
