"""Incremental chat (`Model.chat_session`): every turn's answer equals a from-scratch greedy
`generate` on the whole rendered conversation, while the turn prefills only its new tokens; a
template that re-renders history is detected and re-prefilled; sessions save and load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import mambalite
from mambalite.chat import turn_boundary

from helpers import export, make_hf_granite, make_hf_mamba2, make_hf_model, save_checkpoint

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Marks the last message: every new turn re-renders the previous one differently.
MARK_LAST = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}"
    "{% if loop.last %} (latest){% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
QUESTIONS = ["What is the capital of France?", "And of Japan?", "def fibonacci(n):",
             "Ünïcödé café — “quotes”", "Numbers: 0 1 2 3 42"]
GREEDY = dict(temperature=0, max_new_tokens=10)


def _build(kind: str, directory, tokenizer):
    if kind == "mamba1":
        hf = make_hf_model(seed=11, vocab_size=320, hidden_size=32, num_hidden_layers=2)
    elif kind == "mamba2":
        hf = make_hf_mamba2(seed=12, vocab_size=320, hidden_size=64, num_hidden_layers=2)
    else:
        hf = make_hf_granite(seed=13)
    d = save_checkpoint(hf, directory, tokenizer)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": CHATML}))
    return mambalite.load(export(d, "f32"), threads=2, n_ctx=1024)


def chat_tokenizer(bpe_tokenizer):
    """The test BPE tokenizer with ChatML's markers as special tokens (ids 300 and 301)."""
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(bpe_tokenizer.to_str())
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<|im_start|>", "<|im_end|>")])
    return tok


@pytest.fixture(scope="module", params=["mamba1", "mamba2", "hybrid"])
def chat_model(request, tmp_path_factory, bpe_tokenizer):
    return _build(request.param, tmp_path_factory.mktemp(request.param) / "ckpt",
                  chat_tokenizer(bpe_tokenizer))


def _from_scratch(model, messages, template=None, **sampling):
    ids = model.apply_chat_template(messages, chat_template=template, tokenize=True)
    return model.generate(ids, **{**GREEDY, **sampling})


def test_turns_equal_from_scratch_and_cost_only_new_tokens(chat_model):
    model = chat_model
    session = model.chat_session(system="You are terse.", **GREEDY)
    tok = model.tokenizer
    # What the template adds around one message, with the generation prompt.
    markup = len(model.apply_chat_template([{"role": "user", "content": ""}], tokenize=True))
    for k, question in enumerate(QUESTIONS):
        want = _from_scratch(model, [*session.messages, {"role": "user", "content": question}])
        n_prompt = len(model.apply_chat_template(
            [*session.messages, {"role": "user", "content": question}], tokenize=True))
        got = session.send(question)
        assert got == want, f"turn {k + 1}"
        assert session.messages[-1] == {"role": "assistant", "content": got}
        assert session.state.n_tokens == len(session.ids)
        if k > 0:
            # The question, the template's markup and at most the previous answer re-read (when
            # its re-tokenization differs from the generated ids), never the whole history.
            previous = len(tok.encode(session.messages[-3]["content"], add_bos=False))
            bound = len(tok.encode(question, add_bos=False)) + previous + 2 * markup
            assert session.last_prefill <= bound < n_prompt, f"turn {k + 1}"


def test_streaming_turn_equals_plain_turn(chat_model):
    a = chat_model.chat_session(**GREEDY)
    b = chat_model.chat_session(**GREEDY)
    for question in QUESTIONS[:3]:
        pieces = list(a.send(question, stream=True))
        assert "".join(pieces) == b.send(question)
    assert a.messages == b.messages and a.ids == b.ids


def test_rerendered_history_is_detected_and_reprefilled(chat_model):
    model = chat_model
    session = model.chat_session(chat_template=MARK_LAST, **GREEDY)
    for k, question in enumerate(QUESTIONS[:4]):
        messages = [*session.messages, {"role": "user", "content": question}]
        want = _from_scratch(model, messages, MARK_LAST)
        n_prompt = len(model.apply_chat_template(messages, chat_template=MARK_LAST,
                                                 tokenize=True))
        target = np.asarray(model.apply_chat_template(messages, chat_template=MARK_LAST,
                                                      tokenize=True))
        n_new = n_prompt - turn_boundary(model, messages, target, MARK_LAST)
        assert session.send(question) == want, f"turn {k + 1}"
        if k > 0:  # the mark moved off the previous question: it is read again, and its answer
            previous = len(model.tokenizer.encode(QUESTIONS[k - 1], add_bos=False))
            assert n_new + previous < session.last_prefill <= n_prompt


