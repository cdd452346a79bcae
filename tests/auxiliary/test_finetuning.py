"""BaseFinetuning / BackboneFinetuning: which parameters train and are in the optimizer at each epoch, with which
learning rate; a resumed run gets the same optimizer back."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from auxiliary import BackboneFinetuning, BaseFinetuning
from engineering import Callback, MisconfigurationError, Trainer
from tests.auxiliary.resuming import assert_same_weights, resumed_equals_uninterrupted
from tests.helpers import QUIET, TinyModule, tiny_loader

# Batch norms train while the backbone is frozen (train_bn=True), so they are in the optimizer already when
# the backbone is unfreezed: Lightning warns then, and so does tribus (shown once, below).
pytestmark = pytest.mark.filterwarnings("ignore:2 parameter.s. to unfreeze are already in the optimizer")


class WithBackbone(TinyModule):
    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(lr=0.1)
        self.backbone = nn.Sequential(nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU())
        self.layer = nn.Linear(16, 2)

    def forward(self, x):
        return self.layer(self.backbone(x))

    def configure_optimizers(self):
        return torch.optim.SGD(filter(lambda parameter: parameter.requires_grad, self.parameters()), lr=0.1)


class Snapshot(Callback):
    """After the finetuning callback, at each epoch start: what trains, what the optimizer holds, its lrs."""

    def __init__(self) -> None:
        self.epochs: list[dict] = []

    def on_train_epoch_start(self, trainer, pl_module):
        optimizer = trainer.optimizers[0]
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self.epochs.append({
            "backbone_trains": [p.requires_grad for p in pl_module.backbone.parameters()],
            "backbone_in_optimizer": [id(p) in in_optimizer for p in pl_module.backbone.parameters()],
            "lrs": [group["lr"] for group in optimizer.param_groups],
        })


def test_backbone_unfreezes_into_the_optimizer_at_its_epoch_with_the_documented_lrs(tmp_path):
    snapshot = Snapshot()
    callback = BackboneFinetuning(unfreeze_backbone_at_epoch=1, backbone_initial_ratio_lr=0.1)
    module = WithBackbone()
    frozen_start = [p.detach().clone() for p in module.backbone[0].parameters()]
    trainer = Trainer(max_epochs=4, callbacks=[callback, snapshot], default_root_dir=tmp_path, **QUIET)
    with pytest.warns(RuntimeWarning, match="2 parameter.s. to unfreeze are already in the optimizer"):
        trainer.fit(module, tiny_loader())
    linear, norm = [True, True], [True, True]  # batch norm trains throughout (train_bn=True)
    assert snapshot.epochs[0] == {"backbone_trains": [False, False] + norm,
                                  "backbone_in_optimizer": [False, False] + norm, "lrs": [0.1]}
    # epoch 1: the backbone's linear joins at 0.1 * 0.1; then doubles each epoch, capped at the head's 0.1
    assert [epoch["lrs"] for epoch in snapshot.epochs[1:]] == [[0.1, pytest.approx(0.01)],
                                                              [0.1, pytest.approx(0.02)],
                                                              [0.1, pytest.approx(0.04)]]
    for epoch in snapshot.epochs[1:]:
        assert epoch["backbone_trains"] == linear + norm and epoch["backbone_in_optimizer"] == linear + norm
    assert len(trainer.optimizers[0].param_groups) == 2
    # frozen for epoch 0 only: the first linear moved, but only from epoch 1
    assert not torch.equal(module.backbone[0].weight, frozen_start[0])


def test_should_align_caps_the_backbone_lr_at_the_head_lr(tmp_path):
    snapshot = Snapshot()
    callback = BackboneFinetuning(unfreeze_backbone_at_epoch=0, backbone_initial_lr=0.06)
    Trainer(max_epochs=3, callbacks=[callback, snapshot], default_root_dir=tmp_path, **QUIET).fit(
        WithBackbone(), tiny_loader())
    assert [epoch["lrs"][-1] for epoch in snapshot.epochs] == [0.06, 0.1, 0.1]


class FreezeHeadUntilEpoch2(BaseFinetuning):
    def freeze_before_training(self, pl_module):
        self.freeze(pl_module.layer)

    def finetune_function(self, pl_module, epoch, optimizer):
        if epoch == 2:
            self.unfreeze_and_add_param_group(pl_module.layer, optimizer)


def test_a_custom_finetuning_adds_its_group_with_lr_over_initial_denom(tmp_path):
    class Head(Callback):
        def __init__(self):
            self.trains = []

        def on_train_epoch_start(self, trainer, pl_module):
            self.trains.append(pl_module.layer.weight.requires_grad)

    head = Head()
    trainer = Trainer(max_epochs=3, callbacks=[FreezeHeadUntilEpoch2(), head], default_root_dir=tmp_path, **QUIET)
    trainer.fit(WithBackbone(), tiny_loader())
    assert head.trains == [False, False, True]
    assert trainer.optimizers[0].param_groups[-1]["lr"] == pytest.approx(0.01)  # 0.1 / initial_denom_lr 10


def test_freeze_keeps_batch_norm_training_unless_told():
    backbone = WithBackbone().backbone
    BaseFinetuning.freeze(backbone, train_bn=False)
    assert not any(p.requires_grad for p in backbone.parameters()) and not backbone[1].track_running_stats
    BaseFinetuning.make_trainable(backbone)
    assert all(p.requires_grad for p in backbone.parameters()) and backbone[1].track_running_stats


def test_a_module_without_backbone_is_refused_with_the_fix(tmp_path):
    trainer = Trainer(max_epochs=1, callbacks=[BackboneFinetuning()], **QUIET)
    with pytest.raises(MisconfigurationError, match="self.backbone"):
        trainer.fit(TinyModule(), tiny_loader())


@pytest.mark.parametrize("step", [2, 6, 10])  # frozen; mid-epoch after unfreezing; an epoch later
def test_resumed_run_ends_equal_to_the_uninterrupted_one(tmp_path, step):
    whole, resumed = resumed_equals_uninterrupted(
        WithBackbone, lambda: [BackboneFinetuning(unfreeze_backbone_at_epoch=1)], tiny_loader, tmp_path,
        step=step, max_epochs=4,
    )
    assert_same_weights(whole, resumed)
