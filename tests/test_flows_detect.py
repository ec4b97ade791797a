"""Flow detectors and the DNS ↔ flow join: planted cases, RITA's scoring, engine parity,
and RITA's missing_host capture (``@pytest.mark.shared``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from conftest import require_module
from dnsieve.detectors import DetectContext, get
from dnsieve.detectors.conn_beacon import rita_scores
from dnsieve.detectors.conn_common import example_flows
from dnsieve.features.flowjoin import JOINED_SCHEMA, join_flows_dns

FLOW_DETECTORS = [
    "conn_beacon",
    "long_connection",
    "conn_exfil",
    "new_application",
    "conn_no_dns",
    "fresh_name_conn",
]
T0 = datetime(2024, 4, 1, tzinfo=UTC)


def _ctx(df: pl.DataFrame, baseline_hours: float = 24.0) -> DetectContext:
    lo, hi = df["ts"].min(), df["ts"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    return DetectContext(
        start=lo + timedelta(hours=baseline_hours), end=hi + timedelta(seconds=1), window=3600.0
    )


def _scored(name: str, data: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    det = get(name)()
    if hasattr(det, "fit_population"):
        det.fit_population(data)
    return det.score(data, ctx).sort("score", descending=True)


# ---------------------------------------------------------------------------- the join


def _events(rows: list[tuple[datetime, str, str, list[str]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "ts": [r[0] for r in rows],
            "src_ip": [r[1] for r in rows],
            "qname": [r[2] for r in rows],
            "registered_domain": [".".join(r[2].split(".")[-2:]) for r in rows],
            "answers": [r[3] for r in rows],
        },
        schema_overrides={"ts": pl.Datetime("us", "UTC")},
    )


def test_join_finds_who_resolved_the_address_and_when() -> None:
    ev = _events(
        [
            (T0, "10.0.0.1", "www.example.com", ["cdn.example.net", "93.184.216.34"]),
            (T0 + timedelta(hours=1), "10.0.0.2", "other.test", ["198.51.100.7"]),
            (T0 + timedelta(hours=2), "10.0.0.1", "api.example.com", ["93.184.216.34"]),
        ]
    )
    fl = example_flows(
        [
            {"ts": T0 + timedelta(seconds=5), "src_ip": "10.0.0.1", "dst_ip": "93.184.216.34"},
            {"ts": T0 + timedelta(hours=3), "src_ip": "10.0.0.1", "dst_ip": "93.184.216.34"},
            {"ts": T0 + timedelta(hours=3), "src_ip": "10.0.0.3", "dst_ip": "198.51.100.7"},
            {"ts": T0 + timedelta(hours=30), "src_ip": "10.0.0.1", "dst_ip": "93.184.216.34"},
            {"ts": T0 + timedelta(hours=1), "src_ip": "10.0.0.9", "dst_ip": "203.0.113.1"},
        ]
    ).drop(list(JOINED_SCHEMA)[-8:])
    out = join_flows_dns(fl, ev, lookback=timedelta(hours=24))
    assert out.height == 5 and list(out.columns) == list(JOINED_SCHEMA)
    assert out["resolved_name"].to_list() == [
        "www.example.com",
        "api.example.com",
        None,
        None,
        None,
    ]
    assert out["resolve_lag"][0] == 5.0 and out["resolve_lag"][1] == 3600.0
    # 10.0.0.3 never resolved 198.51.100.7, but 10.0.0.2 did (a forwarder's view)
    assert out["resolved_by_any"].to_list() == [True, True, True, False, False]
    assert out["domain_clients"][0] == 1 and out["domain_first_seen"][0] == T0
    assert out["dns_history"].to_list() == [5.0, 10800.0, 10800.0, 108000.0, 3600.0]


def test_join_of_no_flows_keeps_the_schema() -> None:
    empty = example_flows([]).drop(list(JOINED_SCHEMA)[-8:])
    out = join_flows_dns(empty, _events([]))
    assert out.height == 0 and list(out.columns) == list(JOINED_SCHEMA)


# ---------------------------------------------------------------------------- planted cases


@pytest.mark.parametrize(
    ("name", "entity", "needle"),
    [
        ("conn_beacon", "10.0.0.66|203.0.113.80", "every 5."),
        ("long_connection", "10.0.0.9|198.51.100.22", "open for 30.0 h"),
        ("conn_exfil", "10.0.0.5", "MB in 1 h"),
        ("new_application", "10.0.0.7", "used AnyDesk for the first time"),
        ("conn_no_dns", "10.0.0.3|185.220.101.4", "without any DNS lookup"),
        ("fresh_name_conn", "10.0.0.4|203.0.113.9", "after resolving cdn.upd4te-check.top"),
    ],
)
def test_each_detector_ranks_its_planted_case_first(name: str, entity: str, needle: str) -> None:
    data = get(name).example(0)
    out = _scored(name, data, _ctx(data))
    assert out.height > 0
    top = out.row(0, named=True)
    assert top["entity"] == entity
    ev = json.loads(top["evidence"])
    assert needle in ev["reason"], ev["reason"]
    assert ev["clients"][0] == entity.split("|")[0]
    # nothing else from the background scores as high
    rest = out.filter(~pl.col("entity").str.starts_with(entity.split("|")[0]))
    assert rest.height == 0 or float(rest["score"].max()) < top["score"]  # type: ignore[operator]


def test_beacon_and_long_connection_clear_their_floor() -> None:
    for name in ("conn_beacon", "long_connection"):
        data = get(name).example(0)
        out = _scored(name, data, _ctx(data))
        floor = get(name).score_floor
        assert floor is not None and float(out["score"].max()) >= floor  # type: ignore[arg-type]


def test_rita_scores_reward_regularity() -> None:
    rng = np.random.default_rng(1)
    steady = np.cumsum(np.full(50, 300.0))
    jitter = np.cumsum(rng.uniform(200, 350, 80))  # RITA's planted beacon: 200-350 s
    poisson = np.cumsum(rng.exponential(300, 80))
    sizes = np.full(80, 420.0)
    s = rita_scores(steady, sizes[:50])
    assert s["ts_score"] == pytest.approx(1.0) and s["rita_score"] > 0.95
    assert rita_scores(jitter, sizes)["ts_score"] > rita_scores(poisson, sizes)["ts_score"]
    random_sizes = rng.lognormal(8, 1.5, 80)
    assert rita_scores(jitter, random_sizes)["ds_score"] < rita_scores(jitter, sizes)["ds_score"]


def _series(
    times: np.ndarray[Any, Any], src: str = "10.0.0.8", dst: str = "192.0.2.50"
) -> list[dict[str, Any]]:
    return [
        {"ts": T0 + timedelta(seconds=float(t)), "src_ip": src, "dst_ip": dst, "dst_port": 80,
         "proto": "tcp", "src2dst_payload_bytes": 300, "dst2src_payload_bytes": 200}
        for t in times
    ]  # fmt: skip


def test_conn_beacon_weighs_evidence_by_the_number_of_beats() -> None:
    """Unlike RITA's score, a short perfect series is weak evidence and a long jittered one strong."""
    rng = np.random.default_rng(7)
    short = _series(np.cumsum(np.full(7, 600.0)), src="10.0.0.20")
    long_jitter = _series(np.cumsum(rng.uniform(200, 350, 70)), src="10.0.0.21")
    noise = [
        r
        for i in range(30)
        for r in _series(np.cumsum(rng.exponential(400, 12)), src=f"10.0.1.{i}")
    ]
    data = example_flows(short + long_jitter + noise)
    ctx = DetectContext(start=T0, end=T0 + timedelta(hours=6), window=3600.0)
    det = get("conn_beacon")()
    det.fit_population(data)
    out = det.score(data, ctx)
    by = {r["entity"].split("|")[0]: r for r in out.iter_rows(named=True)}
    assert by["10.0.0.21"]["score"] >= 10.0 > by["10.0.0.20"]["score"]
    assert json.loads(by["10.0.0.20"]["evidence"])["rita_score"] > 0.95  # RITA would flag it
    assert all(by[f"10.0.1.{i}"]["score"] < 10.0 for i in range(30) if f"10.0.1.{i}" in by)


