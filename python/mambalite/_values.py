"""The values of the Python API: a model's hyper-parameters and layer plan, a sequence's State, a
perplexity result, and the validation of token ids."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core

if TYPE_CHECKING:
    from .model import Model


@dataclass(frozen=True)
class Perplexity:
    """Result of `Model.perplexity`: token-level cross-entropy of a text under the model."""

    perplexity: float  # exp(cross_entropy)
    cross_entropy: float  # mean negative log-likelihood, nats per scored token
    n_tokens: int  # number of scored (predicted) tokens
    n_bytes: int  # UTF-8 bytes of the text (0 when token ids were given)
    window: int | None  # tokens per independent window, None for the whole text in one state

    @property
    def bits_per_byte(self) -> float | None:
        """Total cross-entropy in bits divided by the text's UTF-8 bytes (None for ids)."""
        if not self.n_bytes:
            return None
        return self.cross_entropy * self.n_tokens / (np.log(2.0) * self.n_bytes)

    def __float__(self) -> float:
        return self.perplexity

    def __str__(self) -> str:
        bpb = self.bits_per_byte
        ctx = "whole text in one state" if self.window is None else f"windows of {self.window}"
        return (f"perplexity {self.perplexity:.4f} over {self.n_tokens} tokens ({ctx}; "
                f"cross-entropy {self.cross_entropy:.4f} nats/token"
                + (f", {bpb:.4f} bits/byte)" if bpb is not None else ")"))


@dataclass(frozen=True)
class Config:
    """Hyper-parameters of a loaded model (docs/design.md has the notation); the engine's
    ModelConfig is the one field list, these are read from it."""

    architecture: str
    d_model: int
    n_layer: int
    d_inner: int  # Mamba layers (0 without)
    d_state: int
    d_conv: int
    dt_rank: int  # Mamba-1 only (0 for Mamba-2)
    n_head: int  # Mamba-2 only (0 for Mamba-1); head_dim = d_inner // n_head
    n_group: int  # Mamba-2 only: B and C are shared by n_head // n_group heads
    vocab_size: int  # rows of token_embd (= n_vocab), padding ids included
    norm_eps: float
    tied_embeddings: bool
    dt_b_c_rms: bool  # FalconMamba: weightless RMSNorms on dt, B and C
    mixer_eps: float  # their eps
    n_ctx_train: int = 0  # context length the file states (0: none)
    head_dim: int = 0  # attention layers' head size (0 without attention)
    n_rot: int = 0  # leading dims of each head that RoPE rotates (0: no positional encoding)
    rope_base: float = 10000.0
    rope_neox: bool = False  # RoPE pairs (i, i + n_rot/2), rotate-half; else adjacent pairs
    attn_scale: float = 0.0  # q.k multiplier; 0 means 1 / sqrt(head_dim)
    n_expert: int = 0  # MoE: routed experts, used per token, shared expert width
    n_expert_used: int = 0
    n_ff_shexp: int = 0
    embedding_scale: float = 1.0  # Granite's multipliers (1: off)
    residual_scale: float = 1.0
    logit_scale: float = 1.0

    @property
    def n_vocab(self) -> int:
        return self.vocab_size

    @classmethod
    def from_core(cls, c: dict[str, Any]) -> Config:
        """From the engine's config dict (float32 values shown with 7 significant digits)."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            v = c["n_vocab" if f.name == "vocab_size" else f.name]
            values[f.name] = float(f"{v:.7g}") if isinstance(v, float) else v
        return cls(**values)


@dataclass(frozen=True)
class Layer:
    """One block of the model's plan: a Mamba mixer, attention, an MLP or a mixture of experts."""

    layer: int  # the GGUF block index
    kind: str  # "mamba1", "mamba2", "attention", "ffn", "ffn_relu2" or "moe"
    n_head: int = 0  # attention
    n_head_kv: int = 0
    n_ff: int = 0  # feed-forward width (MoE: each expert's)
    parallel: bool = False  # runs beside the block before it, on its input (Falcon-H1)


class State:
    """The recurrent state of one sequence (constant size, whatever its length)."""

    def __init__(self, core: _core.State, model: Model) -> None:
        self._core = core
        self._model = model

    @property
    def n_tokens(self) -> int:
        """Number of tokens this state has consumed."""
        return self._core.n_tokens

    @property
    def nbytes(self) -> int:
        """Size of the state in bytes: the SSM part and the KV caches (allocated for n_ctx)."""
        return self._core.nbytes

    @property
    def ssm_nbytes(self) -> int:
        """Bytes of the Mamba layers' conv windows and SSM states (fixed by the model's shape)."""
        return self._core.ssm_nbytes

    @property
    def kv_nbytes(self) -> int:
        """Bytes of the attention layers' KV caches, allocated for all n_ctx positions."""
        return self._core.kv_nbytes

    def copy(self) -> State:
        """An independent copy (evolving one does not change the other)."""
        return State(self._core.copy(), self._model)

    def to_bytes(self) -> bytes:
        """Serialises the state; restore it with `Model.state_from_bytes`."""
        return self._core.to_bytes()

    def __repr__(self) -> str:
        return f"State(n_tokens={self.n_tokens}, nbytes={self.nbytes})"


def _as_ids(ids: Any, n_vocab: int, what: str = "ids") -> np.ndarray:
    """Validates token ids into a contiguous int32 array."""
    if isinstance(ids, str):
        raise TypeError(f"{what} must be a sequence of token ids, not a str; use "
                        "model.tokenizer.encode() first")
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be a 1-D sequence of token ids, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{what} is empty: give at least one token id")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{what} must be integers, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= n_vocab)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"token id {int(arr[i])} at position {i} is out of range: this model's "
                         f"ids are 0 to {n_vocab - 1}")
    return np.ascontiguousarray(arr, dtype=np.int32)
