"""Memory estimates, checked before anything big is allocated.

A size that cannot fit (``hidden_dim=100_000_000``, ``beam=1_000_000_000``, a model file that claims
60 million words) should be one line that names the size and the fix, not an allocator traceback or a
machine that swaps itself to a halt. So the engine estimates what a step will need from the settings
alone (arithmetic, no allocation) and compares it with what this process may use:

    limit = LM_MAGICS_MEMORY_LIMIT                     if set ("24GB", "512MiB", "2e10" bytes; "off": no check)
          = min(MemAvailable from /proc/meminfo,       the machine's free + reclaimable memory
                cgroup memory.max - its usage)         a container's limit, where there is one
          (+ on a GPU: the device's free memory, torch.cuda.mem_get_info)

The estimates are deliberately rough (within a factor of about 1.5 of the peak measured on CPU): they
are there to refuse what is hopeless, and a user who knows better raises the limit with the variable.
Where no figure can be found (an OS without /proc and without sysconf), nothing is refused.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Type

from ..errors import ConfigError, LMError

__all__ = ["ENV", "parse_size", "fmt_bytes", "fmt_count", "limit", "check", "lstm_parameters", "Estimate",
           "training_estimate", "check_training", "beam_bytes", "effective_beams", "table_beam_bytes", "check_beam",
           "check_count"]

ENV = "LM_MAGICS_MEMORY_LIMIT"
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_UNLIMITED = 1 << 60           # cgroup v1 writes ~2^63 for "no limit"


# ------------------------------------------------------------------------------------------ the limit

def parse_size(text: str) -> Optional[int]:
    """'24GB' / '24G' / '512MiB' / '2e10' -> bytes; 'off', 'none', 'unlimited' or '0' -> None (no check)."""
    t = str(text).strip().lower().replace("_", "").replace(",", "")
    if t in ("off", "none", "unlimited", "no", "0", "inf"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]i?b?|b)?", t)
    if not m or not math.isfinite(float(m.group(1))) or float(m.group(1)) <= 0:
        raise ConfigError(f"{ENV}={text!r} is not a size; use bytes or a unit, e.g. {ENV}=24GB (or 'off').")
    return int(float(m.group(1)) * _UNITS[m.group(2) or ""])


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return None


def _meminfo_available() -> Optional[int]:
    text = _read("/proc/meminfo")
    if text:
        m = re.search(r"^MemAvailable:\s+(\d+)\s*kB", text, re.M)
        if m:
            return int(m.group(1)) * 1024
    try:        # other Unixes: free pages (no page cache counted: conservative)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_available() -> Optional[int]:
    """What the process's cgroup still allows: limit - (usage - reclaimable page cache); None if unlimited."""
    rel = ""
    own = _read("/proc/self/cgroup") or ""
    m = re.search(r"^0::(/.*)$", own, re.M)                       # cgroup v2: 0::/path
    if m:
        rel = m.group(1).strip()
    for folder in dict.fromkeys(["/sys/fs/cgroup" + rel.rstrip("/"), "/sys/fs/cgroup"]):
        limit_text = _read(f"{folder}/memory.max")
        if limit_text is None:
            continue
        if limit_text.strip() == "max":
            return None
        usage = int((_read(f"{folder}/memory.current") or "0").strip() or 0)
        stat = _read(f"{folder}/memory.stat") or ""
        cache = re.search(r"^inactive_file (\d+)", stat, re.M)
        return max(0, int(limit_text) - usage + (int(cache.group(1)) if cache else 0))
    limit_text = _read("/sys/fs/cgroup/memory/memory.limit_in_bytes")   # cgroup v1
    if limit_text and int(limit_text) < _UNLIMITED:
        usage = int((_read("/sys/fs/cgroup/memory/memory.usage_in_bytes") or "0").strip() or 0)
        stat = _read("/sys/fs/cgroup/memory/memory.stat") or ""
        cache = re.search(r"^total_inactive_file (\d+)", stat, re.M)
        return max(0, int(limit_text) - usage + (int(cache.group(1)) if cache else 0))
    return None


def limit(device: "Optional[object]" = None) -> Tuple[Optional[int], str]:
    """(bytes this process may still allocate, where the figure comes from); (None, why) means no check.

    ``device``: a torch.device; for a CUDA device the GPU's free memory is the limit."""
    env = os.environ.get(ENV, "").strip()
    if env:
        n = parse_size(env)
        return n, f"{ENV}={env}"
    if device is not None and getattr(device, "type", None) == "cuda":
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(device)
            return int(free), f"free on {device}"
        except Exception:   # no driver answer: fall through to the host's figure
            pass
    host = _meminfo_available()
    cg = _cgroup_available()
    if cg is not None and (host is None or cg < host):
        return cg, "left under the container's memory limit"
    if host is None:
        return None, "no memory figure on this system"
    return host, "available"


