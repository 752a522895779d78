"""Sampling additions against numpy references on the model's own logits (which test_logits checks
against transformers): OpenAI's presence/frequency penalties and logit_bias, log-probabilities,
a Python logits processor, and constrained output (JSON schema, regex, GBNF) through llguidance,
whose results are checked by an independent validator (jsonschema, re)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

PROMPT = "The capital of France is"


def _log_softmax(x: np.ndarray, keep: np.ndarray) -> np.ndarray:
    x = np.where(keep, x.astype(np.float64), -np.inf)
    m = x.max()
    return x - (m + np.log(np.exp(x - m).sum()))


def _sampleable(model) -> np.ndarray:
    keep = np.ones(model.config.vocab_size, dtype=bool)
    keep[model.tokenizer.unsampleable_ids(model.config.vocab_size)] = False
    return keep


def _greedy_reference(model, prompt_ids, n, adjust):
    """Greedy picks where `adjust(logits, generated)` changes each step's logits (numpy)."""
    keep = _sampleable(model)
    ids, out = list(prompt_ids), []
    for _ in range(n):
        logits = model.forward(ids)[-1].astype(np.float64)
        x = np.where(keep, adjust(logits, out), -np.inf)
        t = int(np.argmax(x))
        out.append(t)
        ids.append(t)
        if t in model.tokenizer.end_ids:
            break
    return out


@pytest.mark.parametrize("presence, frequency", [(1.5, 0.0), (0.0, 0.7), (-0.5, 1.2)])
def test_presence_and_frequency_penalties(ml_text, presence, frequency):
    prompt = ml_text.tokenizer.encode(PROMPT)

    def adjust(logits, generated):
        counts = np.bincount(np.asarray(generated, dtype=np.int64),
                             minlength=len(logits))[:len(logits)]
        return logits - frequency * counts - presence * (counts > 0)

    want = _greedy_reference(ml_text, prompt, 24, adjust)
    got = list(ml_text.generate_tokens(prompt, max_new_tokens=24, temperature=0,
                                       presence_penalty=presence, frequency_penalty=frequency))
    assert got == want
    plain = list(ml_text.generate_tokens(prompt, max_new_tokens=24, temperature=0))
    assert got != plain  # the penalties changed the greedy path (else this test proves nothing)


def test_logit_bias(ml_text):
    prompt = ml_text.tokenizer.encode(PROMPT)
    plain = list(ml_text.generate_tokens(prompt, max_new_tokens=6, temperature=0))
    forced = list(ml_text.generate_tokens(prompt, max_new_tokens=6, temperature=0,
                                          logit_bias={42: 100}))
    assert forced == [42] * 6
    bias = {plain[0]: -100.0, 7: 3.5}
    want = _greedy_reference(
        ml_text, prompt, 6,
        lambda x, _: x + np.bincount(list(bias), weights=list(bias.values()), minlength=len(x)))
    assert list(ml_text.generate_tokens(prompt, max_new_tokens=6, temperature=0,
                                        logit_bias=bias)) == want
    assert want[0] != plain[0]


@pytest.mark.parametrize("k", [0, 1, 5])
def test_logprobs_are_the_models_log_softmax(ml_text, k):
    prompt = ml_text.tokenizer.encode(PROMPT)
    keep = _sampleable(ml_text)
    tokens = list(ml_text.generate_tokens(prompt, max_new_tokens=8, temperature=0.9, seed=3,
                                          logprobs=k))
    ids = [int(t) for t in tokens]
    assert ids == list(ml_text.generate_tokens(prompt, max_new_tokens=8, temperature=0.9,
                                               seed=3))  # logprobs do not change the picks
    logits = ml_text.forward(list(prompt) + ids)[len(prompt) - 1:]
    for t, row in zip(tokens, logits):
        ref = _log_softmax(row, keep)
        # Double-precision log-softmax of the same fp32 logits: only summation order differs.
        assert abs(t.logprob - ref[t.id]) < 1e-6
        order = np.argsort(-ref, kind="stable")[:k]
        assert [i for i, _ in t.top_logprobs] == order.tolist()
        assert np.allclose([v for _, v in t.top_logprobs], ref[order], atol=1e-6)


