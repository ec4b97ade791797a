"""Rule zero of the DGA speed work: the fast paths give the same probabilities.

The tree ensemble is scored with leaf bitmasks (``_LeafMasks``); these tests
compare it with a plain node-by-node walk of the stored arrays (``left``,
``right``, ``threshold`` as trained) on real names and on generated feature
rows full of threshold ties.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pytest

from dnsieve.detectors.dga import (
    MODEL_FEATURES,
    DgaModel,
    Trees,
    _LeafMasks,
    default_model,
    model_features,
    registered_labels,
    score_names,
)
from dnsieve.domains import DomainSplitter


def _walk_reference(c: Trees, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each tree walked from its root with the trained arrays, tree by tree in order."""
    rows = np.arange(x.shape[0])
    out = np.full(x.shape[0], c.baseline, dtype=np.float64)
    for t in range(c.feature.shape[0]):
        node = np.zeros(x.shape[0], dtype=np.int64)
        for _ in range(c.depth):
            go_left = x[rows, c.feature[t, node]] <= c.threshold[t, node]
            node = np.where(go_left, c.left[t, node], c.right[t, node]).astype(np.int64)
        out += c.value[t, node].astype(np.float64)
    return out


def _reference_proba(m: DgaModel, names: pl.Series) -> npt.NDArray[np.float64]:
    labels = registered_labels(names)["label"]
    # Distinct labels, as score_names featurises them: ``trigram_mean`` sums float32
    # log-probabilities along the padded row, so its last bits follow the block's width.
    uniq = labels.unique(maintain_order=True)
    _f, mat = model_features(uniq, m.tables, m.max_len)
    z = (mat - m.feature_mean) / m.feature_scale
    assert isinstance(m.classifier, Trees)
    prob = pl.DataFrame({"label": uniq, "p": m.calibrate(_walk_reference(m.classifier, z))})
    return (
        labels.to_frame().join(prob, on="label", how="left", maintain_order="left")["p"].to_numpy()
    )


def _trees() -> Trees:
    c = default_model().classifier
    assert isinstance(c, Trees)
    return c


def test_leaf_masks_match_walk_with_ties() -> None:
    c = _trees()
    rng = np.random.default_rng(7)
    x = rng.normal(size=(20_000, len(MODEL_FEATURES)))
    # Put many values exactly on thresholds (x <= threshold must go left).
    leaf = np.isinf(c.threshold)
    for j in range(len(MODEL_FEATURES)):
        thr = c.threshold[(c.feature == j) & ~leaf]
        if thr.size:
            pick = rng.random(x.shape[0]) < 0.5
            x[pick, j] = rng.choice(thr, size=int(pick.sum()))
    assert c._masks() is not None  # the shipped model takes the bitmask path
    np.testing.assert_array_equal(c.margin(x), _walk_reference(c, x))
    # The level walk (fallback for deep trees) agrees too.
    flat = c._flat()
    xb = np.stack(
        [np.searchsorted(cuts, x[:, j], side="left") for j, cuts in enumerate(flat.cuts)]
    ).astype(np.uint8)
    walked = c._walk(flat, xb, np.full(x.shape[0], c.baseline))
    assert np.max(np.abs(walked - c.margin(x))) <= 1e-12


def test_deep_trees_fall_back_to_walk() -> None:
    # One tree of depth 6 (64 leaves): too many leaves for 32-bit masks.
    depth, width = 6, 127
    feature = np.zeros((1, width), dtype=np.int16)
    threshold = np.full((1, width), np.inf)
    left = np.arange(width, dtype=np.int16)[None, :].copy()
    right = left.copy()
    for i in range(63):
        feature[0, i] = i % 3
        threshold[0, i] = (i % 7) / 7 - 0.5
        left[0, i], right[0, i] = 2 * i + 1, 2 * i + 2
    value = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    c = Trees(feature, threshold, left, right, value, depth, 0.25)
    assert _LeafMasks.build(c, c._flat().cuts) is None
    x = np.random.default_rng(0).normal(size=(3000, 3))
    np.testing.assert_allclose(c.margin(x), _walk_reference(c, x), rtol=0, atol=1e-12)


