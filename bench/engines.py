"""Timing both engines on one GGUF file, interleaved so that machine noise hits both alike."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np

import mambalite


def llama_cpp_available() -> bool:
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return False
    return True


class Mambalite:
    name = "mambalite"

    def __init__(self, path, threads: int) -> None:
        self.model = mambalite.load(path, threads=threads)
        self.n_vocab = self.model.config.vocab_size

    def prefill(self, ids: np.ndarray) -> None:
        self.model.prefill(self.model.new_state(), ids)

    def decode(self, n: int) -> list[float]:
        state = self.model.new_state()
        self.model.prefill(state, [1, 2, 3, 4])
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            self.model.step(state, 7 + i)
            out.append(time.perf_counter() - t0)
        return out


class LlamaCpp:
    name = "llama.cpp"

    def __init__(self, path, threads: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads,
                         n_ctx=2048, n_batch=512, n_ubatch=512, verbose=False)

    def prefill(self, ids: np.ndarray) -> None:
        self.llm.reset()
        self.llm._ctx.memory_clear(True) if hasattr(self.llm._ctx, "memory_clear") else None
        self.llm.eval([int(i) for i in ids])

    def decode(self, n: int) -> list[float]:
        self.llm.reset()
        if hasattr(self.llm._ctx, "memory_clear"):
            self.llm._ctx.memory_clear(True)
        self.llm.eval([1, 2, 3, 4])
        out = []
        for i in range(n):
            t0 = time.perf_counter()
            self.llm.eval([7 + i])
            out.append(time.perf_counter() - t0)
        return out


def interleaved(engines: list, measure: Callable[[object], float], rounds: int) -> dict:
    """Median of `measure(engine)` per engine over `rounds` alternating rounds."""
    samples: dict[str, list[float]] = {e.name: [] for e in engines}
    for r in range(rounds):
        order = engines if r % 2 == 0 else engines[::-1]
        for e in order:
            samples[e.name].append(measure(e))
    return {name: statistics.median(v) for name, v in samples.items()}
