"""Registered-domain split and name normalisation."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dnsieve.domains import DomainSplitter, escape_name, normalize_qnames


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("www.example.com", ("example.com", "www", "com")),
        ("a.b.example.co.uk", ("example.co.uk", "a.b", "co.uk")),
        ("foo.github.io", ("foo.github.io", "", "github.io")),
        ("x.y.foo.github.io", ("foo.github.io", "x.y", "github.io")),
        ("bucket.s3.amazonaws.com", ("bucket.s3.amazonaws.com", "", "s3.amazonaws.com")),
        ("1.0.168.192.in-addr.arpa", ("192.in-addr.arpa", "1.0.168", "in-addr.arpa")),
        ("wpad", ("wpad", "", "wpad")),
        ("co.uk", ("co.uk", "", "co.uk")),
        ("host.corp.local", ("corp.local", "host", "local")),
        ("", ("", "", "")),
    ],
)
def test_split_table(name: str, expected: tuple[str, str, str]) -> None:
    assert DomainSplitter().split(name) == expected


def test_icann_only_option() -> None:
    assert DomainSplitter(private_suffixes=False).split("foo.github.io") == (
        "github.io",
        "foo",
        "io",
    )


def test_normalize_lowercases_strips_dot_escapes() -> None:
    s = pl.Series("q", ["WWW.Example.COM.", "a b.com", "caf\u00e9.fr", "<script>.x.com", None, "."])
    out = normalize_qnames(s).to_list()
    assert out == [
        "www.example.com",
        "a\\x20b.com",
        "caf\\xc3\\xa9.fr",
        "<script>.x.com",
        None,
        ".",
    ]


def test_escape_name_bytes() -> None:
    assert escape_name(b"A\x00b\xff.Com.") == "a\\x00b\\xff.com"


@given(st.binary(max_size=300))
def test_escape_is_printable_ascii_and_injective_enough(raw: bytes) -> None:
    s = escape_name(raw)
    assert all(0x21 <= ord(c) <= 0x7E for c in s)


@given(st.lists(st.text(max_size=80), max_size=30))
def test_split_series_never_raises(names: list[str]) -> None:
    ser = normalize_qnames(pl.Series("q", names, dtype=pl.String))
    out = DomainSplitter().split_series(ser)
    assert out.height == len(names)
    assert out.columns == ["registered_domain", "subdomain", "tld"]


def test_read_domain_lines_skips_over_long_lines_without_holding_them() -> None:
    import io

    from dnsieve.domainscore import read_domain_lines

    data = b"example.com\n" + b"a" * (5 << 20) + b"\nfoo.example.org\n" + b"b" * 300 + b"\n"
    names, skipped = read_domain_lines(io.BytesIO(data))
    assert names == ["example.com", "foo.example.org"]
    assert skipped == 2


@pytest.mark.parametrize("private", [True, False], ids=["private", "icann"])
def test_split_series_agrees_with_the_psl_on_every_rule(private: bool) -> None:
    """The vectorised split (PSL once per distinct tail) equals the per-name PSL split.

    Names are built from every rule of the bundled list (wildcards filled in,
    exceptions as written, IDN rules in punycode) with zero to three labels in
    front, plus odd names (empty labels, dots at the ends, escapes, Unicode).
    """
    from importlib import resources

    from dnsieve.domains import _psl, _split

    text = (resources.files("publicsuffixlist") / "public_suffix_list.dat").read_text("utf-8")
    names: list[str | None] = [None]
    for line in text.splitlines():
        rule = line.strip().split(" ", 1)[0]
        if not rule or rule.startswith("//"):
            continue
        labels = rule.lstrip("!").replace("*", "w").split(".")
        try:
            rule = ".".join(x.encode("idna").decode("ascii") for x in labels)
        except UnicodeError:
            rule = ".".join(labels)
        names += [rule, f"a.{rule}", f"b.a.{rule}", f"c.b.a.{rule}", "x." + rule.split(".", 1)[-1]]
        names.append(f"Q.Ab.{rule.upper()}")  # un-normalised input: the PSL ignores case
    names += [
        "", ".", "..", "a..b.com", ".com", "com.", "wpad", "a.b.c.d.e.f", "www.ck", "x.www.ck",
        "y.x.ck", "a\\x00b.com", "é.com", "a.-.com", "a.b.unknowntld", "a.city.kawasaki.jp",
        "h44.4099.DDNS.net", "WWW.Example.CO.UK", "X.Unknown",
    ]  # fmt: skip
    splitter = DomainSplitter(private_suffixes=private)
    got = splitter.split_series(pl.Series(names, dtype=pl.String)).rows()
    psl = _psl(private)
    want = [(None, None, None) if n is None else _split(psl, n) for n in names]
    assert got == want
