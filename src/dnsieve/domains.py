"""Domain names: normalisation and the registered-domain split.

Registered domains come from the Public Suffix List snapshot bundled with the
``publicsuffixlist`` package; nothing is fetched at run time.

**Private suffixes count.**  The PSL's private section (``github.io``,
``s3.amazonaws.com``, ``blogspot.com`` ...) is used, so ``foo.github.io`` is
its own registered domain, as users expect: one GitHub Pages site is not all
of GitHub.  Set ``domains.private_suffixes = false`` to use the ICANN section
only.

Names that are themselves a public suffix, or a single unknown label such as
``wpad`` or ``localhost``, have no registered domain in the PSL sense; dnsieve
then uses the whole name as ``registered_domain`` (so they still group) with
an empty ``subdomain``.

>>> split_name("www.Example.co.uk.")
('example.co.uk', 'www', 'co.uk')
>>> split_name("foo.github.io")
('foo.github.io', '', 'github.io')
>>> split_name("wpad")
('wpad', '', 'wpad')
>>> escape_name(b"ab\\x00<c>.")
'ab\\\\x00<c>'
"""

from __future__ import annotations

import re
from functools import lru_cache

import polars as pl
from publicsuffixlist import PublicSuffixList

__all__ = [
    "DomainSplitter",
    "escape_name",
    "normalize_qnames",
    "split_name",
]

# Printable ASCII except space; everything else is escaped as \xNN.
_UNSAFE = re.compile(r"[^\x21-\x7e]")
_UNSAFE_POLARS = r"[^\x21-\x7e]"


def escape_name(raw: bytes) -> str:
    """Render wire bytes of a DNS name as a safe, byte-faithful string.

    ASCII letters are lower-cased, a trailing dot is dropped and every byte
    outside printable ASCII (space included) becomes ``\\xNN``.
    """
    out = []
    for b in raw:
        if 0x21 <= b <= 0x7E:
            out.append(chr(b + 32) if 0x41 <= b <= 0x5A else chr(b))
        else:
            out.append(f"\\x{b:02x}")
    s = "".join(out)
    return s[:-1] if s.endswith(".") and len(s) > 1 else s


def _escape_text(s: str) -> str:
    return _UNSAFE.sub(
        lambda m: "".join(f"\\x{b:02x}" for b in m.group(0).encode("utf-8", "surrogateescape")), s
    )


def normalize_qnames(col: pl.Series) -> pl.Series:
    """Normalise text query names (from logs) into the canonical form.

    Lower-cases ASCII, strips one trailing dot and escapes anything outside
    printable ASCII.  Vectorised; only names that need escaping go through
    Python.
    """
    s = col.cast(pl.String)
    needs = s.str.contains(_UNSAFE_POLARS)
    if bool(needs.any()):
        s = (
            pl.DataFrame({"s": s, "n": needs})
            .select(
                pl.when(pl.col("n"))
                .then(pl.col("s").map_elements(_escape_text, return_dtype=pl.String))
                .otherwise(pl.col("s"))
            )
            .to_series()
        )
    s = s.str.to_lowercase()
    return (
        pl.DataFrame({"s": s})
        .select(
            pl.when(pl.col("s").str.ends_with(".") & (pl.col("s").str.len_bytes() > 1))
            .then(pl.col("s").str.slice(0, pl.col("s").str.len_chars() - 1))
            .otherwise(pl.col("s"))
        )
        .to_series()
        .alias(col.name)
    )


@lru_cache(maxsize=2)
def _psl(private_suffixes: bool) -> PublicSuffixList:
    return PublicSuffixList(only_icann=not private_suffixes)


class DomainSplitter:
    """Splits query names into (registered_domain, subdomain, tld), with a cache.

    The cache is shared across batches so a long ingest only consults the PSL
    once per distinct name (bounded by ``cache_size``).
    """

    def __init__(self, private_suffixes: bool = True, cache_size: int = 1_000_000) -> None:
        self.private_suffixes = private_suffixes
        self.cache_size = cache_size
        self._cache: dict[str, tuple[str, str, str]] = {}

    def split(self, name: str) -> tuple[str, str, str]:
        """Split one normalised name."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        res = _split(_psl(self.private_suffixes), name)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[name] = res
        return res

    def split_series(self, qnames: pl.Series) -> pl.DataFrame:
        """Vectorised split: looks up each distinct name once and joins back."""
        uniq = qnames.drop_nulls().unique()
        names = uniq.to_list()
        parts = [self.split(n) for n in names]
        mapping = pl.DataFrame(
            {
                "__q": pl.Series(names, dtype=pl.String),
                "registered_domain": pl.Series([p[0] for p in parts], dtype=pl.String),
                "subdomain": pl.Series([p[1] for p in parts], dtype=pl.String),
                "tld": pl.Series([p[2] for p in parts], dtype=pl.String),
            }
        )
        return (
            qnames.cast(pl.String)
            .alias("__q")
            .to_frame()
            .join(mapping, on="__q", how="left", maintain_order="left")
            .drop("__q")
        )


def _split(psl: PublicSuffixList, name: str) -> tuple[str, str, str]:
    if not name:
        return ("", "", "")
    clean = name.strip(".")
    if not clean or ".." in clean:
        # Empty labels: PSL rules do not apply; keep the name whole.
        last = clean.rsplit(".", 1)[-1] if clean else ""
        return (clean, "", last)
    suffix = psl.publicsuffix(clean)
    if suffix is None:
        last = clean.rsplit(".", 1)[-1]
        return (clean, "", last)
    if len(suffix) >= len(clean):
        return (clean, "", suffix)
    head = clean[: len(clean) - len(suffix) - 1]
    label_start = head.rfind(".")
    registered = head[label_start + 1 :] + "." + suffix
    sub = head[:label_start] if label_start >= 0 else ""
    return (registered, sub, suffix)


_DEFAULT = DomainSplitter()


def split_name(name: str) -> tuple[str, str, str]:
    """Split one name with the default splitter (private suffixes count)."""
    norm = normalize_qnames(pl.Series([name])).item()
    return _DEFAULT.split(norm)
