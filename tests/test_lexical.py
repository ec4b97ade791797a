"""Lexical label features: table-driven values and Hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsieve import lexical

ZERO_TABLE = np.zeros((lexical.N_SYMBOLS, lexical.N_SYMBOLS))


@pytest.mark.parametrize(
    ("label", "feature", "expected"),
    [
        ("aaaa", "entropy", 0.0),
        ("abcd", "entropy", 2.0),
        ("", "entropy", 0.0),
        ("google", "length", 6),
        ("x7k2q9zt", "digit_ratio", 0.375),
        ("aeiou", "vowel_ratio", 1.0),
        ("bcdfg", "consonant_ratio", 1.0),
        ("a-b_c", "hyphen_ratio", 0.4),
        ("strngth", "max_consonant_run", 7),
        ("ab12345c", "max_digit_run", 5),
        ("a1b2", "switch_ratio", 1.0),
        ("abc12", "switch_ratio", 0.25),
        ("abab", "distinct_ratio", 0.5),
        ("a\\x00b", "other_ratio", 1 / 6),
        ("mfrggzdfmztwq2lknnwg23tpobyxe43u", "base32_likeness", 1.0),
        ("wikipedia", "hex_likeness", 0.0),
    ],
)
def test_feature_table(label: str, feature: str, expected: float) -> None:
    got = lexical.label_features([label], bigram_table=ZERO_TABLE)[feature].item()
    assert got == pytest.approx(expected, abs=1e-9)


def test_words_are_less_encoded_than_random() -> None:
    f = lexical.label_features(["dictionary", "q8z3k1x7v2m9"], bigram_table=ZERO_TABLE)
    assert f["base32_likeness"][0] < f["base32_likeness"][1]
    assert f["base64_likeness"][0] < f["base64_likeness"][1]
    assert lexical.hex_likeness(["7a3101a869a8e4db184955000277756596"])[0] > 0.95


def test_bigram_logp_prefers_trained_language() -> None:
    table = lexical.bigram_table_from_labels(
        ["google", "facebook", "wikipedia", "amazon", "youtube"] * 20
    )
    lp = lexical.bigram_logp(["goobook", "xqzvkw"], table)
    assert lp[0] > lp[1]


def test_shipped_bigram_table_separates_real_names() -> None:
    lp = lexical.bigram_logp(["weather", "newspaper", "xjqzvkwpt", "zzqxjv"])
    assert min(lp[:2]) > max(lp[2:])


def test_inputs_series_nulls_and_order() -> None:
    s = pl.Series(["abc", None, "zz9", ""], dtype=pl.String)
    f = lexical.label_features(s, bigram_table=ZERO_TABLE)
    assert f.height == 4
    assert f["length"].to_list() == [3, 0, 3, 0]
    # Output follows input order even though blocks are grouped by length.
    long = ["a" * 40, "b", "c" * 20]
    assert lexical.label_lengths(long).tolist() == [40, 1, 20]
    assert lexical.label_features(long, bigram_table=ZERO_TABLE)["length"].to_list() == [40, 1, 20]


def test_feature_arrays_match_single_functions() -> None:
    labels = ["google", "x7k2q9zt", "a-b", ""]
    f = lexical.label_features(labels, bigram_table=ZERO_TABLE)
    np.testing.assert_allclose(lexical.shannon_entropy(labels), f["entropy"].to_numpy())
    np.testing.assert_allclose(lexical.hex_likeness(labels), f["hex_likeness"].to_numpy())
    r = lexical.char_class_ratios(labels)
    np.testing.assert_allclose(r["digit_ratio"].to_numpy(), f["digit_ratio"].to_numpy())


def test_hashed_ngrams_counts_and_range() -> None:
    enc = lexical.encode_labels(["ab", "", "abc"])
    idx, valid = lexical.hashed_ngrams(enc, 1, 4, 10)
    # "^ab$" has 4 unigrams, 3 bigrams, 2 trigrams, 1 four-gram.
    assert valid.sum(axis=1).tolist() == [10, 0, 14]
    assert idx.min() >= 0 and idx.max() < 1 << 10
    # The same n-grams hash to the same buckets in different rows.
    assert set(idx[0][valid[0]]) <= set(idx[2][valid[2]]) | set(idx[0][valid[0]])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=80)), max_size=20))
def test_properties_hostile_strings(labels: list[str | None]) -> None:
    f = lexical.label_features(labels, bigram_table=ZERO_TABLE)
    assert f.height == len(labels)
    for name in lexical.FEATURE_NAMES:
        col = f[name].cast(pl.Float64).to_numpy()
        assert np.all(np.isfinite(col)), name
    for name in ("digit_ratio", "vowel_ratio", "consonant_ratio", "hyphen_ratio", "other_ratio",
                 "distinct_ratio", "switch_ratio", "hex_likeness", "base32_likeness", "base64_likeness"):  # fmt: skip
        col = f[name].to_numpy()
        assert np.all((col >= 0) & (col <= 1 + 1e-12)), name
    ent = f["entropy"].to_numpy()
    lengths = f["length"].to_numpy()
    assert np.all(ent <= np.log2(np.maximum(np.minimum(lengths, 64), 1)) + 1e-9)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=60))
def test_entropy_matches_python_reference(label: str) -> None:
    counts = {c: label.count(c) for c in set(label)}
    ref = -sum(c / len(label) * math.log2(c / len(label)) for c in counts.values())
    assert lexical.shannon_entropy([label])[0] == pytest.approx(ref, abs=1e-9)


def test_ngram_codes_frame_labels() -> None:
    enc = lexical.encode_labels(["ab", ""])
    codes, valid = lexical.ngram_codes(enc, 3, lead=2)
    b, a_, b_ = lexical.BOUNDARY, 0, 1
    n = lexical.N_SYMBOLS
    want = [(b * n + b) * n + a_, (b * n + a_) * n + b_, (a_ * n + b_) * n + b]
    assert codes[0][valid[0]].tolist() == want
    assert not valid[1].any()


def test_ngram_logp_table_prefers_seen_text() -> None:
    table = lexical.ngram_logp_table(["weather", "newspaper", "together"] * 20, order=3)
    probs = np.exp(table.astype(np.float64)).reshape(-1, lexical.N_SYMBOLS)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    enc = lexical.encode_labels(["weather", "xqzvkjw"])
    mean, low_min, low_share = lexical.ngram_logp_stats(enc, table, 3)
    assert mean[0] > mean[1] and low_min[0] > low_min[1] and low_share[0] < low_share[1]


def test_ngram_coverage_bitset_matches_search() -> None:
    vocab = lexical.frequent_ngrams(["google", "goodle", "googly", "zz"], 4, min_labels=2)
    enc = lexical.encode_labels(["google", "qxzv", "", "googoo"])
    slow = lexical.ngram_coverage(enc, vocab, 4)
    fast = lexical.ngram_coverage(enc, vocab, 4, lexical.ngram_bitset(vocab, 4))
    np.testing.assert_allclose(slow, fast)
    assert slow[0][0] > 0.5 and slow[0][1] == 0.0 and slow[0][2] == 0.0
