"""Lexical features of DNS labels, vectorised over NumPy.

Every public function takes a batch of labels (a Polars ``String`` series, a
PyArrow string array or any sequence of ``str``; nulls count as empty) and
returns NumPy arrays aligned with the input.  Nothing loops over names in
Python: labels are packed into a byte matrix (one row per label, padded) and
every feature is computed column-wise on that matrix, so a batch of 100k
labels takes tens of milliseconds.

Characters are folded into a 39-symbol alphabet: ``a``-``z`` (upper case
folds to lower), ``0``-``9``, ``-``, ``_`` and one *other* class for
everything else (dots, ``\\xNN`` escape backslashes, bytes >= 0x80...).  A
40th symbol marks the start/end of a label for n-grams.

Feature definitions (:data:`FEATURE_NAMES`):

``length``
    characters in the label (the canonical, escaped text).
``entropy``
    Shannon entropy in bits per character of the label's character
    distribution (upper case folded, "other" bytes kept distinct).
``digit_ratio`` / ``vowel_ratio`` / ``consonant_ratio`` / ``hyphen_ratio`` / ``other_ratio``
    share of characters in each class (vowels are ``aeiou``; ``y`` is a
    consonant; ``_`` counts as a hyphen).
``max_consonant_run`` / ``max_digit_run``
    longest run of consecutive consonants / digits.
``distinct_ratio``
    distinct characters divided by length.
``switch_ratio``
    share of adjacent character pairs that switch between letter and digit
    (``a1b2`` → 1.0, ``abc12`` → 0.25).
``hex_likeness`` / ``base32_likeness`` / ``base64_likeness``
    heuristic evidence in [0, 1] that the label is an encoding in that
    alphabet (hex ``[0-9a-f]``, RFC 4648 base32 ``[a-z2-7]``, base64url
    folded to lower case ``[a-z0-9_-]``): the share of characters inside the
    alphabet, times the ratio of observed distinct characters to the number
    expected from uniformly random draws of the same length, times a
    digit-share factor (random base32 has ~19 % digits, random hex ~62 %),
    times a length ramp reaching 1 at 16 characters.  Dictionary words
    score low because they repeat letters and lack digits.
``bigram_logp``
    mean log-probability (natural log) per character transition of the
    label under a character-bigram model of benign registered-domain labels
    (boundaries included).  Readable names score around -2.5, random
    strings below -3.5.  The default table ships inside the DGA artifact
    (``dnsieve/data/dga_model.npz``); pass ``table`` to use another.

>>> import numpy as np
>>> np.round(shannon_entropy(["aaaa", "abcd", ""]), 3).tolist()
[0.0, 2.0, 0.0]
>>> f = label_features(["google", "x7k2q9zt"], bigram_table=np.zeros((40, 40)))
>>> f["digit_ratio"].to_list()
[0.0, 0.375]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

__all__ = [
    "BOUNDARY",
    "FEATURE_NAMES",
    "N_CLASSES",
    "N_SYMBOLS",
    "EncodedLabels",
    "base32_likeness",
    "base64_likeness",
    "bigram_logp",
    "bigram_table_from_labels",
    "char_class_ratios",
    "default_bigram_table",
    "encode_labels",
    "encoded_features",
    "feature_arrays",
    "frequent_ngrams",
    "hashed_ngrams",
    "hex_likeness",
    "iter_encoded",
    "label_features",
    "label_lengths",
    "ngram_bitset",
    "ngram_codes",
    "ngram_coverage",
    "ngram_logp_stats",
    "ngram_logp_table",
    "shannon_entropy",
]

LabelsLike: TypeAlias = "pl.Series | pa.Array | pa.ChunkedArray | Sequence[str | None]"

# Symbol classes: 0-25 letters, 26-35 digits, 36 '-', 37 '_', 38 other, 39 boundary.
N_CLASSES = 39
BOUNDARY = 39
N_SYMBOLS = 40
_DIGIT0 = 26
_HYPHEN = 36
_UNDERSCORE = 37
_OTHER = 38

_BYTE_CLASS = np.full(256, _OTHER, dtype=np.uint8)
for _i in range(26):
    _BYTE_CLASS[ord("a") + _i] = _i
    _BYTE_CLASS[ord("A") + _i] = _i
for _i in range(10):
    _BYTE_CLASS[ord("0") + _i] = _DIGIT0 + _i
_BYTE_CLASS[ord("-")] = _HYPHEN
_BYTE_CLASS[ord("_")] = _UNDERSCORE

_IS_VOWEL = np.zeros(N_SYMBOLS, dtype=bool)
_IS_VOWEL[[ord(c) - ord("a") for c in "aeiou"]] = True
_IS_LETTER = np.zeros(N_SYMBOLS, dtype=bool)
_IS_LETTER[:26] = True
_IS_CONSONANT = _IS_LETTER & ~_IS_VOWEL
_IS_DIGIT = np.zeros(N_SYMBOLS, dtype=bool)
_IS_DIGIT[_DIGIT0 : _DIGIT0 + 10] = True
# 1 for a letter, 2 for a digit, 0 otherwise (a letter-digit switch multiplies to 2).
_KIND = np.where(_IS_LETTER, 1, np.where(_IS_DIGIT, 2, 0)).astype(np.int8)
_IS_HYPHEN = np.zeros(N_SYMBOLS, dtype=bool)
_IS_HYPHEN[[_HYPHEN, _UNDERSCORE]] = True


def _alphabet_mask(chars: str) -> npt.NDArray[np.bool_]:
    m = np.zeros(N_SYMBOLS, dtype=bool)
    m[_BYTE_CLASS[np.frombuffer(chars.encode(), dtype=np.uint8)]] = True
    return m


_HEX = _alphabet_mask("0123456789abcdef")
_B32 = _alphabet_mask("abcdefghijklmnopqrstuvwxyz234567")
_B64 = _alphabet_mask("abcdefghijklmnopqrstuvwxyz0123456789-_")
# (alphabet mask, alphabet size, expected digit share of random strings)
_ENCODINGS: dict[str, tuple[npt.NDArray[np.bool_], int, float]] = {
    "hex": (_HEX, 16, 10 / 16),
    "base32": (_B32, 32, 6 / 32),
    # base64 is case-sensitive on the wire but DNS names arrive lower-cased:
    # the folded alphabet has 38 symbols, 10 of them digits.
    "base64": (_B64, 38, 10 / 38),
}

FEATURE_NAMES: tuple[str, ...] = (
    "length",
    "entropy",
    "digit_ratio",
    "vowel_ratio",
    "consonant_ratio",
    "hyphen_ratio",
    "other_ratio",
    "max_consonant_run",
    "max_digit_run",
    "distinct_ratio",
    "switch_ratio",
    "hex_likeness",
    "base32_likeness",
    "base64_likeness",
    "bigram_logp",
)

DEFAULT_MAX_LEN = 64
_CHUNK = 32_768


class EncodedLabels:
    """A batch of labels as a padded symbol matrix.

    ``sym`` is ``(n, width)`` uint8 of symbol classes (padding holds
    :data:`BOUNDARY`), ``mask`` marks real characters, ``lengths`` is the full
    length of each label (it may exceed ``width`` when labels were clipped to
    ``max_len``) and ``used`` the number of characters actually encoded.
    """

    __slots__ = ("lengths", "mask", "sym", "used")

    def __init__(
        self,
        sym: npt.NDArray[np.uint8],
        mask: npt.NDArray[np.bool_],
        lengths: npt.NDArray[np.int64],
        used: npt.NDArray[np.int64],
    ) -> None:
        self.sym = sym
        self.mask = mask
        self.lengths = lengths
        self.used = used

    def __len__(self) -> int:
        return int(self.lengths.shape[0])


def _to_arrow(labels: LabelsLike) -> pa.LargeStringArray:
    if isinstance(labels, pl.Series):
        arr: Any = labels.cast(pl.String).to_arrow()
    elif isinstance(labels, pa.ChunkedArray | pa.Array):
        arr = labels
    else:
        arr = pa.array(list(labels), type=pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.type != pa.large_string():
        arr = arr.cast(pa.large_string())
    return arr  # type: ignore[no-any-return, return-value, unused-ignore]


def _buffers(
    labels: LabelsLike,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint8]]:
    """(start offsets, lengths, data bytes) of a string batch; nulls have length 0."""
    arr = _to_arrow(labels)
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    lengths = (offsets[1:] - offsets[:-1]).astype(np.int64)
    if arr.null_count:
        valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        lengths = np.where(valid, lengths, 0)
    return offsets[:-1].astype(np.int64), lengths, data


def _encode(
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    data: npt.NDArray[np.uint8],
    max_len: int,
) -> EncodedLabels:
    n = starts.shape[0]
    used = np.minimum(lengths, max_len)
    width = max(int(used.max()) if n else 0, 1)
    pos = np.arange(width, dtype=np.int64)
    mask = pos[None, :] < used[:, None]
    if data.size:
        raw = data[np.minimum(starts[:, None] + pos[None, :], data.size - 1)]
        sym = np.where(mask, _BYTE_CLASS[raw], BOUNDARY).astype(np.uint8)
    else:
        sym = np.full((n, width), BOUNDARY, dtype=np.uint8)
    return EncodedLabels(sym, mask, lengths, used)


def encode_labels(labels: LabelsLike, max_len: int = DEFAULT_MAX_LEN) -> EncodedLabels:
    """Pack labels into an :class:`EncodedLabels` matrix (first ``max_len`` bytes).

    Works on the UTF-8 bytes of the text; canonical names are printable ASCII
    (non-printables escaped as ``\\xNN``), anything else lands in the
    *other* class.  For large batches prefer :func:`iter_encoded`, which keeps
    the matrix narrow by grouping labels of similar length.
    """
    starts, lengths, data = _buffers(labels)
    return _encode(starts, lengths, data, max_len)


def iter_encoded(
    labels: LabelsLike, max_len: int = DEFAULT_MAX_LEN, chunk: int = _CHUNK
) -> Iterator[tuple[npt.NDArray[np.int64], EncodedLabels]]:
    """Yield ``(rows, encoded)`` blocks covering the batch, grouped by length.

    ``rows`` are the input positions of the block's labels: scatter results
    back with ``out[rows] = value``.  Sorting by length keeps each block's
    matrix only as wide as its longest label.
    """
    starts, lengths, data = _buffers(labels)
    order = np.argsort(np.minimum(lengths, max_len), kind="stable")
    for b in range(0, order.shape[0], chunk):
        rows = order[b : b + chunk]
        yield rows, _encode(starts[rows], lengths[rows], data, max_len)


def _map_features(labels: LabelsLike, max_len: int, fn: Any) -> dict[str, npt.NDArray[Any]]:
    """Apply ``fn(encoded) -> {name: array}`` blockwise and reassemble in input order."""
    arr = _to_arrow(labels)
    n = len(arr)
    out: dict[str, npt.NDArray[Any]] = {}
    for rows, enc in iter_encoded(arr, max_len):
        for k, v in fn(enc).items():
            if k not in out:
                out[k] = np.zeros(n, dtype=v.dtype)
            out[k][rows] = v
    return out


def _class_counts(enc: EncodedLabels) -> npt.NDArray[np.int64]:
    n, width = enc.sym.shape
    rows = np.broadcast_to(np.arange(n, dtype=np.int64)[:, None], (n, width))
    flat = rows[enc.mask] * N_SYMBOLS + enc.sym[enc.mask]
    return np.bincount(flat, minlength=n * N_SYMBOLS).reshape(n, N_SYMBOLS)


def _entropy_from_counts(counts: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
    """H = log2(T) - sum(c log2 c) / T, with c log2 c from a lookup table."""
    top = int(counts.max()) if counts.size else 0
    c = np.arange(top + 1, dtype=np.float64)
    clogc = c * np.log2(np.maximum(c, 1.0))
    tot = counts.sum(axis=1).astype(np.float64)
    s = clogc[counts].sum(axis=1)
    safe = np.maximum(tot, 1.0)
    h = np.log2(safe) - s / safe
    return np.maximum(h, 0.0)  # type: ignore[no-any-return, return-value, unused-ignore]


def _max_run(flags: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Longest run of True per row."""
    if flags.shape[1] == 0:
        return np.zeros(flags.shape[0], dtype=np.int64)
    # int32 halves the memory traffic of the three passes; rows are far shorter than 2**31.
    c = np.cumsum(flags, axis=1, dtype=np.int32)
    reset = np.where(~flags, c, 0)
    np.maximum.accumulate(reset, axis=1, out=reset)
    return (c - reset).max(axis=1).astype(np.int64)


