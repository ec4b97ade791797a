"""Popularity ranks and service categories (dnsieve.popular)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from dnsieve.popular import (
    ENV_VAR,
    is_popular,
    load_popular,
    popular_category,
    popularity_rank,
    read_top_list,
)


@pytest.mark.parametrize(
    ("name", "listed", "category"),
    [
        ("google.com", True, "web"),
        ("WWW.Google.com.", True, "web"),  # case and trailing dot
        ("a1.d.akamaiedge.net", False, "cdn"),  # tenant platform: category, not rank
        ("dga-site.github.io", False, "saas"),
        ("github.io", True, "saas"),
        ("x.y.windowsupdate.com", True, "os_update"),  # suffix match
        ("events.data.microsoft.com", True, "telemetry"),  # most specific entry wins
        ("microsoft.com", True, "web"),
        ("download.windowsupdate.com", True, "os_update"),
        ("notgoogle.com", False, None),  # a suffix match needs a label boundary
        ("google.com.evil.biz", False, None),
        ("qxzvbnrtplk.biz", False, None),
        ("", False, None),
        ("localhost", False, None),
    ],
)
def test_shipped_lookup(name: str, listed: bool, category: str | None) -> None:
    s = pl.Series([name])
    rank = popularity_rank(s, path=None).to_list()[0]
    assert (rank is not None) == listed
    assert popular_category(s).to_list()[0] == category
    assert is_popular(s).to_list()[0] == listed


def test_rank_dtype_nulls_and_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    s = pl.Series(["x.amazonaws.com", None, "google.com", "x.amazonaws.com", "nope.test"])
    r = popularity_rank(s)
    assert r.dtype == pl.UInt32
    assert len(r) == len(s)
    got = r.to_list()
    assert got[1] is None and got[4] is None
    assert got[2] == 1 and got[0] == got[3] and got[0] > 1


def test_empty_series() -> None:
    assert popularity_rank(pl.Series([], dtype=pl.String)).to_list() == []


def test_user_top_list_merges(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "top.csv"
    f.write_text(
        "1,google.com\n2,my-intranet-saas.example\n3,Google.com\nbad row\n\n7,cdn.example.\n"
    )
    look = load_popular(f)
    ranks = popularity_rank(
        pl.Series(["my-intranet-saas.example", "a.cdn.example", "fastly.net", "zz.test"]), f
    ).to_list()
    assert ranks[0] == 2 and ranks[1] == 7
    assert ranks[2] is not None  # shipped entries stay listed
    assert ranks[3] is None
    assert look.size > 400
    # The environment variable is the default source.
    monkeypatch.setenv(ENV_VAR, str(f))
    assert popularity_rank(pl.Series(["my-intranet-saas.example"])).to_list() == [2]


def test_one_domain_per_line(tmp_path: Path) -> None:
    f = tmp_path / "top.txt"
    f.write_text("# my list\nalpha.example\nbeta.example\n")
    df = read_top_list(f).sort("rank")
    assert df["domain"].to_list() == ["alpha.example", "beta.example"]
    assert df["rank"].to_list() == [2, 3]  # line numbers


def test_empty_top_list_is_a_clear_error(tmp_path: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="no domain found"):
        read_top_list(f)


@pytest.mark.shared
def test_shipped_list_overlaps_a_real_top_list(shared_data: Path) -> None:
    """Most shipped entries are real, heavily used registered domains: ranked
    in a real top-50k list (read in place, not shipped)."""
    tranco = read_top_list(shared_data / "domains/benign/tranco_like_top50k_2025-02_kmikholap.csv")
    shipped = load_popular(None).table
    curated = shipped.filter(pl.col("category").is_not_null())  # the project's own list
    regs = curated.filter(pl.col("domain").str.count_matches(r"\.") == 1)
    share = regs["domain"].is_in(tranco["domain"].implode()).mean()
    assert share is not None and float(share) > 0.8  # type: ignore[arg-type]
    # the OpenDNS top-10k list is merged in: its head is in the real top list too
    top = shipped.filter(pl.col("category").is_null()).sort("rank").head(1000)
    assert shipped.height > 10_000 and top.height == 1000
    assert float(top["domain"].is_in(tranco["domain"].implode()).mean() or 0) > 0.5
