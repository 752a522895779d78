"""State semantics: prefill/decode equivalence, continuation, copies, serialisation, for
Mamba-1, FalconMamba, Mamba-2 (one and several groups) and the hybrids (Granite-4.0-H MoE,
Bamba, Nemotron-H), whose states add KV caches (F32 here, so that prefill and decode store the
same values up to round-off; the F16 and Q8_0 caches are checked in test_hybrid.py)."""

from __future__ import annotations

import numpy as np
import pytest

import mambalite

from helpers import (
    export,
    make_hf_bamba,
    make_hf_falcon_h1,
    make_hf_falcon_mamba,
    make_hf_granite,
    make_hf_jamba,
    make_hf_mamba2,
    make_hf_model,
    make_hf_nemotron_h,
    save_checkpoint,
)

# Equal up to summation order: prefill runs tokens in blocks of 128 (Compute::kBlock) but each dot
# product and each scan step is the same computation, so results agree to fp32 round-off. The
# hybrids add the softmaxes of attention and the MoE router and more products per layer: their
# worst position measured 1.7e-5 (Granite MoE; median 1.3e-6), so they get 5e-5. A wrong
# position, cache row or expert gives 1e-3 and more.
ATOL_REL = 1e-5
HYBRID_ATOL_REL = 5e-5


ARCHS = {
    "mamba": lambda: make_hf_model(seed=7, vocab_size=300, hidden_size=48, state_size=12,
                                   conv_kernel=4, num_hidden_layers=3, tie_word_embeddings=False),
    "falcon_mamba": lambda: make_hf_falcon_mamba(seed=7, vocab_size=300, hidden_size=48,
                                                 intermediate_size=80, num_hidden_layers=2),
    "mamba2": lambda: make_hf_mamba2(seed=7, vocab_size=300, hidden_size=48, num_heads=6,
                                     head_dim=16, state_size=24, num_hidden_layers=2),
    "mamba2_g3": lambda: make_hf_mamba2(seed=7, vocab_size=300, hidden_size=48, num_heads=6,
                                        head_dim=16, state_size=8, n_groups=3, conv_kernel=3,
                                        num_hidden_layers=2),
    "granite_moe": lambda: make_hf_granite(seed=7, vocab_size=300, num_local_experts=4,
                                           num_experts_per_tok=2),
    "bamba": lambda: make_hf_bamba(seed=7, vocab_size=300),
    "nemotron_h": lambda: make_hf_nemotron_h(seed=7, vocab_size=300),
    "jamba": lambda: make_hf_jamba(seed=7, vocab_size=300),
    "falcon_h1": lambda: make_hf_falcon_h1(seed=7, vocab_size=300),
}


@pytest.fixture(scope="module", params=list(ARCHS))
def model(tmp_path_factory, request):
    hf = ARCHS[request.param]()
    _tolerance[0] = TOLERANCE.get(request.param, ATOL_REL)
    d = save_checkpoint(hf, tmp_path_factory.mktemp("state"))
    return mambalite.load(export(d, "f32"), threads=2, n_ctx=512, kv_type="f32")


def ids_of(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 300, size=n)


TOLERANCE = {"granite_moe": HYBRID_ATOL_REL, "bamba": HYBRID_ATOL_REL,
             "nemotron_h": HYBRID_ATOL_REL, "jamba": HYBRID_ATOL_REL,
             "falcon_h1": HYBRID_ATOL_REL}
_tolerance = [ATOL_REL]


def close(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.abs(a - b).max() <= _tolerance[0] * np.abs(b).max())


@pytest.mark.parametrize("split", [1, 3, 31, 33, 70, 127, 128, 129])
def test_prefill_then_decode_equals_forward(model, split):
    ids = ids_of(150)
    full = model.forward(ids)
    state = model.new_state()
    last = model.prefill(state, ids[:split])
    assert close(last, full[split - 1])
    for i in range(split, len(ids)):
        assert close(model.step(state, int(ids[i])), full[i]), f"position {i}"
    assert state.n_tokens == len(ids)


@pytest.mark.parametrize("first", [1, 2, 5, 45, 130])
def test_prefill_continues_from_state(model, first):
    ids = ids_of(300, seed=1)  # crosses prefill blocks of 128 from either start
    one = model.prefill(model.new_state(), ids)
    state = model.new_state()
    model.prefill(state, ids[:first])
    two = model.prefill(state, ids[first:])
    assert close(two, one)


def test_copy_evolves_independently(model):
    ids = ids_of(20, seed=2)
    state = model.new_state()
    model.prefill(state, ids)
    clone = state.copy()
    a = model.prefill(state, [1, 2, 3])
    b = model.prefill(clone, [4, 5, 6])  # different tokens: the original must not see them
    assert state.n_tokens == clone.n_tokens == 23
    assert close(model.step(state, 9), model.prefill(model.new_state(), [*ids, 1, 2, 3, 9]))
    assert close(model.step(clone, 9), model.prefill(model.new_state(), [*ids, 4, 5, 6, 9]))
    assert not np.allclose(a, b)


def test_bytes_round_trip(model):
    state = model.new_state()
    model.prefill(state, ids_of(37, seed=3))
    data = state.to_bytes()
    assert isinstance(data, bytes)
    restored = model.state_from_bytes(data)
    assert restored.n_tokens == 37
    for t in [5, 77, 123]:
        np.testing.assert_array_equal(model.step(state, t), model.step(restored, t))
    assert restored.to_bytes() == state.to_bytes()