def fmt_bytes(n: float) -> str:
    """1.44e10 -> '14.4 GB' (decimal units, as free(1) -h --si and disk vendors count)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} bytes"


def check(need: int, what: str, fix: str, *, device: "Optional[object]" = None,
          error: Type[LMError] = ConfigError) -> None:
    """Raise ``error`` (one line) when ``need`` bytes are more than this process may use.

    ``what`` says what needs the memory ("training this model"), ``fix`` how to need less."""
    have, source = limit(device)
    if have is None or need <= have:
        return
    raise error(f"{what} needs about {fmt_bytes(need)} of memory, more than the {fmt_bytes(have)} {source}; "
                f"{fix}, or set {ENV} (e.g. {ENV}={_round_up(need)}) if you know it fits.")


def _round_up(n: int) -> str:
    gb = n / 1e9
    return f"{math.ceil(gb * 1.2)}GB" if gb >= 1 else f"{math.ceil(n / 1e6 * 1.2)}MB"


# ------------------------------------------------------------------------------------------ estimates

def lstm_parameters(vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, tie_weights: bool,
                    adaptive: bool, cutoffs: Optional[Sequence[int]] = None) -> Dict[str, int]:
    """Parameter counts of LSTMLanguageModel by part, by arithmetic (matches ``num_parameters()``)."""
    V, E, H, L = vocab_size, embed_dim, hidden_dim, num_layers
    tied = tie_weights and not adaptive
    parts = {"embedding": V * E,
             "lstm": 4 * H * (E + H) + 8 * H + (L - 1) * (4 * H * 2 * H + 8 * H)}
    out_dim = H
    if tied and H != E:
        parts["projection"] = H * E
        out_dim = E
    if adaptive:
        from .model import adaptive_cutoffs

        cuts = list(cutoffs or adaptive_cutoffs(V)) + [V]
        n = out_dim * (cuts[0] + len(cuts) - 1)                       # head: shortlist + one per cluster
        for i in range(len(cuts) - 1):
            hsz = out_dim // (4 ** (i + 1))                             # div_value=4
            n += out_dim * hsz + hsz * (cuts[i + 1] - cuts[i])
        parts["output"] = n
    else:
        parts["output"] = V + (0 if tied else V * out_dim)              # bias (+ weights unless tied)
    return parts


@dataclass
class Estimate:
    """Bytes a training run will allocate, by kind, and the option that drives the largest part."""

    parameters: int
    parts: Dict[str, int]
    culprit: str

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        shown = ", ".join(f"{k} {fmt_bytes(v)}" for k, v in self.parts.items() if v >= 0.05 * self.total)
        return f"{fmt_count(self.parameters)} parameters: {shown}"


def fmt_count(n: int) -> str:
    """3_609_960_000 -> '3.6 billion', 156_075 -> '156,075'."""
    if n >= 10**9:
        return f"{n / 1e9:,.1f} billion"
    if n >= 10**6:
        return f"{n / 1e6:,.1f} million"
    return f"{n:,}"


def check_training(est: Estimate, device: "Optional[object]" = None, what: str = "Training this model",
                   processes: int = 1) -> None:
    """Refuse a training run whose estimate does not fit. On a GPU the host holds the weights while the
    network is built and the device holds the rest; ``processes`` ranks share one host's memory."""
    fix = f"use a smaller {est.culprit}"
    if device is not None and getattr(device, "type", None) == "cuda":
        check(processes * (est.parts["weights"] + est.parts.get("token ids", 0)),
              f"{what} (its weights, built on the host first)", fix)
        check(est.total, f"{what} ({est.describe()})", fix, device=device)
    else:
        check(processes * est.total, f"{what} ({est.describe()}{f', x{processes} processes' if processes > 1 else ''})",
              fix)


