"""The Alert Manager in a real browser: log in, filter, plots, verdicts, allow-list, roles.

Every step clicks and types in the pages as an analyst would (no API calls); what the
pages show is checked against the alert store the live server runs on.  The store is
the demo week (see ``conftest.live_store``); the tests share it, so each one picks
its own alerts and compares with the store at the time it runs.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if not os.environ.get("CI"):  # CI installs playwright: there a missing package must fail
    pytest.importorskip("playwright.sync_api", reason="browser tests need pip install playwright")
from playwright.sync_api import Locator, Page, expect

from dnsieve.alerts import Alert, AlertStore
from dnsieve.alerts.base import VERDICTS

from .conftest import (
    ANALYST,
    PASSWORD,
    PLOT_DRAWN,
    UI,
    VIEWER,
    counts,
    filter_queue,
    ids,
    nav,
    rows,
    submit,
    total,
)

Login = Callable[[Page, str], None]
Shot = Callable[[Page, str], Path]


def queue_order(alerts: list[Alert]) -> list[str]:
    """The default ("threat") order: P(threat) first (unscored last), then score, newest."""
    tp = sorted(alerts, key=lambda a: a.id)
    tp.sort(key=lambda a: a.window_start, reverse=True)
    tp.sort(key=lambda a: a.score, reverse=True)
    tp.sort(key=lambda a: (a.threat_probability is None, -(a.threat_probability or 0.0)))
    return [a.id for a in tp]


# --------------------------------------------------------------------------- 1. log in


def test_log_in_wrong_password_and_log_out(ui: UI, page: Page, shot: Shot) -> None:
    page.goto("/alerts")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Falerts$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    shot(page, "01-login")

    ui.watch.expect_refusal(401, "/login")
    page.get_by_label("User name").fill(ANALYST)
    page.get_by_label("Password").fill("not the password at all")
    submit(page, page.get_by_role("button", name="Log in"))
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.locator("header nav")).to_have_count(0)
    shot(page, "01-login-wrong-password")

    page.get_by_label("User name").fill(ANALYST)
    page.get_by_label("Password").fill(PASSWORD)
    submit(page, page.get_by_role("button", name="Log in"))
    expect(page).to_have_url(re.compile(r"/alerts$"))
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()
    expect(page.locator(".who")).to_have_text(f"{ANALYST} (analyst)")

    submit(page, page.get_by_role("button", name="Log out"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.goto("/review")  # the session is gone: back to the login form
    expect(page).to_have_url(re.compile(r"/login\?next=%2Freview$"))


# --------------------------------------------------------------------------- 2. queue


def test_filter_search_and_sort_the_queue(
    page: Page, login: Login, live_store: AlertStore, shot: Shot
) -> None:
    login(page, ANALYST)
    open_alerts = live_store.list_alerts(status="open")
    assert total(page) == len(open_alerts) > 50
    assert counts(page) == live_store.count_by_status()
    assert ids(page) == queue_order(open_alerts)[:50]  # first page of 50, in queue order
    expect(page.locator("a[rel=next]")).to_be_visible()
    shot(page, "02-queue")

    # by detector: the detector menu lists what the store has
    detectors = sorted({a.detector for a in live_store.list_alerts(status="all")})
    options = page.locator("form.filters select[name=detector] option").all_inner_texts()
    assert options == ["any", *detectors]
    filter_queue(page, detector="tunnel")
    tunnel = live_store.list_alerts(status="open", detector="tunnel")
    assert total(page) == len(tunnel) and ids(page) == queue_order(tunnel)[:50]
    assert {r["detector"] for r in rows(page)} == {"tunnel"}

    # by domain (the domain and its subdomains), within the detector
    domain = Counter(a.domain for a in tunnel if a.domain).most_common(1)[0][0]
    filter_queue(page, domain=domain)
    on_domain = [a for a in tunnel if a.domain == domain]
    assert on_domain and ids(page) == queue_order(on_domain)  # one alert per episode
    assert all(r["entity"].endswith(domain) for r in rows(page))
    shot(page, "03-queue-filtered")

    # sorted by score, then newest first
    filter_queue(page, sort="score")
    assert ids(page) == [a.id for a in sorted(on_domain, key=lambda a: (-a.score, a.id))]
    filter_queue(page, sort="newest")
    newest = live_store.list_alerts(status="open", detector="tunnel", order="recent")
    assert ids(page) == [a.id for a in newest if a.domain == domain]

    # free-text search over every detector, by part of a name and by id prefix
    filter_queue(page, detector="any", domain="", q=domain.split(".")[0].upper())
    found = [a for a in open_alerts if domain.split(".")[0] in a.entity.lower()]
    assert sorted(ids(page)) == sorted(a.id for a in found)
    target = found[0]
    filter_queue(page, q=target.id[:8])
    assert ids(page) == [target.id]

    # by client
    client = next(a.client for a in open_alerts if a.detector == "nxdomain" and a.client)
    filter_queue(page, q="", client=client)
    mine = [a for a in open_alerts if a.client == client]
    assert sorted(ids(page)) == sorted(a.id for a in mine)

    # by status, through the form and through the counts links; sorted by severity
    filter_queue(page, client="", status="all", sort="severity")
    everything = live_store.list_alerts(status="all")
    assert total(page) == len(everything)
    rank = {"critical": 3, "high": 2, "medium": 1, "low": 0}
    sev = [rank[r["severity"]] for r in rows(page)]
    assert sev == sorted(sev, reverse=True)
    status, n = next(iter(live_store.count_by_status().items()))
    submit(page, page.locator(".counts").get_by_role("link", name=f"{status} {n}"))
    expect(page.locator("form.filters [name=status]")).to_have_value(status)
    assert total(page) == n and {r["status"] for r in rows(page)} == {status}

    # pages: "next" shows the following 50 of the default queue
    nav(page, "Queue")
    first = ids(page)
    submit(page, page.locator("a[rel=next]"))
    assert ids(page) == queue_order(live_store.list_alerts(status="open"))[50:100]
    assert not set(first) & set(ids(page))


# --------------------------------------------------------------------------- 3. plots


def test_queue_by_campaign(page: Page, login: Login, live_store: AlertStore, shot: Shot) -> None:
    """ "by campaign" folds each detector × entity into one row (the windows of all its
    episodes); its link opens its alerts, one per episode."""
    login(page, ANALYST)
    open_alerts = live_store.list_alerts(status="open", limit=100_000)
    campaigns: Counter[tuple[str, str]] = Counter()
    episodes = Counter((a.detector, a.entity) for a in open_alerts)
    for a in open_alerts:
        campaigns[(a.detector, a.entity)] += a.n_windows
    page.get_by_label("by campaign").check()
    submit(page, page.get_by_role("button", name="Filter"))
    expect(page.locator(".total")).to_contain_text(f"{len(campaigns)} campaign(s)")
    table = page.locator("table.campaigns tbody tr")
    shown = table.evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.innerText))")
    assert len(shown) == min(len(campaigns), 50)
    assert all(int(r[2]) == campaigns[(r[0], r[1])] for r in shown)
    busiest = max(shown, key=lambda r: int(r[2]))
    assert int(busiest[2]) > 1  # the demo's tunnels span several windows
    shot(page, "03b-queue-by-campaign")
    submit(page, table.filter(has_text=busiest[1]).first.get_by_role("link"))
    got = rows(page)
    assert len(got) == episodes[(busiest[0], busiest[1])]
    assert {(r["detector"], r["entity"]) for r in got} == {(busiest[0], busiest[1])}


def test_alert_detail_renders_its_bokeh_plot(
    page: Page, login: Login, live_store: AlertStore, shot: Shot
) -> None:
    login(page, ANALYST)
    vol = live_store.list_alerts(status="open", detector="volume")[0]
    filter_queue(page, detector="volume")
    submit(page, page.locator("table.alerts").get_by_role("link", name=vol.entity).first)
    expect(page).to_have_url(re.compile(rf"/alerts/{vol.id}$"))
    expect(page.get_by_role("heading", name=vol.entity, exact=True)).to_be_visible()
    queries = vol.evidence["current"]["queries"]  # the volume detector's evidence
    expect(page.locator(".evidence li").first).to_contain_text(f"queried {queries:,} times")
    expect(page.locator(".evidence")).to_contain_text("baseline ≈")

    plots = page.locator("div[data-plot]")
    expect(plots.first).to_be_attached()
    plot_ids = [p.get_attribute("id") for p in plots.all()]
    assert "plot-volume" in plot_ids
    # BokehJS renders into shadow roots; Playwright's CSS engine pierces open ones
    canvas = page.locator("#plot-volume canvas").first
    expect(canvas).to_be_visible()
    box = canvas.bounding_box()
    assert box is not None and box["width"] > 300 and box["height"] > 100
    page.wait_for_function(PLOT_DRAWN, arg=plot_ids)
    expect(page.locator("#plot-volume")).not_to_contain_text("could not be drawn")
    # the raw events behind the alert, read from the demo's lake
    raw = page.locator("table.raw-events tbody tr")
    expect(raw.first).to_be_visible()
    qnames = raw.locator("td:nth-child(3)").all_inner_texts()
    assert qnames and all(q.rstrip(".").endswith(vol.entity) for q in qnames)
    shot(page, "04-alert-detail-plot")

    # "allow-list this" opens the allow-list form prefilled from the alert (nothing saved yet)
    submit(page, page.get_by_role("link", name=f"Allow-list {vol.domain} for volume…"))
    expect(page).to_have_url(re.compile(r"/allowlist\?.*#add$"))
    form = page.locator("form.grid")
    expect(form.get_by_label("Kind")).to_have_value("domain")
    expect(form.get_by_label("Value")).to_have_value(vol.domain or "")
    expect(form.get_by_label("Detector (optional)")).to_have_value("volume")
    expect(form.get_by_label("Reason")).to_have_value("")


# --------------------------------------------------------------------------- 4. verdicts


def _counts_after(before: dict[str, int], old: str, new: str) -> dict[str, int]:
    out = dict(before)
    out[old] -= 1
    out[new] = out.get(new, 0) + 1
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize(
    ("button", "label", "comment"),
    [
        ("threat", "threat", "C2 confirmed by the <i>sandbox</i>"),
        ("benign", "benign", 'CDN rotation, "expected" <b>fast-flux</b>'),
        ("not relevant", "not_relevant", "lab host & test traffic"),
    ],
)
def test_verdict_updates_score_status_and_queue(
    page: Page,
    login: Login,
    live_store: AlertStore,
    shot: Shot,
    button: str,
    label: str,
    comment: str,
) -> None:
    login(page, ANALYST)
    before = counts(page)
    open_total = total(page)
    filter_queue(page, detector="fastflux")
    row = rows(page)[0]
    assert row["status"] == "new"
    submit(page, page.locator(f'table.alerts a[href="/alerts/{row["id"]}"]').first)
    expect(page.locator(".meta .status")).to_have_text("new")

    page.get_by_label("Comment (optional)").fill(comment)
    submit(page, page.locator(".verdict").get_by_role("button", name=button, exact=True))
    flash = page.get_by_role("status")
    expect(flash).to_contain_text(f"Verdict recorded: new → {label}.")
    expect(flash).to_contain_text("P(threat) now")
    m = re.search(
        r"Threat model v(\d+) learned it: P\(threat\) now (\d\.\d\d); (\d+) alert",
        flash.inner_text(),
    )
    assert m, flash.inner_text()
    expect(page.locator(".meta .status")).to_have_text(label)
    expect(page.locator(".why .ptheat")).to_have_text(m.group(2))
    stored = live_store.get_alert(row["id"])
    assert stored.status == label and f"{stored.threat_probability:.2f}" == m.group(2)
    assert int(m.group(3)) > 0  # the other open alerts were re-scored by the new version
    history = page.locator("section.card", has=page.get_by_role("heading", name="History"))
    last = history.locator("tbody tr").last
    expect(last).to_contain_text(f"{ANALYST}new → {label}")
    expect(last.locator("td").nth(3)).to_have_text(comment)  # the comment is text, not markup
    if label == "threat":
        shot(page, "05-alert-after-verdict")

    # the queue: the alert left the open queue and counts moved from new to the label
    nav(page, "Queue")
    assert total(page) == open_total - 1
    assert counts(page) == _counts_after(before, "new", label)
    filter_queue(page, q=row["id"])
    expect(page.locator(".total")).to_have_text("0 alert(s)")
    submit(page, page.locator(".counts").get_by_role("link", name=re.compile(rf"^{label} \d+$")))
    filter_queue(page, q=row["id"])
    assert [(r["id"], r["status"]) for r in rows(page)] == [(row["id"], label)]


# --------------------------------------------------------------------------- 5. allow-list


def _allow_row(page: Page, value: str) -> Locator:
    return page.locator("table.allow tbody tr", has=page.locator("td.entity", has_text=value))


def test_allow_list_entry_hides_and_restores_alerts(
    page: Page, login: Login, live_store: AlertStore, shot: Shot
) -> None:
    login(page, ANALYST)
    tunnel = live_store.list_alerts(status="open", detector="tunnel")
    by_domain = Counter(a.domain for a in tunnel if a.domain).most_common()
    domain = by_domain[1][0]  # not the one test 2 filters on (it would pass either way)
    covered = sorted(a.id for a in live_store.list_alerts(status="open") if a.domain == domain)
    assert len(covered) >= 2
    filter_queue(page, domain=domain)
    assert sorted(ids(page)) == covered

    nav(page, "Allow-list")
    form = page.locator("form.grid")
    form.get_by_label("Kind").select_option("suffix")
    form.get_by_label("Value").fill(domain)
    form.get_by_label("Reason").fill("red-team exercise <b>ticket</b> #42")
    form.get_by_label("Expires (optional)").fill("7d")
    submit(page, form.get_by_role("button", name="Add"))
    expect(page.get_by_role("status")).to_contain_text(
        re.compile(rf"Allow-list entry \d+ added: it suppresses {len(covered)} alert\(s\)\.")
    )
    entry = _allow_row(page, domain)
    expect(entry).to_have_count(1)
    cells = entry.locator("td")
    expect(cells.nth(1)).to_have_text("active")
    expect(cells.nth(2)).to_have_text("suffix")
    expect(cells.nth(5)).to_have_text("red-team exercise <b>ticket</b> #42")
    expect(cells.nth(6)).to_have_text(ANALYST)
    expect(cells.nth(8)).not_to_have_text("never")
    expect(cells.nth(9)).to_have_text(str(len(covered)))
    shot(page, "06-allowlist")

    nav(page, "Queue")
    filter_queue(page, domain=domain)
    expect(page.locator(".total")).to_have_text("0 alert(s)")
    expect(page.locator("table.alerts tbody")).to_have_text("No alerts.")
    page.get_by_label("suppressed too").check()
    submit(page, page.get_by_role("button", name="Filter"))
    shown = rows(page)
    assert sorted(r["id"] for r in shown) == covered and all(r["suppressed"] for r in shown)

    nav(page, "Allow-list")
    dialogs: list[str] = []

    def accept(d: Any) -> None:
        dialogs.append(d.message)
        d.accept()

    page.once("dialog", accept)
    submit(page, _allow_row(page, domain).get_by_role("button", name="Remove"))
    assert dialogs == ["Remove this entry?"]
    expect(page.get_by_role("status")).to_contain_text("removed")
    expect(_allow_row(page, domain).locator("td").nth(1)).to_have_text("removed")
    expect(_allow_row(page, domain).get_by_role("button")).to_have_count(0)

    nav(page, "Queue")
    filter_queue(page, domain=domain)
    assert sorted(ids(page)) == covered
    assert not any(r["suppressed"] for r in rows(page))


# --------------------------------------------------------------------------- 6. viewer


def test_viewer_sees_no_verdict_buttons_and_cannot_post_one(
    ui: UI, page: Page, login: Login, live_store: AlertStore
) -> None:
    login(page, VIEWER)
    expect(page.locator(".who")).to_have_text(f"{VIEWER} (viewer)")
    first = rows(page)[0]
    submit(page, page.locator(f'table.alerts a[href="/alerts/{first["id"]}"]').first)
    expect(page.locator("h1.entity")).to_have_text(first["entity"])
    expect(page.get_by_role("heading", name="Verdict")).to_have_count(0)
    for name in ("threat", "benign", "not relevant"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(page.get_by_label("Comment (optional)")).to_have_count(0)
    assert page.locator('form[action$="/verdict"]').count() == 0

    # a hand-made form with the viewer's own valid CSRF token: the server refuses it
    ui.watch.expect_refusal(403, f"/alerts/{first['id']}/verdict")
    with page.expect_navigation():
        page.evaluate(
            """(id) => {
              const token = document.querySelector("form.logout input[name=csrf_token]").value;
              const f = document.createElement("form");
              f.method = "post"; f.action = `/alerts/${id}/verdict`;
              for (const [k, v] of [["csrf_token", token], ["label", "threat"]]) {
                const i = document.createElement("input");
                i.type = "hidden"; i.name = k; i.value = v; f.append(i);
              }
              document.body.append(f); f.submit();
            }""",
            first["id"],
        )
    expect(page.get_by_role("heading", name="403")).to_be_visible()
    assert live_store.get_alert(first["id"]).status == "new"
    assert live_store.audit_trail(first["id"]) == []

    nav(page, "Allow-list")
    expect(page.get_by_role("heading", name="Add an entry")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)


# --------------------------------------------------------------------------- other pages


def test_review_model_runs_and_api_pages(
    page: Page, login: Login, live_store: AlertStore, shot: Shot
) -> None:
    login(page, ANALYST)
    nav(page, "Needs review")
    expect(page.get_by_role("heading", name="Needs review")).to_be_visible()
    review = rows(page)
    assert review and all(r["status"] in ("new", "needs_review") for r in review)
    shot(page, "07-review")

    nav(page, "Model")
    expect(page.get_by_role("heading", name="Threat model")).to_be_visible()
    versions = live_store.list_model_versions()
    table = page.locator("table", has=page.locator("th", has_text=re.compile(r"^version$")))
    if versions:
        expect(table.locator("tbody tr")).to_have_count(len(versions))
        expect(table.locator("tbody tr td:first-child")).to_have_text(
            [f"v{v.id}" for v in versions]
        )
    else:
        expect(table.locator("tbody")).to_have_text("No model versions yet.")
    verdicts = {k: live_store.count_by_status(include_suppressed=True).get(k, 0) for k in VERDICTS}
    for k, n in verdicts.items():
        expect(page.locator("main > p .status", has_text=k)).to_have_text(f"{k} {n}")
    plot_ids = [p.get_attribute("id") for p in page.locator("div[data-plot]").all()]
    if plot_ids:  # precision@k over time, once there are verdicts
        page.wait_for_function(PLOT_DRAWN, arg=plot_ids)
    shot(page, "08-model")

    nav(page, "Runs")
    expect(page.get_by_role("heading", name="Runs and ingest")).to_be_visible()
    runs = live_store.list_runs()
    assert runs
    expect(page.locator("table tbody tr").first).to_contain_text(f"#{runs[0].id}")
    expect(page.locator("table tbody")).to_contain_text("dns.log")
    shot(page, "09-runs")

    nav(page, "API")
    expect(page.locator("main")).to_contain_text("/api/alerts")
    shot(page, "10-api-docs")
