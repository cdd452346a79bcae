"""``configure_optimizers`` in every form Lightning 2.x accepts, schedulers, and manual optimization."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from engineering import LightningOptimizer, MisconfigurationError, Trainer
from research import LightningModule

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)


def loader(samples: int = 8, batch_size: int = 2) -> DataLoader:
    x = torch.linspace(-1, 1, samples).unsqueeze(1)
    return DataLoader(TensorDataset(x, 3 * x + 1), batch_size=batch_size, shuffle=False)


def trainer(tmp_path, **flags) -> Trainer:
    options = dict(QUIET, default_root_dir=tmp_path, max_epochs=1, num_sanity_val_steps=0)
    options.update(flags)
    return Trainer(**options)


class Regression(LightningModule):
    """``configure`` builds what configure_optimizers returns; the learning rate is read every batch."""

    def __init__(self, configure=None) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.configure = configure
        self.lrs_seen: list[float] = []          # the first optimizer's lr when each batch starts
        self.epoch_lrs: list[float] = []         # ... when each epoch starts
        self.metrics_given: list[float] = []     # what lr_scheduler_step got as metric

    def training_step(self, batch, batch_idx):
        self.lrs_seen.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def on_train_epoch_start(self):
        self.epoch_lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", float(self.current_epoch + 1))  # gets worse every epoch

    def configure_optimizers(self):
        return self.configure(self)

    def lr_scheduler_step(self, scheduler, metric):
        if metric is not None:
            self.metrics_given.append(float(metric))
        super().lr_scheduler_step(scheduler, metric)


def sgd(module: LightningModule, lr: float = 1.0) -> torch.optim.SGD:
    return torch.optim.SGD(module.parameters(), lr=lr)


def halving(optimizer) -> torch.optim.lr_scheduler.StepLR:
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)


# -------------------------------------------------------------------------------------------------
# The forms
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["optimizer", "list", "tuple"])
def test_optimizer_alone_trains(tmp_path, form):
    made = []

    def configure(module):
        optimizer = sgd(module, lr=0.1)
        made.append(optimizer)
        return {"optimizer": optimizer, "list": [optimizer], "tuple": (optimizer,)}[form]

    module = Regression(configure)
    before = [p.detach().clone() for p in module.parameters()]
    run = trainer(tmp_path)
    run.fit(module, loader())

    assert run.optimizers == made
    assert run.lr_scheduler_configs == []
    assert run.global_step == 4
    assert all(not torch.equal(old, new) for old, new in zip(before, module.parameters()))


def scheduler_forms(module):
    optimizer = sgd(module)
    scheduler = halving(optimizer)
    return {
        "lists": ([optimizer], [scheduler]),
        "dict": {"optimizer": optimizer, "lr_scheduler": scheduler},
        "dict_config": {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler}},
        "list_of_dicts": [{"optimizer": optimizer, "lr_scheduler": scheduler}],
    }


@pytest.mark.parametrize("form", ["lists", "dict", "dict_config", "list_of_dicts"])
def test_epoch_scheduler_steps_once_per_epoch(tmp_path, form):
    module = Regression(lambda m: scheduler_forms(m)[form])
    run = trainer(tmp_path, max_epochs=3)
    run.fit(module, loader())

    assert module.epoch_lrs == [1.0, 0.5, 0.25]
    assert module.lrs_seen == [1.0] * 4 + [0.5] * 4 + [0.25] * 4
    assert run.optimizers[0].param_groups[0]["lr"] == 0.125
    (config,) = run.lr_scheduler_configs
    assert (config.interval, config.frequency) == ("epoch", 1)


def test_step_scheduler_with_frequency_steps_at_the_right_batches(tmp_path):
    def configure(module):
        optimizer = sgd(module)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": halving(optimizer), "interval": "step", "frequency": 2}}

    module = Regression(configure)
    run = trainer(tmp_path, max_epochs=2)
    run.fit(module, loader(samples=6))  # 3 batches an epoch

    # Lightning steps when (batch_idx + 1) % frequency == 0, batch_idx counting within the epoch:
    # after batch 1 of each epoch, and never at epoch end for a step-interval scheduler.
    assert module.lrs_seen == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
    assert run.optimizers[0].param_groups[0]["lr"] == 0.25


def test_step_scheduler_waits_for_the_accumulation_window(tmp_path):
    def configure(module):
        optimizer = sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": halving(optimizer), "interval": "step"}}

    module = Regression(configure)
    run = trainer(tmp_path, accumulate_grad_batches=2)
    run.fit(module, loader())  # 4 batches: 2 optimizer steps

    assert run.global_step == 2
    assert module.lrs_seen == [1.0, 1.0, 0.5, 0.5]
    assert run.optimizers[0].param_groups[0]["lr"] == 0.25


def test_bad_scheduler_interval_is_refused(tmp_path):
    def configure(module):
        optimizer = sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": halving(optimizer), "interval": "batch"}}

    with pytest.raises(MisconfigurationError, match="use 'step' or 'epoch'"):
        trainer(tmp_path).fit(Regression(configure), loader())


# -------------------------------------------------------------------------------------------------
# ReduceLROnPlateau
# -------------------------------------------------------------------------------------------------
def plateau(optimizer):
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0)


def test_plateau_without_monitor_is_refused(tmp_path):
    def configure(module):
        optimizer = sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": plateau(optimizer)}

    module = Regression(configure)
    with pytest.raises(MisconfigurationError, match="monitor.*val_loss"):
        trainer(tmp_path).fit(module, loader(), loader())
    assert module.lrs_seen == []  # refused before training


@pytest.mark.parametrize("where", ["in_scheduler_dict", "top_level"])
def test_plateau_steps_on_the_monitored_metric(tmp_path, where):
    def configure(module):
        optimizer = sgd(module)
        if where == "top_level":
            return {"optimizer": optimizer, "lr_scheduler": plateau(optimizer), "monitor": "val_loss"}
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau(optimizer), "monitor": "val_loss"}}

    module = Regression(configure)
    run = trainer(tmp_path, max_epochs=3)
    run.fit(module, loader(), loader(samples=2))

    assert module.metrics_given == [1.0, 2.0, 3.0]  # each epoch's val_loss
    assert module.epoch_lrs == [1.0, 1.0, 0.5]      # worse at epoch 1 and 2, patience 0
    assert run.optimizers[0].param_groups[0]["lr"] == 0.25


def test_plateau_monitor_missing_at_runtime_names_the_logged_metrics(tmp_path):
    def configure(module):
        optimizer = sgd(module)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau(optimizer), "monitor": "val_los"}}

    with pytest.raises(MisconfigurationError, match=r"'val_los'.*val_loss"):
        trainer(tmp_path).fit(Regression(configure), loader(), loader(samples=2))


def test_plateau_not_strict_skips_a_missing_metric(tmp_path):
    def configure(module):
        optimizer = sgd(module)
        config = {"scheduler": plateau(optimizer), "monitor": "absent", "strict": False}
        return {"optimizer": optimizer, "lr_scheduler": config}

    run = trainer(tmp_path, max_epochs=2)
    run.fit(Regression(configure), loader())
    assert run.optimizers[0].param_groups[0]["lr"] == 1.0


# -------------------------------------------------------------------------------------------------
# Several optimizers
# -------------------------------------------------------------------------------------------------
def test_several_optimizers_under_automatic_optimization_are_refused(tmp_path):
    module = Regression(lambda m: [sgd(m), torch.optim.Adam(m.parameters())])
    with pytest.raises(MisconfigurationError, match="manual optimization") as error:
        trainer(tmp_path).fit(module, loader())
    assert "automatic_optimization = False" in str(error.value)
    assert module.lrs_seen == []


class GAN(LightningModule):
    """Two networks, two optimizers, stepped by hand as in Lightning's GAN example."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.generator = nn.Linear(1, 1)
        self.discriminator = nn.Linear(1, 1)
        self.frozen_while_d_steps: list[bool] = []
        self.optimizer_types: list[type] = []
        self.global_steps: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        opt_g, opt_d = self.optimizers()
        self.optimizer_types = [type(opt_g), type(opt_d)]

        self.toggle_optimizer(opt_d)
        self.frozen_while_d_steps.append(not any(p.requires_grad for p in self.generator.parameters()))
        loss_d = F.mse_loss(self.discriminator(y), torch.ones_like(y)) + \
            F.mse_loss(self.discriminator(self.generator(x).detach()), torch.zeros_like(y))
        self.manual_backward(loss_d)
        opt_d.step()
        opt_d.zero_grad()
        self.untoggle_optimizer(opt_d)

        self.toggle_optimizer(opt_g)
        loss_g = F.mse_loss(self.discriminator(self.generator(x)), torch.ones_like(y))
        self.manual_backward(loss_g)
        opt_g.step()
        opt_g.zero_grad()
        self.untoggle_optimizer(opt_g)
        self.global_steps.append(self.global_step)
        self.log("loss_g", loss_g)

    def on_train_epoch_end(self):
        self.lr_schedulers().step()

    def configure_optimizers(self):
        opt_g = torch.optim.SGD(self.generator.parameters(), lr=0.1)
        opt_d = torch.optim.SGD(self.discriminator.parameters(), lr=0.1)
        return [{"optimizer": opt_g, "lr_scheduler": halving(opt_g)}, {"optimizer": opt_d}]


