"""The published contract: the AsyncAPI document of every stream, and the envelope schema.

Generated from the services' own subscribers (FastStream), so it cannot drift from
the code; `make docs` writes both under docs/ and a test fails when they are stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from faststream.specification import AsyncAPI
from pydantic import BaseModel, SecretStr
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from redis.asyncio import Redis

from raptorflow.registry import STREAM_SERVICES
from shared.app.runtime import Deps
from shared.contract.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    envelope_class,
    envelope_json_schema,
)
from shared.contract.topology import Topology
from shared.domain.catalog import load_catalog
from shared.llm.offline import OfflineProvider
from shared.settings import Settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
ASYNCAPI_FILE = DOCS / "asyncapi.json"
SCHEMA_FILE = DOCS / "envelope.schema.json"
DOCS_REDIS_URL = "redis://redis:6379/0"


def _offline_deps() -> Deps:
    """Just enough to build each service's subscribers: nothing here touches Redis."""
    settings = Settings(redis_url=SecretStr(DOCS_REDIS_URL), consumer_name="<hostname>-<pid>")
    return Deps(
        settings=settings,
        keys=settings.keys(),
        redis=Redis.from_url(DOCS_REDIS_URL),
        catalog=load_catalog(None),
        provider=OfflineProvider(),
        embedder=cast(Any, None),
        index=cast(Any, None),
        memory=cast(Any, None),
    )


def asyncapi_document() -> dict[str, Any]:
    """AsyncAPI 3.0 over the brokers of all stream services (gateway publishes only)."""
    deps = _offline_deps()
    brokers = [STREAM_SERVICES[name](deps).bus.broker for name in sorted(STREAM_SERVICES)]
    spec = AsyncAPI(
        *brokers,
        title="RaptorFlow events",
        version=f"envelope-v{SCHEMA_VERSION}",
        description=(
            "One Redis stream per event type; each service reads with its own consumer "
            "group. Every message is one stream entry whose single field `__data__` holds "
            "the envelope JSON (see envelope.schema.json)."
        ),
        schema_version="3.0.0",
    )
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return with_agent_channels(with_envelope_payloads(document, deps.layout))


def with_envelope_payloads(document: dict[str, Any], layout: Topology) -> dict[str, Any]:
    """Put each stream's envelope schema in its messages.

    Our subscribers take the raw stream message (to ack in our own transaction and
    dead-letter what does not parse), so FastStream sees no payload type; the
    stream's address names the event type, whose envelope model we know.
    """
    types = {s: cls for name, cls in EVENT_TYPES.items() for s in layout.streams(name)}
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (envelope_class(cls), "validation") for cls in EVENT_TYPES.values()
    ]
    refs, defs = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("EmptyPayload", None)
    schemas.update(defs["$defs"])
    messages = document["components"].get("messages", {})
    for channel in document.get("channels", {}).values():
        payload_type = types.get(channel.get("address", ""))
        if payload_type is None:
            continue
        for message_ref in channel.get("messages", {}).values():
            name = message_ref["$ref"].rsplit("/", 1)[-1]
            ref = refs[(envelope_class(payload_type), "validation")]
            messages[name]["payload"] = ref
            messages[name]["contentType"] = "application/json"
            messages[name]["correlationId"] = {"location": "$message.payload#/correlation_id"}
    return document


def with_agent_channels(document: dict[str, Any]) -> dict[str, Any]:
    """The streams external workers use (docs/agents.md): each worker agent's invocation
    stream, read by its `workers` group, and the result stream it answers on."""
    components = document.setdefault("components", {})
    messages = components.setdefault("messages", {})
    for name, event_type in (("WorkerInvocation", "AgentInvoked"), ("WorkerResult", "AgentResult")):
        messages[name] = {
            "title": f"{event_type} envelope",
            "contentType": "application/json",
            "correlationId": {"location": "$message.payload#/correlation_id"},
            "payload": {"$ref": f"#/components/schemas/Envelope_{event_type}_"},
        }
    channels = document.setdefault("channels", {})
    channels["workers:AgentInvoked:{agent}"] = {
        "address": "rf:stream:AgentInvoked:{agent}",
        "description": "A worker agent's invocations (`:pK` appended per partition when the "
        "deployment partitions streams). Read with XREADGROUP as group `workers`.",
        "parameters": {"agent": {"description": "The agent's name (^[a-z][a-z0-9_]{0,63}$)."}},
        "bindings": {"redis": {"groupName": "workers", "bindingVersion": "custom"}},
        "messages": {"WorkerInvocation": {"$ref": "#/components/messages/WorkerInvocation"}},
    }
    channels["workers:AgentResult"] = {
        "address": "rf:stream:AgentResult",
        "description": "Where a worker answers: the invocation's `reply_to` names the exact stream.",
        "bindings": {"redis": {"groupName": "corrector", "bindingVersion": "custom"}},
        "messages": {"WorkerResult": {"$ref": "#/components/messages/WorkerResult"}},
    }
    operations = document.setdefault("operations", {})
    operations["workers:receiveInvocation"] = {
        "action": "receive",
        "channel": {"$ref": "#/channels/workers:AgentInvoked:{agent}"},
        "messages": [{"$ref": "#/channels/workers:AgentInvoked:{agent}/messages/WorkerInvocation"}],
    }
    operations["workers:sendResult"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/workers:AgentResult"},
        "messages": [{"$ref": "#/channels/workers:AgentResult/messages/WorkerResult"}],
    }
    return document


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def expected_files() -> dict[Path, str]:
    return {
        ASYNCAPI_FILE: render(asyncapi_document()),
        SCHEMA_FILE: render(envelope_json_schema()),
    }


def write_docs() -> list[Path]:
    DOCS.mkdir(exist_ok=True)
    written = []
    for path, text in expected_files().items():
        path.write_text(text)
        written.append(path)
    return written
