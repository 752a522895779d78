"""Soak: a long generation in one process, $SOAK_TOKENS tokens (1,000,000 by default) on
mamba-130m Q8_0 and on the Granite-4.0-H 350M hybrid (random weights of the released shapes),
sampling at temperature 0.8 with the engine's sampler.

mamba-130m is one sequence whose state is never reset (`generate_tokens`, 1,000 tokens a call).
The hybrid keeps a bounded window of context: its KV cache holds n_ctx 2048 positions, so no
state of it outlives 2048 tokens, and its million tokens are 8 sequences decoded together
(`prefill_batch`, which soaks the batched path too): a sequence whose state is full goes on from
a fresh state prefilled with its last 256 tokens, in the same ragged batch as the others'
single tokens. Their first prompts differ in length so that the refills fall on different
steps.

Every 10,000 tokens: RSS, the decode rate of the last 10,000 (aggregate over the batch), and
next logits checked finite (a NaN or infinity in a state would reach them). After warm-up RSS
must stay within 1 MB and the last rate within 5% of the first (a noisy machine can break the
latter without a leak: rerun).

    pytest bench/test_soak.py -s            # 70-90 minutes per model at 2 threads
    SOAK_TOKENS=100000 pytest bench/test_soak.py -s
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator

import numpy as np
import pytest

import mambalite
from mambalite._generation import Sampling, make_sampler

TOKENS = int(os.environ.get("SOAK_TOKENS", "1000000"))
EVERY = 10_000
CHUNK = 1000  # tokens per generate_tokens call
WARMUP = 2  # samples (20,000 tokens) before the baselines
KEEP = 256  # tokens a bounded-window sequence goes on from


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def _one_sequence(model: mambalite.Model) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (tokens so far, the next logits) every EVERY tokens of one unbroken sequence."""
    state, last, produced, due, chunk = model.new_state(), 1, 0, EVERY, 0
    while produced < TOKENS:
        # A sampled end-of-sequence token ends a call early, so the count is checked, not assumed.
        tokens = list(model.generate_tokens([last], max_new_tokens=CHUNK, state=state,
                                            temperature=0.8, seed=chunk, stop_ids=[]))
        last, produced, chunk = tokens[-1], produced + len(tokens), chunk + 1  # `last`: a prompt
        if produced >= due:
            due += EVERY
            yield produced, model.step(state.copy(), last)  # what the state would give next


def _bounded_batch(model: mambalite.Model, n_seq: int,
                   n_ctx: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (tokens so far, the batch's last logits) every EVERY tokens of n_seq sequences
    decoded together, each refilled from its last KEEP tokens when its state is full."""
    n_vocab = model.config.vocab_size
    rng = np.random.default_rng(0)
    states = [model.new_state() for _ in range(n_seq)]
    samplers = [make_sampler(model, Sampling(temperature=0.8, seed=i), [])[0]
                for i in range(n_seq)]
    windows = [rng.integers(0, n_vocab, 1 + i * (n_ctx - KEEP) // n_seq).tolist()
               for i in range(n_seq)]
    feeds = [list(w) for w in windows]
    produced, due = 0, EVERY
    while produced < TOKENS:
        logits = model.prefill_batch(states, feeds)  # (n_seq, n_vocab)
        for i, row in enumerate(logits):
            token = int(samplers[i].sample(row))
            samplers[i].accept(token, True)
            windows[i].append(token)
            del windows[i][:-KEEP]
            if states[i].n_tokens + 1 > n_ctx:
                states[i], feeds[i] = model.new_state(), windows[i][-KEEP:]
            else:
                feeds[i] = [token]
        produced += n_seq
        if produced >= due:
            due += EVERY
            yield produced, logits


@pytest.mark.parametrize("shape, n_ctx, n_seq", [("130m", 0, 1), ("granite-h-350m", 2048, 8)])
def test_soak(model_file, shape, n_ctx, n_seq, record_property):
    model = mambalite.load(model_file(shape, "q8_0"), threads=2, n_ctx=n_ctx or None)
    run = _one_sequence(model) if n_seq == 1 else _bounded_batch(model, n_seq, n_ctx)
    samples: list[tuple[int, int, float]] = []  # (tokens, RSS KB, tokens/s since the last)
    before, t = 0, time.perf_counter()
    for produced, logits in run:
        assert np.all(np.isfinite(logits)), f"non-finite logits after {produced} tokens"
        now = time.perf_counter()
        samples.append((produced, _rss_kb(), (produced - before) / (now - t)))
        print(f"{shape} x{n_seq}: {produced} tokens, RSS {samples[-1][1] / 1024:.1f} MB, "
              f"{samples[-1][2]:.1f} tok/s", flush=True)
        before, t = produced, time.perf_counter()
    assert len(samples) > WARMUP + 1, "SOAK_TOKENS too small for a verdict"
    base = samples[WARMUP]
    rss_growth = max(s[1] for s in samples[WARMUP:]) - base[1]
    start_rate = statistics.median(s[2] for s in samples[WARMUP:WARMUP + 3])
    end_rate = statistics.median(s[2] for s in samples[-3:])
    line = (f"{shape} q8_0 soak, {samples[-1][0]} tokens in {n_seq} sequence(s): RSS "
            f"{base[1] / 1024:.1f} MB after warm-up, max growth {rss_growth} KB; rate "
            f"{start_rate:.1f} -> {end_rate:.1f} tok/s (x{end_rate / start_rate:.3f})")
    print("\n" + line)
    record_property("soak", line)
    assert rss_growth <= 1024, line
    assert end_rate >= 0.95 * start_rate, line
