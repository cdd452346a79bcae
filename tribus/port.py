"""Run a Lightning program on tribus before its imports are rewritten: ``python -m tribus.port script.py [args]``.

While the script runs, ``lightning``, ``lightning.pytorch`` and ``pytorch_lightning`` (and their submodules
below) resolve to tribus's classes: ``import lightning.pytorch as pl``, ``from lightning.pytorch.callbacks import
EarlyStopping``, ``from pytorch_lightning import Trainer`` all work. A name tribus lacks raises an ``ImportError``
naming it. Nothing changes unless a program is started this way (or calls ``install()`` itself).

This is the one module that imports all three packages; none of them imports it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import runpy
import sys
import types
from typing import Any

# Lightning's module → {Lightning's name: "tribus module:name"}. Submodule names are attributes too, as
# ``pl.callbacks`` is under Lightning.
_CORE = {
    "LightningModule": "research:LightningModule", "LightningDataModule": "research:LightningDataModule",
    "Trainer": "engineering:Trainer", "Callback": "engineering:Callback", "seed_everything": "engineering:seed_everything",
    "cli_lightning_logo": "engineering:cli_lightning_logo",
}
_CALLBACKS = {
    "Callback": "engineering:Callback", "ModelCheckpoint": "engineering:ModelCheckpoint",
    "OnExceptionCheckpoint": "engineering:OnExceptionCheckpoint", "EarlyStopping": "auxiliary:EarlyStopping",
    "LearningRateMonitor": "auxiliary:LearningRateMonitor", "DeviceStatsMonitor": "auxiliary:DeviceStatsMonitor",
    "ModelSummary": "auxiliary:ModelSummary", "ProgressBar": "auxiliary:ProgressBar",
    "TQDMProgressBar": "auxiliary:TQDMProgressBar", "BasePredictionWriter": "auxiliary:BasePredictionWriter",
}
_LOGGERS = {
    "Logger": "engineering:Logger", "CSVLogger": "auxiliary:CSVLogger", "TensorBoardLogger": "auxiliary:TensorBoardLogger",
}
_UTILITIES = {
    name: f"engineering.utilities:{name}" for name in (
        "AttributeDict", "CombinedLoader", "grad_norm", "is_picklable", "measure_flops", "move_data_to_device", "rank_zero_debug",
        "rank_zero_info", "rank_zero_only", "rank_zero_warn",
    )
}
_STRATEGIES = {
    name: f"engineering:{name}"
    for name in ("Strategy", "ParallelStrategy", "SingleDeviceStrategy", "DDPStrategy", "FSDPStrategy")
} | {"SingleDeviceXLAStrategy": "engineering:XLAStrategy"}
_PROFILERS = {
    "Profiler": "engineering:Profiler", "PassThroughProfiler": "engineering:PassThroughProfiler",
    "SimpleProfiler": "auxiliary:SimpleProfiler", "AdvancedProfiler": "auxiliary:AdvancedProfiler",
    "PyTorchProfiler": "auxiliary:PyTorchProfiler",
}
_STATES = {name: f"engineering:{name}" for name in ("TrainerFn", "RunningStage", "TrainerStatus", "TrainerState")}
_MODULES: dict[str, dict[str, str]] = {
    "": _CORE,
    "callbacks": _CALLBACKS,
    "callbacks.early_stopping": {"EarlyStopping": "auxiliary:EarlyStopping",
                                 "EarlyStoppingReason": "auxiliary:EarlyStoppingReason"},
    "callbacks.model_checkpoint": {"ModelCheckpoint": "engineering:ModelCheckpoint"},
    "callbacks.progress": {"ProgressBar": "auxiliary:ProgressBar", "TQDMProgressBar": "auxiliary:TQDMProgressBar"},
    "loggers": _LOGGERS,
    "loggers.logger": {"Logger": "engineering:Logger"},
    "loggers.csv_logs": {"CSVLogger": "auxiliary:CSVLogger"},
    "loggers.tensorboard": {"TensorBoardLogger": "auxiliary:TensorBoardLogger"},
    "utilities": _UTILITIES,
    "utilities.rank_zero": {name: path for name, path in _UTILITIES.items() if name.startswith("rank_zero")},
    "utilities.parsing": {"AttributeDict": "research:AttributeDict", "is_picklable": "engineering.utilities:is_picklable"},
    "utilities.model_helpers": {"get_torchvision_model": "engineering.utilities.model_helpers:get_torchvision_model"},
    "utilities.imports": {name: f"engineering.utilities.imports:{name}"
                          for name in ("_TORCHVISION_AVAILABLE", "_OMEGACONF_AVAILABLE", "_RICH_AVAILABLE")},
    "utilities.combined_loader": {"CombinedLoader": "engineering.utilities:CombinedLoader"},
    "utilities.exceptions": {"MisconfigurationException": "engineering:MisconfigurationError"},
    "utilities.types": {"LRSchedulerConfig": "engineering:LRSchedulerConfig"},
    "strategies": _STRATEGIES,
    "accelerators": {name: f"engineering:{name}" for name in (
        "Accelerator", "CPUAccelerator", "CUDAAccelerator", "MPSAccelerator", "XLAAccelerator")},
    "profilers": _PROFILERS,
    "core": {"LightningModule": "research:LightningModule", "LightningDataModule": "research:LightningDataModule"},
    "core.module": {"LightningModule": "research:LightningModule"},
    "core.datamodule": {"LightningDataModule": "research:LightningDataModule"},
    "core.mixins": {"HyperparametersMixin": "research:HyperparametersMixin"},
    "core.optimizer": {"LightningOptimizer": "engineering:LightningOptimizer"},
    "trainer": {"Trainer": "engineering:Trainer"},
    "trainer.states": _STATES,
    "cli": {"LightningCLI": "engineering.cli:LightningCLI"},
}
_ROOTS = ("lightning.pytorch", "pytorch_lightning", "lightning")
_GUIDE = "docs/migrating-from-lightning.md lists every name tribus offers"


def _relative(fullname: str) -> str | None:
    """``fullname`` as a key of ``_MODULES`` ("" for a root), or None when it is no Lightning module."""
    for root in _ROOTS:
        if fullname == root:
            return ""
        if fullname.startswith(root + "."):
            return fullname[len(root) + 1:]
    return None


class _LightningModule(types.ModuleType):
    """A Lightning module name whose attributes are tribus's objects, looked up when first read."""

    def __init__(self, fullname: str, names: dict[str, str], submodules: list[str]) -> None:
        super().__init__(fullname, f"tribus's stand-in for {fullname} (python -m tribus.port)")
        self._names = names
        self._submodules = submodules
        self.__all__ = sorted(names)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._submodules:
            return importlib.import_module(f"{self.__name__}.{name}")
        target = self._names.get(name)
        if target is None:
            raise ImportError(f"tribus has no counterpart of {self.__name__}.{name}; {_GUIDE}.", name=self.__name__)
        module, attribute = target.split(":")
        value = getattr(importlib.import_module(module), attribute)
        setattr(self, name, value)
        return value

    def __dir__(self) -> list[str]:
        return sorted({*self._names, *self._submodules, *super().__dir__()})


class LightningFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers imports of Lightning's module names with tribus's stand-ins; any other import goes on as usual."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        relative = _relative(fullname)
        if relative is None:
            return None
        if relative not in _MODULES:
            raise ModuleNotFoundError(f"tribus has no counterpart of the module {fullname}; {_GUIDE}.", name=fullname)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        relative = _relative(spec.name)
        prefix = f"{relative}." if relative else ""
        submodules = sorted({key[len(prefix):].split(".")[0] for key in _MODULES if key.startswith(prefix) and key != relative})
        if spec.name == "lightning":  # `import lightning as L; L.pytorch` is the package itself
            submodules.append("pytorch")
        return _LightningModule(spec.name, _MODULES[relative], submodules)

    def exec_module(self, module: types.ModuleType) -> None:
        """The stand-in is complete when created."""


def install() -> LightningFinder:
    """Put the finder first on ``sys.meta_path`` (once), so Lightning's names resolve to tribus from now on."""
    for finder in sys.meta_path:
        if isinstance(finder, LightningFinder):
            return finder
    for name in [name for name in sys.modules if _relative(name) is not None]:
        del sys.modules[name]  # a real Lightning imported earlier would otherwise keep answering
    finder = LightningFinder()
    sys.meta_path.insert(0, finder)
    return finder


def main(arguments: list[str] | None = None) -> None:
    """``python -m tribus.port script.py [args...]``: run the script as ``__main__`` with the shim installed."""
    arguments = list(sys.argv[1:] if arguments is None else arguments)
    if not arguments or arguments[0] in ("-h", "--help"):
        print("usage: python -m tribus.port script.py [args...]\n"
              "Runs a Lightning program on tribus: lightning.pytorch and pytorch_lightning resolve to tribus.")
        raise SystemExit(0 if arguments else 2)
    install()
    sys.argv = arguments
    runpy.run_path(arguments[0], run_name="__main__")


if __name__ == "__main__":
    main()
