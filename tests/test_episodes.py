"""Episodes: consecutive and near windows merge, far ones split, order never matters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsieve.config import load_settings
from dnsieve.episodes import assign_episodes, collapse_episodes

T0 = datetime(2024, 3, 1, tzinfo=UTC)
GAP = timedelta(hours=6)


def _h(h: float) -> datetime:
    return T0 + timedelta(hours=h)


def _frame(rows: Sequence[tuple[str, str, float, float, float]]) -> pl.DataFrame:
    """rows of (detector, entity, start hour, end hour, score)."""
    return pl.DataFrame(
        {
            "detector": [r[0] for r in rows],
            "entity_type": ["domain"] * len(rows),
            "entity": [r[1] for r in rows],
            "window_start": [_h(r[2]) for r in rows],
            "window_end": [_h(r[3]) for r in rows],
            "score": [r[4] for r in rows],
        },
        schema_overrides={
            "window_start": pl.Datetime("us", "UTC"),
            "window_end": pl.Datetime("us", "UTC"),
        },
    )


def _spans(df: pl.DataFrame) -> list[tuple[float, float]]:
    out = assign_episodes(df, GAP)
    return [
        ((s - T0).total_seconds() / 3600, (e - T0).total_seconds() / 3600)
        for s, e in out.select("episode_start", "episode_end").rows()
    ]


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        pytest.param([(0, 1), (1, 2), (2, 3)], [(0, 3)] * 3, id="consecutive"),
        pytest.param([(0, 1), (7, 8)], [(0, 8)] * 2, id="near-exactly-gap"),
        pytest.param([(0, 1), (5, 6), (11, 12)], [(0, 12)] * 3, id="near-chain"),
        pytest.param([(0, 1), (7.5, 8.5)], [(0, 1), (7.5, 8.5)], id="far"),
        pytest.param([(0, 24), (2, 3), (29, 30)], [(0, 30)] * 3, id="overlapping-long-window"),
        pytest.param([(0, 1)], [(0, 1)], id="single"),
    ],
)
def test_merge_table(hours: list[tuple[float, float]], expected: list[tuple[float, float]]) -> None:
    df = _frame([("tunnel", "a.example", s, e, 1.0) for s, e in hours])
    assert _spans(df) == expected


def test_pairs_are_independent() -> None:
    df = _frame(
        [
            ("tunnel", "a.example", 0, 1, 1.0),
            ("tunnel", "b.example", 2, 3, 1.0),
            ("dga", "a.example", 4, 5, 1.0),
            ("tunnel", "a.example", 3, 4, 1.0),
        ]
    )
    assert _spans(df) == [(0, 4), (2, 3), (4, 5), (0, 4)]


def test_keeps_columns_and_row_order() -> None:
    df = _frame([("t", "x", 20, 21, 3.0), ("t", "x", 0, 1, 1.0), ("t", "x", 2, 3, 2.0)])
    out = assign_episodes(df, GAP)
    assert out.columns == [*df.columns, "episode_start", "episode_end"]
    assert out["score"].to_list() == [3.0, 1.0, 2.0]
    assert out.schema["episode_start"] == pl.Datetime("us", "UTC")
    assert out.schema["episode_end"] == pl.Datetime("us", "UTC")


def test_naive_and_ms_timestamps_become_utc_us() -> None:
    df = pl.DataFrame(
        {
            "detector": ["t", "t"],
            "entity": ["x", "x"],
            "window_start": [datetime(2024, 1, 1, 0), datetime(2024, 1, 1, 1)],
            "window_end": [datetime(2024, 1, 1, 1), datetime(2024, 1, 1, 2)],
        },
        schema_overrides={
            "window_start": pl.Datetime("ms"),
            "window_end": pl.Datetime("ms"),
        },
    )
    out = assign_episodes(df, GAP)
    assert out["episode_start"].to_list() == [datetime(2024, 1, 1, tzinfo=UTC)] * 2
    assert out.schema["episode_end"] == pl.Datetime("us", "UTC")


def test_empty_and_bad_input() -> None:
    empty = _frame([])
    out = assign_episodes(empty, GAP)
    assert out.height == 0 and "episode_start" in out.columns
    assert collapse_episodes(empty, GAP).height == 0
    with pytest.raises(ValueError, match="window_end"):
        assign_episodes(empty.drop("window_end"), GAP)
    with pytest.raises(ValueError, match="negative"):
        assign_episodes(empty, timedelta(hours=-1))


def test_collapse_keeps_worst_window_and_counts() -> None:
    df = _frame(
        [
            ("tunnel", "a", 0, 1, 0.5),
            ("tunnel", "a", 1, 2, 0.9),
            ("tunnel", "a", 2, 3, 0.7),
            ("tunnel", "a", 30, 31, 0.6),
            ("dga", "b", 0, 1, float("nan")),
        ]
    )
    one = collapse_episodes(df, GAP)
    rows = one.select("detector", "entity", "window_start", "window_end", "n_windows", "score")
    got = [
        (d, e, (s - T0).seconds // 3600 + (s - T0).days * 24, n, sc)
        for d, e, s, _, n, sc in rows.rows()
    ]
    assert got[0][:4] == ("dga", "b", 0, 1)
    assert got[1:] == [("tunnel", "a", 0, 3, 0.9), ("tunnel", "a", 30, 1, 0.6)]
    assert one.filter(pl.col("entity") == "a")["window_end"].to_list() == [_h(3), _h(31)]


def test_gap_setting_default_and_override() -> None:
    assert load_settings(env={}).alerts.episode_gap == timedelta(hours=6)
    s = load_settings(env={"DNSIEVE_ALERTS__EPISODE_GAP_HOURS": "0.5"})
    assert s.alerts.episode_gap == timedelta(minutes=30)


_window = st.tuples(
    st.sampled_from(["a", "b"]), st.integers(0, 72), st.integers(1, 5), st.floats(0, 1)
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_window, max_size=30), st.randoms(use_true_random=False), st.integers(0, 4))
def test_order_and_batching_invariant(
    windows: list[tuple[str, int, int, float]], rnd: object, cut: int
) -> None:
    """Episodes depend on the set of windows only: shuffled or split input gives the same."""
    rows = [("t", e, s, s + d, sc) for e, s, d, sc in windows]
    base = assign_episodes(_frame(rows), GAP)
    key = ["entity", "window_start", "window_end", "score"]
    shuffled = list(rows)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    again = assign_episodes(_frame(shuffled), GAP)
    assert base.sort(key).equals(again.sort(key))
    # the collapse of a superset never splits an episode of a subset
    part = rows[: len(rows) * cut // 4]
    if part:
        sub = assign_episodes(_frame(part), GAP)
        joined = sub.join(base, on=key, how="inner", suffix="_all").unique()
        assert (joined["episode_start_all"] <= joined["episode_start"]).all()
        assert (joined["episode_end_all"] >= joined["episode_end"]).all()
