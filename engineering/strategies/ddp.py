"""DistributedDataParallel over torch.distributed: one process per device, gradients all-reduced.

Processes come from torchrun, from SLURM, or from tribus itself: rank 0 re-runs the user's script
once per other local rank (``start_method="popen"``, Lightning's default), or ``torch.multiprocessing``
spawns them (``"spawn"``). Collectives time out after ``timeout``; a heartbeat in the rendezvous store
lets the surviving ranks say which rank stopped answering, and at which step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engineering.strategies.parallel import ParallelStrategy

_REDUCE_OPS = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
_HEARTBEAT_SECONDS = 1.0  # a live rank's heartbeat is never older than this
_WATCH_SECONDS = 0.05  # how often the watchdog looks at the step (published when it changed) and at the children
_CHILD_EXIT_SECONDS = 1.0  # after a failure, how long a started rank gets to stop before it is killed
# When a rank this process started fails, this process normally fails too, on its own (its next collective
# breaks) and reports it. The watchdog ends it only if it does not: after this long, or, when it is already
# handling the failure (its report or on_exception may wait on a collective), after the longer patience.
_CHILD_FAILURE_GRACE = 1.0
_FAILING_PATIENCE = 10.0


class CollectiveTimeoutError(RuntimeError):
    """A collective failed or timed out: another rank died or stalled."""


class _StepDispatcher(nn.Module):
    """What DDP wraps: its forward runs the module's training_step, so DDP sees the real forward pass."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module.training_step(*args, **kwargs)


