"""Who launched this process and where it sits: torchrun, SLURM, or tribus launching itself.

A ``ClusterEnvironment`` says the process's ranks, the world size, and where rank 0 listens.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterEnvironment:
    world_size: int
    global_rank: int
    local_rank: int
    node_rank: int
    main_address: str
    main_port: int
    launched_externally: bool  # torchrun or SLURM started every process; tribus starts none
    name: str = "local"


def detect(devices_per_node: int, num_nodes: int) -> ClusterEnvironment:
    """Read the launcher's environment variables; without any, this is rank 0 of a job tribus will launch."""
    if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return _from_torch_variables(launched_externally="TORCHELASTIC_RUN_ID" in os.environ)
    if under_slurm():
        return _from_slurm(devices_per_node, num_nodes)
    return ClusterEnvironment(
        world_size=devices_per_node * num_nodes,
        global_rank=0,
        local_rank=0,
        node_rank=int(os.environ.get("NODE_RANK", 0)),
        main_address=os.environ.get("MASTER_ADDR", "127.0.0.1"),
        main_port=int(os.environ.get("MASTER_PORT", 0)) or free_port(),
        launched_externally=False,
    )


def _from_torch_variables(launched_externally: bool) -> ClusterEnvironment:
    environ = os.environ
    local_rank = int(environ["LOCAL_RANK"])
    return ClusterEnvironment(
        world_size=int(environ["WORLD_SIZE"]),
        global_rank=int(environ.get("RANK", local_rank)),
        local_rank=local_rank,
        node_rank=int(environ.get("GROUP_RANK", environ.get("NODE_RANK", 0))),
        main_address=environ.get("MASTER_ADDR", "127.0.0.1"),
        main_port=int(environ.get("MASTER_PORT", 29500)),
        launched_externally=launched_externally,
        name="torchrun" if launched_externally else "tribus",
    )


def under_slurm() -> bool:
    # An interactive `srun --pty bash` sets SLURM variables too, but there a user starts the processes.
    return "SLURM_NTASKS" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


def _from_slurm(devices_per_node: int, num_nodes: int) -> ClusterEnvironment:
    environ = os.environ
    tasks = int(environ["SLURM_NTASKS"])
    if tasks != devices_per_node * num_nodes:
        raise RuntimeError(
            f"SLURM started {tasks} tasks but the Trainer asks for devices={devices_per_node} x "
            f"num_nodes={num_nodes}. Set `#SBATCH --ntasks-per-node={devices_per_node}` and "
            f"`--nodes={num_nodes}`, or change the Trainer's devices/num_nodes to match."
        )
    job_id = int(re.sub(r"\D", "", environ.get("SLURM_JOB_ID", "0")) or 0)
    return ClusterEnvironment(
        world_size=tasks,
        global_rank=int(environ["SLURM_PROCID"]),
        local_rank=int(environ.get("SLURM_LOCALID", 0)),
        node_rank=int(environ.get("SLURM_NODEID", 0)),
        main_address=environ.get("MASTER_ADDR") or first_host(environ.get("SLURM_NODELIST", "127.0.0.1")),
        # Every task derives the same port from the job id, so they agree without talking.
        main_port=int(environ.get("MASTER_PORT", 0)) or 15000 + job_id % 20000,
        launched_externally=True,
        name="slurm",
    )


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[03-05,09],cpu1`` → ``gpu03``, ``node[1-2]-ib`` → ``node1-ib``."""
    first_entry = re.split(r",(?![^\[]*\])", nodelist.strip())[0]
    return re.sub(r"\[([^,\-\]]+)[^\]]*\]", r"\1", first_entry)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
