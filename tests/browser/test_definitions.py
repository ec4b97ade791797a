"""Threat definitions in a real browser: write, see the error, fix, test, approve, raise.

An analyst writes a Sigma rule on the Definitions page, gets the validation error inline,
fixes the rule, tests it against the demo lake and sees its hits; an admin enables it, and
the next run raises its alerts.  A viewer cannot write definitions, and a hostile name and
body are rendered as text.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

if not os.environ.get("CI"):  # CI installs playwright: there a missing package must fail
    pytest.importorskip("playwright.sync_api", reason="browser tests need pip install playwright")
from playwright.sync_api import Page, expect

from dnsieve.alerts import AlertStore
from dnsieve.demo import DemoResult
from dnsieve.lake import Lake

from .conftest import ANALYST, PASSWORD, UI, VIEWER, log_in, nav, submit

Login = Callable[[Page, str], None]
Shot = Callable[[Page, str], Path]
ADMIN = "ada"
HOSTILE = '<img src=x onerror="document.title=1">evil</b>'


def _quiet_domain(lake: Path) -> str:
    """A domain the demo week queried a few dozen times: hits without flooding the page."""
    counts = (
        Lake(lake).scan().group_by("registered_domain").len().filter(pl.col("len").is_between(20, 200))
        .sort(["len", "registered_domain"]).collect()
    )  # fmt: skip
    return str(counts["registered_domain"][0])


def test_write_fix_test_enable_and_run(
    ui: UI, page: Page, login: Login, live_store: AlertStore, live_demo: DemoResult, shot: Shot
) -> None:
    from dnsieve.jobs import run_job
    from dnsieve.web.users import UserError, UserStore

    domain = _quiet_domain(live_demo.lake)
    rule = (
        f"title: Lookups of {domain}\nlogsource:\n  category: dns\ndetection:\n"
        f"  sel:\n    query|endswith: '{domain}'\n    Z: 0\n  condition: sel\n"
        "tags:\n  - attack.t1071.004\n"
    )
    login(page, ANALYST)
    nav(page, "Definitions")
    form = page.locator("form.definition-form")
    form.get_by_label("Kind").select_option("sigma")
    form.get_by_label("Reason").fill("this vendor is off limits")
    form.get_by_label(re.compile("^Body")).fill(rule)
    ui.watch.expect_refusal(422, "/definitions")  # the form comes back with its error
    submit(page, form.get_by_role("button", name="Validate and save as draft"))
    expect(page.locator(".errors")).to_contain_text("field 'Z' not in dnsieve's DNS event schema")
    shot(page, "20-definition-error")

    form = page.locator("form.definition-form")
    form.get_by_label(re.compile("^Body")).fill(rule.replace("    Z: 0\n", ""))
    submit(page, form.get_by_role("button", name="Validate and save as draft"))
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Lookups of {domain}")
    expect(page.locator("dl.facts")).to_contain_text("draft")
    expect(page.get_by_role("button", name="Enable")).to_have_count(0)  # analysts do not approve
    url = page.url  # /definitions/<id>
    submit(page, page.get_by_role("button", name="Test"))
    result = page.locator("#hunt-result")
    expect(result).to_contain_text("matching events")
    expect(result.locator("table.hits tbody tr").first).to_contain_text(domain)
    shot(page, "21-definition-tested")

    with contextlib.suppress(UserError):  # another test may have created the admin
        UserStore(live_store.engine).add_user(ADMIN, "admin", PASSWORD)
    submit(page, page.get_by_role("button", name="Log out"))
    log_in(page, ADMIN)
    page.goto(url)
    submit(page, page.get_by_role("button", name="Enable"))
    expect(page.get_by_role("status")).to_contain_text("is now enabled")

    _, _, alerts = run_job([live_demo.log], live_demo.lake, store_url=live_demo.db)
    raised = alerts.filter(pl.col("detector") == f"rule:Lookups of {domain}")
    assert raised.height > 0 and set(raised["entity"]) == {domain}
    stored = [
        a for a in live_store.list_alerts(status="all", limit=500) if a.detector.startswith("rule:")
    ]
    assert stored and all(a.domain == domain for a in stored)


def test_viewer_cannot_write_and_hostile_text_is_inert(
    page: Page, login: Login, shot: Shot
) -> None:
    login(page, ANALYST)
    nav(page, "Definitions")
    form = page.locator("form.definition-form")
    form.get_by_label("Kind").select_option("watchlist")
    form.get_by_label("Name").fill(HOSTILE)
    form.get_by_label("Reason").fill(HOSTILE)
    form.get_by_label(re.compile("^Body")).fill(f"evil.example  # {HOSTILE}\n")
    submit(page, form.get_by_role("button", name="Validate and save as draft"))
    expect(page.get_by_role("heading", level=1)).to_have_text(HOSTILE)
    expect(page.locator("main img")).to_have_count(0)
    assert page.title() != "1"
    expect(page.locator("pre.definition-body")).to_contain_text(HOSTILE)
    shot(page, "22-definition-hostile")

    submit(page, page.get_by_role("button", name="Log out"))
    log_in(page, VIEWER)
    page.goto("/definitions")
    expect(page.get_by_role("heading", name="Threat definitions")).to_be_visible()
    expect(page.locator("form.definition-form")).to_have_count(0)
    expect(page.get_by_role("link", name=HOSTILE)).to_have_count(1)
