"""registry.py: the session's models by name, the default model, observers, one registry per shell."""

from __future__ import annotations

import pytest

from lm_magics.errors import ModelNotFoundError
from lm_magics.registry import ModelRegistry, get_registry


class Dummy:
    """Stands in for a LanguageModel: the registry only stores and hands back objects."""


def test_empty_registry_says_how_to_get_a_model():
    reg = ModelRegistry()
    with pytest.raises(ModelNotFoundError, match="No model in this session yet.*%%lm_train"):
        reg.get()


def test_the_last_set_model_is_the_default_unless_asked_otherwise():
    reg, a, b = ModelRegistry(), Dummy(), Dummy()
    reg.set("a", a)
    reg.set("b", b, make_default=False)
    assert reg.get() is a and reg.resolve() == "a" and reg.get("b") is b
    reg.use("b")
    assert reg.get() is b
    assert reg.names() == ["a", "b"] and len(reg) == 2 and "a" in reg


def test_unknown_names_list_what_exists():
    reg = ModelRegistry()
    reg.set("pets", Dummy())
    with pytest.raises(ModelNotFoundError, match=r"No model named 'nope' \(models: 'pets'\)"):
        reg.get("nope")
    with pytest.raises(ModelNotFoundError):
        reg.use("nope")
    assert reg.default == "pets"          # a failed use leaves the default alone


def test_dropping_the_default_moves_it_to_another_model():
    reg = ModelRegistry()
    reg.set("a", Dummy())
    reg.set("b", Dummy())
    reg.drop("b")
    assert reg.default == "a"
    reg.drop("a")
    assert reg.default is None and reg.names() == []
    with pytest.raises(ModelNotFoundError):
        reg.drop("a")


def test_observers_see_every_change_until_they_unsubscribe():
    reg, seen = ModelRegistry(), []
    unsubscribe = reg.observe(lambda name, model: seen.append((name, model is not None)))
    reg.set("a", Dummy())
    reg.drop("a")
    unsubscribe()
    reg.set("b", Dummy())
    assert seen == [("a", True), ("a", False)]


def test_each_shell_has_its_own_registry():
    class Shell:
        pass

    one, two = Shell(), Shell()
    assert get_registry(one) is get_registry(one)
    assert get_registry(one) is not get_registry(two)
    assert get_registry() is get_registry(None)
