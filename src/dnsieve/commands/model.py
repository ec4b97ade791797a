"""``dnsieve model``: threat-model versions, rollback and score drift.

* ``dnsieve model list`` — every saved version (newest first): kind, parent, what
  created it (training, a verdict), which one is active.
* ``dnsieve model rollback ID`` — make an earlier version the active one and
  re-score the open alerts with it.
* ``dnsieve model drift [--days 7]`` — per detector, has the score
  distribution of stored alerts in the last ``--days`` moved away from the
  earlier ones?  PSI over the reference's quantile bins and a two-sample KS
  test (:func:`dnsieve.threat.model.score_drift`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import polars as pl
import typer
from rich.markup import escape
from rich.table import Table

__all__ = ["drift_from_store", "register", "rollback"]

DbOpt = Annotated[
    str | None,
    typer.Option("--db", help="alert store URL or SQLite path (default: $DNSIEVE_DB)"),
]


def rollback(store: Any, version_id: int) -> tuple[Any, int]:
    """Activate ``version_id`` and re-score every open alert with it.

    Returns the activated version and how many alerts were re-scored.
    """
    from dnsieve.alerts.feedback import feature_matrix, load_active_model

    version = store.activate_model_version(version_id)
    model, _ = load_active_model(store)
    open_alerts = store.list_alerts(status="open", include_suppressed=True)
    if not open_alerts:
        return version, 0
    p = model.predict_proba(feature_matrix(open_alerts))
    n = store.set_threat_probabilities(
        {a.id: float(v) for a, v in zip(open_alerts, p, strict=True)}
    )
    return version, n


def drift_from_store(
    store: Any, days: float = 7.0, min_n: int = 30, now: datetime | None = None
) -> list[Any]:
    """Score drift per detector: alerts whose window starts in the last ``days`` vs before.

    A detector with fewer than ``min_n`` alerts on either side is reported but
    never called drifted: PSI and KS on a handful of scores measure noise.
    """
    from dataclasses import replace

    from dnsieve.threat.model import score_drift

    now = now or datetime.now(UTC)
    alerts = store.list_alerts(status="all", include_suppressed=True, order="recent")
    if not alerts:
        return []
    frame = pl.DataFrame(
        {
            "detector": [a.detector for a in alerts],
            "score": [float(a.score) for a in alerts],
            "window_start": [a.window_start for a in alerts],
        }
    )
    # Relative to the newest stored window, so a historical store is judged on its own time.
    newest = frame["window_start"].max()
    cut = (newest if isinstance(newest, datetime) else now) - timedelta(days=days)
    ref = frame.filter(pl.col("window_start") < cut)
    cur = frame.filter(pl.col("window_start") >= cut)
    if ref.height == 0 or cur.height == 0:
        return []
    return [
        r if (r.n_ref >= min_n and r.n_cur >= min_n) else replace(r, drifted=False)
        for r in score_drift(ref, cur)
    ]


def register(app: typer.Typer) -> None:
    """Add the ``model`` command group."""
    model_app = typer.Typer(help="Threat-model versions, rollback and drift.", no_args_is_help=True)
    app.add_typer(model_app, name="model")

    @model_app.command("list")
    def list_versions(
        db: DbOpt = None,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Every saved threat-model version, newest first."""
        from dnsieve.alerts.store import AlertStore
        from dnsieve.commands.console import console

        with AlertStore.open(db) as store:
            versions = store.list_model_versions()
        if as_json:
            typer.echo(
                json.dumps(
                    [
                        {
                            "id": v.id,
                            "created_at": v.created_at.isoformat(),
                            "kind": v.kind,
                            "parent_id": v.parent_id,
                            "active": v.active,
                            "metrics": v.metrics,
                        }
                        for v in versions
                    ],
                    indent=2,
                    default=str,
                )
            )
            return
        t = Table(title="threat-model versions", title_justify="left")
        for col in ("id", "created (UTC)", "kind", "parent", "active", "trigger"):
            t.add_column(col)
        for v in versions:
            trigger = v.metrics.get("trigger", "") if isinstance(v.metrics, dict) else ""
            t.add_row(
                str(v.id),
                f"{v.created_at:%Y-%m-%d %H:%M:%S}",
                escape(v.kind),
                "" if v.parent_id is None else str(v.parent_id),
                "yes" if v.active else "",
                escape(str(trigger)),
            )
        console.print(t if versions else "no model versions yet (the prior-only model is in use)")

    @model_app.command("rollback")
    def rollback_cmd(
        version_id: Annotated[int, typer.Argument(help="version id (see dnsieve model list)")],
        db: DbOpt = None,
    ) -> None:
        """Make an earlier version active and re-score the open alerts."""
        from dnsieve.alerts.base import AlertNotFound
        from dnsieve.alerts.store import AlertStore
        from dnsieve.commands.console import console, err_console

        with AlertStore.open(db) as store:
            try:
                version, n = rollback(store, version_id)
            except (AlertNotFound, KeyError, ValueError) as exc:
                err_console.print(f"[red]error:[/red] {escape(str(exc))}")
                raise typer.Exit(2) from None
        console.print(
            f"version {version.id} ({escape(version.kind)}) is active; re-scored {n} open alerts"
        )

    @model_app.command("drift")
    def drift_cmd(
        db: DbOpt = None,
        days: Annotated[
            float, typer.Option(min=0.04, max=3650, help="the recent period, in days")
        ] = 7.0,
        min_n: Annotated[
            int, typer.Option("--min-n", min=2, help="least alerts per side to judge drift")
        ] = 30,
        as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    ) -> None:
        """Has each detector's score distribution drifted (recent alerts vs earlier ones)?"""
        from dnsieve.alerts.store import AlertStore
        from dnsieve.commands.console import console
        from dnsieve.threat.model import drift_summary

        with AlertStore.open(db) as store:
            rows = drift_from_store(store, days, min_n)
        if as_json:
            typer.echo(json.dumps(drift_summary(rows), indent=2, default=str))
            return
        if not rows:
            console.print(
                "not enough history: need stored alerts both before and within the period"
            )
            return
        t = Table(title=f"score drift: last {days:g} days vs before", title_justify="left")
        for col in ("detector", "PSI", "KS", "KS p", "n before", "n recent", "drifted"):
            t.add_column(col)
        for r in rows:
            t.add_row(
                escape(r.name),
                f"{r.psi:.3f}",
                f"{r.ks:.3f}",
                f"{r.ks_p:.2g}",
                f"{r.n_ref:,}",
                f"{r.n_cur:,}",
                "[red]yes[/red]" if r.drifted else "no",
            )
        console.print(t)
