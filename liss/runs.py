"""`liss runs compare` (a terminal table of finished runs) and `liss runs sync` (send the
records a run kept locally during a tracking-server outage on to the server).

Runs are named by run folder (its `status.json` records the run id and the store), by a
folder of run folders (a sweep), by a folder holding a store (every run in it), or by run id
with `--uri`. A run folder of an earlier version, with its own `mlflow.db`, is read from that.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from liss import config as config_lib
from liss.config import ConfigError
from liss.store import (
    STORE_FILE,
    has_store,
    open_client,
    resolve_uri,
    sqlite_path,
    sqlite_uri,
    store_uri,
)
from liss.taskspec import TASKS
from liss.tracking import REMOTE_RUN_TAG, REMOTE_URI_TAG

SYNCED_TAG = "liss.synced_to"
COLUMNS = (  # (header, metric keys shown as "A / B" or alone)
    *((f"{s.short} {s.metric}", tuple(f"val/{d}/{s.val_metric}" for d in "AB")) for s in TASKS),
    ("cycle L1", ("val/A/cycle_l1", "val/B/cycle_l1")),
    ("A2B bg PSNR", ("test/A2B_bg_psnr", "test/A2B_identity_bg_psnr")),
    ("A2B texture", ("test/A2B_texture", "test/A2B_identity_texture")),
    ("B2A bg PSNR", ("test/B2A_bg_psnr", "test/B2A_identity_bg_psnr")),
    ("B2A obj L1", ("test/B2A_object_l1", "test/B2A_identity_object_l1")),
    ("img/s", ("perf/img_per_s",)),
)


@dataclass(frozen=True)
class RunRef:
    uri: str
    run_id: str


def refs_from_folder(folder: Path) -> list[RunRef]:
    """A run folder (status.json); else a folder with a store (every run in it: a project,
    or a sweep of an earlier version); else a folder of run folders (a sweep)."""
    status = folder / "status.json"
    if status.is_file():
        return [_run_folder_ref(folder, json.loads(status.read_text()))]
    if (folder / STORE_FILE).is_file():
        uri = store_uri(folder)
        client = open_client(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        return [RunRef(uri, r.info.run_id) for r in client.search_runs(experiments)
                if r.data.tags.get("sweep_role") != "parent"]
    runs = sorted(s.parent for s in folder.glob("*/status.json"))
    if runs:
        return [ref for run in runs for ref in refs_from_folder(run)]
    raise ConfigError("runs", str(folder), "is neither a run folder (status.json), a folder of "
                      f"run folders, nor a folder with an {STORE_FILE}")


def _run_folder_ref(folder: Path, record: dict) -> RunRef:
    """The run a run folder recorded, in the store it logged to, wherever the folder is read
    from: its own store if it has one (an earlier version), else the recorded store, else
    (the project was moved) the nearest store above the folder."""
    if not record.get("run_id"):
        raise ConfigError("runs", str(folder), "this run was not tracked "
                          "(tracking.uri=none): nothing to read back")
    uri = record.get("tracking_uri") or resolve_uri(config_lib.load(folder / "config.yaml"))
    if uri.startswith(("http:", "https:")):
        return RunRef(uri, record["run_id"])
    if has_store(folder):
        return RunRef(store_uri(folder), record["run_id"])
    db = sqlite_path(uri)
    if db is not None and not db.is_file():
        above = next((p / STORE_FILE for p in folder.resolve().parents
                      if (p / STORE_FILE).is_file()), None)
        uri = sqlite_uri(above) if above else uri
    return RunRef(uri, record["run_id"])


def resolve_refs(items: Sequence[str], sweep: str | None, uri: str | None) -> list[RunRef]:
    refs: list[RunRef] = []
    for item in items:
        if Path(item).exists():
            refs += refs_from_folder(Path(item))
        elif uri:
            refs.append(RunRef(uri, item))
        else:
            raise ConfigError("runs", item, "not a folder; give --uri (or set "
                              "MLFLOW_TRACKING_URI) to look up run ids")
    if sweep:
        if not uri:
            raise ConfigError("--sweep", sweep, "needs --uri or MLFLOW_TRACKING_URI (the sweep's "
                              "tracking store)")
        client = open_client(uri)
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments, f"tags.sweep_id = '{sweep}'")
        refs += [RunRef(uri, r.info.run_id) for r in runs
                 if r.data.tags.get("sweep_role") != "parent"]
    if not refs:
        raise ConfigError("runs", " ".join(items) or sweep, "no runs found")
    return refs


def _get_run(client, ref: RunRef):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(ref.run_id)
    except MlflowException:
        raise ConfigError("runs", ref.run_id, f"no such run in {ref.uri}") from None


def phase_starts(client, run_id: str) -> list[int]:
    """Steps at which each phase began, from the `schedule/phase` history."""
    starts, last = [0], 0.0
    for m in sorted(client.get_metric_history(run_id, "schedule/phase"), key=lambda m: m.step):
        if m.value > last:
            starts.append(m.step)
            last = m.value
    return starts


def compare_rows(refs: Sequence[RunRef]) -> list[list[str]]:
    rows = [["run", "schedule", "status", "steps", "phase starts",
             *(header for header, _ in COLUMNS)]]
    for ref in refs:
        client = open_client(ref.uri)
        run = _get_run(client, ref)
        metrics, tags = run.data.metrics, run.data.tags
        cells = []
        for _, keys in COLUMNS:
            values = [metrics.get(k) for k in keys]
            cells.append(" / ".join("-" if v is None else f"{v:.3g}" for v in values))
        schedule = tags.get("schedule", "?")
        if schedule.startswith("representational") or tags.get("repr_mode") == "distillation":
            schedule += f" ({tags.get('repr_mode', '?')})"
        steps = max((m.step for m in client.get_metric_history(ref.run_id, "schedule/phase")),
                    default=0)
        rows.append([run.info.run_name or ref.run_id[:8], schedule, run.info.status,
                     str(steps), ",".join(map(str, phase_starts(client, ref.run_id))), *cells])
    return rows


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    note = ("(A / B per domain; test translation vs paired truth / the identity baseline: "
            "'bg PSNR' on the background, 'texture' of the objects' coats (phase-blind), "
            "'obj L1' on the objects; docs/evaluation.md)")
    return "\n".join([*lines, note])


# ---------------------------------------------------------------------- sync


def sync(run_dir: Path, to: str | None = None) -> list[str]:
    """Copy every not-yet-synced fallback run of `run_dir`'s local store to its server."""
    if not has_store(run_dir):
        return []
    local = open_client(store_uri(run_dir))
    experiments = [e.experiment_id for e in local.search_experiments()]
    pending = [r for r in local.search_runs(experiments, f"tags.`{REMOTE_URI_TAG}` != ''")
               if SYNCED_TAG not in r.data.tags]
    if not pending:
        return []
    done = []
    for run in pending:
        target_uri = to or run.data.tags[REMOTE_URI_TAG]
        remote = open_client(target_uri)
        target = run.data.tags.get(REMOTE_RUN_TAG) or _create_remote(remote, local, run)
        _copy_run(local, run, remote, target)
        local.set_tag(run.info.run_id, SYNCED_TAG, f"{target_uri} {target}")
        done.append(f"{run.info.run_id} -> {target_uri} run {target}")
    return done


