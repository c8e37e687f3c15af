"""bf16 units are read from the CPU flags (never torch's private probes), so `precision=auto`
and the benchmarks skip bf16 on CPUs that would only emulate it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest
import torch

from liss import precision
from liss.precision import bf16_supported, resolve_precision

CPU = torch.device("cpu")
AVX2 = "fpu vme de pse tsc msr sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2"


def cpuinfo(flags: str, cores: int = 2) -> str:
    """/proc/cpuinfo as Linux writes it: one block per core, tab before the colon."""
    return "\n\n".join(f"processor\t: {i}\nmodel name\t: Test CPU\nflags\t\t: {flags}\n"
                       f"bogomips\t: 4000.00" for i in range(cores)) + "\n"


@pytest.mark.parametrize(("flags", "expected"), [
    (AVX2, False),
    (AVX2 + " avx512f avx512bw", False),  # AVX-512 without its bf16 extension
    (AVX2 + " avx512f avx512_bf16", True),
    (AVX2 + " amx_bf16 amx_tile amx_int8", True),
    (AVX2 + " avx512_bf16x", False),  # whole flag names only
])
def test_flags_decide(flags: str, expected: bool) -> None:
    assert bf16_supported(CPU, cpuinfo(flags)) is expected


def test_flag_outside_the_flags_line_does_not_count() -> None:
    text = cpuinfo(AVX2).replace("model name\t: Test CPU", "model name\t: avx512_bf16 amx_bf16")
    assert not bf16_supported(CPU, text)


def test_a_path_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo(AVX2 + " amx_bf16"))
    assert bf16_supported(CPU, path)
    path.write_text(cpuinfo(AVX2))
    assert not bf16_supported(CPU, path)
    assert not bf16_supported(CPU, tmp_path / "missing")


def test_no_cpuinfo_outside_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo(AVX2 + " amx_bf16"))
    monkeypatch.setattr(sys, "platform", "darwin")
    assert not bf16_supported(CPU, path)


@pytest.mark.parametrize(("flags", "expected"), [(AVX2, "fp32"), (AVX2 + " avx512_bf16", "bf16")])
def test_auto_follows_the_flags(flags: str, expected: str, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    (tmp_path / "cpuinfo").write_text(cpuinfo(flags))
    monkeypatch.setattr(precision, "CPUINFO", tmp_path / "cpuinfo")
    assert resolve_precision("auto", CPU).name == expected


def test_precision_uses_no_private_torch_names() -> None:
    """The project bans torch's private API (it changes without notice between releases)."""
    tree = ast.parse(Path(precision.__file__).read_text())
    private = [f"line {n.lineno}: .{n.attr}" for n in ast.walk(tree)
               if isinstance(n, ast.Attribute) and n.attr.startswith("_")
               and not n.attr.startswith("__")]
    assert not private
