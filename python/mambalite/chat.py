"""Incremental chat: a conversation that holds its recurrent state, so that a turn costs only the
tokens its new messages add, whatever the length of the history.

A KV-cache engine can reuse a prefix by truncating its cache; a recurrent state cannot be rolled
back. So the session keeps the ids its state has consumed and, for each new turn, renders the
whole conversation, tokenizes it and compares: when the state's ids are a prefix, only the rest
is prefilled. When the template renders earlier turns differently now (templates that mark the
last message, drop old reasoning, or tokenization that differs from the generated ids), the
first differing position is found and the state is restored from the last snapshot before it,
so the state always equals a from-scratch prefill of the rendered conversation.
"""

from __future__ import annotations

import inspect
import json
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import _generation
from ._generation import Sampling
from ._values import State

if TYPE_CHECKING:
    from .model import Model

_MAGIC = b"MLCHAT01"
_SAMPLING = ("max_new_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
             "presence_penalty", "frequency_penalty", "logit_bias", "seed", "stop",
             "logits_processor", "json_schema", "grammar", "regex")


def sampling_defaults() -> dict[str, Any]:
    """`Model.generate`'s defaults for the sampling parameters a chat turn takes."""
    from .model import Model

    sig = inspect.signature(Model.generate)
    return {k: sig.parameters[k].default for k in _SAMPLING}


def check_sampling(sampling: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(sampling) - set(_SAMPLING))
    if unknown:
        raise TypeError(f"unknown sampling parameter(s) {', '.join(unknown)}; a chat turn takes "
                        f"{', '.join(_SAMPLING)}")
    return dict(sampling)


def turn_boundary(model: Model, messages: Sequence[dict[str, Any]], target: np.ndarray,
                  chat_template: str | None = None, tools: Any = None) -> int:
    """Where the last message starts in `target` (the rendered conversation's ids): the common
    prefix with the render of the earlier messages alone; 0 when there is none to find (one
    message, or a template that refuses a conversation ending there)."""
    if len(messages) < 2:
        return 0
    try:
        before = model.apply_chat_template(messages[:-1], add_generation_prompt=False,
                                           chat_template=chat_template, tools=tools,
                                           tokenize=True)
    except (ValueError, TypeError):
        return 0
    return _common_prefix(before, target)


def _common_prefix(a: Sequence[int], b: np.ndarray) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.nonzero(np.asarray(a[:n], dtype=np.int64) != b[:n])[0]
    return int(diff[0]) if len(diff) else n


