"""Alert Manager at scale: bulk upsert rate, then queue page and API list latency at 1M alerts.

For SQLite and for PostgreSQL (``--pg-url``, default ``$DNSIEVE_TEST_PG_URL``; skipped
with a message when unreachable) it:

1. generates ``--alerts`` realistic alerts (six detectors, Zipf-popular domains and
   clients, hourly windows over eight weeks, skewed scores, P(threat) on most) and
   loads them through :meth:`AlertStore.upsert_anomalies`, timing the rate; then
   times the per-row path the store used before (``prepare_anomalies`` plus a
   SQLAlchemy ``executemany`` of dicts, reproduced below) and the bulk path on the
   same ``--before-rows`` rows into an empty store: the before/after ratio;
2. gives the alerts statuses (about 88 % open), ~200 audited verdicts and a few
   allow-list entries, and prints the query plans of the main queue queries;
3. serves the app with ``dnsieve serve --workers N`` on 127.0.0.1 (``--workers``,
   default one per CPU core, as a deployment on this machine would run it; then
   again with one worker, the command's default) and drives it with ``--clients``
   concurrent clients (closed loop, no think time; the load generator, aiohttp, shares the
   machine) over a mix of queue pages (HTML, session cookie) and API list calls
   (bearer token): default order, other sorts, filters, search, deeper pages;
4. prints p50/p95/p99 and requests/s per endpoint, as ratios to two references
   measured in the same run: the cheapest authenticated endpoint (``/api/me``)
   under the same load, and the bare store query for the default page.

``--keep`` keeps the generated database (``--workdir``, or a PostgreSQL schema
``bench_web_<N>``) and reuses it when it already holds ``N`` alerts.

    .venv/bin/python bench/web.py                       # 1M alerts, both backends
    .venv/bin/python bench/web.py --alerts 100000 --no-pg --requests 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import sqlalchemy as sa

from dnsieve.alerts.base import UpsertReport, prepare_anomalies
from dnsieve.alerts.store import AlertStore
from dnsieve.rules.match import AllowMatcher
from dnsieve.web.queue import QueueQuery, list_queue

T0 = datetime(2026, 9, 1, tzinfo=UTC)
WEEKS = 8
DETECTORS = {  # name: (share, entity type)
    "volume": (0.30, "domain"),
    "dga": (0.15, "domain"),
    "tunnel": (0.08, "domain"),
    "newdomain": (0.12, "domain"),
    "nxdomain": (0.15, "client"),
    "beacon": (0.20, "client_domain"),
}
PASSWORD = "bench-password-" + "x" * 12
TLDS = ["com", "net", "org", "io", "de", "co.uk", "xyz", "top", "info", "ru"]


# --------------------------------------------------------------------------- data


def _names(rng: np.random.Generator, n: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
    lens = rng.integers(4, 14, n)
    out = []
    for i, k in enumerate(lens):
        label = "".join(rng.choice(letters, int(k)))
        out.append(f"{label}{i}.{TLDS[i % len(TLDS)]}")
    return out


def generate(n: int, seed: int = 7) -> Iterator[pl.DataFrame]:
    """``n`` unique anomalies (ANOMALY shape plus P(threat)) in frames of 200,000."""
    rng = np.random.default_rng(seed)
    domains = np.array(_names(rng, 200_000))
    clients = np.array(
        [f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}" for i in range(1, 8001)]
    )
    names = list(DETECTORS)
    shares = np.array([DETECTORS[d][0] for d in names])
    seen: set[tuple[str, str, int]] = set()
    made = 0
    while made < n:
        m = min(200_000, int((n - made) * 1.05) + 100)
        det = rng.choice(len(names), m, p=shares / shares.sum())
        dom = domains[np.minimum(rng.zipf(1.25, m) - 1, len(domains) - 1)]
        cli = clients[np.minimum(rng.zipf(1.4, m) - 1, len(clients) - 1)]
        hour = rng.integers(0, WEEKS * 7 * 24, m)
        rows: dict[str, list[Any]] = defaultdict(list)
        for i in range(m):
            d = names[int(det[i])]
            etype = DETECTORS[d][1]
            ent = (
                str(dom[i])
                if etype == "domain"
                else str(cli[i])
                if etype == "client"
                else f"{cli[i]}|{dom[i]}"
            )
            h = int(hour[i])
            key = (d, ent, h)
            if key in seen:
                continue
            seen.add(key)
            if len(rows["detector"]) == n - made:
                break
            rows["detector"].append(d)
            rows["entity_type"].append(etype)
            rows["entity"].append(ent)
            rows["hour"].append(h)
        k = len(rows["detector"])
        q = rng.lognormal(3, 1.2, k).astype(int) + 1
        tp = np.where(rng.random(k) < 0.8, rng.beta(0.6, 3.0, k), np.nan)
        frame = pl.DataFrame(
            {
                "detector": rows["detector"],
                "entity_type": rows["entity_type"],
                "entity": rows["entity"],
                "window_start": pl.Series(
                    [T0 + timedelta(hours=h) for h in rows["hour"]], dtype=pl.Datetime("us", "UTC")
                ),
                "score": rng.gamma(1.5, 2.0, k).round(4),
                "p_value": 10.0 ** -rng.uniform(1, 9, k),
                "threat_probability": pl.Series(tp).fill_nan(None),
                "evidence": [
                    json.dumps({"queries": int(x), "clients": int(x % 37) + 1, "baseline": 0.2})
                    for x in q
                ],
            }
        ).with_columns(window_end=pl.col("window_start") + pl.duration(hours=1))
        made += k
        yield frame


# --------------------------------------------------------------------------- stores


def log(message: str) -> None:
    """Progress, on stderr (stdout carries the report or the JSON)."""
    print(message, file=sys.stderr, flush=True)


def _pg_url(base: str, schema: str) -> str:
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def open_backend(
    backend: str, name: str, n: int, keep: bool, args: argparse.Namespace
) -> tuple[str, bool]:
    """The URL of database ``name`` and whether it already holds ``n`` alerts (``keep``)."""
    if backend == "sqlite":
        path = Path(args.workdir) / f"{name}.db"
        url = f"sqlite:///{path}"
        if keep and path.exists():
            with AlertStore.open(url) as s:
                if s.count_alerts("all", include_suppressed=True) == n:
                    return url, True
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return url, False
    schema = name
    admin = sa.create_engine(args.pg_url)
    try:
        with admin.begin() as conn:
            exists = conn.execute(
                sa.text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :s"),
                {"s": schema},
            ).first()
            if exists and keep:
                url = _pg_url(args.pg_url, schema)
                with AlertStore.open(url) as s:
                    if s.count_alerts("all", include_suppressed=True) == n:
                        return url, True
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    finally:
        admin.dispose()
    return _pg_url(args.pg_url, schema), False


def drop_backend(backend: str, url: str, args: argparse.Namespace) -> None:
    if backend == "sqlite":
        path = sa.make_url(url).database or ""
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
        return
    schema = sa.make_url(url).query["options"].split("=", 1)[1]  # type: ignore[union-attr]
    admin = sa.create_engine(args.pg_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


def legacy_upsert(store: AlertStore, frame: pl.DataFrame, batch_size: int = 5000) -> None:
    """The store's upsert before the bulk path: per-row preparation and dict executemany."""
    now = datetime.now(UTC)
    stmt = store._upsert_stmt()
    report = UpsertReport()
    for off in range(0, frame.height, batch_size):
        with store._write() as conn:
            matcher = AllowMatcher(store._rules(conn, now))
            prepared = prepare_anomalies(frame.slice(off, batch_size), matcher, report)
            ids = [p.id for p in prepared]
            q = sa.text("SELECT id FROM alerts WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            )
            for i in range(0, len(ids), 900):
                conn.execute(q, {"ids": ids[i : i + 900]}).all()
            conn.execute(stmt, [p.row(now) for p in prepared])


def ingest_rates(backend: str, sample: pl.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    """Rows/s of the old and the bulk path on the same rows, each into an empty store."""
    out: dict[str, Any] = {"rows": sample.height}
    for name, fn in (("before", legacy_upsert), ("after", None)):
        url, _ = open_backend(backend, f"bench_ingest_{name}", 0, False, args)
        with AlertStore.open(url) as s:
            t = time.perf_counter()
            if fn is None:
                s.upsert_anomalies(sample)
            else:
                fn(s, sample)
            out[name] = sample.height / (time.perf_counter() - t)
        drop_backend(backend, url, args)
    out["ratio"] = out["after"] / out["before"]
    return out


def load(store: AlertStore, n: int) -> dict[str, Any]:
    """Generate and upsert ``n`` alerts; then statuses, verdicts and allow-list entries."""
    gen_s = load_s = 0.0
    total = 0
    frames = generate(n)
    while True:
        t = time.perf_counter()
        frame = next(frames, None)
        gen_s += time.perf_counter() - t
        if frame is None:
            break
        t = time.perf_counter()
        rep = store.upsert_anomalies(frame)
        load_s += time.perf_counter() - t
        total += rep.inserted
    # statuses by id prefix (ids are uniform hex): ~88 % open
    t = time.perf_counter()
    with store.engine.begin() as conn:
        for lo, hi, status in (
            ("f0", "f8", "needs_review"),
            ("f8", "fb", "threat"),
            ("fb", "fe", "benign"),
            ("fe", "g", "not_relevant"),
        ):
            conn.execute(
                sa.text("UPDATE alerts SET status = :s WHERE id >= :lo AND id < :hi"),
                {"s": status, "lo": lo, "hi": hi},
            )
    for a in store.list_alerts(status="new", limit=200):
        store.record_verdict(a.id, ("threat", "benign", "not_relevant")[int(a.id[:4], 16) % 3], "b")
    top = store.list_alerts(status="all", detector="volume", limit=20, order="recent")
    for a in top[:6]:
        if a.domain:
            store.add_allow("suffix", a.domain, "known CDN", "bench", expires_at=None)
    store.add_allow("client", "10.0.0.7", "scanner", "bench", detector="nxdomain")
    return {
        "alerts": total,
        "generate_s": gen_s,
        "load_s": load_s,
        "rows_per_s": total / load_s,
        "finish_s": time.perf_counter() - t,
    }


def plans(store: AlertStore) -> dict[str, list[str]]:
    """EXPLAIN (QUERY PLAN) of the main queue queries."""
    now = datetime.now(UTC)
    from dnsieve.web.queue import _where

    def page(q: QueueQuery) -> sa.Select[Any]:
        return (
            store.select_alerts(now)
            .where(*_where(q, now, store))
            .order_by(*store.order_keys(q.sort))
            .limit(50)
        )

    queries = {
        "queue (threat)": page(QueueQuery()),
        "newest": page(QueueQuery(sort="newest")),
        "severity": page(QueueQuery(sort="severity")),
        "detector filter": page(QueueQuery(detector="tunnel")),
        "search": page(QueueQuery(search="abc1")),
        "counts": sa.select(sa.text("status, suppressed_by, count(*)"))
        .select_from(sa.table("alerts"))
        .group_by(sa.text("suppressed_by, status")),
    }
    out = {}
    with store.engine.connect() as conn:
        for name, q in queries.items():
            sql = str(
                q.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True})
            )
            if store.dialect == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql).all()
                out[name] = [str(r[-1]) for r in rows]
            else:
                rows = conn.exec_driver_sql("EXPLAIN " + sql).all()
                out[name] = [str(r[0]) for r in rows]
    return out


