"""The Spark path distributes: the driver never holds events or aggregates.

The session of this module runs with ``spark.driver.maxResultSize`` far below
the size of the aggregates (the test first shows that collecting them fails),
and every detector still produces the same anomalies and calibration
population as the embedded engine: population priors are fitted from
statistics reduced on the cluster, detectors run per entity partition, and
only candidates come back.  Run this file on its own (``pytest
tests/test_spark_distributed.py``): it starts its own session with the limit.

The lake is three simulated days (:func:`dnsieve.simulate.simulate`, injected
campaigns of every family) ingested through :class:`dnsieve.lake.Lake`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import polars as pl
import pytest

from conftest import require_module
from dnsieve.detectors import available
from dnsieve.engines import get_engine
from dnsieve.lake import Lake
from dnsieve.pipeline import detect

pytestmark = pytest.mark.slow

#: the driver may receive at most this much per collect (Spark's smallest useful limit).
MAX_RESULT = "1m"
KEY = ["detector", "entity_type", "entity", "window_start"]


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    from dnsieve import simulate as sim

    tmp = tmp_path_factory.mktemp("spark-dist")
    res = sim.simulate(hours=72, clients=600, seed=11)
    paths = sim.write_zeek(res, tmp / "logs")
    lk = Lake(tmp / "lake")
    lk.ingest_files([paths["log"]])
    return lk


@pytest.fixture(scope="module")
def spark_engine() -> Any:
    require_module("pyspark", reason="the spark extra is not installed")
    from dnsieve.engines.spark import get_session, stop_session

    s = get_session()
    if s.sparkContext.getConf().get("spark.driver.maxResultSize", "") != MAX_RESULT:
        stop_session()  # the limit is a driver setting: it needs a session of its own
        get_session(conf={"spark.driver.maxResultSize": MAX_RESULT})
    eng = get_engine("spark")
    yield eng
    stop_session()


def test_collecting_the_aggregates_fails(lake: Lake, spark_engine: Any) -> None:
    """The limit is real: the aggregates (and the events) cannot reach the driver."""
    size = get_engine("polars").aggregate("client_domain_hourly", lake).estimated_size()
    assert size > 4 * 1024 * 1024  # the aggregate is several times the 1 MiB limit
    with pytest.raises(Exception, match="maxResultSize"):
        spark_engine.aggregate("client_domain_hourly", lake)
    with pytest.raises(Exception, match="maxResultSize"):
        spark_engine.events(lake)


def _close(a: pl.Series, b: pl.Series) -> bool:
    x, y = a.to_numpy().astype(float), b.to_numpy().astype(float)
    both_nan = np.isnan(x) & np.isnan(y)
    return bool(np.all(both_nan | np.isclose(x, y, rtol=1e-6, atol=1e-9)))


def test_detect_parity_under_the_limit(lake: Lake, spark_engine: Any) -> None:
    """Every detector: the same candidates, scores and populations on both engines."""
    want = detect(lake, engine="polars", strict=True)
    got = detect(lake, engine="spark", strict=True)
    assert set(got.summary["detectors"]) == set(available())
    flagged = 0
    for name, info in want.summary["detectors"].items():
        g = got.summary["detectors"][name]
        assert g["status"] == info["status"], name
        assert g.get("population") == info.get("population"), name
        assert g["candidates"] == info["candidates"], name
        flagged += info["candidates"] > 0
    assert flagged >= 5  # most detectors flag something, so the parity is not vacuous
    a = want.anomalies.sort(KEY)
    b = got.anomalies.sort(KEY)
    assert a.height == b.height > 0
    assert a.select(KEY).equals(b.select(KEY))
    for name in available():
        mine = pl.col("detector") == name
        x, y = a.filter(mine), b.filter(mine)
        assert _close(x["score"], y["score"]), name
        assert _close(x["p_value"].fill_null(math.nan), y["p_value"].fill_null(math.nan)), name
    assert want.alerts.sort(KEY).select(KEY).equals(got.alerts.sort(KEY).select(KEY))


def test_volume_priors_from_cluster_moments(lake: Lake, spark_engine: Any) -> None:
    """The priors fitted from cluster moments equal ``fit_population`` on the whole frame."""
    from dataclasses import asdict

    from dnsieve.detectors.volume import VolumeDetector
    from dnsieve.engines.spark_detect import volume_fit_on_cluster

    det = VolumeDetector()
    local = VolumeDetector().fit_population(get_engine("polars").aggregate("domain_hourly", lake))
    remote = volume_fit_on_cluster(det, spark_engine.input_frame("domain_hourly", lake))
    assert not hasattr(det, "priors_")  # the caller's detector is not changed
    assert remote.t0_ == local.t0_
    for ours, theirs in (
        (remote.priors_, local.priors_),
        (remote.client_priors_, local.client_priors_),
    ):
        o, t = asdict(ours), asdict(theirs)
        assert o["n_entities"] == t["n_entities"] > 100
        assert len(o["size_edges"]) == len(t["size_edges"]) > 0
        for k, v in t.items():
            if isinstance(v, float):
                assert math.isclose(o[k], v, rel_tol=1e-9, abs_tol=1e-12) or (
                    math.isnan(o[k]) and math.isnan(v)
                ), k
            elif isinstance(v, tuple):
                assert np.allclose(o[k], v, rtol=1e-9), k
