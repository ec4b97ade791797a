"""Rule zero of the ``dnsieve domains score`` speed work: the output does not move.

``score_table`` (registered domain, DGA probability, lexical features and
look-alike match of every name) was recorded on two name sets *before* any
optimisation: a digest of each output column, so a change reports the column
that moved.

* ``_typo_names``: in-repo only.  Brands of the shipped reference
  (``dnsieve/data/brands.txt``) with one or two edits (deletion, insertion,
  substitution, adjacent transposition), digit homoglyphs, a brand beside a
  lure word or on an abused TLD, and hostile spellings (upper case, trailing
  dot, escaped bytes, empty labels): every look-alike method and the edit
  limit's boundaries, generated with a fixed seed.
* ``_real_names`` (``../shared/data``, read in place): Tranco-like top
  domains, OpenDNS random domains, ThreatFox IOC domains (phishing among
  them) and two DGA corpora, as registered domains and as query names.
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsieve.domainscore import score_table

_LURES = ("login", "secure", "verify", "support", "account")
_TLDS = ("com", "net", "xyz", "top", "co.uk", "github.io", "info", "de")


def _brands() -> list[str]:
    text = (resources.files("dnsieve") / "data" / "brands.txt").read_text("utf-8")
    return [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]


def _edit(rng: np.random.Generator, s: str) -> str:
    """One random edit of ``s``: delete, insert, substitute or swap adjacent letters."""
    if len(s) < 2:
        return s + "a"
    i = int(rng.integers(0, len(s) - 1))
    kind = int(rng.integers(0, 4))
    c = "abcdefghijklmnopqrstuvwxyz0123456789-"[int(rng.integers(0, 37))]
    if kind == 0:
        return s[:i] + s[i + 1 :]
    if kind == 1:
        return s[:i] + c + s[i:]
    if kind == 2:
        return s[:i] + c + s[i + 1 :]
    return s[:i] + s[i + 1] + s[i] + s[i + 2 :]


def _typo_names() -> list[str]:
    rng = np.random.default_rng(14)
    brands = _brands()[:3000]
    out: list[str] = []
    for k, dom in enumerate(brands):
        label, _, sfx = dom.partition(".")
        tld = _TLDS[k % len(_TLDS)]
        out.append(f"{_edit(rng, label)}.{sfx}")
        out.append(f"{_edit(rng, _edit(rng, label))}.{tld}")
        if k % 3 == 0:
            out.append(label.replace("o", "0").replace("l", "1").replace("e", "3") + "." + sfx)
            out.append(f"{label}-{_LURES[k % len(_LURES)]}.{tld}")
            out.append(f"www.{label}.{_TLDS[(k + 3) % len(_TLDS)]}")
        if k % 50 == 0:
            out.append(f"Mail.{label.upper()}.{sfx}.")
            out.append(f"{label}..{sfx}")
            out.append(f"{label}\\x00x.{sfx}")
            out.append(f"xn--{label}-4ve.{sfx}")
            out.append(label)
    return out


def _real_names(shared: Path) -> list[str]:
    d = shared / "domains"
    top = pl.read_csv(
        d / "benign" / "tranco_like_top50k_2025-02_kmikholap.csv",
        has_header=False,
        new_columns=["rank", "domain"],
    )["domain"]
    parts = [
        top.head(4000),
        top.gather_every(10, offset=4000),
        pl.read_csv(d / "threatfox" / "train.csv")["input"].gather_every(5),
        pl.read_csv(d / "dga" / "baderj_dev_families.csv")["domain"].gather_every(40),
        pl.read_csv(d / "dga" / "andrewaeva_families.csv")["domain"].gather_every(25),
        pl.Series((d / "benign" / "opendns-random-domains.txt").read_text().split()).head(3000),
    ]
    base = pl.concat([p.cast(pl.String) for p in parts])
    query = "h" + pl.Series(np.arange(base.len()) % 13).cast(pl.String) + "." + base
    return pl.concat([base, query.gather_every(3)]).to_list()


def _digests(table: pl.DataFrame) -> dict[str, str]:
    return {
        c: hashlib.sha256(table.select(c).write_csv().encode()).hexdigest()[:16]
        for c in table.columns
    }


# Recorded on b0c3c4a, before the issue 14 domains-score work.
_TYPO_DIGESTS: dict[str, str] = {
    "domain": "7fed68271a9912bd",
    "registered_domain": "e24ffeeb327a0957",
    "scored_label": "6865d32a8d8c8190",
    "dga_probability": "e9788f9de3e7d5fc",
    "length": "927dfabf4c663063",
    "entropy": "a574aab27357d647",
    "digit_ratio": "c8d4511e4fb1236b",
    "vowel_ratio": "deea454c12a5fdf7",
    "consonant_ratio": "961223cb97acce69",
    "hyphen_ratio": "eba22f4a0df9a39f",
    "other_ratio": "1adebeb580f19120",
    "max_consonant_run": "174056044b98b7a1",
    "max_digit_run": "1fc3458b67953516",
    "distinct_ratio": "96fecff98c55dca3",
    "switch_ratio": "3dcaad1b95c14eeb",
    "hex_likeness": "f088a9a4e89443c9",
    "base32_likeness": "92679be4e1c5182c",
    "base64_likeness": "1a92b2d6263a5af7",
    "bigram_logp": "da29ce7f67c45b2e",
    "lookalike_brand": "254162b2cf549f19",
    "lookalike_method": "80a1443d6a4cc8fc",
    "lookalike_distance": "7bd29699958911f9",
}
_REAL_DIGESTS: dict[str, str] = {
    "domain": "caa7aa75fa7fee39",
    "registered_domain": "5edb22b8e3b7f4a3",
    "scored_label": "f2c34839909b9096",
    "dga_probability": "3966f5b40985e427",
    "length": "131953e4405b7923",
    "entropy": "ee1960f2349a903a",
    "digit_ratio": "357e4cfbda81ddf8",
    "vowel_ratio": "0e74e1528ef6a458",
    "consonant_ratio": "ca51fee179992c18",
    "hyphen_ratio": "e3c51bdc67b27570",
    "other_ratio": "2956c54bcbb1299a",
    "max_consonant_run": "ead19200832190e1",
    "max_digit_run": "b1a464527dbc3916",
    "distinct_ratio": "6964881383df5dad",
    "switch_ratio": "7eb353663797afaa",
    "hex_likeness": "add614cdd2ec14f7",
    "base32_likeness": "6088af702cd2f9d8",
    "base64_likeness": "e6db2a7524a982df",
    "bigram_logp": "28e8984c771e0ee9",
    "lookalike_brand": "015ccedff0e2fc41",
    "lookalike_method": "76d02fa3cf3dba32",
    "lookalike_distance": "2adc3d7daa999aba",
}


def test_score_table_unchanged_on_brand_typos() -> None:
    names = _typo_names()
    table = score_table(names)
    assert table.height == len(names)
    # The set exercises every method, so the digests pin each one.
    assert set(table["lookalike_method"].drop_nulls()) == {
        "homoglyph",
        "edit_distance",
        "brand_in_label",
    }
    assert _digests(table) == _TYPO_DIGESTS


@pytest.mark.shared
def test_score_table_unchanged_on_real_names(shared_data: Path) -> None:
    names = _real_names(shared_data)
    table = score_table(names)
    assert table.height == len(names) > 20_000
    assert _digests(table) == _REAL_DIGESTS


def _read_reference(data: bytes, max_line: int = 64 * 1024) -> tuple[list[str], int]:
    """The line reader as it was: every field through escape_name and the limit check."""
    from dnsieve.domains import escape_name
    from dnsieve.ingest.base import is_name_too_long

    names, skipped = [], 0
    for raw in io.BytesIO(data):
        if len(raw) > max_line:
            skipped += 1
            continue
        line = raw.strip()
        if not line or line.startswith(b"#"):
            continue
        field = line.split()[0]
        if len(field) > 253 * 4:
            skipped += 1
            continue
        name = escape_name(field)
        if not name or name == "." or is_name_too_long(name):
            skipped += 1
            continue
        names.append(name)
    return names, skipped


_LINE = st.one_of(
    st.binary(max_size=80),
    st.from_regex(rb"\A[ \t]*[A-Za-z0-9.\-_]{0,70}(\.[a-z]{2,5})?\.?([ \t]+\S*)?\Z"),
    st.sampled_from([b"#c", b".", b"..", b"a" * 64 + b".com", b"a" * 63 + b".com", b"x\xff.com"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=30), st.booleans(), st.sampled_from([1, 7, 64, 1 << 20]))
def test_read_domain_lines_is_the_escaping_reader(
    lines: list[bytes], last_newline: bool, block: int
) -> None:
    """The block reader (fast path for plain blocks) reads what a per-line escaping
    reader does, at any block size (lines cut across blocks) and with a short
    line limit (over-long lines, open across blocks, dropped and counted once)."""
    from dnsieve import domainscore as domains

    data = b"\n".join(x.replace(b"\n", b" ") for x in lines) + (b"\n" if last_newline else b"")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(domains, "_BLOCK", block)
        assert domains.read_domain_lines(io.BytesIO(data)) == _read_reference(data)
        mp.setattr(domains, "_MAX_LINE", 40)
        assert domains.read_domain_lines(io.BytesIO(data)) == _read_reference(data, 40)
