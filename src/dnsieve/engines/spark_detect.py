"""Detectors on Spark without the driver holding data (ARCHITECTURE §7).

:func:`score_on_cluster` runs one detector over a Spark frame of its input
(events or an hourly aggregate) and brings back only the candidates and the
scored population:

1. a detector with population-level state is fitted from statistics reduced
   **on the cluster** (:func:`fit_on_cluster`); only those few numbers (and,
   for the event detectors, the short lists their state is made of: new
   domains, rare failing domains) reach the driver;
2. the input is hash-partitioned by the detector's entity columns and the
   detector's pure ``score`` runs on each partition with ``mapInArrow``;
   each partition also counts its share of the calibration population;
3. the driver receives the candidates (for calibration) and one population
   count per partition.

The population fits mirror the detectors' own ``fit_population`` exactly
(same statistics, same estimators), so the Spark path and the embedded path
produce the same anomalies; ``tests/test_spark_distributed.py`` checks it
under a ``spark.driver.maxResultSize`` far below the size of the aggregates.

Volume (``volume``, ``client_volume``): the hurdle priors need, per entity,
the hours active ``k``, the sums ``s = Σ(y−1)`` and ``q = Σ(y−1)²`` and the
size of the first active hour.  The cluster reduces those to moments (means,
population variances, exact quantiles of the occurrence rate, per-stratum
moments and the newcomers' size histogram); :func:`priors_from_moments` turns
them into the :class:`~dnsieve.detectors.volume.HurdlePriors` that
:func:`~dnsieve.detectors.volume.fit_priors` would fit from the arrays.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from dnsieve.detectors.base import ANOMALY_POLARS_SCHEMA
from dnsieve.engines.base import entity_columns
from dnsieve.schema import ANOMALY

if TYPE_CHECKING:
    from pyspark.sql import Column
    from pyspark.sql import DataFrame as SparkDataFrame

    from dnsieve.detectors.base import DetectContext, Detector
    from dnsieve.detectors.volume import HurdlePriors

__all__ = [
    "POPULATION_COLUMN",
    "SizeMoments",
    "fit_on_cluster",
    "priors_from_moments",
    "score_on_cluster",
    "volume_fit_on_cluster",
]

#: the extra column of the partition scorer's output that carries population counts.
POPULATION_COLUMN = "_population"
#: detectors whose calibration population is read from their fitted state, not
#: counted per partition (their ``population`` ignores the data once fitted).
_POPULATION_FROM_STATE = frozenset({"newdomain"})
_ANOMALY_SORT = ["entity", "window_start", "detector", "entity_type"]


def _F() -> Any:
    from pyspark.sql import functions as F

    return F


def _rows(sdf: SparkDataFrame) -> list[Any]:
    """``collect()`` for frames the caller knows to be a handful of rows (statistics)."""
    return sdf.collect()


# ---------------------------------------------------------------------------- volume priors
@dataclass(frozen=True)
class SizeMoments:
    """Moments of the per-entity size ``x = s/k``: what a Gamma moment fit needs.

    ``n`` entities, mean and population variance of ``x``, mean of ``1/k``.
    """

    n: int
    mean_x: float
    var_x: float
    mean_inv_k: float

    def gamma(self) -> tuple[float, float]:
        """(α0, β0) exactly as :func:`dnsieve.detectors.volume._gamma_moments` computes them."""
        mu = max(self.mean_x, 1e-3)
        var_lam = self.var_x - mu * self.mean_inv_k if self.n > 1 else 0.0
        alpha0 = 1e3 if var_lam <= 1e-9 * mu * mu else mu * mu / var_lam
        alpha0 = float(np.clip(alpha0, 1e-2, 1e3))
        return alpha0, alpha0 / mu


def priors_from_moments(
    *,
    n_entities: int,
    n_hours: float,
    mean_rate: float,
    var_rate: float,
    size: SizeMoments,
    phi_pop: float,
    edges: tuple[float, ...] = (),
    strata: dict[int, SizeMoments] | None = None,
    newcomers: tuple[np.ndarray, np.ndarray] | None = None,
    method: str = "moments",
    min_stratum: int = 50,
) -> HurdlePriors:
    """The moment-method :class:`HurdlePriors` from population moments.

    Mirrors :func:`dnsieve.detectors.volume.fit_priors` (``method="moments"``)
    term by term: the beta-binomial moment identity on the occurrence rate,
    the Gamma moment fit of the size, the size priors per rate stratum
    (``edges`` are the interior quantile edges; a stratum with fewer than
    ``min_stratum`` entities uses the pooled prior) and the newcomer prior
    (maximum marginal likelihood over the newcomers' first-hour sizes, given
    as a histogram ``(values, counts)``).

    >>> p = priors_from_moments(n_entities=0, n_hours=24, mean_rate=0, var_rate=0,
    ...     size=SizeMoments(0, 0, 0, 0), phi_pop=1.0)
    >>> (p.a0, p.b0, p.n_entities)
    (0.5, 10.0, 0)
    """
    from dnsieve.detectors.volume import HurdlePriors, _mml_gamma

    if n_entities == 0:
        return HurdlePriors(0.5, 10.0, 1.0, 1.0, phi_pop, method, 0)
    n = float(max(n_hours, 1.0))
    m = float(np.clip(mean_rate, 1e-6, 1 - 1e-6))
    v = var_rate if n_entities > 1 else 0.0
    rho = (v / (m * (1 - m)) - 1.0 / n) / (1.0 - 1.0 / n) if n > 1 else 0.5
    rho = float(np.clip(rho, 1e-4, 0.999))
    conc = 1.0 / rho - 1.0
    a0, b0 = m * conc, (1.0 - m) * conc
    alpha0, beta0 = size.gamma()
    al_s: list[float] = []
    be_s: list[float] = []
    if edges:
        for b in range(len(edges) + 1):
            st = (strata or {}).get(b)
            if st is None or st.n < min_stratum:
                al_s.append(alpha0)
                be_s.append(beta0)
            else:
                a_b, b_b = st.gamma()
                al_s.append(a_b)
                be_s.append(b_b)
    new_al = new_be = math.nan
    if newcomers is not None:
        values, counts = newcomers
        f = np.maximum(np.repeat(np.asarray(values, dtype=np.float64), counts), 0.0)
        if f.size >= 50:
            ones = np.ones_like(f)
            mom = SizeMoments(f.size, float(f.mean()), float(f.var()), 1.0)
            new_al, new_be = _mml_gamma(ones, f, *mom.gamma())
    # each stratum's share of the population (calibration's per-stratum tails)
    share = tuple(
        float((strata or {})[b].n if b in (strata or {}) else 0) / float(n_entities)
        for b in range(len(edges) + 1)
    ) if edges else ()  # fmt: skip
    return HurdlePriors(
        float(a0), float(b0), float(alpha0), float(beta0), float(phi_pop), method,
        int(n_entities), tuple(edges), tuple(al_s), tuple(be_s), new_al, new_be, share,
    )  # fmt: skip


def _hours_frame(sdf: SparkDataFrame, entity_col: str, count_col: str) -> SparkDataFrame:
    """Spark twin of ``volume._hours_of``: (entity, h, y) with y > 0, duplicates summed."""
    F = _F()
    cnt = F.col(count_col).cast("double") if count_col in sdf.columns else F.lit(0.0)
    y = F.greatest(F.when(cnt.isNull() | F.isnan(cnt), F.lit(0.0)).otherwise(cnt), F.lit(0.0))
    h = F.floor(F.unix_micros(F.col("hour")) / F.lit(3_600_000_000)).cast("long")
    return (
        sdf.select(F.col(entity_col).cast("string").alias("e"), h.alias("h"), y.alias("y"))
        .where(F.col("e").isNotNull() & F.col("h").isNotNull())
        .groupBy("e", "h")
        .agg(F.sum("y").alias("y"))
        .where(F.col("y") > 0)
    )


def _stratum(rate: Column, edges: tuple[float, ...]) -> Column:
    """``np.searchsorted(edges, rate, side="left")``: how many edges lie strictly below."""
    F = _F()
    idx = F.lit(0)
    for e in edges:
        idx = idx + F.when(rate > F.lit(e), F.lit(1)).otherwise(F.lit(0))
    return idx


def _size_moments(row: Any) -> SizeMoments:
    return SizeMoments(
        int(row["n"] or 0),
        float(row["mx"] or 0.0),
        float(row["vx"] or 0.0),
        float(row["mik"] or 0.0),
    )


def _priors_on_cluster(
    rows: SparkDataFrame,
    hmin: int,
    hmax: int,
    min_baseline_hours: int,
    method: str,
    n_strata: int = 8,
    max_entities: int = 50_000,
    seed: int = 0,
) -> HurdlePriors:
    """``_HurdleVolume._fit`` on a Spark frame of (e, h, y) rows; statistics only come back."""
    F = _F()
    n = float(hmax - hmin + 1)
    st = rows.groupBy("e").agg(
        F.count(F.lit(1)).cast("double").alias("k"),
        F.greatest(F.sum(F.col("y") - 1), F.lit(0.0)).alias("s"),
        F.sum((F.col("y") - 1) * (F.col("y") - 1)).alias("q"),
        F.min("h").alias("h1"),
        (F.min_by("y", "h") - 1).alias("s1"),
    )
    k, s, q = F.col("k"), F.col("s"), F.col("q")
    m = s / k
    phi = F.least(F.greatest(((q - k * m * m) / (k - 1)) / m, F.lit(1.0)), F.lit(1e4))
    st = st.select(
        "k",
        "s",
        "h1",
        "s1",
        F.least(k / F.lit(n), F.lit(1.0)).alias("r"),
        (s / k).alias("x"),
        (F.lit(1.0) / k).alias("ik"),
        F.when((k >= 10) & (m > 0), phi).alias("phi"),
    ).cache()
    try:
        probs = [float(p) for p in np.linspace(0.0, 1.0, n_strata + 1)[1:-1]]
        quant = F.expr(f"percentile(r, array({', '.join(repr(p) for p in probs)}))")
        g = _rows(
            st.agg(
                F.count(F.lit(1)).alias("n"),
                F.avg("r").alias("mr"),
                F.var_pop("r").alias("vr"),
                F.avg("x").alias("mx"),
                F.var_pop("x").alias("vx"),
                F.avg("ik").alias("mik"),
                F.expr("percentile(phi, 0.5)").alias("phi_med"),
                quant.alias("q"),
            )
        )[0]
        n_ent = int(g["n"])
        phi_pop = float(g["phi_med"]) if g["phi_med"] is not None else 1.0
        edges: tuple[float, ...] = ()
        strata: dict[int, SizeMoments] = {}
        if n_strata > 1 and n_ent >= 100:
            edges = tuple(float(e) for e in np.unique(np.asarray(g["q"], dtype=np.float64)))
            for r in _rows(
                st.groupBy(_stratum(F.col("r"), edges).alias("b")).agg(
                    F.count(F.lit(1)).alias("n"),
                    F.avg("x").alias("mx"),
                    F.var_pop("x").alias("vx"),
                    F.avg("ik").alias("mik"),
                )
            ):
                strata[int(r["b"])] = _size_moments(r)
        hist = _rows(
            st.where(F.col("h1") >= F.lit(hmin + int(min_baseline_hours)))
            .groupBy("s1")
            .agg(F.count(F.lit(1)).alias("c"))
        )
        newcomers = (
            np.array([float(r["s1"]) for r in hist if r["s1"] is not None], dtype=np.float64),
            np.array([int(r["c"]) for r in hist if r["s1"] is not None], dtype=np.int64),
        )
        priors = priors_from_moments(
            n_entities=n_ent,
            n_hours=n,
            mean_rate=float(g["mr"] or 0.0),
            var_rate=float(g["vr"] or 0.0),
            size=_size_moments(g),
            phi_pop=phi_pop,
            edges=edges,
            strata=strata,
            newcomers=newcomers,
            method=method,
        )
        if method == "mml" and n_ent:
            priors = _mml_on_sample(st, priors, n, max_entities, seed)
        elif method != "moments":
            raise ValueError(f"unknown prior method {method!r}: use 'moments' or 'mml'")
        return priors
    finally:
        st.unpersist()


def _mml_on_sample(
    st: SparkDataFrame, priors: HurdlePriors, n: float, max_entities: int, seed: int
) -> HurdlePriors:
    """The ``mml`` refinement of (a0, b0, α0, β0) on at most ``max_entities`` entities.

    The sample is drawn on the cluster (a seeded hash order), so at most
    ``max_entities`` (k, s) pairs reach the driver; with fewer entities than
    that every entity is used, as in :func:`~dnsieve.detectors.volume.fit_priors`.
    """
    from dataclasses import replace

    from dnsieve.detectors.volume import _mml_beta, _mml_gamma

    F = _F()
    sample = _rows(
        st.orderBy(F.xxhash64(F.col("k"), F.col("s"), F.col("h1"), F.lit(seed)))
        .limit(max_entities)
        .select("k", "s")
    )
    k = np.array([float(r["k"]) for r in sample])
    s = np.array([float(r["s"]) for r in sample])
    a0, b0 = _mml_beta(k, n, priors.a0, priors.b0)
    alpha0, beta0 = _mml_gamma(k, s, priors.alpha0, priors.beta0)
    return replace(priors, a0=a0, b0=b0, alpha0=alpha0, beta0=beta0, method="mml")


def volume_fit_on_cluster(detector: Any, sdf: SparkDataFrame, until: Any = None) -> Any:
    """A copy of a volume detector with ``priors_``, ``t0_`` and ``client_priors_`` fitted on Spark.

    With ``until`` (a datetime) the priors are fitted on the baseline hours
    before it only, as ``fit_population(data, until)`` does.
    """
    F = _F()
    fitted = copy.deepcopy(detector)
    rows = _hours_frame(sdf, detector.entity_col, "queries").cache()

    def before(r: SparkDataFrame) -> SparkDataFrame:
        if until is None:
            return r
        u = int(_aware(until).timestamp() // 3600)
        return r.filter((F.col("h") < u) & (F.col("h") >= u - int(detector.baseline_hours)))

    try:
        lo = _rows(rows.agg(F.min("h").alias("lo")))[0]["lo"]
        fitted.t0_ = None if lo is None else int(lo)
        fit_rows = before(rows)
        b = _rows(fit_rows.agg(F.min("h").alias("lo"), F.max("h").alias("hi")))[0]
        if b["lo"] is None:
            from dnsieve.detectors.volume import fit_priors

            fitted.priors_ = fit_priors(np.zeros(0), np.zeros(0), 1.0)
        else:
            fitted.priors_ = _priors_on_cluster(
                fit_rows, int(b["lo"]), int(b["hi"]), detector.min_baseline_hours,
                detector.prior_method,
            )  # fmt: skip
    finally:
        rows.unpersist()
    fitted.client_priors_ = None
    col = detector.clients_col
    if col is not None and col in sdf.columns:
        crows = before(_hours_frame(sdf, detector.entity_col, col)).cache()
        try:
            cb = _rows(crows.agg(F.min("h").alias("lo"), F.max("h").alias("hi")))[0]
            if cb["lo"] is None:
                from dnsieve.detectors.volume import fit_priors

                fitted.client_priors_ = fit_priors(np.zeros(0), np.zeros(0), 1.0)
            else:
                fitted.client_priors_ = _priors_on_cluster(
                    crows, int(cb["lo"]), int(cb["hi"]), detector.min_baseline_hours,
                    detector.prior_method,
                )  # fmt: skip
        finally:
            crows.unpersist()
    return fitted


# ---------------------------------------------------------------------------- dga_host
def _deletions(col: str) -> Column:
    """The name itself and each single-character deletion of it (an array column)."""
    F = _F()
    return F.array_union(
        F.array(F.col(col)),
        F.expr(
            f"transform(sequence(0, length({col}) - 1), "
            f"i -> concat(substring({col}, 1, i), substring({col}, i + 2)))"
        ),
    )


def _typos_on_cluster(names: pl.Series, known: SparkDataFrame) -> set[str]:
    """``dga_host.typos_of(names, known)`` with ``known`` (column ``known``) left on the cluster."""
    from dnsieve.detectors.dga_host import _variants

    F = _F()
    if names.len() == 0:
        return set()
    spark = known.sparkSession
    var = _variants(names).rename({"name": "name", "v": "v"})
    vdf = spark.createDataFrame(var.to_arrow())
    kv = known.select("known", F.explode(_deletions("known")).alias("v"))
    hit = (
        F.broadcast(vdf)  # the rare names' variants (built on the driver); kv stays put
        .join(kv, on="v", how="inner")
        .where(F.col("name") != F.col("known"))
        .select("name")
        .distinct()
    )
    return {str(r["name"]) for r in _rows(hit)}


def dga_host_fit_on_cluster(detector: Any, sdf: SparkDataFrame) -> Any:
    """A copy of a ``dga_host`` detector with ``population_`` fitted from cluster statistics.

    The rare failing domains (the state the scorer needs) and a tally of
    rare failures per host-hour come back; events and host-hours stay on the
    cluster.  Same steps as ``DgaHostDetector._fit``.
    """
    from dnsieve.detectors.dga import score_names
    from dnsieve.detectors.dga_host import (
        _FAILED,
        _LOCAL,
        REFERENCE_MEAN,
        HostPopulation,
        NbFit,
        _beta_mean,
        fit_truncated_nb,
        support_bulk,
        typos_of,
    )
    from dnsieve.popular import is_popular, load_popular

    F = _F()
    d = detector
    from pyspark.sql import Window

    rcode = F.upper(F.coalesce(F.col("rcode").cast("string"), F.lit("")))
    # as dga_host._failures: no answer fails too, from a host whose answers are seen
    seen = F.max((rcode != "").cast("int")).over(Window.partitionBy("src_ip")) == 1
    ev = (
        sdf.select(
            "ts",
            "src_ip",
            F.lower(F.col("registered_domain").cast("string")).alias("rd"),
            (rcode.isin(*_FAILED) | ((rcode == "") & seen)).alias("nx"),
            (rcode == "NOERROR").alias("ok"),
        )
        .where(F.col("ts").isNotNull() & F.col("src_ip").isNotNull() & (F.col("src_ip") != ""))
        .cache()
    )
    try:
        hosts = int(_rows(ev.agg(F.countDistinct("src_ip").alias("n")))[0]["n"])
        rare_max = max(d.min_share_clients, math.ceil(d.share_clients * hosts))
        every = (
            ev.where(F.col("rd").isNotNull())
            .groupBy("rd")
            .agg(
                F.countDistinct("src_ip").alias("n_clients"),
                F.max("ok").alias("ok"),
                F.max("nx").alias("nx"),
            )
        )
        dom_sdf = every.where(
            F.col("nx")
            & ~F.col("ok")
            & (F.col("n_clients") <= rare_max)
            & F.col("rd").rlike(r"^[^.]+(\.[^.]+)+$")
            & ~F.col("rd").rlike(_LOCAL)
        ).select("rd", F.col("n_clients").cast("long"))
        dom = pl.DataFrame(
            [(str(r["rd"]), int(r["n_clients"])) for r in _rows(dom_sdf)],
            schema={"rd": pl.String, "n_clients": pl.UInt32},
            orient="row",
        )
        if dom.height:
            dom = dom.filter(~is_popular(dom["rd"]))
        if dom.height and d.skip_typos:
            popular = load_popular().table["domain"]
            resolving = every.where(F.col("ok")).select(F.col("rd").alias("known"))
            typos = _typos_on_cluster(dom["rd"], resolving)
            typos |= set(typos_of(dom["rd"], popular).to_list())
            typos -= set(popular.to_list())
            dom = dom.filter(~pl.col("rd").is_in(sorted(typos)))
        rare = dom.select("rd", "n_clients").sort("rd")
        if rare.height:
            probs = score_names(rare["rd"])["dga_probability"].fill_null(0.0)
            rare = rare.with_columns(dga_probability=probs)
        else:
            rare = rare.with_columns(dga_probability=pl.lit(0.0))
        spark = sdf.sparkSession
        rare_sdf = spark.createDataFrame(
            rare.select("rd", "dga_probability").to_arrow(),
            schema="rd string, dga_probability double",
        )
        hour = F.date_trunc("hour", F.col("ts"))
        active = ev.select("src_ip", hour.alias("h")).distinct()
        rare_hit = F.when(F.col("dga_probability") >= F.lit(d.dga_like), F.col("rd"))
        fails = (
            ev.where(F.col("nx"))
            .join(F.broadcast(rare_sdf), on="rd", how="inner")
            .groupBy("src_ip", hour.alias("h"))
            .agg(F.countDistinct("rd").alias("x"), F.countDistinct(rare_hit).alias("k"))
        )
        hh = active.join(fails.hint("shuffle_merge"), on=["src_ip", "h"], how="left").select(
            F.coalesce("x", F.lit(0)).alias("x"), F.coalesce("k", F.lit(0)).alias("k")
        )
        tally = _rows(hh.groupBy("x").agg(F.count(F.lit(1)).alias("c"), F.sum("k").alias("k")))
        n_hh = sum(int(r["c"]) for r in tally)
        if n_hh < d.min_host_hours:
            nb = NbFit(REFERENCE_MEAN, 1.0, 0, n_hh, "reference")
            q0 = _beta_mean(0, 0)
        else:
            tally.sort(key=lambda r: int(r["x"]))
            v = np.array([int(r["x"]) for r in tally], dtype=np.int64)
            c = np.array([int(r["c"]) for r in tally], dtype=np.int64)
            bulk_end = support_bulk(v, c, d.tail_share)
            mean, size = fit_truncated_nb(v, c, bulk_end, 0.5 / n_hh)
            nb = NbFit(mean, size, bulk_end, n_hh, "truncated-mle")
            bulk = [r for r in tally if 0 < int(r["x"]) <= bulk_end]
            q0 = _beta_mean(
                sum(int(r["k"]) for r in bulk), sum(int(r["x"]) * int(r["c"]) for r in bulk)
            )
    finally:
        ev.unpersist()
    fitted = copy.deepcopy(detector)
    fitted.population_ = HostPopulation(
        rare=rare, nb=nb, q0=q0, hosts=hosts, rare_max_clients=rare_max
    )
    return fitted


# ---------------------------------------------------------------------------- newdomain
def newdomain_fit_on_cluster(detector: Any, sdf: SparkDataFrame) -> Any:
    """A copy of a ``newdomain`` detector with ``population_`` fitted from cluster statistics.

    The first sightings of new domains (the detector's state) and tallies of
    the completed domains' extra hosts and return hours come back; the
    per-domain counts run on the cluster with the detector's own ``_counts``.
    Same steps as ``NewDomainDetector._fit``.
    """
    from datetime import timedelta

    from dnsieve.detectors.dga_host import fit_truncated_nb, support_bulk
    from dnsieve.detectors.newdomain import (
        _LOCAL,
        _REFERENCE,
        NewDomainPopulation,
        fit_method,
        host_browsing,
    )

    F = _F()
    d = detector
    rcode = F.upper(F.coalesce(F.col("rcode").cast("string"), F.lit("")))
    rd = F.col("rd")
    ev = (
        sdf.select(
            "ts",
            "src_ip",
            F.lower(F.col("registered_domain").cast("string")).alias("rd"),
            (rcode == "NOERROR").alias("ok"),
        )
        .where(
            F.col("ts").isNotNull()
            & F.col("src_ip").isNotNull()
            & (F.col("src_ip") != "")
            & rd.isNotNull()
            & rd.rlike(r"^[^.]+(\.[^.]+)+$")
            & ~rd.rlike(_LOCAL)
        )
        .cache()
    )
    first_types: dict[str, pl.DataType] = {
        "rd": pl.String(),
        "first_seen": pl.Datetime("us", "UTC"),
    }
    first_schema = pl.Schema(first_types)
    fitted = copy.deepcopy(detector)
    try:
        b = _rows(ev.agg(F.min("ts").alias("lo"), F.max("ts").alias("hi")))[0]
        if b["lo"] is None:
            fitted.population_ = NewDomainPopulation(
                pl.DataFrame(schema=first_schema), _REFERENCE, _REFERENCE, 0.0, 0, "reference"
            )
            return fitted
        lo, hi = _aware(b["lo"]), _aware(b["hi"])
        span_h = (hi - lo).total_seconds() / 3600.0
        warm = min(d.max_warmup_hours, d.warmup_share * span_h)
        since = lo + timedelta(hours=warm)
        every_sdf = (
            ev.groupBy("rd")
            .agg(F.min("ts").alias("first_seen"), F.max("ok").alias("ok"))
            .where(F.col("ok") & (F.col("first_seen") > F.lit(lo)))
            .select("rd", "first_seen")
        )
        every = pl.from_arrow(every_sdf.toArrow())
        assert isinstance(every, pl.DataFrame)
        every = every.cast(first_schema).sort("rd")
        if d.skip_popular and every.height:
            from dnsieve.popular import popularity_rank

            every = every.filter(popularity_rank(every["rd"]).is_null())
        # as NewDomainDetector._fit: the law and the rate from sightings after the warm-up,
        # each law on the domains whose own horizon is observed
        first = every.filter(pl.col("first_seen") > since)
        days = max((span_h - warm) / 24.0, 1.0 / 24.0)
        new_per_day = first.height / days
        fits: list[tuple[float, float, int]] = []
        sizes: list[int] = []
        for col, hours in (("extra_hosts", d.spread_hours), ("return_hours", d.follow_hours)):
            done = first.filter(pl.col("first_seen") + timedelta(hours=hours) <= hi)
            n, fit = 0, _REFERENCE
            if done.height >= d.min_new_domains:
                done_sdf = ev.sparkSession.createDataFrame(
                    done.to_arrow(), schema="rd string, first_seen timestamp"
                )
                counts = _domain_counts(d, ev.join(F.broadcast(done_sdf), on="rd", how="inner"))
                counts = counts.cache()
                try:
                    n = int(_rows(counts.agg(F.count(F.lit(1)).alias("n")))[0]["n"])
                    if n >= d.min_new_domains:
                        tally = _rows(counts.groupBy(col).agg(F.count(F.lit(1)).alias("c")))
                        tally.sort(key=lambda r, k=col: int(r[k]))  # type: ignore[misc]
                        v = np.array([int(r[col]) for r in tally], dtype=np.int64)
                        c = np.array([int(r["c"]) for r in tally], dtype=np.int64)
                        bulk = support_bulk(v, c, d.tail_share)
                        mean, size = fit_truncated_nb(v, c, bulk, 0.5 / n, censor=d.censor_tail)
                        fit = (mean, size, bulk)
                finally:
                    counts.unpersist()
            sizes.append(n)
            fits.append(fit)
        fitted.population_ = NewDomainPopulation(
            first, fits[0], fits[1], new_per_day, sizes[0], fit_method(fits), lo, every
        )
        # the visitors' browsing (distinct domains per host-hour) over every host: a
        # partition holds only its own domains' events, so the counts come from here
        hourly = pl.from_arrow(
            ev.where(F.col("ts") >= F.lit(lo))
            .groupBy("src_ip", F.date_trunc("hour", F.col("ts")).alias("h"))
            .agg(F.countDistinct("rd").cast("long").alias("w"))
            .toArrow()
        )
        assert isinstance(hourly, pl.DataFrame)
        fitted.browsing_ = host_browsing(
            hourly.with_columns(pl.col("h").cast(pl.Datetime("us", "UTC")))
        )
    finally:
        ev.unpersist()
    return fitted


def _aware(t: Any) -> Any:
    from dnsieve.engines.base import to_utc

    return to_utc(t)


def _domain_counts(detector: Any, joined: SparkDataFrame) -> SparkDataFrame:
    """``extra_hosts`` and ``return_hours`` per domain, by the detector's ``_counts`` per partition."""
    from dnsieve.engines.spark import _spark_schema

    out = pa.schema(
        [("rd", pa.string()), ("extra_hosts", pa.int64()), ("return_hours", pa.int64())]
    )
    det = copy.deepcopy(detector)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        got = [b for b in batches if b.num_rows]
        if not got:
            return
        frame = pl.from_arrow(pa.Table.from_batches(got))
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(
            pl.col("ts").cast(pl.Datetime("us", "UTC")),
            pl.col("first_seen").cast(pl.Datetime("us", "UTC")),
        )
        c = det._counts(frame, None).select(
            "rd", pl.col("extra_hosts").cast(pl.Int64), pl.col("return_hours").cast(pl.Int64)
        )
        yield from c.to_arrow().cast(out).to_batches()

    n = joined.sparkSession.sparkContext.defaultParallelism
    return joined.repartition(max(n, 1), "rd").mapInArrow(run, _spark_schema(out))


def _window_mapper(
    compute: Callable[[pl.DataFrame], pl.DataFrame], out: pa.Schema
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function: a partition's events as a Polars frame (``ts`` in UTC µs)
    through ``compute``, whose ``window_start`` goes back as epoch µs (no session time
    zone on the way), in ``out``'s columns."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        got = [b for b in batches if b.num_rows]
        if not got:
            return
        frame = pl.from_arrow(pa.Table.from_batches(got))
        assert isinstance(frame, pl.DataFrame)
        frame = frame.with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))
        table = compute(frame).with_columns(pl.col("window_start").dt.epoch("us"))
        if table.height:
            yield from table.select(out.names).to_arrow().cast(out).to_batches()

    return run


