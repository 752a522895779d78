"""Files both ways between mambalite and llama.cpp (through llama-cpp-python, an independent
implementation), for Mamba-1, FalconMamba and Mamba-2 and for the hybrids (granitehybrid,
nemotron_h).

- Our files in llama.cpp: they load, give the same logits within the types' bounds, and the same
  greedy continuation.
- llama.cpp's files in mambalite: files from llama.cpp's quantizer (Q8_0, Q4_0 with its Q6_K
  head, Q4_K_M, F16) give llama.cpp's logits on the same file; files from llama.cpp's converter
  (`convert_hf_to_gguf.py`) give the logits of our own export of the same checkpoint, and their
  tokenizer (rebuilt from `tokenizer.ggml.*`) encodes like llama.cpp's.

Skipped unless `pip install llama-cpp-python` (built from source) has been run; the converter
tests also need a llama.cpp source tree named by LLAMA_CPP_DIR (for example the `vendor/llama.cpp`
folder of llama-cpp-python's sdist), as the converter is not part of any wheel; for the hybrids,
also LLAMA_CPP_PYTHON, a Python with transformers 4.57.6 and torch (llama.cpp's pin: under
transformers 5 its converter misreads the layer kinds, docs/design.md §6).

Bounds (max |difference| / max |logit|): f32 1e-4 (both compute in fp32; measured 3e-7 on the
130m shape); f16 2e-3 (ggml rounds activations to f16 before f16 matrix products, 2^-11
relative, measured 2e-4); q8_0 and q4_0 5e-2 (ggml quantizes activations with fp16 scales and
its own rounding, so the int8 activations differ slightly; measured 8e-3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mambalite

from helpers import (
    CORPUS,
    export,
    hf_logits,
    make_hf_bamba,
    make_hf_falcon_h1,
    make_hf_falcon_mamba,
    make_hf_granite,
    make_hf_jamba,
    make_hf_mamba2,
    make_hf_model,
    make_hf_nemotron_h,
    save_checkpoint,
)

llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")


ARCHS = {
    "mamba": lambda **kw: make_hf_model(seed=81, num_hidden_layers=3, **kw),
    # llama.cpp's converter accepts only intermediate_size = 2 x hidden_size
    "falcon_mamba": lambda **kw: make_hf_falcon_mamba(
        seed=82, intermediate_size=2 * kw["hidden_size"], **kw),
    "mamba2": lambda **kw: make_hf_mamba2(seed=83, num_heads=kw["hidden_size"] // 16,
                                          head_dim=32, n_groups=2, **kw),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cache = {}

    def get(arch: str):
        if arch not in cache:
            hf = ARCHS[arch](vocab_size=512, hidden_size=128, tie_word_embeddings=False)
            cache[arch] = save_checkpoint(hf, tmp_path_factory.mktemp(arch))
        return cache[arch]

    return get


def llama_logits(path: Path, ids: list[int]) -> np.ndarray:
    llm = llama_cpp.Llama(model_path=str(path), n_threads=2, n_ctx=256, logits_all=True,
                          verbose=False)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("qtype", ["q4_K", "q5_K", "q6_K"])
def test_k_quantizers_match_ggml_bit_for_bit(qtype):
    """Our K-quant quantizers against ggml's quantize_row_*_ref (llama-cpp-python's libggml), on
    scales from tiny to large, an all-zero block, all-positive and all-negative blocks (Q4_K and
    Q5_K fit a min as well as a scale) and a block of one repeated value."""
    import ctypes

    from mambalite._core import kernels

    lib = ctypes.CDLL(os.path.join(os.path.dirname(llama_cpp.__file__), "lib",
                                   "libggml-base.so"))
    ref_fn = getattr(lib, f"quantize_row_{qtype}_ref")
    ref_fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    ours_fn = getattr(kernels, f"quantize_{qtype.lower()}")
    rng = np.random.default_rng(0)
    for scale in (1e-3, 1.0, 100.0):
        x = (rng.standard_normal((32, 768)) * scale).astype(np.float32)
        x[0, :256] = 0.0
        x[1, :256] = np.abs(x[1, :256])
        x[2, 256:512] = -np.abs(x[2, 256:512])
        x[3, :256] = 0.25 * scale
        x[4] = rng.uniform(-scale, 3 * scale, 768)
        ours = ours_fn(x)
        ref = np.zeros_like(ours)
        ref_fn(x.ctypes.data, ref.ctypes.data, x.size)
        assert np.array_equal(ours, ref), np.argwhere(ours != ref)[:5]


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("wtype,bound", [("f32", 1e-4), ("f16", 2e-3), ("q8_0", 5e-2),
                                         ("q4_0", 5e-2)])
def test_logits_and_greedy_match_llama_cpp(checkpoints, arch, wtype, bound):
    path = export(checkpoints(arch), wtype)
    ids = [3, 17, 250, 9, 511, 0, 42, 42, 7]
    theirs = llama_logits(path, ids)
    model = mambalite.load(path, threads=2)
    assert rel(model.forward(ids), theirs) <= bound
    if wtype == "f32":
        llm = llama_cpp.Llama(model_path=str(path), n_threads=2, n_ctx=256, verbose=False)
        greedy = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            greedy.append(tok)
            if len(greedy) == 32:
                break
        assert greedy == list(model.generate_tokens(ids, max_new_tokens=32, temperature=0))


# --- llama.cpp's quantizer -------------------------------------------------------------------

FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k_m": 15, "q5_k_m": 17, "q6_k": 18, "f16": 1}  # llama_ftype


def llama_quantize(src: Path, dst: Path, ftype: str) -> Path:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = FTYPES[ftype]
    params.nthread = 2
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    assert rc == 0, f"llama_model_quantize failed ({rc})"
    return dst


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """d_model 256 so that llama.cpp's K-quants (256-value super blocks) apply to every matrix."""
    def get(arch: str):
        hf = ARCHS[arch](vocab_size=512, hidden_size=256, tie_word_embeddings=arch == "mamba2")
        d = save_checkpoint(hf, tmp_path_factory.mktemp(f"wide-{arch}"))
        return hf, export(d, "f32")
    return get


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("ftype,bound", [("q8_0", 5e-2), ("q4_0", 5e-2), ("q4_k_m", 5e-2),
                                         ("q5_k_m", 5e-2), ("f16", 2e-3)])
