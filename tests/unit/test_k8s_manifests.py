"""What `launch.k8s` renders per sweep point, in-process and without kubectl: every manifest
valid against the API schemas and the project's rules (tests/k8s_checks.py), the resolved
config with pod paths, cluster settings, refused settings and names, a dry run, Job states.
(kustomize and the launcher's real `kubectl` calls: integration/test_k8s.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from launch import k8s
from launch.common import PARENT_RUN_ENV, SWEEP_ID_ENV
from launch.sweep import K8S_KEYS, expand, load_spec
from liss import config as config_lib
from liss.config import ConfigError
from tests.k8s_checks import ROOT, check_all, check_job, env_of, make_spec, rendered

SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("nodes", [1, 2, 4])
def test_point_manifests_are_valid(tmp_path: Path, nodes: int) -> None:
    spec = make_spec(tmp_path, nodes=nodes, namespace="ml")
    docs = rendered(spec)
    objects = check_all(docs)
    jobs = [o for o in docs if o["kind"] == "Job"]
    assert [j["metadata"]["name"] for j in jobs] == [p.name for p in expand(spec)]
    for job in jobs:
        assert check_job(job, objects) == nodes
        pod = job["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = env_of(c)
        assert env[PARENT_RUN_ENV] == "parent-run-0"
        assert env[SWEEP_ID_ENV] == job["metadata"]["labels"][k8s.SWEEP_LABEL]
        assert env["LISS_NPROC_PER_NODE"] == "2" == c["resources"]["limits"]["nvidia.com/gpu"]
        assert c["resources"]["requests"]["cpu"] == "8"  # 4 per task x 2 tasks
        assert c["resources"]["limits"]["memory"] == "48Gi"
        assert c["image"] == "registry.example.com/liss:0.1.0"
        assert {d["metadata"]["namespace"] for d in docs} == {"ml"}
    assert sum(d["kind"] == "Service" for d in docs) == (len(jobs) if nodes > 1 else 0)


def test_point_config_is_the_resolved_config_with_pod_paths(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    s = k8s.settings(spec)
    for point in expand(spec):
        config_map = k8s.render(spec, point, s)[0]
        text = config_map["data"]["config.yaml"]
        cfg = config_lib.from_dict(yaml.safe_load(text))
        assert cfg.run.name == point.name and cfg.run.dir == "/runs/k8s-test"
        assert cfg.data.root == "/data/synth"
        assert cfg.tracking.uri == k8s.MLFLOW_SERVICE  # the sweep's store is on this machine
        flat, expected = config_lib.flatten(cfg), config_lib.flatten(point.config)
        changed = {k for k in flat if flat[k] != expected[k]}
        assert changed == {"run.dir", "data.root", "tracking.uri"}
        assert config_map["metadata"]["name"].startswith(f"{point.name}-")


def test_pod_tracking_uri(tmp_path: Path) -> None:
    server = make_spec(tmp_path)
    server.tracking_uri = "https://mlflow.example.com"
    assert k8s.pod_tracking_uri(server, k8s.settings(server)) == "https://mlflow.example.com"
    forwarded = make_spec(tmp_path)
    forwarded.tracking_uri = "http://localhost:5000"  # kubectl port-forward svc/liss-mlflow
    assert k8s.pod_tracking_uri(forwarded, k8s.settings(forwarded)) == k8s.MLFLOW_SERVICE
    explicit = make_spec(tmp_path, tracking_uri="http://mlflow.team:80")
    assert k8s.pod_tracking_uri(explicit, k8s.settings(explicit)) == "http://mlflow.team:80"


@pytest.mark.parametrize("sweep", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_sweep_of_the_repo_renders_valid_manifests(sweep: Path) -> None:
    spec = load_spec(sweep)
    docs = rendered(spec)
    check_all(docs)
    assert sum(d["kind"] == "Job" for d in docs) == len(expand(spec))


def test_cluster_settings_reach_the_pod(tmp_path: Path) -> None:
    spec = make_spec(tmp_path, nodes=2, gpus_per_node=0, nproc_per_node=3, data_pvc="ds",
                     runs_pvc="out", data_root="/data/h2z", service_account="trainer",
                     priority_class="batch-low", backoff_limit=20, shm_gb=1.5,
                     node_selector={"pool": "cpu"},
                     tolerations=[{"key": "batch", "operator": "Exists",
                                   "effect": "NoSchedule"}])
    docs = rendered(spec)
    check_all(docs)
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "ds"
    assert volumes["runs"]["persistentVolumeClaim"]["claimName"] == "out"
    assert volumes["dshm"]["emptyDir"]["sizeLimit"] == "1536Mi"
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]
    assert env_of(pod["containers"][0])["LISS_NPROC_PER_NODE"] == "3"
    assert pod["serviceAccountName"] == "trainer" and pod["priorityClassName"] == "batch-low"
    assert pod["nodeSelector"] == {"pool": "cpu"} and pod["tolerations"][0]["key"] == "batch"
    assert job["spec"]["backoffLimit"] == 20
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    assert yaml.safe_load(config_map["data"]["config.yaml"])["data"]["root"] == "/data/h2z"


def test_bad_settings_are_refused_before_anything_is_rendered(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.namespce"):
        k8s.settings(make_spec(tmp_path, namespce="ml"))
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.nodes"):
        k8s.settings(make_spec(tmp_path, nodes=0))
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.gpus_per_node"):
        k8s.settings(make_spec(tmp_path, gpus_per_node="two"))
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.tolerations"):
        k8s.settings(make_spec(tmp_path, tolerations={"key": "x"}))


def test_every_spec_key_is_a_setting() -> None:
    assert {f.name for f in dataclasses.fields(k8s.Settings)} == K8S_KEYS


def test_a_kueue_queue_labels_the_jobs(tmp_path: Path) -> None:
    plain = [d for d in rendered(make_spec(tmp_path)) if d["kind"] == "Job"]
    assert all("suspend" not in j["spec"] and k8s.QUEUE_LABEL not in j["metadata"]["labels"]
               for j in plain)
    spec = make_spec(tmp_path, nodes=2)
    spec = load_spec(spec.source, ["k8s.queue=team-a"])  # as `liss sweep --set` gives it
    docs = rendered(spec)
    check_all(docs)
    jobs = [d for d in docs if d["kind"] == "Job"]
    assert len(jobs) == 2
    for job in jobs:
        assert job["metadata"]["labels"][k8s.QUEUE_LABEL] == "team-a"
        assert k8s.QUEUE_LABEL not in job["spec"]["template"]["metadata"]["labels"]
        # Kueue's webhook suspends it; a `suspend: true` here would suspend it again, after
        # admission, at the next `kubectl apply`
        assert "suspend" not in job["spec"]
    for bad in ("Team_A", "q" * 64, ""):
        with pytest.raises(ConfigError, match=r"sweep\.k8s\.queue"):
            k8s.settings(make_spec(tmp_path, queue=bad))


def test_a_name_kubernetes_cannot_take_is_refused(tmp_path: Path) -> None:
    spec = make_spec(tmp_path)
    spec.name = "3rd-try"  # a Service name must start with a letter
    point = expand(spec)[0]
    with pytest.raises(ConfigError, match="start with a letter"):
        k8s.render(spec, point, k8s.settings(spec))


def test_dry_run_prints_valid_yaml_and_submits_nothing(tmp_path: Path, capsys,
                                                       monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl: a dry run must not need it
    spec = make_spec(tmp_path, nodes=2)
    points = expand(spec)
    subs = k8s.launch(spec, points, parent_run_id="p1", dry_run=True, max_parallel=1,
                      force=False)
    assert [(s.name, s.state) for s in subs] == [(p.name, "dry-run") for p in points]
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    check_all(docs)
    assert [d["kind"] for d in docs] == ["ConfigMap", "Service", "Job"] * len(points)


@pytest.mark.parametrize(("conditions", "status", "state"), [
    ([{"type": "Complete", "status": "True"}], {}, "completed"),
    ([{"type": "Failed", "status": "True"}], {}, "failed"),
    ([{"type": "FailureTarget", "status": "True"}], {"active": 1}, "failed"),
    ([{"type": "SuccessCriteriaMet", "status": "True"}], {}, "completing"),
    ([{"type": "Suspended", "status": "True"}], {}, "suspended"),
    ([], {"active": 2, "ready": 2}, "running"),
    ([], {"active": 2, "ready": 0}, "pending"),
    ([], {}, "pending"),
])
def test_job_state(conditions: list, status: dict, state: str) -> None:
    assert k8s.job_state({"spec": {}, "status": {**status, "conditions": conditions}}) == state