# ---------------------------------------------------------------------------- beacon
def beacon_fit_on_cluster(
    detector: Any, sdf: SparkDataFrame, ctx: DetectContext, partitions: int
) -> Any:
    """A copy of a ``beacon`` detector with its population null fitted on the cluster.

    The null at each tolerance is a median of judged series' on-beat shares
    (``BeaconDetector.null_shares``): each domain partition emits its series'
    shares and Spark takes their exact medians, per scored tile (the series
    of the tile and of its lookback: ``tile_nulls_``) with hourly or longer
    windows, over the scored series of a short capture otherwise (``p0s_``).
    """
    from dnsieve.engines.spark import _spark_schema

    F = _F()
    det = copy.deepcopy(detector)
    n_tol = len(det.tolerances)
    tiled = bool(det.tiled(ctx))
    out = pa.schema(
        [pa.field("window_start", pa.int64())]  # epoch µs: no session time zone on the way
        + [(f"s{i}", pa.float64()) for i in range(n_tol)]
    )

    shares = _window_mapper(lambda frame: det.null_shares(frame, ctx), out)
    cols = ["ts", "src_ip", "registered_domain"]
    part = sdf.select(*cols).repartition(partitions, "registered_domain")
    got = part.mapInArrow(shares, _spark_schema(out))
    meds = [F.expr(f"percentile(s{i}, 0.5)").alias(f"_n{i}") for i in range(n_tol)]
    if tiled:
        rows = _rows(got.groupBy("window_start").agg(*meds))
        det.tile_nulls_ = pl.DataFrame(
            [
                [r["window_start"] for r in rows],
                *[[r[f"_n{i}"] for r in rows] for i in range(n_tol)],
            ],
            schema={"window_start": pl.Int64, **{f"_n{i}": pl.Float64 for i in range(n_tol)}},
            orient="col",
        ).with_columns(pl.from_epoch("window_start", time_unit="us").dt.replace_time_zone("UTC"))
        return det
    med = _rows(got.agg(*meds))
    det.p0s_ = det.nulls([med[0][f"_n{i}"] if med else None for i in range(n_tol)])
    return det


