"""Sigma rules over the lake: SigmaHQ's own DNS rules, field mapping, semantics, correlations."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from conftest import require_module
from dnsieve.lake import Lake
from dnsieve.rules.sigma import RuleRefused, compile_rule, run_rule

DATA = Path(__file__).parent / "data"
SIGMA = sorted((DATA / "sigma").glob("*.yml"))

#: What each SigmaHQ fixture does: converts and runs, or is refused for the named reason.
REFUSED = {
    "net_dns_c2_detection.yml": "pipe syntax",
    "net_dns_high_bytes_out.yml": "'timeframe'",
    "net_dns_high_null_records_requests_rate.yml": "'timeframe'",
    "net_dns_high_requests_rate.yml": "'timeframe'",
    "net_dns_high_subdomain_rate.yml": "'timeframe'",
    "net_dns_high_txt_records_requests_rate.yml": "'timeframe'",
    "net_dns_large_domain_name.yml": "'qname_length' is a number",
    "zeek_dns_mining_pools.yml": "field 'rejected'",
    "zeek_dns_susp_zbit_flag.yml": "field 'Z'",
}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    lk = Lake(tmp_path_factory.mktemp("sigma") / "lake")
    reports = lk.ingest_files(
        [DATA / "zeek" / "brim_dns_head.log", DATA / "zeek" / "zeek_multiple_txt_strings.dns.log"]
    )
    assert sum(r.rows_written for r in reports) > 100
    return lk


def test_fixtures_are_the_sigmahq_dns_rules() -> None:
    assert len(SIGMA) == 23
    assert {p.name for p in SIGMA} >= set(REFUSED)


@pytest.mark.parametrize("path", SIGMA, ids=[p.stem for p in SIGMA])
def test_sigmahq_rule_converts_and_runs_or_is_refused(path: Path, lake: Lake) -> None:
    text = path.read_text()
    if path.name in REFUSED:
        with pytest.raises(RuleRefused, match=REFUSED[path.name]):
            compile_rule(text)
        return
    rule = compile_rule(text)
    assert rule.sql.startswith("SELECT")
    assert rule.title
    out = run_rule(rule, lake.files())
    assert isinstance(out, pl.DataFrame)


def test_counts_of_converted_and_refused() -> None:
    converted = refused = 0
    for path in SIGMA:
        try:
            compile_rule(path.read_text())
            converted += 1
        except RuleRefused:
            refused += 1
    assert (converted, refused) == (14, 9)


def test_hits_equal_the_same_predicate_in_polars(lake: Lake) -> None:
    rule = compile_rule(
        """
title: AAAA under wrccdc
logsource: {product: zeek, service: dns}
detection:
  sel:
    query|endswith: '.wrccdc.org'
    qtype_name: aaaa
  condition: sel
"""
    )
    hits = run_rule(rule, lake.files())
    events = lake.scan().collect()
    expected = events.filter(
        pl.col("qname").str.to_lowercase().str.ends_with(".wrccdc.org")
        & (pl.col("qtype").str.to_lowercase() == "aaaa")
    )
    assert hits.height == expected.height > 0
    assert sorted(hits["qname"].to_list()) == sorted(expected["qname"].to_list())


def test_sigma_semantics_case_insensitive_and_literal_percent(lake: Lake) -> None:
    upper = compile_rule(
        "title: t\nlogsource: {category: dns}\n"
        "detection:\n  sel: {query: ISE.WRCCDC.ORG}\n  condition: sel\n"
    )
    assert run_rule(upper, lake.files()).height > 0
    literal = compile_rule(
        "title: t\nlogsource: {category: dns}\n"
        "detection:\n  sel: {query|contains: 'ise_wrccdc'}\n  condition: sel\n"
    )
    # '_' is a literal underscore, not SQL's any-character wildcard.
    assert run_rule(literal, lake.files()).height == 0


def test_time_range_restricts_hits(lake: Lake) -> None:
    rule = compile_rule(
        "title: all\nlogsource: {category: dns}\n"
        "detection:\n  sel: {query|contains: '.'}\n  condition: sel\n"
    )
    lo, hi = lake.time_range() or (None, None)
    assert lo is not None and hi is not None
    everything = run_rule(rule, lake.files())
    none = run_rule(rule, lake.files(), since=hi, until=hi)
    assert everything.height > 0 and none.height == 0


def test_value_count_correlation_honours_the_timespan(lake: Lake) -> None:
    base = """
