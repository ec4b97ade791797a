"""Anomaly rules: a small, safe expression language compiled to Polars expressions.

An anomaly rule is a condition over an anomaly's detector, score, entity, client group and
threat features, for example::

    detector == "visitors" and ctx_age_h < 24 and ev_clients >= 5
    detector in ["dga_host", "nxdomain"] and endswith(entity, ".corp.example") == False
    score >= 0.99 or (detector == "tunnel" and ev_queries > 1000)

The text is parsed with Python's :mod:`ast` parser in ``eval`` mode and only a whitelist of
nodes is accepted: ``and``/``or``/``not``, comparisons (``== != < <= > >= in not in``),
``+ - * /``, parentheses, string/number/boolean literals, lists of literals, names of known
columns, and the functions :data:`FUNCTIONS`.  Nothing is ever evaluated by Python: the tree
is translated into one vectorised Polars expression, so a rule cannot call, import or read
anything.  Unknown names and constructs raise :class:`ExprError` naming them and their column.

>>> import polars as pl
>>> rule = compile_expr('detector == "visitors" and ev_clients >= 5', ["detector", "ev_clients"])
>>> df = pl.DataFrame({"detector": ["visitors", "visitors", "dga"], "ev_clients": [7, 2, 9]})
>>> df.filter(rule.expr)["ev_clients"].to_list()
[7]
>>> compile_expr("__import__('os')", ["detector"])
Traceback (most recent call last):
...
dnsieve.rules.expr.ExprError: function '__import__' is not allowed (allowed: contains, endswith, in_cidr, lower, matches, startswith) at column 1
"""

from __future__ import annotations

import ast
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

__all__ = ["FUNCTIONS", "MAX_LENGTH", "CompiledExpr", "ExprError", "compile_expr"]

#: Longest accepted expression text (characters).
MAX_LENGTH = 4096
_MAX_NODES = 500


class ExprError(ValueError):
    """An expression the language does not accept; the message says what and where."""


@dataclass(frozen=True)
class CompiledExpr:
    """A checked expression: its text, the columns it reads and the Polars expression."""

    text: str
    names: tuple[str, ...]
    expr: pl.Expr


def _str_fn(method: str) -> Callable[[pl.Expr, Any], pl.Expr]:
    def fn(col: pl.Expr, arg: Any) -> pl.Expr:
        if not isinstance(arg, str):
            raise ExprError(f"{method}() takes a text literal as its second argument")
        s = col.cast(pl.String)
        if method == "startswith":
            return s.str.starts_with(arg)
        if method == "endswith":
            return s.str.ends_with(arg)
        if method == "contains":
            return s.str.contains(arg, literal=True)
        # matches: a regular expression (Rust regex: linear time, no backtracking)
        try:
            import re

            re.compile(arg)
        except re.error as exc:
            raise ExprError(f"matches(): bad regular expression: {exc}") from None
        return s.str.contains(arg)

    return fn


def _in_cidr(col: pl.Expr, arg: Any) -> pl.Expr:
    if not isinstance(arg, str):
        raise ExprError("in_cidr() takes a CIDR text literal, e.g. in_cidr(client, '10.0.0.0/8')")
    try:
        net = ipaddress.ip_network(arg, strict=False)
    except ValueError as exc:
        raise ExprError(f"in_cidr(): {exc}") from None

    def member(value: str | None) -> bool | None:
        if value is None:
            return None
        try:
            return ipaddress.ip_address(value.split("|")[0]) in net
        except ValueError:
            return False

    return col.cast(pl.String).map_elements(member, return_dtype=pl.Boolean)


#: Functions a rule may call: name → (arity, builder).
FUNCTIONS: dict[str, tuple[int, Callable[..., pl.Expr]]] = {
    "contains": (2, _str_fn("contains")),
    "endswith": (2, _str_fn("endswith")),
    "in_cidr": (2, _in_cidr),
    "lower": (1, lambda col: col.cast(pl.String).str.to_lowercase()),
    "matches": (2, _str_fn("matches")),
    "startswith": (2, _str_fn("startswith")),
}

_CMP: dict[type[ast.cmpop], Callable[[pl.Expr, Any], pl.Expr]] = {
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: lambda a, b: a < b,
    ast.LtE: lambda a, b: a <= b,
    ast.Gt: lambda a, b: a > b,
    ast.GtE: lambda a, b: a >= b,
}
_BIN: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}


