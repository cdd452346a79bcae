"""BaseFinetuning and BackboneFinetuning: freeze parts of a model, then unfreeze them into the optimizer by epoch."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Union

import torch
from torch.nn import Module, ModuleDict
from torch.nn.modules.batchnorm import _BatchNorm

from engineering import Callback, MisconfigurationError

Modules = Union[Module, Iterable[Union[Module, Iterable]]]


def multiplicative(epoch: int) -> float:
    """BackboneFinetuning's default ``lambda_func``: double the backbone's learning rate each epoch."""
    return 2.0


class BaseFinetuning(Callback):
    """Subclass it and define ``freeze_before_training(pl_module)`` (runs at ``setup``) and
    ``finetune_function(pl_module, epoch, optimizer)`` (runs at each ``on_train_epoch_start``, for each
    optimizer), using the static helpers: ``freeze``, ``make_trainable``, ``unfreeze_and_add_param_group``.

    The parameter groups added, and which parameters train, go in checkpoints, so a resumed run gets back the
    optimizer (and the frozen parts) it had.
    """

    def __init__(self) -> None:
        self._internal_optimizer_metadata: dict[int, list[dict[str, Any]]] = {}
        self._latest_finetuned_epoch = -1

    def state_dict(self) -> dict[str, Any]:
        return {"internal_optimizer_metadata": self._internal_optimizer_metadata,
                "latest_finetuned_epoch": self._latest_finetuned_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._internal_optimizer_metadata = state_dict["internal_optimizer_metadata"]
        self._latest_finetuned_epoch = state_dict.get("latest_finetuned_epoch", -1)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is not None:  # which parameters train is a fact of the module, read when the file is written
            state["frozen_parameters"] = [name for name, parameter in pl_module.named_parameters()
                                          if not parameter.requires_grad]
            state["untracked_batch_norms"] = [name for name, module in pl_module.named_modules()
                                              if isinstance(module, _BatchNorm) and not module.track_running_stats]

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        # The Trainer loads the optimizers' states right after this hook: they must have the groups the saved
        # optimizers had, the ones finetune_function added included.
        state = checkpoint.get("callbacks", {}).get(self.state_key)
        if state is None:
            return
        frozen = set(state.get("frozen_parameters", ()))
        for name, parameter in pl_module.named_parameters():
            parameter.requires_grad = name not in frozen
        untracked = set(state.get("untracked_batch_norms", ()))
        for name, module in pl_module.named_modules():
            if isinstance(module, _BatchNorm):
                module.track_running_stats = name not in untracked
        parameters = dict(pl_module.named_parameters())
        for index, optimizer in enumerate(trainer.optimizers):
            groups = state["internal_optimizer_metadata"].get(index)
            if groups:
                optimizer.param_groups = [
                    {**{key: value for key, value in group.items() if key != "params"},
                     "params": [parameters[name] for name in group["params"]]}
                    for group in groups
                ]

    @staticmethod
    def flatten_modules(modules: Modules) -> list[Module]:
        """The leaf modules (and modules holding parameters of their own) under ``modules``."""
        if isinstance(modules, ModuleDict):
            modules = modules.values()
        if isinstance(modules, Iterable):
            found = [leaf for module in modules for leaf in BaseFinetuning.flatten_modules(module)]
        else:
            found = list(modules.modules())
        return [module for module in found if not list(module.children()) or module._parameters]

    @staticmethod
    def filter_params(modules: Modules, train_bn: bool = True,
                      requires_grad: bool = True) -> Iterator[torch.nn.Parameter]:
        """The parameters of ``modules`` whose ``requires_grad`` is ``requires_grad`` (batch norms' only with
        ``train_bn``)."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and not train_bn:
                continue
            for parameter in module.parameters(recurse=False):
                if parameter.requires_grad == requires_grad:
                    yield parameter

    @staticmethod
    def make_trainable(modules: Modules) -> None:
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm):
                module.track_running_stats = True
            for parameter in module.parameters(recurse=False):
                parameter.requires_grad = True

    @staticmethod
    def freeze_module(module: Module) -> None:
        if isinstance(module, _BatchNorm):
            module.track_running_stats = False
        for parameter in module.parameters(recurse=False):
            parameter.requires_grad = False

    @staticmethod
    def freeze(modules: Modules, train_bn: bool = True) -> None:
        """Freeze ``modules``; batch norms keep training when ``train_bn``."""
        for module in BaseFinetuning.flatten_modules(modules):
            if isinstance(module, _BatchNorm) and train_bn:
                BaseFinetuning.make_trainable(module)
            else:
                BaseFinetuning.freeze_module(module)

    @staticmethod
    def filter_on_optimizer(optimizer: torch.optim.Optimizer, params: Iterable[torch.nn.Parameter]) -> list:
        """``params`` not yet in ``optimizer`` (a parameter in two groups is an error in PyTorch)."""
        present = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
        params = list(params)
        kept = [parameter for parameter in params if id(parameter) not in present]
        if len(kept) < len(params):
            warnings.warn(
                f"{len(params) - len(kept)} parameter(s) to unfreeze are already in the optimizer and are skipped. "
                f"To add them as a group of their own, build {type(optimizer).__name__} in configure_optimizers from "
                "filter(lambda p: p.requires_grad, self.parameters()).", RuntimeWarning, stacklevel=3,
            )
        return kept

    @staticmethod
    def unfreeze_and_add_param_group(modules: Modules, optimizer: torch.optim.Optimizer, lr: float | None = None,
                                     initial_denom_lr: float = 10.0, train_bn: bool = True) -> None:
        """Make ``modules`` trainable and add their parameters to ``optimizer`` as a new group, with ``lr``
        (default: the first group's lr / ``initial_denom_lr``)."""
        BaseFinetuning.make_trainable(modules)
        group_lr = optimizer.param_groups[0]["lr"] / initial_denom_lr if lr is None else float(lr)
        params = BaseFinetuning.filter_on_optimizer(
            optimizer, BaseFinetuning.filter_params(modules, train_bn=train_bn, requires_grad=True)
        )
        if params:
            optimizer.add_param_group({"params": params, "lr": group_lr})

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self.freeze_before_training(pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.current_epoch <= self._latest_finetuned_epoch:
            return  # a run resumed mid-epoch starts the epoch again; its finetuning is already in the optimizer
        self._latest_finetuned_epoch = trainer.current_epoch
        names = {parameter: name for name, parameter in pl_module.named_parameters()}
        for index, optimizer in enumerate(trainer.optimizers):
            self.finetune_function(pl_module, trainer.current_epoch, optimizer)
            self._internal_optimizer_metadata[index] = [
                {**{key: value for key, value in group.items() if key != "params"},
                 "params": [names[parameter] for parameter in group["params"]]}
                for group in optimizer.param_groups
            ]

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        """Unfreeze, add parameter groups, change their learning rates: whatever epoch ``epoch`` needs."""
        raise NotImplementedError(f"{type(self).__name__} must define finetune_function(pl_module, epoch, optimizer).")

    def freeze_before_training(self, pl_module: Any) -> None:
        """Freeze what must not train at first (``self.freeze(pl_module.some_part)``)."""
        raise NotImplementedError(f"{type(self).__name__} must define freeze_before_training(pl_module).")


class BackboneFinetuning(BaseFinetuning):
    """Train ``pl_module.backbone`` from epoch ``unfreeze_backbone_at_epoch`` (0-based), with its own lr.

    At that epoch the backbone joins the optimizer as a new group with ``backbone_initial_lr`` (default: the
    first group's lr times ``backbone_initial_ratio_lr``); each later epoch its lr becomes
    ``lambda_func(epoch + 1) * previous``, capped at the first group's lr when ``should_align``.
    """

    def __init__(
        self,
        unfreeze_backbone_at_epoch: int = 10,
        lambda_func: Callable[[int], float] = multiplicative,
        backbone_initial_ratio_lr: float = 10e-2,
        backbone_initial_lr: float | None = None,
        should_align: bool = True,
        initial_denom_lr: float = 10.0,
        train_bn: bool = True,
        verbose: bool = False,
        rounding: int = 12,
    ) -> None:
        super().__init__()
        self.unfreeze_backbone_at_epoch = unfreeze_backbone_at_epoch
        self.lambda_func = lambda_func
        self.backbone_initial_ratio_lr = backbone_initial_ratio_lr
        self.backbone_initial_lr = backbone_initial_lr
        self.should_align = should_align
        self.initial_denom_lr = initial_denom_lr
        self.train_bn = train_bn
        self.verbose = verbose
        self.rounding = rounding
        self.previous_backbone_lr: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "previous_backbone_lr": self.previous_backbone_lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.previous_backbone_lr = state_dict["previous_backbone_lr"]
        super().load_state_dict(state_dict)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if not isinstance(getattr(pl_module, "backbone", None), Module):
            raise MisconfigurationError(
                f"BackboneFinetuning needs the module to have an nn.Module attribute `backbone`; "
                f"{type(pl_module).__name__} has none. Assign the part to finetune to self.backbone."
            )
        super().setup(trainer, pl_module, stage)

    def freeze_before_training(self, pl_module: Any) -> None:
        self.freeze(pl_module.backbone)

    def finetune_function(self, pl_module: Any, epoch: int, optimizer: torch.optim.Optimizer) -> None:
        current_lr = optimizer.param_groups[0]["lr"]
        if epoch == self.unfreeze_backbone_at_epoch:
            backbone_lr = (self.backbone_initial_lr if self.backbone_initial_lr is not None
                           else current_lr * self.backbone_initial_ratio_lr)
            self.unfreeze_and_add_param_group(pl_module.backbone, optimizer, backbone_lr,
                                              initial_denom_lr=self.initial_denom_lr, train_bn=self.train_bn)
        elif epoch > self.unfreeze_backbone_at_epoch:
            backbone_lr = self.lambda_func(epoch + 1) * self.previous_backbone_lr
            if self.should_align and backbone_lr > current_lr:
                backbone_lr = current_lr
            optimizer.param_groups[-1]["lr"] = backbone_lr
        else:
            return
        self.previous_backbone_lr = backbone_lr
        if self.verbose:
            print(f"Current lr: {round(current_lr, self.rounding)}, Backbone lr: {round(backbone_lr, self.rounding)}")
