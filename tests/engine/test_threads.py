"""The thread count (engine/threads.py): one pure decision from timings or the load, and the probe that
times training's first steps."""

from __future__ import annotations

import pytest
import torch

import subprocess
import sys
import threading
import time

from lm_magics.engine import threads as threads_mod
from lm_magics.engine.threads import ThreadProbe, choose_threads, others_load, using_threads


@pytest.mark.parametrize("kw, expected", [
    (dict(cpus=2, given=3), 3),                             # an explicit threads= wins
    (dict(cpus=1, timings={1: 0.5}), 1),
    (dict(cpus=2, timings={1: 0.041, 2: 0.380}), 1),        # 2 threads stall beside a busy process
    (dict(cpus=2, timings={1: 0.060, 2: 0.040}), 2),        # a quiet machine: the second core helps
    (dict(cpus=2, timings={1: 0.060, 2: 0.057}), 1),        # within 10%: one thread (it holds when busy)
    (dict(cpus=2, others=1.1), 1), (dict(cpus=2, others=0.2), 2), (dict(cpus=2, others=0.0), 2),
    (dict(cpus=8, others=3.0), 5), (dict(cpus=8, others=29.0), 1),
    (dict(cpus=2), 2),
])
def test_choose_threads(kw, expected):
    n, why = choose_threads(**kw)
    assert n == expected
    assert choose_threads(**kw) == (n, why)                # pure
    if n != kw["cpus"] or "given" in kw:
        assert why and all(isinstance(w, str) for w in why)


def _run(probe, times):
    """Feed the probe step times by thread count (times: threads -> seconds); return the counts used."""
    used = []
    for _ in range(40):
        n = probe.threads()
        used.append(n)
        probe.record(times[n])
        if probe.decided and len(used) > 12:
            break
    return used


def test_the_probe_keeps_the_faster_count():
    busy = ThreadProbe(2)
    used = _run(busy, {1: 0.04, 2: 0.4})
    assert busy.choice == 1 and busy.step_s == 0.04 and "1 thread" in busy.reasons[0]
    # the first step and a warm-up step on 2 threads are not timed; then one slow step ends the round
    assert used[:6] == [1, 1, 1, 1, 2, 2] and used.count(2) == 2
    quiet = ThreadProbe(2)
    _run(quiet, {1: 0.06, 2: 0.04})
    assert quiet.choice == 2 and quiet.step_s == 0.04


def test_the_probe_does_not_time_a_thread_teams_first_step():
    probe = ThreadProbe(2)
    seen = {1: 0, 2: 0}
    for _ in range(20):
        n = probe.threads()
        seen[n] += 1
        probe.record(0.3 if n == 2 and seen[2] == 1 else {1: 0.06, 2: 0.04}[n])   # a slow first step on 2
        if probe.decided:
            break
    assert probe.choice == 2 and probe.step_s == 0.04


def test_the_probe_trusts_a_high_load_and_an_explicit_count():
    loaded = ThreadProbe(2, others=5.0)
    assert set(_run(loaded, {1: 0.04, 2: 0.4})) == {1} and loaded.choice == 1 and "use 5.0" in loaded.reasons[0]
    given = ThreadProbe(2, given=2)
    assert set(_run(given, {1: 0.04, 2: 0.4})) == {2} and given.step_s == 0.4


def test_the_probe_times_again_when_steps_get_slower():
    probe = ThreadProbe(2)
    _run(probe, {1: 0.06, 2: 0.04})
    assert probe.choice == 2
    used = []
    for _ in range(30):                                    # another process starts: 2 threads stall
        n = probe.threads()
        used.append(n)
        probe.record({1: 0.06, 2: 0.5}[n])
    assert probe.choice == 1 and probe.rounds == 2 and 1 in used


def test_using_threads_puts_the_count_back():
    before = torch.get_num_threads()
    with using_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="others_load reads /proc (Linux)")
def test_others_load_counts_other_processes_and_not_this_one():
    # This process burning a core must not count (the load average did: a run after a run saw "load 2.1"
    # and took one thread on a quiet machine); a `while True: pass` beside it must. Compared with each
    # other, so a machine's own background work cancels out.
    stop = threading.Event()

    def burn():
        x = torch.randn(256, 256)
        while not stop.is_set():
            x = torch.tanh(x @ x)

    own = threading.Thread(target=burn)
    own.start()
    try:
        with using_threads(1):
            threads_mod._last = None
            mine = others_load(window_s=0.4)
    finally:
        stop.set()
        own.join()
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        threads_mod._last = None
        beside = others_load(window_s=0.4)
        assert others_load() == beside              # within a second: the same value, no /proc read
        time.sleep(0.2)
        threads_mod._value_at = 0.0                 # as if a second had passed
        later = others_load()                       # measured since the call before, no waiting
    finally:
        spin.kill()
        spin.wait()
    assert beside - mine > 0.5 and later - mine > 0.5