title: base
name: base_dns
logsource: {category: dns}
detection:
  sel: {query|contains: '.'}
  condition: sel
---
title: Many distinct names per client
correlation:
  type: value_count
  rules: [base_dns]
  group-by: [src_ip]
  timespan: TIMESPAN
  condition: {field: query, gte: 3}
level: high
tags: [attack.t1071.004]
"""
    short = compile_rule(base.replace("TIMESPAN", "1s"))
    assert short.kind == "value_count" and short.level == "high"
    assert short.techniques == ("T1071.004",)
    long = compile_rule(base.replace("TIMESPAN", "1d"))
    events = lake.scan().filter(pl.col("qname").str.contains(".", literal=True)).collect()
    per_client = events.group_by("src_ip").agg(pl.col("qname").n_unique().alias("n"))
    expected = set(per_client.filter(pl.col("n") >= 3)["src_ip"].to_list())
    # Over a day every client's names fall in one window: the plain distinct count.
    assert set(run_rule(long, lake.files())["src_ip"].to_list()) == expected
    # A shorter window can only find fewer clients.
    assert set(run_rule(short, lake.files())["src_ip"].to_list()) <= expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "title: t\nlogsource: {category: process_creation}\ndetection:\n  s: {Image: x}\n  condition: s\n",
            "not DNS",
        ),
        (
            "title: t\nlogsource: {category: dns}\ndetection:\n  s: {Image: x}\n  condition: s\n",
            "field 'Image'",
        ),
        ("title: [unclosed\n", "not a valid Sigma rule"),
        ("", "no Sigma rule|not a valid"),
    ],
)
def test_refusals_name_the_construct(text: str, reason: str) -> None:
    with pytest.raises(RuleRefused, match=reason):
        compile_rule(text)


@pytest.fixture(scope="module")
def spark_session() -> object:
    require_module("pyspark", reason="the spark extra is not installed")
    require_module("sigma.backends.databricks", reason="pysigma-backend-databricks missing")
    from dnsieve.engines.spark import get_session

    return get_session()  # the one shared local session of the test run


@pytest.mark.slow
def test_spark_hits_equal_duckdb_hits(lake: Lake, spark_session: object) -> None:
    """Parity: every SigmaHQ rule that converts, and a correlation, find the same events
    on Spark (pySigma's Databricks backend) as on DuckDB."""
    from dnsieve.rules.sigma import run_rule_spark

    rules = [compile_rule(p.read_text()) for p in SIGMA if p.name not in REFUSED]
    rules.append(
        compile_rule(
            "title: aaaa\nlogsource: {product: zeek, service: dns}\ndetection:\n"
            "  sel: {query|endswith: '.wrccdc.org', qtype_name: aaaa}\n  condition: sel\n"
        )
    )
    rules.append(
        compile_rule(
            "title: base\nname: base_dns\nlogsource: {category: dns}\ndetection:\n"
            "  sel: {query|contains: '.'}\n  condition: sel\n---\n"
            "title: many\ncorrelation:\n  type: value_count\n  rules: [base_dns]\n"
            "  group-by: [src_ip]\n  timespan: 2s\n  condition: {field: query, gte: 2}\n"
        )
    )
    files = lake.files()
    matched = 0
    for rule in rules:
        duck = run_rule(rule, files)
        spark = run_rule_spark(rule, files, session=spark_session)
        key = "src_ip" if rule.kind != "event" else "ts"
        assert sorted(map(str, duck[key].to_list())) == sorted(map(str, spark[key].to_list())), (
            rule.title
        )
        if rule.kind != "event":
            assert sorted(duck["value_count"].to_list()) == sorted(spark["value_count"].to_list())
        matched += duck.height
    assert matched > 0
