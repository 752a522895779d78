"""The C++ kernel test (tests/cpp/kernel_test.cpp): every ISA table against the scalar one, built
natively and cross-compiled for AArch64 and run under qemu-user, so the NEON kernels are checked
on any x86 machine. Needs cmake and ninja (pip) and, for ARM, Debian's g++-aarch64-linux-gnu and
qemu-user."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def build_and_run(build_dir: Path, cmake_args: list[str], runner: list[str]) -> str:
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run([cmake, "-S", str(ROOT), "-B", str(build_dir), *gen,
                    "-DMAMBALITE_BUILD_TESTS=ON", "-DCMAKE_BUILD_TYPE=Release", *cmake_args],
                   check=True, capture_output=True, text=True)
    subprocess.run([cmake, "--build", str(build_dir), "--target", "mambalite_kernel_test",
                    "--parallel", "2"], check=True, capture_output=True, text=True)
    r = subprocess.run([*runner, str(build_dir / "mambalite_kernel_test")], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout
    return r.stdout


def test_native_kernels(tmp_path):
    from mambalite._core import kernels

    out = build_and_run(tmp_path / "native", [], [])
    assert f"tested: {','.join(kernels.available_isas())}" in out


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None or
                    shutil.which("qemu-aarch64") is None,
                    reason="needs Debian's g++-aarch64-linux-gnu and qemu-user")
def test_neon_kernels_under_qemu(tmp_path):
    out = build_and_run(
        tmp_path / "arm",
        ["-DCMAKE_SYSTEM_NAME=Linux", "-DCMAKE_SYSTEM_PROCESSOR=aarch64",
         "-DCMAKE_CXX_COMPILER=aarch64-linux-gnu-g++"],
        ["qemu-aarch64", "-cpu", "max", "-L", "/usr/aarch64-linux-gnu"])
    assert "tested: neon,scalar" in out
