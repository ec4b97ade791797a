"""Threat model: learning from verdicts, decay, serialisation, rollback, drift, training."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from dnsieve.threat.features import FEATURE_NAMES, TopList, anomaly_features, entity_context
from dnsieve.threat.model import (
    ModelFormatError,
    ThreatModel,
    decay_weights,
    drift_report,
    label_value,
    on_verdict,
    score_drift,
)
from dnsieve.threat.training import label_anomalies, read_labels, train_from_labels

T0 = datetime(2024, 3, 4, tzinfo=UTC)


def anomaly_set(seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """A realistic mix where the zero-label prior is wrong for this user.

    * 60 benign ``tunnel`` anomalies on an antivirus reputation service (encoded
      look-ups by many clients: very high scores, tiny p-values);
    * 40 true threats: NXDOMAIN bursts of single infected clients (moderate p);
    * 300 benign low-score noise from fastflux/volume.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(60):
        ev = {
            "clients": int(rng.integers(40, 90)),
            "unique_subdomains": int(rng.integers(2000, 5000)),
            "mean_encodedness": 0.95,
            "txt_null_cname_mx_share": 0.0,
            "queries": 5000,
        }
        rows.append(
            (
                "tunnel",
                "domain",
                f"av{i % 3}.sophosxl.net",
                float(rng.uniform(20, 40)),
                10 ** -rng.uniform(8, 12),
                ev,
                0,
            )
        )
    for i in range(40):
        ev = {
            "queries": int(rng.integers(50, 300)),
            "nx_share": float(rng.uniform(0.8, 1.0)),
            "failed_domains": int(rng.integers(40, 200)),
        }
        rows.append(
            (
                "nxdomain",
                "client",
                f"10.1.0.{i}",
                float(rng.uniform(3, 8)),
                10 ** -rng.uniform(4, 6),
                ev,
                1,
            )
        )
    for i in range(300):
        det = "fastflux" if i % 2 else "volume"
        ev = {"clients": int(rng.integers(1, 20)), "queries": int(rng.integers(10, 500))}
        rows.append(
            (
                det,
                "domain",
                f"site{i}.example",
                float(rng.uniform(1, 4)),
                float(rng.uniform(1e-3, 0.5)),
                ev,
                0,
            )
        )
    df = pl.DataFrame(
        {
            "detector": [r[0] for r in rows],
            "entity_type": [r[1] for r in rows],
            "entity": [r[2] for r in rows],
            "window_start": [T0 + timedelta(hours=i % 48) for i in range(len(rows))],
            "window_end": [T0 + timedelta(hours=i % 48 + 1) for i in range(len(rows))],
            "score": [r[3] for r in rows],
            "p_value": [r[4] for r in rows],
            "evidence": [json.dumps(r[5]) for r in rows],
        },
        schema_overrides={
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
        },
    )
    return df, np.array([r[6] for r in rows], dtype=np.int8)


def precision_at(p: np.ndarray, y: np.ndarray, k: int = 20) -> float:
    return float(y[np.argsort(-p, kind="stable")[:k]].mean())


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    df, y = anomaly_set()
    X = anomaly_features(df, lexical=False)
    ts = df["window_end"].dt.epoch("us").to_numpy() / 1e6
    return X, y, ts


def test_features_fixed_layout_and_no_nan() -> None:
    df, _ = anomaly_set()
    hostile = df.head(3).with_columns(
        pl.Series("evidence", ["not json", '{"clients": "many"}', None]),
        pl.Series("entity", ["\\x00evil|", "a" * 300, "|"]),
    )
    X = anomaly_features(pl.concat([df.head(5), hostile]), lexical=False)
    assert X.shape == (8, len(FEATURE_NAMES))
    assert np.isfinite(X).all()
    assert X[0, FEATURE_NAMES.index("det_tunnel")] == 1.0
    assert X[0, FEATURE_NAMES.index("ev_clients")] > 3.0  # log1p(40+)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_model_learns_from_a_handful_of_verdicts(data, kind: str) -> None:
    X, y, ts = data
    m = ThreatModel(kind=kind).observe(X)
    before = precision_at(m.predict_proba(X), y)
    assert before < 0.5  # the prior puts the AV service on top
    idx = [0, 1, 2, 3, 60, 61, 62, 63]  # four benign AV look-ups, four NXDOMAIN bursts
    for i in idx:
        on_verdict(m, X[i], "threat" if y[i] else "benign", ts[i])
    after = precision_at(m.predict_proba(X), y)
    assert after >= 0.9 > before


