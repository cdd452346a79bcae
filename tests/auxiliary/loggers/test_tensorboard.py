"""TensorBoardLogger, read back with tensorboard's own EventAccumulator."""

from __future__ import annotations

import pytest
import torch
import yaml
from google.protobuf import json_format
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.plugins.hparams import plugin_data_pb2

from auxiliary import TensorBoardLogger
from engineering import Trainer
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


def read(log_dir: str) -> EventAccumulator:
    accumulator = EventAccumulator(log_dir)
    accumulator.Reload()
    return accumulator


def session_hparams(accumulator: EventAccumulator) -> dict[str, object]:
    """The hyperparameters TensorBoard's HPARAMS tab shows for the run."""
    content = accumulator.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    return {name: json_format.MessageToDict(value) for name, value in values.items()}


def test_event_files_hold_the_logged_scalars_at_their_steps(tmp_path):
    trainer = Trainer(max_epochs=2, log_every_n_steps=2, default_root_dir=tmp_path, **NO_EXTRAS)
    trainer.fit(TinyModule(), tiny_loader(), tiny_loader())
    assert trainer.log_dir == str(tmp_path / "lightning_logs" / "version_0")
    accumulator = read(trainer.log_dir)
    train_loss = accumulator.Scalars("train_loss")
    assert [event.step for event in train_loss] == [1, 3, 5, 7]
    assert train_loss[-1].value == pytest.approx(trainer.logged_metrics["train_loss"].item())
    val_loss = accumulator.Scalars("val_loss")
    assert [event.step for event in val_loss] == [3, 7]
    assert val_loss[-1].value == pytest.approx(trainer.callback_metrics["val_loss"].item())
    assert [event.value for event in accumulator.Scalars("epoch")][-1] == 1


def test_one_call_of_log_metrics_is_one_event_of_the_file_with_all_its_scalars(tmp_path):
    logger = TensorBoardLogger(tmp_path, name=None, version=0, default_hp_metric=False)
    logger.log_metrics({"loss": 0.5, "accuracy": 0.25, "epoch": 1.0}, step=7)
    logger.log_metrics({"loss": 0.125}, step=8)
    logger.finalize("success")
    (event_file,) = (tmp_path / "version_0").glob("events.out.tfevents.*")
    summaries = [(event.step, [(value.tag, value.simple_value) for value in event.summary.value])
                 for event in LegacyEventFileLoader(str(event_file)).Load() if event.HasField("summary")]
    assert summaries == [(7, [("loss", 0.5), ("accuracy", 0.25), ("epoch", 1.0)]), (8, [("loss", 0.125)])]
    accumulator = read(logger.log_dir)
    assert [(event.step, event.value) for event in accumulator.Scalars("loss")] == [(7, 0.5), (8, 0.125)]
    assert [(event.step, event.value) for event in accumulator.Scalars("accuracy")] == [(7, 0.25)]


def test_hyperparameters_go_to_hparams_yaml_and_the_hparams_plugin_with_a_default_hp_metric(tmp_path):
    trainer = Trainer(max_epochs=1, default_root_dir=tmp_path, **NO_EXTRAS)
    trainer.fit(TinyModule(lr=0.05), tiny_loader())
    accumulator = read(trainer.log_dir)
    assert [(event.step, event.value) for event in accumulator.Scalars("hp_metric")] == [(0, -1.0)]
    assert session_hparams(accumulator) == {"lr": 0.05}
    assert yaml.safe_load(open(f"{trainer.log_dir}/hparams.yaml")) == {"lr": 0.05}


def test_default_hp_metric_false_writes_no_hp_metric(tmp_path):
    logger = TensorBoardLogger(tmp_path, default_hp_metric=False)
    Trainer(max_epochs=1, logger=logger, default_root_dir=tmp_path, **NO_EXTRAS).fit(TinyModule(), tiny_loader())
    assert "hp_metric" not in read(logger.log_dir).Tags()["scalars"]


def test_nested_hyperparameters_are_flattened_for_tensorboard(tmp_path):
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"optimizer": {"name": "sgd", "lr": 0.1}, "layers": [1, 2]})
    logger.finalize("success")
    assert session_hparams(read(logger.log_dir)) == {"optimizer/name": "sgd", "optimizer/lr": 0.1, "layers": "[1, 2]"}


def test_versions_count_up_and_can_be_chosen(tmp_path):
    first, second = TensorBoardLogger(tmp_path), TensorBoardLogger(tmp_path)
    first.log_metrics({"x": 1.0}, step=0)
    assert (first.version, second.version) == (0, 1)
    assert TensorBoardLogger(tmp_path, name="runs", version=7).log_dir == str(tmp_path / "runs" / "version_7")
    assert TensorBoardLogger(tmp_path, version="baseline").log_dir == str(tmp_path / "lightning_logs" / "baseline")
    first.finalize("success")


class Graphable(TinyModule):
    def __init__(self):
        super().__init__()
        self.example_input_array = torch.zeros(3, 32)


def test_fit_writes_the_model_graph_from_the_example_input(tmp_path):
    logger = TensorBoardLogger(tmp_path, log_graph=True)
    Trainer(max_epochs=1, limit_train_batches=1, logger=logger, default_root_dir=tmp_path,
            **NO_EXTRAS).fit(Graphable(), tiny_loader())
    graph = read(logger.log_dir).Graph()
    assert any(node.op == "aten::linear" for node in graph.node)


def test_log_graph_is_off_unless_asked_and_needs_an_example_when_on(tmp_path):
    quiet = TensorBoardLogger(tmp_path)
    quiet.log_graph(Graphable())
    assert quiet._writer is None  # nothing was written, tensorboard not even opened
    with pytest.raises(ValueError, match="example_input_array"):
        TensorBoardLogger(tmp_path, log_graph=True).log_graph(TinyModule())


def test_only_global_rank_zero_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    logger = TensorBoardLogger(tmp_path)
    logger.log_hyperparams({"lr": 0.1})
    logger.log_metrics({"x": 1.0}, step=0)
    logger.finalize("success")
    assert not (tmp_path / "lightning_logs").exists()