class DDPStrategy(ParallelStrategy):
    """One process per device; ``training_step`` runs through DistributedDataParallel."""

    name = "ddp"

    def __init__(
        self,
        find_unused_parameters: bool = False,
        start_method: str = "popen",
        timeout: datetime.timedelta = datetime.timedelta(minutes=30),
        process_group_backend: str | None = None,
    ) -> None:
        super().__init__()
        if start_method not in ("popen", "spawn"):
            raise ValueError(f"start_method={start_method!r}; use 'popen' (re-run the script) or 'spawn'.")
        self.find_unused_parameters = find_unused_parameters
        self.start_method = start_method
        self.timeout = timeout
        self.process_group_backend = process_group_backend
        self.model: DistributedDataParallel | None = None
        self._children: list[subprocess.Popen] = []
        self._store: dist.TCPStore | None = None
        self._launcher_hosts_store = False  # ddp_spawn: the process that started the ranks hosts their store
        self._heartbeat: threading.Thread | None = None
        self._stopping = threading.Event()
        self._failing = False  # set by the training thread once it handles a collective failure

    @property
    def spawns_processes(self) -> bool:
        """``ddp_spawn`` started by hand: this process spawns one process per local rank and waits for them."""
        return self.start_method == "spawn" and not self.environment.launched_externally and "LOCAL_RANK" not in os.environ

    def become_rank(self, local_rank: int) -> None:
        """In a spawned process: take ``local_rank``'s place, as the launch variables would have said."""
        environment = self.environment
        rank = environment.node_rank * self.devices_per_node + local_rank
        os.environ.update(
            MASTER_ADDR=environment.main_address, MASTER_PORT=str(environment.main_port), NODE_RANK=str(environment.node_rank),
            LOCAL_RANK=str(local_rank), RANK=str(rank), WORLD_SIZE=str(environment.world_size),
        )
        self.environment = dataclasses.replace(environment, global_rank=rank, local_rank=local_rank, launched_externally=True)
        if self.root_device.type == "cuda":
            self.root_device = torch.device("cuda", self.device_indices[local_rank])

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the Trainer and its strategy into each process: leave threads and locks behind.
        state = self.__dict__.copy()
        state.update(_stopping=None, _heartbeat=None, _store=None, _children=[], model=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._stopping = threading.Event()

    @property
    def backend(self) -> str:
        return self.process_group_backend or ("nccl" if self.root_device.type == "cuda" else "gloo")

    # -- processes and the process group -------------------------------------------------------
    def setup_environment(self) -> None:
        """Start the other local ranks if nobody else did, then join the process group."""
        environment = self.environment
        if "OMP_NUM_THREADS" not in os.environ:
            # The ranks on one machine share its cores; left alone, torch gives each rank a thread per core.
            threads = max(1, (os.cpu_count() or 1) // self.devices_per_node)
            torch.set_num_threads(threads)
            os.environ["OMP_NUM_THREADS"] = str(threads)  # for the ranks this one starts, and their workers
        store = None
        if not environment.launched_externally and environment.global_rank == 0 and self.start_method == "popen":
            store = self.host_store()  # before the ranks start: they are told its port
            self._launch_other_ranks()
        if dist.is_initialized():
            return
        if store is None:
            # Under torchrun the agent already hosts the store at MASTER_PORT, and under ddp_spawn the process that
            # started the ranks does: every rank joins it as a client. Otherwise rank 0 hosts it.
            hosts_store = (environment.global_rank == 0 and not self._launcher_hosts_store
                           and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True")
            store = dist.TCPStore(
                environment.main_address, environment.main_port, environment.world_size,
                is_master=hosts_store, timeout=self.timeout, wait_for_workers=True,
            )
        self._store = store
        dist.init_process_group(
            self.backend, store=self._store, rank=environment.global_rank,
            world_size=environment.world_size, timeout=self.timeout,
        )
        self._stopping, self._failing = threading.Event(), False  # a fresh watchdog for every run
        self._heartbeat = threading.Thread(target=self._watch, name="tribus-watchdog", daemon=True)
        self._heartbeat.start()

    def host_store(self, for_spawned_ranks: bool = False) -> dist.TCPStore:
        """Host the job's store in this process, which starts the ranks: on ``MASTER_PORT`` when it is set, else on a
        port the system picks as the store binds it (a port found free before may be taken by then, by any
        process's connection, and the job would fail with EADDRINUSE). ``for_spawned_ranks``: under ddp_spawn every
        rank joins this store as a client."""
        environment = self.environment
        port = environment.main_port if "MASTER_PORT" in os.environ else 0
        store = dist.TCPStore(environment.main_address, port, environment.world_size, is_master=True,
                              timeout=self.timeout, wait_for_workers=False)
        self.environment = dataclasses.replace(environment, main_port=store.port)
        self._launcher_hosts_store = for_spawned_ranks
        return store

    def _launch_other_ranks(self) -> None:
        """Re-run the user's command once per other local rank, as torchrun would."""
        environment = self.environment
        command = [sys.executable, *sys.orig_argv[1:]] if hasattr(sys, "orig_argv") else [sys.executable, *sys.argv]
        for local_rank in range(1, self.devices_per_node):
            rank_environment = {
                **os.environ,
                "MASTER_ADDR": environment.main_address,
                "MASTER_PORT": str(environment.main_port),
                "NODE_RANK": str(environment.node_rank),
                "LOCAL_RANK": str(local_rank),
                "RANK": str(environment.node_rank * self.devices_per_node + local_rank),
                "WORLD_SIZE": str(environment.world_size),
            }
            self._children.append(subprocess.Popen(command, env=rank_environment))

    def _watch(self) -> None:
        """The watchdog thread: publish this rank's global step as soon as it changes (and once a second, as a
        heartbeat) with when it last advanced; in the process that started the other local ranks, end the job
        when one of them fails and this process does not follow by itself (it may be the one that stalled)."""
        last_step, advanced_at, published_at, failed_at = None, time.time(), 0.0, None
        while True:
            now = time.time()
            step = self.trainer.progress.global_step if self.trainer is not None else -1
            changed = step != last_step
            if changed:
                last_step, advanced_at = step, now
            if changed or now - published_at >= _HEARTBEAT_SECONDS:
                try:
                    self._store.set(f"tribus/heartbeat/{self.global_rank}", f"{step} {advanced_at} {now}")
                except Exception:  # the store's host is gone; the training thread reports that
                    return
                published_at = now
            failed = next((child for child in self._children if child.poll() not in (None, 0)), None)
            if failed is not None:
                failed_at = failed_at or time.monotonic()
                if time.monotonic() - failed_at >= (_FAILING_PATIENCE if self._failing else _CHILD_FAILURE_GRACE):
                    self._end_job(failed, step, now - advanced_at)
            if self._stopping.wait(_WATCH_SECONDS):
                return

    def _end_job(self, failed: subprocess.Popen, step: int, still_for: float) -> None:
        """Say which rank failed and where this one stands, stop the started ranks, and exit: the training
        thread is stuck (in a step, or in a collective that waits for the full timeout)."""
        rank = self.environment.node_rank * self.devices_per_node + 1 + self._children.index(failed)
        print(
            f"DDP watchdog: rank {rank} (pid {failed.pid}) exited with status {failed.returncode}; rank "
            f"{self.global_rank}, which started it, is stuck at global_step {step} (for {still_for:.0f}s). "
            f"Ending rank {self.global_rank} and the ranks it started; the failed rank's output says why.",
            file=sys.stderr, flush=True,
        )
        for child in self._children:
            with contextlib.suppress(OSError):
                child.kill()
            child.wait()
        os._exit(1)

    def describe_peers(self) -> str:
        """Each rank's last step and heartbeat: a dead rank's heartbeat is old, a stalled rank's step is."""
        if self._store is None:
            return "no rendezvous store"
        time.sleep(1.5 * _HEARTBEAT_SECONDS)  # let a dead rank's last heartbeat age enough to show
        now, lines = time.time(), []
        own_step = self.trainer.progress.global_step if self.trainer is not None else -1
        self._store.set_timeout(datetime.timedelta(seconds=2))
        for rank in range(self.world_size):
            try:
                step, advanced_at, beat_at = self._store.get(f"tribus/heartbeat/{rank}").decode().split()
            except Exception:
                lines.append(f"rank {rank}: no heartbeat" + (" (it hosts the rendezvous store)" if rank == 0 else ""))
                continue
            silent = now - float(beat_at)
            if silent > 1.25 * _HEARTBEAT_SECONDS:
                # Gone. It may have died between publishing its step and the next one; but the ranks step in
                # lockstep (each step's all-reduce needs them all), so it got at least as far as this rank.
                lines.append(f"rank {rank}: gone at global_step {max(int(step), own_step)}, "
                             f"no heartbeat for {silent:.0f}s")
                continue
            lines.append(f"rank {rank}: at global_step {step} for {now - float(advanced_at):.0f}s, "
                         f"last heartbeat {silent:.0f}s ago")
        return "; ".join(lines)

    # -- placement ------------------------------------------------------------------------------
    def setup_module(self, module: nn.Module) -> nn.Module:
        module = super().setup_module(module)
        if self.sync_batchnorm:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        device_ids = [self.root_device.index] if self.root_device.type == "cuda" else None
        self.model = DistributedDataParallel(
            _StepDispatcher(module), device_ids=device_ids, find_unused_parameters=self.find_unused_parameters
        )
        return module

    def training_step_callable(self) -> Callable[..., Any]:
        return self.model  # the wrapper's forward runs training_step, so DDP sees the real forward pass

    def block_gradient_sync(self) -> contextlib.AbstractContextManager:
        """Inside an accumulation window only the last backward all-reduces."""
        return self.model.no_sync()

    # -- collectives -----------------------------------------------------------------------------
    def barrier(self, name: str | None = None) -> None:
        with self._collective(f"barrier({name})"):
            dist.barrier()

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        holder = [obj]
        with self._collective("broadcast"):
            dist.broadcast_object_list(holder, src=src)
        return holder[0]

    def all_gather(self, tensor: torch.Tensor, group: Any = None, sync_grads: bool = False) -> torch.Tensor:
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        with self._collective("all_gather"):
            dist.all_gather(gathered, tensor.contiguous(), group=group)
        if sync_grads:
            gathered[self.global_rank] = tensor
        return torch.stack(gathered)

    def reduce(self, tensor: torch.Tensor, reduce_op: str = "mean") -> torch.Tensor:
        reduced = tensor.detach().clone()
        with self._collective(f"all_reduce({reduce_op})"):
            dist.all_reduce(reduced, op=_REDUCE_OPS[reduce_op])
        return reduced / self.world_size if reduce_op == "mean" else reduced

    @contextlib.contextmanager
    def _collective(self, what: str) -> Iterator[None]:
        try:
            yield
        except RuntimeError as error:
            raise self.collective_failure(what, error) from error

    def collective_failure(self, what: str, error: BaseException) -> CollectiveTimeoutError:
        self._failing = True  # the watchdog gives this thread time to report and tear down
        step = self.trainer.progress.global_step if self.trainer is not None else -1
        return CollectiveTimeoutError(
            f"rank {self.global_rank}: {what} failed at global_step {step} after at most "
            f"{self.timeout.total_seconds():.0f}s ({error}). Another rank died or stalled. "
            f"Peers: {self.describe_peers()}."
        )

    def explain_failure(self, error: BaseException) -> BaseException:
        if isinstance(error, CollectiveTimeoutError) or not isinstance(error, RuntimeError):
            return error
        message = str(error).lower()
        if isinstance(error, dist.DistBackendError) or any(
            sign in message for sign in ("gloo", "nccl", "timed out", "connection closed", "connection reset")
        ):
            return self.collective_failure("a collective (e.g. the gradient all-reduce)", error)
        return error

    # -- the end -----------------------------------------------------------------------------------
    def teardown(self) -> None:
        self._stopping.set()
        self.model = None

    def close(self, failed: bool) -> None:
        """Leave the process group; on failure stop the ranks this process started, so none hangs."""
        self._stopping.set()
        if self._heartbeat is not None and self._heartbeat is not threading.current_thread():
            self._heartbeat.join(_HEARTBEAT_SECONDS)  # it looks at the children: let it finish its round first
        if failed:
            for child in self._children:
                child.terminate()
        if dist.is_initialized():
            dist.destroy_process_group()
        for child in self._children:
            try:
                child.wait(timeout=_CHILD_EXIT_SECONDS if failed else None)
            except subprocess.TimeoutExpired:  # a stalled rank never reaches the end of its step to stop
                child.kill()
                child.wait()
        self._children.clear()
