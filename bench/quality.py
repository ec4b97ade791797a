#!/usr/bin/env python
"""dnsieve's scoreboard: does it report the threats and stay quiet about the rest?

    .venv/bin/python bench/quality.py [--quick] [--seeds 1,2,3,4,5] [--sizes 200,500,2000,8000]
        [--hours 168] [--hours-for 2000=72 --hours-for 8000=24] [--sections grid,dga,captures,feedback]
        [--json out.json] [--keep DIR]
        [--feedback-sizes 500,1000] [--feedback-hours 168] [--stores DIR]

It measures whatever the detectors, calibration and threat model do *now*,
through the library job that ``dnsieve run`` uses (:func:`run_job`: ingest,
every detector, calibration, threat scoring, storage in an alert store), and
reads the alerts back from the store, so it counts what an analyst would see
(episodes, once the store keeps one alert per episode).  Alerts are matched
to the simulator's ``labels.csv`` exactly as the demo does
(:func:`dnsieve.demo.label_alerts`: same entity, or either part of a
``client|domain`` entity, with overlapping windows).

Sections (issue 11, "Must show"):

``grid``
    For every host count in ``--sizes`` and simulator seed in ``--seeds``:
    recall per injected attack kind (a campaign is caught when any alert
    matches any of its label rows), benign anomalies alerted (``benign_*``
    campaigns, threat = 0, counted apart: detectors may flag them, the threat
    model should rank them down), false alerts (alerts that match no label)
    per 10,000 active registered domains per day (active: seen that day; the
    mean over days), and false alerts on a Tranco top-1,000 domain.  Each
    injected volume spike gets a line (factor, injected queries, the oracle
    p-value of its excess under the site's own background law,
    :func:`oracle_spike_p`, and caught or not), with the recall of all spikes
    and of those detectable at the false-alert target's per-window level; the
    ``volume``/``client_volume`` alerts that match no label are traced to the
    injected traffic their entity carries (a beacon's domain, a tunnel's
    client) or counted truly benign.  Seeds
    1-3 are the tuning seeds; seeds 4-5 are held out and reported apart; the
    default demo (500 hosts, seed 7, 168 h) is reported apart too.
``dga``
    DGA leave-family-out.  *Lexical alone*: the shipped DGA model's recipe
    (``scripts/train_dga.py``: features, gradient-boosted trees) refitted
    without the held-out families, scored on them against the benign test
    split of ``../shared/data/domains/benign``: AUC and TPR at FPR 1e-3 per
    family; the shipped model itself is scored as well, with a mark on the
    families it was trained on.  *Host level*: a simulation whose DGA bots
    draw from the held-out families' real lists
    (:func:`dnsieve.simulate.read_dga_lists`), one campaign per family;
    recall of the ``dga_host`` and ``nxdomain`` detectors on the bot clients.
``captures``
    Every Domainator capture (``../shared/data/tunnel/domainator/*/*.pcapng``)
    and the iodine dnsmasq log, one at a time and all together: which of the
    tool's C2 domains present in the input are flagged (an alert on the domain,
    on a ``client|domain`` pair, or on a client whose evidence names the domain
    among the rare domains it keeps failing on: ``dga_host``), and their highest
    P(threat) (the stored alert's threat probability, before any verdict).
    Handshake captures (the tool rotating over its domain list) and upload
    captures (a tunnel) are counted apart.
``feedback``
    Does an analyst's truthful verdict teach relevance?  For every host count
    in ``--feedback-sizes`` (500 and 1,000) and seed (1-3 tuning, 4-5 held
    out), over ``--feedback-hours`` (a week: benign anomalies then outnumber
    the threats and enough alerts remain undecided for ``k``), and the demo:
    precision@k of the undecided queue (open alerts ranked by P(threat))
    before any verdict and after 25 and 50 simulated-analyst verdicts, each
    given through :func:`dnsieve.alerts.feedback.apply_verdict` (the model
    learns online and re-scores the queue), truthful (threat when the alert
    matches an attack label, as the grid matches: :func:`match_campaigns`;
    else benign).  Alerts are chosen by
    the review queue (:func:`dnsieve.web.queue.review_queue`) or from the top
    of the queue; the controls, means of ``--repeats``, are random alerts
    answered truthfully and the review queue's choices answered by a coin.
    ``k`` is 20, or the number of open alerts when fewer remain (the report
    says so, and how many threats are left undecided).  The grid's stores are
    reused when it ran the same size, seed and hours; ``--stores DIR`` reuses
    the stores of an earlier ``--keep DIR``.

Everything is seeded; ``--json`` writes every figure.  Wall-clock figures
are printed for information only.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from dnsieve.demo import label_alerts

# The one place the library job is imported (a later refactor may move it).
from dnsieve.jobs import run_job
from dnsieve.simulate import (
    BENIGN_KINDS,
    THREAT_KINDS,
    SimResult,
    read_dga_lists,
    simulate,
    write_zeek,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
TRANCO = DATA / "domains" / "benign" / "tranco_like_top50k_2025-02_kmikholap.csv"
K = 20
BUDGETS = (0, 25, 50)

#: Families held out of the lexical refit and injected for the host-level test: one or two
#: per lexical style of the public lists (word lists, pronounceable, random letters,
#: hash-like), plus the two families the shipped model never saw.
HELD_OUT_FAMILIES = (
    "matsnu",
    "gozi",
    "pykspa",
    "conficker",
    "bazarbackdoor",
    "qsnatch",
    "corebot",
    "unnamed_downloader",
)

#: The C2 domains of each Domainator tool (every name the tool's client sends;
#: RogueRobin's eight are the DarkHydrus domains).
TOOL_DOMAINS: dict[str, frozenset[str]] = {
    "dnscat": frozenset({"hacker-dnscat.com"}),
    "iodine": frozenset({"hacker-iodine.com"}),
    "roguerobin-powershell": frozenset(
        {
            "anyconnect.stream",
            "bigip.stream",
            "fortiweb.download",
            "kaspersky.science",
            "microtik.stream",
            "owa365.bid",
            "symanteclive.download",
            "windowsdefender.win",
        }
    ),
    "iodine_dnsmasq": frozenset({"example.attack"}),
}


def log(msg: str) -> None:
    """Progress on stderr (the report goes to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- the job


@dataclass
class JobResult:
    """The stored alerts of one job and where its store is."""

    alerts: pl.DataFrame  # detector, entity_type, entity, window_start/end (episode), p, id
    db: str
    seconds: float
    detectors: dict[str, Any] = field(default_factory=dict)


def _alerts_frame(alerts: Sequence[Any]) -> pl.DataFrame:
    """Stored alerts as a frame; an episode's span is its window (as the analyst sees it)."""
    return pl.DataFrame(
        {
            "id": [a.id for a in alerts],
            "detector": [a.detector for a in alerts],
            "entity_type": [a.entity_type for a in alerts],
            "entity": [a.entity for a in alerts],
            "window_start": pl.Series(
                [getattr(a, "episode_start", None) or a.window_start for a in alerts],
                dtype=pl.Datetime("us", "UTC"),
            ),
            "window_end": pl.Series(
                [getattr(a, "episode_end", None) or a.window_end for a in alerts],
                dtype=pl.Datetime("us", "UTC"),
            ),
            "threat_probability": pl.Series(
                [a.threat_probability for a in alerts], dtype=pl.Float64
            ),
            "severity": [str(getattr(a, "severity", "")) for a in alerts],
            "status": [a.status for a in alerts],
            "named": pl.Series([_named_domains(a) for a in alerts], dtype=pl.List(pl.String)),
        }
    )


def _named_domains(alert: Any) -> list[str]:
    """The domains a client alert names as its evidence (``dga_host``: the host's rare
    failing domains, ``sample_names``); empty for domain and client|domain alerts."""
    if alert.entity_type != "client":
        return []
    ev = alert.evidence or {}
    return [str(d) for d in ev.get("sample_names") or []]


def run_pipeline(paths: list[Path], work: Path, name: str) -> JobResult:
    """``dnsieve run`` on ``paths`` with a fresh store under ``work``; alerts read back."""
    from dnsieve.alerts.store import AlertStore
    from dnsieve.config import load_settings

    db = f"sqlite:///{(work / f'{name}.db').absolute()}"
    t0 = time.perf_counter()
    _reports, res, _scored = run_job(
        paths, work / f"{name}-lake", "auto", load_settings(env={}), store_url=db
    )
    with AlertStore.open(db) as store:
        alerts = store.list_alerts(include_suppressed=True)
    dets = {
        d: {k: info.get(k) for k in ("status", "alerts", "reason") if k in info}
        for d, info in res.summary.get("detectors", {}).items()
    }
    return JobResult(_alerts_frame(alerts), db, time.perf_counter() - t0, dets)


# ----------------------------------------------------------------------------- matching


def match_campaigns(alerts: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """``alerts`` plus ``campaign`` (the injected campaign an alert points at, else null)
    and ``kind``, matched by :func:`dnsieve.demo.label_alerts`."""
    by_campaign = labels.with_columns(pl.col("campaign").alias("kind"))
    out = label_alerts(alerts, by_campaign).rename({"truth": "campaign"})
    kinds = labels.select("campaign", "kind", pl.col("threat").cast(pl.Int8)).unique("campaign")
    return out.join(kinds, on="campaign", how="left")


def top_domains(n: int = 1000) -> frozenset[str]:
    """The first ``n`` domains of the Tranco-like list (empty when the data is absent)."""
    if not TRANCO.exists():
        return frozenset()
    df = pl.read_csv(TRANCO, has_header=False, new_columns=["rank", "domain"], n_rows=n)
    return frozenset(df["domain"].str.to_lowercase().to_list())


def active_domains_per_day(events: pl.DataFrame) -> float:
    """Mean over simulated days of the distinct registered domains queried that day."""
    per_day = events.group_by(pl.col("ts").dt.date().alias("d")).agg(
        pl.col("registered_domain").n_unique().alias("n")
    )
    return float(per_day["n"].mean() or 0.0)  # type: ignore[arg-type]


def score_simulation(sim: SimResult, alerts: pl.DataFrame, top1k: frozenset[str]) -> dict[str, Any]:
    """Recall per kind, benign anomalies alerted and false alerts of one simulated run."""
    m = match_campaigns(alerts, sim.labels)
    camps = sim.labels.select("campaign", "kind").unique()
    caught = set(m["campaign"].drop_nulls().to_list())
    per_kind: dict[str, dict[str, int]] = {}
    for kind, camp in zip(camps["kind"].to_list(), camps["campaign"].to_list(), strict=True):
        row = per_kind.setdefault(kind, {"campaigns": 0, "caught": 0})
        row["campaigns"] += 1
        row["caught"] += int(camp in caught)
    missed = sorted(
        c
        for c, k in zip(camps["campaign"].to_list(), camps["kind"].to_list(), strict=True)
        if k in THREAT_KINDS and c not in caught
    )
    false = m.filter(pl.col("campaign").is_null())
    days = sim.hours / 24.0
    active = active_domains_per_day(sim.events)
    dom = false["entity"].str.split("|").list.last()
    on_top = sorted(set(dom.filter(dom.is_in(sorted(top1k))).to_list())) if top1k else []
    return {
        "hosts": sim.clients,
        "seed": sim.seed,
        "hours": sim.hours,
        "events": sim.events.height,
        "alerts": alerts.height,
        "per_kind": per_kind,
        "missed": missed,
        "alerts_on_threats": int((m["threat"] == 1).sum()),
        "alerts_on_benign": int((m["threat"] == 0).sum()),
        "false_alerts": false.height,
        "false_by_detector": dict(false.group_by("detector").len().sort("detector").iter_rows()),
        "false_examples": {
            d: sorted(set(g["entity"].to_list()))[:3]
            for (d,), g in false.group_by("detector", maintain_order=True)
        },
        "active_domains_per_day": round(active, 1),
        "false_per_10k_domains_day": false.height / max(days, 1e-9) / max(active / 1e4, 1e-9),
        "false_on_top1k": on_top,
        "spikes": spike_rows(sim, caught),
        "volume_false": volume_false_rows(sim, false),
    }


# ----------------------------------------------------------------------------- volume spikes


def spike_level() -> float:
    """The per-window false-alarm level of the alert budget: ``target_far · window / 24 h``.

    ``target_far`` (false alarms per entity per day) and the volume window
    come from the default settings, as the job uses them.
    """
    from dnsieve.config import DetectSettings

    st = DetectSettings.model_validate({})
    return float(st.target_far) * float(st.window_hours) / 24.0


def oracle_spike_p(hourly: np.ndarray, spike_hours: np.ndarray, extra: int) -> float:
    """P(X ≥ observed) of a spike's hours under the site's true background, an oracle's test.

    ``hourly``: the site's *background* queries per simulated hour (injected
    events left out); ``spike_hours``: the ``n`` consecutive hour indices the
    spike touches; ``extra``: its injected queries.  The oracle knows which
    hours to test and the background's law over ``n``-hour blocks, taken from
    the site's own background: the mean ``M`` and variance ``V`` of its sums
    over every ``n`` consecutive hours that do not overlap the spike (so
    sessions that span hours and the day's rhythm are in ``V``).  The total of
    the spike's hours is tested as negative binomial with that mean and
    variance (Poisson when ``V ≤ M``).  No detector that does not know when a
    spike happens can do better, so a spike whose oracle p is above the
    budget's level (:func:`spike_level`) is not detectable at that level.
    """
    from scipy import stats

    n = max(int(spike_hours.size), 1)
    csum = np.concatenate([[0.0], np.cumsum(hourly.astype(np.float64))])
    starts = np.arange(0, hourly.size - n + 1)
    lo, hi = int(spike_hours.min()), int(spike_hours.max())
    clear = (starts + n - 1 < lo) | (starts > hi)
    blocks = (csum[starts + n] - csum[starts])[clear]
    mean = max(float(blocks.mean()) if blocks.size else 0.0, 1e-9)
    var = max(float(blocks.var()) if blocks.size > 1 else mean, 1e-9)
    observed = int(hourly[spike_hours].sum()) + int(extra)
    if var <= mean * (1 + 1e-9):
        return float(stats.poisson.sf(observed - 1, mean))
    r, p = mean * mean / (var - mean), mean / var
    return float(stats.nbinom.sf(observed - 1, r, p))


def spike_rows(sim: SimResult, caught: set[str]) -> list[dict[str, Any]]:
    """One row per injected volume spike: size, oracle p, detectable at the budget's level, caught."""
    level = spike_level()
    spikes = sim.labels.filter(pl.col("kind") == "volume_spike")
    if spikes.height == 0:
        return []
    t0 = sim.start
    ev = sim.events.select("ts", "registered_domain", "campaign")
    rows = []
    for ent, ws, we, desc, camp in spikes.select(
        "entity", "window_start", "window_end", "description", "campaign"
    ).iter_rows():
        site = ev.filter(pl.col("registered_domain") == ent)
        hour = ((pl.col("ts") - pl.lit(t0)).dt.total_seconds() // 3600).cast(pl.Int64)
        bg = site.filter(pl.col("campaign").is_null()).select(hour.alias("h"))
        hourly = np.bincount(bg["h"].to_numpy(), minlength=sim.hours)[: sim.hours]
        extra = site.filter(pl.col("campaign") == camp).height
        a = datetime.fromisoformat(ws.replace("Z", "+00:00"))
        b = datetime.fromisoformat(we.replace("Z", "+00:00"))
        h_lo = int((a - t0).total_seconds() // 3600)
        h_hi = int(-(-(b - t0).total_seconds() // 3600))
        hours = np.arange(max(h_lo, 0), min(max(h_hi, h_lo + 1), sim.hours))
        p = oracle_spike_p(hourly, hours, extra)
        m = re.search(r"x(\d+)", desc or "")
        rows.append(
            {
                "entity": ent,
                "factor": int(m.group(1)) if m else None,
                "extra": extra,
                "hours": int(hours.size),
                "background_per_hour": round(float(hourly.mean()), 3),
                "oracle_p": p,
                "level": level,
                "detectable": bool(p <= level),
                "caught": camp in caught,
            }
        )
    return rows


def volume_false_rows(sim: SimResult, false: pl.DataFrame) -> list[dict[str, Any]]:
    """The ``volume``/``client_volume`` alerts that match no label, with the injected
    campaign whose events the entity carries in the alert's window (None: truly benign).

    Labels name a beacon by ``client|domain`` and a tunnel by its domain, so a volume
    alert on a beacon's domain or on a tunnel's client matches no label, though the
    traffic it flags is injected.
    """
    rows = []
    ev = sim.events.select("ts", "src_ip", "registered_domain", "campaign")
    for det, ent, ws, we in (
        false.filter(pl.col("detector").is_in(["volume", "client_volume"]))
        .select("detector", "entity", "window_start", "window_end")
        .iter_rows()
    ):
        col = "src_ip" if det == "client_volume" else "registered_domain"
        inj = (
            ev.filter(
                (pl.col(col) == ent)
                & (pl.col("ts") >= ws)
                & (pl.col("ts") < we)
                & pl.col("campaign").is_not_null()
            )
            .group_by("campaign")
            .len()
            .sort("len", descending=True)
        )
        rows.append(
            {"detector": det, "entity": ent, "campaign": inj["campaign"][0] if inj.height else None}
        )
    return rows


def print_spikes(runs: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    """Every volume spike (factor, extra queries, oracle p) and recall, all and detectable, per size."""
    rows = [(r, s) for r in runs for s in r.get("spikes") or []]
    if not rows:
        return
    level = rows[0][1]["level"]
    out(
        "### Volume spikes: recall of all and of the detectable ones\n\n"
        f"Detectable: the oracle p-value of the injected excess (the site's own background "
        f"rate and dispersion, the spike's exact hours) is at most the budget's per-window "
        f"level {level:.3g} (target_far x window / 24 h). No detector can reliably find a "
        "spike above it without exceeding the false-alert target.\n"
    )
    out("| group | hosts | spikes caught | detectable caught | undetectable caught |")
    out("|---|---:|---:|---:|---:|")
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r, s in rows:
        groups.setdefault((r["group"], r["hosts"]), []).append(s)
    for (g, h), ss in sorted(groups.items(), key=lambda x: (x[0][0] != "tuning", x[0][0], x[0][1])):
        det = [s for s in ss if s["detectable"]]
        und = [s for s in ss if not s["detectable"]]
        out(
            f"| {g} | {h} | {sum(s['caught'] for s in ss)}/{len(ss)} | "
            f"{sum(s['caught'] for s in det)}/{len(det)} | {sum(s['caught'] for s in und)}/{len(und)} |"
        )
    out("")
    vf = [(r, v) for r in runs for v in r.get("volume_false") or []]
    if vf:
        benign = [f"{v['detector']} {v['entity']}" for _, v in vf if v["campaign"] is None]
        out(
            f"volume/client_volume alerts matching no label: {len(vf)}; on an entity carrying "
            f"injected traffic in the alert's window (a beacon's domain, a tunnel's client): "
            f"{len(vf) - len(benign)}; truly benign: {len(benign)}"
            + (f" ({', '.join(sorted(set(benign)))})" if benign else "")
            + "\n"
        )
    for r, s in rows:
        out(
            f"- {r['group']} {r['hosts']} hosts seed {r['seed']}: {s['entity']} x{s['factor']}, "
            f"{s['extra']} extra queries in {s['hours']} h (background {s['background_per_hour']}/h), "
            f"oracle p {s['oracle_p']:.1e}, {'detectable' if s['detectable'] else 'below the level'}, "
            f"{'caught' if s['caught'] else 'missed'}"
        )
    out("")


# ----------------------------------------------------------------------------- grid


def simulate_and_run(
    hosts: int, seed: int, hours: int, work: Path, **kwargs: Any
) -> tuple[SimResult, JobResult]:
    """Simulate, write the Zeek log and run the job on it."""
    sim = simulate(hours=hours, clients=hosts, seed=seed, **kwargs)
    name = f"sim-{hosts}h{hours}-s{seed}"
    paths = write_zeek(sim, work / name)
    return sim, run_pipeline([paths["log"]], work, name)


def grid(
    sizes: Sequence[int],
    seeds: Sequence[int],
    hours_for: Callable[[int], int],
    demo_hours: int,
    work: Path,
    keep_db: dict[str, str],
    progress: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every (size, seed) run and the demo (unless ``demo_hours`` is 0); one dict per run.

    ``progress`` is called with the runs so far after each one (partial results survive
    an interrupted run)."""
    top1k = top_domains()
    runs: list[dict[str, Any]] = []
    todo = [(h, s, "tuning" if s <= 3 else "held-out") for h in sizes for s in seeds]
    if demo_hours > 0:
        todo.append((500, 7, "demo"))
    for hosts, seed, group in todo:
        hours = demo_hours if group == "demo" else hours_for(hosts)
        t0 = time.perf_counter()
        sim, job = simulate_and_run(hosts, seed, hours, work)
        res = score_simulation(sim, job.alerts, top1k)
        res.update(group=group, seconds=round(time.perf_counter() - t0, 1))
        res["detectors"] = job.detectors
        keep_db[f"{hosts}-{seed}-{group}"] = job.db
        runs.append(res)
        _labels_cache[job.db] = sim.labels
        if progress is not None:
            progress(runs)
        log(
            f"grid {hosts} hosts seed {seed} {hours} h: {res['alerts']} alerts, "
            f"{res['false_alerts']} false, missed {len(res['missed'])} ({res['seconds']} s)"
        )
        del sim
    return runs


_labels_cache: dict[str, pl.DataFrame] = {}


def _pool(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled recall per kind and false-alert rates over runs."""
    kinds: dict[str, list[int]] = {}
    for r in runs:
        for k, v in r["per_kind"].items():
            acc = kinds.setdefault(k, [0, 0])
            acc[0] += v["caught"]
            acc[1] += v["campaigns"]
    return {
        "kinds": kinds,
        "false_rate": float(np.mean([r["false_per_10k_domains_day"] for r in runs])),
        "false": sum(r["false_alerts"] for r in runs),
        "alerts": sum(r["alerts"] for r in runs),
        "top1k": sorted({d for r in runs for d in r["false_on_top1k"]}),
        "hours": sorted({r["hours"] for r in runs}),
        "seeds": sorted({r["seed"] for r in runs}),
    }


def print_grid(runs: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    """Recall per kind (threats), benign anomalies alerted, and false alerts, by size × group."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["group"], r["hosts"]), []).append(r)
    order = sorted(groups, key=lambda g: ({"tuning": 0, "held-out": 1, "demo": 2}[g[0]], g[1]))
    cols = [*THREAT_KINDS, *BENIGN_KINDS]
    short = {k: k.replace("benign_", "b:").replace("_", " ") for k in cols}
    out("### Recall per injected kind (caught/campaigns); benign anomalies alerted (b:)\n")
    out(
        "| seeds | hosts | hours | "
        + " | ".join(short[k] for k in cols)
        + " | alerts | false | false /10k dom/day | top-1k false |"
    )
    out("|---|---:|---:|" + "---:|" * len(cols) + "---:|---:|---:|---|")
    for g in order:
        p = _pool(groups[g])
        cells = []
        for k in cols:
            c, n = p["kinds"].get(k, [0, 0])
            cells.append(f"{c}/{n}" if n else "-")
        label = {"tuning": "1-3", "held-out": "4-5", "demo": "demo 7"}[g[0]]
        label = f"{label} ({','.join(map(str, p['seeds']))})" if g[0] != "demo" else label
        out(
            f"| {label} | {g[1]} | {'/'.join(map(str, p['hours']))} | "
            + " | ".join(cells)
            + f" | {p['alerts']} | {p['false']} | {p['false_rate']:.2f} | "
            + (", ".join(p["top1k"]) or "none")
            + " |"
        )
    out("")
    out("Missed attack campaigns and false-alert detectors per run:\n")
    for r in runs:
        ex = r["false_examples"] if isinstance(r["false_examples"], dict) else {}
        fb = (
            "; ".join(
                f"{d} {n}" + (f" (e.g. {', '.join(ex[d])})" if ex.get(d) else "")
                for d, n in r["false_by_detector"].items()
            )
            or "none"
        )
        out(
            f"- {r['group']} {r['hosts']} hosts seed {r['seed']} ({r['hours']} h): missed "
            f"{', '.join(r['missed']) or 'none'}; false alerts by detector: {fb}"
        )
    out("")
    print_spikes(runs, out)


# ----------------------------------------------------------------------------- DGA


def _train_dga_module() -> Any:
    """``scripts/train_dga.py`` as a module (the shipped model's recipe)."""
    path = REPO / "scripts" / "train_dga.py"
    spec = importlib.util.spec_from_file_location("train_dga", path)
    if spec is None or spec.loader is None:
        raise ImportError(path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["train_dga"] = mod
    spec.loader.exec_module(mod)
    return mod


def dga_lexical(families: Sequence[str]) -> list[dict[str, Any]]:
    """Leave-family-out of the lexical model: refit without ``families``, score each of them.

    Negatives: the benign test split (labels whose split is ``test``) drawn
    from ``../shared/data/domains/benign``.  Also scores the shipped model.
    """
    from sklearn.metrics import roc_auc_score

    from dnsieve.detectors.dga import BenignTables, default_model, model_features
    from dnsieve.lexical import DEFAULT_MAX_LEN

    td = _train_dga_module()
    corpus, _mal, _files = td.load_corpus(DATA)
    p = td.Params()
    y = corpus["y"].to_numpy().astype(np.int64)
    split = corpus["split"].to_numpy().astype(str)
    fam = corpus["family"].to_numpy().astype(str)
    source = corpus["source"].to_numpy().astype(str)
    tables = BenignTables.fit(
        corpus.filter((pl.col("y") == 0) & (pl.col("split") == "fit"))["label"]
    )
    _f, M = model_features(corpus["label"], tables, DEFAULT_MAX_LEN)
    held = np.isin(fam, list(families))
    benign_sources = {f.stem for f in (DATA / "domains" / "benign").iterdir()}
    neg = np.flatnonzero((y == 0) & (split == "test") & np.isin(source, list(benign_sources)))
    train = ((y == 0) & (split != "test")) | ((y == 1) & ~held)
    train = td.cap_per_family(fam, y, train, p.max_per_family, p.seed)
    mu, sd = td.standardise(M, train)
    Z = (M - mu) / sd
    clf = td.fit_sklearn(Z[train], y[train], p.variant, p.seed)
    s_neg = td.sklearn_margin(clf, Z[neg])
    shipped = default_model()
    trained_on = set(
        json.loads((REPO / "src/dnsieve/data/dga_model.json").read_text())["rows"]["families"]
    )
    sh_neg = shipped.predict_proba(corpus["label"].gather(neg))
    rows = []
    for f in families:
        idx = np.flatnonzero(fam == f)
        if idx.size == 0:
            rows.append({"family": f, "n": 0})
            continue
        s_pos = td.sklearn_margin(clf, Z[idx])
        yy = np.r_[np.ones(idx.size), np.zeros(neg.size)]
        sh_pos = shipped.predict_proba(corpus["label"].gather(idx))
        rows.append(
            {
                "family": f,
                "n": int(idx.size),
                "auc": float(roc_auc_score(yy, np.r_[s_pos, s_neg])),
                "tpr_at_fpr_1e-3": td.tpr_at_fpr(s_pos, s_neg, 1e-3),
                "shipped_auc": float(roc_auc_score(yy, np.r_[sh_pos, sh_neg])),
                "shipped_tpr_at_fpr_1e-3": td.tpr_at_fpr(sh_pos, sh_neg, 1e-3),
                "shipped_trained_on_it": f in trained_on,
            }
        )
    log(f"dga lexical: refit without {len(families)} families, {neg.size} benign test names")
    return rows


def dga_host(
    families: Sequence[str], hosts: int, hours: int, seeds: Sequence[int], work: Path
) -> dict[str, Any]:
    """Host-level recall of ``dga_host`` and ``nxdomain`` on bots of held-out real families."""
    lists = read_dga_lists(DATA / "domains" / "dga", families=families)
    per_family: dict[str, dict[str, int]] = {}
    for seed in seeds:
        sim, job = simulate_and_run(
            hosts, seed, hours, work, dga_lists=lists, campaigns={"dga": len(lists)}
        )
        bots = sim.labels.filter(
            (pl.col("kind") == "dga") & (pl.col("detector_family") == "dga_host")
        )
        for row in bots.iter_rows(named=True):
            family = row["description"].split(" DGA")[0]
            acc = per_family.setdefault(family, {"bots": 0, "dga_host": 0, "nxdomain": 0, "any": 0})
            acc["bots"] += 1
            one = pl.DataFrame([row]).select(
                "kind", "entity", "window_start", "window_end", "campaign"
            )
            hit = label_alerts(job.alerts, one).filter(pl.col("truth").is_not_null())
            dets = set(hit["detector"].to_list())
            acc["dga_host"] += int("dga_host" in dets)
            acc["nxdomain"] += int("nxdomain" in dets)
            acc["any"] += int(bool(dets & {"dga_host", "nxdomain"}))
        log(f"dga host-level seed {seed}: {bots.height} bots ({job.seconds:.0f} s)")
    return {"hosts": hosts, "hours": hours, "seeds": list(seeds), "per_family": per_family}


def print_dga(lex: list[dict[str, Any]], host: dict[str, Any], out: Callable[[str], None]) -> None:
    """The two DGA leave-family-out tables."""
    if lex:
        out("### DGA leave-family-out, lexical alone\n")
        out(
            "Refit: the shipped recipe without these families. Shipped: the shipped model "
            "(* = it was trained on the family, so not a held-out figure).\n"
        )
        out(
            "| family | names | AUC (refit) | TPR@FPR 1e-3 (refit) | AUC (shipped) | TPR@1e-3 (shipped) |"
        )
        out("|---|---:|---:|---:|---:|---:|")
        for r in lex:
            if not r["n"]:
                out(
                    f"| {r['family']} | 0 (names under a shared suffix such as ddns.net or "
                    "github.io: no label of their own to score) | - | - | - | - |"
                )
                continue
            mark = "*" if r["shipped_trained_on_it"] else ""
            out(
                f"| {r['family']} | {r['n']} | {r['auc']:.3f} | {r['tpr_at_fpr_1e-3']:.3f} | "
                f"{r['shipped_auc']:.3f}{mark} | {r['shipped_tpr_at_fpr_1e-3']:.3f}{mark} |"
            )
        aucs = [r["auc"] for r in lex if r["n"]]
        tprs = [r["tpr_at_fpr_1e-3"] for r in lex if r["n"]]
        out(f"\nmedian AUC {np.median(aucs):.3f}, median TPR@1e-3 {np.median(tprs):.3f}\n")
    if host:
        out(
            f"### DGA leave-family-out, host level ({host['hosts']} hosts, {host['hours']} h, "
            f"seeds {','.join(map(str, host['seeds']))}; bots drawing real held-out names)\n"
        )
        out("| family | bots | dga_host | nxdomain | either |")
        out("|---|---:|---:|---:|---:|")
        tot = {"bots": 0, "dga_host": 0, "nxdomain": 0, "any": 0}
        for f, a in sorted(host["per_family"].items()):
            for k in tot:
                tot[k] += a[k]
            out(f"| {f} | {a['bots']} | {a['dga_host']} | {a['nxdomain']} | {a['any']} |")
        b = max(tot["bots"], 1)
        out(
            f"| **all** | {tot['bots']} | {tot['dga_host'] / b:.2f} | {tot['nxdomain'] / b:.2f} "
            f"| {tot['any'] / b:.2f} |\n"
        )


# ----------------------------------------------------------------------------- captures


def capture_files() -> list[tuple[str, Path]]:
    """(tool, file) for every Domainator pcapng and the iodine dnsmasq log."""
    files = [
        (f.parent.name, f) for f in sorted((DATA / "tunnel" / "domainator").glob("*/*.pcapng"))
    ]
    dnsmasq = DATA / "tunnel" / "iodine_dnsmasq" / "dnsmasq.log"
    if dnsmasq.exists():
        files.append(("iodine_dnsmasq", dnsmasq))
    return files


def _present_domains(job_lake: Path) -> set[str]:
    from dnsieve.lake import Lake

    lf = Lake(job_lake).scan().select("registered_domain").unique()
    return set(lf.collect()["registered_domain"].drop_nulls().to_list())


def _tool_rows(name: str, tools: set[str], job: JobResult, lake: Path) -> list[dict[str, Any]]:
    present = _present_domains(lake)
    doms = sorted(d for t in tools for d in TOOL_DOMAINS[t] if d in present)
    a = job.alerts.with_columns(pl.col("entity").str.split("|").list.last().alias("_d"))
    rows = []
    for d in doms:
        # the domain's own alerts, or a client alert naming it among its evidence
        hit = a.filter((pl.col("_d") == d) | pl.col("named").list.contains(d))
        rows.append(
            {
                "input": name,
                "domain": d,
                "flagged": hit.height > 0,
                "detectors": sorted(set(hit["detector"].to_list())),
                "p_threat": float(hit["threat_probability"].max()) if hit.height else None,  # type: ignore[arg-type]
                "severity": sorted(set(hit["severity"].to_list())),
            }
        )
    return rows


def captures(work: Path) -> list[dict[str, Any]]:
    """Tool domains flagged per capture and over all captures together."""
    files = capture_files()
    rows: list[dict[str, Any]] = []
    for i, (tool, f) in enumerate(files):
        job = run_pipeline([f], work, f"cap{i}")
        rows += _tool_rows(f.name, {tool}, job, work / f"cap{i}-lake")
    job = run_pipeline([f for _, f in files], work, "cap-all")
    rows += _tool_rows(
        f"all {len(files)} together", {t for t, _ in files}, job, work / "cap-all-lake"
    )
    log(f"captures: {len(files)} files one by one and together")
    return rows


def print_captures(rows: list[dict[str, Any]], out: Callable[[str], None]) -> None:
    """One line per (input, tool domain)."""
    out("### Real C2 captures: tool domains flagged and P(threat) before any verdict\n")
    out("| input | tool domain | flagged | detectors | P(threat) | severity |")
    out("|---|---|---|---|---:|---|")
    for r in rows:
        p = f"{r['p_threat']:.2f}" if r["p_threat"] is not None else "-"
        out(
            f"| {r['input']} | {r['domain']} | {'yes' if r['flagged'] else '**no**'} | "
            f"{', '.join(r['detectors']) or '-'} | {p} | {', '.join(r['severity']) or '-'} |"
        )
    single = [r for r in rows if not r["input"].startswith("all ")]
    together = [r for r in rows if r["input"].startswith("all ")]
    ps = [r["p_threat"] for r in rows if r["p_threat"] is not None]
    shapes = {kind: [r for r in single if kind in r["input"]] for kind in ("handshake", "upload")}
    out(
        "\none at a time, by shape: "
        + "; ".join(
            f"{kind} captures {sum(r['flagged'] for r in rs)}/{len(rs)}"
            for kind, rs in shapes.items()
        )
    )
    out(
        f"\nflagged one at a time: {sum(r['flagged'] for r in single)}/{len(single)}; "
        f"all together: {sum(r['flagged'] for r in together)}/{len(together)}; "
        f"P(threat) >= 0.5: {sum(p >= 0.5 for p in ps)}/{len(ps)} flagged\n"
    )


# ----------------------------------------------------------------------------- feedback


@dataclass
class FeedbackStore:
    """One run's stored alerts for the feedback section, with its ground truth."""

    key: str  # hosts-seed-group
    group: str  # tuning, held-out or demo
    hosts: int
    seed: int
    hours: int
    db: str
    labels: pl.DataFrame


def _store_name(hosts: int, hours: int, seed: int) -> str:
    return f"sim-{hosts}h{hours}-s{seed}"  # as simulate_and_run names its store


def feedback_stores(
    sizes: Sequence[int],
    seeds: Sequence[int],
    hours: int,
    demo_hours: int,
    work: Path,
    grid_dbs: dict[str, str],
    reuse: Path | None = None,
) -> list[FeedbackStore]:
    """The stores the feedback section judges: one per size × seed (and the demo).

    A store comes from this run's grid when it simulated the same size, seed and hours,
    else from ``reuse`` (a ``--keep`` directory of an earlier run: ``sim-<hosts>h<hours>-s<seed>.db``
    and its ``labels.csv``), else it is simulated and run here."""
    todo = [(h, s, "tuning" if s <= 3 else "held-out", hours) for h in sizes for s in seeds]
    if demo_hours > 0:
        todo.append((500, 7, "demo", demo_hours))
    out = []
    for hosts, seed, group, hrs in todo:
        name = _store_name(hosts, hrs, seed)
        db = grid_dbs.get(f"{hosts}-{seed}-{group}")
        labels = _labels_cache.get(db) if db else None
        if db is None or labels is None or not db.endswith(f"/{name}.db"):
            db, labels = None, None
            for root in [r for r in (reuse, work) if r is not None]:
                if (root / f"{name}.db").exists() and (root / name / "labels.csv").exists():
                    db = f"sqlite:///{(root / f'{name}.db').absolute()}"
                    labels = pl.read_csv(root / name / "labels.csv")
                    break
        if db is None or labels is None:
            t0 = time.perf_counter()
            sim, job = simulate_and_run(hosts, seed, hrs, work)
            db, labels = job.db, sim.labels
            log(
                f"feedback store {name}: {job.alerts.height} alerts ({time.perf_counter() - t0:.0f} s)"
            )
            del sim
        out.append(FeedbackStore(f"{hosts}-{seed}-{group}", group, hosts, seed, hrs, db, labels))
    return out


def _open_queue(store: Any) -> tuple[list[Any], np.ndarray]:
    from dnsieve.alerts.base import OPEN_STATUSES

    alerts = store.list_alerts(status=list(OPEN_STATUSES), include_suppressed=True)
    p = np.array(
        [a.threat_probability if a.threat_probability is not None else 0.0 for a in alerts]
    )
    return alerts, p


def _precision(store: Any, truth: dict[str, int]) -> tuple[float | None, int, int]:
    """precision@k of the open queue by P(threat); (value, k used, open alerts)."""
    from dnsieve.threat.metrics import precision_at_k

    alerts, p = _open_queue(store)
    y = np.array([truth.get(a.id, 0) for a in alerts], dtype=bool)
    k = min(K, len(alerts))
    return (precision_at_k(p, y, k) if k else None), k, len(alerts)


def _pick(store: Any, strategy: str, rng: np.random.Generator) -> Any:
    if strategy == "review":
        from dnsieve.web.queue import review_queue

        got = review_queue(store, k=1)
        return got[0][0] if got else None
    alerts, p = _open_queue(store)
    if not alerts:
        return None
    if strategy == "top":
        return alerts[int(np.lexsort((np.arange(p.size), -p))[0])]
    return alerts[int(rng.integers(len(alerts)))]


def feedback_curve(
    db: str, truth: dict[str, int], strategy: str, seed: int, work: Path
) -> list[dict[str, Any]]:
    """precision@k of the undecided queue after each budget, verdicts chosen by ``strategy``.

    ``review-coin`` is the control for learning: the review queue's choices, answered by a
    coin that says "threat" as often as the truth does overall, so any gain of ``review``
    over it comes from what the verdicts say, not from which alerts left the queue.
    Besides precision@k, each point counts the threats left undecided (``threats_open``):
    precision@k can only reach 1 when at least k of them are left.
    """
    from dnsieve.alerts.feedback import apply_verdict
    from dnsieve.alerts.store import AlertStore

    src = Path(db.removeprefix("sqlite:///"))
    copy = work / f"fb-{src.stem}-{strategy}-{seed}.db"
    shutil.copyfile(src, copy)
    rng = np.random.default_rng(seed)
    rate = sum(truth.values()) / max(len(truth), 1)
    out = []
    given = 0
    with AlertStore.open(f"sqlite:///{copy}") as store:
        for budget in BUDGETS:
            while given < budget:
                a = _pick(store, strategy.removesuffix("-coin"), rng)
                if a is None:
                    break
                said = rng.random() < rate if strategy.endswith("-coin") else truth.get(a.id, 0)
                label = "threat" if said else "benign"
                apply_verdict(store, a.id, label, actor="simulated-analyst")
                given += 1
            prec, k, n_open = _precision(store, truth)
            left = sum(truth.get(a.id, 0) for a in _open_queue(store)[0])
            out.append(
                {"verdicts": given, "precision": prec, "k": k, "open": n_open, "threats_open": left}
            )
    copy.unlink(missing_ok=True)
    return out


def _mean_curve(curves: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Point-wise mean of repeated curves (precision and threats left; k of the first)."""
    out = []
    for i in range(len(BUDGETS)):
        vals = [c[i]["precision"] for c in curves if c[i]["precision"] is not None]
        out.append(
            {
                "verdicts": curves[0][i]["verdicts"],
                "precision": float(np.mean(vals)) if vals else None,
                "k": curves[0][i]["k"],
                "open": curves[0][i]["open"],
                "threats_open": float(np.mean([c[i].get("threats_open", 0) for c in curves])),
                "sd": float(np.std(vals)) if len(vals) > 1 else None,
            }
        )
    return out


def feedback(stores: Sequence[FeedbackStore], repeats: int, work: Path) -> list[dict[str, Any]]:
    """Feedback curves on each store: truthful verdicts chosen by the review queue and from
    the top, and the controls (random alerts, coin answers), means of ``repeats``."""
    from dnsieve.alerts.store import AlertStore

    res = []
    for fs in stores:
        t0 = time.perf_counter()
        with AlertStore.open(fs.db) as store:
            frame = _alerts_frame(store.list_alerts(include_suppressed=True))
        m = match_campaigns(frame, fs.labels)
        truth = {
            k: int(v)
            for k, v in zip(
                m["id"].to_list(), (m["threat"] == 1).fill_null(False).to_list(), strict=True
            )
        }
        n_threat = sum(truth.values())
        row: dict[str, Any] = {
            "run": fs.key,
            "group": fs.group,
            "hosts": fs.hosts,
            "seed": fs.seed,
            "hours": fs.hours,
            "alerts": len(truth),
            "threat_alerts": n_threat,
            "benign_anomaly_alerts": int((m["threat"] == 0).sum()),
            "unlabelled_alerts": int(m["campaign"].is_null().sum()),
        }
        row["review"] = feedback_curve(fs.db, truth, "review", 0, work)
        row["top"] = feedback_curve(fs.db, truth, "top", 0, work)
        for strat in ("random", "review-coin"):
            rnd = [feedback_curve(fs.db, truth, strat, 100 + r, work) for r in range(repeats)]
            row[strat] = _mean_curve(rnd)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        res.append(row)
        log(
            f"feedback {fs.key} ({fs.hours} h): {row['alerts']} alerts, {n_threat} threats; "
            f"review N=25 {row['review'][1]['precision']}, random {row['random'][1]['precision']} "
            f"({row['seconds']} s)"
        )
    return res


_STRATEGIES = ("review", "review-coin", "top", "random")


def print_feedback(rows: list[dict[str, Any]], repeats: int, out: Callable[[str], None]) -> None:
    """precision@k before and after verdicts: per group (means over runs), then per run."""
    out(f"### Precision@{K} of the undecided queue after N truthful verdicts\n")
    out(
        "Verdicts chosen by the review queue, from the top of the queue, or at random; "
        "review-coin: the review queue's choices answered by a coin with the true threat "
        f"rate (the control for learning). Random and coin rows are means of {repeats}; "
        f"k in brackets when fewer than {K} alerts are open; 'left' is the threats still "
        "undecided (precision@k cannot exceed left/k).\n"
    )
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r.get("group", "?"), r.get("hosts", 0)), []).append(r)
    out("Means over runs (tuning seeds 1-3, held-out seeds 4-5, the demo apart):\n")
    out(
        "| group | hosts | runs | alerts (threat / benign anomaly) | chosen by | "
        + " | ".join(f"N={b}" for b in BUDGETS)
        + " |"
    )
    out("|---|---:|---:|---|---|" + "---:|" * len(BUDGETS))
    order = {"tuning": 0, "held-out": 1, "demo": 2}
    for (group, hosts), rs in sorted(
        groups.items(), key=lambda kv: (order.get(kv[0][0], 3), kv[0][1])
    ):
        mix = (
            f"{np.mean([r['alerts'] for r in rs]):.0f} ({np.mean([r['threat_alerts'] for r in rs]):.0f}"
            f" / {np.mean([r['benign_anomaly_alerts'] for r in rs]):.0f})"
        )
        for strat in _STRATEGIES:
            if not all(strat in r for r in rs):
                continue
            cells = []
            for i in range(len(BUDGETS)):
                vals = [
                    r[strat][i]["precision"] for r in rs if r[strat][i]["precision"] is not None
                ]
                ks = [r[strat][i]["k"] for r in rs]
                v = "-" if not vals else f"{np.mean(vals):.2f}"
                cells.append(v + (f" (k={min(ks)}-{max(ks)})" if min(ks) < K else ""))
            out(f"| {group} | {hosts} | {len(rs)} | {mix} | {strat} | " + " | ".join(cells) + " |")
    out("\nPer run:\n")
    out(
        "| run | alerts (threat / benign anomaly / unlabelled) | chosen by | "
        + " | ".join(f"N={b}" for b in BUDGETS)
        + " |"
    )
    out("|---|---|---|" + "---:|" * len(BUDGETS))
    for r in rows:
        mix = f"{r['alerts']} ({r['threat_alerts']} / {r['benign_anomaly_alerts']} / {r['unlabelled_alerts']})"
        name = r["run"] + (f" ({r['hours']} h)" if "hours" in r else "")
        for strat in _STRATEGIES:
            if strat not in r:  # a report written before the control existed
                continue
            cells = []
            for b, c in zip(BUDGETS, r[strat], strict=True):
                v = "-" if c["precision"] is None else f"{c['precision']:.2f}"
                note = [f"k={c['k']}"] if c["k"] < K else []
                if "threats_open" in c and c["threats_open"] < c["k"]:
                    note.append(f"left {c['threats_open']:.0f}")
                if c["verdicts"] < b:
                    note.append(f"only {c['verdicts']} alerts to judge")
                cells.append(v + (f" ({'; '.join(note)})" if note else ""))
            out(f"| {name} | {mix} | {strat} | " + " | ".join(cells) + " |")
    out("")


# ----------------------------------------------------------------------------- main


def print_reports(paths: Sequence[Path], out: Callable[[str], None]) -> int:
    """Print the tables of one or more ``--json`` files (e.g. sections run apart), merged."""
    merged: dict[str, Any] = {"grid": [], "feedback": [], "captures": []}
    repeats = 1
    for path in paths:
        rep = json.loads(path.read_text())
        for key in ("grid", "feedback", "captures"):
            merged[key] += rep.get(key) or []
        if rep.get("dga"):
            merged["dga"] = rep["dga"]
        if rep.get("feedback"):
            repeats = rep.get("args", {}).get("repeats", 1)
    if merged["grid"]:
        print_grid(merged["grid"], out)
    if merged.get("dga"):
        print_dga(merged["dga"]["lexical"], merged["dga"]["host"], out)
    if merged["captures"]:
        print_captures(merged["captures"], out)
    if merged["feedback"]:
        print_feedback(merged["feedback"], repeats, out)
    return 0


def _hours_for(default: int, overrides: list[str]) -> Callable[[int], int]:
    table = {}
    for item in overrides:
        size, _, h = item.partition("=")
        table[int(size)] = int(h)
    return lambda hosts: table.get(hosts, default)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small settings for iterating")
    ap.add_argument("--seeds", default="1,2,3,4,5")
    ap.add_argument("--sizes", default="200,500,2000,8000")
    ap.add_argument("--hours", type=int, default=168, help="simulated hours per run")
    ap.add_argument(
        "--hours-for",
        action="append",
        default=[],
        metavar="HOSTS=H",
        help="fewer hours for a size (repeatable), e.g. 8000=24",
    )
    ap.add_argument("--demo-hours", type=int, default=168, help="0: no demo run")
    ap.add_argument("--sections", default="grid,dga,captures,feedback")
    ap.add_argument("--families", default=",".join(HELD_OUT_FAMILIES))
    ap.add_argument("--dga-hosts", type=int, default=500)
    ap.add_argument("--dga-hours", type=int, default=96)
    ap.add_argument("--dga-seeds", default="4")
    ap.add_argument("--repeats", type=int, default=3, help="random-verdict repeats")
    ap.add_argument(
        "--feedback-sizes", default="500,1000", help="host counts of the feedback section's runs"
    )
    ap.add_argument("--feedback-seeds", default=None, help="default: --seeds")
    ap.add_argument(
        "--feedback-hours", type=int, default=168, help="simulated hours of each feedback run"
    )
    ap.add_argument(
        "--stores",
        type=Path,
        default=None,
        help="reuse the stores of an earlier --keep directory for the feedback section",
    )
    ap.add_argument("--json", type=Path, default=None, help="write every figure here")
    ap.add_argument("--keep", type=Path, default=None, help="work directory to keep")
    ap.add_argument(
        "--report",
        type=Path,
        nargs="+",
        default=None,
        help="print the tables of earlier --json files (merged) instead of running",
    )
    a = ap.parse_args(argv)
    if a.report:
        return print_reports(a.report, print)
    if a.quick:
        a.seeds, a.sizes, a.hours, a.demo_hours = "1,4", "200", 48, 48
        a.dga_hours, a.repeats = 48, 1
        a.feedback_sizes, a.feedback_hours = "200", 48
    seeds = [int(s) for s in a.seeds.split(",") if s]
    sizes = [int(s) for s in a.sizes.split(",") if s]
    sections = set(a.sections.split(","))
    families = [f for f in a.families.split(",") if f]
    hours_for = _hours_for(a.hours, a.hours_for)
    report: dict[str, Any] = {
        "started": datetime.now().isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
    }
    lines: list[str] = []

    def out(s: str) -> None:
        lines.append(s)
        print(s, flush=True)

    t0 = time.perf_counter()
    tmp = tempfile.TemporaryDirectory(prefix="dnsieve-quality-")
    work = a.keep or Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    out(f"# dnsieve quality scoreboard ({report['started']})\n")
    shortened = {s: hours_for(s) for s in sizes if hours_for(s) != a.hours}
    out(
        f"sizes {sizes}, seeds {seeds} (1-3 tuning, 4-5 held out), {a.hours} h per run"
        + (
            "; fewer hours for "
            + ", ".join(f"{s} hosts ({h} h)" for s, h in shortened.items())
            + " to fit the time budget"
            if shortened
            else ""
        )
        + (f"; demo: 500 hosts, seed 7, {a.demo_hours} h\n" if a.demo_hours else "\n")
    )
    dbs: dict[str, str] = {}
    try:
        if "grid" in sections:

            def save(runs: list[dict[str, Any]]) -> None:
                if a.json:
                    a.json.write_text(json.dumps({**report, "grid": runs}, default=str) + "\n")

            runs = grid(sizes, seeds, hours_for, a.demo_hours, work, dbs, save)
            report["grid"] = runs
            print_grid(runs, out)
        if "dga" in sections:
            lex = dga_lexical(families)
            host = dga_host(
                families, a.dga_hosts, a.dga_hours, [int(s) for s in a.dga_seeds.split(",")], work
            )
            report["dga"] = {"families": families, "lexical": lex, "host": host}
            print_dga(lex, host, out)
        if "captures" in sections:
            rows = captures(work)
            report["captures"] = rows
            print_captures(rows, out)
        if "feedback" in sections:
            fb_seeds = a.feedback_seeds.split(",") if a.feedback_seeds else seeds
            stores = feedback_stores(
                [int(s) for s in a.feedback_sizes.split(",") if s],
                [int(s) for s in fb_seeds if str(s)],
                a.feedback_hours,
                a.demo_hours,
                work,
                dbs,
                a.stores,
            )
            fb = feedback(stores, a.repeats, work)
            report["feedback"] = fb
            print_feedback(fb, a.repeats, out)
    finally:
        if a.keep is None:
            tmp.cleanup()
    report["seconds"] = round(time.perf_counter() - t0, 1)
    out(f"total {report['seconds']} s wall")
    if a.json:
        a.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
