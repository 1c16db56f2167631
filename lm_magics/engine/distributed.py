"""Multi-process training with torch.distributed: DistributedDataParallel, one shard per rank.

    torchrun --nproc_per_node=2 -m lm_magics train corpus.txt -o model.lm --epochs 3
    lm-magics train corpus.txt -o model.lm --nproc 2          # launches the line above for you
    # several machines (run on each; node 0's address as the rendezvous endpoint):
    torchrun --nnodes=2 --node_rank=K --nproc_per_node=8 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST0:29500 --rdzv_id=job1 -m lm_magics train corpus.txt -o model.lm

How the work is split::

    token stream (all ranks tokenize the same files the same way: one vocabulary, checked by hash)
    [ rank 0 shard       | rank 1 shard       | ... ]   contiguous, equal length, leftovers dropped
         batchify(B) -> windows -> DDP forward/backward (gradients all-reduced) -> same update everywhere

Backend: nccl on GPUs, gloo on CPU. The embedding gradient is dense here (a sparse gradient would need
SparseAdam and sparse all-reduce; dense is simpler and, with gloo, as fast for small vocabularies).
Validation: each rank scores its slice of the validation ids; the sums are all-reduced. Only rank 0
writes the model (atomically, via LanguageModel.save).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from typing import Any, Callable, List, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist

from ..config import TrainConfig
from ..errors import ConfigError, DataError, TrainingDiverged
from . import memory
from .data import _fingerprint, batchify, prepare, windows
from .model import LSTMLanguageModel
from .tokenizer import Tokenizer
from .training import (BestWeights, EpochInfo, StepInfo, TrainReport, _lr_at, _make_optimizers, auto_config,
                       evaluate, train_step)


__all__ = ["in_torchrun", "launch", "train_ddp", "torchrun_command"]


def in_torchrun() -> bool:
    """True inside a process started by torchrun (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR)."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def torchrun_command(nproc: int, args: Sequence[str]) -> List[str]:
    """``python -m torch.distributed.run --nproc_per_node N -m lm_magics <args>`` (one machine)."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"--nproc must be a whole number of at least 1, got {nproc!r}.")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "lm_magics", *args]


def launch(nproc: int, args: Sequence[str]) -> int:
    """Run ``lm_magics <args>`` under torchrun with nproc processes; returns torchrun's exit code."""
    return subprocess.call(torchrun_command(nproc, args))


def _shard_len(n: int, world: int) -> int:
    return n // world


