"""Sweep specs: loading errors, expansion, validation of every point, `liss sweep` dry runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from launch.cli import main as sweep_main
from launch.sweep import expand, load_spec, sweep_dir, sweep_id, tracking_uri
from liss.config import ConfigError

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"


def write_spec(tmp_path: Path, **fields) -> Path:
    data = {"name": "sw", "base": str(QUICKSTART),
            "overrides": {"run.dir": str(tmp_path / "runs")}, **fields}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def load_error(tmp_path: Path, **fields) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        expand(load_spec(write_spec(tmp_path, **fields)))
    return info.value


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize(("fields", "key", "says"), [
    ({"axis": {"run.seed": [0, 1]}}, "sweep.axis", "unknown sweep key"),
    ({"name": "My_Sweep"}, "sweep.name", "lowercase"),
    ({"name": ""}, "sweep.name", "lowercase"),
    ({"axes": {"run.seed": 3}}, "sweep.axes.run.seed", "non-empty list"),
    ({"axes": {"run.seed": []}}, "sweep.axes.run.seed", "non-empty list"),
    ({"axes": ["run.seed"]}, "sweep.axes", "mapping"),
    ({"points": {"run.seed": 1}}, "sweep.points", "list of mappings"),
    ({"axes": {"run.name": ["a", "b"]}}, "sweep.axes.run.name", "set by the sweep"),
    ({"axes": {"run.dir": ["a", "b"]}}, "sweep.axes.run.dir", "shared by all points"),
    ({"points": [{"tracking.uri": "none"}]}, "sweep.points[0].tracking.uri", "shared"),
    ({"overrides": {"train.resume": "never"}}, "sweep.overrides.train.resume", "set by"),
    ({"resources": {"gpu_per_node": 1}}, "sweep.resources.gpu_per_node", "unknown key"),
    ({"resources": {"nodes": "two"}}, "sweep.resources.nodes", "integer"),
    ({"slurm": {"partitions": "gpu"}}, "sweep.slurm.partitions", "unknown key"),
])
def test_spec_errors_name_the_key(tmp_path: Path, fields: dict, key: str, says: str) -> None:
    err = load_error(tmp_path, **fields)
    assert err.key == key
    assert says in str(err)


def test_name_defaults_to_the_file_stem(tmp_path: Path) -> None:
    path = write_spec(tmp_path)
    data = yaml.safe_load(path.read_text())
    del data["name"]
    (tmp_path / "my-ablation.yaml").write_text(yaml.safe_dump(data))
    spec = load_spec(tmp_path / "my-ablation.yaml")
    assert spec.name == "my-ablation" and sweep_dir(spec) == tmp_path / "runs" / "my-ablation"
    (tmp_path / "My_Ablation.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"^sweep\.name=None: not given, and the file name "
                                          r"'My_Ablation\.yaml' cannot be one"):
        load_spec(tmp_path / "My_Ablation.yaml")


def test_missing_spec_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sweep spec not found"):
        load_spec(tmp_path / "nope.yaml")


def test_bad_fixed_override_names_it(tmp_path: Path) -> None:
    err = load_error(tmp_path, overrides={"train.max_stepz": 3})
    assert err.key == "sweep overrides: train.max_stepz"
    assert "did you mean train.max_steps" in str(err)


# --------------------------------------------------------------------------- --set


def test_set_reaches_every_point_and_every_section(tmp_path: Path) -> None:
    path = write_spec(tmp_path, axes={"run.seed": [0, 1]},
                      points=[{"run.seed": 5, "optim.lr": 0.001}],
                      overrides={"run.dir": str(tmp_path / "runs"), "train.max_steps": 5},
                      resources={"nodes": 1, "mem_gb": 8}, slurm={"partition": "cpu"})
    spec = load_spec(path, ["train.max_steps=7", "data.root=/shared/h2z",
                            "run.dir=" + str(tmp_path / "elsewhere"), "resources.mem_gb=16",
                            "resources.gpus_per_node=2", "slurm.partition=gpu",
                            "slurm.additional_parameters={exclusive: true}",
                            "k8s.queue=team-a", "k8s.image=reg/liss:1"])
    assert spec.resources == {"nodes": 1, "mem_gb": 16, "gpus_per_node": 2}
    assert spec.slurm == {"partition": "gpu", "additional_parameters": {"exclusive": True}}
    assert spec.k8s == {"queue": "team-a", "image": "reg/liss:1"}
    points = expand(spec)
    assert len(points) == 3
    for p in points:
        assert p.config.train.max_steps == 7 and p.config.data.root == "/shared/h2z"
        assert p.config.run_dir.parent == tmp_path / "elsewhere" / "sw"
        assert "train.max_steps=7" in p.override_args()
    assert points[-1].config.optim.lr == 0.001, "what a point sets and --set does not: kept"
    assert load_spec(path).resources == {"nodes": 1, "mem_gb": 8}, "the file is unchanged"


@pytest.mark.parametrize(("sets", "key", "says"), [
    (["train.max_stepz=3"], "--set train.max_stepz", "did you mean train.max_steps"),
    (["train.max_steps=many"], "--set train.max_steps", "must be an integer"),
    (["foo=1"], "--set foo", "--set takes a config key, or resources.KEY, slurm.KEY, k8s.KEY"),
    (["resources.gpu_per_node=1"], "--set resources.gpu_per_node", "unknown key"),
    (["resources.nodes=two"], "--set resources.nodes", "non-negative integer"),
    (["slurm.partitions=gpu"], "--set slurm.partitions", "unknown key"),
    (["k8s.queues=a"], "--set k8s.queues", "unknown key; known: "),
    (["run.seed=3"], "--set run.seed", "axes or points vary it"),
    (["optim.lr=0.1"], "--set optim.lr", "axes or points vary it"),
    (["run.name=x"], "--set run.name", "set by the sweep"),
    (["train.max_steps"], "--set", "is written key=value"),
])
def test_set_errors_name_the_key(tmp_path: Path, sets: list[str], key: str, says: str) -> None:
    path = write_spec(tmp_path, axes={"run.seed": [0, 1]}, points=[{"optim.lr": 0.01}])
    with pytest.raises(ConfigError) as info:
        expand(load_spec(path, sets))
    assert info.value.key == key
    assert says in str(info.value)
    assert "\n" not in str(info.value)


def test_set_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CPU points: nproc from resources
    spec = write_spec(tmp_path, axes={"run.seed": [0, 1]})
    assert sweep_main([str(spec), "--launcher", "local", "--dry-run", "--set",
                       "train.max_steps=9", "data.batch_size=3", "--set",
                       "resources.nproc_per_node=2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(line.startswith("[dry-run] sw-s") for line in lines)
    assert all("--nproc_per_node=2" in line and " train.max_steps=9 data.batch_size=3 " in line
               for line in lines)
    assert sweep_main([str(spec), "--launcher", "local", "--set", "train.max_stepz=9"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liss sweep: config error: --set train.max_stepz=9: unknown key")
    assert len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as code:
        sweep_main([str(spec), "--launcher", "slurm", "--gpus-per-point", "2"])
    assert code.value.code == 2
    assert "--gpus-per-point is for --launcher local" in capsys.readouterr().err


# --------------------------------------------------------------------------- expansion


def test_product_points_exclude_and_names(tmp_path: Path) -> None:
    spec = load_spec(write_spec(
        tmp_path,
        axes={"schedule.task_schedule": ["parallel", "representational"],
              "schedule.repr_mode": ["freeze", "flow"], "run.seed": [0, 1]},
        points=[{"schedule.task_schedule": "liss", "run.seed": 7}],
        exclude=[{"schedule.task_schedule": ["parallel"], "schedule.repr_mode": ["flow"]}]))
    points = expand(spec)
    assert [p.name for p in points] == [
        "sw-parallel-freeze-s0", "sw-parallel-freeze-s1",
        "sw-representational-freeze-s0", "sw-representational-freeze-s1",
        "sw-representational-flow-s0", "sw-representational-flow-s1",
        "sw-liss-s7"]
    assert [p.name for p in expand(load_spec(spec.source))] == [p.name for p in points]
    flow = points[4].config
    assert (flow.schedule.task_schedule, flow.schedule.repr_mode, flow.run.seed) == (
        "representational", "flow", 0)
    assert points[-1].config.run.seed == 7
    assert points[-1].config.schedule.repr_mode == "freeze"  # the base config's value


def test_list_values_name_their_points(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, axes={"run.seed": [0]}, points=[
        {"tasks.auxiliary_tasks": ["depth", "gray"], "run.seed": 1},
        {"tasks.auxiliary_tasks": [], "run.seed": 1}]))
    points = expand(spec)
    assert [p.name for p in points] == ["sw-s0", "sw-s1-depth-gray", "sw-s1-no-auxiliary-tasks"]
    assert [p.config.tasks.auxiliary_tasks for p in points[1:]] == [["depth", "gray"], []]


def test_points_share_folder_and_store(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, axes={"run.seed": [0, 1]},
                                overrides={"run.dir": str(tmp_path / "runs"),
                                           "train.max_steps": 5}))
    points = expand(spec)
    assert sweep_dir(spec) == tmp_path / "runs" / "sw"
    assert tracking_uri(spec) == f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"  # run.dir's
    for p in points:
        c = p.config
        assert c.run_dir == tmp_path / "runs" / "sw" / p.name
        assert c.tracking.uri == tracking_uri(spec)
        assert (c.train.resume, c.train.max_steps) == ("auto", 5)
        assert f"run.name={p.name}" in p.override_args()
    assert sweep_id(spec).startswith("sw-") and sweep_id(spec) == sweep_id(load_spec(spec.source))


def test_tracking_store_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert tracking_uri(load_spec(write_spec(tmp_path))) == "http://mlflow.example:5000"
    spec = load_spec(write_spec(tmp_path, tracking_uri="http://other:5000"))
    assert tracking_uri(spec) == "http://other:5000"
    assert {p.config.tracking.uri for p in expand(spec)} == {"http://other:5000"}


def test_a_sweep_of_an_earlier_version_keeps_its_own_store(tmp_path: Path) -> None:
    spec = load_spec(write_spec(tmp_path, overrides={"run.dir": str(tmp_path / "runs")}))
    (tmp_path / "runs" / "sw").mkdir(parents=True)
    (tmp_path / "runs" / "sw" / "mlflow.db").write_bytes(b"")  # where earlier versions logged
    assert tracking_uri(spec) == f"sqlite:///{tmp_path / 'runs' / 'sw' / 'mlflow.db'}"
    assert {p.config.tracking.uri for p in expand(spec)} == {tracking_uri(spec)}


def test_bad_point_names_point_and_key(tmp_path: Path) -> None:
    err = load_error(tmp_path, axes={"schedule.task_schedule": ["liss", "parallel"],
                                     "schedule.repr_mode": ["distillation"]})
    assert err.key == "point sw-parallel: schedule.repr_mode"
    assert "distillation is not meaningful" in str(err)
    err = load_error(tmp_path, points=[{"run.seed": 1}, {"optim.lrr": 0.1}])
    assert err.key.startswith("point sw-") and err.key.endswith(": optim.lrr")
    err = load_error(tmp_path, axes={"optim.name": ["adam", "lbfgs"]})
    assert err.key == "point sw-lbfgs: optim.name" and "unknown optimizer" in str(err)


def test_duplicate_run_names_are_refused(tmp_path: Path) -> None:
    err = load_error(tmp_path, points=[{"run.seed": 1}, {"run.seed": 1}])
    assert "same run name" in str(err)


def test_excluding_everything_is_an_error(tmp_path: Path) -> None:
    err = load_error(tmp_path, axes={"run.seed": [0, 1]}, exclude=[{"run.seed": [0, 1]}])
    assert err.key == "sweep.exclude" and "excludes every point" in str(err)


def test_shipped_sweeps_expand() -> None:
    points = expand(load_spec(REPO / "configs" / "sweeps" / "schedules.yaml"))
    assert len(points) == 18
    modes = {(p.config.schedule.task_schedule, p.config.schedule.repr_mode) for p in points}
    assert modes == {("parallel", "freeze"), ("sequential", "freeze"), ("liss", "freeze"),
                     ("representational", "freeze"), ("representational", "flow"),
                     ("representational", "distillation")}
    assert {p.config.run.seed for p in points} == {0, 1, 2}
    assert "schedules-representational-distillation-s2" in {p.name for p in points}
    smoke = expand(load_spec(REPO / "configs" / "sweeps" / "smoke.yaml"))
    assert [p.name for p in smoke] == ["smoke-parallel", "smoke-liss"]
    arms = expand(load_spec(REPO / "configs" / "sweeps" / "optim-identity.yaml"))
    assert len(arms) == 12 and arms[0].name == "optim-identity-s0-radam-crossed"
    assert {(p.config.optim.name, p.config.model.identity) for p in arms[:4]} == {
        (o, i) for o in ("radam", "adam") for i in ("crossed", "same")}
    assert all(p.config.tasks.auxiliary_tasks == [] for p in arms)
    claims = expand(load_spec(REPO / "configs" / "sweeps" / "claims.yaml"))
    arms = {(p.config.schedule.task_schedule, tuple(p.config.tasks.auxiliary_tasks),
             p.config.optim.name, p.config.model.identity) for p in claims}
    assert len(claims) == 15 and len(arms) == 5, "five arms of three seeds"
    assert ("parallel", (), "adam", "same") in arms and ("parallel", (), "radam", "crossed") in arms
    search = expand(load_spec(REPO / "configs" / "sweeps" / "showcase-search.yaml"))
    assert search[0].config.loss.lambda_I == 0.5 and search[0].config.optim.lr == 2e-4


# --------------------------------------------------------------------------- the CLI


def test_bad_point_submits_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, axes={"schedule.task_schedule": ["sequential"],
                                      "schedule.repr_mode": ["freeze", "distillation"]})
    assert sweep_main([str(spec), "--launcher", "local"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "point sw-distillation: schedule.repr_mode='distillation'" in err
    assert not (tmp_path / "runs").exists()


def test_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as code:
        sweep_main(["--help"])
    assert code.value.code == 0
    out = capsys.readouterr().out
    assert "--launcher {local,slurm,k8s}" in out and "liss sweep status SPEC" in out
    with pytest.raises(SystemExit) as code:
        sweep_main(["spec.yaml"])  # --launcher is required
    assert code.value.code == 2
