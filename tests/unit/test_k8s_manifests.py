"""deploy/k8s, rendered as kustomize renders it and checked three ways: every built-in
object against the Kubernetes schemas (kubernetes-validate ships them: offline, strict),
every KEDA object against KEDA's own CRD schema (vendored under tests/fixtures/keda), and
the manifests against the code: every service has a Deployment that runs it with probes,
every consumer group the services create has its lag and pending triggers, every setting
named exists. A service or a stream added without its manifest fails here.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from raptorflow.contract import _offline_deps
from raptorflow.registry import ALL_SERVICES, STREAM_SERVICES
from shared.app.runtime import STOP_TIMEOUT_S
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMAS = ROOT / "tests" / "fixtures" / "keda"
KUBERNETES_VERSION = "1.30"  # the oldest minor still under support by the big clouds
KUSTOMIZATIONS = ["base", "overlays/example"]
# Read from the environment outside Settings (logging, before settings load).
ENV_OUTSIDE_SETTINGS = {"RAPTORFLOW_LOG_LEVEL", "OPENBLAS_NUM_THREADS"}

Obj = dict[str, Any]


# --- a small kustomize: the features deploy/k8s uses ---------------------------------


def render(directory: Path) -> list[Obj]:
    """resources (files or kustomizations), namespace, images, and JSON 6902 patches with a
    kind and name (a regular expression, as in kustomize) target."""
    spec = yaml.safe_load((directory / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}
    assert set(spec) <= known, f"render() does not know {set(spec) - known}: extend it"
    objects: list[Obj] = []
    for resource in spec.get("resources", []):
        path = directory / resource
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for obj in objects:
        if "namespace" in spec and obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = spec["namespace"]
        for image in spec.get("images", []):
            _set_image(obj, image)
    for patch in spec.get("patches", []):
        target = patch["target"]
        ops = yaml.safe_load(patch["patch"])
        hits = [
            obj
            for obj in objects
            if obj["kind"] == target["kind"]
            and re.fullmatch(target["name"], obj["metadata"]["name"])
        ]
        assert hits, f"patch target {target} matches nothing"
        for obj in hits:
            for op in ops:
                _apply(obj, op)
    return objects


def _set_image(obj: Obj, image: Obj) -> None:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    for container in pod.get("containers", []):
        if container["image"].split(":")[0] == image["name"]:
            container["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"


def _apply(obj: Obj, op: Obj) -> None:
    *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in op["path"][1:].split("/")]
    node: Any = obj
    for token in parents:
        node = node[int(token)] if isinstance(node, list) else node[token]
    key: Any = int(last) if isinstance(node, list) else last
    if op["op"] == "replace":
        exists = key < len(node) if isinstance(node, list) else key in node
        assert exists, f"replace of nothing at {op['path']} (kustomize refuses it too)"
        node[key] = op["value"]
    elif op["op"] == "add":
        node[key] = op["value"]
    elif op["op"] == "remove":
        del node[key]
    else:
        raise AssertionError(f"render() does not know op {op['op']}")


@cache
def rendered(name: str) -> tuple[Obj, ...]:
    return tuple(render(K8S / name))


def of_kind(objects: tuple[Obj, ...], kind: str) -> dict[str, Obj]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


@cache
def consumer_groups() -> dict[str, list[str]]:
    """Each service's consumer group (its name) and the streams it reads, from the code."""
    deps = _offline_deps()
    groups = {}
    for build in STREAM_SERVICES.values():
        bus = build(deps).bus
        groups[bus.service] = list(bus.streams)
    return groups


# --- schemas --------------------------------------------------------------------------


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_built_in_objects_validate_against_the_kubernetes_schemas(kustomization: str) -> None:
    built_in = [o for o in rendered(kustomization) if not o["apiVersion"].startswith("keda.sh/")]
    assert len(built_in) >= 2 * len(ALL_SERVICES)  # a Deployment and a PDB each, at least
    errors = []
    for obj in built_in:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {exc.message}")
    assert not errors


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused: the API server would silently prune a
    misspelt field of a custom resource, so a typo would pass unnoticed."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


@cache
def keda_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((KEDA_SCHEMAS / f"{kind.lower()}-schema.json").read_text())
    return jsonschema.Draft7Validator(strict(schema))


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_keda_objects_validate_against_kedas_crd_schemas(kustomization: str) -> None:
    keda = [o for o in rendered(kustomization) if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in keda} == {"ScaledObject", "TriggerAuthentication"}
    for obj in keda:
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        errors = [
            f"{'.'.join(map(str, e.path))}: {e.message}"
            for e in keda_validator(obj["kind"]).iter_errors(obj)
        ]
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: {errors}"
        if obj["kind"] == "ScaledObject":  # the CRD's CEL rule, which jsonschema cannot run
            spec = obj["spec"]
            assert spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100)


def test_the_strict_keda_schema_refuses_a_misspelt_field() -> None:
    scaled = copy.deepcopy(of_kind(rendered("base"), "ScaledObject")["router"])
    scaled["spec"]["maxReplicaCont"] = 3
    scaled["spec"]["triggers"][0]["metadata"]["lagCount"] = 32
    messages = [e.message for e in keda_validator("ScaledObject").iter_errors(scaled)]
    assert any("maxReplicaCont" in m for m in messages), messages
    assert any("32 is not of type 'string'" in m for m in messages), messages


# --- the manifests against the code ------------------------------------------------------


