"""All configuration in one pydantic-settings class, read from `NBA_*` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NBA_", extra="forbid")

    env: Literal["development", "production"] = "development"
    redis_url: str | None = Field(
        default=None,
        description="redis:// or unix:// URL of the state store; unset starts an embedded Redis.",
    )
    data_dir: Path = Field(default=Path("var"), description="Where the embedded Redis keeps its file.")
    rules_dir: Path = Path("rules")
    rules_watch: bool = Field(
        default=True,
        description="Reload the rules when a file under rules_dir changes (a bad set is refused; the last good one serves).",
    )
    rules_test_gate: bool = Field(
        default=True,
        description="A rule set serves only if its test cases (*_test.yaml beside the rules) pass, at start and on reload.",
    )
    rules_watch_debounce_ms: int = Field(
        default=1_600, ge=10, le=60_000, description="Group a burst of rule file changes into one reload, over at most this long."
    )
    admin_token: SecretStr | None = Field(
        default=None,
        min_length=16,
        description=(
            "Bearer token (16 characters or more) for the admin endpoints (POST /v1/admin/rules/reload): send "
            "`Authorization: Bearer <token>`. Unset: they answer 403, except with NBA_ENV=development, where they are open."
        ),
    )
    models_dir: Path = Field(default=Path("models"), description="Model specs; missing or empty: priors only.")
    learner: bool = Field(default=True, description="Run a learner in the serving process (or run `nba learner`).")
    timer_worker: bool = Field(default=True, description="Fire trigger timers in the serving process (or run `nba worker`).")
    outbound_webhook_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="POST every outbound message (what triggers emit) here as JSON, at least once, with the "
        "message id as Idempotency-Key; serving processes and `nba worker` share the sending.",
    )
    outbound_webhook_timeout_s: float = Field(default=2.0, gt=0, le=60, description="Time a webhook POST may take.")
    outbound_webhook_retry_s: float = Field(
        default=5.0, ge=0, le=3_600, description="How long a message that failed to send waits before it is sent again."
    )
    outbound_webhook_max_attempts: int = Field(
        default=8, ge=1, le=1_000, description="Sends of one message before it goes to the dead-letter stream `s:outbound:dead`."
    )
    random_seed: int | None = Field(default=None, description="Seed exploration, for repeatable runs.")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535, description="HTTP port.")
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    max_concurrent_rpcs: int = Field(default=1_000, ge=1, description="gRPC calls beyond this get RESOURCE_EXHAUSTED.")
    grpc_drain_s: float = Field(
        default=1.0,
        ge=0,
        le=300,
        description="On SIGINT/SIGTERM, gRPC health says NOT_SERVING this long, calls still answered, before the server "
        "stops taking new ones: the time load balancers need to see it and move traffic away (set it to their "
        "health-check interval).",
    )
    max_concurrent_requests: int = Field(
        default=1_000, ge=1, description="HTTP API requests in flight beyond this get 503 `overloaded` with Retry-After."
    )

    decision_ttl_s: int = Field(default=7 * 86_400, ge=60, description="How long feedback can join a decision.")
    dedup_ttl_s: int = Field(default=7 * 86_400, ge=60, description="How long a retried event or feedback id is recognised.")
    recent_limit: int = Field(default=100, ge=1, le=10_000, description="Interactions kept per customer.")
    stream_maxlen: int = Field(default=1_000_000, ge=1_000, description="Approximate cap on each stream's length.")
    max_body_bytes: int = Field(default=1_048_576, ge=1_024)
    max_batch_events: int = Field(default=1_000, ge=1)
    redis_timeout_s: float = Field(default=0.5, gt=0, description="A decision falls back (degraded) rather than wait longer.")
    bench_endpoints: bool = Field(default=False, description="Expose the bare Redis endpoint the benchmark compares against.")
    gc_young_threshold: int = Field(
        default=20_000,
        ge=0,
        description="Net allocations between young garbage collections in a serving process (CPython's default, 700, "
        "suits short scripts: a server with requests in flight crosses it every few dozen decisions); 0 keeps "
        "the interpreter's default.",
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production" and not self.redis_url:
            raise ValueError("NBA_REDIS_URL must be set when NBA_ENV=production (the embedded Redis is for development)")
        return self
