"""Gateway routes for learning from outcomes: A/B experiments of sequences and user feedback.

The gateway writes only experiment configs; outcomes, promotion and ratings
reach memory as events that the memory service applies.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from services.gateway.access import WORKSPACE_PATTERN, IdPath, WorkspacePath, allow, get_deps
from shared.contract.events import FeedbackGiven, new_envelope
from shared.domain.experiments import Experiment, ExperimentReport, ExperimentSpec, NoEvidence
from shared.messaging.bus import publish
from shared.stores import experiment_store


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: str = Field(pattern=WORKSPACE_PATTERN)
    rating: int = Field(ge=1, le=5, description="1 (bad) to 5 (excellent).")
    comment: str = Field(default="", max_length=2000)


class FeedbackAccepted(BaseModel):
    task_id: str
    event_id: str
    rating: int


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    promote: bool = Field(default=False, description="Store the winner as the proven route.")
    winner: Literal["A", "B"] | None = Field(
        default=None, description="Promote this arm instead of the statistical leader."
    )


router = APIRouter(tags=["experiments"])


@router.post(
    "/tasks/{task_id}/feedback",
    response_model=FeedbackAccepted,
    status_code=status.HTTP_202_ACCEPTED,
)
async def give_feedback(
    body: FeedbackRequest, request: Request, task_id: str = IdPath()
) -> FeedbackAccepted:
    user = allow(request, body.workspace_id)
    d = get_deps(request)
    if not await d.redis.exists(d.keys.task_view(body.workspace_id, task_id)):
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no task {task_id} in workspace {body.workspace_id}",
        )
    event = new_envelope(
        FeedbackGiven(task_id=task_id, rating=body.rating, comment=body.comment),
        workspace_id=body.workspace_id,
        user_id=user,
        correlation_id=task_id,
    )
    await publish(d.redis, d.layout, [event])
    return FeedbackAccepted(task_id=task_id, event_id=event.event_id, rating=body.rating)


@router.post(
    "/workspaces/{workspace_id}/experiments",
    response_model=Experiment,
    status_code=status.HTTP_201_CREATED,
)
async def create_experiment(
    body: ExperimentSpec, request: Request, workspace_id: str = WorkspacePath
) -> Experiment:
    allow(request, workspace_id)
    d = get_deps(request)
    unknown = d.catalog.unknown_agents([*body.arm_a, *body.arm_b])
    if unknown:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"arm_a/arm_b: unknown agents {', '.join(sorted(set(unknown)))}",
        )
    try:
        return await experiment_store.create(d.redis, d.keys, workspace_id, body)
    except experiment_store.ExperimentConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.get("/workspaces/{workspace_id}/experiments", response_model=list[ExperimentReport])
async def list_experiments(
    request: Request, workspace_id: str = WorkspacePath
) -> list[ExperimentReport]:
    allow(request, workspace_id)
    d = get_deps(request)
    experiments = await experiment_store.list_all(d.redis, d.keys, workspace_id)
    return [
        await experiment_store.get_report(d.redis, d.keys, workspace_id, e.experiment_id)
        for e in experiments
    ]


@router.get(
    "/workspaces/{workspace_id}/experiments/{experiment_id}", response_model=ExperimentReport
)
async def show_experiment(
    request: Request, experiment_id: str = IdPath(), workspace_id: str = WorkspacePath
) -> ExperimentReport:
    allow(request, workspace_id)
    try:
        return await experiment_store.get_report(
            get_deps(request).redis, get_deps(request).keys, workspace_id, experiment_id
        )
    except experiment_store.ExperimentNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such experiment") from exc


@router.post(
    "/workspaces/{workspace_id}/experiments/{experiment_id}/stop",
    response_model=ExperimentReport,
)
async def stop_experiment(
    body: StopRequest,
    request: Request,
    experiment_id: str = IdPath(),
    workspace_id: str = WorkspacePath,
) -> ExperimentReport:
    allow(request, workspace_id)
    d = get_deps(request)
    try:
        await experiment_store.stop(
            d.redis, d.keys,
            workspace_id,
            experiment_id,
            promote=body.promote,
            winner=body.winner,
        )
    except experiment_store.ExperimentNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such experiment") from exc
    except (experiment_store.ExperimentConflict, NoEvidence) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return await experiment_store.get_report(d.redis, d.keys, workspace_id, experiment_id)
