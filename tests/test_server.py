"""The OpenAI-compatible server against the official `openai` client (the oracle of the API's
shapes), on a live uvicorn server on a free loopback port. Answers are compared with the Python
API (`Model.chat`/`generate`, themselves tested against transformers and from-scratch runs)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from mambalite.server import ServerOptions, create_app  # noqa: E402

from test_chat import _build, chat_tokenizer  # noqa: E402

MESSAGES = [{"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the capital of France?"}]
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "n"],
          "properties": {"city": {"type": "string", "maxLength": 10},
                         "n": {"type": "integer", "minimum": 0, "maximum": 9}}}


class LiveServer:
    def __init__(self, model, **options) -> None:
        self.app = create_app(model, ServerOptions(model_name="test-model", **options))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def client(self, key: str = "x"):
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=60)

    def raw(self, method: str, path: str, body: bytes | None = None,
            headers: dict | None = None) -> tuple[int, dict]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        c.request(method, path, body=body, headers={"Content-Type": "application/json",
                                                    **(headers or {})})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, json.loads(data) if data else {}

    def health(self) -> dict:
        return self.raw("GET", "/health")[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def model(tmp_path_factory, bpe_tokenizer):
    return _build("mamba1", tmp_path_factory.mktemp("serve") / "ckpt",
                  chat_tokenizer(bpe_tokenizer))


@pytest.fixture(scope="module")
def live(model):
    s = LiveServer(model, max_tokens=512)
    yield s
    s.stop()


def test_chat_completion_equals_the_api(live, model):
    c = live.client()
    r = c.chat.completions.create(model="test-model", messages=MESSAGES, temperature=0,
                                  max_tokens=12)
    want = model.chat(MESSAGES, temperature=0, max_new_tokens=12)
    assert r.choices[0].message.content == want
    assert r.choices[0].message.role == "assistant"
    assert r.object == "chat.completion" and r.model == "test-model"
    n_prompt = len(model.apply_chat_template(MESSAGES, tokenize=True))
    assert r.usage.prompt_tokens == n_prompt
    assert r.usage.total_tokens == n_prompt + r.usage.completion_tokens
    assert r.choices[0].finish_reason in ("stop", "length")


def test_streaming_chat_and_completion(live, model):
    c = live.client()
    chunks = list(c.chat.completions.create(model="m", messages=MESSAGES, temperature=0,
                                            max_tokens=12, stream=True,
                                            stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == model.chat(MESSAGES, temperature=0, max_new_tokens=12)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    prompt = "def fibonacci(n):"
    want = model.generate(prompt, temperature=0, max_new_tokens=16)
    r = c.completions.create(model="m", prompt=prompt, temperature=0, max_tokens=16)
    assert r.choices[0].text == want
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(
        model="m", prompt=prompt, temperature=0, max_tokens=16, stream=True))
    assert streamed == want


def test_stop_strings_and_seeds(live, model):
    c = live.client()
    prompt = "The capital of France is"
    full = model.generate(prompt, temperature=0, max_new_tokens=24)
    stop = full[8:11]
    assert stop and stop in full
    r = c.completions.create(model="m", prompt=prompt, temperature=0, max_tokens=24, stop=[stop])
    assert r.choices[0].text == full[:full.index(stop)]
    assert r.choices[0].finish_reason == "stop"
    kw = dict(model="m", messages=MESSAGES, temperature=1.0, max_tokens=16)
    a = c.chat.completions.create(seed=5, **kw).choices[0].message.content
    b = c.chat.completions.create(seed=5, **kw).choices[0].message.content
    other = c.chat.completions.create(seed=6, **kw).choices[0].message.content
    assert a == b != other
    assert a == model.chat(MESSAGES, temperature=1.0, top_k=0, top_p=1.0, seed=5,
                           max_new_tokens=16)


def test_logprobs(live, model):
    c = live.client()
    r = c.chat.completions.create(model="m", messages=MESSAGES, temperature=0, max_tokens=8,
                                  logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    ids = model.apply_chat_template(MESSAGES, tokenize=True)
    want = list(model.generate_tokens(ids, temperature=0, max_new_tokens=8, logprobs=3))
    for got, w in zip(content, want):
        assert abs(got.logprob - w.logprob) < 1e-6
        assert len(got.top_logprobs) == 3
        assert got.top_logprobs[0].logprob == pytest.approx(got.logprob)  # greedy: the top one
    r = c.completions.create(model="m", prompt="Hello", temperature=0, max_tokens=5, logprobs=2)
    lp = r.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5


def test_json_schema_output(live):
    jsonschema = pytest.importorskip("jsonschema")
    c = live.client()
    for seed in range(3):
        r = c.chat.completions.create(
            model="m", messages=MESSAGES, temperature=1.0, seed=seed, max_tokens=100,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "answer", "schema": SCHEMA}})
        jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)


BAD = [
    ("bad JSON", b'{"messages": [', None),
    ("not an object", b'[1, 2]', None),
    ("unknown role", {"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ("negative max_tokens", {"messages": MESSAGES, "max_tokens": -1}, "max_tokens"),
    ("absurd top_logprobs", {"messages": MESSAGES, "logprobs": True, "top_logprobs": 500},
     "top_logprobs"),
    ("model of the wrong type", {"model": 123, "messages": MESSAGES}, "model"),
    ("messages not a list", {"messages": "hi"}, "messages"),
    ("temperature a string", {"messages": MESSAGES, "temperature": "hot"}, "temperature"),
    ("stop an int", {"messages": MESSAGES, "stop": 5}, "stop"),
    ("logit_bias key", {"messages": MESSAGES, "logit_bias": {"x": 1}}, "logit_bias"),
    ("n > 1", {"messages": MESSAGES, "n": 3}, "n"),
    ("response_format", {"messages": MESSAGES, "response_format": {"type": "xml"}},
     "response_format"),
    ("image content", {"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
    ("max_tokens over the limit", {"messages": MESSAGES, "max_tokens": 10**9}, "max_tokens"),
]


@pytest.mark.parametrize("name, body, param", BAD, ids=[b[0] for b in BAD])
def test_malformed_requests_get_400(live, model, name, body, param):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, err = live.raw("POST", "/v1/chat/completions", data)
    assert status == 400, (name, err)
    assert set(err["error"]) >= {"message", "type", "param", "code"}
    assert err["error"]["type"] == "invalid_request_error" and err["error"]["message"]
    if param is not None:
        assert err["error"]["param"] == param
    # and the server still answers
    r = live.client().chat.completions.create(model="m", messages=MESSAGES, temperature=0,
                                              max_tokens=4)
    assert r.choices[0].message.content == model.chat(MESSAGES, temperature=0, max_new_tokens=4)


def test_openai_client_raises_bad_request(live):
    with pytest.raises(openai.BadRequestError) as e:
        live.client().chat.completions.create(model="m", messages=MESSAGES, max_tokens=-5)
    assert "max_tokens" in str(e.value)
    status, err = live.raw("GET", "/v1/nothing")
    assert status == 404 and err["error"]["code"] == "not_found"
    status, _ = live.raw("POST", "/v1/chat/completions", b"x" * (5 << 20))
    assert status == 413


def test_concurrent_streams_equal_sequential_runs(live):
    c = live.client()

    def run(seed: int) -> str:
        stream = c.chat.completions.create(
            model="m", messages=[{"role": "user", "content": f"Tell me about {seed}"}],
            temperature=2.0, seed=seed, max_tokens=24, stream=True)
        return "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)

    sequential = [run(s) for s in range(16)]
    before = live.health()["batching"]
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(run, range(16)))
    assert concurrent == sequential
    assert len(set(sequential)) > 8  # different seeds, different texts
    # The concurrent streams were stepped together (continuous batching), many per pass.
    after = live.health()["batching"]
    batches = after["batches"] - before["batches"]
    assert (after["sequences"] - before["sequences"]) / batches > 4


def test_batching_off_serves_the_same(model):
    s = LiveServer(model, max_batch=1)
    try:
        c = s.client()
        out = c.chat.completions.create(model="m", messages=MESSAGES, temperature=0,
                                        max_tokens=16)
        assert s.health()["batching"] == {"max_batch": 1}
        assert out.choices[0].message.content == model.chat(MESSAGES, max_new_tokens=16,
                                                            temperature=0)
    finally:
        s.stop()
    with pytest.raises(ValueError, match="max_batch must be an integer >= 1"):
        create_app(model, ServerOptions(max_batch=0))


def test_dropped_client_frees_its_request(live, model):
    before = live.health()["tokens_generated"]
    end = model.tokenizer.eos_id
    body = json.dumps({"messages": MESSAGES, "max_tokens": 500, "stream": True,
                       "logit_bias": {str(end): -100}}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=30)
    conn.request("POST", "/v1/chat/completions", body=body,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    for _ in range(3):
        r.fp.readline()
    conn.sock.shutdown(socket.SHUT_RDWR)
    conn.close()
    deadline = time.time() + 10
    while live.health()["active_requests"] != 0:
        assert time.time() < deadline, "the dropped request is still running"
        time.sleep(0.05)
    time.sleep(0.3)
    assert live.health()["tokens_generated"] - before < 500  # it stopped early


def test_follow_up_turn_prefills_only_new_tokens(live, model):
    c = live.client()
    messages = [{"role": "user", "content": "Name a colour."}]
    first = c.chat.completions.create(model="m", messages=messages, temperature=0,
                                      max_tokens=10)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "And another?"}]
    second = c.chat.completions.create(model="m", messages=messages, temperature=0,
                                       max_tokens=10)
    assert second.choices[0].message.content == model.chat(messages, temperature=0,
                                                           max_new_tokens=10)
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= first.usage.prompt_tokens - 1  # at least the first prompt came from cache
    assert cached < second.usage.prompt_tokens


def test_models_health_and_api_key(model, tmp_path):
    s = LiveServer(model, api_key="secret", state_dir=str(tmp_path / "states"))
    try:
        with pytest.raises(openai.AuthenticationError):
            s.client("wrong").models.list()
        assert [m.id for m in s.client("secret").models.list().data] == ["test-model"]
        r = s.client("secret").chat.completions.create(model="m", messages=MESSAGES,
                                                       temperature=0, max_tokens=4)
        assert r.choices[0].message.content == model.chat(MESSAGES, temperature=0,
                                                          max_new_tokens=4)
        assert list((tmp_path / "states").glob("*.state"))  # the cache was written to disk
        assert s.health()["status"] == "ok"
    finally:
        s.stop()


def test_command_line_serve(model):
    """`mambalite serve` end to end: the process binds, answers the official client, and ends on
    SIGINT."""
    import signal
    import subprocess
    import sys

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    p = subprocess.Popen([sys.executable, "-m", "mambalite", "serve", "-m", str(model.path),
                          "--port", str(port), "--model-name", "cli-model", "-t", "1"],
                         stderr=subprocess.PIPE, text=True)
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0,
                          timeout=30)
        deadline = time.time() + 60
        while True:
            try:
                names = [m.id for m in c.models.list().data]
                break
            except openai.APIConnectionError:
                assert p.poll() is None and time.time() < deadline, "the server did not start"
                time.sleep(0.2)
        assert names == ["cli-model"]
        r = c.chat.completions.create(model="cli-model", messages=MESSAGES, temperature=0,
                                      max_tokens=6)
        assert r.choices[0].message.content == model.chat(MESSAGES, temperature=0,
                                                          max_new_tokens=6)
    finally:
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    assert f"serving cli-model on http://127.0.0.1:{port}/v1" in err