def test_files_from_llama_quantize(wide, tmp_path, arch, ftype, bound):
    """Bounds as above (the same computation on the same weights; only activation rounding
    differs: ggml rounds to f16 or int8 with fp16 scales, we use fp32 scales)."""
    hf, f32_path = wide(arch)
    path = llama_quantize(f32_path, tmp_path / f"{arch}-{ftype}.gguf", ftype)
    model = mambalite.load(path, threads=2)
    types = {t["type"] for t in model.tensors}
    expected = {"q8_0": {"Q8_0"}, "q4_0": {"Q4_0", "Q6_K"}, "q4_k_m": {"Q4_K", "Q6_K"},
                "q5_k_m": {"Q5_K", "Q6_K"}, "f16": {"F16"}}[ftype]
    assert expected <= types, types
    ids = [3, 17, 250, 9, 511, 0, 42, 42, 7, 100, 200]
    ours = model.forward(ids)
    assert rel(ours, llama_logits(path, ids)) <= bound
    # and the quantization costs what it should against the fp32 reference
    assert rel(ours, hf_logits(hf, ids)) <= {"f16": 5e-3, "q8_0": 5e-2}.get(ftype, 0.4)


def assert_same_tensors(ours: Path, theirs: Path) -> set[str]:
    """Every tensor of two GGUF files: the same type and the same bytes. Returns the types."""
    import gguf

    a = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    b = {t.name: t for t in gguf.GGUFReader(theirs).tensors}
    assert sorted(a) == sorted(b)
    for name, t in a.items():
        assert t.tensor_type == b[name].tensor_type, (name, t.tensor_type, b[name].tensor_type)
        assert np.array_equal(t.data, b[name].data), name
    return {t.tensor_type.name for t in a.values()}


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("ftype", ["q4_k_m", "q5_k_m", "q6_k", "q4_0", "q8_0"])
def test_quantize_equals_llama_quantize(wide, tmp_path, arch, ftype):
    """`mambalite quantize` and llama-quantize on the same f32 file: every tensor with the same
    type and the same bytes (llama.cpp's type mix and reference quantizers)."""
    from mambalite.quantize import quantize

    _, f32_path = wide(arch)
    theirs = llama_quantize(f32_path, tmp_path / "theirs.gguf", ftype)
    ours = quantize(f32_path, tmp_path / "ours.gguf", ftype, progress=False)
    types = assert_same_tensors(ours, theirs)
    assert {"q4_k_m": "Q4_K", "q5_k_m": "Q5_K", "q6_k": "Q6_K"}.get(ftype, ftype.upper()) in types


