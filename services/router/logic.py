"""Router decisions that need no I/O: turn a request and a route into a workflow."""

from __future__ import annotations

from shared.contract.events import RoutingInfo, SequenceChosen, TaskFailed, TaskRequested, Workflow
from shared.domain.catalog import AgentCatalog
from shared.domain.routing import RouteDecision


class InvalidRequestedSequence(ValueError):
    pass


def requested_route(request: TaskRequested, catalog: AgentCatalog) -> RouteDecision | None:
    """A sequence given in the request skips routing, once checked against the catalog."""
    if not request.agent_sequence:
        return None
    unknown = catalog.unknown_agents(request.agent_sequence)
    if unknown:
        raise InvalidRequestedSequence(f"unknown agents in agent_sequence: {', '.join(unknown)}")
    return RouteDecision(
        agent_sequence=request.agent_sequence,
        source="requested",
        confidence=1.0,
        reason="agent_sequence given in the request",
        provider="request",
    )


def workflow_for(task_id: str, request: TaskRequested, decision: RouteDecision) -> Workflow:
    return Workflow(
        task_id=task_id,
        goal=request.goal,
        inputs=request.inputs,
        agent_sequence=decision.agent_sequence,
        routing=RoutingInfo(
            source=decision.source,
            confidence=decision.confidence,
            matched_goal_hash=decision.matched_goal_hash,
            provider=decision.provider,
            experiment_id=decision.experiment_id,
            experiment_arm=decision.experiment_arm,
            candidate_sequence=decision.candidate_sequence,
            candidate_logit=decision.candidate_logit,
        ),
        usage=decision.usage,
        self_correction=request.self_correction,
        checkpoints=request.checkpoints,
        replace_checkpoints=request.replace_checkpoints,
    )


def sequence_chosen(workflow: Workflow, decision: RouteDecision) -> SequenceChosen:
    return SequenceChosen(
        workflow=workflow, neighbours=decision.neighbours[:5], reason=decision.reason
    )


def routing_failed(request: TaskRequested, error: str) -> TaskFailed:
    return TaskFailed(goal=request.goal, reason="invalid_plan", error=error)
