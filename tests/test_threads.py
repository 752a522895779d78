"""Threads: 8 Python threads generating on one Model, each with its own State, give exactly the
tokens of a sequential run (greedy and seeded sampling) on every architecture, while another
thread copies and serialises a finished state. The engine runs one evaluation at a time per Model
(its workspace and pool are shared) and releases the GIL inside it, so this checks the locking and
that no per-call state leaks between threads (the random models of test_state.py, one per
architecture)."""

from __future__ import annotations

import threading

import pytest
from test_state import ARCHS

import mambalite

from helpers import export, save_checkpoint

N_THREADS = 8


def _runs(model, n: int) -> list[dict]:
    return [dict(prompt=[1 + (37 * i + 11 * j) % 290 for j in range(2 + i % 5)],
                 temperature=0.0 if i % 2 == 0 else 2.0, seed=100 + i) for i in range(n)]


def _generate(model, run: dict) -> list[int]:
    state = model.new_state()
    return list(model.generate_tokens(run["prompt"], max_new_tokens=24, state=state,
                                      temperature=run["temperature"], seed=run["seed"],
                                      top_k=0, top_p=1.0, stop_ids=[]))


@pytest.mark.parametrize("arch", list(ARCHS))
def test_threads_generate_what_a_sequential_run_does(arch, tmp_path):
    path = export(save_checkpoint(ARCHS[arch](), tmp_path), "f32")
    model = mambalite.load(path, threads=2, n_ctx=64)
    runs = _runs(model, N_THREADS)
    expected = [_generate(model, r) for r in runs]
    assert len({tuple(e) for e in expected}) == N_THREADS  # so a mix-up between them would show
    finished = model.new_state()
    model.prefill(finished, [5, 6, 7])
    reference = finished.to_bytes()

    got: list[list[int] | None] = [None] * N_THREADS
    errors: list[BaseException] = []
    start = threading.Barrier(N_THREADS + 1)
    stop = threading.Event()

    def work(i: int) -> None:
        try:
            start.wait()
            got[i] = _generate(model, runs[i])
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def copier() -> None:
        try:
            start.wait()
            while not stop.is_set():
                assert finished.copy().to_bytes() == reference
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(N_THREADS)]
    threads.append(threading.Thread(target=copier))
    for t in threads:
        t.start()
    for t in threads[:-1]:
        t.join(timeout=300)
    stop.set()
    threads[-1].join(timeout=60)
    assert not errors, errors
    assert got == expected
