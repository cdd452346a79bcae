"""ModelPruning: how many weights are pruned when, the lottery-ticket rewind, structured pruning, and checkpoints
that load into an unpruned model."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn.utils import prune

from auxiliary import ModelPruning
from engineering import MisconfigurationError, ModelCheckpoint, Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader


def seeded() -> TinyModule:
    torch.manual_seed(0)
    return TinyModule()  # Linear(32, 2): 64 weights and 2 biases


def fit(module: TinyModule, pruning: ModelPruning, root, epochs: int = 2, **flags) -> Trainer:
    trainer = Trainer(max_epochs=epochs, callbacks=[pruning], default_root_dir=root, **{**QUIET, **flags})
    trainer.fit(module, tiny_loader())
    return trainer


def zeros(module: TinyModule) -> int:
    return int((module.layer.weight == 0).sum() + (module.layer.bias == 0).sum())


def test_global_pruning_each_epoch_then_the_survivors_rewind_to_their_initial_values(tmp_path):
    module = seeded()
    initial = copy.deepcopy(module.layer)
    fit(module, ModelPruning("l1_unstructured", amount=0.5), tmp_path)
    # epoch 0 prunes round(0.5 * 66) = 33, epoch 1 half of the 33 left: round(16.5) = 16
    assert zeros(module) == 49
    survivors = module.layer.weight != 0
    assert torch.equal(module.layer.weight[survivors], initial.weight[survivors])  # the lottery ticket
    assert not hasattr(module.layer, "weight_mask")  # folded in when training ended
    assert isinstance(module.layer.weight, torch.nn.Parameter)


def test_the_same_pruning_by_hand(tmp_path):
    module, reference = seeded(), seeded()
    fit(module, ModelPruning("l1_unstructured", amount=0.5, use_lottery_ticket_hypothesis=False), tmp_path,
        epochs=1)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for x, y in tiny_loader():
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(reference(x), y).backward()
        optimizer.step()
    prune.global_unstructured([(reference.layer, "weight"), (reference.layer, "bias")],
                              pruning_method=prune.L1Unstructured, amount=0.5)
    prune.remove(reference.layer, "weight")
    prune.remove(reference.layer, "bias")
    assert torch.equal(module.layer.weight, reference.layer.weight)
    assert torch.equal(module.layer.bias, reference.layer.bias)


def test_structured_pruning_removes_whole_rows(tmp_path):
    module = seeded()
    pruning = ModelPruning("ln_structured", parameter_names=["weight"], use_global_unstructured=False, amount=1,
                           pruning_dim=0, pruning_norm=1, use_lottery_ticket_hypothesis=False)
    fit(module, pruning, tmp_path, epochs=1)
    rows_zeroed = [bool((row == 0).all()) for row in module.layer.weight]
    assert sorted(rows_zeroed) == [False, True]  # one of the two output rows, the one with the smaller L1 norm
    assert int((module.layer.bias == 0).sum()) == 0


def test_when_and_how_much_follow_the_functions_of_the_epoch(tmp_path, capsys):
    module = seeded()
    pruning = ModelPruning("random_unstructured", amount=lambda epoch: 10, apply_pruning=lambda epoch: epoch == 1,
                           verbose=1)
    fit(module, pruning, tmp_path, epochs=3)
    assert zeros(module) == 10
    assert "Pruned: 0/66 (0.00%) -> 10/66 (15.15%)" in capsys.readouterr().out


def test_checkpoints_hold_plain_pruned_weights(tmp_path):
    module = seeded()
    saver = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", every_n_epochs=1, save_top_k=-1)
    trainer = Trainer(max_epochs=1, callbacks=[ModelPruning("l1_unstructured", amount=0.25), saver],
                      default_root_dir=tmp_path, **{**QUIET, "enable_checkpointing": True})
    trainer.fit(module, tiny_loader())
    loaded = TinyModule.load_from_checkpoint(tmp_path / "epoch=0.ckpt")  # no weight_orig / weight_mask keys
    assert int((loaded.layer.weight == 0).sum() + (loaded.layer.bias == 0).sum()) == round(0.25 * 66)


@pytest.mark.parametrize(("arguments", "message"), [
    (dict(pruning_fn="l2_unstructured"), "is not one of"),
    (dict(pruning_fn="ln_structured", use_global_unstructured=False, pruning_dim=0), "pruning_norm"),
    (dict(pruning_fn="random_structured", use_global_unstructured=False), "pruning_dim"),
    (dict(pruning_fn="random_structured", pruning_dim=0), "use_global_unstructured=False"),
    (dict(pruning_fn=prune.L1Unstructured, use_global_unstructured=False), "use_global_unstructured=True"),
    (dict(pruning_fn="l1_unstructured", parameter_names=["running_mean"]), "prune only"),
])
def test_bad_arguments_are_refused_with_the_fix(arguments, message):
    with pytest.raises(MisconfigurationError, match=message):
        ModelPruning(**arguments)
