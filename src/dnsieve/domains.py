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
import threading
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


_LOAD_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _psl_uncached(private_suffixes: bool) -> PublicSuffixList:
    return PublicSuffixList(only_icann=not private_suffixes)


def _psl(private_suffixes: bool) -> PublicSuffixList:
    # one loader at a time: a warm-up thread and the first split never parse it twice
    with _LOAD_LOCK:
        return _psl_uncached(private_suffixes)


class DomainSplitter:
    """Splits query names into (registered_domain, subdomain, tld), with a cache.

    The cache is shared across batches so a long ingest only consults the PSL
    once per distinct name (bounded by ``cache_size``).
    """

    def __init__(self, private_suffixes: bool = True, cache_size: int = 1_000_000) -> None:
        self.private_suffixes = private_suffixes
        self.cache_size = cache_size
        self._cache: dict[str, tuple[str, str, str]] = {}
        #: split of names seen in earlier batches (``__q`` and the three parts),
        #: so a long ingest splits each distinct name once, not once per batch
        self._seen: pl.DataFrame | None = None
        self._warming: threading.Thread | None = None

    def warm(self) -> None:
        """Load the Public Suffix List tables in a background thread (returns at once).

        Parsing the list costs a fixed fraction of a second per process; an
        ingest calls this first so that the parse overlaps with hashing and
        parsing its input instead of delaying the first batch.
        """
        if self._warming is None:
            self._warming = threading.Thread(
                target=_load_tables, args=(self.private_suffixes,), daemon=True, name="psl-load"
            )
            self._warming.start()

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
        """Vectorised split: the PSL is consulted once per distinct *tail*, then joined back.

        A name's public suffix depends only on its last few labels: as many
        as the longest PSL rule (wildcards and exceptions included) ending in
        its TLD or its last two labels can see (:func:`_suffix_depths`).  The
        distinct tails (``com``, ``co.uk``, ``github.io`` ...) are far fewer
        than the distinct names (every tunnel or DGA name is new), so the PSL
        runs a few hundred times and the rest is Polars string work.  Names
        outside printable ASCII or with empty labels take :meth:`split`.
        """
        names = qnames.cast(pl.String)
        uniq = names.drop_nulls().unique()
        seen = self._seen
        if seen is None:
            mapping = self._split_unique(uniq)
            self._seen = mapping if mapping.height <= self.cache_size else None
        else:
            # Names seen before (the popular ones, in most batches) are looked up;
            # only the others are split.
            batch = uniq.alias("__q").to_frame()
            known = seen.join(batch, on="__q", how="semi")
            fresh = batch.join(seen, on="__q", how="anti").get_column("__q")
            new = self._split_unique(fresh) if fresh.len() else None
            mapping = known if new is None else pl.concat([known, new])
            if new is not None:
                if seen.height + new.height <= self.cache_size:
                    self._seen = pl.concat([seen, new])
                else:  # full: start over from this batch's new names (if they fit)
                    self._seen = new if new.height <= self.cache_size else None
        return (
            names.alias("__q")
            .to_frame()
            .join(mapping, on="__q", how="left", maintain_order="left")
            .drop("__q")
        )

    def _split_unique(self, uniq: pl.Series) -> pl.DataFrame:
        """(``__q``, registered_domain, subdomain, tld) for distinct names."""
        by_tld, by_last2, wildcard = _suffix_depths(self.private_suffixes)
        clean = pl.col("__q").str.strip_chars(".")
        df = pl.DataFrame({"__q": uniq}).with_columns(
            c=clean,
            fast=pl.col("__q").str.contains(r"^[\x21-\x7e]+$")
            & (clean != "")
            & ~clean.str.contains("..", literal=True),
        )
        slow = df.filter(~pl.col("fast"))["__q"].to_list()
        df = df.filter(pl.col("fast"))
        # The PSL matches case-insensitively: tails are looked up in lower case,
        # while the name's own labels keep their case (as the per-name split does).
        lc = pl.col("c").str.to_lowercase()
        last1 = lc.str.extract(r"([^.]*)$", 1).fill_null("")
        last2 = lc.str.extract(r"([^.]+\.[^.]*)$", 1)
        df = df.with_columns(
            lc=lc,
            last1=last1,
            last2=last2,
            own1=pl.col("c").str.extract(r"([^.]*)$", 1).fill_null(""),
        ).with_columns(
            d1=pl.col("last1").replace_strict(by_tld, default=1, return_dtype=pl.Int64),
            d2=pl.max_horizontal(
                pl.col("last2")
                .replace_strict(by_last2, default=1, return_dtype=pl.Int64)
                .fill_null(1),
                pl.col("last1").replace_strict(wildcard, default=1, return_dtype=pl.Int64),
            ),
        )
        df = df.with_columns(depth=pl.when(pl.col("d1") == 1).then(1).otherwise(pl.col("d2")))
        # The tail is the last ``depth`` labels.  Names are clean here (no empty
        # labels), so depth 1 is ``last1`` and depth 2 is ``last2`` (``last1`` for a
        # one-label name); only the rare deeper rules split the name into a list.
        deep = pl.col("depth") >= 3
        shallow = df.filter(~deep).with_columns(
            tail=pl.when(pl.col("depth") == 1)
            .then(pl.col("last1"))
            .otherwise(pl.col("last2").fill_null(pl.col("last1")))
        )
        deeper = df.filter(deep)
        if deeper.height:
            deeper = deeper.with_columns(
                tail=pl.col("lc").str.split(".").list.slice(-pl.col("depth")).list.join(".")
            )
            df = pl.concat([shallow, deeper])
        else:
            df = shallow
        psl = _psl(self.private_suffixes)
        tails = df["tail"].unique()
        sfx = pl.DataFrame(
            {"tail": tails, "sfx": [psl.publicsuffix(t) for t in tails.to_list()]},
            schema={"tail": pl.String, "sfx": pl.String},
        )
        df = df.join(sfx, on="tail", how="left")
        # Staged columns, each string pass once (names are printable ASCII here,
        # so bytes are characters).
        slen = pl.col("sfx").str.len_bytes()
        df = df.with_columns(
            has=pl.col("sfx").is_not_null(), hlen=pl.col("c").str.len_bytes() - slen - 1
        ).with_columns(
            proper=pl.col("has")
            & (pl.col("hlen") > 0)
            & pl.col("lc").str.ends_with(pl.lit(".") + pl.col("sfx"))
        )
        # A suffix that is not a proper ending of the name is left to the exact path.
        odd = pl.col("has") & (pl.col("hlen") >= 0) & ~pl.col("proper")
        slow += df.filter(odd)["__q"].to_list()
        df = df.filter(~odd)
        head = pl.col("c").str.head(pl.col("hlen"))
        df = df.with_columns(
            label=pl.when(pl.col("proper")).then(head.str.extract(r"([^.]*)$", 1))
        ).with_columns(llen=pl.col("label").str.len_bytes())
        # The subdomain is the head left of the label's dot ("" for no dot).
        sub = (
            pl.when(pl.col("llen") < pl.col("hlen"))
            .then(pl.col("c").str.head(pl.col("hlen") - pl.col("llen") - 1))
            .otherwise(pl.lit(""))
        )
        out = df.select(
            "__q",
            registered_domain=pl.when(pl.col("proper"))
            .then(pl.col("label") + "." + pl.col("sfx"))
            .otherwise("c"),
            subdomain=pl.when(pl.col("proper")).then(sub).otherwise(pl.lit("")),
            tld=pl.when(pl.col("has")).then(pl.col("sfx")).otherwise(pl.col("own1")),
        )
        if slow:
            parts = [self.split(n) for n in slow]
            out = pl.concat(
                [
                    out,
                    pl.DataFrame(
                        {
                            "__q": slow,
                            "registered_domain": [p[0] for p in parts],
                            "subdomain": [p[1] for p in parts],
                            "tld": [p[2] for p in parts],
                        },
                        schema=out.schema,
                    ),
                ]
            )
        return out