# ---------------------------------------------------------------------------- lookalike
def lookalike_fit_on_cluster(
    detector: Any, sdf: SparkDataFrame, ctx: DetectContext, partitions: int
) -> Any:
    """A copy of a ``lookalike`` detector with its use evidence counted on the cluster.

    A brand-token coincidence is judged against the window's ordinary names
    (``dnsieve.detectors.lookalike.use_evidence``).  Each domain partition
    emits its (window, domain) use features (``LookalikeDetector.use_population``);
    Spark counts, for each hit, the ordinary names of its window at or above
    it (``use_counts``' statistics, a join of the few hits with the window's
    rows on the cluster), and only those counts come back (``use_``).
    """
    from dnsieve.detectors.lookalike import USE_FEATURES, use_from_counts
    from dnsieve.engines.spark import _spark_schema

    F = _F()
    det = copy.deepcopy(detector)
    out = pa.schema(
        [pa.field("window_start", pa.int64()), pa.field("rd", pa.string())]
        + [pa.field(f, pa.int64()) for f in USE_FEATURES]
        + [pa.field("software", pa.bool_()), pa.field("hit", pa.bool_())]
    )

    rows = _window_mapper(lambda frame: det.use_population(frame, ctx), out)
    cols = ("ts", "src_ip", "qname", "qtype", "rcode", "registered_domain")
    part = sdf.select(*[c for c in cols if c in sdf.columns])
    pop = part.repartition(partitions, "registered_domain").mapInArrow(rows, _spark_schema(out))
    hits = pop.where(F.col("hit"))
    ordinary = pop.where(~F.col("hit"))
    n_ord = ordinary.groupBy("window_start").agg(F.count(F.lit(1)).alias("_n"))
    n_hit = hits.groupBy("window_start").agg(F.count(F.lit(1)).alias("_h"))
    other = ordinary.select("window_start", *[F.col(f).alias(f"_o_{f}") for f in USE_FEATURES])
    above = (
        hits.select("window_start", "rd", *USE_FEATURES)
        .join(other, on="window_start", how="left")
        .groupBy("window_start", "rd")
        .agg(
            *[
                F.sum(F.when(F.col(f"_o_{f}") >= F.col(f), 1).otherwise(0))
                .cast("long")
                .alias(f"_x_{f}")
                for f in USE_FEATURES
            ]
        )
    )
    counts = (
        hits.select("window_start", "rd", "software")
        .join(above, on=["window_start", "rd"], how="left")
        .join(n_ord, on="window_start", how="left")
        .join(n_hit, on="window_start", how="left")
    )
    names = ["window_start", "rd", "software", *[f"_x_{f}" for f in USE_FEATURES], "_n", "_h"]
    got = _rows(counts)
    frame = pl.DataFrame(
        [[r[c] for r in got] for c in names],
        schema={
            "window_start": pl.Int64,
            "rd": pl.String,
            "software": pl.Boolean,
            **{f"_x_{f}": pl.Int64 for f in USE_FEATURES},
            "_n": pl.Int64,
            "_h": pl.Int64,
        },
        orient="col",
    ).with_columns(
        pl.from_epoch("window_start", time_unit="us").dt.replace_time_zone("UTC"),
        pl.col("_n").fill_null(0),
        pl.col("_h").fill_null(1),
    )
    det.use_ = use_from_counts(frame)
    return det