# Hybrids with K-quant-sized rows (256) and enough layers for the _M mixes' per-layer choices:
# attn_v and ffn_down (dense, and experts' by layer) get Q6_K in the layers llama.cpp picks; 8
# experts, for the rules llama.cpp has for them, all taken by every token (as in the quantized
# hybrid tests above: top-k routing flips across ties under the engines' different rounding).
WIDE_HYBRIDS = {
    "nemotron-h": lambda: make_hf_nemotron_h(
        seed=60, vocab_size=512, hidden_size=256, num_attention_heads=4, num_key_value_heads=2,
        head_dim=64, intermediate_size=512, mamba_num_heads=8, mamba_head_dim=32,
        layers_block_type=["mamba", "attention", "mlp", "mamba", "mlp", "attention", "mlp",
                           "mamba", "mlp", "mlp"]),
    "granite-moe": lambda: make_hf_granite(
        seed=61, vocab_size=512, hidden_size=256, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=256, shared_intermediate_size=256, mamba_d_head=32, mamba_n_heads=16,
        num_local_experts=8, num_experts_per_tok=8, num_hidden_layers=4,
        layer_types=["mamba", "attention", "mamba", "attention"]),
    "jamba": lambda: make_hf_jamba(seed=62, vocab_size=512, hidden_size=256,
                                   intermediate_size=256, num_attention_heads=4,
                                   num_key_value_heads=2),
}


@pytest.mark.parametrize("name", list(WIDE_HYBRIDS))
@pytest.mark.parametrize("ftype", ["q4_k_m", "q5_k_m"])
def test_hybrid_quantize_equals_llama_quantize(tmp_path, name, ftype):
    """As above for the hybrids; and `mambalite export --type q4_k_m` writes the same file as
    quantizing its f32 export, which llama.cpp runs. The two engines' logits on it are compared
    against the quantization's own error, not a fixed bound: these random hybrids amplify every
    rounding (Q4_K_M moves their logits 0.14-1.3 of max |logit| from f32, and by 0.2-0.3 already
    at position 0 for Jamba), and the engines round activations differently (ggml to int8 per
    256 values for K-quants, we per 32), which measured 0.15-0.35 of that error. A wrong product
    would be as far from llama.cpp as from f32."""
    from mambalite.quantize import quantize

    hf = WIDE_HYBRIDS[name]()
    d = save_checkpoint(hf, tmp_path / "ckpt")
    f32_path = export(d, "f32")
    theirs = llama_quantize(f32_path, tmp_path / "theirs.gguf", ftype)
    ours = quantize(f32_path, tmp_path / "ours.gguf", ftype, progress=False)
    types = assert_same_tensors(ours, theirs)
    assert {"Q6_K", ftype[:2].upper() + "_K"} <= types, types
    direct = export(d, ftype)
    assert_same_tensors(direct, theirs)
    ids = [3, 17, 250, 9, 301, 0, 42, 42, 7, 100, 200, 5]
    llm = llama_cpp.Llama(model_path=str(direct), n_threads=2, n_ctx=256, logits_all=True,
                          verbose=False, type_k=0, type_v=0)
    llm.eval(ids)
    scores = np.array(llm.scores[: len(ids)])
    got = mambalite.load(direct, threads=2, kv_type="f32").forward(ids)
    assert np.isfinite(scores).all()
    assert rel(got, scores) <= 0.5 * rel(scores, hf_logits(hf, ids))


