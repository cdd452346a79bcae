"""What TensorBoardLogger recorded for a run: the reference every tracker's metric history is checked against."""

from __future__ import annotations

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def tensorboard_history(log_dir: str) -> dict[str, list[tuple[int, float]]]:
    """``{metric: [(step, value), ...]}`` from the event files, without TensorBoard's own ``hp_metric``."""
    accumulator = EventAccumulator(log_dir)
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"] if tag != "hp_metric"}