def test_conn_no_dns_allow_lists_ntp_and_own_networks() -> None:
    rows = [
        {"ts": T0 + timedelta(hours=2, minutes=i), "src_ip": "10.0.0.3", "dst_ip": dst,
         "dst_port": port, "proto": "udp" if port == 123 else "tcp", "resolved_by_any": False,
         "dns_history": 7200.0 + 60 * i}
        for i, (dst, port) in enumerate(
            [("162.159.200.1", 123), ("10.9.9.9", 445), ("45.33.32.156", 8443), ("198.18.0.1", 443)]
        )
    ]  # fmt: skip
    data = example_flows(rows)
    ctx = DetectContext(start=T0, end=T0 + timedelta(hours=4), window=3600.0)
    out = get("conn_no_dns")().score(data, ctx)
    assert out["entity"].to_list() == ["10.0.0.3|45.33.32.156"]
    allowed = get("conn_no_dns")(allow_networks=("45.33.32.0/24",)).score(data, ctx)
    assert allowed.height == 0
    # flows with no DNS history before them are not judged
    young = data.with_columns(pl.lit(10.0).alias("dns_history"))
    assert get("conn_no_dns")().score(young, ctx).height == 0


# ---------------------------------------------------------------------------- engines


@pytest.mark.slow
@pytest.mark.parametrize("name", FLOW_DETECTORS)
def test_spark_runs_flow_detectors_like_polars(name: str) -> None:
    require_module("pyspark", reason="the spark extra is not installed")
    from dnsieve.engines import get_engine

    data = get(name).example(0)
    ctx = _ctx(data)
    want = get_engine("polars").map_detector(get(name)(), data, ctx)
    got = get_engine("spark").map_detector(get(name)(), data, ctx, partitions=3)
    assert want.height > 0
    assert_frame_equal(got.sort(["entity", "window_start"]), want.sort(["entity", "window_start"]))


