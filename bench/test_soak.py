"""Soak: a long generation in one process, $SOAK_TOKENS tokens (1,000,000 by default) on
mamba-130m Q8_0 and on the Granite-4.0-H 350M hybrid (random weights of the released shapes),
sampling at temperature 0.8 (the engine's sampler, 1,000 tokens a call). The hybrid keeps a
bounded window of context: when its state's KV cache (n_ctx 2048) is full, a fresh state is
prefilled with the last 256 tokens. Every 10,000 tokens: RSS, the decode rate of the last 10,000,
and the next logits from a copy of the state checked finite (a NaN or infinity in the state
would reach them). After warm-up RSS must stay within 1 MB and the last rate within 5% of the
first (a noisy machine can break the latter without a leak: rerun).

    pytest bench/test_soak.py -s            # about an hour per model at 2 threads
    SOAK_TOKENS=100000 pytest bench/test_soak.py -s
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import pytest

import mambalite

TOKENS = int(os.environ.get("SOAK_TOKENS", "1000000"))
EVERY = 10_000
CHUNK = 1000  # tokens per generate_tokens call
WARMUP = 2  # samples (20,000 tokens) before the baselines


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.parametrize("shape, n_ctx", [("130m", 0), ("granite-h-350m", 2048)])
def test_soak(model_file, shape, n_ctx, record_property):
    model = mambalite.load(model_file(shape, "q8_0"), threads=2, n_ctx=n_ctx or None)
    window: list[int] = [1]
    state = model.new_state()
    samples: list[tuple[int, int, float]] = []  # (tokens, RSS KB, tokens/s of the last EVERY)
    produced, chunks, t = 0, 0, time.perf_counter()
    while produced < TOKENS:
        if n_ctx and state.n_tokens + CHUNK + 256 > n_ctx:  # bounded window: the last 256 again
            state, prompt = model.new_state(), window[-256:]
        else:
            prompt = window[-1:]  # fed once more: generation needs a prompt
        for tok in model.generate_tokens(prompt, max_new_tokens=CHUNK, state=state,
                                         temperature=0.8, seed=chunks, stop_ids=[]):
            window.append(tok)
            produced += 1
        del window[:-256]
        chunks += 1
        if chunks % (EVERY // CHUNK) == 0:
            logits = model.step(state.copy(), window[-1])  # what the state would give next
            assert np.all(np.isfinite(logits)), f"non-finite logits after {produced} tokens"
            now = time.perf_counter()
            samples.append((produced, _rss_kb(), EVERY / (now - t)))
            print(f"{shape}: {produced} tokens, RSS {samples[-1][1] / 1024:.1f} MB, "
                  f"{samples[-1][2]:.1f} tok/s", flush=True)
            t = time.perf_counter()
    assert len(samples) > WARMUP + 1, "SOAK_TOKENS too small for a verdict"
    base = samples[WARMUP]
    rss_growth = max(s[1] for s in samples[WARMUP:]) - base[1]
    start_rate = statistics.median(s[2] for s in samples[WARMUP:WARMUP + 3])
    end_rate = statistics.median(s[2] for s in samples[-3:])
    line = (f"{shape} q8_0 soak, {produced} tokens: RSS {base[1] / 1024:.1f} MB after warm-up, "
            f"max growth {rss_growth} KB; rate {start_rate:.1f} -> {end_rate:.1f} tok/s "
            f"(x{end_rate / start_rate:.3f})")
    print("\n" + line)
    record_property("soak", line)
    assert rss_growth <= 1024, line
    assert end_rate >= 0.95 * start_rate, line
