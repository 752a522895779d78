"""Tokenizers built from a GGUF file's metadata.

In order of preference: the embedded `tokenizer.huggingface.json` (HF `tokenizers`), the
embedded SentencePiece model (`sentencepiece`), or, for files written by llama.cpp, a tokenizer
rebuilt from the `tokenizer.ggml.*` keys: byte-level BPE from tokens and merges (`gpt2`), or a
SentencePiece model from tokens, scores and types (`llama`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ._tokenizer_export import SPM_MODEL_KEY

# llama.cpp's token types (tokenizer.ggml.token_type)
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6


class Tokenizer:
    """Text <-> token ids for one model.

    Attributes:
        bos_id, eos_id, pad_id, unk_id: special ids, or None when the model has none.
        add_bos: whether `encode` prepends bos_id by default.
        vocab_size: number of ids the tokenizer knows (may be below the model's n_vocab).
        kind: "huggingface", "sentencepiece", "gpt2 (rebuilt)" or "llama (rebuilt)".
    """

    def __init__(self, metadata: dict[str, Any]) -> None:
        md = metadata
        _check_metadata(md)
        self._meta_tokens: list[str] = list(md.get("tokenizer.ggml.tokens") or [])
        types = md.get("tokenizer.ggml.token_type")
        self._types = np.asarray(types, dtype=np.int64) if types is not None else None
        model = md.get("tokenizer.ggml.model")
        self._hf = None
        self._sp = None
        self._texts: list[str | None] | None = None
        self._special_re: re.Pattern[str] | None = None
        self._banned: tuple[tuple[Any, ...], list[int]] | None = None  # unsampleable_ids cache
        if "tokenizer.huggingface.json" in md:
            from tokenizers import Tokenizer as HFTokenizer

            self._hf = _built("tokenizer.huggingface.json", HFTokenizer.from_str,
                              md["tokenizer.huggingface.json"])
            self.kind = "huggingface"
        elif SPM_MODEL_KEY in md:
            self._sp = _built(SPM_MODEL_KEY, _load_spm,
                              bytes(np.asarray(md[SPM_MODEL_KEY], dtype=np.uint8)))
            self.kind = "sentencepiece"
        elif model == "gpt2":
            self._hf = _built("tokenizer.ggml.* (gpt2)", _rebuild_bpe, md)
            self.kind = "gpt2 (rebuilt)"
        elif model == "llama":
            self._sp = _built("tokenizer.ggml.* (llama)", _rebuild_spm, md)
            self.kind = "llama (rebuilt)"
        else:
            raise ValueError(
                f"this model file has no tokenizer (tokenizer.ggml.model is {model!r}); pass "
                "token ids instead of text, or re-export the checkpoint with its tokenizer files "
                "(tokenizer.json or tokenizer.model) present"
            )

        def special(kind: str) -> int | None:
            v = md.get(f"tokenizer.ggml.{kind}_token_id")
            return int(v) if v is not None and int(v) >= 0 else None

        self.bos_id = special("bos")
        self.eos_id = special("eos")
        self.pad_id = special("padding")
        self.unk_id = special("unknown")
        # End-of-generation ids: the end-of-sequence token, and the end-of-turn and end-of-message
        # tokens that llama.cpp's converter writes for chat models whose turns end differently.
        self._turn_end_ids = [i for i in (special("eot"), special("eom")) if i is not None]
        default_bos = model == "llama" and self._hf is None
        self.add_bos = bool(md.get("tokenizer.ggml.add_bos_token", default_bos)) and \
            self.bos_id is not None
        if self._hf is not None:
            self.vocab_size = self._hf.get_vocab_size(with_added_tokens=True)
        else:
            self.vocab_size = self._sp.get_piece_size()

    @property
    def end_ids(self) -> list[int]:
        """Ids that end a generation: eos, and the end-of-turn/message ids when present."""
        return sorted({i for i in (self.eos_id, *self._turn_end_ids) if i is not None})

    def encode(self, text: str, *, add_bos: bool | None = None,
               special: bool = False) -> list[int]:
        """Token ids of `text`; prepends bos_id when `add_bos` (default: the model's setting).

        `special=True` reads special tokens written as text ("<|im_start|>", "<s>") as their
        ids, as chat prompts need. A huggingface tokenizer does so always, as transformers does;
        a SentencePiece one only when asked: each stretch between two special tokens is then
        encoded on its own, which is what llama.cpp and transformers' legacy Llama tokenizer do.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, got {type(text).__name__}")
        if self._hf is not None:
            ids = self._hf.encode(text, add_special_tokens=False).ids
        elif special:
            ids = self._encode_spm_special(text)
        else:
            ids = self._sp.encode(text)
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            ids = [self.bos_id, *ids]
        return ids

    def _encode_spm_special(self, text: str) -> list[int]:
        if self._special_re is None:
            sp = self._sp
            pieces = sorted((sp.id_to_piece(i) for i in range(sp.get_piece_size())
                             if sp.is_control(i) or self._is_user_defined(i)), key=len,
                            reverse=True)
            self._special_re = re.compile("|".join(re.escape(p) for p in pieces if p)) \
                if pieces else re.compile(r"(?!x)x")
        ids: list[int] = []
        start = 0
        for m in self._special_re.finditer(text):
            if m.start() > start:
                ids += self._sp.encode(text[start:m.start()])
            ids.append(self._sp.piece_to_id(m.group()))
            start = m.end()
        if start < len(text):
            ids += self._sp.encode(text[start:])
        return ids

    def _is_user_defined(self, i: int) -> bool:
        return self._types is not None and i < len(self._types) and \
            int(self._types[i]) == _USER_DEFINED

    def token_text(self, i: int) -> str:
        """The file's text of token `i` as written in tokenizer.ggml.tokens ("" when unknown):
        the form in which special tokens appear in chat templates."""
        return str(self._meta_tokens[i]) if 0 <= i < len(self._meta_tokens) else ""

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = True) -> str:
        """Text of `ids` (invalid UTF-8 becomes U+FFFD; ids the tokenizer does not know, such as
        a model's vocabulary padding, give nothing)."""
        ids = [i for i in (int(i) for i in ids) if 0 <= i < self.vocab_size]
        if self._hf is not None:
            return self._hf.decode(ids, skip_special_tokens=skip_special_tokens)
        keep = [i for i in ids if not (skip_special_tokens and self._sp.is_control(i))]
        return self._sp.decode(keep)

    def token_texts(self) -> list[str | None]:
        """The text each id stands for on its own, leading space included (cached).

        None for special, unknown and byte tokens (and byte-level tokens that are not whole
        UTF-8 characters). Used by token healing to find the tokens that extend a prompt's last.
        """
        if self._texts is None:
            self._texts = self._build_token_texts()
        return self._texts

    def _build_token_texts(self) -> list[str | None]:
        texts: list[str | None] = []
        if self._sp is not None:
            sp = self._sp
            for i in range(sp.get_piece_size()):
                special = sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)
                texts.append(None if special else sp.id_to_piece(i).replace("\u2581", " "))
            return texts
        from tokenizers import decoders

        byte_level = isinstance(self._hf.decoder, decoders.ByteLevel)
        unmap = {c: b for b, c in _bytes_to_unicode().items()}
        special = {i for i, t in self._hf.get_added_tokens_decoder().items() if t.special}
        for i in range(self.vocab_size):
            t = self._hf.id_to_token(i)
            if t is None or i in special:
                texts.append(None)
            elif byte_level:
                try:
                    texts.append(bytes(unmap[c] for c in t).decode("utf-8"))
                except (KeyError, UnicodeDecodeError):
                    texts.append(None)
            else:
                texts.append(t.replace("\u2581", " "))
        return texts

    def unsampleable_ids(self, n_vocab: int) -> list[int]:
        """Ids that must never be generated: vocabulary padding and the pad token (cached: a
        scan of the vocabulary costs tens of milliseconds, on every generation otherwise)."""
        key = (n_vocab, self.pad_id, self.eos_id, self.bos_id)
        cached = self._banned
        if cached is None or cached[0] != key:
            cached = (key, self._unsampleable_ids(n_vocab))
            self._banned = cached
        return list(cached[1])

    def _unsampleable_ids(self, n_vocab: int) -> list[int]:
        banned: set[int] = set(range(self.vocab_size, n_vocab))
        if self._types is not None:
            banned.update(int(i) for i in np.nonzero(self._types == _UNUSED)[0])
        banned.update(i for i, t in enumerate(self._meta_tokens[:n_vocab])
                      if t.startswith("[PAD") and t.endswith("]"))
        if self.pad_id is not None and self.pad_id not in (self.eos_id, self.bos_id):
            banned.add(self.pad_id)
        return sorted(i for i in banned if 0 <= i < n_vocab)


