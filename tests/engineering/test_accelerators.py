"""trainer.accelerator and the accelerator classes, with the static helpers Lightning programs call."""

from __future__ import annotations

import pytest
import torch

from engineering import Accelerator, CPUAccelerator, CUDAAccelerator, MPSAccelerator, Trainer, XLAAccelerator


def test_the_trainer_exposes_its_accelerator_and_devices_as_lightning_does(tmp_path):
    trainer = Trainer(accelerator="cpu", default_root_dir=tmp_path)
    assert isinstance(trainer.accelerator, CPUAccelerator) and isinstance(trainer.accelerator, Accelerator)
    assert (trainer.num_devices, trainer.device_ids, trainer.num_nodes) == (1, [0], 1)
    two = Trainer(accelerator="cpu", devices=2, strategy="ddp", num_nodes=1, default_root_dir=tmp_path)
    assert (two.num_devices, two.device_ids) == (2, [0, 1])


def test_an_accelerator_object_is_kept_and_runs_on_its_device_type(tmp_path):
    class Counting(CPUAccelerator):
        """A user's adaptation of the CPU accelerator."""

    accelerator = Counting()
    trainer = Trainer(accelerator=accelerator, max_epochs=1, logger=False, enable_progress_bar=False,
                      default_root_dir=tmp_path)
    assert trainer.accelerator is accelerator and trainer.strategy.root_device == torch.device("cpu")


def test_the_cpu_accelerators_static_helpers_answer_as_lightnings():
    assert CPUAccelerator.is_available() and CPUAccelerator.auto_device_count() == 1
    assert CPUAccelerator.parse_devices("3") == 3 and CPUAccelerator.parse_devices(2) == 2
    assert CPUAccelerator.get_parallel_devices(2) == [torch.device("cpu"), torch.device("cpu")]
    assert CPUAccelerator.name() == "cpu"
    with pytest.raises(TypeError, match="`devices` selected with `CPUAccelerator` should be an int > 0."):
        CPUAccelerator.parse_devices(0)


def test_the_device_accelerators_report_what_this_machine_has():
    assert CUDAAccelerator.is_available() == torch.cuda.is_available()
    assert CUDAAccelerator.auto_device_count() == torch.cuda.device_count()
    assert CUDAAccelerator.get_parallel_devices([0, 1]) == [torch.device("cuda", 0), torch.device("cuda", 1)]
    assert CUDAAccelerator.parse_devices(0) is None
    assert MPSAccelerator.is_available() == torch.backends.mps.is_available()
    assert XLAAccelerator.get_parallel_devices(2) == [torch.device("xla", 0), torch.device("xla", 1)]
    assert [kind.name() for kind in (CUDAAccelerator, MPSAccelerator, XLAAccelerator)] == ["cuda", "mps", "tpu"]


def test_the_base_class_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Accelerator()
