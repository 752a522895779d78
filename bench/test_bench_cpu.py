"""CPU speed, batch 1: decode latency per token and prefill throughput, against transformers
(PyTorch fp32) on the same shape in the same process. Run with:

    pytest bench/ --benchmark-columns=median,iqr,rounds --benchmark-sort=name

Medians are what to report: the machines are shared and noisy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mambalite

PREFILL = 512


@pytest.mark.parametrize("wtype", ["f32", "f16"])
@pytest.mark.parametrize("threads", [1, 2])
def test_decode_130m(benchmark, gguf_130m, wtype, threads):
    model = mambalite.load(gguf_130m[wtype], threads=threads)
    state = model.new_state()
    model.prefill(state, [1, 2, 3, 4])
    benchmark.extra_info["unit"] = "seconds per token"
    benchmark.pedantic(lambda: model.step(state, 7), rounds=60, warmup_rounds=5)


@pytest.mark.parametrize("wtype", ["f32", "f16"])
@pytest.mark.parametrize("threads", [1, 2])
def test_prefill512_130m(benchmark, gguf_130m, wtype, threads):
    model = mambalite.load(gguf_130m[wtype], threads=threads)
    ids = np.random.default_rng(0).integers(0, 50280, size=PREFILL)
    benchmark.extra_info["tokens"] = PREFILL
    benchmark.pedantic(lambda: model.prefill(model.new_state(), ids), rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("threads", [2])
def test_transformers_decode_130m(benchmark, hf_130m, threads):
    torch.set_num_threads(threads)
    with torch.no_grad():
        out = hf_130m(torch.tensor([[1, 2, 3, 4]]), use_cache=True)
        cache = out.cache_params
        tok = torch.tensor([[7]])
        pos = [4]

        def step():
            hf_130m(tok, cache_params=cache, use_cache=True,
                    cache_position=torch.tensor([pos[0]]))
            pos[0] += 1

        benchmark.pedantic(step, rounds=20, warmup_rounds=2)


@pytest.mark.parametrize("threads", [2])
def test_transformers_prefill512_130m(benchmark, hf_130m, threads):
    torch.set_num_threads(threads)
    ids = torch.tensor([np.random.default_rng(0).integers(0, 50280, size=PREFILL)])
    with torch.no_grad():
        benchmark.pedantic(lambda: hf_130m(ids), rounds=2, warmup_rounds=1)
