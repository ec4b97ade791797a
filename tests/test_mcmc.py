"""The NUTS fit of the full hierarchical hurdle model agrees with the conjugate posteriors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import require_module
from dnsieve.detectors.volume import domain_stats


def test_friendly_error_without_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from dnsieve import mcmc

    real = builtins.__import__

    def fake(name: str, *a, **kw):
        if name == "numpyro" or name.startswith("numpyro."):
            raise ImportError("no numpyro")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(mcmc.MissingExtraError, match=r"dnsieve\[mcmc\]"):
        mcmc.require_numpyro()


def test_nuts_agrees_with_conjugate_on_real_shaped_series() -> None:
    """Real hourly counts (RITA dns.log names, in the Croston fixture) plus hurdle series.

    Tolerance: for entities with at least 5 active hours, posterior means of p
    agree within 0.03 (absolute) and of λ within 15 % (relative) or 0.3
    (measured: 0.012 and 12 %).
    """
    require_module("numpyro", reason="the mcmc extra is not installed")
    from dnsieve.mcmc import compare_with_conjugate

    ref = json.loads(
        (Path(__file__).parent / "data" / "croston" / "statsforecast_reference.json").read_text()
    )
    y = np.asarray(ref["series"], dtype=float)[3:]  # drop the three degenerate edge cases
    k, s, _ = domain_stats(y)
    keep = k >= 1
    out = compare_with_conjugate(
        k[keep], y.shape[1], s[keep], num_warmup=150, num_samples=150, seed=0
    )
    well = out.filter(out["k"] >= 5)
    assert well.height >= 30
    dp = np.abs(well["p_mcmc"].to_numpy() - well["p_conjugate"].to_numpy())
    lc, lm = well["lambda_conjugate"].to_numpy(), well["lambda_mcmc"].to_numpy()
    assert dp.max() < 0.03
    assert np.all(np.abs(lm - lc) <= np.maximum(0.15 * lc, 0.3))
