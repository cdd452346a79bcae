"""save_hyperparameters called from a helper method and along a subclass chain records Lightning 2.6.6's keys
(each expected dict was printed by Lightning for the same classes)."""

from __future__ import annotations

from research import LightningModule


class FromHelper(LightningModule):
    def __init__(self, a=1, b="x"):
        super().__init__()
        self._init_hparams()

    def _init_hparams(self):
        self.save_hyperparameters()


class FromHelperWithArguments(LightningModule):
    def __init__(self, a=1, net=None):
        super().__init__()
        self._set_up(extra=5)

    def _set_up(self, extra):
        self.save_hyperparameters(ignore=["net"])


class FromNestedHelpers(LightningModule):
    def __init__(self, a=1):
        super().__init__()
        self._outer()

    def _outer(self):
        self._inner(q=2)

    def _inner(self, q):
        self.save_hyperparameters()


class Base(LightningModule):
    def __init__(self, a=1, b=2):
        super().__init__()
        self.save_hyperparameters()


class Child(Base):
    def __init__(self, c=3, **kwargs):
        super().__init__(**kwargs)
        self.save_hyperparameters()


class ChildPassingValues(Base):
    def __init__(self, c=3, a=10):
        super().__init__(a=a, b=20)
        self.save_hyperparameters()


class GrandChild(Child):
    def __init__(self, d=4, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.save_hyperparameters()


def recorded(module):
    return list(module.hparams.items()), list(module.hparams_initial.items())


def test_a_helper_method_records_the_arguments_of_the_init_that_called_it():
    assert recorded(FromHelper()) == ([("a", 1), ("b", "x")],) * 2
    assert recorded(FromHelper(2, b="y")) == ([("a", 2), ("b", "y")],) * 2
    assert recorded(FromHelperWithArguments(net=3)) == ([("a", 1)],) * 2
    assert recorded(FromNestedHelpers(a=3)) == ([("a", 3)],) * 2


def test_each_init_of_a_chain_adds_to_what_the_base_recorded():
    assert recorded(Child(c=5, a=7)) == ([("a", 7), ("b", 2), ("c", 5)],) * 2
    assert recorded(ChildPassingValues()) == ([("a", 10), ("b", 20), ("c", 3)],) * 2
    assert recorded(GrandChild(d=8, c=9, b=1)) == ([("a", 1), ("b", 1), ("c", 9), ("d", 8)],) * 2