def effective_env(deployment: Obj, config: Obj) -> dict[str, str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {**config["data"], **{e["name"]: e["value"] for e in container.get("env", [])}}


def test_every_service_runs_in_its_own_deployment_with_probes_and_a_grace_period() -> None:
    objects = rendered("base")
    deployments = of_kind(objects, "Deployment")
    budgets = of_kind(objects, "PodDisruptionBudget")
    config = of_kind(objects, "ConfigMap")["raptorflow-config"]
    assert set(deployments) == set(ALL_SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"] == ["python", "-m", f"services.{name}"]
        assert container["image"] == "raptorflow"  # the repository's Dockerfile; overlays pin it
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns replicas"
        assert {"configMapRef": {"name": "raptorflow-config"}} in container["envFrom"]
        assert {"secretRef": {"name": "raptorflow-secrets"}} in container["envFrom"]
        env = effective_env(deployment, config)
        port = int(env["RAPTORFLOW_GATEWAY_PORT" if name == "gateway" else "RAPTORFLOW_METRICS_PORT"])
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in [("startupProbe", "/livez"), ("livenessProbe", "/livez"),
                            ("readinessProbe", "/readyz")]:  # fmt: skip
            get = container[probe]["httpGet"]
            assert get["path"] == path and ports[get["port"]] == port, (name, probe)
            assert container[probe].get("timeoutSeconds", 1) >= 3 or probe == "startupProbe"
        # The stop: grace for in-flight handlers, then the background loops' bounded wait.
        grace = float(env["RAPTORFLOW_SHUTDOWN_GRACE_S"])
        assert grace + STOP_TIMEOUT_S < pod["terminationGracePeriodSeconds"], name
        assert container["resources"]["requests"]["cpu"]
        assert container["resources"]["limits"]["memory"]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert budgets[name]["spec"]["selector"]["matchLabels"] == selector
        assert budgets[name]["spec"]["maxUnavailable"] == 1  # never blocks a drain at 1 replica


def test_every_consumer_group_in_the_code_has_a_lag_and_a_pending_trigger() -> None:
    objects = rendered("base")
    scaled = of_kind(objects, "ScaledObject")
    auth = of_kind(objects, "TriggerAuthentication")
    expected = {
        (stream, group, target)
        for group, streams in consumer_groups().items()
        for stream in streams
        for target in ("lagCount", "pendingEntriesCount")
    }
    found = set()
    for name, obj in scaled.items():
        assert obj["spec"]["scaleTargetRef"]["name"] == name
        assert obj["spec"]["minReplicaCount"] >= 1, "background loops need one replica"
        for trigger in obj["spec"]["triggers"]:
            meta = trigger["metadata"]
            assert trigger["type"] == "redis-streams"
            assert trigger["authenticationRef"]["name"] in auth
            assert meta["consumerGroup"] == name, "a group is the service's name"
            # One target per trigger: with lagCount set, KEDA ignores pendingEntriesCount.
            (target,) = {"lagCount", "pendingEntriesCount", "streamLength"} & set(meta)
            assert int(meta[target]) > 0
            found.add((meta["stream"], meta["consumerGroup"], target))
    assert found == expected
    assert set(scaled) == set(consumer_groups())


def test_the_keda_credentials_come_from_a_secret_in_the_manifests() -> None:
    objects = rendered("base")
    secrets = of_kind(objects, "Secret")
    for obj in of_kind(objects, "TriggerAuthentication").values():
        params = {ref["parameter"] for ref in obj["spec"]["secretTargetRef"]}
        assert params == {"address", "password"}
        for ref in obj["spec"]["secretTargetRef"]:
            assert ref["key"] in secrets[ref["name"]]["stringData"]
    assert "REDIS_URL" in secrets["raptorflow-secrets"]["stringData"]
    # An empty OPENAI_API_KEY would still select the OpenAI provider: absent is offline.
    assert "OPENAI_API_KEY" not in secrets["raptorflow-secrets"]["stringData"]


def test_every_setting_the_manifests_name_exists() -> None:
    objects = rendered("base")
    config = of_kind(objects, "ConfigMap")["raptorflow-config"]
    names = set(config["data"]) | set(of_kind(objects, "Secret")["raptorflow-secrets"]["stringData"])
    for deployment in of_kind(objects, "Deployment").values():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        names |= {e["name"] for e in container.get("env", [])}
    known = set(ENV_OUTSIDE_SETTINGS)
    for field_name, field in Settings.model_fields.items():
        known.add(f"RAPTORFLOW_{field_name.upper()}")
        choices = getattr(field.validation_alias, "choices", [])
        known |= {c for c in choices if isinstance(c, str)}
    assert names <= known, f"not settings: {sorted(names - known)}"
    Settings(**{k.removeprefix("RAPTORFLOW_").lower(): v for k, v in config["data"].items()
                if k.startswith("RAPTORFLOW_") and k not in ENV_OUTSIDE_SETTINGS})  # fmt: skip


def test_the_gateway_service_reaches_the_gateway_pods_on_their_port() -> None:
    objects = rendered("base")
    service = of_kind(objects, "Service")["gateway"]
    deployment = of_kind(objects, "Deployment")["gateway"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}


def test_the_example_overlay_pins_the_image_and_puts_everything_in_its_namespace() -> None:
    objects = rendered("overlays/example")
    namespaced = [o for o in objects if o["kind"] != "Namespace"]
    assert {o["metadata"].get("namespace") for o in namespaced} == {"raptorflow"}
    images = {
        c["image"]
        for d in of_kind(objects, "Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"registry.example.com/raptorflow:0.1.0"}
    assert of_kind(objects, "ScaledObject")["corrector"]["spec"]["maxReplicaCount"] == 30


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its kustomize) not on PATH")
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_rendering_here_is_what_kustomize_renders(kustomization: str) -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / kustomization)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    theirs = {(o["kind"], o["metadata"]["name"]): o for o in yaml.safe_load_all(out.stdout) if o}
    ours = {(o["kind"], o["metadata"]["name"]): o for o in rendered(kustomization)}
    assert theirs == ours
