"""Episodes: one alert per campaign, not one per window.

A detector scores windows; a campaign spans many of them.  An *episode* is a run of one
detector's windows on one entity whose quiet gaps are never longer than ``gap``: windows are
sorted by ``window_start`` per ``(detector, entity)`` and a new episode starts when a window
starts more than ``gap`` after every earlier window of that pair has ended.  The budget, the
alert store, the queue and the exports count episodes.

Episodes depend only on the *set* of windows, never on their order or on how they were
batched, so re-running a job or replaying a stream yields the same episodes.

>>> from datetime import datetime, timedelta, timezone
>>> import polars as pl
>>> t = lambda h: datetime(2024, 1, 1, h, tzinfo=timezone.utc)
>>> df = pl.DataFrame({
...     "detector": ["tunnel"] * 4,
...     "entity": ["evil.example"] * 4,
...     "window_start": [t(0), t(1), t(3), t(12)],
...     "window_end": [t(1), t(2), t(4), t(13)],
...     "score": [0.9, 0.95, 0.8, 0.99],
... })
>>> out = assign_episodes(df, timedelta(hours=6))
>>> [(r["episode_start"].hour, r["episode_end"].hour) for r in out.iter_rows(named=True)]
[(0, 4), (0, 4), (0, 4), (12, 13)]
>>> one = collapse_episodes(df, timedelta(hours=6))
>>> [(r["window_start"].hour, r["n_windows"], r["score"]) for r in one.iter_rows(named=True)]
[(0, 3, 0.95), (12, 1, 0.99)]
"""

from __future__ import annotations

from datetime import timedelta

import polars as pl

__all__ = ["EPISODE_KEYS", "assign_episodes", "collapse_episodes"]

#: the columns that identify whose episode a window belongs to
EPISODE_KEYS = ("detector", "entity")

_TS = pl.Datetime("us", "UTC")
_REQUIRED = (*EPISODE_KEYS, "window_start", "window_end")


def _utc(col: str, dtype: pl.DataType) -> pl.Expr:
    """``col`` as Datetime(us, UTC); naive timestamps are taken to be UTC already."""
    e = pl.col(col)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is None:
        e = e.dt.replace_time_zone("UTC")
    return e.cast(_TS)


def _check(anomalies: pl.DataFrame, gap: timedelta) -> None:
    missing = [c for c in _REQUIRED if c not in anomalies.columns]
    if missing:
        raise ValueError(f"assign_episodes: missing column(s) {', '.join(missing)}")
    if gap < timedelta(0):
        raise ValueError(f"assign_episodes: gap must not be negative, got {gap}")


def assign_episodes(anomalies: pl.DataFrame, gap: timedelta) -> pl.DataFrame:
    """Add ``episode_start`` and ``episode_end`` (Datetime us UTC) to every window.

    Per ``(detector, entity)``, windows sorted by ``window_start`` (ties by ``window_end``)
    belong to one episode while each starts at most ``gap`` after the latest ``window_end``
    seen before it (with non-overlapping windows: the previous window's end).  An episode
    spans its earliest ``window_start`` to its latest ``window_end``.  Rows keep their input
    order and every input column; the result does not depend on that order.

    ``gap = 0`` merges only touching or overlapping windows.  Raises :class:`ValueError` for
    a missing column or a negative gap.
    """
    _check(anomalies, gap)
    keys = list(EPISODE_KEYS)
    if anomalies.height == 0:
        return anomalies.with_columns(
            pl.lit(None, dtype=_TS).alias("episode_start"),
            pl.lit(None, dtype=_TS).alias("episode_end"),
        )
    schema = anomalies.schema
    idx = "__episode_row"
    ep = "__episode_no"
    work = (
        anomalies.select(
            *keys,
            _utc("window_start", schema["window_start"]).alias("__ws"),
            _utc("window_end", schema["window_end"]).alias("__we"),
        )
        .with_row_index(idx)
        .sort([*keys, "__ws", "__we", idx])
        .with_columns(
            pl.col("__we").cum_max().shift(1).over(keys).alias("__prev_end"),
        )
        .with_columns(
            (
                pl.col("__prev_end").is_null()
                | ((pl.col("__ws") - pl.col("__prev_end")) > pl.lit(gap))
            )
            .cast(pl.UInt32)
            .cum_sum()
            .over(keys)
            .alias(ep)
        )
        .with_columns(
            pl.col("__ws").min().over([*keys, ep]).alias("episode_start"),
            pl.col("__we").max().over([*keys, ep]).alias("episode_end"),
        )
        .sort(idx)
    )
    return anomalies.drop("episode_start", "episode_end", strict=False).with_columns(
        work.get_column("episode_start"), work.get_column("episode_end")
    )


def collapse_episodes(anomalies: pl.DataFrame, gap: timedelta) -> pl.DataFrame:
    """One row per episode: what the alert budget and the alert store count.

    Each row is the episode's *worst* window (highest ``score``; ties: the earliest) with
    ``window_start``/``window_end`` widened to the episode and ``n_windows`` (UInt32) added,
    so it has the input's columns plus ``episode_start``, ``episode_end`` and ``n_windows``.
    Rows come sorted by ``(detector, entity, episode_start)``.
    """
    with_ep = assign_episodes(anomalies, gap)
    keys = [*EPISODE_KEYS, "episode_start"]
    if "score" not in with_ep.columns:
        raise ValueError("collapse_episodes: missing column score")
    if with_ep.height == 0:
        return with_ep.with_columns(pl.lit(None, dtype=pl.UInt32).alias("n_windows"))
    ranked = with_ep.with_columns(
        pl.len().over(keys).cast(pl.UInt32).alias("n_windows"),
        pl.col("score").fill_nan(None).alias("__s"),
    ).sort(
        [*keys, "__s", "window_start"],
        descending=[False] * len(keys) + [True, False],
        nulls_last=True,
    )
    worst = ranked.unique(subset=keys, keep="first", maintain_order=True)
    return worst.drop("__s").with_columns(
        pl.col("episode_start").alias("window_start").cast(_TS),
        pl.col("episode_end").alias("window_end").cast(_TS),
    )
