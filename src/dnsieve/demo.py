"""The demo: a simulated enterprise week through the whole pipeline, no files needed.

:func:`run_demo` simulates ``hours`` of DNS for ``clients`` hosts with injected
campaigns (:mod:`dnsieve.simulate`), writes it as a Zeek ``dns.log``, then runs
the one-shot job (:func:`dnsieve.jobs.run_job`): ingest into a lake,
every detector, calibration, threat scoring, and storage in an alert store.
Each alert is matched against the simulation's ground truth, so the demo shows
what was caught and what was a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

__all__ = [
    "BENIGN_PREFIX",
    "DemoResult",
    "TruthReport",
    "create_demo_admin",
    "label_alerts",
    "run_demo",
    "run_demo_stream",
    "truth_report",
]


@dataclass
class DemoResult:
    """What the demo produced and where it put it."""

    directory: Path
    log: Path
    labels: Path
    lake: Path
    db: str
    events: int
    reports: list[Any]
    summary: dict[str, Any]
    alerts: pl.DataFrame  # with a ``truth`` column: the matched campaign kind, or null
    #: the stored alerts (one per episode) against the labels: recall per kind, missed
    #: campaigns, alerts where nothing was injected
    truth: TruthReport | None = None


def _labels(labels: pl.DataFrame) -> pl.DataFrame:
    """The label rows with ``campaign`` and ``threat`` (derived for older label files:
    one campaign per kind × entity, and ``benign_*`` kinds are not threats)."""
    lab = labels
    if "campaign" not in lab.columns:
        lab = lab.with_columns(pl.format("{}-{}", "kind", "entity").alias("campaign"))
    if "threat" not in lab.columns:
        lab = lab.with_columns(
            (~pl.col("kind").str.starts_with(BENIGN_PREFIX)).cast(pl.Int8).alias("threat")
        )
    return lab.with_columns(
        pl.col("window_start").cast(pl.String).str.to_datetime(time_zone="UTC").alias("_ls"),
        pl.col("window_end").cast(pl.String).str.to_datetime(time_zone="UTC").alias("_le"),
        pl.col("threat").cast(pl.Int8),
    )


def _matches(alerts: pl.DataFrame, lab: pl.DataFrame) -> pl.DataFrame:
    """``(_i, campaign, kind, threat)``: alert row ``_i`` overlaps a label of that campaign.

    An alert matches a label with the same entity whose window overlaps it; a
    ``client|domain`` alert also matches a label on either of its parts, and a
    ``client|domain`` label (a beacon: the infected host and its C2 domain) is
    matched by an alert on either of its parts (a volume alert on the C2 domain,
    a client-volume alert on the host).
    """
    keyed = alerts.select("entity", "window_start", "window_end").with_row_index("_i")
    keyed = keyed.with_columns(
        pl.concat_list(
            pl.col("entity"),
            pl.col("entity").str.split("|").list.first(),
            pl.col("entity").str.split("|").list.last(),
        )
        .list.unique()
        .alias("_keys")
    )
    return (
        keyed.explode("_keys")
        .join(
            lab.select(
                pl.concat_list(
                    pl.col("entity"),
                    pl.col("entity").str.split("|").list.first(),
                    pl.col("entity").str.split("|").list.last(),
                )
                .list.unique()
                .alias("_e"),
                "campaign",
                "kind",
                "threat",
                "_ls",
                "_le",
            ).explode("_e"),
            left_on="_keys",
            right_on="_e",
            how="inner",
        )
        .filter((pl.col("window_start") < pl.col("_le")) & (pl.col("window_end") > pl.col("_ls")))
        .select("_i", "campaign", "kind", "threat")
        .unique()
    )


def label_alerts(alerts: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Add ``truth``: the kind of the injected campaign an alert overlaps, else null.

    Matching is :func:`_matches`' (entities, or either part of a ``client|domain``
    alert or label, with overlapping windows).  An alert on both an attack and a
    benign anomaly is the attack's.
    """
    if alerts.height == 0:
        return alerts.with_columns(pl.lit(None, dtype=pl.String).alias("truth"))
    m = (
        _matches(alerts, _labels(labels))
        .sort(["_i", "threat", "kind"], descending=[False, True, False])
        .group_by("_i", maintain_order=True)
        .agg(pl.col("kind").first().alias("truth"))
    )
    return alerts.with_row_index("_i").join(m, on="_i", how="left").sort("_i").drop("_i")


#: Label kinds that start with this are injected *benign* anomalies (threat = 0).
BENIGN_PREFIX = "benign_"