_ID_KEYS = ("bos", "eos", "padding", "unknown", "eot", "eom")


def _check_metadata(md: dict[str, Any]) -> None:
    """ValueError unless the tokenizer keys have the GGUF types llama.cpp writes (a crafted or
    damaged file can give any key any type)."""

    def bad(key: str, want: str) -> ValueError:
        v = md[key]
        found = type(v).__name__ + (f" of {v.dtype}" if isinstance(v, np.ndarray) else "")
        return ValueError(f"the file's {key} is a {found}, expected {want}; the file is damaged "
                          "or was not written by a GGUF converter: re-export or re-download it")

    def strings(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, str) for x in v)

    def numbers(v: Any, kinds: str) -> bool:
        return isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in kinds or \
            isinstance(v, list) and all(isinstance(x, (int, float)) and
                                        not isinstance(x, bool) for x in v)

    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.huggingface.json"):
        if key in md and not isinstance(md[key], str):
            raise bad(key, "a string")
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        if key in md and not strings(md[key]):
            raise bad(key, "an array of strings")
    n = len(md.get("tokenizer.ggml.tokens") or [])
    for key, kinds in (("tokenizer.ggml.token_type", "iu"), ("tokenizer.ggml.scores", "iuf"),
                       (SPM_MODEL_KEY, "u")):
        if key not in md:
            continue
        if not numbers(md[key], kinds) or kinds == "u" and not isinstance(md[key], np.ndarray):
            raise bad(key, "an array of " + {"iu": "integers", "iuf": "numbers",
                                             "u": "bytes (uint8)"}[kinds])
        if key != SPM_MODEL_KEY and len(md[key]) != n:
            raise ValueError(f"the file's {key} has {len(md[key])} entries for {n} tokens in "
                             "tokenizer.ggml.tokens; the file is damaged: re-export or "
                             "re-download it")
    for kind in _ID_KEYS:
        key = f"tokenizer.ggml.{kind}_token_id"
        if key not in md:
            continue
        if isinstance(md[key], bool) or not isinstance(md[key], (int, np.integer)):
            raise bad(key, "a token id (a non-negative integer)")
        if not -1 <= int(md[key]) < 2**31:  # -1: llama.cpp's LLAMA_TOKEN_NULL, no such token
            raise ValueError(f"the file's {key} is {int(md[key])}, not a token id; the file is "
                             "damaged: re-export or re-download it")
    if "tokenizer.ggml.add_bos_token" in md and \
            not isinstance(md["tokenizer.ggml.add_bos_token"], (bool, np.bool_)):
        raise bad("tokenizer.ggml.add_bos_token", "a bool")


