"""Chat benchmarks on a Granite-4.0-H-350M-shaped model (Q8_0, random weights, the Granite-4.0
chat template): time to first token at turn 2 and turn 20 of a conversation, through the Python
API (`chat_session`) and the server (`openai` client, the state cache), beside a from-scratch
prefill of the same turn-20 prompt (what an engine without recurrent prefix reuse pays); and the
server's decode rate against the API's for one client.

    pytest bench/test_bench_chat.py -s

Rounds are interleaved and medians reported (these machines are noisy).
"""

from __future__ import annotations

import json
import shutil
import statistics
import time
from pathlib import Path

import pytest
from conftest import CACHE, checkpoint

QUESTION = ("Explain, in a few careful sentences, how a recurrent state differs from a key-value "
            "cache, and what that means for long conversations number {}.")
ANSWER_TOKENS = 16
ROUNDS = 5


def chat_model_file(shape: str) -> Path:
    """A bench shape with a tokenizer (the test BPE with the template's role markers as special
    tokens, as in the real vocabulary) and the real Granite-4.0 template, exported to Q8_0
    once."""
    import mambalite

    out = CACHE / f"{shape}-chat-q8_0.gguf"
    if out.is_file():
        return out
    from helpers import train_bpe_tokenizer
    from test_chat import chat_tokenizer

    d = CACHE / f"{shape}-chat"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(checkpoint(shape), d)
    from tokenizers import AddedToken

    tok = chat_tokenizer(train_bpe_tokenizer())
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in
                            ("<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>")])
    tok.save(str(d / "tokenizer.json"))
    template = (Path(__file__).parents[1] / "tests" / "data" / "templates" /
                "ibm-granite-granite-4.0.jinja").read_text(encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "chat_template": template}))
    mambalite.export(d, out, "q8_0", progress=False)
    return out


@pytest.fixture(scope="module", params=["130m", "granite-h-350m"])
def model(request):
    import mambalite

    return mambalite.load(chat_model_file(request.param), threads=2, n_ctx=8192)


def _sampling(model) -> dict:
    # Every answer runs its full length: the end ids are biased away.
    return dict(temperature=0, max_new_tokens=ANSWER_TOKENS,
                logit_bias={i: -100.0 for i in model.tokenizer.end_ids})


def _question(turn: int, round: int) -> str:
    return QUESTION.format(f"{turn}.{round}")  # a new last message in every round


def test_chat_time_to_first_token(model):
    """Incremental turns 2 and 20 against a from-scratch prefill of turn 20's prompt."""
    histories = {}
    s = model.chat_session(system="You are a careful assistant.", **_sampling(model))
    for k in range(1, 20):
        s.send(_question(k, 0))
        if k in (1, 19):
            histories[k + 1] = s.copy()  # k turns done: the next one is turn k + 1
    rows: dict[str, list[float]] = {k: [] for k in ("api-2", "api-20", "scratch-20")}
    tokens = {}
    for r in range(1, ROUNDS + 1):
        for turn in (2, 20):
            s = histories[turn].copy()
            t = time.perf_counter()
            s.send(_question(turn, r), max_new_tokens=1)
            rows[f"api-{turn}"].append(time.perf_counter() - t)
            tokens[f"api-{turn}"] = s.last_prefill
        if r <= 3:  # the slow one: three rounds
            ids = model.apply_chat_template([*histories[20].messages, {
                "role": "user", "content": _question(20, r)}], tokenize=True)
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=1, temperature=0)
            rows["scratch-20"].append(time.perf_counter() - t)
            tokens["scratch-20"] = len(ids)
    med = {k: statistics.median(v) * 1e3 for k, v in rows.items()}
    print(f"\n{model.path.name}: API time to first token, medians of interleaved rounds "
          "(2 threads):")
    for k in rows:
        print(f"  {k:11s} {med[k]:8.1f} ms  ({tokens[k]} tokens prefilled)")
    print(f"  turn 20 / turn 2: {med['api-20'] / med['api-2']:.2f}; from scratch / "
          f"incremental at turn 20: {med['scratch-20'] / med['api-20']:.1f}")
    # Pure Mamba: flat within noise. A hybrid's attention layers read the history's KV cache
    # for every new token, as any transformer does: that part grows (docs/chat.md).
    assert med["api-20"] / med["api-2"] < (1.25 if model.n_ctx == 0 else 1.6)
    assert med["scratch-20"] > 3 * med["api-20"]