def training_estimate(vocab_size: int, embed_dim: int, hidden_dim: int, num_layers: int, tie_weights: bool,
                      adaptive: bool, batch_size: int, seq_len: int, optimizer: str = "adamw",
                      keep_original: bool = False, tokens: int = 0) -> Estimate:
    """Peak bytes of ``fit`` for these sizes (float32): weights, gradients, optimizer state, the best-epoch
    snapshot, activations kept for backward, and the batched token ids.

    ``keep_original``: continuing a model trains a copy, so its weights count twice."""
    V, E, H, L, T, B = vocab_size, embed_dim, hidden_dim, num_layers, seq_len, batch_size
    by_part = lstm_parameters(V, E, H, L, tie_weights, adaptive)
    P = sum(by_part.values())
    out_dim = E if (tie_weights and not adaptive and H != E) else H
    # Logits over the vocabulary (their log-softmax and gradient too) for every token of a window; the
    # adaptive softmax computes the head (2,000 words + clusters) for all and a tail for a few.
    width = min(V, 2_000 + 2) + V // 8 if adaptive else V
    per_token = 3 * width + 2 * E + 2 * out_dim + 10 * H * L           # floats kept for backward
    parts = {
        "weights": 4 * P * (2 if keep_original else 1),
        "gradients": 4 * P,
        "optimizer state": 0 if optimizer == "sgd" else 8 * P,   # 'auto' may become AdamW
        "best-epoch copy": 4 * P,
        "working copies": 4 * P,                                          # clipping, fused-optimizer temporaries
        "activations": 2 * 4 * T * B * per_token,                        # forward + their gradients
        "token ids": 8 * tokens,
    }
    # What a user changes to need less: the part of the network (or the batch) that dominates.
    drivers = {"hidden_dim": by_part["lstm"] + by_part.get("projection", 0),
               "embed_dim or max_vocab": by_part["embedding"] + by_part["output"],
               "batch_size or seq_len": parts["activations"] // 20}
    culprit = max(drivers, key=drivers.get)
    if culprit == "hidden_dim" and L > 1:
        culprit = "hidden_dim or num_layers"
    return Estimate(P, {k: v for k, v in parts.items() if v}, culprit)


def effective_beams(beam: int, vocab_size: int, n_words: int) -> int:
    """How many beams a search can actually hold: at most V^n continuations of n tokens."""
    reach = 1
    for _ in range(max(1, n_words)):
        reach *= max(1, vocab_size)
        if reach >= beam:
            return beam
    return reach


def beam_bytes(beam: int, vocab_size: int, n_words: int, hidden_dim: int, num_layers: int, out_dim: int) -> int:
    """Peak bytes of beam search: per step, a (beams, V) block of log-probabilities in a few copies
    (scores, their sum with the beams', the top-k), the LSTM state, and each beam's token list."""
    b = effective_beams(beam, vocab_size, n_words)
    return b * (4 * 7 * vocab_size + 4 * (6 * num_layers * hidden_dim + 2 * out_dim) + 200 + 8 * n_words)


def table_beam_bytes(beam: int, vocab_size: int, n_words: int, lstm: Optional[Tuple[int, int, int]] = None) -> int:
    """Peak bytes of beam search over a table model (an n-gram, or a mixture with an LSTM): per step a
    (beams, V) block of float64 log-probabilities in a few copies (stacked, summed with the beams'
    scores, the top-k), each beam's token list and Python bookkeeping, and for a mixture the LSTM's own
    per-beam block and state (``lstm`` = (hidden_dim, num_layers, out_dim))."""
    b = effective_beams(beam, vocab_size, n_words)
    per_beam = 8 * 3 * vocab_size + 300 + 16 * n_words
    if lstm is not None:
        h, layers, out_dim = lstm
        per_beam += 4 * 2 * vocab_size + 4 * (6 * layers * h + 2 * out_dim)
    return b * per_beam


def check_beam(beam: int, vocab_size: int, n_words: int, lstm: Optional[Tuple[int, int, int]] = None,
               device: "Optional[object]" = None) -> None:
    """Refuse, before the search starts, a beam whose blocks cannot fit (every model kind)."""
    check(table_beam_bytes(beam, vocab_size, n_words, lstm), f"Beam search with beam={beam:,} over {vocab_size:,} words", "use a smaller beam (4 to 10 is "
          "usual)", device=device)


def check_count(count: int, item_bytes: int, what: str, *, error: Type[LMError] = ConfigError) -> None:
    """Refuse an allocation of ``count`` items a file or a user declared, before it is made: ``what``
    says whose claim it is ("n-gram vocabulary of 200,000,000 words in model.lm")."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise error(f"{what}: {count!r} is not a count")
    check(count * item_bytes, what, "check where the number comes from", error=error)
