"""``dnsieve train``: fit the threat model from historical labels and past verdicts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

__all__ = ["register"]


def register(app: typer.Typer) -> None:
    """Add ``dnsieve train`` to ``app``."""

    @app.command("train")
    def train_cmd(
        labels: Annotated[
            Path | None,
            typer.Option(
                "--labels", "-l", help="CSV: entity,label[,detector][,window_start][,window_end]"
            ),
        ] = None,
        db: Annotated[
            str | None,
            typer.Option("--db", help="alert store URL or SQLite path (default: $DNSIEVE_DB)"),
        ] = None,
        anomalies: Annotated[
            Path | None,
            typer.Option(
                "--anomalies", "-a", help="anomalies to join the labels to (Parquet or JSON lines)"
            ),
        ] = None,
        kind: Annotated[
            str, typer.Option("--kind", help="mlp (default: won the feedback benchmark) or linear")
        ] = "mlp",
        toplist: Annotated[
            Path | None, typer.Option("--toplist", help="popularity list (rank,domain CSV)")
        ] = None,
        no_store: Annotated[
            bool, typer.Option("--no-store", help="train from files only; do not open the store")
        ] = False,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="also write the model blob here")
        ] = None,
    ) -> None:
        """Train the threat model from a labels CSV (and the store's past verdicts).

        The trained model is saved in the store as a new active version; the
        previous versions stay there for rollback.
        """
        from dnsieve.commands.console import console, err_console
        from dnsieve.threat.features import TopList
        from dnsieve.threat.training import read_anomalies, train

        if kind not in ("linear", "mlp"):
            raise typer.BadParameter("choose linear or mlp", param_hint="--kind")
        for p, opt in ((labels, "--labels"), (anomalies, "--anomalies"), (toplist, "--toplist")):
            if p is not None and not p.is_file():
                raise typer.BadParameter(f"{p} is not a file", param_hint=opt)
        if labels is None and no_store:
            raise typer.BadParameter("nothing to learn from: give --labels or use the store")
        store = None
        if not no_store:
            from dnsieve.alerts import open_store

            try:
                store = open_store(db)
            except Exception as exc:
                err_console.print(
                    f"[red]error:[/red] cannot open the alert store: {escape(str(exc))}"
                )
                raise typer.Exit(2) from None
        try:
            frame = read_anomalies(anomalies) if anomalies is not None else None
            res = train(
                labels,
                anomalies=frame,
                store=store,
                kind=kind,
                toplist=TopList.load(toplist) if toplist else None,
            )
        finally:
            if store is not None:
                store.close()
        if out is not None:
            out.write_bytes(res.model.to_bytes())
        summary = res.to_dict()
        console.print_json(json.dumps(summary, default=str))
        if res.labelled == 0:
            err_console.print(
                "[yellow]warning:[/yellow] no anomaly matched a label; the model is the prior"
            )
