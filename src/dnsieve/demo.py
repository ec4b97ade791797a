"""The demo: a simulated enterprise week through the whole pipeline, no files needed.

:func:`run_demo` simulates ``hours`` of DNS for ``clients`` hosts with injected
campaigns (:mod:`dnsieve.simulate`), writes it as a Zeek ``dns.log``, then runs
the one-shot job (:func:`dnsieve.commands.run.run_job`): ingest into a lake,
every detector, calibration, threat scoring, and storage in an alert store.
Each alert is matched against the simulation's ground truth, so the demo shows
what was caught and what was a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

__all__ = ["DemoResult", "create_demo_admin", "label_alerts", "run_demo"]


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


def label_alerts(alerts: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Add ``truth``: the kind of the injected campaign an alert overlaps, else null.

    An alert matches a label with the same entity whose window overlaps it; a
    ``client|domain`` alert also matches a label on either of its parts.
    """
    if alerts.height == 0:
        return alerts.with_columns(pl.lit(None, dtype=pl.String).alias("truth"))
    lab = labels.select(
        pl.col("entity").alias("_e"),
        pl.col("kind").alias("truth"),
        pl.col("window_start").str.to_datetime(time_zone="UTC").alias("_ls"),
        pl.col("window_end").str.to_datetime(time_zone="UTC").alias("_le"),
    )
    keyed = alerts.with_row_index("_i").with_columns(
        pl.concat_list(
            pl.col("entity"),
            pl.col("entity").str.split("|").list.first(),
            pl.col("entity").str.split("|").list.last(),
        )
        .list.unique()
        .alias("_keys")
    )
    matches = (
        keyed.explode("_keys")
        .join(lab, left_on="_keys", right_on="_e", how="inner")
        .filter((pl.col("window_start") < pl.col("_le")) & (pl.col("window_end") > pl.col("_ls")))
        .group_by("_i")
        .agg(pl.col("truth").sort().first())
    )
    return keyed.join(matches, on="_i", how="left").sort("_i").drop("_i", "_keys")


def run_demo(
    directory: Path,
    hours: int = 168,
    clients: int = 500,
    seed: int = 7,
    settings: Any = None,
) -> DemoResult:
    """Simulate, ingest, detect, score and store under ``directory``."""
    from dnsieve.commands.run import run_job
    from dnsieve.config import load_settings
    from dnsieve.simulate import simulate, write_zeek

    directory.mkdir(parents=True, exist_ok=True)
    sim = simulate(hours=hours, clients=clients, seed=seed)
    paths = write_zeek(sim, directory / "logs")
    db = f"sqlite:///{(directory / 'alerts.db').absolute()}"
    lake = directory / "lake"
    reports, res, alerts = run_job(
        [paths["log"]], lake, "auto", settings or load_settings(), store_url=db
    )
    labels = pl.read_csv(paths["labels"])
    return DemoResult(
        directory=directory,
        log=paths["log"],
        labels=paths["labels"],
        lake=lake,
        db=db,
        events=sim.events.height,
        reports=reports,
        summary=res.summary,
        alerts=label_alerts(alerts, labels),
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
