"""The Alert Manager shows flows: the flows behind a flow alert, and the client's flows to a
DNS alert's answers, with every attacker-controlled string escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from dnsieve.alerts import AlertStore
from dnsieve.lake import Lake
from dnsieve.web import WebSettings, create_app
from dnsieve.web.users import UserStore
from test_alert_store import aid, one
from test_web_events import PASSWORD, login

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
HOSTILE = '<script>alert("sni")</script>'


@pytest.fixture
def app(tmp_path: Path) -> TestClient:
    t = T0.timestamp()
    dns = tmp_path / "dns.log"
    dns.write_text(
        "#separator \\x09\n#path\tdns\n#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p"
        "\tproto\ttrans_id\tquery\tqtype\trcode\tanswers\tTTLs\n"
        f"{t + 60:.6f}\tC1\t10.0.0.5\t5353\t10.0.0.1\t53\tudp\t1\tcdn.evil.example\t1\t0"
        "\t203.0.113.80\t60.0\n"
    )
    rows = [
        f"{i},167772165,10.0.0.5,{40000 + i},203.0.113.80,443,6,10,5000,60,1500,500,400,"
        f"{t + 65 + 300 * i:.3f},{t + 66 + 300 * i:.3f},1.0,0,1,0.2,0.3,4,1000,6,4000,3,Web,TLS,"
        f'Evil,"{HOSTILE.replace(chr(34), chr(34) * 2)}"'
        for i in range(5)
    ]
    flows = tmp_path / "labeled.csv"
    flows.write_text(
        "flow_key,src_ip_numeric,src_ip,src_port,dst_ip,dst_port,proto,pktTotalCount,"
        "octetTotalCount,min_ps,max_ps,avg_ps,std_dev_ps,flowStart,flowEnd,flowDuration,min_piat,"
        "max_piat,avg_piat,std_dev_piat,f_pktTotalCount,f_octetTotalCount,b_pktTotalCount,"
        "b_octetTotalCount,flowEndReason,category,application_protocol,web_service,"
        "requested_server_name\n" + "\n".join(rows) + "\n"
    )
    lake = Lake(tmp_path / "lake")
    lake.ingest_files([dns])
    assert lake.ingest_flow_files([flows])[0].rows_written == 5
    store = AlertStore.open(f"sqlite:///{tmp_path / 'alerts.db'}")
    store.upsert_anomalies(
        one("10.0.0.5|203.0.113.80", detector="conn_beacon", entity_type="client_dest", start=T0)
    )
    store.upsert_anomalies(
        one("10.0.0.5|evil.example", detector="beacon", entity_type="client_domain", start=T0)
    )
    store.upsert_anomalies(one("10.9.9.9", detector="conn_exfil", entity_type="client", start=T0))
    UserStore(store.engine).add_user("viewer", "viewer", PASSWORD)
    assert PASSWORD
    return TestClient(create_app(WebSettings(), store=store, lake=tmp_path / "lake"))


def _flow_rows(html: str) -> list[list[str]]:
    body = html.split('<table class="flows">', 1)[1].split("</table>", 1)[0]
    return [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in re.findall(r"<tr>(<td.*?)</tr>", body)]


def test_flow_and_dns_alerts_list_their_flows_escaped(app: TestClient) -> None:
    with app as c:
        login(c, "viewer")
        html = c.get(f"/alerts/{aid('10.0.0.5|203.0.113.80', 'conn_beacon', T0)}").text
        assert "Flows behind the alert" in html and "Showing 5 of 5 flows" in html
        rows = _flow_rows(html)
        assert len(rows) == 5 and rows[0][2] == "203.0.113.80:443" and rows[0][3] == "tcp"
        assert HOSTILE not in html  # the server name is attacker-controlled
        assert "&lt;script&gt;alert(&#34;sni&#34;)&lt;/script&gt;" in html
        # a DNS alert: the client's flows to the addresses the domain resolved to
        html = c.get(f"/alerts/{aid('10.0.0.5|evil.example', 'beacon', T0)}").text
        assert "The client&#39;s flows to the domain&#39;s addresses" in html
        assert "to 203.0.113.80" in html and len(_flow_rows(html)) == 5
        # a flow alert without flows in its window says so
        html = c.get(f"/alerts/{aid('10.9.9.9', 'conn_exfil', T0)}").text
        assert "no flows of this alert" in html
