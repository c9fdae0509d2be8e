"""Every setting DripPulse reads, from the environment; nothing else reads os.environ.

Unset service URLs mean "use the embedded local stack": the broker, Redis and PostgreSQL that
`drippulse dev up` starts on the embedded ports, and chdb on a directory under DRIPPULSE_HOME.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from processors.delivery_policy import DEFAULT_RETRY_SCHEDULE_S, parse_schedule
from processors.schedules import MIN_INTERVAL_S
from streams.runtime.kafka import KafkaConfig
from streams.state.secret_box import SecretBox, configured_keys, local_key


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    kafka_bootstrap_servers_env: str = Field(default="", alias="KAFKA_BOOTSTRAP_SERVERS")
    redis_url_env: str = Field(default="", alias="REDIS_URL")
    clickhouse_url: str = Field(default="", alias="CLICKHOUSE_URL")
    schema_registry_url: str = Field(default="", alias="SCHEMA_REGISTRY_URL")
    database_url_env: str = Field(default="", alias="DATABASE_URL", repr=False)

    home: Path = Field(default=Path(".drippulse"), alias="DRIPPULSE_HOME")
    embedded_kafka_port: int = Field(default=19092, alias="DRIPPULSE_EMBEDDED_KAFKA_PORT")
    embedded_redis_port: int = Field(default=16379, alias="DRIPPULSE_EMBEDDED_REDIS_PORT")
    embedded_postgres_port: int = Field(default=15432, alias="DRIPPULSE_EMBEDDED_POSTGRES_PORT")
    api_host: str = Field(default="127.0.0.1", alias="DRIPPULSE_API_HOST")
    api_port: int = Field(default=8000, alias="DRIPPULSE_API_PORT")

    topic_prefix: str = Field(default="", alias="DRIPPULSE_TOPIC_PREFIX")
    topic_partitions: int = Field(default=12, ge=1, alias="DRIPPULSE_TOPIC_PARTITIONS")
    topic_replication: int = Field(default=1, ge=1, alias="DRIPPULSE_TOPIC_REPLICATION")
    batch_size: int = Field(default=5000, ge=1, alias="DRIPPULSE_BATCH_SIZE")
    batch_timeout_s: float = Field(default=0.1, gt=0, alias="DRIPPULSE_BATCH_TIMEOUT_S")
    workflow_refresh_s: float = Field(default=0.5, gt=0, alias="DRIPPULSE_WORKFLOW_REFRESH_S")
    event_dedup_window_s: int = Field(default=86_400, ge=1, alias="DRIPPULSE_EVENT_DEDUP_WINDOW_S")
    event_ack_timeout_s: float = Field(
        default=5.0,
        gt=0,
        alias="DRIPPULSE_EVENT_ACK_TIMEOUT_S",
        description="How long POST /events waits for the broker's acknowledgement before answering 503.",
    )
    schedule_min_interval_s: int = Field(
        default=MIN_INTERVAL_S,
        ge=1,
        alias="DRIPPULSE_SCHEDULE_MIN_INTERVAL_S",
        description="A schedule fires at most once this often: new definitions are refused below it, stored "
        "ones are throttled to it.",
    )
    clickhouse_database: str = Field(default="drippulse", alias="DRIPPULSE_CLICKHOUSE_DATABASE")
    log_level: str = Field(default="INFO", alias="DRIPPULSE_LOG_LEVEL")
    secret_key: str = Field(default="", alias="DRIPPULSE_SECRET_KEY", repr=False)
    webhook_allow_loopback: bool = Field(
        default=False,
        alias="DRIPPULSE_WEBHOOK_ALLOW_LOOPBACK",
        description="Also for CRM connection URLs and agents' summary providers.",
    )
    webhook_retry_schedule_s: str = Field(
        default=",".join(f"{d:g}" for d in DEFAULT_RETRY_SCHEDULE_S), alias="DRIPPULSE_WEBHOOK_RETRY_SCHEDULE_S"
    )
    webhook_timeout_s: float = Field(default=15.0, gt=0, alias="DRIPPULSE_WEBHOOK_TIMEOUT_S")
    webhook_max_in_flight: int = Field(default=500, ge=1, alias="DRIPPULSE_WEBHOOK_MAX_IN_FLIGHT")
    webhook_endpoint_concurrency: int = Field(default=50, ge=1, alias="DRIPPULSE_WEBHOOK_ENDPOINT_CONCURRENCY")
    webhook_disable_after_s: float = Field(default=5 * 86_400, gt=0, alias="DRIPPULSE_WEBHOOK_DISABLE_AFTER_S")
    webhook_retention_s: int = Field(default=7 * 86_400, ge=60, alias="DRIPPULSE_WEBHOOK_RETENTION_S")
    webhook_response_excerpt_bytes: int = Field(default=1024, ge=0, alias="DRIPPULSE_WEBHOOK_RESPONSE_EXCERPT_BYTES")

    crm_max_attempts: int = Field(default=3, ge=1, alias="DRIPPULSE_CRM_MAX_ATTEMPTS")
    crm_backoff_s: str = Field(default="0.5,1", alias="DRIPPULSE_CRM_BACKOFF_S")
    crm_park_schedule_s: str = Field(
        default="30,60,300,900,1800,3600,7200,14400", alias="DRIPPULSE_CRM_PARK_SCHEDULE_S"
    )
    crm_timeout_s: float = Field(default=10.0, gt=0, alias="DRIPPULSE_CRM_TIMEOUT_S")
    crm_max_retry_after_s: float = Field(default=60.0, ge=0, alias="DRIPPULSE_CRM_MAX_RETRY_AFTER_S")
    crm_connection_concurrency: int = Field(default=4, ge=1, alias="DRIPPULSE_CRM_CONNECTION_CONCURRENCY")
    crm_batch_budget_s: float = Field(default=30.0, gt=0, le=240, alias="DRIPPULSE_CRM_BATCH_BUDGET_S")

    database_pool_size: int = Field(
        default=20,
        ge=1,
        alias="DRIPPULSE_DATABASE_POOL_SIZE",
        description="PostgreSQL connections the API process opens at most.",
    )
    database_pool_timeout_s: float = Field(
        default=30.0,
        gt=0,
        alias="DRIPPULSE_DATABASE_POOL_TIMEOUT_S",
        description="How long an API request waits for one of them before answering 503.",
    )
    summary_max_concurrent: int = Field(
        default=8,
        ge=1,
        alias="DRIPPULSE_SUMMARY_MAX_CONCURRENT",
        description="Summary provider calls one API process makes at once; past them, summaries are built in.",
    )
    model_checkpoint_updates: int = Field(default=1000, ge=1, alias="DRIPPULSE_MODEL_CHECKPOINT_UPDATES")
    model_checkpoint_s: float = Field(default=30.0, gt=0, alias="DRIPPULSE_MODEL_CHECKPOINT_S")
    model_versions_kept: int = Field(default=100, ge=1, alias="DRIPPULSE_MODEL_VERSIONS_KEPT")
    model_refresh_s: float = Field(
        default=5.0,
        gt=0,
        alias="DRIPPULSE_MODEL_REFRESH_S",
        description="How often the qualifier and the API look for a newer version of an org's learned model.",
    )

    session_ttl_s: int = Field(default=12 * 3600, ge=60, alias="DRIPPULSE_SESSION_TTL_S")
    invitation_ttl_s: int = Field(default=7 * 86_400, ge=60, alias="DRIPPULSE_INVITATION_TTL_S")
    cookie_secure: bool = Field(default=False, alias="DRIPPULSE_COOKIE_SECURE")

    @field_validator("webhook_retry_schedule_s", "crm_backoff_s", "crm_park_schedule_s")
    @classmethod
    def _valid_schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @property
    def webhook_retry_schedule(self) -> tuple[float, ...]:
        return parse_schedule(self.webhook_retry_schedule_s)

    @property
    def crm_backoff(self) -> tuple[float, ...]:
        return parse_schedule(self.crm_backoff_s)

    @property
    def crm_park_schedule(self) -> tuple[float, ...]:
        return parse_schedule(self.crm_park_schedule_s)

    @property
    def kafka_bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers_env or f"127.0.0.1:{self.embedded_kafka_port}"

    @property
    def kafka(self) -> KafkaConfig:
        return KafkaConfig(
            self.kafka_bootstrap_servers, self.topic_prefix, self.topic_partitions, self.topic_replication
        )

    @property
    def redis_url(self) -> str:
        return self.redis_url_env or f"redis://127.0.0.1:{self.embedded_redis_port}/0"

    @property
    def database_url(self) -> str:
        """A SQLAlchemy URL on the psycopg 3 driver, which serves the API (async) and workers (sync)."""
        url = self.database_url_env or f"postgresql://postgres@127.0.0.1:{self.embedded_postgres_port}/drippulse"
        for scheme in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(scheme):
                return "postgresql+psycopg://" + url[len(scheme) :]
        raise ValueError("DATABASE_URL must be a postgresql:// URL")

    @property
    def embedded_postgres(self) -> bool:
        return not self.database_url_env

    @property
    def embedded_kafka(self) -> bool:
        return not self.kafka_bootstrap_servers_env

    @property
    def embedded_redis(self) -> bool:
        return not self.redis_url_env

    @property
    def embedded_clickhouse(self) -> bool:
        return not self.clickhouse_url

    @cached_property
    def chdb_path(self) -> Path:
        return self.home.resolve() / "clickhouse"

    @property
    def postgres_data_dir(self) -> Path:
        return self.home.resolve() / "postgres"

    @property
    def log_dir(self) -> Path:
        return self.home.resolve() / "logs"

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


class MissingSecretKey(RuntimeError):
    """Against shared services every process must seal and open with the same key."""


def secret_box(settings: Settings) -> SecretBox:
    """The key(s) of DRIPPULSE_SECRET_KEY. Without them, only the fully embedded stack may go on, with
    a key kept under DRIPPULSE_HOME: a process against a shared database would make a key of its
    own, and secrets it sealed could not be opened by any other host."""
    if settings.secret_key:
        return SecretBox(configured_keys(settings.secret_key))
    if not settings.embedded_postgres:
        raise MissingSecretKey(
            "DRIPPULSE_SECRET_KEY is required with DATABASE_URL: set the same Fernet key (or keys, newest "
            "first, comma-separated) for every process; generate one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`"
        )
    return SecretBox([local_key(settings.home.resolve() / "secret.key")])


def load_settings() -> Settings:
    return Settings()
