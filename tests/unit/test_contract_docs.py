"""The checked-in contract (AsyncAPI and envelope schema) matches the code."""

from __future__ import annotations

import json

from raptorflow import contract
from shared.contract.events import EVENT_TYPES


def test_checked_in_contract_docs_are_up_to_date():
    for path, expected in contract.expected_files().items():
        assert path.exists(), f"{path} missing: run `make docs`"
        assert path.read_text() == expected, f"{path.name} is stale: run `make docs`"


def test_asyncapi_document_names_every_consumed_stream_with_its_envelope_schema():
    document = contract.asyncapi_document()
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert "rf:stream:TaskRequested" in addresses
    messages = document["components"]["messages"]
    schemas = document["components"]["schemas"]
    for channel in document["channels"].values():
        # a worker agent's stream is `rf:stream:AgentInvoked:{agent}`
        event_type = channel["address"].removeprefix("rf:stream:").split(":")[0]
        assert event_type in EVENT_TYPES
        assert channel["bindings"]["redis"]["groupName"]  # one consumer group per service
        for ref in channel["messages"].values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            schema_name = message["payload"]["$ref"].rsplit("/", 1)[-1]
            assert schema_name == f"Envelope_{event_type}_"
            assert schema_name in schemas
    assert "EmptyPayload" not in json.dumps(document)


def test_readme_upstream_example_publishes_a_valid_envelope():
    import datetime
    import re
    import uuid
    from pathlib import Path

    from shared.contract.events import TaskRequested, envelope_class

    readme = (Path(contract.DOCS).parent / "README.md").read_text()
    section = readme.split("## Publishing events from upstream systems", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    source = code.group(1)
    body = source[source.index("envelope = ") : source.index("\nr.xadd")]
    namespace = {"uuid": uuid, "datetime": datetime, "task_id": str(uuid.uuid4())}
    exec(body, namespace)
    event = envelope_class(TaskRequested).model_validate_json(json.dumps(namespace["envelope"]))
    assert event.type == "TaskRequested"
    assert 'xadd("rf:stream:TaskRequested", {"__data__":' in source
