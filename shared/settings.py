"""Settings from the environment only (secrets never come from files in the repo)."""

from __future__ import annotations

import os
import socket

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contract.keys import Keys
from shared.contract.topology import Topology
from shared.domain.recalibration import DEFAULT_MODE, RecalibrationMode

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _default_consumer_name() -> str:
    """Unique per replica, so `--scale` never makes two consumers share a name."""
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    """Everything a service needs to know about its environment."""

    model_config = SettingsConfigDict(env_prefix="RAPTORFLOW_", extra="ignore")

    redis_url: SecretStr = Field(
        default=SecretStr(DEFAULT_REDIS_URL),
        validation_alias=AliasChoices("REDIS_URL", "RAPTORFLOW_REDIS_URL"),
        description="Redis connection URL; redis:// or rediss:// (TLS), AUTH in the URL.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "RAPTORFLOW_OPENAI_API_KEY")
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("OPENAI_BASE_URL", "RAPTORFLOW_OPENAI_BASE_URL"),
    )
    llm_model: str = Field(default="gpt-4o-mini", description="Chat model name.")
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_max_retries: int = Field(default=3, ge=0)
    llm_provider: str = Field(
        default="auto", description="auto (openai when a key or base URL is set), openai, offline."
    )
    embeddings: str = Field(default="local", description="local (MiniLM on CPU) or openai.")
    embeddings_model: str = Field(default="text-embedding-3-small")

    catalog_path: str | None = Field(
        default=None, description="Agent catalog TOML; bundled default."
    )
    reuse_confidence: float = Field(default=0.8, ge=0, le=1)
    routing_recalibration: RecalibrationMode = Field(
        default=DEFAULT_MODE,
        description="How a workspace's learned correction changes the reuse confidence: full "
        "(sigmoid(a + b*z)), cautious (only lowers it: min(global, corrected)), off (global model only).",
    )
    memory_neighbours: int = Field(default=10, ge=1, le=100)
    context_history_limit: int = Field(default=10, ge=0, le=100)
    routing_cost_tolerance: float = Field(
        default=0.02, ge=0, le=1,
        description="Prefer a cheaper remembered sequence whose confidence is within this of the best.",
    )
    shared_learning_workspaces: str = Field(
        default="",
        description="Comma-separated workspaces opted in to cross-workspace learning ('*' = all); "
        "empty = off. They share anonymised successes (no goal text) and draw on others'.",
    )
    shared_learning_min_history: int = Field(
        default=20, ge=0, description="An opted-in workspace draws on the pool below this many tasks."
    )

    redis_cluster: bool = Field(
        default=False,
        description="REDIS_URL names a node of a Redis Cluster: cluster clients, hash-tagged keys.",
    )
    stream_partitions: int = Field(
        default=1, ge=1, le=1024,
        description="Streams per event type, split by workspace (a cluster spreads them over "
        "shards); every process of a deployment must use the same value.",
    )
    hash_tags: bool = Field(
        default=False,
        description="Hash-tag keys by partition even on one Redis (implied by redis_cluster).",
    )

    consumer_name: str = Field(default_factory=_default_consumer_name)
    poll_interval_ms: int = Field(default=100, ge=1)
    read_batch: int = Field(
        default=16, ge=1, description="XREADGROUP COUNT: small enough that replicas share work."
    )
    handler_concurrency: int = Field(
        default=16,
        ge=1,
        description="Messages of one stream a process handles at once. Handlers are already "
        "safe for any number of replicas, so this adds no new interleaving; it overlaps their "
        "Redis round trips (issue 10: 1 = one message at a time).",
    )
    claim_min_idle_ms: int = Field(default=5000, ge=10)
    shutdown_grace_s: float = Field(
        default=20.0, gt=0, le=3600,
        description="On SIGTERM a process stops reading at once and gives in-flight handlers "
        "this long to commit; the rest are cancelled and stay pending for a replica to reclaim. "
        "Keep it below the orchestrator's kill deadline (Kubernetes: terminationGracePeriodSeconds).",
    )
    max_deliveries: int = Field(default=5, ge=1)
    stream_maxlen: int = Field(
        default=100_000,
        ge=100,
        description="About how many entries a stream keeps; never trims what a group still needs.",
    )
    stream_trim_interval_s: float = Field(default=5.0, gt=0, le=3600)
    processed_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)

    api_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated key=workspace pairs (workspace '*' for all); gateway auth.",
    )
    ui_origins: str = Field(
        default="",
        description="Comma-separated origins, besides the gateway's own, the console's forms "
        "may be posted from (a console behind a proxy under another name).",
    )
    mcp_allowed_commands: str = Field(
        default="",
        description="Comma-separated commands (exact) an MCP server of an agent registered "
        "through the API may start; none by default (the catalog file may name any).",
    )
    otel: bool = Field(
        default=False,
        description="Trace each handler in an OpenTelemetry consumer span continuing the "
        "publisher's trace, and carry its context in the events it publishes (needs the "
        "`otel` extra; exporters are configured with the OpenTelemetry SDK's own variables).",
    )
    egress_allow: str = Field(
        default="",
        description="Comma-separated host names, IP addresses or CIDR networks that calls to "
        "tenant-given URLs (webhooks) may reach although they are not public (loopback, private, "
        "link-local...); empty = the public internet only. E.g. 'hooks.internal,10.1.0.0/16'.",
    )
    max_body_bytes: int = Field(
        default=256 * 1024, ge=1024, description="Largest request body the gateway reads (413 above)."
    )
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000
    metrics_port: int = Field(default=0, ge=0, description="0 disables the /metrics listener.")

    price_per_1k_prompt_usd: float = Field(default=0.00015, ge=0)
    price_per_1k_completion_usd: float = Field(default=0.0006, ge=0)
    price_table: dict[str, tuple[float, float]] = Field(
        default_factory=dict,
        description="Per-model USD per 1k (prompt, completion) tokens, as JSON, e.g. "
        '{"gpt-4o": [0.0025, 0.01]}; a model found here (exact name, else longest prefix) '
        "overrides the flat price_per_1k_* pair.",
    )

    def redis_url_value(self) -> str:
        return self.redis_url.get_secret_value()

    def layout(self) -> Topology:
        """How this deployment lays streams and keys over Redis (partitions, hash tags)."""
        return Topology(
            partitions=self.stream_partitions, hash_tags=self.redis_cluster or self.hash_tags
        )

    def keys(self) -> Keys:
        """The key names of this deployment's layout."""
        return Keys(self.layout())

    def wants_openai(self) -> bool:
        if self.llm_provider == "offline":
            return False
        if self.llm_provider == "openai":
            return True
        return self.openai_api_key is not None or self.openai_base_url is not None
