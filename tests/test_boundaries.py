"""The dependency rule auxiliary → engineering → research is checked on every test run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.check_boundaries import violations

ROOT = Path(__file__).resolve().parent.parent


def test_the_checkout_keeps_the_dependency_rule():
    assert violations(ROOT) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for package in ("research", "engineering", "auxiliary"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for name, source in files.items():
        (tmp_path / name).write_text(source)
    return tmp_path


def test_each_kind_of_violation_is_reported(tmp_path):
    root = _tree(tmp_path, {
        "research/bad.py": "from engineering import Trainer\n",
        "engineering/bad.py": "def later():\n    import auxiliary.progress\n",
        "auxiliary/bad.py": "from engineering.loop.fit import Progress\n",
        "research/sneaky.py": "import importlib\nimportlib.import_module('auxiliary')\n",
    })
    found = violations(root)
    assert found == [
        "research/bad.py:1: research must not import engineering",
        "research/sneaky.py:2: research must not import auxiliary",
        "engineering/bad.py:2: engineering must not import auxiliary.progress",
        "auxiliary/bad.py:1: auxiliary may use only engineering's public names, not engineering.loop.fit",
    ]


def test_the_command_fails_on_a_deliberate_violation(tmp_path):
    root = _tree(tmp_path, {"research/bad.py": "import auxiliary\n"})
    script = ROOT / "tools" / "check_boundaries.py"
    failing = subprocess.run([sys.executable, str(script), str(root)], capture_output=True, text=True)
    assert failing.returncode == 1
    assert "research must not import auxiliary" in failing.stdout
    passing = subprocess.run([sys.executable, str(script), str(ROOT)], capture_output=True, text=True)
    assert passing.returncode == 0, passing.stdout


def test_auxiliary_reading_the_trainer_beyond_its_view_is_reported(tmp_path):
    root = _tree(tmp_path, {
        "engineering/view.py": "class TrainerView:\n    current_epoch: int\n",
        "auxiliary/peek.py": "def hook(trainer):\n    return trainer.current_epoch, trainer.results\n",
    })
    assert violations(root) == [
        "auxiliary/peek.py:2: auxiliary reads trainer.results, which TrainerView (engineering/view.py) does not list"
    ]


def test_every_name_of_the_view_is_something_the_trainer_has(tmp_path):
    from engineering import Trainer, TrainerView

    trainer = Trainer(logger=False, enable_checkpointing=False, default_root_dir=tmp_path)
    missing = [name for name in TrainerView.__annotations__ if not hasattr(trainer, name)]
    assert missing == []
