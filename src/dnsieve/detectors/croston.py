"""Croston, SBA and TSB forecasts for intermittent demand, vectorised over many series.

Hourly query counts of most registered domains are *intermittent*: mostly zero,
with bursts.  Croston's method (1972) smooths the non-zero demand sizes and the
intervals between them separately; SBA (Syntetos & Boylan 2005) multiplies the
classic forecast by 0.95 to remove its bias; TSB (Teunter, Syntetos & Babai
2011) smooths the occurrence *probability* every period instead of the
interval, so it decays when demand stops.  The forecast is a flat expected
demand per period: ``size / interval`` (Croston) or ``probability · size`` (TSB),
the same quantity as the hurdle model's ``p·(1+λ)``.

All functions take a dense matrix ``y`` of shape ``(n_series, n_periods)`` and
return one forecast per series.  They loop over periods (a few hundred) and
vectorise over series (millions), and reproduce statsforecast's
``CrostonClassic``, ``CrostonSBA`` and ``TSB`` to floating-point rounding
(tests/test_croston.py compares them against a stored statsforecast output).

>>> import numpy as np
>>> y = np.array([[0, 3, 0, 0, 2, 0], [0, 0, 0, 0, 0, 0]], dtype=float)
>>> croston_classic(y).round(4).tolist()
[1.381, 0.0]
>>> tsb(y, alpha_d=0.2, alpha_p=0.2).round(4).tolist()
[0.6774, 0.0]
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["SBA_FACTOR", "croston_classic", "croston_sba", "ses_last", "tsb"]

SBA_FACTOR = 0.95


def _as_matrix(y: ArrayLike) -> NDArray[np.float64]:
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"expected a (n_series, n_periods) matrix, got shape {arr.shape}")
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0)


def _ses_sparse(
    values: NDArray[np.float64], mask: NDArray[np.bool_], alpha: float
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """One-step SES forecast of the sub-sequence ``values[mask]`` of every row.

    Follows statsforecast's recurrence exactly: the level starts at the first
    observation x0, each later observation x_k updates it with the *previous*
    one (``level = α·x_{k-1} + (1-α)·level``) and the forecast is
    ``α·x_last + (1-α)·level``.
    """
    n = values.shape[0]
    level = np.zeros(n)
    prev = np.zeros(n)
    seen = np.zeros(n, dtype=bool)
    beta = 1.0 - alpha
    for t in range(values.shape[1]):
        m = mask[:, t]
        if not m.any():
            continue
        x = values[:, t]
        upd = m & seen
        level = np.where(upd, alpha * prev + beta * level, level)
        first = m & ~seen
        level = np.where(first, x, level)
        prev = np.where(m, x, prev)
        seen |= m
    return np.where(seen, alpha * prev + beta * level, 0.0), seen


def ses_last(y: ArrayLike, alpha: float) -> NDArray[np.float64]:
    """One-step simple-exponential-smoothing forecast of every row (level starts at x0)."""
    arr = _as_matrix(y)
    out, _ = _ses_sparse(arr, np.ones(arr.shape, dtype=bool), alpha)
    return out


def croston_classic(y: ArrayLike, alpha: float = 0.1) -> NDArray[np.float64]:
    """Croston's classic forecast (demand per period) for every row of ``y``.

    Rows with no demand at all forecast 0 (statsforecast falls back to the
    naive forecast, the last value, which is 0 for them too).
    """
    arr = _as_matrix(y)
    nz = arr > 0
    size, seen = _ses_sparse(arr, nz, alpha)
    # interval k = distance (in periods) from the previous demand; the first
    # interval is counted from one period before the series start.
    pos = np.arange(1, arr.shape[1] + 1, dtype=np.float64)
    last = np.zeros(arr.shape[0])
    intervals = np.zeros_like(arr)
    for t in range(arr.shape[1]):
        m = nz[:, t]
        intervals[:, t] = np.where(m, pos[t] - last, 0.0)
        last = np.where(m, pos[t], last)
    interval, _ = _ses_sparse(intervals, nz, alpha)
    safe = np.where(interval != 0.0, interval, 1.0)
    return np.where(seen, size / safe, 0.0)


def croston_sba(y: ArrayLike, alpha: float = 0.1) -> NDArray[np.float64]:
    """Syntetos–Boylan approximation: Croston's forecast times 0.95."""
    return croston_classic(y, alpha) * SBA_FACTOR


def tsb(y: ArrayLike, alpha_d: float = 0.1, alpha_p: float = 0.1) -> NDArray[np.float64]:
    """Teunter–Syntetos–Babai forecast: smoothed occurrence probability × smoothed size."""
    arr = _as_matrix(y)
    nz = arr > 0
    size, seen = _ses_sparse(arr, nz, alpha_d)
    prob = ses_last(nz.astype(np.float64), alpha_p)
    return np.where(seen, prob * size, 0.0)
