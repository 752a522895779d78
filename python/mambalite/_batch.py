"""`Model.generate_batch`: many prompts generated together, one batched evaluation per step
(`Model.prefill_batch`), each with its own State, sampler, seed and stop conditions. A sequence
leaves the batch when it ends; the others go on without it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _generation
from ._generation import Sampling
from ._streaming import IncrementalDecoder, StopStrings

if TYPE_CHECKING:
    from .model import Model, Prompt

_OPTION_NAMES = {f.name for f in fields(Sampling)} - {"logprobs", "logits_processor"} | {"stop"}


class _Sequence:
    """One prompt's generation: its state, sampler and the text pieces of its tokens."""

    def __init__(self, model: Model, index: int, prompt: Prompt, opts: Sampling,
                 stop: list[str]) -> None:
        self.index = index
        self.opts = opts
        self.ids = model._prompt_ids(prompt)
        self.state = model._state(model.new_state())
        self.sampler, self.end_ids, self.constraint, _ = _generation.make_sampler(
            model, opts, None)
        self.decoder = IncrementalDecoder(model.tokenizer, [int(i) for i in self.ids])
        self.stopper = StopStrings(stop)
        self.produced = 0
        for i in self.ids:
            self.sampler.accept(int(i))

    def pick(self, logits: np.ndarray) -> int:
        if self.constraint is not None:
            self.sampler.set_allowed(self.constraint.mask())
        token = int(self.sampler.sample(logits))
        self.sampler.accept(token, True)
        if self.constraint is not None:
            self.constraint.consume(token)
        self.produced += 1
        return token

    def push(self, token: int) -> tuple[str, bool]:
        """The text that `token` completes, and whether the generation has ended."""
        if token in self.end_ids:
            return self.finish(), True
        text = self.stopper.push(self.decoder.push(token))
        if self.stopper.stopped:
            return text, True
        done = self.produced >= self.opts.max_new_tokens or (
            self.constraint is not None and self.constraint.finished)
        return (text + self.finish(), True) if done else (text, False)

    def finish(self) -> str:
        if self.stopper.stopped:
            return ""
        text = self.stopper.push(self.decoder.flush())
        return text if self.stopper.stopped else text + self.stopper.flush()


def _per_prompt(n: int, options: Sequence[Mapping[str, Any]] | None,
                shared: dict[str, Any]) -> list[dict[str, Any]]:
    if options is None:
        return [dict(shared) for _ in range(n)]
    if isinstance(options, Mapping) or len(options) != n:
        raise ValueError(f"options must be a list of {n} dicts, one per prompt, got "
                         f"{type(options).__name__}"
                         + ("" if isinstance(options, Mapping) else f" of {len(options)}"))
    out = []
    for i, o in enumerate(options):
        if not isinstance(o, Mapping):
            raise TypeError(f"options[{i}] must be a dict of generate options, got "
                            f"{type(o).__name__}")
        unknown = sorted(set(o) - _OPTION_NAMES)
        if unknown:
            raise ValueError(f"options[{i}] has unknown option(s) {', '.join(unknown)}; "
                             f"generate_batch takes {', '.join(sorted(_OPTION_NAMES))}")
        out.append({**shared, **o})
    return out


def start(model: Model, prompts: Sequence[Prompt], shared: dict[str, Any],
          options: Sequence[Mapping[str, Any]] | None) -> Iterator[tuple[int, str]]:
    """Validates every prompt and option first, then returns the (index, piece) iterator."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise TypeError("generate_batch takes a list of prompts (texts or token-id lists); for "
                        "one prompt use generate")
    if len(prompts) == 0:
        raise ValueError("generate_batch got no prompts: give at least one")
    seqs = []
    for i, o in enumerate(_per_prompt(len(prompts), options, shared)):
        stop = _generation.stop_list(o.pop("stop", None))
        opts = replace(Sampling(), **o)
        seqs.append(_Sequence(model, i, prompts[i], opts, stop))
    return _run(model, seqs)


def _run(model: Model, seqs: list[_Sequence]) -> Iterator[tuple[int, str]]:
    active = [s for s in seqs if s.opts.max_new_tokens > 0]
    feeds = [s.ids for s in active]
    while active:
        logits = model._core.prefill_batch([s.state for s in active], feeds)
        still, feeds = [], []
        for s, row in zip(active, logits):
            token = s.pick(row)
            text, done = s.push(token)
            if text:
                yield s.index, text
            if not done:
                still.append(s)
                feeds.append(np.array([token], dtype=np.int32))
        active = still
