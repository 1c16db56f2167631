"""precision="auto": one training step in fp32 and under bf16 autocast, for every network size the data-sized
defaults choose (each tier at the batch sizes it can get) and a few hand-sized small ones, beside what the
rule in ``engine/training.use_bf16`` picks for it.

Both precisions run in the same process, alternating in rounds, on the same weights and batches; the
figure is the median step time (forward, backward, clipping and the optimizer: ``training.train_step``).
A row marked "auto slower" is one where the rule picks the precision that measured slower by more than
5%: the rule would need to change there. Needs no data (random token ids). On a CPU without native bf16
the rule always picks fp32 and the bf16 column only shows what emulation costs.

    python -m benchmarks.precision [--steps 12] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import machine_line
from lm_magics.config import TrainConfig
from lm_magics.engine.model import build_network, network_hparams
from lm_magics.engine.training import _make_optimizers, auto_config, one_thread_is_enough, train_step, use_bf16

# (label, training tokens that auto_config sizes for, vocabulary)
CASES = [
    ("cell, 300 tokens", 300, 120),
    ("cell, 600 tokens", 600, 200),
    ("cell, 1,500 tokens", 1_500, 400),
    ("cell, 3,000 tokens", 3_000, 800),
    ("cell, 19,000 tokens", 19_000, 2_000),
    ("column, 56k tokens", 56_000, 7_000),
    ("column, 250k tokens", 250_000, 11_000),
    ("WikiText-2 tier", 2_000_000, 33_278),
    ("largest tier", 5_000_000, 33_278),
]
HAND_SIZED = [   # (label, embed, hidden, layers, batch, vocabulary): small networks given by hand
    ("hand-sized", 16, 32, 1, 4, 200),
    ("hand-sized", 32, 64, 1, 8, 300),
    ("hand-sized", 48, 96, 1, 16, 1_000),
]


def fit_threads(cfg: TrainConfig, vocab: int) -> int:
    """The threads ``training.fit`` trains with when none are given: one for tiny networks."""
    return 1 if one_thread_is_enough(cfg.hidden_dim, cfg.batch_size, vocab) else torch.get_num_threads()


def step_ms(cfg: TrainConfig, vocab: int, steps: int, rounds: int, threads: int) -> tuple:
    torch.set_num_threads(threads)
    hparams, _ = network_hparams(cfg, vocab)
    g = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, vocab, (cfg.seq_len + 1, cfg.batch_size), generator=g) for _ in range(4)]
    times = {False: [], True: []}
    nets = {}
    for bf16 in (False, True):
        net = build_network(hparams, seed=0)
        nets[bf16] = (net, _make_optimizers(net, cfg, torch.device("cpu")))
    for _ in range(rounds):
        for bf16 in (False, True):
            net, opts = nets[bf16]
            net.train()
            state = None
            for i in range(steps + 2):
                ids = batches[i % len(batches)]
                t0 = time.perf_counter()
                _, state = train_step(net, net, opts, ids[:-1], ids[1:], state, cfg.lr, cfg, bf16)
                if i >= 2:                                            # the first two warm up
                    times[bf16].append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[False]), 1000 * statistics.median(times[True])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="timed steps per precision per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    print(machine_line())
    print(f"{'network':56s} {'thr':>3s} {'fp32 ms':>8s} {'bf16 ms':>8s} {'bf16/fp32':>9s}  auto picks")
    rows = [(label, auto_config(TrainConfig(), tokens)[0], vocab) for label, tokens, vocab in CASES]
    rows += [(label, auto_config(TrainConfig(embed_dim=e, hidden_dim=h, num_layers=n, batch_size=b), 3_000)[0], vocab)
             for label, e, h, n, b, vocab in HAND_SIZED]
    cores = torch.get_num_threads()
    for label, cfg, vocab in rows:
        torch.set_num_threads(cores)
        threads = fit_threads(cfg, vocab)
        fp32, bf16 = step_ms(cfg, vocab, args.steps, args.rounds, threads)
        pick = use_bf16(cfg.replace(precision="auto"), torch.device("cpu"))
        slower = (bf16 > 1.05 * fp32) if pick else (fp32 > 1.05 * bf16)
        name = f"{label}: {cfg.embed_dim}/{cfg.hidden_dim}/{cfg.num_layers}, batch {cfg.batch_size}, {vocab:,} words"
        print(f"{name:56s} {threads:3d} {fp32:8.2f} {bf16:8.2f} {bf16 / fp32:9.2f}  "
              f"{'bf16' if pick else 'fp32'}{'   <- auto slower' if slower else ''}", flush=True)


if __name__ == "__main__":
    main()
