"""Run every compat program under Lightning 2.6.6 and store what it produced, for machines without Lightning.

    .venv-bench/bin/python tests/compat/make_fixtures.py      # make bench builds .venv-bench with Lightning 2.6.6

Each fixture is ``tests/compat/fixtures/<program>.pt``: the weights, the callback metrics and the extras the
program saves (see ``programs/compat_data.py``). ``tests/compat/test_programs.py`` compares tribus with them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"
# The CPU kernels every compat run uses, whatever the CPU offers: ATen, MKL and oneDNN pick other kernels (with
# other float rounding) on CPUs with AVX-512, and the fixtures were made with these.
KERNELS = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def main() -> None:
    import lightning

    assert lightning.__version__ == "2.6.6", f"fixtures come from Lightning 2.6.6, not {lightning.__version__}"
    environment = {**os.environ, **KERNELS, "PYTHONPATH": str(PROGRAMS)}
    for program in sorted(PROGRAMS.glob("*.py")):
        if program.stem == "compat_data":
            continue
        with tempfile.TemporaryDirectory() as workdir:
            target = HERE / "fixtures" / f"{program.stem}.pt"
            subprocess.run([sys.executable, str(program), str(target)], cwd=workdir, env=environment, check=True,
                           stdout=subprocess.DEVNULL)
        print(f"wrote {target.relative_to(HERE.parent.parent)}")


if __name__ == "__main__":
    main()
