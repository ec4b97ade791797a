"""Retro-hunt benchmark: a threat definition over a simulated week against plain DuckDB.

Run ``python bench/rules.py`` (``--clients``, ``--hours`` for other sizes).  It simulates
``--hours`` of DNS for ``--clients`` hosts, ingests it into a lake, then times in the same
run:

* the reference: a plain DuckDB query with the same predicate straight over the lake's
  Parquet files (``SELECT * FROM read_parquet([...]) WHERE qname ILIKE ...``);
* ``dnsieve rules hunt`` on a Sigma rule with that predicate (conversion, the view,
  the query, and grouping the hits into the alerts it would add);
* a watchlist of 1,000 names (100 of them present) through the vectorised matcher.

Each figure prints as a ratio to the reference, so the table holds on any machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import polars as pl

from dnsieve.lake import Lake
from dnsieve.rules.evaluate import hunt
from dnsieve.rules.feeds import WatchEntry, to_plain
from dnsieve.simulate import simulate, write_zeek


def _best(fn: Any, repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--hours", type=int, default=168)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dnsieve-bench-rules-") as tmp:
        t0 = time.perf_counter()
        sim = simulate(hours=args.hours, clients=args.clients, seed=args.seed)
        paths = write_zeek(sim, Path(tmp) / "logs")
        lake = Lake(Path(tmp) / "lake")
        lake.ingest_files([paths["log"]])
        files = [str(f) for f in lake.files()]
        events = lake.scan().select("qname", "registered_domain").collect()
        print(
            f"lake: {events.height:,} events, {len(files)} files "
            f"(simulated and ingested in {time.perf_counter() - t0:.1f} s)"
        )
        # A suffix that matches a realistic few hundred events: one mid-popular domain.
        counts = events.group_by("registered_domain").len().sort("len", descending=True)
        target = str(counts.row(min(200, counts.height - 1))[0])
        quoted = ", ".join(f"'{f}'" for f in files)
        con = duckdb.connect()
        ref_s, ref = _best(
            lambda: con.sql(
                f"SELECT * FROM read_parquet([{quoted}]) WHERE qname ILIKE '%.{target}' "
                f"OR qname ILIKE '{target}'"
            ).pl(),
            args.repeat,
        )
        rule = (
            "title: bench\nlogsource: {category: dns}\ndetection:\n"
            f"  sel:\n    query|endswith: '.{target}'\n  exact:\n    query: '{target}'\n"
            "  condition: sel or exact\n"
        )
        defn: Any = SimpleNamespace(
            name="bench", kind="sigma", body=rule, version=1, confidence=0.9, techniques=()
        )
        hunt_s, res = _best(lambda: hunt(defn, lake), args.repeat)
        present = events["registered_domain"].drop_nulls().unique().head(100).to_list()
        watch = [WatchEntry("domain", d) for d in present] + [
            WatchEntry("domain", f"absent-{i}.example") for i in range(900)
        ]
        wl: Any = SimpleNamespace(
            name="wl", kind="watchlist", body=to_plain(watch), version=1, confidence=0.9,
            techniques=(),
        )  # fmt: skip
        wl_s, wres = _best(lambda: hunt(wl, lake), args.repeat)
        n = events.height
        rows = [
            ("plain DuckDB query (reference)", ref_s, ref.height),
            ("rules hunt, Sigma rule", hunt_s, res.events),
            ("rules hunt, 1,000-name watchlist", wl_s, wres.events),
        ]
        print(f"\nretro-hunt over {n:,} events ({args.clients:,} clients, {args.hours} h), "
              f"best of {args.repeat}")  # fmt: skip
        print(f"{'what':<36}{'seconds':>9}{'events/s':>14}{'matches':>10}{'vs ref':>8}")
        for what, s, hits in rows:
            print(f"{what:<36}{s:>9.3f}{n / s:>14,.0f}{hits:>10,}{s / ref_s:>8.2f}")
        assert res.events == ref.height, "the hunt and the reference must find the same events"
        pl.Config.set_tbl_rows(5)


if __name__ == "__main__":
    main()