# --- llama.cpp's converter -------------------------------------------------------------------


@pytest.fixture(scope="module")
def converter():
    root = os.environ.get("LLAMA_CPP_DIR")
    if not root or not (Path(root) / "convert_hf_to_gguf.py").is_file():
        pytest.skip("set LLAMA_CPP_DIR to a llama.cpp source tree (with convert_hf_to_gguf.py "
                    "and gguf-py) to test files written by llama.cpp's converter")
    root = Path(root)

    def convert(src: Path, dst: Path, outtype: str) -> Path:
        env = {**os.environ, "PYTHONPATH": str(root / "gguf-py")}
        subprocess.run([sys.executable, str(root / "convert_hf_to_gguf.py"), str(src),
                        "--outtype", outtype, "--outfile", str(dst)],
                       check=True, env=env, capture_output=True)
        return dst

    return convert


@pytest.mark.parametrize("arch", list(ARCHS))
def test_files_from_llama_cpp_converter(converter, tmp_path, arch):
    """No tokenizer files: the converter embeds its built-in GPT-NeoX vocabulary (50277 tokens,
    byte-level BPE with merges), the tokenizer of the state-spaces models."""
    hf = ARCHS[arch](vocab_size=50288, hidden_size=64, tie_word_embeddings=True)
    d = save_checkpoint(hf, tmp_path / "ckpt")
    ids = [3, 17, 250, 9, 50000, 0, 42, 42, 7]
    ref = hf_logits(hf, ids)
    for outtype, bound in (("f32", 1e-4), ("f16", 5e-3), ("q8_0", 5e-2)):
        theirs = converter(d, tmp_path / f"llama-{outtype}.gguf", outtype)
        model = mambalite.load(theirs)
        assert model.config.architecture == ("mamba2" if arch == "mamba2" else "mamba")
        got = model.forward(ids)
        assert rel(got, ref) <= bound
        if outtype in ("f32", "q8_0"):  # the same types as our own export: the same logits
            ours = mambalite.load(export(d, outtype)).forward(ids)
            assert rel(got, ours) <= 1e-5
    # The converter's tokenizer, rebuilt by us from tokenizer.ggml.*, against llama.cpp's own.
    tok = mambalite.load(theirs).tokenizer
    llm = llama_cpp.Llama(model_path=str(theirs), n_ctx=64, verbose=False, vocab_only=True)
    for text in sorted(set(CORPUS)) + ["  leading spaces", "tabs\t\tand\r\nCRLF", "x" * 300]:
        want = llm.tokenize(text.encode(), add_bos=False, special=False)
        assert tok.encode(text, add_bos=False) == want, text
        assert tok.decode(want) == text


def test_spm_file_from_llama_cpp_converter(converter, tmp_path, spm_model_bytes):
    """tokenizer.model: the converter writes a llama (SentencePiece) vocabulary from tokens and
    scores; our rebuild must encode like the original model."""
    import sentencepiece as spm

    hf = make_hf_mamba2(seed=84, vocab_size=608, hidden_size=64, num_heads=4, head_dim=32)
    d = save_checkpoint(hf, tmp_path / "ckpt")
    (d / "tokenizer.model").write_bytes(spm_model_bytes)
    model = mambalite.load(converter(d, tmp_path / "spm.gguf", "f32"))
    assert model.metadata["tokenizer.ggml.model"] == "llama"
    assert "mambalite.tokenizer.sentencepiece_model" not in model.metadata
    sp = spm.SentencePieceProcessor(model_proto=spm_model_bytes)
    for text in sorted(set(CORPUS)) + ["  leading spaces", "a\n\n\nb", "x" * 300]:
        assert model.tokenizer.encode(text, add_bos=False) == sp.encode(text), text


# --- hybrids ---------------------------------------------------------------------------------