#: detectors partitioned by other columns than their entity's (a coarser key never
#: splits an entity): ``beacon`` scores client x domain series against the other
#: clients of the same domain (how many are on the same beat).
_PARTITION_KEYS: dict[str, tuple[str, ...]] = {"beacon": ("registered_domain",)}


# ---------------------------------------------------------------------------- scoring
def fit_on_cluster(detector: Detector, sdf: SparkDataFrame, until: Any = None) -> Detector:
    """A copy of ``detector`` with its population state fitted on the cluster.

    Built-in detectors with population state (``volume``, ``client_volume``,
    ``dga_host``, ``newdomain``) are fitted from statistics reduced on the
    cluster.  Any other detector with ``fit_population`` is fitted on its
    input collected to the driver (the only path that does so: a third-party
    detector must supply its own reduction to avoid it).  Detectors without
    population state are returned as they are.  ``until``: fit causally, on
    the baseline before it (detectors whose ``fit_population`` takes it).
    """
    from dnsieve.detectors.dga_host import DgaHostDetector
    from dnsieve.detectors.newdomain import NewDomainDetector
    from dnsieve.detectors.volume import _HurdleVolume

    if isinstance(detector, _HurdleVolume):
        return volume_fit_on_cluster(detector, sdf, until)
    if isinstance(detector, DgaHostDetector):
        return dga_host_fit_on_cluster(detector, sdf)
    if isinstance(detector, NewDomainDetector):
        return newdomain_fit_on_cluster(detector, sdf)
    if not callable(getattr(detector, "fit_population", None)):
        return detector
    from dnsieve.engines.base import prepare_detector

    whole = pl.from_arrow(sdf.toArrow())
    assert isinstance(whole, pl.DataFrame)
    return prepare_detector(detector, whole, until)


