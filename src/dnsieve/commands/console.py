"""Console helpers shared by the CLI commands (:mod:`dnsieve.cli` and :mod:`dnsieve.commands`).

Commands import these from here, never from :mod:`dnsieve.cli`, so the command
modules and the app that registers them do not import each other.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dnsieve.config import ConfigError, Settings, load_settings
from dnsieve.lake import FileReport, Lake

__all__ = [
    "ConfigOpt",
    "console",
    "err_console",
    "fail",
    "ingest_with_progress",
    "render_ingest_summary",
    "settings_or_exit",
]

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="TOML settings file (default: $DNSIEVE_CONFIG or ./dnsieve.toml)"
    ),
]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a red error (escaped) and return the Exit to raise."""
    err_console.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def settings_or_exit(config: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Load settings (file, env, ``overrides``); a bad file is a red error and exit 2."""
    try:
        return load_settings(config, overrides=overrides)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def ingest_with_progress(
    lake: Lake,
    paths: list[Path],
    fmt: str,
    options: dict[str, Any],
    show: bool,
    pcap_flows: bool = False,
) -> list[FileReport]:
    """Ingest ``paths`` into ``lake``, with a progress bar on stderr for large inputs.

    With ``fmt="auto"`` each input goes to its kind: Zeek conn.log and flow tables to the
    lake's ``flows/`` (and, with ``pcap_flows``, the flows of pcaps too; docs/flows.md).
    """
    from dnsieve.ingest import iter_input_files
    from dnsieve.ingest.flows_common import route_inputs

    files = list(iter_input_files(paths))
    flow_reports: list[FileReport] = []
    if fmt == "auto":
        files, flow_inputs = route_inputs(files, pcap_flows)
        flow_reports = lake.ingest_flow_files(flow_inputs) if flow_inputs else []
        if flow_inputs and not files:
            return flow_reports
    total = sum(_size(f) for f in files)
    if not show or total < 8 * 1024 * 1024:
        return flow_reports + lake.ingest_files(files, fmt, options)
    with Progress(
        TextColumn("[bold]ingest[/bold] {task.fields[name]}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:,} rows"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("ingest", total=total, name="", rows=0)
        done_before = 0
        current: dict[str, Any] = {"path": "", "size": 0}

        def on_progress(path: str, raw_done: int, rows: int) -> None:
            nonlocal done_before
            if path != current["path"]:
                done_before += int(current["size"])
                current["path"] = path
                current["size"] = _size(Path(path))
            progress.update(
                task, completed=done_before + raw_done, name=escape(Path(path).name), rows=rows
            )

        return flow_reports + lake.ingest_files(files, fmt, options, on_progress=on_progress)


def _size(path: Path) -> int:
    """Bytes of a regular file, 0 for anything else or anything unreadable (for progress)."""
    try:
        st = path.stat()
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def render_ingest_summary(reports: list[FileReport], lake: Lake, out: Console) -> None:
    """Human summary of an ingest: one row per file and a total line."""
    table = Table(title=f"ingest into {escape(str(lake.path))}", title_justify="left")
    table.add_column("file", overflow="fold", min_width=24)
    table.add_column("format")
    table.add_column("status")
    table.add_column("read", justify="right")
    table.add_column("written", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("top reject reasons / error", overflow="fold")
    base = _common_parent([Path(r.path) for r in reports])
    shown_reports = reports
    if len(reports) > MAX_FILE_ROWS:
        # Long inputs (hourly-rotated directories): one row per (format, status)
        # group, and every file that failed on its own row.
        shown_reports = _group_reports(reports)
    for r in shown_reports:
        shown = _shown_path(Path(r.path), base)
        reasons = ", ".join(
            f"{k} {v:,}" for k, v in sorted(r.rejects.items(), key=lambda kv: -kv[1])[:3]
        )
        if r.skipped:
            reasons = ", ".join(
                x for x in (reasons, f"skipped {sum(r.skipped.values()):,} non-DNS") if x
            )
        note = "; ".join(x for x in (r.error or "", reasons) if x)
        style = {"error": "red", "unchanged": "dim", "skipped": "dim", "grown": "cyan"}.get(
            r.status, ""
        )
        table.add_row(
            escape(shown),
            escape(r.format),
            f"[{style}]{r.status}[/{style}]" if style else r.status,
            f"{r.records_read:,}",
            f"{r.rows_written:,}",
            f"{r.rejected:,}",
            escape(note),
        )
    out.print(table)
    rows = sum(r.rows_written for r in reports)
    rej = sum(r.rejected for r in reports)
    unchanged = sum(r.status == "unchanged" for r in reports)
    skipped = sum(r.status == "skipped" for r in reports)
    errors = sum(r.status == "error" for r in reports)
    out.print(
        f"{len(reports)} file(s): {rows:,} rows written, {rej:,} rejected"
        + (f", {unchanged} already ingested" if unchanged else "")
        + (f", {skipped} not DNS (skipped)" if skipped else "")
        + (f", [red]{errors} failed[/red]" if errors else "")
    )
    span = lake.time_range()
    if span:
        hours = (span[1] - span[0]).total_seconds() / 3600
        out.print(
            f"lake spans {span[0]:%Y-%m-%d %H:%M:%S} to {span[1]:%Y-%m-%d %H:%M:%S} UTC ({hours:.1f} h)"
        )


MAX_FILE_ROWS = 25


def _group_reports(reports: list[FileReport]) -> list[FileReport]:
    from collections import Counter

    groups: dict[tuple[str, str], FileReport] = {}
    counts: Counter[tuple[str, str]] = Counter()
    out: list[FileReport] = []
    for r in reports:
        if r.status == "error":
            out.append(r)
            continue
        key = (r.format, r.status)
        counts[key] += 1
        g = groups.setdefault(key, FileReport(path="", status=r.status, format=r.format))
        g.records_read += r.records_read
        g.rows_written += r.rows_written
        for k, v in r.rejects.items():
            g.rejects[k] = g.rejects.get(k, 0) + v
        for k, v in r.skipped.items():
            g.skipped[k] = g.skipped.get(k, 0) + v
    for key, g in groups.items():
        g.path = f"({counts[key]} files)"
        out.insert(0, g)
    return out


def _common_parent(paths: list[Path]) -> Path | None:
    import os

    if len(paths) < 2:
        return paths[0].parent if paths else None
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:
        return None


def _shown_path(p: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(p.relative_to(base))
        except ValueError:
            pass
    return str(p)
