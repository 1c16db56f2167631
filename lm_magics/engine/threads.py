"""How many CPU threads torch uses: one decision that training, scoring and the keystroke path follow.

Why it matters: torch runs each op as a parallel region whose threads meet at a barrier. When another
process holds a core, the thread on that core runs late and every op waits for it: on a 2-core AMD EPYC
with one busy process beside it, a bare ``nn.LSTM(256, 256)`` step took 1,183 ms on 2 threads against
133 ms on 1, and whole training runs 4-10x slower (issue 21). On a quiet machine the second thread
helps (1.5x on a column's network). So the number is decided, not fixed:

* an explicit ``threads=`` option wins;
* training times its first steps on all threads and on one, keeps the faster (more threads only when
  they are at least 10% faster: one thread is the one that holds when the machine gets busy later), and
  times again when the step time jumps by more than 2x (``ThreadProbe``);
* scoring and the keystroke path, whose calls are too short to time, read the machine's load (the
  1-minute load average against the cores): with other processes holding cores, one thread.

``choose_threads`` is the pure decision (inputs in, ``(threads, reasons)`` out); ``ThreadProbe`` feeds
it timings, ``inference_threads`` the load. The thread count changes results by float rounding only:
parallel sums add in another order, so weights after an epoch on 1 and on 2 threads differ in the last
bits (1e-8 on a test cell; tests/engine/test_planning.py). The model records the count
(``meta["threads"]``); a run that must repeat bit for bit gives ``threads=`` (and ``budget=None``,
since a budget's steps follow the clock).
"""

from __future__ import annotations

import contextlib
import os
import statistics
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch

__all__ = ["choose_threads", "machine_load", "available_threads", "inference_threads", "using_threads",
           "ThreadProbe"]

# More threads must beat one by this much to be kept: one thread is what holds up when the machine gets
# busy later, and a smaller gain is within the noise of a few timed steps.
_MORE_THREADS_GAIN = 1.10
# Another process counts as holding a core from this much load beyond our own (the load average is
# smoothed over a minute: half a core busy on average already stalls every barrier now and then).
_OTHERS_HOLD_A_CORE = 0.5


def choose_threads(cpus: int, *, given: Optional[int] = None, timings: Optional[Mapping[int, float]] = None,
                   load: Optional[float] = None, own_load: float = 1.0) -> Tuple[int, List[str]]:
    """The number of torch threads to use, and why. Pure: the same inputs give the same answer.

    cpus: the most threads to use (torch's count for this thread: a ``torch.set_num_threads`` the user
    made is respected); given: an explicit ``threads=`` option; timings: seconds per step measured at
    some thread counts ({1: 0.041, 2: 0.380}); load: the machine's 1-minute load average; own_load: how
    much of that load is this process (1 while it computes).

    >>> choose_threads(2, timings={1: 0.041, 2: 0.380})[0]
    1
    >>> choose_threads(2, load=2.1)[0], choose_threads(2, load=0.9)[0]
    (1, 2)
    """
    if given:
        return int(given), [f"threads={given} given"]
    cpus = max(1, int(cpus))
    if cpus == 1:
        return 1, []
    if timings and len(timings) >= 2:
        ranked = sorted(timings.items())
        best_n, best_s = ranked[0]
        for n, s in ranked[1:]:
            if s * _MORE_THREADS_GAIN < best_s:        # more threads only when clearly faster
                best_n, best_s = n, s
        shown = ", ".join(f"{_ms(s)} on {n}" for n, s in ranked)
        why = (f"{best_n} thread{'s' if best_n > 1 else ''}: timed steps took {shown}"
               + (" (other processes hold cores)" if best_n < cpus and timings.get(cpus, 0) > 2 * best_s else ""))
        return min(best_n, cpus), [why]
    if load is not None:
        others = max(0.0, load - own_load)
        if others >= _OTHERS_HOLD_A_CORE:
            n = max(1, min(cpus, int(cpus - others + 0.5)))
            if n < cpus:
                return n, [f"{n} thread{'s' if n > 1 else ''}: load {load:.1f} on {cpus} cores (other processes "
                           f"hold cores, and threads that wait on them stall every step)"]
    return cpus, []


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.1f} ms"


