"""``TrainerView``: what a subscriber may read of the Trainer it hears, and the little it may set.

Subscribers in ``auxiliary`` (and users' own) read the Trainer through these names only: Lightning's public ones.
``tools/check_boundaries.py`` fails the build when ``auxiliary`` reads anything else (``trainer.hooks``,
``trainer.results``, a private name), so the loops can change what they keep without breaking a subscriber.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from engineering.loop.state import Progress, TrainerState


class TrainerView(Protocol):
    """The Trainer as its subscribers see it. Settable: ``should_stop``, and the flags a callback may schedule
    (``accumulate_grad_batches``, ``max_epochs``, ``max_steps``, ``limit_*_batches``, ``check_val_every_n_epoch``)."""

    # where the run is
    state: TrainerState
    progress: Progress
    current_epoch: int
    global_step: int
    should_stop: bool
    sanity_checking: bool
    training: bool
    validating: bool
    testing: bool
    predicting: bool
    interrupted: bool
    received_sigterm: bool
    estimated_stepping_batches: float
    # what was logged
    callback_metrics: dict[str, torch.Tensor]
    logged_metrics: dict[str, torch.Tensor]
    progress_bar_metrics: dict[str, float]
    # what is being trained, and with what
    lightning_module: Any
    model: Any
    datamodule: Any
    optimizers: list[torch.optim.Optimizer]
    lightning_optimizers: list[Any]
    lr_scheduler_configs: list[Any]
    strategy: Any
    precision: str
    accelerator: Any
    device_ids: list[int]
    num_devices: int
    profiler: Any
    # subscribers
    callbacks: list[Any]
    checkpoint_callback: Any
    checkpoint_callbacks: list[Any]
    logger: Any
    loggers: list[Any]
    log_dir: str
    default_root_dir: str
    ckpt_path: str | None
    # processes
    global_rank: int
    local_rank: int
    node_rank: int
    world_size: int
    num_nodes: int
    is_global_zero: bool
    # data
    train_dataloader: Any
    val_dataloaders: Any
    test_dataloaders: Any
    predict_dataloaders: Any
    num_training_batches: float
    num_val_batches: list[float]
    num_sanity_val_batches: list[float]
    num_test_batches: list[float]
    num_predict_batches: list[float]
    val_check_batch: float
    # flags, as the run uses them
    fast_dev_run: int
    max_epochs: int
    min_epochs: int | None
    max_steps: int
    min_steps: int | None
    max_time: float | None
    limit_train_batches: int | float
    limit_val_batches: int | float
    limit_test_batches: int | float
    limit_predict_batches: int | float
    val_check_interval: int | float
    check_val_every_n_epoch: int | None
    num_sanity_val_steps: int
    log_every_n_steps: int
    accumulate_grad_batches: int
    gradient_clip_val: float | None
    gradient_clip_algorithm: str
    enable_progress_bar: bool
    enable_model_summary: bool
    enable_checkpointing: bool
    barebones: bool
    overfit_batches: int | float
    deterministic: bool | str | None
    benchmark: bool | None
    inference_mode: bool
    detect_anomaly: bool
    use_distributed_sampler: bool
    sync_batchnorm: bool

    # what a subscriber may ask for
    emit: Callable[..., Any]
    save_checkpoint: Callable[..., None]
    fit: Callable[..., None]
    validate: Callable[..., Any]
    test: Callable[..., Any]
    predict: Callable[..., Any]
