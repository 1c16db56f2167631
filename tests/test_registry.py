"""registry.py: the session's models by name, the default model, observers, one registry per shell."""

from __future__ import annotations

import pytest

from lm_magics.errors import ModelNotFoundError
from lm_magics.registry import ModelRegistry, derived_name, get_registry


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


def test_an_interrupted_result_never_replaces_a_model_that_has_the_name():
    reg, good, cut, again, seen = ModelRegistry(), Dummy(), Dummy(), Dummy(), []
    reg.set("good", good)
    reg.set("other", Dummy(), make_default=False)
    reg.observe(lambda name, model: seen.append(name))
    assert reg.set("good", cut, replace=False) == "good_interrupted"
    assert reg.set("good", again, replace=False) == "good_interrupted2"
    assert reg.get("good") is good and reg.get("good_interrupted") is cut and reg.get("good_interrupted2") is again
    assert reg.default == "good" and seen == ["good_interrupted", "good_interrupted2"]   # good's followers stay
    assert reg.set("new", cut, replace=False) == "new" and reg.default == "new"       # a new name: as before


def test_derived_names_number_on_until_one_is_free():
    taken = {"m.interrupted.lm", "m.interrupted2.lm"}
    assert derived_name(taken.__contains__, "{0}.interrupted{n}{1}", "m", ".lm") == "m.interrupted3.lm"
    assert derived_name(set().__contains__, "{0}_interrupted{n}", "good") == "good_interrupted"
