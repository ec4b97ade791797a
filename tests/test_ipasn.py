"""Offline IPv4 → ASN look-up (dnsieve.ipasn)."""

from __future__ import annotations

import polars as pl
import pytest

from dnsieve.ipasn import asn_of, ipv4_to_int


@pytest.mark.parametrize(
    ("ip", "asn"),
    [
        ("1.1.1.1", 13335),  # Cloudflare
        ("8.8.8.8", 15169),  # Google
        ("10.0.0.1", None),  # private
        ("192.168.1.1", None),
        ("0.0.0.0", None),
        ("255.255.255.255", None),
        ("2001:db8::1", None),  # IPv6 is not in the table
        ("999.1.1.1", None),  # not an address
        ("", None),
        ("<script>", None),
    ],
)
def test_asn_of(ip: str, asn: int | None) -> None:
    assert asn_of(pl.Series([ip])).to_list() == [asn]


def test_nulls_and_order_kept() -> None:
    got = asn_of(pl.Series(["8.8.8.8", None, "1.1.1.1"], dtype=pl.String))
    assert got.dtype == pl.UInt32
    assert got.to_list() == [15169, None, 13335]


def test_ipv4_to_int() -> None:
    s = pl.Series(["0.0.0.1", "1.0.0.0", "255.255.255.255", "1.2.3"])
    assert ipv4_to_int(s).to_list() == [1, 16_777_216, 4_294_967_295, None]
