"""The thread count (engine/threads.py): one pure decision from timings or the load, and the probe that
times training's first steps."""

from __future__ import annotations

import pytest
import torch

from lm_magics.engine.threads import ThreadProbe, choose_threads, using_threads


@pytest.mark.parametrize("kw, expected", [
    (dict(cpus=2, given=3), 3),                             # an explicit threads= wins
    (dict(cpus=1, timings={1: 0.5}), 1),
    (dict(cpus=2, timings={1: 0.041, 2: 0.380}), 1),        # 2 threads stall beside a busy process
    (dict(cpus=2, timings={1: 0.060, 2: 0.040}), 2),        # a quiet machine: the second core helps
    (dict(cpus=2, timings={1: 0.060, 2: 0.057}), 1),        # within 10%: one thread (it holds when busy)
    (dict(cpus=2, load=2.1), 1), (dict(cpus=2, load=1.2), 2), (dict(cpus=2, load=0.0), 2),
    (dict(cpus=8, load=4.0), 5), (dict(cpus=8, load=30.0), 1),
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
    assert used[:5] == [1, 1, 1, 1, 2] and used.count(2) == 1        # one slow step ends the round
    quiet = ThreadProbe(2)
    _run(quiet, {1: 0.06, 2: 0.04})
    assert quiet.choice == 2 and quiet.step_s == 0.04


def test_the_probe_trusts_a_high_load_and_an_explicit_count():
    loaded = ThreadProbe(2, load=6.0)
    assert set(_run(loaded, {1: 0.04, 2: 0.4})) == {1} and loaded.choice == 1 and "load 6.0" in loaded.reasons[0]
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
