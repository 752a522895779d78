"""The C++ kernel test (tests/cpp/kernel_test.cpp): every ISA table against the scalar one, built
natively and cross-compiled for AArch64 and run under qemu-user, so the NEON kernels are checked
on any x86 machine, and with the AVX-512 kernels compiled against SIMDe's portable AVX-512 so they
are checked on CPUs without it. Needs cmake and ninja (pip) and, for ARM, Debian's
g++-aarch64-linux-gnu and qemu-user, for AVX-512 emulation libsimde-dev."""

from __future__ import annotations

import platform
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
                    "-DMAMBALITE_BUILD_TESTS=ON", "-DCMAKE_BUILD_TYPE=Release",
                    "-DMAMBALITE_CUDA=OFF", *cmake_args],
                   check=True, capture_output=True, text=True)
    subprocess.run([cmake, "--build", str(build_dir), "--target", "mambalite_kernel_test",
                    "--parallel", "2"], check=True, capture_output=True, text=True)
    r = subprocess.run([*runner, str(build_dir / "mambalite_kernel_test")], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert " 0 failed" in r.stdout
    return r.stdout


@pytest.fixture(scope="module")
def native_output(tmp_path_factory) -> str:
    """The kernel test built for this machine and run once for the tests below."""
    return build_and_run(tmp_path_factory.mktemp("native"), [], [])


def test_native_kernels(native_output):
    from mambalite._core import kernels

    out = native_output
    assert f"tested: {','.join(kernels.available_isas())}" in out


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 kernels")
@pytest.mark.skipif(not Path("/usr/include/simde/x86/avx512.h").exists(),
                    reason="needs Debian's libsimde-dev (SIMDe's portable AVX-512)")
def test_avx512_kernels_under_simde(native_output):
    """The AVX-512 kernels, compiled once more against SIMDe, on any AVX2 machine."""
    from mambalite._core import kernels

    if "avx2" not in kernels.available_isas():
        pytest.skip("the emulated table reuses the AVX2 entries: needs an AVX2 CPU")
    assert "emulated: avx512" in native_output


@pytest.mark.skipif(shutil.which("clang++") is None, reason="needs clang (Debian package clang)")
def test_kernels_with_clang(tmp_path):
    """The engine builds with Clang too (macOS's compiler; Clang 14 once rejected a CPU-feature
    name that GCC accepts), and its kernels pass the same test."""
    from mambalite._core import kernels

    out = build_and_run(tmp_path / "clang", ["-DCMAKE_CXX_COMPILER=clang++"], [])
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
