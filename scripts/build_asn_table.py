"""Build dnsieve's offline IPv4-to-ASN table (``src/dnsieve/data/ip2asn_v4.npz``).

Source: the ``asn-ipv4-num.csv`` of the npm package ``@ip-location-db/asn``
(RouteViews, the five RIRs' statistics (NRO) and DB-IP's IP to ASN Lite,
merged by sapics/ip-location-db; every part CC BY 4.0: attribution in
``src/dnsieve/data/README.md``).  Fetch it with npm, then run this script::

    npm pack @ip-location-db/asn && tar xzf ip-location-db-asn-*.tgz
    .venv/bin/python scripts/build_asn_table.py package/asn-ipv4-num.csv

Rows are ``first,last,asn,organisation`` (addresses as integers).  Adjacent
ranges of one AS are merged; organisation names are not kept.  The output
holds three ``uint32`` arrays, ``start``, ``end`` and ``asn``, sorted by
``start`` (NumPy ``.npz``, no pickle).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import polars as pl

OUT = Path(__file__).resolve().parents[1] / "src" / "dnsieve" / "data" / "ip2asn_v4.npz"


def build(csv: Path, out: Path) -> dict[str, int]:
    """Read the CSV, merge adjacent ranges of one AS, write the ``.npz``."""
    df = pl.read_csv(
        csv,
        has_header=False,
        new_columns=["start", "end", "asn", "org"],
        schema_overrides={"start": pl.UInt32, "end": pl.UInt32, "asn": pl.UInt32},
    ).sort("start")
    # A new run starts where the AS changes or the ranges are not contiguous.
    run = (
        (pl.col("asn") != pl.col("asn").shift(1))
        | (pl.col("start").cast(pl.Int64) != pl.col("end").shift(1).cast(pl.Int64) + 1)
    ).fill_null(True)
    merged = (
        df.with_columns(run=run.cum_sum())
        .group_by("run", maintain_order=True)
        .agg(pl.col("start").first(), pl.col("end").last(), pl.col("asn").first())
    )
    np.savez_compressed(
        out,
        start=merged["start"].to_numpy().astype(np.uint32),
        end=merged["end"].to_numpy().astype(np.uint32),
        asn=merged["asn"].to_numpy().astype(np.uint32),
    )
    return {"rows": df.height, "ranges": merged.height, "bytes": out.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path, help="asn-ipv4-num.csv of @ip-location-db/asn")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    stats = build(args.csv, args.out)
    digest = hashlib.sha256(args.csv.read_bytes()).hexdigest()
    print(f"{stats} source sha256 {digest}")


if __name__ == "__main__":
    main()
