"""Benchmark of the volume model (issue 3): conjugate hurdle path vs Croston vs statsforecast vs NUTS.

    .venv/bin/python bench/volume.py [--domains 1000000] [--hours 168] [--chunk 25000]

All figures come from this one run and are printed as ratios to the conjugate
path.  statsforecast runs from a throwaway venv (/tmp/sfvenv, see
tests/data/croston/README.md) through a subprocess, on a subsample.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dnsieve.detectors.croston import croston_classic
from dnsieve.detectors.volume import (
    domain_stats,
    fit_priors,
    window_posteriors,
    window_stats,
    window_sums,
)

SF_PY = Path("/tmp/sfvenv/bin/python")
SF_SCRIPT = """
import json, sys, time, numpy as np
from statsforecast.models import CrostonClassic
y = np.load(sys.argv[1])
m = CrostonClassic()
t = time.perf_counter()
out = [m.forecast(row, h=1)["mean"][0] for row in y]
print(json.dumps({"seconds": time.perf_counter() - t, "n": len(out)}))
"""


def synth(rng: np.random.Generator, n: int, hours: int) -> np.ndarray:
    """Sparse hurdle counts: p ~ Beta(0.5, 4), λ ~ Gamma(0.8, scale 5), float32."""
    p = rng.beta(0.5, 4.0, n).astype(np.float32)
    lam = rng.gamma(0.8, 5.0, n).astype(np.float32)
    z = rng.random((n, hours), dtype=np.float32) < p[:, None]
    return (z * (1 + rng.poisson(lam[:, None], (n, hours)))).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domains", type=int, default=1_000_000)
    ap.add_argument("--hours", type=int, default=168)
    ap.add_argument("--chunk", type=int, default=25_000)
    ap.add_argument("--window", type=int, default=3)
    ap.add_argument("--sf-sample", type=int, default=5_000)
    ap.add_argument("--nuts", type=int, default=20, help="series for the NUTS timing (0 to skip)")
    ap.add_argument("--no-engines", action="store_true", help="skip bench/volume_engines.py")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    h, c = args.hours, args.window
    starts = np.array([h - c])  # score the newest window against the rest (streaming case)
    starts_day = np.arange(h - 24, h - c + 1, c)  # every window of the last day

    # priors from a population sample (they are population-level quantities)
    sample = synth(rng, min(args.chunk, args.domains), h)
    k, s, q = domain_stats(sample)
    priors = fit_priors(k, s, h, q)
    print(f"priors: {priors.to_dict()}")

    t_gen = t_conj = t_two = t_day = t_cro = 0.0
    for lo in range(0, args.domains, args.chunk):
        n = min(args.chunk, args.domains - lo)
        t = time.perf_counter()
        y = synth(rng, n, h)
        t_gen += time.perf_counter() - t
        # conjugate path: one pass for the sufficient statistics, the priors
        # refitted on this chunk's baseline statistics, posteriors, screen
        t = time.perf_counter()
        sm = window_sums(y, starts, c, h - c)
        pr = fit_priors(sm.k_t[:, 0], sm.s_t[:, 0], h - c, sm.q_t[:, 0])
        st = window_posteriors(sm, pr)
        gate = (st.prob_demand > 0.95) & (st.effect > 2) | (st.hour_z > 4)
        t_conj += time.perf_counter() - t
        # the same through the two-call API (domain_stats pass + window_stats pass)
        t = time.perf_counter()
        kk, ss, qq = domain_stats(y[:, : h - c])
        pr2 = fit_priors(kk, ss, h - c, qq)
        st2 = window_stats(y, starts, c, h - c, pr2, period=0)
        gate2 = (st2.prob_demand > 0.95) & (st2.effect > 2) | (st2.hour_z > 4)
        t_two += time.perf_counter() - t
        if not np.array_equal(gate, gate2):
            raise SystemExit("fused and two-call conjugate paths disagree")
        t = time.perf_counter()
        window_stats(y, starts_day, c, 144, priors, period=24)
        t_day += time.perf_counter() - t
        t = time.perf_counter()
        croston_classic(y)
        t_cro += time.perf_counter() - t
    n_all = args.domains
    conj = n_all / t_conj
    print(
        f"data: {n_all:,} series × {h} h (float32, chunks of {args.chunk:,}); generation {t_gen:.1f} s (not counted)"
    )
    print(
        f"conjugate hurdle (priors + posteriors + window difference + extreme-hour screen, newest {c} h window):"
    )
    print(f"  {t_conj:.2f} s  -> {conj:,.0f} series/s   (target ≥ 1,000,000)")
    print(
        f"  two-call API (domain_stats + fit_priors + window_stats, two passes): "
        f"{n_all / t_two:,.0f} series/s (fused/two-call = {t_two / t_conj:.2f}x)"
    )
    print(
        f"  seasonal, all {starts_day.size} windows of the last day: {n_all / t_day:,.0f} series/s "
        f"({n_all * starts_day.size / t_day:,.0f} series-windows/s)"
    )
    print(
        f"NumPy Croston classic: {t_cro:.2f} s -> {n_all / t_cro:,.0f} series/s  (conjugate/croston = {conj / (n_all / t_cro):.2f}x)"
    )

    sub = synth(np.random.default_rng(1), args.sf_sample, h).astype(np.float64)
    if SF_PY.exists():
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "y.npy"
            np.save(f, sub)
            res = subprocess.run(
                [str(SF_PY), "-c", SF_SCRIPT, str(f)], capture_output=True, text=True, check=False
            )
        if res.returncode == 0:
            r = json.loads(res.stdout.strip().splitlines()[-1])
            sf = r["n"] / r["seconds"]
            t = time.perf_counter()
            croston_classic(sub)
            ours = args.sf_sample / (time.perf_counter() - t)
            print(
                f"statsforecast CrostonClassic ({args.sf_sample:,} series): {sf:,.0f} series/s; "
                f"NumPy Croston on the same: {ours:,.0f} series/s ({ours / sf:.1f}x); "
                f"conjugate path / statsforecast = {conj / sf:.1f}x"
            )
        else:
            print("statsforecast run failed:", res.stderr.strip()[-400:])
    else:
        print(
            "statsforecast: not installed; python3 -m venv /tmp/sfvenv && /tmp/sfvenv/bin/pip install statsforecast numpy"
        )

    if args.nuts:
        try:
            from dnsieve.mcmc import fit_hierarchical

            ys = sub[: args.nuts]
            kk, ss, _ = domain_stats(ys)
            fit_hierarchical(
                kk[:2], np.full(2, float(h)), ss[:2], num_warmup=50, num_samples=50
            )  # compile
            t = time.perf_counter()
            fit_hierarchical(kk, np.full(kk.shape, float(h)), ss, num_warmup=300, num_samples=300)
            per = (time.perf_counter() - t) / args.nuts
            print(
                f"NUTS (numpyro, hierarchical, {args.nuts} series jointly, 300+300 draws): {per * 1e3:.0f} ms/series "
                f"-> conjugate path is {conj * per:,.0f}x faster per series"
            )
        except ImportError as exc:
            print(f"NUTS: skipped ({exc})")

    eng = Path(__file__).with_name("volume_engines.py")
    if eng.exists() and not args.no_engines:
        print(f"--- {eng.name} ---", flush=True)
        subprocess.run([sys.executable, str(eng)], check=False)


if __name__ == "__main__":
    main()
