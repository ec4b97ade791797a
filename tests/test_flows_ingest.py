"""Flow ingest: conn.log (TSV, JSON), FlowLabeler and CICFlowMeter CSV, the lake's flows/,
routing in ``dnsieve ingest``, and the FlowLabeler export round trip.

Inputs are generated here (the conn.log text follows Zeek's ASCII writer) or read
in place from ../shared/data (``@pytest.mark.shared``).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from conftest import require_module
from dnsieve.cli import app
from dnsieve.ingest.base import IngestStats, ReadContext
from dnsieve.ingest.flows_common import (
    FLOW_POLARS_SCHEMA,
    input_kind,
    read_flow_file,
    route_inputs,
    sniff_flows,
)
from dnsieve.lake import Lake
from dnsieve.schema import FLOW_RECORD

CONN_HEADER = (
    "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n"
    "#open\t2024-04-19-00-00-01\n"
    "#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\tduration"
    "\torig_bytes\tresp_bytes\tconn_state\tlocal_orig\tlocal_resp\tmissed_bytes\thistory"
    "\torig_pkts\torig_ip_bytes\tresp_pkts\tresp_ip_bytes\ttunnel_parents\n"
    "#types\ttime\tstring\taddr\tport\taddr\tport\tenum\tstring\tinterval\tcount\tcount\tstring"
    "\tbool\tbool\tcount\tstring\tcount\tcount\tcount\tcount\tset[string]\n"
)


def conn_line(ts: float, src: str, dst: str, dport: int, *, dur: str = "1.5", state: str = "SF",
              ob: int = 100, rb: int = 2000, service: str = "http") -> str:  # fmt: skip
    return (
        f"{ts:.6f}\tC{int(ts)}\t{src}\t40000\t{dst}\t{dport}\ttcp\t{service}\t{dur}\t{ob}\t{rb}"
        f"\t{state}\tT\tF\t0\tShADadFf\t5\t{ob + 200}\t4\t{rb + 160}\t-\n"
    )


def read(path: Path, fmt: str = "auto", batch: int = 3) -> tuple[pl.DataFrame, IngestStats]:
    stats = IngestStats(source=str(path))
    ctx = ReadContext(sensor=str(path), stats=stats, batch_size=batch)
    batches = list(read_flow_file(path, fmt, ctx))
    assert all(b.num_rows <= batch for b in batches)  # bounded batches
    assert all(b.schema == FLOW_RECORD for b in batches)
    table = pa.Table.from_batches(batches, schema=FLOW_RECORD)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame, stats


@pytest.fixture
def conn_log(tmp_path: Path) -> Path:
    lines = [conn_line(1713484800 + 10 * i, "10.0.0.5", "93.184.216.34", 80) for i in range(5)]
    text = CONN_HEADER + "".join(lines)
    text += "1713484900.0\tCbad\t10.0.0.5\t1\n"  # too few fields
    text += (
        "junk-ts\tCx\t10.0.0.5\t1\t1.1.1.1\t53\tudp\tdns\t-\t-\t-\tS0\tT\tF\t0\tD\t1\t60\t0\t0\t-\n"
    )
    # a second header (concatenated logs), with an unset duration
    text += CONN_HEADER + conn_line(1713488400, "10.0.0.6", "1.1.1.1", 443, dur="-", state="S1")
    p = tmp_path / "conn.log.gz"
    p.write_bytes(gzip.compress(text.encode()))
    return p


def test_conn_tsv_maps_fields_and_counts_rejects(conn_log: Path) -> None:
    df, stats = read(conn_log)
    assert stats.format == "zeek-conn"
    assert df.height == 6
    assert stats.records_read == 8
    assert stats.rejects == {"bad_field_count": 1, "bad_timestamp": 1}
    first = df.row(0, named=True)
    assert (first["src_ip"], first["dst_ip"], first["dst_port"], first["proto"]) == (
        "10.0.0.5", "93.184.216.34", 80, "tcp",
    )  # fmt: skip
    assert first["src2dst_payload_bytes"] == 100 and first["dst2src_bytes"] == 2160
    assert first["src2dst_packets"] == 5 and first["dst2src_packets"] == 4
    assert first["duration"] == 1.5
    assert (first["ts_last"] - first["ts"]).total_seconds() == pytest.approx(1.5)
    assert first["src2dst_mean_ps"] == pytest.approx(300 / 5)
    assert first["end_reason"] == "end" and first["application"] == "http"
    last = df.row(-1, named=True)
    assert last["duration"] == 0.0 and last["end_reason"] == "open"


def test_conn_json_skips_other_logs_and_rejects_bad_lines(tmp_path: Path) -> None:
    rows = [
        {"_path": "conn", "ts": 1517422326.5, "uid": "C1", "id.orig_h": "10.55.100.100",
         "id.orig_p": 61843, "id.resp_h": "205.204.101.182", "id.resp_p": 80, "proto": "tcp",
         "duration": 108.9, "orig_bytes": 719, "resp_bytes": 336, "conn_state": "SF",
         "orig_pkts": 10, "orig_ip_bytes": 1131, "resp_pkts": 4, "resp_ip_bytes": 508},
        {"_path": "dns", "ts": 1517422327.0, "query": "a.example"},
        {"_path": "conn", "ts": "2018-01-31T18:12:08.000000Z", "uid": "C2", "id.orig_h": "10.0.0.1",
         "id.resp_h": "10.0.0.2", "proto": "udp", "conn_state": "S0"},
    ]  # fmt: skip
    text = "\n".join(json.dumps(r) for r in rows) + "\n{not json\n"
    p = tmp_path / "conn.json"
    p.write_text(text)
    assert sniff_flows(text.encode()) == "zeek-conn-json"
    df, stats = read(p)
    assert stats.format == "zeek-conn-json"
    assert df.height == 2
    assert stats.skipped == {"not_conn_log": 1}
    assert stats.rejects == {"bad_json": 1}
    assert df["src2dst_bytes"].to_list() == [1131, None]
    assert df["ts"][1].isoformat() == "2018-01-31T18:12:08+00:00"


def test_flowlabeler_and_cicflowmeter_by_column_name(tmp_path: Path) -> None:
    fl = tmp_path / "labeled.csv"
    fl.write_text(
        "flow_key,src_ip_numeric,src_ip,src_port,dst_ip,dst_port,proto,pktTotalCount,"
        "octetTotalCount,min_ps,max_ps,avg_ps,std_dev_ps,flowStart,flowEnd,flowDuration,"
        "min_piat,max_piat,avg_piat,std_dev_piat,f_pktTotalCount,f_octetTotalCount,f_avg_ps,"
        "b_pktTotalCount,b_octetTotalCount,flowEndReason,category,application_protocol,web_service\n"
        "7,167772161,10.0.0.1,50000,142.250.1.1,443,6,10,5000,60,1500,500,400,1556000000.5,"
        "1556000002.5,2.0,0.0,1.0,0.2,0.3,4,1000,250,6,4000,2,Media,TLS,YouTube\n"
        "8,167772161,10.0.0.1,50001,,443,6,1,60,60,60,60,0,1556000003,1556000003,0,0,0,0,0,1,60,60,"
        "0,0,1,Web,TLS,Google\n"
    )
    df, stats = read(fl)
    assert stats.format == "flowlabeler"
    assert df.height == 1 and stats.rejects == {"missing_address": 1}
    r = df.row(0, named=True)
    assert (r["proto"], r["src2dst_packets"], r["dst2src_bytes"], r["end_reason"]) == (
        "tcp", 4, 4000, "active",
    )  # fmt: skip
    assert r["bidirectional_std_ps"] == 400 and r["bidirectional_max_piat"] == 1.0
    assert r["application"] == "YouTube" and r["category"] == "Media" and r["uid"] == "7"
    # Unicauca 87-attribute names (dots) and CIC-IDS names (spaces) read the same way
    for header, stamp in (
        ("Flow.ID,Source.IP,Source.Port,Destination.IP,Destination.Port,Protocol,Timestamp,"
         "Flow.Duration,Total.Fwd.Packets,Total.Backward.Packets,Total.Length.of.Fwd.Packets,"
         "Total.Length.of.Bwd.Packets,Flow.IAT.Max,Fwd.Header.Length,SYN.Flag.Count,L7Protocol,"
         "ProtocolName", "26/04/201711:11:17"),
        ("Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp,"
         " Flow Duration, Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets,"
         " Total Length of Bwd Packets, Flow IAT Max, Fwd Header Length, SYN Flag Count,"
         "L7Protocol,ProtocolName", "26/04/2017 11:11:17"),
    ):  # fmt: skip
        p = tmp_path / "cic.csv"
        p.write_text(
            header + "\n" + f"f1,10.0.0.9,3389,192.168.0.1,53,17,{stamp},2500000,3,2,300,900,"
            "1200000,96,0,5,DNS\n"
        )
        df, stats = read(p)
        assert stats.format == "cicflow", header
        r = df.row(0, named=True)
        assert r["ts"].isoformat() == "2017-04-26T11:11:17+00:00"
        assert r["duration"] == pytest.approx(2.5)
        assert r["src2dst_packets"] == 3 and r["dst2src_payload_bytes"] == 900
        assert r["src2dst_bytes"] == 396 and r["bidirectional_max_piat"] == pytest.approx(1.2)
        assert r["proto"] == "udp" and r["application"] == "DNS"
        assert r["bidirectional_syn_packets"] == 0


def test_routing_by_content(tmp_path: Path, conn_log: Path) -> None:
    dns = tmp_path / "dns.log"
    dns.write_text("#separator \\x09\n#path\tdns\n#fields\tts\tuid\tquery\n1.0\tC\ta.example\n")
    pcap = Path(__file__).parent.parent / "src/dnsieve/data/samples/wikipedia.pcap"
    assert input_kind(conn_log) == "flows"
    assert input_kind(dns) == "dns"
    assert input_kind(pcap) == "pcap"
    assert route_inputs([conn_log, dns, pcap]) == ([dns, pcap], [conn_log])
    assert route_inputs([conn_log, dns, pcap], pcap_flows=True) == ([dns, pcap], [conn_log, pcap])


def test_lake_flows_idempotent_and_grown(tmp_path: Path) -> None:
    log = tmp_path / "conn.log"
    log.write_text(
        CONN_HEADER
        + "".join(conn_line(1713484800 + 60 * i, "10.0.0.5", "1.2.3.4", 80) for i in range(4))
    )
    lake = Lake(tmp_path / "lake")
    first = lake.ingest_flow_files([log])
    assert [r.status for r in first] == ["ingested"] and first[0].rows_written == 4
    again = lake.ingest_flow_files([log])
    assert [r.status for r in again] == ["unchanged"]
    with open(log, "a") as fh:  # the log grows: only the new rows are read
        fh.write(conn_line(1713488400, "10.0.0.7", "1.2.3.4", 80))
    grown = lake.ingest_flow_files([log])
    assert grown[0].status == "grown" and grown[0].rows_written == 1
    flows = lake.scan_flows().collect()
    assert flows.height == 5 and flows.schema == FLOW_POLARS_SCHEMA
    assert len(lake.flow_files()) == 2  # two hours
    assert all("/flows/date=2024-04-19/hour=" in str(f) for f in lake.flow_files())
    assert lake.files() == []  # the events are untouched
    # a part file no commit lists (a writer killed before committing) is removed
    stray = lake.path / "flows/date=2024-04-19/hour=00/part-dead-00001.parquet"
    stray.write_bytes(b"x")
    lake.ingest_flow_files([log])
    assert not stray.exists()


def test_ingest_command_routes_each_input(tmp_path: Path, conn_log: Path) -> None:
    dns = tmp_path / "dns.log"
    dns.write_text(
        "#separator \\x09\n#path\tdns\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p"
        "\tproto\ttrans_id\tquery\tqtype\trcode\tanswers\tTTLs\n"
        "1713484790.0\tC1\t10.0.0.5\t5353\t10.0.0.1\t53\tudp\t1\texample.com\t1\t0\t93.184.216.34\t60.0\n"
    )
    res = CliRunner().invoke(
        app, ["ingest", "--lake", str(tmp_path / "lk"), "--json", str(conn_log), str(dns)]
    )
    assert res.exit_code == 0, res.output
    files = {Path(f["path"]).name: f for f in json.loads(res.output)["files"]}
    assert (
        files["conn.log.gz"]["format"] == "zeek-conn" and files["conn.log.gz"]["rows_written"] == 6
    )
    assert files["dns.log"]["format"] == "zeek" and files["dns.log"]["rows_written"] == 1
    lake = Lake(tmp_path / "lk")
    assert lake.scan_flows().collect().height == 6
    assert lake.scan().collect().height == 1


def test_flows_command_exports_flowlabeler_round_trip(tmp_path: Path) -> None:
    require_module("nfstream", reason="the flows extra is not installed")
    pcap = Path(__file__).parent.parent / "src/dnsieve/data/samples/wikipedia.pcap"
    out = tmp_path / "flows.csv"
    res = CliRunner().invoke(app, ["flows", str(pcap), "--out", str(out)])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    assert header[:8] == [
        "flow_key",
        "src_ip_numeric",
        "src_ip",
        "src_port",
        "dst_ip",
        "dst_port",
        "proto",
        "pktTotalCount",
    ]
    assert "f_std_dev_piat" in header and header[-5:-3] == ["flowEndReason", "category"]
    back, stats = read(out)
    direct, _ = read(pcap)
    assert stats.format == "flowlabeler" and back.height == direct.height == 34
    cols = ["ts", "src_ip", "dst_ip", "dst_port", "proto", "src2dst_packets", "dst2src_bytes",
            "bidirectional_std_ps", "dst2src_max_piat", "application", "category", "end_reason"]  # fmt: skip
    assert back.select(cols).equals(direct.select(cols)) or back.select(
        cols
    ).to_dicts() == pytest.approx(direct.select(cols).to_dicts())
    wiki = direct.filter(pl.col("server_name") == "www.wikipedia.org")
    assert wiki.height >= 1 and wiki["application"][0] == "HTTP.Wikipedia"
    # a bad argument is a clear error, not a traceback
    res = CliRunner().invoke(app, ["flows", str(pcap), "--out", str(out), "--format", "nope"])
    assert res.exit_code == 2


@pytest.mark.shared
def test_rita_conn_logs_are_all_read(shared_data: Path) -> None:
    """The 105,918 conn rows of RITA's missing_host that the DNS ingest skips."""
    total = rejected = 0
    for p in sorted((shared_data / "zeek/rita/missing_host").rglob("conn.*.log.gz")):
        df, stats = read(p, batch=65_536)
        total += df.height
        rejected += stats.rejected
    assert (total, rejected) == (105_918, 0)
