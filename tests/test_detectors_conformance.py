"""Conformance suite: every registered detector passes the same generic checks.

Parametrised over :func:`dnsieve.detectors.available`, so a detector added by
any module in the registry is checked without touching this file.  Every check
starts from the detector's own ``example(seed)`` frame:

* determinism under a seed (same seed → same frame and same output);
* empty input (schema-only frame → empty ANOMALY-shaped output);
* a single row;
* NaNs and nulls injected into numeric and string columns;
* hostile strings (markup, quotes, NUL, 250-char labels, ``\\xNN`` escapes,
  RTL override) → no crash and evidence stays valid JSON;
* order invariance (shuffled input → identical output);
* output always matches the ANOMALY schema, with finite scores.
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import get_args

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from dnsieve.detectors import DetectContext, available, get
from dnsieve.detectors.base import ANOMALY_POLARS_SCHEMA, Detector, EntityType, InputKind

NAMES = available()

HOSTILE = [
    "<script>alert(1)</script>",
    '"onmouseover=alert(1) x="',
    "a\x00b",
    "x" * 250 + ".example.com",
    "\\xff\\xfe\\x00.example",
    "\u202egnp.exe.com",
    "[red]markup[/red]",
    "",
]


def _time_column(df: pl.DataFrame) -> str | None:
    for c in ("ts", "hour", "window_start", "day"):
        if c in df.columns and isinstance(df.schema[c], pl.Datetime):
            return c
    for c, dt in df.schema.items():
        if isinstance(dt, pl.Datetime):
            return c
    return None


def _context(df: pl.DataFrame, seed: int = 0) -> DetectContext:
    """Score the second half of the example's span, so baseline-using detectors
    have a baseline; windows are a quarter of the span (at least a minute)."""
    col = _time_column(df)
    assert col is not None, "example frames need a datetime column"
    lo, hi = df[col].min(), df[col].max()
    assert lo is not None and hi is not None
    span = max((hi - lo).total_seconds(), 60.0)  # type: ignore[union-attr]
    start = lo + timedelta(seconds=span / 2)  # type: ignore[operator]
    return DetectContext(
        start=start,
        end=hi + timedelta(hours=1),
        window=max(60.0, span / 4),
        seed=seed,  # type: ignore[operator]
    )


def _full_context(df: pl.DataFrame) -> DetectContext:
    col = _time_column(df)
    assert col is not None
    lo, hi = df[col].min(), df[col].max()
    span = max((hi - lo).total_seconds(), 60.0)  # type: ignore[operator]
    return DetectContext(start=lo, end=hi + timedelta(hours=1), window=max(60.0, span / 4))  # type: ignore[arg-type,operator]


def _check_anomalies(out: pl.DataFrame, name: str) -> None:
    assert isinstance(out, pl.DataFrame)
    assert out.schema == ANOMALY_POLARS_SCHEMA, f"{name}: output schema {out.schema}"
    if out.height == 0:
        return
    assert (out["detector"] == name).all()
    for col in ("detector", "entity_type", "entity", "window_start", "window_end", "score"):
        assert out[col].null_count() == 0, f"{name}: null {col}"
    scores = out["score"].to_list()
    assert all(math.isfinite(s) for s in scores), f"{name}: non-finite score"
    assert (out["window_end"] >= out["window_start"]).all()
    for ev in out["evidence"].drop_nulls().to_list():
        parsed = json.loads(ev)
        assert isinstance(parsed, dict)


def _score(name: str, df: pl.DataFrame, ctx: DetectContext) -> pl.DataFrame:
    det: Detector = get(name)()
    out = det.score(df, ctx)
    _check_anomalies(out, name)
    return out


@pytest.fixture(params=NAMES, ids=[f"detector={n}" for n in NAMES])
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_registry_has_all_families() -> None:
    for expected in ("tunnel", "nxdomain", "beacon", "visitors", "profile", "fastflux"):
        assert expected in NAMES


def test_class_attributes(name: str) -> None:
    cls = get(name)
    assert cls.name == name
    assert cls.entity_type in get_args(EntityType)
    assert cls.requires in get_args(InputKind)
    assert isinstance(repr(cls()), str)


def test_example_scores_something(name: str) -> None:
    df = get(name).example(0)
    assert df.height > 0
    out = _score(name, df, _context(df))
    full = _score(name, df, _full_context(df))
    assert out.height + full.height > 0, "the example should produce at least one candidate"


def test_deterministic_under_seed(name: str) -> None:
    a, b = get(name).example(3), get(name).example(3)
    assert_frame_equal(a, b)
    ctx = _context(a, seed=3)
    assert_frame_equal(_score(name, a, ctx), _score(name, b, ctx))


def test_empty_input(name: str) -> None:
    df = get(name).example(0)
    empty = df.clear()
    out = _score(name, empty, _context(df))
    assert out.height == 0


def test_single_row(name: str) -> None:
    df = get(name).example(0)
    for row in (0, df.height - 1):
        one = df.slice(row, 1)
        _score(name, one, _context(df))
        _score(name, one, _full_context(df))


def _inject_nulls(df: pl.DataFrame, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    mask = pl.Series(rng.random(df.height) < 0.3)
    time_col = _time_column(df)
    cols = []
    for c, dt in df.schema.items():
        if c == time_col:
            cols.append(pl.col(c))
        elif dt.is_float():
            cols.append(
                pl.when(pl.lit(mask))
                .then(pl.lit(float("nan")))
                .otherwise(pl.col(c))
                .cast(dt)
                .alias(c)
            )
        elif dt.is_numeric() or dt == pl.String or isinstance(dt, pl.List | pl.Boolean):
            cols.append(pl.when(pl.lit(mask)).then(None).otherwise(pl.col(c)).cast(dt).alias(c))
        else:
            cols.append(pl.col(c))
    half = df.select(cols)
    # And one row with every nullable column null.
    last = df.slice(0, 1).select(
        [
            pl.col(c) if c == time_col else pl.lit(None, dtype=dt).alias(c)
            for c, dt in df.schema.items()
        ]
    )
    return pl.concat([half, last])


def test_nans_and_nulls(name: str) -> None:
    df = get(name).example(0)
    bad = _inject_nulls(df, 0)
    _score(name, bad, _context(df))
    _score(name, bad, _full_context(df))


def _inject_hostile(df: pl.DataFrame) -> pl.DataFrame:
    n = df.height
    cols = []
    for c, dt in df.schema.items():
        if dt == pl.String:
            hostile = pl.Series([HOSTILE[i % len(HOSTILE)] for i in range(n)], dtype=pl.String)
            every_third = pl.Series([i % 3 == 0 for i in range(n)])
            cols.append(
                pl.when(pl.lit(every_third)).then(pl.lit(hostile)).otherwise(pl.col(c)).alias(c)
            )
        elif dt == pl.List(pl.String):
            cols.append(pl.col(c).list.concat(pl.lit(HOSTILE[:4])).alias(c))
        else:
            cols.append(pl.col(c))
    return df.select(cols)


def test_hostile_strings(name: str) -> None:
    df = get(name).example(0)
    bad = _inject_hostile(df)
    for ctx in (_context(df), _full_context(df)):
        out = _score(name, bad, ctx)
        for ev in out["evidence"].drop_nulls().to_list():
            json.loads(ev)  # still valid JSON, escapes intact
        for ent in out["entity"].to_list():
            assert isinstance(ent, str)


def test_order_invariance(name: str) -> None:
    df = get(name).example(1)
    ctx = _context(df)
    ref = _score(name, df, ctx)
    for seed in (0, 1):
        shuffled = df.sample(fraction=1.0, shuffle=True, seed=seed)
        assert_frame_equal(_score(name, shuffled, ctx), ref, check_exact=True)
    full = _full_context(df)
    assert_frame_equal(_score(name, df.reverse(), full), _score(name, df, full), check_exact=True)
