"""Look-alike domains: registered domains imitating popular brands (ARCHITECTURE §5).

The reference is ``dnsieve/data/brands.txt``: the OpenDNS top-10k domain list
(Apache-2.0, see ``dnsieve/data/README.md``).  Each reference domain gives a
*brand label* (the label left of its ICANN public suffix: ``paypal.com`` →
``paypal``).  A registered domain is a look-alike when its label

* ``homoglyph``: differs from a brand label but has the same *skeleton*
  (Unicode confusables from Cyrillic/Greek/Latin-with-diacritics folded to
  ASCII, punycode ``xn--`` labels decoded first, digits read as the letters
  they imitate: ``0→o 1→l 3→e 4→a 5→s 7→t 8→b``, ``i→l``, ``rn→m``, ``vv→w``);
* ``edit_distance``: is within Damerau–Levenshtein (optimal string alignment)
  distance 1 of a brand label of 6+ characters, or 2 of one of 10+
  characters, among the top ``edit_top`` (1000) reference domains (short
  labels and the long tail collide with too many real sites).  Only
  alphabetic brand labels take part (``a-msedge`` → ``c-msedge`` is
  infrastructure numbering, not imitation), and a brand plus trailing digits
  (``akadns6``) is not an edit-distance match;  Candidates come from a SymSpell-style deletion index, so a
  lookup costs a few dictionary probes instead of a scan of 10k brands;
* ``brand_in_label``: contains a brand label of 5+ characters from the top
  ``brand_in_label_top`` domains (``paypal-secure-login``) and either sits
  on a TLD commonly abused for phishing (``.xyz``, ``.top``...) or carries a
  lure word (login, secure, verify, support...).  A brand label exactly on an
  abused TLD (``paypal.xyz``) counts too.

A reference domain is never its own look-alike: names whose registered domain
or label is in the reference are skipped.

Scores: homoglyph 0.95, edit distance 1 0.85, brand in label 0.75, edit
distance 2 0.6 (the method's strength, not a probability).

**A look-alike is a threat when a host uses it** (issue 11).  The largest share
of false alerts came from typo noise (users mistyping popular names, answered
NXDOMAIN) and from ordinary names that happen to hold a brand word
(``dydiabrandunion.info``, ``journalapple.info``, ``maplemedia.info``): a
brand word embedded in a longer label on an abused TLD scored 0.9, the floor,
on one visit.  Two behavioural tests weigh the lexical strength:

* a look-alike that only ever got NXDOMAIN keeps half its score
  (``NXDOMAIN_FACTOR``): it serves no lure and no C2;
* a *brand-token coincidence* (:func:`coincidental`: a brand word inside a
  longer label, no lure word) keeps ``½ + ½·use`` of its score, where ``use``
  (:func:`use_evidence`) says how far its use stands out among the window's
  ordinary names: its clients, distinct query names and the lookups of its
  busiest client, each a population tail with a uniform prior
  (``(x + 1)/(N + 2)``, so a short capture's few names never make a
  behaviour look rare), Bonferroni over the three, tested together with the
  window's other hits; or a query type no browser asks for (SRV, TXT, SOA,
  MX, CNAME...: software, ``use = 1``).  Used like an ordinary name, it keeps
  half, below the floor; used by software (RogueRobin's
  ``symanteclive.download`` SRV/TXT lookups) or by many more hosts than
  ordinary names have (a phishing campaign), all of it.

The brand's own label on an abused TLD (``kaspersky.science``), a brand beside
a lure word, homoglyphs and typos keep their lexical strength.  The use
evidence is per window (causal); a distributed engine counts its statistics on
the cluster (:func:`use_counts`, ``use_``).
"""

from __future__ import annotations

import codecs
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pac

from dnsieve.detectors import register
from dnsieve.detectors.base import (
    DetectContext,
    Detector,
    EntityType,
    InputKind,
    anomaly_frame,
    empty_anomalies,
)

__all__ = [
    "ABUSED_TLDS",
    "BrandIndex",
    "LookalikeDetector",
    "LookalikeMatch",
    "brand_index",
    "damerau_levenshtein",
    "popular_domains",
    "skeleton",
]

#: Score of a popular brand's label inside (or as) a label on an abused TLD
#: (``symanteclive.download``, ``kaspersky.science``): as strong as a homoglyph.
BRAND_ON_ABUSED_TLD = 0.9

# TLDs over-represented in phishing/abuse reports (Interisle, Spamhaus top lists).
ABUSED_TLDS: frozenset[str] = frozenset(
    [
        "xyz",
        "science",
        "party",
        "trade",
        "accountant",
        "faith",
        "cricket",
        "top",
        "club",
        "online",
        "site",
        "icu",
        "buzz",
        "shop",
        "live",
        "cyou",
        "sbs",
        "click",
        "link",
        "work",
        "info",
        "tk",
        "ml",
        "ga",
        "cf",
        "gq",
        "rest",
        "bond",
        "cfd",
        "monster",
        "quest",
        "support",
        "store",
        "fun",
        "space",
        "website",
        "life",
        "lol",
        "mom",
        "pw",
        "cc",
        "ws",
        "su",
        "zip",
        "mov",
        "country",
        "stream",
        "download",
        "racing",
        "win",
        "bid",
        "loan",
        "men",
        "date",
        "gdn",
        "review",
    ]
)
LURE_WORDS: tuple[str, ...] = (
    "login", "logon", "signin", "secure", "security", "verify", "verification", "account",
    "support", "update", "billing", "payment", "wallet", "unlock", "recover", "helpdesk",
    "service", "auth", "confirm", "validate", "alert", "webscr", "customer",
)  # fmt: skip

