"""Hostile and careless input (issue 12, items 8 and 9).

* An unreadable, vanished or special input (mode 000, FIFO, socket, device, a
  symlink loop, a dangling symlink, an unlistable directory) is one counted
  failure with its real reason; the rest of the batch is ingested and the exit
  status says "partial failure" (3), not success.  Root reads mode-000 files,
  so that case runs the CLI as ``nobody`` when the suite runs as root.
* A query name past the protocol's limits (over 253 bytes of text, or a label
  over 63) is a counted ``name_too_long`` reject in every text adapter, through
  the one shared check in :func:`dnsieve.ingest.base.canonicalize`.
* A line longer than ``ingest.max_record_bytes`` is a counted ``line_too_long``
  and is never held whole in memory.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import site
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dnsieve.ingest import IngestStats, ReadContext, read_file, read_stream
from dnsieve.ingest.base import MAX_LABEL_BYTES, MAX_NAME_BYTES
from dnsieve.lake import Lake, exit_status, open_input
from dnsieve.schema import DNS_EVENT

DATA = Path(__file__).parent / "data"
SAMPLE = Path(str(resources.files("dnsieve") / "data" / "samples" / "wrccdc2018-dns.log.gz"))
N_SAMPLE_ROWS = 3000
SRC = Path(__file__).resolve().parents[1] / "src"
NOBODY = 65534


# --------------------------------------------------------------------------- item 8


@pytest.fixture()
def shared_tmp() -> Iterator[Path]:
    """A world-traversable temporary directory (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="dnsieve-hard-", dir="/tmp"))
    d.chmod(0o777)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "HOME": str(cwd),
        "XDG_DATA_HOME": str(cwd / "xdg"),
        "DNSIEVE_CONFIG": "",
    }
    return subprocess.run(
        [sys.executable, "-m", "dnsieve.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # a ceiling
    )


def _drop_to_nobody() -> None:  # runs in the child between fork and exec
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def _unprivileged_cli() -> tuple[list[str], dict[str, str]] | None:
    """How to run the CLI as ``nobody`` (root reads mode-000 files and so hides the
    fault): this interpreter if ``nobody`` may run it, else the system one of the
    same minor version on this environment's packages.  None when we are not root
    (then the plain CLI is already unprivileged)."""
    if os.geteuid() != 0:
        return None
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    path = os.pathsep.join([str(SRC), *site.getsitepackages()])
    for exe in (sys.executable, f"/usr/bin/{ver}", f"/usr/local/bin/{ver}"):
        env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": path, "LANG": "C.UTF-8"}
        try:
            probe = subprocess.run(
                [exe, "-c", "import polars, dnsieve.cli"],
                env=env,
                capture_output=True,
                preexec_fn=_drop_to_nobody,
                check=False,
            )
        except OSError:  # nobody may not run it (it lives under root's home)
            continue
        if probe.returncode == 0:
            return [exe, "-m", "dnsieve.cli"], env
    pytest.skip("no Python interpreter that user nobody may run")


def _ingest_as_nobody(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    how = _unprivileged_cli()
    if how is None:
        return _cli(args, cwd)
    argv, env = how
    return subprocess.run(
        [*argv, *args],
        cwd=cwd,
        env={**env, "HOME": str(cwd), "XDG_DATA_HOME": str(cwd / "xdg")},
        capture_output=True,
        text=True,
        timeout=1800,  # a ceiling
        preexec_fn=_drop_to_nobody,
        check=False,
    )


def test_unreadable_file_sorting_first_is_one_failure_not_an_abort(shared_tmp: Path) -> None:
    """The issue's probe: a mode-000 file that sorts first in a directory (unprivileged)."""
    logs = shared_tmp / "logs"
    logs.mkdir(mode=0o755)
    locked = logs / "a-locked.log"
    locked.write_bytes(gzip.decompress(SAMPLE.read_bytes()))
    locked.chmod(0)
    shutil.copy(SAMPLE, logs / "b-readable.log.gz")
    (logs / "b-readable.log.gz").chmod(0o644)
    lake_dir = shared_tmp / "lake"
    res = _ingest_as_nobody(["ingest", str(logs), "--lake", str(lake_dir), "--json"], shared_tmp)
    assert "Traceback" not in res.stderr, res.stderr
    assert res.returncode == 3, (res.returncode, res.stderr)
    files = {Path(f["path"]).name: f for f in json.loads(res.stdout)["files"]}
    assert files["a-locked.log"]["status"] == "error"
    assert files["a-locked.log"]["error"] == "permission denied"
    assert files["b-readable.log.gz"]["status"] == "ingested"
    assert files["b-readable.log.gz"]["rows_written"] == N_SAMPLE_ROWS
    assert Lake(lake_dir).scan().select(pl.len()).collect().item() == N_SAMPLE_ROWS


def test_special_files_are_refused_with_their_real_reason(tmp_path: Path) -> None:
    """FIFO, socket, device, symlink loop, dangling symlink: refused for everyone, root too."""
    d = tmp_path / "in"
    d.mkdir()
    os.mkfifo(d / "a-fifo")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(d / "b-socket"))
    (d / "c-loop1").symlink_to(d / "c-loop2")
    (d / "c-loop2").symlink_to(d / "c-loop1")
    (d / "d-dangling").symlink_to(d / "gone")
    (d / "e-null").symlink_to("/dev/null")
    shutil.copy(SAMPLE, d / "z-good.log.gz")
    try:
        lake = Lake(tmp_path / "lake")
        reps = {Path(r.path).name: r for r in lake.ingest_files([d])}
    finally:
        sock.close()
    assert reps["a-fifo"].error == "not a regular file (a FIFO)"
    assert reps["b-socket"].error == "not a regular file (a socket)"
    assert reps["c-loop1"].error == "symlink loop"
    assert reps["c-loop2"].error == "symlink loop"
    assert reps["d-dangling"].error == "broken symlink"
    assert reps["e-null"].error == "not a regular file (a character device)"
    assert all(reps[n].status == "error" for n in reps if n != "z-good.log.gz")
    assert reps["z-good.log.gz"].rows_written == N_SAMPLE_ROWS
    assert exit_status(list(reps.values())) == 3
    assert lake.scan().select(pl.len()).collect().item() == N_SAMPLE_ROWS


def test_vanished_and_missing_inputs(tmp_path: Path) -> None:
    good = tmp_path / "good.log.gz"
    shutil.copy(SAMPLE, good)
    assert open_input(tmp_path / "vanished.log") == (None, "no such file")
    reps = Lake(tmp_path / "lake").ingest_files([tmp_path / "vanished.log", good])
    assert [r.status for r in reps] == ["error", "ingested"]
    assert reps[0].error == "no such file"


def test_cli_exit_codes_tell_partial_failure_from_success(tmp_path: Path) -> None:
    good = tmp_path / "good.log.gz"
    shutil.copy(SAMPLE, good)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    lake = str(tmp_path / "lake")
    ok = _cli(["ingest", str(good), "--lake", lake], tmp_path)
    assert ok.returncode == 0, ok.stderr
    partial = _cli(["ingest", str(good), str(fifo), "--lake", lake], tmp_path)
    assert partial.returncode == 3, partial.stderr
    failed = _cli(["ingest", str(fifo), "--lake", lake], tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert "Traceback" not in partial.stderr + failed.stderr


def test_run_goes_on_past_an_unreadable_input(tmp_path: Path) -> None:
    good = tmp_path / "good.log.gz"
    shutil.copy(SAMPLE, good)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    res = _cli(
        ["run", str(fifo), str(good), "--no-store", "--json", "--lake", str(tmp_path / "lake")],
        tmp_path,
    )
    assert res.returncode == 3, res.stderr
    out = json.loads(res.stdout)
    by = {Path(r["path"]).name: r for r in out["ingest"]}
    assert by["pipe"]["error"] == "not a regular file (a FIFO)"
    assert by["good.log.gz"]["rows_written"] == N_SAMPLE_ROWS


def test_unlistable_subdirectory_is_reported(shared_tmp: Path) -> None:
    logs = shared_tmp / "logs"
    (logs / "closed").mkdir(parents=True)
    shutil.copy(SAMPLE, logs / "closed" / "x.log.gz")
    shutil.copy(SAMPLE, logs / "open.log.gz")
    logs.chmod(0o755)
    (logs / "open.log.gz").chmod(0o644)
    (logs / "closed").chmod(0)
    lake_dir = shared_tmp / "lake"
    res = _ingest_as_nobody(["ingest", str(logs), "--lake", str(lake_dir), "--json"], shared_tmp)
    assert res.returncode == 3, (res.returncode, res.stderr)
    files = {Path(f["path"]).name: f for f in json.loads(res.stdout)["files"]}
    assert files["closed"]["error"] == "permission denied"
    assert files["open.log.gz"]["rows_written"] == N_SAMPLE_ROWS


# --------------------------------------------------------------------------- item 9

LONG_LABEL = "x" * (MAX_LABEL_BYTES + 1) + ".example.com"  # one label of 64 bytes
LONG_NAME = ".".join(["y" * 60] * 4) + ".example.com"  # 256 bytes, labels within limits
AT_LIMIT = ".".join(["z" * 63] * 3) + "." + "w" * 61  # exactly 253 bytes, labels of 63


def _read(data: bytes, fmt: str, **options: object) -> tuple[pl.DataFrame, IngestStats]:
    ctx = ReadContext(sensor="t", stats=IngestStats(source="t"), options={"year": 2024, **options})
    batches = list(read_stream(io.BytesIO(data), fmt, ctx))
    return pl.from_arrow(pa.Table.from_batches(batches, schema=DNS_EVENT)), ctx.stats  # type: ignore[return-value]


TEXT_FIXTURES = [
    ("zeek", DATA / "zeek" / "brim_dns_head.log"),
    ("zeek-json", DATA / "zeek" / "brim_dns_head.json"),
    ("suricata", DATA / "suricata" / "eve_v2.json"),
    ("dnsmasq", DATA / "querylog" / "dnsmasq_extra.log"),
    ("bind", DATA / "querylog" / "bind_queries.log"),
    ("unbound", DATA / "querylog" / "unbound.log"),
    ("csv", DATA / "tabular" / "zeek_names.csv"),
]


@pytest.mark.parametrize("bad", [LONG_LABEL, LONG_NAME], ids=["label64", "name256"])
@pytest.mark.parametrize(("fmt", "path"), TEXT_FIXTURES, ids=[f for f, _ in TEXT_FIXTURES])
def test_names_past_protocol_limits_are_counted_rejects(fmt: str, path: Path, bad: str) -> None:
    raw = path.read_bytes()
    before, stats0 = _read(raw, fmt)
    assert before.height > 0 and "name_too_long" not in stats0.rejects
    # the most frequent name that is written literally in the file
    names = before.group_by("qname").len().sort(["len", "qname"], descending=[True, False])
    victim = next(
        q
        for q in names["qname"].to_list()
        if q and len(q) > 6 and re.search(re.escape(q.encode()), raw, re.IGNORECASE)
    )
    hostile = re.sub(re.escape(victim.encode()), bad.encode(), raw, flags=re.IGNORECASE)
    after, stats = _read(hostile, fmt)
    n_victim = before.filter(pl.col("qname") == victim).height
    assert stats.rejects["name_too_long"] == n_victim, stats.to_dict()
    assert after.height == before.height - n_victim
    assert not after["qname"].str.contains(bad[:40]).any()
    assert stats.examples["name_too_long"][0].startswith(f"{len(bad)} bytes")
    # a name exactly at the limits passes
    edge, stats2 = _read(
        re.sub(re.escape(victim.encode()), AT_LIMIT.encode(), raw, flags=re.IGNORECASE), fmt
    )
    assert "name_too_long" not in stats2.rejects
    assert edge.height == before.height and AT_LIMIT in edge["qname"].to_list()


def test_parquet_names_past_limits(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(
        pa.table(
            {
                "ts": [1.0e9, 1.0e9 + 1, 1.0e9 + 2],
                "query": ["ok.example.com", LONG_LABEL, "\\xff" * 300],
                "id.orig_h": ["10.0.0.1"] * 3,
            }
        ),
        path,
    )
    ctx = ReadContext(sensor="t", stats=IngestStats(source="t"))
    rows = sum(b.num_rows for b in read_file(path, "parquet", ctx))
    assert rows == 1
    assert ctx.stats.rejects["name_too_long"] == 2


def test_escaped_bytes_count_once() -> None:
    """A label of 63 raw bytes, written ``\\xNN`` (252 characters), is within limits."""
    label = "\\xff" * MAX_LABEL_BYTES
    data = (
        "ts,query,id.orig_h\n"
        f"1000000000,{label}.example.com,10.0.0.1\n"
        f"1000000001,{'a' * (MAX_NAME_BYTES - 12)}.example.com,10.0.0.1\n"
    ).encode()
    df, stats = _read(data, "csv")
    assert df.height == 1 and stats.rejects["name_too_long"] == 1
    assert df["qname"][0].startswith("\\xff\\xff")


# one record whose query name is 2 MiB, between two good records
_HUGE = "q" * (2 << 20)
HUGE_LINES = {
    "zeek": None,  # built from the fixture's header below
    "zeek-json": '{"ts":1000000000.5,"id.orig_h":"10.0.0.1","query":"%s","qtype_name":"A"}',
    "suricata": '{"timestamp":"2024-03-10T12:00:00.1+0000","event_type":"dns","src_ip":"10.0.0.1",'
    '"dest_ip":"10.0.0.2","dns":{"type":"query","id":1,"rrname":"%s","rrtype":"A"}}',
    "dnsmasq": "Jan  1 00:00:01 gw dnsmasq[1]: 9 10.0.0.1/4000 query[A] %s from 10.0.0.1",
}


@pytest.mark.parametrize("fmt", list(HUGE_LINES))
def test_over_long_lines_are_counted_and_dropped(fmt: str) -> None:
    if fmt == "zeek":
        fixture = (DATA / "zeek" / "brim_dns_head.log").read_bytes().splitlines(keepends=True)
        header = [ln for ln in fixture if ln.startswith(b"#") and not ln.startswith(b"#close")]
        body = [ln for ln in fixture if not ln.startswith(b"#")][:2]
        huge = body[0].split(b"\t")
        huge[9] = _HUGE.encode()
        data = b"".join([*header, body[0], b"\t".join(huge), body[1]])
        good = 2
    else:
        fixture_by = {"zeek-json": "zeek/brim_dns_head.json", "suricata": "suricata/eve_v2.json"}
        fixture_by["dnsmasq"] = "querylog/dnsmasq_extra.log"
        raw = (DATA / fixture_by[fmt]).read_bytes()
        _, base = _read(raw, fmt)
        good = base.rows_emitted
        line = (HUGE_LINES[fmt] % _HUGE).encode()  # type: ignore[operator]
        lines = raw.splitlines(keepends=True)
        data = b"".join([*lines[:1], line + b"\n", *lines[1:]])
    for chunk in (1 << 16, 1 << 24):  # the long line inside a chunk, and across chunks
        df, stats = _read(data, fmt, chunk_bytes=chunk)
        assert stats.rejects["line_too_long"] == 1, (chunk, stats.to_dict())
        assert df.height == good
        assert len(stats.examples["line_too_long"][0]) <= 200


def test_max_record_bytes_is_a_setting(tmp_path: Path) -> None:
    """``ingest.max_record_bytes`` reaches the adapters through the lake."""
    from dnsieve.config import load_settings

    cfg = tmp_path / "d.toml"
    cfg.write_text("[ingest]\nmax_record_bytes = 2048\n")
    settings = load_settings(cfg)
    lake = Lake.from_settings(settings, tmp_path / "lake")
    assert lake.max_record_bytes == 2048
    log = tmp_path / "q.json"
    rec = HUGE_LINES["zeek-json"]
    log.write_text(
        "\n".join([rec % ("a" * 10 + ".com"), rec % ("b" * 3000), rec % "c.example.com"]) + "\n"
    )
    (rep,) = lake.ingest_files([log])
    assert rep.rows_written == 2 and rep.rejects == {"line_too_long": 1}