def test_l2_is_chosen_from_the_verdicts(data) -> None:
    """Consistent verdicts that overturn the prior loosen the hold on it; coin-flip verdicts
    keep the strongest hold (the one-SE rule), so noise cannot reorder the queue."""
    from dnsieve.threat.model import L2_GRID

    X, y, ts = data
    rng = np.random.default_rng(3)
    idx = np.concatenate([rng.choice(60, 8, replace=False), 60 + rng.choice(40, 8, replace=False)])
    truthful = ThreatModel(kind="linear").observe(X)
    truthful.partial_fit(X[idx], y[idx], ts[idx])
    noisy = ThreatModel(kind="linear").observe(X)
    noisy.partial_fit(X[idx], rng.integers(0, 2, idx.size), ts[idx])
    assert truthful.l2_ in L2_GRID and noisy.l2_ in L2_GRID
    assert truthful.l2_ < noisy.l2_ == max(L2_GRID)
    losses = truthful.cv_losses()
    assert losses.shape == (truthful.folds, len(L2_GRID)) and np.isfinite(losses).all()
    # below min_select verdicts, and with selection off, the configured l2 is used
    few = ThreatModel(kind="linear", l2=7.0).observe(X)
    few.partial_fit(X[idx[:4]], y[idx[:4]], ts[idx[:4]])
    fixed = ThreatModel(kind="linear", l2=7.0, select_l2=False).observe(X)
    fixed.partial_fit(X[idx], y[idx], ts[idx])
    assert few.l2_ == fixed.l2_ == 7.0
    # the choice survives a round trip
    back = ThreatModel.from_bytes(truthful.to_bytes())
    assert back.l2_ == truthful.l2_ and back.metadata()["l2_in_use"] == truthful.l2_


def test_decay_weighs_old_verdicts_less(data) -> None:
    X, _y, ts = data
    w = decay_weights([0.0, 90 * 86400.0, 180 * 86400.0], now=180 * 86400.0, half_life_days=90)
    assert w.tolist() == [0.25, 0.5, 1.0]
    # a year-old benign verdict on a threat-like alert is overridden by a fresh threat verdict
    year = 365 * 86400.0
    m = ThreatModel(half_life_days=30).observe(X)
    m.partial_fit(X[[60]], ["benign"], [ts[60] - year])
    old_only = float(m.predict_proba(X[61])[0])
    m.partial_fit(X[[61]], ["threat"], [ts[61]])
    assert m.sample_weights()[0] < 1e-3 < m.sample_weights()[1]
    assert float(m.predict_proba(X[61])[0]) > old_only
    # the same two verdicts both fresh: the benign one still counts
    fresh = ThreatModel(half_life_days=30).observe(X)
    fresh.partial_fit(X[[60, 61]], ["benign", "threat"], [ts[61], ts[61]])
    assert float(m.predict_proba(X[62])[0]) > float(fresh.predict_proba(X[62])[0])


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_serialisation_round_trips_bit_exactly(data, kind: str) -> None:
    X, y, ts = data
    m = ThreatModel(kind=kind, seed=3).observe(X)
    m.partial_fit(X[:5], y[:5], ts[:5])
    blob = m.to_bytes()
    m2 = ThreatModel.from_bytes(blob)
    assert m2.to_bytes() == blob
    assert np.array_equal(m2.predict_proba(X), m.predict_proba(X))
    assert m2.get_params() == m.get_params()
    assert b"pickle" not in blob and blob.startswith(b"DNSIEVE-THREAT")
    # a further update behaves identically after the round trip
    m.partial_fit(X[[70]], [0], ts[70])
    m2.partial_fit(X[[70]], [0], ts[70])
    assert m2.to_bytes() == m.to_bytes()


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"garbage",
        b"DNSIEVE-THREAT\x00\xff\xff\xff\x7f{",
        b"DNSIEVE-THREAT\x00\x02\x00\x00\x00{}",
    ],
)
def test_corrupt_blobs_are_rejected_cleanly(blob: bytes) -> None:
    with pytest.raises(ModelFormatError):
        ThreatModel.from_bytes(blob)


def test_rollback_restores_predictions(data) -> None:
    X, _y, ts = data
    m = ThreatModel().observe(X)
    v1 = m.to_bytes()
    p1 = m.predict_proba(X)
    for i in range(60, 70):
        on_verdict(m, X[i], "benign", ts[i])  # a wrong analyst marks threats benign
    assert not np.allclose(m.predict_proba(X), p1)
    assert np.array_equal(ThreatModel.from_bytes(v1).predict_proba(X), p1)


