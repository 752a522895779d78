"""`mambalite bench`: prefill throughput, decode latency and achieved memory bandwidth."""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

import numpy as np

from .model import load


@dataclass
class BenchResult:
    """Medians over repeated runs."""

    threads: int
    isa: str  # the CPU kernels' instruction set, or the GPU ("cuda:0 (NVIDIA H100 ...)")
    prefill_tokens: int
    prefill_tokens_per_s: float
    decode_ms_per_token: float
    weight_bytes_per_token: int  # bytes of weights read to decode one token
    state_bytes: int = 0  # the recurrent state, read (and written) once per decoded token
    # This machine's streaming read rate (bytes/s) with the same threads, measured in the same
    # run over as many bytes as a decoded token reads; None on a GPU.
    read_bytes_per_s: float | None = None

    @property
    def decode_gb_per_s(self) -> float:
        """Weights and state read per decoded token, in GB/s."""
        read = self.weight_bytes_per_token + self.state_bytes
        return read / (self.decode_ms_per_token * 1e-3) / 1e9

    @property
    def roofline_fraction(self) -> float | None:
        """decode_gb_per_s as a fraction of the machine's measured read rate (None on a GPU)."""
        if self.read_bytes_per_s is None:
            return None
        return self.decode_gb_per_s * 1e9 / self.read_bytes_per_s

    def __str__(self) -> str:
        where = self.isa if self.isa.startswith("cuda") else f"threads {self.threads} ({self.isa})"
        line = (f"{where}: prefill {self.prefill_tokens} tokens at "
                f"{self.prefill_tokens_per_s:.1f} tokens/s; decode "
                f"{self.decode_ms_per_token:.2f} ms/token ({1e3 / self.decode_ms_per_token:.1f} "
                f"tokens/s, {self.decode_gb_per_s:.1f} GB/s of weights and state")
        if self.read_bytes_per_s is not None:
            line += (f": {100 * self.roofline_fraction:.0f}% of the "
                     f"{self.read_bytes_per_s / 1e9:.1f} GB/s this machine streams")
        return line + ")"


def bench(path: str | os.PathLike, *, threads: int | None = None, prefill_tokens: int = 512,
          decode_tokens: int = 64, repeats: int = 3, device: str = "cpu",
          n_ctx: int | None = None, kv_type: str = "f16",
          mmap: bool | None = None) -> BenchResult:
    """Measures a model file: median prefill tokens/s and decode ms/token over `repeats` runs.

    On the CPU it also measures the roofline: the model's threads streaming a buffer the size of
    one decoded token's reads (64 MB to 512 MB), between the decode runs, so that both see the
    same machine load.
    `device`: "cpu", or "cuda" / "cuda:N" (decode time is then the whole step: graph launch,
    logits back to the host). `n_ctx`, `kv_type`: the KV cache of models with attention
    layers, and `mmap`, as in `mambalite.load`.
    """
    if prefill_tokens < 1 or decode_tokens < 1 or repeats < 1:
        raise ValueError("prefill_tokens, decode_tokens and repeats must be >= 1")
    model = load(path, threads=threads, device=device, n_ctx=n_ctx, kv_type=kv_type, mmap=mmap)
    n_vocab = model.config.vocab_size
    ids = np.random.default_rng(0).integers(0, n_vocab, size=prefill_tokens)
    # Every weight is read once per decoded token, except the embedding (one row) when the
    # head is untied.
    per_token = sum(t["nbytes"] for t in model.tensors
                    if not (t["name"] == "token_embd.weight" and not model.config.tied_embeddings))
    # Decode reads the SSM states and the KV cache's used positions (about the prompt's).
    fresh = model.new_state()
    state_bytes = fresh.ssm_nbytes + (fresh.kv_nbytes * (prefill_tokens + decode_tokens // 2)
                                      // model.n_ctx if model.n_ctx else 0)
    on_cpu = model.device == "cpu"
    model.prefill(model.new_state(), ids[:8])  # warm-up: page in the weights
    prefill, decode, rates = [], [], []
    for _ in range(repeats):
        state = model.new_state()
        t0 = time.perf_counter()
        model.prefill(state, ids)
        prefill.append(prefill_tokens / (time.perf_counter() - t0))
        steps = []
        for i in range(decode_tokens):
            t0 = time.perf_counter()
            model.step(state, int(ids[i % prefill_tokens]))
            steps.append(time.perf_counter() - t0)
        decode.append(statistics.median(steps) * 1e3)
        if on_cpu:  # at least 64 MB, so that the caches do not hold it, and at most 512 MB
            # (far past any cache: a 7B model's size would only cost memory)
            probe = min(max(per_token + state_bytes, 64 << 20), 512 << 20)
            rates.append(model._core.read_bandwidth(probe))
    where = model.isa if on_cpu else model.device
    return BenchResult(model.threads, where, prefill_tokens, statistics.median(prefill),
                       statistics.median(decode), per_token, state_bytes,
                       statistics.median(rates) if on_cpu else None)
