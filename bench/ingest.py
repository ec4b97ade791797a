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
* Zeek JSON (:func:`bench_zeek_json`): the same events as JSON lines (as Zeek
  writes them with ``LogAscii::use_json=T`` and ISO-8601 times, and as
  zeek-kafka publishes them); the reference is a bare ``polars.read_ndjson``.
* Both Zeek sections run at each of ``--sizes`` (default 250k and 2M rows):
  the ratio must hold at both, so fixed costs (loading the Public Suffix
  List, opening the manifest) and per-row costs both show.
* ``--rss``: the adapter alone, then the full path into the lake, over a
  10M-row file (``--rss-rows``), each in a fresh subprocess, reporting the peak
  resident set size (Linux ``VmHWM``; target under 1.5 GB).
* Besides wall-clock ratios the table gives CPU-time ratios (process CPU,
  all threads): on a machine shared with other jobs those are the steadier
  figure.

* pcap (:func:`bench_pcap`): the Ethernet frames of the real domainator captures
  (``../shared/data/tunnel/domainator``) replicated into a classic pcap of
  ``--pcap-packets`` frames; the reference is a bare dpkt loop (``dpkt.pcap.Reader``
  + Ethernet + IP + UDP + ``dpkt.dns.DNS`` unpack) over the same file.  Measured:
  :class:`~dnsieve.ingest.pcap.PcapAdapter` to canonical batches (packets/s) and,
  when available, into the lake.  ``--no-pcap`` skips it.

* ``--small-files N`` (:func:`bench_small_files`): N one-row Zeek logs (the
  "5,000 tiny files" of issue 12) into the lake, with today's shared commits
  and compaction, against the previous protocol (one commit and one part file
  per input: ``commit_files=1``, no compaction) and a bare ``polars.read_csv``
  of each file, all in the same run; it also counts the part files left.
* ``--hostile`` (:func:`bench_hostile`): peak RSS of ``dnsieve ingest`` on a Zeek
  log holding one 50 MB query name, against the same log without it;
  ``--src DIR`` runs another source tree (e.g. an older checkout) for a
  before/after figure.

Other sections add a ``bench_*`` function returning rows for the table.
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
    #: CPU seconds of this process (all threads), best of the runs; robust to a busy machine.
    cpu_seconds: float | None = None
    reference_cpu_rate: float | None = None

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")

    @property
    def ratio(self) -> float | None:
        return None if self.reference_rate is None else self.rate / self.reference_rate

    @property
    def cpu_rate(self) -> float | None:
        return None if not self.cpu_seconds else self.items / self.cpu_seconds

    @property
    def cpu_ratio(self) -> float | None:
        rate = self.cpu_rate
        return (
            None
            if rate is None or self.reference_cpu_rate is None
            else rate / self.reference_cpu_rate
        )


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
    # Sorted for determinism, then shuffled so popularity does not follow the alphabet.
    return rng.permutation(np.array(sorted(out)[:n]))


