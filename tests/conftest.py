"""Shared fixtures.

``shared_data`` points at ``../shared/data`` (the evaluation corpus that sits
beside a checkout).  CI always has it, so there a missing corpus is an error;
on a user's fresh clone those tests are skipped with a clear reason.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import settings as _hypothesis_settings

# Property tests check properties, never speed: no per-example deadline (Hypothesis'
# default of 200 ms fails a correct test on a loaded machine).
_hypothesis_settings.register_profile("dnsieve", deadline=None)
_hypothesis_settings.load_profile("dnsieve")

REPO = Path(__file__).resolve().parents[1]
TEST_DATA = REPO / "tests" / "data"
SHARED_DATA = REPO.parent / "shared" / "data"


def _require_shared() -> Path:
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must have the shared corpus at {SHARED_DATA}")
    pytest.skip(f"shared corpus not found at {SHARED_DATA} (only CI and dev machines have it)")


def require_module(name: str, reason: str) -> ModuleType:
    """Import an optional dependency: skip without it on a user's machine, fail in CI
    (``.ci/run`` installs every extra, so a missing one there is an error, not a skip)."""
    if os.environ.get("CI"):
        return importlib.import_module(name)
    return pytest.importorskip(name, reason=reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; fails in CI if absent, skips elsewhere."""
    return _require_shared()


@pytest.fixture(scope="session")
def test_data() -> Path:
    """Path to the small in-repo fixtures (tests/data)."""
    return TEST_DATA


@pytest.fixture(autouse=True)
def _isolated_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commands that default to the user's alert store write to a temporary one in tests."""
    if "DNSIEVE_DB" not in os.environ:
        monkeypatch.setenv("DNSIEVE_DB", str(tmp_path_factory.mktemp("store") / "alerts.db"))
