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
* before timing, and for scoring and the keystroke path (whose calls are too short to time), what the
  *other* processes use now (``others_load``): with other processes holding cores, fewer threads.

Why not the load average: it is smoothed over a minute and counts this process too, so a run that
follows another run (or a benchmark's busy processes that just ended) saw "load 2.1 on 2 cores" and
chose one thread on a quiet machine. ``others_load`` reads the CPU time the whole machine and this
process spent (``/proc/stat``, ``/proc/self/stat``) over the last moments and takes the difference;
where those files are missing (not Linux) it falls back to the load average less one.

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
import time
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import torch

__all__ = ["choose_threads", "others_load", "available_threads", "inference_threads", "using_threads",
           "ThreadProbe"]

# More threads must beat one by this much to be kept: one thread is what holds up when the machine gets
# busy later, and a smaller gain is within the noise of a few timed steps.
_MORE_THREADS_GAIN = 1.10
# Other processes count as holding a core from this much CPU use (half a core busy on average already
# stalls every barrier now and then).
_OTHERS_HOLD_A_CORE = 0.5


def choose_threads(cpus: int, *, given: Optional[int] = None, timings: Optional[Mapping[int, float]] = None,
                   others: Optional[float] = None) -> Tuple[int, List[str]]:
    """The number of torch threads to use, and why. Pure: the same inputs give the same answer.

    cpus: the most threads to use (torch's count for this thread: a ``torch.set_num_threads`` the user
    made is respected); given: an explicit ``threads=`` option; timings: seconds per step measured at
    some thread counts ({1: 0.041, 2: 0.380}); others: the cores other processes use now (``others_load``).

    >>> choose_threads(2, timings={1: 0.041, 2: 0.380})[0]
    1
    >>> choose_threads(2, others=1.0)[0], choose_threads(2, others=0.1)[0]
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
    if others is not None and others >= _OTHERS_HOLD_A_CORE:
        n = max(1, min(cpus, int(cpus - others + 0.5)))
        if n < cpus:
            return n, [f"{n} thread{'s' if n > 1 else ''}: other processes use {others:.1f} of {cpus} cores "
                       f"(threads that wait on them stall every step)"]
    return cpus, []


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms" if seconds >= 0.01 else f"{seconds * 1e3:.1f} ms"


class _CpuSample:
    """When, and how much CPU time the machine (all cores) and this process had spent, in seconds."""

    __slots__ = ("at", "machine", "own")

    def __init__(self, at: float, machine: float, own: float):
        self.at, self.machine, self.own = at, machine, own


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_last: Optional[_CpuSample] = None
_last_value: Optional[float] = None
_value_at = 0.0
# A measurement this young is reused without reading /proc (each read costs ~0.1 ms, a fifth of a
# keystroke's update); the machine's state does not change faster than that matters.
_FRESH_S = 1.0
# A difference over less than this is noise (the counters tick 100 times a second); over more than
# _STALE_S it describes another moment.
_MIN_WINDOW_S = 0.05
_STALE_S = 10.0


def _cpu_sample() -> Optional[_CpuSample]:
    try:
        with open("/proc/stat", "rb") as f:
            fields = f.readline().split()
        with open("/proc/self/stat", "rb") as f:
            own = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if not fields or fields[0] != b"cpu":
        return None
    # user nice system idle iowait irq softirq steal: busy is all but idle and iowait. Niced processes
    # count: beside a `nice -n 19` process on the other core, a column's training step on 2 threads took
    # 1.6-2.5 s against 0.2 s on 1 (2-core EPYC). Steal counts too: a core the host gave away is as taken
    # as one a process holds.
    ticks = [int(x) for x in fields[1:9]]
    busy = sum(ticks) - ticks[3] - ticks[4]
    # After the ")" of the command name, utime and stime are the 12th and 13th fields (all threads').
    return _CpuSample(time.monotonic(), busy / _TICK, (int(own[11]) + int(own[12])) / _TICK)


def others_load(window_s: float = 0.0) -> Optional[float]:
    """Cores' worth of CPU that processes other than this one used lately (0.0 on a quiet machine, about
    1.0 beside one ``while True: pass``); None where it cannot be told.

    Measured between this call and the previous one when that was 0.05-10 s ago (no waiting: the
    keystroke path calls it per suggestion); else over ``window_s`` seconds of waiting (training's start
    waits 0.2 s); else the runnable threads of other processes at this instant (``/proc/loadavg``), and
    this call starts the window that the next one measures."""
    global _last, _last_value, _value_at
    if window_s <= 0 and _last_value is not None and time.monotonic() - _value_at < _FRESH_S:
        return _last_value                       # the keystroke path: no /proc reads between keys
    now = _cpu_sample()
    if now is None:
        return _load_average_others()
    prev = _last
    age = now.at - prev.at if prev is not None else None
    if age is not None and age < _MIN_WINDOW_S and _last_value is not None and window_s <= 0:
        return _last_value                       # a burst of calls: the window keeps growing
    if age is None or not _MIN_WINDOW_S <= age <= _STALE_S:
        if window_s <= 0:
            if age is None or age > _STALE_S:
                _last = now
            return _running_others()
        prev = now
        time.sleep(window_s)
        now = _cpu_sample() or now
    wall = now.at - prev.at
    if wall <= 0:
        return _running_others()
    _last, _value_at = now, now.at
    _last_value = max(0.0, ((now.machine - prev.machine) - (now.own - prev.own)) / wall)
    return _last_value


def _running_others() -> Optional[float]:
    """Threads of other processes that are runnable at this instant (``/proc/loadavg``'s running count
    less this process's threads in state R)."""
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/stat", "rb") as f:
                    own += f.read().rsplit(b")", 1)[1].split()[0] == b"R"
            except OSError:
                continue
    except (OSError, IndexError, ValueError):
        return _load_average_others()
    return float(max(0, running - own))


def _load_average_others() -> Optional[float]:
    """The 1-minute load average less this process (where /proc is missing)."""
    try:
        return max(0.0, os.getloadavg()[0] - 1.0)
    except (AttributeError, OSError):
        return None


def available_threads() -> int:
    """The most threads torch may use in this thread: its own count (the user's set_num_threads, or one
    per core)."""
    return max(1, torch.get_num_threads())


def inference_threads(given: Optional[int] = None) -> Tuple[int, List[str]]:
    """Threads for scoring and the keystroke path, from what other processes use now (their calls are
    too short to time)."""
    return choose_threads(available_threads(), given=given, others=None if given else others_load())


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
    then ``steps_each`` steps on one thread, one warm-up step on all (a thread team's first step sets up
    its buffers: on a quiet 2-core EPYC it took 3x the next ones, and counted, it chose one thread for a
    whole run) and ``steps_each`` counted ones; then ``choose_threads`` keeps the faster.
    A step on all threads that takes more than ``_ABORT`` times the one-thread median ends that round at
    once (a busy machine: each such step can take seconds). When the machine's load already says other
    processes hold the cores (``others``: ``others_load()``), all threads are not tried at all. After a decision, a median
    step time over the last ``steps_each * 3`` steps above twice the chosen one's starts another round
    (at most ``max_rounds`` in all). ``step_s`` is the chosen count's median step time (None until
    decided); ``reasons`` says why.
    """

    _ABORT = 2.0

    def __init__(self, cpus: int, given: Optional[int] = None, others: Optional[float] = None, steps_each: int = 3,
                 max_rounds: int = 4):
        self.cpus, self.given, self.steps_each, self.max_rounds = max(1, cpus), given, steps_each, max_rounds
        self.rounds = 0
        self.choice: Optional[int] = None
        self.reasons: List[str] = []
        self.step_s: Optional[float] = None
        self._queue: List[int] = []
        self._warmed = {1}                   # thread counts that have run a step (the first is not timed)
        self._times: Dict[int, List[float]] = {}
        self._recent: List[float] = []
        self._warm = False
        self._fixed = bool(given) or self.cpus == 1
        if not self._fixed and others is not None:
            n, why = choose_threads(self.cpus, others=others)
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
            extra = [] if self.cpus in self._warmed else [self.cpus]      # its warm-up step
            self._queue = [1] * self.steps_each + extra + [self.cpus] * self.steps_each

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
            if n not in self._warmed:
                self._warmed.add(n)
                return False
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
