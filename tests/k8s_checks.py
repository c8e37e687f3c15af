"""The checks every Kubernetes manifest of the project is held to, shared by
unit/test_k8s_manifests.py (what `launch.k8s` renders) and integration/test_k8s.py (what
`kubectl kustomize` renders, what the launcher hands to `kubectl`): the API schemas
(kubernetes-validate, strict: unknown fields fail) and the project's own rules the schemas
cannot express (names, Indexed Job wiring, the headless Service pairing, the failure policy,
the security context). Not a test module: nothing here is collected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from launch import k8s
from launch.sweep import SweepSpec, expand, load_spec

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[1]
# the oldest release the manifests target (backoffLimitPerIndex and friends are GA there)
# and the newest schema bundled with kubernetes-validate
VERSIONS = ("1.33.0", kubernetes_validate.latest_version())
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"


# --------------------------------------------------------------------------- checks


def validate_schema(doc: dict[str, Any]) -> None:
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes "
                        f"{version} at {'.'.join(map(str, e.path))}: {e.message}")


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def check_secure_pod(pod: dict[str, Any]) -> None:
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] > 0 and ctx["runAsGroup"] > 0
    assert ctx["seccompProfile"]["type"] == "RuntimeDefault"
    volumes = {v["name"]: v for v in pod["volumes"]}
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], "a read-only root needs a writable /tmp"
        assert set(mounts.values()) <= set(volumes), "every mount needs its volume"


def check_job(job: dict[str, Any], objects: dict[tuple[str, str], dict[str, Any]]) -> int:
    """The project's rules for a training Job; returns its node count."""
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == k8s.CONTAINER]
    env = env_of(c)
    nodes = int(env["LISS_NNODES"])
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == nodes >= 1
    assert env["LISS_NODE_RANK"] == {"fieldRef": {"fieldPath": COMPLETION_INDEX}}
    # podFailurePolicy is only allowed with restartPolicy Never; the trainer's preemption
    # exit (75) and cluster disruptions must be retried without counting as failures
    assert pod["restartPolicy"] == "Never"
    assert spec["podReplacementPolicy"] == "Failed"
    rules = spec["podFailurePolicy"]["rules"]
    exits = {r["onExitCodes"]["values"][0]: r for r in rules if "onExitCodes" in r}
    assert exits[75]["action"] == "Ignore" and exits[75]["onExitCodes"]["operator"] == "In"
    assert exits[75]["onExitCodes"]["containerName"] == c["name"]
    assert exits[2]["action"] == "FailJob"
    assert any(r["action"] == "Ignore" and r["onPodConditions"][0]["type"] == "DisruptionTarget"
               for r in rules if "onPodConditions" in r)
    assert pod["terminationGracePeriodSeconds"] > int(env["TORCH_ELASTIC_SHUTDOWN_TIMEOUT"])
    check_secure_pod(pod)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "persistentVolumeClaim" in volumes[mounts["/data"]]
    assert "persistentVolumeClaim" in volumes[mounts["/runs"]]
    config_map = volumes[mounts["/etc/liss"]]["configMap"]["name"]
    assert ("ConfigMap", config_map) in objects, "the Job's config must be among the objects"
    assert c["args"] == ["/etc/liss/config.yaml"]
    gpus = c["resources"]["limits"].get("nvidia.com/gpu")
    assert c["resources"]["requests"].get("nvidia.com/gpu") == gpus
    if gpus is not None:
        assert env["LISS_NPROC_PER_NODE"] == gpus
    labels = spec["template"]["metadata"]["labels"]
    if nodes > 1:
        service = objects[("Service", pod["subdomain"])]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["publishNotReadyAddresses"] is True
        selector = service["spec"]["selector"]
        assert selector.items() <= labels.items(), "the Service must select the Job's pods"
        assert selector.get(k8s.RUN_LABEL) == job["metadata"]["name"], "and only them"
        assert env["MASTER_ADDR"] == f"{job['metadata']['name']}-0.{pod['subdomain']}"
        assert len(f"{job['metadata']['name']}-{nodes - 1}") <= 63  # pod hostnames
    else:
        assert "subdomain" not in pod and "MASTER_ADDR" not in env
    return nodes


def check_mlflow(objects: dict[tuple[str, str], dict[str, Any]]) -> None:
    deployment = objects[("Deployment", "liss-mlflow")]
    pod = deployment["spec"]["template"]["spec"]
    check_secure_pod(pod)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert objects[("Service", "liss-mlflow")]["spec"]["selector"].items() <= labels.items()
    claim = {v["name"]: v for v in pod["volumes"]}["store"]["persistentVolumeClaim"]
    assert ("PersistentVolumeClaim", claim["claimName"]) in objects
    args = " ".join(pod["containers"][0]["args"])
    assert "--host=0.0.0.0" in args and "--allowed-hosts=liss-mlflow," in args


def check_all(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Schema + project checks on a set of manifests; returns them by (kind, name)."""
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert len(objects) == len(docs), "two objects of one kind share a name"
    for doc in docs:
        validate_schema(doc)
        name = doc["metadata"]["name"]
        assert DNS_LABEL.match(name) and len(name) <= 63, f"{name}: not a DNS-1123 label"
        for value in doc["metadata"].get("labels", {}).values():
            assert len(value) <= 63
        if doc["kind"] == "Job":
            check_job(doc, objects)
    if ("Deployment", "liss-mlflow") in objects:
        check_mlflow(objects)
    return objects


# --------------------------------------------------------------------------- sweep points


def make_spec(tmp_path: Path, **k8s_settings: Any) -> SweepSpec:
    """A two-point sweep of the quickstart config, with its run folders in tmp_path."""
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "name": "k8s-test", "base": str(ROOT / "configs" / "quickstart.yaml"),
        "overrides": {"run.dir": str(tmp_path / "runs"), "train.max_steps": 10},
        "axes": {"schedule.task_schedule": ["parallel", "liss"]},
        "resources": {"gpus_per_node": 2, "cpus_per_task": 4, "mem_gb": 48},
        "k8s": {"image": "registry.example.com/liss:0.1.0", **k8s_settings}}))
    return load_spec(path)


def rendered(spec: SweepSpec, parent: str | None = "parent-run-0") -> list[dict[str, Any]]:
    s = k8s.settings(spec)
    return [m for p in expand(spec) for m in k8s.render(spec, p, s, parent_run_id=parent)]