def test_server_time_to_first_token_and_rate(model):
    pytest.importorskip("openai")
    from test_server import LiveServer

    # A hybrid's snapshot holds its KV cache for n_ctx (55 MB for this one at 8192): the
    # bench's four interleaved conversations need more than the default 512 MB.
    live = LiveServer(model, max_tokens=512, state_cache_mb=2048)
    try:
        c = live.client()
        bias = {str(k): v for k, v in _sampling(model)["logit_bias"].items()}
        histories = {}
        messages = [{"role": "system", "content": "You are a careful assistant."}]
        for k in range(1, 20):
            messages.append({"role": "user", "content": _question(k, 0)})
            r = c.chat.completions.create(model="m", messages=messages, temperature=0,
                                          max_tokens=ANSWER_TOKENS, logit_bias=bias)
            messages.append({"role": "assistant", "content": r.choices[0].message.content})
            if k in (1, 19):
                histories[k + 1] = list(messages)
        ttft: dict[int, list[float]] = {2: [], 20: []}
        ttft_client: dict[int, list[float]] = {2: [], 20: []}
        cached = {}
        rate: dict[str, list[float]] = {"server": [], "api": []}
        n = 128
        for r in range(1, ROUNDS + 1):
            for turn in (2, 20):
                # A fresh connection per request (http.client), and the openai client's pooled
                # one: see docs/chat.md for why the two differ on large bodies.
                msgs = histories[turn] + [{"role": "user", "content": _question(turn, r)}]
                body = json.dumps({"messages": msgs, "temperature": 0, "max_tokens": 1})
                t = time.perf_counter()
                status, resp = live.raw("POST", "/v1/chat/completions", body.encode())
                ttft[turn].append(time.perf_counter() - t)
                assert status == 200, resp
                cached[turn] = (resp["usage"]["prompt_tokens_details"]["cached_tokens"],
                                resp["usage"]["prompt_tokens"])
                msgs = histories[turn] + [{"role": "user", "content": _question(turn, r + 50)}]
                t = time.perf_counter()
                c.chat.completions.create(model="m", messages=msgs, temperature=0, max_tokens=1)
                ttft_client[turn].append(time.perf_counter() - t)
            # Decode rate, one client, a prompt neither side has seen (no cache hits).
            msgs = [{"role": "user", "content": _question(99, r)}]
            t = time.perf_counter()
            stream = c.chat.completions.create(model="m", messages=msgs, temperature=0,
                                               max_tokens=n, logit_bias=bias, stream=True,
                                               stream_options={"include_usage": True})
            got = [ch.usage.completion_tokens for ch in stream if ch.usage]
            rate["server"].append(got[0] / (time.perf_counter() - t))
            msgs = [{"role": "user", "content": _question(98, r)}]
            t = time.perf_counter()
            out = list(model.generate_tokens(
                model.apply_chat_template(msgs, tokenize=True), max_new_tokens=n,
                temperature=0, logit_bias=_sampling(model)["logit_bias"]))
            rate["api"].append(len(out) / (time.perf_counter() - t))
    finally:
        live.stop()
    m2, m20 = (statistics.median(ttft[k]) * 1e3 for k in (2, 20))
    c2, c20 = (statistics.median(ttft_client[k]) * 1e3 for k in (2, 20))
    rs, ra = (statistics.median(rate[k]) for k in ("server", "api"))
    print(f"\n{model.path.name}: server time to first token (a max_tokens=1 request), median "
          f"of {ROUNDS}:")
    print(f"  turn 2  {m2:8.1f} ms  (cached {cached[2][0]} of {cached[2][1]} prompt tokens)")
    print(f"  turn 20 {m20:8.1f} ms  (cached {cached[20][0]} of {cached[20][1]} prompt tokens)")
    print(f"  turn 20 / turn 2: {m20 / m2:.2f} (one connection per request); through the "
          f"openai client: {c2:.1f} and {c20:.1f} ms ({c20 / c2:.2f})")
    print(f"  server {rs:.1f} tok/s vs API {ra:.1f} tok/s for one client (x{rs / ra:.2f}), "
          f"{n} tokens, prompt prefill included")
    assert m20 / m2 < (1.25 if model.n_ctx == 0 else 1.6)
    assert rs / ra > 0.8
