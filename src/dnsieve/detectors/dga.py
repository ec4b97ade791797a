"""DGA detection: a lexical classifier over registered-domain labels (ARCHITECTURE §5).

**What is scored.**  The label left of the public suffix, from the *ICANN*
section of the Public Suffix List: ``d1x2y3.cloudfront.net`` and
``ec2-1-2-3-4.compute-1.amazonaws.com`` are scored as ``cloudfront`` and
``amazonaws``, so CDN and cloud host names (random by design, but chosen by
the provider, not by malware) do not look generated.  Domain-generation
algorithms register whole domains, so their randomness lives in that label.

**The model** (:class:`DgaModel`): 22 features per label
(:data:`MODEL_FEATURES`: the lexical features of :mod:`dnsieve.lexical` plus
evidence from benign character statistics — an order-3 character Markov
model and the coverage by 4-/5-grams of benign labels, all fitted on benign
labels only) feed 80 gradient-boosted trees of depth <= 5, calibrated by Platt
scaling on a held-out split.  Prediction is pure NumPy (no scikit-learn at run
time): the trees are stored as padded arrays in a ``.npz`` (no pickle) and
evaluated with per-tree leaf bitmasks (:class:`Trees`); a one-layer MLP
(:class:`Mlp`) is the other classifier the artifact format supports.  Its
training metadata sits in ``dga_model.json`` beside it.
``scripts/train_dga.py`` rebuilds both from ``../shared/data``;
docs/detectors-lexical.md reports the leave-family-out evaluation.

The probability is calibrated on a class-balanced held-out set: read it as
P(generated | label) at even prior odds, not as a base rate in real traffic.

**The detector** (:class:`DgaDetector`, name ``dga``) scores every registered
domain seen in a window and emits those whose score reaches
``min_probability`` (0.9).  Labels shorter than ``min_label_length`` (6) are
not scored: two- to five-letter labels (``uh.edu``, ``gvt2.com``) carry too
little lexical evidence and were the bulk of false positives on real traffic;
neither are labels with an underscore (service names such as ``_vlmcs._tcp``).
The score adds per-client context to the lexical probability: a bot tries many generated names, most of which fail, so for
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
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow.compute as pac

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
    "MODEL_FEATURES",
    "BenignTables",
    "DgaDetector",
    "DgaModel",
    "Mlp",
    "Trees",
    "default_model",
    "model_features",
    "private_registered_domains",
    "registered_labels",
    "score_names",
]

MODEL_FILE = "dga_model.npz"
METADATA_FILE = "dga_model.json"

_ICANN = DomainSplitter(private_suffixes=False)


#: Inputs of the classifier: the lexical features plus benign character-model
#: evidence (see :func:`model_features`).
MODEL_FEATURES: tuple[str, ...] = (
    *lexical.FEATURE_NAMES,
    "trigram_mean",
    "trigram_min",
    "trigram_low_share",
    "known4_chars",
    "known4_grams",
    "known5_chars",
    "known5_grams",
)


@dataclass(frozen=True)
class BenignTables:
    """Character statistics of benign training labels used as features.

    ``bigram`` (40×40 log P, for ``bigram_logp``), ``trigram`` (flat 40**3
    log P table of a smoothed order-3 Markov model) and ``known4`` /
    ``known5`` (sorted codes of the 4-/5-grams of ``^label$`` seen in at
    least two benign labels).  All are fitted on benign labels only, so they
    carry no information about any DGA family.
    """

    bigram: npt.NDArray[np.float64]
    trigram: npt.NDArray[np.float32]
    known4: npt.NDArray[np.int64]
    known5: npt.NDArray[np.int64]

    @cached_property
    def bitsets(self) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
        """Packed membership bitsets of ``known4`` and ``known5`` (built once, ~13 MB)."""
        return lexical.ngram_bitset(self.known4, 4), lexical.ngram_bitset(self.known5, 5)

    @classmethod
    def fit(cls, benign: lexical.LabelsLike) -> BenignTables:
        """Fit every table on benign labels."""
        return cls(
            bigram=lexical.bigram_table_from_labels(benign),
            trigram=lexical.ngram_logp_table(benign, order=3),
            known4=lexical.frequent_ngrams(benign, 4),
            known5=lexical.frequent_ngrams(benign, 5),
        )


def _block_features(
    enc: lexical.EncodedLabels, tables: BenignTables
) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[np.float64]]:
    feats = lexical.encoded_features(enc, tables.bigram)
    tri = lexical.ngram_logp_stats(enc, tables.trigram, 3)
    b4, b5 = tables.bitsets
    k4 = lexical.ngram_coverage(enc, tables.known4, 4, b4)
    k5 = lexical.ngram_coverage(enc, tables.known5, 5, b5)
    cols = [feats[k] for k in lexical.FEATURE_NAMES] + [*tri, *k4, *k5]
    return feats, np.stack([np.asarray(c, dtype=np.float64) for c in cols], axis=1)


def model_features(
    labels: lexical.LabelsLike, tables: BenignTables, max_len: int = lexical.DEFAULT_MAX_LEN
) -> tuple[dict[str, npt.NDArray[Any]], npt.NDArray[np.float64]]:
    """``(lexical feature dict, (n, len(MODEL_FEATURES)) matrix)`` for a batch of labels."""
    arr = lexical._to_arrow(labels)
    n = len(arr)
    mat = np.zeros((n, len(MODEL_FEATURES)), dtype=np.float64)
    out: dict[str, npt.NDArray[Any]] = {}
    for rows, enc in lexical.iter_encoded(arr, max_len):
        feats, block = _block_features(enc, tables)
        mat[rows] = block
        for k, v in feats.items():
            if k not in out:
                out[k] = np.zeros(n, dtype=v.dtype)
            out[k][rows] = v
    if not out:
        out = lexical.feature_arrays([], tables.bigram)
    return out, mat


@dataclass(frozen=True)
class Trees:
    """Gradient-boosted regression trees as padded arrays, evaluated with NumPy.

    Tree ``t`` node ``i`` sends a row left when ``x[feature[t, i]] <=
    threshold[t, i]``; leaves point to themselves and hold ``value``.  The
    margin is ``baseline + sum over trees of the reached leaf's value``.
    """

    feature: npt.NDArray[np.int16]
    threshold: npt.NDArray[np.float64]
    left: npt.NDArray[np.int16]
    right: npt.NDArray[np.int16]
    value: npt.NDArray[np.float32]
    depth: int
    baseline: float

    def margin(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Sum of leaf values for each row of ``x`` (n, n_features).

        Trees of at most 32 leaves (depth <= 5, as trained) are scored with
        leaf bitmasks (:class:`_LeafMasks`): one row gather per feature and
        block of rows, no per-level pointer chasing.  Deeper trees are walked
        level by level.
        """
        n = x.shape[0]
        n_trees = self.feature.shape[0]
        out = np.full(n, self.baseline, dtype=np.float64)
        if n == 0 or n_trees == 0:
            return out
        flat = self._flat()
        # Features binned once against each feature's sorted thresholds: the node
        # test x <= threshold becomes a small-integer compare.
        xt = np.ascontiguousarray(x.T)
        xb = np.empty((x.shape[1], n), dtype=np.uint8)
        for j, cuts in enumerate(flat.cuts):
            xb[j] = np.searchsorted(cuts, xt[j], side="left")
        masks = self._masks()
        if masks is not None:
            return masks.margin(xb, out)
        return self._walk(flat, xb, out)

    def _walk(
        self, flat: _FlatTrees, xb: npt.NDArray[np.uint8], out: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Level-by-level traversal with 1-D gathers (any depth)."""
        n = xb.shape[1]
        n_trees, width = self.feature.shape
        xb_flat = xb.reshape(-1)
        featoff = flat.feature * n
        col = np.arange(n, dtype=np.int64)
        for t0 in range(0, n_trees, _TREE_BLOCK):
            t1 = min(n_trees, t0 + _TREE_BLOCK)
            node = np.repeat(np.arange(t0, t1, dtype=np.int64) * width, n).reshape(t1 - t0, n)
            for _ in range(self.depth):
                xv = xb_flat.take(featoff.take(node) + col)
                node = flat.child.take(node) + (xv > flat.tbin.take(node))
            out += flat.value.take(node).sum(axis=0, dtype=np.float64)
        return out

    def _masks(self) -> _LeafMasks | None:
        return self._leaf_masks

    @cached_property
    def _leaf_masks(self) -> _LeafMasks | None:
        # Built once per model and kept on it (a training run builds many models).
        return _LeafMasks.build(self, self._flat().cuts)

    def _flat(self) -> _FlatTrees:
        cached = _FLAT_CACHE.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        n_trees, width = self.feature.shape
        leaf = np.isinf(self.threshold)
        n_features = int(self.feature.max()) + 1
        cuts = []
        tbin = np.zeros(self.threshold.shape, dtype=np.int64)
        for j in range(n_features):
            m = (self.feature == j) & ~leaf
            c = np.unique(self.threshold[m])
            if c.size > 255:
                raise ValueError("more than 255 thresholds on one feature")
            cuts.append(c)
            # x <= thr  <=>  searchsorted(c, x, "left") <= index of thr in c
            tbin[m] = np.searchsorted(c, self.threshold[m])
        # Renumber each tree breadth-first so a node's children are adjacent:
        # next = child[node] + (x > threshold); a leaf is its own child and never moves.
        feature = np.zeros((n_trees, width), dtype=np.int64)
        child = np.zeros((n_trees, width), dtype=np.int64)
        tb = np.full((n_trees, width), 255, dtype=np.uint8)
        value = np.zeros((n_trees, width), dtype=np.float32)
        for t in range(n_trees):
            order = [0]
            new = {0: 0}
            i = 0
            while i < len(order):
                old = order[i]
                if not leaf[t, old]:
                    for c_old in (int(self.left[t, old]), int(self.right[t, old])):
                        new[c_old] = len(order)
                        order.append(c_old)
                i += 1
            for old in order:
                k = new[old]
                if leaf[t, old]:
                    child[t, k] = t * width + k
                    value[t, k] = self.value[t, old]
                else:
                    child[t, k] = t * width + new[int(self.left[t, old])]
                    feature[t, k] = self.feature[t, old]
                    tb[t, k] = tbin[t, old]
        flat = _FlatTrees(
            feature=feature.reshape(-1),
            tbin=tb.reshape(-1),
            child=child.reshape(-1),
            value=value.reshape(-1),
            cuts=tuple(cuts),
        )
        _FLAT_CACHE[id(self)] = (self, flat)
        return flat


_TREE_BLOCK = 25


@dataclass(frozen=True)
class _FlatTrees:
    feature: npt.NDArray[np.int64]
    tbin: npt.NDArray[np.uint8]
    child: npt.NDArray[np.int64]
    value: npt.NDArray[np.float32]
    cuts: tuple[npt.NDArray[np.float64], ...]


_FLAT_CACHE: dict[int, tuple[Trees, _FlatTrees]] = {}


@dataclass(frozen=True)
class _LeafMasks:
    """Bitmask evaluation of a tree ensemble (QuickScorer, Lucchese et al., SIGIR 2015).

    Number each tree's leaves left to right (bit ``k`` = ``k``-th leaf).  A
    node whose test fails (``x > threshold``: go right) rules out every leaf of
    its left subtree; the exit leaf is the leftmost leaf no failed node ruled
    out, i.e. the lowest set bit of the AND of the failed nodes' masks.  The
    nodes on feature ``j`` that fail for a row are those whose threshold bin
    is below the row's bin, so ``table[j][b]`` holds, per tree, the AND of the
    masks of the nodes on ``j`` failing at bin ``b``, and a row's mask is the
    AND over features of ``table[j][xb[j]]``: the same leaf, hence the same
    margin, as walking the tree.
    """

    table: tuple[npt.NDArray[np.uint32], ...]  # per feature: (n_bins, n_trees)
    used: tuple[int, ...]  # features any node tests
    leaf_value: npt.NDArray[np.float32]  # (n_trees * 32,), leaf k of tree t at t * 32 + k

    @classmethod
    def build(cls, trees: Trees, cuts: tuple[npt.NDArray[np.float64], ...]) -> _LeafMasks | None:
        """The tables, or None when a tree has more than 32 leaves."""
        n_trees = trees.feature.shape[0]
        leaf = np.isinf(trees.threshold)
        table = [np.full((c.size + 1, n_trees), 0xFFFFFFFF, dtype=np.uint32) for c in cuts]
        value = np.zeros((n_trees, 32), dtype=np.float32)
        for t in range(n_trees):
            order: list[int] = []  # leaves, left to right
            span: dict[int, tuple[int, int]] = {}  # node -> [first, last) leaf numbers
            stack: list[tuple[int, bool]] = [(0, False)]
            while stack:
                node, done = stack.pop()
                if leaf[t, node]:
                    span[node] = (len(order), len(order) + 1)
                    order.append(node)
                elif done:
                    left, right = int(trees.left[t, node]), int(trees.right[t, node])
                    span[node] = (span[left][0], span[right][1])
                else:
                    stack.append((node, True))
                    stack.append((int(trees.right[t, node]), False))
                    stack.append((int(trees.left[t, node]), False))
            if len(order) > 32:
                return None
            for k, node in enumerate(order):
                value[t, k] = trees.value[t, node]
            for node, (_a, _b) in span.items():
                if leaf[t, node]:
                    continue
                first, last = span[int(trees.left[t, node])]
                mask = 0xFFFFFFFF & ~(((1 << (last - first)) - 1) << first)
                j = int(trees.feature[t, node])
                b = int(np.searchsorted(cuts[j], trees.threshold[t, node]))
                table[j][b + 1 :, t] &= np.uint32(mask)
        used = tuple(j for j, c in enumerate(cuts) if c.size)
        return cls(table=tuple(table), used=used, leaf_value=value.reshape(-1))

    def margin(
        self, xb: npt.NDArray[np.uint8], out: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Add each row's leaf values to ``out`` (``xb``: (n_features, n) threshold bins)."""
        n = xb.shape[1]
        n_trees = self.leaf_value.size // 32
        offset = np.arange(n_trees, dtype=np.int64) * 32
        for r0 in range(0, n, _MASK_ROWS):
            r1 = min(n, r0 + _MASK_ROWS)
            acc = np.full((r1 - r0, n_trees), 0xFFFFFFFF, dtype=np.uint32)
            for j in self.used:
                acc &= self.table[j].take(xb[j, r0:r1], axis=0)
            lowest = acc & (np.uint32(0) - acc)  # the lowest set bit, 2**k
            k = _DEBRUIJN_INDEX.take((lowest * _DEBRUIJN) >> np.uint32(27))
            out[r0:r1] += self.leaf_value.take(k + offset).sum(axis=1, dtype=np.float64)
        return out


_MASK_ROWS = 4096  # rows per block: the (rows, trees) masks stay in cache
_DEBRUIJN = np.uint32(0x077CB531)
# (2**k * _DEBRUIJN mod 2**32) >> 27 is distinct for k in 0..31: its inverse.
_DEBRUIJN_INDEX = np.zeros(32, dtype=np.int64)
_DEBRUIJN_INDEX[[((0x077CB531 << k) & 0xFFFFFFFF) >> 27 for k in range(32)]] = np.arange(32)


@dataclass(frozen=True)
class Mlp:
    """One hidden layer of ReLUs: ``relu(z @ w1 + b1) @ w2 + b2`` on standardised ``z``."""

    w1: npt.NDArray[np.float32]
    b1: npt.NDArray[np.float32]
    w2: npt.NDArray[np.float32]
    b2: float

    def margin(self, z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Log-odds for each row of ``z``."""
        h = np.maximum(z.astype(np.float32) @ self.w1 + self.b1, 0.0)
        return (h @ self.w2).astype(np.float64) + self.b2


@dataclass(frozen=True)
class DgaModel:
    """A trained DGA classifier over :data:`MODEL_FEATURES`, evaluated with NumPy only.

    ``z = (features - feature_mean) / feature_scale``; the margin is
    ``classifier.margin(z)`` (boosted trees or a small MLP); ``p =
    sigmoid(calib_a * margin + calib_b)``.
    """

    tables: BenignTables
    feature_mean: npt.NDArray[np.float64]
    feature_scale: npt.NDArray[np.float64]
    classifier: Trees | Mlp
    calib_a: float
    calib_b: float
    max_len: int = lexical.DEFAULT_MAX_LEN
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def bigram_table(self) -> npt.NDArray[np.float64]:
        """The benign bigram table behind the ``bigram_logp`` feature."""
        return self.tables.bigram

    def margin_from_features(self, mat: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Uncalibrated log-odds from a :func:`model_features` matrix."""
        z = (mat - self.feature_mean) / self.feature_scale
        return self.classifier.margin(z)

    def margin(self, labels: lexical.LabelsLike) -> npt.NDArray[np.float64]:
        """Uncalibrated log-odds of each label being generated."""
        return self.margin_from_features(model_features(labels, self.tables, self.max_len)[1])

    def calibrate(self, margin: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Platt-scaled probability from a margin."""
        return _sigmoid(self.calib_a * margin + self.calib_b)

    def predict_proba(self, labels: lexical.LabelsLike) -> npt.NDArray[np.float64]:
        """Calibrated probability that each label was generated by a DGA."""
        return self.calibrate(self.margin(labels))

    def save(self, path: Path) -> None:
        """Write the arrays to ``path`` (.npz, no pickled objects)."""
        arrays: dict[str, Any] = {
            "feature_names": np.array(MODEL_FEATURES, dtype="U32"),
            "feature_mean": self.feature_mean,
            "feature_scale": self.feature_scale,
            "scalars": np.array([self.calib_a, self.calib_b], dtype=np.float64),
            "max_len": np.array([self.max_len], dtype=np.int64),
            "bigram_logp": self.tables.bigram.astype(np.float32),
            "trigram_logp": self.tables.trigram.astype(np.float32),
            "known4": self.tables.known4.astype(np.int32),
            "known5": self.tables.known5.astype(np.int32),
        }
        c = self.classifier
        if isinstance(c, Trees):
            arrays.update(
                kind=np.array(["trees"]),
                tree_feature=c.feature,
                tree_threshold=c.threshold,
                tree_left=c.left,
                tree_right=c.right,
                tree_value=c.value,
                tree_params=np.array([c.depth], dtype=np.int64),
                tree_baseline=np.array([c.baseline], dtype=np.float64),
            )
        else:
            arrays.update(
                kind=np.array(["mlp"]),
                mlp_w1=c.w1,
                mlp_b1=c.b1,
                mlp_w2=c.w2,
                mlp_b2=np.array([c.b2], dtype=np.float64),
            )
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path | str) -> DgaModel:
        """Read a model written by :meth:`save` (and its JSON metadata, if beside it)."""
        p = Path(path)
        meta_path = p.with_suffix(".json")
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        with np.load(p, allow_pickle=False) as z:
            names = tuple(str(x) for x in z["feature_names"])
            if names != MODEL_FEATURES:
                raise ValueError(f"{p}: model features {names} do not match {MODEL_FEATURES}")
            kind = str(z["kind"][0])
            classifier: Trees | Mlp
            if kind == "trees":
                classifier = Trees(
                    feature=np.asarray(z["tree_feature"], dtype=np.int16),
                    threshold=np.asarray(z["tree_threshold"], dtype=np.float64),
                    left=np.asarray(z["tree_left"], dtype=np.int16),
                    right=np.asarray(z["tree_right"], dtype=np.int16),
                    value=np.asarray(z["tree_value"], dtype=np.float32),
                    depth=int(z["tree_params"][0]),
                    baseline=float(z["tree_baseline"][0]),
                )
            elif kind == "mlp":
                classifier = Mlp(
                    w1=np.asarray(z["mlp_w1"], dtype=np.float32),
                    b1=np.asarray(z["mlp_b1"], dtype=np.float32),
                    w2=np.asarray(z["mlp_w2"], dtype=np.float32),
                    b2=float(z["mlp_b2"][0]),
                )
            else:
                raise ValueError(f"{p}: unknown classifier kind {kind!r}")
            tables = BenignTables(
                bigram=np.asarray(z["bigram_logp"], dtype=np.float64),
                trigram=np.asarray(z["trigram_logp"], dtype=np.float32),
                known4=np.asarray(z["known4"], dtype=np.int64),
                known5=np.asarray(z["known5"], dtype=np.int64),
            )
            return cls(
                tables=tables,
                feature_mean=np.asarray(z["feature_mean"], dtype=np.float64),
                feature_scale=np.asarray(z["feature_scale"], dtype=np.float64),
                classifier=classifier,
                calib_a=float(z["scalars"][0]),
                calib_b=float(z["scalars"][1]),
                max_len=int(z["max_len"][0]),
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


@lru_cache(maxsize=1)
def _suffix_depths() -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """How many trailing labels of a name the ICANN PSL can look at.

    Returns ``(by_tld, by_last2, wildcard)``: the most labels of any ICANN rule
    (wildcards and exceptions included) ending in a TLD, ending in a two-label
    suffix, and 2 for TLDs with a ``*.tld`` rule.  IDN rules are keyed by their
    punycode form, as names arrive on the wire.
    """
    ref = resources.files("publicsuffixlist") / "public_suffix_list.dat"
    text = ref.read_text(encoding="utf-8")
    body = text.split("===BEGIN ICANN DOMAINS===", 1)[-1].split("===END ICANN DOMAINS===", 1)[0]
    by_tld: dict[str, int] = {}
    by_last2: dict[str, int] = {}
    wildcard: dict[str, int] = {}
    for line in body.splitlines():
        rule = line.strip().split(" ", 1)[0].lstrip("!")
        if not rule or rule.startswith("//"):
            continue
        labels = [_ace(x) for x in rule.lower().split(".")]
        n = len(labels)
        by_tld[labels[-1]] = max(by_tld.get(labels[-1], 1), n)
        if n >= 2:
            key = ".".join(labels[-2:])
            if labels[-2] == "*":
                wildcard[labels[-1]] = 2
            else:
                by_last2[key] = max(by_last2.get(key, 2), n)
    return by_tld, by_last2, wildcard


@lru_cache(maxsize=1)
def _suffix_depth_series() -> tuple[tuple[pl.Series, pl.Series], ...]:
    """:func:`_suffix_depths` as (keys, depths) Series pairs, built once for ``replace_strict``."""
    return tuple(
        (pl.Series(list(d), dtype=pl.String), pl.Series(list(d.values()), dtype=pl.Int64))
        for d in _suffix_depths()
    )


def _ace(label: str) -> str:
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return label


def registered_labels(registered: pl.Series) -> pl.DataFrame:
    """The label scored for each name: the one left of its ICANN public suffix.

    Input is any name (a registered domain or a full query name); output has
    ``icann_domain`` (ICANN registered domain), ``label`` and ``suffix`` (the
    ICANN public suffix, empty when the name has no label left of it).  Names
    without a known suffix (``wpad``) are scored whole; a bare suffix
    (``co.uk``) by its first label.

    Vectorised: the PSL is consulted (through the cached
    :class:`~dnsieve.domains.DomainSplitter`) once per distinct *tail* of a
    name, the few trailing labels its rules can see (``com`` for every
    ``.com`` name, ``co.uk`` for every ``.co.uk`` name), never once per name.

    >>> registered_labels(pl.Series(["x1.cloudfront.net", "foo.github.io", "a.b.co.uk", "wpad"]))["label"].to_list()
    ['cloudfront', 'github', 'b', 'wpad']
    """
    by_tld, by_last2, wildcard = _suffix_depth_series()
    df = pl.DataFrame({"n": registered.cast(pl.String).fill_null("").str.strip_chars(".")})
    # Empty labels inside a name (a..b): the PSL does not apply; the name is kept whole.
    odd = pl.col("n").str.contains(r"\.\.", literal=False) | (pl.col("n") == "")
    # Staged: each string pass once, then the depth lookups on the staged columns.
    df = df.with_columns(
        odd=odd,
        last1=pl.col("n").str.extract(r"([^.]*)$", 1).fill_null(""),
        last2=pl.col("n").str.extract(r"([^.]+\.[^.]*)$", 1),
    ).with_columns(
        d1=pl.col("last1").replace_strict(*by_tld, default=1, return_dtype=pl.Int64),
        d2=pl.max_horizontal(
            pl.col("last2")
            .replace_strict(*by_last2, default=1, return_dtype=pl.Int64)
            .fill_null(1),
            pl.col("last1").replace_strict(*wildcard, default=1, return_dtype=pl.Int64),
        ),
    )
    depth = pl.when(pl.col("odd")).then(0).when(pl.col("d1") == 1).then(1).otherwise(pl.col("d2"))
    df = df.with_columns(depth=depth)
    df = df.with_columns(
        tail=pl.when(pl.col("depth") == 1)
        .then(pl.col("last1"))
        .when((pl.col("depth") == 2) & pl.col("last2").is_not_null())
        .then(pl.col("last2"))
        .otherwise(pl.col("n"))
    )
    deep = (pl.col("depth") >= 3) & pl.col("last2").is_not_null()
    if bool(df.select(deep.any()).item()):
        df = df.with_columns(
            tail=pl.when(deep)
            .then(pl.col("n").str.split(".").list.slice(-pl.col("depth")).list.join("."))
            .otherwise(pl.col("tail"))
        )
    tails = df["tail"].unique()
    parts = [_ICANN.split(t) for t in tails.to_list()]
    mapping = pl.DataFrame(
        {
            "tail": tails,
            "sfx": pl.Series([x[2] for x in parts], dtype=pl.String),
            "rd_tail": pl.Series([x[0] for x in parts], dtype=pl.String),
        }
    )
    df = df.join(mapping, on="tail", how="left", maintain_order="left")
    # Staged columns (each string pass once): the label is the last label of the
    # head left of ``.suffix``; odd names keep the historical whole-name
    # behaviour (registered = name).
    slen = pl.col("sfx").str.len_chars()
    df = df.select(
        "n",
        "odd",
        "sfx",
        hlen=pl.col("n").str.len_chars() - slen - 1,
        longer=(slen.fill_null(0) > 0) & (pl.col("n").str.len_chars() > slen + 1),
    ).with_columns(
        proper=~pl.col("odd")
        & pl.col("longer")
        & pl.col("n").str.ends_with(pl.lit(".") + pl.col("sfx"))
    )
    head = pl.col("n").str.head(pl.col("hlen"))
    first = pl.col("n").str.splitn(".", 2).struct.field("field_0")
    df = df.with_columns(
        label=pl.when(pl.col("proper"))
        .then(head.str.extract(r"([^.]*)$", 1))
        .when(pl.col("odd") & pl.col("longer"))
        .then(head)
        .otherwise(first)
        .fill_null("")
    )
    return df.select(
        icann_domain=pl.when(pl.col("proper"))
        .then(pl.col("label") + "." + pl.col("sfx"))
        .otherwise(pl.col("n")),
        label="label",
        suffix=pl.when(pl.col("proper")).then(pl.col("sfx")).otherwise(pl.lit("")),
    )


# A clean name: labels of printable ASCII other than dots and capitals, one dot apart.
_CLEAN_NAME = r"^[!-\-/-@\[-~]+(\.[!-\-/-@\[-~]+)*$"


@lru_cache(maxsize=1)
def _private_rule_parents() -> tuple[pl.Series, pl.Series]:
    """Where the PSL's private section can move a registered domain.

    Returns ``(parents, suffixes)``: the ICANN registered domains under which
    a private rule sits (``github.io`` for ``github.io``, ``amazonaws.com``
    for ``*.compute.amazonaws.com``; exceptions and wildcards by the rule's
    labels), and the private rules that are ICANN public suffixes themselves.
    A name under neither has the same registered domain in both sections.
    """
    ref = resources.files("publicsuffixlist") / "public_suffix_list.dat"
    text = ref.read_text(encoding="utf-8")
    body = text.split("===BEGIN PRIVATE DOMAINS===", 1)[-1].split("===END PRIVATE DOMAINS===")[0]
    rules = []
    for line in body.splitlines():
        rule = line.strip().split(" ", 1)[0].lstrip("!")
        if not rule or rule.startswith("//"):
            continue
        labels = [_ace(x) for x in rule.lower().split(".")]
        while labels and labels[0] == "*":
            labels = labels[1:]
        if labels:
            rules.append(".".join(labels))
    icann = registered_labels(pl.Series(rules, dtype=pl.String))
    proper = icann["suffix"] != ""
    parents = icann.filter(proper)["icann_domain"].unique().sort()
    suffixes = pl.Series(rules, dtype=pl.String).filter(~proper).unique().sort()
    return parents, suffixes


def private_registered_domains(names: pl.Series, icann: pl.DataFrame) -> pl.Series:
    """Registered domains with the PSL's private section (``foo.github.io``), from the ICANN split.

    ``icann`` is :func:`registered_labels` of ``names`` (``icann_domain`` and
    ``suffix``).  The result equals ``DomainSplitter(private_suffixes=True)
    .split_series(names)["registered_domain"]``, but only names the private
    section can change (under a private rule's ICANN parent,
    :func:`_private_rule_parents`) and names that are not clean (capitals,
    empty labels, bytes outside printable ASCII, no label left of an ICANN
    suffix) are split again; for the others the two sections agree, so the
    ICANN registered domain is the answer.  ``dnsieve domains score`` needs
    both splits, and this saves it the second pass over every name.
    """
    parents, suffixes = _private_rule_parents()
    s = names.cast(pl.String)
    fast = (
        pl.DataFrame({"n": s, "d": icann["icann_domain"], "x": icann["suffix"]})
        .select(
            pl.col("n").str.contains(_CLEAN_NAME).fill_null(False)
            & (pl.col("x") != "")
            & ~pl.col("d").is_in(parents.implode())
            & ~pl.col("x").is_in(suffixes.implode())
        )
        .to_series()
    )
    out = icann["icann_domain"].alias("registered_domain")
    slow = np.flatnonzero(~fast.to_numpy())
    if slow.size:
        again = DomainSplitter().split_series(s.gather(slow))["registered_domain"]
        out = out.scatter(slow, again)
    return out


def score_names(
    names: pl.Series | Sequence[str],
    model: DgaModel | None = None,
    labels: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """DGA probability and lexical features for each name (query or registered domain).

    Returns one row per input: ``icann_domain``, ``label``,
    ``dga_probability`` and the :data:`dnsieve.lexical.FEATURE_NAMES`.
    Each distinct label is scored once.  ``labels``, when given, is the
    names' :func:`registered_labels` already computed by the caller.
    """
    m = model or default_model()
    s = names if isinstance(names, pl.Series) else pl.Series("name", list(names), dtype=pl.String)
    if labels is None:
        labels = registered_labels(s)
    elif labels.height != s.len():
        raise ValueError(f"labels has {labels.height} rows for {s.len()} names")
    labels = labels.select("icann_domain", "label")
    # Distinct labels in order of first appearance (the order fixes model_features'
    # blocks), and each row's index among them: a dictionary encoding, no join.
    arr = labels["label"].to_arrow()
    coded = None if arr.null_count else pac.dictionary_encode(arr)
    uniq = (
        labels["label"].unique(maintain_order=True)
        if coded is None
        else pl.Series("label", coded.dictionary, dtype=pl.String)
    )
    feats, mat = model_features(uniq, m.tables, m.max_len)
    prob = m.calibrate(m.margin_from_features(mat))
    table = pl.DataFrame(
        [pl.Series("label", uniq), pl.Series("dga_probability", prob)]
        + [pl.Series(k, feats[k]) for k in lexical.FEATURE_NAMES]
    )
    if coded is None:  # null labels match nothing, as in a join
        return labels.join(table, on="label", how="left", maintain_order="left")
    rows = table.drop("label").gather(pl.Series(coded.indices, dtype=pl.UInt32))
    return pl.concat([labels, rows], how="horizontal")


@register
class DgaDetector(Detector):
    """Registered domains whose label looks algorithmically generated."""

    name: ClassVar[str] = "dga"
    techniques: ClassVar[tuple[str, ...]] = ("T1568.002",)
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
        from dnsieve.detectors.frames import scored_period, window_columns

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
        # Underscores never occur in registrable names (``_vlmcs._tcp``, ``_ldap``):
        # service labels, not domains anyone registered.
        keep = keep & ~pl.col("label").str.contains("_", literal=True)
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
            # Most failing client first (ties by address); groups keep this order.
            .sort(["client_dga_nx", "client"], descending=[True, False])
            .group_by([*key, "rd"])
            .agg(
                client_dga_nxdomains=pl.col("client_dga_nx").max(),
                context_clients=pl.col("client")
                .filter(pl.col("client_dga_nx") > 0)
                .head(self.max_names),
                top_clients=pl.col("client")
                .filter(pl.col("client") != "")
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
        from dnsieve.detectors.frames import example_events

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


def _span(r: dict[str, Any]) -> str:
    secs = (r["window_end"] - r["window_start"]).total_seconds()
    if secs >= 3600:
        return f"{secs / 3600:.3g} h"
    return f"{secs / 60:.3g} min"


def _evidence(r: dict[str, Any]) -> dict[str, Any]:
    p = float(r["dga_probability"])
    ctx_clients = list(r["context_clients"] or [])
    n_ctx = int(r["context"])
    nx, q, n_cl = int(r["nxdomain"]), int(r["queries"]), int(r["clients"])
    span = _span(r)
    if ctx_clients and n_ctx > 0:
        host = ctx_clients[0]
        reason = (
            f"{host} got NXDOMAIN answers for {n_ctx + (1 if nx else 0)} DGA-like domains "
            f"in {span}, {r['rd']} among them (DGA probability {p:.2f})"
        )
        if len(ctx_clients) > 1:
            reason += f"; {len(ctx_clients) - 1} other host(s) too"
    else:
        reason = (
            f"{r['rd']} looks machine-generated (DGA probability {p:.2f}); "
            f"{q} quer{'y' if q == 1 else 'ies'} ({nx} NXDOMAIN) from {n_cl} host(s) in {span}"
        )
    clients = list(dict.fromkeys(ctx_clients + list(r["top_clients"] or [])))[:5]
    return {
        "reason": reason,
        "clients": clients,
        "dga_probability": round(p, 4),
        "scored_label": r["label"],
        "queries": q,
        "nxdomain": nx,
        "distinct_clients": n_cl,
        "client_dga_nxdomains": int(r["context"]),
        "context_clients": list(r["context_clients"] or []),
        "query_names": list(r["query_names"] or []),
        "features": {k: _round(r[k]) for k in lexical.FEATURE_NAMES},
    }
