"""Where a process sits in a distributed run, and the few collective operations the training loop needs.

The loop itself is ``training.fit``: one loop for one process and many. Under torchrun each process (a
rank) trains on its own contiguous shard of the token stream inside DistributedDataParallel; with one
process every helper here is the identity and nothing is communicated::

    token stream (every rank holds the same vocabulary and the same ids: checked by fingerprint)
    [ rank 0 shard       | rank 1 shard       | ... ]   contiguous, equal length, leftovers dropped
         batchify(B) -> windows -> DDP forward/backward (gradients all-reduced) -> same update everywhere

Stopping is agreed, never local: after every step each rank contributes its reason to stop (a Ctrl-C or
SIGTERM caught by a deferred handler, a Stop from a callback, its clock passing ``max_time``) and an
all-reduce takes the strongest, so every rank leaves the loop after the same step and no rank is left
waiting in a collective. Validation sums are all-reduced, so every rank takes the same early-stopping
and best-weights decisions. Only rank 0 writes files (the caller's job).

Backend: nccl on GPUs, gloo on CPU. The embedding gradient is dense under DDP (a sparse gradient would
need a sparse all-reduce; dense is simpler and, with gloo, as fast for small vocabularies).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import threading
from dataclasses import dataclass
from typing import Any, Iterator, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from ..errors import ConfigError

__all__ = ["Ranks", "in_torchrun", "require_torchrun", "process_group", "deferred_signals", "peak_rss_mb"]

# Stop reasons, ordered: the all-reduce keeps the strongest one any rank reported.
GO, PLANNED, MAX_TIME, INTERRUPTED, DIVERGED = 0, 1, 2, 3, 4


def in_torchrun() -> bool:
    """True inside a process started by torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def require_torchrun() -> None:
    """Raise the one-line ConfigError for distributed training outside torchrun."""
    if not in_torchrun():
        raise ConfigError("Distributed training runs under torchrun; use `lm-magics train ... --nproc N` or "
                          "`torchrun --nproc_per_node=N -m lm_magics train ...`.")


def peak_rss_mb() -> Optional[float]:
    """This process's peak resident memory in MB (ru_maxrss; None where the platform has no such count).
    It includes pages of memory-mapped token files that were read (file-backed, reclaimable)."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024    # Linux reports KB


@dataclass(frozen=True)
class Ranks:
    """This process's place in a run. ``Ranks()`` is a single process: every method is then local."""

    rank: int = 0
    world: int = 1
    local_world: int = 1
    backend: str = ""

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one that reports, prints and writes files."""
        return self.rank == 0

    # -------------------------------------------------------------------------------- data

    def shard(self, ids: np.ndarray) -> np.ndarray:
        """This rank's contiguous, equal-length slice of the training ids (leftovers dropped)."""
        if not self.distributed:
            return ids
        n = ids.size // self.world
        return ids[self.rank * n:(self.rank + 1) * n]      # a view: a memory-mapped stream stays on disk

    def shard_bounds(self, size: int) -> tuple:
        n = size // self.world
        return self.rank * n, (self.rank + 1) * n

    def val_shard(self, ids: np.ndarray) -> np.ndarray:
        """This rank's slice of the validation ids; the whole stream when slices would be too short to
        score (every rank then counts the same text and the all-reduced mean is unchanged)."""
        n = ids.size // self.world
        if not self.distributed or n < 2:
            return ids
        return ids[self.rank * n:(self.rank + 1) * n]

    # -------------------------------------------------------------------------------- collectives

    def agree_stop(self, reason: int, device: torch.device) -> int:
        """The strongest stop reason over all ranks (GO < PLANNED < MAX_TIME < INTERRUPTED)."""
        if not self.distributed:
            return reason
        t = torch.tensor([reason], dtype=torch.int32, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return int(t.item())

    def sum(self, values: List[float], device: torch.device) -> List[float]:
        """Element-wise sum over ranks (float64): validation NLL totals, epoch losses."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> List[Any]:
        """Every rank's ``obj``, in rank order (a one-element list for a single process)."""
        if not self.distributed:
            return [obj]
        out: List[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out


def _device_for(local_rank: int, device: str) -> torch.device:
    if torch.cuda.is_available() and device in ("auto", "cuda"):
        return torch.device(f"cuda:{local_rank}")
    if device not in ("auto", "cpu"):
        raise ConfigError(f"device={device!r} under torchrun: use 'auto' (one GPU per process when there are "
                          "GPUs) or 'cpu'.")
    return torch.device("cpu")


@contextlib.contextmanager
def process_group(device: str = "auto", timeout_s: float = 1800.0) -> Iterator[tuple]:
    """Join torchrun's process group (nccl on GPUs, gloo on CPU); yields ``(Ranks, torch.device)``.

    Leaves the group on exit when it created it. ``timeout_s`` bounds every collective, so a rank that
    died ends the others with an error instead of a hang.
    """
    require_torchrun()
    local_rank = int(os.environ["LOCAL_RANK"])
    dev = _device_for(local_rank, device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    own = not dist.is_initialized()
    if own:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo",
                                timeout=datetime.timedelta(seconds=timeout_s))
    ranks = Ranks(dist.get_rank(), dist.get_world_size(),
                  int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())), dist.get_backend())
    try:
        yield ranks, dev
        if own:
            dist.barrier()     # no rank tears the group down while another is still in a collective
    finally:
        if own and dist.is_initialized():
            dist.destroy_process_group()


class deferred_signals:
    """Under DDP, turn Ctrl-C (SIGINT) and SIGTERM into a flag read at the next step boundary.

    A KeyboardInterrupt raised in the middle of a collective would leave the other ranks waiting; a flag
    lets every rank agree to stop after the same step. Only the main thread can set handlers: elsewhere
    (or for a single process) this does nothing and KeyboardInterrupt keeps its usual meaning.
    """

    def __init__(self, active: bool):
        self.active = active and threading.current_thread() is threading.main_thread()
        self.caught: Optional[int] = None
        self._old: dict = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.caught = signum

    def __enter__(self) -> "deferred_signals":
        if self.active:
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
