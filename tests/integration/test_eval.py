"""`liss eval` on a really trained (tiny) checkpoint: every number in the JSON with the
checkpoint, step and config it came from; the same paired-truth numbers as paired.py and
the same task numbers as validation; FID/KID equal to torch-fidelity's on the same folders
(stand-in extractor); one-line errors.
Also the in-training evaluation the trainer calls, and a training that keeps its best
checkpoint. (The best-checkpoint helper alone: unit/test_best_checkpoint.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch
from PIL import Image

from liss import checkpoint, config
from liss.cli import main
from liss.data import synthetic
from liss.data.augment import Preprocess
from liss.data.layout import load_splits
from liss.data.pipeline import build_pipeline
from liss.eval import evaluate as evaluate_lib
from liss.eval import fid as fid_lib
from liss.eval.evaluate import build_model, evaluate
from liss.eval.intraining import InTrainingEval
from liss.eval.paired import paired_metrics
from liss.paired_names import METRICS
from tests.feature_standin import StandinFeatures, fidelity_metrics

REPO = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
TASKS = ("rotation_acc", "jigsaw_acc", "depth_loss", "gray_loss")


@pytest.fixture
def trained(tiny_run: Path) -> Path:
    return tiny_run


def test_json_holds_every_number_and_its_origin(trained: Path, synth_root: Path,
                                                tmp_path: Path, capsys) -> None:
    ckpt = trained / "checkpoints" / "latest.pt"
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(synth_root), "--json",
                 str(out)]) == 0
    report = json.loads(out.read_text())
    state = checkpoint.load(ckpt)
    assert report["checkpoint"] == str(ckpt.resolve()) and report["step"] == 2
    assert report["config"] == state["config"] and report["kind"] == "checkpoint"
    assert report["split"] == "test" and report["images"] == {"A": 4, "B": 4}
    m = report["metrics"]
    for n in ("A2B", "B2A"):
        for k in METRICS:  # the synthetic truth has object masks: the well-posed ones too
            assert f"test/{n}_{k}" in m and f"test/{n}_identity_{k}" in m
        assert m[f"test/{n}_identity_bg_psnr"] > 30  # the input keeps the background
        assert 0 <= m[f"test/{n}_texture"] <= 2
    for d in "AB":
        for key in (*TASKS, "cycle_l1", "idt_l1"):
            assert f"test/{d}/{key}" in m
        assert 0 <= m[f"test/{d}/rotation_acc"] <= 1
    assert report["notes"] == []
    table = capsys.readouterr().out
    assert "rotation accuracy" in table and "L1 changed px" in table and "(step 2)" in table
    assert "PSNR bg (dB)" in table and "texture (MMD2)" in table and "well-posed" in table


def test_numbers_are_paired_py_and_validation_numbers(trained: Path, synth_root: Path) -> None:
    """The paired numbers are paired.py's on the test images; the task numbers are what
    validation computes on the same split through the trainer's own pipeline (so both are
    deterministic: recomputed, they are equal)."""
    ckpt = trained / "checkpoints" / "latest.pt"
    report = evaluate(ckpt, synth_root)
    state = checkpoint.load(ckpt)
    cfg = config.from_dict(state["config"])
    model = build_model(state, cfg, CPU)
    test = load_splits(synth_root)["test"]
    paired = paired_metrics(model, synth_root, {"A": test.A, "B": test.B},
                            prep=Preprocess.of(cfg.data))
    assert paired == {k: v for k, v in report["metrics"].items() if k in paired}
    pipeline = build_pipeline(cfg)  # the trainer's data: validation through its own code
    from liss.distributed import DistEnv
    from liss.eval.validation import run_validation
    from liss.precision import Precision

    validated = run_validation(model, pipeline, DistEnv(0, 1, 0, CPU), Precision("fp32", CPU),
                               False, split="test")
    assert {f"test/{k[4:]}": v for k, v in validated.items()} == {
        k: v for k, v in report["metrics"].items() if k.startswith(("test/A/", "test/B/"))}


def test_generator_files_give_what_they_can(trained: Path, synth_root: Path,
                                            tmp_path: Path) -> None:
    full = evaluate(trained / "checkpoints" / "latest.pt", synth_root)["metrics"]
    gens = evaluate(trained / "generators.pt", synth_root)
    assert "test/A/gray_loss" not in gens["metrics"] and "test/A/rotation_acc" in gens["metrics"]
    assert any("gray discriminators" in n for n in gens["notes"])
    assert main(["export", "--checkpoint", str(trained / "generators.pt"), "--output",
                 str(tmp_path / "e.safetensors"), "--format", "safetensors"]) == 0
    exported = evaluate(tmp_path / "e.safetensors", synth_root)
    assert any("no task heads" in n for n in exported["notes"])
    assert exported["metrics"] == {k: v for k, v in full.items() if "2" in k.split("/")[1]}


@pytest.fixture(scope="module")
def fid_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 test images of A and 14 of B (48 px): sets of unequal size, so that KID's subsets
    (14 images) are drawn at random from the larger set."""
    root = tmp_path_factory.mktemp("fid") / "synth"
    synthetic.generate(root, n_train=4, n_test=20, size=48, seed=2)
    for extra in sorted((root / "testB").glob("*.jpg"))[14:]:
        extra.unlink()
    return root


