"""Ingest benchmark: throughput of the adapters against a bare reader of the same file.

Run ``python bench/ingest.py`` (``--rows N`` for a different size, ``--rss`` for the
bounded-memory check).  Every figure is measured in the same run as its reference,
and the table prints the ratio; absolute speeds depend on the machine.

Sections:

* Zeek TSV (:func:`bench_zeek_tsv`): a deterministic, realistic Zeek ``dns.log``
  is generated (seeded); the reference is a bare ``polars.read_csv`` of it.
  Measured: the :class:`~dnsieve.ingest.zeek.ZeekTsvAdapter` to canonical Arrow
  batches and, when :mod:`dnsieve.lake` is available, the full path into the
  Parquet lake.
* ``--rss``: the adapter over a 10M-row file in a fresh subprocess, reporting the
  peak resident set size (``ru_maxrss``).

Other sections (pcap) add a ``bench_*`` function returning rows for the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

ZEEK_FIELDS = (
    "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "trans_id",
    "rtt", "query", "qclass", "qclass_name", "qtype", "qtype_name", "rcode", "rcode_name",
    "AA", "TC", "RD", "RA", "Z", "answers", "TTLs", "rejected",
)  # fmt: skip
ZEEK_TYPES = (
    "time", "string", "addr", "port", "addr", "port", "enum", "count", "interval", "string",
    "count", "string", "count", "string", "count", "string", "bool", "bool", "bool", "bool",
    "count", "vector[string]", "vector[interval]", "bool",
)  # fmt: skip

_TLDS = ["com", "net", "org", "io", "co.uk", "de", "ru", "cn", "info", "github.io", "fr", "nl"]
_WORDS = [
    "mail", "cdn", "api", "static", "img", "login", "secure", "shop", "news", "cloud", "app",
    "media", "data", "video", "edge", "auth", "portal", "store", "blog", "docs", "update",
    "search", "maps", "ads", "track", "web", "mobile", "sync", "files", "content",
]  # fmt: skip
_QTYPES = [(1, "A", 0.55), (28, "AAAA", 0.25), (12, "PTR", 0.07), (5, "CNAME", 0.02),
           (16, "TXT", 0.03), (15, "MX", 0.02), (33, "SRV", 0.03), (65, "HTTPS", 0.03)]  # fmt: skip
_RCODES = [(0, "NOERROR", 0.88), (3, "NXDOMAIN", 0.09), (2, "SERVFAIL", 0.02), (5, "REFUSED", 0.01)]


@dataclass
class Row:
    """One line of the results table."""

    section: str
    what: str
    items: int
    seconds: float
    reference_rate: float | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    @property
    def ratio(self) -> float | None:
        return None if self.reference_rate is None else self.rate / self.reference_rate


# --------------------------------------------------------------------------- data


def _names(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct, plausible query names (some long random-looking labels)."""
    out: set[str] = set()
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    while len(out) < n:
        k = n - len(out)
        base = ["".join(alphabet[rng.integers(0, 26, rng.integers(3, 12))]) for _ in range(k)]
        tlds = rng.choice(_TLDS, k)
        depth = rng.choice([0, 1, 1, 2, 3], k)
        for b, t, d in zip(base, tlds, depth, strict=True):
            labels = [str(w) for w in rng.choice(_WORDS, d)]
            if d and rng.random() < 0.1:
                labels[0] = "".join(alphabet[rng.integers(0, 36, 24)])
            out.add(".".join([*labels, b, t]))
    return np.array(sorted(out)[:n])