# --------------------------------------------------------------------------- server and load


def _server_command(url: str, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    """``dnsieve serve`` itself (access log off: ``--log-level warning``)."""
    code = "from dnsieve.cli import app; app()"
    cmd = [sys.executable, "-c", code, "serve", "--db", url, "--port", str(port)]
    cmd += ["--workers", str(workers), "--log-level", "warning", "--no-https-only"]
    # one session key, so that the bench's login cookie is good in every worker
    return cmd, {**os.environ, "DNSIEVE_WEB_SECRET": "b" * 48}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request_mix(store: AlertStore) -> list[tuple[str, str, str]]:
    """``(endpoint, variant, path)``: the queue page and the API list, in realistic variants."""
    dom = next((a.domain for a in store.list_alerts(detector="dga", limit=1) if a.domain), "com")
    cli = next((a.client for a in store.list_alerts(detector="nxdomain", limit=1) if a.client), "")
    word = dom.split(".")[0][:5]
    variants = [
        ("default", "", 8),
        ("page 2-20", "page={p}", 4),
        ("newest", "sort=newest", 2),
        ("severity", "sort=severity", 2),
        ("score", "sort=score", 1),
        ("detector", "detector=tunnel", 2),
        ("status all", "status=all", 1),
        ("threat", "status=threat", 1),
        ("domain", f"domain={dom}", 1),
        ("client", f"client={cli}", 1),
        ("search", f"q={word}", 1),
    ]
    mix = []
    for endpoint, prefix in (("queue page", "/alerts"), ("API list", "/api/alerts")):
        for name, query, weight in variants:
            mix += [(endpoint, name, prefix + ("?" + query if query else ""))] * weight
    return mix


def _login(base: str) -> dict[str, str]:
    import httpx

    with httpx.Client(base_url=base) as c:
        tok = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/login").text)
        assert tok is not None
        r = c.post(
            "/login",
            data={"username": "bench", "password": PASSWORD, "csrf_token": tok.group(1)},
        )
        if r.status_code != 303 or r.headers.get("location") != "/alerts":
            raise RuntimeError(f"bench login failed: HTTP {r.status_code}")
        return dict(c.cookies)


async def _drive(
    base: str, mix: list[tuple[str, str, str]], clients: int, requests: int, auth: dict[str, Any]
) -> dict[tuple[str, str], list[float]]:
    """``clients`` keep-alive connections, each sending its next request as soon as the last
    one is read (closed loop): latencies per ``(endpoint, variant)``, plus the wall time and
    this process's CPU seconds (the load generator's own cost, reported)."""
    import aiohttp

    rng = np.random.default_rng(1)
    picks = rng.integers(0, len(mix), requests)
    pages = rng.integers(2, 21, requests)
    lat: dict[tuple[str, str], list[float]] = defaultdict(list)
    errors: dict[int, int] = defaultdict(int)
    page_headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in auth["cookies"].items())}
    nxt = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal nxt
        while nxt < requests:
            i = nxt
            nxt += 1
            endpoint, variant, path = mix[int(picks[i])]
            path = path.replace("{p}", str(int(pages[i])))
            headers = auth["headers"] if path.startswith("/api") else page_headers
            t = time.perf_counter()
            async with session.get(base + path, headers=headers) as r:
                await r.read()
            dt = time.perf_counter() - t
            if r.status != 200:
                errors[r.status] += 1
            lat[(endpoint, variant)].append(dt)
            lat[(endpoint, "all")].append(dt)

    # aiohttp, not httpx: on this 2-core machine the load generator shares the CPU with the
    # server, and httpx spent 2-4 ms of CPU per request against aiohttp's 0.3 ms
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),  # the login cookie is sent as is
        timeout=aiohttp.ClientTimeout(total=120),
    ) as session:
        t, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*[worker(session) for _ in range(clients)])
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
    if errors:
        print(f"  non-200 responses: {dict(errors)}", file=sys.stderr)
    lat[("_wall", "")] = [wall]
    lat[("_cpu", "")] = [cpu]
    return lat


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its children, alive or reaped (``/proc``)."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
        todo += [int(k) for k in kids]
    return total


