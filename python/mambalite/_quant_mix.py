"""Which type each tensor of a quantized file takes: llama.cpp's rules, so that our files equal
llama-quantize's (src/llama-quant.cpp: tensor_allows_quantization, llama_tensor_get_type and
tensor_type_fallback, for the types mambalite writes, without an imatrix)."""

from __future__ import annotations

import re

import gguf

Q = gguf.GGMLQuantizationType

# File type name -> (the matrices' base type, general.file_type).
FILE_TYPES = {
    "f32": (Q.F32, gguf.LlamaFileType.ALL_F32),
    "f16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
    "bf16": (Q.BF16, gguf.LlamaFileType.MOSTLY_BF16),
    "q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    "q4_0": (Q.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
    "q4_k_m": (Q.Q4_K, gguf.LlamaFileType.MOSTLY_Q4_K_M),
    "q5_k_m": (Q.Q5_K, gguf.LlamaFileType.MOSTLY_Q5_K_M),
    "q6_k": (Q.Q6_K, gguf.LlamaFileType.MOSTLY_Q6_K),
}
HEAD_TYPES = ("q6_k", "q8_0")
_K_MIXES = ("q4_k_m", "q5_k_m")  # the _M variants: more bits for some layers' tensors
# A 256-block type on rows it does not divide falls back to a 32-block type (then to F16).
_FALLBACK = {Q.Q4_K: Q.Q5_0, Q.Q5_K: Q.Q5_1, Q.Q6_K: Q.Q8_0}
_LAYER = re.compile(r"blk\.(\d+)\.")


def is_matrix(name: str, shape: tuple[int, ...]) -> bool:
    """Whether a tensor is quantized at all: 2-D ".weight" matrices and MoE experts' 3-D ones;
    norms (also Mamba-2's 2-D ssm_norm), the MoE router and the conv kernel stay as they are."""
    return (name.endswith(".weight") and "conv1d" not in name and "norm" not in name
            and "ffn_gate_inp" not in name
            and (len(shape) == 2 or (len(shape) == 3 and name.endswith("_exps.weight"))))


def _block(qtype: Q) -> int:
    return gguf.GGML_QUANT_SIZES[qtype][0]


def _fallback(qtype: Q, cols: int) -> Q:
    """llama.cpp's tensor_type_fallback for a type whose blocks do not divide the rows (for the
    one-type files, whose types have no smaller-block fallback, the converter's F16)."""
    if cols % _block(qtype) == 0:
        return qtype
    qtype = _FALLBACK.get(qtype, qtype)
    return qtype if cols % _block(qtype) == 0 else Q.F16


def _more_bits(i: int, n: int) -> bool:
    """llama.cpp's use_more_bits: the first and last eighth of the layers and every third."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _order(name: str) -> tuple[int, str]:
    """llama.cpp's tensor order (weight_name_comparer): by layer, then name; globals first."""
    m = _LAYER.match(name)
    return (int(m.group(1)) if m else -1, name)


def tensor_types(tensors: list[tuple[str, tuple[int, ...]]], type: str, *, n_layer: int,
                 n_expert: int = 0, head_type: str = "q6_k") -> list[Q]:
    """The type of each (GGUF name, numpy shape) in a file of type `type` (a FILE_TYPES key).

    Non-matrices stay F32. f32/f16/bf16/q8_0 give every matrix that type (F16 where the rows are
    not a multiple of the block, as llama.cpp's converter does). q4_0 does too, but the output
    head (the embedding when tied) is `head_type`: Q6_K as llama-quantize writes it (Q8_0 where
    the rows are not a multiple of 256), or Q8_0. q4_k_m, q5_k_m and q6_k follow llama-quantize's
    mix: a Q6_K head, Q6_K attn_v and ffn_down in the layers `_more_bits` picks (counted as
    llama.cpp counts them), the MoE rules for 8 experts, and the 32-block fallbacks.
    """
    base, _ = FILE_TYPES[type]
    names = [name for name, _ in tensors]
    tied = "output.weight" not in names
    if type not in ("q4_0",) + _K_MIXES + ("q6_k",):
        return [_fallback(base, shape[-1]) if is_matrix(name, shape) else Q.F32
                for name, shape in tensors]
    n_expert = max(1, n_expert)
    n_attn_v = sum(_is_attn_v(name) for name in names)
    i_attn_v = i_ffn_down = 0
    out: dict[str, Q] = {}
    for name, shape in sorted(tensors, key=lambda t: _order(t[0])):
        if not is_matrix(name, shape):
            out[name] = Q.F32
            continue
        cols = shape[-1]
        qtype = base
        if name == "output.weight" or (tied and name == "token_embd.weight"):
            if type == "q4_0" and head_type == "q8_0":
                qtype = Q.Q8_0
            else:
                qtype = Q.Q8_0 if cols % _block(qtype) != 0 else Q.Q6_K
        elif type == "q4_0":
            pass  # llama.cpp's Q4_0 mix changes only the head (without an imatrix)
        elif _is_attn_v(name):
            if type in _K_MIXES and _more_bits(i_attn_v, n_attn_v):
                qtype = Q.Q6_K
            if n_expert == 8:
                qtype = Q.Q8_0
            i_attn_v += 1
        elif "attn_k.weight" in name:
            if n_expert == 8:
                qtype = Q.Q8_0
        elif "ffn_down" in name:
            i_layer = i_ffn_down
            if n_expert > 1:  # experts' tensors are not one per layer: the layer from the name
                m = _LAYER.match(name)
                if m is None or not 0 <= int(m.group(1)) < n_layer:
                    raise ValueError(f"cannot tell the layer of tensor {name}")
                i_layer = int(m.group(1))
            if type in _K_MIXES and _more_bits(i_layer, n_layer):
                qtype = Q.Q6_K
            i_ffn_down += 1
        elif "attn_output.weight" in name:
            if n_expert == 8 and type == "q4_k_m":
                qtype = Q.Q5_K
        out[name] = _fallback(qtype, cols)
    return [out[name] for name in names]


def _is_attn_v(name: str) -> bool:
    return any(k in name for k in ("attn_v.weight", "attn_qkv.weight", "attn_kv_b.weight"))
