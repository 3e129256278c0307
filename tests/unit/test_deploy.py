"""docker-compose.yml runs every service on its own, observable and scalable."""

from __future__ import annotations

from pathlib import Path

import yaml

from raptorflow.registry import ALL_SERVICES

ROOT = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_its_own_healthy_restarting_container_with_metrics():
    services = compose()["services"]
    for name in ALL_SERVICES:
        service = services[name]
        assert service["image"] == "raptorflow:latest"
        assert service["command"][-1] == f"services.{name}"
        assert service["restart"] == "unless-stopped"
        assert service["healthcheck"]["test"]
        env = service["environment"]
        assert "REDIS_URL" in env and "OPENAI_API_KEY" in env and "RAPTORFLOW_LLM_MODEL" in env
        assert "container_name" not in service  # a fixed name would forbid --scale
        if name != "gateway":
            assert env["RAPTORFLOW_METRICS_PORT"] == "9100"


def test_redis_persists_and_prometheus_and_grafana_mount_the_project_config():
    services = compose()["services"]
    assert "redis-data:/data" in services["redis"]["volumes"]
    assert "appendonly yes" in (ROOT / "deploy" / "redis.conf").read_text()
    assert any("deploy/prometheus.yml" in v for v in services["prometheus"]["volumes"])
    grafana = " ".join(services["grafana"]["volumes"])
    assert "deploy/grafana/provisioning" in grafana and "deploy/grafana/dashboards" in grafana


def test_prometheus_scrapes_every_service_by_dns_so_replicas_are_found():
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(ALL_SERVICES)
    for name, job in jobs.items():
        assert job["dns_sd_configs"][0]["names"] == [name]
