"""Hostile names render inert in a real browser: no script runs, the text shows as text.

The names come off the wire: a crafted pcap (``write_hostile_pcap`` of
tests/test_web_security.py) carries labels with ``<script>``, ``"onmouseover=``,
non-UTF-8 bytes and ~250-character names; the pcap adapter decodes them and they are
stored as tunnel alerts the way test_web_security stores them.  The store also holds
the hostile alerts of tests/test_web.py (``open_web_store``), including a client ×
domain alert whose name carries ``<img onerror>``.

A trap is installed before any page script runs: ``alert``, ``confirm`` and
``prompt`` push into ``window.__xss``, and dialogs are recorded.  After every page
and after hovering every element that shows a hostile name, the trap must be empty,
no element may carry an ``on*`` attribute, every ``<script>`` must be the app's own,
and no ``<b>``, ``<i>``, ``<img>`` or ``<svg>`` element may have come from the data.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

if not os.environ.get("CI"):  # CI installs playwright: there a missing package must fail
    pytest.importorskip("playwright.sync_api", reason="browser tests need pip install playwright")
from playwright.sync_api import Browser, Dialog, Page, expect

from dnsieve.alerts import AlertStore
from test_web import HOSTILE, HOSTILE_PAIR, open_web_store
from test_web_security import WIRE_NAMES, hostile_pcap_alerts

from .conftest import PLOT_DRAWN, UI, filter_queue, ids, log_in, open_ui, serve, submit

Shot = Callable[[Page, str], Path]

TRAP = """
window.__xss = [];
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = (...args) => { window.__xss.push([name, ...args.map(String)]); return null; };
}
"""

# Everything on the page that could run script or came from data parsed as markup.
INJECTED = """() => {
  const bad = [];
  for (const el of document.querySelectorAll("*")) {
    for (const a of el.attributes) {
      if (/^on/i.test(a.name)) bad.push(`${el.tagName} has ${a.name}`);
      if (/^\\s*javascript:/i.test(a.value)) bad.push(`${el.tagName} ${a.name}=${a.value}`);
    }
  }
  for (const s of document.querySelectorAll("script")) {
    const src = s.getAttribute("src") || "";
    const json = s.getAttribute("type") === "application/json";
    if (!(src.startsWith("/") && !src.startsWith("//")) && !json) bad.push(s.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll("main b, main i, main img, main svg, main iframe, main object, main embed")) {
    bad.push(el.outerHTML.slice(0, 120));
  }
  return bad;
}"""

# Each element of <main> whose own text shows ``name`` (the innermost ones).
SHOWING = """(name) => [...document.querySelectorAll("main *")]
  .filter((el) => el.textContent.includes(name)
    && ![...el.children].some((c) => c.textContent.includes(name)))
  .map((el) => { el.scrollIntoView(); el.dispatchEvent(new MouseEvent("mouseover", {bubbles: true}));
                 return el.tagName; })"""


@pytest.fixture(scope="module")
def hostile() -> Iterator[tuple[AlertStore, list[str]]]:
    """The hostile store and the pcap's decoded query names."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="dnsieve-xss-") as d:
        tmp = Path(d)
        store = open_web_store(tmp)  # real alerts, hostile alerts, users viewer/analyst/admin
        anomalies, qnames = hostile_pcap_alerts(tmp / "hostile.pcap")
        assert store.upsert_anomalies(anomalies).inserted == len(WIRE_NAMES)
        assert "\\xff\\xfe\\x00<b>x.pcap-evil.com" in qnames and max(map(len, qnames)) > 240
        try:
            yield store, qnames
        finally:
            store.close()


@pytest.fixture
def ui(browser: Browser, hostile: tuple[AlertStore, list[str]]) -> Iterator[UI]:
    """Like the suite's ``ui``, on a server of its own for the hostile store."""
    from dnsieve.web import WebSettings, create_app

    with serve(create_app(WebSettings(), store=hostile[0])) as url:
        yield from open_ui(browser, url)


@pytest.fixture
def trapped(ui: UI) -> tuple[Page, list[str]]:
    """A page with the script trap installed, and the list of dialogs it opened."""
    page = ui.new_page()
    page.add_init_script(TRAP)
    dialogs: list[str] = []

    def record(d: Dialog) -> None:
        dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", record)
    return page, dialogs


def assert_inert(page: Page, dialogs: list[str], names: list[str]) -> None:
    """Nothing ran or was injected, and each name in ``names`` shows as literal text."""
    main = page.locator("main")
    for name in names:
        # a real pointer over the first element showing the name, and a mouseover
        # event dispatched on every element showing it
        main.get_by_text(name, exact=False).first.hover()
        assert page.evaluate(SHOWING, name), f"{name[:60]!r} is not on the page"
        expect(main).to_contain_text(name, use_inner_text=True)
    assert page.evaluate("window.__xss") == []
    assert dialogs == []
    assert page.evaluate(INJECTED) == []


def test_hostile_names_render_inert(
    trapped: tuple[Page, list[str]],
    hostile: tuple[AlertStore, list[str]],
    shot: Shot,
) -> None:
    page, dialogs = trapped
    store, qnames = hostile
    page.goto("/login")  # the trap catches what a script would do (checked, then reset)
    page.evaluate("alert('probe'); confirm('probe')")
    assert page.evaluate("window.__xss") == [["alert", "probe"], ["confirm", "probe"]]
    log_in(page, "analyst")
    expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()
    names = [*HOSTILE, HOSTILE_PAIR, *qnames]

    # the queue with every hostile alert on one page, then searches for the names
    filter_queue(page, q="evil")
    evil = [n for n in names if "evil" in n]
    assert set(ids(page)) == {store.list_alerts(entity=n)[0].id for n in evil}
    assert_inert(page, dialogs, evil)
    shot(page, "11-xss-queue")
    for needle in ("<script>", '"onmouseover=', "\\xff", "long-label", "<img"):
        filter_queue(page, q=needle)
        expected = [n for n in names if needle.lower() in n.lower()]
        assert expected and len(ids(page)) == len(expected), needle
        assert_inert(page, dialogs, expected)
    filter_queue(page, q="", domain="pcap-evil.com")
    assert len(ids(page)) == len(qnames)
    assert_inert(page, dialogs, qnames)

    # each hostile alert's page: the name as the heading text, in the evidence, related
    for name in names:
        alert = store.list_alerts(entity=name)[0]
        page.goto(f"/alerts/{alert.id}")
        expect(page.locator("h1.entity")).to_have_text(name)
        plots = [p.get_attribute("id") for p in page.locator("div[data-plot]").all()]
        if plots:  # the who-queried plot draws hostile client names on a canvas
            page.wait_for_function(PLOT_DRAWN, arg=plots)
        assert_inert(page, dialogs, [name])
        if name == WIRE_LONG:
            shot(page, "12-xss-alert-long-name")
        elif name == HOSTILE[0]:
            shot(page, "12-xss-alert-script")

    # the allow-list page shows the value and reason an analyst typed in
    page.get_by_role("link", name="Allow-list", exact=True).click()
    form = page.locator("form.grid")
    form.get_by_label("Kind").select_option("detector_entity")
    form.get_by_label("Value").fill(HOSTILE[1])
    form.get_by_label("Detector (optional)").select_option("tunnel")
    form.get_by_label("Reason").fill("<svg onload=alert(2)> and <b>bold</b>")
    submit(page, form.get_by_role("button", name="Add"))
    expect(page.get_by_role("status")).to_contain_text("it suppresses 1 alert(s)")
    assert_inert(page, dialogs, [HOSTILE[1], "<svg onload=alert(2)> and <b>bold</b>"])
    shot(page, "13-xss-allowlist")


WIRE_LONG = ".".join(label.decode("ascii") for label in WIRE_NAMES[3])
