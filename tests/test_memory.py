"""Memory stays constant during generation, and export streams tensors."""

from __future__ import annotations

import os
import tracemalloc

import pytest

import mambalite

from helpers import make_hf_model, save_checkpoint


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_rss_constant_over_long_generation(text_model):
    model = mambalite.load(text_model[1], threads=2)
    model.tokenizer.eos_id = None  # run the full length
    state = model.new_state()
    pieces = model.generate("Once", max_new_tokens=6000, temperature=1.0, top_k=0, seed=1,
                            state=state, stop=["\x00never"], stream=True, token_healing=False)
    before = None
    for count, _ in enumerate(pieces, 1):
        if count == 1000:
            before = rss_kb()
    after = rss_kb()
    assert before is not None and state.n_tokens == len(model.tokenizer.encode("Once")) + 6000
    assert state.nbytes == model.new_state().nbytes
    # Python's allocator keeps small pools around; a leak of even 200 bytes a token would show.
    assert after - before < 1024, f"RSS grew by {after - before} KB"


def test_export_streams_tensors(tmp_path):
    """Peak Python-side allocation during export stays near one tensor, not the checkpoint."""
    hf = make_hf_model(seed=61, vocab_size=2000, hidden_size=256, num_hidden_layers=8,
                       tie_word_embeddings=False)
    d = save_checkpoint(hf, tmp_path / "big")
    total = sum(p.numel() * 4 for p in hf.parameters())
    largest = max(p.numel() * 4 for p in hf.parameters())
    tracemalloc.start()
    mambalite.export(d, tmp_path / "big.gguf", "f16", progress=False)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total > 8 * largest
    assert peak < 4 * largest, f"peak {peak} bytes for a {total}-byte checkpoint"
