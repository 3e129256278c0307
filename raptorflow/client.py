"""The Python client of the RaptorFlow gateway, sync (`RaptorFlow`) and async
(`AsyncRaptorFlow`), on httpx.

    from raptorflow.client import RaptorFlow

    with RaptorFlow("http://127.0.0.1:8000", api_key="...", workspace_id="acme") as rf:
        task = rf.submit("Write a blog post about AI trends", idempotency_key="order-42")
        view = rf.wait(task.task_id, timeout=120)
        print(view.status, view.quality, view.final_output)

Answers are the gateway's typed models (`TaskView`, `TaskPage`, `TaskAccepted`); errors are
typed (`NotFound`, `Forbidden`, `Conflict`, `ValidationFailed` with the field, `Unavailable`
with retry-after). `wait` holds a long-poll on the server (GET /tasks/{id}?wait=), so it
never polls in a loop.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import httpx

from shared.contract.task_view import TaskAccepted, TaskPage, TaskView

T = TypeVar("T")
LONG_POLL_S = 30.0


class RaptorFlowError(Exception):
    """An answer the gateway refused; `status` is the HTTP status, `detail` its reason."""

    def __init__(self, status: int, detail: Any):
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail


class Unauthorized(RaptorFlowError):
    pass


class Forbidden(RaptorFlowError):
    pass


class NotFound(RaptorFlowError):
    pass


class Conflict(RaptorFlowError):
    pass


class ValidationFailed(RaptorFlowError):
    """422: `field` names the first field the gateway refused (dotted path), when it said."""

    def __init__(self, status: int, detail: Any):
        super().__init__(status, detail)
        self.field = _field_of(detail)


class Unavailable(RaptorFlowError):
    """503/502/504: try again later, after `retry_after` seconds when the gateway said."""

    def __init__(self, status: int, detail: Any, retry_after: float | None):
        super().__init__(status, detail)
        self.retry_after = retry_after


class WaitTimeout(TimeoutError):
    """The task had not ended when `wait` gave up; `view` is its last state."""

    def __init__(self, view: TaskView):
        super().__init__(f"task {view.task_id} still {view.status}")
        self.view = view


_ERRORS: dict[int, type[RaptorFlowError]] = {
    401: Unauthorized, 403: Forbidden, 404: NotFound, 409: Conflict,
}


def _field_of(detail: Any) -> str | None:
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        loc = [str(p) for p in detail[0].get("loc", []) if p not in ("body", "query", "header")]
        return ".".join(loc) or None
    if isinstance(detail, str) and ":" in detail:
        return detail.split(":", 1)[0].strip() or None
    return None


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    code = response.status_code
    if code == 422:
        raise ValidationFailed(code, detail)
    if code in (502, 503, 504):
        retry = response.headers.get("Retry-After")
        raise Unavailable(code, detail, float(retry) if retry and retry.isdigit() else None)
    raise _ERRORS.get(code, RaptorFlowError)(code, detail)


@dataclass
class _Call(Generic[T]):
    """One request and how to read its answer: what both clients send."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in self.params.items() if v is not None}
        extensions = {"timeout": httpx.Timeout(self.timeout).as_dict()} if self.timeout else None
        return client.build_request(self.method, self.path, params=params, json=self.body,
                                    headers=self.headers, extensions=extensions)

    def read(self, response: httpx.Response) -> T:
        _raise_for(response)
        return self.parse(response)


def _model(model: type[Any]) -> Callable[[httpx.Response], Any]:
    return lambda response: model.model_validate(response.json())


def _json(response: httpx.Response) -> Any:
    return response.json()


