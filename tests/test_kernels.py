"""Kernels: every instruction set against the scalar reference and numpy, over odd sizes, and
dequantization equal to the `gguf` package's bit for bit."""

from __future__ import annotations

import itertools

import gguf
import numpy as np
import pytest

from mambalite._core import kernels as K

Q = gguf.GGMLQuantizationType
ISAS = K.available_isas()
RNG = np.random.default_rng(0)


def random_blocks(qtype: Q, n_blocks: int, rng) -> np.ndarray:
    """Raw blocks of any type: random payload with sane fp16 scales (no inf/NaN)."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    scales = (rng.random((n_blocks, 2)) * 0.02 + 1e-3).astype(np.float16).view(np.uint8)
    if qtype == Q.Q6_K:  # d is the last field
        raw[:, -2:] = scales[:, :2]
    elif qtype in (Q.Q4_1, Q.Q5_1, Q.Q4_K, Q.Q5_K):  # d and m/dmin come first
        raw[:, :4] = scales
    else:
        raw[:, :2] = scales[:, :2]
    return raw.reshape(-1)


def weights(qtype: Q, rows: int, cols: int, rng) -> np.ndarray:
    """Raw bytes of a rows x cols matrix in `qtype`."""
    if qtype in (Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
        w = rng.standard_normal((rows, cols)).astype(np.float32)
        if qtype == Q.F32:
            return w.view(np.uint8).reshape(-1)
        if qtype == Q.F16:
            return w.astype(np.float16).view(np.uint8).reshape(-1)
        return np.asarray(gguf.quants.quantize(w, qtype)).reshape(-1)
    return random_blocks(qtype, rows * cols // gguf.GGML_QUANT_SIZES[qtype][0], rng)


ALL_TYPES = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.Q4_K, Q.Q5_K,
             Q.Q6_K]


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_dequantize_matches_gguf_bit_for_bit(qtype):
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    n = block * 24 if block > 1 else 777
    raw = weights(qtype, 1, n, np.random.default_rng(int(qtype)))
    ours = K.dequantize(qtype.name.lower(), raw, n)
    ref = gguf.quants.dequantize(raw, qtype).reshape(-1).astype(np.float32)
    assert np.array_equal(ours.view(np.uint32), ref.view(np.uint32))


def reference_matmul(qtype: Q, raw: np.ndarray, rows: int, cols: int, x: np.ndarray):
    """(y, magnitude) in float64: y exactly what the kernel approximates, magnitude = sum of
    |terms| (the scale of rounding error in a float32 sum)."""
    w = gguf.quants.dequantize(raw, qtype).reshape(rows, cols).astype(np.float64)
    if qtype not in (Q.F32, Q.F16, Q.BF16):  # kernels use int8-quantized activations
        d, q = K.quantize_activations("scalar", x.reshape(-1))
        x = (q.reshape(-1, 32).astype(np.float64) * d[:, None]).reshape(x.shape)
    x = x.astype(np.float64)
    return x @ w.T, np.abs(x) @ np.abs(w).T


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_matmul_every_isa(isa, qtype):
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    col_options = [1, 7, 33, 100, 257] if block == 1 else \
        ([32, 96, 544] if block == 32 else [256, 768])
    rng = np.random.default_rng(int(qtype) * 7 + len(isa))
    # 6 tokens: 4-token tiles + 2; 8, 13, 35 and 40: the GEMM where the ISA has one (a panel of
    # 8, which AVX-512's integer GEMM lays out in octets; one of two 8-token vectors, part-filled;
    # a full 32-token panel and a second of 3 or 8).
    for cols, rows, tokens in itertools.product(col_options, (1, 5, 17), (6, 8, 13, 35, 40)):
        raw = weights(qtype, rows, cols, rng)
        x = rng.standard_normal((tokens, cols)).astype(np.float32)
        y = K.matmul(isa, qtype.name.lower(), raw, rows, cols, x)
        scalar = K.matmul("scalar", qtype.name.lower(), raw, rows, cols, x)
        ref, mag = reference_matmul(qtype, raw, rows, cols, x)
        # float32 accumulation over `cols` terms: error <= ~cols * 2^-24 * sum|terms|.
        tol = 1e-6 * max(cols, 16) * mag + 1e-30
        assert np.all(np.abs(y - ref) <= tol), (cols, rows, tokens)
        assert np.all(np.abs(y - scalar) <= tol), (cols, rows, tokens)


@pytest.mark.parametrize("isa", ISAS)
def test_activation_quantization(isa):
    x = RNG.standard_normal(32 * 37).astype(np.float32)
    x[32:64] = 0.0  # an all-zero block
    x[64] = 1e30  # a huge value
    d, q = K.quantize_activations(isa, x)
    d0, q0 = K.quantize_activations("scalar", x)
    assert np.array_equal(q, q0) and np.array_equal(d, d0)
    blocks = x.reshape(-1, 32)
    amax = np.abs(blocks).max(axis=1)
    np.testing.assert_array_equal(d, (amax / np.float32(127)).astype(np.float32))
    with np.errstate(divide="ignore"):
        inv = np.where(d > 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
    np.testing.assert_array_equal(q.reshape(-1, 32), np.rint(blocks * inv[:, None]))
    assert np.abs(q).max() <= 127


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("E,N,n", [(13, 16, 1), (40, 8, 5), (7, 12, 3), (33, 32, 2)])
def test_selective_scan_every_isa(isa, E, N, n):
    rng = np.random.default_rng(E * N + n)
    x = rng.standard_normal((n, E)).astype(np.float32)
    dt = (rng.random((n, E)) * 2).astype(np.float32)
    A = -np.exp(rng.standard_normal((E, N))).astype(np.float32) * 10  # some dt*A below -87
    B, C = (rng.standard_normal((n, N)).astype(np.float32) for _ in range(2))
    D = rng.standard_normal(E).astype(np.float32)
    z = rng.standard_normal((n, E)).astype(np.float32)
    s0 = rng.standard_normal((E, N)).astype(np.float32)
    y, s = K.selective_scan(isa, x, dt, A, B, C, D, z, s0)
    # numpy reference in float64
    s_ref = s0.astype(np.float64)
    y_ref = np.zeros((n, E))
    for t in range(n):
        s_ref = s_ref * np.exp(dt[t][:, None] * A) + (dt[t] * x[t])[:, None] * B[t][None, :]
        silu = z[t] / (1 + np.exp(-z[t].astype(np.float64)))
        y_ref[t] = (s_ref @ C[t] + D * x[t]) * silu
    np.testing.assert_allclose(s, s_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("E,Kw,n", [(13, 4, 1), (40, 3, 6), (17, 2, 2), (9, 5, 3)])
def test_conv_silu_every_isa(isa, E, Kw, n):
    rng = np.random.default_rng(E + Kw + n)
    window = rng.standard_normal((Kw - 1, E)).astype(np.float32)
    x = rng.standard_normal((n, E)).astype(np.float32)
    w = rng.standard_normal((Kw, E)).astype(np.float32)
    b = rng.standard_normal(E).astype(np.float32)
    out, new_window = K.conv_silu(isa, window, x, w, b)
    ext = np.concatenate([window, x]).astype(np.float64)
    pre = np.stack([b + (w * ext[t:t + Kw]).sum(0) for t in range(n)])
    np.testing.assert_allclose(out, pre / (1 + np.exp(-pre)), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(new_window, ext[-(Kw - 1):].astype(np.float32))


@pytest.mark.parametrize("isa", ISAS)
def test_rms_norm_every_isa(isa):
    x = RNG.standard_normal(101).astype(np.float32)
    w = RNG.standard_normal(101).astype(np.float32)
    ref = x / np.sqrt(np.mean(x.astype(np.float64) ** 2) + 1e-5) * w
    np.testing.assert_allclose(K.rms_norm(isa, x, w, 1e-5), ref, rtol=1e-6, atol=1e-6)


def test_isa_override(monkeypatch, tmp_path):
    import mambalite

    from helpers import export, make_hf_model, save_checkpoint

    path = export(save_checkpoint(make_hf_model(seed=71, vocab_size=64, hidden_size=32),
                                  tmp_path / "isa"), "f32")
    for isa in ISAS:
        monkeypatch.setenv("MAMBALITE_ISA", isa)
        assert mambalite.load(path).isa == isa
    monkeypatch.setenv("MAMBALITE_ISA", "avx9000")
    with pytest.raises(ValueError, match="'avx9000' is not built"):
        mambalite.load(path)