@dataclass(frozen=True)
class TruthReport:
    """The demo's alerts against its ground truth, per campaign.

    * ``per_kind``: ``kind, threat, campaigns, caught, recall`` (attacks first);
    * ``missed``: one row per attack campaign no alert overlaps: ``kind, campaign,
      entity`` (its hosts and names, shortened), ``window_start, window_end, description``;
    * ``alerts``: how many alerts in all; ``on_attacks`` of them overlap an injected
      attack, ``on_benign`` only an injected benign anomaly, ``not_injected`` neither;
    * ``false_entities``: the entities of the ``not_injected`` alerts, the most alerted
      first: ``detector, entity, alerts``.
    """

    per_kind: pl.DataFrame
    missed: pl.DataFrame
    alerts: int
    on_attacks: int
    on_benign: int
    not_injected: int
    false_entities: pl.DataFrame

    def recall(self, kind: str) -> float | None:
        """The share of ``kind``'s campaigns caught (None: none injected)."""
        row = self.per_kind.filter(pl.col("kind") == kind)
        return None if row.height == 0 else float(row["recall"][0])


def _campaign_entity(rows: pl.DataFrame, max_names: int = 2) -> str:
    """A campaign's subject in a few words: its hosts first, then its names."""
    hosts = rows.filter(pl.col("entity_type") == "client")["entity"].unique().sort().to_list()
    names = rows.filter(pl.col("entity_type") != "client")["entity"].unique().sort().to_list()
    parts = list(hosts)
    if names:
        shown = ", ".join(names[:max_names])
        more = len(names) - max_names
        parts.append(
            shown + (f" and {more} other name{'s' if more != 1 else ''}" if more > 0 else "")
        )
    return "; ".join(parts)


def truth_report(alerts: pl.DataFrame, labels: pl.DataFrame) -> TruthReport:
    """Recall per injected kind, the missed campaigns and the alerts nothing was injected on.

    A campaign (the label file's ``campaign`` column) is *caught* when at least one
    alert overlaps one of its labels (:func:`label_alerts`' matching).  Recall is per
    attack kind (``threat`` = 1); benign anomalies (``benign_*``) are reported with
    how many of them drew an alert, which is what an analyst would have to dismiss.
    """
    lab = _labels(labels)
    m = (
        _matches(alerts, lab)
        if alerts.height
        else pl.DataFrame(
            schema={"_i": pl.UInt32, "campaign": pl.String, "kind": pl.String, "threat": pl.Int8}
        )
    )
    caught = set(m["campaign"].to_list())
    camps = lab.group_by("campaign").agg(
        pl.col("kind").first(),
        pl.col("threat").max(),
        pl.col("_ls").min().alias("window_start"),
        pl.col("_le").max().alias("window_end"),
        pl.col("description").first() if "description" in lab.columns else pl.lit(""),
    )
    camps = camps.with_columns(pl.col("campaign").is_in(list(caught)).alias("caught"))
    per_kind = (
        camps.group_by("kind")
        .agg(
            pl.col("threat").max(),
            pl.len().alias("campaigns"),
            pl.col("caught").sum().alias("caught"),
        )
        .with_columns((pl.col("caught") / pl.col("campaigns")).alias("recall"))
        .sort(["threat", "kind"], descending=[True, False])
    )
    missed_c = camps.filter((pl.col("threat") == 1) & ~pl.col("caught")).sort(
        "window_start", "campaign"
    )
    missed = missed_c.with_columns(
        pl.Series(
            "entity",
            [_campaign_entity(lab.filter(pl.col("campaign") == c)) for c in missed_c["campaign"]],
            dtype=pl.String,
        )
    ).select("kind", "campaign", "entity", "window_start", "window_end", "description")
    per_alert = m.group_by("_i").agg(pl.col("threat").max())
    on_attacks = int((per_alert["threat"] == 1).sum())
    on_benign = int((per_alert["threat"] == 0).sum())
    hit = set(per_alert["_i"].to_list())
    free = alerts.with_row_index("_i").filter(~pl.col("_i").is_in(list(hit)))
    false_entities = (
        free.group_by("detector", "entity")
        .agg(pl.len().alias("alerts"))
        .sort(["alerts", "detector", "entity"], descending=[True, False, False])
        if free.height
        else pl.DataFrame(schema={"detector": pl.String, "entity": pl.String, "alerts": pl.UInt32})
    )
    return TruthReport(
        per_kind=per_kind,
        missed=missed,
        alerts=alerts.height,
        on_attacks=on_attacks,
        on_benign=on_benign,
        not_injected=free.height,
        false_entities=false_entities,
    )


