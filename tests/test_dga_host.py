"""Host-level DGA detection (dnsieve.detectors.dga_host): scoring maths and behaviour."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from scipy import stats

from dnsieve.calibrate import calibrate
from dnsieve.detectors.base import DetectContext
from dnsieve.detectors.dga_host import (
    DgaHostDetector,
    fisher_combine,
    fit_truncated_nb,
    nb_window_logsf,
    support_bulk,
    typos_of,
)
from dnsieve.domains import DomainSplitter
from dnsieve.simulate import read_dga_lists, simulate

# ----------------------------------------------------------------- maths


@pytest.mark.parametrize(
    ("values", "counts", "tail_share", "bulk"),
    [
        ([0, 1, 2, 55, 60], [9000, 400, 5, 3, 2], 0.05, 1),  # q95 = 0 -> at least 1
        ([0, 1, 2, 55, 60], [9000, 400, 5, 3, 2], 0.001, 2),  # first gap after 2
        ([0, 1, 2, 3, 4, 5], [500, 200, 100, 50, 25, 10], 0.05, 3),  # quantile cap
        ([0], [100], 0.05, 1),
        ([1, 2, 3], [10, 5, 1], 0.05, 1),  # no zeros observed
    ],
)
def test_support_bulk(values: list[int], counts: list[int], tail_share: float, bulk: int) -> None:
    assert support_bulk(np.array(values), np.array(counts), tail_share) == bulk


@pytest.mark.parametrize(("mean", "size"), [(0.2, 0.5), (1.5, 2.0), (0.05, 1.0)])
def test_truncated_fit_recovers_nb_despite_outliers(mean: float, size: float) -> None:
    """Exact NB tallies up to K plus a contaminating cluster far beyond it."""
    k = 6
    v = np.arange(k + 1)
    p = size / (size + mean)
    c = np.round(1e6 * stats.nbinom.pmf(v, size, p)).astype(np.int64)
    v = np.concatenate([v, [80, 120]])
    c = np.concatenate([c, [2_000, 3_000]])  # infected hosts: ignored by truncation
    m, r = fit_truncated_nb(v, c, k, 1e-6)
    assert m == pytest.approx(mean, rel=0.05)
    assert r == pytest.approx(size, rel=0.15)


def test_nb_window_is_a_sum_of_hours() -> None:
    """NB(mean, size) over 2 h equals the law of the sum of two hourly draws."""
    mean, size = 0.3, 0.7
    p = size / (size + mean)
    pmf1 = stats.nbinom.pmf(np.arange(60), size, p)
    pmf2 = np.convolve(pmf1, pmf1)[:60]
    for x in (1, 3, 8):
        want = np.log(1.0 - pmf2[:x].sum())
        got = nb_window_logsf(np.array([x]), mean, size, np.array([2.0]))[0]
        assert got == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    ("ps", "want"),
    [
        ((0.05, 0.05), stats.chi2.sf(-2 * 2 * np.log(0.05), 4)),
        ((1.0, 1.0), 1.0),
        ((1e-10, 1.0), stats.chi2.sf(-2 * np.log(1e-10), 4)),
    ],
)
def test_fisher_combine(ps: tuple[float, float], want: float) -> None:
    got = np.exp(fisher_combine(*(np.log(np.array([p])) for p in ps)))[0]
    assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize(
    ("name", "typo"),
    [
        ("gogle.com", True),  # deletion
        ("gooogle.com", True),  # insertion
        ("goigle.com", True),  # substitution
        ("ogogle.com", True),  # transposition
        ("google.com", False),  # the name itself
        ("xkqzvwrt.com", False),
        ("googleeee.com", False),  # two edits
    ],
)
def test_typos_of(name: str, typo: bool) -> None:
    got = typos_of(pl.Series([name]), pl.Series(["google.com", "github.com"]))
    assert (name in got.to_list()) == typo


# ----------------------------------------------------------------- behaviour

_SPLIT = DomainSplitter()
_WORDS = ["river", "stone", "maple", "quiet", "lamp", "orbit", "tiger", "cloud", "paper", "frost"]


def _add(ev: pl.DataFrame, rows: list[dict[str, Any]]) -> pl.DataFrame:
    df = pl.DataFrame(rows)
    df = df.with_columns(registered_domain=_SPLIT.split_series(df["qname"])["registered_domain"])
    for c in ev.columns:
        if c not in df.columns:
            df = df.with_columns(pl.lit(None).cast(ev.schema[c]).alias(c))
    return pl.concat([ev, df.select(ev.columns).cast(dict(ev.schema))])  # type: ignore[arg-type]


def _bot(
    host: str, names: list[str], t0: datetime, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Bursts of 15 names every 2 h, walking the day's list from its start."""
    rows = []
    for b in range(12):
        t = t0 + timedelta(hours=2 * b, minutes=float(rng.uniform(0, 30)))
        for i, n in enumerate(names[:15]):
            rows.append(
                {"ts": t + timedelta(seconds=i), "src_ip": host, "qname": n, "rcode": "NXDOMAIN"}
            )
    return rows


