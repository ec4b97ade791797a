"""Host-level DGA detection: an infected host is unmistakable by what it does.

A domain-generation bot tries many generated domains until one resolves.
Whatever its family's lexical style (random letters, dictionary-word pairs,
short labels), its resolver answers NXDOMAIN for many registered domains
that *nobody else* asks for and that *never resolve*.  Benign failures look
different: a typo or a dead host name now and then, search-suffix junk under
the organisation's own (resolving) domain, ``wpad`` and other single-label
probes, and names that many hosts fail on together (a decommissioned service).

**Failures.**  NXDOMAIN, SERVFAIL and no answer at all.  A C2 implant
rotating over a fallback list of domains that do not answer (RogueRobin's
DarkHydrus domains) gets no NXDOMAIN, just silence.  Silence is a failure
only from a host whose answers the input shows (some query of it has an
rcode): a host none of whose answers are seen (a query log without
responses, a one-way capture, outbound DNS blocked) is silent, not failing.

**Rare failing domains.**  Over the whole input (the scored period and its
baseline) a registered domain is a *rare failure* when it never answered
NOERROR, at most ``max(min_share_clients, ceil(share_clients × hosts))``
hosts queried it (names "no other host asks for", allowing for the few bots
of one family that share a day's list), it is not a local/reverse name
(``.arpa``, ``.local``, ...), not a single label and not a popular service
(:mod:`dnsieve.popular`).

**Count evidence, fitted on the population.**  ``x`` is the number of rare
failing registered domains a host queried in a window.  Over the population
of active host-hours ``x`` follows a negative binomial NB(mean μ, size r),
fitted by maximum likelihood on the population's *bulk*: the counts up to
the first gap in the observed support (0, 1, 2, ... all observed), at most
its ``1 − tail_share`` quantile, with the likelihood truncated there
(:func:`support_bulk`, :func:`fit_truncated_nb`).  Infected hosts fail on
tens of domains an hour, beyond that gap, so however many there are they
cannot inflate the fit.  A window of ``w`` hours uses NB(μ·w, r·w) (NB is
infinitely divisible: the sum of ``w`` hourly counts), and the count's
p-value is its upper tail ``P(X ≥ x)``.  With fewer than ``min_host_hours``
active host-hours (a short capture) no fit is possible; a reference
geometric law (r = 1) is used instead, with ``REFERENCE_MEAN`` rare failures
per host-hour: the highest rate measured, the same way, on the real Zeek
populations of ``../shared/data/zeek``, rounded up.

**Lexical evidence** (:mod:`dnsieve.detectors.dga`'s model): ``k`` of the
``x`` names look generated (P(DGA) ≥ ``dga_like``).  Against the
population's share ``q0`` of generated-looking names among the rare failures
of ordinary host-hours (those in the bulk; Beta(1, 1) posterior mean), its
p-value is the binomial tail ``P(Bin(x, q0) ≥ k)``.  It can only add
evidence: a word-list family that looks benign keeps the count's p-value.

**Score.**  Fisher's combination of the two p-values,
``p = χ²₄.sf(−2 ln p_count − 2 ln p_lex)``, reported as ``p_value``; the
score is ``−log10 p``.  A bot failing on 60 unseen random names in an hour
against a population with a handful of typos per hundred host-hours scores
well above 50; a host with two typos scores about 3.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
from scipy import optimize, stats

from dnsieve.detectors import register
from dnsieve.detectors.base import (
    DetectContext,
    Detector,
    EntityType,
    InputKind,
    anomaly_frame,
    empty_anomalies,
)
from dnsieve.detectors.frames import example_events, utc, window_columns

__all__ = [
    "REFERENCE_MEAN",
    "DgaHostDetector",
    "HostPopulation",
    "fisher_combine",
    "fit_truncated_nb",
    "nb_window_logsf",
    "support_bulk",
    "typos_of",
]

_LOCAL = r"(^|\.)(arpa|local|localdomain|lan|home|internal|localhost|corp|intranet)$"
_LN10 = math.log(10.0)
#: answers that mean the name did not resolve (besides no answer at all)
_FAILED = ("NXDOMAIN", "SERVFAIL")
#: Rare failures per host-hour of the reference law (an input too short for a fit):
#: the highest rate measured on the real Zeek populations of ``../shared/data/zeek``,
#: rounded up (brimdata 7 in 77 host-hours, 0.09; slips test10 1 in 20, 0.05; RITA
#: proxy 1 in 31, 0.03; RITA missing_host 0 in 178; 0.035 pooled).
#: ``tests/test_dga_host.py`` recomputes those rates and checks it stays above them.
REFERENCE_MEAN = 0.1


@dataclass(frozen=True)
class NbFit:
    """A negative binomial per host-hour: ``mean`` μ and ``size`` r (variance μ + μ²/r)."""

    mean: float
    size: float
    bulk_end: int
    host_hours: int
    method: str  # "truncated-mle" or "reference"


def support_bulk(values: np.ndarray, counts: np.ndarray, tail_share: float) -> int:
    """The end ``K`` of the population's contiguous bulk of counts.

    ``K`` is the last value before the first gap in the observed support
    (0, 1, 2, ... each observed) and at most the ``1 − tail_share`` quantile,
    and at least 1.  Infected hosts fail on tens of domains an hour, beyond
    the gap that separates them from typos, so the bulk is the benign law.

    >>> support_bulk(np.array([0, 1, 2, 55, 60]), np.array([9000, 400, 5, 3, 2]), 0.001)
    2
    """
    v = np.asarray(values, dtype=np.int64)
    c = np.asarray(counts, dtype=np.float64)
    order = np.argsort(v)
    v, c = v[order], c[order]
    k = 0
    while k + 1 < len(v) and v[k + 1] == v[k] + 1:
        k += 1
    gap_end = int(v[k]) if len(v) and v[0] == 0 else 0
    cum = np.cumsum(c) / max(c.sum(), 1.0)
    q = int(v[min(int(np.searchsorted(cum, 1.0 - tail_share, side="left")), len(v) - 1)])
    return max(1, min(gap_end, max(q, 1)))


def fit_truncated_nb(
    values: np.ndarray,
    counts: np.ndarray,
    bulk_end: int,
    min_mean: float,
    censor: bool = False,
) -> tuple[float, float]:
    """Maximum-likelihood NB(mean, size) of tallies ``counts`` of ``values``,
    truncated to ``0..bulk_end`` (values above it are ignored: they are what
    the detector looks for).  With ``bulk_end < 2`` the shape is not
    identified and the size is fixed at 1 (geometric, the heavier-tailed
    choice).  With ``censor`` the values above ``bulk_end`` are kept as
    "more than ``bulk_end``" (a censored likelihood: their share weighs on the
    tail), for populations where those values are mostly benign.
    ``min_mean`` bounds the mean from below.  Returns ``(mean, size)``.

    >>> v = np.arange(5); c = np.array([9000, 800, 150, 40, 10])
    >>> m, r = fit_truncated_nb(v, c, 4, 1e-6)
    >>> 0.1 < m < 0.2, r < 5
    (True, True)
    """
    v = np.asarray(values, dtype=np.float64)
    c = np.asarray(counts, dtype=np.float64)
    keep = v <= bulk_end
    vl, cl = v[keep], c[keep]
    n_above = float(c[~keep].sum()) if censor else 0.0
    total = float(cl.sum())
    m0 = max(float((vl * cl).sum()) / max(total, 1.0), min_mean)
    fixed_size = bulk_end < 2 and not (censor and n_above_any(v, c, bulk_end))

    def nll(theta: np.ndarray) -> float:
        mean = math.exp(theta[0])
        size = 1.0 if fixed_size else math.exp(theta[1])
        p = size / (size + mean)
        ll = float((cl * stats.nbinom.logpmf(vl, size, p)).sum())
        if censor:
            ll += n_above * float(stats.nbinom.logsf(bulk_end, size, p)) if n_above else 0.0
        else:
            ll -= total * float(stats.nbinom.logcdf(bulk_end, size, p))
        # Per observation: keeps the optimiser's tolerances meaningful at any size.
        return -ll / max(total + n_above, 1.0) if math.isfinite(ll) else 1e300

    res = optimize.minimize(
        nll,
        np.array([math.log(m0), 0.0]),
        method="L-BFGS-B",
        bounds=[(math.log(min_mean), math.log(1e4)), (math.log(1e-2), math.log(1e4))],
    )
    size = 1.0 if fixed_size else float(math.exp(res.x[1]))
    return float(math.exp(res.x[0])), size


def n_above_any(values: np.ndarray, counts: np.ndarray, bulk_end: int) -> bool:
    """Whether any tally lies above ``bulk_end``."""
    return bool((np.asarray(counts)[np.asarray(values) > bulk_end]).sum() > 0)


def nb_window_logsf(x: np.ndarray, mean: float, size: float, hours: np.ndarray) -> np.ndarray:
    """``ln P(X ≥ x)`` for X ~ NB(mean·hours, size·hours), elementwise."""
    h = np.maximum(np.asarray(hours, dtype=np.float64), 1e-9)
    p = size / (size + mean)
    return np.asarray(stats.nbinom.logsf(np.asarray(x) - 1, size * h, p), dtype=np.float64)


def fisher_combine(*log_p: np.ndarray) -> np.ndarray:
    """Natural log of Fisher's combined p-value of independent p-values given as logs.

    >>> float(np.exp(fisher_combine(np.log([0.5]), np.log([1.0])))[0]) > 0.5
    True
    """
    stat = -2.0 * np.sum(np.vstack([np.minimum(lp, 0.0) for lp in log_p]), axis=0)
    return np.asarray(stats.chi2.logsf(stat, 2 * len(log_p)), dtype=np.float64)


@dataclass(frozen=True)
class HostPopulation:
    """Population state: rare failing registered domains, the NB fit, and ``q0``."""

    rare: pl.DataFrame  # rd, n_clients, dga_probability
    nb: NbFit
    q0: float
    hosts: int
    rare_max_clients: int


def _failures(data: pl.DataFrame) -> pl.DataFrame:
    need = {"ts", "src_ip", "rcode", "registered_domain"}
    if data.height == 0 or not need <= set(data.columns):
        return pl.DataFrame(
            schema={
                "ts": pl.Datetime("us", "UTC"),
                "src_ip": pl.String,
                "qname": pl.String,
                "rd": pl.String,
                "nx": pl.Boolean,
                "ok": pl.Boolean,
                "rc": pl.String,
            }
        )
    rcode = pl.col("rcode").cast(pl.String).fill_null("").str.to_uppercase()
    # An unanswered query fails too, but only from a host whose answers the input
    # shows (some query of it has an rcode): a host none of whose answers are seen
    # (a query log without responses, a one-way capture, blocked outbound DNS) is
    # silent, not failing.
    seen = (rcode != "").any().over("src_ip")
    return data.select(
        "ts",
        "src_ip",
        "qname" if "qname" in data.columns else pl.lit(None, pl.String).alias("qname"),
        rd=pl.col("registered_domain").cast(pl.String).str.to_lowercase(),
        nx=rcode.is_in(_FAILED) | ((rcode == "") & seen),
        ok=rcode == "NOERROR",
        rc=rcode,
    ).filter(pl.col("ts").is_not_null() & pl.col("src_ip").is_not_null() & (pl.col("src_ip") != ""))


@register
class DgaHostDetector(Detector):
    """Hosts failing on many rare, never-resolving domains (any DGA family)."""

    name: ClassVar[str] = "dga_host"
    techniques: ClassVar[tuple[str, ...]] = ("T1568.002",)
    entity_type: ClassVar[EntityType] = "client"
    requires: ClassVar[InputKind] = "events"
    description: ClassVar[str] = (
        "a host failing (NXDOMAIN, SERVFAIL, no answer) on many registered domains no other "
        "host asks for, scored against the population's rate, with the lexical DGA model as "
        "extra evidence"
    )
    #: p ≤ 1e-8: about 8 rare failing domains in an hour (or 6 in a minute)
    #: under the reference law, by the count alone; far beyond typos.
    score_floor: ClassVar[float] = 8.0

    def __init__(
        self,
        share_clients: float = 0.01,
        min_share_clients: int = 3,
        tail_share: float = 0.05,
        min_host_hours: int = 100,
        dga_like: float = 0.5,
        use_lexical: bool = True,
        skip_typos: bool = True,
        max_names: int = 10,
    ) -> None:
        self.share_clients = share_clients
        self.min_share_clients = min_share_clients
        self.tail_share = tail_share
        self.min_host_hours = min_host_hours
        self.dga_like = dga_like
        self.use_lexical = use_lexical
        self.skip_typos = skip_typos
        self.max_names = max_names

    # ------------------------------------------------------------ population
    def fit_population(self, data: pl.DataFrame) -> DgaHostDetector:
        """Fit the population state on the whole input (engines call this once)."""
        self.population_: HostPopulation = self._fit(data)
        return self

    def _rare(self, ev: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
        from dnsieve.popular import is_popular, load_popular

        hosts = int(ev["src_ip"].n_unique()) if ev.height else 0
        rare_max = max(self.min_share_clients, math.ceil(self.share_clients * hosts))
        every = (
            ev.filter(pl.col("rd").is_not_null())
            .group_by("rd")
            .agg(
                n_clients=pl.col("src_ip").n_unique(),
                ok=pl.col("ok").any(),
                nx=pl.col("nx").any(),
            )
        )
        dom = every.filter(
            pl.col("nx")
            & ~pl.col("ok")
            & (pl.col("n_clients") <= rare_max)
            & pl.col("rd").str.contains(r"^[^.]+(\.[^.]+)+$")
            & ~pl.col("rd").str.contains(_LOCAL)
        )
        if dom.height:
            dom = dom.filter(~is_popular(dom["rd"]))
        if dom.height and self.skip_typos:
            known = pl.concat(
                [every.filter(pl.col("ok"))["rd"], load_popular().table["domain"]]
            ).unique()
            dom = dom.filter(~pl.col("rd").is_in(typos_of(dom["rd"], known).implode()))
        return dom.select("rd", "n_clients").sort("rd"), hosts, rare_max

    def _fit(self, data: pl.DataFrame) -> HostPopulation:
        from dnsieve.detectors.dga import score_names

        ev = _failures(data)
        rare, hosts, rare_max = self._rare(ev)
        if rare.height:
            probs = score_names(rare["rd"])["dga_probability"].fill_null(0.0)
            rare = rare.with_columns(dga_probability=probs)
        else:
            rare = rare.with_columns(dga_probability=pl.lit(0.0))
        hour = pl.col("ts").dt.truncate("1h")
        active = ev.select("src_ip", hour.alias("h")).unique()
        fails = (
            ev.filter(pl.col("nx"))
            .join(rare, on="rd", how="inner")
            .group_by("src_ip", hour.alias("h"))
            .agg(
                x=pl.col("rd").n_unique(),
                k=pl.col("rd").filter(pl.col("dga_probability") >= self.dga_like).n_unique(),
            )
        )
        hh = active.join(fails, on=["src_ip", "h"], how="left").with_columns(
            pl.col("x").fill_null(0), pl.col("k").fill_null(0)
        )
        n_hh = hh.height
        if n_hh < self.min_host_hours:
            nb = NbFit(REFERENCE_MEAN, 1.0, 0, n_hh, "reference")
            q0 = _beta_mean(0, 0)
        else:
            tally = hh["x"].value_counts().sort("x")
            v = tally["x"].to_numpy()
            c = tally["count"].to_numpy()
            bulk_end = support_bulk(v, c, self.tail_share)
            mean, size = fit_truncated_nb(v, c, bulk_end, 0.5 / n_hh)
            nb = NbFit(mean, size, bulk_end, n_hh, "truncated-mle")
            bulk = hh.filter((pl.col("x") > 0) & (pl.col("x") <= bulk_end))
            q0 = _beta_mean(int(bulk["k"].sum()), int(bulk["x"].sum()))
        return HostPopulation(rare=rare, nb=nb, q0=q0, hosts=hosts, rare_max_clients=rare_max)

    def population(self, data: pl.DataFrame, ctx: DetectContext) -> int:
        """Active host-windows in the scored period (calibration's population)."""
        ev = _failures(data)
        ev = ev.filter((pl.col("ts") >= utc(ctx.start)) & (pl.col("ts") < utc(ctx.end)))
        if ev.height == 0:
            return 0
        return ev.select("src_ip", *window_columns(ctx)).unique().height

    # ---------------------------------------------------------------- scoring
    def score(self, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
        pop = getattr(self, "population_", None) or self._fit(data)
        if pop.rare.height == 0:
            return empty_anomalies()
        ev = _failures(data).filter(
            pl.col("nx") & (pl.col("ts") >= utc(ctx.start)) & (pl.col("ts") < utc(ctx.end))
        )
        ev = ev.join(pop.rare, on="rd", how="inner")
        if ev.height == 0:
            return empty_anomalies()
        ev = ev.with_columns(window_columns(ctx))
        key = ["src_ip", "window_start", "window_end"]
        minute = pl.col("ts").dt.epoch("us") // 60_000_000
        burst = (
            ev.group_by([*key, minute.alias("m")])
            .agg(n=pl.col("rd").n_unique())
            .group_by(key)
            .agg(burst=pl.col("n").max())
        )
        # Sample names: the most generated-looking first (ties by name).
        sample = (
            ev.unique([*key, "rd"])
            .sort([*key, "dga_probability", "rd"], descending=[False] * 3 + [True, False])
            .group_by(key, maintain_order=True)
            .agg(
                names=pl.col("rd").head(self.max_names),
                mean_p=pl.col("dga_probability").mean(),
            )
        )
        agg = (
            ev.group_by(key)
            .agg(
                x=pl.col("rd").n_unique(),
                failed=pl.len(),
                nx_answers=(pl.col("rc") == "NXDOMAIN").sum(),
                servfail=(pl.col("rc") == "SERVFAIL").sum(),
                unanswered=(pl.col("rc") == "").sum(),
                k=pl.col("rd").filter(pl.col("dga_probability") >= self.dga_like).n_unique(),
                shared=pl.col("n_clients").max() - 1,
                first=pl.col("ts").min().dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
                last=pl.col("ts").max().dt.to_string("%Y-%m-%dT%H:%M:%S%.3fZ"),
            )
            .join(sample, on=key, how="left")
            .join(burst, on=key, how="left")
            .sort(key)
        )
        hours = (agg["window_end"] - agg["window_start"]).dt.total_microseconds().to_numpy() / 3.6e9
        x = agg["x"].to_numpy().astype(np.float64)
        k = agg["k"].to_numpy().astype(np.float64)
        nb = pop.nb
        lp_count = nb_window_logsf(x, nb.mean, nb.size, hours)
        if self.use_lexical:
            lp_lex = np.asarray(stats.binom.logsf(k - 1, x, pop.q0), dtype=np.float64)
            lp = fisher_combine(lp_count, lp_lex)
        else:
            lp_lex = np.zeros_like(lp_count)
            lp = lp_count
        lp = np.maximum(np.nan_to_num(lp, nan=0.0, neginf=-700.0), -700.0)
        score = np.round(-lp / _LN10, 6) + 0.0
        expected = nb.mean * hours
        evidence = [
            _evidence(r, float(e), float(pc), float(pl_), pop, self.use_lexical)
            for r, e, pc, pl_ in zip(
                agg.iter_rows(named=True), expected, lp_count, lp_lex, strict=True
            )
        ]
        return anomaly_frame(
            self.name,
            self.entity_type,
            agg["src_ip"],
            agg["window_start"],
            agg["window_end"],
            pl.Series(score),
            p_value=pl.Series(np.exp(lp)),
            evidence=evidence,
        )

    @classmethod
    def example(cls, seed: int = 0) -> pl.DataFrame:
        """Twenty minutes: a bot cycling through generated names among hosts with typos."""
        rng = np.random.default_rng(seed)
        t0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
        rows: list[dict[str, Any]] = []
        words = ["river", "stone", "maple", "quiet", "lamp", "orbit", "tiger", "cloud"]
        for i in range(60):
            w = [words[int(j)] for j in rng.integers(0, len(words), 2)]
            dom = f"{w[0]}{w[1]}{int(rng.integers(10, 99))}.net"
            rows.append(
                _row(
                    t0 + timedelta(seconds=10 * i + float(rng.random())),
                    "10.1.0.66",
                    dom,
                    i % 17 != 0,
                )
            )
        sites = ["example.org", "wikipedia.org", "python.org", "exmaple.org", "pyhton.org"]
        for _ in range(80):
            dom = sites[int(rng.integers(0, len(sites)))]
            rows.append(
                _row(
                    t0 + timedelta(seconds=float(rng.uniform(0, 1200))),
                    f"10.1.0.{int(rng.integers(2, 8))}",
                    "www." + dom,
                    dom in ("exmaple.org", "pyhton.org"),
                )
            )
        return example_events(rows)


def _variants(names: pl.Series) -> pl.DataFrame:
    """Each name with itself and every single-character deletion of it."""
    df = pl.DataFrame({"name": names.cast(pl.String)}).unique().drop_nulls()
    dels = (
        df.with_columns(i=pl.int_ranges(0, pl.col("name").str.len_chars()))
        .explode("i")
        .drop_nulls("i")
        .select(
            "name",
            v=pl.col("name").str.slice(0, pl.col("i")) + pl.col("name").str.slice(pl.col("i") + 1),
        )
    )
    return pl.concat([df.select("name", v=pl.col("name")), dels]).unique()


def typos_of(names: pl.Series, known: pl.Series) -> pl.Series:
    """The ``names`` within one edit (insertion, deletion, substitution or
    adjacent transposition) of a ``known`` name, but not equal to it:
    ``gogle.com`` and ``gooogle.com`` for ``google.com``.  Symmetric-delete
    matching: two strings are that close when their single-deletion
    neighbourhoods meet.

    >>> typos_of(pl.Series(["gogle.com", "xkqzvw.com", "google.com"]),
    ...          pl.Series(["google.com"])).to_list()
    ['gogle.com']
    """
    a = _variants(names)
    b = _variants(known).rename({"name": "known"})
    hit = a.join(b, on="v", how="inner").filter(pl.col("name") != pl.col("known"))
    out = hit["name"].unique().sort()
    return out.filter(~out.is_in(known.implode()))


def _beta_mean(k: int, n: int) -> float:
    return (k + 1.0) / (n + 2.0)


def _row(ts: datetime, client: str, qname: str, nx: bool) -> dict[str, Any]:
    reg = ".".join(qname.split(".")[-2:])
    return {
        "ts": ts,
        "src_ip": client,
        "qname": qname,
        "qtype": "A",
        "rcode": "NXDOMAIN" if nx else "NOERROR",
        "registered_domain": reg,
        "subdomain": qname[: -len(reg) - 1] if qname != reg else "",
        "tld": reg.rsplit(".", 1)[-1],
    }


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        h = int(seconds // 3600)
        return f"{h} h"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{round(seconds)} s"


def _evidence(
    r: dict[str, Any],
    expected: float,
    lp_count: float,
    lp_lex: float,
    pop: HostPopulation,
    lexical: bool,
) -> dict[str, Any]:
    host = str(r["src_ip"])
    x, k = int(r["x"]), int(r["k"])
    shared = int(r["shared"] or 0)
    span = (r["window_end"] - r["window_start"]).total_seconds()
    who = "no other host" if shared <= 0 else f"at most {shared} other host(s)"
    how = ", ".join(
        f"{n} {label}"
        for n, label in (
            (int(r["nx_answers"]), "NXDOMAIN"),
            (int(r["servfail"]), "SERVFAIL"),
            (int(r["unanswered"]), "unanswered"),
        )
        if n
    )
    reason = (
        f"{host} failed {int(r['failed'])} queries ({how}) for {x} never-resolving "
        f"domain(s) {who} asked for ({k} DGA-like), in {_duration(span)}; "
        f"{expected:.2g} expected"
    )
    return {
        "reason": reason,
        "clients": [host],
        "rare_failed_domains": x,
        "failed_queries": int(r["failed"]),
        "nxdomain_answers": int(r["nx_answers"]),
        "servfail_answers": int(r["servfail"]),
        "unanswered_queries": int(r["unanswered"]),
        "dga_like_domains": k,
        "mean_dga_probability": round(float(r["mean_p"] or 0.0), 3),
        "max_other_hosts": max(shared, 0),
        "max_failed_domains_per_minute": int(r["burst"] or 0),
        "expected_rare_failures": round(expected, 4),
        "p_count": float(f"{math.exp(lp_count):.3g}"),
        "p_lexical": float(f"{math.exp(lp_lex):.3g}") if lexical else None,
        "population_mean_per_host_hour": round(pop.nb.mean, 5),
        "population_nb_size": round(pop.nb.size, 4),
        "population_fit": pop.nb.method,
        "population_dga_like_share": round(pop.q0, 4),
        "first_failure": r["first"],
        "last_failure": r["last"],
        "sample_names": list(r["names"] or []),
    }