def _zeek_block(
    rng: np.random.Generator, names: np.ndarray, rows: int, t_start: float, t_end: float
) -> pl.DataFrame:
    """``rows`` dns.log lines (all columns as Zeek text) with ts in [t_start, t_end)."""
    n_names = len(names)
    # Zipf head plus a uniform tail: popular names dominate, most names occur.
    zipf = np.minimum(rng.zipf(1.2, rows) - 1, n_names - 1)
    pick = np.where(rng.random(rows) < 0.85, zipf, rng.integers(0, n_names, rows))
    ts_us = np.sort(rng.integers(int(t_start * 1e6), int(t_end * 1e6), rows))
    clients = np.array([f"10.{i // 250}.{i % 250}.{(i * 7) % 250 + 1}" for i in range(250)])
    resolvers = np.array(["10.0.0.53", "10.0.0.54", "192.168.1.1", "8.8.8.8"])
    qt = rng.choice(len(_QTYPES), rows, p=[q[2] for q in _QTYPES])
    rc = rng.choice(len(_RCODES), rows, p=[r[2] for r in _RCODES])
    n_ans = np.where(np.array([r[0] for r in _RCODES])[rc] == 0, rng.integers(0, 5, rows), 0)
    has_resp = rng.random(rows) < 0.93
    uid_chars = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"))
    uid_pool = np.array(["C" + "".join(uid_chars[rng.integers(0, 62, 17)]) for _ in range(4096)])
    ip_pool = pl.Series([f"{a}.{b}.{c}.{d}" for a, b, c, d in rng.integers(1, 255, (4096, 4))])
    ttl_pool = pl.Series(["30.000000", "60.000000", "300.000000", "3600.000000", "86400.000000"])
    ans_seed = pl.Series(rng.integers(0, 4096 - 4, rows))
    ttl_seed = pl.Series(rng.integers(0, 5, rows))
    answers = pl.DataFrame({f"a{i}": ip_pool.gather(ans_seed + i) for i in range(4)})
    ttls = pl.DataFrame({f"t{i}": ttl_pool.gather((ttl_seed + i) % 5) for i in range(4)})
    n = pl.Series("n", n_ans)
    ans_s = answers.select(pl.concat_list(pl.all()).list.head(pl.lit(n)).list.join(",")).to_series()
    ttl_s = ttls.select(pl.concat_list(pl.all()).list.head(pl.lit(n)).list.join(",")).to_series()
    qtypes = np.array([q[1] for q in _QTYPES])[qt]
    qcodes = np.array([q[0] for q in _QTYPES])[qt]
    rnames = np.array([r[1] for r in _RCODES])[rc]
    rcodes = np.array([r[0] for r in _RCODES])[rc]
    us = pl.Series(ts_us)
    resp = pl.Series(has_resp)
    unset = pl.lit("-")
    frame = pl.DataFrame(
        {
            "us": us,
            "uid": uid_pool[rng.integers(0, 4096, rows)],
            "id.orig_h": clients[rng.integers(0, 250, rows)],
            "id.orig_p": rng.integers(1024, 65536, rows).astype(str),
            "id.resp_h": resolvers[rng.choice(4, rows, p=[0.6, 0.3, 0.08, 0.02])],
            "id.resp_p": np.full(rows, "53"),
            "proto": np.where(rng.random(rows) < 0.98, "udp", "tcp"),
            "trans_id": rng.integers(0, 65536, rows).astype(str),
            "rtt_us": rng.gamma(2.0, 4000.0, rows).astype(np.int64) + 1,
            "query": names[pick],
            "qtype": qcodes.astype(str),
            "qtype_name": qtypes,
            "rcode": rcodes.astype(str),
            "rcode_name": rnames,
            "AA": np.where(rng.random(rows) < 0.05, "T", "F"),
            "resp": resp,
            "n": n,
            "answers": ans_s,
            "TTLs": ttl_s,
        }
    )
    six = pl.col("us") % 1_000_000
    rtt_frac = pl.col("rtt_us").cast(pl.String).str.pad_start(6, "0")
    return frame.select(
        ts=(pl.col("us") // 1_000_000).cast(pl.String)
        + "."
        + six.cast(pl.String).str.pad_start(6, "0"),
        uid="uid",
        **{"id.orig_h": "id.orig_h", "id.orig_p": "id.orig_p"},
        **{"id.resp_h": "id.resp_h", "id.resp_p": "id.resp_p"},
        proto="proto",
        trans_id="trans_id",
        rtt=pl.when("resp").then(pl.lit("0.") + rtt_frac.str.slice(-6)).otherwise(unset),
        query="query",
        qclass=pl.lit("1"),
        qclass_name=pl.lit("C_INTERNET"),
        qtype="qtype",
        qtype_name="qtype_name",
        rcode=pl.when("resp").then("rcode").otherwise(unset),
        rcode_name=pl.when("resp").then("rcode_name").otherwise(unset),
        AA="AA",
        TC=pl.lit("F"),
        RD=pl.lit("T"),
        RA=pl.when("resp").then(pl.lit("T")).otherwise(pl.lit("F")),
        Z=pl.lit("0"),
        answers=pl.when(pl.col("resp") & (pl.col("n") > 0)).then("answers").otherwise(unset),
        TTLs=pl.when(pl.col("resp") & (pl.col("n") > 0)).then("TTLs").otherwise(unset),
        rejected=pl.lit("F"),
    )


def generate_zeek_tsv(
    path: Path, rows: int, seed: int = 7, distinct_names: int = 50_000, block: int = 1_000_000
) -> Path:
    """Write a realistic Zeek TSV ``dns.log`` of ``rows`` lines (deterministic per seed).

    ~250 clients, a few resolvers, query names drawn from ``distinct_names``
    names (Zipf head, uniform tail), a realistic qtype/rcode mix, 7% queries
    without a response, 0-4 answers with TTLs, one hour of traffic per 2M
    rows.  Written in blocks of ``block`` rows, so memory stays bounded.
    """
    rng = np.random.default_rng(seed)
    names = _names(rng, distinct_names)
    t0 = 1_713_484_800.0
    seconds_per_row = 3600 / 2e6
    header = (
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n"
        "#path\tdns\n#open\t2024-04-19-00-00-00\n"
        "#fields\t" + "\t".join(ZEEK_FIELDS) + "\n#types\t" + "\t".join(ZEEK_TYPES) + "\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as fh:
        fh.write(header.encode())
        done = 0
        while done < rows:
            k = min(block, rows - done)
            t_start = t0 + done * seconds_per_row
            df = _zeek_block(rng, names, k, t_start, t_start + k * seconds_per_row)
            df.write_csv(fh, separator="\t", include_header=False, quote_style="never")
            done += k
        fh.write(b"#close\t2024-04-19-01-00-00\n")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- timing


def _timed(fn: Callable[[], int], repeat: int) -> tuple[int, float, float]:
    """Run ``fn`` ``repeat`` times; return its item count, best wall and best CPU time."""
    best = cpu = float("inf")
    items = 0
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        items = fn()
        best = min(best, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return items, best, cpu


def _best_of(fn: Callable[[], int], repeat: int) -> tuple[int, float]:
    """Run ``fn`` ``repeat`` times; return its item count and the best wall time."""
    items, best, _ = _timed(fn, repeat)
    return items, best


def _bare_read_csv(path: Path) -> int:
    """The reference: a bare Polars read of the whole TSV (types inferred)."""
    df = pl.read_csv(path, separator="\t", has_header=False, comment_prefix="#", quote_char=None)
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
    n, t, c = _timed(lambda: _bare_read_csv(path), repeat)
    ref = Row("zeek-tsv", "polars.read_csv (reference)", n, t, cpu_seconds=c)
    rows.append(ref)
    ref_cpu = ref.cpu_rate

    n, t, c = _timed(lambda: _adapter_rows(path), repeat)
    rows.append(Row("zeek-tsv", "ZeekTsvAdapter -> canonical batches", n, t, ref.rate, c, ref_cpu))
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

            n_l, t_l, c_l = _timed(to_lake, repeat)
            rows.append(
                Row("zeek-tsv", "ZeekTsvAdapter -> Parquet lake", n_l, t_l, ref.rate, c_l, ref_cpu)
            )
    return rows


def generate_zeek_json(tsv: Path, path: Path) -> Path:
    """Write the events of the Zeek TSV ``tsv`` as Zeek JSON lines (ISO-8601 ``ts``)."""
    from dnsieve.ingest import IngestStats, ReadContext, read_file
    from dnsieve.ingest.kafka import zeek_json_lines

    ctx = ReadContext(sensor=tsv.name, stats=IngestStats(source=str(tsv)))
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "wb") as fh:
        for batch in read_file(tsv, "zeek", ctx):
            lines = zeek_json_lines(pl.from_arrow(batch))  # type: ignore[arg-type]
            fh.write(b"\n".join(lines) + b"\n")
    tmp.replace(path)
    return path


def _bare_read_ndjson(path: Path) -> int:
    """The reference for JSON: a bare Polars read of the whole file (types inferred)."""
    return pl.read_ndjson(path).height


def _adapter_rows_fmt(path: Path, fmt: str) -> int:
    from dnsieve.ingest import IngestStats, ReadContext, read_file

    ctx = ReadContext(sensor=path.name, stats=IngestStats(source=str(path)))
    n = sum(b.num_rows for b in read_file(path, fmt, ctx))
    if ctx.stats.rejected:
        raise RuntimeError(f"unexpected rejects: {ctx.stats.rejects}")
    return n


def bench_zeek_json(path: Path, repeat: int = 3, lake: bool = True) -> list[Row]:
    """Zeek JSON: bare ``polars.read_ndjson`` (reference), adapter, and adapter -> lake."""
    from dnsieve.lake import Lake

    rows: list[Row] = []
    n, t, c = _timed(lambda: _bare_read_ndjson(path), repeat)
    ref = Row("zeek-json", "polars.read_ndjson (reference)", n, t, cpu_seconds=c)
    rows.append(ref)
    n, t, c = _timed(lambda: _adapter_rows_fmt(path, "zeek-json"), repeat)
    rows.append(
        Row("zeek-json", "ZeekJsonAdapter -> canonical batches", n, t, ref.rate, c, ref.cpu_rate)
    )
    if lake:

        def to_lake() -> int:
            tmp = Path(tempfile.mkdtemp(prefix="dnsieve-bench-lake-"))
            try:
                return _rows_written(Lake(tmp).ingest_files([path], "zeek-json"), n)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)

        n_l, t_l, c_l = _timed(to_lake, repeat)
        rows.append(
            Row(
                "zeek-json",
                "ZeekJsonAdapter -> Parquet lake",
                n_l,
                t_l,
                ref.rate,
                c_l,
                ref.cpu_rate,
            )
        )
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


def _peak_rss_mib() -> float:
    """Peak resident set size of this process, MiB.

    On Linux this is ``VmHWM`` from /proc/self/status: ``ru_maxrss`` survives
    ``execve`` and so can report the *parent's* peak (here: the generator's)
    when the child was started with vfork, as ``subprocess`` does.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_child(path: str, what: str) -> None:
    """Child process body: ingest ``path`` (adapter only, or into a lake); print JSON."""
    t0 = time.perf_counter()
    if what == "lake":
        from dnsieve.lake import Lake

        tmp = Path(tempfile.mkdtemp(prefix="dnsieve-bench-lake-"))
        try:
            n = _rows_written(Lake(tmp).ingest_files([path]), 0)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    else:
        n = _adapter_rows(Path(path))
    dt = time.perf_counter() - t0
    print(json.dumps({"rows": n, "seconds": dt, "peak_rss_mib": _peak_rss_mib()}))


def bench_rss(path: Path, what: str = "adapter") -> dict[str, float]:
    """Peak RSS of ingesting ``path`` (``adapter`` or ``lake``), in a fresh subprocess."""
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path), "--rss-what", what],
        check=True,
        capture_output=True,
        text=True,
    )
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


# --------------------------------------------------------------------------- pcap

#: Real captures replicated into the pcap benchmark file (Ethernet, DNS tunnels plus Windows
#: background traffic, TCP included): the domainator recordings in ../shared/data.
PCAP_SOURCES = "tunnel/domainator"


def generate_pcap(path: Path, packets: int, corpus: Path) -> Path:
    """Write a classic pcap of about ``packets`` frames by replicating real captures.

    Every Ethernet frame of the pcapng files under ``corpus/PCAP_SOURCES`` is copied,
    and the whole set repeated with timestamps shifted past the pairing window, so
    each replica pairs exactly like the original.
    """
    import dpkt

    frames: list[tuple[float, bytes]] = []
    for src in sorted((corpus / PCAP_SOURCES).rglob("*.pcapng")):
        with open(src, "rb") as fh:
            reader = dpkt.pcapng.Reader(fh)
            if reader.datalink() != 1:
                continue
            frames.extend((float(ts), bytes(buf)) for ts, buf in reader)
    if not frames:
        raise FileNotFoundError(f"no pcapng captures under {corpus / PCAP_SOURCES}")
    frames.sort(key=lambda f: f[0])
    t0 = frames[0][0]
    span = frames[-1][0] - t0 + 120.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=1)
        written = rep = 0
        while written < packets:
            for ts, buf in frames:
                w.writepkt(buf, ts=ts - t0 + 1_700_000_000.0 + rep * span)
            written += len(frames)
            rep += 1
    return path


def _bare_dpkt_loop(path: Path) -> int:
    """The reference: dpkt.pcap.Reader + Ethernet + IP + UDP + dpkt.dns.DNS unpack."""
    import dpkt

    n = 0
    with open(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.Reader(fh):
            n += 1
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                continue
            udp = ip.data
            if isinstance(udp, dpkt.udp.UDP) and 53 in (udp.sport, udp.dport):
                try:  # noqa: SIM105 - the tightest loop is the fairest reference
                    dpkt.dns.DNS(udp.data)
                except (dpkt.UnpackError, UnicodeDecodeError, IndexError):
                    pass
    return n


def _pcap_adapter_packets(path: Path) -> int:
    from dnsieve.ingest import IngestStats, ReadContext, read_file

    ctx = ReadContext(sensor=path.name, stats=IngestStats(source=str(path)))
    events = sum(b.num_rows for b in read_file(path, "pcap", ctx))
    if not events or "decode_error" in ctx.stats.rejects:
        raise RuntimeError(f"pcap adapter: {events} events, rejects {ctx.stats.rejects}")
    return ctx.stats.records_read


def bench_pcap(path: Path, repeat: int = 3, lake: bool = True) -> list[Row]:
    """pcap: bare dpkt loop (reference), PcapAdapter, and PcapAdapter -> lake; packets/s."""
    rows: list[Row] = []
    n, t = _best_of(lambda: _bare_dpkt_loop(path), repeat)
    ref = Row("pcap", "bare dpkt loop (reference)", n, t)
    rows.append(ref)
    n, t = _best_of(lambda: _pcap_adapter_packets(path), repeat)
    rows.append(Row("pcap", "PcapAdapter -> canonical batches", n, t, ref.rate))
    if lake:
        try:
            from dnsieve.lake import Lake
        except ImportError:
            rows.append(Row("pcap", "-> lake (dnsieve.lake not available)", 0, 0.0))
        else:

            def to_lake() -> int:
                tmp = Path(tempfile.mkdtemp(prefix="dnsieve-bench-lake-"))
                try:
                    Lake(tmp).ingest_files([path])
                    return n
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)

            n_l, t_l = _best_of(to_lake, repeat)
            rows.append(Row("pcap", "PcapAdapter -> Parquet lake (packets)", n_l, t_l, ref.rate))
    return rows


# --------------------------------------------------------------------------- main


def print_table(rows: list[Row]) -> None:
    """Print the results as a fixed-width table.

    ``ratio`` compares wall-clock rates with the section's reference;
    ``cpu ratio`` compares rates per CPU-second (all threads of this process),
    which a machine shared with other jobs distorts much less.
    """
    print(
        f"{'section':<15} {'what':<42} {'items':>11} {'seconds':>8} {'items/s':>12} "
        f"{'ratio':>6} {'cpu s':>7} {'cpu ratio':>9}"
    )
    for r in rows:
        if r.items == 0:
            print(f"{r.section:<15} {r.what:<42} {'-':>11} {'-':>8} {'-':>12} {'-':>6}")
            continue
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        cpu = "" if r.cpu_seconds is None else f"{r.cpu_seconds:.2f}"
        cpu_ratio = "" if r.cpu_ratio is None else f"{r.cpu_ratio:.2f}"
        print(
            f"{r.section:<15} {r.what:<42} {r.items:>11,} {r.seconds:>8.2f} "
            f"{r.rate:>12,.0f} {ratio:>6} {cpu:>7} {cpu_ratio:>9}"
        )


def bench_small_files(work: Path, n: int) -> None:
    """N one-row logs: shared commits + compaction vs one commit per file vs a bare reader."""
    from dnsieve.lake import Lake

    src = work / f"small-{n}"
    if not src.exists():
        one = work / "small-source.log"
        generate_zeek_tsv(one, n)
        lines = one.read_bytes().splitlines(keepends=True)
        header = [ln for ln in lines if ln.startswith(b"#") and not ln.startswith(b"#close")]
        body = [ln for ln in lines if not ln.startswith(b"#")]
        src.mkdir()
        for i, ln in enumerate(body[:n]):
            (src / f"dns.{i:06d}.log").write_bytes(b"".join([*header, ln]))
    files = sorted(src.iterdir())

    def timed(fn: Callable[[], object]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    t_bare = timed(
        lambda: [
            pl.read_csv(f, separator="\t", comment_prefix="#", has_header=False) for f in files
        ]
    )
    out = {}
    for label, kw in (
        (
            "previous: a commit and a part file per input",
            {"commit_files": 1, "compact_min_parts": 0},
        ),
        ("now: shared commits + compaction", {}),
    ):
        lake_dir = work / "small-lake"
        shutil.rmtree(lake_dir, ignore_errors=True)
        lake = Lake(lake_dir, **kw)  # type: ignore[arg-type]
        t = timed(lambda lake=lake: lake.ingest_files([src]))
        out[label] = (t, len(lake.files()), lake.committed_rows())
        shutil.rmtree(lake_dir, ignore_errors=True)
    print(f"{n:,} one-row Zeek logs; bare polars.read_csv of each: {t_bare:.2f} s", flush=True)
    prev = out["previous: a commit and a part file per input"][0]
    for label, (t, parts, rows) in out.items():
        print(
            f"  {label:<46} {t:7.2f} s  {parts:6,} part files  {rows:,} rows"
            f"  x{t / t_bare:5.2f} of bare  x{prev / t:5.1f} faster than previous",
            flush=True,
        )


def bench_hostile(work: Path, src: Path | None, name_mb: int = 50) -> None:
    """Peak RSS of ``dnsieve ingest`` on a log with one ``name_mb`` MB query name."""
    import os

    base = work / "hostile-base.log"
    generate_zeek_tsv(base, 1000)
    lines = base.read_bytes().splitlines(keepends=True)
    body_at = next(i for i, ln in enumerate(lines) if not ln.startswith(b"#"))
    fields = lines[body_at].split(b"\t")
    fields[9] = b"a" * (name_mb * 1_000_000)
    hostile = work / "hostile-name.log"
    hostile.write_bytes(b"".join([*lines[:body_at], b"\t".join(fields), *lines[body_at:]]))
    tree = src or Path(__file__).resolve().parents[1] / "src"
    for f in (base, hostile):
        lake_dir = work / "hostile-lake"
        shutil.rmtree(lake_dir, ignore_errors=True)
        argv = [sys.executable, "-m", "dnsieve.cli", "ingest", str(f), "--lake", str(lake_dir)]
        argv.append("--json")
        # posix_spawn (vfork), not fork: a forked child's ru_maxrss starts at its
        # parent's resident size, which would hide the figure being measured.
        out_path = work / "hostile-out.json"
        pid = os.posix_spawn(
            sys.executable,
            argv,
            {**os.environ, "PYTHONPATH": str(tree)},
            file_actions=[
                (
                    os.POSIX_SPAWN_OPEN,
                    1,
                    str(out_path),
                    os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                    0o644,
                ),
                (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0),
            ],
        )
        _, status, usage = os.wait4(pid, 0)
        out = out_path.read_bytes()
        try:
            rep = json.loads(out)["files"][0]
            what = f"{rep['rows_written']} rows, rejects {rep['rejects']}"
        except (ValueError, KeyError, IndexError):
            what = f"exit status {status}"
        print(
            f"{f.name} ({f.stat().st_size / 1e6:,.1f} MB) with {tree}: "
            f"peak RSS {usage.ru_maxrss / 1024:,.0f} MiB; {what}",
            flush=True,
        )
        shutil.rmtree(lake_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--sizes",
        default="250000,2000000",
        help="comma-separated rows of the generated Zeek logs (each size is one TSV and one JSON)",
    )
    ap.add_argument("--rows", type=int, default=None, help="one size only (overrides --sizes)")
    ap.add_argument("--no-json", action="store_true", help="skip the Zeek JSON section")
    ap.add_argument("--repeat", type=int, default=3, help="best of N runs per measurement")
    ap.add_argument("--workdir", type=Path, default=None, help="where to keep generated files")
    ap.add_argument("--no-lake", action="store_true", help="skip the Parquet lake row")
    ap.add_argument("--rss", action="store_true", help="peak RSS over a --rss-rows Zeek TSV")
    ap.add_argument("--rss-rows", type=int, default=10_000_000)
    ap.add_argument("--rss-child", type=str, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--rss-what", default="adapter", help=argparse.SUPPRESS)
    ap.add_argument("--no-pcap", action="store_true", help="skip the pcap section")
    ap.add_argument("--pcap-packets", type=int, default=200_000, help="packets in the pcap file")
    ap.add_argument(
        "--corpus", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    ap.add_argument("--small-files", type=int, default=0, help="N one-row logs into the lake")
    ap.add_argument("--hostile", action="store_true", help="peak RSS on a 50 MB query name")
    ap.add_argument("--src", type=Path, default=None, help="source tree for --hostile")
    args = ap.parse_args(argv)
    if args.small_files or args.hostile:
        work = args.workdir or Path(tempfile.gettempdir()) / "dnsieve-bench"
        work.mkdir(parents=True, exist_ok=True)
        if args.small_files:
            bench_small_files(work, args.small_files)
        if args.hostile:
            bench_hostile(work, args.src)
        return 0
    if args.rss_child:
        _rss_child(args.rss_child, args.rss_what)
        return 0
    work = args.workdir or Path(tempfile.gettempdir()) / "dnsieve-bench"
    work.mkdir(parents=True, exist_ok=True)
    if args.rss:
        path = work / f"zeek-dns-{args.rss_rows}.log"
        if not path.exists():
            print(f"generating {args.rss_rows:,} rows -> {path}", flush=True)
            generate_zeek_tsv(path, args.rss_rows)
        targets = [("adapter", "ZeekTsvAdapter -> canonical batches")]
        try:
            import dnsieve.lake  # noqa: F401
        except ImportError:
            pass
        else:
            targets.append(("lake", "ZeekTsvAdapter -> Parquet lake"))
        for what, label in targets:
            res = bench_rss(path, what)
            verdict = "OK" if res["peak_rss_mib"] < 1536 else "OVER the 1.5 GB target"
            print(
                f"{label} over {int(res['rows']):,} rows: peak RSS {res['peak_rss_mib']:,.0f} MiB"
                f" ({verdict}), {res['rows'] / res['seconds']:,.0f} rows/s",
                flush=True,
            )
        return 0
    sizes = [args.rows] if args.rows else [int(x) for x in args.sizes.split(",") if x.strip()]
    rows: list[Row] = []
    for size in sizes:
        path = work / f"zeek-dns-{size}.log"
        if not path.exists():
            print(f"generating {size:,} rows -> {path}", flush=True)
            generate_zeek_tsv(path, size)
        size_mb = path.stat().st_size / 1e6
        print(f"Zeek TSV: {path} ({size_mb:,.0f} MB), best of {args.repeat}", flush=True)
        tag = f"{size / 1e6:g}M" if size >= 1_000_000 else f"{size // 1000}k"
        got = bench_zeek_tsv(path, repeat=args.repeat, lake=not args.no_lake)
        if not args.no_json:
            jpath = work / f"zeek-dns-{size}.json"
            if not jpath.exists():
                print(f"writing the same events as Zeek JSON -> {jpath}", flush=True)
                generate_zeek_json(path, jpath)
            size_mb = jpath.stat().st_size / 1e6
            print(f"Zeek JSON: {jpath} ({size_mb:,.0f} MB), best of {args.repeat}", flush=True)
            got += bench_zeek_json(jpath, repeat=args.repeat, lake=not args.no_lake)
        for r in got:
            r.section = f"{r.section} {tag}"
        rows += got
    if not args.no_pcap:
        pcap = work / f"dns-{args.pcap_packets}.pcap"
        if not pcap.exists():
            print(
                f"replicating real captures to {args.pcap_packets:,} packets -> {pcap}", flush=True
            )
            generate_pcap(pcap, args.pcap_packets, args.corpus)
        print(
            f"pcap: {pcap} ({pcap.stat().st_size / 1e6:,.0f} MB), best of {args.repeat}", flush=True
        )
        rows += bench_pcap(pcap, repeat=args.repeat, lake=not args.no_lake)
    print_table(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
