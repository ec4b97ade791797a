"""DGA detection: a lexical classifier over registered-domain labels (ARCHITECTURE §5).

**What is scored.**  The label left of the public suffix, from the *ICANN*
section of the Public Suffix List: ``d1x2y3.cloudfront.net`` and
``ec2-1-2-3-4.compute-1.amazonaws.com`` are scored as ``cloudfront`` and
``amazonaws``, so CDN and cloud host names (random by design, but chosen by
the provider, not by malware) do not look generated.  Domain-generation
algorithms register whole domains, so their randomness lives in that label.

**The model** (:class:`DgaModel`) is linear: hashed character 1–4-grams of
``^label$`` (2**18 buckets, scaled by 1/sqrt(number of n-grams)) plus the
standardised hand features of :mod:`dnsieve.lexical`, fitted by logistic
regression and calibrated by Platt scaling on a held-out split.  Prediction is
pure NumPy (no scikit-learn at run time): a gather of n-gram weights, a dot
product and a sigmoid; the artifact is a ``.npz`` of arrays (no pickle) with
its training metadata in ``dga_model.json`` beside it.  ``scripts/train_dga.py``
rebuilds both from ``../shared/data``; docs/detectors-lexical.md reports the
leave-family-out evaluation.

The probability is calibrated on a class-balanced held-out set: read it as
P(generated | label) at even prior odds, not as a base rate in real traffic.

**The detector** (:class:`DgaDetector`, name ``dga``) scores every registered
domain seen in a window and emits those whose score reaches
``min_probability`` (0.9).  Labels shorter than ``min_label_length`` (6) are
not scored: two- to five-letter labels (``uh.edu``, ``gvt2.com``) carry too
little lexical evidence and were the bulk of false positives on real traffic.  The score adds per-client context to the lexical
probability: a bot tries many generated names, most of which fail, so for
each client we count the distinct DGA-like registered domains (probability
>= ``dga_like``) that answered NXDOMAIN in the window, take the largest such
count among the domain's clients, and shift the log-odds::

    score = sigmoid(logit(p) + context_weight * log1p(client_dga_nxdomains))

A lone domain keeps ``score = p``; a generated-looking name queried by a
host that is cycling through 30 failed generated names rises a notch, while
a readable domain stays low whoever asks.  Popular domains (the shipped
reference list) and punycode labels (left to the ``lookalike`` detector) are
not scored.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl

from dnsieve import lexical
from dnsieve.detectors import register
from dnsieve.detectors.base import (
    DetectContext,
    Detector,
    EntityType,
    InputKind,
    anomaly_frame,
    empty_anomalies,
)
from dnsieve.domains import DomainSplitter

__all__ = [
    "DgaDetector",
    "DgaModel",
    "default_model",
    "registered_labels",
    "score_names",
]

MODEL_FILE = "dga_model.npz"
METADATA_FILE = "dga_model.json"

_ICANN = DomainSplitter(private_suffixes=False)


@dataclass(frozen=True)
class DgaModel:
    """A trained linear DGA classifier, evaluated with NumPy only.

    ``margin = intercept + sum(ngram_weights[h]) / sqrt(n_ngrams) + coef · z``
    where ``h`` are the hashed n-gram buckets of the label and ``z`` its
    standardised lexical features; ``p = sigmoid(calib_a * margin + calib_b)``.
    """

    ngram_weights: npt.NDArray[np.float32]
    feature_names: tuple[str, ...]
    feature_mean: npt.NDArray[np.float64]
    feature_scale: npt.NDArray[np.float64]
    feature_coef: npt.NDArray[np.float64]
    intercept: float
    calib_a: float
    calib_b: float
    bigram_table: npt.NDArray[np.float64]
    n_min: int = 1
    n_max: int = 4
    n_bits: int = 18
    max_len: int = lexical.DEFAULT_MAX_LEN
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def margin(self, labels: lexical.LabelsLike) -> npt.NDArray[np.float64]:
        """Uncalibrated log-odds of each label being generated."""
        arr = lexical._to_arrow(labels)
        out = np.zeros(len(arr), dtype=np.float64)
        names = self.feature_names
        for rows, enc in lexical.iter_encoded(arr, self.max_len):
            idx, valid = lexical.hashed_ngrams(enc, self.n_min, self.n_max, self.n_bits)
            w = np.where(valid, self.ngram_weights[idx], 0.0).sum(axis=1)
            nvalid = valid.sum(axis=1)
            ngram_part = w / np.sqrt(np.maximum(nvalid, 1))
            feats = lexical.encoded_features(enc, self.bigram_table)
            z = np.stack([feats[k].astype(np.float64) for k in names], axis=1)
            z = (z - self.feature_mean) / self.feature_scale
            out[rows] = self.intercept + ngram_part + z @ self.feature_coef
        return out

    def predict_proba(self, labels: lexical.LabelsLike) -> npt.NDArray[np.float64]:
        """Calibrated probability that each label was generated by a DGA."""
        m = self.margin(labels)
        return _sigmoid(self.calib_a * m + self.calib_b)

    def save(self, path: Path) -> None:
        """Write the arrays to ``path`` (.npz, no pickled objects)."""
        np.savez_compressed(
            path,
            ngram_weights=self.ngram_weights.astype(np.float16),
            feature_names=np.array(self.feature_names, dtype="U32"),
            feature_mean=self.feature_mean,
            feature_scale=self.feature_scale,
            feature_coef=self.feature_coef,
            scalars=np.array([self.intercept, self.calib_a, self.calib_b], dtype=np.float64),
            ngram_params=np.array(
                [self.n_min, self.n_max, self.n_bits, self.max_len], dtype=np.int64
            ),
            bigram_logp=self.bigram_table.astype(np.float32),
        )

    @classmethod
    def load(cls, path: Path | str) -> DgaModel:
        """Read a model written by :meth:`save` (and its JSON metadata, if beside it)."""
        p = Path(path)
        with np.load(p, allow_pickle=False) as z:
            scalars = z["scalars"]
            n_min, n_max, n_bits, max_len = (int(x) for x in z["ngram_params"])
            meta_path = p.with_suffix(".json")
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            return cls(
                ngram_weights=np.asarray(z["ngram_weights"], dtype=np.float32),
                feature_names=tuple(str(x) for x in z["feature_names"]),
                feature_mean=np.asarray(z["feature_mean"], dtype=np.float64),
                feature_scale=np.asarray(z["feature_scale"], dtype=np.float64),
                feature_coef=np.asarray(z["feature_coef"], dtype=np.float64),
                intercept=float(scalars[0]),
                calib_a=float(scalars[1]),
                calib_b=float(scalars[2]),
                bigram_table=np.asarray(z["bigram_logp"], dtype=np.float64),
                n_min=n_min,
                n_max=n_max,
                n_bits=n_bits,
                max_len=max_len,
                metadata=meta,
            )


def _sigmoid(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _logit(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(q / (1 - q))


@lru_cache(maxsize=1)
def default_model() -> DgaModel:
    """The model shipped in ``dnsieve/data/dga_model.npz`` (loaded once)."""
    ref = resources.files("dnsieve") / "data" / MODEL_FILE
    with resources.as_file(ref) as path:
        return DgaModel.load(path)


def registered_labels(registered: pl.Series) -> pl.DataFrame:
    """The label scored for each name: the one left of its ICANN public suffix.

    Input is any name (a registered domain or a full query name); output has
    ``icann_domain`` (ICANN registered domain) and ``label``.  Names without
    a known suffix (``wpad``) are scored whole; a bare suffix (``co.uk``)
    by its first label.

    >>> registered_labels(pl.Series(["x1.cloudfront.net", "foo.github.io", "a.b.co.uk", "wpad"]))["label"].to_list()
    ['cloudfront', 'github', 'b', 'wpad']
    """
    names = registered.cast(pl.String).fill_null("")
    parts = _ICANN.split_series(names)
    rd = parts["registered_domain"].fill_null("")
    tld = parts["tld"].fill_null("")
    df = pl.DataFrame({"icann_domain": rd, "tld": tld})
    label = (
        pl.when(
            (pl.col("tld").str.len_bytes() > 0)
            & (pl.col("icann_domain").str.len_bytes() > pl.col("tld").str.len_bytes() + 1)
        )
        .then(
            pl.col("icann_domain").str.slice(
                0, pl.col("icann_domain").str.len_chars() - pl.col("tld").str.len_chars() - 1
            )
        )
        .otherwise(pl.col("icann_domain").str.split(".").list.first().fill_null(""))
    )
    return df.select(pl.col("icann_domain"), label.alias("label"))


def score_names(names: pl.Series | Sequence[str], model: DgaModel | None = None) -> pl.DataFrame:
    """DGA probability and lexical features for each name (query or registered domain).

    Returns one row per input: ``icann_domain``, ``label``,
    ``dga_probability`` and the :data:`dnsieve.lexical.FEATURE_NAMES`.
    Each distinct label is scored once.
    """
    m = model or default_model()
    s = names if isinstance(names, pl.Series) else pl.Series("name", list(names), dtype=pl.String)
    labels = registered_labels(s)
    uniq = labels["label"].unique(maintain_order=True)
    feats = lexical.feature_arrays(uniq, m.bigram_table, m.max_len)
    prob = m.predict_proba(uniq)
    table = pl.DataFrame(
        [pl.Series("label", uniq), pl.Series("dga_probability", prob)]
        + [pl.Series(k, feats[k]) for k in lexical.FEATURE_NAMES]
    )
    return labels.join(table, on="label", how="left", maintain_order="left")


@register
class DgaDetector(Detector):
    """Registered domains whose label looks algorithmically generated."""

    name: ClassVar[str] = "dga"
    entity_type: ClassVar[EntityType] = "domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = (
        "lexical DGA classifier over the registered-domain label, with the querying "
        "clients' count of failed generated-looking domains as context"
    )

    def __init__(
        self,
        min_probability: float = 0.9,
        min_label_length: int = 6,
        dga_like: float = 0.5,
        context_weight: float = 0.5,
        skip_popular: bool = True,
        skip_idn: bool = True,
        max_names: int = 5,
    ) -> None:
        self.min_probability = min_probability
        self.min_label_length = min_label_length
        self.dga_like = dga_like
        self.context_weight = context_weight
        self.skip_popular = skip_popular
        self.skip_idn = skip_idn
        self.max_names = max_names

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        from dnsieve.detectors.tunnel import scored_period, window_columns

        need = {"ts", "src_ip", "qname", "rcode", "registered_domain"}
        if data.height == 0 or not need <= set(data.columns):
            return empty_anomalies()
        ev = (
            scored_period(data.select(sorted(need)), ctx)
            .with_columns(rd=pl.col("registered_domain").fill_null(""))
            .filter(pl.col("rd").str.contains(r"\."))
        )
        if ev.height == 0:
            return empty_anomalies()
        ev = ev.with_columns(
            window_columns(ctx),
            nx=pl.col("rcode").fill_null("").str.to_uppercase() == "NXDOMAIN",
            client=pl.col("src_ip").fill_null(""),
        )
        domains = ev["rd"].unique().sort()
        scored = score_names(domains).with_columns(rd=domains)
        keep = pl.col("label").str.len_chars() >= self.min_label_length
        if self.skip_idn:
            keep = keep & ~pl.col("label").str.starts_with("xn--")
        if self.skip_popular:
            from dnsieve.detectors.lookalike import popular_domains

            pop = popular_domains()
            keep = keep & ~pl.col("rd").is_in(pop) & ~pl.col("icann_domain").is_in(pop)
        scored = scored.with_columns(
            dga_probability=pl.when(keep).then(pl.col("dga_probability")).otherwise(0.0)
        )
        ev = ev.join(scored.select("rd", "dga_probability"), on="rd", how="left")

        key = ["window_start", "window_end"]
        # Per (window, client): distinct DGA-like registered domains that failed.
        ctx_counts = (
            ev.filter(
                pl.col("nx")
                & (pl.col("dga_probability") >= self.dga_like)
                & (pl.col("client") != "")
            )
            .group_by([*key, "client"])
            .agg(client_dga_nx=pl.col("rd").n_unique())
        )
        cand = ev.filter(pl.col("dga_probability") > 0.0)
        per_client = (
            cand.select([*key, "rd", "client"])
            .unique()
            .join(ctx_counts, on=[*key, "client"], how="left")
            .with_columns(pl.col("client_dga_nx").fill_null(0))
            .group_by([*key, "rd"])
            .agg(
                client_dga_nxdomains=pl.col("client_dga_nx").max(),
                context_clients=pl.col("client")
                .filter(pl.col("client_dga_nx") > 0)
                .unique()
                .sort()
                .head(self.max_names),
            )
        )
        agg = (
            cand.group_by([*key, "rd"])
            .agg(
                dga_probability=pl.col("dga_probability").first(),
                queries=pl.len(),
                nxdomain=pl.col("nx").sum(),
                clients=pl.col("client").n_unique(),
                query_names=pl.col("qname").drop_nulls().unique().sort().head(self.max_names),
            )
            .join(per_client, on=[*key, "rd"], how="left")
        )
        if agg.height == 0:
            return empty_anomalies()
        p = agg["dga_probability"].to_numpy().astype(np.float64)
        n_ctx = agg["client_dga_nxdomains"].fill_null(0).to_numpy().astype(np.float64)
        # The domain's own failure does not count as context for itself.
        own = (agg["nxdomain"].to_numpy() > 0) & (p >= self.dga_like)
        n_ctx = np.maximum(n_ctx - own, 0.0)
        score = _sigmoid(_logit(p) + self.context_weight * np.log1p(n_ctx))
        agg = agg.with_columns(score=pl.Series(score), context=pl.Series(n_ctx))
        agg = agg.filter(pl.col("score") >= self.min_probability)
        if agg.height == 0:
            return empty_anomalies()
        feats = scored.select(["rd", "label", *lexical.FEATURE_NAMES])
        agg = agg.join(feats, on="rd", how="left")
        evidence = [_evidence(r) for r in agg.iter_rows(named=True)]
        return anomaly_frame(
            self.name,
            self.entity_type,
            agg["rd"],
            agg["window_start"],
            agg["window_end"],
            agg["score"],
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Ten minutes of browsing by four hosts, one of which cycles through generated names."""
        from dnsieve.detectors.tunnel import example_events

        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        consonants = list("bcdfghjklmnpqrstvwxz")
        rows: list[dict[str, Any]] = []
        for i in range(30):
            label = "".join(rng.choice(consonants, size=int(rng.integers(10, 18))))
            dom = label + rng.choice([".com", ".net", ".biz", ".info"])
            rows.append(
                _row(
                    t0 + timedelta(seconds=5 * i + float(rng.random())),
                    "10.1.0.66",
                    dom,
                    dom,
                    i % 7 != 0,
                )
            )
        benign = [
            "www.wikipedia.org",
            "mail.google.com",
            "www.python.org",
            "d3c9x1q.cloudfront.net",
            "github.com",
        ]
        for _ in range(40):
            q = benign[int(rng.integers(0, len(benign)))]
            reg = ".".join(q.split(".")[-2:])
            rows.append(
                _row(
                    t0 + timedelta(seconds=float(rng.uniform(0, 600))),
                    f"10.1.0.{int(rng.integers(2, 6))}",
                    q,
                    reg,
                    False,
                )
            )
        return example_events(rows)


def _row(ts: datetime, client: str, qname: str, reg: str, nx: bool) -> dict[str, Any]:
    return {
        "ts": ts,
        "src_ip": client,
        "qname": qname,
        "qtype": "A",
        "rcode": "NXDOMAIN" if nx else "NOERROR",
        "registered_domain": reg,
        "subdomain": qname[: -len(reg) - 1] if qname != reg else "",
        "tld": reg.rsplit(".", 1)[-1],
    }


def _round(v: Any) -> Any:
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, 3)
    return v


def _evidence(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "dga_probability": round(float(r["dga_probability"]), 4),
        "scored_label": r["label"],
        "queries": int(r["queries"]),
        "nxdomain": int(r["nxdomain"]),
        "clients": int(r["clients"]),
        "client_dga_nxdomains": int(r["context"]),
        "context_clients": list(r["context_clients"] or []),
        "query_names": list(r["query_names"] or []),
        "features": {k: _round(r[k]) for k in lexical.FEATURE_NAMES},
    }
