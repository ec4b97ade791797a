"""Offline IPv4 → autonomous system number (ASN) look-up.

The table ``dnsieve/data/ip2asn_v4.npz`` (about 412,000 ranges, 1.9 MB)
is built by ``scripts/build_asn_table.py`` from the npm package
``@ip-location-db/asn``, which merges RouteViews, the five RIRs' statistics
(NRO) and DB-IP's IP to ASN Lite database; all CC BY 4.0 (attribution in
``dnsieve/data/README.md``).  No network at run time.  IPv6 addresses and
addresses in no announced range get null.

>>> asn_of(pl.Series(["1.1.1.1", "8.8.8.8", "10.0.0.1", "2001:db8::1", "bogus"])).to_list()
[13335, 15169, None, None, None]
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import numpy.typing as npt
import polars as pl

__all__ = ["asn_of", "ipv4_to_int"]

_TABLE = "ip2asn_v4.npz"
_IPV4 = r"^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$"


@lru_cache(maxsize=1)
def _table() -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.uint32]]:
    ref = resources.files("dnsieve") / "data" / _TABLE
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as z:
        return z["start"].astype(np.int64), z["end"].astype(np.int64), z["asn"].copy()


def ipv4_to_int(ips: pl.Series) -> pl.Series:
    """Dotted-quad IPv4 text → Int64 (null when not a valid IPv4 address)."""
    parts = ips.cast(pl.String).str.extract_groups(_IPV4)
    octets = [parts.struct.field(str(i)).cast(pl.Int64, strict=False) for i in range(1, 5)]
    df = pl.DataFrame({f"o{i}": o for i, o in enumerate(octets)})
    valid = pl.all_horizontal([(pl.col(f"o{i}") <= 255) for i in range(4)])
    value = pl.col("o0") * 16_777_216 + pl.col("o1") * 65_536 + pl.col("o2") * 256 + pl.col("o3")
    return df.select(pl.when(valid).then(value).alias("ip"))["ip"]


def asn_of(ips: pl.Series) -> pl.Series:
    """The origin ASN (UInt32) of each IPv4 address, null when unknown."""
    start, end, asn = _table()
    val = ipv4_to_int(ips)
    v = val.fill_null(-1).to_numpy()
    idx = np.searchsorted(start, v, side="right") - 1
    ok = (idx >= 0) & (v >= 0)
    idx_c = np.clip(idx, 0, len(start) - 1)
    ok &= v <= end[idx_c]
    out = np.where(ok, asn[idx_c], 0)
    return pl.Series("asn", out, dtype=pl.UInt32).scatter(np.flatnonzero(~ok), None)
