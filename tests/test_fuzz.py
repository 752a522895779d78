"""The libFuzzer targets (tests/fuzz/README.md) built with Clang under ASan and UBSan: their
regression inputs and seed corpora replayed, then each target fuzzed for a bounded time
($MAMBALITE_FUZZ_SECONDS, 45 by default) from its seeds. A finding fails the test with the
sanitizer's report and the input's path; fix it and add the input to tests/fuzz/regressions/.
Needs cmake, ninja (pip) and clang (Debian's clang package). The tokenizer's target is Python
(atheris, from the test extra) and runs the same way without them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FUZZ = ROOT / "tests" / "fuzz"
TARGETS = {"fuzz_gguf": "gguf", "fuzz_state": "state", "fuzz_kernels": "kernels"}  # -> corpus
SECONDS = int(os.environ.get("MAMBALITE_FUZZ_SECONDS", "45"))

needs_clang = pytest.mark.skipif(shutil.which("clang++") is None or shutil.which("cmake") is None,
                                 reason="needs clang++ (Debian package clang) and cmake")


@pytest.fixture(scope="module")
def fuzzers(tmp_path_factory) -> dict[str, Path]:
    build = tmp_path_factory.mktemp("fuzz-build")
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build), *gen,
                    "-DCMAKE_CXX_COMPILER=clang++", "-DCMAKE_BUILD_TYPE=Release",
                    "-DMAMBALITE_CUDA=OFF", "-DMAMBALITE_BUILD_FUZZERS=ON"],
                   check=True, capture_output=True, text=True)
    r = subprocess.run(["cmake", "--build", str(build), "--target", *TARGETS, "--parallel", "2"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    return {t: build / t for t in TARGETS}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """fuzz_state's models: the f32 seed file of every architecture."""
    models = tmp_path_factory.mktemp("fuzz-models")
    for f in sorted((FUZZ / "corpus" / "gguf").glob("*-f32.gguf")):
        shutil.copy(f, models / f.name)
    return {**os.environ, "MAMBALITE_FUZZ_MODELS": str(models)}


def run(binary: Path, args: list[str], env: dict[str, str], timeout: float) -> None:
    r = subprocess.run([str(binary), "-rss_limit_mb=2048", "-timeout=20", *args],
                       capture_output=True, text=True, env=env, timeout=timeout)
    report = "\n".join(line for line in r.stderr.splitlines() if "# Uses:" not in line)
    assert r.returncode == 0, report[-8000:]


@needs_clang
@pytest.mark.parametrize("target", list(TARGETS))
def test_regressions_and_seeds_replay(fuzzers, env, target):
    kind = TARGETS[target]
    inputs = sorted((FUZZ / "regressions" / kind).glob("*")) + \
        sorted((FUZZ / "corpus" / kind).glob("*"))
    assert len(inputs) >= 2
    run(fuzzers[target], [str(p) for p in inputs], env, timeout=600)


@needs_clang
@pytest.mark.parametrize("target", list(TARGETS))
def test_fuzz_for_a_bounded_time(fuzzers, env, target, tmp_path):
    kind = TARGETS[target]
    corpus = tmp_path / "corpus"  # new inputs land here, not in the repository
    shutil.copytree(FUZZ / "corpus" / kind, corpus)
    run(fuzzers[target], [f"-max_total_time={SECONDS}", f"-artifact_prefix={tmp_path}/",
                          str(corpus)], env, timeout=SECONDS + 300)


def run_tokenizer_target(args: list[str], timeout: float) -> None:
    pytest.importorskip("atheris", reason="atheris (test extra, Linux wheels) is not installed")
    r = subprocess.run([sys.executable, str(FUZZ / "fuzz_tokenizer.py"), "-rss_limit_mb=2048",
                        "-timeout=20", *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (r.stdout + r.stderr)[-8000:]


def test_tokenizer_regressions_replay():
    inputs = sorted((FUZZ / "regressions" / "tokenizer").glob("*"))
    assert len(inputs) >= 3
    run_tokenizer_target([str(p) for p in inputs], timeout=300)


def test_tokenizer_fuzz_for_a_bounded_time(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(FUZZ / "regressions" / "tokenizer", corpus)
    run_tokenizer_target([f"-max_total_time={SECONDS}", f"-artifact_prefix={tmp_path}/",
                          str(corpus)], timeout=SECONDS + 300)
