"""`liss sweep`: expand a sweep spec, open its MLflow parent run and hand the points to a
launcher; `liss sweep status` shows where each point stands; `liss sweep report` writes the
ablation table of its runs (`launch/report.py`).

Every point is validated before anything happens, so a bad point costs nothing. Points that
already finished (their run folder's status.json, or a FINISHED MLflow run of this sweep)
are skipped unless --force. MLflow errors never stop a sweep: it runs without a parent.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from launch.ablation import SHORT_KEYS, group_keys
from launch.common import (
    LIVE_STATES,
    LaunchError,
    Submission,
    is_finished,
    load_record,
    save_record,
)
from launch.sweep import (
    Point,
    SweepSpec,
    expand,
    load_spec,
    sweep_dir,
    sweep_id,
    tracking_uri,
)
from liss.config import ConfigError
from liss.resources import shipped_sweeps
from liss.runs import RunRef, resolve_refs
from liss.store import artifact_location, experiment_id, open_client

if TYPE_CHECKING:
    from launch.report import Report

LAUNCHERS = ("local", "slurm", "k8s")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PREEMPTED = 0, 1, 2, 75
WAIT_POLL_S = 2.0
SKIPPED = "skipped (completed)"

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="liss sweep", description=" ".join(__doc__.split("\n\n")[0].split()),
        epilog="liss sweep status SPEC: the state of each point of the sweep (and where to "
        "watch it). liss sweep report SPEC: its ablation table. Docs: docs/launching.md")
    p.add_argument("spec", help="sweep spec YAML, or the name of a shipped one "
                   f"({', '.join(shipped_sweeps())})")
    p.add_argument("--launcher", required=True, choices=LAUNCHERS,
                   help="local: torchrun on this machine; slurm: one submitit job array; "
                   "k8s: one Kubernetes Job per point")
    p.add_argument("--dry-run", action="store_true",
                   help="print what would be run or submitted (only that on stdout: the "
                   "k8s manifests pipe into `kubectl apply -f -`), and do nothing")
    p.add_argument("--max-parallel", type=_positive, default=None, metavar="N",
                   help="points running at once (default: local, one per GPU slice, else 1; "
                   "all otherwise)")
    p.add_argument("--gpus-per-point", type=_positive, default=None, metavar="K",
                   help="local: GPUs (and torchrun processes) per point, each running point "
                   "on its own CUDA_VISIBLE_DEVICES slice (default: resources.gpus_per_node, "
                   "else 1)")
    _add_set(p)
    p.add_argument("--force", action="store_true",
                   help="also run finished points, from scratch (old run folders are kept, "
                   "renamed *.replaced-<time>)")
    p.add_argument("--wait", action="store_true",
                   help="slurm/k8s: wait until every point has ended, then report "
                   "(local always waits)")
    p.add_argument("--report", action="store_true",
                   help="once every point has ended, write the ablation table as "
                   "`liss sweep report SPEC` does (slurm/k8s: needs --wait)")
    return p


def _status_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liss sweep status",
                                description="where each point of a sweep stands")
    p.add_argument("spec", help="sweep spec YAML, or the name of a shipped one")
    _add_set(p)
    return p


def _report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="liss sweep report",
        description="the ablation table of a sweep's runs: per group (the sweep's axes but "
        "run.seed), mean ± std over seeds of the final paired-truth metrics, FID/KID, each "
        "task's metric when switched off and at the end, wall time and images/s; written as "
        "report.md, report.csv, runs.csv and forgetting.png, and logged to the sweep's parent "
        "run. Docs: docs/launching.md")
    p.add_argument("runs", nargs="+", metavar="SWEEP|RUN",
                   help="a sweep spec YAML or the name of a shipped one; or run folders, "
                   "sweep folders, or run ids (with --uri), as `liss runs compare` takes")
    p.add_argument("--group-by", type=lambda t: [k for k in t.split(",") if k.strip()],
                   default=None, metavar="KEY,KEY",
                   help="config keys to group by, or short names: "
                   + ", ".join(f"{k} ({v})" for k, v in SHORT_KEYS.items())
                   + ", or the last part of one config key (max_steps); default: the "
                   "sweep's axes but run.seed (runs without a spec: the config keys that "
                   "differ between them, but run.* and tracking.*)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where the files go (default: <sweep folder>/report for a spec, "
                   "./report otherwise)")
    p.add_argument("--curves", type=lambda t: [k for k in t.split(",") if k.strip()],
                   default=[], metavar="KEY,KEY",
                   help="also draw these logged metrics over steps (e.g. val/A2B_bg_psnr,"
                   "val/B2A_object_l1): curves.png and curves.csv, each group's mean ± std "
                   "over its seeds, beside the identity baseline where there is one")
    p.add_argument("--uri", help="tracking store of run ids (default: $MLFLOW_TRACKING_URI)")
    _add_set(p)
    return p


def _add_set(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="change the spec for every point: a config key (train.max_steps=50), "
                   "or resources.KEY, slurm.KEY, k8s.KEY")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return int(text)


def main(argv: list[str]) -> int:
    verb = argv[0] if argv and argv[0] in ("status", "report") else None
    parser = {"status": _status_parser, "report": _report_parser}.get(verb, build_parser)()
    args = parser.parse_args(argv[1:] if verb else argv)
    if verb is None:
        _check_run_args(parser, args)
    logging.basicConfig(level=logging.WARNING, format="liss sweep: %(message)s")
    try:
        return {"status": _status, "report": _report}.get(verb, _run)(args)
    except ConfigError as e:
        print(f"liss sweep: config error: {e}" + ("" if verb == "report" else
                                                   " (nothing submitted)"), file=sys.stderr)
        return EXIT_USAGE
    except LaunchError as e:
        print(f"liss sweep: {e}", file=sys.stderr)
        return EXIT_FAILED


def _check_run_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.gpus_per_point is not None:
        if args.launcher != "local":
            parser.error("--gpus-per-point is for --launcher local; slurm and k8s take "
                         "--set resources.gpus_per_node=K")
        args.set.append(f"resources.gpus_per_node={args.gpus_per_point}")
    if args.report and args.dry_run:
        parser.error("--report: a dry run runs nothing to report on")
    if args.report and args.launcher != "local" and not args.wait:
        parser.error(f"--report with --launcher {args.launcher} needs --wait (the report is "
                     "written once every point has ended; or run `liss sweep report SPEC` "
                     "later)")


def _launcher(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"launch.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"launch.{name}":
            raise
        raise LaunchError(f"the {name} launcher is not available (launch/{name}.py is "
                          "missing from this installation)") from None


# --------------------------------------------------------------------------- run


def _run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set)
    points = expand(spec)
    launcher = _launcher(args.launcher)
    tracking = _Tracking(spec, points)
    if args.report and not tracking.enabled:
        raise LaunchError("--report: tracking is off (tracking.uri=none), so there would be "
                          "no runs to read back (nothing started)")
    finished = set() if args.force else (
        {p.name for p in points if is_finished(p)} | tracking.finished())
    todo = [p for p in points if p.name not in finished]
    # A dry run's stdout is only what would be run or submitted; the rest goes to stderr.
    info = sys.stderr if args.dry_run else sys.stdout
    print(f"sweep {spec.name}: {len(points)} points, {len(todo)} to run"
          + (f", {len(finished)} skipped as completed" if finished else "")
          + f"; launcher {args.launcher}" + (" (dry run)" if args.dry_run else ""), flush=True,
          file=info)

    # With nothing to run, show the parent run a previous `liss sweep` made, if any.
    parent = tracking.open_parent() if todo and not args.dry_run else tracking.find_parent()
    try:
        subs = launcher.launch(spec, todo, parent_run_id=parent, dry_run=args.dry_run,
                               max_parallel=args.max_parallel, force=args.force) if todo else []
    except LaunchError:
        if not args.dry_run:
            tracking.close_parent(parent, "FAILED")
        raise
    if not args.dry_run and subs:
        save_record(spec, args.launcher, subs)
        if args.wait and any(s.state in LIVE_STATES for s in subs):
            subs = _wait(spec, points, launcher, subs)
            save_record(spec, args.launcher, subs)
        if not any(s.state in LIVE_STATES for s in subs):
            tracking.close_parent(parent, _terminal(subs))
    by_name = {s.name: s for s in subs}
    rows = [by_name.get(p.name) or Submission(p.name, SKIPPED, str(p.config.run_dir.absolute()))
            for p in points]
    print(_table(rows), file=info)
    print(tracking.describe(parent), file=info)
    if args.report and not any(s.state in LIVE_STATES for s in subs):
        _print_report(_spec_report(spec, points, tracking))
    return _exit_code(subs)


def _wait(spec: SweepSpec, points: list[Point], launcher: ModuleType,
          subs: list[Submission]) -> list[Submission]:
    """Poll the launcher's status until no point is pending or running."""
    if not hasattr(launcher, "status"):
        raise LaunchError(f"--wait: the {launcher.__name__} launcher cannot report status")
    current = {s.name: s for s in subs}
    seen: dict[str, str] = {}
    while True:
        current.update(launcher.status(spec, points, current))
        for s in current.values():
            if seen.get(s.name) != s.state:
                print(f"[{time.strftime('%H:%M:%S')}] {s.name}: {s.state}", flush=True)
                seen[s.name] = s.state
        if not any(s.state in LIVE_STATES for s in current.values()):
            return [current[s.name] for s in subs]
        time.sleep(WAIT_POLL_S)