def run_demo(
    directory: Path,
    hours: int = 168,
    clients: int = 500,
    seed: int = 7,
    settings: Any = None,
) -> DemoResult:
    """Simulate, ingest, detect, score and store under ``directory``."""
    from dnsieve.alerts.base import alerts_to_frame
    from dnsieve.alerts.store import AlertStore
    from dnsieve.config import load_settings
    from dnsieve.jobs import run_job
    from dnsieve.simulate import simulate, write_zeek

    directory.mkdir(parents=True, exist_ok=True)
    sim = simulate(hours=hours, clients=clients, seed=seed)
    paths = write_zeek(sim, directory / "logs")
    db = f"sqlite:///{(directory / 'alerts.db').absolute()}"
    lake = directory / "lake"
    reports, res, alerts = run_job(
        [paths["log"]], lake, "auto", settings or load_settings(), store_url=db
    )
    labels = pl.read_csv(paths["labels"], infer_schema_length=None)
    # the truth is told about what the analyst sees: the stored alerts (one per episode)
    with AlertStore.open(db) as store:
        stored = alerts_to_frame(store.list_alerts(status="all", include_suppressed=True))
    return DemoResult(
        directory=directory,
        log=paths["log"],
        labels=paths["labels"],
        lake=lake,
        db=db,
        events=sim.events.height,
        reports=reports,
        summary=res.summary,
        # what an analyst sees: one row per episode (its worst window), not one per window
        alerts=label_alerts(stored.drop("features"), labels)
        if stored.height
        else label_alerts(alerts, labels),
        truth=truth_report(stored, labels),
    )


def run_demo_stream(
    directory: Path,
    hours: int = 168,
    clients: int = 500,
    seed: int = 7,
    settings: Any = None,
    rate: float = 3000.0,
    on_status: Any = None,
    started: Any = None,
) -> DemoResult:
    """The demo as a live system: replay the simulated week into Kafka and stream it.

    librdkafka's mock cluster stands in for Kafka; :func:`dnsieve.ingest.kafka.replay`
    publishes the week as zeek-kafka JSON at ``rate`` events/s while
    :class:`dnsieve.stream.StreamRunner` consumes it, scoring each hour as it
    closes into the store (``started(db_url, lake)`` is called once the stream
    runs, e.g. to serve the Alert Manager).  When the replay is done and the
    stream has caught up, a drain scores the last, partial window.
    """
    import threading
    import time

    from dnsieve.alerts.base import alerts_to_frame
    from dnsieve.alerts.store import AlertStore
    from dnsieve.config import load_settings
    from dnsieve.ingest.kafka import MockCluster, replay
    from dnsieve.lake import Lake
    from dnsieve.simulate import simulate, write_zeek
    from dnsieve.stream import KafkaSource, StreamRunner

    settings = settings or load_settings()
    directory.mkdir(parents=True, exist_ok=True)
    sim = simulate(hours=hours, clients=clients, seed=seed)
    paths = write_zeek(sim, directory / "logs")
    db = f"sqlite:///{(directory / 'alerts.db').absolute()}"
    lake_dir = directory / "lake"
    fast = {"group.protocol": "consumer"}
    with MockCluster() as mc:
        mc.create_topic("dns")
        src = KafkaSource(mc.bootstrap, "dns", "dnsieve-demo", fast)
        lake = Lake.from_settings(settings, lake_dir)
        runner = StreamRunner(
            src, lake, directory / "checkpoint", settings, store_url=db, on_status=on_status
        )
        th = threading.Thread(target=runner.run, name="dnsieve-stream", daemon=True)
        th.start()
        if started is not None:
            started(db, lake_dir)
        rep = replay([paths["log"]], mc.bootstrap, "dns", rate=rate)
        while runner.status.events < rep.events and th.is_alive():
            time.sleep(0.2)
        runner.stop()
        th.join()
        src.close()
        # the last, partial window: a drain, as run scores the end of its data
        src = KafkaSource(mc.bootstrap, "dns", "dnsieve-demo", fast)
        final = StreamRunner(
            src, lake, directory / "checkpoint", settings, store_url=db, stop_when_idle=0.5
        ).run()
        src.close()
    labels = pl.read_csv(paths["labels"], infer_schema_length=None)
    with AlertStore.open(db) as store:
        stored = alerts_to_frame(store.list_alerts(status="all", include_suppressed=True))
    summary = {"stream": final.to_dict(), "replayed": rep.events, "replay_rate": rep.rate}
    return DemoResult(
        directory=directory,
        log=paths["log"],
        labels=paths["labels"],
        lake=lake_dir,
        db=db,
        events=sim.events.height,
        reports=[],
        summary=summary,
        alerts=label_alerts(stored.drop("features"), labels) if stored.height else stored,
        truth=truth_report(stored, labels),
    )


def create_demo_admin(db_url: str, name: str = "admin") -> str:
    """Create the demo's admin user with a fresh random password and return the password.

    There are no default credentials: the password is drawn here, printed once by
    the demo, and stored only as an Argon2 hash.
    """
    import secrets

    from dnsieve.alerts.store import AlertStore
    from dnsieve.web.users import UserStore

    password = secrets.token_urlsafe(15)
    with AlertStore.open(db_url) as store:
        users = UserStore(store.engine)
        if users.get_user(name) is None:
            users.add_user(name, "admin", password)
        else:
            users.set_password(name, password)
    return password
