"""Chat templates against transformers' `apply_chat_template` (the oracle): the same prompt text
for the same template and messages, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

import mambalite

from helpers import export, make_hf_model, save_checkpoint

CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}"
    "<|im_start|>system\nYou are helpful.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
# Granite-style: the BOS token, a role check that raises, whitespace control.
STRICT = (
    "{{ bos_token }}{% for message in messages %}\n"
    "  {% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role ' + message['role']) }}{% endif %}\n"
    "  <|{{ message['role'] }}|>{{ message['content'] | trim }}{{ eos_token }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")

MESSAGES = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Be terse & exact <b>."},
     {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "  Hello!  "},
     {"role": "user", "content": "Ünïcode ✓ and \"quotes\""}],
]


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory, bpe_tokenizer):
    hf = make_hf_model(seed=5, vocab_size=320, hidden_size=32, num_hidden_layers=1)
    d = save_checkpoint(hf, tmp_path_factory.mktemp("chat") / "ckpt", bpe_tokenizer)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**cfg, "chat_template": CHATML}))
    reference = PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"),
                                        bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    return mambalite.load(export(d, "f32")), reference


@pytest.mark.parametrize("generation_prompt", [True, False])
@pytest.mark.parametrize("template", ["file", "chatml", "strict"])
@pytest.mark.parametrize("messages", MESSAGES)
def test_rendering_equals_transformers(chat_model, template, messages, generation_prompt):
    model, ref = chat_model
    text = {"file": None, "chatml": CHATML, "strict": STRICT}[template]
    want = ref.apply_chat_template(messages, chat_template=text or CHATML, tokenize=False,
                                   add_generation_prompt=generation_prompt)
    got = model.apply_chat_template(messages, chat_template=text,
                                    add_generation_prompt=generation_prompt)
    assert got == want
    assert model.chat_template == CHATML  # carried by the export from tokenizer_config.json


def test_tools_render_as_transformers(chat_model):
    model, ref = chat_model
    tools = [{"type": "function", "function": {"name": "f", "description": "<é>",
                                                "parameters": {"type": "object"}}}]
    want = ref.apply_chat_template(MESSAGES[0], chat_template=CHATML, tools=tools, tokenize=False,
                                   add_generation_prompt=True)
    assert model.apply_chat_template(MESSAGES[0], tools=tools) == want
    assert "<é>" in want  # tojson does not escape HTML or non-ASCII


def test_template_errors_are_clear(chat_model, tmp_path):
    model, _ = chat_model
    with pytest.raises(ValueError, match="refused these messages: unknown role tool"):
        model.apply_chat_template([{"role": "tool", "content": "x"}], chat_template=STRICT)
    with pytest.raises(ValueError, match="not valid Jinja"):
        model.apply_chat_template(MESSAGES[0], chat_template="{% for %}")
    with pytest.raises(TypeError, match="list of dicts"):
        model.apply_chat_template({"role": "user", "content": "Hi"})
    plain = mambalite.load()  # the shipped model has no template
    assert plain.chat_template is None
    with pytest.raises(ValueError, match="has no chat template.*chat_template="):
        plain.apply_chat_template(MESSAGES[0])


REAL = sorted((Path(__file__).parent / "data" / "templates").glob("*.jinja"))
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You are terse. /no_think"},
     {"role": "user", "content": "Hi"},
     {"role": "assistant", "content": "Hello! How can I help?"},
     {"role": "user", "content": "Ünïcode ✓ and \"quotes\" <b>"}],
    [{"role": "user", "content": "One"}, {"role": "assistant", "content": "Two"},
     {"role": "user", "content": "Three"}, {"role": "assistant", "content": "Four"},
     {"role": "user", "content": "Five"}],
]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}]


@pytest.mark.parametrize("generation_prompt", [True, False])
@pytest.mark.parametrize("messages", range(len(CONVERSATIONS)))
@pytest.mark.parametrize("path", REAL, ids=[p.stem for p in REAL])
def test_real_templates_render_as_transformers(chat_model, path, messages, generation_prompt):
    model, ref = chat_model
    template = path.read_text(encoding="utf-8")
    conversation = CONVERSATIONS[messages]
    for tools in (None, TOOLS):
        want = ref.apply_chat_template(conversation, chat_template=template, tokenize=False,
                                       add_generation_prompt=generation_prompt, tools=tools)
        got = model.apply_chat_template(conversation, chat_template=template, tools=tools,
                                        add_generation_prompt=generation_prompt)
        assert got == want, (path.name, tools is not None)
    assert len(REAL) == 3
