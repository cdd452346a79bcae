"""``ParallelStrategy``: the base of the strategies that run one process per device (DDP, FSDP)."""

from __future__ import annotations

import torch

from engineering.optimization.precision import Precision
from engineering.strategies.environment import ClusterEnvironment
from engineering.strategies.single import Strategy


class ParallelStrategy(Strategy):
    """Several processes: ranks come from the cluster environment, and decisions are voted on by all of them.
    Lightning programs test ``isinstance(trainer.strategy, ParallelStrategy)`` to tell a distributed run."""

    distributed = True

    def __init__(self) -> None:
        super().__init__()
        self.environment: ClusterEnvironment | None = None
        self.device_indices: list[int] = [0]
        self.devices_per_node = 1
        self.sync_batchnorm = False

    def connect(self, device: torch.device, precision: Precision, *, environment: ClusterEnvironment,
                device_indices: list[int], sync_batchnorm: bool = False) -> None:  # type: ignore[override]
        super().connect(device, precision)
        self.environment, self.device_indices, self.sync_batchnorm = environment, device_indices, sync_batchnorm
        self.devices_per_node = len(device_indices)

    @property
    def world_size(self) -> int:  # type: ignore[override]
        return self.environment.world_size

    @property
    def global_rank(self) -> int:  # type: ignore[override]
        return self.environment.global_rank

    @property
    def local_rank(self) -> int:  # type: ignore[override]
        return self.environment.local_rank

    @property
    def node_rank(self) -> int:  # type: ignore[override]
        return self.environment.node_rank

    def reduce_boolean_decision(self, decision: bool, all: bool = True) -> bool:
        """True when every process (``all``) or any process decided so."""
        votes = self.reduce(torch.tensor(int(decision), device=self.root_device), "sum")
        return bool(votes == self.world_size) if all else bool(votes > 0)
