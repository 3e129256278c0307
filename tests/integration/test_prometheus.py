"""A real Prometheus scrapes a running stack with the project's own scrape config."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from raptorflow.redis_server import free_port
from raptorflow.stack import LocalStack, wait_for_task
from shared.contract.events import TaskRequested, new_envelope
from shared.messaging.bus import publish
from tests.helpers import eventually, settings_for

pytestmark = [pytest.mark.slow]

PROMETHEUS_YML = Path(__file__).resolve().parents[2] / "deploy" / "prometheus.yml"
SCRAPE_INTERVAL = "4s"
GOALS = [
    "Create a blog post about AI trends",
    "Write a blog about machine learning",
    "Plan a launch strategy for our analytics product",
]


def local_config(metrics_port: int, gateway_port: int) -> dict:
    """deploy/prometheus.yml with every job pointed at this process, scraped every SCRAPE_INTERVAL.

    All seven jobs scrape this one process, and the registry holds every earlier
    test's series: at one scrape per job per second, rendering them kept a 2-core
    machine's GIL busy and starved the stack under test.
    """
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"]["scrape_interval"] = SCRAPE_INTERVAL
    config["global"]["evaluation_interval"] = SCRAPE_INTERVAL
    for job in config["scrape_configs"]:
        discovered_port = job.pop("dns_sd_configs")[0]["port"]
        port = gateway_port if discovered_port == 8000 else metrics_port
        job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    return config


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int, int]]:
    """A Prometheus server scraping the ports a stack will serve on; yields its URL, ports."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus binary (make test installs Debian's `prometheus` as root)")
    metrics_port, gateway_port, port = free_port(), free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(local_config(metrics_port, gateway_port)))
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
        yield f"http://127.0.0.1:{port}", metrics_port, gateway_port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_project_config_is_valid_for_promtool(tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool binary (ships with Debian's `prometheus` package)")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_YML)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


async def test_prometheus_scrapes_the_domain_metrics_of_a_running_stack(
    prometheus, redis_url, workspace
):
    url, metrics_port, gateway_port = prometheus
    settings = settings_for(redis_url, metrics_port=metrics_port, gateway_port=gateway_port)
    async with (
        LocalStack(settings, with_gateway=True, start_redis=False) as stack,
        httpx.AsyncClient(base_url=url, timeout=5) as client,
    ):
        assert stack.deps is not None
        for goal in GOALS:
            event = new_envelope(TaskRequested(goal=goal), workspace_id=workspace)
            await publish(stack.deps.redis, stack.deps.layout, [event])
            view = await wait_for_task(stack.deps, workspace, event.correlation_id, 30)
            assert view["status"] == "completed", view

        async def value(query: str) -> float | None:
            try:
                response = await client.get("/api/v1/query", params={"query": query})
            except httpx.TransportError:
                return None  # Prometheus still starting
            result = response.json()["data"]["result"] if response.status_code == 200 else []
            return float(result[0]["value"][1]) if result else None

        async def at_least(query: str, minimum: float) -> float | None:
            found = await value(query)
            return found if found is not None and found >= minimum else None

        await eventually(lambda: at_least('min(up{job=~"router|gateway"})', 1), timeout=60)
        expectations = {
            "sum(raptorflow_routing_decisions_total)": 3,
            'sum(raptorflow_routing_decisions_total{source="memory"})': 1,
            "sum(raptorflow_routing_confidence_count)": 3,
            'sum(raptorflow_tasks_finished_total{success="true"})': 3,
            "sum(raptorflow_task_duration_seconds_count)": 3,
            "sum(raptorflow_self_correction_iterations_count)": 3,
            "sum(raptorflow_stages_completed_total)": 3,
            "sum(raptorflow_agent_selections_total)": 3,
            'sum(raptorflow_handler_messages_total{outcome="ok"})': 10,
            'sum(raptorflow_llm_tokens_total{provider="offline"})': 1,
            "count(raptorflow_consumer_group_pending)": 1,
            "count(raptorflow_stream_length)": 1,
            "sum(faststream_received_messages_total)": 10,
            # the gateway's own /metrics serves the same registry in one process
            'count(raptorflow_approvals_pending{job="gateway"})': 1,
        }
        for query, minimum in expectations.items():
            await eventually(lambda q=query, m=minimum: at_least(q, m), timeout=30)
