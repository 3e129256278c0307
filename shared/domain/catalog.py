"""The agent catalog: which agents exist, what they do, and their prompts.

A TOML file the user edits; the bundled `agents.toml` is the default.
"""

from __future__ import annotations

import tomllib
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, Field, model_validator

BUNDLED_CATALOG = Path(__file__).with_name("agents.toml")


class AgentSpec(BaseModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    task_types: list[str] = Field(min_length=1)
    description: str
    prompt: str
    cost_per_call_usd: float = Field(default=0.0, ge=0)

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
        for agent in self.agents:
            unknown = set(agent.task_types) - set(self.task_types)
            if unknown:
                raise ValueError(f"agent {agent.name}: unknown task types {sorted(unknown)}")
        return self

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
