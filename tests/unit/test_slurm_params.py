"""What the SLURM launcher asks submitit for, from a sweep spec's resources and slurm
settings: no cluster, no process. (On a real cluster: integration/test_slurm.py.)"""

from __future__ import annotations

from pathlib import Path

from launch.slurm import executor_parameters
from launch.sweep import load_spec


def test_resources_map_to_submitit_parameters(tmp_path: Path) -> None:
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("""
name: big
resources: {nodes: 2, gpus_per_node: 4, cpus_per_task: 8, mem_gb: 64, timeout_min: 240}
slurm: {partition: gpu, account: lab, qos: high, constraint: a100, signal_delay_s: 120,
        additional_parameters: {exclusive: true}, setup: [module load cuda]}
""")
    assert executor_parameters(load_spec(spec_path), max_parallel=3) == {
        "name": "liss-big", "nodes": 2, "tasks_per_node": 4, "gpus_per_node": 4,
        "cpus_per_task": 8, "mem_gb": 64, "timeout_min": 240, "slurm_array_parallelism": 3,
        "slurm_partition": "gpu", "slurm_account": "lab", "slurm_qos": "high",
        "slurm_constraint": "a100", "slurm_additional_parameters": {"exclusive": True},
        "slurm_setup": ["module load cuda"], "slurm_signal_delay_s": 120}
    spec_path.write_text("name: cpu\nresources: {nproc_per_node: 2}\n")
    params = executor_parameters(load_spec(spec_path), max_parallel=1)
    assert params["tasks_per_node"] == 2 and "gpus_per_node" not in params
