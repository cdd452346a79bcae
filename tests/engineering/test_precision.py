"""Precision: the dtypes a training step sees, loss scaling and the steps it skips, parity with
hand-written autocast loops, the scaler in checkpoints, and torch.compile'd modules.

On CPU the Trainer's "16-mixed" autocasts to bfloat16 without a scaler (GradScaler is for CUDA's fp16),
so the scaler tests build the fp16 + GradScaler precision themselves and hand it to the strategy.
"""

from __future__ import annotations

import copy
import dataclasses
import warnings
from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from engineering import Callback, Trainer
from engineering.optimization.precision import MixedPrecision
from research import LightningModule
from tests.helpers import regression_dataset

QUIET = dict(enable_progress_bar=False, enable_model_summary=False, logger=False, enable_checkpointing=False)
BATCHES = 3
CPU_FP16_WARNING = "precision='16-mixed' on CPU"
INIT_SCALE = 1024.0  # GradScaler's default, 2**16, overflows these fp16 gradients and skips the first steps


def dataset() -> TensorDataset:
    return regression_dataset(BATCHES)


def loader() -> DataLoader:
    return DataLoader(dataset(), batch_size=4, shuffle=False)


class Regressor(LightningModule):
    """Linear → Tanh → Linear with MSE and plain SGD; the same initial weights every time."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        inputs, targets = batch
        return F.mse_loss(self.net(inputs), targets)

    def configure_optimizers(self):
        return sgd(self.parameters())


def sgd(parameters):
    return torch.optim.SGD(parameters, lr=0.05)


def cpu_fp16_scaler_precision() -> MixedPrecision:
    """fp16 autocast with loss scaling, on CPU. create_precision gives a scaler only on CUDA and
    MixedPrecision takes no scaler argument, so the scaler goes on its public attribute."""
    precision = MixedPrecision("16-mixed", "cpu", torch.float16, scaler=torch.amp.GradScaler("cpu", init_scale=INIT_SCALE))
    return precision


def fit(model: LightningModule, tmp_path, precision_plugin: MixedPrecision | None = None, ckpt_path=None,
        **flags) -> Trainer:
    """Fit one epoch of ``loader()``; ``precision_plugin`` replaces the one the Trainer's flags chose."""
    trainer = Trainer(default_root_dir=tmp_path, **{"max_epochs": 1, **QUIET, **flags})
    if precision_plugin is not None:
        trainer.strategy.precision = precision_plugin
    trainer.fit(model, loader(), ckpt_path=ckpt_path)
    return trainer


def weights_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def assert_same_weights(trained: nn.Module, reference: nn.Module, atol: float = 0.0) -> None:
    for (name, value), expected in zip(trained.state_dict().items(), reference.state_dict().values()):
        difference = (value.float() - expected.float()).abs().max().item()
        assert difference <= atol, f"{name} differs by {difference:.3g}"


