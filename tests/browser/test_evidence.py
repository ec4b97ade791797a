"""Evidence an analyst can act on, in a real browser (issue 11, "Must show").

A simulated run (:func:`dnsieve.demo.run_demo`: 4 days, 120 hosts, seed 3) with the
campaigns that usually involve one client: a DNS tunnel, a DGA-infected host (the
host-level ``dga_host`` detector), a C2 beacon, and a new-domain campaign several hosts
start to query (``newdomain``).  Each alert page must lead with a reason sentence that
carries its numbers, name the client to look at (as a link to that client's alerts),
and draw its charts, the "who queried it" chart included, which used to be empty when
one client queried the domain.  The raw evidence stays one click away behind a
``<details>`` toggle, and no threat-model feature name (``ev_*``, ``lscore_*``) shows.
The queue shows the same reason and client per row.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if not os.environ.get("CI"):  # CI installs playwright: there a missing package must fail
    pytest.importorskip("playwright.sync_api", reason="browser tests need pip install playwright")
from playwright.sync_api import Browser, Page, expect

from dnsieve.alerts import AlertStore
from dnsieve.alerts.base import Alert
from dnsieve.web.evidence import alert_explanation

from .conftest import ANALYST, PLOT_DRAWN, UI, add_users, filter_queue, log_in, open_ui, serve

if TYPE_CHECKING:
    from dnsieve.demo import DemoResult

Shot = Callable[[Page, str], Path]

#: the detectors whose alert pages the issue names, and what each must show
KINDS = ("tunnel", "dga_host", "beacon", "newdomain")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    from dnsieve.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("evidence-run"), hours=96, clients=120, seed=3)


@pytest.fixture(scope="module")
def store(run: DemoResult) -> Iterator[AlertStore]:
    s = AlertStore.open(run.db)
    add_users(s)
    yield s
    s.close()


@pytest.fixture
def ui(browser: Browser, run: DemoResult, store: AlertStore) -> Iterator[UI]:
    """Like the suite's ``ui``, on a server of its own for this run's store and lake."""
    from dnsieve.web import WebSettings, create_app

    with serve(create_app(WebSettings(), store=store, lake=run.lake)) as url:
        yield from open_ui(browser, url)


def _alert_of(store: AlertStore, detector: str) -> Alert:
    """The most probable threat of ``detector``; for the tunnel, one a single client sent."""
    alerts = store.list_alerts(status="all", detector=detector, include_suppressed=True)
    if detector == "tunnel":
        alerts = [a for a in alerts if len(a.evidence.get("clients") or []) == 1]
    assert alerts, f"the simulated run raised no {detector} alert to show"
    return alerts[0]


def _client_of(alert: Alert) -> str:
    """The client the page must name first."""
    if alert.entity_type == "client":
        return alert.entity
    if alert.entity_type == "client_domain":
        return alert.entity.split("|", 1)[0]
    clients = alert.evidence.get("clients")
    assert isinstance(clients, list) and clients, alert.evidence
    return str(clients[0])


@pytest.mark.parametrize("detector", KINDS)
def test_alert_page_says_why_names_the_client_and_draws_its_charts(
    ui: UI, store: AlertStore, detector: str, shot: Shot
) -> None:
    alert = _alert_of(store, detector)
    page = ui.new_page()
    log_in(page, ANALYST)
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()
    page.goto(f"/alerts/{alert.id}")
    expect(page.locator("h1.entity")).to_have_text(alert.entity)

    # the reason: the detector's own sentence, with its numbers, before anything else
    reason = page.locator(".why p.reason")
    expect(reason).to_be_visible()
    text = reason.inner_text()
    assert text == alert_explanation(alert, alert.evidence).reason
    assert text == alert.evidence["reason"]  # written by the detector, not the fallback
    assert len(re.findall(r"\d[\d,.]*", text)) >= 2, text
    # the client to look at, first, as a link to its alerts
    client = _client_of(alert)
    first = page.locator(".why p.clients a.client").first
    expect(first).to_have_text(client)
    assert f"client={client}" in (first.get_attribute("href") or "")
    # one severity scale: the word, P(threat) and the calibrated rarity side by side
    figures = page.locator(".why dl.figures")
    expect(figures.locator("dd .sev")).to_have_text(alert.severity)
    expect(figures.locator("dd.rarity")).to_contain_text("1 in ")

    # the charts, drawn; the who-queried-it chart even for one client
    ids = [p.get_attribute("id") for p in page.locator("div[data-plot]").all()]
    assert "plot-who" in ids and "plot-volume" in ids, ids
    page.wait_for_function(PLOT_DRAWN, arg=ids)
    who = page.locator("#plot-who canvas").first
    box = who.bounding_box()
    assert box is not None and box["height"] >= 100, box

    # labelled evidence in words; the raw JSON behind a toggle; no model feature names
    labelled = page.locator(".evidence table.labelled")
    expect(labelled.locator("tr").first).to_be_visible()
    raw = page.locator("details.raw-evidence")
    expect(raw.locator("pre")).to_be_hidden()
    raw.locator("summary").click()
    expect(raw.locator("pre")).to_be_visible()
    expect(raw.locator("pre")).to_contain_text('"reason"')
    inputs = page.locator(".model-inputs").inner_text()
    assert not re.search(r"\b(ev|lscore|ctx|det|lex|pop)_[a-z_]+", inputs), inputs
    # the episode's windows
    expect(page.locator("table.windows tbody tr").first).to_be_visible()
    raw.locator("summary").click()  # closed again for the screenshot
    shot(page, f"20-evidence-{detector}")


def test_queue_rows_show_the_reason_and_the_client(ui: UI, store: AlertStore, shot: Shot) -> None:
    page = ui.new_page()
    log_in(page, ANALYST)
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()
    filter_queue(page, status="all")
    heads = page.locator("table.alerts thead th").all_inner_texts()
    assert {"client", "reason", "rarity", "severity"} <= set(heads)
    assert "score" not in heads  # detector scores live on the alert page only
    shot(page, "21-evidence-queue")
    for detector in KINDS:
        alert = _alert_of(store, detector)
        filter_queue(page, status="all", detector=detector)
        row = page.locator("table.alerts tbody tr").filter(
            has=page.locator(f'a[href="/alerts/{alert.id}"]')
        )
        expect(row).to_have_count(1)
        expect(row.locator("td.reason")).to_have_text(alert.evidence["reason"])
        expect(row.locator("td.client a")).to_have_text(_client_of(alert))