def test_fid_agrees_with_torch_fidelity_on_the_same_folders(trained: Path, fid_data: Path,
                                                            tmp_path: Path,
                                                            monkeypatch) -> None:
    """`liss eval --fid --fid-dir D` writes every full test image's translation as an 8-bit
    PNG under D/A2B, D/B2A; its FID, KID and KID std equal torch-fidelity's
    `calculate_metrics` on those folders against the real test folders, through one
    stand-in feature network handed to both (an instance to liss, registered by name with
    torch-fidelity), as the Inception would be."""
    monkeypatch.setattr(fid_lib, "resolve_weights", lambda path: Path("standin.pth"))
    monkeypatch.setattr(fid_lib, "load_inception", lambda path, device: StandinFeatures())
    out, kept = tmp_path / "eval.json", tmp_path / "fid"
    assert main(["eval", "--checkpoint", str(trained / "generators.pt"), "--data",
                 str(fid_data), "--fid", "--fid-dir", str(kept), "--json", str(out),
                 "--batch-size", "6", "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["fid_dir"] == str(kept.resolve())
    m = report["metrics"]
    for name, fakes, real in (("A2B", 20, "testB"), ("B2A", 14, "testA")):
        pngs = sorted((kept / name).glob("*.png"))
        assert len(pngs) == fakes
        with Image.open(pngs[0]) as im:  # the full 48 px image, not the 32 px crop
            assert im.mode == "RGB" and im.size == (48, 48)
        theirs = fidelity_metrics(str(kept / name), str(fid_data / real), kid_subset_size=14)
        ours = {k: m[f"test/{name}_{k}"] for k in ("fid", "kid", "kid_std")}
        print(f"{name}: liss {ours}, torch-fidelity {theirs}")
        assert ours["fid"] > 0 and ours["kid_std"] > 0
        assert ours == pytest.approx(theirs, rel=1e-4)


@pytest.mark.slow  # two Inception passes over 34 images on the CPU
def test_fid_with_the_real_inception_agrees_with_torch_fidelity(trained: Path, fid_data: Path,
                                                                tmp_path: Path) -> None:
    """Where the real weights are on this machine (never downloaded): the same agreement
    with torch-fidelity's own Inception path, `feature_extractor_weights_path` and all."""
    import torch_fidelity

    try:
        weights = fid_lib.resolve_weights(None)
    except fid_lib.InceptionWeightsError as e:
        pytest.skip(f"needs the real Inception weights: {e}")
    report = evaluate(trained / "generators.pt", fid_data, fid=True, fid_dir=tmp_path)
    theirs = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "A2B"), input2=str(fid_data / "testB"), fid=True, kid=True,
        kid_subset_size=14, feature_extractor_weights_path=str(weights), cuda=False,
        cache=False, save_cpu_ram=True, verbose=False)
    m = report["metrics"]
    assert m["test/A2B_fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-4)
    assert m["test/A2B_kid"] == pytest.approx(theirs["kernel_inception_distance_mean"],
                                              rel=1e-4)


def test_fid_of_real_images_against_themselves_is_zero(trained: Path, synth_root: Path,
                                                       tmp_path: Path) -> None:
    """With an identity "translation" the PNGs are the real images exactly (decoding,
    quantising and writing lose nothing), so FID is 0 and KID is its value for one set."""
    state = checkpoint.load(trained / "generators.pt")
    cfg = config.from_dict(state["config"])
    model = build_model(state, cfg, CPU)
    model.G["A"] = torch.nn.Identity()
    test = load_splits(synth_root)["test"]
    extractor = StandinFeatures()
    same = evaluate_lib.fid_metrics(model, cfg, {"A": test.B, "B": test.B}, extractor,
                                    split="test", batch_size=3, device=CPU, out=tmp_path,
                                    domains="A")
    assert set(same) == {"test/A2B_fid", "test/A2B_kid", "test/A2B_kid_std"}
    assert same["test/A2B_fid"] == pytest.approx(0.0, abs=1e-6)
    real = fid_lib.features(extractor, fid_lib.file_batches(test.B, 3), CPU)
    assert same["test/A2B_kid"] == pytest.approx(fid_lib.scores(real, real)["kid"], rel=1e-6)


def test_fid_without_weights_exits_2_naming_the_file(trained: Path, synth_root: Path,
                                                     tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    monkeypatch.delenv("LISS_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    code = main(["eval", "--checkpoint", str(trained / "generators.pt"), "--data",
                 str(synth_root), "--fid"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pt_inception-2015-12-05-6726825d.pth" in err
    assert str(tmp_path / "liss") in err and "--inception-weights" in err
    (tmp_path / "w.pth").write_bytes(b"not the weights")
    code = main(["eval", "--checkpoint", str(trained / "generators.pt"), "--data",
                 str(synth_root), "--fid", "--inception-weights", str(tmp_path / "w.pth")])
    assert code == 2 and "is not 6726825d0af5f729" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["missing", "foreign", "no-data"])
def test_errors_are_one_line_and_exit_2(case: str, trained: Path, synth_root: Path,
                                        tmp_path: Path, capsys) -> None:
    ckpt, data = trained / "generators.pt", synth_root
    if case == "missing":
        ckpt = tmp_path / "absent.pt"
    elif case == "foreign":
        ckpt = tmp_path / "model.pt"
        torch.save({"state_dict": {"w": torch.zeros(2)}}, ckpt)
    else:
        data = tmp_path / "no-such-dataset"
    code = main(["eval", "--checkpoint", str(ckpt), "--data", str(data)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("liss: ")
    assert {"missing": "no such checkpoint", "foreign": "not a liss checkpoint",
            "no-data": "dataset folder not found"}[case] in err


def test_eval_in_a_subprocess(trained: Path, synth_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "liss", "eval", "--checkpoint",
                           str(trained / "checkpoints" / "latest.pt"), "--data",
                           str(synth_root), "--json", str(out), "--device", "cpu"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vs paired truth" in proc.stdout
    assert json.loads(out.read_text())["metrics"]["test/B/jigsaw_acc"] >= 0


# ---------------------------------------------------------------------- during training


def test_in_training_eval_scores_the_validation_split(trained: Path, synth_root: Path,
                                                      tmp_path: Path) -> None:
    """Validation images carved from train find their truth in gt/train*; a dataset whose
    truth is the input itself proves each image is matched with its own truth file."""
    state = checkpoint.load(trained / "checkpoints" / "latest.pt")
    cfg = config.from_dict(state["config"])
    cfg.data.val_fraction = 0.3  # 3 validation images per domain
    data = build_pipeline(cfg)
    model = build_model(state, cfg, CPU)
    evaluator = InTrainingEval(cfg, data, CPU, fid=True, extractor=StandinFeatures())
    first = evaluator(model)
    paired = {f"val/{n}_{p}{k}" for n in ("A2B", "B2A") for p in ("", "identity_")
              for k in METRICS}
    assert set(first) == paired | {f"val/{n}_{k}" for n in ("A2B", "B2A")
                                   for k in ("fid", "kid", "kid_std")}
    assert set(evaluator.reference) == {"A", "B"}  # real features computed once, kept
    root = tmp_path / "data"
    root.mkdir()
    for item in synth_root.iterdir():
        (root / item.name).symlink_to(item)
    (root / "gt").unlink()
    for n in ("A2B", "B2A"):
        (root / "gt" / f"train{n}").mkdir(parents=True)
        (root / "gt" / f"test{n}").symlink_to(synth_root / "gt" / f"test{n}")
        for image in data.splits["val"][n[0]]:  # its "truth": the image itself
            (root / "gt" / f"train{n}" / f"{image.stem}.png").symlink_to(image)
    cfg.data.root = str(root)
    with_truth = InTrainingEval(cfg, build_pipeline(cfg), CPU)(model)
    assert with_truth["val/A2B_identity_l1"] < 0.02  # an input against itself (JPEG vs PNG)
    assert "val/A2B_texture" not in with_truth  # that truth has no masks: whole-image only
    assert with_truth["val/A2B_l1"] > with_truth["val/A2B_identity_l1"]
    assert first["val/A2B_identity_l1"] > 5 * with_truth["val/A2B_identity_l1"]  # real truth


def test_training_evaluates_and_keeps_the_best_checkpoint(synth_root: Path,
                                                          tmp_path: Path) -> None:
    """`train.eval_every` logs the paired-truth metrics to MLflow; `train.best_metric` keeps
    best.pt for the lowest value seen, and its record survives extending the run. Every
    name `selectable_metrics` offers is really computed."""
    from tests.conftest import TINY

    args = ["train", *TINY, f"data.root={synth_root}", f"run.dir={tmp_path}", "run.name=b",
            "train.eval_every=2", "train.best_metric=val/A2B_changed_l1",
            "schedule.task_schedule=liss", "schedule.rotation_acc_threshold=0"]
    assert main([*args, "train.max_steps=4"]) == 0
    assert main([*args, "train.max_steps=6"]) == 0  # resumes
    run = tmp_path / "b"
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")  # run.dir's store
    (logged,) = client.search_runs(client.get_experiment_by_name("liss").experiment_id)
    history = {m.step: m.value for m in client.get_metric_history(logged.info.run_id,
                                                                  "val/A2B_changed_l1")}
    assert sorted(history) == [2, 4, 6]
    best_step = min(history, key=history.get)
    record = json.loads((run / "checkpoints" / "best.json").read_text())
    assert record == {"metric": "val/A2B_changed_l1", "value": history[best_step],
                      "step": best_step, "higher_is_better": False}
    assert checkpoint.load(run / "checkpoints" / "best.pt")["step"] == best_step
    assert logged.data.metrics["best/step"] == best_step
    cfg = config.from_dict(checkpoint.load(run / "checkpoints" / "latest.pt")["config"])
    offered = set(config.selectable_metrics(cfg))
    assert offered <= set(logged.data.metrics), offered - set(logged.data.metrics)


def test_in_training_fid_without_weights_is_a_config_error(trained: Path, monkeypatch,
                                                           tmp_path: Path) -> None:
    monkeypatch.delenv("LISS_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cfg = config.from_dict(checkpoint.load(trained / "generators.pt")["config"])
    with pytest.raises(config.ConfigError, match=r"train\.eval_fid"):
        InTrainingEval(cfg, build_pipeline(cfg), CPU, fid=True)