def _built(source: str, build, arg):
    """build(arg), with a library's failure to read the file's tokenizer (tokenizers raises a
    bare Exception, sentencepiece a RuntimeError or a UnicodeDecodeError, protobuf a DecodeError)
    as a ValueError that says which of the file's sources it was."""
    try:
        return build(arg)
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 (the libraries raise no narrower type)
        raise ValueError(f"the file's tokenizer ({source}) could not be read: {e}; the file is "
                         "damaged or its tokenizer is of a kind mambalite cannot rebuild: "
                         "re-export it, or pass token ids instead of text") from e


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map used by byte-level BPE vocabularies."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def _values(md: dict[str, Any], key: str, default: list[Any]) -> list[Any]:
    """A metadata array as a list (numeric arrays arrive as numpy arrays)."""
    v = md.get(key)
    return default if v is None else [x.item() if hasattr(x, "item") else x for x in v]


def _load_spm(data: bytes):
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(data)
    # A damaged model can load with pieces that are not UTF-8, which fail only when read: read
    # them all now (one call, milliseconds) so that the file is refused at load.
    sp.id_to_piece(list(range(sp.get_piece_size())))
    return sp


def _rebuild_bpe(md: dict[str, Any]):
    """A byte-level BPE tokenizer from llama.cpp's gpt2 keys (tokens, types, merges)."""
    from tokenizers import AddedToken, decoders, models, normalizers, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    tokens: list[str] = list(md["tokenizer.ggml.tokens"])
    types = _values(md, "tokenizer.ggml.token_type", [_NORMAL] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in _values(md, "tokenizer.ggml.merges", [])]
    # Every used token keeps its file id; control and user-defined ones are then made atomic.
    vocab = {t: i for i, t in enumerate(tokens) if types[i] != _UNUSED}
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    if md.get("tokenizer.ggml.pre") == "mpt":
        tok.normalizer = normalizers.NFC()
    # GPT-2's split regex and byte-to-unicode mapping, as byte-level BPE tokenizers use.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for i, t in enumerate(tokens) if types[i] == _CONTROL])
    tok.add_tokens([AddedToken(t, special=False, normalized=False)
                    for i, t in enumerate(tokens) if types[i] == _USER_DEFINED])
    return tok


def _rebuild_spm(md: dict[str, Any]):
    """A SentencePiece model from llama.cpp's llama keys (pieces, scores, types)."""
    from sentencepiece import sentencepiece_model_pb2 as pb

    tokens = list(md["tokenizer.ggml.tokens"])
    scores = _values(md, "tokenizer.ggml.scores", [0.0] * len(tokens))
    types = _values(md, "tokenizer.ggml.token_type", [_NORMAL] * len(tokens))
    proto = pb.ModelProto()
    kind = {_NORMAL: 1, _UNKNOWN: 2, _CONTROL: 3, _USER_DEFINED: 4, _UNUSED: 5, _BYTE: 6}
    for piece, score, t in zip(tokens, scores, types):
        sp = proto.pieces.add()
        sp.piece = piece
        sp.score = float(score)
        sp.type = kind.get(int(t), 1)
    proto.trainer_spec.model_type = pb.TrainerSpec.BPE  # llama.cpp merges by score, like BPE
    proto.trainer_spec.byte_fallback = any(int(t) == _BYTE for t in types)
    proto.trainer_spec.vocab_size = len(tokens)
    for kind_name, key in (("unk", "unknown"), ("bos", "bos"), ("eos", "eos"), ("pad", "padding")):
        v = md.get(f"tokenizer.ggml.{key}_token_id")
        setattr(proto.trainer_spec, f"{kind_name}_id", int(v) if v is not None else -1)
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = True
    proto.normalizer_spec.escape_whitespaces = True
    proto.normalizer_spec.remove_extra_whitespaces = False
    return _load_spm(proto.SerializeToString())
