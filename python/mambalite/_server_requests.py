"""Reading OpenAI request bodies for the server: every parameter checked, with OpenAI's names and
ranges, into the options of one generation; a bad one raises RequestError (HTTP 400 with
OpenAI's error JSON, naming the parameter)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ._generation import Sampling

ROLES = ("system", "developer", "user", "assistant", "tool")


class RequestError(Exception):
    """A request the server refuses: `status` and OpenAI's error object."""

    def __init__(self, message: str, param: str | None = None, status: int = 400,
                 kind: str = "invalid_request_error", code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.kind, self.code = status, param, kind, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param,
                          "code": self.code}}


@dataclass
class Generation:
    """What one request asks for, once read."""

    sampling: Sampling
    stop: list[str]
    stream: bool
    include_usage: bool = False
    logprobs: int | None = None  # top alternatives per token, None: no logprobs
    messages: list[dict[str, Any]] = field(default_factory=list)
    prompt: str | list[int] | None = None
    echo: bool = False
    tools: list[dict[str, Any]] | None = None


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise RequestError(f"the request body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object")
    return data


def _number(d: dict, name: str, default: float | None, lo: float, hi: float,
            integer: bool = False) -> Any:
    v = d.get(name)
    if v is None:
        return default
    ok = isinstance(v, int) if integer else isinstance(v, (int, float))
    if isinstance(v, bool) or not ok or (isinstance(v, float) and not math.isfinite(v)):
        kind = "an integer" if integer else "a number"
        raise RequestError(f"'{name}' must be {kind}, got {json.dumps(v)[:50]}", name)
    if not lo <= v <= hi:
        raise RequestError(f"'{name}' must be between {lo:g} and {hi:g}, got {v}", name)
    return v


