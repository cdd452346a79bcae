"""LightningModule: a torch ``nn.Module`` that also says how it is trained.

Nothing here imports the Trainer. The module reaches the Trainer only through ``self.trainer``,
which the Trainer sets when a run starts; every hook below is a no-op (or the plain PyTorch
call) until a subclass overrides it.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from research.checkpoint_io import init_arguments, load_checkpoint, load_weights
from research.export import ExportMixin, scripting
from research.hparams import HyperparametersMixin
from research.metrics import is_metric_collection, metric_collection_items
from research.nested import apply_to_collection, collection_values, move_to_device


class LightningModule(ExportMixin, HyperparametersMixin, nn.Module):
    """Subclass it, define ``training_step`` and ``configure_optimizers``, hand it to a Trainer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer_ref: weakref.ref | None = None
        self.automatic_optimization: bool = True
        self.example_input_array: Any = None
        self.prepare_data_per_node: bool = True
        # Truncated backpropagation through time: split each batch into chunks of this many steps.
        self.truncated_bptt_steps: int = 0

    # ----------------------------------------------------------------------------------------
    # The trainer, and state read from it
    # ----------------------------------------------------------------------------------------
    @property
    def trainer(self) -> Any:
        """The Trainer running this module; a weak reference, so a module never keeps it alive."""
        trainer = self._trainer_ref() if self._trainer_ref is not None else None
        if trainer is None and not scripting():
            raise RuntimeError(
                f"{type(self).__name__} is not attached to a Trainer. "
                "Pass it to Trainer.fit/validate/test/predict first."
            )
        return trainer

    @trainer.setter
    def trainer(self, trainer: Any) -> None:
        self._trainer_ref = weakref.ref(trainer) if trainer is not None else None

    @property
    def has_trainer(self) -> bool:
        return self._trainer_ref is not None and self._trainer_ref() is not None

    @property
    def current_epoch(self) -> int:
        return self.trainer.current_epoch if self.has_trainer else 0

    @property
    def global_step(self) -> int:
        return self.trainer.global_step if self.has_trainer else 0

    @property
    def global_rank(self) -> int:
        return self.trainer.global_rank if self.has_trainer else 0

    @property
    def local_rank(self) -> int:
        return self.trainer.local_rank if self.has_trainer else 0

    @property
    def logger(self) -> Any:
        return self.trainer.logger if self.has_trainer else None

    @property
    def loggers(self) -> list[Any]:
        return self.trainer.loggers if self.has_trainer else []

    @property
    def device(self) -> torch.device:
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return torch.device("cpu")

    @property
    def on_gpu(self) -> bool:
        """Whether the module's parameters are on a CUDA device."""
        return self.device.type == "cuda"

    @property
    def dtype(self) -> torch.dtype:
        for tensor in self.parameters():
            return tensor.dtype
        return torch.get_default_dtype()

    def __getstate__(self) -> dict[str, Any]:
        # A weak reference cannot be pickled, and a saved module should not carry its trainer.
        state = self.__dict__.copy()
        state["_trainer_ref"] = None
        return state

    # ----------------------------------------------------------------------------------------
    # Hyperparameters: save_hyperparameters, hparams and hparams_initial come from HyperparametersMixin
    # ----------------------------------------------------------------------------------------
    @classmethod
    def load_from_checkpoint(
        cls, checkpoint_path: Any, map_location: Any = None, strict: bool = True, weights_only: bool = True,
        **overrides: Any,
    ) -> LightningModule:
        """Rebuild the module from the checkpoint's ``hyper_parameters`` (``overrides`` win), then load its weights.

        ``weights_only=False`` unpickles arbitrary objects from the file: only for files you trust.
        """
        checkpoint = load_checkpoint(checkpoint_path, map_location, weights_only)
        model = cls(**init_arguments(cls, checkpoint, "hyper_parameters", overrides))
        model.configure_model()
        model.on_load_checkpoint(checkpoint)
        load_weights(model, checkpoint["state_dict"], strict=strict)
        first = next((value for value in checkpoint["state_dict"].values() if isinstance(value, torch.Tensor)), None)
        return model.to(first.device) if first is not None else model

    # ----------------------------------------------------------------------------------------
    # Logging: values go to the Trainer's result store; it decides when they become floats
    # ----------------------------------------------------------------------------------------
    def log(
        self,
        name: str,
        value: Any,
        prog_bar: bool = False,
        logger: bool | None = None,
        on_step: bool | None = None,
        on_epoch: bool | None = None,
        reduce_fx: str | Any = "mean",
        enable_graph: bool = False,
        sync_dist: bool = False,
        sync_dist_group: Any = None,
        add_dataloader_idx: bool = True,
        batch_size: int | None = None,
        metric_attribute: str | None = None,
        rank_zero_only: bool = False,
    ) -> None:
        """Log a number, a one-element tensor or a torchmetrics ``Metric`` (its forward value per step, its
        ``compute()`` per epoch, ``reset()`` after). Defaults follow the hook: per step in training, per epoch in
        evaluation. A ``Metric`` must be an attribute of the module unless ``metric_attribute`` names where it is."""
        trainer = self._trainer_ref() if self._trainer_ref is not None else None
        if trainer is None or trainer.barebones:
            # As in Lightning: a step method called in a unit test, or a barebones run, logs nothing.
            warnings.warn(
                f"self.log({name!r}) did nothing: "
                + ("Trainer(barebones=True) turns logging off." if trainer is not None
                   else "the module is not attached to a Trainer."),
                stacklevel=2,
            )
            return
        trainer.results.log(
            name, value, prog_bar, logger, on_step, on_epoch, reduce_fx, enable_graph, sync_dist,
            add_dataloader_idx, batch_size, rank_zero_only, metric_attribute, self,
        )

    def log_dict(self, dictionary: Mapping[str, Any] | Any, **options: Any) -> None:
        """``self.log`` for each value of a dict, or each metric of a torchmetrics ``MetricCollection``."""
        items = metric_collection_items(dictionary) if is_metric_collection(dictionary) else dictionary.items()
        for name, value in items:
            self.log(name, value, **options)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """``data`` from every process: each tensor (numbers become tensors, lists, tuples and dicts are walked)
        gains a first dimension of size world_size. With one process, tensors come back unchanged."""
        strategy = self.trainer.strategy

        def gather(value: torch.Tensor | bool | int | float) -> torch.Tensor:
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value, device=self.device)
            return strategy.all_gather(tensor, group, sync_grads)

        return apply_to_collection(data, (torch.Tensor, bool, int, float), gather)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print``, from the process of global rank 0 only."""
        if self.global_rank == 0:
            print(*args, **kwargs)

    # ----------------------------------------------------------------------------------------
    # What the Trainer calls to train, evaluate and predict
    # ----------------------------------------------------------------------------------------
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} has no training_step. Define "
            "`def training_step(self, batch, batch_idx)` returning the loss to train it."
        )

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        return self(batch)

    def configure_optimizers(self) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} has no configure_optimizers. Define it and return an optimizer, "
            "e.g. `return torch.optim.Adam(self.parameters(), lr=1e-3)`."
        )

    def configure_callbacks(self) -> Sequence[Any] | Any:
        return []

    def configure_model(self) -> None:
        """Create layers here to build them directly on the target device (called after ``setup``)."""

    # ----------------------------------------------------------------------------------------
    # Optimization: override to customise, call in manual optimization
    # ----------------------------------------------------------------------------------------
    def optimizers(self, use_pl_optimizer: bool = True) -> Any:
        optimizers = self.trainer.lightning_optimizers if use_pl_optimizer else self.trainer.optimizers
        return optimizers[0] if len(optimizers) == 1 else optimizers

    def lr_schedulers(self) -> Any:
        schedulers = [config.scheduler for config in self.trainer.lr_scheduler_configs]
        if not schedulers:
            return None
        return schedulers[0] if len(schedulers) == 1 else schedulers

    def manual_backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """Backward in manual optimization: runs the backward hooks and the precision's scaling."""
        if self.automatic_optimization:
            raise RuntimeError(
                "manual_backward is for manual optimization. "
                "Set `self.automatic_optimization = False` in __init__ to use it."
            )
        self.trainer.strategy.backward(loss, None, *args, **kwargs)

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        loss.backward(*args, **kwargs)

    def optimizer_zero_grad(self, epoch: int, batch_idx: int, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)

    def optimizer_step(
        self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None
    ) -> None:
        optimizer.step(closure=optimizer_closure)

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def clip_gradients(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        self.trainer.strategy.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def toggle_optimizer(self, optimizer: Any) -> None:
        """Freeze every parameter that ``optimizer`` does not own (a GAN's other network)."""
        owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
        self._toggled_requires_grad = {}
        for parameter in self.parameters():
            self._toggled_requires_grad[id(parameter)] = parameter.requires_grad
            if id(parameter) not in owned:
                parameter.requires_grad_(False)

    def untoggle_optimizer(self, optimizer: Any) -> None:
        previous = getattr(self, "_toggled_requires_grad", {})
        for parameter in self.parameters():
            if id(parameter) in previous:
                parameter.requires_grad_(previous[id(parameter)])
        self._toggled_requires_grad = {}

    # ----------------------------------------------------------------------------------------
    # Truncated backpropagation through time
    # ----------------------------------------------------------------------------------------
    def tbptt_split_batch(self, batch: Any, split_size: int) -> list[Any]:
        """Split every tensor of ``batch`` along dim 1 (time) into chunks of ``split_size``."""
        lengths = {t.shape[1] for t in collection_values(batch, torch.Tensor) if t.dim() > 1}
        if not lengths:
            return [batch]
        total = max(lengths)
        return [_slice_time(batch, start, start + split_size) for start in range(0, total, split_size)]

    # ----------------------------------------------------------------------------------------
    # Moving batches to the device
    # ----------------------------------------------------------------------------------------
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return move_to_device(batch, device)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        return batch

    # ----------------------------------------------------------------------------------------
    # Hooks the Trainer calls (after the callbacks' hooks of the same name)
    # ----------------------------------------------------------------------------------------
    def prepare_data(self) -> None: ...
    def setup(self, stage: str) -> None: ...
    def teardown(self, stage: str) -> None: ...
    def on_fit_start(self) -> None: ...
    def on_fit_end(self) -> None: ...
    def on_train_start(self) -> None: ...
    def on_train_end(self) -> None: ...
    def on_train_epoch_start(self) -> None: ...
    def on_train_epoch_end(self) -> None: ...
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> int | None: ...
    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None: ...
    def on_validation_start(self) -> None: ...
    def on_validation_end(self) -> None: ...
    def on_validation_epoch_start(self) -> None: ...
    def on_validation_epoch_end(self) -> None: ...
    def on_validation_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_validation_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_start(self) -> None: ...
    def on_test_end(self) -> None: ...
    def on_test_epoch_start(self) -> None: ...
    def on_test_epoch_end(self) -> None: ...
    def on_test_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_test_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_start(self) -> None: ...
    def on_predict_end(self) -> None: ...
    def on_predict_epoch_start(self) -> None: ...
    def on_predict_epoch_end(self) -> None: ...
    def on_predict_batch_start(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_predict_batch_end(self, outputs: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None: ...
    def on_before_zero_grad(self, optimizer: torch.optim.Optimizer) -> None: ...
    def on_before_backward(self, loss: torch.Tensor) -> None: ...
    def on_after_backward(self) -> None: ...
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None: ...
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None: ...

    def on_validation_model_zero_grad(self) -> None:
        """Before validation inside fit: drop gradients so their memory is free while validating."""
        self.zero_grad(set_to_none=True)

    # Switching between train and eval mode around evaluation; override to keep e.g. dropout on.
    def on_validation_model_eval(self) -> None:
        self.eval()

    def on_validation_model_train(self) -> None:
        self.train()

    def on_test_model_eval(self) -> None:
        self.eval()

    def on_test_model_train(self) -> None:
        self.train()

    def on_predict_model_eval(self) -> None:
        self.eval()


def _slice_time(batch: Any, start: int, stop: int) -> Any:
    def cut(tensor: torch.Tensor) -> torch.Tensor:
        return tensor[:, start:stop] if tensor.dim() > 1 else tensor

    return apply_to_collection(batch, torch.Tensor, cut)