#: marks the context rows :func:`_with_client_context` adds to a partition.
_CONTEXT = "_context"
#: domain detectors whose score of a domain reads other domains' rows of the same
#: clients: ``dga`` (a client's DGA-like NXDOMAIN count in the window) and
#: ``visitors`` (when each client was first active, and when the data starts).
#: ``lookalike`` weighs a brand by how many ordinary domains of the period contain it.
_CLIENT_CONTEXT = frozenset({"dga", "visitors", "lookalike"})


def _as_context(sdf: SparkDataFrame, rows: SparkDataFrame) -> SparkDataFrame:
    """``rows`` (``_r``: a struct of event columns, ``_to``: the target partition) as event rows."""
    F = _F()
    fields = set(rows.schema["_r"].dataType.fieldNames())  # type: ignore[attr-defined]
    return rows.select(
        *(
            F.col(f"_r.{c}").alias(c)
            if c in fields
            else F.lit(None).cast(sdf.schema[c].dataType).alias(c)
            for c in sdf.columns
        ),
        F.col("_to").alias("_pid"),
        F.lit(True).alias(_CONTEXT),
    )


def _first_activity_rows(base: SparkDataFrame, partitions: int) -> SparkDataFrame:
    """``visitors`` context: each client's first usable row, for every partition.

    One row per client and partition (not per event): the earliest of them is
    also the data's first usable row, which the detector's history test needs.
    """
    from dnsieve.detectors.visitors import _LOCAL as VISITORS_LOCAL

    F = _F()
    rd = F.col("registered_domain")
    usable = base.where(
        F.col("ts").isNotNull()
        & F.col("src_ip").isNotNull()
        & rd.isNotNull()
        & rd.contains(".")
        & ~rd.rlike(VISITORS_LOCAL)
    )
    row = F.min_by(F.struct("ts", "src_ip", "registered_domain"), F.col("ts"))
    firsts = usable.groupBy("src_ip").agg(row.alias("_r")).select("_r")
    every = base.sparkSession.range(partitions).select(F.col("id").cast("int").alias("_to"))
    # every partition needs every client's first activity: its score divides by
    # the number of established clients on the whole network
    return _as_context(base.drop("_pid", _CONTEXT), firsts.crossJoin(every))


