"""``dnsieve demo``: a simulated week through the whole pipeline, and its admin bootstrap."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from dnsieve.alerts.store import AlertStore
from dnsieve.cli import app
from dnsieve.demo import create_demo_admin, run_demo


def test_run_demo_stores_alerts_that_point_at_campaigns(tmp_path: Path) -> None:
    res = run_demo(tmp_path, hours=48, clients=60, seed=3)
    assert res.events > 10_000
    assert res.alerts.height > 0
    assert "truth" in res.alerts.columns
    assert res.alerts["truth"].is_not_null().sum() >= 1
    with AlertStore.open(res.db) as store:
        assert len(store.list_alerts(status="all", include_suppressed=True)) == res.alerts.height


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
    assert (tmp_path / "alerts.db").exists()
