"""The bus contracts (DESIGN.md §2): order, isolation between Trainers, ownership, signatures, errors."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, ModelCheckpoint, Trainer, events
from engineering.bus.event import ignores
from research import LightningModule
from tests.helpers import TinyModule, tiny_loader

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def loader(batches: int = 2) -> DataLoader:
    inputs = torch.randn(batches * 2, 4, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(inputs), batch_size=2)


class Tiny(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 1)
        self.steps = 0

    def training_step(self, batch, batch_idx):
        self.steps += 1
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(tmp_path, callbacks=(), batches: int = 2) -> Trainer:
    return Trainer(
        max_epochs=1, limit_train_batches=batches, callbacks=list(callbacks), default_root_dir=tmp_path, **QUIET
    )


def connected() -> dict[str, int]:
    return {name: len(event.receivers) for name, event in events.bus.items() if event.receivers}


# -------------------------------------------------------------------------------------------------
# Order
# -------------------------------------------------------------------------------------------------
class AppendsIndex(Callback):
    def __init__(self, index: int, seen: list[int]) -> None:
        self.index, self.seen = index, seen

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.seen.append(self.index)


def test_receivers_run_in_the_order_they_were_attached(tmp_path):
    """blinker's own receiver set is unordered; more than eight receivers would expose it."""
    seen: list[int] = []
    order = [7, 0, 11, 3, 9, 1, 10, 5, 2, 8, 4, 6]
    trainer(tmp_path, [AppendsIndex(index, seen) for index in order]).fit(Tiny(), loader())

    assert seen == order * 2


# -------------------------------------------------------------------------------------------------
# Two Trainers in one process
# -------------------------------------------------------------------------------------------------
class CountsBatches(Callback):
    def __init__(self) -> None:
        self.trainers: list[Trainer] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.trainers.append(trainer)


def test_two_trainers_never_hear_each_other(tmp_path):
    """Trainer B runs to completion inside Trainer A's fit, while both have subscribers connected."""
    heard_by_b = CountsBatches()
    trainer_b = trainer(tmp_path / "b", [heard_by_b], batches=3)

    class RunsTrainerB(CountsBatches):
        def on_train_start(self, trainer, pl_module):
            trainer_b.fit(Tiny(), loader(3))

    heard_by_a = RunsTrainerB()
    trainer_a = trainer(tmp_path / "a", [heard_by_a], batches=2)
    raw_senders: list[object] = []

    def raw_receiver(sender, **payload):
        raw_senders.append(sender)

    events.on_train_batch_end.connect(raw_receiver, sender=trainer_a)
    try:
        trainer_a.fit(Tiny(), loader(2))
    finally:
        events.on_train_batch_end.disconnect(raw_receiver)

    assert heard_by_a.trainers == [trainer_a, trainer_a]
    assert heard_by_b.trainers == [trainer_b, trainer_b, trainer_b]
    assert raw_senders == [trainer_a, trainer_a]


