"""Anomaly rows → feature vectors for the threat model (ARCHITECTURE §6).

An anomaly (one row of the :data:`dnsieve.schema.ANOMALY` shape, optionally
with the calibration columns ``global_p``/``tail_p`` added by
:mod:`dnsieve.calibrate`) becomes a fixed-length float vector.  The layout is
fixed by :data:`FEATURE_NAMES`, whatever the input, so a model trained today
can score tomorrow's anomalies and be serialised with its feature names.

Feature groups
--------------
``det_<name>``
    one-hot of the detector (:data:`DETECTORS`; a definition's own alert,
    ``rule:<name>``, is ``det_rule``; anything else is ``det_other``).
``lscore_<name>``
    ``sign(score)·log1p(|score|)`` in the column of its own detector, 0
    elsewhere: each detector's score gets its own slope, because scores of
    different detectors live on different scales.
``neg_log_p`` / ``has_p``
    ``-log10`` of the calibrated p-value (``global_p`` when present, else the
    detector's ``p_value``), capped at 30; ``has_p`` says whether one existed.
``ev_*``
    context read from the evidence JSON (vectorised JSON-path look-ups, the
    first key present wins): clients affected, queries, NXDOMAIN share, share
    of TXT/NULL/CNAME/MX, unique subdomains or failed names, entropy,
    encodedness, new visitors, DGA probability reported by the detector.
``ctx_*``
    context from the events, when they are given (:func:`entity_context`):
    first-seen age of the domain (log hours, and a "new in the last day"
    flag), its distinct clients, NXDOMAIN and odd-qtype share, distinct
    subdomains and their mean length; for the client: distinct domains and
    NXDOMAIN share.
``lex_*``
    lexical score of the domain's registered label: the DGA probability of
    :mod:`dnsieve.detectors.dga` when its model is available, the Shannon
    entropy of :mod:`dnsieve.lexical` otherwise (and always).
``pop_*``
    popularity: listed flag and ``1 - log10(rank)/6`` (1 at rank 1, 0 from rank
    one million), from a configured top list (:class:`TopList`, a local file;
    no network) or else the shipped ranks of
    :func:`dnsieve.popular.popularity_rank`.
``def_confidence``
    how sure the analysts' own threat definitions are (:func:`definition_confidence`):
    the model's prior never ranks a row below it, and definition hits teach the
    model as positives weighted by it (:func:`dnsieve.alerts.feedback.learn_from_definitions`).

Missing values are 0 (every group has an indicator or is 0-neutral), so the
matrix never holds NaN.  Domain names are attacker-controlled: they are only
ever looked up, never parsed by hand beyond a split on ``|``.

>>> import polars as pl, datetime as dt
>>> t = dt.datetime(2024, 3, 4, tzinfo=dt.UTC)
>>> a = pl.DataFrame({"detector": ["tunnel"], "entity_type": ["domain"], "entity": ["x.com"],
...     "window_start": [t], "window_end": [t], "score": [3.0], "p_value": [1e-4],
...     "evidence": ['{"clients": 2, "unique_subdomains": 900}']})
>>> X = anomaly_features(a, lexical=False)
>>> X.shape == (1, len(FEATURE_NAMES))
True
>>> round(float(X[0, FEATURE_NAMES.index("neg_log_p")]), 6)
4.0
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = [
    "DETECTORS",
    "EVIDENCE_KEYS",
    "FEATURE_NAMES",
    "TopList",
    "anomaly_features",
    "definition_confidence",
    "entity_context",
    "entity_keys",
]

#: Detectors with their own one-hot and score column; others share ``other``.
DETECTORS: tuple[str, ...] = (
    "beacon",
    "client_volume",
    "dga",
    "dga_host",
    "fastflux",
    "lookalike",
    "newdomain",
    "nxdomain",
    "profile",
    "tunnel",
    "visitors",
    "volume",
    "rule",
    "other",
)

#: Evidence feature → JSON keys tried in order (first present wins) and transform.
EVIDENCE_KEYS: dict[str, tuple[tuple[str, ...], str]] = {
    "ev_clients": (("clients", "clients_of_domain", "visitors", "distinct_clients"), "log1p"),
    "ev_queries": (("queries", "connections", "current.queries"), "log1p"),
    "ev_nx_share": (("nx_share",), "clip01"),
    "ev_odd_qtype_share": (("txt_null_cname_mx_share",), "clip01"),
    "ev_subdomains": (("unique_subdomains", "failed_domains", "failed_names"), "log1p"),
    "ev_entropy": (("mean_entropy",), "raw"),
    "ev_encodedness": (("mean_encodedness",), "clip01"),
    "ev_new_visitors": (("new_visitors",), "log1p"),
    "ev_dga_probability": (("dga_probability",), "clip01"),
    "ev_subdomain_len": (("mean_subdomain_len",), "log1p"),
    "ev_label_len": (("max_label_len",), "log1p"),
    "ev_bytes_per_query": (("query_bytes_per_query",), "log1p"),
    "ev_encoded_bits": (("top_client_bits", "encoded_bits"), "log1p"),
    "ev_queries_per_client": (("queries_per_client",), "log1p"),
}

_CTX = (
    "ctx_age_log_h",
    "ctx_new_domain",
    "ctx_dom_clients",
    "ctx_dom_nx_share",
    "ctx_dom_odd_qtype",
    "ctx_dom_subdomains",
    "ctx_dom_sub_len",
    "ctx_client_domains",
    "ctx_client_nx_share",
)

FEATURE_NAMES: tuple[str, ...] = (
    *(f"det_{d}" for d in DETECTORS),
    *(f"lscore_{d}" for d in DETECTORS),
    "neg_log_p",
    "has_p",
    *EVIDENCE_KEYS,
    *_CTX,
    "lex_dga",
    "lex_entropy",
    "pop_listed",
    "pop_score",
    "def_confidence",
)

_ODD_QTYPES = ("TXT", "NULL", "CNAME", "MX")
_P_CAP = 30.0


@dataclass(frozen=True)
class TopList:
    """Popularity ranks from a local list (``rank,domain`` CSV or one domain per line).

    >>> tl = TopList.from_lines(["1,google.com", "2,example.org"])
    >>> tl.rank("example.org"), tl.rank("nope.test")
    (2, None)
    """

    ranks: dict[str, int]

    @property
    def size(self) -> int:
        """Number of listed domains."""
        return len(self.ranks)

    @classmethod
    def from_lines(cls, lines: Sequence[str]) -> TopList:
        """Parse lines; a line without a numeric rank gets its line number."""
        ranks: dict[str, int] = {}
        for i, row in enumerate(csv.reader(lines), start=1):
            if not row:
                continue
            if len(row) >= 2 and row[0].strip().isdigit():
                rank, name = int(row[0]), row[1]
            else:
                rank, name = i, row[0]
            name = name.strip().lower().rstrip(".")
            if name and name not in ranks:
                ranks[name] = rank
        return cls(ranks)

    @classmethod
    def load(cls, path: str | Path) -> TopList:
        """Read a top list file (UTF-8, undecodable bytes replaced)."""
        with open(path, encoding="utf-8", errors="replace") as fh:
            return cls.from_lines(fh.read().splitlines())

    def rank(self, domain: str) -> int | None:
        """The rank of ``domain``, or None when unlisted."""
        return self.ranks.get(domain)

    def frame(self) -> pl.DataFrame:
        """The list as a (domain, rank) frame for joins."""
        return pl.DataFrame(
            {"domain": list(self.ranks), "rank": list(self.ranks.values())},
            schema={"domain": pl.String, "rank": pl.Int64},
        )


def entity_keys(anomalies: pl.DataFrame) -> pl.DataFrame:
    """The domain and client each anomaly concerns (``_domain``, ``_client``; null if none).

    ``domain`` entities are domains, ``client`` entities clients and
    ``client_domain`` entities are ``client|domain``.
    """
    et = pl.col("entity_type")
    ent = pl.col("entity").fill_null("")
    parts = ent.str.split_exact("|", 1)
    return anomalies.select(
        pl.when(et == "domain")
        .then(ent)
        .when(et == "client_domain")
        .then(parts.struct.field("field_1"))
        .otherwise(None)
        .alias("_domain"),
        pl.when(et == "client")
        .then(ent)
        .when(et == "client_domain")
        .then(parts.struct.field("field_0"))
        .otherwise(None)
        .alias("_client"),
    )


def entity_context(events: pl.DataFrame | pl.LazyFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per-domain and per-client context from canonical events.

    Returns ``(domains, clients)``: ``domains`` has ``_domain``,
    ``first_seen``, ``dom_clients``, ``dom_nx_share``, ``dom_odd_qtype``,
    ``dom_subdomains``, ``dom_sub_len`` (mean subdomain length in characters);
    ``clients`` has ``_client``, ``client_domains`` and
    ``client_nx_share``.
    """
    lf = events.lazy() if isinstance(events, pl.DataFrame) else events
    nx = (pl.col("rcode") == "NXDOMAIN").cast(pl.Float64).fill_null(0.0)
    odd = pl.col("qtype").is_in(_ODD_QTYPES).cast(pl.Float64).fill_null(0.0)
    domains = (
        lf.filter(pl.col("registered_domain").is_not_null() & (pl.col("registered_domain") != ""))
        .group_by(pl.col("registered_domain").alias("_domain"))
        .agg(
            pl.col("ts").min().alias("first_seen"),
            pl.col("src_ip").n_unique().alias("dom_clients"),
            nx.mean().alias("dom_nx_share"),
            odd.mean().alias("dom_odd_qtype"),
            pl.col("subdomain").n_unique().alias("dom_subdomains"),
            pl.col("subdomain").str.len_chars().mean().alias("dom_sub_len"),
        )
        .collect()
    )
    clients = (
        lf.filter(pl.col("src_ip").is_not_null())
        .group_by(pl.col("src_ip").alias("_client"))
        .agg(
            pl.col("registered_domain").n_unique().alias("client_domains"),
            nx.mean().alias("client_nx_share"),
        )
        .collect()
    )
    return domains, clients


