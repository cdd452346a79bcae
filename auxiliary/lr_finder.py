"""The learning-rate range test: train briefly while the learning rate grows, and suggest where loss falls fastest."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from auxiliary.probing import attribute_holders, left_as_found, probe_trainer, write_attribute
from engineering import Callback, LRSchedulerConfig, MisconfigurationError, Trainer

_LR_NAMES = ("lr", "learning_rate")


class LRFinder:
    """The outcome of a sweep: ``results["lr"]`` and ``results["loss"]`` (smoothed) per optimizer step."""

    def __init__(self, mode: str, lr_min: float, lr_max: float, num_training: int) -> None:
        self.mode = mode
        self.lr_min = lr_min
        self.lr_max = lr_max
        self.num_training = num_training
        self.results: dict[str, list[float]] = {"lr": [], "loss": []}
        self._optimal_idx: int | None = None

    def suggestion(self, skip_begin: int = 10, skip_end: int = 1) -> float | None:
        """The learning rate where the loss falls fastest (the most negative gradient of loss over lr), leaving
        out the first ``skip_begin`` and last ``skip_end`` points and non-finite losses; None with fewer than two
        points left."""
        losses = torch.tensor(self.results["loss"][skip_begin:-skip_end], dtype=torch.float64)
        lrs = torch.tensor(self.results["lr"][skip_begin:-skip_end], dtype=torch.float64)
        finite = torch.isfinite(losses)
        losses, lrs = losses[finite], lrs[finite]
        if len(losses) < 2:
            print("LRFinder: too few points to suggest a learning rate; raise num_training or use more data.")
            self._optimal_idx = None
            return None
        steepest = int(torch.argmin(torch.gradient(losses, spacing=[lrs])[0]))
        kept = torch.arange(len(self.results["loss"]))[skip_begin:-skip_end][finite]
        self._optimal_idx = int(kept[steepest])
        return self.results["lr"][self._optimal_idx]

    def plot(self, suggest: bool = False, show: bool = False, ax: Any = None) -> Any:
        """Loss against learning rate (log scale for the exponential sweep), with the suggestion marked when
        ``suggest``; returns the figure. Needs matplotlib (``pip install tribus[plot]``)."""
        try:
            import matplotlib.pyplot as plt
        except ImportError:
            raise MisconfigurationError(
                "LRFinder.plot needs matplotlib: pip install matplotlib (or tribus[plot])."
            ) from None
        if ax is None:
            figure, ax = plt.subplots()
        else:
            figure = ax.figure
        lrs, losses = self.results["lr"], self.results["loss"]
        ax.plot(lrs, losses)
        if self.mode == "exponential":
            ax.set_xscale("log")
        ax.set_xlabel("Learning rate")
        ax.set_ylabel("Loss")
        if suggest and self.suggestion() is not None:
            ax.plot(lrs[self._optimal_idx], losses[self._optimal_idx], markersize=10, marker="o", color="red")
        if show:
            plt.show()
        return figure


class _LearningRateSweep(Callback):
    """Inside the probe run: puts the growing learning rate in place and records the smoothed loss per step;
    stops when it exceeds ``early_stop_threshold`` times the best so far."""

    def __init__(self, finder: LRFinder, early_stop_threshold: float | None, beta: float = 0.98) -> None:
        self.finder = finder
        self.early_stop_threshold = early_stop_threshold
        self.beta = beta
        self.average_loss = 0.0
        self.best_loss = 0.0
        self._recorded_steps = 0

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        if len(trainer.optimizers) != 1:
            raise MisconfigurationError(
                f"The learning-rate finder works with one optimizer; configure_optimizers returned "
                f"{len(trainer.optimizers)}."
            )
        optimizer = trainer.optimizers[0]
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.finder.lr_min
        # The sweep replaces the model's schedulers for the probe run, as in Lightning.
        growth = _growth(self.finder.mode, self.finder.lr_min, self.finder.lr_max, self.finder.num_training)
        trainer.lr_scheduler_configs[:] = [LRSchedulerConfig(LambdaLR(optimizer, growth), interval="step")]

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self.finder.results["lr"].append(optimizer.param_groups[0]["lr"])

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if step == self._recorded_steps:
            return  # inside an accumulation window: no step, nothing to record
        self._recorded_steps = step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            self.finder.results["loss"].append(math.nan)
            return
        self.average_loss = self.beta * self.average_loss + (1 - self.beta) * float(loss)
        smoothed = self.average_loss / (1 - self.beta ** (step + 1))  # bias correction, as Lightning counts it
        if self.early_stop_threshold is not None and step > 1 and smoothed > self.early_stop_threshold * self.best_loss:
            trainer.should_stop = True  # diverging: the rest of the sweep would only add noise
        if smoothed < self.best_loss or step == 1:
            self.best_loss = smoothed
        self.finder.results["loss"].append(smoothed)


def _growth(mode: str, lr_min: float, lr_max: float, num_training: int) -> Any:
    """The factor on ``lr_min`` after ``step`` scheduler steps: Lightning's sweep, which reaches ``lr_max`` at
    step ``num_training - 1``."""
    def exponential(step: int) -> float:
        return 1.0 if step == 0 else (lr_max / lr_min) ** ((step + 1) / num_training)

    def linear(step: int) -> float:
        return 1.0 if step == 0 else (lr_min + (step + 1) / num_training * (lr_max - lr_min)) / lr_min

    return exponential if mode == "exponential" else linear


def lr_find(trainer: Trainer, model: Any, train_dataloaders: Any = None, val_dataloaders: Any = None,
            datamodule: Any = None, min_lr: float = 1e-8, max_lr: float = 1.0, num_training: int = 100,
            mode: str = "exponential", early_stop_threshold: float | None = 4.0, update_attr: bool = True,
            attr_name: str = "") -> LRFinder | None:
    """Sweep the learning rate from ``min_lr`` to ``max_lr`` over ``num_training`` optimizer steps on a probe
    run with ``trainer``'s numerics, then put the model's weights back as they were. With ``update_attr``, the
    suggestion goes to ``model.lr``/``learning_rate`` (or ``attr_name``), attribute or hparam."""
    if mode not in ("exponential", "linear"):
        raise MisconfigurationError(f"lr_find(mode={mode!r}): use 'exponential' or 'linear'.")
    if not 0 < min_lr < max_lr:
        raise MisconfigurationError(f"lr_find needs 0 < min_lr < max_lr; got min_lr={min_lr}, max_lr={max_lr}.")
    if trainer.fast_dev_run:
        print("Skipping the learning-rate finder: fast_dev_run is on.")
        return None
    name, holders = _lr_attribute(model, attr_name) if update_attr else ("", [])
    finder = LRFinder(mode, min_lr, max_lr, num_training)
    probe = probe_trainer(trainer, [_LearningRateSweep(finder, early_stop_threshold)], max_steps=num_training,
                          limit_train_batches=trainer.limit_train_batches)
    with left_as_found(model, datamodule):
        probe.fit(model, train_dataloaders, val_dataloaders, datamodule)
    if probe.global_step < num_training:
        print(f"LR finder stopped after {probe.global_step} steps: the loss diverged.")
    if update_attr:
        suggested = finder.suggestion()
        if suggested is not None:
            write_attribute(holders, name, suggested)
            print(f"Learning rate set to {suggested}")
    return finder


def _lr_attribute(model: Any, attr_name: str) -> tuple[str, list[Any]]:
    """The name the learning rate goes by, and where it lives; checked before the sweep, not after."""
    for name in (attr_name,) if attr_name else _LR_NAMES:
        holders = attribute_holders(model, None, name)
        if holders:
            return name, holders
    if attr_name:
        raise AttributeError(f"lr_find(attr_name={attr_name!r}): neither the model nor model.hparams has it.")
    raise AttributeError(
        f"lr_find(update_attr=True) looks for the learning rate in the model or model.hparams as one of "
        f"{list(_LR_NAMES)}, and found none. Name yours with attr_name=..., or pass update_attr=False."
    )


class LearningRateFinder(Callback):
    """The learning-rate finder as a callback: at ``on_fit_start`` it sweeps on a probe run (the model's weights
    and this run's optimizer are left as they were), then sets the suggestion on the model's lr attribute and
    on every parameter group of this run's optimizers. Single device only."""

    def __init__(self, min_lr: float = 1e-8, max_lr: float = 1.0, num_training_steps: int = 100,
                 mode: str = "exponential", early_stop_threshold: float | None = 4.0, update_attr: bool = True,
                 attr_name: str = "") -> None:
        if mode not in ("exponential", "linear"):
            raise MisconfigurationError(f"LearningRateFinder(mode={mode!r}): use 'exponential' or 'linear'.")
        self._arguments = dict(min_lr=min_lr, max_lr=max_lr, num_training=num_training_steps, mode=mode,
                               early_stop_threshold=early_stop_threshold, update_attr=update_attr,
                               attr_name=attr_name)
        self.optimal_lr: LRFinder | None = None

    def lr_find(self, trainer: Any, pl_module: Any) -> None:
        """Run the sweep on this run's training data; override to run it elsewhere (e.g. at some epoch)."""
        self.optimal_lr = lr_find(trainer, pl_module, trainer.train_dataloader, **self._arguments)
        if self.optimal_lr is None or not self._arguments["update_attr"]:
            return
        suggested = self.optimal_lr.suggestion()
        if suggested is not None:
            for optimizer in trainer.optimizers:
                for group in optimizer.param_groups:
                    group["lr"] = suggested

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.lr_find(trainer, pl_module)
