"""CLI verbs for inference and evaluation, registered into `liss` by `liss.cli`:
`liss translate`, `liss export`, `liss eval` and `liss forgetting`.

Heavy imports happen inside the verbs. Every expected failure (a missing or foreign file, a
missing dataset, no Inception weights) is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from liss.eval import EXPORT_FORMATS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _device(name: str):
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from liss.eval.generators import LoadError

        raise LoadError("--device cuda: no CUDA device is available here")
    return torch.device(name)


def _translate(args: argparse.Namespace) -> int:
    from liss.eval.generators import directions_for, load_translator
    from liss.eval.translate import Options, collect_inputs, translate_files

    opts = Options(directions=directions_for(args.direction), batch_size=args.batch_size,
                   size=args.size, tile=args.tile, overlap=args.overlap,
                   side_by_side=args.side_by_side, png=args.png)
    if opts.tile and not 0 <= opts.overlap < opts.tile:
        print(f"liss: --overlap must be in [0, --tile) (got {opts.overlap}, tile {opts.tile})",
              file=sys.stderr)
        return EXIT_USAGE
    files = collect_inputs(args.input)
    device = _device(args.device)
    translator = load_translator(Path(args.checkpoint), opts.directions, device)
    out = Path(args.output)
    result = translate_files(translator, files, out, opts, device)
    for path, reason in result.failed:
        print(f"liss: skipped {path}: {reason}", file=sys.stderr)
    print(f"translated {len(result.outputs)} of {len(files)} images "
          f"({'+'.join(opts.directions)}, {translator.kind} of step {translator.step}) in "
          f"{result.seconds:.1f} s "
          f"({result.images_per_s:.2f} images/s) into {out}; contact sheet "
          f"{out / 'index.html'}")
    return EXIT_FAILED if result.failed else EXIT_OK


def _export(args: argparse.Namespace) -> int:
    from liss.eval.export import export
    from liss.eval.generators import directions_for

    written = export(Path(args.checkpoint), Path(args.output), args.format,
                     directions_for(args.direction))
    for path in written:
        print(f"wrote {path}")
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from liss.eval.evaluate import evaluate, format_report

    report = evaluate(Path(args.checkpoint), Path(args.data), split=args.split,
                      fid=args.fid, inception_weights=args.inception_weights,
                      fid_dir=Path(args.fid_dir) if args.fid_dir else None,
                      batch_size=args.batch_size, device=_device(args.device))
    print(format_report(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return EXIT_OK


def _forgetting(args: argparse.Namespace) -> int:
    from liss.eval.forgetting import run_forgetting

    print(run_forgetting(args.runs, uri=args.uri, out=Path(args.out),
                         json_path=Path(args.json) if args.json else None,
                         log=not args.no_log))
    return EXIT_OK


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Expected failures as one line and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        from liss.checkpoint import CheckpointError
        from liss.eval.generators import LoadError

        try:
            return func(args)
        except (LoadError, CheckpointError) as e:
            print(f"liss: {e}", file=sys.stderr)
            return EXIT_USAGE

    return run


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_forgetting_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of `liss forgetting` (also what `liss runs forgetting` takes)."""
    p.add_argument("runs", nargs="+", help="run folders, sweep folders, or run ids (--uri)")
    p.add_argument("--uri", help="tracking store of run ids")
    p.add_argument("--out", default="forgetting.png", help="the figure (PNG)")
    p.add_argument("--json", help="also write the table as JSON here")
    p.add_argument("--no-log", action="store_true",
                   help="do not log the figure and table to the runs (MLflow artifacts)")
    p.set_defaults(func=_guarded(_forgetting))


def register(sub: argparse._SubParsersAction) -> None:
    """Add this package's verbs (`liss translate`, `liss eval`, `liss export`, ...)."""
    checkpoint_help = ("full-state checkpoint, generators.pt, or a liss export "
                       "(state_dict, safetensors, TorchScript)")
    t = sub.add_parser("translate", help="translate images with a trained model")
    t.add_argument("--checkpoint", required=True, help=checkpoint_help)
    t.add_argument("--input", required=True, nargs="+", help="image files and/or folders")
    t.add_argument("--output", required=True, help="output folder")
    t.add_argument("--direction", default="AtoB", choices=("AtoB", "BtoA", "both"),
                   help="the dataset's direction (AtoB: images like trainA -> like trainB)")
    t.add_argument("--batch-size", type=_positive, default=4)
    size = t.add_mutually_exclusive_group()
    size.add_argument("--size", type=_positive,
                      help="resize the shorter side to this many pixels (keeps the aspect)")
    size.add_argument("--keep-size", action="store_true", help="keep every image's size "
                      "(the default)")
    t.add_argument("--tile", type=_non_negative, default=1024,
                   help="an image with a side above this many pixels runs within the memory of "
                   "--batch-size tiles of this size, tiled if it must be (0: never tile)")
    t.add_argument("--overlap", type=_non_negative, default=128,
                   help="overlap of neighbouring tiles, blended")
    t.add_argument("--side-by-side", action="store_true",
                   help="also write input|output pictures to side_by_side/")
    t.add_argument("--png", action="store_true", help="write PNG (default: the input's format)")
    t.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    t.set_defaults(func=_guarded(_translate))

    x = sub.add_parser("export", help="write generator-only weights for inference/serving")
    x.add_argument("--checkpoint", required=True, help="full-state checkpoint or generators.pt")
    x.add_argument("--output", required=True, help="output file (torchscript/onnx with "
                   "--direction both: one file per direction, NAME.AtoB.EXT and NAME.BtoA.EXT)")
    x.add_argument("--format", default="state_dict", choices=EXPORT_FORMATS)
    x.add_argument("--direction", default="both", choices=("AtoB", "BtoA", "both"))
    x.set_defaults(func=_guarded(_export))

    e = sub.add_parser("eval", help="translation quality, FID/KID and task metrics on a split")
    e.add_argument("--checkpoint", required=True, help="full-state checkpoint (every metric), "
                   "generators.pt or a state_dict/safetensors export (fewer)")
    e.add_argument("--data", required=True, help="dataset root (CycleGAN layout, gt/ for truth)")
    e.add_argument("--split", default="test", choices=("train", "val", "test"))
    e.add_argument("--json", help="write every number, with checkpoint and config, here")
    e.add_argument("--fid", action="store_true", help="also FID and KID per direction "
                   "(torch-fidelity; full images translated to 8-bit PNGs)")
    e.add_argument("--inception-weights",
                   help="pt_inception-2015-12-05-6726825d.pth (or $LISS_INCEPTION_WEIGHTS)")
    e.add_argument("--fid-dir", help="keep the translated PNGs FID/KID are computed from here "
                   "(DIR/A2B, DIR/B2A; default: a temporary folder)")
    e.add_argument("--batch-size", type=_positive, default=8)
    e.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    e.set_defaults(func=_guarded(_eval))

    f = sub.add_parser("forgetting", help="each task's metric when switched off vs at the end "
                       "(also `liss runs forgetting`)")
    add_forgetting_arguments(f)
