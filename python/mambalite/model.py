"""The Python API: load a GGUF model, evaluate tokens, carry state, generate text."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from . import _core, _generation
from ._generation import LogitsProcessor, Sampling, Token
from ._values import Config, Layer, Perplexity, State, _as_ids
from .tokenizer import Tokenizer

if TYPE_CHECKING:
    from .chat import ChatSession

Prompt = Union[str, Sequence[int], np.ndarray]

DEFAULT_MODEL = "mambalite-pystdlib-q8_0.gguf"
_PPL_BLOCK = 256  # tokens per evaluation call in perplexity (bounds the logits buffer)


def default_model_path() -> Path:
    """The model shipped inside the package (a small Mamba-2 trained on Python's stdlib)."""
    p = Path(__file__).resolve().parent / "models" / DEFAULT_MODEL
    if not p.is_file():
        raise FileNotFoundError(
            f"the default model {p} is missing from this installation; reinstall mambalite "
            "(pip install .), or pass the path of a GGUF model (-m FILE)")
    return p


class Model:
    """A Mamba model loaded from a GGUF file (memory-mapped; weights are used in place)."""

    def __init__(self, core: _core.Model, path: Path) -> None:
        self._core = core
        self.path = path
        self._metadata: dict[str, Any] | None = None
        self._tokenizer: Tokenizer | None = None
        self.config = Config.from_core(core.config())
        self.layers = [Layer(*row) for row in core.layers()]

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, threads: int | None = None,
             device: str = "cpu", n_ctx: int | None = None, kv_type: str = "f16",
             mmap: bool | None = None) -> Model:
        """Loads a GGUF model; without `path`, the default model shipped with mambalite.

        `path` may name a Hugging Face repository, "hf://owner/repo" or
        "hf://owner/repo:file.gguf": a GGUF file of it is downloaded (or taken from the cache),
        or a checkpoint repository is exported once into mambalite's cache (see `mambalite.hub`).

        `threads`: compute threads (default: all cores). `device`: "cpu", or "cuda" / "cuda:N"
        to upload the weights to that NVIDIA GPU and evaluate there (RuntimeError when this
        build has no CUDA backend or the machine has no such GPU; pure Mamba models only).
        States move freely between CPU and GPU models of the same shape. For models with
        attention layers, `n_ctx` bounds the positions of each state's KV cache (allocated once
        per state; default: the model's context length, at most 8192) and `kv_type` is its
        storage ("f16", "f32" or "q8_0").

        `mmap`: True maps the file (its pages shared with other processes, read as used); False
        reads it into private memory, on transparent huge pages where Linux offers them, which
        makes decode 5-30% faster (fewer TLB misses on the weight stream); None (default) reads
        when huge pages are available and the file takes at most half the free memory, and maps
        otherwise (and for the GPU, which copies the weights anyway). `Model.mmap` says which.
        """
        if path is not None and isinstance(path, str) and path.startswith("hf://"):
            from .hub import resolve

            path = resolve(path)
        p = default_model_path() if path is None else Path(path)
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 256:
                raise ValueError(f"threads must be an integer from 1 to 256, got {threads!r}")
        if n_ctx is not None and (isinstance(n_ctx, bool) or not isinstance(n_ctx, int)
                                  or n_ctx <= 0):
            raise ValueError(f"n_ctx must be a positive number of positions, got {n_ctx!r}")
        if not isinstance(device, str):
            raise TypeError(f"device must be a str (\"cpu\", \"cuda\" or \"cuda:N\"), got "
                            f"{type(device).__name__}")
        if not isinstance(kv_type, str):
            raise TypeError(f"kv_type must be a str (\"f16\", \"f32\" or \"q8_0\"), got "
                            f"{type(kv_type).__name__}")
        if mmap is not None and not isinstance(mmap, bool):
            raise TypeError(f"mmap must be True, False or None, got {mmap!r}")
        if not p.exists():
            raise FileNotFoundError(f"model file {p} does not exist")
        if p.is_dir():
            raise ValueError(f"{p} is a directory; to use a checkpoint folder, convert it first: "
                             f"mambalite export {p} -o model.gguf")
        return cls(_core.Model(str(p), threads or 0, device, n_ctx or 0, kv_type,
                               -1 if mmap is None else int(mmap)), p)

    # ----------------------------------------------------------------------------- inspection
    @property
    def metadata(self) -> dict[str, Any]:
        """All GGUF metadata (key -> value)."""
        if self._metadata is None:
            self._metadata = self._core.metadata()
        return self._metadata

    @property
    def tensors(self) -> list[dict[str, Any]]:
        """The GGUF tensor table: name, type, shape (ggml order), offset, nbytes."""
        return self._core.tensors()

    @property
    def n_ctx(self) -> int:
        """Positions of each state's KV cache (0 for models without attention layers)."""
        return self._core.n_ctx

    @property
    def mmap(self) -> bool:
        """Whether the weights are mapped from the file (False: read into private memory)."""
        return self._core.mmap

    @property
    def threads(self) -> int:
        """Number of compute threads."""
        return self._core.n_threads

    @property
    def isa(self) -> str:
        """The instruction set of the kernels in use ("avx512", "avx2", "neon" or "scalar")."""
        return self._core.isa

    @property
    def device(self) -> str:
        """Where the model runs: "cpu", or the GPU, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"."""
        return self._core.device

    @property
    def tokenizer(self) -> Tokenizer:
        """The tokenizer embedded in the file (ValueError when it has none)."""
        if self._tokenizer is None:
            self._tokenizer = Tokenizer(self.metadata)
        return self._tokenizer

    def __repr__(self) -> str:
        c = self.config
        where = f"threads {self.threads}" if self.device == "cpu" else self.device
        return (f"Model({str(self.path)!r}, {c.architecture}, {c.n_layer} layers, "
                f"d_model {c.d_model}, vocab {c.vocab_size}, {where})")

    @property
    def chat_template(self) -> str | None:
        """The file's chat template (`tokenizer.chat_template`), or None when it has none."""
        t = self.metadata.get("tokenizer.chat_template")
        return t if isinstance(t, str) and t else None

    def apply_chat_template(self, messages: Sequence[dict[str, Any]], *,
                            add_generation_prompt: bool = True, chat_template: str | None = None,
                            tools: Sequence[dict[str, Any]] | None = None, tokenize: bool = False,
                            **variables: Any) -> str | list[int]:
        """The prompt text of `messages` under the model's chat template (or `chat_template`),
        rendered as transformers' `apply_chat_template` renders it, with the file's bos_token
        and eos_token. `tokenize=True` gives its token ids instead, special tokens written in
        the text read as their ids and no BOS added (the template writes it), as transformers
        does."""
        from .chat_template import render_chat_template

        template = chat_template or self.chat_template
        if template is None:
            raise ValueError(f"{self.path.name} has no chat template (tokenizer.chat_template); "
                             "pass one as chat_template=")
        tok = self.tokenizer
        special = {"bos_token": tok.token_text(tok.bos_id) if tok.bos_id is not None else "",
                   "eos_token": tok.token_text(tok.eos_id) if tok.eos_id is not None else ""}
        text = render_chat_template(template, messages, add_generation_prompt=add_generation_prompt,
                                    tools=tools, **{**special, **variables})
        if not tokenize:
            return text
        return tok.encode(text, add_bos=False, special=True)

    def chat(self, messages: Sequence[dict[str, Any]], *, stream: bool = False,
             chat_template: str | None = None, tools: Sequence[dict[str, Any]] | None = None,
             **sampling: Any) -> str | Iterator[str]:
        """The assistant's answer to `messages` (OpenAI-style dicts with "role" and "content"),
        generated from the rendered conversation with `generate`'s sampling parameters
        (`max_new_tokens`, `temperature`, `stop`, `seed`, ...). For a conversation that goes on,
        `chat_session` keeps the state so that each turn costs only its new tokens."""
        ids = self.apply_chat_template(messages, chat_template=chat_template, tools=tools,
                                       tokenize=True)
        return self.generate(ids, stream=stream, **sampling)

    def chat_session(self, *, system: str | None = None,
                     messages: Sequence[dict[str, Any]] | None = None,
                     chat_template: str | None = None, **sampling: Any) -> ChatSession:
        """A conversation that holds its State: each `send` prefills only the tokens that the
        template adds for the new message (see `ChatSession`). `sampling`: defaults for every
        turn's generation (`temperature`, `max_new_tokens`, ...)."""
        from .chat import ChatSession

        return ChatSession(self, system=system, messages=messages, chat_template=chat_template,
                           **sampling)

    # ----------------------------------------------------------------------------- evaluation
    def new_state(self) -> State:
        """A fresh (empty) state for this model."""
        return State(self._core.new_state(), self)

    def state_from_bytes(self, data: bytes) -> State:
        """Restores a state saved with `State.to_bytes()` (ValueError if it is not this model's)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"state_from_bytes() takes bytes, got {type(data).__name__}")
        return State(self._core.state_from_bytes(bytes(data)), self)

    def _state(self, state: Any) -> _core.State:
        if not isinstance(state, State):
            raise TypeError(f"expected a State from new_state(), got {type(state).__name__}")
        return state._core

    def forward(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits at every position from a fresh state: float32 array (len(ids), n_vocab)."""
        return self._core.forward(_as_ids(ids, self.config.vocab_size))

    def forward_state(self, state: State, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Logits at every position (len(ids), n_vocab), continuing `state` (which advances)."""
        return self._core.forward_state(self._state(state), _as_ids(ids, self.config.vocab_size))

    def perplexity(self, text: str | Sequence[int] | np.ndarray, *, window: int | None = None,
                   progress: bool | None = None) -> Perplexity:
        """Token-level cross-entropy and perplexity of `text` (a str, or token ids).

        Text is tokenized as for generation (BOS first when the model uses one); every token
        after the first is predicted from the ones before it. With `window=None` (default) the
        whole text runs through one recurrent state, in blocks: full context, constant memory,
        any length. With `window=W` the ids are cut into windows of W tokens, each scored from
        a fresh state (BOS prepended when the model has one), as llama.cpp's `perplexity -c W`
        scores fixed contexts. `progress`: a progress bar on stderr (default: for inputs over
        4096 tokens when stderr is a terminal).
        """
        n_bytes = 0
        if isinstance(text, str):
            n_bytes = len(text.encode("utf-8"))
            ids = self._prompt_ids(text)
        else:
            ids = _as_ids(text, self.config.vocab_size, "text")
        if window is not None and (isinstance(window, bool) or not isinstance(window, int) or
                                   window < 2):
            raise ValueError(f"window must be an integer >= 2 (tokens) or None, got {window!r}")
        bos = self._tokenizer_or_none()
        bos_id = bos.bos_id if bos is not None and bos.add_bos else None
        # (context, targets) pairs: context[i] predicts targets[i]
        if window is None:
            pieces = [(ids[:-1], ids[1:])]
        else:
            pieces = []
            for s in range(0, len(ids), window):
                chunk = ids[s:s + window]
                if s > 0 and bos_id is not None:
                    chunk = np.concatenate([np.array([bos_id], dtype=np.int32), chunk])
                elif s > 0:
                    chunk = ids[s - 1:s + window]  # no BOS: the previous token starts it
                pieces.append((chunk[:-1], chunk[1:]))
        total = sum(len(t) for _, t in pieces)
        if total == 0:
            raise ValueError("the text is a single token: perplexity needs at least two")
        if progress is None:
            progress = total > 4096 and sys.stderr is not None and sys.stderr.isatty()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="tok", desc="perplexity", leave=False)
        nll = 0.0
        try:
            for context, targets in pieces:
                state = self.new_state()
                for b in range(0, len(targets), _PPL_BLOCK):
                    logits = self.forward_state(state, context[b:b + _PPL_BLOCK])
                    t = targets[b:b + _PPL_BLOCK]
                    x = logits.astype(np.float64)
                    m = x.max(axis=1)
                    lse = m + np.log(np.exp(x - m[:, None]).sum(axis=1))
                    nll += float((lse - x[np.arange(len(t)), t]).sum())
                    if bar is not None:
                        bar.update(len(t))
        finally:
            if bar is not None:
                bar.close()
        ce = nll / total
        return Perplexity(perplexity=float(np.exp(ce)), cross_entropy=ce, n_tokens=total,
                          n_bytes=n_bytes, window=window)

    def prefill(self, state: State, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Feeds ids into `state` (advancing it); returns the logits after the last (n_vocab,)."""
        return self._core.prefill(self._state(state), _as_ids(ids, self.config.vocab_size))

    def step(self, state: State, id: int) -> np.ndarray:
        """Feeds one token into `state`; returns the next logits (n_vocab,)."""
        return self.prefill(state, [id])

    def prefill_batch(self, states: Sequence[State],
                      ids: Sequence[Sequence[int] | np.ndarray]) -> np.ndarray:
        """Feeds ids[i] into states[i] for every i in one batched evaluation (a ragged batch:
        the lists may differ in length and the states in position); returns the logits after
        each list's last id, (len(states), n_vocab).

        The matrix products run over the rows of all sequences at once, so a batch costs about
        one pass over the weights where separate calls cost one each; the recurrences and
        attention run per sequence, and nothing is padded. The results are those of separate
        `prefill` calls (f32: within 1e-6 of max |logit|). Each sequence needs its own State.
        """
        if isinstance(states, State) or not isinstance(states, Sequence):
            raise TypeError("prefill_batch takes a list of States and a list of id lists")
        if isinstance(ids, np.ndarray) and ids.ndim == 1:
            raise TypeError("prefill_batch takes one list of ids per state; for one token per "
                            "state use step_batch")
        cores = [self._state(s) for s in states]
        lists = [_as_ids(x, self.config.vocab_size, f"ids[{i}]") for i, x in enumerate(ids)]
        return self._core.prefill_batch(cores, lists)

    def step_batch(self, states: Sequence[State], ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Feeds one token into each state (ids[i] into states[i]) in one batched step;
        returns the next logits, (len(states), n_vocab). See `prefill_batch`."""
        flat = np.asarray(ids)
        if flat.ndim != 1:
            raise ValueError(f"step_batch takes one token id per state, got an array of shape "
                             f"{flat.shape}")
        return self.prefill_batch(states, [[int(i)] for i in flat] if flat.size else [])

    # ----------------------------------------------------------------------------- generation
    def _prompt_ids(self, prompt: Prompt) -> np.ndarray:
        if isinstance(prompt, str):
            if prompt == "":
                raise ValueError("the prompt is empty: give some text or token ids")
            return _as_ids(self.tokenizer.encode(prompt), self.config.vocab_size, "prompt")
        return _as_ids(prompt, self.config.vocab_size, "prompt")

    def generate_tokens(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        logit_bias: Mapping[int, float] | None = None,
        seed: int | None = None,
        state: State | None = None,
        stop_ids: Sequence[int] | None = None,
        token_healing: bool = False,
        logprobs: int | None = None,
        logits_processor: LogitsProcessor | None = None,
        json_schema: dict[str, Any] | str | None = None,
        grammar: str | None = None,
        regex: str | None = None,
    ) -> Iterator[int] | Iterator[Token]:
        """Yields generated token ids (the token-level core of `generate`; the options are
        `generate`'s).

        Stops after `max_new_tokens`, or after yielding the end-of-sequence id (or any of
        `stop_ids`). Every yielded token is fed into the state, so a `state` passed in ends up
        holding the prompt and all generated tokens (also when the iteration stops early).
        With `logprobs=k` (0 to 20) it yields `Token`s instead: the id, its log-probability
        and the k most likely alternatives.
        """
        opts = Sampling(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                        presence_penalty, frequency_penalty, logit_bias, seed, logprobs,
                        logits_processor, json_schema, grammar, regex)
        return self._start(prompt, opts, state, stop_ids, token_healing)[0]

    def _start(self, prompt: Prompt, opts: Sampling, state: State | None,
               stop_ids: Sequence[int] | None,
               token_healing: bool) -> tuple[Iterator[Any], np.ndarray, bool]:
        """Validates and starts; returns (token iterator, prompt ids, healed?)."""
        opts.check()
        ids = self._prompt_ids(prompt)
        healing = None
        if token_healing and isinstance(prompt, str) and opts.max_new_tokens > 0:
            healing = _generation.healing_candidates(self, ids)
        st = self.new_state() if state is None else state
        core_state = self._state(st)
        self._core.check_state(core_state)
        fed = ids[:-1] if healing is not None else ids
        tokens = _generation.start(self, fed, opts, core_state, stop_ids, healing=healing)
        return tokens, ids, healing is not None

    def _tokenizer_or_none(self) -> Tokenizer | None:
        try:
            return self.tokenizer
        except ValueError:
            return None

    def generate(
        self,
        prompt: Prompt,
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        logit_bias: Mapping[int, float] | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        state: State | None = None,
        stream: bool = False,
        token_healing: bool = False,
        logits_processor: LogitsProcessor | None = None,
        json_schema: dict[str, Any] | str | None = None,
        grammar: str | None = None,
        regex: str | None = None,
    ) -> str | Iterator[str]:
        """Generates a continuation of `prompt` (text, or a list of token ids).

        Returns the generated text without the prompt, or, with `stream=True`, an iterator of
        text pieces as they are produced (split on UTF-8 character boundaries). Generation stops
        at the end-of-sequence token, at the first `stop` string (not included in the output), or
        after `max_new_tokens`. `temperature=0` is greedy; `top_k=0`, `top_p=1`, `min_p=0` and
        `repetition_penalty=1` disable those filters. `seed` makes sampling reproducible. With
        `state`, generation continues that state and leaves it advanced past every generated
        token (multi-turn use).

        `temperature=0` gives exactly transformers' greedy `generate` on the prompt's ids.

        `presence_penalty`, `frequency_penalty` (-2 to 2) and `logit_bias` ({id: bias}, -100 to
        100) are OpenAI's: the logit of a token generated c times drops by
        frequency_penalty * c + presence_penalty, and the bias is added to its logit.
        `logits_processor(ids, logits) -> logits` sees the ids so far and the next logits (a
        numpy array it may change in place) before each pick. `json_schema`, `grammar` (Lark
        or llama.cpp GBNF) or `regex` constrain the output (with llguidance: pip install
        "mambalite[constrain]"); generation ends when the constraint is complete.

        `token_healing` (text prompts, opt-in): when tokens exist that extend the prompt's last
        token (a prompt ending in "):" while "):\n" is one token), that token is generated again
        under the constraint that it starts with the same text, so the model chooses where the
        token ends; the returned text never repeats the prompt. The state then holds the healed
        token instead of the prompt's last one (the same text).
        """
        tok = self.tokenizer
        stops = _generation.stop_list(stop)
        opts = Sampling(max_new_tokens, temperature, top_k, top_p, min_p, repetition_penalty,
                        presence_penalty, frequency_penalty, logit_bias, seed, None,
                        logits_processor, json_schema, grammar, regex)
        tokens, ids, is_healed = self._start(prompt, opts, state, None, token_healing)
        healed = ""
        if is_healed:
            tail = [int(i) for i in ids[-5:]]
            before = tok.decode(tail[:-1])
            healed = tok.decode(tail)[len(before):]  # the prompt text the first token repeats
        pieces = _generation.pieces(tokens, tok, ids[:-1] if is_healed else ids, stops, healed)
        return pieces if stream else "".join(pieces)

    def generate_batch(
        self,
        prompts: Sequence[Prompt],
        *,
        max_new_tokens: int = 128,
        temperature: float = 0.8,
        top_k: int = 40,
        top_p: float = 0.95,
        min_p: float = 0.0,
        repetition_penalty: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
        logit_bias: Mapping[int, float] | None = None,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        json_schema: dict[str, Any] | str | None = None,
        grammar: str | None = None,
        regex: str | None = None,
        options: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
    ) -> list[str] | Iterator[tuple[int, str]]:
        """Generates a continuation of every prompt together: one batched evaluation per step
        (`prefill_batch`) steps all unfinished sequences in one pass over the weights, each with
        its own State, so N prompts cost much less than N calls of `generate`.

        The keyword options are `generate`'s and apply to every prompt; `options` (one dict per
        prompt) overrides any of them for one prompt, e.g. ``options=[{"seed": 1}, {"seed": 2,
        "temperature": 0}]``. Returns the texts in prompt order, or with `stream=True` an
        iterator of ``(prompt index, text piece)`` pairs as they are produced. Each text equals
        `generate` on its prompt with the same options (greedy, or sampled with the same seed)
        up to the last bits of the logits (f32 within 1e-5 of max |logit|).
        """
        from . import _batch

        shared = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                      top_p=top_p, min_p=min_p, repetition_penalty=repetition_penalty,
                      presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
                      logit_bias=logit_bias, seed=seed, stop=stop, json_schema=json_schema,
                      grammar=grammar, regex=regex)
        pieces = _batch.start(self, prompts, shared, options)
        if stream:
            return pieces
        texts = [""] * len(prompts)
        for i, piece in pieces:
            texts[i] += piece
        return texts


def load(path: str | os.PathLike | None = None, *, threads: int | None = None,
         device: str = "cpu", n_ctx: int | None = None, kv_type: str = "f16",
         mmap: bool | None = None) -> Model:
    """Loads a GGUF model file (or "hf://owner/repo[:file.gguf]" from the Hugging Face Hub);
    without `path`, the default model shipped with mambalite.

    `threads`: compute threads (default: all cores). `device`: "cpu" (default), or "cuda" /
    "cuda:N" to run on an NVIDIA GPU. `n_ctx`, `kv_type`: the KV cache of models with
    attention layers; `mmap`: the weights mapped or read into memory (see `Model.load`).
    """
    return Model.load(path, threads=threads, device=device, n_ctx=n_ctx, kv_type=kv_type,
                      mmap=mmap)


def cuda_available() -> bool:
    """True when this build has the CUDA backend and the machine has a usable NVIDIA GPU."""
    return bool(_core.cuda_built()) and _core.cuda_device_count() > 0