def _load_tables(private: bool) -> None:
    _psl(private)
    _suffix_depths(private)


def _suffix_depths(private: bool = True) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """:func:`_suffix_depths_uncached`, computed once per process (thread-safe)."""
    with _LOAD_LOCK:
        return _suffix_depths_uncached(private)


@lru_cache(maxsize=2)
def _suffix_depths_uncached(
    private: bool,
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """How many trailing labels of a name the PSL can look at.

    Returns ``(by_tld, by_last2, wildcard)``: the most labels of any rule
    (wildcards and exceptions included; the private section too when
    ``private``) ending in a TLD, ending in a two-label suffix, and 2 for TLDs
    with a ``*.tld`` rule.  IDN rules are keyed by their punycode form, as
    names arrive on the wire.
    """
    from importlib import resources

    text = (resources.files("publicsuffixlist") / "public_suffix_list.dat").read_text("utf-8")
    if not private:
        text = text.split("===BEGIN ICANN DOMAINS===", 1)[-1]
        text = text.split("===END ICANN DOMAINS===", 1)[0]
    by_tld: dict[str, int] = {}
    by_last2: dict[str, int] = {}
    wildcard: dict[str, int] = {}
    for line in text.splitlines():
        rule = line.strip().split(" ", 1)[0].lstrip("!")
        if not rule or rule.startswith("//"):
            continue
        labels = [_ace(x) for x in rule.lower().split(".")]
        n = len(labels)
        by_tld[labels[-1]] = max(by_tld.get(labels[-1], 1), n)
        if n >= 2:
            if labels[-2] == "*":
                wildcard[labels[-1]] = 2
            else:
                key = ".".join(labels[-2:])
                by_last2[key] = max(by_last2.get(key, 2), n)
    return by_tld, by_last2, wildcard


def _ace(label: str) -> str:
    if label.isascii():  # nearly every rule: IDNA would return it unchanged
        return label
    try:
        return label.encode("idna").decode("ascii")
    except UnicodeError:
        return label


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
