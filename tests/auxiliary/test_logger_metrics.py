"""What metric-sending callbacks share: the logging schedule, and values that reach the loggers over the bus."""

from __future__ import annotations

import csv

from auxiliary import CSVLogger
from engineering import Callback
from auxiliary.logger_metrics import logging_due, send_to_loggers
from engineering import Trainer
from tests.helpers import TinyModule, tiny_loader

NO_EXTRAS = dict(enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False)


class SendsBatchIndex(Callback):
    """Sends the batch index to the loggers when the Trainer logs; records when that was."""

    def __init__(self):
        self.due_at: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if logging_due(trainer):
            self.due_at.append(trainer.progress.batches_that_stepped)
            send_to_loggers(trainer, {"sent": float(batch_idx)})


class LogsInTheSameHook(TinyModule):
    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.log("logged", float(batch_idx))


def column(logger: CSVLogger, name: str) -> list[tuple[str, str]]:
    with open(logger.metrics_file_path, newline="") as file:
        return [(row["step"], row[name]) for row in csv.DictReader(file) if row.get(name)]


def test_sent_values_land_at_the_trainers_logging_steps_and_the_module_still_logs(tmp_path):
    logger, sender = CSVLogger(tmp_path), SendsBatchIndex()
    Trainer(max_epochs=2, log_every_n_steps=3, logger=logger, callbacks=[sender], default_root_dir=tmp_path,
            **NO_EXTRAS).fit(LogsInTheSameHook(), tiny_loader())
    assert sender.due_at == [2, 5]
    assert column(logger, "sent") == [("2", "2.0"), ("5", "1.0")]
    assert column(logger, "logged") == [("2", "2.0"), ("5", "1.0")]  # the module's self.log in that hook works
