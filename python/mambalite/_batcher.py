"""Continuous batching for the server: every running generation hands its next evaluation (its
State and the ids to feed) to one thread, which runs all that are waiting as one ragged batch
(`Model.prefill_batch`), so that N concurrent streams cost about one pass over the weights per
step instead of N. Generations join and leave at any step; nothing waits for a slow one longer
than the gather window."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .model import Model


class _Job:
    __slots__ = ("state", "ids", "logits", "error", "done")

    def __init__(self, state: Any, ids: np.ndarray) -> None:
        self.state = state
        self.ids = ids
        self.logits: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class StepBatcher:
    """Batches the evaluations of concurrent generations.

    `evaluate(state, ids)` blocks until the batch holding it has run and returns the logits
    after the last id. The worker thread starts a batch as soon as every member (a generation
    between `join` and `leave`) has submitted, or `gather_s` after the first submission; at most
    `max_batch` sequences go in one batch.
    """

    def __init__(self, model: Model, max_batch: int = 32, gather_s: float = 0.002) -> None:
        self.model = model
        self.max_batch = max_batch
        self.gather_s = gather_s
        self.batches = 0  # statistics for /health
        self.sequences = 0
        self._cv = threading.Condition()
        self._pending: list[_Job] = []
        self._members = 0
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="mambalite-batcher", daemon=True)
        self._thread.start()

    def join(self) -> None:
        with self._cv:
            self._members += 1

    def leave(self) -> None:
        with self._cv:
            self._members -= 1
            self._cv.notify_all()  # the batch may be complete without this member

    def evaluate(self, state: Any, ids: np.ndarray) -> np.ndarray:
        job = _Job(state, np.ascontiguousarray(ids, dtype=np.int32))
        with self._cv:
            if self._closed:
                raise RuntimeError("the server is shutting down")
            self._pending.append(job)
            self._cv.notify_all()
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.logits

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        self._thread.join(timeout=5)

    def _take(self) -> list[_Job] | None:
        with self._cv:
            while not self._pending and not self._closed:
                self._cv.wait()
            if self._closed and not self._pending:
                return None
            deadline = time.monotonic() + self.gather_s
            while len(self._pending) < min(self._members, self.max_batch) and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cv.wait(left)
            jobs = self._pending[:self.max_batch]
            del self._pending[:self.max_batch]
            return jobs

    def _loop(self) -> None:
        core = self.model._core
        while (jobs := self._take()) is not None:
            try:
                logits = core.prefill_batch([j.state for j in jobs], [j.ids for j in jobs])
                for j, row in zip(jobs, logits):
                    j.logits = row
            except Exception:  # noqa: BLE001 - a batch validates first and changes no state
                for j in jobs:  # on error, so each job runs alone and gets its own error
                    try:
                        j.logits = core.prefill(j.state, j.ids)
                    except Exception as e:  # noqa: BLE001
                        j.error = e
            self.batches += 1
            self.sequences += len(jobs)
            for j in jobs:
                j.done.set()
