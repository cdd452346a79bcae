"""Lightning programs ported by changing their imports alone give Lightning's numbers, bit for bit.

Each program in ``programs/`` is written for Lightning 2.6.6. The test ports it with ``port.port`` (imports only),
runs it under tribus in a fresh interpreter, and compares the weights, ``callback_metrics`` and extras it saved with
what the same program produced under Lightning: live, when a Python with Lightning 2.6.6 is at hand (``make
bench``'s ``.venv-bench``, or ``TRIBUS_LIGHTNING_PYTHON``), and always with the stored run in ``fixtures/``
(``make_fixtures.py`` wrote them). Every run uses the same CPU kernels (``make_fixtures.KERNELS``), so that a
machine with AVX-512 compares with fixtures made on one without.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.compat.make_fixtures import KERNELS
from tests.compat.port import port
from tests.helpers import lightning_python

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
PROGRAMS = sorted(path.stem for path in (HERE / "programs").glob("*.py") if path.stem != "compat_data")
RUN_TIMEOUT = 240


LIGHTNING_PYTHON = lightning_python()


def run(python: str, program: Path, workdir: Path, python_path: list[Path]) -> dict[str, Any]:
    workdir.mkdir()
    outcome = workdir / "outcome.pt"
    environment = {**os.environ, **KERNELS, "PYTHONPATH": os.pathsep.join(str(path) for path in python_path)}
    environment.pop("TRIBUS_CALLBACKS", None)
    finished = subprocess.run([python, str(program), str(outcome)], cwd=workdir, env=environment,
                              capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert finished.returncode == 0, f"{program.name} failed:\n{finished.stderr[-4000:]}"
    return torch.load(outcome, weights_only=False)


def assert_same(tribus: dict[str, Any], lightning: dict[str, Any]) -> None:
    assert tribus.keys() == lightning.keys()
    assert tribus["state_dict"].keys() == lightning["state_dict"].keys()
    for name, value in lightning["state_dict"].items():
        assert torch.equal(tribus["state_dict"][name], value), f"weights differ: {name}"
    assert tribus["metrics"] == lightning["metrics"]
    for key in lightning.keys() - {"state_dict", "metrics"}:
        expected, found = lightning[key], tribus[key]
        if isinstance(expected, torch.Tensor):
            assert torch.equal(found, expected), key
        else:
            assert found == expected, key


@pytest.fixture(params=PROGRAMS)
def ported_run(request, tmp_path) -> tuple[str, dict[str, Any]]:
    program = request.param
    ported = tmp_path / "ported" / f"{program}.py"
    ported.parent.mkdir()
    ported.write_text(port((HERE / "programs" / f"{program}.py").read_text()))
    shutil.copy(HERE / "programs" / "compat_data.py", ported.parent)
    return program, run(sys.executable, ported, tmp_path / "tribus", [ROOT, ported.parent])


@pytest.mark.slow  # twelve fresh interpreters: make test-slow (and CI) runs them
def test_a_ported_program_gives_the_numbers_lightning_gave(ported_run):
    program, outcome = ported_run
    assert_same(outcome, torch.load(HERE / "fixtures" / f"{program}.pt", weights_only=False))


@pytest.mark.slow
@pytest.mark.skipif(LIGHTNING_PYTHON is None, reason="needs a Python with Lightning 2.6.6 (make bench builds one)")
def test_a_ported_program_gives_the_numbers_lightning_gives_now(ported_run, tmp_path):
    program, outcome = ported_run
    original = HERE / "programs" / f"{program}.py"
    assert_same(outcome, run(LIGHTNING_PYTHON, original, tmp_path / "lightning", [HERE / "programs"]))


def test_porting_changes_only_import_lines():
    for program in PROGRAMS:
        source = (HERE / "programs" / f"{program}.py").read_text()
        ported = port(source)
        kept = [line for line in source.splitlines() if "lightning" not in line]
        assert [line for line in ported.splitlines() if not line.startswith("from ")] == [
            line for line in kept if not line.startswith("from ")
        ]
