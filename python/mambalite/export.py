"""Export a PyTorch Mamba checkpoint to a GGUF file that llama.cpp and mambalite both load.

Names, metadata and the choice of F32 tensors follow llama.cpp's converter (docs/design.md §3).
Tensors are streamed: header and tensor table first, then one tensor at a time.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from ._checkpoint import Checkpoint
from ._export_hybrid import (
    add_hybrid_metadata,
    is_hybrid,
    plan_hybrid,
    read_hybrid_hparams,
    source_name,
)
from ._hparams import MambaHParams, read_hparams
from ._quant_mix import FILE_TYPES, HEAD_TYPES, tensor_types
from ._tokenizer_export import add_tokenizer

Q = gguf.GGMLQuantizationType
# The GGUF architectures mambalite writes and runs (llama.cpp's names).
ARCHITECTURES = ("mamba", "mamba2", "granitehybrid", "nemotron_h", "jamba", "falcon-h1")


_K_QUANTIZERS = {Q.Q4_K: "quantize_q4_k", Q.Q5_K: "quantize_q5_k", Q.Q6_K: "quantize_q6_k"}


def encode(data: np.ndarray, qtype: gguf.GGMLQuantizationType, name: str) -> np.ndarray:
    """float32 values -> the bytes (or array) the GGUF writer stores for `qtype`."""
    if qtype == Q.F32:
        return np.ascontiguousarray(data, dtype=np.float32)
    if qtype == Q.F16:
        out = data.astype(np.float16)
        if not np.isfinite(out).all() and np.isfinite(data).all():
            raise ValueError(f"tensor {name} has values beyond float16's range (65504); "
                             "export with --type bf16 or f32")
        return out
    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype in _K_QUANTIZERS:  # ggml's reference quantizers, in the engine (`gguf` has none)
        from ._core import kernels

        quantize_rows = getattr(kernels, _K_QUANTIZERS[qtype])
        return quantize_rows(data.reshape(-1, data.shape[-1])).reshape(
            gguf.quants.quant_shape_to_byte_shape(data.shape, qtype))
    return gguf.quants.quantize(data, qtype)


def add_tensor_info(writer: gguf.GGUFWriter, name: str, shape: tuple[int, ...],
                    qtype: gguf.GGMLQuantizationType) -> None:
    """Declares a tensor of numpy shape `shape` stored as `qtype` (data follows later)."""
    byte_shape = gguf.quants.quant_shape_to_byte_shape(shape, qtype)
    nbytes = int(np.prod(byte_shape, dtype=np.int64))
    if qtype == Q.F32:
        writer.add_tensor_info(name, shape, np.dtype(np.float32), nbytes)
    elif qtype == Q.F16:
        writer.add_tensor_info(name, shape, np.dtype(np.float16), nbytes)
    else:
        writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), nbytes, raw_dtype=qtype)


@contextmanager
def atomic_gguf_writer(dst: Path, arch: str) -> Iterator[gguf.GGUFWriter]:
    """A GGUF writer on `dst`.part, renamed to `dst` when the block completes and removed if it
    fails, so a partial file never carries the final name."""
    tmp = dst.with_name(dst.name + ".part")
    writer = gguf.GGUFWriter(tmp, arch)
    try:
        yield writer
        writer.close()
        os.replace(tmp, dst)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise


def write_tensors(writer: gguf.GGUFWriter,
                  tensors: list[tuple[str, tuple[int, ...], gguf.GGMLQuantizationType,
                                      Callable[[], np.ndarray]]],
                  *, progress: bool, desc: str) -> None:
    """Writes header, metadata and tensor table, then each tensor (name, numpy shape, type,
    loader of float32 values) encoded one at a time, so only one is ever in memory."""
    for name, shape, qtype, _ in tensors:
        add_tensor_info(writer, name, shape, qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tensors), desc=desc, unit="tensor")
    for name, shape, qtype, load in tensors:
        data = load()
        if data.shape != shape:
            raise ValueError(f"tensor {name}: loaded shape {data.shape}, expected {shape}")
        writer.write_tensor_data(encode(data, qtype, name))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()


@dataclass
class _PlannedTensor:
    name: str  # GGUF name
    shape: tuple[int, ...]  # numpy order
    load: Callable[[], np.ndarray]  # float32 values, numpy order


def _plan(ckpt: Checkpoint, hp: MambaHParams):
    D, E, N, K, R = hp.d_model, hp.d_inner, hp.d_state, hp.d_conv, hp.dt_rank
    H, G = hp.n_head, hp.n_group
    CD = E + 2 * G * N if hp.arch == "mamba2" else E  # conv channels
    pre = hp.key_prefix
    errors: list[str] = []
    plan: list[_PlannedTensor] = []
    used: set[str] = set()

    def f32(name: str) -> Callable[[], np.ndarray]:
        return lambda: np.asarray(ckpt.load(name), dtype=np.float32)

    def add(src: str, dst: str, shape: tuple[int, ...], *, accept=None, transform=None) -> None:
        src = pre + src
        if src not in ckpt:
            errors.append(f"missing tensor {src!r}")
            return
        used.add(src)
        got = ckpt.shape(src)
        if got not in (accept or [shape]):
            errors.append(f"tensor {src!r} has shape {list(got)}, expected {list(shape)}")
            return
        load = f32(src)
        if transform is not None:
            load = (lambda ld, tf: lambda: tf(ld()).reshape(shape))(load, transform)
        elif got != shape:
            load = (lambda ld: lambda: ld().reshape(shape))(load)
        plan.append(_PlannedTensor(dst, shape, load))

    if pre + hp.embedding_key not in ckpt:
        raise ValueError(f"{ckpt.dir}: missing the embedding {pre + hp.embedding_key!r}")
    V = ckpt.shape(pre + hp.embedding_key)[0]
    add(hp.embedding_key, "token_embd.weight", (V, D))
    for i in range(hp.n_layer):
        p = f"backbone.layers.{i}."
        b = f"blk.{i}."
        add(p + "norm.weight", b + "attn_norm.weight", (D,))
        if hp.arch == "mamba2":
            add(p + "mixer.in_proj.weight", b + "ssm_in.weight", (E + CD + H, D))
        else:
            add(p + "mixer.in_proj.weight", b + "ssm_in.weight", (2 * E, D))
        add(p + "mixer.conv1d.weight", b + "ssm_conv1d.weight", (CD, K), accept=[(CD, 1, K)])
        if hp.has_conv_bias:
            add(p + "mixer.conv1d.bias", b + "ssm_conv1d.bias", (CD,))
        else:  # llama.cpp's graph always adds a bias: a zero one is the same model
            plan.append(_PlannedTensor(b + "ssm_conv1d.bias", (CD,),
                                       lambda: np.zeros(CD, dtype=np.float32)))
        if hp.arch == "mamba2":
            add(p + "mixer.dt_bias", b + "ssm_dt.bias", (H,))
            add(p + "mixer.A_log", b + "ssm_a", (H, 1), accept=[(H,)],
                transform=lambda a: -np.exp(a))
            add(p + "mixer.D", b + "ssm_d", (H, 1), accept=[(H,)])
            add(p + "mixer.norm.weight", b + "ssm_norm.weight", (G, E // G), accept=[(E,)])
        else:
            add(p + "mixer.x_proj.weight", b + "ssm_x.weight", (R + 2 * N, E))
            add(p + "mixer.dt_proj.weight", b + "ssm_dt.weight", (E, R))
            add(p + "mixer.dt_proj.bias", b + "ssm_dt.bias", (E,))
            add(p + "mixer.A_log", b + "ssm_a", (E, N), transform=lambda a: -np.exp(a))
            add(p + "mixer.D", b + "ssm_d", (E,))
        add(p + "mixer.out_proj.weight", b + "ssm_out.weight", (D, E))
    add("backbone.norm_f.weight", "output_norm.weight", (D,))

    head = pre + "lm_head.weight"
    if head in ckpt:
        used.add(head)
        got = ckpt.shape(head)
        if got != (V, D):
            errors.append(f"tensor {head!r} has shape {list(got)}, expected {[V, D]}")
        elif not np.array_equal(ckpt.load(head), ckpt.load(pre + hp.embedding_key)):
            # An untied head (llama.cpp also drops a head that equals the embedding).
            add("lm_head.weight", "output.weight", (V, D))
    elif not hp.tie_embeddings:
        errors.append(f"config says the head is not tied, but {head!r} is missing")

    unknown = sorted(n for n in ckpt.names() if n not in used)
    if unknown:
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        errors.append(f"unexpected tensors {', '.join(unknown[:8])}{more}")
    if errors:
        listed = "\n  - ".join(errors[:20])
        kind = {"mamba": "FalconMamba" if hp.dt_b_c_rms else "Mamba-1", "mamba2": "Mamba-2"}
        raise ValueError(f"{ckpt.dir} is not a {kind[hp.arch]} checkpoint this exporter "
                         f"understands:\n  - {listed}")
    return plan, V


def export(src: str | os.PathLike, dst: str | os.PathLike, type: str = "f16", *,
           head_type: str = "q6_k", progress: bool = True) -> Path:
    """Convert a Mamba-1, FalconMamba, Mamba-2 or hybrid checkpoint directory to a GGUF file.

    Args:
        src: directory with config.json and model.safetensors / pytorch_model.bin (sharded
            checkpoints with an index json work too), in transformers format (Mamba, FalconMamba,
            Mamba2), mamba_ssm format (Mamba1 or Mamba2 layers) or mistral's Codestral
            Mamba layout (params.json + consolidated.safetensors + tokenizer.model.v3); or a
            transformers hybrid: Granite-4.0-H (GraniteMoeHybrid, dense or MoE), Bamba,
            Nemotron-H, Jamba or Falcon-H1.
        dst: path of the GGUF file to write (written to a temporary name, then renamed).
        type: weight type of the matrices: "f32", "f16", "bf16", "q8_0", "q4_0", or one of
            llama-quantize's K-quant mixes "q4_k_m", "q5_k_m", "q6_k" (its per-tensor types and
            reference quantizers, bit for bit). Norms, A, D, biases and the conv kernel stay
            F32, as in llama.cpp (see `mambalite._quant_mix.tensor_types`).
        head_type: for q4_0, the type of the output head: "q6_k" (llama-quantize's choice, the
            default) or "q8_0".
        progress: show a progress bar on stderr.

    Returns:
        The path written.
    """
    wtype_name = str(type).lower()
    if wtype_name not in FILE_TYPES:
        raise ValueError(f"unsupported export type {type!r}; choose one of "
                         f"{', '.join(FILE_TYPES)}")
    wtype, ftype = FILE_TYPES[wtype_name]
    if head_type not in HEAD_TYPES:
        raise ValueError(f"head_type must be one of {', '.join(HEAD_TYPES)}, got {head_type!r}")
    ckpt = Checkpoint(src)
    dst = Path(dst)
    if dst.is_dir():
        raise ValueError(f"{dst} is a directory; give the path of the .gguf file to write")
    if is_hybrid(ckpt.config):
        hy = read_hybrid_hparams(ckpt)
        planned, n_vocab = plan_hybrid(ckpt, hy)
        n_layer, n_expert = hy.n_layer, hy.n_expert
        arch, source_format = hy.arch, "transformers"

        def add_metadata(writer: gguf.GGUFWriter) -> None:
            add_hybrid_metadata(writer, hy)
    else:
        hp = read_hparams(ckpt)
        planned, n_vocab = _plan(ckpt, hp)
        n_layer, n_expert = hp.n_layer, 0
        arch, source_format = hp.arch, hp.source_format

        def add_metadata(writer: gguf.GGUFWriter) -> None:
            _add_mamba_metadata(writer, hp)

    types = tensor_types([(t.name, t.shape) for t in planned], wtype_name, n_layer=n_layer,
                         n_expert=n_expert, head_type=head_type)
    tensors = [(t.name, t.shape, q, t.load) for t, q in zip(planned, types)]
    with atomic_gguf_writer(dst, arch) as writer:
        writer.add_name(source_name(ckpt))
        writer.add_file_type(int(ftype))
        if wtype not in (Q.F32, Q.F16, Q.BF16):
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_vocab_size(n_vocab)
        add_metadata(writer)
        writer.add_string("mambalite.source_format", source_format)
        if not add_tokenizer(writer, ckpt, n_vocab):
            writer.add_tokenizer_model("none")  # llama.cpp's loader needs the key: "no vocab"
        write_tensors(writer, tensors, progress=progress, desc=f"export {dst.name}")
    return dst


def _add_mamba_metadata(writer: gguf.GGUFWriter, hp: MambaHParams) -> None:
    """llama.cpp's keys for `mamba` / `mamba2` (docs/design.md §3)."""
    arch = hp.arch
    writer.add_context_length(2**20)
    writer.add_embedding_length(hp.d_model)
    writer.add_feed_forward_length(0)
    writer.add_head_count(0)
    writer.add_block_count(hp.n_layer)
    writer.add_ssm_conv_kernel(hp.d_conv)
    writer.add_ssm_inner_size(hp.d_inner)
    writer.add_ssm_state_size(hp.d_state)
    writer.add_layer_norm_rms_eps(hp.norm_eps)
    if arch == "mamba2":  # llama.cpp keeps the head count under time_step_rank
        writer.add_ssm_time_step_rank(hp.n_head)
        writer.add_ssm_group_count(hp.n_group)
    else:
        writer.add_ssm_time_step_rank(hp.dt_rank)
        writer.add_bool(f"{arch}.ssm.dt_b_c_rms", hp.dt_b_c_rms)
        if hp.dt_b_c_rms:
            writer.add_float32("mambalite.ssm.mixer_rms_epsilon", hp.mixer_eps)