def _create_remote(remote, local, run) -> str:
    name = local.get_experiment(run.info.experiment_id).name
    found = remote.get_experiment_by_name(name)
    experiment_id = found.experiment_id if found else remote.create_experiment(name)
    tags = {k: v for k, v in run.data.tags.items() if not k.startswith("liss.")}
    return remote.create_run(experiment_id, run_name=run.info.run_name, tags=tags).info.run_id


def _copy_run(local, run, remote, target: str) -> None:
    from mlflow.entities import Metric, Param, RunTag

    existing = remote.get_run(target).data.params
    params = [Param(k, v) for k, v in run.data.params.items() if k not in existing]
    tags = [RunTag(k, v) for k, v in run.data.tags.items()
            if not k.startswith(("liss.", "mlflow."))]
    metrics = [Metric(m.key, m.value, m.timestamp, m.step)
               for key in run.data.metrics for m in local.get_metric_history(run.info.run_id, key)]
    for i in range(0, len(params), 100):
        remote.log_batch(target, params=params[i:i + 100])
    for i in range(0, len(tags), 100):
        remote.log_batch(target, tags=tags[i:i + 100])
    for i in range(0, len(metrics), 1000):
        remote.log_batch(target, metrics=metrics[i:i + 1000])
    with tempfile.TemporaryDirectory() as tmp:
        if local.list_artifacts(run.info.run_id):
            path = local.download_artifacts(run.info.run_id, "", tmp)
            for item in Path(path).iterdir():
                if item.is_dir():
                    remote.log_artifacts(target, str(item), item.name)
                else:
                    remote.log_artifact(target, str(item))
    if run.info.status in ("FINISHED", "FAILED", "KILLED"):
        remote.set_terminated(target, run.info.status)
