"""Allow-list matching: table-driven pitfalls and Hypothesis properties (pure logic, no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dnsieve.rules.match import (
    AllowListError,
    AllowMatcher,
    Rule,
    alert_subjects,
    domain_suffixes,
    normalize_client,
    parse_expiry,
    parse_value,
    rule_matches,
)

NOW = datetime(2024, 5, 1, tzinfo=UTC)


def _rule(
    kind: str,
    value: str,
    detector: str | None = None,
    rid: int = 1,
    expires: datetime | None = None,
) -> Rule:
    k, v = parse_value(kind, value)
    return Rule(rid, k, v, detector, expires)


@pytest.mark.parametrize(
    ("kind", "value", "entity", "expected"),
    [
        # suffix: label boundary, bare domain included
        ("suffix", "evil.com", "evil.com", True),
        ("suffix", "evil.com", "a.evil.com", True),
        ("suffix", "evil.com", "a.b.c.evil.com", True),
        ("suffix", "evil.com", "notevil.com", False),
        ("suffix", "evil.com", "evil.com.au", False),
        ("suffix", "evil.com", "xevil.com", False),
        ("suffix", ".evil.com", "a.evil.com", True),
        # wildcard: matches the bare domain too
        ("wildcard", "*.evil.com", "evil.com", True),
        ("wildcard", "*.evil.com", "www.evil.com", True),
        ("wildcard", "*.evil.com", "notevil.com", False),
        ("domain", "*.evil.com", "evil.com", True),
        # exact domain
        ("domain", "evil.com", "evil.com", True),
        ("domain", "evil.com", "a.evil.com", False),
        # case and trailing dots, both sides
        ("domain", "EVIL.com.", "evil.COM.", True),
        ("suffix", "Evil.Com", "WWW.EVIL.COM.", True),
        # IDNA: the Unicode form given by a user matches the wire form
        ("domain", "bücher.de", "xn--bcher-kva.de", True),
        ("suffix", "BÜCHER.de", "shop.xn--bcher-kva.de", True),
        # escaped hostile bytes are just characters
        ("suffix", "evil.com", "x\\x00y.evil.com", True),
        ("domain", "x\\x2eevil.com", "x.evil.com", False),
    ],
)
def test_domain_rules(kind: str, value: str, entity: str, expected: bool) -> None:
    rule = _rule(kind, value)
    assert rule_matches(rule, "dga", "domain", entity) is expected
    assert (AllowMatcher([rule]).match("dga", "domain", entity) is not None) is expected
    # client×domain alerts match on their domain part
    assert (
        AllowMatcher([rule]).match("beacon", "client_domain", f"10.0.0.1|{entity}") is not None
    ) is expected


@pytest.mark.parametrize(
    ("value", "entity_type", "entity", "expected"),
    [
        ("10.1.2.3", "client", "10.1.2.3", True),
        ("10.1.2.3", "client", "10.1.2.30", False),
        ("10.0.0.0/8", "client", "10.200.1.1", True),
        ("10.0.0.0/8", "client", "11.0.0.1", False),
        ("10.9.9.9/8", "client", "10.0.0.1", True),  # host bits cleared
        ("192.0.2.7", "client", "::ffff:192.0.2.7", True),  # IPv4-mapped IPv6 client
        ("::ffff:192.0.2.0/120", "client", "192.0.2.99", True),
        ("2001:db8::/32", "client", "2001:DB8:0:1::5", True),
        ("2001:db8::/32", "client", "2001:db9::1", False),
        ("10.0.0.0/8", "client_domain", "10.3.3.3|evil.com", True),
        ("10.0.0.0/8", "domain", "10.example", False),
        ("10.0.0.0/8", "client", "not-an-ip", False),
    ],
)
def test_client_rules(value: str, entity_type: str, entity: str, expected: bool) -> None:
    rule = _rule("client", value)
    assert rule_matches(rule, "nxdomain", entity_type, entity) is expected
    assert (AllowMatcher([rule]).match("nxdomain", entity_type, entity) is not None) is expected


def test_detector_scope_and_detector_entity() -> None:
    scoped = _rule("suffix", "cdn.net", detector="fastflux")
    assert rule_matches(scoped, "fastflux", "domain", "a.cdn.net")
    assert not rule_matches(scoped, "dga", "domain", "a.cdn.net")
    de = _rule("detector_entity", "10.0.0.5|Evil.COM.", detector="beacon")
    m = AllowMatcher([de])
    assert m.match("beacon", "client_domain", "10.0.0.5|evil.com") == de
    assert m.match("tunnel", "client_domain", "10.0.0.5|evil.com") is None
    assert m.match("beacon", "client_domain", "10.0.0.6|evil.com") is None


def test_best_match_is_the_longest_lasting() -> None:
    rules = [
        _rule("suffix", "evil.com", rid=1, expires=NOW + timedelta(days=1)),
        _rule("wildcard", "*.evil.com", rid=2, expires=NOW + timedelta(days=9)),
        _rule("domain", "a.evil.com", rid=3, expires=NOW + timedelta(days=3)),
    ]
    assert AllowMatcher(rules).match("dga", "domain", "a.evil.com").id == 2  # type: ignore[union-attr]
    forever = _rule("client", "10.0.0.0/8", rid=9)
    m = AllowMatcher([*rules, forever])
    assert m.match("beacon", "client_domain", "10.1.1.1|a.evil.com").id == 9  # type: ignore[union-attr]
    # expired rules are dropped when a time is given
    assert (
        AllowMatcher(rules, now=NOW + timedelta(days=5)).match("dga", "domain", "evil.com").id == 2
    )  # type: ignore[union-attr]
    assert (
        AllowMatcher(rules, now=NOW + timedelta(days=10)).match("dga", "domain", "evil.com") is None
    )


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        ("domain", "", "empty"),
        ("domain", "https://evil.com/x", "not a URL"),
        ("domain", "ev il.com", "invalid domain"),
        ("domain", "a.*.evil.com", "only a leading"),
        ("domain", "*evil.com", "only a leading"),
        ("wildcard", "evil.com", "must look like"),
        ("suffix", "a..b", "empty label"),
        ("client", "10.0.0.256", "CIDR"),
        ("client", "evil.com", "CIDR"),
        ("regex", "x", "unknown allow-list kind"),
        ("detector_entity", "  ", "empty entity"),
    ],
)
def test_invalid_values(kind: str, value: str, message: str) -> None:
    with pytest.raises(AllowListError, match=message):
        parse_value(kind, value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW + timedelta(minutes=30)),
        ("12h", NOW + timedelta(hours=12)),
        ("7d", NOW + timedelta(days=7)),
        ("2W", NOW + timedelta(weeks=2)),
        ("1.5d", NOW + timedelta(hours=36)),
        ("2024-06-01", datetime(2024, 6, 1, tzinfo=UTC)),
        ("2024-06-01T12:00:00Z", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T14:00:00+02:00", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("", None),
    ],
)
def test_parse_expiry(text: str, expected: datetime | None) -> None:
    assert parse_expiry(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "7x", "-1d", "2024-04-01", "0s"])
def test_parse_expiry_rejects(text: str) -> None:
    with pytest.raises(AllowListError):
        parse_expiry(text, NOW)


def test_subjects_and_normalisation() -> None:
    assert alert_subjects("client_domain", "::FFFF:10.0.0.1|A.b.") == ("a.b", "10.0.0.1")
    assert alert_subjects("domain", "X.COM.") == ("x.com", None)
    assert normalize_client("2001:0db8::0001/128") == "2001:db8::1"
    assert domain_suffixes("a.b.c") == ["a.b.c", "b.c", "c"]


# --------------------------------------------------------------------------- properties

label = st.text(alphabet="abcxyz019-_", min_size=1, max_size=5)
domain = st.lists(label, min_size=1, max_size=4).map(".".join)


@settings(max_examples=300, deadline=None)
@given(rule_dom=domain, alert_dom=domain)
def test_suffix_is_exactly_the_label_boundary_definition(rule_dom: str, alert_dom: str) -> None:
    expected = alert_dom == rule_dom or alert_dom.endswith("." + rule_dom)
    for kind, value in (("suffix", rule_dom), ("wildcard", "*." + rule_dom)):
        r = _rule(kind, value)
        assert rule_matches(r, "d", "domain", alert_dom) is expected
        assert (AllowMatcher([r]).match("d", "domain", alert_dom) is not None) is expected


@settings(max_examples=200, deadline=None)
@given(
    rules=st.lists(
        st.tuples(
            st.sampled_from(["domain", "suffix", "wildcard"]),
            domain,
            st.integers(0, 3),
            st.sampled_from([None, "d1"]),
        ),
        max_size=6,
    ),
    alert_dom=domain,
    det=st.sampled_from(["d1", "d2"]),
)
def test_matcher_agrees_with_brute_force(
    rules: list[tuple[str, str, int, str | None]], alert_dom: str, det: str
) -> None:
    built = []
    for i, (kind, dom, days, scope) in enumerate(rules):
        value = "*." + dom if kind == "wildcard" else dom
        exp = NOW + timedelta(days=days) if days else None
        built.append(_rule(kind, value, detector=scope, rid=i + 1, expires=exp))
    hits = [r for r in built if rule_matches(r, det, "domain", alert_dom)]
    got = AllowMatcher(built).match(det, "domain", alert_dom)
    if not hits:
        assert got is None
        return
    forever = datetime.max.replace(tzinfo=UTC)
    best = max(hits, key=lambda r: (r.expires_at or forever, -r.id))
    assert got == best
