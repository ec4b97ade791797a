"""A stream's status in the Alert Manager: ``GET /api/stream`` and the runs page.

A real stream (followed real Zeek JSON, brimdata sample) records its status in
the store; its source name carries markup (a hostile directory name), which
the page must escape.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from dnsieve.lake import Lake
from dnsieve.stream import FollowSource, StreamRunner
from dnsieve.web import WebSettings, create_app
from test_stream import _settings
from test_web import login, open_web_store

SAMPLE = Path(__file__).parent / "data" / "zeek" / "brim_dns_head.json"


def test_stream_status_in_api_and_runs_page(tmp_path: Path) -> None:
    store = open_web_store(tmp_path)
    hostile = tmp_path / "<img src=x onerror=alert(1)>"
    hostile.mkdir()
    shutil.copy(SAMPLE, hostile / "dns.json")
    st = _settings(batch=100)
    st.stream.status_seconds = 0.01
    runner = StreamRunner(
        FollowSource(hostile), Lake(tmp_path / "lake"), tmp_path / "ck", st,
        store_url=store.url, stop_when_idle=0.2,
    )  # fmt: skip
    status = runner.run()
    assert status.state == "finished" and status.events > 100
    with TestClient(create_app(WebSettings(), store=store)) as client:
        login(client, "viewer")
        got = client.get("/api/stream").json()
        assert len(got) == 1
        s = got[0]
        assert s["name"] == f"follow:{hostile}"
        assert s["events"] == status.events and s["state"] == "finished"
        assert s["open_windows"] == 0 and s["late"] == 0
        assert s["last_checkpoint"] and s["watermark"]
        page = client.get("/runs").text
        assert "<h2>Streams</h2>" in page
        assert "<img src=x onerror=alert(1)>" not in page
        assert "&lt;img src=x onerror=alert(1)&gt;" in page
    store.close()
