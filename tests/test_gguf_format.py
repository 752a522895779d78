"""Our GGUF files follow llama.cpp's conventions (docs/design.md §3), read by the `gguf` package."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from helpers import export, make_hf_model, save_checkpoint

T = gguf.GGMLQuantizationType


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    hf = make_hf_model(seed=51, vocab_size=200, hidden_size=32, state_size=8, conv_kernel=3,
                       time_step_rank=3, num_hidden_layers=2, tie_word_embeddings=False)
    return hf, save_checkpoint(hf, tmp_path_factory.mktemp("fmt"))


@pytest.mark.parametrize("wtype,qtype,ftype", [("f32", T.F32, 0), ("f16", T.F16, 1),
                                              ("bf16", T.BF16, 32)])
def test_names_types_shapes_metadata(source, wtype, qtype, ftype):
    hf, d = source
    r = gguf.GGUFReader(export(d, wtype))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("GGUF.")}
    assert f["general.architecture"] == "mamba"
    assert f["general.file_type"] == ftype
    assert "general.quantization_version" not in f  # nothing quantized
    expected = {"mamba.context_length": 2**20, "mamba.embedding_length": 32,
                "mamba.feed_forward_length": 0, "mamba.attention.head_count": 0,
                "mamba.block_count": 2, "mamba.ssm.conv_kernel": 3, "mamba.ssm.inner_size": 64,
                "mamba.ssm.state_size": 8, "mamba.ssm.time_step_rank": 3,
                "mamba.ssm.dt_b_c_rms": False}
    for k, v in expected.items():
        assert f[k] == v, k
    assert f["mamba.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-5)

    tensors = {t.name: t for t in r.tensors}
    matrices = {"token_embd.weight": [32, 200], "output.weight": [32, 200],
                "blk.0.ssm_in.weight": [32, 128], "blk.0.ssm_x.weight": [64, 19],
                "blk.0.ssm_dt.weight": [3, 64], "blk.0.ssm_out.weight": [64, 32]}
    small = {"output_norm.weight": [32], "blk.0.attn_norm.weight": [32],
             "blk.0.ssm_conv1d.weight": [3, 64], "blk.0.ssm_conv1d.bias": [64],
             "blk.0.ssm_dt.bias": [64], "blk.0.ssm_a": [8, 64], "blk.0.ssm_d": [64]}
    for name, shape in {**matrices, **small}.items():
        t = tensors[name]
        assert list(t.shape) == shape, name  # ggml order
        assert t.tensor_type == (qtype if name in matrices else T.F32), name
    assert len(tensors) == 3 + 2 * 10
    # ssm_a holds -exp(A_log), F32, laid out {N, E}
    a = np.array(tensors["blk.1.ssm_a"].data).reshape(64, 8)
    ref = -torch.exp(hf.backbone.layers[1].mixer.A_log).detach().numpy()
    np.testing.assert_allclose(a, ref, rtol=1e-6)
    conv = np.array(tensors["blk.0.ssm_conv1d.weight"].data).reshape(64, 3)
    np.testing.assert_array_equal(conv, hf.backbone.layers[0].mixer.conv1d.weight[:, 0].detach())


def test_tied_head_is_omitted(tmp_path):
    hf = make_hf_model(seed=52, vocab_size=64, hidden_size=16, num_hidden_layers=1)
    r = gguf.GGUFReader(export(save_checkpoint(hf, tmp_path / "t"), "f16"))
    assert "output.weight" not in {t.name for t in r.tensors}
