"""torch and DALI shard the stream alike across real torchrun processes: disjoint and complete
over the ranks, with an unreadable file dropped on both ranks alike."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from liss.data.sampler import StreamSampler

BACKENDS = ("torch", "dali")
REPO = Path(__file__).resolve().parents[2]


SHARD_SCRIPT = """
import json, sys
import torch.distributed as dist
from liss import config
from liss.data.pipeline import build_pipeline

out, root, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
result = {}
for backend in ("torch", "dali"):
    cfg = config.load(None, [f"data.root={root}", f"data.backend={backend}",
                             "data.batch_size=4", "data.num_workers=0", "data.load_size=40",
                             "data.crop_size=32", "data.on_bad_file=skip", "train.device=cpu"])
    data = build_pipeline(cfg, rank=rank, world_size=world)
    batches = data.train_batches()
    seen = {"A": [], "B": []}
    for _ in range(steps):
        batch = next(batches)
        for d in "AB":
            seen[d] += list(zip(batch[d].key.tolist(), batch[d].index.tolist()))
    train = data.splits["train"]
    result[backend] = {"seen": seen, "n": [len(train.A), len(train.B)],
                       "skipped": [[str(p), r] for p, r in data.skipped_files["train"]]}
with open(f"{out}/rank{rank}.json", "w") as f:
    json.dump(result, f)
dist.destroy_process_group()
"""


def test_two_torchrun_ranks_are_disjoint_and_complete(synth_root: Path, tmp_path: Path) -> None:
    """Real torchrun, both backends, with an unreadable file the scan (sharded over the ranks,
    then gathered) must drop on both ranks alike."""
    root = shutil.copytree(synth_root, tmp_path / "ds")
    (root / "trainA" / "zz.jpg").write_bytes(b"")
    shutil.copy(root / "trainA" / "depths" / "00000.png", root / "trainA" / "depths" / "zz.png")
    script = tmp_path / "shard.py"
    script.write_text(SHARD_SCRIPT)
    steps = 9  # 9 train images per domain, global batch 4: 36 positions = 4 epochs
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(script), str(tmp_path), str(root), str(steps)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
        env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for backend in BACKENDS:
        r0, r1 = ranks[0][backend], ranks[1][backend]
        assert r0["skipped"] == r1["skipped"] == [[str(root / "trainA" / "zz.jpg"),
                                                   "empty file (0 bytes)"]]
        n_A, n_B = r0["n"]
        assert (n_A, n_B) == (9, 9)
        stream = StreamSampler(n_A, n_B, seed=0, local_batch=4)
        refs = [stream.sample(p) for p in range(4 * steps)]
        keys = [{k for k, _ in r["seen"]["A"]} for r in (r0, r1)]
        assert not keys[0] & keys[1]  # disjoint
        assert keys[0] | keys[1] == {r.key_A for r in refs}  # complete
        indices = [i for r in (r0, r1) for _, i in r["seen"]["A"]]
        assert sorted(indices) == sorted(list(range(n_A)) * 4)  # every image once per epoch
        for rank, r in enumerate((r0, r1)):  # each rank holds its block of every step
            mine = [ref for p, ref in enumerate(refs) if (p // 2) % 2 == rank]
            assert r["seen"]["B"] == [[ref.key_B, ref.index_B] for ref in mine]
    assert ranks[0]["torch"]["seen"] == ranks[0]["dali"]["seen"]
