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
data (liblinear with a fixed seed).

Leave-family-out (``--evaluate``): for each canonical family F, fit on the
benign *fit* split plus every other family, then score F (all its rows) against
the benign *test* split; report AUC and the TPR at FPR = 1e-3.
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
import polars as pl
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from dnsieve import lexical
from dnsieve.detectors.dga import DgaModel, registered_labels

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
DEFAULT_OUT = REPO / "src" / "dnsieve" / "data"

FAMILY_ALIASES = {"new_goz": "newgoz"}
TEST_FPR = 1e-3


@dataclass
class Params:
    n_min: int = 1
    n_max: int = 4
    n_bits: int = 18
    C: float = 1.0
    max_per_family: int = 2000
    seed: int = 20240301


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


def hand_features(
    labels: pl.Series, table: npt.NDArray[np.float64], max_len: int
) -> npt.NDArray[np.float64]:
    f = lexical.feature_arrays(labels, table, max_len)
    return np.stack([f[k].astype(np.float64) for k in lexical.FEATURE_NAMES], axis=1)


def ngram_matrix(labels: pl.Series, p: Params, max_len: int) -> sp.csr_matrix:
    """Hashed n-gram counts / sqrt(n-grams), exactly as DgaModel.margin computes them."""
    n = labels.len()
    rows_l, cols_l, vals_l = [], [], []
    for rows, enc in lexical.iter_encoded(labels, max_len):
        idx, valid = lexical.hashed_ngrams(enc, p.n_min, p.n_max, p.n_bits)
        nvalid = valid.sum(axis=1)
        scale = 1.0 / np.sqrt(np.maximum(nvalid, 1))
        r = np.broadcast_to(rows[:, None], idx.shape)[valid]
        rows_l.append(r)
        cols_l.append(idx[valid])
        vals_l.append(np.broadcast_to(scale[:, None], idx.shape)[valid])
    m = sp.csr_matrix(
        (np.concatenate(vals_l), (np.concatenate(rows_l), np.concatenate(cols_l))),
        shape=(n, 1 << p.n_bits),
        dtype=np.float64,
    )
    m.sum_duplicates()
    return m


def cap_per_family(
    corpus: pl.DataFrame, mask: npt.NDArray[np.bool_], cap: int, seed: int
) -> npt.NDArray[np.bool_]:
    """Limit each DGA family to ``cap`` training rows (random, seeded)."""
    out = mask.copy()
    rng = np.random.default_rng(seed)
    fam = corpus["family"].to_numpy()
    y = corpus["y"].to_numpy()
    for f in np.unique(fam[(y == 1) & mask]):
        idx = np.flatnonzero((fam == f) & mask)
        if idx.size > cap:
            drop = rng.choice(idx, size=idx.size - cap, replace=False)
            out[drop] = False
    return out


