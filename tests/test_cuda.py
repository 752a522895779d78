"""The CUDA backend against our CPU engine: logits, prefill/decode equivalence, greedy generation,
state portability between CPU and GPU, graphs on and off, and the errors without a GPU.

GPU tests are marked `cuda` and skip, saying why, where this build has no CUDA backend or the
machine no GPU. The CPU engine they compare with is itself checked against transformers
(test_logits.py, test_mamba2.py), so agreement here ties the GPU to the independent reference.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import mambalite
from mambalite import _core

from helpers import export, make_hf_falcon_mamba, make_hf_mamba2, make_hf_model, save_checkpoint

HAVE_GPU = mambalite.cuda_available()
needs_gpu = pytest.mark.skipif(
    not HAVE_GPU,
    reason="no CUDA GPU here" if _core.cuda_built() else "this build has no CUDA backend")
cuda = [pytest.mark.cuda, needs_gpu]

# Bounds on max|gpu - cpu| / max|cpu| over all logits, per weight type:
# - f32, f16, bf16: both engines multiply the exact weight values with fp32 activations and
#   differ only in summation order (fp32 round-off through the layers): 1e-4, the bound.
# - q8_0, q4_0: the CPU quantizes activations to int8 blocks (as ggml does) and the GPU keeps
#   them fp32, so they differ by the CPU's activation rounding, about 1/254 of each block's
#   largest value per product: the same order as the CPU-vs-f32 bound of test_quantized.py.
#   Measured on an H100: f32/f16/bf16 up to 2e-6, q8_0 up to 2.5e-2, q4_0 up to 8e-3.
BOUNDS = {"f32": 1e-4, "f16": 1e-4, "bf16": 1e-4, "q8_0": 5e-2, "q4_0": 5e-2}

ARCHS = {
    "mamba": lambda: make_hf_model(seed=3, vocab_size=300, hidden_size=64, state_size=16,
                                   num_hidden_layers=3, tie_word_embeddings=False),
    "mamba_odd": lambda: make_hf_model(seed=4, vocab_size=301, hidden_size=48, state_size=12,
                                       conv_kernel=3, num_hidden_layers=2),
    "falcon_mamba": lambda: make_hf_falcon_mamba(seed=5, vocab_size=300, hidden_size=64,
                                                 intermediate_size=160, num_hidden_layers=2),
    "mamba2": lambda: make_hf_mamba2(seed=6, vocab_size=300, hidden_size=64, num_heads=8,
                                     head_dim=16, state_size=128, num_hidden_layers=2),
    "mamba2_g4": lambda: make_hf_mamba2(seed=7, vocab_size=300, hidden_size=64, num_heads=8,
                                        head_dim=16, state_size=40, n_groups=4, conv_kernel=3,
                                        num_hidden_layers=2),
}
# d_model 256 so that llama.cpp's Q4_0 choice (a Q6_K head, converted to F16 on the GPU) applies.
QUANT_ARCHS = {
    "mamba_256": lambda: make_hf_model(seed=8, vocab_size=512, hidden_size=256, state_size=16,
                                       num_hidden_layers=2),
    "mamba2_256": lambda: make_hf_mamba2(seed=9, vocab_size=512, hidden_size=256, num_heads=8,
                                         head_dim=64, state_size=64, num_hidden_layers=2),
}


def ids_of(n: int, vocab: int = 300, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    out = {}
    for name, make in {**ARCHS, **QUANT_ARCHS}.items():
        out[name] = save_checkpoint(make(), tmp_path_factory.mktemp(name))
    return out


def decode(model, ids) -> np.ndarray:
    """Logits after each id, fed one at a time from a fresh state (the matrix-vector path)."""
    state = model.new_state()
    return np.stack([model.step(state, int(i)) for i in ids])


def pair(path):
    return mambalite.load(path, threads=2), mambalite.load(path, device="cuda")


# ------------------------------------------------------------------------------ without a GPU
def test_cuda_available_is_a_bool():
    assert isinstance(mambalite.cuda_available(), bool)


@pytest.mark.skipif(shutil.which("nvcc") is None and not os.environ.get("CUDACXX"),
                    reason="no CUDA compiler here, so the build skips the backend")
def test_backend_is_built_where_nvcc_is():
    # CI has nvcc but no GPU: the backend must still compile and link into the module.
    assert _core.cuda_built()


@pytest.mark.skipif(HAVE_GPU, reason="this machine has a GPU")
def test_cuda_without_gpu_is_a_clear_error(checkpoints):
    path = export(checkpoints["mamba"], "f32")
    with pytest.raises(RuntimeError, match="device='cpu'"):
        mambalite.load(path, device="cuda")


def test_bad_device_names(checkpoints):
    path = export(checkpoints["mamba"], "f32")
    for bad in ["gpu", "cuda:", "cuda:x", "cuda0", "CPU"]:
        with pytest.raises(ValueError, match="device must be"):
            mambalite.load(path, device=bad)
    with pytest.raises(TypeError):
        mambalite.load(path, device=0)


# ------------------------------------------------------------------------------ on the GPU
@pytest.mark.cuda
@needs_gpu
def test_no_such_gpu(checkpoints):
    path = export(checkpoints["mamba"], "f32")
    with pytest.raises(RuntimeError, match="no CUDA device 99"):
        mambalite.load(path, device="cuda:99")


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("type", ["f32", "f16", "bf16", "q8_0"])
def test_logits_match_cpu(checkpoints, arch, type):
    cpu, gpu = pair(export(checkpoints[arch], type))
    assert gpu.device.startswith("cuda:0")
    for n in [1, 2, 7, 33, 100]:
        ids = ids_of(n)
        assert rel_err(gpu.forward(ids), cpu.forward(ids)) < BOUNDS[type], (n, type)
    assert rel_err(decode(gpu, ids[:12]), decode(cpu, ids[:12])) < BOUNDS[type]


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("arch", list(QUANT_ARCHS))
@pytest.mark.parametrize("type", ["f16", "q8_0", "q4_0"])
def test_quantized_logits_match_cpu(checkpoints, arch, type):
    path = export(checkpoints[arch], type)
    if type == "q4_0":  # the head is Q6_K, as llama-quantize writes it
        types = {t["name"]: t["type"] for t in mambalite.load(path).tensors}
        assert types["token_embd.weight"] == "Q6_K"
    cpu, gpu = pair(path)
    ids = ids_of(64, 512)
    assert rel_err(gpu.forward(ids), cpu.forward(ids)) < BOUNDS[type]  # prefill (GEMM) path
    assert rel_err(decode(gpu, ids[:16]), decode(cpu, ids[:16])) < BOUNDS[type]


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("arch", ["mamba", "mamba2"])
def test_prompt_longer_than_a_prefill_chunk(checkpoints, arch):
    # The GPU prefills 1024 tokens per pass; 1500 crosses a chunk boundary mid-prompt.
    cpu, gpu = pair(export(checkpoints[arch], "f32"))
    ids = ids_of(1500)
    s_cpu, s_gpu = cpu.new_state(), gpu.new_state()
    a, b = cpu.prefill(s_cpu, ids), gpu.prefill(s_gpu, ids)
    assert rel_err(b, a) < BOUNDS["f32"]
    assert rel_err(gpu.forward(ids)[-5:], cpu.forward(ids)[-5:]) < BOUNDS["f32"]


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("arch", list(ARCHS))
def test_prefill_equals_decode_on_gpu(checkpoints, arch):
    _, gpu = pair(export(checkpoints[arch], "f32"))
    ids = ids_of(40)
    full = gpu.forward(ids)
    assert rel_err(decode(gpu, ids), full) < 1e-5
    # continuation: prefill part, then decode the rest, from the same state
    state = gpu.new_state()
    gpu.prefill(state, ids[:25])
    rest = np.stack([gpu.step(state, int(i)) for i in ids[25:]])
    assert rel_err(rest, full[25:]) < 1e-5
    assert state.n_tokens == 40


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("arch", ["mamba", "falcon_mamba", "mamba2_g4"])
def test_greedy_generation_identical_to_cpu(checkpoints, arch):
    cpu, gpu = pair(export(checkpoints[arch], "f32"))
    prompt = ids_of(12)
    kw = dict(max_new_tokens=48, temperature=0.0)
    assert list(gpu.generate_tokens(prompt, **kw)) == list(cpu.generate_tokens(prompt, **kw))


@pytest.mark.cuda
@needs_gpu
@pytest.mark.parametrize("arch", ["mamba", "mamba2_g4"])
def test_state_moves_between_cpu_and_gpu(checkpoints, arch):
    cpu, gpu = pair(export(checkpoints[arch], "f32"))
    ids = ids_of(60)
    ref = cpu.forward(ids)
    # CPU prefill, GPU continues
    s = cpu.new_state()
    cpu.prefill(s, ids[:30])
    out = gpu.forward_state(s, ids[30:45])
    assert rel_err(out, ref[30:45]) < BOUNDS["f32"]
    # ... and back to the CPU (the state's values come down from the GPU)
    out = cpu.forward_state(s, ids[45:])
    assert rel_err(out, ref[45:]) < BOUNDS["f32"]
    # bytes written by a GPU state load on the CPU, and the other way round
    g = gpu.new_state()
    gpu.prefill(g, ids[:30])
    data = g.to_bytes()
    c = cpu.state_from_bytes(data)
    assert rel_err(cpu.forward_state(c, ids[30:]), ref[30:]) < BOUNDS["f32"]
    g2 = gpu.state_from_bytes(data)
    assert rel_err(gpu.forward_state(g2, ids[30:]), ref[30:]) < BOUNDS["f32"]
    # copies of a GPU state are independent
    g = gpu.new_state()
    gpu.prefill(g, ids[:30])
    snap = g.copy()
    before = snap.to_bytes()
    gpu.prefill(g, ids[30:40])
    assert snap.to_bytes() == before
    assert rel_err(gpu.forward_state(snap, ids[30:]), ref[30:]) < BOUNDS["f32"]
    assert g.nbytes == c.nbytes == cpu.new_state().nbytes


@pytest.mark.cuda
@needs_gpu
def test_graphs_on_and_off_agree(checkpoints, monkeypatch):
    path = export(checkpoints["mamba"], "q8_0")
    ids = ids_of(20)
    with_graphs = mambalite.load(path, device="cuda")
    monkeypatch.setenv("MAMBALITE_CUDA_GRAPHS", "0")
    without = mambalite.load(path, device="cuda")
    outs = []
    for m in (with_graphs, without):
        s = m.new_state()
        outs.append(np.stack([m.step(s, int(i)) for i in ids]))
    np.testing.assert_array_equal(outs[0], outs[1])
    # several states in turn: each has its own captured graph
    s1, s2 = with_graphs.new_state(), with_graphs.new_state()
    a = [with_graphs.step(s1, int(i)) for i in ids[:5]]
    b = [with_graphs.step(s2, int(i)) for i in ids[:5]]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))


@pytest.mark.cuda
@needs_gpu
def test_gpu_errors_are_clean(checkpoints):
    _, gpu = pair(export(checkpoints["mamba"], "f32"))
    with pytest.raises(ValueError, match="out of range"):
        gpu.forward([1, 2, 100000])
    other = mambalite.load(export(checkpoints["mamba2"], "f32"), device="cuda")
    with pytest.raises(ValueError, match="another shape"):
        gpu.prefill(other.new_state(), [1, 2])
    assert "cuda:0" in repr(gpu)
