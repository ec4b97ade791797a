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

* ``w``, ``b``, ``center``, ``scale``: ``logit = b + Σ w·(x − center)/scale``;
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

__all__ = ["DEFAULT_PATH", "InitialModel", "align", "load_initial", "save_initial"]

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
    b: float
    center: F
    scale: F
    mean: F
    var: F
    anchor: F
    meta: dict[str, Any] = field(default_factory=dict)

    def logit(self, X: F) -> F:
        """The initial logit of P(threat) for each feature row."""
        return np.asarray(self.b + ((X - self.center) / self.scale) @ self.w, dtype=np.float64)


def save_initial(
    path: Path,
    names: tuple[str, ...],
    *,
    w: F,
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
        w=np.asarray(w, dtype=np.float64),
        b=np.array([b], dtype=np.float64),
        center=np.asarray(center, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64),
        mean=np.asarray(mean, dtype=np.float64),
        var=np.asarray(var, dtype=np.float64),
        anchor=np.asarray(anchor, dtype=np.float32),
    )
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def _read(path: Path, names: tuple[str, ...]) -> InitialModel:
    with np.load(path, allow_pickle=False) as z:
        src = [str(n) for n in z["names"]]
        w = align(z["w"], src, names, 0.0)
        center = align(z["center"], src, names, 0.0)
        scale = align(z["scale"], src, names, 1.0)
        mean = align(z["mean"], src, names, 0.0)
        var = align(z["var"], src, names, 1.0)
        anchor = align(z["anchor"].astype(np.float64), src, names, 0.0)
        b = float(z["b"][0])
    meta_path = path.with_suffix(".json")
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if not (np.isfinite(w).all() and np.isfinite(center).all() and (scale > 0).all()):
        raise ValueError(f"{path}: non-finite weights or non-positive scales")
    return InitialModel(w, b, center, scale, mean, np.maximum(var, 1e-6), anchor, meta)


@lru_cache(maxsize=4)
def _cached(path: str, names: tuple[str, ...]) -> InitialModel | None:
    p = Path(path)
    if not p.exists():
        return None
    return _read(p, names)


def load_initial(path: Path | None = None) -> InitialModel | None:
    """The shipped initial model aligned to :data:`~dnsieve.threat.features.FEATURE_NAMES`.

    None when the artifact is absent (a source tree before
    ``scripts/train_threat.py`` has run); a corrupt artifact raises
    ``ValueError`` or ``OSError``.
    """
    from dnsieve.threat.features import FEATURE_NAMES

    return _cached(str(path or DEFAULT_PATH), FEATURE_NAMES)
