"""The anomaly-rule expression language: table-driven semantics and a Hypothesis fuzz."""

from __future__ import annotations

import contextlib

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsieve.rules.expr import ExprError, compile_expr

FRAME = pl.DataFrame(
    {
        "detector": ["visitors", "visitors", "dga_host", "tunnel"],
        "entity": ["new.example", "old.example", "10.0.0.9", "t.evil.example"],
        "score": [0.95, 0.4, 0.999, 0.7],
        "ev_clients": [7, 2, 1, 1],
        "ctx_age_h": [3.0, 900.0, None, 12.0],
    }
)
NAMES = FRAME.columns


@pytest.mark.parametrize(
    ("text", "rows"),
    [
        ('detector == "visitors" and ctx_age_h < 24 and ev_clients >= 5', [0]),
        ('detector in ["dga_host", "tunnel"]', [2, 3]),
        ('detector not in ["dga_host", "tunnel"]', [0, 1]),
        ("score >= 0.9 or ev_clients > 5", [0, 2]),
        ("not (score < 0.9)", [0, 2]),
        ('endswith(entity, ".evil.example")', [3]),
        ('startswith(entity, "10.") and in_cidr(entity, "10.0.0.0/8")', [2]),
        ('matches(entity, "^(new|old)\\\\.")', [0, 1]),
        ('contains(lower(detector), "vis") == False', [2, 3]),
        ("0.5 < score < 0.99", [0, 3]),
        ("score * 10 - 1 > 8", [0, 2]),
        ("ev_clients >= -1", [0, 1, 2, 3]),
    ],
)
def test_semantics(text: str, rows: list[int]) -> None:
    rule = compile_expr(text, NAMES)
    got = FRAME.with_row_index("i").filter(rule.expr)["i"].to_list()
    assert got == rows


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('id')", "only plain function calls|not allowed"),
        ("open('/etc/passwd')", "function 'open' is not allowed"),
        ("score.__class__", "Attribute is not allowed"),
        ("[x for x in score]", "ListComp is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("password > 1", "unknown name 'password'"),
        ("score >", "syntax error"),
        ("", "empty"),
        ("x" * 5000, "longer than"),
        ("detector in detector", "needs a list"),
        ("matches(entity, '(')", "bad regular expression"),
        ("in_cidr(entity, 'not-a-net')", "in_cidr"),
        ("startswith(entity, key='a')", "keyword"),
    ],
)
def test_rejections_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(ExprError, match=message):
        compile_expr(text, NAMES)


def test_names_used_are_reported() -> None:
    rule = compile_expr("score > 0.5 and detector == 'dga_host'", NAMES)
    assert rule.names == ("detector", "score")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_fuzz_any_text_is_accepted_or_refused_cleanly(text: str) -> None:
    try:
        rule = compile_expr(text, NAMES)
    except ExprError:
        return
    # Whatever compiles evaluates on a frame without escaping the language.
    # A type mismatch such as "text" > 1 is Polars' error, not code execution.
    with contextlib.suppress(pl.exceptions.PolarsError):
        FRAME.select(rule.expr)
