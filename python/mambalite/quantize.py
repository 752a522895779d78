"""Quantize an f32/f16/bf16 GGUF model to Q8_0 or Q4_0 (`mambalite quantize`)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import gguf
import numpy as np

from .export import (
    ARCHITECTURES,
    EXPORT_TYPES,
    HEAD_TYPES,
    Q,
    atomic_gguf_writer,
    tensor_type,
    write_tensors,
)

_SOURCE_TYPES = (Q.F32, Q.F16, Q.BF16)
_SKIP_KEYS = ("general.architecture", "general.file_type", "general.quantization_version")


def _values(tensor: gguf.ReaderTensor, shape: tuple[int, ...]) -> np.ndarray:
    """A source tensor's values as float32 in numpy order (F16/BF16 widened exactly)."""
    return np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type),
                      dtype=np.float32).reshape(shape)


def quantize(src: str | os.PathLike, dst: str | os.PathLike, type: str = "q8_0", *,
             head_type: str = "q6_k", progress: bool = True) -> Path:
    """Writes `dst`, a copy of the GGUF model `src` with its matrices quantized to `type`.

    Tensor types follow `mambalite.export.tensor_type` (llama.cpp's rules). The source must hold
    F32/F16/BF16 tensors: re-quantizing an already quantized file would compound the error.
    Metadata (tokenizer included) is copied; tensors are converted one at a time. `head_type`
    ("q6_k" or "q8_0") is the output head's type in q4_0 files (see `tensor_type`).
    """
    name = str(type).lower()
    if name not in ("q8_0", "q4_0"):
        raise ValueError(f"unsupported quantization type {type!r}; choose q8_0 or q4_0")
    wtype, ftype = EXPORT_TYPES[name]
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
    tied = not any(t.name == "output.weight" for t in reader.tensors)

    with atomic_gguf_writer(dst, arch) as writer:
        for key, field in reader.fields.items():
            if key.startswith("GGUF.") or key in _SKIP_KEYS:
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(key, field.contents(), vtype, sub)
        writer.add_file_type(int(ftype))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        plan = []
        for t in reader.tensors:
            shape = tuple(int(d) for d in reversed(t.shape))  # numpy order
            qtype = tensor_type(t.name, shape, wtype, tied, head_type)
            plan.append((t.name, shape, qtype, functools.partial(_values, t, shape)))
        write_tensors(writer, plan, progress=progress, desc=f"quantize {dst.name}")
    return dst
