"""Task inputs and targets are what they claim: rotations, puzzles, gray, depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from liss import rng
from liss.tasks import build_tasks
from liss.tasks.depth import depth_target
from liss.tasks.gray import to_gray
from liss.tasks.jigsaw import GRID, N_PERMUTATIONS, jigsaw, permutations, tile_size
from liss.tasks.rotation import rotation_stack


def coordinate_image(n: int, size: int) -> torch.Tensor:
    """[n,3,size,size]: channel 0 = row, 1 = column, 2 = sample index (exact in float32)."""
    rows = torch.arange(size, dtype=torch.float32)[:, None].expand(size, size)
    cols = torch.arange(size, dtype=torch.float32)[None, :].expand(size, size)
    return torch.stack([torch.stack([rows, cols, torch.full_like(rows, i)]) for i in range(n)])


def test_rotation_stack_matches_pil_counter_clockwise_rotations() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    stack, labels = rotation_stack(x)
    assert stack.shape == (8, 3, 8, 8)
    assert labels.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    for i in range(2):
        pil = Image.fromarray((x[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
        for k in range(4):
            expected = np.asarray(pil.rotate(90 * k)).astype(np.float32) / 255  # PIL: CCW
            got = stack[4 * i + k].permute(1, 2, 0).numpy()
            np.testing.assert_allclose(got, expected, atol=1 / 255 + 1e-6)
            assert labels[4 * i + k] == k


def test_rotation_of_non_square_images_uses_the_largest_centred_square() -> None:
    """data.preprocess=none: the four copies of a 6x10 image are of its centred 6x6."""
    images = torch.arange(2 * 3 * 6 * 10, dtype=torch.float32).view(2, 3, 6, 10)
    stack, labels = rotation_stack(images)
    assert stack.shape == (8, 3, 6, 6) and labels.tolist() == [0, 1, 2, 3] * 2
    square = images[..., 2:8]
    for k in range(4):
        assert torch.equal(stack[k::4], torch.rot90(square, k, dims=(-2, -1)))
    assert torch.equal(rotation_stack(square)[0], stack)  # square images: unchanged


def test_permutation_table() -> None:
    table = permutations()
    assert table.shape == (N_PERMUTATIONS, GRID * GRID)
    assert len({tuple(p) for p in table}) == N_PERMUTATIONS
    assert all(sorted(p) == list(range(9)) for p in table)
    assert table[0].tolist() == list(range(9))
    distances = (table[:, None] != table[None, :]).sum(-1)
    off_diagonal = distances[~np.eye(N_PERMUTATIONS, dtype=bool)]
    assert off_diagonal.min() >= 7  # a maximal-Hamming set: puzzles are far apart
    permutations.cache_clear()
    assert np.array_equal(permutations(), table)  # deterministic, not stored


@pytest.mark.parametrize("size", [32, 64, 256])
def test_jigsaw_output_is_its_permutation_of_contiguous_tiles(size: int) -> None:
    n = 5
    x = coordinate_image(n, size)
    puzzle, target = jigsaw(x, torch.arange(n) * 7919)
    t = tile_size(size)
    assert puzzle.shape == (n, 3, GRID * t, GRID * t)
    table = permutations()
    for i in range(n):
        origin = None
        for p in range(GRID * GRID):
            gy, gx = divmod(p, GRID)
            block = puzzle[i, :, gy * t:(gy + 1) * t, gx * t:(gx + 1) * t]
            y0, x0 = int(block[0, 0, 0]), int(block[1, 0, 0])
            # a contiguous tile: rows and columns advance by one pixel
            assert torch.equal(block[0], y0 + torch.arange(t, dtype=torch.float32)[:, None]
                               .expand(t, t))
            assert torch.equal(block[1], x0 + torch.arange(t, dtype=torch.float32)[None, :]
                               .expand(t, t))
            assert torch.all(block[2] == i)
            ty, tx = divmod(int(table[target[i]][p]), GRID)  # the tile this position holds
            tile_origin = (y0 - ty * t, x0 - tx * t)
            origin = origin or tile_origin
            assert tile_origin == origin  # every tile from the same crop of the image
        assert 0 <= origin[0] <= size - GRID * t and 0 <= origin[1] <= size - GRID * t


def test_jigsaw_draws_depend_on_the_sample_key_only() -> None:
    x = torch.rand(4, 3, 32, 32)
    keys = torch.tensor([11, 22, 33, 44])
    together, t_together = jigsaw(x, keys)
    for i in range(4):
        alone, t_alone = jigsaw(x[i:i + 1], keys[i:i + 1])
        assert torch.equal(alone[0], together[i]) and t_alone[0] == t_together[i]
    labels = jigsaw(torch.rand(64, 3, 32, 32), torch.arange(64))[1]
    assert len(set(labels.tolist())) > 20  # keys spread the labels


def test_keyed_randint_is_uniform_and_stream_independent() -> None:
    keys = torch.arange(64_000)
    counts = torch.bincount(rng.randint(keys, 1, 64), minlength=64).float()
    assert (counts / counts.mean() - 1).abs().max() < 0.1
    assert (rng.randint(keys, 1, 64) == rng.randint(keys, 2, 64)).float().mean() < 0.03


def test_gray_matches_pil_luminance() -> None:
    torch.manual_seed(0)
    img = (torch.rand(3, 16, 16) * 255).round()
    pil = Image.fromarray(img.permute(1, 2, 0).numpy().astype(np.uint8)).convert("L")
    x = (img / 255 * 2 - 1)[None]
    gray = to_gray(x)
    assert gray.shape == (1, 3, 16, 16)
    assert torch.equal(gray[0, 0], gray[0, 2])
    expected = torch.from_numpy(np.asarray(pil).astype(np.float32)) / 255 * 2 - 1
    assert (gray[0, 0] - expected).abs().max() <= 2 / 255 + 1e-6  # PIL rounds to 8 bits


def test_depth_target_is_normalised_log_depth() -> None:
    stored = torch.tensor([1.0, 0.5, 6 / 255, 0.0])
    expected = (-torch.log(stored + 1e-6) - 2) / 2
    assert torch.allclose(depth_target(stored), expected)
    assert depth_target(torch.tensor([1.0])).item() == pytest.approx(-1.0, abs=1e-5)


def test_depth_task_needs_depth() -> None:
    (task,) = build_tasks(["depth"])
    with pytest.raises(ValueError, match="depth maps"):
        task.inputs(torch.rand(1, 3, 8, 8), None, torch.arange(1))


def test_tasks_are_sorted_by_priority_and_unknown_names_fail() -> None:
    names = [t.name for t in build_tasks(["gray", "depth", "jigsaw", "rotation"])]
    assert names == ["rotation", "jigsaw", "depth", "gray"]
    with pytest.raises(ValueError, match="unknown auxiliary task"):
        build_tasks(["rotation", "colour"])