def test_manual_optimization_with_two_optimizers(tmp_path):
    module = GAN()
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    run = trainer(tmp_path, max_epochs=2)
    run.fit(module, loader())  # 4 batches an epoch

    assert len(run.optimizers) == 2 and len(run.lr_scheduler_configs) == 1
    for name, parameter in module.named_parameters():
        assert not torch.equal(before[name], parameter), name
    assert module.frozen_while_d_steps == [True] * 8
    assert all(p.requires_grad for p in module.parameters())  # untoggle restored them
    assert "loss_g" in run.callback_metrics


def test_manual_optimization_counts_every_optimizer_step(tmp_path):
    module = GAN()
    run = trainer(tmp_path, max_epochs=2)
    run.fit(module, loader())

    # Lightning: global_step counts optimizer.step() calls, two per batch here.
    assert module.global_steps == [2, 4, 6, 8, 10, 12, 14, 16]
    assert run.global_step == 16


def test_manual_optimization_gets_lightning_optimizers(tmp_path):
    module = GAN()
    trainer(tmp_path, max_epochs=1, limit_train_batches=1).fit(module, loader())
    # As in Lightning: a LightningOptimizer subclass named after the optimizer, and an instance of the optimizer's class.
    assert [kind.__name__ for kind in module.optimizer_types] == ["LightningSGD", "LightningSGD"]
    assert all(issubclass(kind, LightningOptimizer) and issubclass(kind, torch.optim.SGD)
               for kind in module.optimizer_types)


