"""GPU speed at batch 1 (CUDA backend): decode ms/token and prefill tokens/s for 130m-, 1.4b- and
2.8b-shaped Mamba-1 models in f16 and Q8_0, beside transformers (PyTorch fp16, same shape, same
GPU), and the device-to-device bandwidth roofline of decode.

    pytest bench/test_bench_cuda.py -s --benchmark-columns=median,iqr,rounds

Skipped without a CUDA GPU. Models have random weights (speed does not depend on the values) and
are cached in $MAMBALITE_BENCH_CACHE. transformers runs its PyTorch path (mamba_ssm's kernels are
not installed), as a user without them gets it.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from conftest import CACHE

import mambalite

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not mambalite.cuda_available(), reason="no CUDA GPU here")]

GPU_SHAPES = {
    "130m": dict(hidden_size=768, num_hidden_layers=24, vocab_size=50280),
    "1.4b": dict(hidden_size=2048, num_hidden_layers=48, vocab_size=50280),
    "2.8b": dict(hidden_size=2560, num_hidden_layers=64, vocab_size=50280),
}
PREFILL = 2048
_hf: dict[str, object] = {}


def hf_gpu(shape: str):
    """transformers MambaForCausalLM of `shape`, fp16 on the GPU, default init (seeded)."""
    import torch
    import transformers

    if shape not in _hf:
        _hf.clear()
        torch.cuda.empty_cache()
        torch.manual_seed(0)
        cfg = transformers.MambaConfig(tie_word_embeddings=True, **GPU_SHAPES[shape])
        with torch.device("cuda"):
            _hf[shape] = transformers.MambaForCausalLM(cfg).half().eval()
    return _hf[shape]


def gguf_file(shape: str, wtype: str):
    p = CACHE / f"gpu-{shape}-{wtype}.gguf"
    if not p.is_file():
        d = CACHE / f"gpu-{shape}"
        if not (d / "config.json").is_file():
            hf_gpu(shape).save_pretrained(d)
        mambalite.export(d, p, wtype, progress=False)
    return p


def cuda_sync():
    import torch

    torch.cuda.synchronize()


def d2d_bandwidth() -> float:
    """Device-to-device copy bandwidth in bytes/s, counting bytes read and written."""
    import torch

    a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    cuda_sync()
    times = []
    for _ in range(10):
        t0 = time.perf_counter()
        b.copy_(a)
        cuda_sync()
        times.append(time.perf_counter() - t0)
    return 2 * a.numel() / statistics.median(times)


def mambalite_decode_ms(model, n: int = 200, rounds: int = 5) -> float:
    state = model.new_state()
    model.prefill(state, [1, 2, 3, 4])
    for _ in range(10):
        model.step(state, 7)
    meds = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            model.step(state, 7)
        meds.append((time.perf_counter() - t0) / n * 1e3)
    return statistics.median(meds)


def mambalite_prefill_tps(model, ids, rounds: int = 3) -> float:
    model.prefill(model.new_state(), ids[:64])
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        model.prefill(model.new_state(), ids)
        times.append(time.perf_counter() - t0)
    return len(ids) / statistics.median(times)


def hf_prefill_tps(hf, ids) -> float:
    import torch

    x = torch.as_tensor(ids, device="cuda")[None]
    with torch.no_grad():
        hf(x[:, :16])
        cuda_sync()
        t0 = time.perf_counter()
        hf(x)
        cuda_sync()
    return len(ids) / (time.perf_counter() - t0)


def hf_decode_ms(hf, n: int = 32) -> float:
    import torch

    x = torch.tensor([[1, 2, 3, 4]], device="cuda")

    def gen(k):
        cuda_sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            hf.generate(x, max_new_tokens=k, min_new_tokens=k, do_sample=False)
        cuda_sync()
        return time.perf_counter() - t0

    gen(2)
    return (statistics.median([gen(n + 1) for _ in range(3)]) -
            statistics.median([gen(1) for _ in range(3)])) / n * 1e3


@pytest.mark.parametrize("shape", list(GPU_SHAPES))
@pytest.mark.parametrize("wtype", ["f16", "q8_0"])
def test_decode(benchmark, shape, wtype):
    model = mambalite.load(gguf_file(shape, wtype), device="cuda")
    state = model.new_state()
    model.prefill(state, [1, 2, 3, 4])
    benchmark.extra_info["unit"] = "seconds per token"
    benchmark.pedantic(lambda: model.step(state, 7), rounds=200, warmup_rounds=10)


@pytest.mark.parametrize("shape", list(GPU_SHAPES))
@pytest.mark.parametrize("wtype", ["f16", "q8_0"])
def test_vs_transformers(shape, wtype, record_property):
    """mambalite on the GPU against transformers fp16 on the same GPU, and the roofline."""
    path = gguf_file(shape, wtype)
    model = mambalite.load(path, device="cuda")
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, size=PREFILL)
    decode = mambalite_decode_ms(model)
    prefill = mambalite_prefill_tps(model, ids)
    weights = sum(t["nbytes"] for t in model.tensors)
    bw = d2d_bandwidth()
    roofline_ms = weights / bw * 1e3
    del model
    hf = hf_gpu(shape)
    hf_pre = hf_prefill_tps(hf, ids)
    hf_dec = hf_decode_ms(hf)
    line = (f"{shape} {wtype}: decode {decode:.3f} ms/token (transformers fp16 {hf_dec:.2f}, "
            f"x{hf_dec / decode:.1f}); roofline {roofline_ms:.3f} ms at {bw / 1e12:.2f} TB/s "
            f"d2d -> {roofline_ms / decode:.0%}; prefill {PREFILL} at {prefill:.0f} tokens/s "
            f"(transformers {hf_pre:.0f}, x{prefill / hf_pre:.1f})")
    print("\n" + line)
    record_property("result", line)
