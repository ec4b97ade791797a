"""Active learning: the needs-review queue prefers uncertain, high-impact alerts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsieve.threat.active import (
    impact,
    next_to_review,
    review_priority,
    similarity,
    top_gain,
    uncertainty,
)
from dnsieve.threat.features import FEATURE_NAMES
from dnsieve.threat.model import ThreatModel, on_verdict


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
    order = next_to_review(p, impact(X), k=5, top_k=0)
    assert order[0] == 1  # uncertain and many clients, strong evidence
    assert set(order[-2:]) == {2, 3}  # confident ones come last, whatever their impact
    assert next_to_review(p, impact(X), k=2, exclude=[1], top_k=0).tolist()[0] != 1


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
    idx = next_to_review(p, imp, k, top_k=0)
    assert len(idx) == min(k, p.size) and len(set(idx.tolist())) == len(idx)
    if len(idx) > 1:
        assert (np.diff(pr[idx]) <= 1e-12).all()
    mixed = next_to_review(p, imp, k)  # default: exploit the top, explore every 4th
    assert len(mixed) == min(k, p.size) and len(set(mixed.tolist())) == len(mixed)


def test_exploitation_asks_about_the_top_and_exploration_every_fourth() -> None:
    # 30 alerts: p falls with the index; impact equal
    p = np.linspace(0.99, 0.01, 30)
    imp = np.ones(30)
    order = next_to_review(p, imp, k=8, top_k=5, explore_every=4).tolist()
    explore = [order[3], order[7]]
    exploit = [i for j, i in enumerate(order) if j not in (3, 7)]
    assert all(i < 5 + 6 for i in exploit)  # always among the 5 highest still open
    # exploration goes to the most uncertain alert: p closest to 0.5
    assert all(abs(p[i] - 0.5) < 0.05 for i in explore)
    # one-at-a-time calls follow the same plan as one batch
    seq: list[int] = []
    for _ in range(8):
        seq.append(int(next_to_review(p, imp, 1, exclude=seq, top_k=5, explore_every=4)[0]))
    assert seq == order


def test_top_gain_prefers_likely_false_alarms_at_the_top() -> None:
    g = top_gain(np.array([0.99, 0.6, 0.2]), np.ones(3))
    assert g[2] > g[1] > g[0] > 0


def test_similarity_kernel() -> None:
    Z = np.array([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0]])
    s = similarity(Z, Z[[0]])
    assert s[0] == pytest.approx(1.0) and s[1] > 0.99 and s[2] < 1e-6
    assert similarity(Z, np.zeros((0, 2))).tolist() == [0.0, 0.0, 0.0]


def test_diversity_skips_near_duplicates() -> None:
    # top of the queue: ten copies of one alert (entity A), then a different alert B
    X = np.zeros((12, len(FEATURE_NAMES)))
    X[:10, FEATURE_NAMES.index("det_beacon")] = 1.0
    X[10, FEATURE_NAMES.index("det_tunnel")] = 1.0
    X[11, FEATURE_NAMES.index("det_dga")] = 1.0
    p = np.array([0.7] * 10 + [0.9, 0.05])
    imp = np.ones(12)
    plain = next_to_review(p, imp, k=2, top_k=10, explore_every=0, diversity=0.0).tolist()
    diverse = next_to_review(p, imp, k=2, top_k=10, explore_every=0, features=X).tolist()
    assert plain == [0, 1]  # two copies of the same alert
    assert diverse[0] in range(10) and diverse[1] == 10
    # already judged copies damp the rest too
    nxt = next_to_review(p, imp, k=1, exclude=[0], top_k=10, explore_every=0, features=X)
    assert nxt.tolist() == [10]
    with pytest.raises(ValueError, match="one row per alert"):
        next_to_review(p, imp, k=1, features=X[:3])


def test_groups_keep_one_campaign_from_filling_the_batch() -> None:
    # one campaign in five windows (features differ: counts grow), then two other entities
    rng = np.random.default_rng(3)
    X = rng.normal(size=(7, len(FEATURE_NAMES))) * 3.0
    groups = [("volume", "evil.example")] * 5 + [("dga", "a.example"), ("beacon", "b.example")]
    p = np.array([0.6, 0.6, 0.6, 0.6, 0.6, 0.55, 0.5])
    imp = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 2.0, 2.0])
    kw = {"top_k": 10, "explore_every": 0, "features": X}
    without = next_to_review(p, imp, k=3, **kw).tolist()
    assert sum(i < 5 for i in without) >= 2  # feature similarity alone misses the repeats
    with_groups = next_to_review(p, imp, k=3, groups=groups, **kw).tolist()
    assert sum(i < 5 for i in with_groups) == 1 and {5, 6} <= set(with_groups)
    # a judged window of the campaign damps its other windows
    nxt = next_to_review(p, imp, k=1, exclude=[0], groups=groups, **kw).tolist()
    assert nxt in ([5], [6])
    with pytest.raises(ValueError, match="one key per alert"):
        next_to_review(p, imp, k=1, groups=groups[:3])


def test_active_queue_learns_a_user_policy_faster_than_random() -> None:
    """A prior that over-rates a class the user sanctions: the queue fixes precision@10.

    Generated features: 'sanctioned' alerts (one detector, many clients, strong
    evidence) outrank the real threats (another detector, one client) under the
    prior; the background is weak.  The policy is the label, so the prior cannot
    know it.  Six verdicts chosen by the queue must lift precision@10 to >= 0.9;
    six random ones (mean of 5 seeds) must not.
    """
    rng = np.random.default_rng(3)
    n_s, n_t, n_b = 30, 15, 600
    n = n_s + n_t + n_b
    X = np.zeros((n, len(FEATURE_NAMES)))
    col = FEATURE_NAMES.index
    X[:n_s, col("det_beacon")] = 1
    X[:n_s, col("ev_clients")] = np.log1p(rng.integers(20, 40, n_s))
    X[:n_s, col("neg_log_p")] = rng.uniform(9, 12, n_s)
    X[n_s : n_s + n_t, col("det_tunnel")] = 1
    X[n_s : n_s + n_t, col("ev_clients")] = np.log1p(1)
    X[n_s : n_s + n_t, col("neg_log_p")] = rng.uniform(6, 8, n_t)
    X[n_s + n_t :, col("det_volume")] = 1
    X[n_s + n_t :, col("ev_clients")] = np.log1p(rng.integers(1, 30, n_b))
    X[n_s + n_t :, col("neg_log_p")] = rng.uniform(0, 4, n_b)
    X[:, col("has_p")] = 1
    y = np.zeros(n, dtype=np.int8)
    y[n_s : n_s + n_t] = 1

    def p_at_10(strategy: str, seed: int) -> float:
        m = ThreatModel(seed=seed, prior="builtin", l2=1.0)  # the hand-set prior's semantics
        m.observe(X)
        imp = impact(X)
        r = np.random.default_rng(seed)
        asked: list[int] = []
        p = m.predict_proba(X)
        for _ in range(6):
            if strategy == "active":
                i = int(next_to_review(p, imp, 1, exclude=asked, features=X, top_k=10)[0])
            else:
                i = int(r.choice(np.setdiff1d(np.arange(n), asked)))
            asked.append(i)
            on_verdict(m, X[i], int(y[i]), 0.0)
            p = m.predict_proba(X)
        s = p.copy()
        s[asked] = np.where(y[asked] == 1, 2.0, -1.0)
        return float(y[np.argsort(-s, kind="stable")[:10]].mean())

    m0 = ThreatModel(prior="builtin")
    m0.observe(X)
    assert y[np.argsort(-m0.predict_proba(X), kind="stable")[:10]].mean() == 0.0
    assert p_at_10("active", 0) >= 0.9
    assert np.mean([p_at_10("random", s) for s in range(5)]) < 0.5