HYBRIDS = {
    "granite-dense": lambda: make_hf_granite(seed=91, num_hidden_layers=4,
                                             layer_types=["mamba", "attention", "mamba",
                                                          "attention"]),
    "granite-moe": lambda: make_hf_granite(seed=92, num_local_experts=4, num_experts_per_tok=2),
    # For the rounded types every token takes all experts: with top 2 of 4, ggml's f16/int8
    # activations and ours move some router logits across a tie, a jump that says nothing of
    # the products (routing is compared in f32).
    "granite-moe-all-experts": lambda: make_hf_granite(seed=92, num_local_experts=4,
                                                       num_experts_per_tok=4),
    "bamba": lambda: make_hf_bamba(seed=93),
    "nemotron-h": lambda: make_hf_nemotron_h(seed=94),
    "jamba": lambda: make_hf_jamba(seed=95),
    "falcon-h1": lambda: make_hf_falcon_h1(seed=96),
    "falcon-h1-plain-tied": lambda: make_hf_falcon_h1(
        seed=97, mamba_rms_norm=False, mamba_conv_bias=False, tie_word_embeddings=True),
}


@pytest.mark.parametrize("name", list(HYBRIDS))
@pytest.mark.parametrize("wtype,bound", [("f32", 1e-4), ("f16", 1e-2), ("q8_0", 5e-2)])
def test_hybrid_files_in_llama_cpp(tmp_path, name, wtype, bound):
    """Our granitehybrid / nemotron_h files in llama.cpp: the same logits (both with F32 KV
    caches; f32 and q8_0 bounds as above; f16 1e-2, as ggml rounds activations to f16 before each
    f16 product, a perturbation as large as the weights' own rounding, which these random hybrids
    amplify 5-10x: measured 1e-3 to 5.5e-3) and, for f32, the same greedy continuation. Bamba
    included: our export permutes only the rotary half of each Q/K head, which llama.cpp's rope
    over rope.dimension_count dims then undoes exactly (its own converter permutes whole heads,
    docs/design.md §6)."""
    if (name == "granite-moe") != (wtype == "f32") and name.startswith("granite-moe"):
        pytest.skip("top-2 routing is compared in f32, all-experts routing in the rounded types")
    if name == "jamba" and wtype == "q8_0":
        pytest.skip("random Jamba models amplify int8 activation rounding past any useful bound "
                    "in both engines (test_hybrid.py's quantized-weights docstring)")
    hf = HYBRIDS[name]()
    path = export(save_checkpoint(hf, tmp_path / "ckpt"), wtype)
    ids = [3, 17, 250, 9, 301, 0, 42, 42, 7, 100, 200, 5]
    llm = llama_cpp.Llama(model_path=str(path), n_threads=2, n_ctx=256, logits_all=True,
                          verbose=False, type_k=0, type_v=0)  # GGML_TYPE_F32
    llm.eval(ids)
    theirs = np.array(llm.scores[: len(ids)])
    model = mambalite.load(path, threads=2, kv_type="f32")
    ours = model.forward(ids)
    assert rel(ours, theirs) <= bound
    if wtype != "q8_0":  # (quantized against transformers: test_hybrid.py)
        assert rel(ours, hf_logits(hf, ids)) <= max(bound, 5e-3)
    if wtype == "f32":
        llm = llama_cpp.Llama(model_path=str(path), n_threads=2, n_ctx=256, verbose=False,
                              type_k=0, type_v=0)
        greedy = []
        for tok in llm.generate(ids, temp=0.0, top_k=1, reset=True):
            greedy.append(tok)
            if len(greedy) == 24:
                break
        state = model.new_state()
        logits = model.prefill(state, ids)
        ours = []
        for _ in range(24):
            ours.append(int(np.argmax(logits)))
            logits = model.step(state, ours[-1])
        assert greedy[:len(ours)] == ours[:len(greedy)]


# --- hybrids from llama.cpp's converter ----------------------------------------------------------

