"""Generation: greedy against transformers, sampling controls, streaming, stop conditions."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import mambalite
from mambalite import _core
from mambalite._streaming import IncrementalDecoder, StopStrings

from helpers import export, make_hf_model, save_checkpoint

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """(transformers model, mambalite model) without a tokenizer: ids in, ids out."""
    hf = make_hf_model(seed=11, vocab_size=272, hidden_size=64, num_hidden_layers=3,
                       tie_word_embeddings=False)
    d = save_checkpoint(hf, tmp_path_factory.mktemp("plain"))
    return hf, mambalite.load(export(d, "f32"), threads=2)


def hf_greedy(hf, ids, n, **kw):
    out = hf.generate(torch.tensor([list(ids)]), max_new_tokens=n, do_sample=False,
                      eos_token_id=None, pad_token_id=0, **kw)
    return out[0, len(ids):].tolist()


def test_greedy_64_tokens_equal_transformers(plain):
    hf, model = plain
    prompt = [3, 141, 59, 26, 5]
    ours = list(model.generate_tokens(prompt, max_new_tokens=64, temperature=0))
    assert len(ours) == 64 and len(set(ours)) > 10  # a real sequence, not one repeated id
    assert ours == hf_greedy(hf, prompt, 64)


def test_greedy_text_equals_transformers(text_model, ml_text):
    hf, _ = text_model
    tok = ml_text.tokenizer
    ids = tok.encode(PROMPT)
    banned = tok.unsampleable_ids(ml_text.config.vocab_size)
    assert tok.vocab_size == 300 and banned == list(range(300, 320))  # 20 padding rows
    ref = hf_greedy(hf, ids, 64, suppress_tokens=banned)
    if tok.eos_id in ref:
        ref = ref[: ref.index(tok.eos_id)]
    assert ml_text.generate(PROMPT, max_new_tokens=64, temperature=0) == tok.decode(ref)


def test_same_seed_same_text(ml_text):
    kw = dict(max_new_tokens=40, temperature=1.0, top_k=0, top_p=1.0, seed=1234)
    a = ml_text.generate(PROMPT, **kw)
    assert a == ml_text.generate(PROMPT, **kw)
    assert a != ml_text.generate(PROMPT, **{**kw, "seed": 4321})


def test_top_k_1_equals_greedy(ml_text):
    greedy = ml_text.generate(PROMPT, max_new_tokens=30, temperature=0)
    assert ml_text.generate(PROMPT, max_new_tokens=30, temperature=1.5, top_k=1,
                            seed=5) == greedy


def test_stream_joins_to_text(ml_text):
    kw = dict(max_new_tokens=60, temperature=0.9, seed=99)
    pieces = list(ml_text.generate(PROMPT, stream=True, **kw))
    assert len(pieces) > 1
    assert "".join(pieces) == ml_text.generate(PROMPT, **kw)


def test_max_new_tokens(plain, ml_text):
    _, model = plain
    for n in (0, 1, 7):
        assert len(list(model.generate_tokens([1, 2], max_new_tokens=n, temperature=0))) == n
    ids = list(ml_text.generate_tokens(PROMPT, max_new_tokens=5, temperature=0))
    assert ml_text.generate(PROMPT, max_new_tokens=5, temperature=0) == \
        ml_text.tokenizer.decode(ids)


def test_stop_string(ml_text):
    full = ml_text.generate(PROMPT, max_new_tokens=60, temperature=0)
    assert len(full) > 20
    stop = full[10:13]
    cut = full.index(stop)
    assert ml_text.generate(PROMPT, max_new_tokens=60, temperature=0, stop=stop) == full[:cut]
    streamed = list(ml_text.generate(PROMPT, max_new_tokens=60, temperature=0,
                                     stop=["\x00never", stop], stream=True))
    assert "".join(streamed) == full[:cut]


def test_stops_at_eos(ml_text):
    ids = list(ml_text.generate_tokens(PROMPT, max_new_tokens=40, temperature=0))
    stop_id = ids[12]
    first = ids.index(stop_id)
    assert list(ml_text.generate_tokens(PROMPT, max_new_tokens=40, temperature=0,
                                        stop_ids=[stop_id])) == ids[: first + 1]
    tok = ml_text.tokenizer
    saved = tok.eos_id
    try:
        tok.eos_id = stop_id  # make that token the end-of-sequence token
        text = ml_text.generate(PROMPT, max_new_tokens=40, temperature=0)
    finally:
        tok.eos_id = saved
    assert text == tok.decode(ids[:first])


def test_padding_ids_never_sampled(ml_text):
    banned = set(ml_text.tokenizer.unsampleable_ids(ml_text.config.vocab_size))
    # A flat distribution (temperature 20, no filters) over 320 ids, 20 of them padding: without
    # the ban, 600 draws would pick padding about 37 times.
    # (Several seeds: a run ends early when it draws the end-of-sequence id.)
    ids: list[int] = []
    seed = 0
    while len(ids) < 600:
        ids += ml_text.generate_tokens([5, 6], max_new_tokens=600, temperature=20.0, top_k=0,
                                       top_p=1.0, seed=seed)
        seed += 1
    assert len(set(ids)) > 200 and not banned & set(ids)


def test_sampler_filters():
    logits = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 9.0], dtype=np.float32)

    def draws(**kw):
        p = dict(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, repetition_penalty=1.0,
                 seed=0, n_vocab=6, banned=[5])
        p.update(kw)
        s = _core.Sampler(**p)
        return {s.sample(logits) for _ in range(300)}

    assert draws() == {0, 1, 2, 3, 4}  # id 5 is banned despite the top logit
    assert draws(top_k=2) == {0, 1}
    assert draws(temperature=0.0) == {0}
    assert draws(min_p=0.3) == {0, 1}  # e^-1 = 0.37 >= 0.3 > e^-2
    assert draws(top_p=0.5) == {0}  # p(0) = 0.64 already reaches 0.5
    s = _core.Sampler(0.0, 0, 1.0, 0.0, 10.0, 0, 6, [5])
    s.accept(0)  # penalised: 5 / 10 = 0.5 < 4
    assert s.sample(logits) == 1


def test_state_continues_across_calls(ml_text):
    state = ml_text.new_state()
    first = ml_text.generate("Hello", max_new_tokens=8, temperature=0, state=state,
                             token_healing=False)
    n1 = len(ml_text.tokenizer.encode("Hello"))
    gen1 = list(ml_text.generate_tokens("Hello", max_new_tokens=8, temperature=0))
    assert state.n_tokens == n1 + len(gen1)
    second = ml_text.generate(" again", max_new_tokens=8, temperature=0, state=state,
                              token_healing=False)
    # Same as one generation over the whole history.
    history = ml_text.tokenizer.encode("Hello") + gen1 + ml_text.tokenizer.encode(" again")
    assert second == ml_text.generate(history, max_new_tokens=8, temperature=0)
    assert first == ml_text.tokenizer.decode(gen1)
    # With token healing the prompt's last token is replaced by the healed one.
    state = ml_text.new_state()
    ml_text.generate("Hello", max_new_tokens=8, temperature=0, state=state, token_healing=True)
    healed = list(ml_text.generate_tokens("Hello", max_new_tokens=8, temperature=0,
                                          token_healing=True))
    assert state.n_tokens == n1 - 1 + len(healed)


@pytest.mark.parametrize("prompt", ["Hello", "The capital of France is", "def f(x):"])
def test_text_prompt_greedy_equals_transformers(text_model, ml_text, prompt):
    """generate(text, temperature=0) is plain greedy: transformers' greedy `generate` on the
    prompt's ids, decoded (token healing, which changes the first token, is opt-in); ours stops
    at the end-of-sequence id, transformers (without eos_token_id) goes on. The model's 20
    padding ids, which ours never samples, are suppressed in transformers too."""
    hf = text_model[0]
    tok = ml_text.tokenizer
    ids = tok.encode(prompt)
    padding = list(range(len(tok.token_texts()), hf.config.vocab_size))  # never sampled by us
    want = hf_greedy(hf, ids, 24, suppress_tokens=padding)
    got = list(ml_text.generate_tokens(prompt, max_new_tokens=24, temperature=0))
    assert got == want[:len(got)] and (len(got) == 24 or got[-1] == tok.eos_id)
    text = ml_text.generate(prompt, max_new_tokens=24, temperature=0)
    first_eos = want.index(tok.eos_id) if tok.eos_id in want else len(want)
    assert text == tok.decode(ids + want[:first_eos])[len(tok.decode(ids)):]


def test_stream_stopped_early_advances_state(ml_text):
    prompt = ml_text.tokenizer.encode("Hi")
    state = ml_text.new_state()
    it = ml_text.generate(prompt, max_new_tokens=50, temperature=0, state=state, stream=True)
    next(it)
    it.close()
    k = state.n_tokens - len(prompt)  # tokens generated before the stream was closed
    assert 1 <= k < 50
    generated = list(ml_text.generate_tokens(prompt, max_new_tokens=k, temperature=0))
    fresh = ml_text.new_state()
    ml_text.prefill(fresh, prompt + generated)
    a, b = ml_text.step(state, 7), ml_text.step(fresh, 7)
    assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()


def test_incremental_decoder_keeps_utf8_whole(ml_text):
    tok = ml_text.tokenizer
    text = "naïve café 東京 😀 🚀 ∑ Привет"
    ids = tok.encode(text)
    assert len(ids) > len(text.split())  # multi-byte characters span several tokens
    dec = IncrementalDecoder(tok)
    pieces = [dec.push(i) for i in ids] + [dec.flush()]
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    # Token by token decoding would split characters:
    assert any("\ufffd" in tok.decode([i]) for i in ids)


def test_stop_strings_across_pieces():
    s = StopStrings(["END"])
    out = [s.push(p) for p in ["abc E", "N", "D tail"]]
    assert "".join(out) == "abc " and s.stopped


def test_compute_releases_the_gil(plain):
    _, model = plain
    ids = np.arange(4000) % 272
    done = threading.Event()
    ticks = 0

    def work():
        model.forward(ids)
        done.set()

    t = threading.Thread(target=work)
    t.start()
    while not done.is_set():
        ticks += 1
    t.join()
    # With the GIL held for the whole forward pass this loop could not run meanwhile.
    assert ticks > 10_000


def test_incremental_decoder_window_is_bounded(ml_text):
    tok = ml_text.tokenizer
    dec = IncrementalDecoder(tok, [1, 2, 3])
    ids = tok.encode("naïve café 東京 😀 " * 200)
    text = "".join(dec.push(i) for i in ids) + dec.flush()
    assert text == tok.decode(ids)
    assert len(dec._ids) <= 20