def test_snapshot_restores_when_the_answer_retokenizes_differently(chat_model):
    """An answer cut by a stop string leaves generated ids that the next render does not
    contain: the session goes back to the snapshot before the answer, not to the start."""
    model = chat_model
    session = model.chat_session(**GREEDY)
    first = session.send(QUESTIONS[0], max_new_tokens=12)
    stop = first[len(first) // 2:][:3] if len(first) >= 4 else None
    if not stop or not stop.strip():
        pytest.skip("the random model's first answer is too short to cut")
    session.reset()
    session.send(QUESTIONS[0], max_new_tokens=12, stop=stop)
    n_history = len(session.ids)
    want = _from_scratch(model, [*session.messages, {"role": "user", "content": QUESTIONS[1]}])
    assert session.send(QUESTIONS[1]) == want
    assert session.last_prefill < n_history


def test_one_shot_chat_and_sampling_with_seed(chat_model):
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    assert chat_model.chat(messages, **GREEDY) == _from_scratch(chat_model, messages)
    seeded = dict(temperature=0.9, seed=7, max_new_tokens=10)
    s = chat_model.chat_session(**seeded)
    assert s.send(QUESTIONS[0]) == _from_scratch(chat_model, messages, **seeded)


def test_save_and_load_continue_the_same_conversation(chat_model, tmp_path):
    a = chat_model.chat_session(system="Be brief.", **GREEDY)
    a.send(QUESTIONS[0])
    a.save(tmp_path / "chat.bin")
    b = mambalite.ChatSession.load(chat_model, tmp_path / "chat.bin", **GREEDY)
    assert b.messages == a.messages and b.ids == a.ids
    assert b.send(QUESTIONS[1]) == a.send(QUESTIONS[1])
    assert b.last_prefill == a.last_prefill  # the loaded state was used, not re-prefilled


def test_chat_errors(chat_model, tmp_path):
    plain = mambalite.load()  # the shipped model has no chat template
    with pytest.raises(ValueError, match="no chat template.*chat_template="):
        plain.chat_session()
    with pytest.raises(TypeError, match="unknown sampling parameter.*top_q"):
        chat_model.chat_session(top_q=3)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a chat")
    with pytest.raises(ValueError, match="not a chat saved by mambalite"):
        mambalite.ChatSession.load(chat_model, bad)
    with pytest.raises(FileNotFoundError):
        mambalite.ChatSession.load(chat_model, tmp_path / "missing.bin")
    s = chat_model.chat_session(**GREEDY)
    s.send(QUESTIONS[0])
    s.save(tmp_path / "ok.bin")
    data = (tmp_path / "ok.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(data[:-100])
    with pytest.raises(ValueError):
        mambalite.ChatSession.load(chat_model, tmp_path / "cut.bin")


def test_tokenized_template_equals_transformers(chat_model):
    from transformers import PreTrainedTokenizerFast

    ref = PreTrainedTokenizerFast(tokenizer_object=_hf_tokenizer(chat_model),
                                  bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    messages = [{"role": "system", "content": "x"}, {"role": "user", "content": QUESTIONS[3]}]
    template = "{{ bos_token }}" + CHATML + "{{ eos_token }}"
    want = ref.apply_chat_template(messages, chat_template=template, tokenize=True,
                                   add_generation_prompt=True, return_dict=False)
    got = chat_model.apply_chat_template(messages, chat_template=template, tokenize=True)
    assert got == list(np.asarray(want).ravel())
    assert got[0] == got[-1] == chat_model.tokenizer.eos_id  # the specials read as ids
    assert got.count(300) == 3 and got.count(301) == 2


def _hf_tokenizer(model):
    from tokenizers import Tokenizer

    return Tokenizer.from_str(model.metadata["tokenizer.huggingface.json"])


REAL = sorted((Path(__file__).parent / "data" / "templates").glob("*.jinja"))


@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_templates_turns_equal_from_scratch(chat_model, path):
    template = path.read_text(encoding="utf-8")
    session = chat_model.chat_session(system="You are terse.", chat_template=template, **GREEDY)
    for k, question in enumerate(QUESTIONS[:3]):
        messages = [*session.messages, {"role": "user", "content": question}]
        want = _from_scratch(chat_model, messages, template)
        assert session.send(question) == want, f"{path.stem}, turn {k + 1}"
        assert session.state.n_tokens == len(session.ids)


def test_copy_branches_the_conversation(chat_model):
    a = chat_model.chat_session(**GREEDY)
    a.send(QUESTIONS[0])
    b = a.copy()
    assert b.send(QUESTIONS[1]) == a.copy().send(QUESTIONS[1])
    a.send(QUESTIONS[2])
    assert [m["content"] for m in b.messages][:2] == [m["content"] for m in a.messages][:2]
    assert b.messages[2]["content"] == QUESTIONS[1] and a.messages[2]["content"] == QUESTIONS[2]
    want = _from_scratch(chat_model, [*b.messages, {"role": "user", "content": QUESTIONS[3]}])
    assert b.send(QUESTIONS[3]) == want


def test_repetition_penalty_sees_the_whole_history(chat_model):
    """The state holds the history, but the penalty must see it too: each turn equals a
    from-scratch run, which penalises every prompt id."""
    sampling = dict(GREEDY, repetition_penalty=1.5)
    session = chat_model.chat_session(**sampling)
    for question in QUESTIONS[:3]:
        want = _from_scratch(chat_model, [*session.messages,
                                          {"role": "user", "content": question}], **sampling)
        assert session.send(question) == want
