"""Quantized files (Q8_0, Q4_0, the K-quant mixes): llama.cpp's tensor types, `mambalite
quantize`, and logits.

Bounds, against transformers' fp32 model (max |error| / max |logit|, and top-1 agreement over
40 positions). Q8_0 rounds each weight to a step of max|block|/127 and each activation likewise,
an rms error of about 0.2-0.6% per value; through a few layers and the recurrence this measured
5e-3 to 2.7e-2 on these random models: bound 5e-2 and >= 95% top-1. Q4_0's step is max|block|/8,
16x coarser: 3e-2 to 8e-2 at d_model >= 48 (and 0.25 at d_model 32, where a block is a whole
row): bound 0.15 and >= 90% top-1 at d_model >= 64.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest

import mambalite
from mambalite._core import kernels as K

from helpers import export, hf_logits, make_hf_model, save_checkpoint
from test_logits import SHAPES, rel_err

T = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache = {}

    def get(shape):
        if shape not in cache:
            hf = make_hf_model(seed=0, **SHAPES[shape])
            cache[shape] = (hf, save_checkpoint(hf, tmp_path_factory.mktemp(shape)))
        return cache[shape]

    return get


@pytest.mark.parametrize("isa", K.available_isas())
@pytest.mark.parametrize("shape", ["default-tied", "odd-vocab-untied", "dconv2-dstate8",
                                   "dconv5-dstate32"])
def test_q8_0_logits(models, monkeypatch, isa, shape):
    monkeypatch.setenv("MAMBALITE_ISA", isa)
    hf, d = models(shape)
    ids = np.random.default_rng(1).integers(0, hf.config.vocab_size, size=40)
    got, ref = mambalite.load(export(d, "q8_0")).forward(ids), hf_logits(hf, ids)
    assert rel_err(got, ref) <= 5e-2
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.95


@pytest.mark.parametrize("isa", K.available_isas())
@pytest.mark.parametrize("shape", ["default-tied", "dconv2-dstate8"])
def test_q4_0_logits(models, monkeypatch, isa, shape):
    monkeypatch.setenv("MAMBALITE_ISA", isa)
    hf, d = models(shape)
    ids = np.random.default_rng(1).integers(0, hf.config.vocab_size, size=40)
    got, ref = mambalite.load(export(d, "q4_0")).forward(ids), hf_logits(hf, ids)
    assert rel_err(got, ref) <= 0.15
    assert np.mean(got.argmax(1) == ref.argmax(1)) >= 0.9


@pytest.mark.parametrize("wtype", ["f32", "f16", "q8_0", "q4_0"])
def test_isas_agree_end_to_end(models, monkeypatch, wtype):
    _, d = models("odd-vocab-untied")
    path = export(d, wtype)
    ids = np.arange(37) % 1001
    out = {}
    for isa in K.available_isas():
        monkeypatch.setenv("MAMBALITE_ISA", isa)
        out[isa] = mambalite.load(path).forward(ids)
    for isa, got in out.items():
        assert rel_err(got, out["scalar"]) <= 1e-4, isa


def test_llama_cpp_tensor_types(tmp_path):
    """Q8_0 as llama.cpp's converter writes it: 2-D matrices Q8_0 except the conv kernel, rows not
    a multiple of 32 in F16 (ssm_dt here has rows of dt_rank = 5), the rest F32."""
    hf = make_hf_model(seed=3, vocab_size=100, hidden_size=64, state_size=12, time_step_rank=5,
                       num_hidden_layers=3, tie_word_embeddings=False)
    r = gguf.GGUFReader(export(save_checkpoint(hf, tmp_path / "t"), "q8_0"))
    f = r.fields
    assert f["general.file_type"].contents() == 7  # MOSTLY_Q8_0
    assert f["general.quantization_version"].contents() == 2
    types = {t.name: t.tensor_type for t in r.tensors}
    assert types["token_embd.weight"] == types["output.weight"] == T.Q8_0
    for i in range(3):
        b = f"blk.{i}."
        assert types[b + "ssm_in.weight"] == types[b + "ssm_out.weight"] == T.Q8_0
        assert types[b + "ssm_x.weight"] == T.Q8_0
        assert types[b + "ssm_dt.weight"] == T.F16
        for name in ("ssm_conv1d.weight", "ssm_conv1d.bias", "ssm_dt.bias", "ssm_a", "ssm_d",
                     "attn_norm.weight"):
            assert types[b + name] == T.F32, name
    assert types["output_norm.weight"] == T.F32


def test_quantize_command_equals_export(models, tmp_path):
    """Quantizing an f32 file gives the same bytes as exporting straight to that type."""
    _, d = models("default-tied")
    f32 = export(d, "f32")
    for qt in ("q8_0", "q4_0"):
        direct = gguf.GGUFReader(export(d, qt))
        via = gguf.GGUFReader(mambalite.quantize(f32, tmp_path / f"{qt}.gguf", qt,
                                                 progress=False))
        assert [t.name for t in via.tensors] == [t.name for t in direct.tensors]
        for a, b in zip(via.tensors, direct.tensors):
            assert a.tensor_type == b.tensor_type, a.name
            assert np.array_equal(np.asarray(a.data), np.asarray(b.data)), a.name
        for key in ("tokenizer.ggml.model", "mamba.ssm.state_size", "general.file_type"):
            if key in direct.fields:
                assert via.fields[key].contents() == direct.fields[key].contents()
    tied = {t.name: t.tensor_type for t in gguf.GGUFReader(tmp_path / "q4_0.gguf").tensors}
    assert tied["token_embd.weight"] == T.Q8_0  # the tied head, rows of 64: not Q6_K-able
    assert tied["blk.0.ssm_in.weight"] == T.Q4_0


@pytest.mark.parametrize("tied", [True, False])
def test_q4_0_head_is_q6_k(tmp_path, tied):
    """As llama-quantize: the output head (or the tied embedding) of a Q4_0 file is Q6_K (Q8_0
    with head_type="q8_0"), and it runs through the Q6_K kernels."""
    hf = make_hf_model(seed=9, vocab_size=300, hidden_size=256, num_hidden_layers=1,
                       tie_word_embeddings=tied)
    d = save_checkpoint(hf, tmp_path / "h")
    q8 = mambalite.export(d, tmp_path / "q8.gguf", "q4_0", head_type="q8_0", progress=False)
    q8_types = {t.name: t.tensor_type for t in gguf.GGUFReader(q8).tensors}
    assert q8_types["token_embd.weight" if tied else "output.weight"] == T.Q8_0
    path = export(d, "q4_0")
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    head = "token_embd.weight" if tied else "output.weight"
    assert types[head] == T.Q6_K
    if not tied:
        assert types["token_embd.weight"] == T.Q4_0
    ids = list(range(1, 40))
    got, ref = mambalite.load(path).forward(ids), hf_logits(hf, ids)
    assert rel_err(got, ref) <= 0.15


@pytest.mark.parametrize("ftype,base,bound", [("q6_k", T.Q6_K, 0.08), ("q5_k_m", T.Q5_K, 0.12),
                                              ("q4_k_m", T.Q4_K, 0.2)])
def test_k_quant_files(tmp_path, monkeypatch, ftype, base, bound):
    """`export --type q4_k_m|q5_k_m|q6_k` on a model with rows of 256: llama-quantize's mix (the
    base type, a Q6_K head, ssm_dt's rows of 16 through the 32-block fallback to F16), the same
    file as quantizing the f32 export, and logits near transformers' on every ISA, each within
    1e-2 of the scalar oracle (int8 activation rounding differs between the ISAs' kernels).
    Bounds: this d_model-256 model is more sensitive than the ones above (its Q8_0 logits are
    1.5e-2 off, Q4_0's 0.15-0.165); Q6_K measured 0.036-0.042, Q5_K_M 0.066, Q4_K_M 0.11-0.12,
    top-1 agreement 0.85-1.0 over 40 positions. (The bytes against llama-quantize's:
    test_llama_cpp.py.)"""
    hf = make_hf_model(seed=11, vocab_size=320, hidden_size=256, num_hidden_layers=2,
                       tie_word_embeddings=False)
    d = save_checkpoint(hf, tmp_path / "k")
    path = export(d, ftype)
    types = {t.name: t.tensor_type for t in gguf.GGUFReader(path).tensors}
    assert types["output.weight"] == T.Q6_K
    assert types["blk.0.ssm_in.weight"] == types["token_embd.weight"] == base
    assert types["blk.0.ssm_dt.weight"] == T.F16 and types["blk.0.ssm_d"] == T.F32
    via = mambalite.quantize(export(d, "f32"), tmp_path / "via.gguf", ftype, progress=False)
    for a, b in zip(gguf.GGUFReader(via).tensors, gguf.GGUFReader(path).tensors):
        assert a.tensor_type == b.tensor_type and np.array_equal(a.data, b.data), a.name
    ids = np.random.default_rng(1).integers(0, 320, size=40)
    ref = hf_logits(hf, ids)
    monkeypatch.setenv("MAMBALITE_ISA", "scalar")
    oracle = mambalite.load(path).forward(ids)
    assert rel_err(oracle, ref) <= bound
    assert np.mean(oracle.argmax(1) == ref.argmax(1)) >= 0.8
    for isa in K.available_isas():
        monkeypatch.setenv("MAMBALITE_ISA", isa)
        assert rel_err(mambalite.load(path).forward(ids), oracle) <= 1e-2, isa


def test_quantize_errors(models, tmp_path):
    _, d = models("default-tied")
    q8 = export(d, "q8_0")
    with pytest.raises(ValueError, match="already quantized"):
        mambalite.quantize(q8, tmp_path / "x.gguf", "q4_0", progress=False)
    with pytest.raises(ValueError, match="choose one of q8_0, q4_0, q4_k_m, q5_k_m, q6_k"):
        mambalite.quantize(q8, tmp_path / "x.gguf", "q2_k", progress=False)
    with pytest.raises(FileNotFoundError):
        mambalite.quantize(tmp_path / "none.gguf", tmp_path / "x.gguf", progress=False)
    with pytest.raises(ValueError, match="must differ"):
        mambalite.quantize(q8, q8, progress=False)
    with pytest.raises(ValueError, match="head_type"):
        mambalite.quantize(export(d, "f32"), tmp_path / "x.gguf", "q4_0", head_type="q2_k",
                           progress=False)


def test_loads_other_llama_cpp_types(models, tmp_path):
    """Q4_1, Q5_0, Q5_1 (quantizable with `gguf`) load and run close to the f32 model. (K-quants
    have no quantizer in `gguf`; their dequantization is checked bit for bit in test_kernels.)"""
    hf, d = models("default-tied")
    src = gguf.GGUFReader(export(d, "f32"))
    ids = list(range(1, 30))
    ref = hf_logits(hf, ids)
    # Measured 4.6e-2 (Q5_0), 3.4e-2 (Q5_1), 8.4e-2 (Q4_1) with the tied embedding quantized too;
    # their exactness is checked by the dequantization and kernel tests, this is end to end.
    for qt, bound in ((T.Q5_0, 0.1), (T.Q5_1, 0.1), (T.Q4_1, 0.15)):
        out = tmp_path / f"{qt.name}.gguf"
        w = gguf.GGUFWriter(out, "mamba")
        for key, field in src.fields.items():
            if key.startswith("GGUF.") or key == "general.architecture":
                continue
            vt = field.types[0]
            w.add_key_value(key, field.contents(), vt,
                            field.types[-1] if vt == gguf.GGUFValueType.ARRAY else None)
        for t in src.tensors:
            data = np.array(t.data)
            if t.name.endswith(".weight") and data.ndim == 2 and "conv1d" not in t.name and \
                    data.shape[1] % 32 == 0:
                w.add_tensor(t.name, gguf.quants.quantize(data, qt), raw_dtype=qt)
            else:
                w.add_tensor(t.name, data)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        assert rel_err(mambalite.load(out).forward(ids), ref) <= bound, qt.name


@pytest.mark.parametrize("shape", ["default-tied", "odd-vocab-untied"])
def test_q8_0_prefill_matches_decode(models, shape):
    """Prefill runs Q8_0 on a GEMM (AVX2: exact int32 block sums from int16 products; tables
    without it: the fp32 GEMM on the same int8 values), decode on int32 dot products. The sums of
    the blocks differ by fp32 rounding, so an activation of a later layer that lies on a rounding
    boundary of its int8 step can round the other way: one step of max|block| / 127 in one value.
    Measured 1.5e-7 and 2.1e-7 on these models with the int16 GEMM (8e-4 and 1.9e-3 with the fp32
    GEMM, where values flipped); bound 1e-2, a fifth of the bound against fp32 above."""
    _, d = models(shape)
    m = mambalite.load(export(d, "q8_0"), threads=2)
    ids = np.random.default_rng(3).integers(0, 100, size=70)
    full = m.forward(ids)
    state = m.new_state()
    steps = np.array([m.step(state, int(i)) for i in ids])
    assert rel_err(steps, full) <= 1e-2
