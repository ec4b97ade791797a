"""Brand-in-label look-alikes weighed against the brand word's use in this network's names."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import polars as pl

from dnsieve.detectors import get
from dnsieve.detectors.base import DetectContext
from dnsieve.detectors.frames import example_events


def _events(domains: list[str]) -> pl.DataFrame:
    t0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    rows = [
        {
            "ts": t0 + timedelta(seconds=30 * i),
            "src_ip": f"10.2.0.{2 + i % 5}",
            "qname": "www." + d,
            "qtype": "A",
            "rcode": "NOERROR",
            "registered_domain": d,
            "subdomain": "www",
            "tld": d.rsplit(".", 1)[-1],
        }
        for i, d in enumerate(domains)
    ]
    return example_events(rows)


def _scores(domains: list[str]) -> dict[str, tuple[float, dict[str, object]]]:
    data = _events(domains)
    t0 = data["ts"].min()
    ctx = DetectContext(start=t0, end=t0 + timedelta(hours=1))  # type: ignore[arg-type,operator]
    out = get("lookalike")().score(data, ctx)
    return {
        e: (s, json.loads(v))
        for e, s, v in zip(out["entity"], out["score"], out["evidence"], strict=True)
    }


def test_brand_word_common_here_is_weakened_real_lure_is_not() -> None:
    """A word ordinary names here use (``media`` in maplemedia.com) is generic: the
    look-alike on an abused TLD falls below the floor.  ``paypal`` appears in no ordinary
    name, so paypal-verify.xyz keeps its full score and alerts."""
    floor = get("lookalike").score_floor
    assert floor is not None
    alone = _scores(["factorymedia.info", "paypal-verify.xyz", "wikipedia.org"])
    common = _scores(
        [
            "factorymedia.info",
            "paypal-verify.xyz",
            "maplemedia.com",
            "lakemedia.com",
            "media-journal.net",
            "wikipedia.org",
        ]
    )
    paypal_alone, paypal_common = alone["paypal-verify.xyz"], common["paypal-verify.xyz"]
    assert paypal_common[0] == paypal_alone[0] >= floor
    assert paypal_common[1]["brand_word_background"] == 0
    # media.net is a reference brand, but "media" inside a longer label with no lure
    # word, looked up once like any name here, is a brand-token coincidence: half
    assert alone["factorymedia.info"][0] == 0.45 < floor
    assert alone["factorymedia.info"][1]["brand_token_only"] is True
    assert alone["factorymedia.info"][1]["use_evidence"] == 0.0
    score, ev = common["factorymedia.info"]
    assert ev["brand_word_background"] == 3
    assert "; 3 ordinary names here also contain the brand word;" in str(ev["reason"])
    assert score < floor
    assert score == alone["factorymedia.info"][0] / 4


def test_typos_and_homoglyphs_are_not_weighed_by_background() -> None:
    s = _scores(["paypa1.com", "micosoft.com", "mypaypalshop.com", "paypalfans.com"])
    assert s["paypa1.com"][1]["brand_word_background"] is None
    assert s["paypa1.com"][0] == 0.95
    assert s["micosoft.com"][0] == 0.85
