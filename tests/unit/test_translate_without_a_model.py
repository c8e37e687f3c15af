"""`liss translate`'s pieces that need no trained model: direction to generator, tile
placement and blending, cross-fades, batching by shape, and the refusal of ONNX files."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from liss.cli import main
from liss.eval import tiling
from liss.eval.generators import model_domain
from liss.eval.translate import shape_batches


def test_direction_follows_the_dataset_not_the_config_domain() -> None:
    assert model_domain("AtoB", "AtoB") == "A" and model_domain("BtoA", "AtoB") == "B"
    assert model_domain("AtoB", "BtoA") == "B" and model_domain("BtoA", "BtoA") == "A"


def test_tiles_are_placed_and_blended_exactly() -> None:
    """With a per-pixel network tiling must be exact: any misplaced tile or unnormalised
    blend weight shows."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Tanh())
    x = torch.rand(2, 3, 70, 101) * 2 - 1
    with torch.no_grad():
        full = net(x)
    for tile, overlap in ((32, 8), (40, 0), (64, 31), (16, 6)):
        tiled = tiling.run(net, x, tile=tile, overlap=overlap, batch_size=1)
        torch.testing.assert_close(tiled, full, atol=1e-6, rtol=0)
    assert tiling.tile_starts(101, 32, 8) == [0, 23, 46, 69]  # overlaps 9, 9, 9
    assert tiling.tile_starts(96, 32, 0) == [0, 32, 64] and tiling.tile_starts(20, 32, 8) == [0]


def test_overlaps_cross_fade_linearly() -> None:
    """Two tiles overlapping by 4 columns, each translated to a constant (0, then 1): the
    overlap fades from one to the other in equal steps."""
    calls = iter(range(10))

    def net(t: torch.Tensor) -> torch.Tensor:
        return torch.full((t.shape[0], 3, *t.shape[-2:]), float(next(calls)))

    y = tiling.run(net, torch.zeros(1, 3, 8, 12), tile=8, overlap=4, batch_size=1)
    expected = torch.tensor([0, 0, 0, 0, 0.2, 0.4, 0.6, 0.8, 1, 1, 1, 1])
    torch.testing.assert_close(y[0, :, 3], expected.expand(3, -1))


def test_batches_group_equal_shapes_and_keep_every_image() -> None:
    shapes = [(3, 8, 8), (3, 8, 12), (3, 8, 8), (3, 300, 40), (3, 8, 12), (3, 8, 8),
              (3, 8, 8), (3, 5, 5)]
    items = [(Path(str(i)), torch.zeros(s)) for i, s in enumerate(shapes)]
    batches = list(shape_batches(iter(items), batch_size=2, tile=100))
    assert sorted(p for b in batches for p, _ in b) == sorted(p for p, _ in items)
    for b in batches:
        assert len({tuple(x.shape) for _, x in b}) == 1 and len(b) <= 2
    assert [len(b) for b in batches if b[0][1].shape[-2] == 300] == [1]  # tiled: alone


def test_onnx_file_is_refused_for_translation(tmp_path: Path, capsys) -> None:
    (tmp_path / "m.onnx").write_bytes(b"x")
    (tmp_path / "in.png").write_bytes(b"x")
    code = main(["translate", "--checkpoint", str(tmp_path / "m.onnx"), "--input",
                 str(tmp_path / "in.png"), "--output", str(tmp_path / "o")])
    assert code == 2 and "ONNX exports are for serving" in capsys.readouterr().err
