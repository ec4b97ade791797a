"""Flow ingest rates, each against a bare reference measured in the same run (issue 16).

1. pcap → canonical flows (``read_flow_file``, nfstream through dnsieve's adapter) against a
   bare nfstream pass over the same file (``NFStreamer(...).to_pandas()`` with the same
   settings): the cost of canonicalising into Arrow batches.
2. conn.log → lake (``Lake.ingest_flow_files``: parse, canonicalise, partition, write Parquet,
   commit) against a bare Polars read of the same file (``pl.read_csv`` of the TSV body).

Ratios, not seconds, are the result (machines differ).  Inputs: the largest capture and a
simulated conn.log by default.

    python bench/flows.py [--pcap FILE] [--clients 2000] [--hours 168]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import polars as pl

from dnsieve.ingest.base import IngestStats, ReadContext
from dnsieve.ingest.flows_common import read_flow_file
from dnsieve.lake import Lake
from dnsieve.simulate import simulate, simulate_flows, write_conn

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_PCAP = (
    SHARED / "tunnel/domainator/roguerobin-powershell/roguerobin-ps_upload-big_240228.pcapng"
)


def _best(fn: object, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return min(times)


def pcap_rates(pcap: Path) -> dict[str, float]:
    from nfstream import NFStreamer

    def bare() -> int:
        s = NFStreamer(source=str(pcap), statistical_analysis=True, n_dissections=20,
                       accounting_mode=1, n_meters=1)  # fmt: skip
        return len(s.to_pandas())

    def ours() -> int:
        ctx = ReadContext(sensor=str(pcap), stats=IngestStats(source=str(pcap)))
        return sum(b.num_rows for b in read_flow_file(pcap, "pcap-flows", ctx))

    flows = ours()
    t_bare, t_ours = _best(bare), _best(ours)
    return {"flows": flows, "bare_s": t_bare, "dnsieve_s": t_ours, "ratio": t_bare / t_ours}


def conn_rates(conn: Path) -> dict[str, float]:
    def bare() -> int:
        return pl.read_csv(conn, separator="\t", comment_prefix="#", has_header=False,
                           quote_char=None, infer_schema=False).height  # fmt: skip

    def ours() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            return Lake(tmp).ingest_flow_files([conn])[0].rows_written

    rows = ours()
    t_bare, t_ours = _best(bare), _best(ours)
    return {"rows": rows, "bare_s": t_bare, "dnsieve_s": t_ours, "ratio": t_bare / t_ours}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--pcap", type=Path, default=DEFAULT_PCAP)
    ap.add_argument("--clients", type=int, default=2000)
    ap.add_argument("--hours", type=int, default=168)
    args = ap.parse_args()
    if args.pcap.is_file():
        r = pcap_rates(args.pcap)
        print(
            f"pcap → flows ({args.pcap.name}, {r['flows']:,} flows): nfstream alone {r['bare_s']:.2f} s,"
            f" dnsieve {r['dnsieve_s']:.2f} s: {r['ratio']:.2f}× the bare rate"
        )
    with tempfile.TemporaryDirectory() as tmp:
        sim = simulate(hours=args.hours, clients=args.clients, seed=0)
        conn = write_conn(simulate_flows(sim), tmp)["conn"]
        r = conn_rates(conn)
        mb = conn.stat().st_size / 1e6
        print(
            f"conn.log → lake ({r['rows']:,} rows, {mb:.0f} MB): Polars read {r['bare_s']:.2f} s,"
            f" dnsieve ingest {r['dnsieve_s']:.2f} s: {r['ratio']:.2f}× the bare rate"
            f" ({r['rows'] / r['dnsieve_s']:,.0f} rows/s)"
        )


if __name__ == "__main__":
    main()
