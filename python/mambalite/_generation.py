"""The mechanics of generation behind `Model.generate`/`generate_tokens`: sampling options, the
token loop (the fused evaluate-and-sample calls of the engine, or a Python logits processor),
constrained output, log-probabilities, token healing, and text pieces with stop strings."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _core
from ._streaming import IncrementalDecoder, StopStrings
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from .constrain import Constraint
    from .model import Model

LogitsProcessor = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Token:
    """A generated token with its log-probability (`generate_tokens(..., logprobs=k)`).

    `logprob` and `top_logprobs` are the model's distribution at that step (log-softmax of the
    logits, before bias, penalties, constraints and temperature), as OpenAI reports them;
    `top_logprobs` holds the k most likely (id, logprob) pairs, most likely first."""

    id: int
    logprob: float
    top_logprobs: list[tuple[int, float]] = field(default_factory=list)

    def __int__(self) -> int:
        return self.id


@dataclass
class Sampling:
    """Sampling options of one generation, validated (the engine validates the numbers)."""

    max_new_tokens: int = 128
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] | None = None
    seed: int | None = None
    logprobs: int | None = None
    logits_processor: LogitsProcessor | None = None
    json_schema: dict[str, Any] | str | None = None
    grammar: str | None = None
    regex: str | None = None

    def check(self) -> None:
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"max_new_tokens must be an integer >= 0, got {n!r}")
        s = self.seed
        if s is not None and (isinstance(s, bool) or not isinstance(s, int) or
                              not 0 <= s < 2**64):
            raise ValueError(f"seed must be an integer from 0 to 2**64-1, got {s!r}")
        k = self.logprobs
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 20):
            raise ValueError(f"logprobs must be an integer from 0 to 20 (the number of top "
                             f"alternatives), got {k!r}")
        if self.logit_bias is not None and not isinstance(self.logit_bias, Mapping):
            raise TypeError("logit_bias must map token ids to biases, e.g. {42: -100}")
        if self.logits_processor is not None and not callable(self.logits_processor):
            raise TypeError("logits_processor must be callable(ids, logits) -> logits")
        if sum(x is not None for x in (self.json_schema, self.grammar, self.regex)) > 1:
            raise ValueError("give at most one of json_schema, grammar and regex")

    def bias_pairs(self) -> list[tuple[int, float]]:
        out = []
        for k, v in (self.logit_bias or {}).items():
            try:
                out.append((int(k), float(v)))
            except (TypeError, ValueError):
                raise ValueError(f"logit_bias must map token ids to numbers, got {k!r}: "
                                 f"{v!r}") from None
        return out


def make_sampler(model: Model, opts: Sampling, stop_ids: Sequence[int] | None,
                 healing: list[int] | None = None) -> tuple[Any, set[int], Any, Any]:
    """The engine's sampler for `opts` (validated), the ids that end the generation, its
    constraint (or None) and, for token healing, the sampler of the first token (or None)."""
    opts.check()
    seed = opts.seed if opts.seed is not None else int.from_bytes(os.urandom(8), "little")
    n_vocab = model.config.vocab_size
    tok = model._tokenizer_or_none()
    banned = tok.unsampleable_ids(n_vocab) if tok is not None else []
    stops = set(int(i) for i in (stop_ids or ()))
    if tok is not None:
        stops.update(tok.end_ids)
    args = (float(opts.temperature), int(opts.top_k), float(opts.top_p), float(opts.min_p),
            float(opts.repetition_penalty), seed, n_vocab)
    extra = dict(presence_penalty=float(opts.presence_penalty),
                 frequency_penalty=float(opts.frequency_penalty), logit_bias=opts.bias_pairs(),
                 n_logprobs=-1 if opts.logprobs is None else int(opts.logprobs))
    sampler = _core.Sampler(*args, banned, **extra)
    first = None
    if healing is not None:
        keep = np.zeros(n_vocab, dtype=bool)
        keep[healing] = True
        first = _core.Sampler(*args, np.nonzero(~keep)[0].tolist(), **extra)
    constraint = None
    if opts.json_schema is not None or opts.grammar is not None or opts.regex is not None:
        from .constrain import Constraint

        constraint = Constraint(model, json_schema=opts.json_schema, grammar=opts.grammar,
                                regex=opts.regex)
    return sampler, stops, constraint, first


Evaluate = Callable[[_core.State, np.ndarray], np.ndarray]


def start(model: Model, ids: np.ndarray, opts: Sampling, core_state: _core.State,
          stop_ids: Sequence[int] | None, history: Sequence[int] = (),
          healing: list[int] | None = None, evaluate: Evaluate | None = None) -> Iterator[Any]:
    """The token iterator of one generation from `ids` (fed into `core_state`). `history`: ids
    the state already holds (seen by the repetition penalty and a logits processor).
    `healing`: the ids the first token is limited to (token healing; ids then lacks the
    prompt's last token). `evaluate(state, ids) -> logits` replaces the engine's own call for
    each pick (the server's batcher); by default evaluation and sampling are one engine call."""
    sampler, stops, constraint, first = make_sampler(model, opts, stop_ids, healing)
    if opts.repetition_penalty != 1.0:  # only the repetition penalty reads what was seen
        for i in history:
            sampler.accept(int(i))
    return _loop(model, ids, opts, sampler, core_state, stops, first, constraint,
                 list(history) if opts.logits_processor is not None else None, evaluate)


def _loop(model: Model, ids: np.ndarray, opts: Sampling, sampler: Any, core_state: _core.State,
          stops: set[int], first: Any, constraint: Constraint | None,
          seq: list[int] | None, evaluate: Evaluate | None) -> Iterator[Any]:
    core = model._core
    if opts.max_new_tokens == 0:
        core.advance(core_state, ids)
        return
    for i in ids:
        sampler.accept(int(i))
        if first is not None:
            first.accept(int(i))
    processor = opts.logits_processor
    n_vocab = model.config.vocab_size

    def pick(feed: np.ndarray, s: Any) -> int:
        if constraint is not None:
            s.set_allowed(constraint.mask())
        if processor is None and evaluate is None:
            return core.prefill_and_sample(core_state, feed, s)
        logits = (evaluate or core.prefill)(core_state, feed)
        if processor is None:
            return s.sample(logits)
        seq.extend(int(i) for i in feed)
        out = processor(np.asarray(seq, dtype=np.int32), logits)
        out = logits if out is None else np.asarray(out, dtype=np.float32)
        if out.shape != (n_vocab,):
            raise ValueError(f"logits_processor must return logits of shape ({n_vocab},), got "
                             f"{out.shape}")
        return s.sample(out)

    s = first or sampler
    token = pick(ids, s)
    produced = 0
    try:
        while True:
            produced += 1
            sampler.accept(token, True)
            if constraint is not None:
                constraint.consume(token)
            if opts.logprobs is not None:
                lp, top = s.last_logprobs()
                yield Token(token, lp, [(int(i), v) for i, v in top])
            else:
                yield token
            if produced >= opts.max_new_tokens or token in stops or \
                    (constraint is not None and constraint.finished):
                break
            s = sampler
            token = pick(np.array([token], dtype=np.int32), s)
    finally:
        # The last yielded token has not been fed yet: feed it, so the state holds
        # everything that was generated.
        core.advance(core_state, np.array([token], dtype=np.int32))


def healing_candidates(model: Model, ids: np.ndarray) -> list[int] | None:
    """Ids whose text extends the prompt's last token, or None when healing does not apply.

    A prompt cut mid-token ("...):" where training text had "):\\n" as one token) puts the
    model in a state it rarely saw; dropping the last token and constraining the first
    sample to tokens that start with its text lets the model pick the natural boundary.
    """
    tok = model._tokenizer_or_none()
    if tok is None or len(ids) < 2:
        return None
    banned = set(tok.unsampleable_ids(model.config.vocab_size))
    texts = tok.token_texts()
    last = int(ids[-1])
    text = texts[last] if last < len(texts) else None
    if not text:
        return None
    allowed = [i for i, t in enumerate(texts[:model.config.vocab_size])
               if t is not None and t.startswith(text) and i not in banned]
    return allowed if len(allowed) > 1 else None


def pieces(tokens: Iterator[Any], tok: Tokenizer, prompt_ids: Sequence[int], stops: list[str],
           healed: str = "") -> Iterator[str]:
    """Text pieces of a token iterator (ids or `Token`s): UTF-8-safe, ended by an end id or a
    stop string (not included)."""
    decoder = IncrementalDecoder(tok, [int(i) for i in prompt_ids])
    stopper = StopStrings(stops)
    skip = healed  # prompt text repeated by a healed first token: not output again
    ends = set(tok.end_ids)
    try:
        for t in tokens:
            t = int(t)
            if t in ends:
                break
            piece = decoder.push(t)
            if skip:
                n = len(piece) if skip.startswith(piece) else len(skip)
                piece, skip = piece[n:], skip[n:]
            text = stopper.push(piece)
            if text:
                yield text
            if stopper.stopped:
                return
        text = stopper.push(decoder.flush())
        if text:
            yield text
        if not stopper.stopped:
            text = stopper.flush()
            if text:
                yield text
    finally:
        tokens.close()


def stop_list(stop: str | Sequence[str] | None) -> list[str]:
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    if not all(isinstance(s, str) for s in stops):
        raise TypeError("stop must be a string or a list of strings")
    return stops
