"""Our GGUF files in llama.cpp (through llama-cpp-python, an independent implementation): they
load, give the same logits within the types' bounds, and the same greedy continuation.
Skipped unless `pip install llama-cpp-python` (built from source) has been run.

Bounds (max |difference| / max |logit|): f32 1e-4 (both compute in fp32; measured 3e-7 on the
130m shape); f16 2e-3 (ggml rounds activations to f16 before f16 matrix products, 2^-11
relative, measured 2e-4); q8_0 and q4_0 5e-2 (ggml quantizes activations with fp16 scales and
its own rounding, so the int8 activations differ slightly; measured 8e-3).
"""

from __future__ import annotations

import numpy as np
import pytest

import mambalite

from helpers import export, make_hf_model, save_checkpoint

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    hf = make_hf_model(seed=81, vocab_size=512, hidden_size=128, num_hidden_layers=3,
                       tie_word_embeddings=False)
    return save_checkpoint(hf, tmp_path_factory.mktemp("llama"))


def test_q6_k_quantizer_matches_ggml_bit_for_bit():
    """Our Q6_K quantizer against ggml's quantize_row_q6_K_ref (llama-cpp-python's libggml)."""
    import ctypes
    import os

    from mambalite._core import kernels

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib",
                                   "libggml-base.so"))
    ref_fn = lib.quantize_row_q6_K_ref
    ref_fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 100.0):
        x = (rng.standard_normal((32, 768)) * scale).astype(np.float32)
        x[0, :256] = 0.0  # an all-zero block
        ours = kernels.quantize_q6_k(x)
        ref = np.zeros_like(ours)
        ref_fn(x.ctypes.data, ref.ctypes.data, x.size)
        assert np.array_equal(ours, ref)


@pytest.mark.parametrize("wtype,bound", [("f32", 1e-4), ("f16", 2e-3), ("q8_0", 5e-2),
                                         ("q4_0", 5e-2)])
def test_logits_and_greedy_match_llama_cpp(checkpoint, wtype, bound):
    path = export(checkpoint, wtype)
    llm = llama_cpp.Llama(model_path=str(path), n_threads=2, n_ctx=256, logits_all=True,
                          verbose=False)
    ids = [3, 17, 250, 9, 511, 0, 42, 42, 7]
    llm.eval(ids)
    theirs = np.array(llm.scores[: len(ids)])
    model = mambalite.load(path, threads=2)
    ours = model.forward(ids)
    assert np.abs(theirs - ours).max() <= bound * np.abs(ours).max()
    if wtype == "f32":
        llm.reset()
        greedy = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            greedy.append(tok)
            if len(greedy) == 32:
                break
        assert greedy == list(model.generate_tokens(ids, max_new_tokens=32, temperature=0))