_EV_KEYS: tuple[str, ...] = tuple(
    dict.fromkeys(k for keys, _ in EVIDENCE_KEYS.values() for k in keys)
)


def _evidence_numbers(evidence: pl.Series) -> pl.DataFrame:
    """The numeric evidence keys of :data:`EVIDENCE_KEYS`, one column each (null if absent).

    Well-formed evidence (what our detectors write) is decoded in one pass
    against a struct of just these keys; if any row is not JSON or holds a
    value of another type, every key falls back to a JSON-path look-up with
    a lenient cast, so hostile evidence yields nulls, not an error.
    """
    flat = [k for k in _EV_KEYS if "." not in k]
    nested: dict[str, dict[str, pl.DataType]] = {}
    for k in _EV_KEYS:
        if "." in k:
            top, sub = k.split(".", 1)
            nested.setdefault(top, {})[sub] = pl.Float64()
    dtype = pl.Struct(
        {**{k: pl.Float64() for k in flat}, **{t: pl.Struct(f) for t, f in nested.items()}}
    )
    frame = evidence.alias("evidence").to_frame()
    try:
        dec = frame.select(pl.col("evidence").str.json_decode(dtype).alias("e")).unnest("e")
        cols = [pl.col(k) for k in flat] + [
            pl.col(t).struct.field(sub).alias(f"{t}.{sub}") for t, f in nested.items() for sub in f
        ]
        return dec.select(cols)
    except pl.exceptions.PolarsError:
        return frame.select(
            pl.col("evidence").str.json_path_match("$." + k).cast(pl.Float64, strict=False).alias(k)
            for k in _EV_KEYS
        )