# ---------------------------------------------------------------------------------------------
# dtypes inside the training step
# ---------------------------------------------------------------------------------------------
class DtypeProbe(LightningModule):
    """Records, inside training_step, the dtypes of the parameters, the inputs, the forward's output and
    of a tensor created there."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)
        self.seen: dict[str, torch.dtype] = {}

    def training_step(self, batch, batch_idx):
        inputs, targets, indices = batch
        outputs = self.layer(inputs)
        self.seen = {
            "parameters": self.layer.weight.dtype, "inputs": inputs.dtype, "outputs": outputs.dtype,
            "created": torch.zeros(1).dtype, "integer inputs": indices.dtype,
        }
        return F.mse_loss(outputs, targets)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def probe_loader() -> DataLoader:
    data = TensorDataset(torch.randn(8, 4), torch.randn(8, 2), torch.arange(8))
    return DataLoader(data, batch_size=4)


F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16


@pytest.mark.parametrize(
    ("precision", "parameters", "inputs", "outputs"),
    [
        ("32-true", F32, F32, F32),
        (32, F32, F32, F32),
        ("64-true", F64, F64, F64),
        (64, F64, F64, F64),
        ("16-mixed", F32, F32, BF16),  # CPU has no fp16 scaler: autocast to bfloat16 instead, and say so
        ("bf16-mixed", F32, F32, BF16),
        ("16-true", F16, F16, F16),
        ("bf16-true", BF16, BF16, BF16),
    ],
)
def test_the_training_step_sees_the_dtypes_of_its_precision(tmp_path, precision, parameters, inputs, outputs):
    model = DtypeProbe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # count every warning, repeated ones too
        trainer = Trainer(default_root_dir=tmp_path, max_epochs=1, precision=precision, **QUIET)
        trainer.fit(model, probe_loader())

    created = parameters if precision in ("64-true", 64, "16-true", "bf16-true") else F32
    assert model.seen == {
        "parameters": parameters, "inputs": inputs, "outputs": outputs, "created": created,
        "integer inputs": torch.int64,  # only floating tensors are cast
    }
    cpu_fp16_warnings = [w for w in caught if CPU_FP16_WARNING in str(w.message)]
    assert len(cpu_fp16_warnings) == (1 if precision == "16-mixed" else 0)
    if cpu_fp16_warnings:
        assert "bfloat16" in str(cpu_fp16_warnings[0].message)
    assert torch.get_default_dtype() == F32  # a true-precision run leaves the default dtype as it found it


# ---------------------------------------------------------------------------------------------
# fp16 loss scaling
# ---------------------------------------------------------------------------------------------
class PoisonedGradient(Regressor):
    """Puts an inf into one gradient at ``poisoned_batch``; records weights around it and the scale after
    every batch."""

    def __init__(self, poisoned_batch: int) -> None:
        super().__init__()
        self.poisoned_batch = poisoned_batch
        self.batch_idx = -1
        self.weights_before: dict[int, dict[str, torch.Tensor]] = {}
        self.weights_after: dict[int, dict[str, torch.Tensor]] = {}
        self.scales: list[float] = []

    def on_train_batch_start(self, batch, batch_idx):
        self.batch_idx = batch_idx
        self.weights_before[batch_idx] = weights_of(self.net)

    def on_after_backward(self):
        if self.batch_idx == self.poisoned_batch:
            self.net[0].weight.grad[0, 0] = float("inf")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self.weights_after[batch_idx] = weights_of(self.net)
        self.scales.append(self.trainer.strategy.precision.scaler.get_scale())


def changed(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> bool:
    return any(not torch.equal(before[name], after[name]) for name in before)


def test_an_inf_gradient_skips_the_step_and_backs_off_the_scale(tmp_path):
    model = PoisonedGradient(poisoned_batch=1)
    trainer = fit(model, tmp_path, precision_plugin=cpu_fp16_scaler_precision())

    assert not changed(model.weights_before[1], model.weights_after[1]), "the step with an inf gradient was taken"
    assert changed(model.weights_before[0], model.weights_after[0])
    assert changed(model.weights_before[2], model.weights_after[2])
    # halved once (backoff_factor 0.5); growth would take 2000 clean steps
    assert model.scales == [INIT_SCALE, INIT_SCALE / 2, INIT_SCALE / 2]
    # Lightning 2.6.6 counts the step the scaler skipped (fit_loop's optimizer step counter is bumped after
    # the optimizer_step hook whatever the scaler did), so global_step still equals the batches run.
    assert trainer.global_step == BATCHES


class SkipsBatchOne(PoisonedGradient):
    """training_step returns None for batch 1: no backward, hence no gradients for the scaler to check."""

    def __init__(self) -> None:
        super().__init__(poisoned_batch=-1)

    def training_step(self, batch, batch_idx):
        return None if batch_idx == 1 else super().training_step(batch, batch_idx)


def test_a_skipped_batch_under_a_scaler_takes_no_step_and_keeps_the_scale(tmp_path):
    # Lightning's MixedPrecision.optimizer_step neither unscales nor steps when the closure returned None.
    model = SkipsBatchOne()
    fit(model, tmp_path, precision_plugin=cpu_fp16_scaler_precision())

    assert not changed(model.weights_before[1], model.weights_after[1])
    assert model.scales == [INIT_SCALE] * BATCHES


def hand_autocast_loop(net: nn.Module, dtype: torch.dtype, scaler: torch.amp.GradScaler | None = None,
                       clip_val: float | None = None) -> None:
    """The AMP loop a user writes: zero_grad, autocast forward, (scaled) backward, unscale, clip, step, update."""
    optimizer = sgd(net.parameters())
    clipped = False
    for inputs, targets in loader():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=dtype):
            loss = F.mse_loss(net(inputs), targets)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        if scaler is not None:
            scaler.unscale_(optimizer)
        if clip_val is not None:
            clipped |= bool(torch.nn.utils.clip_grad_norm_(net.parameters(), clip_val) > clip_val)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
    if clip_val is not None:
        assert clipped, "the reference never clipped: the test would not notice clipping on scaled gradients"


def test_bf16_mixed_matches_a_hand_written_autocast_loop(tmp_path):
    model = Regressor()
    reference = copy.deepcopy(model.net)
    fit(model, tmp_path, precision="bf16-mixed")

    hand_autocast_loop(reference, torch.bfloat16)
    assert_same_weights(model.net, reference)  # bitwise: same ops in the same order


def test_fp16_with_a_scaler_and_clipping_matches_a_hand_written_amp_loop(tmp_path):
    model = Regressor()
    reference = copy.deepcopy(model.net)
    precision = cpu_fp16_scaler_precision()
    fit(model, tmp_path, precision_plugin=precision, gradient_clip_val=0.5)

    reference_scaler = torch.amp.GradScaler("cpu", init_scale=INIT_SCALE)
    hand_autocast_loop(reference, torch.float16, scaler=reference_scaler, clip_val=0.5)
    assert_same_weights(model.net, reference)  # clipping unscaled gradients, not scaled ones
    assert precision.scaler.state_dict() == reference_scaler.state_dict()
    assert precision.scaler.get_scale() == INIT_SCALE  # no step was skipped: every one of them was compared


class RecordingScaler(torch.amp.GradScaler):
    """A CPU GradScaler that writes each of its calls into ``calls``."""

    def __init__(self, calls: list[str]) -> None:
        super().__init__("cpu", init_scale=INIT_SCALE)
        self.calls = calls

    def scale(self, outputs):
        self.calls.append("scale loss")
        return super().scale(outputs)

    def unscale_(self, optimizer):
        self.calls.append("unscale")
        super().unscale_(optimizer)

    def step(self, optimizer, *args, **kwargs):
        self.calls.append("scaler step")
        return super().step(optimizer, *args, **kwargs)

    def update(self, new_scale=None):
        self.calls.append("update")
        super().update(new_scale)


class RecordingSGD(torch.optim.SGD):
    def __init__(self, parameters, calls: list[str]) -> None:
        super().__init__(parameters, lr=0.05)
        self.calls = calls

    def step(self, closure=None):
        self.calls.append("optimizer step")
        return super().step(closure)


class StepOrderRecorder(Regressor):
    """Writes the module's part of one step (forward, backward, the hooks) into the shared ``calls``."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def training_step(self, batch, batch_idx):
        fp16_autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.float16
        self.calls.append("forward under fp16 autocast" if fp16_autocast else "forward without autocast")
        return super().training_step(batch, batch_idx)

    def on_after_backward(self):
        self.calls.append("backward")

    def on_before_optimizer_step(self, optimizer):
        self.calls.append("on_before_optimizer_step")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        self.calls.append("configure_gradient_clipping")
        super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def configure_optimizers(self):
        return RecordingSGD(self.parameters(), self.calls)


