"""An OpenAI-compatible HTTP server (`mambalite serve`, extra `server`): /v1/chat/completions and
/v1/completions (streamed as server-sent events, or whole), /v1/models and /health, on Starlette
and uvicorn.

Each request has its own State. Concurrent generations are batched continuously (see
`_batcher`): each step evaluates every running stream in one pass over the weights, requests
joining and leaving at any step; prompts are read one at a time between steps. A state cache
(see `_state_cache`) keeps snapshots at turn boundaries, so that the next request of a
conversation prefills only its new tokens.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _generation
from ._batcher import StepBatcher
from ._server_requests import (
    Generation,
    RequestError,
    chat_request,
    completion_request,
    parse_json,
)
from ._state_cache import StateCache
from .chat import turn_boundary

if TYPE_CHECKING:
    from .model import Model


def _require_server_packages():
    try:
        import anyio  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise ImportError('the server needs its extra: pip install "mambalite[server]"') from None


@dataclass
class ServerOptions:
    """Limits and settings of a server."""

    model_name: str = "local"
    api_key: str | None = None
    state_cache_mb: float = 512.0
    state_dir: str | None = None
    max_tokens: int = 4096  # the most one request may generate
    max_body_bytes: int = 4 << 20
    chat_template: str | None = None
    max_batch: int = 32  # streams stepped together (1: no batching)


@dataclass
class _Result:
    text: str = ""
    tokens: list[Any] = field(default_factory=list)  # ids, or Tokens with logprobs
    prompt_tokens: int = 0
    cached_tokens: int = 0
    finish_reason: str = "stop"


class Engine:
    """Runs generations for the server: prompt ids in, text pieces out, with the state cache."""

    def __init__(self, model: Model, options: ServerOptions) -> None:
        self.model = model
        self.options = options
        self.cache = StateCache(model, int(options.state_cache_mb * (1 << 20)), options.state_dir)
        self.active = 0
        self.tokens_generated = 0
        self._count_lock = threading.Lock()
        if isinstance(options.max_batch, bool) or not isinstance(options.max_batch, int) or \
                options.max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1 (1: no batching), got "
                             f"{options.max_batch!r}")
        self.batcher = StepBatcher(model, options.max_batch) if options.max_batch > 1 else None

    def prompt_ids(self, g: Generation) -> np.ndarray:
        model = self.model
        try:
            if g.messages:
                ids = model.apply_chat_template(g.messages, tools=g.tools, tokenize=True,
                                                chat_template=self.options.chat_template)
            elif isinstance(g.prompt, str):
                ids = model.tokenizer.encode(g.prompt)
            else:
                ids = list(g.prompt)
        except (ValueError, TypeError) as e:
            raise RequestError(str(e), "messages" if g.messages else "prompt") from None
        if not ids:
            raise RequestError("the prompt has no tokens", "messages" if g.messages else "prompt")
        n_ctx = model.n_ctx
        if n_ctx and len(ids) + g.sampling.max_new_tokens > n_ctx:
            raise RequestError(
                f"this model's context is {n_ctx} tokens, but the prompt has {len(ids)} and "
                f"max_tokens asks for {g.sampling.max_new_tokens} more; shorten the messages "
                "or lower max_tokens", "messages", code="context_length_exceeded")
        return np.asarray(ids, dtype=np.int32)

    def run(self, g: Generation, ids: np.ndarray, result: _Result) -> Iterator[str]:
        """Text pieces of the answer; `result` fills in as they come (and when it ends)."""
        with self._count_lock:
            self.active += 1
        try:
            yield from self._run(g, ids, result)
        finally:
            with self._count_lock:
                self.active -= 1

    def _run(self, g: Generation, ids: np.ndarray, result: _Result) -> Iterator[str]:
        model = self.model
        result.prompt_tokens = len(ids)
        if g.sampling.max_new_tokens == 0:
            result.finish_reason = "length"
            return
        state = self.cache.longest_prefix(ids, len(ids) - 1)
        if state is None:
            state = model.new_state()
        result.cached_tokens = state.n_tokens
        # A snapshot where the last message starts (else before the last prompt token), and
        # one after the answer: the next request of the conversation finds one of them even
        # when its render or tokenization differs from this one after the message's start.
        b = turn_boundary(model, g.messages, ids, self.options.chat_template, g.tools) \
            if g.messages else 0
        snap_at = b if state.n_tokens < b < len(ids) - 1 else len(ids) - 1
        for end in sorted({snap_at, len(ids) - 1}):
            rest = ids[state.n_tokens:end]
            if len(rest):
                model._core.advance(state._core, rest)
            if end == snap_at:
                self.cache.put(ids[:end], state)
        opts = g.sampling
        opts.logprobs = g.logprobs
        batcher = self.batcher
        tokens = _generation.start(model, ids[-1:], opts, state._core, None, history=ids[:-1],
                                   evaluate=batcher.evaluate if batcher else None)
        generated: list[int] = []

        def recorded() -> Iterator[Any]:
            if batcher is not None:
                batcher.join()
            try:
                for t in tokens:
                    self.tokens_generated += 1
                    generated.append(int(t))
                    result.tokens.append(t)
                    yield t
            finally:
                if batcher is not None:
                    batcher.leave()
                tokens.close()

        pieces = _generation.pieces(recorded(), model.tokenizer, ids, g.stop)
        try:
            for piece in pieces:
                result.text += piece
                yield piece
        finally:
            pieces.close()
        # "length" when the token budget ran out; an end token, a stop string or a complete
        # constraint is a "stop".
        ends = set(model.tokenizer.end_ids)
        hit_end = bool(generated) and generated[-1] in ends
        ran_out = len(generated) >= opts.max_new_tokens and not hit_end
        result.finish_reason = "length" if ran_out else "stop"
        if state.n_tokens == len(ids) + len(generated):
            self.cache.put(np.concatenate([ids, np.asarray(generated, dtype=np.int32)]), state)


def _token_logprob(tok: Any, t: Any) -> dict[str, Any]:
    def entry(i: int, lp: float) -> dict[str, Any]:
        text = tok.decode([i], skip_special_tokens=False)
        return {"token": text, "logprob": lp, "bytes": list(text.encode("utf-8"))}

    return {**entry(t.id, t.logprob),
            "top_logprobs": [entry(i, lp) for i, lp in t.top_logprobs]}


def create_app(model: Model, options: ServerOptions | None = None):
    """The ASGI application serving `model` (run it with uvicorn, or `mambalite serve`)."""
    _require_server_packages()
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    options = options or ServerOptions()
    engine = Engine(model, options)
    tok = model.tokenizer
    n_vocab = model.config.vocab_size
    created = int(time.time())

    def error(e: RequestError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status)

    def authorize(request: Request) -> None:
        if options.api_key is None:
            return
        auth = request.headers.get("authorization", "")
        if not secrets.compare_digest(auth.encode(), f"Bearer {options.api_key}".encode()):
            raise RequestError("invalid or missing API key (Authorization: Bearer ...)",
                               status=401, kind="authentication_error", code="invalid_api_key")

    async def read_body(request: Request) -> dict[str, Any]:
        authorize(request)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > options.max_body_bytes:
            raise RequestError(f"the request body is {length} bytes; the limit is "
                               f"{options.max_body_bytes}", status=413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > options.max_body_bytes:
                raise RequestError(f"the request body is over the limit of "
                                   f"{options.max_body_bytes} bytes", status=413)
        return parse_json(body)

    def usage(r: _Result) -> dict[str, Any]:
        n = len(r.tokens)
        return {"prompt_tokens": r.prompt_tokens, "completion_tokens": n,
                "total_tokens": r.prompt_tokens + n,
                "prompt_tokens_details": {"cached_tokens": r.cached_tokens}}

    async def complete(request: Request, chat: bool):
        try:
            d = await read_body(request)
            g = (chat_request(d, options.max_tokens, options.max_tokens, n_vocab) if chat
                 else completion_request(d, options.max_tokens, n_vocab))
            if g.sampling.json_schema is not None:
                try:
                    from .constrain import grammar_text

                    grammar_text(json_schema=g.sampling.json_schema)
                except ValueError as e:
                    raise RequestError(str(e), "response_format") from None
            ids = engine.prompt_ids(g)
        except RequestError as e:
            return error(e)
        rid = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        now = int(time.time())
        name = options.model_name
        echo = g.prompt if (not chat and g.echo and isinstance(g.prompt, str)) else ""
        result = _Result()
        pieces = engine.run(g, ids, result)

        if not g.stream:
            def collect() -> None:
                for _ in pieces:
                    pass

            try:
                await anyio.to_thread.run_sync(collect)
            except (ValueError, ImportError) as e:
                return error(RequestError(str(e)))
            return JSONResponse(_final(chat, rid, now, name, result, echo, g, tok, usage))

        def chunk(delta: str | None, lps: list[Any], finish: str | None) -> dict[str, Any]:
            if chat:
                d = {} if delta is None else {"content": delta}
                lp = {"content": [_token_logprob(tok, t) for t in lps]} if g.logprobs is not \
                    None and lps else None
                choice = {"index": 0, "delta": d, "logprobs": lp, "finish_reason": finish}
                obj = "chat.completion.chunk"
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None,
                          "finish_reason": finish}
                obj = "text_completion"
            return {"id": rid, "object": obj, "created": now, "model": name,
                    "choices": [choice]}

        async def events():
            import json as _json

            def sse(obj: Any) -> bytes:
                return b"data: " + _json.dumps(obj, ensure_ascii=False).encode() + b"\n\n"

            done = object()
            try:
                if chat:
                    first = chunk("", [], None)
                    first["choices"][0]["delta"] = {"role": "assistant", "content": ""}
                    yield sse(first)
                elif echo:
                    yield sse(chunk(echo, [], None))
                sent = 0
                while True:
                    try:
                        piece = await anyio.to_thread.run_sync(next, pieces, done)
                    except (ValueError, RuntimeError) as e:
                        yield sse(RequestError(str(e), kind="server_error").body())
                        break
                    if piece is done:
                        break
                    lps = result.tokens[sent:]
                    sent = len(result.tokens)
                    yield sse(chunk(piece, lps, None))
                yield sse(chunk(None, result.tokens[sent:], result.finish_reason))
                if g.include_usage:
                    yield sse({"id": rid, "object": "chat.completion.chunk" if chat else
                               "text_completion", "created": now, "model": name, "choices": [],
                               "usage": usage(result)})
                yield b"data: [DONE]\n\n"
            finally:
                # A client that went away: stop its generation and free its state now.
                await anyio.to_thread.run_sync(pieces.close)

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    async def chat_completions(request: Request):
        return await complete(request, True)

    async def completions(request: Request):
        return await complete(request, False)

    async def models(request: Request):
        try:
            authorize(request)
        except RequestError as e:
            return error(e)
        return JSONResponse({"object": "list", "data": [
            {"id": options.model_name, "object": "model", "created": created,
             "owned_by": "mambalite"}]})

    async def health(request: Request):
        return JSONResponse({"status": "ok", "active_requests": engine.active,
                             "tokens_generated": engine.tokens_generated,
                             "state_cache": {"entries": len(engine.cache),
                                             "bytes": engine.cache.nbytes,
                                             "hits": engine.cache.hits,
                                             "misses": engine.cache.misses},
                             "batching": _batching(engine.batcher)})

    async def not_found(request: Request, exc: Exception):
        return error(RequestError(f"no route {request.method} {request.url.path}; this server "
                                  "has /v1/chat/completions, /v1/completions, /v1/models and "
                                  "/health", status=404, code="not_found"))

    async def bad_method(request: Request, exc: Exception):
        return error(RequestError(f"{request.method} is not allowed on {request.url.path}",
                                  status=405))

    app = Starlette(routes=[
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ], exception_handlers={404: not_found, 405: bad_method})
    app.state.engine = engine
    return app


def _batching(b: StepBatcher | None) -> dict[str, Any]:
    if b is None:
        return {"max_batch": 1}
    mean = b.sequences / b.batches if b.batches else 0.0
    return {"max_batch": b.max_batch, "batches": b.batches, "sequences": b.sequences,
            "mean_batch": round(mean, 2)}


def _final(chat: bool, rid: str, now: int, name: str, r: _Result, echo: str, g: Generation,
           tok: Any, usage: Any) -> dict[str, Any]:
    if chat:
        lp = {"content": [_token_logprob(tok, t) for t in r.tokens]} \
            if g.logprobs is not None else None
        choice = {"index": 0, "message": {"role": "assistant", "content": r.text},
                  "logprobs": lp, "finish_reason": r.finish_reason}
        obj = "chat.completion"
    else:
        lp = None
        if g.logprobs is not None:
            texts = [tok.decode([t.id], skip_special_tokens=False) for t in r.tokens]
            offsets, pos = [], len(echo)
            for t in texts:
                offsets.append(pos)
                pos += len(t)
            lp = {"tokens": texts, "token_logprobs": [t.logprob for t in r.tokens],
                  "top_logprobs": [{tok.decode([i], skip_special_tokens=False): v
                                    for i, v in t.top_logprobs} for t in r.tokens],
                  "text_offset": offsets}
        choice = {"index": 0, "text": echo + r.text, "logprobs": lp,
                  "finish_reason": r.finish_reason}
        obj = "text_completion"
    return {"id": rid, "object": obj, "created": now, "model": name, "choices": [choice],
            "usage": usage(r)}


def serve(model: Model, *, host: str = "127.0.0.1", port: int = 8080,
          options: ServerOptions | None = None, log_level: str = "info") -> None:
    """Serves `model` until interrupted (binds 127.0.0.1 unless told otherwise)."""
    _require_server_packages()
    import uvicorn

    uvicorn.run(create_app(model, options), host=host, port=port, log_level=log_level)
