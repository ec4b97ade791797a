"""Real-browser tests of the Alert Manager: Playwright driving Debian's Chromium.

* ``live_store``/``live_url``: one uvicorn server per session on 127.0.0.1 (a free port,
  a background thread, stopped with ``should_exit``) serving :func:`dnsieve.web.create_app`
  on a SQLite store filled by the demo pipeline (:func:`dnsieve.demo.run_demo`: a
  simulated week through ingest, every detector and threat scoring), with an analyst
  and a viewer created through :class:`dnsieve.web.users.UserStore`.
* ``ui``: a fresh browser context per test (one Chromium per session).  Any console
  error, uncaught page error, or request to a host other than 127.0.0.1 (the app must
  work offline) fails the test, with the messages in the failure text.
* ``shot(page, name)``: a full-page screenshot under ``$DNSIEVE_ARTIFACTS``
  (default ``test-artifacts/screenshots``).

Everything here is marked ``browser`` (``pytest -m "not browser"`` leaves it out).
Without chromium or playwright the tests are skipped with the reason, except under
``CI``, where that is a failure: CI installs both.
"""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from dnsieve.alerts import AlertStore

if TYPE_CHECKING:
    from fastapi import FastAPI
    from playwright.sync_api import Browser, Locator, Page, Request, Route

    from dnsieve.demo import DemoResult

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
]
PASSWORD = "correct horse battery staple"
ANALYST, VIEWER = "ana", "vic"
LOCAL_HOST = "127.0.0.1"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: drives the Alert Manager in Chromium with Playwright (tests/browser)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)


def artifacts_dir() -> Path:
    """Where screenshots go: ``$DNSIEVE_ARTIFACTS`` or ``test-artifacts/screenshots``."""
    d = Path(os.environ.get("DNSIEVE_ARTIFACTS") or REPO / "test-artifacts" / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def _missing() -> list[str]:
    out = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        out.append("the playwright package (pip install playwright)")
    if not CHROMIUM.is_file():
        out.append(f"Chromium at {CHROMIUM} (apt-get install chromium)")
    return out


# --------------------------------------------------------------------------- page helpers

# Each <div data-plot> of the page holds a Bokeh canvas (in BokehJS's shadow roots) of
# non-zero size with something drawn on it: pixels that are neither blank nor white.
PLOT_DRAWN = """(ids) => ids.every((id) => {
  const canvases = [];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.tagName === "CANVAS") canvases.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    }
  };
  const host = document.getElementById(id);
  if (!host) return false;
  walk(host);
  return canvases.some((c) => {
    if (c.width === 0 || c.height === 0) return false;
    const ctx = c.getContext("2d");
    if (!ctx) return false;
    const px = ctx.getImageData(0, 0, c.width, c.height).data;
    let inked = 0;
    for (let i = 0; i < px.length; i += 4) {
      if (px[i + 3] > 0 && (px[i] < 200 || px[i + 1] < 200 || px[i + 2] < 200)) inked++;
    }
    return inked > 500;
  });
})"""

# The rows of an alert table keyed by column header (so added columns do not matter).
ROWS = """(table) => {
  const heads = [...table.querySelectorAll("thead th")].map((th) => th.innerText.trim());
  const col = (name) => heads.indexOf(name);
  return [...table.querySelectorAll("tbody tr")].filter((tr) => tr.querySelector("a")).map((tr) => {
    const c = tr.querySelectorAll("td");
    const text = (name) => (col(name) >= 0 ? c[col(name)].innerText.trim() : null);
    const entity = c[col("entity")];
    return {
      id: c[col("id")].querySelector("a").getAttribute("href").split("/").pop(),
      status: text("status"), severity: text("severity"), p: text("P(threat)"),
      score: text("score"), detector: text("detector"), window: text("window (UTC)"),
      entity: entity.querySelector("a").innerText,
      suppressed: entity.innerText.includes("(suppressed)"),
    };
  });
}"""


def rows(page: Page) -> list[dict[str, Any]]:
    """The rows of the page's first alert table, as shown."""
    out: list[dict[str, Any]] = page.locator("table.alerts").first.evaluate(ROWS)
    return out


def ids(page: Page) -> list[str]:
    return [r["id"] for r in rows(page)]


def counts(page: Page) -> dict[str, int]:
    """The queue's counts by status ("new 104", "threat 1", ...)."""
    out = {}
    for text in page.locator(".counts a.status").all_inner_texts():
        name, _, n = text.strip().rpartition(" ")
        out[name] = int(n)
    return out


def total(page: Page) -> int:
    m = re.match(r"(\d+) alert\(s\)", page.locator(".total").inner_text())
    assert m, page.locator(".total").inner_text()
    return int(m.group(1))


def submit(page: Page, button: Locator) -> None:
    """Click a button that submits a form, and wait for the page it leads to."""
    with page.expect_navigation():
        button.click()


def filter_queue(page: Page, **fields: str) -> None:
    """Fill the queue's filter form (field names as keys; ``q`` is the search box), submit."""
    form = page.locator("form.filters")
    for name, value in fields.items():
        box = form.locator(f"[name={name}]")
        if box.evaluate("el => el.tagName") == "SELECT":
            box.select_option(value)
        else:
            box.fill(value)
    submit(page, form.get_by_role("button", name="Filter"))


def nav(page: Page, name: str) -> None:
    submit(page, page.locator("header nav").get_by_role("link", name=name, exact=True))


# --------------------------------------------------------------------------- server


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 in a background thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOCAL_HOST, 0))  # the kernel picks a free port; no race with other tests
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 600  # a ceiling: a loaded machine only waits longer
    while not server.started:  # startup is an event in another thread: poll it, bounded
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the uvicorn test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{LOCAL_HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=120)
        sock.close()


