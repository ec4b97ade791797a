"""Format sniffing from content alone, and a directory of mixed formats."""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dnsieve.ingest import IngestStats, ReadContext, iter_input_files, read_file
from dnsieve.ingest.sniff import sniff

TD = Path(__file__).parent / "data"


def _real_files(shared: Path) -> dict[str, Path]:
    return {
        "zeek": shared / "zeek" / "testsuite" / "baseline_dns_logs" / "core.ipv6-frag.dns.log",
        "suricata": shared / "suricata" / "test6-malicious.suricata.json",
        "pcap": shared / "zeek" / "testsuite" / "pcaps" / "dns53.pcap",
        "dnsmasq": shared / "tunnel" / "iodine_dnsmasq" / "dnsmasq.log",
        "bind": TD / "querylog" / "bind_queries.log",
        "unbound": TD / "querylog" / "unbound.log",
        "csv": TD / "tabular" / "semicolon_iso.csv",
    }


@pytest.mark.parametrize("fmt", ["zeek", "suricata", "pcap", "dnsmasq", "bind", "unbound", "csv"])
def test_sniff_real_content_under_a_misleading_name(shared_data: Path, fmt: str) -> None:
    head = _real_files(shared_data)[fmt].read_bytes()[: 64 * 1024]
    assert sniff(head, "renamed.txt") == fmt


def test_sniff_zeek_json_and_pcapng(shared_data: Path) -> None:
    with gzip.open(shared_data / "zeek" / "brimdata" / "dns.json.gz", "rb") as fh:
        assert sniff(fh.read(64 * 1024), "x.txt") == "zeek-json"
    pcapngs = sorted((shared_data / "tunnel" / "domainator").rglob("*.pcapng"))
    if pcapngs:
        assert sniff(pcapngs[0].read_bytes()[:64], "x.txt") == "pcap"


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"\x00" * 100,
        os.urandom(4096),
        b"just some notes, nothing tabular\nreally, none\n",
        b"{not json}\n",
    ],
)
def test_sniff_junk_is_unknown(junk: bytes) -> None:
    assert sniff(junk, "junk.txt") is None


def test_mixed_directory(shared_data: Path, tmp_path: Path) -> None:
    """Each file is detected from its content; junk is reported, nothing raises."""
    real = _real_files(shared_data)
    d = tmp_path / "mixed"
    (d / "sub").mkdir(parents=True)
    # the first 200 rows of a real Zeek TSV (the BTest baselines mask their timestamps)
    with gzip.open(shared_data / "zeek" / "brimdata" / "dns.log.gz", "rb") as fh:
        head = [next(fh) for _ in range(208)]
    (d / "a_zeek.txt").write_bytes(b"".join(head))
    shutil.copy(real["pcap"], d / "b_capture.bin")
    shutil.copy(real["dnsmasq"], d / "sub" / "c_resolver.txt")
    shutil.copy(real["unbound"], d / "sub" / "d_unbound.dat")
    shutil.copy(TD / "tabular" / "zeek_names.csv", d / "e_table.txt")
    with open(real["suricata"], "rb") as src, gzip.open(d / "f_eve.gz", "wb") as dst:
        dst.write(src.read())
    pq.write_table(pa.table({"ts": [1622989587.0], "query": ["p.example.com"]}), d / "g_table.bin")
    (d / "h_junk.dat").write_bytes(os.urandom(3000))
    (d / "i_empty.log").write_bytes(b"")
    (d / ".hidden").write_bytes(b"ignored")

    expected = {
        "a_zeek.txt": "zeek",
        "b_capture.bin": "pcap",
        "c_resolver.txt": "dnsmasq",
        "d_unbound.dat": "unbound",
        "e_table.txt": "csv",
        "f_eve.gz": "suricata",
        "g_table.bin": "parquet",
        "h_junk.dat": "unknown",
        "i_empty.log": "unknown",
    }
    files = list(iter_input_files([d]))
    assert sorted(p.name for p in files) == sorted(expected)
    seen: dict[str, IngestStats] = {}
    rows: dict[str, int] = {}
    for p in files:
        ctx = ReadContext(sensor=str(p), stats=IngestStats(source=str(p)), options={"year": 2020})
        rows[p.name] = sum(b.num_rows for b in read_file(p, "auto", ctx))
        seen[p.name] = ctx.stats
    assert {n: s.format for n, s in seen.items()} == expected
    for name, fmt in expected.items():
        stats = seen[name]
        if fmt == "unknown":
            assert rows[name] == 0
            assert stats.error is not None and "unrecognised format" in stats.error
        else:
            assert stats.error is None, (name, stats.error)
            assert rows[name] > 0, name
    assert rows["f_eve.gz"] == 340
    assert rows["g_table.bin"] == 1
    assert rows["e_table.txt"] == 4
    assert seen["h_junk.dat"].rejects["unrecognised_format"] == 1