def _transform(e: pl.Expr, how: str) -> pl.Expr:
    if how == "log1p":
        return e.clip(lower_bound=0.0).log1p()
    if how == "clip01":
        return e.clip(0.0, 1.0)
    return e


def _lexical(
    domains: pl.Series, use_dga: bool
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(DGA probability, entropy) of each domain's registered label; 0 for null."""
    n = len(domains)
    dga = np.zeros(n)
    ent = np.zeros(n)
    valid = domains.is_not_null().to_numpy()
    if not valid.any():
        return dga, ent
    names = domains.filter(domains.is_not_null())
    labels = names.str.split(".").list.first().fill_null("")
    try:
        from dnsieve import lexical as lx

        ent[valid] = lx.shannon_entropy(labels)
    except (ImportError, AttributeError):  # lexical module absent: keep 0
        pass
    if use_dga:
        try:
            from dnsieve.detectors.dga import score_names

            dga[valid] = score_names(names)["dga_probability"].fill_null(0.0).to_numpy()
        except (ImportError, OSError, AttributeError, KeyError):  # DGA artifact not shipped
            pass
    return dga, ent


#: ``pop_score`` is ``1 - log10(rank) / _POP_DECADES``: 1 at rank 1, 0 at rank 1,000,000.
_POP_DECADES = 6.0


def _shipped_ranks(domains: pl.Series) -> pl.Series | None:
    """Ranks from :func:`dnsieve.popular.popularity_rank` (None when that module is absent)."""
    try:
        from dnsieve.popular import popularity_rank
    except ImportError:  # pragma: no cover - the module ships with dnsieve
        return None
    try:
        return popularity_rank(domains.fill_null(""))
    except (OSError, ValueError):  # its data file missing or unreadable: no popularity
        return None


def _popularity(domains: pl.Series, toplist: TopList | None) -> npt.NDArray[np.float64]:
    """(listed, score) per domain: from ``toplist`` when given, else the shipped ranks."""
    n = len(domains)
    pop = np.zeros((n, 2))
    if n == 0:
        return pop
    if toplist is not None and toplist.size:
        ranks = (
            domains.alias("_domain")
            .to_frame()
            .join(
                toplist.frame(),
                left_on="_domain",
                right_on="domain",
                how="left",
                maintain_order="left",
            )["rank"]
        )
    else:
        shipped = _shipped_ranks(domains)
        if shipped is None:
            return pop
        ranks = shipped
    r = ranks.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)
    r = np.where(domains.is_null().to_numpy(), np.nan, r)
    listed = np.isfinite(r) & (r >= 1)
    pop[:, 0] = listed
    pop[listed, 1] = np.clip(1.0 - np.log10(r[listed]) / _POP_DECADES, 0.0, 1.0)
    return pop