# -------------------------------------------------------------------------------------------------
# Subscription and ownership
# -------------------------------------------------------------------------------------------------
def test_a_callback_subscribes_only_the_hooks_it_overrides(tmp_path):
    during_fit: list[dict[str, int]] = []

    class OnlyBatchEnd(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            during_fit.append(connected())

    trainer(tmp_path, [OnlyBatchEnd()]).fit(Tiny(), loader())

    assert during_fit == [{"on_train_batch_end": 1}] * 2


def test_nothing_stays_connected_or_alive_after_fit_returns(tmp_path):
    model = Tiny()  # the module holds only a weak reference to its trainer
    run = trainer(tmp_path, [CountsBatches()])
    run.fit(model, loader())

    assert connected() == {}
    trainer_ref = weakref.ref(run)
    del run
    gc.collect()
    assert trainer_ref() is None
    assert not model.has_trainer


def test_nothing_stays_connected_or_alive_after_fit_raises(tmp_path):
    class Fails(Tiny):
        def training_step(self, batch, batch_idx):
            raise RuntimeError("training_step failed")

    model = Fails()
    run = trainer(tmp_path, [CountsBatches()])
    try:
        run.fit(model, loader())
    except RuntimeError as error:  # not pytest.raises: its traceback would keep the trainer's frames alive
        message = str(error)
    else:
        pytest.fail("fit did not raise")

    assert message == "training_step failed"
    assert connected() == {}
    trainer_ref = weakref.ref(run)
    del run
    gc.collect()
    assert trainer_ref() is None


# -------------------------------------------------------------------------------------------------
# Signatures are checked when fit starts
# -------------------------------------------------------------------------------------------------
def test_a_hook_with_a_wrong_signature_is_rejected_when_fit_starts(tmp_path):
    class ForgetsPlModule(Callback):
        def on_train_end(self, trainer):  # fires only after training; the check must come first
            pass

    model = Tiny()
    with pytest.raises(TypeError, match="on_train_end"):
        trainer(tmp_path, [ForgetsPlModule()]).fit(model, loader())
    assert model.steps == 0


# -------------------------------------------------------------------------------------------------
# Errors in subscribers
# -------------------------------------------------------------------------------------------------
def test_an_error_in_a_subscriber_propagates_after_on_exception(tmp_path):
    seen: list[str] = []
    raised = ValueError("boom")

    class Raises(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(f"on_train_batch_end {batch_idx}")
            raise raised

    class Watches(Callback):
        def on_exception(self, trainer, pl_module, exception):
            seen.append("on_exception")
            assert exception is raised

        def teardown(self, trainer, pl_module, stage):
            seen.append(f"teardown {stage}")

    model = Tiny()
    with pytest.raises(ValueError, match="boom") as caught:
        trainer(tmp_path, [Raises(), Watches()]).fit(model, loader())

    assert caught.value is raised
    assert seen == ["on_train_batch_end 0", "on_exception", "teardown fit"]
    assert model.steps == 1  # training stopped at the failing receiver


# -------------------------------------------------------------------------------------------------
# Payloads
# -------------------------------------------------------------------------------------------------
class RemembersBatches(Tiny):
    def __init__(self) -> None:
        super().__init__()
        self.batches: list[object] = []

    def training_step(self, batch, batch_idx):
        self.batches.append(batch)
        return super().training_step(batch, batch_idx)


def test_a_raw_blinker_receiver_gets_the_payload_by_name(tmp_path):
    model = RemembersBatches()
    run = trainer(tmp_path)
    received: list[tuple[object, dict]] = []

    def receiver(sender, **payload):
        received.append((sender, payload))

    events.on_train_batch_end.connect(receiver, sender=run)
    try:
        run.fit(model, loader())
    finally:
        events.on_train_batch_end.disconnect(receiver)

    assert [sender for sender, _ in received] == [run, run]
    for batch_idx, (_, payload) in enumerate(received):
        assert set(payload) == {"pl_module", "outputs", "batch", "batch_idx"}
        assert payload["pl_module"] is model
        assert payload["batch_idx"] == batch_idx
        assert payload["batch"] is model.batches[batch_idx]
        assert payload["outputs"] is not None


def test_on_train_batch_end_outputs_are_lightnings_loss_dict(tmp_path):
    """Lightning hands on_train_batch_end ``{"loss": detached loss}`` when training_step returns a tensor,
    so a Lightning callback reading ``outputs["loss"]`` runs unchanged."""
    returned: list[torch.Tensor] = []
    outputs_seen: list[object] = []

    class Remembers(Tiny):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            returned.append(loss)
            return loss

    class ReadsLoss(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            outputs_seen.append(outputs)

    trainer(tmp_path, [ReadsLoss()]).fit(Remembers(), loader())

    assert len(outputs_seen) == 2
    for outputs, loss in zip(outputs_seen, returned):
        assert isinstance(outputs, dict) and set(outputs) == {"loss"}
        assert torch.equal(outputs["loss"], loss.detach())
        assert not outputs["loss"].requires_grad


class IgnoresOutputs(Callback):
    def __init__(self) -> None:
        self.outputs_seen: list[object] = []

    @ignores("outputs")
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.outputs_seen.append(outputs)


class ReadsOutputs(IgnoresOutputs):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # an override reads them again
        self.outputs_seen.append(outputs)


def test_outputs_are_built_only_when_a_hook_of_on_train_batch_end_may_read_them(tmp_path, monkeypatch):
    """The detached loss dict costs a tensor per batch: with only hooks marked ``ignores("outputs")`` (the
    progress bar's, ModelCheckpoint's, ...) it is not built and they get None; any other hook gets it, and
    with it every hook."""
    detaches = []
    real_detach = torch.Tensor.detach
    monkeypatch.setattr(torch.Tensor, "detach", lambda self: detaches.append(1) or real_detach(self))

    alone = IgnoresOutputs()
    trainer(tmp_path, [alone]).fit(Tiny(), loader())
    assert alone.outputs_seen == [None, None]
    assert not detaches  # the module logs nothing: a detach would be the outputs'

    marked, reading = IgnoresOutputs(), ReadsOutputs()
    trainer(tmp_path, [marked, reading]).fit(Tiny(), loader())
    for seen in (marked.outputs_seen, reading.outputs_seen):
        assert [set(outputs) for outputs in seen] == [{"loss"}, {"loss"}]

    class HookedModule(Tiny):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.last_outputs = outputs

    model, marked = HookedModule(), IgnoresOutputs()
    trainer(tmp_path, [marked]).fit(model, loader())
    assert set(model.last_outputs) == {"loss"} and marked.outputs_seen[-1] is model.last_outputs


def test_a_receiver_connected_during_the_epoch_gets_the_outputs_from_its_first_batch(tmp_path):
    received: list[object] = []

    def receiver(sender, **payload):
        received.append(payload["outputs"])

    class ConnectsAfterTheFirstBatch(IgnoresOutputs):
        @ignores("outputs")
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            if batch_idx == 0:
                events.on_train_batch_end.connect(receiver, sender=trainer)

    alone = ConnectsAfterTheFirstBatch()
    try:
        trainer(tmp_path, [alone], batches=3).fit(Tiny(), loader(3))
    finally:
        events.on_train_batch_end.disconnect(receiver)
    assert alone.outputs_seen[0] is None
    assert [set(outputs) for outputs in alone.outputs_seen[1:]] == [{"loss"}, {"loss"}]
    assert [set(outputs) for outputs in received] == [{"loss"}, {"loss"}]


def test_a_mock_connected_to_the_bus_counts_as_reading_the_whole_payload():
    from unittest import mock

    receiver = mock.Mock()
    events.on_train_batch_end.connect(receiver)
    try:
        assert events.on_train_batch_end.unread_by_receivers_of(None) == frozenset()
    finally:
        events.on_train_batch_end.disconnect(receiver)


def test_an_event_can_be_sent_from_a_sender_that_cannot_be_weakly_referenced():
    heard = []

    def receiver(sender, **payload):
        heard.append((sender, payload))

    events.on_fit_start.connect(receiver)
    try:
        events.on_fit_start.send(None, value=1)
        events.on_fit_start.send(None, value=2)
    finally:
        events.on_fit_start.disconnect(receiver)
    assert heard == [(None, {"value": 1}), (None, {"value": 2})]


def test_a_callback_can_leave_an_overridden_hook_unsubscribed_for_a_run(tmp_path):
    class PerEpochOnly(Callback):
        def __init__(self, per_batch: bool) -> None:
            self.per_batch, self.calls = per_batch, []

        def listens_to(self, hook):
            return hook != "on_train_batch_end" or self.per_batch

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.calls.append(batch_idx)

        def on_train_epoch_end(self, trainer, pl_module):
            self.calls.append("epoch end")
            self.batch_end_listeners = len(list(events.on_train_batch_end.receivers_for(trainer)))

    quiet, chatty = PerEpochOnly(per_batch=False), PerEpochOnly(per_batch=True)
    Trainer(max_epochs=1, limit_train_batches=2, default_root_dir=tmp_path, callbacks=[quiet, chatty],
            **QUIET).fit(TinyModule(), tiny_loader())
    assert quiet.calls == ["epoch end"] and chatty.calls == [0, 1, "epoch end"]
    assert quiet.batch_end_listeners == 1


def test_model_checkpoint_listens_per_batch_only_when_it_saves_within_epochs():
    assert not ModelCheckpoint().listens_to("on_train_batch_end")
    assert ModelCheckpoint().listens_to("on_train_epoch_end")
    assert ModelCheckpoint(every_n_train_steps=5).listens_to("on_train_batch_end")


def test_inside_blinkers_muted_the_subscribers_hear_nothing_and_the_module_still_runs(tmp_path):
    heard, module_calls = [], []

    class Listener(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            heard.append(batch_idx)

    class Counting(TinyModule):
        def on_train_batch_end(self, outputs, batch, batch_idx):
            module_calls.append(batch_idx)

    with events.on_train_batch_end.muted():
        Trainer(max_epochs=1, callbacks=[Listener()], default_root_dir=tmp_path, **QUIET).fit(Counting(), tiny_loader())
    assert heard == []
    assert module_calls == list(range(len(tiny_loader())))


def test_the_event_table_is_the_one_list_of_hooks_callback_and_lightning_module_follow():
    import inspect

    for name, event in events.HOOK_EVENTS.items():
        callback_parameters = list(inspect.signature(getattr(Callback, name)).parameters)
        assert callback_parameters == ["self", "trainer", "pl_module", *event.payload], name
        if name in ("on_sanity_check_start", "on_sanity_check_end", "on_exception"):  # callbacks only, as in Lightning
            assert not hasattr(LightningModule, name)
            continue
        module_parameters = list(inspect.signature(getattr(LightningModule, name)).parameters)
        assert module_parameters == ["self", *event.payload], name