def test_versions_1_and_2_still_read(model):
    """States saved before the KV caches were recorded (format 2) load unchanged; so do those
    saved before conv_dim was (format 1: conv channels = d_inner) for Mamba-1 models, while for
    Mamba-2, whose conv has more channels, they are refused."""
    import struct

    if model.n_ctx:
        pytest.skip("formats 1 and 2 predate attention layers: no hybrid state was saved in them")
    state = model.new_state()
    model.prefill(state, ids_of(9, seed=5))
    data = state.to_bytes()
    assert struct.unpack_from("<I", data, 8)[0] == 3
    arch_len = struct.unpack_from("<I", data, 12)[0]
    shape_end = 16 + arch_len + 4 * 8  # magic, version, name length, name, 4 shape fields
    conv_dim = struct.unpack_from("<q", data, shape_end)[0]
    kv_start = shape_end + 16  # after conv_dim and n_tokens: n_kv (0), kv_type, n_ctx
    assert struct.unpack_from("<I", data, kv_start)[0] == 0
    v2 = data[:8] + struct.pack("<I", 2) + data[12:kv_start] + data[kv_start + 16:]
    assert model.state_from_bytes(v2).to_bytes() == data
    v1 = data[:8] + struct.pack("<I", 1) + data[12:shape_end] + data[shape_end + 8:kv_start] + \
        data[kv_start + 16:]
    if conv_dim == model.config.d_inner:
        restored = model.state_from_bytes(v1)
        assert restored.to_bytes() == data
    else:
        with pytest.raises(ValueError):
            model.state_from_bytes(v1)


def test_state_size_is_constant(model):
    """The memory of a state is fixed when it is made: SSM states by the model's shape, KV
    caches for all n_ctx positions; its bytes hold the SSM part and only the used positions."""
    state = model.new_state()
    size, nbytes = len(state.to_bytes()), state.nbytes
    c = model.config
    n_ssm = sum(layer.kind.startswith("mamba") for layer in model.layers)
    conv_dim = c.d_inner + (2 * c.n_group * c.d_state if c.n_head else 0)
    assert state.ssm_nbytes == 4 * n_ssm * ((c.d_conv - 1) * conv_dim + c.d_inner * c.d_state)
    kv_per_token = sum(8 * layer.n_head_kv * c.head_dim for layer in model.layers
                       if layer.kind == "attention")  # K and V, F32
    assert state.kv_nbytes == kv_per_token * model.n_ctx
    assert nbytes == state.ssm_nbytes + state.kv_nbytes
    model.prefill(state, ids_of(450, seed=4))
    for t in range(50):
        model.step(state, t)
    assert state.nbytes == nbytes
    assert len(state.to_bytes()) == size + 500 * kv_per_token


def test_state_from_other_model_is_rejected(model, tmp_path):
    other = mambalite.load(export(save_checkpoint(
        make_hf_model(seed=8, vocab_size=300, hidden_size=32), tmp_path / "o"), "f32"))
    foreign = other.new_state()
    with pytest.raises(ValueError, match="another shape"):
        model.step(foreign, 1)
    with pytest.raises(ValueError, match="another shape"):
        model.state_from_bytes(foreign.to_bytes())
    with pytest.raises(ValueError, match="another shape"):
        model.generate_tokens([1, 2], state=foreign)


@pytest.mark.parametrize("mutate", [
    lambda b: b[:-1],
    lambda b: b[:10],
    lambda b: b"",
    lambda b: b"XXSTATE\0" + b[8:],
    lambda b: b + b"\0\0\0\0",
])
def test_corrupt_state_bytes_are_rejected(model, mutate):
    data = model.new_state().to_bytes()
    with pytest.raises(ValueError):
        model.state_from_bytes(mutate(data))


def test_failed_call_leaves_state_unchanged(model):
    state = model.new_state()
    model.prefill(state, [1, 2, 3])
    before = state.to_bytes()
    with pytest.raises(ValueError, match="out of range"):
        model.prefill(state, [4, 5, 300])
    assert state.to_bytes() == before


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_bytes_without_their_model_take_memory_as_the_cache_fills(model):
    """A state restored from bytes alone (`_core.State.from_bytes`, no model to say its n_ctx)
    reserves the KV capacity the bytes declare but takes memory only as positions fill: a small
    crafted header declaring 2^24 positions must not cost gigabytes (a fuzzing finding), and one
    declaring more than the machine can reserve is refused with a ValueError."""
    import struct

    if not model.n_ctx:
        pytest.skip("no KV cache")
    data = model.new_state().to_bytes()
    arch_len = struct.unpack_from("<I", data, 12)[0]
    kv_start = 16 + arch_len + 4 * 8 + 16
    n_kv = struct.unpack_from("<I", data, kv_start)[0]
    ctx_at = kv_start + 4 + 8 * n_kv + 4
    assert struct.unpack_from("<q", data, ctx_at)[0] == model.n_ctx
    big = data[:ctx_at] + struct.pack("<q", 1 << 24) + data[ctx_at + 8:]
    before = _rss_kb()
    state = mambalite._core.State.from_bytes(big)
    assert state.kv_nbytes == model.new_state().kv_nbytes // model.n_ctx * (1 << 24)
    assert _rss_kb() - before < 64 * 1024
    widths = b"".join(struct.pack("<q", 1 << 20) for _ in range(n_kv))
    huge = big[:kv_start + 4] + widths + big[kv_start + 4 + 8 * n_kv:]
    with pytest.raises(ValueError, match="more than this machine can reserve"):
        mambalite._core.State.from_bytes(huge)