# The converter reads the hub's layer-type names, which transformers 5 no longer writes, and it is
# pinned to transformers 4.57.6 by llama.cpp (docs/design.md §6): it runs in the Python named by
# LLAMA_CPP_PYTHON, an environment with that version and `torch`, on checkpoints whose config.json
# is rewritten to the hub's spelling. The tests' small trained BPE tokenizer has no entry in the
# converter's table of known pre-tokenizers, so it is declared GPT-2's byte-level one.
CONVERT_WRAPPER = """
import runpy, sys
from pathlib import Path
root = Path(sys.argv.pop(1))
sys.path[:0] = [str(root), str(root / "gguf-py")]
from conversion import base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "gpt-2"
sys.argv[0] = str(root / "convert_hf_to_gguf.py")
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def hybrid_converter(tmp_path_factory):
    root, python = os.environ.get("LLAMA_CPP_DIR"), os.environ.get("LLAMA_CPP_PYTHON")
    if not root or not (Path(root) / "convert_hf_to_gguf.py").is_file() or not python:
        pytest.skip("set LLAMA_CPP_DIR to a llama.cpp source tree and LLAMA_CPP_PYTHON to a Python "
                    "with transformers 4.57.6 and torch to test hybrid files from llama.cpp's "
                    "converter")
    wrapper = tmp_path_factory.mktemp("converter") / "convert.py"
    wrapper.write_text(CONVERT_WRAPPER)

    def convert(src: Path, dst: Path, outtype: str) -> Path:
        r = subprocess.run([python, str(wrapper), root, str(src), "--outtype", outtype,
                            "--outfile", str(dst)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-3000:]
        return dst

    return convert


def hub_style(d: Path) -> Path:
    """config.json with the layer kinds spelled as the hub's configs spell them."""
    import json

    c = json.loads((d / "config.json").read_text())
    hub = {"linear_attention": "mamba", "full_attention": "attention"}
    if "layer_types" in c:
        c["layer_types"] = [hub.get(t, t) for t in c["layer_types"]]
    if "layers_block_type" in c:
        c["hybrid_override_pattern"] = "".join(
            {"linear_attention": "M", "full_attention": "*", "mlp": "-"}[t]
            for t in c["layers_block_type"])
        if "moe" not in c["layers_block_type"]:  # the converter takes any MoE key for the MoE model
            for k in [k for k in c if "expert" in k or k.startswith("moe_")]:
                del c[k]
    (d / "config.json").write_text(json.dumps(c))
    t = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(
        json.dumps({**t, "tokenizer_class": "PreTrainedTokenizerFast"}))
    return d


# vocab 304: the converter pads Mamba-2 vocabularies to a multiple of 8 but not the embedding,
# and llama.cpp refuses such files.
CONVERTED = {
    "granite-dense": lambda: make_hf_granite(seed=95, vocab_size=304, num_hidden_layers=4,
                                             layer_types=["mamba", "attention", "mamba",
                                                          "attention"]),
    "granite-moe": lambda: make_hf_granite(seed=96, vocab_size=304, num_local_experts=4,
                                           num_experts_per_tok=2),
    "bamba": lambda: make_hf_bamba(seed=97, vocab_size=304),
    "nemotron-h": lambda: make_hf_nemotron_h(seed=98, vocab_size=304),
    "falcon-h1": lambda: make_hf_falcon_h1(seed=99, vocab_size=304),
}


