"""Every Redis key the system uses, in one place; all workspace data is scoped by workspace.

Names follow the deployment's layout (partitions, cluster hash tags), so they come from
a `Keys` built on it: the composition root makes one (`deps.keys`) and hands it on.

The seed's memory keys keep the seed's exact shape; ours use `memory:` for what
the memory service owns and `rf:ws:{workspace}:` for operational state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from shared.contract.topology import Topology

TASK_HISTORY_TTL_S = 30 * 24 * 3600
TASK_VIEW_TTL_S = TASK_HISTORY_TTL_S
CRITIQUE_TTL_S = 7 * 24 * 3600
SHARED_POOL_WORKSPACE = "__shared_pool__"  # the opt-in cross-workspace pool (shared_learning)


def goal_hash(goal: str) -> str:
    """Stable id of a goal: normalised whitespace and case, sha256, 16 hex chars."""
    normalised = " ".join(goal.lower().split())
    return hashlib.sha256(normalised.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Keys:
    """The key names of one layout (`Keys(settings.layout())`); what needs no layout (the
    TTLs, `goal_hash`) stays at module level."""

    layout: Topology

    def _ws(self, workspace_id: str) -> str:
        """The workspace segment, hash-tagged by partition when the deployment uses a cluster."""
        return self.layout.scoped(workspace_id)

    def task_history(self, workspace_id: str, goal_hash_value: str) -> str:
        return f"memory:task_history:{self._ws(workspace_id)}:{goal_hash_value}"

    def task_history_index(self, workspace_id: str) -> str:
        """Sorted set of goal hashes by last store time (recent history, no SCAN)."""
        return f"memory:task_history_index:{self._ws(workspace_id)}"

    def critique(self, workspace_id: str, content_id: str) -> str:
        return f"memory:critique:{self._ws(workspace_id)}:{content_id}"

    def routing_decision(self, workspace_id: str, task_id: str) -> str:
        return f"memory:routing:{self._ws(workspace_id)}:{task_id}"

    def agent_performance(self, workspace_id: str, task_type: str, agent: str) -> str:
        return f"memory:perf:{self._ws(workspace_id)}:{task_type}:{agent}"

    def performance_index(self, workspace_id: str) -> str:
        """Set of `task_type:agent` pairs that have aggregates in this workspace."""
        return f"memory:perf_index:{self._ws(workspace_id)}"

    def performance_step(self, workspace_id: str, task_type: str) -> str:
        """Outcomes seen for a task type: the clock of the bandit's discounting."""
        return f"memory:perf_step:{self._ws(workspace_id)}:{task_type}"

    def vector_set(self, workspace_id: str) -> str:
        """Vector set of one workspace's remembered goals (Redis 8 vector sets back end)."""
        return f"memory:vset:{self._ws(workspace_id)}"

    def vector_hash(self, workspace_id: str) -> str:
        """Hash item_id -> little-endian float32 bytes (exact back end)."""
        return f"memory:vec:{self._ws(workspace_id)}"

    def vector_attributes(self, workspace_id: str) -> str:
        """Hash item_id -> JSON attributes (exact back end)."""
        return f"memory:vecattr:{self._ws(workspace_id)}"

    def vector_changes(self, workspace_id: str) -> str:
        """Change-log stream (one entry per mutation) that replicas replay to stay in step."""
        return f"memory:vecver:{self._ws(workspace_id)}"

    def task_view(self, workspace_id: str, task_id: str) -> str:
        """The task's status and stage outputs, for GET /tasks/{id}."""
        return f"rf:ws:{self._ws(workspace_id)}:task:{task_id}"

    def task_stages(self, workspace_id: str, task_id: str) -> str:
        return f"rf:ws:{self._ws(workspace_id)}:task:{task_id}:stages"

    def task_index(self, workspace_id: str) -> str:
        """Sorted set of the workspace's task ids by acceptance time (GET /tasks, newest first)."""
        return f"rf:ws:{self._ws(workspace_id)}:tasks"

    def task_ended(self, workspace_id: str, task_id: str) -> str:
        """A one-entry stream written when the task reaches a terminal status: long-polls block
        on it (XREAD BLOCK) instead of polling the view."""
        return f"rf:ws:{self._ws(workspace_id)}:task:{task_id}:ended"

    def task_stopped(self, workspace_id: str, task_id: str) -> str:
        """Why a task was stopped from outside (cancelled, deadline): each service drops the task's
        events at its next hop while this key exists."""
        return f"rf:ws:{self._ws(workspace_id)}:task:{task_id}:stopped"

    def task_request(self, workspace_id: str, task_id: str) -> str:
        """The accepted TaskRequested envelope (JSON), what a rerun copies."""
        return f"rf:ws:{self._ws(workspace_id)}:task:{task_id}:request"

    def task_snapshot(self, workspace_id: str, task_id: str) -> str:
        """The workflow and context at the task's failure (JSON), what a resume continues from."""
        return f"rf:ws:{self._ws(workspace_id)}:task:{task_id}:snapshot"

    def idempotency(self, workspace_id: str, key_digest: str) -> str:
        """JSON {task_id, request_hash} of one Idempotency-Key (its sha256), for 24 hours."""
        return f"rf:ws:{self._ws(workspace_id)}:idempotency:{key_digest}"

    def task_deadlines(self, workspace_id: str) -> str:
        """Sorted set of `workspace|task_id` by deadline, one per partition like approvals'."""
        return f"rf:tasks:deadlines{self.layout.workspace_suffix(workspace_id)}"

    def all_task_deadlines(self) -> list[str]:
        return [f"rf:tasks:deadlines{s}" for s in self.layout.suffixes()]

    def processed(self, workspace_id: str, service: str, event_id: str) -> str:
        """Marker that a service already applied an event (idempotency)."""
        return f"rf:ws:{self._ws(workspace_id)}:processed:{service}:{event_id}"

    def checkpoints_config(self, workspace_id: str) -> str:
        return f"rf:ws:{self._ws(workspace_id)}:checkpoints"

    def approval(self, workspace_id: str, approval_id: str) -> str:
        return f"rf:ws:{self._ws(workspace_id)}:approval:{approval_id}"

    def approvals_pending(self, workspace_id: str) -> str:
        return f"rf:ws:{self._ws(workspace_id)}:approvals:pending"

    def approval_deadlines(self, workspace_id: str) -> str:
        """Sorted set of `workspace|approval_id` by deadline, one per partition (the workspace's,
        so it is written in the same transaction as the approval), so one sweep finds all."""
        return f"rf:approvals:deadlines{self.layout.workspace_suffix(workspace_id)}"

    def all_approval_deadlines(self) -> list[str]:
        return [f"rf:approvals:deadlines{s}" for s in self.layout.suffixes()]

    def handler_error(self, service: str, stream: str, message_id: str) -> str:
        """Failure count of one message; names its stream, so it shares the stream's cluster slot
        (the first `{...}` in a key decides the slot, and a partitioned stream carries `{pK}`)."""
        return f"rf:errors:{service}:{stream}:{message_id}"

    def sequence_counts(self, workspace_id: str) -> str:
        """Hash: agent sequence (JSON) -> successful tasks that used it (a calibration feature)."""
        return f"memory:sequences:{self._ws(workspace_id)}"

    def pool_sequence_counts(self, contributor_workspace_id: str) -> str:
        """The shared pool's sequence counts, kept in each contributor's partition: the count
        commits in the contributor's own transaction (one cluster slot); readers add up all."""
        suffix = self.layout.workspace_suffix(contributor_workspace_id)
        return f"memory:sequences:{SHARED_POOL_WORKSPACE}{suffix}"

    def all_pool_sequence_counts(self) -> list[str]:
        return [f"memory:sequences:{SHARED_POOL_WORKSPACE}{s}" for s in self.layout.suffixes()]

    def sequence_vectors(self, workspace_id: str) -> str:
        """Hash: agent sequence (JSON) -> sum of its successful tasks' goal vectors (float64
        bytes), so the router can compare a request with each sequence's centroid."""
        return f"memory:sequence_vectors:{self._ws(workspace_id)}"

    def pool_sequence_vectors(self, contributor_workspace_id: str) -> str:
        """The shared pool's vector sums, per contributor partition like its counts."""
        suffix = self.layout.workspace_suffix(contributor_workspace_id)
        return f"memory:sequence_vectors:{SHARED_POOL_WORKSPACE}{suffix}"

    def all_pool_sequence_vectors(self) -> list[str]:
        pool = f"memory:sequence_vectors:{SHARED_POOL_WORKSPACE}"
        return [f"{pool}{s}" for s in self.layout.suffixes()]

    def audit(self, workspace_id: str) -> str:
        """Stream of every checkpoint evaluation and decision in the workspace (capped)."""
        return f"rf:ws:{self._ws(workspace_id)}:audit"

    def webhooks_config(self, workspace_id: str) -> str:
        return f"rf:ws:{self._ws(workspace_id)}:webhooks"

    def webhook_delivery(self, workspace_id: str, approval_id: str) -> str:
        """Hash: the signed body and, per target n, `n:url`, `n:attempts`, `n:last_status`..."""
        return f"rf:ws:{self._ws(workspace_id)}:webhook:{approval_id}"

    def webhook_outbox(self, workspace_id: str) -> str:
        """Sorted set of `workspace|approval_id|target` by next attempt time, one per partition."""
        return f"rf:webhooks:outbox{self.layout.workspace_suffix(workspace_id)}"

    def all_webhook_outboxes(self) -> list[str]:
        return [f"rf:webhooks:outbox{s}" for s in self.layout.suffixes()]

    def experiment(self, workspace_id: str, experiment_id: str) -> str:
        """JSON config of one A/B test of sequences (written by the gateway/CLI)."""
        return f"memory:experiment:{self._ws(workspace_id)}:{experiment_id}"

    def experiments_index(self, workspace_id: str) -> str:
        """Sorted set of experiment ids by creation time."""
        return f"memory:experiments:{self._ws(workspace_id)}"

    def experiments_running(self, workspace_id: str) -> str:
        """Set of running experiment ids: what the router checks on every request."""
        return f"memory:experiments_running:{self._ws(workspace_id)}"

    def experiment_arm(self, workspace_id: str, experiment_id: str, arm: str) -> str:
        """Hash of one arm's counters (assigned, tasks, successes, quality sums); memory writes."""
        return f"memory:experiment:{self._ws(workspace_id)}:{experiment_id}:arm:{arm}"

    def experiment_goals(self, workspace_id: str, experiment_id: str) -> str:
        """Hash goal_hash -> goal of the experiment's finished tasks (what promotion relabels)."""
        return f"memory:experiment:{self._ws(workspace_id)}:{experiment_id}:goals"

    def routing_calibration(self, workspace_id: str) -> str:
        """Hash: the workspace's online correction of the router's confidence
        (shared.domain.recalibration)."""
        return f"memory:routing_calibration:{self._ws(workspace_id)}"

    def agent_pending(self, workspace_id: str, invocation_id: str) -> str:
        """The AgentInvoked envelope awaiting its AgentResult (what a timeout re-publishes)."""
        return f"rf:ws:{self._ws(workspace_id)}:agent:pending:{invocation_id}"

    def agent_answered(self, workspace_id: str, invocation_id: str) -> str:
        """Who settled an invocation first: a result's event id, or `timeout`."""
        return f"rf:ws:{self._ws(workspace_id)}:agent:answered:{invocation_id}"

    def agent_deadlines(self, workspace_id: str) -> str:
        """Sorted set of `workspace|invocation_id` by deadline, one per partition (as approvals)."""
        return f"rf:agent:deadlines{self.layout.workspace_suffix(workspace_id)}"

    def all_agent_deadlines(self) -> list[str]:
        return [f"rf:agent:deadlines{s}" for s in self.layout.suffixes()]

    def readiness_probe(self, process: str) -> str:
        """The key a gateway writes to tell whether Redis takes writes (expires in seconds)."""
        return f"rf:ready:{process}"
