"""Memory and long-context targets of a 130m Q8_0 model and a Granite-4.0-H-350M-shaped hybrid,
each in a fresh Python process:

- peak RSS at most the GGUF file's size + 64 MB above the process's RSS before loading (the
  interpreter, numpy and mambalite's imports), since the weights are mmapped and used in place;
  for the hybrid, plus its KV cache, allocated once for n_ctx positions;
- no RSS growth from decoded token 1,000 to 10,000 (`Model.step` with random ids: these
  random-weight models have no tokenizer; tests/test_memory.py checks `generate` itself on a small
  model);
- decode at position 20,000 within 5% of position 100 for pure Mamba (the state has a fixed
  size), and for the hybrid at position 4,000 within 15% of position 100 (its 4 attention layers
  read a cache that grows with the position), interleaved rounds, medians.

    pytest bench/test_bench_memory.py -s
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, statistics, sys, time
    import numpy as np
    import mambalite

    def status_mb(key):
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no " + key)

    def rss_mb():
        return status_mb("VmRSS")

    path, task, far_pos, n_ctx = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    base = rss_mb()
    m = mambalite.load(path, threads=2, n_ctx=n_ctx or None)
    out = {"base_mb": base, "kv_mb": m.new_state().kv_nbytes / 2**20}
    if task == "generate":
        s = m.new_state()
        m.prefill(s, [1, 2, 3])
        rng = np.random.default_rng(0)
        ids = rng.integers(1, m.config.vocab_size, size=10_000).tolist()
        for i, t in enumerate(ids, 1):
            m.step(s, t)
            if i == 1_000:
                out["rss_1000_mb"] = rss_mb()
        out["rss_10000_mb"] = rss_mb()
    else:  # decode time at position ~100 against far_pos, rounds alternating
        rng = np.random.default_rng(1)
        near, far = m.new_state(), m.new_state()
        m.prefill(near, rng.integers(1, m.config.vocab_size, size=100))
        m.prefill(far, rng.integers(1, m.config.vocab_size, size=far_pos))
        times = {"near": [], "far": []}
        for _ in range(15):
            for name, st in (("near", near), ("far", far)):
                s = st.copy()
                t0 = time.perf_counter()
                for _ in range(20):
                    m.step(s, 7)
                times[name].append((time.perf_counter() - t0) / 20)
        out["near_ms"] = statistics.median(times["near"]) * 1e3
        out["far_ms"] = statistics.median(times["far"]) * 1e3
        out["far_tokens"] = far.n_tokens
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec, so a child of a large pytest
    # process (one that has just built a model with torch) would report the parent's peak.
    out["peak_mb"] = status_mb("VmHWM")
    print(json.dumps(out))
""")


def run(path: Path, task: str, far_pos: int = 20_000, n_ctx: int = 0) -> dict:
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(path), task, str(far_pos), str(n_ctx)],
                       capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_rss_over_10000_tokens(model_file):
    path = model_file("130m", "q8_0")
    size_mb = path.stat().st_size / 2**20
    r = run(path, "generate")
    growth = r["rss_10000_mb"] - r["rss_1000_mb"]
    print(f"\n130m q8_0 ({size_mb:.0f} MB file): RSS {r['base_mb']:.0f} MB before loading, peak "
          f"{r['peak_mb']:.0f} MB (+{r['peak_mb'] - r['base_mb']:.0f}); token 1,000 -> 10,000: "
          f"{r['rss_1000_mb']:.1f} -> {r['rss_10000_mb']:.1f} MB")
    assert r["peak_mb"] - r["base_mb"] <= size_mb + 64
    assert growth < 1.0, f"RSS grew by {growth:.2f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_decode_time_independent_of_position(model_file):
    r = run(model_file("130m", "q8_0"), "position")
    ratio = r["far_ms"] / r["near_ms"]
    print(f"\n130m q8_0 decode at position {r['far_tokens']}: {r['far_ms']:.2f} ms/token; at "
          f"~100: {r['near_ms']:.2f} ms/token (ratio {ratio:.3f})")
    assert r["far_tokens"] >= 20_000
    assert ratio < 1.05


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_hybrid_rss_over_10000_tokens(model_file):
    path = model_file("granite-h-350m", "q8_0")
    size_mb = path.stat().st_size / 2**20
    r = run(path, "generate", n_ctx=10_240)
    growth = r["rss_10000_mb"] - r["rss_1000_mb"]
    print(f"\ngranite-h-350m q8_0 ({size_mb:.0f} MB file, KV {r['kv_mb']:.0f} MB for 10,240 "
          f"positions): RSS {r['base_mb']:.0f} MB before loading, peak {r['peak_mb']:.0f} MB "
          f"(+{r['peak_mb'] - r['base_mb']:.0f}); token 1,000 -> 10,000: "
          f"{r['rss_1000_mb']:.1f} -> {r['rss_10000_mb']:.1f} MB")
    assert r["peak_mb"] - r["base_mb"] <= size_mb + r["kv_mb"] + 64
    assert growth < 1.0, f"RSS grew by {growth:.2f} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_hybrid_decode_at_position_4000(model_file):
    r = run(model_file("granite-h-350m", "q8_0"), "position", far_pos=4_000)
    ratio = r["far_ms"] / r["near_ms"]
    print(f"\ngranite-h-350m q8_0 decode at position {r['far_tokens']}: {r['far_ms']:.2f} "
          f"ms/token; at ~100: {r['near_ms']:.2f} ms/token (ratio {ratio:.3f})")
    assert ratio < 1.15