def definition_confidence(
    det: pl.DataFrame, domains: pl.Series, anomalies: pl.DataFrame
) -> npt.NDArray[np.float64]:
    """``def_confidence``: how sure the analysts' own definitions are that a row is a threat.

    A definition's own alert (``rule:<name>``; its score is the definition's confidence)
    gets that confidence; a detector anomaly an anomaly rule matched gets the rule's
    (``rule_confidence``, see :func:`dnsieve.rules.evaluate.apply_anomaly_rules`); any
    other row gets the highest confidence of a definition alert on its domain in the same
    frame, so the model learns that a detector fired where a definition did.  0 elsewhere.
    """
    own = np.where(
        det["_det"].to_numpy() == "rule", np.clip(det["_score"].to_numpy(), 0.0, 1.0), 0.0
    )
    if "rule_confidence" in anomalies.columns:
        rc = anomalies["rule_confidence"].cast(pl.Float64).fill_null(0.0).to_numpy()
        own = np.maximum(own, np.clip(rc, 0.0, 1.0))
    if not (own > 0).any():
        return own
    frame = pl.DataFrame({"d": domains, "c": own, "r": det["_det"] == "rule"})
    best = frame.filter(pl.col("r")).group_by("d").agg(pl.col("c").max().alias("m"))
    same = frame.join(best, on="d", how="left", maintain_order="left")["m"].fill_null(0.0)
    return np.maximum(own, same.to_numpy())


