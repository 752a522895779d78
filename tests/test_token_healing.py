"""Token healing: a prompt that ends inside what training text had as one token.

The shipped model's SentencePiece vocabulary has pieces such as "):\\n", so the prompt
"def f(n):" ends on the rarer piece "):". Healing drops that token and constrains the first
sample to pieces that start with "):", so the model picks the boundary itself.
"""

from __future__ import annotations

import pytest

import mambalite

from helpers import export, make_hf_model, save_checkpoint


@pytest.fixture(scope="module")
def shipped():
    return mambalite.load(threads=2)


def test_healed_first_token_extends_the_prompt_text(shipped):
    tok = shipped.tokenizer
    texts = tok.token_texts()
    for prompt in ("def fibonacci(n):", "import o", "    return sel"):
        ids = tok.encode(prompt)
        assert sum(1 for t in texts if t and t.startswith(texts[ids[-1]])) > 1
        gen = list(shipped.generate_tokens(prompt, max_new_tokens=8, temperature=0,
                                           token_healing=True))
        assert texts[gen[0]].startswith(texts[ids[-1]])
        out = shipped.generate(prompt, max_new_tokens=8, temperature=0, token_healing=True)
        # The text continues the prompt exactly: prompt + output decodes the healed ids.
        assert prompt + out == tok.decode(ids[:-1] + gen)
        streamed = "".join(shipped.generate(prompt, max_new_tokens=8, temperature=0,
                                            stream=True, token_healing=True))
        assert streamed == out


def test_healing_changes_what_the_model_sees(shipped):
    prompt = "def fibonacci(n):"
    healed = shipped.generate(prompt, max_new_tokens=6, temperature=0, token_healing=True)
    plain = shipped.generate(prompt, max_new_tokens=6, temperature=0)  # off by default
    assert plain == shipped.generate(prompt, max_new_tokens=6, temperature=0, token_healing=False)
    assert healed.startswith("\n")  # "):\n" chosen: the body starts on the next line
    assert healed != plain
    ids = shipped.tokenizer.encode(prompt)
    assert list(shipped.generate_tokens(ids, max_new_tokens=6, temperature=0)) == \
        list(shipped.generate_tokens(prompt, max_new_tokens=6, temperature=0))


def test_no_extension_no_change(shipped):
    tok = shipped.tokenizer
    texts = tok.token_texts()
    # A prompt whose last piece no other piece extends: healing leaves it alone.
    for prompt in ("x = [1, 2", "y = 10"):
        last = texts[tok.encode(prompt)[-1]]
        assert sum(1 for t in texts if t and t.startswith(last)) == 1  # digits are split
        assert shipped.generate(prompt, max_new_tokens=8, temperature=0, token_healing=True) == \
            shipped.generate(prompt, max_new_tokens=8, temperature=0, token_healing=False)


def test_state_holds_the_healed_text(shipped):
    prompt = "import o"
    state = shipped.new_state()
    out = shipped.generate(prompt, max_new_tokens=5, temperature=0, state=state,
                           token_healing=True)
    ids = shipped.tokenizer.encode(prompt + out)
    # The state consumed the same text (token count may differ by the healed boundary).
    fresh = shipped.new_state()
    shipped.prefill(fresh, ids)
    assert abs(state.n_tokens - fresh.n_tokens) <= 1


def test_byte_level_bpe_token_texts(tmp_path, bpe_tokenizer):
    d = save_checkpoint(make_hf_model(seed=3, vocab_size=320), tmp_path / "ckpt", bpe_tokenizer)
    model = mambalite.load(export(d, "f32"))
    tok = model.tokenizer
    texts = tok.token_texts()
    assert len(texts) == tok.vocab_size
    normal = [i for i, t in enumerate(texts) if t is not None]
    assert len(normal) > 150  # the 128 lone non-ASCII bytes are not text on their own
    for i in normal:
        assert tok.decode([i]) == texts[i]  # byte-level pieces decode alone exactly
    assert texts[tok.eos_id] is None
    assert any(t.startswith(" ") for t in texts if t)
