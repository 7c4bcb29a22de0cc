"""metricloss.textbook: a twin for every public loss, called the same way. (The contract, tests/test_contract.py,
holds every fast loss's value and gradient to its twin on every registered configuration.)"""

import inspect

import pytest

import metricloss
from metricloss import textbook

PUBLIC_LOSSES = sorted(name for name in metricloss.__all__ if name.endswith("_loss"))


def test_every_public_loss_has_a_textbook_twin():
    assert sorted(textbook.__all__) == PUBLIC_LOSSES


@pytest.mark.parametrize("name", PUBLIC_LOSSES)
def test_the_twin_takes_the_same_arguments_with_the_same_defaults_but_backend(name):
    fast = inspect.signature(getattr(metricloss, name)).parameters
    slow = inspect.signature(getattr(textbook, name)).parameters
    expected = [(p.name, p.kind, p.default) for p in fast.values() if p.name != "backend"]
    assert [(p.name, p.kind, p.default) for p in slow.values()] == expected


@pytest.mark.parametrize("name", PUBLIC_LOSSES)
def test_the_fast_loss_points_to_its_twin(name):
    assert f"metricloss.textbook.{name}" in inspect.getdoc(getattr(metricloss, name))