class ChatSession:
    """A conversation with a model (`Model.chat_session`).

    `messages` is the conversation so far (OpenAI-style dicts); `state` holds exactly the
    tokens in `ids`. `send` appends a user message, prefills what the template adds and
    generates the assistant's answer, which is appended too. `last_prefill` is the number of
    tokens the last turn prefilled (its cost); `snapshots` bounds the states kept for
    re-prefilling after a template re-renders history (default 4: the turns that templates
    usually re-render are the last ones).
    """

    def __init__(self, model: Model, *, system: str | None = None,
                 messages: Sequence[dict[str, Any]] | None = None,
                 chat_template: str | None = None, snapshots: int = 4, **sampling: Any) -> None:
        if model.chat_template is None and chat_template is None:
            raise ValueError(f"{model.path.name} has no chat template (tokenizer.chat_template);"
                             " pass one as chat_template=")
        if isinstance(snapshots, bool) or not isinstance(snapshots, int) or snapshots < 1:
            raise ValueError(f"snapshots must be an integer >= 1, got {snapshots!r}")
        self.model = model
        self.chat_template = chat_template
        self.sampling = {**sampling_defaults(), **check_sampling(sampling)}
        self._max_snapshots = snapshots
        self.last_prefill = 0
        self.reset(system, messages)

    def reset(self, system: str | None = None,
              messages: Sequence[dict[str, Any]] | None = None) -> None:
        """Starts over: an empty state and the given system prompt and messages."""
        self.messages: list[dict[str, Any]] = []
        if system is not None:
            self.messages.append({"role": "system", "content": system})
        self.messages += [dict(m) for m in (messages or [])]
        self.state = self.model.new_state()
        self.ids: list[int] = []  # the ids `state` holds
        self._snapshots: list[tuple[int, State]] = []  # (len(ids) when taken, state copy)

    def copy(self) -> ChatSession:
        """An independent copy of the conversation and its state (to branch a conversation)."""
        other = ChatSession.__new__(ChatSession)
        other.model, other.chat_template = self.model, self.chat_template
        other.sampling = dict(self.sampling)
        other._max_snapshots, other.last_prefill = self._max_snapshots, self.last_prefill
        other.messages = [dict(m) for m in self.messages]
        other.state, other.ids = self.state.copy(), list(self.ids)
        other._snapshots = list(self._snapshots)  # restoring copies a snapshot: safe to share
        return other

    @property
    def system(self) -> str | None:
        """The system prompt (the first message, when its role is "system")."""
        if self.messages and self.messages[0].get("role") == "system":
            return self.messages[0].get("content")
        return None

    def set_system(self, system: str | None) -> None:
        """Replaces the system prompt; the next turn re-prefills from the start."""
        if self.system is not None:
            self.messages.pop(0)
        if system is not None:
            self.messages.insert(0, {"role": "system", "content": system})

    def prompt_ids(self) -> np.ndarray:
        """The ids of the rendered conversation with the assistant's generation prompt."""
        ids = self.model.apply_chat_template(self.messages, chat_template=self.chat_template,
                                             tokenize=True)
        return np.asarray(ids, dtype=np.int32)

    def send(self, content: str | None = None, *, role: str = "user", stream: bool = False,
             **sampling: Any) -> str | Iterator[str]:
        """Adds a message (unless `content` is None: then answers the conversation as it is)
        and returns the assistant's answer, or with `stream=True` an iterator of its pieces;
        the answer joins `messages` when it is complete (or when the stream is closed early,
        with the text produced so far). `sampling` overrides the session's defaults."""
        if content is not None:
            if not isinstance(content, str):
                raise TypeError(f"content must be a str, got {type(content).__name__}")
            self.messages.append({"role": role, "content": content})
        params = {**self.sampling, **check_sampling(sampling)}
        pieces = self._turn(params)
        return pieces if stream else "".join(pieces)

    def _turn(self, params: dict[str, Any]) -> Iterator[str]:
        target = self.prompt_ids()
        base = self._sync(target)
        model = self.model
        tok = model.tokenizer
        stops = _generation.stop_list(params.pop("stop"))
        opts = Sampling(**params)
        opts.check()
        # Snapshots where the new message starts and before the last prompt token (which is fed
        # with sampling): a later turn whose render or tokenization differs from here on
        # re-prefills from one of them, not from the start.
        b = turn_boundary(model, self.messages, target, self.chat_template)
        if base < b < len(target) - 1:
            self._advance(target[base:b])
            self._snapshot()
        self._advance(target[len(self.ids):-1])
        self._snapshot()
        tokens = _generation.start(model, target[-1:], opts, self.state._core, None,
                                   history=self.ids)
        self.ids.append(int(target[-1]))
        self.last_prefill = len(target) - base
        answer: list[str] = []

        def recorded() -> Iterator[int]:
            try:
                for t in tokens:
                    self.ids.append(int(t))
                    yield t
            finally:
                tokens.close()

        def pieces() -> Iterator[str]:
            try:
                for piece in _generation.pieces(recorded(), tok, target, stops):
                    answer.append(piece)
                    yield piece
            finally:
                self.messages.append({"role": "assistant", "content": "".join(answer)})

        return pieces()

    def _sync(self, target: np.ndarray) -> int:
        """Brings the state to a prefix of `target` that leaves at least one token to feed;
        returns its length."""
        keep = min(_common_prefix(self.ids, target), len(target) - 1)
        if keep < len(self.ids):
            usable = [(n, s) for n, s in self._snapshots if n <= keep]
            self._snapshots = usable
            if usable:
                n, snap = usable[-1]
                self.state, self.ids = snap.copy(), self.ids[:n]
            else:
                self.state, self.ids = self.model.new_state(), []
        return len(self.ids)

    def _advance(self, ids: np.ndarray) -> None:
        if len(ids):
            self.model._core.advance(self.state._core, np.ascontiguousarray(ids, np.int32))
            self.ids += [int(i) for i in ids]

    def _snapshot(self) -> None:
        if self._snapshots and self._snapshots[-1][0] == len(self.ids):
            return
        self._snapshots.append((len(self.ids), self.state.copy()))
        del self._snapshots[:-self._max_snapshots]

    # ----------------------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Writes the conversation, the state and the snapshot before the last answer to `path`
        (restore with `ChatSession.load`): a loaded session's next turn costs what it would
        have cost in this one."""
        state = self.state.to_bytes()
        snap = self._snapshots[-1] if self._snapshots else None
        snap_bytes = snap[1].to_bytes() if snap is not None else b""
        header = json.dumps({"messages": self.messages, "ids": self.ids,
                             "chat_template": self.chat_template, "model": self.model.path.name,
                             "state_nbytes": len(state),
                             "snapshot_tokens": snap[0] if snap is not None else None},
                            ensure_ascii=False).encode("utf-8")
        with open(path, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(header)) + header + state + snap_bytes)

    @classmethod
    def load(cls, model: Model, path: str | os.PathLike, **sampling: Any) -> ChatSession:
        """A session restored from a file written by `save`, for the same model (ValueError
        when the file is not a saved chat or its state is another model's)."""
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"saved chat {p} does not exist")
        data = p.read_bytes()
        if data[:8] != _MAGIC or len(data) < 16:
            raise ValueError(f"{p} is not a chat saved by mambalite (ChatSession.save)")
        (n,) = struct.unpack("<Q", data[8:16])
        try:
            header = json.loads(data[16:16 + n].decode("utf-8"))
            messages, ids = header["messages"], [int(i) for i in header["ids"]]
            n_state = int(header["state_nbytes"])
            snap_n = header.get("snapshot_tokens")
            if not isinstance(messages, list) or n_state <= 0:
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise ValueError(f"{p}: the saved chat's header is damaged") from None
        body = data[16 + n:]
        state = model.state_from_bytes(body[:n_state])
        if state.n_tokens != len(ids):
            raise ValueError(f"{p}: the state holds {state.n_tokens} tokens but the chat lists "
                             f"{len(ids)}; the file is damaged")
        session = cls(model, messages=messages, chat_template=header.get("chat_template"),
                      **sampling)
        session.state, session.ids = state, ids
        if snap_n is not None:
            snap = model.state_from_bytes(body[n_state:])
            if snap.n_tokens != snap_n:
                raise ValueError(f"{p}: the saved snapshot is damaged")
            session._snapshots = [(int(snap_n), snap)]
        return session