def _terminal(subs: list[Submission]) -> str:
    """The parent run's MLflow status once its children have ended."""
    states = {s.state for s in subs}
    if states - {"completed", "preempted"}:
        return "FAILED"
    return "KILLED" if "preempted" in states else "FINISHED"


def _exit_code(subs: list[Submission]) -> int:
    states = {s.state for s in subs}
    if states - {"completed", "preempted", "dry-run", "not started"} - LIVE_STATES:
        return EXIT_FAILED
    return EXIT_PREEMPTED if "preempted" in states else EXIT_OK


def _table(rows: list[Submission]) -> str:
    wn = max([len("POINT"), *(len(r.name) for r in rows)])
    ws = max([len("STATE"), *(len(r.state) for r in rows)])
    lines = [f"{'POINT':<{wn}}  {'STATE':<{ws}}  WHERE"]
    lines += [f"{r.name:<{wn}}  {r.state:<{ws}}  {r.where}" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------- status


def _status(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set)
    points = expand(spec)
    name, record = load_record(spec)
    current = dict(record)
    if name is not None:
        launcher = _launcher(name)
        if hasattr(launcher, "status"):
            current.update(launcher.status(spec, points, record))
            if hasattr(launcher, "STATUS_SOURCE"):
                print(f"states ({name}): {launcher.STATUS_SOURCE}")
    tracking = _Tracking(spec, points)
    finished = tracking.finished()
    rows = []
    for p in points:
        sub = current.get(p.name)
        if sub is not None and sub.state in LIVE_STATES:
            rows.append(sub)
        elif is_finished(p) or p.name in finished:
            rows.append(Submission(p.name, "completed", sub.where if sub else
                                   str(p.config.run_dir.absolute())))
        else:
            rows.append(sub or Submission(p.name, "not submitted", ""))
    print(_table(rows))
    parent = tracking.find_parent()
    print(tracking.describe(parent))
    if parent and not any(r.state in LIVE_STATES | {"not submitted"} for r in rows):
        tracking.close_parent(parent, _terminal(rows))
    return EXIT_OK


# --------------------------------------------------------------------------- report


def _is_spec(item: str) -> bool:
    """A spec file (a missing one too: load_spec says so) or a shipped spec's name; anything
    else is a run folder, a sweep folder or a run id."""
    path = Path(item)
    if path.suffix in (".yaml", ".yml"):
        return not path.is_dir()
    return not path.exists() and item in shipped_sweeps()


def _report(args: argparse.Namespace) -> int:
    from launch import report

    keys = group_keys(args.group_by) if args.group_by is not None else None
    if len(args.runs) == 1 and _is_spec(args.runs[0]):
        spec = load_spec(args.runs[0], args.set)
        points = expand(spec)
        done = _spec_report(spec, points, _Tracking(spec, points), keys, args.out,
                            args.curves)
    else:
        if args.set:
            raise ConfigError("--set", " ".join(args.set), "changes a sweep spec; these are "
                              "run folders or run ids")
        refs = resolve_refs(args.runs, None, args.uri or os.environ.get("MLFLOW_TRACKING_URI"))
        runs = [report.read_run(ref) for ref in refs]
        if keys is None:
            keys = report.varying_keys([r.params for r in report.latest_per_name(runs)[0]])
        done = report.write("Sweep report", keys, runs, args.out or Path("report"),
                            parent=report.shared_parent(runs), curves=args.curves)
    _print_report(done)
    return EXIT_OK if done.averaged else EXIT_FAILED


def _spec_report(spec: SweepSpec, points: list[Point], tracking: _Tracking,
                 keys: list[str] | None = None, out: Path | None = None,
                 curves: list[str] | None = None) -> Report:
    """The report of a spec's points: their latest MLflow runs in the sweep's store (found by
    its sweep_id, as `liss sweep status` finds them); points without one are listed."""
    from launch import report

    if not tracking.enabled:
        raise LaunchError("report: tracking is off (tracking.uri=none), so there are no runs "
                          "to read back")
    names = {p.name for p in points}
    found = [report.read_run(ref) for ref in tracking.point_refs()]
    runs = [r for r in found if r.name in names]
    present = {r.name for r in runs}
    _, record = load_record(spec)
    missing = {p.name: (report.point_params(p), _no_run(record.get(p.name)))
               for p in points if p.name not in present}
    others = sorted({r.name for r in found} - names)
    notes = [f"Left out: runs of this sweep_id that are no point of the spec now: "
             f"{', '.join(others)}."] if others else []
    parent = tracking.find_parent()
    return report.write(f"Sweep report: {spec.name}", report.axis_keys(points)
                        if keys is None else keys, runs, out or sweep_dir(spec) / "report",
                        missing=missing, parent=(tracking.uri, parent) if parent else None,
                        notes=notes, order=[p.name for p in points], curves=curves or ())


def _no_run(sub: Submission | None) -> str:
    return "no MLflow run (" + (f"launcher: {sub.state})" if sub else "not submitted)")


def _print_report(done: Report) -> None:
    print(done.markdown)
    print("written: " + ", ".join(str(f) for f in done.files))
    print(f"logged to the parent run {done.logged_to} (artifacts report/)" if done.logged_to
          else "not logged to MLflow: no parent run of these runs")


# --------------------------------------------------------------------------- MLflow


class _Tracking:
    """The sweep's one MLflow store: its parent run and which points finished there."""

    PARENT_TAG = "sweep_role"

    def __init__(self, spec: SweepSpec, points: list[Point]):
        self.spec, self.uri, self.sweep_id = spec, tracking_uri(spec), sweep_id(spec)
        experiments = {p.config.tracking.experiment for p in points}
        if len(experiments) > 1:
            raise ConfigError("tracking.experiment", sorted(experiments),
                              "all points of a sweep must log to one experiment")
        self.experiment = experiments.pop()
        self._client = None

    @property
    def enabled(self) -> bool:
        return self.uri != "none"

    def _sqlite_path(self) -> Path | None:
        return Path(self.uri.removeprefix("sqlite:///")) if self.uri.startswith(
            "sqlite:") else None

    def client(self):
        if self._client is None:
            self._client = open_client(self.uri)
        return self._client

    def _experiment_id(self, create: bool) -> str | None:
        if create:
            return experiment_id(self.client(), self.experiment, artifact_location(self.uri))
        found = self.client().get_experiment_by_name(self.experiment)
        return found.experiment_id if found is not None else None

    def _search(self, where: str) -> list:
        exp = self._experiment_id(create=False)
        if exp is None:
            return []
        return self.client().search_runs([exp], filter_string=f"tags.sweep_id = "
                                         f"'{self.sweep_id}' and {where}", max_results=10000)

    def _store_exists(self) -> bool:
        db = self._sqlite_path()
        return self.enabled and (db is None or db.exists())

    def finished(self) -> set[str]:
        """Names of this sweep's points with a FINISHED run in the store."""
        if not self._store_exists():
            return set()
        try:
            runs = self._search("attributes.status = 'FINISHED'")
        except Exception as e:
            log.warning("cannot read MLflow at %s (%s): finished points are found by their "
                        "run folders only", self.uri, e)
            return set()
        return {r.info.run_name for r in runs if self.PARENT_TAG not in r.data.tags}

    def point_refs(self) -> list[RunRef]:
        """This sweep's point runs (not the parent) in its store, every attempt of each."""
        if not self._store_exists():
            return []
        try:
            return resolve_refs([], self.sweep_id, self.uri)
        except ConfigError:  # no runs found
            return []

    def find_parent(self) -> str | None:
        if not self._store_exists():
            return None
        try:
            runs = self._search(f"tags.{self.PARENT_TAG} = 'parent'")
        except Exception as e:
            log.warning("cannot read MLflow at %s: %s", self.uri, e)
            return None
        return runs[0].info.run_id if runs else None

    def open_parent(self) -> str | None:
        """This sweep's parent run (found again by sweep_id, else created), set RUNNING."""
        if not self.enabled:
            return None
        try:
            if self._sqlite_path():
                self._sqlite_path().parent.mkdir(parents=True, exist_ok=True)
            exp = self._experiment_id(create=True)
            parent = self.find_parent()
            if parent:
                self.client().update_run(parent, status="RUNNING")
                return parent
            run = self.client().create_run(exp, run_name=self.spec.name, tags={
                "sweep": self.spec.name, "sweep_id": self.sweep_id, self.PARENT_TAG: "parent"})
            if self.spec.source is not None:
                self.client().log_artifact(run.info.run_id, str(self.spec.source))
            return run.info.run_id
        except Exception as e:
            log.warning("cannot open the sweep's parent run in MLflow at %s (%s): the points "
                        "run without one", self.uri, e)
            return None

    def close_parent(self, parent: str | None, status: str) -> None:
        if parent is None:
            return
        try:
            self.client().set_terminated(parent, status)
        except Exception as e:
            log.warning("cannot close the parent run %s: %s", parent, e)

    def describe(self, parent: str | None) -> str:
        if not self.enabled:
            return "MLflow: tracking is off (tracking.uri=none)"
        where = (f"mlflow ui --backend-store-uri {self.uri} --port 5000" if self._sqlite_path()
                 else self.uri)
        run = f"parent run {parent}" if parent else "no parent run yet"
        return (f"MLflow: experiment {self.experiment!r}, {run} (sweep_id {self.sweep_id})\n"
                f"watch:  {where}")
