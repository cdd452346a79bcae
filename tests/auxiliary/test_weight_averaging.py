"""WeightAveraging / EMAWeightAveraging: the average equals a hand-written AveragedModel loop bit for bit,
validation sees it, checkpoints hold it, and a resumed run ends equal to an uninterrupted one."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_avg_fn

from auxiliary import EMAWeightAveraging, WeightAveraging
from engineering import MisconfigurationError, ModelCheckpoint, Trainer
from engineering.checkpointing.checkpoint import load_checkpoint
from tests.auxiliary.resuming import assert_same_weights, resumed_equals_uninterrupted
from tests.helpers import QUIET, TinyModule, tiny_loader

EPOCHS = 3  # 4 batches of 16 per epoch


class Recording(TinyModule):
    """Remembers the weights each validation pass ran with."""

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(lr=0.1)
        self.validated_with: list[torch.Tensor] = []

    def validation_step(self, batch, batch_idx):
        if batch_idx == 0:
            self.validated_with.append(self.layer.weight.detach().clone())


def hand_averaged(average: AveragedModel, model: torch.nn.Module, every: int = 1) -> list[torch.Tensor]:
    """SGD over the same batches, the average updated after optimizer steps 0, every, 2*every, …;
    returns the averaged weight at the end of each epoch."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    at_epoch_end, step = [], 0
    for _ in range(EPOCHS):
        for x, y in tiny_loader():
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            if step % every == 0:
                average.update_parameters(model)
            step += 1
        at_epoch_end.append(average.module.weight.detach().clone())
    return at_epoch_end


def fit(callback: WeightAveraging, root) -> Recording:
    module = Recording()
    trainer = Trainer(max_epochs=EPOCHS, callbacks=[callback], default_root_dir=root, **QUIET)
    trainer.fit(module, tiny_loader(), tiny_loader(samples=16))
    return module


@pytest.mark.parametrize("every", [1, 3])
def test_ema_equals_a_hand_written_averaged_model_loop_bit_for_bit(tmp_path, every):
    reference = copy.deepcopy(Recording().layer)
    expected = hand_averaged(AveragedModel(reference, avg_fn=get_ema_avg_fn(0.9), use_buffers=True), reference, every)
    module = fit(EMAWeightAveraging(decay=0.9, update_every_n_steps=every), tmp_path)
    assert torch.equal(module.layer.weight, expected[-1])  # training ends with the averaged weights
    # each validation pass (the sanity check first) ran on the average of the steps so far
    assert len(module.validated_with) == EPOCHS + 1
    for seen, average in zip(module.validated_with[1:], expected):
        assert torch.equal(seen, average)


def test_plain_weight_averaging_is_the_mean_of_every_step(tmp_path):
    reference = copy.deepcopy(Recording().layer)
    expected = hand_averaged(AveragedModel(reference, use_buffers=True), reference)
    module = fit(WeightAveraging(), tmp_path)
    assert torch.equal(module.layer.weight, expected[-1])


def test_should_update_chooses_when_the_average_moves(tmp_path):
    class EveryEpoch(WeightAveraging):
        def should_update(self, step_idx=None, epoch_idx=None):
            return epoch_idx is not None

    reference = copy.deepcopy(Recording().layer)
    average = AveragedModel(reference, use_buffers=True)
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    for _ in range(EPOCHS):
        for x, y in tiny_loader():
            optimizer.zero_grad()
            F.cross_entropy(reference(x), y).backward()
            optimizer.step()
        average.update_parameters(reference)
    callback = EveryEpoch()
    module = fit(callback, tmp_path)
    assert torch.equal(module.layer.weight, average.module.weight)
    assert int(callback.average_model.n_averaged) == EPOCHS


def test_ema_starting_step_and_epoch():
    ema = EMAWeightAveraging(update_every_n_steps=2, update_starting_at_step=4, update_starting_at_epoch=1)
    assert [step for step in range(10) if ema.should_update(step_idx=step)] == [4, 6, 8]
    assert [epoch for epoch in range(3) if ema.should_update(epoch_idx=epoch)] == [1, 2]
    with pytest.raises(MisconfigurationError, match="decay"):
        EMAWeightAveraging(decay=1.5)


def test_checkpoint_holds_the_average_as_state_dict_and_the_current_weights_beside_it(tmp_path):
    callback = EMAWeightAveraging(decay=0.5)
    module = Recording()
    saver = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", every_n_epochs=1, save_top_k=-1)
    trainer = Trainer(max_epochs=2, callbacks=[callback, saver], default_root_dir=tmp_path,
                      **{**QUIET, "enable_checkpointing": True})
    trainer.fit(module, tiny_loader(), tiny_loader(samples=16))
    checkpoint = load_checkpoint(tmp_path / "epoch=0.ckpt", "cpu", True)
    average_after_epoch_0 = module.validated_with[1]  # [0] is the sanity check's
    assert torch.equal(checkpoint["state_dict"]["layer.weight"], average_after_epoch_0)
    assert not torch.equal(checkpoint["current_model_state"]["layer.weight"], average_after_epoch_0)
    assert int(checkpoint["averaging_state"]["n_averaged"]) == 4
    # a model loaded for inference gets the averaged weights
    loaded = Recording.load_from_checkpoint(tmp_path / "epoch=0.ckpt")
    assert torch.equal(loaded.layer.weight, average_after_epoch_0)


@pytest.mark.parametrize("make_callback", [lambda: EMAWeightAveraging(decay=0.8), WeightAveraging])
def test_resumed_run_ends_equal_to_the_uninterrupted_one(tmp_path, make_callback):
    whole, resumed = resumed_equals_uninterrupted(
        Recording, lambda: [make_callback()], tiny_loader, tmp_path, step=6, max_epochs=EPOCHS,
    )
    assert_same_weights(whole, resumed)
