"""Quantize an f32/f16/bf16 GGUF model (`mambalite quantize`): Q8_0, Q4_0, or llama-quantize's
K-quant mixes Q4_K_M, Q5_K_M and Q6_K, bit for bit."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import gguf
import numpy as np

from ._quant_mix import FILE_TYPES, HEAD_TYPES, tensor_types
from .export import ARCHITECTURES, Q, atomic_gguf_writer, write_tensors

_SOURCE_TYPES = (Q.F32, Q.F16, Q.BF16)
QUANTIZE_TYPES = ("q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")
_SKIP_KEYS = ("general.architecture", "general.file_type", "general.quantization_version")


def _values(tensor: gguf.ReaderTensor, shape: tuple[int, ...]) -> np.ndarray:
    """A source tensor's values as float32 in numpy order (F16/BF16 widened exactly)."""
    return np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type),
                      dtype=np.float32).reshape(shape)


def _field(reader: gguf.GGUFReader, key: str, default: int) -> int:
    field = reader.fields.get(key)
    if field is None:
        return default
    value = field.contents()
    return int(max(value) if isinstance(value, list) else value)


def quantize(src: str | os.PathLike, dst: str | os.PathLike, type: str = "q8_0", *,
             head_type: str = "q6_k", progress: bool = True) -> Path:
    """Writes `dst`, a copy of the GGUF model `src` with its matrices quantized to `type`.

    `type` is one of QUANTIZE_TYPES. Tensor types follow llama-quantize's rules (without an
    imatrix; see `mambalite._quant_mix.tensor_types`), and so do the quantizers: from the same
    source, the file holds the bytes llama-quantize writes. The source must hold F32/F16/BF16
    tensors: re-quantizing an already quantized file would compound the error. Metadata
    (tokenizer included) is copied; tensors are converted one at a time. `head_type` ("q6_k" or
    "q8_0") is the output head's type in q4_0 files.
    """
    name = str(type).lower()
    if name not in QUANTIZE_TYPES:
        raise ValueError(f"unsupported quantization type {type!r}; choose one of "
                         f"{', '.join(QUANTIZE_TYPES)}")
    _, ftype = FILE_TYPES[name]
    if head_type not in HEAD_TYPES:
        raise ValueError(f"head_type must be one of {', '.join(HEAD_TYPES)}, got {head_type!r}")
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"model file {src} does not exist")
    if src.resolve() == dst.resolve():
        raise ValueError("the output file must differ from the input file")
    try:
        reader = gguf.GGUFReader(src)
    except Exception as e:  # the reader raises assorted errors on foreign files
        raise ValueError(f"{src} is not a readable GGUF file: {e}") from None
    arch = reader.fields["general.architecture"].contents() \
        if "general.architecture" in reader.fields else None
    if arch not in ARCHITECTURES:
        raise ValueError(f"{src} holds a {arch!r} model; mambalite quantizes "
                         f"{', '.join(repr(a) for a in ARCHITECTURES)} models")
    bad = [f"{t.name} ({t.tensor_type.name})" for t in reader.tensors
           if t.tensor_type not in _SOURCE_TYPES]
    if bad:
        raise ValueError(f"{src} is already quantized ({', '.join(bad[:3])}...); quantize from "
                         "an f32, f16 or bf16 file")
    n_layer = _field(reader, f"{arch}.block_count", 0)
    n_expert = _field(reader, f"{arch}.expert_count", 0)
    shapes = [tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors]  # numpy order
    types = tensor_types([(t.name, s) for t, s in zip(reader.tensors, shapes)], name,
                         n_layer=n_layer, n_expert=n_expert, head_type=head_type)

    with atomic_gguf_writer(dst, arch) as writer:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in _SKIP_KEYS:
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), vtype, sub)
        writer.add_file_type(int(ftype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        plan = [(t.name, shape, qtype, functools.partial(_values, t, shape))
                for t, shape, qtype in zip(reader.tensors, shapes, types)]
        write_tensors(writer, plan, progress=progress, desc=f"quantize {dst.name}")
    return dst
