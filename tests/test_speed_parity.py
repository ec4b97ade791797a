"""Speed work must not change what is detected (issue 14, rule zero).

A fixed small run (``simulate(hours=168, clients=60, seed=3)``, about 123k
events, then :func:`dnsieve.commands.run.run_job` with default settings and no
store) was recorded in ``tests/data/speed_parity/`` *before* any of issue 14's
optimisations: every scored candidate of every detector (entity, window, score,
evidence) and the calibrated alerts.  Each optimisation of ingest, the
aggregates or a detector's kernel must reproduce them: the same candidate set,
scores within float noise (relative 1e-9), the same evidence (numbers within
the same tolerance) and exactly the same alerts.

If the *simulator* changes (the recorded SHA-256 of the simulated Zeek log no
longer matches), the recording is stale rather than the detectors wrong:
regenerate it from a commit whose detection results are trusted with
``python tests/test_speed_parity.py --regenerate``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import polars as pl
import pytest

DATA = Path(__file__).parent / "data" / "speed_parity"
HOURS, CLIENTS, SEED = 168, 60, 3
KEY = ["detector", "entity", "window_start"]

pytestmark = pytest.mark.slow  # one simulated week of 60 hosts through the whole job
REL = 1e-9


def _run(tmp: Path) -> tuple[str, pl.DataFrame, pl.DataFrame]:
    """Simulate, run the job; (log sha256, anomalies, alerts) in a canonical order."""
    from dnsieve.config import load_settings
    from dnsieve.jobs import run_job
    from dnsieve.simulate import simulate, write_zeek

    paths = write_zeek(simulate(hours=HOURS, clients=CLIENTS, seed=SEED), tmp / "logs")
    digest = hashlib.sha256(paths["log"].read_bytes()).hexdigest()
    _, res, alerts = run_job([paths["log"]], lake_dir=tmp / "lake", settings=load_settings(env={}))
    cols = ["detector", "entity_type", "entity", "window_start", "window_end", "score", "evidence"]
    anomalies = res.anomalies.select(cols).sort(KEY)
    return digest, anomalies, alerts.select(KEY).sort(KEY)


def _close(a: Any, b: Any) -> bool:
    """Equal JSON values, numbers compared to a relative tolerance."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        both_nan = math.isnan(a) and math.isnan(b)
        return both_nan or math.isclose(a, b, rel_tol=REL, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture(scope="module")
def current(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, pl.DataFrame, pl.DataFrame]:
    return _run(tmp_path_factory.mktemp("parity"))


def test_same_input(current: tuple[str, pl.DataFrame, pl.DataFrame]) -> None:
    recorded = (DATA / "input.sha256").read_text().split()[0]
    assert current[0] == recorded, (
        "the simulator's output changed, so the recording is stale: regenerate it on a "
        "trusted commit with `python tests/test_speed_parity.py --regenerate`"
    )


def test_same_candidates(current: tuple[str, pl.DataFrame, pl.DataFrame]) -> None:
    want = pl.read_parquet(DATA / "anomalies.parquet")
    got = current[1]
    for name in sorted(set(want["detector"].unique()) | set(got["detector"].unique())):
        w = want.filter(pl.col("detector") == name)
        g = got.filter(pl.col("detector") == name)
        missing = w.join(g, on=KEY, how="anti")
        extra = g.join(w, on=KEY, how="anti")
        assert missing.height == 0 and extra.height == 0, (
            f"{name}: {missing.height} candidates lost, {extra.height} new; "
            f"first lost {missing.head(3).select(KEY).rows()}, new {extra.head(3).select(KEY).rows()}"
        )
        both = w.join(g, on=KEY, suffix="_got")
        assert (both["window_end"] == both["window_end_got"]).all(), name
        bad = both.filter(
            (pl.col("score") - pl.col("score_got")).abs()
            > REL * pl.max_horizontal(pl.col("score").abs(), pl.lit(1.0))
        )
        assert bad.height == 0, f"{name}: scores differ: {bad.head(3).rows()}"
        for a, b, ent in zip(
            both["evidence"].to_list(),
            both["evidence_got"].to_list(),
            both["entity"].to_list(),
            strict=True,
        ):
            assert _close(json.loads(a or "{}"), json.loads(b or "{}")), (
                f"{name} {ent}: evidence differs\nwas {a}\nnow {b}"
            )


def test_same_alerts(current: tuple[str, pl.DataFrame, pl.DataFrame]) -> None:
    want = pl.read_csv(DATA / "alerts.csv", try_parse_dates=True).with_columns(
        pl.col("window_start").dt.replace_time_zone("UTC").dt.cast_time_unit("us")
    )
    got = current[2].with_columns(pl.col("window_start").dt.cast_time_unit("us"))
    assert got.rows() == want.rows()


def _regenerate() -> None:  # pragma: no cover - run by hand on a trusted commit
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        digest, anomalies, alerts = _run(Path(tmp))
    DATA.mkdir(parents=True, exist_ok=True)
    (DATA / "input.sha256").write_text(
        f"{digest}  simulate(hours={HOURS}, clients={CLIENTS}, seed={SEED})\n"
    )
    anomalies.write_parquet(DATA / "anomalies.parquet", compression="zstd", compression_level=19)
    alerts.write_csv(DATA / "alerts.csv")
    print(f"{anomalies.height} candidates, {alerts.height} alerts written to {DATA}")


if __name__ == "__main__":  # pragma: no cover
    if "--regenerate" in sys.argv:
        _regenerate()