def _with_client_context(
    sdf: SparkDataFrame, ctx: DetectContext, partitions: int, name: str = "dga"
) -> SparkDataFrame:
    """Domain partitions plus, for each, the NXDOMAIN rows of its clients on other domains.

    A domain's ``dga`` score counts the DGA-like domains its clients failed
    on in the window, across all domains.  Each partition therefore gets,
    besides its own rows, one row per (window, client, other domain) of the
    NXDOMAIN events of the clients it holds, marked ``_context``; the
    scorer drops context rows of its own domains and keeps only its own
    domains' anomalies.  The row set is ``pmod(hash(domain), partitions)``,
    the hash Spark's own repartitioning uses.
    """
    from dnsieve.detectors.frames import utc

    F = _F()
    start_us = int(utc(ctx.start).timestamp() * 1_000_000)
    end_us = int(utc(ctx.end).timestamp() * 1_000_000)
    w_us = max(1, int(ctx.window * 1_000_000))
    t_us = F.unix_micros(F.col("ts"))
    rd = F.coalesce(F.col("registered_domain"), F.lit(""))
    base = sdf.withColumn("_pid", F.pmod(F.hash(rd), F.lit(partitions))).withColumn(
        _CONTEXT, F.lit(False)
    )
    inside = base.where((t_us >= start_us) & (t_us < end_us) & F.col("src_ip").isNotNull())
    inside = inside.withColumn("_w", F.floor((t_us - F.lit(start_us)) / F.lit(w_us)))
    if name == "visitors":
        extra = _first_activity_rows(base, partitions)
        return base.unionByName(extra).repartition(partitions, "_pid").drop("_pid")
    if name == "lookalike":  # one row of every domain of the period, for every partition
        row = F.min_by(F.struct("ts", "src_ip", "registered_domain", "qname"), F.col("ts"))
        names = (
            base.where(
                (t_us >= start_us) & (t_us < end_us) & F.col("registered_domain").isNotNull()
            )
            .groupBy("registered_domain")
            .agg(row.alias("_r"))
            .select("_r")
        )
        every = base.sparkSession.range(partitions).select(F.col("id").cast("int").alias("_to"))
        extra = _as_context(base.drop("_pid", _CONTEXT), names.crossJoin(every))
        return base.unionByName(extra).repartition(partitions, "_pid").drop("_pid")
    pairs = inside.select("_w", "src_ip", F.col("_pid").alias("_to")).distinct()
    nx = F.upper(F.coalesce(F.col("rcode"), F.lit(""))) == "NXDOMAIN"
    first = F.min_by(F.struct("ts", "qname", "rcode"), F.col("ts"))
    fails = (
        inside.where(nx & (F.col("src_ip") != ""))
        .groupBy("_w", "src_ip", "registered_domain", "_pid")
        .agg(first.alias("_r"))
    )
    # a shuffle join: a broadcast would send one side through the driver
    ctx_rows = (
        fails.hint("shuffle_merge")
        .join(pairs.hint("shuffle_merge"), on=["_w", "src_ip"], how="inner")
        .where(F.col("_to") != F.col("_pid"))
        .select(
            *(
                F.col(f"_r.{c}").alias(c)
                if c in ("ts", "qname", "rcode")
                else F.col(c)
                if c in ("src_ip", "registered_domain")
                else F.lit(None).cast(sdf.schema[c].dataType).alias(c)
                for c in sdf.columns
            ),
            F.col("_to").alias("_pid"),
            F.lit(True).alias(_CONTEXT),
        )
    )
    return base.unionByName(ctx_rows).repartition(partitions, "_pid").drop("_pid")


