"""Look-alike domains: edit distance, homoglyphs, punycode, brand + lure."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsieve.detectors import get
from dnsieve.detectors.base import DetectContext
from dnsieve.detectors.lookalike import damerau_levenshtein, match_names, popular_domains, skeleton


@pytest.mark.parametrize(
    ("name", "brand", "method"),
    [
        ("paypa1.com", "paypal.com", "homoglyph"),
        ("xn--pypal-4ve.com", "paypal.com", "homoglyph"),
        ("faceb00k.com", "facebook.com", "homoglyph"),
        ("rnicrosoft.com", "microsoft.com", "homoglyph"),
        ("micosoft.com", "microsoft.com", "edit_distance"),
        ("microsoft-login.top", "microsoft.com", "brand_in_label"),
        ("paypal-secure-login.xyz", "paypal.com", "brand_in_label"),
        ("login.microsoft-support.top", "microsoft.com", "brand_in_label"),
    ],
)
def test_flagged(name: str, brand: str, method: str) -> None:
    row = match_names(pl.Series([name])).row(0, named=True)
    assert (row["lookalike_brand"], row["lookalike_method"]) == (brand, method)


@pytest.mark.parametrize(
    "name",
    ["microsoft.com", "paypal.com", "www.google.com", "wikipedia.org", "example.com", "amazon.de"],
)
def test_not_flagged(name: str) -> None:
    assert match_names(pl.Series([name]))["lookalike_brand"].item() is None


def test_popular_domains_never_flag_themselves() -> None:
    pop = sorted(popular_domains())
    assert len(pop) > 9000
    assert match_names(pl.Series(pop))["lookalike_brand"].null_count() == len(pop)


def test_distance_and_skeleton() -> None:
    assert damerau_levenshtein("paypal", "paypal") == 0
    assert damerau_levenshtein("paypal", "pyapal") == 1
    assert damerau_levenshtein("abc", "xyzabc", limit=2) == 3
    assert skeleton("xn--80ak6aa92e") != ""  # Cyrillic IDN decodes


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=40)), max_size=10))
def test_hostile_names_never_crash(names: list[str | None]) -> None:
    out = match_names(pl.Series(names, dtype=pl.String))
    assert out.height == len(names)


@pytest.mark.shared
def test_benign_names_rarely_flagged(shared_data: Path) -> None:
    legit = pl.read_csv(shared_data / "domains" / "threatfox" / "dev.csv").filter(
        pl.col("label") == "legit"
    )
    sample = legit["input"].head(3000)
    flagged = match_names(sample)["lookalike_brand"].is_not_null().mean()
    assert flagged is not None and flagged < 0.01


def test_detector_example() -> None:
    det = get("lookalike")()
    data = det.example(seed=1)
    t0 = data["ts"].min()
    out = det.score(data, DetectContext(start=t0, end=t0 + timedelta(hours=1)))
    assert set(out["entity"]) <= {"paypa1.com", "xn--pypal-4ve.com", "microsoft-support.top"}
    assert out.height >= 2
    ev = json.loads(out["evidence"][0])
    assert {"brand", "method", "distance"} <= set(ev)


def test_lookalike_that_never_resolves_keeps_half_its_score() -> None:
    """A typo that only ever got NXDOMAIN serves no lure: half the score, below the floor,
    said in the reason; the same name answered (or with unknown rcodes) keeps its score."""
    det = get("lookalike")()
    data = det.example(seed=1)
    t0 = data["ts"].min()
    ctx = DetectContext(start=t0, end=t0 + timedelta(hours=1))  # type: ignore[arg-type,operator]
    typo = pl.col("registered_domain") == "paypa1.com"

    def scored(frame: pl.DataFrame) -> dict[str, object]:
        out = det.score(frame, ctx).filter(pl.col("entity") == "paypa1.com")
        assert out.height == 1
        return {"score": out["score"][0], **json.loads(out["evidence"][0])}

    answered = scored(data)
    nx = scored(
        data.with_columns(pl.when(typo).then(pl.lit("NXDOMAIN")).otherwise("rcode").alias("rcode"))
    )
    unknown = scored(data.with_columns(pl.when(typo).then(None).otherwise("rcode").alias("rcode")))
    assert answered["never_resolved"] is False and unknown["never_resolved"] is False
    assert nx["never_resolved"] is True
    assert nx["score"] == pytest.approx(0.5 * answered["score"])  # type: ignore[operator]
    assert unknown["score"] == answered["score"]
    assert nx["score"] < type(det).score_floor <= answered["score"]  # type: ignore[operator]
    assert str(nx["reason"]).endswith("it never resolved (NXDOMAIN)")
    assert answered["clients"] and str(answered["reason"]).startswith(
        "paypa1.com imitates paypal.com"
    )


def test_nearest_brand_is_the_brute_force_one() -> None:
    """The batched typo search finds exactly what comparing every brand would.

    Labels: one to three random edits (substitution, deletion, insertion,
    transposition) of the typo references, and random strings; the reference
    is :func:`damerau_levenshtein` against every brand within its limit, least
    distance then first brand.
    """
    import random

    from dnsieve.detectors.lookalike import brand_index

    idx = brand_index()
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    labels = []
    for brand in rng.sample(idx.edit_brands, 150):
        for _ in range(3):
            w = list(brand)
            for _ in range(rng.randint(1, 3)):
                i = rng.randrange(len(w))
                op = rng.randrange(4)
                if op == 0:
                    w[i] = rng.choice(letters)
                elif op == 1 and len(w) > 1:
                    del w[i]
                elif op == 2:
                    w.insert(i, rng.choice(letters))
                elif i + 1 < len(w):
                    w[i], w[i + 1] = w[i + 1], w[i]
            labels.append("".join(w))
    labels += ["".join(rng.choice(letters) for _ in range(rng.randint(4, 20))) for _ in range(300)]
    # Outside the character-set prefilter's ASCII fast path: non-ASCII letters
    # (one edit, in characters, from a brand), escapes, and over-long labels.
    labels += ["gööglemaps", "amazön", "yout\\x00be", "ﬁcebook", "é" * 12, "a" * 300, ""]
    want = []
    for label in labels:
        best = None
        for b in idx.edit_brands:
            limit = 2 if len(b) >= 10 else 1
            d = damerau_levenshtein(label, b, limit)
            if d <= limit and (best is None or (d, b) < best):
                best = (d, b)
        want.append(best)
    got = idx.nearest(labels)
    assert got == want
    assert sum(x is not None for x in got) > 100  # the edits mostly stay in reach


def test_popcount_fallback_counts_bits() -> None:
    """The SWAR popcount used before NumPy 2 agrees with counting bits one by one."""
    import numpy as np

    from dnsieve.detectors.lookalike import _popcount32, _popcount32_swar

    x = np.random.default_rng(3).integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32)
    x[:3] = [0, 0xFFFFFFFF, 0x80000001]
    want = np.array([bin(int(v)).count("1") for v in x])
    assert (_popcount32_swar(x) == want).all() and (_popcount32(x) == want).all()
