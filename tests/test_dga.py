"""DGA model, detector and the leave-family-out smoke test."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from dnsieve.detectors import get
from dnsieve.detectors.base import DetectContext
from dnsieve.detectors.dga import (
    MODEL_FEATURES,
    DgaModel,
    Trees,
    default_model,
    registered_labels,
    score_names,
)
from dnsieve.domains import DomainSplitter

REPO = Path(__file__).resolve().parents[1]


def test_model_loads_with_metadata() -> None:
    m = default_model()
    assert m.feature_mean.shape == (len(MODEL_FEATURES),)
    assert m.metadata["feature_names"] == list(MODEL_FEATURES)
    assert m.metadata["metrics"]["leave_family_out"]["families"]
    assert m.metadata["data"] and all(len(d["sha256"]) == 64 for d in m.metadata["data"])
    assert "test_auc" in m.metadata["metrics"]


def test_known_examples() -> None:
    generated = ["xjwqkzrtbvpl.net", "qvhrbzxkwnmt.biz", "4f2a9c81e7d3b6a0.com"]
    benign = ["google.com", "wikipedia.org", "weather.com", "stackoverflow.com", "bbc.co.uk"]
    p = score_names(generated + benign)["dga_probability"].to_numpy()
    assert np.all(p[: len(generated)] > 0.5)
    assert np.all(p[len(generated) :] < 0.5)


def test_scores_registered_label_not_subdomain() -> None:
    df = score_names(["d3c9x1q7zk2.cloudfront.net", "ec2-52-1-2-3.compute-1.amazonaws.com"])
    assert df["label"].to_list() == ["cloudfront", "amazonaws"]
    assert (df["dga_probability"] < 0.5).all()


def test_registered_labels_edge_cases() -> None:
    out = registered_labels(pl.Series(["", None, "com", "a..b", "\\x00.com"], dtype=pl.String))
    assert out.height == 5
    assert out["label"].to_list() == ["", "", "com", "a.", "\\x00"]


def _slow_labels(names: list[str]) -> list[tuple[str, str]]:
    """Reference: one PSL split per name, as the label was defined before vectorising."""
    icann = DomainSplitter(private_suffixes=False)
    out = []
    for n in names:
        rd, _sub, tld = icann.split(n.strip("."))
        if tld and len(rd) > len(tld) + 1:
            out.append((rd, rd[: len(rd) - len(tld) - 1]))
        else:
            out.append((rd, rd.split(".")[0]))
    return out


def test_registered_labels_match_per_name_split() -> None:
    names = [
        "a.b.co.uk",
        "x.a.b.sch.uk",
        "a.city.kawasaki.jp",
        "x.y.kawasaki.jp",
        "a.www.ck",
        "x.y.z.bd",
        "a.b.c.nom.br",
        "q.xn--kprw13d",
        "abc.xn--p1ai",
        ".a.com",
        "a.com.",
        "liryliem.bazar",
        "h1.x1.cloudfront.net",
        "kawasaki.jp",
        "co.uk",
        "wpad",
        "a..b.com",
        "Ünï.例え.jp",
    ]
    got = registered_labels(pl.Series(names))
    assert list(zip(got["icann_domain"], got["label"], strict=True)) == _slow_labels(names)
    assert got["suffix"].to_list()[:2] == ["co.uk", "b.sch.uk"]


@pytest.mark.shared
def test_registered_labels_match_on_corpus(shared_data: Path) -> None:
    names = (
        pl.read_csv(shared_data / "domains" / "threatfox" / "dev.csv")["input"]
        .str.to_lowercase()
        .head(3000)
    )
    names = pl.concat([names, "h7." + names])
    got = registered_labels(names)
    want = _slow_labels(names.to_list())
    assert list(zip(got["icann_domain"], got["label"], strict=True)) == want


def test_trees_match_reference_traversal() -> None:
    rng = np.random.default_rng(1)
    c = default_model().classifier
    assert isinstance(c, Trees)
    x = rng.normal(size=(500, len(MODEL_FEATURES)))
    x[:10] = 0.0  # ties with thresholds are common in real features
    tree = np.arange(c.feature.shape[0])[None, :]
    node = np.zeros((x.shape[0], c.feature.shape[0]), dtype=np.int64)
    rows = np.arange(x.shape[0])[:, None]
    for _ in range(c.depth):
        go_left = x[rows, c.feature[tree, node]] <= c.threshold[tree, node]
        node = np.where(go_left, c.left[tree, node], c.right[tree, node])
    want = c.baseline + c.value[tree, node].sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(c.margin(x), want, rtol=1e-9, atol=1e-9)
    assert c.margin(x[:0]).shape == (0,)


def test_save_load_roundtrip(tmp_path: Path) -> None:
    m = default_model()
    m.save(tmp_path / "m.npz")
    m2 = DgaModel.load(tmp_path / "m.npz")
    labels = ["abc", "xkq9z2", "", "a" * 200]
    np.testing.assert_allclose(m.predict_proba(labels), m2.predict_proba(labels), rtol=1e-6)


@pytest.mark.shared
def test_corpus_rows_separate(shared_data: Path) -> None:
    dga = pl.read_csv(shared_data / "domains" / "dga" / "baderj_dev_families.csv")
    dga = dga.filter(
        pl.col("family").is_in(["zloader", "murofet", "bazarbackdoor", "tinba"])
    ).sample(400, seed=1)
    top = pl.read_csv(
        shared_data / "domains" / "benign" / "opendns-top-domains.txt",
        has_header=False,
        new_columns=["d"],
    )
    p_dga = score_names(dga["domain"])["dga_probability"].to_numpy()
    p_ben = score_names(top["d"].head(400))["dga_probability"].to_numpy()
    assert np.mean(p_dga > 0.5) > 0.8
    assert np.mean(p_ben > 0.5) < 0.05


def test_detector_example_flags_generated_host() -> None:
    det = get("dga")()
    data = det.example(seed=3)
    t0 = data["ts"].min()
    ctx = DetectContext(start=t0, end=t0 + timedelta(hours=1), window=3600)
    out = det.score(data, ctx)
    assert out.height >= 20
    ev = json.loads(out["evidence"][0])
    assert {"dga_probability", "features", "query_names", "client_dga_nxdomains"} <= set(ev)
    assert (
        not out["entity"]
        .is_in(["wikipedia.org", "google.com", "cloudfront.net", "github.com"])
        .any()
    )
    # Context from a host cycling through failed generated names raises the score.
    for score, evidence in zip(out["score"], out["evidence"], strict=True):
        assert score >= json.loads(evidence)["dga_probability"] - 1e-4
    assert max(json.loads(e)["client_dga_nxdomains"] for e in out["evidence"]) >= 10


def test_detector_empty_and_hostile() -> None:
    det = get("dga")()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    ctx = DetectContext(start=t0, end=t0 + timedelta(hours=1))
    empty = det.example().head(0)
    assert det.score(empty, ctx).height == 0
    hostile = (
        det.example()
        .head(3)
        .with_columns(
            registered_domain=pl.Series(["\\x00\\xff.com", None, "a" * 300 + ".com"]), ts=pl.lit(t0)
        )
    )
    assert det.score(hostile, ctx).height <= 3


@pytest.mark.shared
def test_leave_family_out_smoke(shared_data: Path) -> None:
    sys.path.insert(0, str(REPO / "scripts"))
    import train_dga as T

    corpus, _mal, _files = T.load_corpus(shared_data)
    rng = np.random.default_rng(0)
    fams = ["zloader", "banjori", "tinba"]
    keep = (rng.random(corpus.height) < 0.15).copy()
    keep |= corpus["family"].is_in(fams).to_numpy() & (rng.random(corpus.height) < 0.3)
    small = corpus.filter(pl.Series(keep))
    tables = T.BenignTables.fit(small.filter(pl.col("y") == 0)["label"])
    _f, M = T.model_features(small["label"], tables)
    p = T.Params(variant="gbm_tiny", max_per_family=300)
    y = small["y"].to_numpy()
    rows = T.leave_family_out(
        y, small["split"].to_numpy(), small["family"].to_numpy(), M, p, fams, lambda _m: None
    )["gbm_tiny"]
    assert [r["family"] for r in rows] == sorted(fams)
    for r in rows:
        assert 0.9 <= r["auc"] <= 1.0
        assert 0.0 <= r["tpr_at_fpr_1e-3"] <= 1.0
    # The exported arrays reproduce scikit-learn's margins.
    clf = T.fit_sklearn(M, y, "gbm_tiny", 0)
    np.testing.assert_allclose(
        T.export_classifier(clf).margin(M), T.sklearn_margin(clf, M), rtol=1e-6, atol=1e-6
    )


def test_cli_domains_score(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from dnsieve.cli import app

    src = tmp_path / "names.txt"
    src.write_bytes(b"# comment\n\ngoogle.com\nxjwqkzrtbvpl.net extra\n\xff\xfe junk\npaypa1.com\n")
    out = tmp_path / "out.csv"
    res = CliRunner().invoke(app, ["domains", "score", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    df = pl.read_csv(out)
    assert df["domain"].to_list() == ["google.com", "xjwqkzrtbvpl.net", "\\xff\\xfe", "paypa1.com"]
    assert {"registered_domain", "dga_probability", "entropy", "lookalike_brand"} <= set(df.columns)
    assert df["dga_probability"][1] > 0.9 > df["dga_probability"][0]
    assert df["lookalike_brand"][3] == "paypal.com"
    res = CliRunner().invoke(app, ["domains", "score", "-"], input="wikipedia.org\n")
    assert res.exit_code == 0 and "wikipedia.org" in res.output