@pytest.mark.shared
def test_probabilities_identical_on_real_names(shared_data: Path) -> None:
    d = shared_data / "domains"
    names = pl.concat(
        [
            pl.read_csv(
                d / "benign" / "tranco_like_top50k_2025-02_kmikholap.csv",
                has_header=False,
                new_columns=["rank", "domain"],
            )["domain"],
            pl.read_csv(d / "dga" / "andrewaeva_families.csv")["domain"],
            pl.read_csv(d / "dga" / "baderj_dev_families.csv")["domain"],
        ]
    )
    assert names.len() >= 50_000
    m = default_model()
    got = score_names(names, m)["dga_probability"].to_numpy()
    want = _reference_proba(m, names)
    assert np.max(np.abs(got - want)) <= 1e-12
    # Both classes are really in there: the comparison covers both ends of the scale.
    assert (got > 0.9).sum() > 10_000 and (got < 0.1).sum() > 10_000


@pytest.mark.shared
@pytest.mark.parametrize("private", [True, False])
def test_split_series_matches_per_name_split_on_real_names(
    shared_data: Path, private: bool
) -> None:
    d = shared_data / "domains"
    base = pl.concat(
        [
            pl.read_csv(
                d / "benign" / "tranco_like_top50k_2025-02_kmikholap.csv",
                has_header=False,
                new_columns=["rank", "domain"],
            )["domain"],
            pl.read_csv(d / "dga" / "baderj_dev_families.csv")["domain"],
        ]
    )
    # As query names too: a host label in front, some upper case, a trailing dot.
    names = pl.concat([base, "h7." + base.head(20_000), base.head(5_000).str.to_uppercase() + "."])
    got = DomainSplitter(private_suffixes=private).split_series(names).rows()
    exact = DomainSplitter(private_suffixes=private)
    assert got == [exact.split(n) for n in names.to_list()]


def _rule_names() -> list[str | None]:
    """Names built from every rule of the bundled PSL (both sections), plus odd ones."""
    from importlib import resources

    text = (resources.files("publicsuffixlist") / "public_suffix_list.dat").read_text("utf-8")
    names: list[str | None] = [None]
    for line in text.splitlines():
        rule = line.strip().split(" ", 1)[0]
        if not rule or rule.startswith("//"):
            continue
        labels = rule.lstrip("!").replace("*", "w").split(".")
        try:
            rule = ".".join(x.encode("idna").decode("ascii") for x in labels)
        except UnicodeError:
            rule = ".".join(labels)
        names += [rule, f"a.{rule}", f"b.a.{rule}", f"c.b.a.{rule}", "x." + rule.split(".", 1)[-1]]
        names.append(f"Q.Ab.{rule.upper()}")
    names += [
        "", ".", "..", "a..b.com", ".com", "com.", "wpad", "www.ck", "x.www.ck", "a\\x00b.com",
        "é.com", "a.-.com", "a.b.unknowntld", "a.city.kawasaki.jp", "WWW.Example.CO.UK", "x.",
    ]  # fmt: skip
    return names


def test_private_registered_domains_equal_the_private_split_on_every_rule() -> None:
    """The registered domain taken from the ICANN split is the private-section split's."""
    from dnsieve.detectors.dga import private_registered_domains

    names = pl.Series(_rule_names(), dtype=pl.String)
    want = DomainSplitter(private_suffixes=True).split_series(names)["registered_domain"]
    got = private_registered_domains(names, registered_labels(names))
    assert got.to_list() == want.to_list()
    # Most rule-built names are clean and outside any private rule: the fast path is used.
    assert (got == registered_labels(names)["icann_domain"]).sum() > names.len() // 3


@pytest.mark.shared
def test_private_registered_domains_on_real_names(shared_data: Path) -> None:
    from dnsieve.detectors.dga import private_registered_domains

    d = shared_data / "domains"
    base = pl.concat(
        [
            pl.read_csv(
                d / "benign" / "tranco_like_top50k_2025-02_kmikholap.csv",
                has_header=False,
                new_columns=["rank", "domain"],
            )["domain"],
            pl.read_csv(d / "threatfox" / "train.csv")["input"],
        ]
    )
    names = pl.concat([base, "h7." + base.head(20_000), base.head(5_000).str.to_uppercase() + "."])
    want = DomainSplitter(private_suffixes=True).split_series(names)["registered_domain"]
    assert private_registered_domains(names, registered_labels(names)).to_list() == want.to_list()
