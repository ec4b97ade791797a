"""Generate tests/data/croston/statsforecast_reference.json.

Run it with a throwaway virtualenv that has statsforecast (it pins pandas<3,
so it must never go into the project's environment)::

    python3 -m venv /tmp/sfvenv && /tmp/sfvenv/bin/pip install statsforecast numpy
    /tmp/sfvenv/bin/python scripts/croston_reference.py [--rita DIR] [--out FILE]

The series are real-shaped intermittent hourly query counts: per-name hourly
counts from the RITA ``missing_host`` Zeek dns.logs (when the directory is
given/present), plus seeded hurdle series (Bernoulli occurrence, 1 + Poisson or
negative-binomial size) covering edge cases (all zero, one demand, dense).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
import statsforecast
from statsforecast.models import TSB, CrostonClassic, CrostonSBA

HOURS = 72


def rita_series(root: Path, limit: int = 40) -> list[list[float]]:
    counts: Counter[tuple[str, int]] = Counter()
    t0 = None
    for f in sorted(root.glob("*/dns.*.log.gz")):
        with gzip.open(f, "rt", errors="replace") as fh:
            for row in csv.reader(fh, delimiter="\t"):
                if not row or row[0].startswith("#") or len(row) < 10:
                    continue
                ts = float(row[0])
                name = ".".join(row[9].lower().rstrip(".").split(".")[-2:])
                hour = int(ts // 3600)
                t0 = hour if t0 is None else min(t0, hour)
                counts[(name, hour)] += 1
    if t0 is None:
        return []
    per: dict[str, np.ndarray] = {}
    for (name, hour), c in counts.items():
        per.setdefault(name, np.zeros(HOURS))
        if 0 <= hour - t0 < HOURS:
            per[name][hour - t0] += c
    ranked = sorted(per.items(), key=lambda kv: (-(kv[1] > 0).sum(), kv[0]))
    return [v.tolist() for _, v in ranked[:limit]]


def synthetic_series(seed: int = 7, n: int = 40) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    out: list[list[float]] = [
        [0.0] * HOURS,
        [0.0] * (HOURS - 1) + [4.0],
        [5.0] + [0.0] * (HOURS - 1),
    ]
    for _ in range(n):
        p = rng.beta(0.5, 2.0)
        lam = rng.gamma(0.8, 6.0)
        z = rng.random(HOURS) < p
        if rng.random() < 0.5:
            size = 1 + rng.poisson(lam, HOURS)
        else:
            size = 1 + rng.negative_binomial(2, 2 / (2 + lam), HOURS)
        out.append((z * size).astype(float).tolist())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rita", type=Path, default=Path("../shared/data/zeek/rita/missing_host"))
    ap.add_argument(
        "--out", type=Path, default=Path("tests/data/croston/statsforecast_reference.json")
    )
    args = ap.parse_args()
    series = (rita_series(args.rita) if args.rita.is_dir() else []) + synthetic_series()
    models = {
        "croston_classic": CrostonClassic(),
        "croston_sba": CrostonSBA(),
        "tsb_0.1_0.1": TSB(alpha_d=0.1, alpha_p=0.1),
        "tsb_0.2_0.05": TSB(alpha_d=0.2, alpha_p=0.05),
    }
    forecasts: dict[str, list[float]] = {}
    for key, model in models.items():
        forecasts[key] = [
            float(model.forecast(np.asarray(s, dtype=np.float64), h=1)["mean"][0]) for s in series
        ]
    payload = {
        "statsforecast_version": statsforecast.__version__,
        "numpy_version": np.__version__,
        "hours": HOURS,
        "series": series,
        "forecasts": forecasts,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print(f"wrote {len(series)} series to {args.out} (statsforecast {statsforecast.__version__})")


if __name__ == "__main__":
    main()
