"""config.py: the one place options are named and checked, and the environment's precision override."""

from __future__ import annotations

import pytest
import torch

import lm_magics as lm
from lm_magics.config import PRECISION_ENV, TrainConfig, precision_override
from lm_magics.engine.training import use_bf16

CPU = torch.device("cpu")


@pytest.mark.parametrize("asked", ["auto", "bf16", "fp32"])
def test_env_fp32_overrides_every_precision(monkeypatch, asked):
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert use_bf16(TrainConfig(precision=asked), CPU) is False


@pytest.mark.parametrize("asked", ["auto", "fp32"])
def test_env_bf16_overrides_every_precision(monkeypatch, asked):
    monkeypatch.setenv(PRECISION_ENV, " BF16 ")
    assert use_bf16(TrainConfig(precision=asked), CPU) is True


def test_without_the_env_the_argument_decides(monkeypatch):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    assert precision_override() is None
    assert use_bf16(TrainConfig(precision="bf16"), CPU) is True
    assert use_bf16(TrainConfig(precision="fp32"), CPU) is False


def test_a_bad_env_value_is_one_line_that_names_the_variable(monkeypatch, tiny_text):
    monkeypatch.setenv(PRECISION_ENV, "fp16")
    with pytest.raises(lm.ConfigError, match=f"{PRECISION_ENV}='fp16'.*fp32") as info:
        lm.train(tiny_text, hidden_dim=8, embed_dim=8, epochs=1, seed=0)
    assert "\n" not in str(info.value)


def test_the_report_says_the_env_decided(monkeypatch, tiny_text):
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    m = lm.train(tiny_text, hidden_dim=8, embed_dim=8, epochs=1, seed=0, precision="bf16")
    assert m.report.precision == "fp32"
    assert any(PRECISION_ENV in note for note in m.report.notes)


def test_auto_precision_is_a_fixed_rule_of_hardware_and_network_size(monkeypatch):
    # Same machine and shape -> same choice, every time (no timing probe); small networks stay in fp32,
    # where bf16 measured slower; the data-sized defaults' tiers get bf16 where the CPU has it natively.
    from lm_magics.engine import training

    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.setattr(training, "_bf16_ok", lambda device: True)
    small = TrainConfig(hidden_dim=32, batch_size=64)
    narrow = TrainConfig(hidden_dim=64, batch_size=4)
    marginal = TrainConfig(hidden_dim=200, batch_size=5)         # 1,000 units x streams: within a few %
    cell = TrainConfig(hidden_dim=200, batch_size=16)
    edge = TrainConfig(hidden_dim=64, batch_size=16)
    big = TrainConfig(hidden_dim=512, batch_size=64, num_layers=2)
    assert [use_bf16(c, CPU) for c in (small, narrow, marginal, cell, edge, big)] == [False, False, False, True,
                                                                                     True, True]
    assert all(use_bf16(cell, CPU) for _ in range(5))
    assert use_bf16(TrainConfig(hidden_dim=32, precision="bf16"), CPU) is True      # asked for: given
    monkeypatch.setattr(training, "_bf16_ok", lambda device: False)
    assert use_bf16(big, CPU) is False                                               # no native bf16
