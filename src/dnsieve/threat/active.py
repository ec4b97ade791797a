"""The "needs review" queue: which alert should an analyst judge next (ARCHITECTURE §6).

Two kinds of verdict pay off, and the queue mixes them:

*Exploitation: confirm the top of the queue.*  The alerts an analyst will
actually look at are the ones with the highest P(threat).  A verdict there
helps at once (a confirmed threat stays on top, a benign one leaves the open
queue) and teaches the model exactly where its mistakes cost most: when the
prior over-rates a class that is harmless *for this user* (their own
remote-support agent beaconing, their AV's DNS reputation look-ups), the
false alarms are at the top, not at P ≈ 0.5.  Within the ``top_k`` highest
P(threat) the queue asks first about::

    gain = (1 - p + uncertainty(p)) × impact

(``1 - p``: the chance the verdict removes a false alarm; ``uncertainty``:
what the model learns).

*Exploration: learn where the model is unsure.*  Every ``explore_every``-th
question goes to the alert with the highest::

    priority = uncertainty(P(threat)) × impact

over all open alerts (:func:`review_priority`), which finds threats the
prior under-rates.

*Diversity.*  Ten near-identical alerts of one entity or one detector teach
hardly more than one, so, when the feature rows are given, each candidate's
value is multiplied by ``1 - diversity × s`` where ``s`` is its largest
similarity (a Gaussian kernel on standardised features) to the alerts
already judged or already picked for this batch.  The queue counts
*episodes*: the store keeps one alert per detector × entity campaign, its
windows merged (:mod:`dnsieve.alerts.merge`), so one campaign is one candidate
here however many windows it spans.  The same pair back after a quiet gap is a
new episode whose feature row differs from the first one's (counts grow, the
baseline moves), so ``groups`` (detector × entity per alert) adds the plain
rule: an alert whose group was already judged or picked counts as identical
(``s = 1``).

``uncertainty`` is the binary entropy of P(threat) in bits (1 at 0.5, 0 at 0
or 1).  ``impact`` grows with the calibrated evidence and with the number of
clients affected::

    impact = (1 + log1p(clients)) × (1 + min(-log10 p, 30) / 10)

with ``clients`` and ``-log10 p`` read from the feature matrix
(:data:`dnsieve.threat.features.FEATURE_NAMES`: ``ev_clients`` is already
``log1p(clients)``).  :func:`next_to_review` picks the next ``k`` alerts,
skipping the ones already judged; ``top_k=0`` gives plain uncertainty ×
impact ranking.

>>> import numpy as np
>>> np.round(uncertainty(np.array([0.5, 0.9, 0.0])), 3).tolist()
[1.0, 0.469, 0.0]
>>> next_to_review(np.array([0.5, 0.5, 0.99]), np.array([1.0, 3.0, 9.0]), k=2, top_k=0).tolist()
[1, 0]
>>> next_to_review(np.array([0.5, 0.5, 0.99]), np.array([1.0, 3.0, 9.0]), k=2, top_k=1).tolist()
[2, 0]
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from dnsieve.threat.features import FEATURE_NAMES

__all__ = ["impact", "next_to_review", "review_priority", "similarity", "top_gain", "uncertainty"]

F = npt.NDArray[np.float64]


def uncertainty(p: npt.ArrayLike) -> F:
    """Binary entropy of P(threat), in bits (0 … 1)."""
    q = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    h = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return np.asarray(np.where(h < 1e-9, 0.0, h), dtype=np.float64)


def impact(X: npt.ArrayLike) -> F:
    """Impact of each alert from its features: clients affected × evidence strength (≥ 1)."""
    A = np.atleast_2d(np.asarray(X, dtype=np.float64))
    clients = np.maximum(A[:, FEATURE_NAMES.index("ev_clients")], 0.0)
    ctx_clients = np.maximum(A[:, FEATURE_NAMES.index("ctx_dom_clients")], 0.0)
    nlp = np.clip(A[:, FEATURE_NAMES.index("neg_log_p")], 0.0, 30.0)
    return np.asarray(
        (1.0 + np.maximum(clients, ctx_clients)) * (1.0 + nlp / 10.0), dtype=np.float64
    )


def review_priority(p: npt.ArrayLike, impact_: npt.ArrayLike) -> F:
    """``uncertainty(p) × impact``: higher means ask the analyst sooner (exploration)."""
    return np.asarray(uncertainty(p) * np.asarray(impact_, dtype=np.float64), dtype=np.float64)


def top_gain(p: npt.ArrayLike, impact_: npt.ArrayLike) -> F:
    """``(1 - p + uncertainty(p)) × impact``: value of a verdict on an alert at the top."""
    q = np.clip(np.nan_to_num(np.asarray(p, dtype=np.float64), nan=0.0), 0.0, 1.0)
    return np.asarray((1.0 - q + uncertainty(q)) * np.asarray(impact_, dtype=np.float64))


def similarity(Z: F, rows: F, bandwidth: float = 1.0) -> F:
    """Largest Gaussian-kernel similarity of each row of ``Z`` to any row of ``rows`` (0 … 1).

    ``exp(-mean((z - r)²) / bandwidth)``: 1 for identical standardised rows.
    """
    if rows.shape[0] == 0 or Z.shape[0] == 0:
        return np.zeros(Z.shape[0])
    sq = (Z * Z).sum(axis=1)[:, None] - 2.0 * Z @ rows.T + (rows * rows).sum(axis=1)[None, :]
    msd = np.maximum(sq, 0.0) / max(Z.shape[1], 1)
    return np.asarray(np.exp(-msd.min(axis=1) / bandwidth), dtype=np.float64)


def _standardise(X: npt.ArrayLike, n: int) -> F | None:
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != n:
        raise ValueError(f"features must have one row per alert ({n}), got shape {A.shape}")
    A = np.nan_to_num(A, nan=0.0, posinf=30.0, neginf=-30.0)
    sd = A.std(axis=0)
    return np.asarray((A - A.mean(axis=0)) / np.where(sd > 1e-9, sd, 1.0), dtype=np.float64)


def next_to_review(
    p: npt.ArrayLike,
    impact_: npt.ArrayLike,
    k: int,
    exclude: Iterable[int] = (),
    *,
    features: npt.ArrayLike | None = None,
    groups: Sequence[Hashable] | None = None,
    top_k: int = 20,
    explore_every: int = 4,
    diversity: float = 0.8,
) -> npt.NDArray[np.int64]:
    """Indices of the next ``k`` alerts to ask about, none in ``exclude`` (the judged ones).

    Question number ``t`` (counting the judged ones, so a sequence of
    one-at-a-time calls follows the same plan as one batch) explores when
    ``explore_every > 0`` and ``t % explore_every == explore_every - 1``, and
    otherwise exploits: the best :func:`top_gain` among the ``top_k`` open
    alerts with the highest ``p``.  Exploration takes the best
    :func:`review_priority` over all open alerts.  With ``features`` (one row
    per alert) both are damped by similarity to the judged and picked alerts
    (``diversity`` in 0 … 1); with ``groups`` (one key per alert) an alert
    sharing a key with a judged or picked one is damped by the full
    ``diversity``.  ``top_k=0`` ranks by :func:`review_priority` only.  Ties are broken by index, so the choice is deterministic; alerts
    with a non-finite ``p`` or impact are never picked.
    """
    pp = np.asarray(p, dtype=np.float64).ravel()
    imp = np.asarray(impact_, dtype=np.float64).ravel()
    n = pp.size
    ok = np.isfinite(pp) & np.isfinite(imp)
    ex = np.fromiter(exclude, dtype=np.int64)
    ex = ex[(ex >= 0) & (ex < n)]
    ok[ex] = False
    explore_val = np.where(ok, review_priority(np.where(ok, pp, 0.5), np.where(ok, imp, 0.0)), 0.0)
    exploit_val = np.where(ok, top_gain(np.where(ok, pp, 0.0), np.where(ok, imp, 0.0)), 0.0)
    Z = _standardise(features, n) if features is not None else None
    damp = np.ones(n)
    if Z is not None and ex.size and diversity > 0:
        damp = 1.0 - diversity * similarity(Z, Z[ex])
    gid: npt.NDArray[np.int64] | None = None
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"groups must have one key per alert ({n}), got {len(groups)}")
        codes: dict[Hashable, int] = {}
        gid = np.array([codes.setdefault(g, len(codes)) for g in groups], dtype=np.int64)
        if ex.size and diversity > 0:
            damp = np.where(np.isin(gid, gid[ex]), np.minimum(damp, 1.0 - diversity), damp)
    by_p = np.lexsort((np.arange(n), -np.where(ok, pp, -np.inf)))
    picked: list[int] = []
    free = ok.copy()
    for j in range(max(k, 0)):
        if not free.any():
            break
        t = ex.size + j
        exploring = top_k <= 0 or (explore_every > 0 and t % explore_every == explore_every - 1)
        if exploring:
            cand = np.flatnonzero(free)
            val = explore_val[cand]
        else:
            cand = by_p[free[by_p]][:top_k]
            val = exploit_val[cand]
        val = val * damp[cand]
        best = int(cand[np.lexsort((cand, -val))[0]])
        picked.append(best)
        free[best] = False
        if Z is not None and diversity > 0:
            damp = np.minimum(damp, 1.0 - diversity * similarity(Z, Z[[best]]))
        if gid is not None and diversity > 0:
            damp = np.where(gid == gid[best], np.minimum(damp, 1.0 - diversity), damp)
    return np.asarray(picked, dtype=np.int64)