# Compact confusables: Cyrillic, Greek and a few Latin letters that render like ASCII.
_CONFUSABLES: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "ԛ": "q", "ԝ": "w", "һ": "h", "ɡ": "g", "ӏ": "l", "ո": "n", "ս": "u", "ց": "g", "ь": "b",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "γ": "y", "μ": "u",
    # Latin look-alikes without a decomposition
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŀ": "l", "ß": "b", "æ": "ae", "œ": "oe",
    "ɑ": "a", "ɩ": "i", "ʟ": "l", "ɴ": "n", "ʀ": "r", "ꞵ": "b",
}  # fmt: skip
_LEET = {"0": "o", "1": "l", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "i": "l"}
_DIGIT_LEET = str.maketrans(_LEET)
_LEET_FROM, _LEET_TO = list(_LEET), list(_LEET.values())
_MULTI = (("rn", "m"), ("vv", "w"), ("cl", "d"))
_ESCAPE = re.compile(r"\\x([0-9a-f]{2})")


def _unicode_label(label: str) -> str:
    """Decode punycode (``xn--``) and ``\\xNN``-escaped UTF-8 into Unicode text."""
    if "\\x" in label:
        raw = _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), label).encode("latin-1", "replace")
        label = raw.decode("utf-8", "replace")
    if label.startswith("xn--"):
        try:
            label = codecs.decode(label.encode("ascii"), "idna")
        except (UnicodeError, ValueError):
            return label
    return label


def skeleton(label: str) -> str:
    """Fold a label to the ASCII string it visually imitates.

    >>> skeleton("paypa1"), skeleton("xn--pypal-4ve"), skeleton("rnicrosoft")
    ('paypal', 'paypal', 'mlcrosoft')
    """
    if label.isascii() and "\\x" not in label and not label.startswith("xn--"):
        # Plain ASCII: no confusable or combining character can occur, so the
        # fold is the digit/leet translation and the multi-letter pairs (the
        # same result as the general path below, without a per-character loop).
        s = label.lower().translate(_DIGIT_LEET)
        for a, b in _MULTI:
            s = s.replace(a, b)
        return s
    text = _unicode_label(label).lower()
    out = []
    for ch in text:
        if ch in _CONFUSABLES:
            out.append(_CONFUSABLES[ch])
            continue
        base = unicodedata.normalize("NFKD", ch)
        out.append("".join(c for c in base if not unicodedata.combining(c)))
    s = "".join(out).translate(_DIGIT_LEET)
    for a, b in _MULTI:
        s = s.replace(a, b)
    return s


def damerau_levenshtein(a: str, b: str, limit: int = 2) -> int:
    """Optimal-string-alignment distance, or ``limit + 1`` once it exceeds ``limit``.

    >>> damerau_levenshtein("paypal", "paypla"), damerau_levenshtein("google", "gogle")
    (1, 1)
    """
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
        if min(cur) > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[len(b)], limit + 1)


@dataclass(frozen=True)
class LookalikeMatch:
    """Why a label imitates a brand."""

    brand: str  # the imitated reference domain
    brand_label: str
    method: str  # homoglyph | edit_distance | brand_in_label
    distance: int
    score: float


