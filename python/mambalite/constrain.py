"""Constrained output: a JSON schema, a grammar (Lark, or llama.cpp's GBNF) or a regex, matched by
llguidance, which gives the set of allowed next tokens as a bitmask that the engine's sampler
reads directly (no per-token copy of the vocabulary).

Why llguidance: it computes a mask for a 128k-token vocabulary in well under a millisecond with
no precomputation per grammar, takes JSON schemas, Lark and regexes, translates GBNF, and builds
its token trie from a `tokenizers` JSON or a plain list of token bytes, so it needs neither torch
nor transformers (xgrammar's and outlines-core's Python paths lean on one of the two).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import Model
    from .tokenizer import Tokenizer


def _llguidance():
    try:
        import llguidance
    except ImportError:
        raise ImportError('constrained output needs llguidance: pip install "mambalite[constrain]"'
                          ) from None
    return llguidance


class _SpmVocabulary:
    """A SentencePiece vocabulary as llguidance's TokenizerWrapper reads one: each id's bytes
    (special ones marked with a 0xff prefix, as llguidance's llama.cpp adaptor does), and a
    tokenize function whose tokens spell exactly the given text, which llguidance requires: the
    model is loaded a second time without the dummy-prefix space SentencePiece adds in front."""

    def __init__(self, tok: Tokenizer, n_vocab: int) -> None:
        from sentencepiece import SentencePieceProcessor
        from sentencepiece import sentencepiece_model_pb2 as pb

        sp = tok._sp
        self.eos_token_id = tok.eos_id
        self.bos_token_id = tok.bos_id
        self.tokens: list[bytes] = []
        self.special_token_ids: list[int] = []
        for i in range(n_vocab):
            if i >= sp.get_piece_size():
                self.tokens.append(b"")
                continue
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):
                self.tokens.append(bytes([int(piece[3:5], 16)]))
            elif sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
                self.tokens.append(b"\xff" + piece.encode("utf-8"))
                self.special_token_ids.append(i)
            else:
                self.tokens.append(piece.replace("\u2581", " ").encode("utf-8"))
        proto = pb.ModelProto()
        proto.ParseFromString(sp.serialized_model_proto())
        proto.normalizer_spec.add_dummy_prefix = False
        proto.normalizer_spec.remove_extra_whitespaces = False
        self._exact = SentencePieceProcessor()
        self._exact.LoadFromSerializedProto(proto.SerializeToString())

    def __call__(self, s: str | bytes) -> list[int]:
        text = s.decode("utf-8", errors="replace") if isinstance(s, bytes) else s
        return self._exact.encode(text)


def _ll_tokenizer(model: Model) -> Any:
    """llguidance's view of the model's vocabulary (built once per model: about a second for
    large vocabularies)."""
    cached = getattr(model, "_ll_tokenizer", None)
    if cached is not None:
        return cached
    ll = _llguidance()
    tok = model.tokenizer
    n_vocab = model.config.vocab_size
    ends = tok.end_ids or None
    if tok._hf is not None:
        lt = ll.LLTokenizer(tok._hf.to_str(), n_vocab=n_vocab, eos_token=ends)
    else:
        from llguidance._tokenizer import TokenizerWrapper

        lt = ll.LLTokenizer(TokenizerWrapper(_SpmVocabulary(tok, n_vocab)), n_vocab=n_vocab,
                            eos_token=ends)
    model._ll_tokenizer = lt
    return lt


def grammar_text(json_schema: dict[str, Any] | str | None = None, grammar: str | None = None,
                 regex: str | None = None) -> str:
    """llguidance's grammar for one of the three forms (ValueError for a malformed one)."""
    ll = _llguidance()
    M = ll.LLMatcher
    if json_schema is not None:
        if isinstance(json_schema, str):
            try:
                json_schema = json.loads(json_schema)
            except ValueError as e:
                raise ValueError(f"json_schema is not valid JSON: {e}") from None
        if not isinstance(json_schema, dict):
            raise ValueError("json_schema must be a JSON object (a dict)")
        try:
            # One layout, json.dumps's: a flexible whitespace rule lets a weak model pad forever.
            # A schema's own "x-guidance" options still override it.
            return M.grammar_from_json_schema(json_schema, defaults={
                "whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "})
        except ValueError as e:
            raise ValueError(f"json_schema is not usable: {e}") from None
    if regex is not None:
        return M.grammar_from_regex(regex)
    if grammar is None:
        raise ValueError("no constraint given")
    if "::=" in grammar:  # llama.cpp's GBNF
        from llguidance.gbnf_to_lark import gbnf_to_lark

        try:
            grammar = gbnf_to_lark(grammar)
        except Exception as e:  # the translator raises plain exceptions on bad input
            raise ValueError(f"the GBNF grammar could not be read: {e}") from None
    return M.grammar_from_lark(grammar)


class Constraint:
    """The state of one constrained generation: the next allowed tokens, and the tokens taken."""

    def __init__(self, model: Model, *, json_schema: dict[str, Any] | str | None = None,
                 grammar: str | None = None, regex: str | None = None) -> None:
        ll = _llguidance()
        text = grammar_text(json_schema, grammar, regex)
        tokenizer = _ll_tokenizer(model)
        error = ll.LLMatcher.validate_grammar(text, tokenizer)
        if error and not error.startswith("WARNING"):
            raise ValueError(f"the constraint is not valid: {error}")
        self._matcher = ll.LLMatcher(tokenizer, text, log_level=0)
        self._mask = np.zeros((model.config.vocab_size + 31) // 32, dtype=np.int32)

    def mask(self) -> np.ndarray:
        """The allowed next ids as bits ((n_vocab + 31) // 32 words; bit i % 32 of word i // 32)."""
        m = self._mask
        self._matcher.unsafe_compute_mask_ptr(m.ctypes.data, m.nbytes)
        self._check()
        return m.view(np.uint32)

    def consume(self, token: int) -> None:
        self._matcher.consume_token(int(token))
        self._check()

    @property
    def finished(self) -> bool:
        """True when the constraint is complete and only an end token could follow."""
        return self._matcher.is_stopped()

    def _check(self) -> None:
        if self._matcher.is_error():
            raise RuntimeError(f"constrained generation failed: {self._matcher.get_error()}")
