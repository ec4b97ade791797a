"""The shipped initial threat model: P(threat) before any verdict (ARCHITECTURE §6).

``scripts/train_threat.py`` fits a logistic regression on anomalies from real
labelled data (DNS C2 and tunnel captures, ThreatFox and DGA domain lists,
benign top lists) and simulated campaigns and benign anomalies, and writes it
to ``dnsieve/data/threat_model.npz`` (NumPy arrays only, loaded with
``allow_pickle=False``) with its training record in ``threat_model.json``.
Nothing here reads ``../shared``: the artifact is self-contained.

The artifact holds, by feature *name* (so a later feature layout still loads
it: a feature it does not know weighs 0, a feature it knows that no longer
exists is dropped):

* ``w``, ``wg``, ``b``, ``center``, ``scale``: with ``z = (x − center)/scale``,
  ``logit = b + w·z + wg[detector]·z``: shared weights plus each detector's own
  deviation from them (a tunnel's evidence is its subdomains, a DGA's its
  names; the shared weights carry what holds for every detector), by
  detector *name* too;
* ``mean``, ``var``: the feature distribution of the training anomalies, the
  starting point of :class:`~dnsieve.threat.model.ThreatModel`'s standardiser;
* ``anchor``: a few hundred training anomalies (an even spread over the
  initial logit), which keep a handful of verdicts from overturning the
  initial ranking of everything else.

>>> init = load_initial()
>>> init is None or init.w.shape == init.center.shape
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_PATH",
    "InitialModel",
    "align",
    "detector_mask",
    "grouped_logit",
    "load_initial",
    "save_initial",
]

F = npt.NDArray[np.float64]

#: Where the shipped artifact lives (package data).
DEFAULT_PATH = Path(__file__).resolve().parents[1] / "data" / "threat_model.npz"


def align(values: F, names: list[str] | tuple[str, ...], to: tuple[str, ...], fill: float) -> F:
    """Re-order the last axis of ``values`` from ``names`` to ``to`` (``fill`` where unknown).

    >>> align(np.array([1.0, 2.0]), ["b", "a"], ("a", "b", "c"), 0.0).tolist()
    [2.0, 1.0, 0.0]
    """
    v = np.asarray(values, dtype=np.float64)
    idx = {n: i for i, n in enumerate(names)}
    out = np.full((*v.shape[:-1], len(to)), fill, dtype=np.float64)
    for j, n in enumerate(to):
        i = idx.get(n)
        if i is not None:
            out[..., j] = v[..., i]
    return out


@dataclass(frozen=True)
class InitialModel:
    """The shipped logistic prior, aligned to the current feature layout."""

    w: F
    wg: F
    b: float
    center: F
    scale: F
    mean: F
    var: F
    anchor: F
    meta: dict[str, Any] = field(default_factory=dict)

    def logit(self, X: F) -> F:
        """The initial logit of P(threat) for each feature row."""
        return grouped_logit(X, self.w, self.wg, self.b, self.center, self.scale)


def detector_mask(X: F) -> F:
    """The ``det_*`` one-hot columns of feature rows (n × len(DETECTORS))."""
    from dnsieve.threat.features import DETECTORS, FEATURE_NAMES

    i = FEATURE_NAMES.index(f"det_{DETECTORS[0]}")
    return np.asarray(X[:, i : i + len(DETECTORS)], dtype=np.float64)


def grouped_logit(X: F, w: F, wg: F, b: float, center: F, scale: F) -> F:
    """``b + w·z + wg[detector]·z`` with ``z = (X − center)/scale`` (see the module doc)."""
    Z = (X - center) / scale
    out = b + Z @ w
    if wg.size:
        out = out + np.sum((detector_mask(X) @ wg) * Z, axis=1)
    return np.asarray(out, dtype=np.float64)


def save_initial(
    path: Path,
    names: tuple[str, ...],
    *,
    detectors: tuple[str, ...],
    w: F,
    wg: F,
    b: float,
    center: F,
    scale: F,
    mean: F,
    var: F,
    anchor: F,
    meta: dict[str, Any],
) -> None:
    """Write the artifact (``path``, ``.npz``) and its training record (same stem, ``.json``)."""
    np.savez_compressed(
        path,
        names=np.array(names, dtype=np.str_),
        detectors=np.array(detectors, dtype=np.str_),
        w=np.asarray(w, dtype=np.float64),
        wg=np.asarray(wg, dtype=np.float64),
        b=np.array([b], dtype=np.float64),
        center=np.asarray(center, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64),
        mean=np.asarray(mean, dtype=np.float64),
        var=np.asarray(var, dtype=np.float64),
        anchor=np.asarray(anchor, dtype=np.float32),
    )
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _read(path: Path, names: tuple[str, ...], detectors: tuple[str, ...]) -> InitialModel:
    with np.load(path, allow_pickle=False) as z:
        src = [str(n) for n in z["names"]]
        w = align(z["w"], src, names, 0.0)
        wg = align(z["wg"], src, names, 0.0)  # (detectors in file) × features
        wg = align(wg.T, [str(d) for d in z["detectors"]], detectors, 0.0).T
        center = align(z["center"], src, names, 0.0)
        scale = align(z["scale"], src, names, 1.0)
        mean = align(z["mean"], src, names, 0.0)
        var = align(z["var"], src, names, 1.0)
        anchor = align(z["anchor"].astype(np.float64), src, names, 0.0)
        b = float(z["b"][0])
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not (
        np.isfinite(w).all()
        and np.isfinite(wg).all()
        and np.isfinite(center).all()
        and (scale > 0).all()
    ):
        raise ValueError(f"{path}: non-finite weights or non-positive scales")
    return InitialModel(w, wg, b, center, scale, mean, np.maximum(var, 1e-6), anchor, meta)


@lru_cache(maxsize=4)
def _cached(path: str, names: tuple[str, ...], detectors: tuple[str, ...]) -> InitialModel | None:
    p = Path(path)
    if not p.exists():
        return None
    return _read(p, names, detectors)


def load_initial(path: Path | None = None) -> InitialModel | None:
    """The shipped initial model aligned to :data:`~dnsieve.threat.features.FEATURE_NAMES`.

    None when the artifact is absent (a source tree before
    ``scripts/train_threat.py`` has run); a corrupt artifact raises
    ``ValueError`` or ``OSError``.
    """
    from dnsieve.threat.features import DETECTORS, FEATURE_NAMES

    return _cached(str(path or DEFAULT_PATH), FEATURE_NAMES, DETECTORS)