def _expected_distinct(n: npt.NDArray[np.float64], k: int) -> npt.NDArray[np.float64]:
    return k * (1.0 - (1.0 - 1.0 / k) ** n)  # type: ignore[no-any-return, return-value, unused-ignore]


# Columns of the class-sum matrix: per-row counts of characters in each group.
_GROUPS: tuple[tuple[str, npt.NDArray[np.bool_]], ...] = (
    ("digit", _IS_DIGIT),
    ("vowel", _IS_VOWEL),
    ("consonant", _IS_CONSONANT),
    ("hyphen", _IS_HYPHEN),
    ("other", np.arange(N_SYMBOLS) == _OTHER),
    ("hex", _HEX),
    ("base32", _B32),
    ("base64", _B64),
    ("hex_digit", _HEX & _IS_DIGIT),
    ("base32_digit", _B32 & _IS_DIGIT),
    ("base64_digit", _B64 & _IS_DIGIT),
)
_GROUP_INDEX = {name: i for i, (name, _) in enumerate(_GROUPS)}
_GROUP_MATRIX = np.stack([m for _, m in _GROUPS], axis=1).astype(np.float32)


_GEMM_ROWS = 1024


def _group_sums(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """``x @ _GROUP_MATRIX`` in blocks of rows (exact: small integer counts).

    Blocks small enough that BLAS runs them on one thread: a whole batch
    (67k x 40 x 11) makes OpenBLAS start its thread pool, whose spinning
    cost three times the multiplication itself on a busy machine.
    """
    out = np.empty((x.shape[0], _GROUP_MATRIX.shape[1]), dtype=np.float32)
    for r in range(0, x.shape[0], _GEMM_ROWS):
        np.matmul(x[r : r + _GEMM_ROWS], _GROUP_MATRIX, out=out[r : r + _GEMM_ROWS])
    return out


class _Sums:
    """Per-row character counts (``tot``) and distinct counts (``dist``) per group."""

    __slots__ = ("dist", "tot")

    def __init__(self, counts: npt.NDArray[np.int64]) -> None:
        self.tot = _group_sums(counts.astype(np.float32))
        self.dist = _group_sums((counts > 0).astype(np.float32))

    def __getitem__(self, name: str) -> npt.NDArray[np.float64]:
        return self.tot[:, _GROUP_INDEX[name]]  # type: ignore[no-any-return, return-value, unused-ignore]

    def distinct(self, name: str) -> npt.NDArray[np.float64]:
        return self.dist[:, _GROUP_INDEX[name]]  # type: ignore[no-any-return, return-value, unused-ignore]


def _likeness(enc: EncodedLabels, sums: _Sums, kind: str) -> npt.NDArray[np.float64]:
    _alpha, k, digit_share = _ENCODINGS[kind]
    used = enc.used.astype(np.float64)
    safe = np.maximum(used, 1.0)
    inside = sums[kind] / safe
    exp_distinct = np.maximum(_expected_distinct(used, k), 1.0)
    distinct_f = np.minimum(1.0, sums.distinct(kind) / exp_distinct)
    digit_f = np.minimum(1.0, (sums[kind + "_digit"] / safe) / (0.5 * digit_share))
    ramp = np.minimum(1.0, used / 16.0)
    out = inside**2 * distinct_f * digit_f * ramp
    return np.where(used > 0, out, 0.0)  # type: ignore[no-any-return, return-value, unused-ignore]


@lru_cache(maxsize=1)
def default_bigram_table() -> npt.NDArray[np.float64]:
    """The benign character-bigram log-probability table shipped in the DGA artifact."""
    ref = resources.files("dnsieve") / "data" / "dga_model.npz"
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        return np.asarray(z["bigram_logp"], dtype=np.float64)


def bigram_table_from_labels(labels: LabelsLike, alpha: float = 1.0) -> npt.NDArray[np.float64]:
    """Fit a (40, 40) table of log P(next symbol | symbol) with add-``alpha`` smoothing.

    Rows/columns index symbol classes; index :data:`BOUNDARY` is the label
    start (as a row) and end (as a column).
    """
    counts = np.zeros(N_SYMBOLS * N_SYMBOLS, dtype=np.float64)
    for _rows, enc in iter_encoded(labels, DEFAULT_MAX_LEN):
        a, b, valid = _bigram_pairs(enc)
        flat = a[valid].astype(np.int64) * N_SYMBOLS + b[valid]
        counts += np.bincount(flat, minlength=N_SYMBOLS * N_SYMBOLS)
    grid = counts.reshape(N_SYMBOLS, N_SYMBOLS) + alpha
    return np.log(grid / grid.sum(axis=1, keepdims=True))  # type: ignore[no-any-return, return-value, unused-ignore]


def _bigram_pairs(
    enc: EncodedLabels,
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    n, width = enc.sym.shape
    padded = np.full((n, width + 2), BOUNDARY, dtype=np.uint8)
    padded[:, 1 : width + 1] = enc.sym
    a = padded[:, :-1]
    b = padded[:, 1:]
    pos = np.arange(width + 1)
    valid = (pos[None, :] <= enc.used[:, None]) & (enc.used[:, None] > 0)
    return a, b, valid


def _bigram_score(enc: EncodedLabels, table: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    a, b, valid = _bigram_pairs(enc)
    lp = np.where(valid, table[a, b], 0.0)
    cnt = valid.sum(axis=1)
    return np.where(cnt > 0, lp.sum(axis=1) / np.maximum(cnt, 1), 0.0)  # type: ignore[no-any-return, return-value, unused-ignore]


def encoded_features(
    enc: EncodedLabels, table: npt.NDArray[np.float64]
) -> dict[str, npt.NDArray[Any]]:
    """All :data:`FEATURE_NAMES` for one encoded block (see :func:`iter_encoded`)."""
    counts = _class_counts(enc)
    sums = _Sums(counts)
    used = enc.used.astype(np.float64)
    safe = np.maximum(used, 1.0)
    sym = enc.sym
    # Padding holds BOUNDARY, which is no letter or digit: the tables need no mask.
    is_cons = _IS_CONSONANT[sym]
    is_dig = _IS_DIGIT[sym]
    kind = _KIND[sym]
    switches = ((kind[:, 1:] * kind[:, :-1]) == 2).sum(axis=1)
    return {
        "length": enc.lengths.astype(np.int64),
        "entropy": _entropy_from_counts(counts),
        "digit_ratio": sums["digit"] / safe,
        "vowel_ratio": sums["vowel"] / safe,
        "consonant_ratio": sums["consonant"] / safe,
        "hyphen_ratio": sums["hyphen"] / safe,
        "other_ratio": sums["other"] / safe,
        "max_consonant_run": _max_run(is_cons),
        "max_digit_run": _max_run(is_dig),
        "distinct_ratio": (counts > 0).sum(axis=1) / safe,
        "switch_ratio": np.where(used > 1, switches / np.maximum(used - 1.0, 1.0), 0.0),
        "hex_likeness": _likeness(enc, sums, "hex"),
        "base32_likeness": _likeness(enc, sums, "base32"),
        "base64_likeness": _likeness(enc, sums, "base64"),
        "bigram_logp": _bigram_score(enc, table),
    }


def _ratios(enc: EncodedLabels) -> dict[str, npt.NDArray[np.float64]]:
    sums = _Sums(_class_counts(enc))
    safe = np.maximum(enc.used, 1).astype(np.float64)
    return {
        f"{g}_ratio": sums[g] / safe for g in ("digit", "vowel", "consonant", "hyphen", "other")
    }


_INT_FEATURES = frozenset({"length", "max_consonant_run", "max_digit_run"})


def feature_arrays(
    labels: LabelsLike,
    bigram_table: npt.NDArray[np.float64] | None = None,
    max_len: int = DEFAULT_MAX_LEN,
) -> dict[str, npt.NDArray[Any]]:
    """Like :func:`label_features` but a dict of NumPy arrays (no frame built)."""
    table = default_bigram_table() if bigram_table is None else bigram_table
    out = _map_features(labels, max_len, lambda enc: encoded_features(enc, table))
    if not out:
        out = {
            k: np.zeros(0, np.int64 if k in _INT_FEATURES else np.float64) for k in FEATURE_NAMES
        }
    return out


def label_features(
    labels: LabelsLike,
    bigram_table: npt.NDArray[np.float64] | None = None,
    max_len: int = DEFAULT_MAX_LEN,
) -> pl.DataFrame:
    """All :data:`FEATURE_NAMES` for a batch of labels, one row per label.

    Labels longer than ``max_len`` are featurised on their first ``max_len``
    characters (``length`` still reports the full length).
    """
    arrays = feature_arrays(labels, bigram_table, max_len)
    return pl.DataFrame(
        [
            pl.Series(k, arrays[k], dtype=pl.Int64 if k in _INT_FEATURES else pl.Float64)
            for k in FEATURE_NAMES
        ]
    )


def label_lengths(labels: LabelsLike) -> npt.NDArray[np.int64]:
    """Length of each label in characters of its canonical text (null → 0)."""
    return _buffers(labels)[1]


def _one(labels: LabelsLike, max_len: int, name: str, fn: Any) -> npt.NDArray[np.float64]:
    out = _map_features(labels, max_len, lambda enc: {name: fn(enc)})
    return out.get(name, np.zeros(0))


def shannon_entropy(labels: LabelsLike, max_len: int = 256) -> npt.NDArray[np.float64]:
    """Shannon entropy (bits per character) of each label; empty → 0."""
    return _one(labels, max_len, "h", lambda enc: _entropy_from_counts(_class_counts(enc)))


def char_class_ratios(labels: LabelsLike, max_len: int = 256) -> pl.DataFrame:
    """Digit, vowel, consonant, hyphen and other shares of each label."""
    names = ("digit_ratio", "vowel_ratio", "consonant_ratio", "hyphen_ratio", "other_ratio")
    out = _map_features(labels, max_len, _ratios)
    return pl.DataFrame([pl.Series(k, out.get(k, np.zeros(0)), dtype=pl.Float64) for k in names])


def _likeness_of(kind: str) -> Any:
    return lambda enc: _likeness(enc, _Sums(_class_counts(enc)), kind)


def hex_likeness(labels: LabelsLike, max_len: int = 256) -> npt.NDArray[np.float64]:
    """Heuristic evidence in [0, 1] that each label is hex-encoded (see module doc)."""
    return _one(labels, max_len, "x", _likeness_of("hex"))


def base32_likeness(labels: LabelsLike, max_len: int = 256) -> npt.NDArray[np.float64]:
    """Heuristic evidence in [0, 1] that each label is base32-encoded (see module doc)."""
    return _one(labels, max_len, "x", _likeness_of("base32"))


def base64_likeness(labels: LabelsLike, max_len: int = 256) -> npt.NDArray[np.float64]:
    """Heuristic evidence in [0, 1] that each label is (lower-cased) base64url (see module doc)."""
    return _one(labels, max_len, "x", _likeness_of("base64"))


def bigram_logp(
    labels: LabelsLike,
    table: npt.NDArray[np.float64] | None = None,
    max_len: int = 256,
) -> npt.NDArray[np.float64]:
    """Mean benign-bigram log-probability per transition of each label (empty → 0)."""
    t = default_bigram_table() if table is None else table
    return _one(labels, max_len, "b", lambda enc: _bigram_score(enc, t))


_NGRAM_BASE = np.uint64(N_SYMBOLS + 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def hashed_ngrams(
    enc: EncodedLabels, n_min: int = 1, n_max: int = 4, n_bits: int = 18
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Hashed character n-grams of ``^label$`` for every label of a batch.

    Returns ``(idx, valid)``, both ``(n_labels, n_positions)``: the bucket in
    ``[0, 2**n_bits)`` of each n-gram (for every ``n`` in
    ``[n_min, n_max]``, concatenated along axis 1) and whether that position
    holds a real n-gram.  The hash is multiplicative (Fibonacci hashing of
    the base-41 code of the n-gram, with ``n`` mixed in), so it is stable
    across platforms and NumPy versions.  Empty labels have no n-grams.
    """
    n, width = enc.sym.shape
    padded = np.full((n, width + 2), BOUNDARY, dtype=np.uint64)
    padded[:, 1 : width + 1] = enc.sym
    seq_len = np.where(enc.used > 0, enc.used + 2, 0)
    shift = np.uint64(64 - n_bits)
    idx_parts: list[npt.NDArray[np.int64]] = []
    valid_parts: list[npt.NDArray[np.bool_]] = []
    for g in range(n_min, n_max + 1):
        npos = width + 3 - g
        if npos <= 0:
            continue
        code = np.full((n, npos), np.uint64(g), dtype=np.uint64)
        for k in range(g):
            code = code * _NGRAM_BASE + padded[:, k : k + npos]
        h = (code * _GOLDEN) >> shift
        pos = np.arange(npos)
        valid = pos[None, :] + g <= seq_len[:, None]
        idx_parts.append(h.astype(np.int64))
        valid_parts.append(valid)
    if not idx_parts:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), bool)
    return np.concatenate(idx_parts, axis=1), np.concatenate(valid_parts, axis=1)


def ngram_codes(
    enc: EncodedLabels, g: int, lead: int = 1
) -> tuple[npt.NDArray[np.signedinteger[Any]], npt.NDArray[np.bool_]]:
    """Exact base-40 codes of the character ``g``-grams of each label.

    The label is framed by ``lead`` :data:`BOUNDARY` symbols in front and one
    behind (``lead = g - 1`` gives every character a full ``g - 1``-symbol
    history, as a Markov model wants; ``lead = 1`` gives ``^label$``).
    Returns ``(codes, valid)``, both ``(n_labels, n_positions)``; a code is
    ``sum(sym[k + i] * 40 ** (g - 1 - i))``, below ``40 ** g``: int32 up to
    ``g = 5`` (half the memory traffic of int64), int64 beyond.  Empty labels
    have no n-grams.

    >>> enc = encode_labels(["ab"])
    >>> codes, valid = ngram_codes(enc, 2)
    >>> codes[valid].tolist() == [39 * 40 + 0, 0 * 40 + 1, 1 * 40 + 39]
    True
    """
    n, width = enc.sym.shape
    dtype = np.int32 if N_SYMBOLS**g < 2**31 else np.int64
    padded = np.full((n, width + lead + 1), BOUNDARY, dtype=dtype)
    padded[:, lead : lead + width] = enc.sym
    npos = width + lead + 2 - g
    if npos <= 0:
        return np.zeros((n, 0), dtype), np.zeros((n, 0), bool)
    code = padded[:, 0:npos].copy()
    for k in range(1, g):
        code *= N_SYMBOLS
        code += padded[:, k : k + npos]
    seq_len = np.where(enc.used > 0, enc.used + lead + 1, 0)
    valid = np.arange(npos)[None, :] + g <= seq_len[:, None]
    return code, valid


def ngram_logp_table(
    labels: LabelsLike, order: int = 3, k: float = 5.0, max_len: int = DEFAULT_MAX_LEN
) -> npt.NDArray[np.float32]:
    """Character Markov model of ``order`` fitted to ``labels``, as a flat log table.

    Entry ``code`` (see :func:`ngram_codes` with ``lead = order - 1``) holds
    ``log P(last symbol | the order - 1 before it)``, smoothed by
    interpolation with the next-lower order (weight ``k`` pseudo-counts);
    the unigram level is add-½.  Index it with the codes of a label to score
    it under the model.
    """
    counts = np.zeros(N_SYMBOLS**order, dtype=np.float64)
    for _rows, enc in iter_encoded(labels, max_len):
        code, valid = ngram_codes(enc, order, lead=order - 1)
        counts += np.bincount(code[valid], minlength=N_SYMBOLS**order)
    grid = counts.reshape((N_SYMBOLS,) * order)
    prob = np.full(N_SYMBOLS, 1.0 / N_SYMBOLS)
    for g in range(1, order + 1):
        c = grid.sum(axis=tuple(range(order - g))) if g < order else grid
        c = c.reshape(-1, N_SYMBOLS)
        if g == 1:
            c1 = c.reshape(-1) + 0.5
            prob = c1 / c1.sum()
            continue
        ctx = c.sum(axis=1, keepdims=True)
        lower = np.tile(prob.reshape(-1, N_SYMBOLS), (N_SYMBOLS, 1))
        prob = ((c + k * lower) / (ctx + k)).reshape(-1)
    return np.log(prob).astype(np.float32)  # type: ignore[no-any-return, unused-ignore]


def ngram_logp_stats(
    enc: EncodedLabels, table: npt.NDArray[np.floating[Any]], order: int, low: float = -4.5
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per label under a :func:`ngram_logp_table` model: mean and minimum
    log-probability per character (end included) and the share of characters
    below ``low``.  Empty labels get zeros."""
    code, valid = ngram_codes(enc, order, lead=order - 1)
    lp = np.where(valid, table[code], 0.0)
    cnt = valid.sum(axis=1)
    safe = np.maximum(cnt, 1)
    mean = lp.sum(axis=1) / safe
    mn = lp.min(axis=1) if lp.shape[1] else np.zeros(lp.shape[0])
    share = (valid & (lp < low)).sum(axis=1) / safe
    return mean, np.where(cnt > 0, mn, 0.0), share


def frequent_ngrams(
    labels: LabelsLike, g: int, min_labels: int = 2, max_len: int = DEFAULT_MAX_LEN
) -> npt.NDArray[np.int64]:
    """Sorted codes of the ``g``-grams of ``^label$`` found in at least ``min_labels`` labels."""
    parts = []
    for _rows, enc in iter_encoded(labels, max_len):
        code, valid = ngram_codes(enc, g)
        c = np.where(valid, code, -1)
        c.sort(axis=1)
        first = np.ones(c.shape, dtype=bool)
        first[:, 1:] = c[:, 1:] != c[:, :-1]
        parts.append(c[first & (c >= 0)])
    if not parts:
        return np.zeros(0, np.int64)
    uniq, cnt = np.unique(np.concatenate(parts), return_counts=True)
    return uniq[cnt >= min_labels].astype(np.int64)  # type: ignore[no-any-return, unused-ignore]


def ngram_bitset(vocab: npt.NDArray[np.int64], g: int) -> npt.NDArray[np.uint8]:
    """A packed membership bitset over all ``40 ** g`` codes (``40 ** g / 8`` bytes)."""
    bits = np.zeros(N_SYMBOLS**g, dtype=bool)
    bits[vocab] = True
    return np.packbits(bits, bitorder="little")


def ngram_coverage(
    enc: EncodedLabels,
    vocab: npt.NDArray[np.int64],
    g: int,
    bitset: npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """How much of each label is made of known ``g``-grams (``vocab``, sorted codes).

    Returns ``(char_share, gram_share)``: the share of the label's characters
    inside at least one known ``g``-gram of ``^label$``, and the share of its
    ``g``-grams that are known.  Readable names are mostly covered by n-grams
    of other readable names; random strings are not.  Pass ``bitset``
    (:func:`ngram_bitset` of ``vocab``) for a faster lookup.
    """
    n, width = enc.sym.shape
    code, valid = ngram_codes(enc, g)
    if vocab.size == 0 or code.shape[1] == 0:
        return np.zeros(n), np.zeros(n)
    if bitset is not None:
        known = valid & ((bitset.take(code >> 3) >> (code & 7).astype(np.uint8)) & 1).astype(bool)
    else:
        pos = np.minimum(np.searchsorted(vocab, code), vocab.size - 1)
        known = valid & (vocab[pos] == code)
    cov = np.zeros((n, width + 2), dtype=bool)
    for k in range(g):
        cov[:, k : k + known.shape[1]] |= known
    chars = (cov[:, 1 : width + 1] & enc.mask).sum(axis=1)
    used = np.maximum(enc.used, 1)
    return chars / used, known.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