def test_one_amp_step_runs_in_lightning_order(tmp_path):
    model = StepOrderRecorder()
    precision = MixedPrecision("16-mixed", "cpu", torch.float16, scaler=RecordingScaler(model.calls))
    fit(model, tmp_path, precision_plugin=precision, gradient_clip_val=0.5, limit_train_batches=1)

    # As Lightning's MixedPrecision.optimizer_step: gradients are unscaled before on_before_optimizer_step
    # and the clipping hook, so both see (and clip) the gradients the optimizer will really apply.
    assert model.calls == [
        "forward under fp16 autocast", "scale loss", "backward", "unscale", "on_before_optimizer_step",
        "configure_gradient_clipping", "scaler step", "optimizer step", "update",
    ]


def test_the_scaler_state_is_saved_and_restored(tmp_path):
    model = PoisonedGradient(poisoned_batch=1)
    trainer = fit(model, tmp_path, precision_plugin=cpu_fp16_scaler_precision())
    path = tmp_path / "scaled.ckpt"
    trainer.save_checkpoint(path)

    checkpoint = torch.load(path, weights_only=True)
    # Lightning's key: the precision plugin's class __qualname__.
    assert checkpoint["MixedPrecision"]["scale"] == INIT_SCALE / 2
    assert checkpoint["MixedPrecision"] == trainer.strategy.precision.scaler.state_dict()

    resumed = PoisonedGradient(poisoned_batch=-1)
    fresh = cpu_fp16_scaler_precision()
    fit(resumed, tmp_path, precision_plugin=fresh, max_epochs=2, ckpt_path=path)
    assert resumed.scales == [INIT_SCALE / 2] * BATCHES  # continued from the saved scale, not from init_scale


