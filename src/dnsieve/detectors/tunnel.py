"""Tunnelling and exfiltration per registered domain (ARCHITECTURE §5).

A DNS tunnel (iodine, dnscat2, dns2tcp, DNSExfiltrator, RogueRobin ...) has to
carry its payload in query names under a zone its operator controls, and the
answers back in TXT/NULL/CNAME/MX records.  Per registered domain and window
this detector measures:

* unique subdomains, and how much *encoded-looking information* they carry:
  every unique subdomain gets an "encodedness" in [0, 1] from its length, its
  character entropy relative to the largest entropy its alphabet allows
  (hex, base32 or the full DNS alphabet) and its letter/digit mix; the
  domain's ``encoded_bits`` is the sum of ``encodedness * length * entropy``
  over unique names (an information estimate in the spirit of Paxson et al.,
  "Practical comprehensive bounds on surreptitious communication over DNS",
  USENIX Security 2013);
* label length and entropy distribution, hex/base32/base64-likeness;
* the share of TXT/NULL/CNAME/MX/SRV/private-type queries;
* query and response bytes per query (``query_len``/``response_len`` where the
  source has them, else estimated from the name and the answers);
* queries per client.

Score::

    info  = log2(1 + top_client_bits / 64) * (1 + odd_share)
    probe = odd_share * log2(1 + unique odd-type names) * clip(distinct odd types / 2, 0, 3)
    score = (info + probe) * local_factor

``top_client_bits`` is the encoded information sent by the busiest client: a
tunnel is one client writing many encoded names, while a shared service with
random-looking labels (telemetry, CDN tokens) is many clients asking a few
each.
``probe`` catches a tunnel's handshake before any payload flows: iodine asks
for NULL, PRIVATE, TXT, SRV, MX and CNAME under fresh names to find a record
type that gets through.

so a domain whose subdomains look like words scores ~0 however busy it is, and
a tunnel scores high after a handful of queries.  Because the score sums
information, a *slow* exfiltration scored over a long window (many unique
encoded labels at a low rate) scores as high as a fast one.  Reverse lookups
(``*.arpa``) are scored at a tenth: their labels are numbers, not payloads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl

from dnsieve.detectors import register
from dnsieve.detectors.base import (
    DetectContext,
    Detector,
    EntityType,
    InputKind,
    anomaly_frame,
    empty_anomalies,
)
from dnsieve.detectors.frames import (
    evidence_json,
    example_events,
    scored_period,
    tidy,
    window_columns,
)

__all__ = ["ODD_QTYPES", "TunnelDetector", "encodedness", "encodedness_frame"]

#: Clients named in the evidence (``clients``), most information sent first.
MAX_CLIENTS = 5

#: Query types a tunnel uses for its downstream; ordinary clients rarely ask for them.
ODD_QTYPES: tuple[str, ...] = ("TXT", "NULL", "CNAME", "MX", "SRV", "ANY", "KEY", "PRIVATE")


# --------------------------------------------------------------------------- lexical kernel
def encodedness(names: pl.Expr) -> list[pl.Expr]:
    """Per-name lexical expressions over a subdomain string.

    The name is judged by its longest *token* (labels further split on ``-``
    and ``_``): payload encoders fill long tokens, while ordinary multi-label
    names (``v10-win.vortex.data``) are short words.  Returns expressions named
    ``sub_len`` (characters without dots), ``max_label``, ``token``,
    ``entropy`` (bits/char of the token), ``alphabet`` (16 hex, 32 base32, 64
    other), ``hex_like``, ``b32_like``, ``b64_like`` and ``enc``
    (encodedness in [0, 1]).  Evaluate with ``with_columns`` on a frame of
    *unique* names.

    >>> df = pl.DataFrame({"s": ["www", "7a3101a869a8e4db184955000277756596", "settings-win.data"]})
    >>> df.with_columns(encodedness(pl.col("s")))["enc"].round(2).to_list()
    [0.0, 0.94, 0.0]
    """
    full = names.fill_null("")
    t = (
        full.str.replace_all(r"[\-_]", ".")
        .str.split(".")
        .list.eval(pl.element().sort_by(pl.element().str.len_chars(), pl.element()).last())
        .list.first()
        .fill_null("")
    )
    ent = (
        t.str.split("")
        .list.eval(pl.element().unique_counts().entropy(base=2))
        .list.first()
        .fill_null(0.0)
        .clip(lower_bound=0.0)
    )
    return _encodedness_exprs(full, t, ent)


def encodedness_frame(names: pl.Series) -> pl.DataFrame:
    """:func:`encodedness` of each name, one row per name (``subdomain`` first).

    The same values, computed without per-name list evaluation: the tokens are
    exploded into a flat column and reduced by group-by, the token entropies
    come from one NumPy pass over the tokens' bytes (:func:`_token_entropy`),
    and each regular expression runs once.  This keeps the tunnel detector's
    lexical pass fast on tens of thousands of distinct, long names.

    >>> s = pl.Series(["www", "7a3101a869a8e4db184955000277756596", "settings-win.data", None])
    >>> encodedness_frame(s)["enc"].round(2).to_list()
    [0.0, 0.94, 0.0, 0.0]
    """
    base = pl.DataFrame({"subdomain": names.cast(pl.String)}).with_row_index("_i")
    tokens = (
        base.select(
            "_i",
            pl.col("subdomain")
            .fill_null("")
            .str.replace_all(r"[\-_]", ".")
            .str.split(".")
            .alias("_t"),
        )
        .explode("_t")
        .with_columns(pl.col("_t").fill_null(""))
        .sort(["_i", pl.col("_t").str.len_chars(), "_t"])
        .group_by("_i", maintain_order=True)
        .agg(pl.col("_t").last())
        .sort("_i")
    )
    frame = base.join(tokens, on="_i", how="left").sort("_i")
    frame = frame.with_columns(
        pl.col("_t").fill_null(""),
        pl.Series("_e", _token_entropy(frame.get_column("_t").fill_null(""))),
    ).with_columns(
        pl.col("_t").str.len_chars().alias("_tl"),
        pl.col("_t").str.count_matches(r"[0-9]").alias("_dg"),
        pl.col("_t").str.count_matches(r"[a-z]").alias("_lt"),
        pl.col("_t").str.contains(r"^[0-9a-f]+$").alias("_hx"),
        pl.col("_t").str.contains(r"^[a-z2-7]+$").alias("_b32"),
    )
    exprs = _encodedness_exprs(
        pl.col("subdomain").fill_null(""),
        pl.col("_t"),
        pl.col("_e"),
        parts=(pl.col("_tl"), pl.col("_dg"), pl.col("_lt"), pl.col("_hx"), pl.col("_b32")),
    )
    return frame.select(pl.col("subdomain"), *exprs)


def _token_entropy(tokens: pl.Series) -> np.ndarray:
    """Shannon entropy (bits per character) of each string, as Polars' ``entropy`` gives it.

    ASCII strings (nearly all: query names are ASCII or escaped) are counted
    in one vectorised pass over their concatenated bytes: a sort of
    (string, byte) keys, run lengths as counts, and a segmented sum of
    ``-p·log2 p``.  Other strings count Unicode characters one by one.
    """
    n = tokens.len()
    out = np.zeros(n)
    if n == 0:
        return out
    ascii_mask = tokens.str.len_bytes() == tokens.str.len_chars()
    idx = np.flatnonzero(ascii_mask.to_numpy())
    if idx.size:
        sub = tokens.filter(ascii_mask)
        lens = sub.str.len_bytes().to_numpy().astype(np.int64)
        buf = np.frombuffer("".join(sub.to_list()).encode("ascii"), dtype=np.uint8)
        owner = np.repeat(np.arange(idx.size, dtype=np.int64), lens)
        key = np.sort(owner * 256 + buf)
        if key.size:
            edge = np.flatnonzero(np.diff(key)) + 1
            starts = np.concatenate(([0], edge))
            counts = np.diff(np.append(starts, key.size)).astype(np.float64)
            grp = key[starts] // 256
            p = counts / lens[grp]
            term = -p * np.log(p)
            ent = np.zeros(idx.size)
            np.add.at(ent, grp, term)
            out[idx] = np.clip(ent / np.log(2.0), 0.0, None)
    for i in np.flatnonzero(~ascii_mask.to_numpy()):
        text = tokens[int(i)]
        counts_u = np.unique(np.array(list(text)), return_counts=True)[1].astype(np.float64)
        p = counts_u / counts_u.sum()
        out[i] = max(float(-(p * np.log(p)).sum() / np.log(2.0)), 0.0)
    return out


def _encodedness_exprs(
    full: pl.Expr,
    t: pl.Expr,
    ent: pl.Expr,
    parts: tuple[pl.Expr, pl.Expr, pl.Expr, pl.Expr, pl.Expr] | None = None,
) -> list[pl.Expr]:
    """The encodedness columns from a name, its longest token and the token's entropy.

    ``parts`` are precomputed (token length, digits, letters, hex-only,
    base32-only) columns; by default they are derived from ``t``.
    """
    length = full.str.replace_all(".", "", literal=True).str.len_chars()
    if parts is None:
        parts = (
            t.str.len_chars(),
            t.str.count_matches(r"[0-9]"),
            t.str.count_matches(r"[a-z]"),
            t.str.contains(r"^[0-9a-f]+$"),
            t.str.contains(r"^[a-z2-7]+$"),
        )
    tlen, digits, letters, is_hex, is_b32 = parts
    alphabet = pl.when(is_hex).then(16).when(is_b32).then(32).otherwise(64)
    hmax = (
        pl.min_horizontal(tlen.cast(pl.Float64), alphabet.cast(pl.Float64))
        .clip(lower_bound=2.0)
        .log(2)
    )
    rho = ent / hmax
    mix = (
        pl.when((digits >= 2) & (letters >= 2))
        .then(1.0)
        .when(tlen >= 40)
        .then(0.8)
        .when((digits >= 1) & (letters >= 1))
        .then(0.5)
        .otherwise(0.1)
    )
    e_len = ((tlen.cast(pl.Float64) - 8.0) / 16.0).clip(0.0, 1.0)
    e_rand = ((rho - 0.70) / 0.22).clip(0.0, 1.0)
    max_label = full.str.split(".").list.eval(pl.element().str.len_chars()).list.max()
    return [
        length.alias("sub_len"),
        max_label.fill_null(0).alias("max_label"),
        t.alias("token"),
        ent.alias("entropy"),
        alphabet.alias("alphabet"),
        (is_hex & (tlen >= 16)).alias("hex_like"),
        (is_b32 & ~is_hex & (tlen >= 16) & (digits >= 1)).alias("b32_like"),
        (~is_b32 & ~is_hex & (tlen >= 16) & (digits >= 2) & (letters >= 2)).alias("b64_like"),
        (e_len * e_rand * mix).alias("enc"),
    ]


def _thousands(x: pl.Expr) -> pl.Expr:
    """An integer as text with thousands separators (``6028`` → ``6,028``)."""
    return (
        x.cast(pl.Int64)
        .cast(pl.String)
        .str.reverse()
        .str.replace_all(r"(\d{3})", "${1},")
        .str.strip_chars_end(",")
        .str.reverse()
        .str.replace(r"^-,", "-")
    )


def _reason() -> pl.Expr:
    """The evidence's ``reason``: who sent how many encoded names under which domain, how fast.

    E.g. "10.0.3.7 sent 6,028 queries with 5,990 distinct encoded-looking 41-char
    subdomains under dredror.xyz in 1 h (TXT 92 %); 1 client in all".
    """
    secs = (pl.col("window_end") - pl.col("window_start")).dt.total_seconds()
    span = (
        pl.when((secs > 0) & (secs % 3600 == 0))
        .then(pl.format("{} h", (secs // 3600).cast(pl.String)))
        .when(secs >= 60)
        .then(pl.format("{} min", (secs / 60).round(0).cast(pl.Int64).cast(pl.String)))
        .otherwise(pl.format("{} s", secs.cast(pl.String)))
    )
    top = pl.col("qtypes").list.first()
    top_share = (
        100.0 * top.struct.field("n").cast(pl.Float64) / pl.col("queries").cast(pl.Float64)
    ).round(0)
    style = (
        pl.when(pl.col("mean_enc").fill_null(0.0) >= 0.5)
        .then(pl.lit(" encoded-looking "))
        .otherwise(pl.lit(" "))
    )
    n_clients = pl.col("clients")
    return pl.format(
        "{} sent {} queries with {} distinct{}{}-char subdomains under {} in {} ({} {}\u00a0%){}",
        pl.col("top_client").fill_null("an unknown client"),
        _thousands(pl.col("top_client_queries").fill_null(pl.col("queries"))),
        _thousands(pl.col("top_client_unique").fill_null(pl.col("unique_subdomains"))),
        style,
        pl.col("mean_len").fill_null(0.0).round(0).cast(pl.Int64).cast(pl.String),
        pl.col("registered_domain"),
        span,
        top.struct.field("qtype").fill_null("?"),
        top_share.fill_null(0.0).cast(pl.Int64).cast(pl.String),
        pl.when(n_clients > 1)
        .then(pl.format("; {} clients in all", _thousands(n_clients)))
        .otherwise(pl.lit("")),
    )


# --------------------------------------------------------------------------- detector
@register
class TunnelDetector(Detector):
    """DNS tunnelling / exfiltration per registered domain and window."""

    name: ClassVar[str] = "tunnel"
    techniques: ClassVar[tuple[str, ...]] = ("T1071.004", "T1048")
    entity_type: ClassVar[EntityType] = "domain"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = (
        "encoded-looking information in unique subdomains, odd query types and bytes per query"
    )
    #: Scores below this are never worth an alert, whatever the population
    #: (a hint for calibration on small captures).  Benign maxima seen on real
    #: traffic: 3.7 (footprintdns.com GUID probes in brimdata); tunnels: 7-33.
    score_floor: ClassVar[float] = 4.5

    def __init__(
        self,
        max_names_per_domain: int = 2000,
        samples: int = 5,
        min_unique: int = 1,
    ) -> None:
        self.max_names_per_domain = max_names_per_domain
        self.samples = samples
        self.min_unique = min_unique

    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        ev = scored_period(data, ctx).filter(
            pl.col("registered_domain").is_not_null() & (pl.col("registered_domain") != "")
        )
        if ev.height == 0:
            return empty_anomalies()
        ev = ev.with_columns(window_columns(ctx)).with_columns(
            pl.col("subdomain").fill_null(""),
            pl.col("qtype").fill_null("").str.to_uppercase().alias("qtype"),
        )
        # One integer id per (domain, window): every group-by, sort and window
        # function below keys on it (string keys dominated the cost); the
        # domain and window columns are joined back at the end.
        ws = pl.col("window_start").dt.epoch("us")
        ev = ev.with_columns(
            _d=pl.col("registered_domain").cast(pl.Categorical).to_physical().cast(pl.Int64),
            _w=((ws - ws.min()).rank("dense") - 1).cast(pl.Int64),
        )
        n_win = int(ev.select(pl.col("_w").max().fill_null(0)).item()) + 1
        ev = ev.with_columns(_k=pl.col("_d") * n_win + pl.col("_w")).drop("_d", "_w")
        keys = ev.select("_k", "registered_domain", "window_start", "window_end").unique("_k")
        key = ["_k"]
        odd = pl.col("qtype").is_in(list(ODD_QTYPES)) | pl.col("qtype").str.starts_with("TYPE")
        qbytes = pl.col("query_len").cast(pl.Float64).fill_nan(None)
        rbytes = pl.col("response_len").cast(pl.Float64).fill_nan(None)
        est_q = pl.col("qname").fill_null("").str.len_bytes().cast(pl.Float64) + 18.0
        est_r = est_q + pl.col("answers").list.eval(
            pl.element().str.len_bytes() + 12
        ).list.sum().fill_null(0)
        per_domain = ev.group_by(key).agg(
            queries=pl.len(),
            clients=pl.col("src_ip").n_unique(),
            odd_share=odd.mean(),
            odd_qtypes=pl.col("qtype").filter(odd).n_unique(),
            odd_unique=pl.col("subdomain").filter(odd).n_unique(),
            query_bytes=pl.coalesce(qbytes.mean(), est_q.mean()),
            response_bytes=pl.coalesce(rbytes.mean(), est_r.mean()),
            bytes_measured=qbytes.is_not_null().any(),
        )
        top_qtypes = (
            ev.group_by([*key, "qtype"])
            .agg(n=pl.len())
            .sort([*key, "n", "qtype"], descending=[False] * len(key) + [True, False])
            .group_by(key, maintain_order=True)
            .agg(qtypes=pl.struct("qtype", "n").head(4))
        )
        per_domain = per_domain.join(top_qtypes, on=key, how="left")
        names = ev.select([*key, "subdomain"]).unique()
        # Cap the per-domain work deterministically (by hash) for huge zones.
        names = (
            names.with_columns(_h=pl.col("subdomain").hash(seed=7))
            .with_columns(_r=pl.col("_h").rank("ordinal").over(key))
            .with_columns(unique_subdomains=pl.len().over(key))
            .filter(pl.col("_r") <= self.max_names_per_domain)
            .drop("_h", "_r")
        )
        # The lexical kernel is a pure function of the name: evaluate it once per
        # distinct subdomain (``www`` recurs in every window of every domain) and
        # join it back, instead of once per (domain, window, subdomain).
        lexicon = encodedness_frame(names.get_column("subdomain").unique())
        names = names.join(lexicon, on="subdomain", how="left", nulls_equal=True)
        names = names.with_columns(bits=pl.col("enc") * pl.col("sub_len") * pl.col("entropy"))
        # Samples rank on 9 significant digits of encodedness: names alike to the
        # last float bit tie, and the tie goes to the first name in byte order.
        by_enc = pl.col("subdomain").sort_by(
            [pl.col("enc").round_sig_figs(9), "subdomain"], descending=[True, False]
        )
        lex = names.group_by(key).agg(
            unique_subdomains=pl.col("unique_subdomains").first(),
            sampled=pl.len(),
            nonempty=(pl.col("sub_len") > 0).sum(),
            encoded_bits=pl.col("bits").sum(),
            mean_enc=pl.col("enc").mean(),
            mean_len=pl.col("sub_len").mean(),
            p90_len=pl.col("sub_len").quantile(0.9, "nearest"),
            max_label=pl.col("max_label").max(),
            mean_entropy=pl.col("entropy").mean(),
            hex_share=pl.col("hex_like").mean(),
            b32_share=pl.col("b32_like").mean(),
            b64_share=pl.col("b64_like").mean(),
            sample=by_enc.head(self.samples),
        )
        # Information carried by the single busiest client: a tunnel is one
        # client writing many encoded names; a shared service is many clients
        # each asking a few.
        # The clients to look at are ranked the same way: most information first.
        client_bits = (
            ev.select([*key, "src_ip", "subdomain"])
            .unique()
            .join(names.select([*key, "subdomain", "bits"]), on=[*key, "subdomain"], how="inner")
            .group_by([*key, "src_ip"])
            .agg(client_bits=pl.col("bits").sum())
        )
        per_client = (
            ev.group_by([*key, "src_ip"])
            .agg(client_queries=pl.len(), client_unique=pl.col("subdomain").n_unique())
            .join(client_bits, on=[*key, "src_ip"], how="left")
            .with_columns(pl.col("client_bits").fill_null(0.0))
            # Rank on 9 significant digits: clients carrying the same information
            # (the same names) tie whatever the order of the float sums, and the
            # tie goes to the busier client, then the address.
            .with_columns(_rank=pl.col("client_bits").round_sig_figs(9))
            .sort(
                [*key, "_rank", "client_queries", "src_ip"],
                descending=[False] * len(key) + [True, True, False],
            )
            .group_by(key, maintain_order=True)
            .agg(
                top_client_bits=pl.col("client_bits").first(),
                top_client=pl.col("src_ip").first(),
                top_client_queries=pl.col("client_queries").first(),
                top_client_unique=pl.col("client_unique").first(),
                top_clients=pl.col("src_ip").drop_nulls().head(MAX_CLIENTS),
            )
        )
        df = (
            per_domain.join(lex, on=key, how="left")
            .join(per_client, on=key, how="left")
            .join(keys, on=key, how="left")
        )
        # Extrapolate sampled information to all unique names.
        scale = (pl.col("unique_subdomains") / pl.col("sampled")).fill_null(1.0)
        local = pl.col("registered_domain").str.contains(r"(^|\.)(arpa|local|localdomain)$")
        df = df.with_columns(
            encoded_bits=(pl.col("encoded_bits") * scale).fill_null(0.0),
            top_client_bits=(pl.col("top_client_bits") * scale).fill_null(0.0),
        )
        info = (1.0 + pl.col("top_client_bits") / 64.0).log(2) * (1.0 + pl.col("odd_share"))
        probe = (
            pl.col("odd_share")
            * (1.0 + pl.col("odd_unique").cast(pl.Float64)).log(2)
            * (pl.col("odd_qtypes").cast(pl.Float64) / 2.0).clip(0.0, 3.0)
        )
        df = df.with_columns(
            score=(info + probe) * pl.when(local).then(0.1).otherwise(1.0),
            queries_per_client=pl.col("queries") / pl.col("clients").clip(lower_bound=1),
        ).filter(pl.col("nonempty").fill_null(0) >= self.min_unique)
        if df.height == 0:
            return empty_anomalies()
        r2 = lambda c: tidy(pl.col(c).cast(pl.Float64)).alias(c)  # noqa: E731
        evidence = df.select(
            evidence_json(
                _reason().alias("reason"),
                pl.col("top_clients").fill_null([]).alias("clients"),
                pl.col("queries"),
                pl.col("clients").alias("distinct_clients"),
                r2("queries_per_client"),
                pl.col("unique_subdomains"),
                r2("encoded_bits"),
                r2("top_client_bits"),
                r2("mean_enc").alias("mean_encodedness"),
                r2("mean_len").alias("mean_subdomain_len"),
                pl.col("p90_len").alias("p90_subdomain_len"),
                pl.col("max_label").alias("max_label_len"),
                r2("mean_entropy"),
                r2("hex_share"),
                r2("b32_share"),
                r2("b64_share"),
                r2("odd_share").alias("txt_null_cname_mx_share"),
                pl.col("odd_qtypes").alias("distinct_odd_qtypes"),
                pl.col("qtypes").alias("top_qtypes"),
                r2("query_bytes").alias("query_bytes_per_query"),
                r2("response_bytes").alias("response_bytes_per_query"),
                pl.col("bytes_measured"),
                pl.col("sample").alias("sample_names"),
            )
        ).to_series()
        return anomaly_frame(
            self.name,
            self.entity_type,
            df["registered_domain"],
            df["window_start"],
            df["window_end"],
            df["score"].fill_nan(0.0).fill_null(0.0).round(9).replace(-0.0, 0.0),
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """A minute of traffic: a dnscat-like hex tunnel beside ordinary browsing."""
        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
        rows: list[dict[str, Any]] = []
        for i in range(30):
            payload = "".join(rng.choice(list("0123456789abcdef"), size=56))
            sub = f"{payload[:40]}.{payload[40:]}"
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=2 * i + float(rng.random())),
                    "src_ip": "10.0.0.5",
                    "qname": f"{sub}.tun-example.com",
                    "qtype": ["TXT", "CNAME", "MX"][i % 3],
                    "rcode": "NOERROR",
                    "answers": ["0a1b2c3d4e5f"],
                    "ttls": [0.0],
                    "registered_domain": "tun-example.com",
                    "subdomain": sub,
                    "tld": "com",
                }
            )
        for i in range(40):
            host = ["www", "mail", "login", "static", "cdn", ""][int(rng.integers(0, 6))]
            dom = ["example.org", "wikipedia.org", "bbc.co.uk"][i % 3]
            rows.append(
                {
                    "ts": t0 + timedelta(seconds=float(rng.uniform(0, 60))),
                    "src_ip": f"10.0.0.{int(rng.integers(2, 9))}",
                    "qname": f"{host}.{dom}" if host else dom,
                    "qtype": "A",
                    "rcode": "NOERROR",
                    "answers": ["93.184.216.34"],
                    "ttls": [300.0],
                    "query_len": int(rng.integers(28, 45)),
                    "response_len": int(rng.integers(60, 120)),
                    "registered_domain": dom,
                    "subdomain": host,
                    "tld": dom.split(".", 1)[1],
                }
            )
        return example_events(rows)