@pytest.mark.parametrize("name", list(CONVERTED))
def test_hybrid_files_from_llama_cpp_converter(hybrid_converter, tmp_path, name):
    """llama.cpp's granitehybrid and nemotron_h files in mambalite: f32 logits within 1e-4 of our
    export of the same checkpoint and of transformers, q8_0 within 5e-2, and the tokenizer rebuilt
    from tokenizer.ggml.* encodes like ours. Bamba is the exception: the converter permutes Q/K
    over whole heads for a half-rotated head (docs/design.md §6), so its file means another
    model: there we must give what llama.cpp computes on that file, and transformers agrees only
    at position 0, where RoPE is the identity (measured 0.55 apart over the 15 positions)."""
    from helpers import train_bpe_tokenizer

    hf = CONVERTED[name]()
    d = hub_style(save_checkpoint(hf, tmp_path / "ckpt", tokenizer=train_bpe_tokenizer()))
    template = (Path(__file__).parent / "data" / "templates" /
                "ibm-granite-granite-4.0.jinja").read_text(encoding="utf-8")
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": template}))
    ids = [3, 17, 250, 9, 301, 0, 42, 42, 7, 100, 200, 5, 60, 61, 62]
    ref = hf_logits(hf, ids)
    for outtype, bound in (("f32", 1e-4), ("q8_0", 5e-2)):
        theirs = hybrid_converter(d, tmp_path / f"llama-{outtype}.gguf", outtype)
        model = mambalite.load(theirs, kv_type="f32")
        kinds = [layer.kind for layer in model.layers]
        assert kinds == [layer.kind for layer in mambalite.load(export(d, outtype)).layers]
        got = model.forward(ids)
        if name == "bamba":
            llm = llama_cpp.Llama(model_path=str(theirs), n_threads=2, n_ctx=64,
                                  logits_all=True, verbose=False, type_k=0, type_v=0)
            llm.eval(ids)
            assert rel(got, np.array(llm.scores[: len(ids)])) <= bound
            if outtype == "f32":  # at position 0 RoPE is the identity: only there they agree
                assert rel(got[:1], ref[:1]) <= bound
                assert rel(got, ref) > 1e-2
            continue
        ours = mambalite.load(export(d, outtype), kv_type="f32").forward(ids)
        assert rel(got, ours) <= 1e-5
        if outtype == "f32":  # (quantized against transformers: test_hybrid.py)
            assert rel(got, ref) <= bound
    ours = mambalite.load(export(d, "f32"))
    # Both converters carry the checkpoint's chat template, and the chats tokenize alike.
    assert model.chat_template == ours.chat_template == template
    chat = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": CORPUS[0]}]
    assert model.apply_chat_template(chat, tokenize=True) == \
        ours.apply_chat_template(chat, tokenize=True)
    for text in sorted(set(CORPUS))[:20]:
        assert model.tokenizer.encode(text, add_bos=False) == ours.tokenizer.encode(
            text, add_bos=False), text


def test_jamba_files_from_llama_cpp_converter(hybrid_converter, tmp_path):
    """llama.cpp's jamba files in mambalite. Its converter takes a SentencePiece tokenizer.model
    (or a Llama-style HF one), so the checkpoint gets the tests' trained SentencePiece model,
    with config ids matching it. f32: logits within 1e-4 of transformers and of our export
    (measured 4.9e-6 and 1.8e-6). q8_0 within 1e-2 of our q8_0 export: the tensors are
    identical but for ssm_a, where torch's and numpy's exp of A_log differ by an ulp in most
    values, which this random Jamba's sensitivity to int8 activation rounding turns into 2.5e-3.
    Both files tokenize alike."""
    from helpers import train_spm

    train_spm(tmp_path)
    hf = make_hf_jamba(seed=99, vocab_size=608, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    d = save_checkpoint(hf, tmp_path / "ckpt")
    (d / "tokenizer.model").write_bytes((tmp_path / "sp.model").read_bytes())
    (d / "tokenizer_config.json").write_text(json.dumps({"add_bos_token": True}))
    ids = [3, 17, 250, 9, 301, 0, 42, 42, 7, 100, 200, 5, 600, 601]
    ref = hf_logits(hf, ids)
    for outtype, bound in (("f32", 1e-4), ("q8_0", 1e-2)):
        theirs = mambalite.load(hybrid_converter(d, tmp_path / f"llama-{outtype}.gguf", outtype),
                                kv_type="f32")
        ours = mambalite.load(export(d, outtype), kv_type="f32")
        assert [layer.kind for layer in theirs.layers] == [layer.kind for layer in ours.layers]
        got = theirs.forward(ids)
        assert rel(got, ours.forward(ids)) <= bound
        if outtype == "f32":
            assert rel(got, ref) <= bound
    for text in sorted(set(CORPUS))[:20]:
        assert theirs.tokenizer.encode(text) == ours.tokenizer.encode(text), text
