"""Logits of mambalite against transformers' MambaForCausalLM (fp32, PyTorch).

Bound for f32: max |ours - reference| <= 1e-4 * max |reference|. Both compute in fp32; they
differ only in summation order (dot products of up to a few hundred terms and the scan), which
costs around 1e-6 relative, so 1e-4 leaves margin without hiding real errors (a wrong index or a
missing term moves logits by 1e-2 or more).

For f16/bf16 files the tight check compares against transformers run with the same rounded
matrices (the file stores exactly those values and we compute in fp32), so the f32 bound holds.
The loose check against the unrounded model bounds what the rounding itself costs: f16 keeps 11
significant bits (relative error <= 2^-11 ~ 4.9e-4 per weight), bf16 8 (2^-8 ~ 3.9e-3); summed
over D-length dot products with random signs and a few layers this measured 2e-4 to 7e-4 (f16)
and 1.6e-3 to 6e-3 (bf16) of max |logit| on these shapes; the bounds are 5e-3 and 3e-2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mambalite

from helpers import export, hf_logits, make_hf_model, save_checkpoint

SHAPES = {
    # name: transformers config overrides
    "default-tied": dict(vocab_size=320, hidden_size=64, state_size=16, conv_kernel=4,
                         num_hidden_layers=2),
    "odd-vocab-untied": dict(vocab_size=1001, hidden_size=48, state_size=12, conv_kernel=3,
                             time_step_rank=5, num_hidden_layers=3, tie_word_embeddings=False),
    "dconv2-dstate8": dict(vocab_size=517, hidden_size=96, state_size=8, conv_kernel=2,
                           time_step_rank=7, num_hidden_layers=2),
    "dconv5-dstate32": dict(vocab_size=250, hidden_size=32, state_size=32, conv_kernel=5,
                            time_step_rank=3, num_hidden_layers=4, tie_word_embeddings=False),
    "expand3-eps": dict(vocab_size=129, hidden_size=40, state_size=4, conv_kernel=4,
                        expand=3, num_hidden_layers=1, layer_norm_epsilon=1e-3),
}


def rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape
    return float(np.abs(got - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    cache = {}

    def get(shape: str, seed: int = 0):
        if shape not in cache:
            hf = make_hf_model(seed=seed, **SHAPES[shape])
            d = save_checkpoint(hf, tmp_path_factory.mktemp(shape))
            cache[shape] = (hf, d, export(d, "f32"))
        return cache[shape]

    return get


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("length", [1, 2, 7, 45, 150])  # 150: two prefill blocks of 128
def test_f32_logits_match_transformers(exported, shape, length):
    hf, _, path = exported(shape)
    model = mambalite.load(path, threads=2)
    ids = np.random.default_rng(length).integers(0, hf.config.vocab_size, size=length)
    got = model.forward(ids)
    assert got.shape == (length, hf.config.vocab_size)
    assert got.dtype == np.float32
    assert rel_err(got, hf_logits(hf, ids)) <= 1e-4


def test_prompt_shorter_than_conv(exported):
    hf, _, path = exported("dconv5-dstate32")  # d_conv 5: prompts of 1..4 tokens
    model = mambalite.load(path)
    for n in range(1, 5):
        ids = list(range(3, 3 + n))
        assert rel_err(model.forward(ids), hf_logits(hf, ids)) <= 1e-4


def test_config_and_untied_head(exported):
    hf, _, path = exported("odd-vocab-untied")
    model = mambalite.load(path)
    c = model.config
    assert (c.architecture, c.d_model, c.n_layer, c.d_inner, c.d_state, c.d_conv, c.dt_rank,
            c.vocab_size) == ("mamba", 48, 3, 96, 12, 3, 5, 1001)
    assert not c.tied_embeddings
    assert any(t["name"] == "output.weight" for t in model.tensors)
    tied = mambalite.load(exported("default-tied")[2])
    assert tied.config.tied_embeddings
    assert not any(t["name"] == "output.weight" for t in tied.tensors)


def _round_matrices(hf, dtype) -> torch.nn.Module:
    """The same model with every matrix the exporter stores in `dtype` rounded to it."""
    import copy

    rounded = copy.deepcopy(hf)
    with torch.no_grad():
        for name, p in rounded.named_parameters():
            if p.ndim == 2 and name.endswith(".weight"):
                p.copy_(p.to(dtype).float())
    return rounded


@pytest.mark.parametrize("wtype,torch_dtype,loose", [("f16", torch.float16, 5e-3),
                                                     ("bf16", torch.bfloat16, 3e-2)])
@pytest.mark.parametrize("shape", ["default-tied", "odd-vocab-untied"])
def test_half_precision_files(exported, wtype, torch_dtype, loose, shape):
    hf, d, _ = exported(shape)
    model = mambalite.load(export(d, wtype), threads=2)
    ids = np.random.default_rng(1).integers(0, hf.config.vocab_size, size=40)
    got = model.forward(ids)
    # Exact same weights: fp32 compute must agree as tightly as for f32 files.
    assert rel_err(got, hf_logits(_round_matrices(hf, torch_dtype), ids)) <= 1e-4
    # Against the unrounded model: what the format's rounding costs.
    err = rel_err(got, hf_logits(hf, ids))
    assert 0 < err <= loose


def test_bf16_checkpoint(tmp_path):
    """A checkpoint stored in bfloat16 (read without torch through our safetensors reader)."""
    hf = make_hf_model(seed=3, vocab_size=200, hidden_size=32)
    hf_bf16 = hf.to(torch.bfloat16)
    d = save_checkpoint(hf_bf16, tmp_path / "bf16")
    model = mambalite.load(export(d, "f32"))
    ids = list(range(1, 30))
    assert rel_err(model.forward(ids), hf_logits(hf_bf16.float(), ids)) <= 1e-4


def test_sharded_checkpoint(tmp_path):
    hf = make_hf_model(seed=4, vocab_size=300, hidden_size=64, num_hidden_layers=3)
    d = save_checkpoint(hf, tmp_path / "sharded", max_shard_size="100KB")
    assert (d / "model.safetensors.index.json").is_file()
    model = mambalite.load(export(d, "f32"))
    ids = [5, 9, 200, 17, 0, 299]
    assert rel_err(model.forward(ids), hf_logits(hf, ids)) <= 1e-4


def _save_mamba_ssm(hf, directory, tied: bool):
    """The same weights in state-spaces/mamba_ssm format (config.json + pytorch_model.bin)."""
    c = hf.config
    directory.mkdir(parents=True)
    sd = {}
    for k, v in hf.state_dict().items():
        sd[k.replace("backbone.embeddings.", "backbone.embedding.")] = v.clone()
    if tied:
        sd["lm_head.weight"] = sd["backbone.embedding.weight"]  # mamba_ssm saves the tied head
    torch.save(sd, directory / "pytorch_model.bin")
    cfg = {"d_model": c.hidden_size, "n_layer": c.num_hidden_layers, "vocab_size":
           c.vocab_size, "ssm_cfg": {"d_state": c.state_size, "d_conv": c.conv_kernel,
                                     "expand": c.expand, "dt_rank": c.time_step_rank},
           "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True,
           "pad_vocab_size_multiple": 8, "tie_embeddings": tied}
    (directory / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("tied", [True, False])
def test_mamba_ssm_checkpoint(tmp_path, tied):
    hf = make_hf_model(seed=5, vocab_size=264, hidden_size=48, state_size=8, conv_kernel=3,
                       time_step_rank=5, num_hidden_layers=2, tie_word_embeddings=tied)
    d = tmp_path / "ssm"
    _save_mamba_ssm(hf, d, tied)
    path = export(d, "f32")
    model = mambalite.load(path)
    assert model.config.tied_embeddings == tied
    assert model.metadata["mambalite.source_format"] == "mamba_ssm"
    ids = [1, 2, 3, 100, 263, 7, 7, 7]
    assert rel_err(model.forward(ids), hf_logits(hf, ids)) <= 1e-4


def test_sharded_bin_checkpoint(tmp_path):
    """transformers-format .bin shards with pytorch_model.bin.index.json."""
    hf = make_hf_model(seed=6, vocab_size=144, hidden_size=32, num_hidden_layers=2)
    d = tmp_path / "bin"
    d.mkdir()
    hf.config.save_pretrained(d)
    sd = hf.state_dict()
    names = sorted(sd)
    shards = {"pytorch_model-00001-of-00002.bin": names[: len(names) // 2],
              "pytorch_model-00002-of-00002.bin": names[len(names) // 2:]}
    weight_map = {}
    for shard, keys in shards.items():
        torch.save({k: sd[k].clone() for k in keys if k != "lm_head.weight"}, d / shard)
        weight_map.update({k: shard for k in keys if k != "lm_head.weight"})
    (d / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    model = mambalite.load(export(d, "f32"))
    ids = [1, 2, 3, 143, 0]
    assert rel_err(model.forward(ids), hf_logits(hf, ids)) <= 1e-4


def test_checkpoint_without_conv_bias(tmp_path):
    hf = make_hf_model(seed=7, vocab_size=100, hidden_size=32, use_conv_bias=False)
    assert hf.backbone.layers[0].mixer.conv1d.bias is None
    model = mambalite.load(export(save_checkpoint(hf, tmp_path / "nobias"), "f32"))
    ids = [5, 6, 7, 8, 9]
    assert rel_err(model.forward(ids), hf_logits(hf, ids)) <= 1e-4


@pytest.mark.parametrize("wtype", ["f32", "q8_0"])
def test_thread_count_does_not_change_logits(exported, wtype):
    """Threads split rows in 16-row chunks (and take chunks from a slow thread), so every row is
    computed by the same kernel whatever the split: logits are bit-identical across counts."""
    _, d, _ = exported("odd-vocab-untied")
    path = export(d, wtype)
    ids = np.random.default_rng(3).integers(0, 1001, size=45)
    ref = mambalite.load(path, threads=1).forward(ids)
    for threads in (2, 3, 5):
        model = mambalite.load(path, threads=threads)
        assert np.array_equal(model.forward(ids), ref), f"threads={threads}"
        state = model.new_state()
        model.prefill(state, ids[:10])
        one = mambalite.load(path, threads=1)
        s1 = one.new_state()
        one.prefill(s1, ids[:10])
        assert np.array_equal(model.step(state, int(ids[10])), one.step(s1, int(ids[10])))