def test_logits_processor(ml_text):
    prompt = ml_text.tokenizer.encode(PROMPT)
    seen = []

    def identity(ids, logits):
        seen.append(ids.copy())
        return logits

    plain = list(ml_text.generate_tokens(prompt, max_new_tokens=5, temperature=0))
    assert list(ml_text.generate_tokens(prompt, max_new_tokens=5, temperature=0,
                                        logits_processor=identity)) == plain
    assert seen[0].tolist() == prompt and seen[-1].tolist() == prompt + plain[:-1]

    def only_odd(ids, logits):
        logits[::2] = -np.inf
        return logits

    out = list(ml_text.generate_tokens(prompt, max_new_tokens=10, temperature=1.0, seed=1,
                                       logits_processor=only_odd))
    assert out and all(t % 2 == 1 for t in out)
    with pytest.raises(ValueError, match="shape"):
        ml_text.generate(PROMPT, logits_processor=lambda ids, x: x[:5])


SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name", "n", "ok"],
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "n": {"type": "integer", "minimum": 0, "maximum": 99},
                         "ok": {"type": "boolean"}}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_json_schema_output_parses_and_validates(ml_text, seed):
    jsonschema = pytest.importorskip("jsonschema")
    text = ml_text.generate(PROMPT, json_schema=SCHEMA, max_new_tokens=200, temperature=1.0,
                            seed=seed)
    jsonschema.validate(json.loads(text), SCHEMA)


def test_regex_and_gbnf_constraints(ml_text):
    text = ml_text.generate(PROMPT, regex=r"[0-9]{3}-[a-z]{2}", max_new_tokens=50,
                            temperature=1.0, seed=4)
    assert re.fullmatch(r"[0-9]{3}-[a-z]{2}", text), text
    gbnf = 'root ::= "yes" | "no" | "maybe " [0-9]'
    for seed in range(4):
        text = ml_text.generate(PROMPT, grammar=gbnf, max_new_tokens=20, temperature=1.0,
                                seed=seed)
        assert re.fullmatch(r"yes|no|maybe [0-9]", text), text
    lark = 'start: "A" ("B" | "C")+ "."'
    text = ml_text.generate(PROMPT, grammar=lark, max_new_tokens=20, temperature=1.0, seed=5)
    assert re.fullmatch(r"A[BC]+\.", text) or re.fullmatch(r"A[BC]+", text), text


def test_bad_sampling_options(ml_text):
    with pytest.raises(ValueError, match="presence_penalty must be between -2 and 2"):
        ml_text.generate(PROMPT, presence_penalty=3)
    with pytest.raises(ValueError, match="logit_bias values must be between -100 and 100"):
        ml_text.generate(PROMPT, logit_bias={3: 1000})
    with pytest.raises(ValueError, match="logit_bias names token 99999"):
        ml_text.generate(PROMPT, logit_bias={99999: 1})
    with pytest.raises(ValueError, match="logprobs must be an integer from 0 to 20"):
        list(ml_text.generate_tokens(PROMPT, logprobs=21))
    with pytest.raises(ValueError, match="at most one of json_schema, grammar and regex"):
        ml_text.generate(PROMPT, json_schema=SCHEMA, regex="a")
    with pytest.raises(ValueError, match="json_schema is not valid JSON"):
        ml_text.generate(PROMPT, json_schema="{not json")
    with pytest.raises(ValueError, match="constraint is not valid"):
        ml_text.generate(PROMPT, grammar="start: (")


def test_constraints_on_a_sentencepiece_vocabulary():
    """The shipped model's SentencePiece vocabulary (byte pieces, "▁" spaces, dummy prefix)
    through llguidance: the output parses and validates."""
    jsonschema = pytest.importorskip("jsonschema")
    import mambalite

    model = mambalite.load()
    assert model.tokenizer.kind == "sentencepiece"
    for seed in range(3):
        text = model.generate("Name and age as JSON:", json_schema=SCHEMA, temperature=0.8,
                              seed=seed, max_new_tokens=80)
        jsonschema.validate(json.loads(text), SCHEMA)
        text = model.generate("x = ", regex=r"[0-9]{2,4}( \+ [0-9])?", seed=seed)
        assert re.fullmatch(r"[0-9]{2,4}( \+ [0-9])?", text), text
