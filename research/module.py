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
from research.hooks import ModuleHooks
from research.hparams import HyperparametersMixin
from research.metrics import is_metric_collection, metric_collection_items
from research.nested import apply_to_collection
from research.step_hooks import StepHooks


class LightningModule(ExportMixin, HyperparametersMixin, StepHooks, ModuleHooks, nn.Module):
    """A ``torch.nn.Module`` that also says how it is trained: subclass it, define ``training_step`` and
    ``configure_optimizers``, and hand it to a ``Trainer``.

    Everything else is optional: ``validation_step``, ``test_step`` and ``predict_step`` for the other
    stages, ``self.log`` for metrics, and the hooks (from ``on_fit_start`` to ``on_save_checkpoint``)
    that the Trainer calls after the callbacks' hooks of the same name. The module reaches the Trainer
    only through ``self.trainer``, set while a run holds it.

    Example:
        ```python
        class Classifier(LightningModule):
            def __init__(self, lr: float = 1e-3):
                super().__init__()
                self.save_hyperparameters()
                self.layer = torch.nn.Linear(28 * 28, 10)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = F.cross_entropy(self.layer(x.flatten(1)), y)
                self.log("train_loss", loss, prog_bar=True)
                return loss

            def configure_optimizers(self):
                return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        ```
    """

    # Where a checkpoint keeps the hyperparameters, under Lightning's keys.
    CHECKPOINT_HYPER_PARAMS_KEY = "hyper_parameters"
    CHECKPOINT_HYPER_PARAMS_NAME = "hparams_name"
    CHECKPOINT_HYPER_PARAMS_TYPE = "hparams_type"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._trainer_ref: weakref.ref | None = None
        self.automatic_optimization: bool = True
        """``False`` for manual optimization: ``training_step`` calls ``self.optimizers()``,
        ``self.manual_backward(loss)`` and ``optimizer.step()`` itself."""
        self.example_input_array: Any = None
        """An input for ``forward`` (a tensor, or a tuple or dict of arguments); with it the model summary
        shows sizes and FLOPs, and ``TensorBoardLogger(log_graph=True)`` draws the graph."""
        self.prepare_data_per_node: bool = True
        """``prepare_data`` runs on local rank 0 of every node; ``False``: on global rank 0 only."""
        self.truncated_bptt_steps: int = 0
        """Above 0, each batch is split along time (dim 1) into chunks this long, each a training step
        with the hidden state carried over (``training_step(batch, batch_idx, hiddens)``)."""

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
        """Whether a Trainer holds this module now (``self.trainer`` raises otherwise)."""
        return self._trainer_ref is not None and self._trainer_ref() is not None

    @property
    def current_epoch(self) -> int:
        """The Trainer's current epoch; 0 without a Trainer."""
        return self.trainer.current_epoch if self.has_trainer else 0

    @property
    def global_step(self) -> int:
        """Optimizer steps taken so far; 0 without a Trainer."""
        return self.trainer.global_step if self.has_trainer else 0

    @property
    def global_rank(self) -> int:
        """This process's rank among all processes; 0 without a Trainer."""
        return self.trainer.global_rank if self.has_trainer else 0

    @property
    def local_rank(self) -> int:
        """This process's rank on its machine; 0 without a Trainer."""
        return self.trainer.local_rank if self.has_trainer else 0

    @property
    def logger(self) -> Any:
        """The Trainer's first logger, or ``None``."""
        return self.trainer.logger if self.has_trainer else None

    @property
    def loggers(self) -> list[Any]:
        """All the Trainer's loggers; ``[]`` without a Trainer."""
        return self.trainer.loggers if self.has_trainer else []

    @property
    def device(self) -> torch.device:
        """Where the parameters (or buffers) are; the CPU for a module with neither."""
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
        """The parameters' dtype; torch's default dtype for a module without parameters."""
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

        Works for checkpoints written by tribus and by Lightning 2.x.

        Args:
            checkpoint_path: A path or file-like object.
            map_location: Where to load the tensors, as for ``torch.load``.
            strict: Require the checkpoint's keys to match the module's exactly.
            weights_only: Refuse to unpickle anything but tensors and plain containers. ``False``
                unpickles arbitrary objects from the file: only for files you trust.
            **overrides: ``__init__`` arguments that replace the saved ones.

        Returns:
            The module, with its weights on the device they were loaded to.

        Raises:
            FileNotFoundError: There is no file at ``checkpoint_path``.
            CheckpointError: The file is truncated, tampered with or not a checkpoint; the message says
                what to do.
        """
        checkpoint = load_checkpoint(checkpoint_path, map_location, weights_only)
        model = cls(**init_arguments(cls, checkpoint, overrides))
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
        """Log a scalar or a torchmetrics ``Metric`` for the loggers, the progress bar and callbacks
        (``trainer.callback_metrics``).

        Defaults follow the hook: per step in ``training_step`` and its batch hooks, per epoch (the mean,
        weighted by batch size) in evaluation and in epoch hooks. Values stay tensors on their device
        until a logger, the progress bar or an epoch end needs them. Outside a run it warns and does
        nothing.

        Args:
            name: The key; ``validation_step`` values of several dataloaders get ``/dataloader_idx_N``.
            value: A number, a one-element tensor, or a torchmetrics ``Metric`` (forward value / ``compute()``).
            prog_bar: Show it on the progress bar.
            logger: Send it to the loggers (default ``True``).
            on_step: Keep the value of each step; with ``on_epoch`` too, the keys become
                ``name_step`` and ``name_epoch``.
            on_epoch: Reduce the values over the epoch with ``reduce_fx``.
            reduce_fx: ``"mean"``, ``"sum"``, ``"max"``, ``"min"`` or the torch function of that name.
            enable_graph: Keep the autograd graph (normally the value is detached).
            sync_dist: Reduce across processes with ``reduce_fx`` (a collective: every rank must log it).
            sync_dist_group: Accepted for Lightning compatibility; the reduction spans all processes.
            add_dataloader_idx: Add ``/dataloader_idx_N`` with several evaluation dataloaders.
            batch_size: The weight of this value in the epoch mean; inferred from the batch otherwise.
            metric_attribute: Where a logged ``Metric`` is on the module, when it is not one of its attributes.
            rank_zero_only: Accepted for Lightning compatibility.

        Raises:
            MisconfigurationError: The hook does not allow logging or this ``on_step``/``on_epoch``, the
                value is not a scalar, or ``reduce_fx`` is unknown.
        """
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
        """``self.log`` each item of ``dictionary`` (or each metric of a torchmetrics ``MetricCollection``), with
        the same ``options`` (``prog_bar``, ``on_epoch``, ...)."""
        items = metric_collection_items(dictionary) if is_metric_collection(dictionary) else dictionary.items()
        for name, value in items:
            self.log(name, value, **options)

    def all_gather(self, data: Any, group: Any = None, sync_grads: bool = False) -> Any:
        """``data`` from every process, for metrics computed across them.

        Args:
            data: A tensor or number, or lists, tuples, dicts and dataclasses of them.
            group: The process group; all processes by default.
            sync_grads: Let gradients flow back through the gather.

        Returns:
            ``data`` with each tensor (numbers become tensors) given a first dimension of size
            ``world_size``; with one process, tensors come back unchanged.
        """
        strategy = self.trainer.strategy

        def gather(value: torch.Tensor | bool | int | float) -> torch.Tensor:
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value, device=self.device)
            return strategy.all_gather(tensor, group, sync_grads)

        return apply_to_collection(data, (torch.Tensor, bool, int, float), gather)

    def print(self, *args: Any, **kwargs: Any) -> None:
        """``print``, from the process of global rank 0 only."""
        if self.global_rank == 0:
            print(*args, **kwargs)

    def freeze(self) -> None:
        """Stop every parameter from training (``requires_grad=False``) and switch to eval mode, for inference."""
        for parameter in self.parameters():
            parameter.requires_grad = False
        self.eval()

    def unfreeze(self) -> None:
        """Undo ``freeze``: every parameter trains again, and the module is in train mode."""
        for parameter in self.parameters():
            parameter.requires_grad = True
        self.train()

    # ----------------------------------------------------------------------------------------
    # What the Trainer calls to train, evaluate and predict
    # ----------------------------------------------------------------------------------------
    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """Compute the loss of one batch; the one method every module must define.

        Called as ``training_step(batch, batch_idx)``: the batch from the training dataloader, already on
        the device, and its index within the epoch. Under truncated backpropagation through time a third
        argument, ``hiddens``, carries the previous split's hidden state.

        Returns:
            The loss tensor, or a dict with a ``"loss"`` key (other keys reach ``on_train_batch_end``), or
            ``None`` to skip this batch's optimizer step. Under manual optimization, anything.

        Raises:
            NotImplementedError: The module does not define it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no training_step. Define "
            "`def training_step(self, batch, batch_idx)` returning the loss to train it."
        )

    def validation_step(self, *args: Any, **kwargs: Any) -> Any:
        """Evaluate one batch, usually by ``self.log``-ing metrics; the default does nothing.

        Called as ``validation_step(batch, batch_idx)``, with ``dataloader_idx`` as a third argument when
        there are several validation dataloaders; the batch is already on the device.

        Returns:
            Anything; it reaches ``on_validation_batch_end`` as ``outputs``.
        """
        return None

    def test_step(self, *args: Any, **kwargs: Any) -> Any:
        """Like ``validation_step``, for ``trainer.test``."""
        return None

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> Any:
        """One batch's prediction for ``trainer.predict``; ``self(batch)`` unless overridden.

        Returns:
            The prediction; ``trainer.predict`` returns the list of them.
        """
        return self(batch)

    def configure_optimizers(self) -> Any:
        """The optimizers and learning-rate schedulers to train with.

        Returns:
            One optimizer; a list of optimizers; two lists ``[optimizers], [schedulers]``; or a dict
            ``{"optimizer": ..., "lr_scheduler": scheduler or {"scheduler": ..., "interval": "step",
            "frequency": 1, "monitor": "val_loss"}}`` (or a list of such dicts), as in Lightning.

        Raises:
            NotImplementedError: The module does not define it.
        """
        raise NotImplementedError(
            f"{type(self).__name__} has no configure_optimizers. Define it and return an optimizer, "
            "e.g. `return torch.optim.Adam(self.parameters(), lr=1e-3)`."
        )

    def configure_callbacks(self) -> Sequence[Any] | Any:
        """Callbacks this module always needs; they replace the Trainer's callbacks of the same type.

        Returns:
            A callback or a list of them.
        """
        return []

    def configure_model(self) -> None:
        """Create layers here to build them directly on the target device (called after ``setup``)."""
