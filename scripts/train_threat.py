#!/usr/bin/env python
"""Train (and evaluate) the shipped initial threat model from real and simulated data.

    .venv/bin/python scripts/train_threat.py                     # train, evaluate, write the model
    .venv/bin/python scripts/train_threat.py --no-save --cache /tmp/tt   # evaluate only, keep sets

Writes ``src/dnsieve/data/threat_model.npz`` (NumPy arrays, loaded with
``allow_pickle=False``; see :mod:`dnsieve.threat.initial`) and
``threat_model.json`` (the training record: data files with sha256, held-out
groups, metrics, reliability table).  Reads ``--data`` (default
``../shared/data``) in place; nothing from it is copied into the repository.

**Unit of learning.**  An anomaly: one candidate row of the detection pipeline
(:func:`dnsieve.pipeline.detect`, every detector, calibrated) with its feature
vector (:func:`dnsieve.threat.features.anomaly_features`, with the traffic
context of its lake).  Rows are labelled threat (1) or benign (0) by the
entity and window of the campaign they belong to; unlabelled rows are benign
background.

**Data** (each row keeps its *source* and *group*, the unit of hold-out):

* ``capture``: the Domainator recordings of real DNS C2 tools
  (``tunnel/domainator``: dnscat2, iodine, RogueRobin), each capture through
  the pipeline on its own.  The tools' C2 domains (and the host that queried
  them) are threats; the Windows background in the same captures is benign.
* ``sim``: ``dnsieve simulate`` weeks (``--clients`` hosts, ``--hours``) with
  their own campaigns (``threat`` column of labels.csv: attacks 1, ``benign_*``
  anomalies 0), *plus* injected real names on real hosts of the simulation:
  tunnel sessions replaying real tool query names (netrack dns2tcp/dnscapy/
  iodine, Bubnov ``tuns`` and iodine, DNSExfiltrator, the Korving iodine
  capture), DGA bots resolving real family lists (``domains/dga``; mostly
  NXDOMAIN), phishing/RAT-style campaigns (several hosts start to resolve a
  real ThreatFox domain within hours), and benign look-alikes of campaigns:
  SaaS adoptions (dozens of hosts start using a real benign domain from the
  OpenDNS random list and keep using it) and update bursts on popular
  (Tranco-like top list) domains.

**Held out** (never in training; reported apart):

* tools ``iodine`` (every source of it) and ``roguerobin``: real C2 from tools
  the model was not trained on;
* a third of the ThreatFox malware families and of the DGA families (by a
  stable hash of the family name), and DGA domains from the DGA model's own
  test split only;
* a fifth of the benign domains (stable hash);
* simulator seeds ``--eval-seeds`` (training uses ``--train-seeds``).

**Model.**  Logistic regression (scikit-learn, L2, ``C`` chosen by grouped
cross-validation on the training rows) on standardised features.  Each
(source, group, label) cell gets equal total weight, so ten thousand
background rows of one simulation do not outvote one real C2 capture, and the
threat and benign sides of each source weigh the same.  Probabilities are then
Platt-recalibrated on the training rows' out-of-fold predictions.  The Brier
score and a reliability table are reported on the held-out real data.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
from scipy import optimize
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits

from dnsieve.lake import Lake
from dnsieve.pipeline import detect
from dnsieve.threat.features import DETECTORS, FEATURE_NAMES, anomaly_features, entity_context
from dnsieve.threat.initial import DEFAULT_PATH, detector_mask, grouped_logit, save_initial

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
F = npt.NDArray[np.float64]

#: The C2 domains of each Domainator tool (read off the captures: every name the
#: tool's client sends; RogueRobin's eight are the DarkHydrus domains).
C2_DOMAINS: dict[str, tuple[str, ...]] = {
    "dnscat": ("hacker-dnscat.com",),
    "iodine": ("hacker-iodine.com",),
    "roguerobin-powershell": (
        "anyconnect.stream",
        "bigip.stream",
        "fortiweb.download",
        "kaspersky.science",
        "microtik.stream",
        "owa365.bid",
        "symanteclive.download",
        "windowsdefender.win",
    ),
}
TOOL_OF_DIR = {"dnscat": "dnscat2", "iodine": "iodine", "roguerobin-powershell": "roguerobin"}
HELD_OUT_TOOLS = ("iodine", "roguerobin")
HOLDOUT_SHARE = 33  # per cent of ThreatFox / DGA families held out
BENIGN_HOLDOUT = 20  # per cent of benign domains held out


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bucket(text: str) -> int:
    """A stable hash bucket 0-99 (the DGA trainer's split function)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") % 100


def held_out_family(family: str) -> bool:
    return bucket("family:" + family.lower()) < HOLDOUT_SHARE


# ------------------------------------------------------------------ data set
@dataclass
class Rows:
    """Labelled anomaly feature rows with their bookkeeping."""

    X: F
    y: npt.NDArray[np.int8]
    source: list[str]
    group: list[str]
    split: list[str]
    detector: list[str]
    entity: list[str]
    alert: list[bool]

    @classmethod
    def empty(cls) -> Rows:
        return cls(np.zeros((0, len(FEATURE_NAMES))), np.zeros(0, np.int8), [], [], [], [], [], [])

    def __add__(self, o: Rows) -> Rows:
        return Rows(
            np.vstack([self.X, o.X]),
            np.concatenate([self.y, o.y]),
            self.source + o.source,
            self.group + o.group,
            self.split + o.split,
            self.detector + o.detector,
            self.entity + o.entity,
            self.alert + o.alert,
        )

    def take(self, mask: npt.NDArray[np.bool_]) -> Rows:
        idx = np.flatnonzero(mask)
        return Rows(
            self.X[idx],
            self.y[idx],
            [self.source[i] for i in idx],
            [self.group[i] for i in idx],
            [self.split[i] for i in idx],
            [self.detector[i] for i in idx],
            [self.entity[i] for i in idx],
            [self.alert[i] for i in idx],
        )

    def save(self, path: Path) -> None:
        def arr(v: list[str]) -> npt.NDArray[np.str_]:
            return np.array(v, dtype=np.str_)

        np.savez_compressed(
            path,
            X=self.X,
            y=self.y,
            alert=np.array(self.alert),
            source=arr(self.source),
            group=arr(self.group),
            split=arr(self.split),
            detector=arr(self.detector),
            entity=arr(self.entity),
        )

    @classmethod
    def load(cls, path: Path) -> Rows:
        with np.load(path, allow_pickle=False) as z:
            t = {
                k: [str(v) for v in z[k]]
                for k in ("source", "group", "split", "detector", "entity")
            }
            return cls(
                z["X"],
                z["y"],
                t["source"],
                t["group"],
                t["split"],
                t["detector"],
                t["entity"],
                [bool(v) for v in z["alert"]],
            )


def _detect(lake: Lake) -> pl.DataFrame:
    span = lake.time_range()
    until = span[1] + timedelta(seconds=1) if span else None
    return detect(lake, until=until).anomalies


def match_labels(
    anomalies: pl.DataFrame, labels: pl.DataFrame
) -> tuple[npt.NDArray[np.int8], list[str]]:
    """(label, group) of each anomaly: -1 and "background" when no label row matches.

    A ``domain`` or ``client`` anomaly matches a label row of its entity; a
    ``client|domain`` anomaly matches by its *domain* part (the infected host's
    look-ups of popular sites are not the campaign).  The anomaly's window must
    overlap the label's.  Threat wins over benign.
    """
    n = anomalies.height
    y = np.full(n, -1, dtype=np.int8)
    group = ["background"] * n
    if n == 0 or labels.height == 0:
        return y, group
    ent = pl.col("entity").cast(pl.String).str.to_lowercase()
    a = anomalies.select(
        pl.int_range(n).alias("_i"),
        pl.when(pl.col("entity_type") == "client_domain")
        .then(ent.str.split("|").list.last())
        .otherwise(ent)
        .alias("_key"),
        pl.col("window_start").alias("_aws"),
        pl.col("window_end").alias("_awe"),
    )
    lab = labels.select(
        pl.col("entity").str.to_lowercase().alias("_key"),
        pl.col("window_start").cast(pl.Datetime("us", "UTC")).alias("_ls"),
        pl.col("window_end").cast(pl.Datetime("us", "UTC")).alias("_le"),
        pl.col("threat").cast(pl.Int8).alias("_y"),
        pl.col("group").alias("_g"),
    )
    hit = (
        a.join(lab, on="_key", how="inner")
        .filter((pl.col("_aws") < pl.col("_le")) & (pl.col("_awe") > pl.col("_ls")))
        .sort(["_i", "_y"], descending=[False, True])
        .group_by("_i", maintain_order=True)
        .first()
    )
    for i, yy, g in hit.select("_i", "_y", "_g").iter_rows():
        y[i] = yy
        group[i] = g
    return y, group


def _rows(
    lake: Lake,
    anomalies: pl.DataFrame,
    labels: pl.DataFrame,
    source: str,
    split: str,
    background_cap: int,
    rng: np.random.Generator,
) -> Rows:
    """Features and labels of ``anomalies``; ``labels`` has entity, window_start/end, threat,
    group.  Unlabelled rows are background (benign), subsampled to ``background_cap``."""
    if anomalies.height == 0:
        return Rows.empty()
    n = anomalies.height
    y, group = match_labels(anomalies, labels)
    bg = np.flatnonzero(y < 0)
    if bg.size > background_cap:
        # keep every strong background candidate (the hard negatives) and a spread of the rest
        score = anomalies["global_p"].fill_null(1.0).to_numpy()
        order = bg[np.argsort(score[bg], kind="stable")]
        strong = order[: background_cap // 2]
        rest = rng.choice(order[background_cap // 2 :], background_cap - strong.size, replace=False)
        drop = np.setdiff1d(bg, np.concatenate([strong, rest]))
    else:
        drop = np.zeros(0, dtype=np.int64)
    keep = np.ones(n, dtype=bool)
    keep[drop] = False
    y[y < 0] = 0
    X = anomaly_features(anomalies, context=entity_context(lake.scan()))
    idx = np.flatnonzero(keep)
    det = anomalies["detector"].to_list()
    ent = anomalies["entity"].to_list()
    alert = anomalies["alert"].fill_null(False).to_list() if "alert" in anomalies else [False] * n
    return Rows(
        X[idx],
        y[idx],
        [source] * idx.size,
        [group[i] for i in idx],
        [split] * idx.size,
        [det[i] for i in idx],
        [ent[i] for i in idx],
        [bool(alert[i]) for i in idx],
    )


# ---------------------------------------------------------- real captures
def capture_rows(data: Path, rng: np.random.Generator, log: Callable[[str], None]) -> Rows:
    """Every Domainator capture through the pipeline on its own."""
    out = Rows.empty()
    root = data / "tunnel" / "domainator"
    for d, doms in C2_DOMAINS.items():
        tool = TOOL_OF_DIR[d]
        split = "eval" if tool in HELD_OUT_TOOLS else "train"
        for pcap in sorted((root / d).glob("*.pcapng")):
            with tempfile.TemporaryDirectory(prefix="dnsieve-tt-") as tmp:
                lake = Lake(Path(tmp) / "lake")
                lake.ingest_files([pcap], "auto", {})
                anomalies = _detect(lake)
                clients = (
                    lake.scan()
                    .filter(pl.col("registered_domain").is_in(list(doms)))
                    .select(pl.col("src_ip").unique())
                    .collect()["src_ip"]
                    .to_list()
                )
                far = (datetime(1970, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
                labels = pl.DataFrame(
                    {
                        "entity": [*doms, *clients],
                        "window_start": [far[0]] * (len(doms) + len(clients)),
                        "window_end": [far[1]] * (len(doms) + len(clients)),
                        "threat": [1] * (len(doms) + len(clients)),
                        "group": [f"tool:{tool}"] * (len(doms) + len(clients)),
                    }
                )
                r = _rows(lake, anomalies, labels, "capture", split, 200, rng)
                r.group = [g if g != "background" else f"capture-bg:{tool}" for g in r.group]
                log(
                    f"  capture {pcap.name}: {anomalies.height} candidates, "
                    f"{int(r.y.sum())} threat rows ({split})"
                )
                out = out + r
    return out


# ------------------------------------------------------------- injections
@dataclass
class Sources:
    """Real names to inject, by split."""

    tunnels: dict[str, list[str]]  # tool -> full query names
    dga: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # split -> family -> names
    threatfox: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    benign_rare: dict[str, list[str]] = field(default_factory=dict)  # split -> domains
    benign_popular: dict[str, list[str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def _clean(name: str) -> str:
    name = name.strip().strip('"').rstrip(".").lower()
    return "".join(c for c in name if 32 < ord(c) < 127 and c not in "\t\\,\"'")


def load_sources(data: Path) -> Sources:
    """Read the name lists (in place) and split them into train and eval."""
    files: list[Path] = []
    tunnels: dict[str, list[str]] = {}
    net = data / "tunnel" / "netrack"
    for tool in ("dns2tcp", "dnscapy", "iodine"):
        f = net / tool / "names.csv"
        files.append(f)
        names = pl.read_csv(f, schema_overrides={"qname": pl.String})["qname"].to_list()
        tunnels[f"{tool}:netrack"] = [n for n in map(_clean, names) if n.count(".") >= 2]
    bub = data / "tunnel" / "bubnov2019" / "dev.csv"
    files.append(bub)
    b = pl.read_csv(bub, schema_overrides={"input": pl.String})
    for tool, dom in (("tuns", "t.updates-cdn.net"), ("iodine", "i.mailrelay-eu.org")):
        toks = [_clean(t) for t in b.filter(pl.col("class") == tool)["input"].to_list()]
        tunnels[f"{tool}:bubnov"] = [f"{t}.{dom}" for t in toks if t][:3000]
    exf = sorted((data / "tunnel" / "dnsexfiltrator" / "FileSet2_PositiveTestFiles").glob("*.txt"))
    names = []
    for f in exf:
        files.append(f)
        for line in f.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            parts = line.split(",", 1)
            if len(parts) == 2:
                names.append(_clean(parts[1]))
    tunnels["dnsexfiltrator:fileset2"] = [n for n in names if n.count(".") >= 2]
    kor = data / "tunnel" / "iodine_dnsmasq" / "tshark.capture.txt"
    files.append(kor)
    kn = [_clean(x) for x in kor.read_text(errors="replace").splitlines()]
    tunnels["iodine:korving"] = [n for n in kn if n.count(".") >= 2]

    src = Sources(tunnels=tunnels)
    dga_parts = []
    for f in sorted((data / "domains" / "dga").glob("*.csv")):
        files.append(f)
        dga_parts.append(
            pl.read_csv(f, schema_overrides={"family": pl.String, "domain": pl.String})
        )
    dga = pl.concat(dga_parts).with_columns(
        pl.col("family").str.to_lowercase().replace({"new_goz": "newgoz"})
    )
    for (fam,), g in dga.group_by("family"):
        split = "eval" if held_out_family(str(fam)) else "train"
        doms = [_clean(d) for d in g["domain"].to_list()]
        if split == "eval":  # the DGA model's own test split only
            doms = [d for d in doms if bucket(d.split(".")[0]) >= 80]
        if doms:
            src.dga.setdefault(split, {})[str(fam)] = sorted(set(doms))
    tf_parts = []
    for name in ("train.csv", "dev.csv"):
        f = data / "domains" / "threatfox" / name
        files.append(f)
        tf_parts.append(pl.read_csv(f, schema_overrides={"input": pl.String, "class": pl.String}))
    tf = pl.concat(tf_parts).filter(pl.col("class") != "legit")
    for (fam,), g in tf.group_by("class"):
        split = "eval" if held_out_family(str(fam)) else "train"
        doms = sorted({_clean(d) for d in g["input"].to_list() if d and "." in d})
        src.threatfox.setdefault(split, {})[str(fam)] = doms
    ben = data / "domains" / "benign"
    rare_f = ben / "opendns-random-domains.txt"
    top_f = ben / "tranco_like_top50k_2025-02_kmikholap.csv"
    files += [rare_f, top_f]
    rare = [_clean(x) for x in rare_f.read_text().splitlines() if x.strip()]
    top = pl.read_csv(top_f, has_header=False, new_columns=["rank", "domain"])
    popular = [_clean(d) for d in top.filter(pl.col("rank") <= 5000)["domain"].to_list()]
    for split, sel in (("train", lambda d: bucket(d) >= BENIGN_HOLDOUT), ("eval", None)):
        pick = sel or (lambda d: bucket(d) < BENIGN_HOLDOUT)
        src.benign_rare[split] = [d for d in rare if d.count(".") >= 1 and pick(d)]
        src.benign_popular[split] = [d for d in popular if pick(d)]
    src.files = files
    return src


_TUNNEL_QTYPES = {
    "dns2tcp": ["TXT"],
    "dnscapy": ["TXT", "CNAME"],
    "iodine": ["NULL", "TXT", "CNAME", "MX"],
    "tuns": ["CNAME"],
    "dnsexfiltrator": ["TXT"],
}


def _registered(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[-2:])


class Injector:
    """Builds injected events on a simulation's hosts, with their labels."""

    def __init__(self, sim: Any, rng: np.random.Generator) -> None:
        self.sim = sim
        self.rng = rng
        ev = sim.events
        self.schema = ev.schema
        self.t0 = ev["ts"].min()
        self.t1 = ev["ts"].max()
        hosts = ev.group_by("src_ip").len().filter(pl.col("len") >= 50)["src_ip"].sort()
        self.hosts = hosts.to_list()
        self.rows: list[dict[str, Any]] = []
        self.labels: list[dict[str, Any]] = []
        self.resolver = ev["dst_ip"].drop_nulls().mode()[0]

    def _when(self, lo_frac: float = 0.3, hi_frac: float = 0.85) -> datetime:
        span = (self.t1 - self.t0).total_seconds()
        return self.t0 + timedelta(seconds=float(self.rng.uniform(lo_frac, hi_frac)) * span)

    def _host(self, k: int = 1) -> list[str]:
        return [str(h) for h in self.rng.choice(self.hosts, size=k, replace=False)]

    def _emit(
        self,
        client: str,
        names: Iterable[str],
        times: Iterable[datetime],
        qtypes: list[str],
        nx_share: float,
    ) -> None:
        for q, t in zip(names, times, strict=False):
            qt = qtypes[int(self.rng.integers(len(qtypes)))]
            nx = bool(self.rng.random() < nx_share)
            ip = f"203.0.{int(self.rng.integers(0, 255))}.{int(self.rng.integers(1, 255))}"
            self.rows.append(
                {
                    "ts": t,
                    "src_ip": client,
                    "dst_ip": self.resolver,
                    "qname": q,
                    "qtype": qt,
                    "rcode": "NXDOMAIN" if nx else "NOERROR",
                    "answers": [] if nx else ([ip] if qt == "A" else ["c2VjcmV0"]),
                    "ttls": [] if nx else [60.0],
                    "registered_domain": _registered(q),
                }
            )

    def _label(
        self, entities: list[str], start: datetime, end: datetime, threat: int, group: str
    ) -> None:
        for e in entities:
            self.labels.append(
                {
                    "entity": e,
                    "window_start": start - timedelta(hours=1),
                    "window_end": end + timedelta(hours=1),
                    "threat": threat,
                    "group": group,
                }
            )

    def tunnel(self, tool: str, names: list[str]) -> None:
        client = self._host()[0]
        # from low-and-slow (20 queries over hours) to bulk transfer (900 in half an hour)
        n = min(len(names), int(np.exp(self.rng.uniform(np.log(20), np.log(900)))))
        start = self._when()
        dur = float(np.exp(self.rng.uniform(np.log(0.5), np.log(6.0)))) * 3600
        offs = np.sort(self.rng.uniform(0, dur, n))
        times = [start + timedelta(seconds=float(o)) for o in offs]
        base = tool.split(":")[0]
        self._emit(client, names[:n], times, _TUNNEL_QTYPES.get(base, ["TXT"]), 0.0)
        doms = sorted({_registered(q) for q in names[:n]})
        self._label([client, *doms], start, times[-1], 1, f"tool:{base}")

    def dga_bot(self, family: str, names: list[str]) -> None:
        client = self._host()[0]
        n = min(len(names), int(self.rng.integers(40, 250)))
        pick = [names[int(i)] for i in self.rng.choice(len(names), n, replace=False)]
        start = self._when()
        dur = float(self.rng.uniform(0.2, 2.0)) * 3600
        offs = np.sort(self.rng.uniform(0, dur, n))
        self._emit(client, pick, [start + timedelta(seconds=float(o)) for o in offs], ["A"], 0.92)
        end = start + timedelta(seconds=dur)
        self._label([client, *pick], start, end, 1, f"dga:{family}")

    def campaign(self, domain: str, threat: int, group: str, hosts: int, keep: bool) -> None:
        """Several hosts start to resolve ``domain`` within hours (and keep using it if ``keep``)."""
        clients = self._host(hosts)
        start = self._when(0.35, 0.8)
        end = self.t1 if keep else start + timedelta(hours=float(self.rng.uniform(2, 8)))
        sub = ["", "www.", "cdn.", "api."] if keep else ["", "www."]
        for c in clients:
            first = start + timedelta(seconds=float(self.rng.uniform(0, 3 * 3600)))
            span = max((end - first).total_seconds(), 60.0)
            k = int(self.rng.integers(5, 40)) if keep else int(self.rng.integers(2, 12))
            offs = np.sort(self.rng.uniform(0, span, k))
            names = [sub[int(self.rng.integers(len(sub)))] + domain for _ in range(k)]
            self._emit(c, names, [first + timedelta(seconds=float(o)) for o in offs], ["A"], 0.0)
        self._label([domain, *clients] if threat else [domain], start, end, threat, group)

    def burst(self, domain: str, group: str) -> None:
        """An update burst: many hosts hammer a popular domain for an hour."""
        clients = self._host(min(len(self.hosts), int(self.rng.integers(15, 60))))
        start = self._when()
        for c in clients:
            k = int(self.rng.integers(20, 80))
            offs = np.sort(self.rng.uniform(0, 3600, k))
            names = [f"dl{int(self.rng.integers(1, 9))}.{domain}" for _ in range(k)]
            self._emit(c, names, [start + timedelta(seconds=float(o)) for o in offs], ["A"], 0.0)
        self._label([domain], start, start + timedelta(hours=1), 0, group)

    def result(self) -> tuple[Any, pl.DataFrame]:
        """The simulation with the injected events merged in, and the injected labels."""
        inj = pl.DataFrame(self.rows).with_columns(
            pl.col("ts").cast(pl.Datetime("us", "UTC")),
        )
        n = inj.height
        base = self.sim.events
        extra = {
            "uid": pl.Series([f"Cinj{i}" for i in range(n)]),
            "src_port": pl.Series(self.rng.integers(1024, 65535, n)),
            "dst_port": pl.Series([53] * n),
            "proto": pl.Series(["udp"] * n),
            "trans_id": pl.Series(self.rng.integers(0, 65535, n)),
            "rtt": pl.Series(self.rng.uniform(0.001, 0.05, n)),
            "aa": pl.Series([False] * n),
            "tc": pl.Series([False] * n),
            "rd": pl.Series([True] * n),
            "ra": pl.Series([True] * n),
            "campaign": pl.Series([None] * n, dtype=pl.String),
        }
        cols = []
        for name, dtype in base.schema.items():
            if name in inj.columns:
                cols.append(inj[name].cast(dtype))
            elif name in extra:
                cols.append(extra[name].cast(dtype).alias(name))
            else:
                cols.append(pl.Series(name, [None] * n, dtype=dtype))
        merged = pl.concat([base, pl.DataFrame(cols)]).sort("ts")
        labels = pl.DataFrame(self.labels).with_columns(
            pl.col("window_start").cast(pl.Datetime("us", "UTC")),
            pl.col("window_end").cast(pl.Datetime("us", "UTC")),
        )
        return dataclasses.replace(self.sim, events=merged), labels


def sim_rows(
    seed: int,
    split: str,
    src: Sources,
    clients: int,
    hours: int,
    log: Callable[[str], None],
) -> Rows:
    """One simulated week with its own campaigns plus injected real names, through the pipeline."""
    from dnsieve.simulate import simulate, write_zeek

    rng = np.random.default_rng([seed, 0x7EA7])
    sim = simulate(hours=hours, clients=clients, seed=seed)
    inj = Injector(sim, rng)
    tools = sorted(
        t for t in src.tunnels if (t.split(":")[0] in HELD_OUT_TOOLS) == (split == "eval")
    )
    for t in tools:
        names = src.tunnels[t]
        if len(names) >= 20:
            start = int(rng.integers(0, max(1, len(names) - 900)))
            inj.tunnel(t, names[start:])
    fams = sorted(src.dga.get(split, {}))
    for fam in [fams[int(i)] for i in rng.choice(len(fams), min(6, len(fams)), replace=False)]:
        inj.dga_bot(fam, src.dga[split][fam])
    tfams = sorted(src.threatfox.get(split, {}))
    for fam in [tfams[int(i)] for i in rng.choice(len(tfams), min(6, len(tfams)), replace=False)]:
        doms = src.threatfox[split][fam]
        inj.campaign(
            doms[int(rng.integers(len(doms)))],
            1,
            f"threatfox:{fam}",
            int(rng.integers(2, 8)),
            False,
        )
    rare = src.benign_rare[split]
    for d in rng.choice(rare, 8, replace=False):
        inj.campaign(str(d), 0, "benign:adoption", int(rng.integers(10, 40)), True)
    pop = src.benign_popular[split]
    for d in rng.choice(pop, 3, replace=False):
        inj.burst(str(d), "benign:update_burst")
    merged, inj_labels = inj.result()
    lab = sim.labels
    if "threat" not in lab.columns:  # a simulator before the threat column: attacks only
        lab = lab.with_columns(pl.lit(1).alias("threat"))
    sim_labels = lab.select(
        "entity",
        pl.col("window_start").str.to_datetime(time_zone="UTC", time_unit="us"),
        pl.col("window_end").str.to_datetime(time_zone="UTC", time_unit="us"),
        pl.col("threat").cast(pl.Int64),
        ("sim:" + pl.col("kind")).alias("group"),
    )
    labels = pl.concat([inj_labels, sim_labels], how="vertical_relaxed")
    with tempfile.TemporaryDirectory(prefix="dnsieve-tt-") as tmp:
        paths = write_zeek(merged, Path(tmp) / "logs")
        lake = Lake(Path(tmp) / "lake")
        lake.ingest_files([paths["log"]], "auto", {})
        anomalies = _detect(lake)
        r = _rows(lake, anomalies, labels, "sim", split, 4000, rng)
    log(
        f"  sim seed {seed} ({split}): {merged.events.height:,} events, "
        f"{anomalies.height:,} candidates, {int(r.y.sum())} threat rows, "
        f"{int((r.y == 0).sum())} benign rows kept"
    )
    return r


# -------------------------------------------------------------------- model
def cell_weights(rows: Rows) -> F:
    """Equal total weight per (source, group, label) cell; each source's two labels weigh alike."""
    keys = [f"{s}|{g}|{y}" for s, g, y in zip(rows.source, rows.group, rows.y, strict=True)]
    _uniq, inv, counts = np.unique(keys, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inv]
    # per source: threat cells and benign cells sum to the same total
    for s in set(rows.source):
        for lab in (0, 1):
            m = np.array([r == s for r in rows.source]) & (rows.y == lab)
            if m.any():
                w[m] /= w[m].sum()
    return w / w.mean()


@dataclass
class Fitted:
    center: F
    scale: F
    w: F
    wg: F
    b: float
    C: float

    def logit(self, X: F) -> F:
        return grouped_logit(X, self.w, self.wg, self.b, self.center, self.scale)

    def proba(self, X: F) -> F:
        return np.asarray(1.0 / (1.0 + np.exp(-self.logit(X))), dtype=np.float64)


#: Features whose weight is held non-negative (more of it never means "less of a threat"):
#: detector scores, calibrated tail evidence, tunnel/DGA evidence, novelty, lexical scores.
MONOTONE_UP: tuple[str, ...] = (
    *(n for n in FEATURE_NAMES if n.startswith("lscore_")),
    "neg_log_p",
    "ev_nx_share",
    "ev_odd_qtype_share",
    "ev_subdomains",
    "ev_entropy",
    "ev_encodedness",
    "ev_dga_probability",
    "ev_subdomain_len",
    "ev_label_len",
    "ev_bytes_per_query",
    "ev_encoded_bits",
    "ev_queries_per_client",
    "ctx_new_domain",
    "ctx_dom_nx_share",
    "ctx_dom_odd_qtype",
    "ctx_dom_sub_len",
    "ctx_client_nx_share",
    "lex_dga",
    "lex_entropy",
)
#: ... and non-positive: popularity and age.
MONOTONE_DOWN: tuple[str, ...] = ("pop_listed", "pop_score", "ctx_age_log_h")


def _bounds() -> list[tuple[float | None, float | None]]:
    out: list[tuple[float | None, float | None]] = []
    for n in FEATURE_NAMES:
        if n in MONOTONE_UP:
            out.append((0.0, None))
        elif n in MONOTONE_DOWN:
            out.append((None, 0.0))
        else:
            out.append((None, None))
    return [*out, (None, None)]  # intercept


#: L2 penalty of a detector's own weights relative to the shared ones: a detector's
#: deviation must earn its keep (few rows of a detector → close to the shared weights).
GROUP_PENALTY = 4.0


def _fit_lr(X: F, y: npt.NDArray[np.int8], w: F, C: float) -> tuple[F, F, F, F, float]:
    """Weighted, L2-penalised logistic regression with shared and per-detector weights.

    ``logit = b + w·z + wg[detector]·z`` (:func:`dnsieve.threat.initial.grouped_logit`),
    sign-constrained (:data:`MONOTONE_UP`, :data:`MONOTONE_DOWN`) block by block,
    by L-BFGS-B.  Returns (center, scale, w, wg, b).
    """
    center = np.average(X, axis=0, weights=w)
    scale = np.sqrt(np.average((X - center) ** 2, axis=0, weights=w))
    scale = np.where(scale > 1e-6, scale, 1.0)
    Z = (X - center) / scale
    M = np.ascontiguousarray(detector_mask(X))
    d = Z.shape[1]
    G = M.shape[1]
    yy = y.astype(np.float64)
    ww = w / w.mean()  # sklearn's convention: C·Σ loss + ½|θ|², here divided by C
    lam = 1.0 / C

    def loss(theta: F) -> tuple[float, F]:
        wv = theta[:d]
        Wg = theta[d : d + G * d].reshape(G, d)
        s = Z @ wv + np.sum((M @ Wg) * Z, axis=1) + theta[-1]
        ll = float(np.sum(ww * (np.logaddexp(0.0, s) - yy * s)))
        r = ww * (1.0 / (1.0 + np.exp(-s)) - yy)
        gw = Z.T @ r + lam * wv
        gG = M.T @ (r[:, None] * Z) + GROUP_PENALTY * lam * Wg
        pen = 0.5 * lam * (float(wv @ wv) + GROUP_PENALTY * float(np.sum(Wg * Wg)))
        return ll + pen, np.concatenate([gw, gG.ravel(), [r.sum()]])

    b1 = _bounds()[:-1]
    with threadpool_limits(1):  # small products: BLAS threads only contend on a busy host
        res = optimize.minimize(
            loss,
            np.zeros(d + G * d + 1),
            jac=True,
            method="L-BFGS-B",
            bounds=[*b1, *(b1 * G), (None, None)],
            options={"maxiter": 500},
        )
    theta = np.asarray(res.x, dtype=np.float64)
    return center, scale, theta[:d], theta[d : d + G * d].reshape(G, d), float(theta[-1])


def fit(
    rows: Rows, log: Callable[[str], None], grid: tuple[float, ...] = (0.3,), folds: int = 3
) -> tuple[Fitted, dict[str, Any]]:
    """Grouped-CV choice of C, then the final fit with Platt recalibration on out-of-fold logits."""
    w = cell_weights(rows)
    groups = np.array([f"{s}|{g}" for s, g in zip(rows.source, rows.group, strict=True)])
    # background rows of one lake share a group per source+split: split them by detector
    groups = np.where(
        np.char.find(groups.astype(str), "background") >= 0,
        np.char.add(groups.astype(str), np.array(rows.detector, dtype=str)),
        groups,
    )
    cv = GroupKFold(n_splits=folds)
    best: tuple[float, float, F] | None = None
    report = {}
    for C in grid:
        oof = np.zeros(rows.y.size)
        for tr, te in cv.split(rows.X, rows.y, groups):
            if len(set(rows.y[tr])) < 2:
                continue
            c, s, wt, wg, b = _fit_lr(rows.X[tr], rows.y[tr], w[tr], C)
            oof[te] = grouped_logit(rows.X[te], wt, wg, b, c, s)
        loss = float(
            np.average(np.logaddexp(0.0, oof) - rows.y * oof, weights=w)
        )  # weighted log loss
        report[str(C)] = round(loss, 4)
        if best is None or loss < best[0]:
            best = (loss, C, oof)
    assert best is not None
    _, C, oof = best
    log(f"grouped {folds}-fold CV weighted log loss by C: {report}; chosen C = {C}")
    # Platt: logit' = a·logit + b0 fitted on the out-of-fold logits
    platt = LogisticRegression(C=1e6, max_iter=1000)
    platt.fit(oof[:, None], rows.y, sample_weight=w)
    a, b0 = float(platt.coef_[0, 0]), float(platt.intercept_[0])
    center, scale, wt, wg, b1 = _fit_lr(rows.X, rows.y, w, C)
    wts = wt * a
    wgs = wg * a
    b = b1 * a + b0
    log(f"Platt recalibration: slope {a:.3f}, intercept {b0:.3f}")
    return Fitted(center, scale, wts, wgs, b, C), {"cv_log_loss": report, "C": C, "platt": [a, b0]}


# --------------------------------------------------------------- evaluation
def reliability(p: F, y: npt.NDArray[np.int8], bins: int = 10) -> list[dict[str, Any]]:
    """Rows of a reliability table: bin, n, mean predicted P, observed threat share."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "n": int(m.sum()),
                    "mean_p": round(float(p[m].mean()), 3),
                    "threat_share": round(float(y[m].mean()), 3),
                }
            )
    return out


def summarise(name: str, rows: Rows, p: F) -> dict[str, Any]:
    y = rows.y
    res: dict[str, Any] = {"set": name, "rows": int(y.size), "threats": int(y.sum())}
    if y.size:
        res["brier"] = round(float(brier_score_loss(y, p)), 4)
    if 0 < y.sum() < y.size:
        res["auc"] = round(float(roc_auc_score(y, p)), 4)
    return res


def by_group(rows: Rows, p: F) -> list[dict[str, Any]]:
    """Per group: rows, label, median and min P, share with P >= 0.5."""
    out = []
    for g in sorted(set(rows.group)):
        m = np.array([x == g for x in rows.group])
        out.append(
            {
                "group": g,
                "rows": int(m.sum()),
                "threat": int(rows.y[m].max()),
                "median_p": round(float(np.median(p[m])), 3),
                "min_p": round(float(p[m].min()), 3),
                "max_p": round(float(p[m].max()), 3),
                "share_p_ge_0_5": round(float((p[m] >= 0.5).mean()), 3),
            }
        )
    return out


def entity_best(rows: Rows, p: F, mask: npt.NDArray[np.bool_]) -> dict[str, float]:
    """Per entity among ``mask``: its highest P (an alert per entity, as the queue shows it)."""
    best: dict[str, float] = {}
    for i in np.flatnonzero(mask):
        e = rows.entity[i]
        best[e] = max(best.get(e, 0.0), float(p[i]))
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[4, 5])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--hours", type=int, default=96)
    ap.add_argument("--cache", type=Path, default=None, help="keep prepared rows in this folder")
    ap.add_argument("--no-save", action="store_true", help="evaluate only")
    ap.add_argument(
        "--c-grid",
        type=float,
        nargs="+",
        default=[0.3],
        help="inverse L2 strengths to choose from by grouped cross-validation",
    )
    a = ap.parse_args(argv)
    if not a.data.is_dir():
        print(f"error: {a.data} is not a directory (the shared corpus)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, flush=True)

    src = load_sources(a.data)

    def cached(tag: str, build: Callable[[], Rows]) -> Rows:
        path = a.cache / f"{tag}.npz" if a.cache else None
        if path is not None and path.exists():
            return Rows.load(path)
        r = build()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            r.save(path)
        return r

    rng = np.random.default_rng(20261203)
    log("real captures (tunnel/domainator), one at a time:")
    rows = cached("captures", lambda: capture_rows(a.data, rng, log))
    for split, seeds in (("train", a.train_seeds), ("eval", a.eval_seeds)):
        for seed in seeds:
            tag = f"sim-{seed}-{a.clients}c-{a.hours}h" + ("-eval" if split == "eval" else "")

            def build(seed: int = seed, split: str = split) -> Rows:
                return sim_rows(seed, split, src, a.clients, a.hours, log)

            rows = rows + cached(tag, build)
    train = rows.take(np.array([s == "train" for s in rows.split]))
    ev = rows.take(np.array([s == "eval" for s in rows.split]))
    log(
        f"\nrows: {train.y.size:,} training ({int(train.y.sum()):,} threat), "
        f"{ev.y.size:,} held out ({int(ev.y.sum()):,} threat); "
        f"{time.perf_counter() - t0:.0f} s\n"
    )
    model, fit_info = fit(train, log, tuple(a.c_grid))
    p_ev = model.proba(ev.X)
    p_tr = model.proba(train.X)

    real = np.array(
        [
            s == "capture" or not g.startswith("sim:")
            for s, g in zip(ev.source, ev.group, strict=True)
        ]
    )
    # held-out real data: held-out tool captures (C2 and their background) and the
    # injected held-out real names (tools, DGA and ThreatFox families, benign domains)
    real_ev = ev.take(
        real
        & np.array(
            [g != "background" or s == "capture" for s, g in zip(ev.source, ev.group, strict=True)]
        )
    )
    p_real = model.proba(real_ev.X)
    sims = ev.take(
        np.array([g.startswith("sim:") or g == "background" for g in ev.group])
        & (np.array(ev.source) == "sim")
    )
    p_sims = model.proba(sims.X)
    metrics = [
        summarise("training rows (in-sample)", train, p_tr),
        summarise("held-out real data", real_ev, p_real),
        summarise("held-out simulator seeds (own campaigns + background)", sims, p_sims),
        summarise("all held-out rows", ev, p_ev),
    ]
    table = reliability(p_real, real_ev.y)
    groups = by_group(ev, p_ev)
    # real C2 from unseen tools vs benign anomalies, per entity, over the *alerts*
    # (what reaches the queue; candidates below the threshold are not shown)
    is_alert = np.array(ev.alert, dtype=bool)
    c2 = (
        np.array([g.startswith("tool:") for g in ev.group])
        & (np.array(ev.source) == "capture")
        & (ev.y == 1)
        & is_alert
    )
    benign_anom = np.array([g.startswith(("benign", "sim:benign")) for g in ev.group]) & is_alert
    c2_best = entity_best(ev, p_ev, c2)
    ben_best = entity_best(ev, p_ev, benign_anom)
    ben_max = max(ben_best.values(), default=0.0)
    ranking = {
        "c2_alert_entities": {k: round(v, 3) for k, v in sorted(c2_best.items())},
        "c2_min_best_p": round(min(c2_best.values()), 3) if c2_best else None,
        "c2_share_p_ge_0_5": round(float(np.mean([v >= 0.5 for v in c2_best.values()])), 3)
        if c2_best
        else None,
        "benign_anomaly_alert_entities": len(ben_best),
        "benign_anomaly_max_best_p": round(ben_max, 3) if ben_best else None,
        "benign_anomaly_median_best_p": round(float(np.median(list(ben_best.values()))), 3)
        if ben_best
        else None,
        "share_c2_above_every_benign": round(
            float(np.mean([v > ben_max for v in c2_best.values()])), 3
        )
        if c2_best
        else None,
    }

    log("\n## metrics")
    log("| set | rows | threats | Brier | AUC |")
    log("|---|---|---|---|---|")
    for m in metrics:
        log(
            f"| {m['set']} | {m['rows']:,} | {m['threats']:,} | {m.get('brier', '')} | {m.get('auc', '')} |"
        )
    log("\n## reliability on held-out real data")
    log("| P(threat) bin | rows | mean P | threat share |")
    log("|---|---|---|---|")
    for r in table:
        log(f"| {r['bin']} | {r['n']:,} | {r['mean_p']:.3f} | {r['threat_share']:.3f} |")
    log("\n## held-out groups")
    log("| group | rows | threat | median P | min P | max P | share P >= 0.5 |")
    log("|---|---|---|---|---|---|---|")
    for g in groups:
        log(
            f"| {g['group']} | {g['rows']:,} | {g['threat']} | {g['median_p']:.3f} | "
            f"{g['min_p']:.3f} | {g['max_p']:.3f} | {g['share_p_ge_0_5']:.2f} |"
        )
    log("\n## real C2 of unseen tools vs benign anomalies (best P of each entity's alerts)")
    log(json.dumps(ranking, indent=2))
    weights = sorted(zip(FEATURE_NAMES, model.w, strict=True), key=lambda t: -abs(t[1]))
    log("\nlargest standardised weights: " + ", ".join(f"{n} {v:+.2f}" for n, v in weights[:15]))

    if a.no_save:
        return 0
    X_all = train.X
    w = cell_weights(train)
    mean = np.average(X_all, axis=0, weights=w)
    var = np.average((X_all - mean) ** 2, axis=0, weights=w)
    order = np.argsort(model.logit(X_all), kind="stable")
    anchor = X_all[order[np.linspace(0, order.size - 1, 300).astype(np.int64)]]
    meta = {
        "trained_by": "scripts/train_threat.py",
        "trained_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "data_files": {str(f.relative_to(a.data)): sha256(f) for f in src.files},
        "captures": sorted(
            str(p.relative_to(a.data))
            for p in (a.data / "tunnel" / "domainator").glob("*/*.pcapng")
        ),
        "held_out": {
            "tools": list(HELD_OUT_TOOLS),
            "dga_families": sorted(src.dga.get("eval", {})),
            "threatfox_families": sorted(src.threatfox.get("eval", {})),
            "benign_domains_share": BENIGN_HOLDOUT / 100,
            "sim_seeds": a.eval_seeds,
        },
        "train_seeds": a.train_seeds,
        "sim": {"clients": a.clients, "hours": a.hours},
        "rows": {
            "train": int(train.y.size),
            "train_threat": int(train.y.sum()),
            "eval": int(ev.y.size),
        },
        "fit": fit_info,
        "metrics": metrics,
        "reliability_held_out_real": table,
        "held_out_groups": groups,
        "ranking": ranking,
    }
    save_initial(
        a.out,
        FEATURE_NAMES,
        detectors=DETECTORS,
        w=model.w,
        wg=model.wg,
        b=model.b,
        center=model.center,
        scale=model.scale,
        mean=mean,
        var=np.maximum(var, 1e-6),
        anchor=anchor,
        meta=meta,
    )
    log(f"\nwrote {a.out} ({a.out.stat().st_size:,} bytes) and {a.out.with_suffix('.json').name}")
    log(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