def _where(node: ast.AST) -> str:
    return f"at column {getattr(node, 'col_offset', 0) + 1}"


class _Compiler:
    def __init__(self, names: Iterable[str]) -> None:
        self.allowed = set(names)
        self.used: set[str] = set()

    def literal(self, node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            v = self.literal(node.operand)
            if isinstance(v, int | float) and not isinstance(v, bool):
                return -v
        raise ExprError(f"expected a text, number or boolean literal {_where(node)}")

    def value(self, node: ast.AST) -> Any:
        """A Polars expression, or a Python literal for constants."""
        if isinstance(node, ast.Constant) or (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
        ):
            return self.literal(node)
        if isinstance(node, ast.Name):
            if node.id not in self.allowed:
                known = ", ".join(sorted(self.allowed)[:40])
                raise ExprError(f"unknown name {node.id!r} {_where(node)} (known: {known})")
            self.used.add(node.id)
            return pl.col(node.id)
        if isinstance(node, ast.BoolOp):
            parts = [self.boolean(v) for v in node.values]
            out = parts[0]
            for p in parts[1:]:
                out = (out & p) if isinstance(node.op, ast.And) else (out | p)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~self.boolean(node.operand)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -self.expr(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            # Both sides as Polars expressions: Python never computes on literals
            # (no 0/0 exception, no 'x' * 10**9 string built in memory).
            return _BIN[type(node.op)](self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.Compare):
            return self.compare(node)
        if isinstance(node, ast.Call):
            return self.call(node)
        raise ExprError(f"{type(node).__name__} is not allowed {_where(node)}")

    def expr(self, node: ast.AST) -> pl.Expr:
        v = self.value(node)
        return v if isinstance(v, pl.Expr) else pl.lit(v)

    def boolean(self, node: ast.AST) -> pl.Expr:
        return self.expr(node)

    def compare(self, node: ast.Compare) -> pl.Expr:
        out: pl.Expr | None = None
        left: ast.AST = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn):
                if not isinstance(right, ast.List | ast.Tuple | ast.Set):
                    raise ExprError(f"'in' needs a list of literals {_where(right)}")
                items = [self.literal(e) for e in right.elts]
                term = self.expr(left).is_in(items)
                if isinstance(op, ast.NotIn):
                    term = ~term
            elif type(op) in _CMP:
                term = _CMP[type(op)](self.expr(left), self.value(right))
            else:
                raise ExprError(f"operator {type(op).__name__} is not allowed {_where(node)}")
            out = term if out is None else (out & term)
            left = right
        assert out is not None
        return out

    def call(self, node: ast.Call) -> pl.Expr:
        if not isinstance(node.func, ast.Name):
            raise ExprError(f"only plain function calls are allowed {_where(node)}")
        name = node.func.id
        if name not in FUNCTIONS:
            raise ExprError(
                f"function {name!r} is not allowed (allowed: {', '.join(sorted(FUNCTIONS))}) "
                f"{_where(node)}"
            )
        if node.keywords:
            raise ExprError(f"{name}() takes no keyword arguments {_where(node)}")
        arity, build = FUNCTIONS[name]
        if len(node.args) != arity:
            raise ExprError(f"{name}() takes {arity} argument(s) {_where(node)}")
        first = self.expr(node.args[0])
        rest = [self.literal(a) for a in node.args[1:]]
        return build(first, *rest)


def compile_expr(text: str, names: Iterable[str]) -> CompiledExpr:
    """Parse and check ``text`` against the column ``names`` it may read; build its expression.

    Raises :class:`ExprError` for a syntax error, an unknown name, a function outside
    :data:`FUNCTIONS`, or any construct outside the language.
    """
    if not isinstance(text, str) or not text.strip():
        raise ExprError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"syntax error at column {exc.offset or 0}: {exc.msg}") from None
    if sum(1 for _ in ast.walk(tree)) > _MAX_NODES:
        raise ExprError(f"the expression has more than {_MAX_NODES} parts")
    comp = _Compiler(names)
    expr = comp.expr(tree.body)
    return CompiledExpr(text=text.strip(), names=tuple(sorted(comp.used)), expr=expr)
