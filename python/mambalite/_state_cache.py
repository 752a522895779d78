"""The server's state cache: snapshots of States at turn boundaries, keyed by a hash of the token
prefix they hold, least-recently-used first out within a byte budget, optionally written to a
folder so that they survive a restart (and the memory budget).

A recurrent state cannot be cut back to a shorter prefix, so the cache holds exact prefixes:
the prompt less its last token (which the request feeds to get the first logits) and the whole
conversation after the answer. A follow-up request whose prompt extends either prefills only
the rest.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._values import State
    from .model import Model


def prefix_key(ids: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(ids, dtype=np.int32).tobytes()).hexdigest()[:32]


class StateCache:
    """LRU cache of (token prefix -> State), bounded by `max_bytes` in memory; with `directory`,
    every snapshot is also written there (bounded by `disk_bytes`) and read back on a miss."""

    def __init__(self, model: Model, max_bytes: int, directory: str | os.PathLike | None = None,
                 disk_bytes: int | None = None) -> None:
        self.model = model
        self.max_bytes = max(0, int(max_bytes))
        self.dir = Path(directory) if directory is not None else None
        self.disk_bytes = disk_bytes if disk_bytes is not None else 4 * self.max_bytes
        self._mem: OrderedDict[str, tuple[int, State]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def nbytes(self) -> int:
        """Bytes of the snapshots held in memory."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._mem)

    def put(self, ids: np.ndarray, state: State) -> None:
        """Keeps a copy of `state`, which holds exactly `ids`."""
        n = len(ids)
        if n == 0 or state.n_tokens != n:
            return
        key = prefix_key(ids)
        size = state.nbytes
        with self._lock:
            if key in self._mem:
                self._mem.move_to_end(key)
                return
        snap = state.copy()
        if size <= self.max_bytes:
            with self._lock:
                self._mem[key] = (n, snap)
                self._bytes += size
                while self._bytes > self.max_bytes and self._mem:
                    _, (_, old) = self._mem.popitem(last=False)
                    self._bytes -= old.nbytes
        if self.dir is not None:
            self._write(key, n, snap)

    def longest_prefix(self, ids: np.ndarray, limit: int) -> State | None:
        """A copy of the snapshot holding the longest prefix of `ids` no longer than `limit`
        tokens, or None."""
        with self._lock:
            lengths = {n for n, _ in self._mem.values()}
        lengths |= self._disk_lengths()
        for n in sorted((n for n in lengths if n <= limit), reverse=True):
            key = prefix_key(ids[:n])
            with self._lock:
                hit = self._mem.get(key)
                if hit is not None:
                    self._mem.move_to_end(key)
            if hit is not None:
                self.hits += 1
                return hit[1].copy()
            state = self._read(key, n)
            if state is not None:
                self.hits += 1
                self.put(ids[:n], state)
                return state
        self.misses += 1
        return None

    # ----------------------------------------------------------------------------- disk
    def _path(self, key: str, n: int) -> Path:
        return self.dir / f"{n}-{key}.state"

    def _disk_lengths(self) -> set[int]:
        if self.dir is None:
            return set()
        out = set()
        for p in self.dir.glob("*.state"):
            try:
                out.add(int(p.name.split("-", 1)[0]))
            except ValueError:
                continue
        return out

    def _write(self, key: str, n: int, state: State) -> None:
        path = self._path(key, n)
        if path.exists():
            return
        tmp = path.with_suffix(".tmp")
        try:
            tmp.write_bytes(state.to_bytes())
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            return
        files = sorted(self.dir.glob("*.state"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in files)
        for p in files:
            if total <= self.disk_bytes:
                break
            total -= p.stat().st_size
            p.unlink(missing_ok=True)

    def _read(self, key: str, n: int) -> State | None:
        if self.dir is None:
            return None
        path = self._path(key, n)
        try:
            state = self.model.state_from_bytes(path.read_bytes())
        except (OSError, ValueError):
            return None  # gone, or written by another model: a miss
        if state.n_tokens != n:
            return None
        os.utime(path)
        return state
