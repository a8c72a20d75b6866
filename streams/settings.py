"""One frozen settings object, built at the entry point from ``REVSTREAM_*`` variables and flags.

>>> s = Settings(topic_prefix="shop")
>>> s.topic("events.raw"), s.kafka_bootstrap
('shop.events.raw', '127.0.0.1:19092')
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.errors import ConfigError


def _default_dsn() -> str:
    return f"chdb://{Path.cwd() / 'revstream-data' / 'warehouse'}"


class Settings(BaseSettings):
    """Every knob of a deployment; library classes receive the parts they need as keyword arguments."""

    model_config = SettingsConfigDict(env_prefix="REVSTREAM_", frozen=True, extra="forbid")

    brokers: str = Field("127.0.0.1:19092", description="Kafka bootstrap servers, comma separated")
    clickhouse_dsn: str = Field(default_factory=_default_dsn, description="chdb:///path or http://host:8123/db")
    topic_prefix: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]+$")] = "revstream"
    partitions: Annotated[int, Field(ge=1, le=1024)] = 4
    app_id: str = "revstream"
    data_dir: Path = Field(default_factory=lambda: Path.cwd() / "revstream-data")
    session_gap_minutes: Annotated[int, Field(ge=1)] = 30
    dedupe_window_days: Annotated[int, Field(ge=1)] = 7
    value_horizon_days: Annotated[float, Field(gt=0)] = 365.0
    high_value_top_share: Annotated[float, Field(gt=0, lt=1)] = 0.1
    value_currency: Annotated[str, Field(min_length=3, max_length=3)] = "USD"
    fx_rates: Annotated[str, Field(pattern=r"^([A-Z]{3}=[0-9.]+)?(,[A-Z]{3}=[0-9.]+)*$")] = Field(
        "EUR=0.92,GBP=0.79", description="units of each currency per one unit of value_currency, e.g. EUR=0.92"
    )
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 20_000
    batch_seconds: Annotated[float, Field(gt=0)] = 1.0
    linger_ms: Annotated[int, Field(ge=1, le=10_000)] = Field(
        1,
        description="how long after its first event a batch closes, unless more are queued, and how long the"
        " agents' producer waits to fill a request (latency vs throughput)",
    )
    web_port: Annotated[int, Field(ge=0, le=65535)] = 6066
    web_enabled: bool = False
    write_keys: str = Field("", description="collector write keys, comma separated; empty accepts any key")
    collector_host: str = "127.0.0.1"
    collector_port: Annotated[int, Field(ge=0, le=65535)] = 8088
    worker_collector: bool = Field(False, description="the worker also serves the collector on collector_port")
    log_level: str = "INFO"
    log_json: bool = False
    propensity_alert_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="a session whose purchase propensity reaches this raises one high_propensity alert"
    )
    churn_horizon_days: Annotated[int, Field(ge=1)] = Field(
        30, description="churn = no order within this many days (label resolved in event time)"
    )
    churn_alert_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.9, description="a customer whose churn risk reaches this gets a retention action (with a cooldown)"
    )
    identity_device_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="two devices are one person at this posterior match probability or above"
    )
    identity_trait_threshold: Annotated[float, Field(gt=0, le=1)] = Field(
        0.99, description="a guest or anonymous profile joins a customer whose traits match with this probability"
    )
    identity_probabilistic: bool = Field(
        True, description="link devices and traits probabilistically; false: deterministic links only"
    )
    challenger_share: Annotated[float, Field(ge=0, le=1)] = Field(
        0.1, description="share of sessions (by hash) scored by the XGBoost challenger as an A/B test"
    )
    consent_required: bool = Field(
        True, description="events without a consent object are denied every purpose (fail closed, GDPR-style)"
    )
    consent_purposes: Annotated[str, Field(pattern=r"^[a-z]+=[^;=]+(;[a-z]+=[^;=]+)*$")] = Field(
        "analytics=analytics|statistics|performance|C0002;marketing=marketing|advertising|targeting|datasharing|C0004;"
        "personalisation=personalization|personalisation|functional|C0003",
        description="purpose=category|category;... mapping of consent categories to the purposes revstream acts on",
    )
    pii_key: SecretStr | None = Field(
        None, description="key of the hash applied to emails and phones; default: data_dir/pii.key, made once"
    )
    retention_days: Annotated[int, Field(ge=1)] = Field(730, description="TTL of events and derived tables")
    failed_retention_days: Annotated[int, Field(ge=1)] = Field(30, description="TTL of failed_events (raw bytes)")
    erasure_bound_seconds: Annotated[float, Field(gt=0)] = Field(
        300.0, description="an erasure fails unless ClickHouse has physically removed the rows within this time"
    )

    @property
    def kafka_bootstrap(self) -> str:
        return self.brokers.removeprefix("kafka://")

    @property
    def session_gap(self) -> timedelta:
        return timedelta(minutes=self.session_gap_minutes)

    @property
    def dedupe_window(self) -> timedelta:
        return timedelta(days=self.dedupe_window_days)

    @property
    def fx_rate_map(self) -> dict[str, float]:
        """``fx_rates`` as a mapping.

        >>> Settings(fx_rates="EUR=0.9,GBP=0.8").fx_rate_map
        {'EUR': 0.9, 'GBP': 0.8}
        """
        pairs = (item.split("=") for item in self.fx_rates.split(",") if item)
        return {code: float(rate) for code, rate in pairs}

    @property
    def consent_purpose_map(self) -> dict[str, tuple[str, ...]]:
        """``consent_purposes`` as a mapping.

        >>> Settings(consent_purposes="analytics=a|b;marketing=c").consent_purpose_map
        {'analytics': ('a', 'b'), 'marketing': ('c',)}
        """
        pairs = (item.split("=") for item in self.consent_purposes.split(";"))
        return {purpose: tuple(cats.split("|")) for purpose, cats in pairs}

    @property
    def challenger_path(self) -> Path:
        """Where ``revstream train`` writes the XGBoost challenger and workers hot-load it from."""
        return self.data_dir / "challenger.ubj"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment plus non-``None`` overrides; errors become one-line ConfigErrors."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        msg = f"invalid setting {where} (REVSTREAM_{where.upper()}): {first['msg']}"
        raise ConfigError(msg) from e
