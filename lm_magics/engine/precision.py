"""Which arithmetic a step runs in: bf16 (autocast / bf16 matmuls) or fp32.

bf16 halves the bytes and, on hardware with native bf16 (AVX-512 BF16 or AMX on CPU, Ampere+ on
CUDA), runs matmuls several times faster with fp32 accumulation. ``$LM_MAGICS_PRECISION`` (see
:func:`lm_magics.config.precision_override`) wins over any ``precision=`` asked for.
"""

from __future__ import annotations

import functools

import torch

from ..config import precision_override

__all__ = ["native_bf16", "scoring_bf16"]


def native_bf16(device: torch.device) -> bool:
    """Does this device run bf16 matmuls natively (not emulated through fp32)?"""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.backends.cpu.get_cpu_capability() in ("AVX512", "AMX") and _cpu_has("avx512_bf16")
    return False


@functools.lru_cache(maxsize=None)    # the CPU does not change under a running process: read cpuinfo once
def _cpu_has(flag: str) -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            return any(flag in line for line in fh if line.startswith("flags"))
    except OSError:
        return False


def scoring_bf16(precision: str, device: torch.device) -> bool:
    """Score with bf16 output-layer matmuls? 'bf16' yes, 'fp32' no, 'auto' where the hardware is native.

    The output layer is most of scoring's work (V x D per token against 4H x (E + H) for the LSTM);
    in bf16 it runs 2-3x faster on an AVX-512 BF16 CPU. The target's logit stays exact, so only the
    normaliser sees bf16 rounding: per-token NLL within ~0.1 nats, a row's perplexity within ~1%
    (median ~0.1%) of fp32 scoring. The LSTM itself always runs in fp32."""
    precision = precision_override() or precision
    return precision == "bf16" or (precision == "auto" and native_bf16(device))
