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
score`` end to end (:func:`dnsieve.commands.domains.score_table`: registered
domain split, DGA score and look-alike match of every name), and the look-alike
matcher alone (:func:`dnsieve.detectors.lookalike.match_names`).
"""

from __future__ import annotations

import cProfile
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
from dnsieve.commands.domains import score_table
from dnsieve.detectors.dga import score_names
from dnsieve.detectors.lookalike import brand_index, match_names
from dnsieve.domains import DomainSplitter

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


def best(fn: Callable[[], object], reps: int = 3) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n = int(args[0]) if args else 200_000
    names = corpus(n)
    labels = [x.split(".")[1] for x in names]
    t_score = best(lambda: score_names(names), reps=2)
    brand_index()  # built once per process (the shipped reference), not per call
    series = pl.Series(names, dtype=pl.String)
    t_look = best(lambda: match_names(series), reps=2)
    t_table = best(lambda: score_table(names), reps=2)
    t_loop = best(lambda: entropy_loop(labels))

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
    print(
        f"ref: Python entropy loop   : {n / t_loop:12,.0f} labels/s  (score is {t_loop / t_score:.2f}x this, "
        f"look-alikes {t_loop / t_look:.2f}x, domains score {t_loop / t_table:.2f}x)"
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