#: marks the rows of a partition's carried detector state among its candidates.
_STATE = "\x00state"


def state_rows(state: pl.DataFrame) -> pl.DataFrame:
    """A stateful detector's (entity, h) state as ANOMALY-shaped rows marked :data:`_STATE`."""
    ts = pl.from_epoch(pl.col("h") * 3600, time_unit="s").cast(pl.Datetime("us", "UTC"))
    return state.select(
        pl.lit(_STATE).alias("detector"),
        pl.lit("").alias("entity_type"),
        pl.col("entity").cast(pl.String),
        ts.alias("window_start"),
        ts.alias("window_end"),
        pl.lit(0.0).alias("score"),
        pl.lit(None, pl.Float64).alias("p_value"),
        pl.lit("{}").alias("evidence"),
    )


def _scorer(
    detector: Detector, ctx: DetectContext, in_schema: dict[str, pl.DataType], count: bool
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The ``mapInArrow`` function: score a partition, then emit its population count.

    A partition with ``_context`` rows (:func:`_with_client_context`) scores
    its own domains only, with the other domains' rows as context.
    """
    out_schema = pa.schema(
        [*(f.with_nullable(True) for f in ANOMALY), pa.field(POPULATION_COLUMN, pa.int64())]
    )

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        got = [b for b in batches if b.num_rows]
        if not got:
            return
        frame = pl.from_arrow(pa.Table.from_batches(got))
        assert isinstance(frame, pl.DataFrame)
        own: pl.Series | None = None
        if _CONTEXT in frame.columns:
            rd = pl.col("registered_domain")
            own = frame.filter(~pl.col(_CONTEXT)).get_column("registered_domain").unique()
            frame = frame.filter(~pl.col(_CONTEXT) | ~rd.is_in(own.drop_nulls().implode()))
        frame = frame.select(list(in_schema)).cast(pl.Schema(in_schema))
        state: pl.DataFrame | None = None
        if hasattr(detector, "score_with_state"):  # carried state in, the new state out
            scored, state = detector.score_with_state(
                frame, ctx, getattr(detector, "carried_", None)
            )
        else:
            scored = detector.score(frame, ctx)
        if state is not None and state.height:
            table = state_rows(state).with_columns(pl.lit(None, pl.Int64).alias(POPULATION_COLUMN))
            yield from table.to_arrow().cast(out_schema).to_batches()
        if own is not None and scored.height:
            scored = scored.filter(pl.col("entity").is_in(own.drop_nulls().implode()))
        if scored.height:
            table = scored.select(ANOMALY.names).with_columns(
                pl.lit(None, pl.Int64).alias(POPULATION_COLUMN)
            )
            yield from table.to_arrow().cast(out_schema).to_batches()
        if count and hasattr(detector, "population"):
            pop = int(detector.population(frame, ctx))
            row = {f.name: [None] for f in ANOMALY} | {POPULATION_COLUMN: [pop]}
            yield from pa.table(row, schema=out_schema).to_batches()

    return run


def _bring_back(sdf: SparkDataFrame, scratch: str | None) -> pl.DataFrame:
    """The rows of ``sdf`` on the driver, written by the executors as Parquet and read back.

    Candidates can outnumber what one result transfer may carry
    (``spark.driver.maxResultSize``), so they go through storage, the way
    large results leave a cluster: ``scratch`` must be a directory every
    executor and the driver can reach (a shared file system, or ``s3a://``
    with a local mount); by default the system's temporary directory, which
    is right for local mode.
    """
    import shutil
    import tempfile
    import uuid

    root = scratch or tempfile.gettempdir()
    out = str(Path(root) / f"dnsieve-candidates-{uuid.uuid4().hex}")
    sdf.write.mode("overwrite").parquet(out)
    try:
        parts = sorted(Path(out).glob("part-*.parquet"))
        if not parts:
            return pl.from_arrow(pa.Table.from_batches([], schema=_arrow_schema(sdf)))  # type: ignore[return-value]
        return pl.read_parquet([str(p) for p in parts])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _arrow_schema(sdf: SparkDataFrame) -> pa.Schema:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(sdf.schema)


def score_on_cluster(
    engine: Any,
    detector: Detector,
    sdf: SparkDataFrame,
    ctx: DetectContext,
    partitions: int | None = None,
) -> tuple[pl.DataFrame, int | None]:
    """Fit (on the cluster), score per entity partition, and bring back the candidates.

    Returns the anomalies (ANOMALY shape, sorted by entity, window, detector)
    and the calibration population: the sum of the partitions' counts for a
    detector with ``population`` (which counts entity-windows, so the
    partitions' counts add up), the fitted state's count for ``newdomain``,
    and None for a detector without ``population``.  ``partitions`` defaults
    to the larger of the default parallelism and ``spark.sql.shuffle.partitions``.
    """
    from dnsieve.engines.spark import _spark_schema

    keys = entity_columns(detector.entity_type)
    missing = [k for k in keys if k not in sdf.columns]
    if missing:
        raise ValueError(
            f"detector {detector.name!r} scores {detector.entity_type} entities but its "
            f"input lacks {', '.join(missing)}"
        )
    in_frame = pl.from_arrow(sdf.limit(0).toArrow())
    assert isinstance(in_frame, pl.DataFrame)
    in_schema = dict(in_frame.schema)
    if partitions is None:
        sc = engine.spark.sparkContext
        shuffle = int(engine.spark.conf.get("spark.sql.shuffle.partitions", "8"))
        partitions = max(sc.defaultParallelism, shuffle)
    from dnsieve.detectors.beacon import BeaconDetector
    from dnsieve.detectors.lookalike import LookalikeDetector

    if isinstance(detector, BeaconDetector):  # its null, per tile, from every partition
        fitted = beacon_fit_on_cluster(detector, sdf, ctx, partitions)
    elif isinstance(detector, LookalikeDetector):  # its use evidence, from every partition
        fitted = lookalike_fit_on_cluster(detector, sdf, ctx, partitions)
    else:
        fitted = fit_on_cluster(detector, sdf, ctx.fit_until)
    keys = _PARTITION_KEYS.get(detector.name, keys)
    from_state = detector.name in _POPULATION_FROM_STATE
    out_schema = pa.schema([*ANOMALY, pa.field(POPULATION_COLUMN, pa.int64())])
    if detector.name in _CLIENT_CONTEXT and detector.entity_type == "domain":
        spread = _with_client_context(sdf, ctx, partitions, detector.name)
    else:
        spread = sdf.repartition(partitions, *keys)
    scored = spread.mapInArrow(
        _scorer(fitted, ctx, in_schema, count=not from_state), _spark_schema(out_schema)
    )
    got = _bring_back(scored, getattr(engine, "scratch", None))
    is_state = (pl.col("detector") == _STATE).fill_null(False)  # population rows: null
    if hasattr(detector, "score_with_state"):  # the partitions' guard state, merged
        rows = got.filter(is_state)
        merged = (
            rows.select(pl.col("entity"), (pl.col("window_start").dt.epoch("s") // 3600).alias("h"))
            .unique()
            .sort("entity", "h")
        )
        detector.carried_ = merged if rows.height else getattr(fitted, "carried_", None)  # type: ignore[attr-defined]
    got = got.filter(~is_state)
    is_pop = pl.col(POPULATION_COLUMN).is_not_null()
    anomalies = got.filter(~is_pop).drop(POPULATION_COLUMN)
    anomalies = anomalies.select(list(ANOMALY_POLARS_SCHEMA)).cast(ANOMALY_POLARS_SCHEMA)
    population: int | None = None
    if from_state and hasattr(fitted, "population"):
        population = int(fitted.population(in_frame, ctx))
    elif hasattr(fitted, "population"):
        population = int(got.filter(is_pop).get_column(POPULATION_COLUMN).sum())
    return anomalies.sort(_ANOMALY_SORT), population
