"""The agent catalog: which agents exist, what they do, and how each one runs.

A TOML file the user edits; the bundled `agents.toml` is the default. Agents
registered while the system runs (shared.stores.agent_registry) are merged over it.

Three kinds share one invocation path (AgentInvoked -> AgentResult):
- `llm` (the default): a prompt, run by the built-in agent runner, optionally with tools;
- `worker`: an external process in any language, reading the agent's own stream;
- `http`: a URL the runner POSTs each invocation to.
"""

from __future__ import annotations

import re
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, model_validator

BUNDLED_CATALOG = Path(__file__).with_name("agents.toml")
AGENT_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
TOOL_PATTERN = r"^(?:[a-z][a-z0-9_]{0,63}|mcp:[a-z][a-z0-9_]{0,63}/[A-Za-z0-9_.\-]{1,64})$"
AgentKind = Literal["llm", "worker", "http"]


class McpServerSpec(BaseModel):
    """An MCP server an llm agent's tools come from, started over stdio."""

    model_config = ConfigDict(extra="forbid")
    command: str = Field(min_length=1, max_length=500)
    args: list[str] = Field(default_factory=list, max_length=32)


def mcp_command_allowed(command: str, allowed: str | None) -> bool:
    """Whether an MCP server command may be started for an agent registered at run time:
    only commands the operator listed (comma-separated, exact), never by default."""
    return command in {c.strip() for c in (allowed or "").split(",") if c.strip()}


class AgentSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=AGENT_NAME_PATTERN)
    kind: AgentKind = Field(default="llm", description="llm (a prompt), worker or http.")
    task_types: list[str] = Field(min_length=1, max_length=16)
    description: str = Field(default="", max_length=1000)
    prompt: str = Field(default="", max_length=8000, description="llm agents: the system prompt.")
    cost_per_call_usd: float = Field(default=0.0, ge=0, le=100, allow_inf_nan=False)
    url: AnyHttpUrl | None = Field(default=None, description="http agents: where to POST.")
    secret_env: str | None = Field(
        default=None,
        pattern=r"^RAPTORFLOW_AGENT_SECRET_[A-Z0-9_]{1,40}$",
        description="http agents: the environment variable holding the HMAC signing key "
        "(RAPTORFLOW_AGENT_SECRET_*, so a registration cannot name another secret).",
    )
    tools: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="llm agents: worker/http agent names, or mcp:<server>/<tool>.",
    )
    mcp_servers: dict[str, McpServerSpec] = Field(default_factory=dict, max_length=8)
    timeout_s: float = Field(default=60.0, gt=0, le=3600, allow_inf_nan=False)
    max_attempts: int = Field(default=3, ge=1, le=10, description="Tries per invocation.")
    version: int = Field(default=0, ge=0, description="Registry version (0: from the file).")

    @model_validator(mode="after")
    def _kind_fields(self) -> AgentSpec:
        if self.kind == "llm" and not self.prompt:
            raise ValueError(f"agent {self.name}: an llm agent needs a prompt")
        if self.kind == "http" and self.url is None:
            raise ValueError(f"agent {self.name}: an http agent needs a url")
        if self.kind != "http" and self.url is not None:
            raise ValueError(f"agent {self.name}: only http agents have a url")
        if self.tools and self.kind != "llm":
            raise ValueError(f"agent {self.name}: only llm agents have tools")
        for tool in self.tools:
            if not re.fullmatch(TOOL_PATTERN, tool):
                raise ValueError(f"agent {self.name}: invalid tool name {tool!r}")
            if tool.startswith("mcp:") and tool[4:].split("/", 1)[0] not in self.mcp_servers:
                raise ValueError(f"agent {self.name}: tool {tool} names no mcp_servers entry")
            if tool == self.name:
                raise ValueError(f"agent {self.name}: an agent cannot be its own tool")
        if len(set(self.tools)) != len(self.tools):
            raise ValueError(f"agent {self.name}: duplicate tools")
        return self

    @property
    def task_type(self) -> str:
        """The task type this agent plays when it is planned for a stage."""
        return self.task_types[0]


class TaskTypeSpec(BaseModel):
    quality: str = Field(description="Which quality_thresholds key applies.")
    description: str = ""


class AgentCatalog(BaseModel):
    task_types: dict[str, TaskTypeSpec]
    agents: list[AgentSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> AgentCatalog:
        names = [a.name for a in self.agents]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"duplicate agent names: {sorted(duplicates)}")
        kinds = {a.name: a.kind for a in self.agents}
        for agent in self.agents:
            unknown = set(agent.task_types) - set(self.task_types)
            if unknown:
                raise ValueError(f"agent {agent.name}: unknown task types {sorted(unknown)}")
            for tool in agent.tools:
                if not tool.startswith("mcp:") and kinds.get(tool) not in ("worker", "http"):
                    raise ValueError(
                        f"agent {agent.name}: tool {tool} is not a worker or http agent"
                    )
        return self

    def merged(self, overrides: list[AgentSpec]) -> AgentCatalog:
        """This catalog with `overrides` replacing (by name) or adding agents; validated."""
        by_name = {a.name: a for a in self.agents}
        for agent in overrides:
            by_name[agent.name] = agent
        return AgentCatalog(task_types=self.task_types, agents=list(by_name.values()))

    def get(self, name: str) -> AgentSpec:
        for agent in self.agents:
            if agent.name == name:
                return agent
        raise KeyError(f"unknown agent {name!r}; known: {', '.join(self.names)}")

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.agents]

    def candidates(self, task_type: str) -> list[str]:
        """Agents that can do a task type; the first is the type's default."""
        return [a.name for a in self.agents if task_type in a.task_types]

    def default_agent(self, task_type: str) -> str:
        candidates = self.candidates(task_type)
        if not candidates:
            raise KeyError(f"no agent serves task type {task_type!r}")
        return candidates[0]

    def quality_key(self, task_type: str) -> str:
        return self.task_types[task_type].quality

    def sequence_cost(self, sequence: list[str]) -> float:
        return sum(self.get(name).cost_per_call_usd for name in sequence if name in self.names)

    def unknown_agents(self, sequence: list[str]) -> list[str]:
        known = set(self.names)
        return [name for name in sequence if name not in known]


def load_catalog(path: str | Path | None = None) -> AgentCatalog:
    source = Path(path) if path else BUNDLED_CATALOG
    with source.open("rb") as handle:
        return AgentCatalog.model_validate(tomllib.load(handle))


@lru_cache(maxsize=4)
def cached_catalog(path: str | None = None) -> AgentCatalog:
    return load_catalog(path)
