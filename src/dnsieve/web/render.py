"""Rendering pages: one Jinja2 environment per app, autoescaping every template.

Every domain, client, comment and reason shown is attacker-controlled text;
templates never mark data ``|safe``.  JSON for the Bokeh plots goes through
Jinja's ``tojson`` (which escapes ``<``, ``>``, ``&`` and ``'``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup, escape

from dnsieve.explain import one_in
from dnsieve.web.security import CSRF_FIELD, csrf_token

__all__ = ["flash", "inline_code", "make_environment", "page"]

_LITERAL = re.compile(r"``(.+?)``|`([^`]+?)`")


def _fmt_time(ts: datetime | None) -> str:
    if ts is None:
        return ""
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _fmt_p(p: float | None) -> str:
    return "" if p is None else f"{p:.2f}"


def _fmt_num(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.4g}"


def _fmt_thousands(n: int | float | None) -> str:
    return "" if n is None else f"{n:,}"


def inline_code(text: str | None) -> Markup:
    """Docstring text for a page: escaped, with ````x```` / ```x``` literals as ``<code>``.

    >>> str(inline_code("Returns ``available`` & <b>"))
    'Returns <code>available</code> &amp; &lt;b&gt;'
    """
    if not text:
        return Markup("")
    escaped = str(escape(text))  # markup in the text is inert before any tag is added
    return Markup(_LITERAL.sub(lambda m: f"<code>{m.group(1) or m.group(2)}</code>", escaped))


def make_environment() -> jinja2.Environment:
    """The templates shipped in ``dnsieve/web/templates``, autoescape on for everything."""
    path = resources.files("dnsieve.web") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(path)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        time=_fmt_time,
        prob=_fmt_p,
        num=_fmt_num,
        thousands=_fmt_thousands,
        code=inline_code,
        one_in=one_in,
    )
    # |tojson must keep key order: a Bokeh json_item defines each model at its
    # first occurrence and refers to it by id afterwards; sorted keys put some
    # references before their definitions ("reference p1036 isn't known").
    # The HTML-safe escaping of <, >, & and ' is unaffected.
    env.policies["json.dumps_kwargs"] = {"sort_keys": False}
    return env


def flash(request: Request, message: str) -> None:
    """A one-shot message shown on the next page."""
    request.session["flash"] = message[:500]


def page(request: Request, template: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    """Render ``template`` with the user, the CSRF token and any flash message."""
    from dnsieve.web.plots import bokeh_script_urls

    env: jinja2.Environment = request.app.state.templates
    user = getattr(request.state, "user", None)
    html = env.get_template(template).render(
        request=request,
        user=user,
        csrf_field=CSRF_FIELD,
        csrf_token=csrf_token(request.session),
        flash=request.session.pop("flash", None),
        bokeh_js=bokeh_script_urls() if ctx.pop("with_bokeh", False) else [],
        **ctx,
    )
    return HTMLResponse(html, status_code=status_code)
