"""Throughput of many sequences: aggregate decode tokens/s of `Model.step_batch` at batch 1 to 16
against batch 1 and against the model's own prefill rate; batch 8 against llama.cpp decoding 8
parallel sequences of the same file (`llama-batched-bench`, built from llama.cpp's source, e.g.
the `vendor/llama.cpp` folder of the llama-cpp-python sdist: `cmake -B build -DGGML_NATIVE=ON &&
cmake --build build --target llama-batched-bench`; found on PATH or through
$LLAMA_BATCHED_BENCH); and the server's aggregate rate for 8 concurrent streaming clients with
continuous batching on and off (`max_batch=1`).

    pytest bench/test_bench_batch.py -s

Medians of interleaved rounds (these machines are noisy).
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import mambalite

ROUNDS = 5
STEPS = 16


def _step_rate(model, n: int) -> float:
    states = [model.new_state() for _ in range(n)]
    model.prefill_batch(states, [[1, 2, 3, 4]] * n)
    toks = list(range(7, 7 + n))
    t = time.perf_counter()
    for _ in range(STEPS):
        model.step_batch(states, toks)
    return n * STEPS / (time.perf_counter() - t)


def _prefill_rate(model) -> float:
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=512)
    t = time.perf_counter()
    model.prefill(model.new_state(), ids)
    return 512 / (time.perf_counter() - t)


@pytest.mark.parametrize("shape, wtype", [("130m", "q8_0"), ("370m", "q8_0"),
                                          ("mamba2-130m", "q8_0"), ("granite-h-350m", "q8_0"),
                                          ("130m", "q4_k_m")])
def test_batched_decode_throughput(model_file, shape, wtype, record_property):
    model = mambalite.load(model_file(shape, wtype), threads=2)
    sizes = [1, 2, 4, 8, 16]
    rates: dict[int, list[float]] = {n: [] for n in sizes}
    prefill = []
    for r in range(ROUNDS):
        for n in (sizes if r % 2 == 0 else sizes[::-1]):
            rates[n].append(_step_rate(model, n))
        prefill.append(_prefill_rate(model))
    med = {n: statistics.median(v) for n, v in rates.items()}
    p = statistics.median(prefill)
    line = (f"{shape} {wtype} t2: aggregate decode tok/s " +
            ", ".join(f"b{n} {med[n]:.0f} (x{med[n] / med[1]:.2f})" for n in sizes) +
            f"; prefill 512 {p:.0f} tok/s (b8 = {100 * med[8] / p:.0f}% of it)")
    print("\n" + line)
    record_property("batch", line)


def _llama_batched_bench() -> str | None:
    path = os.environ.get("LLAMA_BATCHED_BENCH") or shutil.which("llama-batched-bench")
    return path if path and os.access(path, os.X_OK) else None


def _llama_batched_rate(binary: str, path, n: int) -> float:
    """llama.cpp's aggregate decode tokens/s (S_TG) for n parallel sequences of 4 prompt tokens
    and STEPS generated tokens each, 2 threads."""
    r = subprocess.run([binary, "-m", str(path), "-t", "2", "-tb", "2", "-c", "2048",
                        "-npp", "4", "-ntg", str(STEPS), "-npl", str(n)],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"llama-batched-bench failed: {r.stderr[-2000:]}")
    # |    PP |     TG |    B |   N_KV |   T_PP s | S_PP t/s |   T_TG s | S_TG t/s | ...
    for line in r.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 8 and re.fullmatch(r"\d+", cells[0]) and int(cells[2]) == n:
            return float(cells[7])
    raise RuntimeError(f"no result row in llama-batched-bench's output:\n{r.stdout[-2000:]}")


@pytest.mark.parametrize("shape", ["130m", "370m", "mamba2-130m"])
def test_batched_decode_against_llama_cpp(model_file, shape, record_property):
    binary = _llama_batched_bench()
    if binary is None:
        pytest.skip("llama-batched-bench not found: build it from llama.cpp's source and put it "
                    "on PATH or in $LLAMA_BATCHED_BENCH")
    path = model_file(shape, "q8_0")
    model = mambalite.load(path, threads=2)
    ours, theirs = [], []
    for r in range(ROUNDS):
        for engine in (("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")):
            if engine == "ours":
                ours.append(_step_rate(model, 8))
            else:
                theirs.append(_llama_batched_rate(binary, path, 8))
    a, b = statistics.median(ours), statistics.median(theirs)
    line = (f"{shape} q8_0 t2, 8 sequences: aggregate decode {a:.0f} tok/s vs llama.cpp "
            f"{b:.0f} (x{a / b:.2f})")
    print("\n" + line)
    record_property("batch_vs_llama_cpp", line)


def test_server_concurrent_clients(record_property):
    pytest.importorskip("openai")
    from test_bench_chat import chat_model_file
    from test_server import LiveServer

    model = mambalite.load(chat_model_file("130m"), threads=2)
    n_clients, n_tokens = 8, 64
    bias = {str(i): -100.0 for i in model.tokenizer.end_ids}
    rates: dict[int, list[float]] = {1: [], 32: []}
    servers = {b: LiveServer(model, max_tokens=512, max_batch=b) for b in rates}
    try:
        for r in range(ROUNDS):
            for b, live in (servers.items() if r % 2 == 0 else list(servers.items())[::-1]):
                c = live.client()

                def run(i: int, c=c, r=r) -> int:
                    stream = c.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": f"Question {r}.{i}"}],
                        temperature=0.8, seed=i, max_tokens=n_tokens, logit_bias=bias,
                        stream=True, stream_options={"include_usage": True})
                    return [ch.usage.completion_tokens for ch in stream if ch.usage][0]

                t = time.perf_counter()
                with ThreadPoolExecutor(n_clients) as pool:
                    total = sum(pool.map(run, range(n_clients)))
                rates[b].append(total / (time.perf_counter() - t))
        batching = servers[32].health()["batching"]
    finally:
        for live in servers.values():
            live.stop()
    on, off = (statistics.median(rates[b]) for b in (32, 1))
    line = (f"server, 130m q8_0, {n_clients} streaming clients x {n_tokens} tokens: "
            f"{on:.0f} tok/s batched vs {off:.0f} one at a time (x{on / off:.2f}); mean batch "
            f"{batching['mean_batch']}")
    print("\n" + line)
    record_property("server", line)