def add_users(store: AlertStore) -> None:
    """The analyst and the viewer the tests log in as."""
    from dnsieve.web.users import UserStore

    users = UserStore(store.engine)
    users.add_user(ANALYST, "analyst", PASSWORD)
    users.add_user(VIEWER, "viewer", PASSWORD)


@pytest.fixture(scope="session")
def live_demo(tmp_path_factory: pytest.TempPathFactory) -> DemoResult:
    """The demo pipeline on a simulated week: DNS log → lake → detectors → threat model."""
    from dnsieve.demo import run_demo

    return run_demo(tmp_path_factory.mktemp("browser-demo"), hours=168, clients=80, seed=3)


@pytest.fixture(scope="session")
def live_store(live_demo: DemoResult) -> Iterator[AlertStore]:
    """The demo's alert store, with the tests' analyst and viewer."""
    store = AlertStore.open(live_demo.db)
    assert store.list_alerts(detector="volume"), "the demo week must raise a volume alert"
    add_users(store)
    yield store
    store.close()


@pytest.fixture(scope="session")
def live_url(live_demo: DemoResult, live_store: AlertStore) -> Iterator[str]:
    """The Alert Manager on the demo's store and lake, served by uvicorn."""
    from dnsieve.web import WebSettings, create_app

    with serve(create_app(WebSettings(), store=live_store, lake=live_demo.lake)) as url:
        yield url


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    missing = _missing()
    if missing:
        msg = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must install them", pytrace=False)
        pytest.skip(msg)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@dataclass
class Watch:
    """What a page did that it must not: console errors, page errors, foreign requests."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def expect_refusal(self, status: int, path: str) -> None:
        """A page the test expects the server to refuse: Chromium logs the HTTP error
        of the document ("Failed to load resource: ... status of 401"); only that exact
        console line is allowed, and it must occur (see :meth:`problems`)."""
        self.expected.append(
            re.compile(
                rf"Failed to load resource: the server responded with a status of {status}\b.*"
                rf"\(http://{re.escape(LOCAL_HOST)}:\d+{re.escape(path)}\)$"
            )
        )

    def problems(self) -> list[str]:
        unexpected = [m for m in self.console if not any(p.match(m) for p in self.expected)]
        unseen = [p.pattern for p in self.expected if not any(p.match(m) for m in self.console)]
        return (
            [f"console error: {m}" for m in unexpected]
            + [f"expected console line never logged: {p}" for p in unseen]
            + [f"page error: {m}" for m in self.errors]
            + [f"request off 127.0.0.1: {u}" for u in self.foreign]
        )


@dataclass
class UI:
    """One test's browser context: ``new_page()`` opens a watched tab on the live server."""

    base_url: str
    watch: Watch
    _new: Callable[[], Page]

    def new_page(self) -> Page:
        return self._new()


def _foreign(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme not in ("data", "blob", "about") and parts.hostname != LOCAL_HOST


def open_ui(browser: Browser, base_url: str) -> Generator[UI]:
    """A new context on ``base_url`` whose pages are watched (used by the ``ui`` fixtures)."""
    from playwright.sync_api import expect

    expect.set_options(timeout=120_000)  # ceilings: a loaded machine only waits longer
    watch = Watch()
    ctx = browser.new_context(
        base_url=base_url, viewport={"width": 1360, "height": 900}, service_workers="block"
    )
    ctx.set_default_timeout(120_000)

    def refuse(route: Route, request: Request) -> None:
        watch.foreign.append(request.url)
        route.abort()

    ctx.route(_foreign, refuse)

    def new_page() -> Page:
        page = ctx.new_page()
        page.on(
            "console",
            lambda m: (
                watch.console.append(f"{m.text} ({m.location.get('url')})")
                if m.type == "error"
                else None
            ),
        )
        page.on("pageerror", lambda e: watch.errors.append(f"{e.name}: {e.message}"))
        return page

    try:
        yield UI(base_url, watch, new_page)
    finally:
        ctx.close()


@pytest.fixture
def ui(browser: Browser, live_url: str) -> Generator[UI]:
    yield from open_ui(browser, live_url)


@pytest.fixture
def page(ui: UI) -> Page:
    return ui.new_page()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    """After a browser test passes its own checks, fail it on anything its pages logged."""
    result = yield
    ui = getattr(item, "funcargs", {}).get("ui")
    if isinstance(ui, UI):
        problems = ui.watch.problems()
        assert not problems, "the browser reported:\n" + "\n".join(problems)
    return result


@pytest.fixture(scope="session")
def shot() -> Callable[[Page, str], Path]:
    """``shot(page, name)``: a full-page screenshot saved as ``<artifacts>/<name>.png``."""
    out = artifacts_dir()

    def take(page: Page, name: str) -> Path:
        path = out / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def log_in(page: Page, name: str, password: str = PASSWORD) -> None:
    """Fill and submit the login form (the caller checks where it lands)."""
    page.goto("/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


@pytest.fixture
def login() -> Callable[[Page, str], None]:
    """``login(page, name)``: log in through the form and land on the queue."""
    from playwright.sync_api import expect

    def go(page: Page, name: str) -> None:
        log_in(page, name)
        expect(page.get_by_role("heading", name="Alert queue")).to_be_visible()

    return go