def test_optimizers_without_the_wrapper_are_the_torch_ones(tmp_path):
    seen = []

    class Raw(GAN):
        def training_step(self, batch, batch_idx):
            seen.append(self.optimizers(use_pl_optimizer=False))
            return super().training_step(batch, batch_idx)

    run = trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    run.fit(Raw(), loader())
    assert seen == [run.optimizers]
    assert all(type(optimizer) is torch.optim.SGD for optimizer in seen[0])


def test_lr_schedulers_in_manual_optimization_are_the_users_to_step(tmp_path):
    module = GAN()
    run = trainer(tmp_path, max_epochs=2)
    run.fit(module, loader())

    # Stepped once per epoch by on_train_epoch_end and never by the Trainer.
    scheduler = run.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 2
    assert run.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.025)
    assert run.optimizers[1].param_groups[0]["lr"] == pytest.approx(0.1)


def test_lr_schedulers_returns_none_or_a_list(tmp_path):
    found = {}

    class Schedulers(Regression):
        def on_train_start(self):
            found["value"] = self.lr_schedulers()

    def two(module):
        first, second = sgd(module), sgd(module)
        return [{"optimizer": first, "lr_scheduler": halving(first)},
                {"optimizer": second, "lr_scheduler": halving(second)}]

    manual = Schedulers(two)
    manual.automatic_optimization = False
    manual.training_step = lambda batch, batch_idx: None
    trainer(tmp_path, limit_train_batches=1).fit(manual, loader())
    assert isinstance(found["value"], list) and len(found["value"]) == 2

    trainer(tmp_path, limit_train_batches=1).fit(Schedulers(sgd), loader())
    assert found["value"] is None


def test_gradient_clipping_with_manual_optimization_is_refused(tmp_path):
    module = GAN()
    with pytest.raises(MisconfigurationError, match="manual optimization") as error:
        trainer(tmp_path, gradient_clip_val=1.0).fit(module, loader())
    assert "clip_gradients" in str(error.value)
    assert module.global_steps == []


def test_manual_backward_under_automatic_optimization_is_refused(tmp_path):
    class Mixed(Regression):
        def training_step(self, batch, batch_idx):
            loss = super().training_step(batch, batch_idx)
            self.manual_backward(loss)

    with pytest.raises(RuntimeError, match="automatic_optimization = False"):
        trainer(tmp_path).fit(Mixed(sgd), loader())


# ---------------------------------------------------------------------------------------------
# Truncated backpropagation through time
# ---------------------------------------------------------------------------------------------
def sequences(count: int = 6, length: int = 10) -> TensorDataset:
    generator = torch.Generator().manual_seed(3)
    inputs = torch.randn(count, length, 2, generator=generator)
    return TensorDataset(inputs, inputs.cumsum(dim=1)[..., :1])  # target: running sum of the first feature


