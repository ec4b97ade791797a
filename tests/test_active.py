"""Active learning: the needs-review queue prefers uncertain, high-impact alerts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsieve.threat.active import impact, next_to_review, review_priority, uncertainty
from dnsieve.threat.features import FEATURE_NAMES


def feats(clients: float, neg_log_p: float) -> np.ndarray:
    x = np.zeros(len(FEATURE_NAMES))
    x[FEATURE_NAMES.index("ev_clients")] = np.log1p(clients)
    x[FEATURE_NAMES.index("neg_log_p")] = neg_log_p
    return x


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0.5, 1.0), (0.0, 0.0), (1.0, 0.0), (0.1, 0.469), (0.9, 0.469)],
)
def test_uncertainty_table(p: float, expected: float) -> None:
    assert uncertainty(np.array([p]))[0] == pytest.approx(expected, abs=1e-3)


def test_impact_grows_with_clients_and_evidence() -> None:
    X = np.vstack([feats(1, 2), feats(50, 2), feats(1, 12), feats(50, 12)])
    i = impact(X)
    assert i[1] > i[0] and i[2] > i[0] and i[3] == i.max()


def test_ranking_prefers_uncertain_high_impact() -> None:
    p = np.array([0.5, 0.5, 0.98, 0.02, 0.6])
    X = np.vstack([feats(1, 3), feats(80, 10), feats(80, 10), feats(80, 10), feats(10, 6)])
    order = next_to_review(p, impact(X), k=5)
    assert order[0] == 1  # uncertain and many clients, strong evidence
    assert set(order[-2:]) == {2, 3}  # confident ones come last, whatever their impact
    assert next_to_review(p, impact(X), k=2, exclude=[1]).tolist()[0] != 1


def test_next_to_review_edges() -> None:
    assert next_to_review(np.array([]), np.array([]), k=3).tolist() == []
    assert next_to_review(np.array([0.5, 0.5]), np.array([1.0, 1.0]), k=5).tolist() == [0, 1]
    assert next_to_review(np.array([0.5, np.nan]), np.array([1.0, 1.0]), k=5).tolist() == [0]
    assert next_to_review(np.array([0.5]), np.array([1.0]), k=1, exclude=[0]).tolist() == []


@given(st.lists(st.floats(0, 1), min_size=1, max_size=50), st.integers(0, 10))
def test_priority_properties(ps: list[float], k: int) -> None:
    p = np.array(ps)
    imp = np.ones_like(p)
    pr = review_priority(p, imp)
    assert (pr >= 0).all() and (pr <= 1 + 1e-12).all()
    idx = next_to_review(p, imp, k)
    assert len(idx) == min(k, p.size) and len(set(idx.tolist())) == len(idx)
    if len(idx) > 1:
        assert (np.diff(pr[idx]) <= 1e-12).all()