def machine_load() -> Optional[float]:
    """The 1-minute load average (None where the system has none, e.g. Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def available_threads() -> int:
    """The most threads torch may use in this thread: its own count (the user's set_num_threads, or one
    per core)."""
    return max(1, torch.get_num_threads())


def inference_threads(given: Optional[int] = None, busy: bool = True) -> Tuple[int, List[str]]:
    """Threads for scoring and the keystroke path, from the load (their calls are too short to time).
    ``busy``: this process is about to compute, so one unit of the load may be its own."""
    return choose_threads(available_threads(), given=given, load=machine_load(), own_load=1.0 if busy else 0.0)


@contextlib.contextmanager
def using_threads(n: int) -> Iterator[None]:
    """Run the block with n torch threads in this thread (torch's count is per OS thread under OpenMP;
    put back afterwards)."""
    prev = torch.get_num_threads()
    if n == prev:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


class ThreadProbe:
    """Decides training's thread count from its own first steps, and again when the step time jumps.

    The loop asks ``threads()`` before each step, runs the step on that many threads and hands its wall
    time to ``record()``. The first step (allocations, warm-up) runs on one thread and is not counted;
    then ``steps_each`` steps on one thread and as many on all; then ``choose_threads`` keeps the faster.
    A step on all threads that takes more than ``_ABORT`` times the one-thread median ends that round at
    once (a busy machine: each such step can take seconds). When the machine's load already says other
    processes hold the cores (``load``), all threads are not tried at all. After a decision, a median
    step time over the last ``steps_each * 3`` steps above twice the chosen one's starts another round
    (at most ``max_rounds`` in all). ``step_s`` is the chosen count's median step time (None until
    decided); ``reasons`` says why.
    """

    _ABORT = 2.0

    def __init__(self, cpus: int, given: Optional[int] = None, load: Optional[float] = None, steps_each: int = 3,
                 max_rounds: int = 4):
        self.cpus, self.given, self.steps_each, self.max_rounds = max(1, cpus), given, steps_each, max_rounds
        self.rounds = 0
        self.choice: Optional[int] = None
        self.reasons: List[str] = []
        self.step_s: Optional[float] = None
        self._queue: List[int] = []
        self._times: Dict[int, List[float]] = {}
        self._recent: List[float] = []
        self._warm = False
        self._fixed = bool(given) or self.cpus == 1
        if not self._fixed and load is not None:
            n, why = choose_threads(self.cpus, load=load)
            if n < self.cpus:
                self._fixed, self.choice, self.reasons = True, n, why      # not worth a slow step to confirm
        if given or self.cpus == 1:
            self.choice, self.reasons = choose_threads(self.cpus, given=given)
        self._start_round()

    @property
    def decided(self) -> bool:
        return self.step_s is not None

    def _start_round(self) -> None:
        self.rounds += 1
        self._times = {}
        if self._fixed:
            self._queue = [self.choice or 1] * self.steps_each     # still timed: the planner needs a step time
        else:
            self._queue = [1] * self.steps_each + [self.cpus] * self.steps_each

    def threads(self) -> int:
        """Threads for the next step."""
        if not self._warm:
            return self.choice or 1
        return self._queue[0] if self._queue else (self.choice or self.cpus)

    def record(self, seconds: float) -> bool:
        """The wall time of the step just run on ``threads()`` threads; True when this completed a
        decision (the step time, and maybe the thread count, are new)."""
        if not self._warm:
            self._warm = True
            return False
        if self._queue:
            n = self._queue.pop(0)
            self._times.setdefault(n, []).append(seconds)
            one = self._times.get(1)
            if n != 1 and one and len(one) == self.steps_each and seconds > self._ABORT * statistics.median(one):
                self._queue = []                        # all threads stall: no need to time more of them
            if self._queue:
                return False
            medians = {k: statistics.median(v) for k, v in self._times.items()}
            if not self._fixed:
                self.choice, self.reasons = choose_threads(self.cpus, timings=medians)
            self.step_s = medians[self.choice]
            self._recent = []
            return True
        window = self.steps_each * 3
        self._recent = (self._recent + [seconds])[-window:]
        if len(self._recent) == window:
            now = statistics.median(self._recent)
            if self.step_s and now > 2 * self.step_s:
                if self.rounds < self.max_rounds and not self.given and self.cpus > 1:
                    self._fixed = False                  # time both again on the new machine state
                    self._start_round()
                    return False
                self.step_s, self._recent = now, []      # slower for good: the planner must know
                return True
        return False
