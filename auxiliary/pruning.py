"""ModelPruning: prune weights during training with ``torch.nn.utils.prune``, optionally rewinding the survivors."""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, Union

from torch import nn
from torch.nn.utils import prune

from engineering import Callback, MisconfigurationError

_FUNCTIONS = {
    "ln_structured": prune.ln_structured,
    "l1_unstructured": prune.l1_unstructured,
    "random_structured": prune.random_structured,
    "random_unstructured": prune.random_unstructured,
}
_METHODS = {
    "ln_structured": prune.LnStructured,
    "l1_unstructured": prune.L1Unstructured,
    "random_structured": prune.RandomStructured,
    "random_unstructured": prune.RandomUnstructured,
}
Amount = Union[int, float]
ParameterList = Sequence[tuple[nn.Module, str]]


class ModelPruning(Callback):
    """Prune ``parameters_to_prune`` (default: every ``weight`` and ``bias``, or ``parameter_names``, of every
    layer that is not a container) at each ``on_train_epoch_end`` (or ``on_validation_epoch_end`` with
    ``prune_on_train_epoch_end=False``) where ``apply_pruning`` (a bool, or a function of the epoch) says so,
    by ``amount`` (a fraction or a count; or a function of the epoch).

    ``pruning_fn`` is one of PyTorch's by name ("l1_unstructured", "random_unstructured", "ln_structured",
    "random_structured"; the structured ones need ``pruning_dim``, and ln needs ``pruning_norm``) or a
    ``BasePruningMethod`` subclass. ``use_global_unstructured`` ranks all parameters together. With
    ``use_lottery_ticket_hypothesis`` the surviving weights go back to their values when training started
    (re-initialised with ``resample_parameters``). With ``make_pruning_permanent`` checkpoints hold plain pruned
    weights, and the masks are folded in when training ends.
    """

    PARAMETER_NAMES = ("weight", "bias")

    def __init__(
        self,
        pruning_fn: Callable[..., Any] | str,
        parameters_to_prune: ParameterList = (),
        parameter_names: list[str] | None = None,
        use_global_unstructured: bool = True,
        amount: Amount | Callable[[int], Amount] = 0.5,
        apply_pruning: bool | Callable[[int], bool] = True,
        make_pruning_permanent: bool = True,
        use_lottery_ticket_hypothesis: bool | Callable[[int], bool] = True,
        resample_parameters: bool = False,
        pruning_dim: int | None = None,
        pruning_norm: int | None = None,
        verbose: int = 0,
        prune_on_train_epoch_end: bool = True,
    ) -> None:
        self._parameter_names = list(parameter_names or self.PARAMETER_NAMES)
        unknown = [name for name in self._parameter_names if name not in self.PARAMETER_NAMES]
        if unknown:
            raise MisconfigurationError(f"ModelPruning(parameter_names={unknown}): prune only {self.PARAMETER_NAMES}.")
        self._use_global_unstructured = use_global_unstructured
        self._global_kwargs: dict[str, Any] = {}
        if isinstance(pruning_fn, str):
            pruning_fn = self._named_pruning(pruning_fn.lower(), pruning_dim, pruning_norm)
        elif not (inspect.isclass(pruning_fn) and issubclass(pruning_fn, prune.BasePruningMethod)):
            raise MisconfigurationError(
                f"ModelPruning(pruning_fn={pruning_fn!r}) must be one of {list(_FUNCTIONS)} or a "
                "torch.nn.utils.prune.BasePruningMethod subclass (the class, not an instance)."
            )
        elif not use_global_unstructured:
            raise MisconfigurationError("A BasePruningMethod pruning_fn needs use_global_unstructured=True.")
        if use_global_unstructured and pruning_fn.PRUNING_TYPE != "unstructured":
            raise MisconfigurationError(
                f"use_global_unstructured=True needs an unstructured method; {pruning_fn.__name__} is "
                f"{pruning_fn.PRUNING_TYPE}. Pass use_global_unstructured=False."
            )
        if not (isinstance(amount, (int, float)) or callable(amount)):
            raise MisconfigurationError(f"ModelPruning(amount={amount!r}) must be an int, a float or a function.")
        if verbose not in (0, 1, 2):
            raise MisconfigurationError(f"ModelPruning(verbose={verbose!r}) must be 0, 1 or 2.")
        self.pruning_fn = pruning_fn
        self.amount = amount
        self._parameters_to_prune = parameters_to_prune
        self._apply_pruning = apply_pruning
        self._make_pruning_permanent = make_pruning_permanent
        self._use_lottery_ticket_hypothesis = use_lottery_ticket_hypothesis
        self._resample_parameters = resample_parameters
        self._prune_on_train_epoch_end = prune_on_train_epoch_end
        self._verbose = verbose
        self._original_layers: dict[int, tuple[nn.Module, list[tuple[int, str]]]] = {}

    def _named_pruning(self, name: str, dim: int | None, norm: int | None) -> Any:
        if name not in _FUNCTIONS:
            raise MisconfigurationError(f"ModelPruning(pruning_fn={name!r}) is not one of {list(_FUNCTIONS)}.")
        options: dict[str, Any] = {}
        if name.endswith("_structured"):
            if dim is None:
                raise MisconfigurationError(f"ModelPruning(pruning_fn={name!r}) needs pruning_dim=...")
            if name == "ln_structured":
                if norm is None:
                    raise MisconfigurationError("ModelPruning(pruning_fn='ln_structured') needs pruning_norm=...")
                options["n"] = norm
            options["dim"] = dim
        if self._use_global_unstructured:
            self._global_kwargs = options
            return _METHODS[name]
        function = functools.partial(_FUNCTIONS[name], **options)
        function.PRUNING_TYPE = _METHODS[name].PRUNING_TYPE  # type: ignore[attr-defined]
        function.__name__ = name  # type: ignore[attr-defined]
        return function

    def filter_parameters_to_prune(self, parameters_to_prune: ParameterList = ()) -> ParameterList:
        """Override to leave some of the (module, name) pairs out."""
        return parameters_to_prune

    @staticmethod
    def sanitize_parameters_to_prune(pl_module: nn.Module, parameters_to_prune: ParameterList = (),
                                     parameter_names: Sequence[str] = ()) -> ParameterList:
        """``parameters_to_prune`` checked against the module, or every (layer, name) it has when empty."""
        names = parameter_names or ModelPruning.PARAMETER_NAMES
        containers = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
        layers = [module for module in pl_module.modules()
                  if module is not pl_module and not isinstance(module, containers)]
        if not parameters_to_prune:
            return [(layer, name) for name in names for layer in layers
                    if isinstance(getattr(layer, name, None), nn.Parameter)]
        if not all(isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], nn.Module)
                   and isinstance(pair[1], str) for pair in parameters_to_prune):
            raise MisconfigurationError("ModelPruning(parameters_to_prune=...) must be a list of (module, name) pairs.")
        missing = [f"{type(module).__name__}.{name}" for module, name in parameters_to_prune
                   if not any(module is layer for layer in layers) or not hasattr(module, name)]
        if missing:
            raise MisconfigurationError(f"ModelPruning: parameters_to_prune names {missing}, not in the model.")
        return list(parameters_to_prune)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        found = self.sanitize_parameters_to_prune(pl_module, self._parameters_to_prune, self._parameter_names)
        self._parameters_to_prune = self.filter_parameters_to_prune(found)
        self._original_layers = {}
        if self._use_lottery_ticket_hypothesis:
            for index, (module, name) in enumerate(self._parameters_to_prune):
                # One copy per layer, taken before any training: the values the lottery ticket rewinds to.
                self._original_layers.setdefault(id(module), (copy.deepcopy(module), []))[1].append((index, name))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self._prune_on_train_epoch_end:
            self._run_pruning(trainer.current_epoch)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking and not self._prune_on_train_epoch_end:
            self._run_pruning(trainer.current_epoch)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self._make_pruning_permanent:
            self.make_pruning_permanent(pl_module)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if not self._make_pruning_permanent:
            return
        state = dict(checkpoint["state_dict"])
        for name in [key[: -len("_mask")] for key in state if key.endswith("_mask")]:
            original, mask = state.pop(f"{name}_orig"), state.pop(f"{name}_mask")
            state[name] = mask.to(dtype=original.dtype) * original
        checkpoint["state_dict"] = state

    def _run_pruning(self, epoch: int) -> None:
        apply = self._apply_pruning(epoch) if callable(self._apply_pruning) else self._apply_pruning
        amount = self.amount(epoch) if callable(self.amount) else self.amount
        if not apply or not amount:
            return
        self.apply_pruning(amount)
        rewind = self._use_lottery_ticket_hypothesis
        if rewind(epoch) if callable(rewind) else rewind:
            self.apply_lottery_ticket_hypothesis()

    def apply_pruning(self, amount: Amount) -> None:
        before = [_pruned(module, name) for module, name in self._parameters_to_prune]
        if self._use_global_unstructured:
            accepted = set(inspect.signature(self.pruning_fn).parameters)
            options = {key: value for key, value in {**self._global_kwargs, "amount": amount}.items()
                       if key in accepted}
            prune.global_unstructured(self._parameters_to_prune, pruning_method=self.pruning_fn, **options)
        else:
            for module, name in self._parameters_to_prune:
                self.pruning_fn(module, name=name, amount=amount)
        if self._verbose:
            self._report(before, [_pruned(module, name) for module, name in self._parameters_to_prune], amount)

    def apply_lottery_ticket_hypothesis(self) -> None:
        """Put the surviving weights back to their values at the start (Frankle & Carbin, 2019); the masks stay."""
        for original, names in self._original_layers.values():
            if self._resample_parameters and callable(getattr(original, "reset_parameters", None)):
                original = copy.deepcopy(original)
                original.reset_parameters()
            for index, name in names:
                module, _ = self._parameters_to_prune[index]
                target = getattr(module, f"{name}_orig", None)
                target = target if target is not None else getattr(module, name)
                # A copy, not the copy's storage: training would otherwise move the values rewound to.
                target.data.copy_(getattr(original, name).data)

    @staticmethod
    def make_pruning_permanent(module: nn.Module) -> None:
        """Fold every pruning mask into its weight and remove the re-parametrisation."""
        for layer in module.modules():
            for key, hook in list(layer._forward_pre_hooks.items()):
                if isinstance(hook, prune.BasePruningMethod):
                    hook.remove(layer)
                    del layer._forward_pre_hooks[key]

    def _report(self, before: list[tuple[int, int]], after: list[tuple[int, int]], amount: Amount) -> None:
        total = sum(size for _, size in after)
        zeros_before, zeros_after = sum(zeros for zeros, _ in before), sum(zeros for zeros, _ in after)
        name = getattr(self.pruning_fn, "__name__", type(self.pruning_fn).__name__)
        print(f"Applied {name}. Pruned: {zeros_before}/{total} ({zeros_before / total:.2%}) -> "
              f"{zeros_after}/{total} ({zeros_after / total:.2%})")
        if self._verbose == 2:
            for (module, parameter), (was, size), (now, _) in zip(self._parameters_to_prune, before, after):
                print(f"Applied {name} to {module!r}.{parameter} with amount={amount}. Pruned: {was} "
                      f"({was / size:.2%}) -> {now} ({now / size:.2%})")


def _pruned(module: nn.Module, name: str) -> tuple[int, int]:
    """(zeros in the mask, mask size) of a parameter; (0, 1) when it is not pruned yet."""
    mask = getattr(module, f"{name}_mask", None)
    if mask is None:
        return 0, 1
    return int((mask == 0).sum()), mask.numel()