def anomaly_features(
    anomalies: pl.DataFrame,
    *,
    context: tuple[pl.DataFrame, pl.DataFrame] | None = None,
    toplist: TopList | None = None,
    lexical: bool = True,
) -> npt.NDArray[np.float64]:
    """The feature matrix (rows aligned with ``anomalies``, columns :data:`FEATURE_NAMES`).

    ``context`` is the output of :func:`entity_context` over the events the
    anomalies came from; ``toplist`` a popularity list; ``lexical=False``
    skips the lexical scores (faster, for tests).
    """
    n = anomalies.height
    if n == 0:
        return np.zeros((0, len(FEATURE_NAMES)))
    cols = set(anomalies.columns)
    det = pl.col("detector").cast(pl.String).fill_null("other")
    df = anomalies.with_columns(
        pl.when(det.str.starts_with("rule:"))
        .then(pl.lit("rule"))
        .otherwise(det.replace_strict({d: d for d in DETECTORS}, default="other"))
        .alias("_det"),
        pl.col("evidence").cast(pl.String).fill_null("{}")
        if "evidence" in cols
        else pl.lit("{}").alias("evidence"),
        pl.col("score").cast(pl.Float64).fill_nan(0.0).fill_null(0.0).alias("_score"),
    )
    p = pl.col("global_p") if "global_p" in cols else pl.col("p_value")
    if "global_p" in cols and "p_value" in cols:
        p = pl.coalesce(pl.col("global_p"), pl.col("p_value"))
    p = p.cast(pl.Float64).fill_nan(None)
    lscore = pl.col("_score").sign() * pl.col("_score").abs().log1p()
    exprs: list[pl.Expr] = [
        (pl.col("_det") == d).cast(pl.Float64).alias(f"det_{d}") for d in DETECTORS
    ]
    exprs += [
        pl.when(pl.col("_det") == d).then(lscore).otherwise(0.0).alias(f"lscore_{d}")
        for d in DETECTORS
    ]
    exprs += [
        (-(p.clip(1e-300, 1.0).log10())).clip(0.0, _P_CAP).fill_null(0.0).alias("neg_log_p"),
        p.is_not_null().cast(pl.Float64).alias("has_p"),
    ]
    ev = _evidence_numbers(df["evidence"])
    for name, (ev_keys, how) in EVIDENCE_KEYS.items():
        raw = pl.coalesce([pl.col(k) for k in ev_keys]) if len(ev_keys) > 1 else pl.col(ev_keys[0])
        exprs.append(_transform(raw, how).fill_nan(0.0).fill_null(0.0).alias(name))
    out = pl.concat([df, ev], how="horizontal").select(exprs)

    keys = entity_keys(anomalies)
    ctx = pl.DataFrame({c: np.zeros(n) for c in _CTX})
    if context is not None:
        domains, clients = context
        j = (
            keys.with_columns(anomalies["window_start"].alias("_ws"), pl.int_range(n).alias("_i"))
            .join(domains, on="_domain", how="left")
            .join(clients, on="_client", how="left")
            .sort("_i")
        )
        age_h = ((pl.col("_ws") - pl.col("first_seen")).dt.total_seconds() / 3600.0).clip(
            lower_bound=0.0
        )
        ctx = j.select(
            age_h.log1p().fill_null(0.0).alias("ctx_age_log_h"),
            ((age_h < 24.0) & pl.col("first_seen").is_not_null())
            .cast(pl.Float64)
            .fill_null(0.0)
            .alias("ctx_new_domain"),
            pl.col("dom_clients").cast(pl.Float64).log1p().fill_null(0.0).alias("ctx_dom_clients"),
            pl.col("dom_nx_share").fill_null(0.0).alias("ctx_dom_nx_share"),
            pl.col("dom_odd_qtype").fill_null(0.0).alias("ctx_dom_odd_qtype"),
            pl.col("dom_subdomains")
            .cast(pl.Float64)
            .log1p()
            .fill_null(0.0)
            .alias("ctx_dom_subdomains"),
            pl.col("dom_sub_len").cast(pl.Float64).log1p().fill_null(0.0).alias("ctx_dom_sub_len"),
            pl.col("client_domains")
            .cast(pl.Float64)
            .log1p()
            .fill_null(0.0)
            .alias("ctx_client_domains"),
            pl.col("client_nx_share").fill_null(0.0).alias("ctx_client_nx_share"),
        )

    lex_dga, lex_ent = _lexical(keys["_domain"], lexical)
    pop = _popularity(keys["_domain"], toplist)
    X = np.column_stack(
        [
            out.to_numpy().astype(np.float64),
            ctx.to_numpy().astype(np.float64),
            lex_dga,
            lex_ent,
            pop,
            definition_confidence(df.select("_det", "_score"), keys["_domain"], anomalies),
        ]
    )
    return np.nan_to_num(X, nan=0.0, posinf=_P_CAP, neginf=-_P_CAP)
