#!/usr/bin/env python
"""DGA scoring throughput, as a ratio against references measured in the same run.

    .venv/bin/python bench/dga.py [N]            # throughput, as ratios
    .venv/bin/python bench/dga.py N --profile  # plus a cProfile of score_table

Scores N query names (default 200k, drawn from the shared corpus: DGA families,
benign top lists and ThreatFox, with random subdomains so names are distinct)
end to end through :func:`dnsieve.detectors.dga.score_names` (vectorised ICANN
split, benign-character-model features, NumPy tree ensemble, calibration).
References measured in the same run: a plain Python loop computing Shannon
entropy of each label, the bare NumPy n-gram hashing of the same labels, and
one Public Suffix List lookup per name (the split as it was done before it was
vectorised).  Also measured against the same references: ``dnsieve domains
score`` end to end (:func:`dnsieve.domainscore.score_table`: registered
domain split, DGA score and look-alike match of every name), and the look-alike
matcher alone (:func:`dnsieve.detectors.lookalike.match_names`).

Every figure is the best of a few repetitions, both in wall time and in
process CPU time (all threads): on a shared machine the wall clock follows the
load, while the CPU ratio to the entropy loop stays put.
"""

from __future__ import annotations

import cProfile
import io
import math
import pstats
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl

from dnsieve import lexical
from dnsieve.detectors.dga import score_names
from dnsieve.detectors.lookalike import match_names
from dnsieve.domains import DomainSplitter
from dnsieve.domainscore import read_domain_lines, score_table

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "domains"


def corpus(n: int) -> list[str]:
    names = pl.concat(
        [
            pl.read_csv(DATA / "dga" / "baderj_dev_families.csv")["domain"],
            pl.read_csv(DATA / "dga" / "andrewaeva_families.csv")["domain"],
            pl.read_csv(DATA / "threatfox" / "train.csv")["input"],
        ]
    ).to_list()
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(names), n)
    return [f"h{i % 97}.{names[j]}" for i, j in enumerate(pick)]


def entropy_loop(labels: list[str]) -> list[float]:
    out = []
    for s in labels:
        c = Counter(s)
        n = len(s)
        out.append(-sum(v / n * math.log2(v / n) for v in c.values()) if n else 0.0)
    return out


CPU: dict[str, float] = {}


def best(fn: Callable[[], object], reps: int = 3, key: str = "") -> float:
    """Least wall time of ``reps`` calls; the least CPU time goes to ``CPU[key]``."""
    walls, cpus = [], []
    for _ in range(reps):
        c, t = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    if key:
        CPU[key] = min(cpus)
    return min(walls)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 200_000
    names = corpus(n)
    labels = [x.split(".")[1] for x in names]
    score_table(names[:1000])  # warm the caches built once per process (brands, PSL, tables)
    t_score = best(lambda: score_names(names), reps=3, key="score")
    series = pl.Series(names, dtype=pl.String)
    t_look = best(lambda: match_names(series), reps=3, key="look")
    t_table = best(lambda: score_table(names), reps=3, key="table")
    t_loop = best(lambda: entropy_loop(labels), reps=3, key="loop")
    lines = ("\n".join(names) + "\n").encode()

    def command() -> None:
        # The body of `dnsieve domains score FILE -o OUT`: read, score, write CSV.
        found, _skipped = read_domain_lines(io.BytesIO(lines))
        score_table(found).write_csv(io.BytesIO())

    t_cmd = best(command, reps=3, key="cmd")

    def hashing() -> None:
        for _rows, enc in lexical.iter_encoded(labels):
            lexical.hashed_ngrams(enc)

    t_hash = best(hashing)

    def psl_per_name() -> None:
        splitter = DomainSplitter(private_suffixes=False)
        for x in names:
            splitter.split(x)

    t_psl = best(psl_per_name, reps=1)
    print(f"names: {n:,}")
    print(f"dga score_names end to end : {n / t_score:12,.0f} names/s")
    print(f"look-alike match_names     : {n / t_look:12,.0f} names/s")
    print(f"domains score (score_table): {n / t_table:12,.0f} names/s")
    print(f"  + read lines, write CSV    : {n / t_cmd:12,.0f} names/s")
    print(
        f"ref: Python entropy loop   : {n / t_loop:12,.0f} labels/s  (score is {t_loop / t_score:.2f}x this, "
        f"look-alikes {t_loop / t_look:.2f}x, domains score {t_loop / t_table:.2f}x, "
        f"with lines and CSV {t_loop / t_cmd:.2f}x)"
    )
    c_loop = CPU["loop"]
    print(
        f"CPU time, as ratios to the entropy loop's: score {c_loop / CPU['score']:.2f}x, "
        f"look-alikes {c_loop / CPU['look']:.2f}x, domains score {c_loop / CPU['table']:.2f}x "
        f"({n / CPU['table']:,.0f} names per CPU-second; entropy loop {n / c_loop:,.0f}), "
        f"with lines and CSV {c_loop / CPU['cmd']:.2f}x ({n / CPU['cmd']:,.0f})"
    )
    print(
        f"ref: bare n-gram hashing   : {n / t_hash:12,.0f} labels/s  (score is {t_hash / t_score:.2f}x this)"
    )
    print(
        f"ref: PSL lookup per name   : {n / t_psl:12,.0f} names/s   (score is {t_psl / t_score:.2f}x this)"
    )
    if "--profile" in sys.argv:
        prof = cProfile.Profile()
        prof.enable()
        score_table(names)
        prof.disable()
        print("\ncProfile of score_table (cumulative, top 25):")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
