"""Memory stays constant during generation, export streams tensors, and the weights can be mapped
or read into (huge-page) memory with the same results."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
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


def _huge_pages_offered() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            line = f.read()
    except OSError:
        return False
    return "[always]" in line or "[madvise]" in line


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc")
def test_weights_mapped_or_read_give_the_same_logits(tmp_path):
    """mmap=True maps the file, mmap=False reads it into private memory advised for transparent
    huge pages where the kernel offers them (a new mapping of at least the file's size whose
    VmFlags carry "hg"; whether the kernel then finds free 2 MB pages is its business, so the
    test does not count AnonHugePages), and None picks reading for a file this small where huge
    pages exist. The logits are bit-identical: only where the bytes live changes."""
    hf = make_hf_model(seed=5, vocab_size=2048, hidden_size=512, num_hidden_layers=4)
    path = mambalite.export(save_checkpoint(hf, tmp_path / "ckpt"), tmp_path / "m.gguf", "f32",
                            progress=False)
    size = path.stat().st_size

    def advised_regions() -> int:
        """Mappings of at least `size` bytes advised MADV_HUGEPAGE."""
        count, kb = 0, 0
        with open("/proc/self/smaps") as f:
            for line in f:
                if line.startswith("Size:"):
                    kb = int(line.split()[1])
                elif line.startswith("VmFlags:") and "hg" in line.split()[1:]:
                    count += kb * 1024 >= size
        return count

    ids = list(range(1, 30))
    mapped = mambalite.load(path, mmap=True)
    assert mapped.mmap is True
    before = advised_regions()
    read = mambalite.load(path, mmap=False)
    assert read.mmap is False
    assert np.array_equal(read.forward(ids), mapped.forward(ids))
    if _huge_pages_offered():
        assert advised_regions() == before + 1
        assert mambalite.load(path).mmap is False
