"""The engine under ThreadSanitizer: the C++ kernel test (tests/cpp/kernel_test.cpp) and the
threaded evaluation test (tests/cpp/threads_test.cpp: States evaluated from several threads on
one Model and its pool, a ragged batch, copies and serialisation meanwhile; bit-identical to a
sequential run) on a small model of every architecture (the fuzz seeds). Needs cmake, ninja
(pip) and clang (Debian's clang package)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("clang++") is None or shutil.which("cmake") is None,
                                reason="needs clang++ (Debian package clang) and cmake")


@pytest.fixture(scope="module")
def build(tmp_path_factory) -> Path:
    build = tmp_path_factory.mktemp("tsan-build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *gen,
                    "-DCMAKE_CXX_COMPILER=clang++", "-DCMAKE_CXX_FLAGS=-fsanitize=thread -g",
                    "-DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread", "-DCMAKE_BUILD_TYPE=Release",
                    "-DMAMBALITE_CUDA=OFF", "-DMAMBALITE_BUILD_TESTS=ON"],
                   check=True, capture_output=True, text=True)
    r = subprocess.run(["cmake", "--build", str(build), "--target", "mambalite_kernel_test",
                        "mambalite_threads_test", "--parallel", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return build


def run(args: list[str]) -> str:
    env = {**os.environ, "TSAN_OPTIONS": "halt_on_error=1 second_deadlock_stack=1"}
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0 and "ThreadSanitizer" not in r.stderr, \
        r.stdout[-4000:] + r.stderr[-8000:]
    return r.stdout


def test_kernel_test_under_tsan(build):
    assert " 0 failed" in run([str(build / "mambalite_kernel_test")])


def test_threaded_evaluation_under_tsan(build):
    models = sorted((ROOT / "tests" / "fuzz" / "corpus" / "gguf").glob("*-f32.gguf"))
    assert len(models) == 7
    out = run([str(build / "mambalite_threads_test"), *map(str, models)])
    assert "7 models, 0 failed" in out
