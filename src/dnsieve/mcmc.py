"""Full hierarchical hurdle model by MCMC (NUTS, numpyro): the check on the conjugate path.

Optional extra: ``pip install 'dnsieve[mcmc]'`` (numpyro + jax, CPU is fine).

The conjugate detector (:mod:`dnsieve.detectors.volume`) plugs in point
estimates of the population priors (empirical Bayes).  Here the priors get
hyperpriors and everything is sampled jointly, for a *shortlist* of entities
(for example the flagged ones and a sample of their peers)::

    μ_p ~ Beta(1, 1),  κ ~ LogNormal(log 5, 1.5)        a0 = μ_p κ,  b0 = (1 − μ_p) κ
    μ_λ ~ LogNormal(0, 3),  α0 ~ LogNormal(0, 1.5)       β0 = α0 / μ_λ
    p_d ~ Beta(a0, b0),  λ_d ~ Gamma(α0, β0)
    k_d ~ Binomial(n_d, p_d),  s_d ~ Poisson(k_d λ_d)

on each entity's hurdle sufficient statistics (``k`` non-zero hours out of
``n``; ``s = Σ(y−1)z``), which is exactly the likelihood of the hourly model.
:func:`compare_with_conjugate` fits it and lines the posterior means up with
the conjugate ones; tests/test_mcmc.py shows they agree on real-shaped series.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from dnsieve.detectors.volume import fit_priors

__all__ = [
    "McmcFit",
    "MissingExtraError",
    "compare_with_conjugate",
    "fit_hierarchical",
    "require_numpyro",
]


class MissingExtraError(ImportError):
    """numpyro/jax are not installed; the message says how to install them."""


def require_numpyro() -> Any:
    """Import numpyro or raise :class:`MissingExtraError` with the install command."""
    try:
        import numpyro
    except ImportError:
        raise MissingExtraError(
            "the MCMC check needs the optional extra: pip install 'dnsieve[mcmc]' (numpyro and jax)"
        ) from None
    return numpyro


@dataclass(frozen=True)
class McmcFit:
    """Posterior means from NUTS, per entity and for the hyperparameters."""

    p_mean: NDArray[np.float64]
    lam_mean: NDArray[np.float64]
    hyper: dict[str, float]
    num_samples: int
    divergences: int


def fit_hierarchical(
    k: ArrayLike,
    n: ArrayLike,
    s: ArrayLike,
    *,
    num_warmup: int = 300,
    num_samples: int = 300,
    seed: int = 0,
) -> McmcFit:
    """Sample the hierarchical hurdle model (one chain, NUTS) for entities with stats (k, n, s)."""
    numpyro = require_numpyro()
    import jax
    import jax.numpy as jnp
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    k_a = jnp.asarray(np.asarray(k, dtype=np.float64))
    n_a = jnp.asarray(np.asarray(n, dtype=np.float64))
    s_a = jnp.asarray(np.asarray(s, dtype=np.float64))
    m = int(k_a.shape[0])

    def model() -> None:
        mu_p = numpyro.sample("mu_p", dist.Beta(1.0, 1.0))
        kappa = numpyro.sample("kappa", dist.LogNormal(jnp.log(5.0), 1.5))
        mu_l = numpyro.sample("mu_lambda", dist.LogNormal(0.0, 3.0))
        alpha0 = numpyro.sample("alpha0", dist.LogNormal(0.0, 1.5))
        with numpyro.plate("entity", m):
            p = numpyro.sample("p", dist.Beta(mu_p * kappa, (1.0 - mu_p) * kappa))
            lam = numpyro.sample("lam", dist.Gamma(alpha0, alpha0 / mu_l))
            numpyro.sample("k", dist.Binomial(total_count=n_a, probs=p), obs=k_a)
            numpyro.sample("s", dist.Poisson(k_a * lam + 1e-12), obs=s_a)

    mcmc = MCMC(
        NUTS(model),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=1,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(seed), extra_fields=("diverging",))
    post = mcmc.get_samples()
    mu_p, kappa = np.asarray(post["mu_p"]), np.asarray(post["kappa"])
    mu_l, alpha0 = np.asarray(post["mu_lambda"]), np.asarray(post["alpha0"])
    hyper = {
        "a0": float(np.mean(mu_p * kappa)),
        "b0": float(np.mean((1 - mu_p) * kappa)),
        "alpha0": float(np.mean(alpha0)),
        "beta0": float(np.mean(alpha0 / mu_l)),
    }
    div = int(np.asarray(mcmc.get_extra_fields()["diverging"]).sum())
    return McmcFit(
        np.asarray(post["p"]).mean(axis=0),
        np.asarray(post["lam"]).mean(axis=0),
        hyper,
        num_samples,
        div,
    )


def compare_with_conjugate(
    k: ArrayLike,
    n: float,
    s: ArrayLike,
    *,
    num_warmup: int = 300,
    num_samples: int = 300,
    seed: int = 0,
) -> pl.DataFrame:
    """NUTS posterior means next to the conjugate (empirical-Bayes) ones, one row per entity.

    All entities share ``n`` hours (a window).  The conjugate priors are fitted
    by :func:`dnsieve.detectors.volume.fit_priors` on the same entities.
    """
    k_a = np.asarray(k, dtype=np.float64)
    s_a = np.asarray(s, dtype=np.float64)
    pr = fit_priors(k_a, s_a, n)
    fit = fit_hierarchical(
        k_a,
        np.full(k_a.shape, float(n)),
        s_a,
        num_warmup=num_warmup,
        num_samples=num_samples,
        seed=seed,
    )
    return pl.DataFrame(
        {
            "k": k_a,
            "s": s_a,
            "p_conjugate": (pr.a0 + k_a) / (pr.a0 + pr.b0 + n),
            "p_mcmc": fit.p_mean,
            "lambda_conjugate": (pr.alpha0 + s_a) / (pr.beta0 + k_a),
            "lambda_mcmc": fit.lam_mean,
        }
    )
