"""Turning a stream of token ids into text pieces: UTF-8-safe detokenisation and stop strings.

Both keep a bounded window, so memory stays constant however long the generation runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from .tokenizer import Tokenizer

_REPLACEMENT = "\ufffd"
# An incomplete UTF-8 character spans at most 4 bytes; byte-level tokenizers may need a few more
# tokens to complete one, so a pending run longer than this is flushed as it stands.
_MAX_PENDING = 16


class IncrementalDecoder:
    """Emits the text that each new token adds, never splitting a UTF-8 character.

    Decoding a sliding window (the previous piece's tokens plus the new ones) and taking the
    difference keeps tokenizer context such as SentencePiece's leading-space rule, which decoding
    tokens one by one would lose.
    """

    def __init__(self, tokenizer: Tokenizer, context: Sequence[int] = ()) -> None:
        self._tok = tokenizer
        self._ids: list[int] = list(context[-4:])  # prompt tail: the first piece keeps its space
        self._prefix = 0  # window start
        self._read = len(self._ids)  # end of the tokens already emitted

    def push(self, token: int) -> str:
        """Adds a token; returns the new text it completes (possibly "")."""
        self._ids.append(token)
        before = self._tok.decode(self._ids[self._prefix : self._read])
        after = self._tok.decode(self._ids[self._prefix :])
        pending = len(self._ids) - self._read
        complete = len(after) > len(before) and not after.endswith(_REPLACEMENT)
        if not complete and pending <= _MAX_PENDING:
            return ""
        # Complete text, or a long run that still is not (invalid bytes, skipped specials):
        # emit what there is and move the window on.
        piece = after[len(before) :] if len(after) > len(before) else ""
        del self._ids[: self._read]
        self._prefix, self._read = 0, len(self._ids)
        return piece

    def flush(self) -> str:
        """Whatever is still pending (an incomplete character becomes U+FFFD)."""
        before = self._tok.decode(self._ids[self._prefix : self._read])
        after = self._tok.decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return after[len(before) :] if len(after) > len(before) else ""


class StopStrings:
    """Holds back just enough text to detect stop strings that span several pieces."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._hold = max((len(s) for s in self._stops), default=1) - 1
        self._buf = ""
        self.stopped = False

    def push(self, text: str) -> str:
        """Adds text; returns what is safe to emit. Sets `stopped` when a stop string appears."""
        if not self._stops:
            return text
        self._buf += text
        hits = [i for i in (self._buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            out, self._buf, self.stopped = self._buf[: min(hits)], "", True
            return out
        cut = max(0, len(self._buf) - self._hold)
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return out

    def flush(self) -> str:
        out, self._buf = self._buf, ""
        return out