def test_drift_flags_shifted_not_unshifted() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(3000, 2))
    same = rng.normal(size=(3000, 2))
    shifted = same + np.array([0.0, 0.8])
    rows = drift_report(ref, same, ["a", "b"])
    assert not any(r.drifted for r in rows)
    rows = drift_report(ref, shifted, ["a", "b"])
    assert [r.drifted for r in rows] == [False, True]
    assert rows[1].psi > 0.2


def test_score_drift_per_detector() -> None:
    rng = np.random.default_rng(2)

    def frame(shift: float) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "detector": ["tunnel"] * 800 + ["volume"] * 800,
                "score": np.concatenate(
                    [rng.exponential(size=800) + shift, rng.exponential(size=800)]
                ),
            }
        )

    rows = {r.name: r for r in score_drift(frame(0.0), frame(1.0))}
    assert rows["tunnel"].drifted and not rows["volume"].drifted


def test_label_values() -> None:
    assert [
        label_value(v) for v in ("threat", "Benign", "not-relevant", "not_relevant", 1, 0.0)
    ] == [1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError):
        label_value("maybe")


def test_training_from_labels_csv_counts_malformed_rows() -> None:
    df, _y = anomaly_set()
    text = (
        "entity,label,detector,window_start\n"
        "10.1.0.1,threat,nxdomain,\n"
        "10.1.0.2,Threat,,\n"
        "av0.sophosxl.net,benign,tunnel,\n"
        ",threat,,\n"  # empty entity
        "10.1.0.3,perhaps,,\n"  # unknown label
        "10.1.0.4,threat,,yesterday\n"  # bad time
        "\n"
    )
    labels, stats = read_labels(io.StringIO(text))
    assert stats.rows_read == 6 and stats.rows_kept == 3
    assert dict(stats.rejects) == {"empty_entity": 1, "unknown_label": 1, "bad_time": 1}
    lab = label_anomalies(df, labels)
    assert lab[61] == 1 and lab[62] == 1 and (lab[:60:3] == 0).all() and lab[64] == -1
    res = train_from_labels(df, labels, label_stats=stats)
    assert res.labelled == int((lab >= 0).sum()) and res.threats == 2
    X = anomaly_features(df, lexical=False)
    p = res.model.predict_proba(X)
    assert p[0] < ThreatModel().observe(X).predict_proba(X)[0]  # learned: the AV service is benign


def test_label_windows_and_client_domain_parts() -> None:
    a = pl.DataFrame(
        {
            "detector": ["beacon", "beacon"],
            "entity_type": ["client_domain"] * 2,
            "entity": ["10.0.0.5|c2.example", "10.0.0.5|c2.example"],
            "window_start": [T0, T0 + timedelta(days=5)],
            "window_end": [T0 + timedelta(hours=1), T0 + timedelta(days=5, hours=1)],
        },
        schema_overrides={
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
        },
    )
    labels, _ = read_labels(
        io.StringIO(
            f"entity,label,window_start,window_end\nc2.example,threat,{T0.isoformat()},{(T0 + timedelta(days=1)).isoformat()}\n"
        )
    )
    assert label_anomalies(a, labels).tolist() == [1, -1]


def test_entity_context_and_toplist() -> None:
    ev = pl.DataFrame(
        {
            "ts": [T0, T0 + timedelta(hours=30), T0 + timedelta(hours=30)],
            "src_ip": ["a", "b", "b"],
            "registered_domain": ["google.com", "new.example", "new.example"],
            "subdomain": ["www", "x1", "x2"],
            "rcode": ["NOERROR", "NXDOMAIN", "NOERROR"],
            "qtype": ["A", "TXT", "A"],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )
    an = pl.DataFrame(
        {
            "detector": ["volume", "volume"],
            "entity_type": ["domain"] * 2,
            "entity": ["google.com", "new.example"],
            "window_start": [T0 + timedelta(hours=48)] * 2,
            "window_end": [T0 + timedelta(hours=49)] * 2,
            "score": [2.0, 2.0],
            "p_value": [0.01, 0.01],
            "evidence": ["{}", "{}"],
        },
        schema_overrides={
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
        },
    )
    X = anomaly_features(
        an, context=entity_context(ev), toplist=TopList.from_lines(["1,google.com"]), lexical=False
    )
    col = {n: X[:, i] for i, n in enumerate(FEATURE_NAMES)}
    assert col["pop_listed"].tolist() == [1.0, 0.0]
    assert col["ctx_new_domain"].tolist() == [0.0, 1.0]
    assert col["ctx_dom_odd_qtype"][1] == 0.5 and col["ctx_dom_subdomains"][1] == pytest.approx(
        np.log1p(2)
    )
