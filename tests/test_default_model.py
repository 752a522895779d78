"""The model shipped inside the package (tools/train_default_model.py): it is there, it loads
by default, it generates its golden continuation, and its perplexity agrees with PyTorch.

PyTorch reference: the shipped Q8_0 file is dequantized (``gguf.quants.dequantize``, llama.cpp's
formats) into a transformers ``Mamba2ForCausalLM``; that checkpoint is exported to f32 by our
exporter. Same weights on both sides, fp32 arithmetic on both: the f32 cross-entropy must agree
within 0.1% (the issue's bound; measured about 1e-6 relative, summation order only). The Q8_0
file must stay within 1% of the cross-entropy PyTorch measured on the original fp32 training
weights (stored in tests/data/default_model.json by the training run), so this bound covers the
whole cost of quantization, weights and activations.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
import transformers

import mambalite
from mambalite._tokenizer_export import SPM_MODEL_KEY

from test_cli import run

DATA = Path(__file__).parent / "data"
GOLDEN = json.loads((DATA / "default_model.json").read_text())


def heldout_text() -> str:
    return "".join((DATA / "heldout" / f"{name}.txt").read_text(encoding="utf-8")
                   for name in GOLDEN["heldout_sample"])


@pytest.fixture(scope="module")
def shipped():
    return mambalite.load(threads=2)


def test_shipped_in_the_package(shipped):
    path = mambalite.default_model_path()
    assert path.parent.parent == Path(mambalite.__file__).resolve().parent
    assert shipped.path == path and path.name == mambalite.model.DEFAULT_MODEL
    assert path.stat().st_size <= 25e6
    c = shipped.config
    assert c.architecture == "mamba2" and c.tied_embeddings
    assert {t["type"] for t in shipped.tensors if t["name"].endswith("ssm_in.weight")} == {"Q8_0"}
    assert shipped.tokenizer.kind == "sentencepiece" and shipped.tokenizer.add_bos
    r = run("info")
    assert r.returncode == 0, r.stderr
    assert "mambalite's default model" in r.stdout and "mamba2" in r.stdout


def test_golden_greedy_continuation(shipped):
    g = GOLDEN["golden"]
    ids = list(shipped.generate_tokens(g["prompt"], max_new_tokens=g["max_new_tokens"],
                                       temperature=0, token_healing=True))
    assert ids == g["ids"]
    text = shipped.generate(g["prompt"], max_new_tokens=g["max_new_tokens"], temperature=0,
                            token_healing=True)
    assert text == g["text"]
    tok = shipped.tokenizer
    prompt_ids = tok.encode(g["prompt"])
    assert g["prompt"] + text == tok.decode(prompt_ids[:-1] + ids)  # the first token was healed
    r = run("generate", g["prompt"], "-n", str(g["max_new_tokens"]), "--temperature", "0",
            "--token-healing")
    assert r.returncode == 0, r.stderr
    assert r.stdout == g["text"] + "\n"
    # Without the flag: plain greedy, which for this prompt differs from the healed text.
    plain = shipped.generate(g["prompt"], max_new_tokens=g["max_new_tokens"], temperature=0)
    assert plain != g["text"]
    r = run("generate", g["prompt"], "-n", str(g["max_new_tokens"]), "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == plain + "\n"


def dequantized_checkpoint(model: mambalite.Model, directory: Path):
    """The shipped file's weights (dequantized) as a transformers checkpoint directory."""
    c = model.config
    E, H, G = c.d_inner, c.n_head, c.n_group
    cfg = transformers.Mamba2Config(
        vocab_size=c.vocab_size, hidden_size=c.d_model, num_hidden_layers=c.n_layer,
        state_size=c.d_state, expand=E // c.d_model, head_dim=E // H, num_heads=H, n_groups=G,
        conv_kernel=c.d_conv, layer_norm_epsilon=c.norm_eps, tie_word_embeddings=True,
        use_conv_bias=True, bos_token_id=model.tokenizer.bos_id,
        eos_token_id=model.tokenizer.eos_id, pad_token_id=0)
    hf = transformers.Mamba2ForCausalLM(cfg).eval()
    w = {t.name: gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
         for t in gguf.GGUFReader(model.path).tensors}
    sd = {"backbone.embeddings.weight": w["token_embd.weight"],
          "backbone.norm_f.weight": w["output_norm.weight"],
          "lm_head.weight": w["token_embd.weight"]}
    for i in range(c.n_layer):
        b, p = f"blk.{i}.", f"backbone.layers.{i}."
        sd |= {p + "norm.weight": w[b + "attn_norm.weight"],
               p + "mixer.in_proj.weight": w[b + "ssm_in.weight"],
               p + "mixer.conv1d.weight": w[b + "ssm_conv1d.weight"][:, None, :],
               p + "mixer.conv1d.bias": w[b + "ssm_conv1d.bias"],
               p + "mixer.dt_bias": w[b + "ssm_dt.bias"],
               p + "mixer.A_log": np.log(-w[b + "ssm_a"].reshape(H)),
               p + "mixer.D": w[b + "ssm_d"].reshape(H),
               p + "mixer.norm.weight": w[b + "ssm_norm.weight"].reshape(E),
               p + "mixer.out_proj.weight": w[b + "ssm_out.weight"]}
    missing = hf.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                                  for k, v in sd.items()}, strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    hf.save_pretrained(directory)
    spm = bytes(np.asarray(model.metadata[SPM_MODEL_KEY], dtype=np.uint8))
    (directory / "tokenizer.model").write_bytes(spm)
    (directory / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True}))
    return hf


def test_perplexity_f32_matches_pytorch_and_q8_0_is_close(shipped, tmp_path):
    hf = dequantized_checkpoint(shipped, tmp_path / "mambalite-pystdlib")
    f32 = mambalite.load(mambalite.export(tmp_path / "mambalite-pystdlib",
                                          tmp_path / "f32.gguf", "f32", progress=False),
                         threads=2)
    text = heldout_text()
    ids = shipped.tokenizer.encode(text)
    assert f32.tokenizer.encode(text) == ids
    with torch.no_grad():
        logits = hf(torch.tensor(ids)[None]).logits[0].double()
    ref = float(torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:])))
    ours = f32.perplexity(text)
    assert ours.n_tokens == len(ids) - 1
    assert ours.cross_entropy == pytest.approx(ref, rel=1e-3)
    assert ours.perplexity == pytest.approx(np.exp(ref), rel=1e-3)
    # The shipped Q8_0 file against PyTorch on the original fp32 weights (training run).
    q8 = shipped.perplexity(text)
    assert q8.perplexity == pytest.approx(np.exp(GOLDEN["pytorch_fp32_cross_entropy"]), rel=1e-2)
    assert abs(q8.perplexity / ours.perplexity - 1) < 1e-2


def test_heldout_sample_was_held_out():
    """The evaluation files are in the training script's held-out split (never trained on)."""
    import importlib.util

    path = Path(__file__).parents[1] / "tools" / "train_default_model.py"
    spec = importlib.util.spec_from_file_location("train_default_model", path)
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    assert GOLDEN["heldout_sample"]
    for name in GOLDEN["heldout_sample"]:
        assert train.is_held_out(name)
    assert not train.is_held_out("os.py") and not train.is_held_out("json/decoder.py")


def test_missing_default_model_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(mambalite.model, "DEFAULT_MODEL", "nonexistent.gguf")
    with pytest.raises(FileNotFoundError, match="default model .* is missing.*reinstall"):
        mambalite.load()