def _noise(hosts: list[str], t0: datetime, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Benign failures that must not fire: typos, dead names under one domain,
    search-suffix junk under a resolving domain, single-label probes and wpad."""
    typo_h, dead_h, sfx_h, probe_h = hosts
    rows: list[dict[str, Any]] = []
    bases = ["google", "microsoft", "github", "outlook", "linkedin", "amazon"]
    for h in range(24):
        t = t0 + timedelta(hours=h, minutes=float(rng.uniform(0, 50)))
        for j in range(4):
            b = bases[(h + j) % len(bases)]
            i = 1 + (h + j) % (len(b) - 2)
            rows.append(
                {
                    "ts": t + timedelta(seconds=j),
                    "src_ip": typo_h,
                    "qname": f"www.{b[:i]}{b[i + 1 :]}.com",
                    "rcode": "NXDOMAIN",
                }
            )
        for j in range(30):
            rows.append(
                {
                    "ts": t + timedelta(seconds=j),
                    "src_ip": dead_h,
                    "qname": f"srv{j}.oldcorp-example.com",
                    "rcode": "NXDOMAIN",
                }
            )
        for j in range(15):
            lab = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 10))
            rows.append(
                {
                    "ts": t + timedelta(seconds=j),
                    "src_ip": sfx_h,
                    "qname": f"{lab}.ad.corp-example.net",
                    "rcode": "NXDOMAIN",
                }
            )
        rows.append({"ts": t, "src_ip": sfx_h, "qname": "corp-example.net", "rcode": "NOERROR"})
        for j in range(3):
            lab = "".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), 12))
            rows.append(
                {
                    "ts": t + timedelta(seconds=j),
                    "src_ip": probe_h,
                    "qname": lab,
                    "rcode": "NXDOMAIN",
                }
            )
        rows.append({"ts": t, "src_ip": probe_h, "qname": "wpad", "rcode": "NXDOMAIN"})
    return rows


def _alerts(ev: pl.DataFrame, **params: Any) -> tuple[pl.DataFrame, pl.DataFrame]:
    lo, hi = ev["ts"].min(), ev["ts"].max()
    assert isinstance(lo, datetime) and isinstance(hi, datetime)
    ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=3600.0)
    det = DgaHostDetector(**params).fit_population(ev)
    out = det.score(ev, ctx)
    cal = calibrate(
        out,
        budget_per_day=1_000_000,
        population={"dga_host": det.population(ev, ctx)},
        floors={"dga_host": DgaHostDetector.score_floor},
    )
    return out, cal.alerts


def _t(ev: pl.DataFrame) -> datetime:
    t = ev["ts"].min()
    assert isinstance(t, datetime)
    return t


@pytest.fixture(scope="module")
def background() -> pl.DataFrame:
    return simulate(hours=48, clients=200, seed=11).events


def _scenario(background: pl.DataFrame, names: list[str]) -> tuple[pl.DataFrame, str, list[str]]:
    rng = np.random.default_rng(3)
    hosts = background["src_ip"].unique().sort().to_list()
    bot, noise = hosts[5], hosts[20:24]
    t0 = _t(background) + timedelta(hours=8)
    ev = _add(background, _bot(bot, names, t0, rng) + _noise(noise, t0, rng))
    return ev, bot, noise


def test_wordlist_bot_caught_without_the_lexical_model(background: pl.DataFrame) -> None:
    """A dictionary-word DGA (benign-looking to a lexical model) is caught by
    behaviour alone; benign NXDOMAIN noise is not."""
    rng = np.random.default_rng(0)
    names = [
        f"{_WORDS[a]}{_WORDS[b]}{int(n)}.net"
        for a, b, n in rng.integers(0, 10, (40, 3)) * [1, 1, 11]
    ]
    names = list(dict.fromkeys(names))
    ev, bot, noise = _scenario(background, names)
    for lexical in (False, True):
        out, alerts = _alerts(ev, use_lexical=lexical)
        flagged = set(alerts["entity"].to_list())
        assert bot in flagged
        assert not flagged & set(noise)
    row = out.filter(pl.col("entity") == bot).sort("score", descending=True).row(0, named=True)
    e = json.loads(row["evidence"])
    assert e["clients"] == [bot]
    assert e["reason"].startswith(f"{bot} failed ")
    assert "NXDOMAIN" in e["reason"] and str(e["rare_failed_domains"]) in e["reason"]
    assert e["sample_names"] and all(n in names for n in e["sample_names"])


@pytest.mark.shared
@pytest.mark.parametrize("family", ["matsnu", "fosniw", "gozi", "qsnatch", "pykspa", "vawtrak"])
def test_real_family_bot_caught(background: pl.DataFrame, shared_data: Path, family: str) -> None:
    """Families where the lexical model is weakest (leave-family-out AUC
    0.4-0.9 in dga_model.json) are still caught by the host's behaviour."""
    lists = read_dga_lists(shared_data / "domains" / "dga", families=[family])
    names = lists[family][:60]
    ev, bot, noise = _scenario(background, names)
    _, alerts = _alerts(ev, use_lexical=False)
    flagged = set(alerts["entity"].to_list())
    assert bot in flagged
    assert not flagged & set(noise)


def test_partitioned_scoring_matches_whole(background: pl.DataFrame) -> None:
    """Fitted once on the whole input, scoring host partitions gives the same rows."""
    names = [f"{w}{v}zz.biz" for w in _WORDS for v in _WORDS][:30]
    ev, _, _ = _scenario(background, names)
    lo, hi = ev["ts"].min(), ev["ts"].max()
    ctx = DetectContext(start=lo, end=hi + timedelta(seconds=1), window=3600.0)  # type: ignore[arg-type,operator]
    det = DgaHostDetector().fit_population(ev)
    whole = det.score(ev, ctx)
    part = ev["src_ip"].hash() % 3
    parts = pl.concat([det.score(ev.filter(part == i), ctx) for i in range(3)])
    assert parts.sort("entity", "window_start").equals(whole.sort("entity", "window_start"))


def test_small_capture_uses_the_reference_law() -> None:
    df = DgaHostDetector.example(0)
    t0 = df["ts"].min()
    ctx = DetectContext(start=t0, end=t0 + timedelta(hours=1), window=600)  # type: ignore[arg-type,operator]
    out = DgaHostDetector().score(df, ctx)
    assert out["entity"].to_list() == ["10.1.0.66"]
    e = json.loads(out["evidence"][0])
    assert e["population_fit"] == "reference"
    assert out["score"][0] >= DgaHostDetector.score_floor


def test_censored_fit_weighs_the_tail() -> None:
    """Censoring keeps values above the bulk as "> K": a heavier tail than truncation."""
    v = np.array([0, 1, 2, 9, 15])
    c = np.array([9000, 700, 60, 30, 20])
    m_t, r_t = fit_truncated_nb(v, c, 2, 1e-6)
    m_c, r_c = fit_truncated_nb(v, c, 2, 1e-6, censor=True)
    tail_t = nb_window_logsf(np.array([6]), m_t, r_t, np.array([1.0]))[0]
    tail_c = nb_window_logsf(np.array([6]), m_c, r_c, np.array([1.0]))[0]
    assert tail_c > tail_t
