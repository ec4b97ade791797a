"""Popular services: which names belong to well-known, heavily used domains.

Behavioural detectors (volume, beacon, fast-flux, new domains) see the
Internet's giants do odd-looking things every day: CDNs rotate addresses with
short TTLs, update and telemetry endpoints poll like beacons, SaaS tenants
appear overnight.  Calibration asks for overwhelming evidence before alerting
on them, and fast-flux uses the rank to tell a CDN from flux.

Three sources, merged (a domain's rank is its best rank in any of them):

* **The shipped list** ``dnsieve/data/popular_services.csv``: about 450
  well-known registered domains (search and social sites, CDNs, OS-update,
  telemetry, SaaS, cloud, security-vendor, PKI and time services) written by
  the project itself, each with a ``category``.  Its rank is its line order (a
  curated order, not a measured one): every entry is a top-1,000-class service.
* **The OpenDNS top-10k list** ``dnsieve/data/brands.txt`` (Apache-2.0
  upstream; also the look-alike detector's brand reference), ranked by line
  order: the popular sites a network meets every day (``economist.com`` is
  2,139th) are not "new" to a detector, and need overwhelming evidence.
* **The user's own top list** (optional): a Tranco/Umbrella-style CSV
  (``rank,domain``, or one domain per line, rank = line number), named by
  the ``DNSIEVE_POPULAR_LIST`` environment variable or passed as ``path``.
  Tranco itself is not shipped: it is CC BY-NC-SA.

A name matches an entry when it equals it or ends with ``"." + entry``
(``a1.d.akamaiedge.net`` matches ``akamaiedge.net``); the most specific
matching entry gives the category, and the best (smallest) rank of any
matching source is the rank.  **Tenant platforms** (entries that are
themselves public suffixes in the PSL's private section: ``github.io``,
``cloudfront.net``, ``azurewebsites.net``, ``akamaiedge.net`` ...) lend their
*category* to the names under them (a CloudFront distribution is CDN
traffic) but not their *rank*: ``anyone.github.io`` is anyone's site, and a
DGA or phishing page hosted there is not popular.

>>> popularity_rank(pl.Series(["www.google.com", "qxzvbnrt.biz", None, "x.github.io"])).to_list()
[1, None, None, None]
>>> popular_category(pl.Series(["a1.d.akamaiedge.net", "example.test"])).to_list()
['cdn', None]
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import polars as pl

__all__ = [
    "ENV_VAR",
    "PopularList",
    "is_popular",
    "load_popular",
    "popular_category",
    "popularity_rank",
]

#: Environment variable naming a user's own top list (``rank,domain`` CSV).
ENV_VAR = "DNSIEVE_POPULAR_LIST"
_SHIPPED = "popular_services.csv"
_TOP10K = "brands.txt"  # OpenDNS top-10k (Apache-2.0 upstream; see data/README.md)


@dataclass(frozen=True)
class PopularList:
    """Ranked popular domains: a frame with ``domain`` (String), ``rank``
    (UInt32, 1 = most popular) and ``category`` (String, null for entries that
    only come from a user's top list), one row per domain."""

    table: pl.DataFrame

    @property
    def size(self) -> int:
        """Number of listed domains."""
        return self.table.height

    @property
    def max_labels(self) -> int:
        """Most labels of any entry (how deep suffix matching must look)."""
        if self.table.height == 0:
            return 1
        dots = self.table.select(pl.col("domain").str.count_matches(r"\.").max()).item()
        return int(dots or 0) + 1

    def lookup(self, domains: pl.Series) -> pl.DataFrame:
        """``rank`` and ``category`` of each input name (nulls when unlisted),
        one row per input in input order."""
        names = (
            domains.cast(pl.String)
            .str.to_lowercase()
            .str.strip_chars()
            .str.strip_chars_end(".")
            .alias("name")
        )
        uniq = pl.DataFrame({"name": names.drop_nulls().unique()})
        uniq = uniq.with_columns(labels=pl.col("name").str.split("."))
        ranks: list[pl.Expr] = []
        cats: list[pl.Expr] = []
        # Most specific suffix first: its category wins; ranks take the minimum.
        tenants = _tenant_mask(self.table["domain"])
        for k in range(self.max_labels, 0, -1):
            tab = self.table.select(
                pl.col("domain").alias(f"sfx{k}"),
                pl.col("rank").alias(f"rank{k}"),
                pl.col("category").alias(f"cat{k}"),
                tenants.alias(f"tenant{k}"),
            )
            uniq = uniq.with_columns(
                pl.when(pl.col("labels").list.len() >= k)
                .then(pl.col("labels").list.slice(-k, k).list.join("."))
                .alias(f"sfx{k}")
            ).join(tab, on=f"sfx{k}", how="left")
            # A tenant platform ranks only itself, not the sites under it.
            exact = pl.col("name") == pl.col(f"sfx{k}")
            ranks.append(
                pl.when(pl.col(f"tenant{k}").fill_null(False) & ~exact)
                .then(None)
                .otherwise(pl.col(f"rank{k}"))
            )
            cats.append(pl.col(f"cat{k}"))
        uniq = uniq.select(
            "name",
            rank=pl.min_horizontal(ranks).cast(pl.UInt32),
            category=pl.coalesce(cats),
        )
        out = pl.DataFrame({"name": names}).join(uniq, on="name", how="left", maintain_order="left")
        return out.select("rank", "category")


def _tenant_mask(domains: pl.Series) -> pl.Series:
    """True for entries that are public suffixes (PSL private section)."""
    from dnsieve.domains import _psl

    psl = _psl(True)
    return pl.Series([bool(psl.is_public(d)) for d in domains.to_list()], dtype=pl.Boolean)


def _read_shipped() -> pl.DataFrame:
    ref = resources.files("dnsieve") / "data" / _SHIPPED
    df = pl.read_csv(
        ref.read_bytes(), comment_prefix="#", schema={"domain": pl.String, "category": pl.String}
    )
    return df.with_row_index("rank", offset=1).select(
        pl.col("domain").str.to_lowercase(), pl.col("rank").cast(pl.UInt32), "category"
    )


def read_top_list(path: str | Path) -> pl.DataFrame:
    """A user's top list as ``domain``/``rank``: ``rank,domain`` rows, or one
    domain per line (rank = line number).  Blank lines and ``#`` comments are
    skipped; a row without a usable domain is dropped; a domain listed twice
    keeps its best rank.

    Raises :class:`ValueError` with the path when the file holds no domain.
    """
    lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    raw = pl.DataFrame({"line": lines}, schema={"line": pl.String})
    raw = raw.with_row_index("lineno", offset=1).filter(
        (pl.col("line").str.strip_chars() != "") & ~pl.col("line").str.starts_with("#")
    )
    parts = pl.col("line").str.split(",")
    two = parts.list.len() >= 2
    first = parts.list.first().str.strip_chars()
    rank = (
        pl.when(two & first.str.contains(r"^\d+$"))
        .then(first.cast(pl.UInt32, strict=False))
        .otherwise(pl.col("lineno").cast(pl.UInt32))
    )
    dom = pl.when(two & first.str.contains(r"^\d+$")).then(parts.list.get(1)).otherwise(first)
    df = (
        raw.select(
            domain=dom.str.strip_chars().str.to_lowercase().str.strip_chars_end("."), rank=rank
        )
        .filter(
            pl.col("domain").str.contains(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)+$")
            & pl.col("rank").is_not_null()
        )
        .group_by("domain")
        .agg(pl.col("rank").min())
    )
    if df.height == 0:
        raise ValueError(f"popular list {path}: no domain found (expected rank,domain rows)")
    return df


def _read_top10k() -> pl.DataFrame:
    """The shipped OpenDNS top-10k list (``brands.txt``) as ``domain``/``rank`` (line order)."""
    ref = resources.files("dnsieve") / "data" / _TOP10K
    with resources.as_file(ref) as path:
        return read_top_list(path)


def _merge(ranked: pl.DataFrame, other: pl.DataFrame) -> pl.DataFrame:
    """``ranked`` (with categories) and a ``domain``/``rank`` list: the best rank of either."""
    merged = ranked.join(other, on="domain", how="full", coalesce=True, suffix="_other")
    return merged.select(
        "domain",
        rank=pl.min_horizontal("rank", "rank_other").cast(pl.UInt32),
        category=pl.col("category"),
    )


@lru_cache(maxsize=4)
def _load(path: str | None, mtime: float) -> PopularList:
    shipped = _merge(_read_shipped(), _read_top10k())
    if path is None:
        return PopularList(shipped.sort("rank", "domain"))
    return PopularList(_merge(shipped, read_top_list(path)).sort("rank", "domain"))


def load_popular(path: str | Path | None = None) -> PopularList:
    """The popular list: the shipped one, merged with a user's top list from
    ``path`` or, when ``path`` is None, from ``$DNSIEVE_POPULAR_LIST`` (cached
    per file and modification time)."""
    if path is None:
        env = os.environ.get(ENV_VAR, "").strip()
        path = env or None
    if path is None:
        return _load(None, 0.0)
    p = Path(path)
    return _load(str(p), p.stat().st_mtime)


def popularity_rank(domains: pl.Series, path: str | Path | None = None) -> pl.Series:
    """Popularity rank (UInt32, 1 = most popular) of each name, or null when no
    listed domain matches it.  Names may be query names or registered domains.
    ``path``: a user's top list (default ``$DNSIEVE_POPULAR_LIST``)."""
    return load_popular(path).lookup(domains)["rank"].alias("popularity_rank")


def popular_category(domains: pl.Series, path: str | Path | None = None) -> pl.Series:
    """Service category of each name from the shipped list (``cdn``,
    ``os_update``, ``telemetry``, ``saas``, ``cloud``, ``security``, ``pki``,
    ``infra``, ``web``) or null."""
    return load_popular(path).lookup(domains)["category"].alias("popular_category")


def is_popular(
    domains: pl.Series, max_rank: int = 10_000, path: str | Path | None = None
) -> pl.Series:
    """True where a name has a popularity rank within ``max_rank`` (names
    under a tenant platform such as ``github.io`` are not popular)."""
    rank = popularity_rank(domains, path)
    return (rank.fill_null(max_rank + 1) <= max_rank).alias("is_popular")