class Recurrent(LightningModule):
    """A GRU trained with truncated BPTT; records what each split saw."""

    def __init__(self, steps: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.rnn = nn.GRU(2, 5, batch_first=True)
        self.head = nn.Linear(5, 1)
        self.truncated_bptt_steps = steps
        self.seen: list[tuple[int, int, bool]] = []  # (batch_idx, split length, hiddens given)
        self.batch_end_outputs: list = []

    def training_step(self, batch, batch_idx, hiddens):
        x, y = batch
        if hiddens is not None:
            assert not hiddens.requires_grad, "hiddens must arrive detached"
        self.seen.append((batch_idx, x.shape[1], hiddens is not None))
        out, hiddens = self.rnn(x, hiddens)
        loss = F.mse_loss(self.head(out), y)
        self.log("train_loss", loss)
        return {"loss": loss, "hiddens": hiddens}

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.batch_end_outputs.append(outputs)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_truncated_bptt_matches_a_hand_written_loop(tmp_path):
    data = DataLoader(sequences(), batch_size=3)
    module = Recurrent(steps=4)
    trainer(tmp_path, max_epochs=2).fit(module, data)

    torch.manual_seed(0)
    rnn, head = nn.GRU(2, 5, batch_first=True), nn.Linear(5, 1)
    optimizer = torch.optim.SGD([*rnn.parameters(), *head.parameters()], lr=0.1)
    for _ in range(2):
        for x, y in data:
            hiddens = None
            for start in range(0, x.shape[1], 4):
                optimizer.zero_grad()
                out, hiddens = rnn(x[:, start:start + 4], hiddens)
                F.mse_loss(head(out), y[:, start:start + 4]).backward()
                optimizer.step()
                hiddens = hiddens.detach()

    assert torch.equal(module.rnn.weight_hh_l0, rnn.weight_hh_l0)
    assert torch.equal(module.head.weight, head.weight)
    assert module.trainer.global_step == 2 * 2 * 3  # epochs × batches × splits (10 steps → 4 + 4 + 2)
    assert module.seen[:3] == [(0, 4, False), (0, 4, True), (0, 2, True)]
    first = module.batch_end_outputs[0]
    assert [sorted(split) for split in first] == [["hiddens", "loss"]] * 3
    assert not first[0]["loss"].requires_grad


def test_tbptt_split_batch_can_be_overridden(tmp_path):
    class Halves(Recurrent):
        def tbptt_split_batch(self, batch, split_size):
            x, y = batch
            return [(x[:, :5], y[:, :5]), (x[:, 5:], y[:, 5:])]

    module = Halves(steps=4)
    trainer(tmp_path).fit(module, DataLoader(sequences(count=3), batch_size=3))
    assert module.seen == [(0, 5, False), (0, 5, True)]


def test_tbptt_without_hiddens_in_the_output_is_a_clear_error(tmp_path):
    class Forgetful(Recurrent):
        def training_step(self, batch, batch_idx, hiddens):
            return super().training_step(batch, batch_idx, hiddens)["loss"]

    with pytest.raises(MisconfigurationError, match="'hiddens': hiddens"):
        trainer(tmp_path).fit(Forgetful(), DataLoader(sequences(), batch_size=3))


@pytest.mark.parametrize("problem", ["accumulate", "manual", "signature", "negative"])
def test_tbptt_misconfigurations_fail_at_fit_start(tmp_path, problem):
    flags = {"accumulate_grad_batches": 2} if problem == "accumulate" else {}
    module = Recurrent()
    if problem == "manual":
        module.automatic_optimization = False
    if problem == "negative":
        module.truncated_bptt_steps = -1
    if problem == "signature":
        module.training_step = lambda batch, batch_idx: None
    expected = {"accumulate": "accumulate_grad_batches=2", "manual": "automatic optimization",
                "signature": "def training_step\\(self, batch, batch_idx, hiddens\\)", "negative": "positive int"}
    with pytest.raises(MisconfigurationError, match=expected[problem]):
        trainer(tmp_path, **flags).fit(module, DataLoader(sequences(), batch_size=3))
    assert module.seen == []


def test_a_lightning_optimizer_built_without_a_trainer_steps_its_optimizer():
    parameter = nn.Parameter(torch.ones(2))
    optimizer = LightningOptimizer(torch.optim.SGD([parameter], lr=0.1))
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["lr"] == 0.1
    parameter.grad = torch.ones(2)
    optimizer.step()
    assert torch.equal(parameter.detach(), torch.tensor([0.9, 0.9]))
    optimizer.zero_grad()
    assert parameter.grad is None
    assert optimizer.step(closure=lambda: torch.tensor(3.0)) == torch.tensor(3.0)


def test_the_optimizers_methods_called_on_its_wrapper_act_on_the_optimizer():
    parameter = nn.Parameter(torch.ones(2))
    inner = torch.optim.SGD([parameter], lr=0.1)
    optimizer = LightningOptimizer(inner)
    state = inner.state_dict()
    state["param_groups"][0]["lr"] = 0.5
    optimizer.load_state_dict(state)
    optimizer.add_param_group({"params": [nn.Parameter(torch.ones(1))]})
    assert [group["lr"] for group in inner.param_groups] == [0.5, 0.1]  # the new group takes the defaults
    assert optimizer.state_dict()["param_groups"][0]["lr"] == 0.5