def fit_linear(
    Xn: sp.csr_matrix,
    F: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    train: npt.NDArray[np.bool_],
    p: Params,
) -> tuple[LogisticRegression, npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    mu = F[train].mean(axis=0)
    sd = F[train].std(axis=0)
    sd = np.where(sd > 1e-9, sd, 1.0)
    X = sp.hstack([Xn[train], sp.csr_matrix((F[train] - mu) / sd)], format="csr")
    clf = LogisticRegression(
        C=p.C, solver="liblinear", class_weight="balanced", max_iter=200, random_state=p.seed
    )
    clf.fit(X, y[train])
    return clf, mu, sd


def margins(
    clf: LogisticRegression, mu: Any, sd: Any, Xn: sp.csr_matrix, F: Any, rows: Any
) -> npt.NDArray[np.float64]:
    X = sp.hstack([Xn[rows], sp.csr_matrix((F[rows] - mu) / sd)], format="csr")
    return clf.decision_function(X)  # type: ignore[no-any-return]


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


def _fold(f: str) -> dict[str, Any]:
    corpus, Xn, F, p = _SHARED["corpus"], _SHARED["Xn"], _SHARED["F"], _SHARED["p"]
    y = corpus["y"].to_numpy()
    split = corpus["split"].to_numpy()
    fam = corpus["family"].to_numpy()
    benign_fit = (y == 0) & (split != "test")
    benign_test = np.flatnonzero((y == 0) & (split == "test"))
    t0 = time.perf_counter()
    train = benign_fit | ((y == 1) & (fam != f))
    train = cap_per_family(corpus, train, p.max_per_family, p.seed)
    clf, mu, sd = fit_linear(Xn, F, y, train, p)
    held = np.flatnonzero(fam == f)
    s_pos = margins(clf, mu, sd, Xn, F, held)
    s_neg = margins(clf, mu, sd, Xn, F, benign_test)
    auc = roc_auc_score(np.r_[np.ones(held.size), np.zeros(benign_test.size)], np.r_[s_pos, s_neg])
    return {
        "family": f,
        "n": int(held.size),
        "auc": float(auc),
        "tpr_at_fpr_1e-3": tpr_at_fpr(s_pos, s_neg),
        "benign_test": int(benign_test.size),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def leave_family_out(
    corpus: pl.DataFrame,
    Xn: sp.csr_matrix,
    F: Any,
    p: Params,
    families: list[str] | None,
    log: Any,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """One fold per canonical family (optionally in ``jobs`` forked processes)."""
    y = corpus["y"].to_numpy()
    fam = corpus["family"].to_numpy()
    fams = sorted(set(fam[y == 1]))
    if families:
        fams = [f for f in fams if f in set(families)]
    _SHARED.update(corpus=corpus, Xn=Xn, F=F, p=p)
    out = []

    def show(row: dict[str, Any]) -> None:
        log(
            f"  {row['family']:24s} n={row['n']:5d} AUC={row['auc']:.4f} TPR@1e-3={row['tpr_at_fpr_1e-3']:.3f} ({row['seconds']}s)"
        )

    if jobs > 1:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(jobs) as pool:
            for row in pool.imap(_fold, fams):
                show(row)
                out.append(row)
    else:
        for f in fams:
            row = _fold(f)
            show(row)
            out.append(row)
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
    ap.add_argument("--jobs", type=int, default=1, help="parallel leave-family-out folds")
    ap.add_argument("--C", type=float, default=Params.C)
    ap.add_argument("--n-bits", type=int, default=Params.n_bits)
    ap.add_argument("--max-per-family", type=int, default=Params.max_per_family)
    args = ap.parse_args(argv)
    p = Params(C=args.C, n_bits=args.n_bits, max_per_family=args.max_per_family)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

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
    table = lexical.bigram_table_from_labels(benign_fit_labels)
    labels = corpus["label"]
    F = hand_features(labels, table, max_len)
    Xn = ngram_matrix(labels, p, max_len)
    log(
        f"features: {Xn.shape[1]:,} n-gram buckets, {Xn.nnz:,} non-zeros, {F.shape[1]} hand features"
    )

    lofo: list[dict[str, Any]] = []
    if args.evaluate:
        fams = [f.strip() for f in args.families.split(",") if f.strip()] or None
        log("leave-family-out:")
        lofo = leave_family_out(corpus, Xn, F, p, fams, log, args.jobs)
        aucs = np.array([r["auc"] for r in lofo])
        log(f"median AUC over {aucs.size} held-out families: {np.median(aucs):.4f}")
        if args.report:
            args.report.write_text(
                json.dumps(
                    {"params": p.__dict__, "families": lofo, "median_auc": float(np.median(aucs))},
                    indent=2,
                )
                + "\n"
            )

    # Final model: fit split (families capped), Platt on cal split, metrics on test split.
    fit = cap_per_family(corpus, split == "fit", p.max_per_family, p.seed)
    clf, mu, sd = fit_linear(Xn, F, y, fit, p)
    cal = np.flatnonzero(split == "cal")
    a, b = platt(margins(clf, mu, sd, Xn, F, cal), y[cal])
    coef = clf.coef_[0]
    nb = 1 << p.n_bits
    model = DgaModel(
        ngram_weights=coef[:nb].astype(np.float32),
        feature_names=lexical.FEATURE_NAMES,
        feature_mean=mu,
        feature_scale=sd,
        feature_coef=coef[nb:].astype(np.float64),
        intercept=float(clf.intercept_[0]),
        calib_a=a,
        calib_b=b,
        bigram_table=table,
        n_min=p.n_min,
        n_max=p.n_max,
        n_bits=p.n_bits,
        max_len=max_len,
    )
    test = split == "test"
    # Score through the shipped code path (float16 weights as saved) to report what users get.
    tmp = args.out / ".dga_model_check.npz"
    args.out.mkdir(parents=True, exist_ok=True)
    model.save(tmp)
    shipped = DgaModel.load(tmp)
    tmp.unlink()
    prob = shipped.predict_proba(labels)
    pt, yt = prob[test], y[test]
    fam = corpus["family"].to_numpy()
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
        .sort("n", descending=True)
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
            "median_auc": float(np.median([r["auc"] for r in lofo])),
            "families": lofo,
        }
    if not args.no_save:
        path = args.out / "dga_model.npz"
        model.save(path)
        meta = {
            "model": "hashed char n-gram + lexical features, logistic regression (liblinear, L2), Platt-calibrated",
            "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "trained_by": "scripts/train_dga.py",
            "scikit_learn": sklearn.__version__,
            "params": p.__dict__,
            "feature_names": list(lexical.FEATURE_NAMES),
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
