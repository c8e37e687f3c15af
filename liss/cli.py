"""The `liss` command line: train, data, runs, sweep, translate / eval / export, config.

Heavy imports (torch, mlflow) happen inside the subcommands so `liss --help` is instant and a
config error is reported before anything slow starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _config_args(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """[CONFIG] [key=value ...]: a first argument with `=` that is no file is an override."""
    ref, overrides = args.config, list(args.overrides)
    if ref is not None and "=" in ref and not Path(ref).exists():
        return None, [ref, *overrides]  # `liss train key=value ...`
    return ref, overrides


def _train(args: argparse.Namespace) -> int:
    from liss import config

    cfg = config.load(*_config_args(args))  # config errors surface before torch is imported

    from liss.train.trainer import train

    return train(cfg)


def _synth(args: argparse.Namespace) -> int:
    from liss.data import synthetic

    out = Path(args.out)
    if args.if_missing and synthetic.is_complete(out):
        print(f"liss: synthetic dataset already at {out}")
        return EXIT_OK
    summary = synthetic.generate(out, n_train=args.n_train, n_test=args.n_test,
                                 size=args.size, seed=args.seed)
    print(summary)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from liss.data.check import check_dataset

    report = check_dataset(Path(args.root), crop_size=args.crop_size,
                           depth="ignore" if args.no_depth else args.depth)
    print(report.format())
    return EXIT_OK if report.ok and not (args.strict and report.warnings) else EXIT_FAILED


def _depth(args: argparse.Namespace) -> int:
    from liss.data.depth_maps import Options, compute_depth_maps
    from liss.data.depth_model import DepthModelError, load_depth_model

    opts = Options(input_size=args.input_size, mean=tuple(args.mean), std=tuple(args.std),
                   output=args.output, percentile=args.percentile, batch_size=args.batch_size,
                   splits=tuple(s for s in args.splits.split(",") if s), overwrite=args.overwrite)
    try:
        opts.validate()  # before the model loads
        model = load_depth_model(Path(args.model), args.device)
        summary = compute_depth_maps(Path(args.root), model, opts)
    except DepthModelError as e:
        print(f"liss: {e}", file=sys.stderr)
        return EXIT_USAGE
    for path, reason in summary.failed:
        print(f"{path}: {reason}", file=sys.stderr)
    print(summary)
    return EXIT_FAILED if summary.failed else EXIT_OK


def _compare(args: argparse.Namespace) -> int:
    from liss import runs

    refs = runs.resolve_refs(args.runs, args.sweep,
                             args.uri or os.environ.get("MLFLOW_TRACKING_URI"))
    print(runs.format_table(runs.compare_rows(refs)))
    return EXIT_OK


def _sync(args: argparse.Namespace) -> int:
    from liss import runs

    done = runs.sync(Path(args.run_dir), args.to)
    print("\n".join(done) if done else f"liss: nothing to sync in {args.run_dir}")
    return EXIT_OK


def _sweep(args: argparse.Namespace) -> int:
    # The library never imports `launch`; only this CLI verb hands over to it.
    from launch.cli import main as sweep_main

    return sweep_main(args.args)


def _defaults(args: argparse.Namespace) -> int:
    from liss import config

    print(config.render_defaults(), end="")
    return EXIT_OK


def _add_depth_parser(data: argparse._SubParsersAction) -> None:
    from liss.data import DEPTH_OUTPUTS, IMAGENET_MEAN, IMAGENET_STD

    d = data.add_parser("depth", help="compute missing depth maps with a depth model file",
                        description="Write ROOT/<split>/depths/<stem>.png for every image "
                        "without one, from a monocular depth model (docs/data.md).")
    d.add_argument("root")
    d.add_argument("--model", required=True, help="TorchScript (.pt, .ts) or ONNX (.onnx) "
                   "file: RGB [N,3,S,S] -> [N,1,H,W] or [N,H,W]")
    d.add_argument("--output", default="inverse-depth", choices=DEPTH_OUTPUTS,
                   help="what the model returns: relative inverse depth (MiDaS, DPT, Depth "
                   "Anything) or depth (metric models)")
    d.add_argument("--input-size", type=int, default=None,
                   help="square side fed to the model (default 384, or an ONNX model's fixed "
                   "size; MiDaS/DPT want multiples of 32, Depth Anything of 14)")
    d.add_argument("--mean", type=float, nargs=3, default=IMAGENET_MEAN, metavar=("R", "G", "B"),
                   help="the model sees (rgb in [0,1] - mean) / std (default: ImageNet's)")
    d.add_argument("--std", type=float, nargs=3, default=IMAGENET_STD, metavar=("R", "G", "B"))
    d.add_argument("--percentile", type=float, default=99.0,
                   help="this percentile of each map's inverse depth is stored as 1 (nearest)")
    d.add_argument("--splits", default="", metavar="A,B,...",
                   help="comma-separated split folders (trainA ... testB) or splits (train, "
                   "val, test: both domains); default: every split folder present")
    d.add_argument("--batch-size", type=int, default=4)
    d.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    d.add_argument("--overwrite", action="store_true",
                   help="recompute every map (default: keep maps that exist and decode)")
    d.set_defaults(func=_depth)


def _show(args: argparse.Namespace) -> int:
    from liss import config

    cfg, sources = config.provenance(*_config_args(args))
    print(config.render_provenance(cfg, sources), end="")
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    from liss import resources

    configs = resources.shipped_dir("configs")
    for what, folder, names in (
            ("configs (liss train NAME, liss config show NAME)", configs,
             resources.shipped_configs()),
            ("sweep specs (liss sweep NAME --launcher ...)", configs / "sweeps",
             resources.shipped_sweeps())):
        print(f"{what}, in {folder}:")
        print("".join(f"  {name}\n" for name in names), end="")
    return EXIT_OK


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    from liss.resources import shipped_configs

    p.add_argument("config", nargs="?", help="YAML config file, or the name of a shipped "
                   f"config ({', '.join(shipped_configs())}); the defaults when omitted")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides, e.g. train.max_steps=50 schedule.task_schedule=liss")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="liss", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a LiSS model", epilog="Every key with its default "
                       "and meaning: `liss config defaults`. What a config resolves to, and "
                       "where each value comes from: `liss config show CONFIG [key=value ...]`. "
                       "The shipped configs and sweep specs: `liss config list`.")
    _add_config_arguments(t)
    t.set_defaults(func=_train)

    data = sub.add_parser("data", help="datasets").add_subparsers(dest="data_cmd", required=True)
    s = data.add_parser("synth", help="write the built-in synthetic benchmark dataset")
    s.add_argument("out", help="output folder (CycleGAN layout)")
    s.add_argument("--n-train", type=int, default=200, help="train images per domain")
    s.add_argument("--n-test", type=int, default=50, help="test images per domain")
    s.add_argument("--size", type=int, default=128, help="image side in pixels")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--if-missing", action="store_true",
                   help="do nothing when a complete dataset is already there")
    s.set_defaults(func=_synth)
    c = data.add_parser("check", help="scan a dataset for unreadable files and missing depth")
    c.add_argument("root")
    c.add_argument("--crop-size", type=int, default=None,
                   help="also report images smaller than this")
    c.add_argument("--depth", choices=("auto", "require", "ignore"), default="auto",
                   help="depth maps: required when every train/val image has one, as "
                   "tasks.auxiliary_tasks=auto trains depth then (auto), always, or never")
    c.add_argument("--no-depth", action="store_true", help="the same as --depth ignore")
    c.add_argument("--strict", action="store_true",
                   help="warnings (orphan depth maps, images smaller than the crop) fail too")
    c.set_defaults(func=_check)
    _add_depth_parser(data)

    runs = sub.add_parser("runs", help="compare and sync tracked runs").add_subparsers(
        dest="runs_cmd", required=True)
    rc = runs.add_parser("compare", help="a table of runs' final metrics and phase timings")
    rc.add_argument("runs", nargs="*", help="run folders, sweep folders, or run ids (--uri)")
    rc.add_argument("--sweep", help="every run tagged with this sweep_id (with --uri)")
    rc.add_argument("--uri", help="tracking store of run ids / the sweep "
                    "(default: $MLFLOW_TRACKING_URI)")
    rc.set_defaults(func=_compare)
    from liss.eval.cli import add_forgetting_arguments
    from liss.eval.cli import register as register_eval

    add_forgetting_arguments(runs.add_parser(
        "forgetting", help="each task's metric when it was switched off vs at the end"))
    rs = runs.add_parser("sync", help="send records kept locally during a server outage")
    rs.add_argument("run_dir")
    rs.add_argument("--to", help="tracking URI (default: the server the run was logging to)")
    rs.set_defaults(func=_sync)

    sub.add_parser("sweep", add_help=False, help="fan a sweep spec out to local torchrun, "
                   "SLURM or Kubernetes (`liss sweep --help`); `liss sweep status|report`")

    register_eval(sub)

    cfg = sub.add_parser("config", help="configs").add_subparsers(dest="config_cmd", required=True)
    d = cfg.add_parser("defaults", help="print every option with its default (default.yaml)")
    d.set_defaults(func=_defaults)
    show = cfg.add_parser("show", help="the resolved config; each non-default value says where "
                          "it was set (the config file, its name, or an override)")
    _add_config_arguments(show)
    show.set_defaults(func=_show)
    ls = cfg.add_parser("list", help="the shipped configs and sweep specs, by name")
    ls.set_defaults(func=_list)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from liss.config import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sweep"]:  # `launch` parses its own arguments, --help included
        args = argparse.Namespace(func=_sweep, args=argv[1:])
    else:
        args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"liss: config error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        from liss.data.images import BadImageError

        if not isinstance(e, BadImageError):
            raise
        print(f"liss: data error: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("liss: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
