"""The XLA lane: a real torch_xla device (PJRT_DEVICE=CPU here, a TPU elsewhere). Run with `make test-xla`."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from engineering import Trainer
from tests.helpers import QUIET, TinyModule, tiny_loader

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch_xla") is None or not os.environ.get("PJRT_DEVICE"),
    reason="needs torch_xla and PJRT_DEVICE (make test-xla builds .venv-xla and sets PJRT_DEVICE=CPU)",
)


class DeviceRecorder(TinyModule):
    def training_step(self, batch, batch_idx):
        self.seen_device = batch[0].device
        return super().training_step(batch, batch_idx)


def test_fit_validate_test_predict_run_on_the_xla_device(tmp_path):
    model = DeviceRecorder()
    trainer = Trainer(accelerator="xla", devices=1, max_epochs=2, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, tiny_loader(), tiny_loader())
    assert model.seen_device.type == "xla" and model.device.type == "xla"
    assert trainer.global_step == 8 and trainer.strategy.name == "xla"
    (validated,) = trainer.validate(model, tiny_loader(), verbose=False)
    (tested,) = trainer.test(model, tiny_loader(), verbose=False)
    assert set(validated) == {"val_loss"} and set(tested) == {"test_loss"}
    predictions = trainer.predict(model, torch.utils.data.DataLoader(torch.randn(20, 32), batch_size=8))
    assert [tuple(p.shape) for p in predictions] == [(8, 2), (8, 2), (4, 2)]


def test_xla_training_matches_the_cpu(tmp_path):
    torch.manual_seed(0)
    on_cpu, on_xla = TinyModule(), TinyModule()
    on_xla.load_state_dict(on_cpu.state_dict())
    Trainer(accelerator="cpu", max_epochs=1, default_root_dir=tmp_path, **QUIET).fit(on_cpu, tiny_loader())
    Trainer(accelerator="xla", max_epochs=1, default_root_dir=tmp_path, **QUIET).fit(on_xla, tiny_loader())
    for cpu_value, xla_value in zip(on_cpu.state_dict().values(), on_xla.state_dict().values()):
        torch.testing.assert_close(xla_value.cpu(), cpu_value, atol=1e-5, rtol=1e-5)


def test_a_checkpoint_written_through_the_xla_save_path_round_trips(tmp_path):
    model = TinyModule()
    trainer = Trainer(accelerator="xla", max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, tiny_loader())
    path = tmp_path / "xla.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in checkpoint["state_dict"].values())
    resumed = TinyModule()
    Trainer(accelerator="xla", max_epochs=2, default_root_dir=tmp_path, **QUIET).fit(resumed, tiny_loader(), ckpt_path=path)
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 8


def test_bf16_mixed_autocasts_on_xla(tmp_path):
    class DtypeRecorder(TinyModule):
        def training_step(self, batch, batch_idx):
            self.forward_dtype = self(batch[0]).dtype
            return super().training_step(batch, batch_idx)

    model = DtypeRecorder()
    Trainer(accelerator="xla", precision="bf16-mixed", max_epochs=1, default_root_dir=tmp_path, **QUIET).fit(
        model, tiny_loader()
    )
    assert model.forward_dtype == torch.bfloat16
    assert next(model.parameters()).dtype == torch.float32
