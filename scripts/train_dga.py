#!/usr/bin/env python
"""Train (and evaluate) the shipped DGA model from the shared corpus.

    .venv/bin/python scripts/train_dga.py                 # train, write src/dnsieve/data/dga_model.*
    .venv/bin/python scripts/train_dga.py --evaluate      # also leave-family-out, table on stdout
    .venv/bin/python scripts/train_dga.py --evaluate --no-save --families pykspa,banjori

Data (``--data``, default ../shared/data):

* positives: ``domains/dga/*.csv`` (family, domain).  Family names are
  canonicalised (``new_goz`` → ``newgoz``) so a family held out is held out
  from both sources.
* negatives: ``domains/benign/*`` (the Tranco-like top 50k and the OpenDNS top
  and random lists) and the ``legit`` rows of ``domains/threatfox/{train,dev}.csv``.
* ThreatFox ``malicious`` rows are *not* training positives: they are mostly
  hand-registered or compromised sites (phishing, RAT hosts, stealers), not
  generated names, and teaching the model that "small-business-looking" means
  malicious would flood real traffic with false positives.  They are scored
  for information only (per-class share flagged).

Every domain is reduced to the label left of its ICANN public suffix (the
scored unit, see :mod:`dnsieve.detectors.dga`) and de-duplicated.  Rows are
split by a stable hash of the label: 70 % fit, 10 % calibration, 20 % test,
so a label never sits on both sides.  Everything is deterministic given the
data (fixed seeds).

Model: benign character tables (bigram, smoothed trigram Markov model, known
4-/5-grams; fitted on the benign *fit* split only) turn each label into
:data:`dnsieve.detectors.dga.MODEL_FEATURES`; a classifier (``--variant``:
gradient-boosted trees or a small MLP, scikit-learn at training time only) is
exported as NumPy arrays and Platt-calibrated on the *cal* split.

Leave-family-out (``--evaluate``): for each canonical family F, fit on the
benign non-test rows plus every other family, then score F (all its rows)
against the benign *test* split; report AUC and the TPR at FPR = 1e-3.
``--variants a,b`` evaluates several classifiers on the same folds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import sklearn
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.neural_network import MLPClassifier

try:
    import polars as pl

    from dnsieve import lexical
    from dnsieve.detectors.dga import (
        MODEL_FEATURES,
        BenignTables,
        DgaModel,
        Mlp,
        Trees,
        model_features,
        registered_labels,
    )
except ImportError:  # pragma: no cover - --evaluate-features on a bare NumPy/scikit-learn box
    if "--evaluate-features" not in sys.argv:
        raise

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "src" / "dnsieve" / "data"

FAMILY_ALIASES = {"new_goz": "newgoz"}
TEST_FPR = 1e-3


@dataclass
class Params:
    variant: str = "g80d5"
    max_per_family: int = 2000
    seed: int = 20240301


#: Classifier variants: name -> (kind, options).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "gbm": ("trees", {"max_iter": 200, "max_depth": 5, "learning_rate": 0.1}),
    "gbm_small": ("trees", {"max_iter": 100, "max_depth": 4, "learning_rate": 0.15}),
    "gbm_tiny": ("trees", {"max_iter": 60, "max_depth": 4, "learning_rate": 0.25}),
    "g80d5": ("trees", {"max_iter": 80, "max_depth": 5, "learning_rate": 0.2}),
    "g60d6": ("trees", {"max_iter": 60, "max_depth": 6, "learning_rate": 0.25}),
    "g100d4": ("trees", {"max_iter": 100, "max_depth": 4, "learning_rate": 0.2}),
    "g50d5": ("trees", {"max_iter": 50, "max_depth": 5, "learning_rate": 0.3}),
    "g40d6": ("trees", {"max_iter": 40, "max_depth": 6, "learning_rate": 0.3}),
    "gbm_big": ("trees", {"max_iter": 300, "max_leaf_nodes": 31, "learning_rate": 0.1}),
    "mlp": ("mlp", {"hidden": 32, "max_iter": 80}),
    "mlp64": ("mlp", {"hidden": 64, "max_iter": 80}),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _bucket(label: str) -> int:
    return int.from_bytes(hashlib.blake2b(label.encode(), digest_size=8).digest(), "big") % 100


def load_corpus(data: Path) -> tuple[pl.DataFrame, pl.DataFrame, list[Path]]:
    """(training corpus, ThreatFox malicious for information, files used)."""
    files: list[Path] = []
    dga_parts = []
    for f in sorted((data / "domains" / "dga").glob("*.csv")):
        files.append(f)
        d = pl.read_csv(f, schema_overrides={"family": pl.String, "domain": pl.String})
        dga_parts.append(
            d.select(pl.col("domain"), pl.col("family"), pl.lit(f.stem).alias("source"))
        )
    dga = pl.concat(dga_parts).with_columns(
        pl.col("family").str.to_lowercase().replace(FAMILY_ALIASES), pl.lit(1).alias("y")
    )
    ben_parts = []
    bdir = data / "domains" / "benign"
    for f in sorted(bdir.iterdir()):
        if f.suffix == ".csv":
            d = pl.read_csv(
                f,
                has_header=False,
                new_columns=["rank", "domain"],
                schema_overrides={"domain": pl.String},
            )
        elif f.suffix == ".txt":
            d = pl.read_csv(
                f, has_header=False, new_columns=["domain"], schema_overrides={"domain": pl.String}
            )
        else:
            continue
        files.append(f)
        ben_parts.append(d.select(pl.col("domain"), pl.lit(f.stem).alias("source")))
    tf_mal = []
    for f in sorted((data / "domains" / "threatfox").glob("*.csv")):
        files.append(f)
        d = pl.read_csv(
            f, schema_overrides={"input": pl.String, "class": pl.String, "label": pl.String}
        )
        ben_parts.append(
            d.filter(pl.col("label") == "legit").select(
                pl.col("input").alias("domain"), pl.lit(f"threatfox-{f.stem}-legit").alias("source")
            )
        )
        tf_mal.append(
            d.filter(pl.col("label") == "malicious").select(
                pl.col("input").alias("domain"), pl.col("class")
            )
        )
    benign = pl.concat(ben_parts).with_columns(
        pl.lit("benign").alias("family"), pl.lit(0).alias("y")
    )
    allrows = pl.concat(
        [
            dga.select("domain", "family", "source", "y"),
            benign.select("domain", "family", "source", "y"),
        ]
    )
    allrows = allrows.with_columns(
        pl.col("domain").str.strip_chars().str.to_lowercase().str.strip_chars_end(".")
    )
    allrows = allrows.filter(pl.col("domain").str.len_bytes() > 0)
    allrows = pl.concat([allrows, registered_labels(allrows["domain"])], how="horizontal")
    allrows = allrows.filter(pl.col("label").str.len_bytes() > 0)
    # One row per (label, family); drop labels that are both benign and generated.
    allrows = allrows.unique(["label", "family"], keep="first", maintain_order=True)
    conflict = (
        allrows.group_by("label")
        .agg(pl.col("y").n_unique().alias("k"))
        .filter(pl.col("k") > 1)["label"]
    )
    allrows = allrows.filter(~pl.col("label").is_in(conflict.implode()))
    # Benign duplicates across lists: keep one.
    allrows = pl.concat(
        [
            allrows.filter(pl.col("y") == 1),
            allrows.filter(pl.col("y") == 0).unique("label", keep="first", maintain_order=True),
        ]
    )
    allrows = allrows.with_columns(
        pl.col("label").map_elements(_bucket, return_dtype=pl.Int64).alias("bucket")
    )
    split = (
        pl.when(pl.col("bucket") < 20)
        .then(pl.lit("test"))
        .when(pl.col("bucket") < 30)
        .then(pl.lit("cal"))
        .otherwise(pl.lit("fit"))
    )
    allrows = allrows.with_columns(split.alias("split"))
    mal = pl.concat(tf_mal)
    mal = pl.concat([mal, registered_labels(mal["domain"])], how="horizontal")
    return allrows, mal, files


def cap_per_family(
    fam: npt.NDArray[Any],
    y: npt.NDArray[np.int64],
    mask: npt.NDArray[np.bool_],
    cap: int,
    seed: int,
) -> npt.NDArray[np.bool_]:
    """Limit each DGA family to ``cap`` training rows (random, seeded)."""
    out = mask.copy()
    rng = np.random.default_rng(seed)
    for f in np.unique(fam[(y == 1) & mask]):
        idx = np.flatnonzero((fam == f) & mask)
        if idx.size > cap:
            drop = rng.choice(idx, size=idx.size - cap, replace=False)
            out[drop] = False
    return out


def export_trees(clf: HistGradientBoostingClassifier) -> Trees:
    """Pack a fitted binary HistGradientBoostingClassifier into :class:`Trees` arrays."""
    trees = [pred[0].nodes for pred in clf._predictors]
    width = max(t.shape[0] for t in trees)
    n = len(trees)
    feat = np.zeros((n, width), np.int16)
    thr = np.full((n, width), np.inf)
    left = np.tile(np.arange(width, dtype=np.int16), (n, 1))
    right = left.copy()
    value = np.zeros((n, width), np.float32)
    depth = 0
    for i, nodes in enumerate(trees):
        k = nodes.shape[0]
        leaf = nodes["is_leaf"].astype(bool)
        inner = np.flatnonzero(~leaf)
        feat[i, inner] = nodes["feature_idx"][inner]
        thr[i, inner] = nodes["num_threshold"][inner]
        left[i, inner] = nodes["left"][inner]
        right[i, inner] = nodes["right"][inner]
        value[i, :k] = np.where(leaf, nodes["value"], 0.0)
        depth = max(depth, int(nodes["depth"].max()))
    return Trees(feat, thr, left, right, value, depth, float(np.ravel(clf._baseline_prediction)[0]))


def fit_sklearn(
    Z: npt.NDArray[np.float64], y: npt.NDArray[np.int64], variant: str, seed: int
) -> HistGradientBoostingClassifier | MLPClassifier:
    """Fit one classifier variant on standardised features, class-balanced."""
    kind, opts = VARIANTS[variant]
    w = np.where(y == 1, 0.5 / max(1, y.sum()), 0.5 / max(1, (1 - y).sum())) * y.size
    if kind == "trees":
        clf = HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **opts)
        return clf.fit(Z, y, sample_weight=w)
    mlp = MLPClassifier(
        hidden_layer_sizes=(opts["hidden"],),
        max_iter=opts["max_iter"],
        random_state=seed,
        alpha=1e-4,
    )
    return mlp.fit(Z, y, sample_weight=w)


def sklearn_margin(
    clf: HistGradientBoostingClassifier | MLPClassifier, Z: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """Log-odds from the scikit-learn estimator (what the exported arrays compute)."""
    if isinstance(clf, HistGradientBoostingClassifier):
        return clf.decision_function(Z)
    p = np.clip(clf.predict_proba(Z)[:, 1], 1e-15, 1 - 1e-15)
    return np.log(p / (1 - p))


def export_classifier(clf: HistGradientBoostingClassifier | MLPClassifier) -> Trees | Mlp:
    """The NumPy-only classifier shipped in the artifact."""
    if isinstance(clf, HistGradientBoostingClassifier):
        return export_trees(clf)
    return Mlp(
        w1=clf.coefs_[0].astype(np.float32),
        b1=clf.intercepts_[0].astype(np.float32),
        w2=clf.coefs_[1][:, 0].astype(np.float32),
        b2=float(clf.intercepts_[1][0]),
    )


def standardise(
    M: npt.NDArray[np.float64], train: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    mu = M[train].mean(axis=0)
    sd = M[train].std(axis=0)
    return mu, np.where(sd > 1e-9, sd, 1.0)


def tpr_at_fpr(
    pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64], fpr: float = TEST_FPR
) -> float:
    """Share of positives scoring above the benign (1 - fpr) quantile."""
    thr = np.quantile(neg, 1.0 - fpr, method="higher")
    return float(np.mean(pos > thr))


def platt(m: npt.NDArray[np.float64], y: npt.NDArray[np.int64]) -> tuple[float, float]:
    """Platt scaling on a held-out split, classes weighted to even prior odds."""
    lr = LogisticRegression(C=1e6, solver="lbfgs", class_weight="balanced", max_iter=1000)
    lr.fit(m.reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def ece(p: npt.NDArray[np.float64], y: npt.NDArray[np.int64], bins: int = 10) -> float:
    """Expected calibration error with equal-width bins (class-balanced weights)."""
    w = np.where(y == 1, 0.5 / max(1, (y == 1).sum()), 0.5 / max(1, (y == 0).sum()))
    edges = np.linspace(0, 1, bins + 1)
    b = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    total = 0.0
    for i in range(bins):
        m = b == i
        if m.any():
            total += w[m].sum() * abs(
                np.average(p[m], weights=w[m]) - np.average(y[m], weights=w[m])
            )
    return float(total)


_SHARED: dict[str, Any] = {}


def _fold(f: str) -> list[dict[str, Any]]:
    y, split, fam = _SHARED["y"], _SHARED["split"], _SHARED["fam"]
    M, p, variants = _SHARED["M"], _SHARED["p"], _SHARED["variants"]
    benign_fit = (y == 0) & (split != "test")
    benign_test = np.flatnonzero((y == 0) & (split == "test"))
    train = benign_fit | ((y == 1) & (fam != f))
    train = cap_per_family(fam, y, train, p.max_per_family, p.seed)
    held = np.flatnonzero(fam == f)
    mu, sd = standardise(M, train)
    Z = (M - mu) / sd
    rows = []
    for v in variants:
        t0 = time.perf_counter()
        clf = fit_sklearn(Z[train], y[train], v, p.seed)
        s_pos = sklearn_margin(clf, Z[held])
        s_neg = sklearn_margin(clf, Z[benign_test])
        auc = roc_auc_score(
            np.r_[np.ones(held.size), np.zeros(benign_test.size)], np.r_[s_pos, s_neg]
        )
        rows.append(
            {
                "variant": v,
                "family": f,
                "n": int(held.size),
                "auc": float(auc),
                "tpr_at_fpr_1e-3": tpr_at_fpr(s_pos, s_neg),
                "benign_test": int(benign_test.size),
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
    return rows


def leave_family_out(
    y: npt.NDArray[np.int64],
    split: npt.NDArray[Any],
    fam: npt.NDArray[Any],
    M: npt.NDArray[np.float64],
    p: Params,
    families: list[str] | None,
    log: Any,
    jobs: int = 1,
    variants: list[str] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """One fold per canonical family (optionally in ``jobs`` forked processes).

    Returns ``{variant: [row per family]}``.
    """
    fams = sorted(set(fam[y == 1]))
    if families:
        fams = [f for f in fams if f in set(families)]
    variants = variants or [p.variant]
    _SHARED.update(y=y, split=split, fam=fam, M=M, p=p, variants=variants)
    out: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}

    def show(rows: list[dict[str, Any]]) -> None:
        for row in rows:
            log(
                f"  {row['variant']:10s} {row['family']:24s} n={row['n']:5d} AUC={row['auc']:.4f} "
                f"TPR@1e-3={row['tpr_at_fpr_1e-3']:.3f} ({row['seconds']}s)"
            )
            out[row["variant"]].append(row)

    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs) as pool:
            for rows in pool.imap(_fold, fams):
                show(rows)
    else:
        for f in fams:
            show(_fold(f))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--evaluate", action="store_true", help="run leave-family-out evaluation")
    ap.add_argument(
        "--families", default="", help="comma-separated families for --evaluate (default: all)"
    )
    ap.add_argument("--no-save", action="store_true", help="do not write the model")
    ap.add_argument("--report", type=Path, help="write the leave-family-out results as JSON here")
    ap.add_argument("--lofo-from", type=Path, help="reuse a --report file instead of --evaluate")
    ap.add_argument("--jobs", type=int, default=1, help="parallel leave-family-out folds")
    ap.add_argument("--variant", default=Params.variant, choices=sorted(VARIANTS))
    ap.add_argument(
        "--variants", default="", help="comma-separated variants to compare in --evaluate"
    )
    ap.add_argument("--max-per-family", type=int, default=Params.max_per_family)
    ap.add_argument(
        "--dump-features", type=Path, help="write labels' features and classes (.npz) and stop"
    )
    ap.add_argument(
        "--evaluate-features",
        type=Path,
        help="leave-family-out from a --dump-features file only (needs NumPy and scikit-learn, "
        "not dnsieve), e.g. on a larger machine; writes --report",
    )
    args = ap.parse_args(argv)
    p = Params(variant=args.variant, max_per_family=args.max_per_family)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    def evaluate(y: Any, split: Any, fam: Any, M: Any) -> list[dict[str, Any]]:
        fams = [f.strip() for f in args.families.split(",") if f.strip()] or None
        variants = [v.strip() for v in args.variants.split(",") if v.strip()] or [p.variant]
        log("leave-family-out:")
        res = leave_family_out(y, split, fam, M, p, fams, log, args.jobs, variants)
        summary = {}
        for v, rows in res.items():
            aucs = np.array([r["auc"] for r in rows])
            summary[v] = float(np.median(aucs))
            log(f"{v}: median AUC over {aucs.size} held-out families: {np.median(aucs):.4f}")
        if args.report:
            args.report.write_text(
                json.dumps(
                    {
                        "params": p.__dict__,
                        "scikit_learn": sklearn.__version__,
                        "median_auc": summary,
                        "results": res,
                    },
                    indent=2,
                )
                + "\n"
            )
        return res.get(p.variant, [])

    if args.evaluate_features:
        with np.load(args.evaluate_features, allow_pickle=False) as z:
            evaluate(z["y"], z["split"], z["family"], z["M"])
        return 0

    t0 = time.perf_counter()
    corpus, mal, files = load_corpus(args.data)
    y = corpus["y"].to_numpy().astype(np.int64)
    split = corpus["split"].to_numpy()
    log(
        f"corpus: {corpus.height:,} labels ({int(y.sum()):,} generated in {corpus.filter(pl.col('y') == 1)['family'].n_unique()} families, "
        f"{int((y == 0).sum()):,} benign) in {time.perf_counter() - t0:.1f}s"
    )
    max_len = lexical.DEFAULT_MAX_LEN
    benign_fit_labels = corpus.filter((pl.col("y") == 0) & (pl.col("split") == "fit"))["label"]
    tables = BenignTables.fit(benign_fit_labels)
    labels = corpus["label"]
    _feats, M = model_features(labels, tables, max_len)
    log(
        f"features: {M.shape[1]} per label; tables: {tables.known4.size:,} known 4-grams, "
        f"{tables.known5.size:,} known 5-grams ({time.perf_counter() - t0:.1f}s)"
    )

    fam = corpus["family"].to_numpy().astype(str)
    if args.dump_features:
        np.savez_compressed(args.dump_features, M=M, y=y, split=split.astype(str), family=fam)
        log(f"wrote {args.dump_features}")
        return 0
    lofo: list[dict[str, Any]] = []
    if args.evaluate:
        lofo = evaluate(y, split, fam, M)
    elif args.lofo_from:
        lofo = json.loads(args.lofo_from.read_text())["results"][p.variant]

    # Final model: fit split (families capped), Platt on cal split, metrics on test split.
    fit = cap_per_family(fam, y, split == "fit", p.max_per_family, p.seed)
    mu, sd = standardise(M, fit)
    Z = (M - mu) / sd
    clf = export_classifier(fit_sklearn(Z[fit], y[fit], p.variant, p.seed))
    cal = np.flatnonzero(split == "cal")
    a, b = platt(clf.margin(Z[cal]), y[cal])
    model = DgaModel(
        tables=tables,
        feature_mean=mu,
        feature_scale=sd,
        classifier=clf,
        calib_a=a,
        calib_b=b,
        max_len=max_len,
    )
    test = split == "test"
    # Score through the shipped code path (arrays as saved) to report what users get.
    tmp = args.out / ".dga_model_check.npz"
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(tmp)
    shipped = DgaModel.load(tmp)
    tmp.unlink()
    prob = shipped.predict_proba(labels)
    pt, yt = prob[test], y[test]
    per_family = {}
    for f in sorted(set(fam[(y == 1) & test])):
        m = test & (fam == f)
        per_family[f] = {
            "n": int(m.sum()),
            "recall_at_0.5": round(float(np.mean(prob[m] >= 0.5)), 4),
        }
    mal_p = shipped.predict_proba(mal["label"])
    mal_df = mal.with_columns(p=pl.Series(mal_p))
    tf_classes = (
        mal_df.group_by("class")
        .agg(n=pl.len(), flagged=(pl.col("p") >= 0.5).mean())
        .sort(["n", "class"], descending=[True, False])
        .head(20)
    )
    metrics = {
        "test_auc": float(roc_auc_score(yt, pt)),
        "test_tpr_at_fpr_1e-3": tpr_at_fpr(pt[yt == 1], pt[yt == 0]),
        "test_benign_fpr_at_0.5": float(np.mean(pt[yt == 0] >= 0.5)),
        "test_dga_recall_at_0.5": float(np.mean(pt[yt == 1] >= 0.5)),
        "test_brier_balanced": float(
            brier_score_loss(
                yt, pt, sample_weight=np.where(yt == 1, 0.5 / yt.sum(), 0.5 / (1 - yt).sum())
            )
        ),
        "test_ece_balanced": ece(pt, yt),
        "test_rows": {"generated": int(yt.sum()), "benign": int((1 - yt).sum())},
        "per_family_test_recall": per_family,
        "threatfox_malicious_flagged_at_0.5": {
            "overall": round(float(np.mean(mal_p >= 0.5)), 4),
            "top_classes": {
                r["class"]: {"n": r["n"], "flagged": round(r["flagged"], 4)}
                for r in tf_classes.iter_rows(named=True)
            },
        },
    }
    log(json.dumps({k: v for k, v in metrics.items() if k.startswith("test_")}, indent=1))
    if lofo:
        metrics["leave_family_out"] = {
            "variant": p.variant,
            "median_auc": float(np.median([r["auc"] for r in lofo])),
            "families": lofo,
        }
    if not args.no_save:
        path = args.out / "dga_model.npz"
        model.save(path)
        kind, opts = VARIANTS[p.variant]
        meta = {
            "model": (
                f"{kind} ({p.variant}: {opts}) over {len(MODEL_FEATURES)} lexical and "
                "benign-character-model features, Platt-calibrated; NumPy inference"
            ),
            "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trained_by": "scripts/train_dga.py",
            "scikit_learn": sklearn.__version__,
            "params": p.__dict__,
            "feature_names": list(MODEL_FEATURES),
            "calibration": {
                "method": "platt",
                "a": a,
                "b": b,
                "prior": "class-balanced (even odds)",
            },
            "data": [
                {
                    "path": str(f.relative_to(args.data)),
                    "sha256": sha256(f),
                    "bytes": f.stat().st_size,
                }
                for f in files
            ],
            "rows": {
                "labels": corpus.height,
                "generated": int(y.sum()),
                "benign": int((y == 0).sum()),
                "families": sorted(set(fam[y == 1])),
                "split": {s: int((split == s).sum()) for s in ("fit", "cal", "test")},
                "fit_rows_after_family_cap": int(fit.sum()),
            },
            "metrics": metrics,
            "artifact_bytes": path.stat().st_size,
        }
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=False) + "\n")
        log(f"wrote {path} ({path.stat().st_size:,} bytes) and {path.with_suffix('.json').name}")
    log(f"done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
