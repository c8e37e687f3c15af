"""Several processes log to one new SQLite store at once, as the points of a local sweep
with `--max-parallel` do: each child builds liss's tracker for its own run under one
`run.dir` (the default, shared store), and all of them start on the same signal, so they
race on creating the store (MLflow's schema migrations), on creating the experiment and on
every write. Every run and every value must arrive, and no child may fail or warn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[2]
WRITERS, STEPS, KEYS, PARAMS = 4, 300, 5, 150  # as a local sweep with --max-parallel 4
CHILD = """
import json, sys, time
from pathlib import Path
from liss import config
from liss.tracking import start_tracking

run_dir, name, go, steps, keys, params = sys.argv[1:7]
cfg = config.load(None, [f"run.dir={run_dir}", f"run.name={name}"])
while not Path(go).exists():  # imports done: start together
    time.sleep(0.01)
tracker = start_tracking(cfg, is_main=True)
tracker.log_params({f"p{i}": f"{name}-{i}" for i in range(int(params))})
tracker.set_tags({"writer": name})
for step in range(int(steps)):
    tracker.log_metrics({f"m{k}": step * 10 + k for k in range(int(keys))}, step)
tracker.close()
print(json.dumps({"run_id": tracker.run_id, "busy": tracker.busy_retries,
                  "dropped": tracker.dropped}))
"""


def test_concurrent_writers_share_one_new_store(tmp_path: Path) -> None:
    runs, go = tmp_path / "runs", tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env["PYTHONPATH"] = str(REPO)
    start = time.monotonic()
    children = [subprocess.Popen(
        [sys.executable, "-c", CHILD, str(runs), f"w{i}", str(go), str(STEPS), str(KEYS),
         str(PARAMS)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(WRITERS)]
    try:
        time.sleep(3)  # most of the children have imported mlflow by now
        go.touch()
        outs = [c.communicate(timeout=150) for c in children]
    finally:
        for c in children:
            c.kill()  # only those still running (a hang) are left to kill
    took = time.monotonic() - start
    for child, (_, err) in zip(children, outs, strict=True):
        assert child.returncode == 0, err[-3000:]
        assert "database is locked" not in err and "Traceback" not in err, err[-3000:]
        assert "WARNING" not in err and "ERROR" not in err, err[-3000:]
    reports = {f"w{i}": json.loads(out.strip().splitlines()[-1])
               for i, (out, _) in enumerate(outs)}
    assert all(r["dropped"] == 0 for r in reports.values()), reports

    assert sorted(p.name for p in runs.iterdir()) == ["mlflow.db", "mlflow.db.lock"], (
        "one store beside the runs, none in a run folder, no unsent journal")
    client = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    assert [e.name for e in client.search_experiments()].count("liss") == 1
    experiment = client.get_experiment_by_name("liss").experiment_id
    found = {r.info.run_name: r for r in client.search_runs([experiment], max_results=100)}
    assert sorted(found) == sorted(reports)
    for name, run in found.items():
        assert run.info.run_id == reports[name]["run_id"]
        assert run.info.status == "FINISHED"
        assert run.data.params == {f"p{i}": f"{name}-{i}" for i in range(PARAMS)}
        assert run.data.tags["writer"] == name
        for k in range(KEYS):
            history = client.get_metric_history(run.info.run_id, f"m{k}")
            assert sorted((m.step, m.value) for m in history) == [
                (s, float(s * 10 + k)) for s in range(STEPS)], (name, k)
    print(f"{WRITERS} writers x {STEPS * KEYS} values: {took:.1f} s, busy retries "
          f"{sum(r['busy'] for r in reports.values())}")
    assert took < 150, took  # ~60 s on 2 cores shared at load 10; a hang times out above
