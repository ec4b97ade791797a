"""Episode upserts: the store's write rate against the previous (one alert per window) store.

Issue 11 made an alert a detector × entity *episode*: every upsert now also reads the
stored episodes near its windows, plans the merges and keeps every window's id
(:mod:`dnsieve.alerts.merge`).  This bench measures what that costs, as ratios against
the store of the previous revision measured in the same run on the same windows:

1. ``bench/web.py``'s generator makes ``--windows`` realistic windows (six detectors,
   Zipf-popular domains and clients, hourly windows over eight weeks);
2. the previous revision's ``src`` (``--prev``, default: the parent of the commit that
   added migration 0006) is extracted with ``git archive`` into a temporary directory;
3. for SQLite and PostgreSQL (``--pg-url``, default ``$DNSIEVE_TEST_PG_URL``), each
   store, in its own process on a fresh database, times three scenarios:

   - ``load``: every window into an empty store, batches of 5,000 (``dnsieve run``,
     ``alerts import``);
   - ``rerun``: the same windows again (a re-run; nothing new);
   - ``stream``: a fresh store fed one day of windows per call, in time order (a
     stream replay), where most windows extend an episode stored by an earlier call;

4. it prints windows/s of each, the ratio current/previous, and how many alerts each
   store holds at the end (the previous one: one per window).

    .venv/bin/python bench/episodes.py                     # 120,000 windows
    .venv/bin/python bench/episodes.py --windows 20000 --no-pg --json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import json, sys, time
import polars as pl
from dnsieve.alerts.store import AlertStore

path, url, scenario = sys.argv[1:4]
frame = pl.read_parquet(path)
out = {}


def timed(name, fn):
    t, c = time.perf_counter(), time.process_time()
    fn()
    out[name] = time.perf_counter() - t
    out[name + "_cpu"] = time.process_time() - c


with AlertStore.open(url) as s:
    if scenario == "stream":
        days = frame.with_columns(_d=pl.col("window_start").dt.date()).partition_by(
            "_d", maintain_order=True
        )
        timed("stream", lambda: [s.upsert_anomalies(day.drop("_d")) for day in days])
    else:
        timed("load", lambda: s.upsert_anomalies(frame))
        timed("rerun", lambda: s.upsert_anomalies(frame))
    out["alerts"] = s.count_alerts("all", include_suppressed=True)
print(json.dumps(out))
"""


def _generate(n: int) -> pl.DataFrame:
    spec = importlib.util.spec_from_file_location("bench_web", ROOT / "bench" / "web.py")
    assert spec is not None and spec.loader is not None
    web = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(web)
    return pl.concat(list(web.generate(n))).sort("window_start")


def previous_revision() -> str:
    """The parent of the commit that added migration 0006 (the last one-alert-per-window
    store)."""
    added = subprocess.run(
        ["git", "log", "--format=%H", "--diff-filter=A", "--", _MIGRATION],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("migration 0006 is not committed: pass --prev REV")
    return added[-1] + "^"


_MIGRATION = "src/dnsieve/alerts/migrations/versions/0006_episodes.py"


def extract(rev: str, into: Path) -> Path:
    """``git archive REV src`` into ``into``; returns the ``src`` directory."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev, "src"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def _pg_schema(base: str) -> tuple[str, str]:
    schema = f"bench_ep_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def _drop_pg(base: str, schema: str) -> None:
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def run_one(src: Path, parquet: Path, backend: str, scenario: str, args: Any, tmp: Path) -> Any:
    """One store, one scenario, on a fresh database in its own process."""
    schema = None
    if backend == "sqlite":
        db = tmp / f"{uuid.uuid4().hex}.db"
        url = f"sqlite:///{db}"
    else:
        url, schema = _pg_schema(args.pg_url)
    try:
        env = {**os.environ, "PYTHONPATH": str(src)}
        res = subprocess.run(
            [sys.executable, "-c", WORKER, str(parquet), url, scenario],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise SystemExit(f"{backend} {scenario} with {src} failed:\n{res.stderr[-3000:]}")
        return json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        if schema is not None:
            _drop_pg(args.pg_url, schema)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=120_000)
    ap.add_argument("--prev", default=None, help="the previous revision (default: see above)")
    ap.add_argument("--pg-url", default=os.environ.get("DNSIEVE_TEST_PG_URL"))
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-sqlite", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--scenarios", default="load,stream", help="load (then rerun) and/or stream")
    args = ap.parse_args(argv)
    backends = ([] if args.no_sqlite else ["sqlite"]) + (
        [] if args.no_pg or not args.pg_url else ["postgresql"]
    )
    prev = args.prev or previous_revision()
    results: dict[str, Any] = {"windows": args.windows, "previous": prev, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="dnsieve-bench-ep-") as d:
        tmp = Path(d)
        frame = _generate(args.windows)
        parquet = tmp / "windows.parquet"
        frame.write_parquet(parquet)
        (tmp / "prev").mkdir()
        srcs = {"previous": extract(prev, tmp / "prev"), "current": ROOT / "src"}
        for backend in backends:
            got: dict[str, dict[str, float]] = {"previous": {}, "current": {}}
            scenarios = [x for x in args.scenarios.split(",") if x]
            for scenario in scenarios:
                for name in ("previous", "current"):  # interleaved: same machine load
                    r = run_one(srcs[name], parquet, backend, scenario, args, tmp)
                    got[name].update({k: v for k, v in r.items() if k != "alerts"})
                    got[name][f"alerts_{scenario}"] = r["alerts"]
            rows: dict[str, Any] = {}
            measured = [k for k in ("load", "rerun", "stream") if k in got["current"]]
            for k in measured:
                for clock in ("", "_cpu"):  # wall time, and the store process's CPU time
                    before = frame.height / got["previous"][k + clock]
                    after = frame.height / got["current"][k + clock]
                    rows[k + clock] = {
                        "previous": before,
                        "current": after,
                        "ratio": after / before,
                    }
            rows["alerts"] = {n: int(got[n][f"alerts_{scenarios[0]}"]) for n in got}
            results["backends"][backend] = rows
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{args.windows:,} windows; previous store: {prev}")
    for backend, rows in results["backends"].items():
        print(f"\n{backend}: windows/s (wall; _cpu: store process CPU)  previous  current  ratio")
        for k in [k for k in rows if k != "alerts"]:
            r = rows[k]
            print(f"  {k:<10} {r['previous']:>40,.0f} {r['current']:>8,.0f} {r['ratio']:>6.2f}x")
        a = rows["alerts"]
        print(f"  alerts held: previous {a['previous']:,}, current {a['current']:,} (episodes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
