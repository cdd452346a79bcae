"""``auxiliary`` loads a piece only when its name is used, so a run pays for the pieces it uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import auxiliary

ROOT = Path(__file__).resolve().parents[2]


def loaded_after(statement: str) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(m for m in sys.modules if 'auxiliary' in m)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_importing_the_package_loads_none_of_its_pieces():
    assert loaded_after("import auxiliary") == ["auxiliary"]


def test_a_name_loads_its_own_module_only():
    assert loaded_after("from auxiliary import EarlyStopping") == ["auxiliary", "auxiliary.early_stopping"]


def test_every_public_name_resolves_and_is_listed():
    for name in auxiliary.__all__:
        assert getattr(auxiliary, name).__name__ == name
    assert set(auxiliary.__all__) <= set(dir(auxiliary))