def _stats(xs: list[float]) -> dict[str, float]:
    q = np.quantile(np.array(xs) * 1000, [0.5, 0.95, 0.99])
    return {"n": len(xs), "p50_ms": q[0], "p95_ms": q[1], "p99_ms": q[2]}


def serve_and_drive(
    url: str, store: AlertStore, args: argparse.Namespace, workers: int
) -> dict[str, Any]:
    from dnsieve.web.users import UserStore

    users = UserStore(store.engine)
    if users.get_user("bench") is None:
        users.add_user("bench", "analyst", PASSWORD)
    token = users.new_token("bench")
    port = _free_port()
    cmd, env = _server_command(url, port, workers)
    proc = subprocess.Popen(cmd, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        for _ in range(600):
            try:
                httpx.get(base + "/login", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        auth = {"cookies": _login(base), "headers": {"Authorization": f"Bearer {token}"}}
        mix = request_mix(store)
        # warm-up (caches, connection pool), then the reference and the mix
        asyncio.run(_drive(base, mix, args.clients, 4 * args.clients, auth))
        me = [("reference", "/api/me", "/api/me")]
        ref = asyncio.run(_drive(base, me, args.clients, max(200, args.requests // 10), auth))
        # one client: the service time of each request, with no queueing
        single = asyncio.run(_drive(base, mix, 1, max(100, args.requests // 10), auth))
        cpu0 = _cpu_seconds(proc.pid)
        lat = asyncio.run(_drive(base, mix, args.clients, args.requests, auth))
        server_cpu = _cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # the bare store query of the default page, single client
    bare = []
    for _ in range(30):
        t = time.perf_counter()
        list_queue(store, QueueQuery())
        bare.append(time.perf_counter() - t)
    wall = lat.pop(("_wall", ""))[0]
    client_cpu = lat.pop(("_cpu", ""))[0]
    ref_wall = ref.pop(("_wall", ""))[0]
    for extra in ("_wall", "_cpu"):
        ref.pop((extra, ""), None)
        single.pop((extra, ""), None)
    rows = {f"{e} / {v}": _stats(x) for (e, v), x in sorted(lat.items())}
    for (e, v), x in lat.items():
        rows[f"{e} / {v}"]["rps"] = len(x) / wall
    reference = _stats(ref[("reference", "/api/me")])
    reference["rps"] = reference["n"] / ref_wall
    for (e, v), x in single.items():
        if f"{e} / {v}" in rows:
            rows[f"{e} / {v}"]["p50_1client_ms"] = float(np.median(x) * 1000)
    return {
        "workers": workers,
        "endpoints": rows,
        "reference_api_me": reference,
        "bare_default_page_ms": statistics.median(bare) * 1000,
        "total_rps": args.requests / wall,
        "server_cpu_ms_per_request": server_cpu / args.requests * 1000,
        "server_cpu_share": server_cpu / wall,
        "client_cpu_ms_per_request": client_cpu / args.requests * 1000,
    }


# --------------------------------------------------------------------------- main


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": backend}
    sample = next(generate(args.before_rows, seed=11)).head(args.before_rows)
    log(f"[{backend}] ingest rate, {sample.height:,} rows: per-row path vs bulk path ...")
    out["ingest"] = ingest_rates(backend, sample, args)
    url, reused = open_backend(backend, f"bench_web_{args.alerts}", args.alerts, args.keep, args)
    with AlertStore.open(url) as store:
        if reused:
            log(f"[{backend}] reusing {args.alerts:,} alerts at {store.url}")
            out["load"] = {"reused": True}
        else:
            log(f"[{backend}] generating and loading {args.alerts:,} alerts ...")
            out["load"] = load(store, args.alerts)
            if store.dialect == "postgresql":  # what autovacuum would have done by now
                with store.engine.connect() as conn:
                    conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                    conn.exec_driver_sql("VACUUM ANALYZE alerts")
        out["plans"] = plans(store)
        out["web"] = []
        for workers in dict.fromkeys([args.workers, 1]):
            log(
                f"[{backend}] {workers} worker(s), {args.clients} clients, {args.requests:,} requests"
            )
            out["web"].append(serve_and_drive(url, store, args, workers))
    if not args.keep:
        drop_backend(backend, url, args)
    return out


def report(res: dict[str, Any]) -> None:
    b = res["backend"]
    ing = res["ingest"]
    print(f"\n== {b} ==")
    print(
        f"upsert, {ing['rows']:,} rows into an empty store: per-row path {ing['before']:,.0f} rows/s,"
        f" bulk path {ing['after']:,.0f} rows/s (ratio {ing['ratio']:.1f}x)"
    )
    ld = res["load"]
    if not ld.get("reused"):
        print(
            f"load of {ld['alerts']:,} alerts: {ld['load_s']:.1f} s, {ld['rows_per_s']:,.0f} rows/s"
            f" (generation {ld['generate_s']:.1f} s, not counted)"
        )
    for name, lines in res["plans"].items():
        print(f"plan {name}: " + " | ".join(lines[:4]))
    for w in res["web"]:
        report_web(w)


def report_web(w: dict[str, Any]) -> None:
    n = w["workers"]
    how = (
        "one per CPU core, as a deployment on this machine would run"
        if n == os.cpu_count()
        else "the default of dnsieve serve"
        if n == 1
        else "as asked"
    )
    print(f"\n-- dnsieve serve --workers {n} ({how}) --")
    ref = w["reference_api_me"]
    bare = w["bare_default_page_ms"]
    print(
        f"reference /api/me: p50 {ref['p50_ms']:.1f} ms, p95 {ref['p95_ms']:.1f} ms,"
        f" {ref['rps']:.0f} req/s; bare store query of the default page: {bare:.1f} ms"
    )
    print(
        f"server CPU per request {w['server_cpu_ms_per_request']:.1f} ms; the server process"
        f" used {w['server_cpu_share']:.2f} cores while driven; the load generator"
        f" {w['client_cpu_ms_per_request']:.2f} ms per request"
    )
    print(
        f"{'endpoint / variant':<30}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
        f"{'p50/ref':>9}{'p95/ref':>9}{'req/s':>8}{'1-client p50':>14}"
    )
    for name, st in w["endpoints"].items():
        print(
            f"{name:<30}{st['n']:>6}{st['p50_ms']:>9.1f}{st['p95_ms']:>9.1f}{st['p99_ms']:>9.1f}"
            f"{st['p50_ms'] / ref['p50_ms']:>9.1f}{st['p95_ms'] / ref['p95_ms']:>9.1f}"
            f"{st.get('rps', float('nan')):>8.1f}{st.get('p50_1client_ms', float('nan')):>14.1f}"
        )
    print(f"total: {w['total_rps']:.1f} req/s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--alerts", type=int, default=1_000_000)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="`dnsieve serve --workers N` (default: the CPU cores, as a deployment here would"
        " serve); the 1-worker figure is measured too",
    )
    p.add_argument("--before-rows", type=int, default=50_000)
    p.add_argument("--pg-url", default=os.environ.get("DNSIEVE_TEST_PG_URL"))
    p.add_argument("--no-pg", action="store_true")
    p.add_argument("--no-sqlite", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep and reuse the generated databases")
    p.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "dnsieve-bench"))
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    backends = [] if args.no_sqlite else ["sqlite"]
    if not args.no_pg:
        if not args.pg_url:
            print("PostgreSQL skipped: give --pg-url or set DNSIEVE_TEST_PG_URL", file=sys.stderr)
        else:
            try:
                eng = sa.create_engine(args.pg_url)
                with eng.connect():
                    pass
                eng.dispose()
                backends.append("postgresql")
            except sa.exc.OperationalError as exc:
                print(
                    f"PostgreSQL skipped: {args.pg_url} unreachable ({exc.orig})", file=sys.stderr
                )
    results = [run_backend(b, args) for b in backends]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        for r in results:
            report(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