def _idempotent(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


class _Calls:
    """The API's calls as data (no I/O), shared by the sync and async clients."""

    def __init__(self, workspace_id: str | None):
        self.workspace_id = workspace_id

    def ws(self, workspace_id: str | None) -> str:
        chosen = workspace_id or self.workspace_id
        if not chosen:
            raise ValueError("workspace_id: give it here or to the client")
        return chosen

    def submit(self, goal: str, workspace_id: str | None, idempotency_key: str | None,
               fields: dict[str, Any]) -> _Call[TaskAccepted]:
        body = {"goal": goal, "workspace_id": self.ws(workspace_id),
                **{k: v for k, v in fields.items() if v is not None}}
        return _Call("POST", "/tasks", _model(TaskAccepted), body=body,
                     headers=_idempotent(idempotency_key))

    def get(self, task_id: str, workspace_id: str | None, wait: float = 0) -> _Call[TaskView]:
        params: dict[str, Any] = {"workspace_id": self.ws(workspace_id)}
        if wait > 0:
            params["wait"] = wait
        return _Call("GET", f"/tasks/{task_id}", _model(TaskView), params=params,
                     timeout=wait + 30 if wait > 0 else None)

    def list(self, workspace_id: str | None, status: str | None, source: str | None,
             agent: str | None, since: datetime | None, cursor: str | None,
             limit: int) -> _Call[TaskPage]:
        params = {"workspace_id": self.ws(workspace_id), "status": status, "source": source,
                  "agent": agent, "since": since.isoformat() if since else None,
                  "cursor": cursor, "limit": limit}
        return _Call("GET", "/tasks", _model(TaskPage), params=params)

    def cancel(self, task_id: str, workspace_id: str | None, reason: str) -> _Call[TaskView]:
        body = {"workspace_id": self.ws(workspace_id), "reason": reason}
        return _Call("POST", f"/tasks/{task_id}/cancel", _model(TaskView), body=body)

    def resume(self, task_id: str, workspace_id: str | None,
               budget_constraints: dict[str, float] | None,
               idempotency_key: str | None) -> _Call[TaskAccepted]:
        body: dict[str, Any] = {"workspace_id": self.ws(workspace_id)}
        if budget_constraints is not None:
            body["budget_constraints"] = budget_constraints
        return _Call("POST", f"/tasks/{task_id}/resume", _model(TaskAccepted), body=body,
                     headers=_idempotent(idempotency_key))

    def rerun(self, task_id: str, workspace_id: str | None,
              idempotency_key: str | None) -> _Call[TaskAccepted]:
        body = {"workspace_id": self.ws(workspace_id)}
        return _Call("POST", f"/tasks/{task_id}/rerun", _model(TaskAccepted), body=body,
                     headers=_idempotent(idempotency_key))

    def approvals(self, workspace_id: str | None) -> _Call[builtins.list[dict[str, Any]]]:
        return _Call("GET", "/approvals", _json, params={"workspace_id": self.ws(workspace_id)})

    def decide(self, approval_id: str, decision: str, workspace_id: str | None,
               fields: dict[str, Any]) -> _Call[dict[str, Any]]:
        body = {"workspace_id": self.ws(workspace_id), "decision": decision,
                **{k: v for k, v in fields.items() if v is not None}}
        return _Call("POST", f"/approvals/{approval_id}/decision", _json, body=body)

    def feedback(self, task_id: str, rating: int, comment: str,
                 workspace_id: str | None) -> _Call[dict[str, Any]]:
        body = {"workspace_id": self.ws(workspace_id), "rating": rating, "comment": comment}
        return _Call("POST", f"/tasks/{task_id}/feedback", _json, body=body)


def _client_args(url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    headers = {"X-API-Key": api_key} if api_key else {}
    return {"base_url": url, "headers": headers, "timeout": timeout}


class RaptorFlow:
    """The synchronous client. `workspace_id` is the default for every call."""

    def __init__(self, url: str, api_key: str | None = None, *, workspace_id: str | None = None,
                 timeout: float = 30.0, transport: httpx.BaseTransport | None = None):
        self.calls = _Calls(workspace_id)
        self.http = httpx.Client(transport=transport, **_client_args(url, api_key, timeout))

    def _do(self, call: _Call[T]) -> T:
        return call.read(self.http.send(call.request(self.http)))

    def submit(self, goal: str, *, workspace_id: str | None = None,
               idempotency_key: str | None = None, **fields: Any) -> TaskAccepted:
        """Submit a goal (fields: task_id, deadline_s, inputs, agent_sequence, user_id...)."""
        return self._do(self.calls.submit(goal, workspace_id, idempotency_key, fields))

    def get(self, task_id: str, *, workspace_id: str | None = None) -> TaskView:
        return self._do(self.calls.get(task_id, workspace_id))

    def wait(self, task_id: str, *, timeout: float = 300.0,
             workspace_id: str | None = None) -> TaskView:
        """The task once it ended; WaitTimeout after `timeout` seconds. Long-polls the gateway."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            view = self._do(self.calls.get(task_id, workspace_id, wait=max(min(left, LONG_POLL_S),
                                                                            0)))
            if view.terminal:
                return view
            if left <= 0:
                raise WaitTimeout(view)

    def list(self, *, workspace_id: str | None = None, status: str | None = None,
             source: str | None = None, agent: str | None = None, since: datetime | None = None,
             cursor: str | None = None, limit: int = 20) -> TaskPage:
        return self._do(self.calls.list(workspace_id, status, source, agent, since, cursor, limit))

    def cancel(self, task_id: str, *, reason: str = "",
               workspace_id: str | None = None) -> TaskView:
        return self._do(self.calls.cancel(task_id, workspace_id, reason))

    def resume(self, task_id: str, *, budget_constraints: dict[str, float] | None = None,
               idempotency_key: str | None = None,
               workspace_id: str | None = None) -> TaskAccepted:
        """Continue a failed task from its unfinished stage (a new task, `resumed_from`)."""
        call = self.calls.resume(task_id, workspace_id, budget_constraints, idempotency_key)
        return self._do(call)

    def rerun(self, task_id: str, *, idempotency_key: str | None = None,
              workspace_id: str | None = None) -> TaskAccepted:
        return self._do(self.calls.rerun(task_id, workspace_id, idempotency_key))

    def approvals(self, *, workspace_id: str | None = None) -> builtins.list[dict[str, Any]]:
        """The workspace's pending approvals."""
        return self._do(self.calls.approvals(workspace_id))

    def decide(self, approval_id: str, decision: str, *, workspace_id: str | None = None,
               decided_by: str | None = None, reason: str = "",
               comments: builtins.list[str] | None = None) -> dict[str, Any]:
        """approved, rejected or changes_requested (with comments)."""
        fields = {"decided_by": decided_by, "reason": reason, "comments": comments}
        return self._do(self.calls.decide(approval_id, decision, workspace_id, fields))

    def feedback(self, task_id: str, rating: int, *, comment: str = "",
                 workspace_id: str | None = None) -> dict[str, Any]:
        return self._do(self.calls.feedback(task_id, rating, comment, workspace_id))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncRaptorFlow:
    """The asynchronous client: the same calls as `RaptorFlow`, awaited."""

    def __init__(self, url: str, api_key: str | None = None, *, workspace_id: str | None = None,
                 timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None):
        self.calls = _Calls(workspace_id)
        self.http = httpx.AsyncClient(transport=transport, **_client_args(url, api_key, timeout))

    async def _do(self, call: _Call[T]) -> T:
        return call.read(await self.http.send(call.request(self.http)))

    async def submit(self, goal: str, *, workspace_id: str | None = None,
                     idempotency_key: str | None = None, **fields: Any) -> TaskAccepted:
        return await self._do(self.calls.submit(goal, workspace_id, idempotency_key, fields))

    async def get(self, task_id: str, *, workspace_id: str | None = None) -> TaskView:
        return await self._do(self.calls.get(task_id, workspace_id))

    async def wait(self, task_id: str, *, timeout: float = 300.0,
                   workspace_id: str | None = None) -> TaskView:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            call = self.calls.get(task_id, workspace_id, wait=max(min(left, LONG_POLL_S), 0))
            view = await self._do(call)
            if view.terminal:
                return view
            if left <= 0:
                raise WaitTimeout(view)

    async def list(self, *, workspace_id: str | None = None, status: str | None = None,
                   source: str | None = None, agent: str | None = None,
                   since: datetime | None = None, cursor: str | None = None,
                   limit: int = 20) -> TaskPage:
        call = self.calls.list(workspace_id, status, source, agent, since, cursor, limit)
        return await self._do(call)

    async def cancel(self, task_id: str, *, reason: str = "",
                     workspace_id: str | None = None) -> TaskView:
        return await self._do(self.calls.cancel(task_id, workspace_id, reason))

    async def resume(self, task_id: str, *, budget_constraints: dict[str, float] | None = None,
                     idempotency_key: str | None = None,
                     workspace_id: str | None = None) -> TaskAccepted:
        call = self.calls.resume(task_id, workspace_id, budget_constraints, idempotency_key)
        return await self._do(call)

    async def rerun(self, task_id: str, *, idempotency_key: str | None = None,
                    workspace_id: str | None = None) -> TaskAccepted:
        return await self._do(self.calls.rerun(task_id, workspace_id, idempotency_key))

    async def approvals(self, *, workspace_id: str | None = None) -> builtins.list[dict[str, Any]]:
        return await self._do(self.calls.approvals(workspace_id))

    async def decide(self, approval_id: str, decision: str, *, workspace_id: str | None = None,
                     decided_by: str | None = None, reason: str = "",
                     comments: builtins.list[str] | None = None) -> dict[str, Any]:
        fields = {"decided_by": decided_by, "reason": reason, "comments": comments}
        return await self._do(self.calls.decide(approval_id, decision, workspace_id, fields))

    async def feedback(self, task_id: str, rating: int, *, comment: str = "",
                       workspace_id: str | None = None) -> dict[str, Any]:
        return await self._do(self.calls.feedback(task_id, rating, comment, workspace_id))

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