def generate_zeek_tsv(path: Path, rows: int, seed: int = 7, distinct_names: int = 50_000) -> Path:
    """Write a realistic Zeek TSV ``dns.log`` of ``rows`` lines (deterministic per seed).

    ~250 clients, a few resolvers, Zipf-distributed query names over
    ``distinct_names`` names, a realistic qtype/rcode mix, 0-4 answers with TTLs
    and one hour of timestamps per ~2M rows.
    """
    rng = np.random.default_rng(seed)
    names = _names(rng, distinct_names)
    pick = np.minimum(rng.zipf(1.3, rows) - 1, distinct_names - 1)
    pick = rng.permutation(distinct_names)[pick]
    t0 = 1_713_484_800.0
    ts = t0 + np.sort(rng.uniform(0, 3600 * max(1.0, rows / 2e6), rows))
    clients = np.array([f"10.{i // 250}.{i % 250}.{(i * 7) % 250 + 1}" for i in range(250)])
    resolvers = np.array(["10.0.0.53", "10.0.0.54", "192.168.1.1", "8.8.8.8"])
    qt = rng.choice(len(_QTYPES), rows, p=[q[2] for q in _QTYPES])
    rc = rng.choice(len(_RCODES), rows, p=[r[2] for r in _RCODES])
    n_ans = np.where(np.array([r[0] for r in _RCODES])[rc] == 0, rng.integers(0, 5, rows), 0)
    has_rtt = rng.random(rows) < 0.93
    uid_chars = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
    uid_pool = np.array(["C" + "".join(uid_chars[rng.integers(0, 62, 17)]) for _ in range(4096)])
    ip_pool = np.array(
        [f"{a}.{b}.{c}.{d}" for a, b, c, d in rng.integers(1, 255, (4096, 4))], dtype=object
    )
    ttl_pool = np.array([30, 60, 300, 600, 3600, 86400], dtype=np.float64)

    df = pl.DataFrame(
        {
            "ts": pl.Series(ts).round(6),
            "uid": uid_pool[rng.integers(0, 4096, rows)],
            "id.orig_h": clients[rng.integers(0, 250, rows)],
            "id.orig_p": rng.integers(1024, 65536, rows),
            "id.resp_h": resolvers[rng.choice(4, rows, p=[0.6, 0.3, 0.08, 0.02])],
            "id.resp_p": np.full(rows, 53),
            "proto": np.where(rng.random(rows) < 0.98, "udp", "tcp"),
            "trans_id": rng.integers(0, 65536, rows),
            "rtt": np.where(has_rtt, rng.gamma(2.0, 0.004, rows), np.nan),
            "query": names[pick],
            "qtype": np.array([q[0] for q in _QTYPES])[qt],
            "qtype_name": np.array([q[1] for q in _QTYPES])[qt],
            "rcode": np.array([r[0] for r in _RCODES])[rc],
            "rcode_name": np.array([r[1] for r in _RCODES])[rc],
            "n_ans": n_ans,
            "ans_seed": rng.integers(0, 4096 - 4, rows),
            "ttl_seed": rng.integers(0, 6, rows),
            "AA": np.where(rng.random(rows) < 0.05, "T", "F"),
            "RA": np.where(has_rtt, "T", "F"),
        }
    )
    ip_s = pl.Series(ip_pool.astype(str))
    ttl_s = pl.Series(ttl_pool)
    ans_cols = [ip_s.gather(df.get_column("ans_seed") + i) for i in range(4)]
    ttl_cols = [
        ttl_s.gather((df.get_column("ttl_seed") + i) % 6).cast(pl.Int64).cast(pl.String) + ".000000"
        for i in range(4)
    ]
    n = df.get_column("n_ans")
    ans_list = pl.DataFrame({f"a{i}": c for i, c in enumerate(ans_cols)}).select(
        pl.concat_list(pl.all()).list.head(n).list.join(",")
    )
    ttl_list = pl.DataFrame({f"t{i}": c for i, c in enumerate(ttl_cols)}).select(
        pl.concat_list(pl.all()).list.head(n).list.join(",")
    )
    has_resp = pl.col("rcode_name").is_not_null() & pl.col("rtt").is_not_nan()
    out = (
        df.with_columns(
            answers=ans_list.to_series(),
            TTLs=ttl_list.to_series(),
        )
        .select(
            pl.col("ts").map_elements(lambda v: f"{v:.6f}", return_dtype=pl.String),
            "uid",
            "id.orig_h",
            pl.col("id.orig_p").cast(pl.String),
            "id.resp_h",
            pl.col("id.resp_p").cast(pl.String),
            "proto",
            pl.col("trans_id").cast(pl.String),
            pl.when(pl.col("rtt").is_nan())
            .then(pl.lit("-"))
            .otherwise(pl.col("rtt").round(6).cast(pl.String))
            .alias("rtt"),
            "query",
            pl.lit("1").alias("qclass"),
            pl.lit("C_INTERNET").alias("qclass_name"),
            pl.col("qtype").cast(pl.String),
            "qtype_name",
            pl.when(has_resp).then(pl.col("rcode").cast(pl.String)).otherwise(pl.lit("-")).alias("rcode"),
            pl.when(has_resp).then(pl.col("rcode_name")).otherwise(pl.lit("-")).alias("rcode_name"),
            "AA",
            pl.lit("F").alias("TC"),
            pl.lit("T").alias("RD"),
            "RA",
            pl.lit("0").alias("Z"),
            pl.when(pl.col("n_ans") == 0).then(pl.lit("-")).otherwise(pl.col("answers")).alias("answers"),
            pl.when(pl.col("n_ans") == 0).then(pl.lit("-")).otherwise(pl.col("TTLs")).alias("TTLs"),
            pl.lit("F").alias("rejected"),
        )
    )
    header = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
        "#path\tdns\n#open\t2024-04-19-00-00-00\n"
        "#fields\t" + "\t".join(ZEEK_FIELDS) + "\n#types\t" + "\t".join(ZEEK_TYPES) + "\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header.encode())
        out.write_csv(fh, separator="\t", include_header=False, quote_style="never")
        fh.write(b"#close\t2024-04-19-01-00-00\n")
    return path


# --------------------------------------------------------------------------- timing


