"""``dnsieve demo``: a simulated week through the whole pipeline, and its admin bootstrap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from dnsieve.alerts.store import AlertStore
from dnsieve.cli import app
from dnsieve.demo import create_demo_admin, label_alerts, run_demo, truth_report


def test_run_demo_stores_alerts_that_point_at_campaigns(tmp_path: Path) -> None:
    res = run_demo(tmp_path, hours=48, clients=60, seed=3)
    assert res.events > 10_000
    assert res.alerts.height > 0
    assert "truth" in res.alerts.columns
    assert res.alerts["truth"].is_not_null().sum() >= 1
    with AlertStore.open(res.db) as store:
        stored = len(store.list_alerts(status="all", include_suppressed=True))
    assert 0 < stored <= res.alerts.height  # one alert per episode of windows
    # the truth report is told about the stored alerts, and agrees with the labels
    truth = res.truth
    assert truth is not None and truth.alerts == stored
    assert truth.on_attacks + truth.on_benign + truth.not_injected == stored
    labels = pl.read_csv(res.labels, infer_schema_length=None)
    attacks = labels.filter(pl.col("threat") == 1)
    assert truth.per_kind.filter(pl.col("threat") == 1)["campaigns"].sum() == (
        attacks["campaign"].n_unique()
    )
    caught = int(truth.per_kind.filter(pl.col("threat") == 1)["caught"].sum())
    assert caught + truth.missed.height == attacks["campaign"].n_unique()
    assert set(truth.missed["campaign"]) <= set(attacks["campaign"])


def test_demo_admin_gets_a_fresh_random_password(tmp_path: Path) -> None:
    from dnsieve.web.users import UserStore

    db = f"sqlite:///{tmp_path / 'a.db'}"
    first = create_demo_admin(db)
    second = create_demo_admin(db)
    assert first != second and len(first) >= 16
    with AlertStore.open(db) as store:
        users = UserStore(store.engine)
        assert users.authenticate("admin", second) is not None
        assert users.authenticate("admin", first) is None
        assert users.get_user("admin").role == "admin"  # type: ignore[union-attr]


def test_cli_demo_without_serving(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "demo",
            "--hours",
            "48",
            "--clients",
            "60",
            "--seed",
            "3",
            "--no-serve",
            "--dir",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    assert "point at an injected campaign" in res.output
    assert "recall per injected kind" in res.output
    assert "at entities where nothing was injected" in res.output
    assert "missed campaigns" in res.output or "every injected attack campaign" in res.output
    assert (tmp_path / "alerts.db").exists()


def _frame(rows: list[tuple[str, str, str, int, int]]) -> pl.DataFrame:
    """Alerts ``(detector, entity, day-hour start, hours, ...)`` on 2024-03-05."""
    t0 = datetime(2024, 3, 5, tzinfo=UTC)
    return pl.DataFrame(
        {
            "detector": [r[0] for r in rows],
            "entity": [r[1] for r in rows],
            "window_start": [t0 + timedelta(hours=r[3]) for r in rows],
            "window_end": [t0 + timedelta(hours=r[3] + r[4]) for r in rows],
        }
    )


LABELS = pl.DataFrame(
    {
        "kind": ["tunnel", "beacon", "dga", "dga", "dga", "benign_adoption", "newdomain"],
        "entity_type": ["domain", "client_domain", "client", "domain", "domain", "domain", "domain"],
        "entity": ["tun.example", "10.0.0.9|c2.example", "10.0.0.5", "qwkx.biz", "zzpr.net",
                   "saas.example", "phish.example"],
        "window_start": ["2024-03-05T01:00:00Z"] * 2 + ["2024-03-05T04:00:00Z"] * 3
        + ["2024-03-05T06:00:00Z", "2024-03-05T08:00:00Z"],
        "window_end": ["2024-03-05T03:00:00Z"] * 2 + ["2024-03-05T05:00:00Z"] * 3
        + ["2024-03-05T09:00:00Z", "2024-03-05T09:00:00Z"],
        "detector_family": ["tunnel", "beacon", "dga_host", "dga", "dga", "newdomain", "newdomain"],
        "description": ["t", "b", "d", "d", "d", "adoption", "campaign"],
        "campaign": ["tunnel-00", "beacon-00", "dga-00", "dga-00", "dga-00", "benign_adoption-00",
                     "newdomain-00"],
        "threat": [1, 1, 1, 1, 1, 0, 1],
    }
)  # fmt: skip


def test_truth_report_counts_campaigns_misses_and_false_alerts() -> None:
    alerts = _frame(
        [
            ("tunnel", "tun.example", "", 1, 1),  # the tunnel, twice
            ("volume", "tun.example", "", 2, 1),
            ("dga_host", "10.0.0.5", "", 4, 1),  # the DGA bot by its host
            ("newdomain", "saas.example", "", 7, 1),  # a benign adoption
            ("fastflux", "microsoft.com", "", 3, 1),  # nothing injected there
            ("fastflux", "microsoft.com", "", 4, 1),
            ("tunnel", "phish.example", "", 1, 1),  # right entity, wrong time
        ]
    )
    r = truth_report(alerts, LABELS)
    recall = {
        row["kind"]: (row["caught"], row["campaigns"]) for row in r.per_kind.iter_rows(named=True)
    }
    assert recall == {
        "beacon": (0, 1),
        "dga": (1, 1),
        "newdomain": (0, 1),
        "tunnel": (1, 1),
        "benign_adoption": (1, 1),
    }
    assert r.recall("tunnel") == 1.0 and r.recall("beacon") == 0.0 and r.recall("exfil") is None
    assert r.per_kind["kind"].to_list()[-1] == "benign_adoption"  # attacks first
    assert r.missed.select("kind", "campaign", "entity").rows() == [
        ("beacon", "beacon-00", "10.0.0.9|c2.example"),
        ("newdomain", "newdomain-00", "phish.example"),
    ]
    assert (r.alerts, r.on_attacks, r.on_benign, r.not_injected) == (7, 3, 1, 3)
    assert r.false_entities.rows() == [
        ("fastflux", "microsoft.com", 2),
        ("tunnel", "phish.example", 1),
    ]
    truth = label_alerts(alerts, LABELS)["truth"].to_list()
    assert truth == ["tunnel", "tunnel", "dga", "benign_adoption", None, None, None]


def test_truth_report_of_older_label_files_and_no_alerts() -> None:
    """Label files without campaign/threat columns: a campaign per kind × entity, and
    benign_* kinds are not attacks; no alerts at all: every campaign is missed."""
    old = LABELS.drop("campaign", "threat")
    r = truth_report(_frame([]).cast({"detector": pl.String, "entity": pl.String}), old)
    assert r.alerts == 0 and r.not_injected == 0
    assert r.missed.height == 6  # three DGA labels are three campaigns without a campaign id
    assert r.per_kind.filter(pl.col("kind") == "benign_adoption")["threat"].to_list() == [0]


def test_cli_renders_the_truth_report() -> None:
    from rich.console import Console

    from dnsieve.commands.demo import _render_truth

    alerts = label_alerts(_frame([("fastflux", "microsoft.com", "", 3, 1)]), LABELS)
    console = Console(record=True, width=160)
    _render_truth(alerts, console, truth_report(alerts, LABELS))
    text = console.export_text()
    assert "recall per injected kind" in text and "tunnel" in text and "0 of 1" in text
    assert "missed campaigns (4)" in text and "10.0.0.5; qwkx.biz, zzpr.net" in text
    assert "1 alert: 0 point at an injected campaign" in text
    assert "microsoft.com (fastflux ×1)" in text


@pytest.mark.parametrize("width", [80, 200])
def test_alert_lines_show_the_reason_escaped_at_any_width(width: int) -> None:
    """Narrow consoles list each alert on two lines (facts, then the reason), wide ones
    get a table; hostile names and reasons are never read as rich markup."""
    from rich.console import Console

    from dnsieve.commands.detect import AlertLine, print_alert_lines
    from dnsieve.explain import Explanation

    hostile = "[bold red]x[/].evil.example"
    why = Explanation(
        f"10.0.0.7 sent 6,028 queries under {hostile} in 1 h (TXT 92 %)", ["10.0.0.7"]
    )
    console = Console(record=True, width=width)
    print_alert_lines(
        [AlertLine("tunnel", hostile, "2024-03-05 06:00", "1 in 11 M", why)], console, "top"
    )
    text = console.export_text()
    assert text.count(hostile) == 2  # the entity and inside the reason, literally
    assert "6,028 queries" in text and "1 in 11 M" in text
    assert ("┃" in text) == (width >= 130)
