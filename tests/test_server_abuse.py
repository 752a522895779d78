"""The server under abuse, on loopback: 1,000 requests from 32 concurrent clients mixing normal
and streamed requests, streams cancelled mid-way, slow readers, malformed JSON, oversized bodies,
absurd parameters and unknown routes. No crash or hang, every bad request answered 4xx with
OpenAI's error JSON, memory bounded, and a normal request answered correctly afterwards; a chat
template that tries to escape jinja2's sandbox gets an error, not code execution."""

from __future__ import annotations

import http.client
import json
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from test_server import MESSAGES, LiveServer, model  # noqa: E402, F401 - the module's fixture

N_REQUESTS = 1000
N_CLIENTS = 32
BODY_LIMIT = 64 << 10


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def _chat(**extra) -> bytes:
    return json.dumps({"model": "m", "messages": MESSAGES, "max_tokens": 6, **extra}).encode()


ABSURD = [  # each must be refused with a 400 naming the problem
    _chat(temperature=-5), _chat(max_tokens=10**12), _chat(top_p=7), _chat(top_k=-3),
    _chat(messages="hello"), _chat(messages=[{"role": "user"}]), _chat(n=1000),
    _chat(logit_bias={"abc": 1}), _chat(seed="x"), _chat(stop=[1, 2]),
    _chat(presence_penalty=1e9), _chat(response_format={"type": "json_schema"}),
    json.dumps({"model": "m", "prompt": 5, "max_tokens": 2}).encode(),
]


def _request(port: int, kind: str, rng: random.Random) -> tuple[str, int]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        path, body, method = "/v1/chat/completions", _chat(), "POST"
        if kind == "malformed":
            body = rng.choice([b"{", b"not json", b'{"messages": [}', b"\xff\xfe", b"[]", b"null"])
        elif kind == "oversized":
            body = _chat(stop=["x" * (BODY_LIMIT + 10)])
        elif kind == "absurd":
            body = rng.choice(ABSURD)
            if b'"prompt"' in body:
                path = "/v1/completions"
        elif kind == "route":
            path, method = rng.choice([("/v1/nothing", "POST"), ("/v1/chat/completions", "GET"),
                                       ("/v2/models", "GET")])
        elif kind in ("stream", "cancel", "slow"):
            body = _chat(stream=True, max_tokens=8)
        c.request(method, path, body=body if method == "POST" else None,
                  headers={"Content-Type": "application/json"})
        r = c.getresponse()
        if kind == "cancel":
            r.read(16)  # the first bytes of the stream, then hang up
            return kind, r.status
        if kind == "slow":
            while chunk := r.read(8):
                time.sleep(0.002)
                del chunk
            return kind, r.status
        data = r.read()
        if r.status >= 400:
            err = json.loads(data)["error"]  # OpenAI's shape: message, type, param, code
            assert isinstance(err["message"], str) and err["message"] and "type" in err
        return kind, r.status
    finally:
        c.close()


def test_a_thousand_abusive_requests(model):  # noqa: F811 - the fixture
    live = LiveServer(model, max_tokens=64, max_body_bytes=BODY_LIMIT)
    try:
        rng = random.Random(0)
        kinds = (["normal"] * 25 + ["stream"] * 15 + ["cancel"] * 15 + ["slow"] * 5 +
                 ["malformed"] * 15 + ["oversized"] * 5 + ["absurd"] * 15 + ["route"] * 5)
        plan = [rng.choice(kinds) for _ in range(N_REQUESTS)]
        rss0 = _rss_mb()
        t0 = time.time()
        with ThreadPoolExecutor(N_CLIENTS) as pool:
            results = list(pool.map(lambda ik: _request(live.port, ik[1], random.Random(ik[0])),
                                    enumerate(plan)))
        elapsed = time.time() - t0
        print(f"\n{N_REQUESTS} requests from {N_CLIENTS} clients in {elapsed:.1f} s")
        statuses: dict[str, set[int]] = {}
        for kind, status in results:
            statuses.setdefault(kind, set()).add(status)
        assert statuses.get("normal", {200}) == {200}
        assert statuses.get("stream", {200}) == {200} and statuses.get("slow", {200}) == {200}
        assert statuses.get("malformed", {400}) == {400}
        assert statuses.get("oversized", {413}) == {413}
        assert statuses.get("absurd", {400}) == {400}
        assert statuses.get("route", {404}) <= {404, 405}
        assert _rss_mb() - rss0 < 300, "memory grew under load"
        assert elapsed < 120
        # and then a normal request, answered as the Python API answers it
        c = live.client()
        r = c.chat.completions.create(model="m", messages=MESSAGES, temperature=0, max_tokens=10)
        assert r.choices[0].message.content == model.chat(MESSAGES, temperature=0,
                                                          max_new_tokens=10)
        assert live.health()["status"] == "ok"
    finally:
        live.stop()


def test_a_template_escaping_the_sandbox_gets_an_error(model, tmp_path):  # noqa: F811
    marker = tmp_path / "escaped"
    evil = ("{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}"
            "{% for m in messages %}{{ m.content }}{% endfor %}")
    live = LiveServer(model, chat_template=evil)
    try:
        status, body = live.raw("POST", "/v1/chat/completions", _chat())
        assert 400 <= status < 500 and body["error"]["message"], (status, body)
        assert not Path(marker).exists()
        status, body = live.raw("POST", "/v1/completions",
                                json.dumps({"prompt": "hi", "max_tokens": 2}).encode())
        assert status == 200  # the server itself is fine
    finally:
        live.stop()
