"""Shared fixtures of the widget tests: two tiny models on a registry, and a view of the panel's buttons."""

from __future__ import annotations

import pytest

import lm_magics as lm
from lm_magics.registry import ModelRegistry

TEXT = "\n".join([
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog are friends .",
    "the bird sang in the tree .",
    "the cat saw the bird in the tree .",
    "a dog ran to the park .",
    "the mat was red and the log was brown .",
    "birds and cats and dogs play in the park .",
] * 4)
TINY = dict(epochs=2, hidden_dim=32, embed_dim=16, seed=0)


@pytest.fixture(scope="module")
def model():
    return lm.train(TEXT, **TINY)


@pytest.fixture(scope="module")
def other():
    return lm.train(TEXT.replace("cat", "fox"), **TINY)


@pytest.fixture
def reg(model, other):
    r = ModelRegistry()
    r.set("other", other)
    r.set("pets", model)          # the default
    return r


def visible(panel):
    return [b.description for b in panel.buttons if b.layout.display != "none"]