# ---------------------------------------------------------------------------- RITA's capture


@pytest.fixture(scope="module")
def rita_lake(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Any:
    from dnsieve.ingest import iter_input_files
    from dnsieve.ingest.flows_common import route_inputs
    from dnsieve.lake import Lake

    lake = Lake(tmp_path_factory.mktemp("rita") / "lake")
    files = [
        f for f in iter_input_files([shared_data / "zeek/rita/missing_host"]) if f.name != "README"
    ]
    dns, flows = route_inputs(files)
    lake.ingest_files(dns)
    lake.ingest_flow_files(flows)
    return lake


@pytest.mark.shared
def test_rita_missing_host_planted_beacon_is_flagged(rita_lake: Any) -> None:
    from dnsieve.pipeline import detect

    res = detect(rita_lake, detectors=FLOW_DETECTORS)
    assert all(d["status"] == "ok" for d in res.summary["detectors"].values())
    alerts = res.alerts.filter(pl.col("alert"))
    beacon = alerts.filter(
        (pl.col("detector") == "conn_beacon") & (pl.col("entity") == "73.54.23.243|64.225.56.201")
    )
    assert beacon.height >= 1
    ev = json.loads(beacon.sort("score", descending=True)["evidence"][0])
    assert 200 <= ev["period_s"] <= 350 and ev["ports"] == [80]
    assert ev["resolved_names"] == []  # the join: the beacon's address was never resolved
    # every other alert is one of the periodic inbound sources docs/flows.md explains
    others = set(
        alerts.filter(pl.col("entity") != "73.54.23.243|64.225.56.201")["entity"].to_list()
    )
    assert others <= {
        "120.245.134.197|64.225.56.201",  # a scanner hitting port 30003 every 16 s for 3 days
        "89.32.41.104|64.225.56.201",  # SSH password guessing every 44 s
        "112.91.126.10|64.225.56.201",  # SSH password guessing every 27 s
        "198.98.52.144|64.225.56.201",  # DNS queries to the host every 34 s
        "64.225.56.201|139.99.17.77",  # conn_no_dns: the host retries an OVH address it
        "64.225.56.201|15.235.202.240",  # never resolved, in 21 and 9 distinct hours (RSTO)
    }


@pytest.mark.shared
def test_rita_long_ssh_session_is_not_in_the_conn_log(rita_lake: Any) -> None:
    """RITA's README plants an SSH session open the whole time; Zeek writes a conn record
    only when a connection closes, so the copy in ../shared/data holds no row of it (RITA
    reads it from Zeek's open-connection logs, which the copy lacks)."""
    flows = rita_lake.scan_flows().collect()
    ssh = flows.filter((pl.col("src_ip") == "73.54.23.243") & (pl.col("dst_port") == 22))
    assert ssh.height == 0
    assert flows.filter(pl.col("src_ip") == "73.54.23.243").height == 951