# ---------------------------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------------------------
class TracedNet(nn.Sequential):
    """The regressor's network, noting in ``compiled`` whether its forward ran under torch.compile."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
        self.compiled: list[bool] = []

    def forward(self, inputs):
        self.compiled.append(torch.compiler.is_compiling())
        return super().forward(inputs)


@pytest.mark.parametrize("backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)])
def test_a_compiled_network_trains_like_the_eager_one(tmp_path, backend):
    # aot_eager traces forward and backward as inductor does but skips its C++ code generation (~15 s cold).
    torch._dynamo.reset()
    eager = Regressor()
    eager.net = TracedNet()
    compiled = copy.deepcopy(eager)
    compiled.net = torch.compile(compiled.net, backend=backend)
    fit(eager, tmp_path, max_epochs=2)
    fit(compiled, tmp_path, max_epochs=2)

    assert any(compiled.net.compiled) and not any(eager.net.compiled)
    assert_same_weights(compiled.net, eager.net, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# How the closure reaches the optimizer
# ---------------------------------------------------------------------------------------------
class CountsClosures(Regressor):
    def __init__(self, make_optimizer) -> None:
        super().__init__()
        self.make_optimizer = make_optimizer
        self.forwards = 0

    def training_step(self, batch, batch_idx):
        self.forwards += 1
        return super().training_step(batch, batch_idx)

    def configure_optimizers(self):
        return self.make_optimizer(self.parameters())


def test_lbfgs_gets_the_closure_and_matches_a_hand_written_loop(tmp_path):
    module = CountsClosures(lambda parameters: torch.optim.LBFGS(parameters, lr=0.5, max_iter=4))
    fit(module, tmp_path)

    reference = Regressor()
    optimizer = torch.optim.LBFGS(reference.parameters(), lr=0.5, max_iter=4)
    for inputs, targets in loader():
        def closure():
            optimizer.zero_grad()
            loss = F.mse_loss(reference.net(inputs), targets)
            loss.backward()
            return loss
        optimizer.step(closure)
    assert module.forwards > BATCHES  # LBFGS evaluated the closure several times per step
    for name, value in weights_of(reference).items():
        assert torch.equal(weights_of(module)[name], value), name


def test_a_custom_optimizer_receives_the_closure(tmp_path):
    received = []

    class Custom(torch.optim.SGD):
        def step(self, closure=None):
            received.append(closure is not None)
            return super().step(closure)

    module = CountsClosures(lambda parameters: Custom(parameters, lr=0.05))
    fit(module, tmp_path)
    assert received == [True] * BATCHES and module.forwards == BATCHES


def test_fit_called_under_no_grad_still_trains(tmp_path):
    module = Regressor()
    before = weights_of(module)
    with torch.no_grad():
        fit(module, tmp_path)
    assert any(not torch.equal(before[name], value) for name, value in weights_of(module).items())


def test_torch_optimizers_run_the_closure_just_before_step(tmp_path):
    module = CountsClosures(lambda parameters: torch.optim.SGD(parameters, lr=0.05))
    forwards_when_step_began = []

    class Hooked(Callback):
        def on_fit_start(self, trainer, pl_module):
            trainer.optimizers[0].register_step_pre_hook(
                lambda optimizer, args, kwargs: forwards_when_step_began.append(pl_module.forwards))

    fit(module, tmp_path, callbacks=[Hooked()])
    assert forwards_when_step_began == [1, 2, 3]  # Lightning: [0, 1, 2], its closure runs inside step()


class _Pair(NamedTuple):
    inputs: torch.Tensor
    targets: torch.Tensor


@dataclasses.dataclass
class _Batch:
    inputs: torch.Tensor
    targets: torch.Tensor


@pytest.mark.parametrize("wrap", [_Pair, _Batch], ids=["namedtuple", "dataclass"])
def test_64_true_casts_floating_tensors_inside_namedtuple_and_dataclass_batches(tmp_path, wrap):
    seen = []

    class Wrapped(Regressor):
        def transfer_batch_to_device(self, batch, device, dataloader_idx):
            return wrap(*batch)

        def training_step(self, batch, batch_idx):
            seen.append((type(batch), batch.inputs.dtype, batch.targets.dtype))
            return F.mse_loss(self.net(batch.inputs), batch.targets)

    Trainer(max_epochs=1, precision="64-true", default_root_dir=tmp_path, **QUIET).fit(Wrapped(), loader())
    assert seen == [(wrap, torch.float64, torch.float64)] * BATCHES