def _best_of(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    """Run ``fn`` ``repeat`` times; return its item count and the best wall time."""
    best = float("inf")
    items = 0
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        items = fn()
        best = min(best, time.perf_counter() - t0)
    return items, best


def _bare_read_csv(path: Path) -> int:
    """The reference: a bare Polars read of the whole TSV (types inferred)."""
    df = pl.read_csv(
        path, separator="\t", has_header=False, comment_prefix="#", quote_char=None
    )
    return df.height


def _adapter_rows(path: Path) -> int:
    from dnsieve.ingest import IngestStats, ReadContext, read_file

    ctx = ReadContext(sensor=path.name, stats=IngestStats(source=str(path)))
    n = 0
    for batch in read_file(path, "zeek", ctx):
        n += batch.num_rows
    if ctx.stats.rejected:
        raise RuntimeError(f"unexpected rejects: {ctx.stats.rejects}")
    return n


def bench_zeek_tsv(path: Path, repeat: int = 3, lake: bool = True) -> list[Row]:
    """Zeek TSV: bare ``polars.read_csv`` (reference), adapter, and adapter -> lake."""
    rows: list[Row] = []
    n, t = _best_of(lambda: _bare_read_csv(path), repeat)
    ref = Row("zeek-tsv", "polars.read_csv (reference)", n, t)
    rows.append(ref)
    n, t = _best_of(lambda: _adapter_rows(path), repeat)
    rows.append(Row("zeek-tsv", "ZeekTsvAdapter -> canonical batches", n, t, ref.rate))
    if lake:
        try:
            from dnsieve.lake import Lake
        except ImportError:
            rows.append(Row("zeek-tsv", "-> lake (dnsieve.lake not available)", 0, 0.0))
        else:

            def to_lake() -> int:
                tmp = Path(tempfile.mkdtemp(prefix="dnsieve-bench-lake-"))
                try:
                    result = Lake(tmp).ingest_files([path])
                    return _rows_written(result, n)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)

            n_l, t_l = _best_of(to_lake, repeat)
            rows.append(Row("zeek-tsv", "ZeekTsvAdapter -> Parquet lake", n_l, t_l, ref.rate))
    return rows


def _rows_written(result: object, default: int) -> int:
    """Best effort: rows written as reported by ``Lake.ingest_files`` (else ``default``)."""
    for attr in ("rows_written", "rows"):
        v = getattr(result, attr, None)
        if isinstance(v, int):
            return v
    if isinstance(result, list | tuple):
        total = 0
        for item in result:
            v = getattr(item, "rows_written", None)
            if v is None and isinstance(item, dict):
                v = item.get("rows_written", item.get("rows"))
            if isinstance(v, int):
                total += v
        if total:
            return total
    return default


# --------------------------------------------------------------------------- RSS


def _rss_child(path: str) -> None:
    """Child process body: run the adapter over ``path`` and print JSON figures."""
    t0 = time.perf_counter()
    n = _adapter_rows(Path(path))
    dt = time.perf_counter() - t0
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rows": n, "seconds": dt, "peak_rss_mib": peak_kib / 1024}))


def bench_rss(path: Path) -> dict[str, float]:
    """Peak RSS of the adapter over ``path``, measured in a fresh subprocess."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- main


def print_table(rows: list[Row]) -> None:
    """Print the results as a fixed-width table."""
    print(f"{'section':<10} {'what':<42} {'items':>11} {'seconds':>8} {'items/s':>12} {'ratio':>6}")
    for r in rows:
        if r.items == 0:
            print(f"{r.section:<10} {r.what:<42} {'-':>11} {'-':>8} {'-':>12} {'-':>6}")
            continue
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        print(
            f"{r.section:<10} {r.what:<42} {r.items:>11,} {r.seconds:>8.2f} "
            f"{r.rate:>12,.0f} {ratio:>6}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=2_000_000, help="rows of the generated Zeek TSV")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per measurement")
    ap.add_argument("--workdir", type=Path, default=None, help="where to keep generated files")
    ap.add_argument("--no-lake", action="store_true", help="skip the Parquet lake row")
    ap.add_argument("--rss", action="store_true", help="peak RSS over a --rss-rows Zeek TSV")
    ap.add_argument("--rss-rows", type=int, default=10_000_000)
    ap.add_argument("--rss-child", type=str, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        _rss_child(args.rss_child)
        return 0
    work = args.workdir or Path(tempfile.gettempdir()) / "dnsieve-bench"
    work.mkdir(parents=True, exist_ok=True)
    if args.rss:
        path = work / f"zeek-dns-{args.rss_rows}.log"
        if not path.exists():
            print(f"generating {args.rss_rows:,} rows -> {path}", flush=True)
            generate_zeek_tsv(path, args.rss_rows)
        res = bench_rss(path)
        verdict = "OK" if res["peak_rss_mib"] < 1536 else "OVER the 1.5 GB target"
        print(
            f"ZeekTsvAdapter over {int(res['rows']):,} rows: peak RSS {res['peak_rss_mib']:,.0f} MiB"
            f" ({verdict}), {res['rows'] / res['seconds']:,.0f} rows/s"
        )
        return 0
    path = work / f"zeek-dns-{args.rows}.log"
    if not path.exists():
        print(f"generating {args.rows:,} rows -> {path}", flush=True)
        generate_zeek_tsv(path, args.rows)
    size_mb = path.stat().st_size / 1e6
    print(f"Zeek TSV: {path} ({size_mb:,.0f} MB), best of {args.repeat}", flush=True)
    rows = bench_zeek_tsv(path, repeat=args.repeat, lake=not args.no_lake)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