def _bool(d: dict, name: str, default: bool = False) -> bool:
    v = d.get(name, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise RequestError(f"'{name}' must be a boolean, got {json.dumps(v)[:50]}", name)
    return v


def _common(d: dict, max_tokens_cap: int, default_max: int, n_vocab: int) -> Generation:
    model = d.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("'model' must be a string", "model")
    n = _number(d, "n", 1, 1, 1, integer=True)  # one choice per request
    del n
    limit = max_tokens_cap
    max_tokens = _number(d, "max_completion_tokens", None, 0, limit, integer=True)
    if max_tokens is None:
        max_tokens = _number(d, "max_tokens", None, 0, limit, integer=True)
    stop = d.get("stop")
    if stop is None:
        stops = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 16:
        stops = list(stop)
    else:
        raise RequestError("'stop' must be a string or a list of at most 16 strings", "stop")
    bias = d.get("logit_bias")
    logit_bias = None
    if bias is not None:
        if not isinstance(bias, dict):
            raise RequestError("'logit_bias' must map token ids to numbers", "logit_bias")
        logit_bias = {}
        for k, v in bias.items():
            try:
                i = int(k)
            except ValueError:
                raise RequestError(f"'logit_bias' keys must be token ids, got {k!r}",
                                   "logit_bias") from None
            if not 0 <= i < n_vocab:
                raise RequestError(f"'logit_bias' names token {i}, outside 0 to {n_vocab - 1}",
                                   "logit_bias")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not -100 <= v <= 100:
                raise RequestError(f"'logit_bias' values must be numbers from -100 to 100, got "
                                   f"{json.dumps(v)[:30]} for {k}", "logit_bias")
            logit_bias[i] = float(v)
    seed = _number(d, "seed", None, -(2**63), 2**64 - 1, integer=True)
    opts = Sampling(
        max_new_tokens=max_tokens if max_tokens is not None else default_max,
        temperature=_number(d, "temperature", 1.0, 0, 2),
        top_p=_number(d, "top_p", 1.0, 0, 1),
        top_k=_number(d, "top_k", 0, 0, n_vocab, integer=True),
        min_p=_number(d, "min_p", 0.0, 0, 1),
        repetition_penalty=_number(d, "repetition_penalty", 1.0, 0.01, 100),
        presence_penalty=_number(d, "presence_penalty", 0.0, -2, 2),
        frequency_penalty=_number(d, "frequency_penalty", 0.0, -2, 2),
        logit_bias=logit_bias, seed=seed % 2**64 if seed is not None else None)
    if opts.top_p == 0:
        opts.top_p = 1e-9  # OpenAI accepts 0: keep only the most likely token
    stream = _bool(d, "stream")
    so = d.get("stream_options")
    if so is not None and not isinstance(so, dict):
        raise RequestError("'stream_options' must be an object", "stream_options")
    include_usage = bool(so and so.get("include_usage"))
    return Generation(sampling=opts, stop=stops, stream=stream, include_usage=include_usage)


def _response_format(d: dict, g: Generation) -> None:
    rf = d.get("response_format")
    if rf is None:
        return
    if not isinstance(rf, dict) or rf.get("type") not in ("text", "json_object", "json_schema"):
        raise RequestError("'response_format' must be {\"type\": \"text\"}, {\"type\": "
                           "\"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": "
                           "{...}}", "response_format")
    if rf["type"] == "json_object":
        g.sampling.json_schema = {"type": "object"}
    elif rf["type"] == "json_schema":
        js = rf.get("json_schema")
        schema = js.get("schema") if isinstance(js, dict) else None
        if not isinstance(schema, dict):
            raise RequestError("'response_format.json_schema.schema' must be a JSON schema "
                               "object", "response_format")
        g.sampling.json_schema = schema


def chat_request(d: dict, max_tokens_cap: int, default_max: int, n_vocab: int) -> Generation:
    g = _common(d, max_tokens_cap, default_max, n_vocab)
    messages = d.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list of messages", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise RequestError(f"messages[{i}] must be an object with 'role' and 'content'",
                               "messages")
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(f"messages[{i}].role must be one of {', '.join(ROLES)}, got "
                               f"{json.dumps(role)[:40]}", "messages")
        content = m.get("content")
        if isinstance(content, list):  # content parts: the text ones, joined
            texts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text" or \
                        not isinstance(part.get("text"), str):
                    raise RequestError(f"messages[{i}].content parts must be text parts "
                                       "({\"type\": \"text\", \"text\": ...}); this server "
                                       "takes no images or audio", "messages")
                texts.append(part["text"])
            content = "".join(texts)
        if content is None and role == "assistant" and m.get("tool_calls"):
            content = ""
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string or a list of text "
                               "parts", "messages")
        msg = {**m, "role": "system" if role == "developer" else role, "content": content}
        out.append(msg)
    g.messages = out
    tools = d.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise RequestError("'tools' must be a list", "tools")
    g.tools = tools
    if _bool(d, "logprobs"):
        g.logprobs = _number(d, "top_logprobs", 0, 0, 20, integer=True)
    elif d.get("top_logprobs") is not None:
        raise RequestError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    _response_format(d, g)
    return g


def completion_request(d: dict, max_tokens_cap: int, n_vocab: int) -> Generation:
    g = _common(d, max_tokens_cap, 16, n_vocab)  # OpenAI's default for completions
    prompt = d.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and prompt and all(isinstance(i, int) and
                                                   not isinstance(i, bool) for i in prompt):
        if not all(0 <= i < n_vocab for i in prompt):
            raise RequestError(f"'prompt' token ids must be from 0 to {n_vocab - 1}", "prompt")
    elif not isinstance(prompt, str) or not prompt:
        raise RequestError("'prompt' must be a non-empty string or a list of token ids (one "
                           "prompt per request)", "prompt")
    g.prompt = prompt
    g.echo = _bool(d, "echo")
    lp = d.get("logprobs")
    if lp is not None:
        g.logprobs = _number(d, "logprobs", 0, 0, 5, integer=True)
    _response_format(d, g)
    return g