def _val_totals(model: LSTMLanguageModel, ids: np.ndarray, seq_len: int, device: torch.device) -> torch.Tensor:
    """(sum of NLL, number of targets) over ids, as evaluate() counts them: for an all-reduce."""
    if ids.size < 2:
        return torch.zeros(2, dtype=torch.float64, device=device)
    b = max(1, min(10, ids.size // 2))
    count = (ids.size // b - 1) * b
    ppl = evaluate(model, ids, seq_len, b, device)
    return torch.tensor([math.log(ppl) * count, count], dtype=torch.float64, device=device)


def train_ddp(data: Any, *, val_data: Any = None, config: Optional[TrainConfig] = None,
              on_step: Optional[Callable[[StepInfo], None]] = None,
              on_epoch: Optional[Callable[[EpochInfo], None]] = None, **options: Any):
    """Train with DistributedDataParallel inside torchrun; every rank returns the same LanguageModel
    (its ``meta["ddp"]`` lists each rank's shard). Call ``model.save`` on rank 0 only."""
    from ..api import LanguageModel

    if not in_torchrun():
        raise ConfigError("train_ddp runs under torchrun; use `lm-magics train ... --nproc N` or "
                          "`torchrun --nproc_per_node=N -m lm_magics train ...`.")
    cfg = (config or TrainConfig()).replace(**options)
    local_rank = int(os.environ["LOCAL_RANK"])
    use_cuda = torch.cuda.is_available() and cfg.device in ("auto", "cuda")
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    own_group = not dist.is_initialized()
    if own_group:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if device.type == "cpu" and not cfg.threads:
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))  # ranks share the cores
    elif cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        t_start = time.perf_counter()
        tokenizer = Tokenizer(cfg.level, cfg.lowercase, cfg.min_freq, cfg.max_vocab)
        # Every rank tokenizes deterministically (same files, same seed): one vocabulary, checked below.
        corpus = prepare(data, tokenizer, val_source=val_data, val_fraction=cfg.val_fraction, seed=cfg.seed)
        check = [None] * world
        dist.all_gather_object(check, (corpus.fingerprint, len(tokenizer)))
        if len(set(check)) != 1:
            raise DataError("The ranks read different text (token fingerprints differ); give every node the "
                            "same files.")
        L = _shard_len(corpus.train.size, world)
        start, stop = rank * L, (rank + 1) * L
        shard = corpus.train[start:stop]
        val_L = corpus.val.size // world
        val_shard = corpus.val[rank * val_L:(rank + 1) * val_L] if val_L >= 2 else corpus.val

        cfg, why = auto_config(cfg, corpus.stats.train_tokens)
        if L // cfg.batch_size < 2:
            cfg = cfg.replace(batch_size=max(1, L // 2))
        if cfg.seq_len > L // cfg.batch_size - 1:
            cfg = cfg.replace(seq_len=max(1, L // cfg.batch_size - 1))
        V = len(tokenizer)
        adaptive = (cfg.softmax == "adaptive" or (cfg.softmax == "auto" and V >= cfg.adaptive_threshold)) and V >= 4
        # Each rank holds a whole model: refuse what cannot fit before allocating (CPU ranks share the host).
        est = memory.training_estimate(V, cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.tie_weights, adaptive,
                                       cfg.batch_size, cfg.seq_len, cfg.optimizer, tokens=int(shard.size))
        est.parts["gradient buckets"] = 4 * est.parameters           # DDP's all-reduce buffers
        try:
            memory.check_training(est, device, processes=1 if use_cuda else int(os.environ.get("LOCAL_WORLD_SIZE",
                                                                                               world)))
            refusal = ""
        except ConfigError as exc:
            refusal = str(exc)
        answers: List[Any] = [None] * world
        dist.all_gather_object(answers, refusal)     # all ranks stop together, or none does
        if any(answers):
            raise ConfigError(next(a for a in answers if a))
        torch.manual_seed(cfg.seed)     # the same initial weights on every rank (DDP also broadcasts rank 0's)
        net = LSTMLanguageModel(V, cfg.embed_dim, cfg.hidden_dim, cfg.num_layers, cfg.dropout,
                                cfg.tie_weights, adaptive).to(device)
        net.embed.sparse = False        # dense embedding gradient: plain all-reduce
        ddp = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[local_rank] if use_cuda else None,
            find_unused_parameters=adaptive)   # tail clusters of the adaptive softmax may get no target
        opts = _make_optimizers(net, cfg, device)
        torch.manual_seed(cfg.seed + rank)   # dropout masks differ per rank, repeatably

        train_data = batchify(np.ascontiguousarray(shard), cfg.batch_size).to(device)   # (rows, B) per rank
        n_windows = math.ceil((train_data.size(0) - 1) / cfg.seq_len)
        total_steps = min(cfg.max_steps or 10**12, n_windows * cfg.epochs)
        report = TrainReport(config=cfg, notes=why + [f"DistributedDataParallel: {world} processes "
                                                      f"({'nccl' if use_cuda else 'gloo'}), {L:,} tokens each"])
        report.device = str(device)
        best = BestWeights(cfg.patience)
        step = tokens = 0
        t0 = time.perf_counter()
        report.stop_reason = "finished"
        for epoch in range(1, cfg.epochs + 1):
            ddp.train()
            state = None
            epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
            n_win = 0
            for x, y in windows(train_data, cfg.seq_len):
                lr = _lr_at(step, total_steps, cfg)
                loss, state = train_step(ddp, net, opts, x, y, state, lr, cfg)
                step += 1
                tokens += y.numel() * world
                epoch_loss += loss.detach().double()
                n_win += 1
                lv = loss.item()
                report.losses.append(lv)
                if not math.isfinite(lv):
                    raise TrainingDiverged(f"training diverged at step {step} (loss {lv}); try a smaller lr "
                                             f"than {cfg.lr}")
                if on_step is not None and rank == 0:
                    el = time.perf_counter() - t0
                    on_step(StepInfo(step, total_steps, epoch, lv, lr, tokens, tokens / el, el))
                if step >= total_steps:
                    report.stop_reason = "max_steps" if cfg.max_steps else "finished"
                    break
            # ---- validation: every rank scores its slice, the sums are all-reduced
            totals = _val_totals(net, val_shard, cfg.seq_len, device)
            loss_sum = torch.stack([epoch_loss, torch.tensor(float(n_win), dtype=torch.float64, device=device)])
            dist.all_reduce(totals)
            dist.all_reduce(loss_sum)
            val_ppl = math.exp(min(float(totals[0] / totals[1]), 50.0)) if totals[1] > 0 else math.inf
            el = time.perf_counter() - t0
            better = best.update(net, epoch, val_ppl)
            if better:
                report.best_epoch = epoch
            info = EpochInfo(epoch, float(loss_sum[0] / max(float(loss_sum[1]), 1.0)), val_ppl, lr, tokens,
                             tokens / el, el, better)
            report.history.append(info)
            if on_epoch is not None and rank == 0:
                on_epoch(info)
            if report.stop_reason != "finished":
                break
            if best.patience_spent:
                report.stop_reason = "early stop"
                break
        best.restore(net)
        net.eval()
        report.steps, report.tokens_seen = step, tokens
        report.elapsed = time.perf_counter() - t0
        report.best_val_ppl = best.best_ppl
        shards: List[Any] = [None] * world
        dist.all_gather_object(shards, {"rank": rank, "start": int(start), "stop": int(stop),
                                        "fingerprint": _fingerprint(shard), "first_loss": report.losses[0],
                                        "last_loss": report.losses[-1]})
        meta = {
            "rows": corpus.stats.rows, "missing": corpus.stats.missing, "tokens": corpus.stats.train_tokens,
            "val_tokens": corpus.stats.val_tokens, "unk_tokens": corpus.stats.unk_tokens,
            "tokens_seen": tokens, "epochs_trained": len(report.history), "val_ppl": report.best_val_ppl,
            "seed": cfg.seed, "fingerprint": corpus.fingerprint,
            "elapsed": round(time.perf_counter() - t_start, 3), "train_elapsed": round(report.elapsed, 3),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": 1, "interrupted": False,
            "precision": "fp32", "history": [[e.epoch, e.train_loss, e.val_ppl] for e in report.history],
            "ddp": {"world_size": world, "backend": "nccl" if use_cuda else "gloo", "shards": shards},
        }
        model = LanguageModel(net.cpu(), tokenizer, cfg, meta, report)
        return model
    finally:
        if own_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def cli_train(args: Any, train_kwargs: dict, data: Any) -> int:
    """The ``lm-magics train`` path under torchrun: train with DDP; rank 0 saves and prints the summary."""
    rank = int(os.environ.get("RANK", "0"))
    progress = None
    if rank == 0 and not args.quiet:
        from ..progress import TrainProgress

        progress = TrainProgress(file=sys.stderr)
    try:
        model = train_ddp(data, on_step=progress and progress.on_step, on_epoch=progress and progress.on_epoch,
                          **train_kwargs)
    finally:
        if progress is not None:
            progress.close()
    for s in model.meta["ddp"]["shards"]:
        if s["rank"] == rank:
            print(f"[rank {rank}/{model.meta['ddp']['world_size']}] shard tokens [{s['start']}, {s['stop']}) "
                  f"fingerprint {s['fingerprint']} loss {s['first_loss']:.3f} -> {s['last_loss']:.3f}",
                  file=sys.stderr, flush=True)
    if rank == 0:
        from ..display import TrainSummary

        model.save(args.output)
        print(repr(TrainSummary(args.output, model)))
        print(f"saved {args.output}")
    return 0


def cli_args(args: Any) -> List[str]:
    """Rebuild the ``train`` arguments for the torchrun children (everything but --nproc)."""
    from ..config import given

    out = ["train", *args.files, "-o", args.output]
    if args.quiet:
        out.append("--quiet")
    for name, value in given(args, TrainConfig).items():
        out += ["--" + name.replace("_", "-"), str(value)]
    return out