class BrandIndex:
    """Reference brands with the lookup structures used by :meth:`match`."""

    def __init__(
        self, domains: list[str], brand_in_label_top: int = 2000, edit_top: int = 1000
    ) -> None:
        from dnsieve.detectors.dga import registered_labels

        self.domains = frozenset(domains)
        labels = registered_labels(pl.Series(domains, dtype=pl.String))["label"].to_list()
        self.label_to_domain: dict[str, str] = {}
        for d, lab in zip(domains, labels, strict=True):
            if lab and lab not in self.label_to_domain:
                self.label_to_domain[lab] = d
        self.skeletons: dict[str, str] = {}
        for lab in self.label_to_domain:
            # A brand that itself spells with digits (x1cdn, 1und1) is no reference
            # for digit-for-letter look-alikes: xicdn.net is not imitating x1cdn.com.
            if len(lab) >= 4 and lab.isalpha():
                self.skeletons.setdefault(skeleton(lab), lab)
        # Typo references: the top ``edit_top`` brands' own labels (ASCII letters,
        # at least 6), sorted so that the nearest brand's ties go to the first.
        edit = {
            lab
            for d, lab in zip(domains[:edit_top], labels[:edit_top], strict=True)
            if len(lab) >= 6
            and lab.isalpha()
            and lab.isascii()
            and d == self.label_to_domain.get(lab)
        }
        self.edit_brands: tuple[str, ...] = tuple(sorted(edit))
        self._edit_len = np.array([len(x) for x in self.edit_brands], dtype=np.int64)
        # Up to two edits for brands of 10 letters or more, one for shorter ones.
        self._edit_limit = np.where(self._edit_len >= 10, 2, 1)
        # The longest label any brand can reach, and each brand's character set.
        self._reach = int(self._edit_len.max(initial=0)) + 2
        brands = pa.array(self.edit_brands, type=pa.large_string())
        self._edit_sets = _char_sets(brands, self._reach)[0]
        self._edit_gap = (2 * self._edit_limit).astype(np.uint8)
        top = []
        for d, lab in zip(domains[:brand_in_label_top], labels[:brand_in_label_top], strict=True):
            if len(lab) >= 5 and lab.isalpha() and d == self.label_to_domain.get(lab):
                top.append(lab)
        self.substring_brands = frozenset(top)
        # Polars forms of the references, built once for match_frame.
        self._known_labels = pl.Series(list(self.label_to_domain), dtype=pl.String)
        self._abused = pl.Series(sorted(ABUSED_TLDS), dtype=pl.String)
        self._substring_sorted = sorted(self.substring_brands)
        self._substring_series = pl.Series(self._substring_sorted, dtype=pl.String)
        self._skeleton_frame = pl.DataFrame(
            {"sk": list(self.skeletons), "homo": list(self.skeletons.values())},
            schema={"sk": pl.String, "homo": pl.String},
        )
        self._label_domain_frame = pl.DataFrame(
            {
                "brand_label": list(self.label_to_domain),
                "brand": list(self.label_to_domain.values()),
            },
            schema={"brand_label": pl.String, "brand": pl.String},
        )
        self._domains = pl.Series(sorted(self.domains), dtype=pl.String)

    def match(self, label: str, tld: str) -> LookalikeMatch | None:
        """The strongest look-alike evidence for one registered-domain label, if any."""
        return self.match_many([(label, tld)])[0]

    def match_many(self, pairs: Sequence[tuple[str, str]]) -> list[LookalikeMatch | None]:
        """:meth:`match` for many (label, TLD) pairs at once.

        In order: a brand's own label (only on an abused TLD, as the brand
        inside), a homoglyph (the label's :func:`skeleton` is a brand's), the
        nearest brand within the edit limit (:meth:`nearest`, one batched
        pass), then a brand inside the label on an abused TLD or beside a lure
        word.

        >>> idx = brand_index()
        >>> [m.method if m else None for m in idx.match_many([("paypa1", "com"), ("amazom", "com"), ("wiki", "org")])]
        ['homoglyph', 'edit_distance', None]
        """
        if not pairs:
            return []
        found = self.match_frame(
            pl.Series([p[0] for p in pairs], dtype=pl.String),
            pl.Series([p[1] for p in pairs], dtype=pl.String),
        )
        return [
            None if b is None else LookalikeMatch(self.label_to_domain[b], b, m, d, s)
            for b, m, d, s in found.select("brand_label", "method", "distance", "score").iter_rows()
        ]

    def match_frame(self, labels: pl.Series, tlds: pl.Series) -> pl.DataFrame:
        """:meth:`match_many` as a frame: one row per (label, TLD), nulls for no match.

        Columns ``brand`` (the reference domain), ``brand_label``, ``method``,
        ``distance`` and ``score``.  The tests run column-wise in Polars; only
        the names with a candidate (a typo in reach, a brand inside) reach
        Python.
        """
        lab = pl.col("lab")
        df = (
            pl.DataFrame(
                {
                    "lab": labels.cast(pl.String).fill_null(""),
                    "tld": tlds.cast(pl.String).fill_null(""),
                }
            )
            .with_columns(
                known=(lab == "") | lab.is_in(self._known_labels.implode()),
                abused=pl.col("tld").is_in(self._abused.implode()),
                ascii=lab.str.len_bytes() == lab.str.len_chars(),
            )
            .with_columns(
                plain=pl.col("ascii")
                & ~lab.str.contains("\\x", literal=True)
                & ~lab.str.starts_with("xn--"),
            )
        )
        # Skeletons: plain ASCII labels fold in Polars (what skeleton() does for them),
        # the others (punycode, escaped or Unicode labels) one by one.
        fold = lab.str.to_lowercase().str.replace_many(_LEET_FROM, _LEET_TO)
        for x, y in _MULTI:
            fold = fold.str.replace_all(x, y, literal=True)
        df = df.with_columns(sk=pl.when(pl.col("plain")).then(fold))
        odd = np.flatnonzero((~df["plain"] & ~df["known"]).to_numpy()).tolist()
        if odd:
            sk = df["sk"].to_list()
            lab_list = df["lab"].to_list()
            for k in odd:
                sk[k] = skeleton(lab_list[k])
            df = df.with_columns(sk=pl.Series(sk, dtype=pl.String))
        df = df.join(self._skeleton_frame, on="sk", how="left", maintain_order="left").with_columns(
            homo=pl.when(~pl.col("known") & (pl.col("sk") != lab)).then(pl.col("homo"))
        )
        free = ~pl.col("known") & pl.col("homo").is_null()
        df = df.with_columns(
            typo=free
            & pl.col("ascii")
            & (lab.str.len_chars() >= 4)
            & ~lab.str.strip_chars_end("0123456789").is_in(self._known_labels.implode()),
            # A brand inside the label matters on an abused TLD or beside a lure word.
            inside=free
            & (pl.col("abused") | lab.str.contains_any(list(LURE_WORDS)))
            & lab.str.contains_any(self._substring_sorted),
            # A brand's own label on an abused TLD is the brand inside it.
            own=pl.col("known") & lab.is_in(self._substring_series.implode()) & pl.col("abused"),
        )
        brand: list[str | None] = [None] * df.height
        method: list[str | None] = [None] * df.height
        distance: list[int | None] = [None] * df.height
        score: list[float | None] = [None] * df.height
        for k in np.flatnonzero(df["own"].to_numpy()).tolist():
            brand[k], method[k], distance[k], score[k] = (
                df["lab"][k], "brand_in_label", 0, BRAND_ON_ABUSED_TLD,
            )  # fmt: skip
        homo = df["homo"]
        for k in np.flatnonzero(homo.is_not_null().to_numpy()).tolist():
            brand[k], method[k], distance[k], score[k] = homo[k], "homoglyph", 0, 0.95
        typo: list[int] = np.flatnonzero(df["typo"].to_numpy()).tolist()
        typo_labels = df["lab"].gather(typo).to_list() if typo else []
        for k, hit in zip(typo, self.nearest(typo_labels), strict=True):
            if hit is not None:
                d, b = hit
                brand[k], method[k], distance[k], score[k] = (
                    b, "edit_distance", d, 0.85 if d == 1 else 0.6,
                )  # fmt: skip
        inside: list[int] = np.flatnonzero(df["inside"].to_numpy()).tolist()
        if inside:
            lab_col, tld_col = df["lab"], df["tld"]
            for k in inside:
                if brand[k] is None:
                    m = self._inside(lab_col[k], tld_col[k])
                    if m is not None:
                        brand[k], method[k], distance[k], score[k] = (
                            m.brand_label, m.method, m.distance, m.score,
                        )  # fmt: skip
        out = pl.DataFrame(
            {
                "brand_label": pl.Series(brand, dtype=pl.String),
                "method": pl.Series(method, dtype=pl.String),
                "distance": pl.Series(distance, dtype=pl.Int64),
                "score": pl.Series(score, dtype=pl.Float64),
            }
        )
        return out.join(
            self._label_domain_frame, on="brand_label", how="left", maintain_order="left"
        ).select("brand", "brand_label", "method", "distance", "score")

    def nearest(self, labels: Sequence[str]) -> list[tuple[int, str] | None]:
        """For each label, the (distance, brand) with the least distance, then brand, or None.

        Distances are optimal-string-alignment distances (:func:`damerau_levenshtein`)
        to the typo references, within each brand's limit (2 for brands of 10
        letters or more, else 1).  Labels are grouped by length and compared
        only with the brands whose length gap is within their limit.  A
        letter-set prefilter then drops the pairs that cannot be within the
        limit: one edit changes the set of characters a string uses by at most
        two (a substitution removes one and adds one; an insertion, a deletion
        or a transposition by at most one), so a pair whose 32-bit character
        sets (:func:`_char_sets`) differ in more than twice the limit is out
        of reach.  That rules out ~99.5 % of the pairs on real names with one
        XOR and popcount each; RapidFuzz's ``cpdist`` (C++) computes the exact
        distance of the rest, and no Python loop runs per pair.
        """
        from rapidfuzz.distance import OSA
        from rapidfuzz.process import cpdist

        out: list[tuple[int, str] | None] = [None] * len(labels)
        if not labels:
            return out
        arr = pa.array(labels, type=pa.large_string())
        sets, lens, plain = _char_sets(arr, self._reach)
        order = np.argsort(lens, kind="stable")
        cuts = np.flatnonzero(np.diff(lens[order])) + 1
        rows_l: list[npt.NDArray[np.int64]] = []
        cols_l: list[npt.NDArray[np.int64]] = []
        for rows in np.split(order, cuts):
            n = int(lens[rows[0]])
            # A brand is in reach when the length gap is within its own limit.
            cols = np.flatnonzero(np.abs(self._edit_len - n) <= self._edit_limit)
            if cols.size == 0:
                continue
            gap = _popcount32(sets[rows][:, None] ^ self._edit_sets[cols][None, :])
            near = gap <= self._edit_gap[cols][None, :]
            odd = ~plain[rows]
            if odd.any():  # no character set: every brand in reach is a candidate
                near[odd] = True
            flat = np.flatnonzero(near)
            rows_l.append(rows[flat // cols.size])
            cols_l.append(cols[flat % cols.size])
        if not rows_l:
            return out
        pr, pc = np.concatenate(rows_l), np.concatenate(cols_l)
        if pr.size == 0:
            return out
        dist = cpdist(
            arr.take(pa.array(pr)).to_pylist(),
            [self.edit_brands[j] for j in pc.tolist()],
            scorer=OSA.distance, score_cutoff=2, dtype=np.uint8, workers=1,
        ).astype(np.int64)  # fmt: skip
        ok = dist <= self._edit_limit[pc]
        pr, pc, dist = pr[ok], pc[ok], dist[ok]
        # Least distance first, then the brand first in byte order (edit_brands is sorted).
        first = np.lexsort((pc, dist, pr))
        keep = np.ones(first.size, dtype=bool)
        keep[1:] = pr[first[1:]] != pr[first[:-1]]
        for i, d, j in zip(
            pr[first[keep]].tolist(),
            dist[first[keep]].tolist(),
            pc[first[keep]].tolist(),
            strict=True,
        ):
            out[i] = (d, self.edit_brands[j])
        return out

    def _inside(self, label: str, tld: str) -> LookalikeMatch | None:
        """A brand inside the label, on an abused TLD or beside a lure word."""
        abused = tld in ABUSED_TLDS
        if not abused and not any(w in label for w in LURE_WORDS):
            return None
        brand = self._brand_inside(label)
        if brand is None:
            return None
        if abused:
            return LookalikeMatch(
                self.label_to_domain[brand], brand, "brand_in_label", 0, BRAND_ON_ABUSED_TLD
            )
        return LookalikeMatch(self.label_to_domain[brand], brand, "brand_in_label", 0, 0.75)

    def _brand_inside(self, label: str) -> str | None:
        n = len(label)
        best = None
        for length in range(min(n, 24), 4, -1):
            for i in range(0, n - length + 1):
                sub = label[i : i + length]
                if sub in self.substring_brands:
                    best = sub
                    break
            if best:
                break
        return best


def _popcount32(x: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Set bits of each uint32 (``np.bitwise_count`` from NumPy 2, a SWAR count before)."""
    count = getattr(np, "bitwise_count", None)
    if count is not None:
        return count(x)  # type: ignore[no-any-return, unused-ignore]
    return _popcount32_swar(x)


def _popcount32_swar(x: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    x = x - ((x >> np.uint32(1)) & np.uint32(0x55555555))
    x = (x & np.uint32(0x33333333)) + ((x >> np.uint32(2)) & np.uint32(0x33333333))
    x = (x + (x >> np.uint32(4))) & np.uint32(0x0F0F0F0F)
    return (x * np.uint32(0x01010101)) >> np.uint32(24)


def _char_sets(
    arr: pa.LargeStringArray, max_len: int
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Per string: its characters as a 32-bit set (bit ``ord(c) % 32``), length, plainness.

    Any map from characters to bits gives a set that one edit changes by at
    most two bits, which is all :meth:`BrandIndex.nearest` needs.  The set is
    built from the UTF-8 bytes, so it is only a set of *characters* for plain
    ASCII strings of at most ``max_len`` bytes: ``plain`` marks those; the
    others must skip the prefilter.  Lengths are in characters.
    """
    from dnsieve import lexical

    starts, nbytes, data = lexical._buffers(arr)
    nchars = np.asarray(pac.utf8_length(arr).fill_null(0), dtype=np.int64)
    plain = (nbytes == nchars) & (nbytes <= max_len)
    sets = np.zeros(nbytes.size, dtype=np.uint32)
    width = min(int(nbytes.max()) if nbytes.size else 0, max_len)
    if width and data.size:
        pos = np.arange(width, dtype=np.int64)
        inside = pos[None, :] < nbytes[:, None]
        raw = data[np.minimum(starts[:, None] + pos[None, :], data.size - 1)]
        bits = np.left_shift(np.uint32(1), (raw & 31).astype(np.uint32))
        sets = np.bitwise_or.reduce(np.where(inside, bits, np.uint32(0)), axis=1)
    return sets, nchars, plain


@lru_cache(maxsize=1)
def _reference() -> tuple[str, ...]:
    ref = resources.files("dnsieve") / "data" / "brands.txt"
    text = ref.read_text(encoding="utf-8")
    return tuple(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def popular_domains() -> frozenset[str]:
    """The shipped popular-domain reference (registered domains)."""
    return brand_index().domains


@lru_cache(maxsize=1)
def brand_index() -> BrandIndex:
    """The :class:`BrandIndex` over the shipped reference (built once, ~1 s)."""
    return BrandIndex(list(_reference()))


def match_names(names: pl.Series, labels: pl.DataFrame | None = None) -> pl.DataFrame:
    """Look-alike matches for names (query or registered domains), one row per input.

    Columns ``lookalike_brand``, ``lookalike_method``, ``lookalike_distance``,
    ``lookalike_score`` (nulls when no match).  ``labels``, when given, is the
    names' :func:`dnsieve.detectors.dga.registered_labels` (``icann_domain``
    and ``label`` columns, one row per name) already computed by the caller.
    """
    from dnsieve.detectors.dga import registered_labels

    idx = brand_index()
    if labels is None:
        labels = registered_labels(names)
    elif labels.height != names.len():
        raise ValueError(f"labels has {labels.height} rows for {names.len()} names")
    # Everything right of the first dot ("" for a one-label name).
    tld = labels["icann_domain"].str.splitn(".", 2).struct.field("field_1")
    keys = pl.DataFrame(
        {
            "dom": labels["icann_domain"].fill_null(""),
            "lab": labels["label"].fill_null(""),
            "tld": tld.fill_null(""),
        }
    )
    uniq = keys.unique(maintain_order=True)
    todo = uniq.filter(~pl.col("dom").is_in(idx._domains.implode()))
    found = idx.match_frame(todo["lab"], todo["tld"])
    table = pl.concat([todo, found.drop("brand_label")], how="horizontal")
    rows = keys.join(table, on=["dom", "lab", "tld"], how="left", maintain_order="left")
    return rows.select(
        pl.col("brand").alias("lookalike_brand"),
        pl.col("method").alias("lookalike_method"),
        pl.col("distance").alias("lookalike_distance"),
        pl.col("score").alias("lookalike_score"),
    )


def _weigh_by_background(matches: pl.DataFrame) -> pl.DataFrame:
    """Weaken brand-in-label matches whose brand word is common on this network.

    ``matches`` has one row per registered domain seen (``rd`` plus the
    :func:`match_names` columns).  The *background* of a brand word is the
    number of registered domains here that contain it but are no look-alike
    at all (an ordinary TLD, no lure word: ``maplemedia.com``,
    ``people-journal.com``).  A word that ordinary names here use is a
    generic word, not a brand being imitated: embedding it in a name on an
    abused TLD is what this network's names do by chance, so the match keeps
    ``1 / (1 + background)`` of its score (``paypal`` inside ordinary names
    is rare, so ``paypal-verify.xyz`` keeps all of it).  Adds
    ``lookalike_background`` (null for other methods).
    """
    from dnsieve.detectors.dga import registered_labels

    inside = matches.filter(pl.col("lookalike_method") == "brand_in_label")
    if inside.height == 0:
        return matches.with_columns(lookalike_background=pl.lit(None, dtype=pl.Int64))
    plain = matches.filter(pl.col("lookalike_brand").is_null())["rd"]
    plain_labels = registered_labels(plain)["label"].drop_nulls()
    brands = inside["lookalike_brand"].unique().sort()
    words = dict(zip(brands.to_list(), registered_labels(brands)["label"].to_list(), strict=True))
    background = {
        brand: int(plain_labels.str.contains(word, literal=True).sum()) if word else 0
        for brand, word in words.items()
    }
    bg = pl.DataFrame(
        {
            "lookalike_brand": list(background),
            "bg": pl.Series(list(background.values()), dtype=pl.Int64),
        },
        schema={"lookalike_brand": pl.String, "bg": pl.Int64},
    )
    is_inside = pl.col("lookalike_method") == "brand_in_label"
    return (
        matches.join(bg, on="lookalike_brand", how="left")
        .with_columns(
            lookalike_background=pl.when(is_inside).then(pl.col("bg").fill_null(0)),
        )
        .with_columns(
            lookalike_score=pl.when(is_inside)
            .then(pl.col("lookalike_score") / (1 + pl.col("lookalike_background")))
            .otherwise(pl.col("lookalike_score"))
        )
        .drop("bg")
    )


#: Record types a browser asks for a web name (RFC 9460 HTTPS beside A/AAAA).  A
#: look-alike queried with any other type (TXT, SRV, MX, SOA, CNAME, NULL...) is
#: used by software: mail, service discovery, or data carried in DNS.
WEB_QTYPES: frozenset[str] = frozenset({"A", "AAAA", "HTTPS"})
#: Behaviours compared with the window's ordinary names (:func:`use_evidence`).
USE_FEATURES: tuple[str, ...] = ("clients", "names", "busiest")


def coincidental(matches: pl.DataFrame) -> pl.Series:
    """Which matches are brand-token coincidences until behaviour says otherwise.

    ``matches`` has ``rd`` and the :func:`match_names` columns.  A brand word
    embedded in a longer label on an abused TLD, without a lure word
    (``dydiabrandunion.info``, ``journalapple.info``, but also
    ``symanteclive.download``), is what ordinary names do by chance as often
    as what attackers register.  The brand's own label on an abused TLD
    (``kaspersky.science``), a brand beside a lure word
    (``paypal-verify.xyz``), homoglyphs and typos are not.
    """
    from dnsieve.detectors.dga import registered_labels

    labels = registered_labels(matches["rd"])["label"].fill_null("")
    words = registered_labels(matches["lookalike_brand"].fill_null(""))["label"].fill_null("")
    frame = pl.DataFrame({"lab": labels, "word": words, "m": matches["lookalike_method"]})
    return frame.select(
        (pl.col("m") == "brand_in_label")
        & (pl.col("lab") != pl.col("word"))
        & ~pl.col("lab").str.contains_any(list(LURE_WORDS))
    ).to_series()


def use_evidence(pop: pl.DataFrame, hits: pl.Series) -> pl.DataFrame:
    """How far each look-alike's use stands out among the window's ordinary names.

    ``pop`` has one row per (``window_start``, ``rd``) of the scored period
    with ``clients`` (distinct clients), ``names`` (distinct query names),
    ``busiest`` (lookups of the busiest client) and ``software`` (a query
    type outside :data:`WEB_QTYPES`).  ``hits`` are the look-alike
    registered domains judged.  For each hit and feature ``f`` the tail of
    the window's *ordinary* names (no look-alike match) is estimated with a
    uniform prior, ``p_f = (x_f + 1) / (N + 2)`` (``x_f`` of the ``N``
    ordinary names show at least the hit's value): a small window (a short
    capture) never makes a behaviour look rare on little data.  Scanning
    :data:`USE_FEATURES` costs their number (Bonferroni), and the look-alike
    hits of the window are tested together, so the expected number of hits
    as unusual by chance is ``E = n_hits · 3 · min_f p_f``.  ``use`` is
    ``clip(−log10 E, 0, 1)``: 1 when such a use is ten times rarer than the
    hits would show by chance, 0 when it is what ordinary names do; a query
    type no browser asks for is use by software whatever the population
    (``use = 1``).  Returns ``window_start``, ``rd``, ``use``, ``use_p``
    (``3 · min_f p_f``) and ``use_by`` (the feature that stood out).
    """
    return use_from_counts(use_counts(pop.with_columns(hit=pl.col("rd").is_in(hits.implode()))))


def use_counts(pop: pl.DataFrame) -> pl.DataFrame:
    """The sufficient statistics of :func:`use_evidence`, one row per hit.

    ``pop`` as in :func:`use_evidence` plus ``hit`` (the row is a judged
    look-alike).  Per hit: ``software``, ``_x_<f>`` (ordinary names of its
    window at or above its value of each feature), ``_n`` (ordinary names of
    the window) and ``_h`` (hits of the window).  Counts add up over domain
    partitions, so a cluster computes them without bringing the population
    back (``dnsieve.engines.spark_detect.lookalike_fit_on_cluster``).
    """
    hit = pop.filter(pl.col("hit"))
    ordinary = pop.filter(~pl.col("hit"))
    n_ord = ordinary.group_by("window_start").agg(_n=pl.len().cast(pl.Int64))
    n_hit = hit.group_by("window_start").agg(_h=pl.len().cast(pl.Int64))
    pairs = hit.select("window_start", "rd", *USE_FEATURES).join(
        ordinary.select("window_start", *[pl.col(f).alias(f"_o_{f}") for f in USE_FEATURES]),
        on="window_start",
        how="left",
    )
    above = pairs.group_by(["window_start", "rd"]).agg(
        *[
            (pl.col(f"_o_{f}") >= pl.col(f)).sum().cast(pl.Int64).alias(f"_x_{f}")
            for f in USE_FEATURES
        ]
    )
    return (
        hit.select("window_start", "rd", "software")
        .join(above, on=["window_start", "rd"], how="left")
        .join(n_ord, on="window_start", how="left")
        .join(n_hit, on="window_start", how="left")
        .with_columns(pl.col("_n").fill_null(0), pl.col("_h").fill_null(1))
    )


def use_from_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """:func:`use_evidence`'s table from :func:`use_counts`' statistics."""
    tails = [
        ((pl.col(f"_x_{f}").fill_null(0) + 1) / (pl.col("_n") + 2)).alias(f"_p_{f}")
        for f in USE_FEATURES
    ]
    out = counts.with_columns(tails).with_columns(
        use_p=(len(USE_FEATURES) * pl.min_horizontal([f"_p_{f}" for f in USE_FEATURES])).clip(
            upper_bound=1.0
        ),
        use_by=pl.concat_list([f"_p_{f}" for f in USE_FEATURES]).list.arg_min(),
    )
    expected = pl.col("use_p") * pl.col("_h")
    return out.select(
        "window_start",
        "rd",
        pl.when(pl.col("software"))
        .then(1.0)
        .otherwise((-expected.log10()).clip(0.0, 1.0))
        .alias("use"),
        "use_p",
        pl.when(pl.col("software"))
        .then(pl.lit("software"))
        .otherwise(
            pl.col("use_by").replace_strict(
                list(range(len(USE_FEATURES))), list(USE_FEATURES), return_dtype=pl.String
            )
        )
        .alias("use_by"),
    )


#: Clients named in the evidence (``clients``), the busiest first.
MAX_CLIENTS = 5
#: A look-alike whose every answer was NXDOMAIN keeps this share of its score.
NXDOMAIN_FACTOR = 0.5

_METHOD_WORDS = {
    "homoglyph": "look-alike characters",
    "edit_distance": "a typo",
    "brand_in_label": "the brand inside its name",
}


_USE_WORDS = {
    "clients": "clients",
    "names": "distinct query names",
    "busiest": "lookups by one client",
}


def _reason(r: dict[str, Any]) -> str:
    """The evidence's ``reason``, e.g. "paypa1.com imitates paypal.com (a typo, edit
    distance 1); 10.2.0.5 and 2 other clients queried it 14 times in 1 h"."""
    how = _METHOD_WORDS.get(str(r["lookalike_method"]), str(r["lookalike_method"]))
    if r["lookalike_method"] == "edit_distance" and r["lookalike_distance"]:
        how += f", edit distance {r['lookalike_distance']}"
    secs = (r["window_end"] - r["window_start"]).total_seconds()
    span = f"{secs / 3600:g} h" if secs >= 3600 else f"{secs / 60:.0f} min"
    top = list(r["top_clients"] or [])
    n, q = int(r["clients"]), int(r["queries"])
    who = top[0] if top else "an unknown client"
    if n > 1:
        who += f" and {n - 1:,} other client{'s' if n > 2 else ''}"
    nx = "; it never resolved (NXDOMAIN)" if r["never_resolved"] else ""
    bg = int(r.get("lookalike_background") or 0)
    common = (
        f"; {bg:,} ordinary name{'s' if bg != 1 else ''} here also contain the brand word"
        if bg
        else ""
    )
    used = ""
    if r.get("coincidental"):
        by, u = r.get("use_by"), float(r.get("use") or 0.0)
        if by == "software":
            used = "; queried with record types no browser asks for (software)"
        elif u >= 1.0:
            used = f"; its {_USE_WORDS.get(str(by), str(by))} stand out among ordinary names here"
        else:
            used = "; only the brand word: used like the ordinary names here"
    return (
        f"{r['rd']} imitates {r['lookalike_brand']} ({how}); {who} queried it "
        f"{q:,} time{'s' if q != 1 else ''} in {span}{nx}{common}{used}"
    )


def _use_population(ev: pl.DataFrame) -> pl.DataFrame:
    """Per (``window_start``, ``rd``) of the scored events: ``clients``, ``names``,
    ``busiest`` (lookups of the busiest client) and ``software`` (a query type
    outside :data:`WEB_QTYPES`), the input of :func:`use_evidence`."""
    key = ["window_start", "rd"]
    software = (
        (~pl.col("qtype").is_in(sorted(WEB_QTYPES)) & pl.col("qtype").is_not_null()).any()
        if "qtype" in ev.columns
        else pl.lit(False)
    )
    per = ev.group_by(key).agg(
        clients=pl.col("src_ip").drop_nulls().n_unique(),
        names=pl.col("qname").drop_nulls().n_unique(),
        software=software,
    )
    busiest = ev.group_by([*key, "src_ip"]).len().group_by(key).agg(busiest=pl.col("len").max())
    return per.join(busiest, on=key, how="left")


@register
class LookalikeDetector(Detector):
    """Registered domains imitating a popular brand (edit distance, homoglyphs, brand + lure)."""

    name: ClassVar[str] = "lookalike"
    techniques: ClassVar[tuple[str, ...]] = ("T1583.001", "T1566")
    entity_type: ClassVar[EntityType] = "domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = (
        "registered domains imitating popular brands (typos, homoglyphs, punycode, brand + lure)"
    )

    #: Alert floor for small captures (see dnsieve.calibrate.floor_decision):
    #: homoglyphs (0.95) and brands on abused TLDs (0.9) alert on their own; a bare
    #: edit distance (0.85, 0.6) or a brand + lure word on a common TLD (0.75) needs
    #: the population calibration to single it out.
    score_floor: ClassVar[float] = 0.9

    def __init__(self, max_names: int = 5) -> None:
        self.max_names = max_names

    def _scored(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame | None:
        """The scored period's events with a registered domain, ``rd`` and windows."""
        from dnsieve.detectors.frames import scored_period, window_columns

        need = {"ts", "src_ip", "qname", "registered_domain"}
        if data.height == 0 or not need <= set(data.columns):
            return None
        cols = sorted(need | ({"rcode", "qtype"} & set(data.columns)))
        ev = (
            scored_period(data.select(cols), ctx)
            .with_columns(rd=pl.col("registered_domain").fill_null(""))
            .filter(pl.col("rd").str.contains(r"\."))
        )
        return ev.with_columns(window_columns(ctx)) if ev.height else None

    def use_population(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        """Per (``window_start``, ``rd``) of ``data``'s scored period: the use
        features of :func:`use_evidence` and ``hit`` (a brand-token coincidence,
        :func:`coincidental`).  A distributed engine computes it per domain
        partition and adds up :func:`use_counts` on the cluster (``use_``)."""
        ev = self._scored(data, ctx)
        if ev is None:
            return pl.DataFrame(
                schema={
                    "window_start": pl.Datetime("us", "UTC"),
                    "rd": pl.String,
                    "clients": pl.UInt32,
                    "names": pl.UInt32,
                    "software": pl.Boolean,
                    "busiest": pl.UInt32,
                    "hit": pl.Boolean,
                }
            )
        domains = ev["rd"].unique().sort()
        matches = pl.concat(
            [domains.alias("rd").to_frame(), match_names(domains)], how="horizontal"
        ).filter(pl.col("lookalike_brand").is_not_null())
        hits = matches.filter(coincidental(matches))["rd"]
        return _use_population(ev).with_columns(hit=pl.col("rd").is_in(hits.implode()))

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        ev = self._scored(data, ctx)
        if ev is None:
            return empty_anomalies()
        domains = ev["rd"].unique().sort()
        matches = pl.concat(
            [domains.alias("rd").to_frame(), match_names(domains)], how="horizontal"
        )
        matches = _weigh_by_background(matches)
        matches = matches.filter(pl.col("lookalike_brand").is_not_null())
        if matches.height == 0:
            return empty_anomalies()
        matches = matches.with_columns(coincidental=coincidental(matches))
        # A distributed engine brings the use evidence from the whole population (use_).
        use = getattr(self, "use_", None)
        if use is None:
            hits = matches.filter(pl.col("coincidental"))["rd"]
            use = use_evidence(_use_population(ev), hits)
        ev = ev.join(matches, on="rd", how="inner")
        key = ["window_start", "window_end", "rd"]
        agg = ev.group_by(key).agg(
            pl.col("lookalike_brand").first(),
            pl.col("lookalike_method").first(),
            pl.col("lookalike_distance").first(),
            pl.col("lookalike_score").first(),
            pl.col("lookalike_background").first(),
            pl.col("coincidental").first(),
            queries=pl.len(),
            clients=pl.col("src_ip").drop_nulls().n_unique(),
            query_names=pl.col("qname").drop_nulls().unique().sort().head(self.max_names),
            # every answer seen was NXDOMAIN: nobody serves the name (a typo, not a lure)
            never_resolved=(
                (pl.col("rcode") == "NXDOMAIN").all() & pl.col("rcode").is_not_null().all()
                if "rcode" in ev.columns
                else pl.lit(False)
            ),
        )
        # A look-alike that does not resolve serves no phishing page and no C2: it keeps
        # half its strength, below the floor, so only the population calibration can
        # single it out.  Unknown rcodes (queries without answers) count as resolving.
        agg = agg.with_columns(
            pl.when(pl.col("never_resolved"))
            .then(pl.col("lookalike_score") * NXDOMAIN_FACTOR)
            .otherwise(pl.col("lookalike_score"))
            .alias("lookalike_score")
        )
        # A brand-token coincidence keeps its full strength only when its use stands
        # out among this window's ordinary names (use_evidence); used like an ordinary
        # name, it keeps half, below the floor.
        agg = agg.join(use, on=["window_start", "rd"], how="left").with_columns(
            lookalike_score=pl.when(pl.col("coincidental"))
            .then(pl.col("lookalike_score") * (0.5 + 0.5 * pl.col("use").fill_null(0.0)))
            .otherwise(pl.col("lookalike_score"))
        )
        top = (  # the clients to look at: the busiest first
            ev.filter(pl.col("src_ip").is_not_null())
            .group_by([*key, "src_ip"])
            .agg(n=pl.len())
            .sort([*key, "n", "src_ip"], descending=[False, False, False, True, False])
            .group_by(key, maintain_order=True)
            .agg(top_clients=pl.col("src_ip").head(MAX_CLIENTS))
        )
        agg = agg.join(top, on=key, how="left")
        evidence = [
            {
                "reason": _reason(r),
                "clients": list(r["top_clients"] or []),
                "brand": r["lookalike_brand"],
                "method": r["lookalike_method"],
                "distance": r["lookalike_distance"],
                "queries": r["queries"],
                "distinct_clients": r["clients"],
                "never_resolved": r["never_resolved"],
                "brand_word_background": r["lookalike_background"],
                "brand_token_only": r["coincidental"],
                "use_evidence": None if r["use"] is None else round(float(r["use"]), 3),
                "use_stands_out_by": r["use_by"],
                "query_names": list(r["query_names"] or []),
            }
            for r in agg.iter_rows(named=True)
        ]
        return anomaly_frame(
            self.name,
            self.entity_type,
            agg["rd"],
            agg["window_start"],
            agg["window_end"],
            agg["lookalike_score"],
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """A few hosts browsing popular sites, one visiting typo and homoglyph domains."""
        from dnsieve.detectors.frames import example_events

        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        names = [
            ("www.paypal.com", "paypal.com"),
            ("www.microsoft.com", "microsoft.com"),
            ("login.paypa1.com", "paypa1.com"),
            ("xn--pypal-4ve.com", "xn--pypal-4ve.com"),
            ("microsoft-support.top", "microsoft-support.top"),
            ("www.wikipedia.org", "wikipedia.org"),
        ]
        rows = []
        for _ in range(30):
            q, reg = names[int(rng.integers(0, len(names)))]
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=float(rng.uniform(0, 600))),
                    "src_ip": f"10.2.0.{int(rng.integers(2, 8))}",
                    "qname": q,
                    "qtype": "A",
                    "rcode": "NOERROR",
                    "registered_domain": reg,
                    "subdomain": q[: -len(reg) - 1] if q != reg else "",
                    "tld": reg.rsplit(".", 1)[-1],
                }
            )
        return example_events(rows)
