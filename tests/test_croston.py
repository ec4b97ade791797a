"""Croston / SBA / TSB: vectorised NumPy against statsforecast's stored outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dnsieve.detectors.croston import croston_classic, croston_sba, ses_last, tsb

REF = Path(__file__).parent / "data" / "croston" / "statsforecast_reference.json"


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REF.read_text())


@pytest.mark.parametrize(
    ("key", "fn"),
    [
        ("croston_classic", croston_classic),
        ("croston_sba", croston_sba),
        ("tsb_0.1_0.1", lambda y: tsb(y, 0.1, 0.1)),
        ("tsb_0.2_0.05", lambda y: tsb(y, 0.2, 0.05)),
    ],
)
def test_matches_statsforecast(reference: dict, key: str, fn) -> None:
    y = np.asarray(reference["series"], dtype=float)
    ref = np.asarray(reference["forecasts"][key])
    got = fn(y)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    assert (ref > 0).sum() > 60  # the fixture exercises real demand, not just zeros


def test_reference_has_real_rita_series(reference: dict) -> None:
    assert reference["statsforecast_version"] == "2.1.1"
    assert len(reference["series"]) >= 70


def test_edge_cases() -> None:
    y = np.zeros((2, 10))
    y[1, 3] = 5.0
    assert croston_classic(y)[0] == 0.0 and tsb(y)[0] == 0.0
    # a single demand of 5 at period 4: size 5, interval 4 -> 1.25
    assert croston_classic(y)[1] == pytest.approx(1.25)
    assert croston_classic(y[1]).shape == (1,)  # 1-D input is one series
    nan = np.array([[np.nan, 2.0, 0.0, 3.0]])
    assert np.isfinite(croston_classic(nan)).all()
    with pytest.raises(ValueError):
        croston_classic(np.zeros((2, 2, 2)))


def test_ses_constant_series() -> None:
    assert ses_last(np.full((3, 20), 4.0), 0.3) == pytest.approx([4.0, 4.0, 4.0])


def test_rows_are_independent() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random((50, 60)) < 0.2) * rng.poisson(3.0, (50, 60))
    whole = croston_classic(y)
    one_by_one = np.array([croston_classic(row)[0] for row in y])
    np.testing.assert_allclose(whole, one_by_one, rtol=0, atol=0)
