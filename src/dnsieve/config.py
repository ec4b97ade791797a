"""One typed, validated settings tree.

Sources, lowest precedence first:

1. the defaults below (they work with no file at all);
2. a TOML file: ``--config PATH``, else ``$DNSIEVE_CONFIG``, else ``./dnsieve.toml`` if present;
3. environment variables ``DNSIEVE_<SECTION>__<KEY>`` (``DNSIEVE_LAKE__PATH=/data/lake``);
4. explicit overrides passed by the caller (CLI flags).

Secrets are only read from the environment, never from the TOML file.

>>> s = load_settings(env={})
>>> s.ingest.batch_size
65536
>>> load_settings(env={"DNSIEVE_INGEST__BATCH_SIZE": "4096"}).ingest.batch_size
4096
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Self

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "AlertSettings",
    "ConfigError",
    "DetectSettings",
    "DomainSettings",
    "IngestSettings",
    "LakeSettings",
    "Settings",
    "SparkSettings",
    "StreamSettings",
    "default_data_dir",
    "load_settings",
]

ENV_PREFIX = "DNSIEVE_"

#: detectors whose constructor takes the volume-model settings of [detect]
_VOLUME_DETECTORS = ("volume", "client_volume")


class ConfigError(ValueError):
    """A settings file or variable is invalid; the message says which and why."""


def default_data_dir() -> Path:
    """Per-user data directory (``~/.local/share/dnsieve`` on Linux)."""
    return Path(platformdirs.user_data_dir("dnsieve", appauthor=False))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class IngestSettings(_Section):
    """How inputs are read."""

    format: Literal[
        "auto",
        "zeek",
        "zeek-json",
        "suricata",
        "pcap",
        "dnsmasq",
        "bind",
        "unbound",
        "csv",
        "parquet",
    ] = "auto"
    batch_size: int = Field(65_536, ge=256, le=4_000_000, description="rows per Arrow batch")
    year: int | None = Field(
        None, ge=1970, le=2100, description="year for syslog-style timestamps that carry none"
    )
    column_mapping: dict[str, str] = Field(
        default_factory=dict, description="canonical column -> source column, for CSV/Parquet"
    )
    max_record_bytes: int = Field(
        65_536,
        ge=1_024,
        le=64 * 1024 * 1024,
        description="longest line or record read (bytes); longer ones are skipped and counted",
    )


class LakeSettings(_Section):
    """The lake: hour-partitioned Parquet with a manifest, or a Delta table."""

    format: Literal["parquet", "delta"] = Field(
        "parquet", description="parquet (manifest, the default) or delta (a Delta Lake table)"
    )
    path: Path = Field(default_factory=lambda: default_data_dir() / "lake")
    rows_per_file: int = Field(
        500_000, ge=1_000, le=50_000_000, description="max rows per Parquet part file"
    )
    max_buffered_rows: int = Field(
        1_000_000, ge=1_000, le=100_000_000, description="rows held in memory before a flush"
    )
    compression: Literal["zstd", "snappy", "lz4", "gzip", "none"] = "zstd"
    commit_rows: int = Field(
        250_000, ge=1, le=100_000_000, description="rows of small inputs committed together"
    )
    commit_files: int = Field(
        2_000, ge=1, le=1_000_000, description="input files committed together at most"
    )
    compact_min_parts: int = Field(
        16,
        ge=0,
        le=1_000_000,
        description="small part files in one partition that trigger a compaction (0: never)",
    )
    retire_grace_seconds: float = Field(
        600.0, ge=0, description="how long replaced part files stay on disk for running readers"
    )


class DomainSettings(_Section):
    """Registered-domain split."""

    private_suffixes: bool = Field(
        True, description="use the PSL private section (foo.github.io is its own site)"
    )


class SparkSettings(_Section):
    """The Spark session of ``engine = "spark"`` (the ``[spark]`` section).

    >>> SparkSettings(conf={"spark.driver.maxResultSize": "8m"}).conf
    {'spark.driver.maxResultSize': '8m'}
    """

    master: str | None = Field(
        None,
        description="local[N], spark://host:7077, yarn, k8s://...; unset: DNSIEVE_SPARK_MASTER, "
        "an active session (spark-submit), else local[2]",
    )
    conf: dict[str, str] = Field(
        default_factory=dict, description="Spark settings applied when the session starts"
    )
    scratch: str | None = Field(
        None,
        description="directory every executor and the driver can reach, where candidates are "
        "written for the driver to read (unset: the system temporary directory, local mode)",
    )


class DetectSettings(BaseModel):
    """Settings of ``dnsieve detect`` (the ``[detect]`` section of the config tree)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    engine: Literal["polars", "spark"] = "polars"
    detectors: list[str] = Field(default_factory=list, description="detectors to run (empty: all)")
    target_far: float = Field(
        default=1e-4,
        gt=0.0,
        le=1.0,
        description="false alarms per entity per day (significance level)",
    )
    budget_per_day: int = Field(
        default=20, ge=0, le=1_000_000, description="ceiling on alerts per UTC day"
    )
    window_hours: int = Field(
        default=3, ge=1, le=168, description="volume model: scored window length (h)"
    )
    baseline_hours: int = Field(
        default=168, ge=2, le=24 * 92, description="volume model: trailing baseline (h)"
    )
    min_baseline_hours: int = Field(
        default=24, ge=1, le=24 * 92, description="volume model: least history (h)"
    )
    fit_every_hours: int = Field(
        default=24,
        ge=1,
        le=24 * 31,
        description=(
            "population laws (the volume model's priors) are refitted every this many hours, "
            "on the baseline before each fit epoch, so a window scores the same in a stream "
            "as in a run"
        ),
    )
    prob_threshold: float = Field(
        default=0.95,
        ge=0.5,
        lt=1.0,
        description="volume model: posterior P(increase) to flag a window",
    )
    min_effect: float = Field(
        default=2.0, ge=1.0, le=1e4, description="volume model: demand ratio to flag"
    )
    baseline_half_life_days: float = Field(
        default=0.0,
        ge=0.0,
        le=365.0,
        description="volume model: weigh baseline days by age with this half-life (0: equal)",
    )
    prior_method: Literal["moments", "mml"] = "moments"
    min_exceedances: int = Field(
        default=20, ge=5, le=100_000, description="POT: least exceedances to fit"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.min_baseline_hours > self.baseline_hours:
            raise ValueError("min_baseline_hours must not exceed baseline_hours")
        return self

    def detector_params(self, name: str) -> dict[str, Any]:
        """Constructor keyword arguments these settings imply for detector ``name``."""
        if name in _VOLUME_DETECTORS:
            return {
                "window_hours": self.window_hours,
                "baseline_hours": self.baseline_hours,
                "min_baseline_hours": self.min_baseline_hours,
                "prob_threshold": self.prob_threshold,
                "min_effect": self.min_effect,
                "prior_method": self.prior_method,
                "half_life_days": self.baseline_half_life_days,
            }
        return {}


class AlertSettings(_Section):
    """How windows become alerts (the ``[alerts]`` section).

    >>> AlertSettings().episode_gap_hours
    6.0
    >>> AlertSettings().episode_gap
    datetime.timedelta(seconds=21600)
    """

    episode_gap_hours: float = Field(
        default=6.0,
        ge=0.0,
        le=24.0 * 92,
        description="quiet hours after which a detector x entity's windows start a new alert",
    )

    @property
    def episode_gap(self) -> timedelta:
        """:attr:`episode_gap_hours` as a :class:`~datetime.timedelta`."""
        return timedelta(hours=self.episode_gap_hours)


class StreamSettings(_Section):
    """``dnsieve stream`` (the ``[stream]`` section); see docs/streaming.md.

    >>> StreamSettings().allowed_lateness_seconds
    300.0
    """

    allowed_lateness_seconds: float = Field(
        default=300.0,
        ge=0.0,
        le=7 * 86400.0,
        description="an hour closes once every partition's events are this far past its end",
    )
    max_batch_events: int = Field(
        default=100_000, ge=1, le=10_000_000, description="events per micro-batch (at most)"
    )
    poll_seconds: float = Field(
        default=0.5, gt=0.0, le=60.0, description="wait for new data this long per poll"
    )
    window_seconds: float = Field(
        default=3600.0,
        ge=60.0,
        le=86400.0,
        description="scoring window of windows closed while live (a backfill scored at once adapts it like run)",
    )
    score_every_hours: float = Field(
        default=0.0,
        ge=0.0,
        le=24.0 * 31,
        description="while catching up, also score once this many closed hours wait (0: only once caught up)",
    )
    status_seconds: float = Field(
        default=5.0, gt=0.0, le=3600.0, description="status line and stored status interval"
    )
    calibration_hours: float = Field(
        default=168.0,
        ge=1.0,
        le=24.0 * 92,
        description="windows scored live are calibrated with the candidates of this many past hours",
    )


class Settings(_Section):
    """The whole settings tree.  Later subsystems add their sections here."""

    ingest: IngestSettings = Field(default_factory=IngestSettings)
    lake: LakeSettings = Field(default_factory=LakeSettings)
    domains: DomainSettings = Field(default_factory=DomainSettings)
    detect: DetectSettings = Field(default_factory=DetectSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)


def _env_tree(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key == ENV_PREFIX + "CONFIG":
            continue
        parts = key[len(ENV_PREFIX) :].lower().split("__")
        if len(parts) < 2:
            continue  # top-level variables (DNSIEVE_DB, ...) are read by their own subsystem
        node = tree
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _find_file(path: str | os.PathLike[str] | None, env: Mapping[str, str]) -> Path | None:
    if path is not None:
        return Path(path)
    if env.get(ENV_PREFIX + "CONFIG"):
        return Path(env[ENV_PREFIX + "CONFIG"])
    local = Path("dnsieve.toml")
    return local if local.is_file() else None


def load_settings(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load and validate settings; raises :class:`ConfigError` with a readable message."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    file = _find_file(path, env)
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    data = _merge(data, _env_tree(env))
    if overrides:
        data = _merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        src = f" (from {file} and DNSIEVE_* variables)" if file else " (from DNSIEVE_* variables)"
        raise ConfigError("invalid settings" + src + ":\n" + "\n".join(lines)) from None


def settings_as_toml(settings: Settings) -> str:
    """Render effective settings as TOML (for ``dnsieve config show``)."""
    out: list[str] = []
    dumped = settings.model_dump(mode="json")
    for section, values in dumped.items():
        out.append(f"[{section}]")
        for k, v in values.items():
            out.append(f"# {k} is unset" if v is None else f"{k} = {_toml_value(v)}")
        out.append("")
    return "\n".join(out)


def _toml_value(v: Any) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return json.dumps(str(v))
